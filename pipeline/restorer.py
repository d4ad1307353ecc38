"""Running the generator on batches of frames: device, precision, batching, tiling, OOM fallback.

The hot path keeps the GPU busy: frames go up as uint8 (4x less traffic than float) from a
pinned, reused host buffer with a non-blocking copy; normalisation, the multi-frame stacking,
clamping and the conversion back to integers all happen on the device; one device→host copy
per batch. On out-of-memory the batch is halved, then the frame is tiled, and the batch is
retried: a frame is never skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from models.registry import Generator
from models.checkpoint import CheckpointError, load_generator
from models.devices import pick_device
from models.motion import MotionEstimator
from models.symmetry import SelfEnsemble
from models.precision import auto_precision
from pipeline.config import DEFAULT_TILE_OVERLAP, PRECISIONS, ProcessConfig, default_model_path
from pipeline.errors import PipelineError, RunFailedError
from pipeline.tiling import run_tiled

log = logging.getLogger(__name__)

# Tiles tried, largest first, once a single frame no longer fits.
OOM_TILE_SIZES = (1024, 512, 256, 128)
CPU_BATCH_SIZE = 4
MAX_AUTO_BATCH = 16


def resolve_device(name: str = "auto") -> torch.device:
    """The device for ``--device name`` (:func:`models.devices.pick_device`)."""
    try:
        return pick_device(name)
    except ValueError as exc:
        raise PipelineError(str(exc)) from exc


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' is what :func:`models.precision.auto_precision` picks for the device: bf16 where
    the GPU or the CPU (AVX-512 BF16, AMX) runs it natively, fp16 on older GPUs, else fp32."""
    if name not in PRECISIONS:
        raise PipelineError(f"unknown precision {name!r} (choose from {', '.join(PRECISIONS)})")
    if name != "auto":
        return name
    choice = auto_precision(device)
    log.info("precision %s on %s: %s", choice.name, device, choice.reason)
    return choice.name


@dataclass
class _Plan:
    batch_size: int
    tile: int  # 0 = whole frames


class Restorer:
    """Restores batches of frames with a generator.

    Args:
        model: the generator (any ``in_frames``); moved to ``device`` and put in eval mode.
        device: where to run.
        precision: fp32, tf32, bf16 or fp16 (``auto`` resolved by the caller or here).
        batch_size: frames per model call; 0 picks one from free GPU memory (4 on CPU).
        tile: tile side in pixels, 0 for whole frames (OOM on GPU switches tiling on).
        tile_overlap: overlap between tiles, blended linearly.
        compile: run the model through ``torch.compile`` (batches are padded to a fixed size
            so it compiles once).
        cpu_threads: torch threads on the CPU (0 = leave torch's setting alone).
        strength: how much of the correction to apply, 0..1: the output is
            ``input + strength * (restored - input)`` (1 = the model's output, 0 = the input).
        ensemble: spatial variants of every input averaged (:class:`models.symmetry.SelfEnsemble`),
            1, 2, 4 or 8: that many times the network's cost for a little more quality.
    """

    def __init__(self, model: Generator, *, device: torch.device, precision: str = "auto",
                 batch_size: int = 0, tile: int = 0,
                 tile_overlap: int = DEFAULT_TILE_OVERLAP, compile: bool = False,
                 cpu_threads: int = 0, strength: float = 1.0, ensemble: int = 1) -> None:
        if not 0.0 <= strength <= 1.0:
            raise PipelineError(f"strength must be between 0 and 1, got {strength}")
        self.strength = strength
        self.device = device
        self.precision = resolve_precision(precision, device)
        if device.type == "cpu" and cpu_threads:
            torch.set_num_threads(cpu_threads)
        # NHWC is the fast layout of cuDNN and of oneDNN alike (CPU, 640x360, 2 threads:
        # fp32 4.7 -> 7.4 frames/s, bf16 7.8 -> 17.8; docs/benchmarks.md).
        self.model = model.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)
        if ensemble != 1:
            try:
                self.model = SelfEnsemble(self.model, ensemble)
            except ValueError as exc:
                raise PipelineError(f"--ensemble: {exc}") from exc
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        allow_tf32 = self.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        torch.backends.cudnn.allow_tf32 = allow_tf32
        self.in_frames = model.config.in_frames
        # Video models that take the motion to their neighbours get it from the frames here.
        self._motion = MotionEstimator.for_generator(model.config)
        self.tile_overlap = tile_overlap
        self._requested_batch = batch_size
        self._plan: _Plan | None = None
        self._requested_tile = tile
        self._pinned: Tensor | None = None
        self._compiled = compile
        # With fixed shapes (every batch padded to full size) torch.compile can also capture
        # CUDA graphs, removing the per-layer launch overhead that dominates small frames.
        self._forward = (torch.compile(self.model, mode="max-autotune" if device.type == "cuda"
                                       else "default", dynamic=False)
                         if compile else self.model)

    @property
    def context(self) -> int:
        """Neighbouring frames needed on each side of a restored frame."""
        return self.in_frames // 2

    def _autocast(self):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _initial_plan(self, height: int, width: int) -> _Plan:
        if self._requested_batch > 0:
            return _Plan(self._requested_batch, self._requested_tile)
        if self.device.type != "cuda":
            return _Plan(CPU_BATCH_SIZE, self._requested_tile)
        per_frame = self.model.activation_bytes(height, width)
        free, _ = torch.cuda.mem_get_info(self.device)
        batch = int(0.6 * free // max(per_frame, 1))
        return _Plan(max(1, min(MAX_AUTO_BATCH, batch)), self._requested_tile)

    def batch_size_for(self, height: int, width: int) -> int:
        """Frames per model call for this frame size (fixed on first use, lowered on OOM)."""
        if self._plan is None:
            self._plan = self._initial_plan(height, width)
        return self._plan.batch_size

    def restore(self, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Restore consecutive frames.

        Args:
            frames: N + 2*context (H, W, 3) uint8 or uint16 RGB frames, consecutive in time,
                as a list (stacked straight into the pinned upload buffer) or one array; the
                first and last ``context`` frames are neighbours only (replicate the edge
                frame at the start and end of a clip).
        Returns (N, H, W, 3) restored frames, same dtype.
        """
        count = len(frames) - 2 * self.context
        if count <= 0:
            raise ValueError(f"need more than {2 * self.context} frames, got {len(frames)}")
        height, width = frames[0].shape[:2]
        if self._plan is None:
            self._plan = self._initial_plan(height, width)
        max_value = float(np.iinfo(frames[0].dtype).max)
        results = []
        start = 0
        while start < count:
            size = min(self._plan.batch_size, count - start)
            window = frames[start:start + size + 2 * self.context]
            try:
                if self._compiled and size < self._plan.batch_size:
                    results.append(self._run_padded(window, size, max_value))
                else:
                    results.append(self._run(window, size, max_value))
            except torch.cuda.OutOfMemoryError:
                self._shrink_plan(height, width)
                continue
            start += size
        return np.concatenate(results) if len(results) > 1 else results[0]

    def _shrink_plan(self, height: int, width: int) -> None:
        torch.cuda.empty_cache()
        plan = self._plan
        if plan.batch_size > 1:
            plan.batch_size //= 2
            log.warning("out of GPU memory: batch size lowered to %d", plan.batch_size)
            return
        smaller = [t for t in OOM_TILE_SIZES if t < (plan.tile or max(height, width))]
        smaller = [t for t in smaller if t > self.tile_overlap]
        if not smaller:
            raise RunFailedError(
                f"out of GPU memory even for one {OOM_TILE_SIZES[-1]}px tile; "
                f"use --device cpu or a smaller model")
        plan.tile = smaller[0]
        log.warning("out of GPU memory: tiling frames with %dpx tiles", plan.tile)

    def _run_padded(self, window: Sequence[np.ndarray], size: int, max_value: float
                    ) -> np.ndarray:
        """Run a short last batch padded with its final frame, so compiled shapes stay fixed."""
        missing = self._plan.batch_size - size
        padded = list(window) + [window[-1]] * missing
        return self._run(padded, self._plan.batch_size, max_value)[:size]

    def _to_device(self, window: Sequence[np.ndarray]) -> Tensor:
        if self.device.type != "cuda":
            return torch.from_numpy(np.asarray(window) if isinstance(window, np.ndarray)
                                    else np.stack(window))
        shape = (len(window), *window[0].shape)
        # uint16 travels as int16 (same bytes; CUDA copies int16) and is unwrapped on the GPU.
        dtype = torch.int16 if window[0].dtype == np.uint16 else torch.uint8
        if self._pinned is None or self._pinned.shape != shape or self._pinned.dtype != dtype:
            self._pinned = torch.empty(shape, dtype=dtype, pin_memory=True)
        # Stack the frames straight into the pinned buffer: one host copy per batch. The
        # buffer is reused safely because each batch's result is downloaded (a sync) before
        # the next batch is stacked.
        np.stack(window, out=self._pinned.numpy().view(window[0].dtype))
        return self._pinned.to(self.device, non_blocking=True)

    @torch.inference_mode()
    def _run(self, window: Sequence[np.ndarray], size: int, max_value: float) -> np.ndarray:
        raw = self._to_device(window)                        # (M, H, W, 3) integer
        if raw.dtype == torch.int16:
            frames = raw.to(torch.int32).bitwise_and(0xFFFF).float()
        else:
            frames = raw.float()
        frames = frames.permute(0, 3, 1, 2).div_(max_value)  # (M, 3, H, W) in [0, 1]
        if self._motion is None:
            # Stack T consecutive frames on channels: (N, T*3, H, W), oldest first.
            stacked = torch.cat([frames[t:t + size] for t in range(self.in_frames)], dim=1)
        else:
            # The same, but neighbours from another shot are replaced by the frame itself, and
            # the flow to each neighbour follows the frames: (N, T*3 + 2*(T-1), H, W).
            order, motion = self._motion.windows(window, size)
            picked = frames[torch.from_numpy(order).to(self.device).flatten()]  # (N*T, 3, H, W)
            stacked = torch.cat([picked.reshape(size, -1, *frames.shape[-2:]),
                                 torch.from_numpy(motion).to(self.device, non_blocking=True)], dim=1)
        stacked = stacked.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            if self._plan.tile:
                restored = run_tiled(self.model, stacked, tile=self._plan.tile,
                                     overlap=self.tile_overlap)
            else:
                restored = self._forward(stacked)
        restored = restored.float()
        if self.strength != 1.0:  # blend with the input frame, on the device
            centre = frames[self.context:self.context + size]
            restored = torch.lerp(centre, restored, self.strength)
        out = restored.clamp_(0, 1).mul_(max_value).round_()
        out = out.permute(0, 2, 3, 1)
        if max_value > 255:
            out = out.to(torch.int32).cpu().numpy().astype(np.uint16)
        else:
            out = out.to(torch.uint8).cpu().numpy()
        return out


def load_model(path: Path | None, *, video: bool = True) -> Generator:
    """The generator from ``path``, or the model shipped in the repository for a video (or
    sequence of frames) or for a lone image (:func:`pipeline.config.default_model_path`)."""
    if path is None:
        path = default_model_path(video=video)
        if not path.exists():
            raise PipelineError(f"the default model {path} is missing from this checkout; "
                                f"pass --model FILE")
    try:
        return load_generator(path)
    except CheckpointError as exc:
        raise PipelineError(str(exc)) from exc


def make_restorer(config: ProcessConfig, model: Generator | None = None, *,
                  device: torch.device | None = None, video: bool = True) -> Restorer:
    """The Restorer a run uses: ``model`` or ``config.model`` (None = the shipped model for a
    video, or with ``video=False`` for a lone image), on ``device`` (default: ``config.device``)
    with the config's precision, batching, tiling, compilation, CPU threads, strength and
    ensemble. The
    one place a ProcessConfig becomes a Restorer, so one process and every Ray worker run the
    model the same way."""
    return Restorer(model if model is not None else load_model(config.model, video=video),
                    device=device if device is not None else resolve_device(config.device),
                    precision=config.precision, batch_size=config.batch_size, tile=config.tile,
                    tile_overlap=config.tile_overlap, compile=config.compile,
                    cpu_threads=cpu_threads(config.cpu_threads), strength=config.strength,
                    ensemble=config.ensemble)


def cpu_threads(requested: int) -> int:
    """Torch threads for CPU inference: by default one core is left to decoding and encoding,
    because OpenMP threads that spin-wait for a core FFmpeg is using slow every call down."""
    if requested >= 0:
        return requested
    return max(1, (os.cpu_count() or 2) - 1)
