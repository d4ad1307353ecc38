"""Throughput of the generator and of `pipeline process`, against the compute floor (issue 6).

For each model and frame size it measures, in one run on one device:

* model-only frames/s: synthetic frames already on the device, per precision and batch size,
  with FLOPs per frame counted by ``torch.utils.flop_counter`` (on the meta device, so counting
  costs nothing), the achieved TFLOP/s, and its fraction of the device's peak, measured here
  with a large bf16 matmul (fp32 on a CPU): the compute floor;
* end-to-end frames/s of ``pipeline.process_video`` (what ``python -m pipeline process`` runs:
  decode → model → H.264 CRF 18 medium encode, audio copied) on an encoded clip, and its ratio
  to the best model-only frames/s at the precision the pipeline picks;
* the same clip through a naive loop written the way existing tools do it (one frame per call,
  float conversion on the CPU, fp16 weights, a device sync after every frame, same encoder
  settings), and the pipeline's speed-up over it;
* decode-only and encode-only frames/s of the pipeline's reader and writer, which bound the
  end-to-end figure from above whatever the model does.

A table is printed last (device, torch version, date, targets PASS/FAIL with margins) and
everything goes to a JSON file. Exit status 1 when a target that applies to this run fails.

    python benchmarks/throughput.py                         # GPU: the full issue-6 sweep
    python benchmarks/throughput.py --quick --device cpu --threads 1  # a seconds-long smoke run
    python benchmarks/throughput.py --table RESULTS.json   # the table of an earlier run

The JSON is rewritten after each stage (``"partial": true``), so a run stopped by a time limit
keeps what it measured; clips run first and the 23-block full-resolution model last.

Models: ``default`` is the shipped model (models/weights/default.safetensors), or random
weights of the architecture in models/configs/default.yaml when none ships yet (speed does not
depend on the weights); ``rrdb23-d1`` is ESRGAN's 23-block trunk at full resolution and
``rrdb23-d4`` the same trunk pixel-unshuffled by 4; a path to a .safetensors file also works.
``--quick`` swaps the 23-block models for ``tiny-d1`` / ``tiny-d4`` stand-ins and tiny sizes;
targets are then reported as n/a.

Each model-only measurement is warmed up (cuDNN picks its algorithms on the first call), then
times as many calls as make ``--frames`` frames, capped at ``--max-seconds``; a batch size whose
single call would take longer than that is skipped with a row saying so, as are precisions the
device lacks and batch sizes above one that ran out of memory.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models import GeneratorConfig, RRDBNet, load_generator, save_generator  # noqa: E402
from pipeline import EncoderSettings, ProcessConfig, process_video  # noqa: E402
from pipeline.config import DEFAULT_MODEL_PATH  # noqa: E402
from pipeline.ordered import conversion_threads, ordered_map  # noqa: E402
from models.precision import native_cpu_bf16  # noqa: E402
from pipeline.restorer import resolve_precision  # noqa: E402
from pipeline.video_reader import FrameReader, probe  # noqa: E402
from pipeline.video_writer import VideoWriter  # noqa: E402

log = logging.getLogger("benchmarks.throughput")

# Issue 6 targets.
TARGET_E2E_VS_MODEL = 0.9        # end-to-end ≥ 0.9 × model-only frames/s (default model, 1080p)
TARGET_PEAK_FRACTION = 0.5       # 23-block full-resolution RRDBNet ≥ 50 % of the bf16 peak
TARGET_NAIVE_SPEEDUP = 5.0       # ≥ 5 × the naive loop's frames/s, same model
TARGET_E2E_FPS = 60.0            # default model ≥ 60 frames/s end-to-end, 1080p H.264
TARGET_SIZE = "1920x1080"
TARGET_GPUS = ("H100", "H200")

# The encoder settings of the pipeline's default for 8-bit input, used by the naive loop too.
ENCODER = EncoderSettings(codec="libx264", crf=18, preset="medium")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Large enough to reach the dense peak: a 512³ fp32 matmul on a CPU is cache- and
# overhead-bound, and the model then measured 243 % of that "peak" on a 2-core VM.
PEAK_MATMUL_SIZE = {"cuda": 8192, "cpu": 2048}
PEAK_REPS = {"cuda": 50, "cpu": 3}
PEAK_ROUNDS = 3
CLIP_FPS = 30
# Shortest timed model-only loop: a few fast calls are too short to trust.
MIN_TIMED_SECONDS = 0.5
# Encode-only holds its frames in memory first (600 1080p frames: 3.7 GB).
ENCODE_ONLY_MAX_FRAMES = 600

DEFAULT_CONFIG_YAML = ROOT / "models" / "configs" / "default.yaml"
# The default architecture when neither the shipped model nor its training config exists.
FALLBACK_DEFAULT = GeneratorConfig(num_feat=32, num_block=4, num_grow_ch=16, downscale=4)
ESRGAN_TRUNK = GeneratorConfig(num_feat=64, num_block=23, num_grow_ch=32)
TINY_TRUNK = GeneratorConfig(num_feat=8, num_block=1, num_grow_ch=4)
NAMED_MODELS = {
    "rrdb23-d1": dataclasses.replace(ESRGAN_TRUNK, downscale=1),
    "rrdb23-d4": dataclasses.replace(ESRGAN_TRUNK, downscale=4),
    "tiny-d1": dataclasses.replace(TINY_TRUNK, downscale=1),
    "tiny-d4": dataclasses.replace(TINY_TRUNK, downscale=4),
}
FULL_RES_MODEL = "rrdb23-d1"
# --quick runs these in place of the 23-block models; targets on stand-ins are n/a.
STAND_INS = {"rrdb23-d1": "tiny-d1", "rrdb23-d4": "tiny-d4"}


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run (filled from the command line)."""

    device: str                       # cuda, cuda:N or cpu
    sizes: tuple[tuple[int, int], ...]  # (width, height) of the frames
    models: tuple[str, ...]           # model names (see NAMED_MODELS) or checkpoint paths
    precisions: tuple[str, ...]       # model-only precisions
    batch_sizes: tuple[int, ...]      # model-only batch sizes, ascending
    frames: int                       # frames per model-only timing (fewer if --max-seconds hits)
    warmup: int                       # untimed calls before each model-only timing
    max_seconds: float                # cap on one timed model-only loop
    compile_mode: str | None          # torch.compile mode for extra model-only rows; None = off
    e2e_models: tuple[str, ...]       # models run end to end and through the naive loop
    e2e_precision: str                # pipeline precision (auto = what users get)
    e2e_batch_size: int               # pipeline batch size (0 = auto)
    clip: Path | None                 # a real clip instead of synthetic ones
    clip_seconds: float               # length of each synthetic clip
    clip_fps: int                     # frame rate of each synthetic clip
    threads: int                      # torch CPU threads; 0 = torch's default
    json_path: Path
    quick: bool


@dataclass
class Entry:
    """A model under test: CPU weights, a checkpoint for the pipeline, where it came from."""

    name: str
    model: RRDBNet
    checkpoint: Path
    source: str


# ---------------------------------------------------------------------------------------------
# Command line


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WIDTHxHEIGHT") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return width, height


def _listed(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/throughput.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when present)")
    parser.add_argument("--sizes", help="frame sizes, e.g. 1280x720,1920x1080 (the default)")
    parser.add_argument("--models", help="default,rrdb23-d1,rrdb23-d4 (the default), tiny-d1, "
                                         "tiny-d4, or .safetensors paths")
    parser.add_argument("--precisions", help="fp32,tf32,bf16,fp16 (the default)")
    parser.add_argument("--batch-sizes", help="model-only batch sizes (default 1,4,8,16)")
    parser.add_argument("--frames", type=int, help="frames per model-only timing (default 64)")
    parser.add_argument("--warmup", type=int, help="untimed calls before each timing (default 3)")
    parser.add_argument("--max-seconds", type=float,
                        help="cap on each timed model-only loop; batch sizes whose one call "
                             "would take longer are skipped (default 4)")
    parser.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                        help="also time torch.compile'd models (mode default, reduce-overhead, "
                             "max-autotune, max-autotune-no-cudagraphs), at each precision's "
                             "best eager batch size")
    parser.add_argument("--e2e-models", help="models run end to end and through the naive loop "
                                             "(default: default,rrdb23-d4; 'all' = --models; 'none')")
    parser.add_argument("--e2e-precision", default="auto",
                        help="precision given to the pipeline (default auto: bf16 where the GPU or CPU runs it natively)")
    parser.add_argument("--e2e-batch-size", type=int, default=0,
                        help="batch size given to the pipeline (default 0: automatic)")
    parser.add_argument("--clip", type=Path, help="a real clip for end to end runs instead of "
                                                  "synthetic ones at each --sizes")
    parser.add_argument("--clip-seconds", type=float, help="synthetic clip length (default 10)")
    parser.add_argument("--clip-fps", type=int, help=f"synthetic clip frame rate (default {CLIP_FPS})")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default 0: torch's choice); 1 keeps a CPU run "
                             "on a busy machine from stalling in OpenMP barriers")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "throughput.json",
                        help="where to write the results (default benchmarks/throughput.json)")
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke run: 64x48 frames, tiny stand-in models, few frames")
    args = parser.parse_args(argv)

    quick = args.quick
    preset = {
        "sizes": "64x48" if quick else "1280x720,1920x1080",
        "models": "default,tiny-d1,tiny-d4" if quick else "default,rrdb23-d1,rrdb23-d4",
        "precisions": ",".join(PRECISIONS),
        "batch_sizes": "1,2" if quick else "1,4,8,16",
        "frames": 4 if quick else 64,
        "warmup": 2 if quick else 3,
        "max_seconds": 1.0 if quick else 4.0,
        "e2e_models": "default,tiny-d4" if quick else "default,rrdb23-d4",
        "clip_seconds": 1.0 if quick else 10.0,
        "clip_fps": 12 if quick else CLIP_FPS,
    }

    def pick(name: str):
        value = getattr(args, name)
        return preset[name] if value is None else value

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.device(device)
    except RuntimeError:
        parser.error(f"unknown device {device!r} (use cuda, cuda:N or cpu)")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"device {device!r} requested but CUDA is not available here")
    try:
        sizes = tuple(_size(s) for s in _listed(pick("sizes")))
        batch_sizes = tuple(sorted({int(b) for b in _listed(pick("batch_sizes"))}))
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(str(exc))
    precisions = tuple(_listed(pick("precisions")))
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"unknown precision(s) {', '.join(unknown)} (choose from {', '.join(PRECISIONS)})")
    if not batch_sizes or batch_sizes[0] < 1:
        parser.error("--batch-sizes must be positive integers")
    models = tuple(_listed(pick("models")))
    e2e_text = pick("e2e_models")
    named = {"all": models, "none": ()}
    e2e_models = named[e2e_text] if e2e_text in named else tuple(_listed(e2e_text))
    for name in models + e2e_models:
        if name != "default" and name not in NAMED_MODELS and not name.endswith(".safetensors"):
            parser.error(f"unknown model {name!r} (default, {', '.join(NAMED_MODELS)}, "
                         f"or a .safetensors path)")
    if args.clip is not None and not args.clip.is_file():
        parser.error(f"{args.clip}: no such file")
    if args.e2e_precision not in ("auto",) + PRECISIONS:
        parser.error(f"unknown --e2e-precision {args.e2e_precision!r} "
                     f"(choose from auto, {', '.join(PRECISIONS)})")
    if args.threads < 0:
        parser.error("--threads must be ≥ 0")
    if pick("frames") < 1 or pick("warmup") < 0 or pick("max_seconds") <= 0:
        parser.error("--frames must be ≥ 1, --warmup ≥ 0 and --max-seconds > 0")
    return BenchConfig(
        device=device, sizes=sizes, models=models, precisions=precisions,
        batch_sizes=batch_sizes, frames=pick("frames"), warmup=pick("warmup"),
        max_seconds=pick("max_seconds"), compile_mode=args.compile, e2e_models=e2e_models,
        e2e_precision=args.e2e_precision, e2e_batch_size=args.e2e_batch_size, clip=args.clip,
        clip_seconds=pick("clip_seconds"), clip_fps=pick("clip_fps"), threads=args.threads,
        json_path=args.json, quick=quick)


# ---------------------------------------------------------------------------------------------
# Models and FLOPs


def _default_architecture() -> tuple[GeneratorConfig, str]:
    if DEFAULT_CONFIG_YAML.exists():
        import yaml

        section = yaml.safe_load(DEFAULT_CONFIG_YAML.read_text())["generator"]
        return GeneratorConfig(**section), (
            f"random weights, architecture of {DEFAULT_CONFIG_YAML.relative_to(ROOT)} "
            f"({DEFAULT_MODEL_PATH.relative_to(ROOT)} is not in this checkout)")
    return FALLBACK_DEFAULT, (
        f"random weights, built-in fallback architecture (neither "
        f"{DEFAULT_MODEL_PATH.relative_to(ROOT)} nor {DEFAULT_CONFIG_YAML.relative_to(ROOT)} "
        f"is in this checkout)")


def load_entry(name: str, workdir: Path) -> Entry:
    """The model called ``name`` on the CPU, with a checkpoint file the pipeline can load."""
    if name == "default" and DEFAULT_MODEL_PATH.exists():
        return Entry(name, load_generator(DEFAULT_MODEL_PATH), DEFAULT_MODEL_PATH,
                     str(DEFAULT_MODEL_PATH.relative_to(ROOT)))
    if name.endswith(".safetensors"):
        return Entry(name, load_generator(name), Path(name), name)
    if name == "default":
        config, source = _default_architecture()
    else:
        config, source = NAMED_MODELS[name], "random weights"
    torch.manual_seed(0)
    model = RRDBNet(config).eval()
    checkpoint = workdir / f"{name}.safetensors"
    save_generator(model, checkpoint)
    return Entry(name, model, checkpoint, source)


def count_flops(model: RRDBNet, width: int, height: int) -> int:
    """FLOPs of one frame through ``model`` (2 per multiply-accumulate), counted on the meta
    device: shapes only, no arithmetic, so even a 69-TFLOP frame counts instantly."""
    meta = copy.deepcopy(model).to("meta")
    frame = torch.empty(1, model.config.in_channels, height, width, device="meta")
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        meta(frame)
    return int(counter.get_total_flops())


# ---------------------------------------------------------------------------------------------
# Timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def unsupported(precision: str, device: torch.device) -> str | None:
    """Why ``precision`` is not measured on ``device``, or None."""
    if device.type != "cuda":
        if precision == "tf32":
            return "tf32 is a CUDA tensor-core mode"
        if precision == "bf16" and native_cpu_bf16() is None:
            return "this CPU has no native bf16 (avx512_bf16 or amx_bf16): the pipeline runs fp32 here"
        if precision == "fp16":
            return "fp16 is measured on GPUs only"
        return None
    if precision == "tf32" and torch.cuda.get_device_capability(device)[0] < 8:
        return "tf32 needs an Ampere or newer GPU"
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bf16"
    return None


@contextmanager
def precision_mode(precision: str, device: torch.device) -> Iterator[None]:
    """TF32 switches and autocast as :class:`pipeline.restorer.Restorer` sets them."""
    allow_tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    dtype = HALF_DTYPES.get(precision)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        yield


@dataclass(frozen=True)
class Timing:
    frames: int
    seconds: float
    first_call_seconds: float  # includes cuDNN autotuning, or compilation

    @property
    def fps(self) -> float:
        return self.frames / self.seconds


def time_model(net: Callable, batch: int, width: int, height: int, channels: int, *,
               device: torch.device, precision: str, warmup: int, frames: int,
               max_seconds: float) -> Timing:
    """Frames/s of ``net`` on synthetic frames already on ``device``.

    One sync before and one after the timed loop, none inside it: the GPU queue stays full,
    as in the pipeline. Warm-up calls are synced one by one to estimate a call's time, which
    sets how many calls to time: at least ``frames`` frames and ``MIN_TIMED_SECONDS``, at most
    ``max_seconds`` (but always one call).
    """
    shape = (batch, channels, height, width)
    # (N, C, H, W) in [0, 1], stored channels-last as the pipeline's frames are (they come from
    # (N, H, W, C) pixels; on a CPU too, where oneDNN is much faster on that layout).
    batch_f32 = torch.rand(shape, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), precision_mode(precision, device):
        first = call = None
        spent = 0.0
        for done in range(1, max(1, warmup) + 1):
            started = time.perf_counter()
            net(batch_f32)
            _sync(device)
            call = time.perf_counter() - started
            first = call if first is None else first
            spent += call
            # The first call is an outlier (autotuning, compiling); estimate from the second.
            if done >= 2 and spent > max_seconds / 2:
                break
        # Enough calls for `frames` frames and for a timing long enough to trust, within the cap.
        min_seconds = min(MIN_TIMED_SECONDS, max_seconds / 4)
        wanted = max(math.ceil(frames / batch), math.ceil(min_seconds / call))
        calls = max(1, min(wanted, int(max_seconds / call)))
        _sync(device)
        started = time.perf_counter()
        for _ in range(calls):
            net(batch_f32)
        _sync(device)
        seconds = time.perf_counter() - started
    return Timing(frames=calls * batch, seconds=seconds, first_call_seconds=first)


def measure_peak(device: torch.device) -> dict:
    """The device's dense matmul peak in TFLOP/s: bf16 on a GPU, fp32 on a CPU (best of rounds).

    On a CPU the matmul runs on every core this process may use, whatever ``--threads`` says,
    so "of peak" is a share of the machine, as it is of the whole GPU.
    """
    kind = "cuda" if device.type == "cuda" else "cpu"
    if kind == "cpu":
        threads = torch.get_num_threads()
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        try:
            return {**_matmul_peak(device, kind), "threads": torch.get_num_threads()}
        finally:
            torch.set_num_threads(threads)
    return _matmul_peak(device, kind)


def _matmul_peak(device: torch.device, kind: str) -> dict:
    dtype = torch.bfloat16 if kind == "cuda" else torch.float32
    n, reps = PEAK_MATMUL_SIZE[kind], PEAK_REPS[kind]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)
    for _ in range(2):
        torch.matmul(a, b, out=c)
    best = 0.0
    for _ in range(PEAK_ROUNDS):
        _sync(device)
        started = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b, out=c)
        _sync(device)
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - started) / 1e12)
    del a, b, c
    return {"dtype": "bf16" if dtype is torch.bfloat16 else "fp32", "matmul_size": n,
            "reps": reps, "tflops": best}


def _to_device(model: RRDBNet, device: torch.device) -> RRDBNet:
    net = copy.deepcopy(model).eval().requires_grad_(False).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    return net


def _model_row(entry: Entry, size: str, precision: str, batch: int | None, **fields) -> dict:
    return {"kind": "model-only", "model": entry.name, "size": size, "precision": precision,
            "batch": batch, "compiled": None, "status": "ok", "reason": None, **fields}


def _ok_fields(timing: Timing, flops: int, peak: float) -> dict:
    tflops = timing.fps * flops / 1e12
    return {"frames": timing.frames, "seconds": timing.seconds, "fps": timing.fps,
            "ms_per_frame": 1000 / timing.fps, "tflops": tflops, "of_peak": tflops / peak,
            "first_call_seconds": timing.first_call_seconds}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:200]


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def model_only_rows(entry: Entry, cfg: BenchConfig, device: torch.device,
                    flops: dict[str, int], peak: float) -> list[dict]:
    """Every (size, precision, batch) of one model, plus compiled rows when asked."""
    rows: list[dict] = []
    net = _to_device(entry.model, device)
    channels = entry.model.config.in_channels
    for width, height in cfg.sizes:
        size = f"{width}x{height}"
        for precision in cfg.precisions:
            reason = unsupported(precision, device)
            if reason:
                rows.append(_model_row(entry, size, precision, None, status="skipped", reason=reason))
                continue
            ok: list[dict] = []
            per_frame: float | None = None
            stop: str | None = None
            for batch in cfg.batch_sizes:
                skip = stop
                if skip is None and per_frame is not None and per_frame * batch > cfg.max_seconds:
                    skip = (f"one call would take ~{per_frame * batch:.1f} s "
                            f"(> --max-seconds {cfg.max_seconds:g})")
                if skip is not None:
                    rows.append(_model_row(entry, size, precision, batch, status="skipped",
                                           reason=skip))
                    continue
                log.info("model-only %s %s %s batch %d", entry.name, size, precision, batch)
                try:
                    timing = time_model(net, batch, width, height, channels, device=device,
                                        precision=precision, warmup=cfg.warmup,
                                        frames=cfg.frames, max_seconds=cfg.max_seconds)
                except torch.cuda.OutOfMemoryError:
                    rows.append(_model_row(entry, size, precision, batch, status="OOM",
                                           reason="out of GPU memory"))
                    stop = f"batch {batch} ran out of GPU memory"
                except RuntimeError as exc:  # e.g. a kernel missing for this shape: a result here
                    rows.append(_model_row(entry, size, precision, batch, status="error",
                                           reason=_one_line(exc)))
                    stop = f"batch {batch} failed"
                if stop is not None:
                    _free(device)  # after the except block, which held the failed call's tensors
                    continue
                per_frame = timing.seconds / timing.frames
                row = _model_row(entry, size, precision, batch,
                                 **_ok_fields(timing, flops[size], peak))
                rows.append(row)
                ok.append(row)
            if cfg.compile_mode and ok:
                best = max(ok, key=lambda r: r["fps"])
                rows.append(_compiled_row(entry, net, best, width, height, channels, cfg,
                                          device, flops[size], peak))
            _free(device)
    del net
    _free(device)
    return rows


def _compiled_row(entry: Entry, net: RRDBNet, best: dict, width: int, height: int,
                  channels: int, cfg: BenchConfig, device: torch.device, flops: int,
                  peak: float) -> dict:
    """One torch.compile'd measurement at the best eager batch size of this precision."""
    size, precision, batch = best["size"], best["precision"], best["batch"]
    mode = None if cfg.compile_mode == "default" else cfg.compile_mode
    log.info("compiled (%s) %s %s %s batch %d", cfg.compile_mode, entry.name, size, precision, batch)
    # A fresh compile per measurement: the compile cache is per code object and falls back to
    # eager after a few shapes, which would silently time the eager model.
    torch._dynamo.reset()
    try:
        compiled = torch.compile(net, mode=mode, dynamic=False)
        timing = time_model(compiled, batch, width, height, channels, device=device,
                            precision=precision, warmup=max(2, cfg.warmup), frames=cfg.frames,
                            max_seconds=cfg.max_seconds)
    except torch.cuda.OutOfMemoryError:
        return _model_row(entry, size, precision, batch, compiled=cfg.compile_mode,
                          status="OOM", reason="out of GPU memory")
    except Exception as exc:  # recorded in the table: a compile failure is a result here
        return _model_row(entry, size, precision, batch, compiled=cfg.compile_mode,
                          status="error", reason=_one_line(exc))
    finally:
        torch._dynamo.reset()
    return _model_row(entry, size, precision, batch, compiled=cfg.compile_mode,
                      **_ok_fields(timing, flops, peak))


# ---------------------------------------------------------------------------------------------
# End to end, naive loop, decode and encode alone


def make_synthetic_clip(path: Path, width: int, height: int, seconds: float, fps: int) -> int:
    """An H.264 clip with AAC audio (what `pipeline process` copies); returns its frame count."""
    from tests.media import make_clip

    frames = max(1, round(seconds * fps))
    make_clip(path, frames=frames, width=width, height=height, fps=fps, audio="aac",
              options={"preset": "ultrafast"})
    return frames


def _packets(path: Path, kind: str) -> int:
    """Packets of one stream type in a file: each video packet is one frame for H.264."""
    from tests.media import packet_counts

    return packet_counts(path).get(kind, 0)


def end_to_end_row(entry: Entry, clip: Path, clip_frames: int, size: str, cfg: BenchConfig,
                   device: torch.device, workdir: Path) -> dict:
    """`process_video` twice on the clip in this process; the second, warm run is the figure
    (the first pays for cuDNN autotuning, as a long video would only once)."""
    output = workdir / f"e2e-{entry.name.replace('/', '_')}-{size}.mp4"
    config = ProcessConfig(model=entry.checkpoint, device=str(device), precision=cfg.e2e_precision,
                           batch_size=cfg.e2e_batch_size, encoder=ENCODER, progress=False,
                           overwrite=True)
    log.info("end to end %s %s (%d frames)", entry.name, size, clip_frames)
    cold = process_video(clip, output, config=config)
    warm = process_video(clip, output, config=config)
    row = {"kind": "end-to-end", "model": entry.name, "size": size,
           "precision": resolve_precision(cfg.e2e_precision, device),
           "batch": cfg.e2e_batch_size or "auto", "clip_frames": clip_frames,
           "frames": warm.frames, "output_frames": _packets(output, "video"),
           "audio_packets": _packets(output, "audio"), "seconds": warm.seconds, "fps": warm.fps,
           "cold_seconds": cold.seconds, "codec": warm.codec, "status": "ok", "reason": None}
    output.unlink()
    return row


def naive_row(entry: Entry, clip: Path, clip_frames: int, size: str, device: torch.device,
              workdir: Path) -> dict:
    """The clip through a loop written the way existing tools do it, same model and encoder.

    One frame per call; uint8 → float32 /255 on the CPU; the float frame copied to the device
    and cast to fp16 (fp32 on a CPU) for fp16 weights; a sync after every frame; the result
    copied back as float and converted to uint8 on the CPU; decode, model and encode in
    sequence. The decoder uses FFmpeg's frame threads as the pipeline's does, so the ratio
    measures the GPU hot path and the overlap of the stages, not decoder threading. No audio
    is copied (existing tools often drop it), which only makes the naive loop faster.
    """
    if entry.model.config.in_frames != 1:
        return {"kind": "naive", "model": entry.name, "size": size, "status": "skipped",
                "reason": "the naive loop feeds one frame per call; this model needs several"}
    half = device.type == "cuda"
    net = copy.deepcopy(entry.model).eval().to(device)
    if half:
        net = net.half()
    output = workdir / f"naive-{entry.name.replace('/', '_')}-{size}.mp4"
    log.info("naive loop %s %s (%d frames)", entry.name, size, clip_frames)

    def restore(rgb: np.ndarray) -> np.ndarray:
        blurry = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
        blurry = blurry.to(device)
        if half:
            blurry = blurry.half()
        with torch.no_grad():
            restored = net(blurry)
        _sync(device)
        restored_f32 = restored.float().cpu().numpy()[0].transpose(1, 2, 0)
        return (np.clip(restored_f32, 0.0, 1.0) * 255.0).round().astype(np.uint8)

    info = probe(clip)
    restore(np.zeros((info.height, info.width, 3), np.uint8))  # warm, as the pipeline's run is
    started = time.perf_counter()
    count = 0
    with av.open(str(clip)) as source, av.open(str(output), "w") as sink:
        video = source.streams.video[0]
        video.thread_type = "AUTO"
        rate = video.average_rate or Fraction(CLIP_FPS)
        stream = sink.add_stream(ENCODER.codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        stream.options = {"crf": str(ENCODER.crf), "preset": ENCODER.preset}
        for frame in source.decode(video):
            out = av.VideoFrame.from_ndarray(restore(frame.to_ndarray(format="rgb24")),
                                             format="rgb24")
            out.pts, out.time_base = count, 1 / rate
            for packet in stream.encode(out):
                sink.mux(packet)
            count += 1
        for packet in stream.encode():
            sink.mux(packet)
    seconds = time.perf_counter() - started
    row = {"kind": "naive", "model": entry.name, "size": size,
           "precision": "fp16" if half else "fp32", "batch": 1, "clip_frames": clip_frames,
           "frames": count, "output_frames": _packets(output, "video"), "seconds": seconds,
           "fps": count / seconds, "status": "ok", "reason": None}
    output.unlink()
    del net
    _free(device)
    return row


def io_rows(clip: Path, clip_frames: int, size: str, workdir: Path) -> list[dict]:
    """Decode-only (the pipeline's reader, RGB out) and encode-only (its writer, same settings
    as end to end, audio copied) frames/s: ceilings on the end-to-end figure. Both convert
    colours on as many threads as the pipeline does on this machine."""
    threads = conversion_threads()
    reader = FrameReader(clip, convert_threads=threads)
    frames = []
    decoded = 0
    started = time.perf_counter()
    for frame in reader.frames():
        decoded += 1
        if len(frames) < ENCODE_ONLY_MAX_FRAMES:  # held in memory for the encoder alone
            frames.append(frame)
    decode_s = time.perf_counter() - started
    output = workdir / f"encode-only-{size}.mp4"
    started = time.perf_counter()
    writer = VideoWriter(output, reader.info, colour=reader.colour,
                         display_matrix=reader.display_matrix, settings=ENCODER)
    for video_frame, pts in ordered_map(lambda f: (writer.convert(f.rgb), f.pts), frames, threads):
        writer.write_frame(video_frame, pts)
    written = writer.close()
    encode_s = time.perf_counter() - started
    output.unlink()
    common = {"model": None, "size": size, "precision": None, "batch": None,
              "clip_frames": clip_frames, "status": "ok", "reason": None,
              "convert_threads": threads}
    return [
        {"kind": "decode-only", **common, "frames": decoded, "seconds": decode_s,
         "fps": decoded / decode_s},
        {"kind": "encode-only", **common, "frames": written, "seconds": encode_s,
         "fps": written / encode_s},
    ]


# ---------------------------------------------------------------------------------------------
# Ratios and targets


def _best_model_only(rows: list[dict], model: str, size: str, precision: str | None = None,
                     eager_only: bool = True) -> dict | None:
    candidates = [r for r in rows if r["kind"] == "model-only" and r["status"] == "ok"
                  and r["model"] == model and r["size"] == size
                  and (precision is None or r["precision"] == precision)
                  and (not eager_only or r["compiled"] is None)]
    return max(candidates, key=lambda r: r["fps"], default=None)


def add_ratios(rows: list[dict]) -> None:
    """End-to-end ÷ best eager model-only at the pipeline's precision; end-to-end ÷ naive."""
    for row in rows:
        if row["kind"] == "end-to-end":
            best = _best_model_only(rows, row["model"], row["size"], row["precision"])
            row["model_only_fps"] = best["fps"] if best else None
            row["vs_model_only"] = row["fps"] / best["fps"] if best else None
    for row in rows:
        if row["kind"] == "naive" and row["status"] == "ok":
            e2e = next((r for r in rows if r["kind"] == "end-to-end" and r["model"] == row["model"]
                        and r["size"] == row["size"]), None)
            row["e2e_fps"] = e2e["fps"] if e2e else None
            row["speedup"] = e2e["fps"] / row["fps"] if e2e else None


def _target(ident: str, text: str, value: float | None, threshold: float, applies: str | None,
            detail: str) -> dict:
    """``applies`` is None when this run measures the target as stated, else why it does not."""
    if value is None:
        status, margin = "n/a", None
    else:
        margin = value / threshold - 1
        status = "n/a" if applies else ("PASS" if value >= threshold else "FAIL")
    return {"id": ident, "target": text, "value": value, "threshold": threshold,
            "margin": margin, "status": status,
            "detail": f"{detail}; {applies}" if applies else detail}


def evaluate_targets(report: dict) -> list[dict]:
    rows, device = report["rows"], report["device"]
    sizes = sorted({r["size"] for r in rows if r.get("size")},
                   key=lambda s: int(s.split("x")[0]) * int(s.split("x")[1]))
    size = TARGET_SIZE if TARGET_SIZE in sizes else (sizes[-1] if sizes else TARGET_SIZE)
    where = None if size == TARGET_SIZE else f"measured at {size}, the target is at {TARGET_SIZE}"
    on_gpu = device.startswith("cuda")
    full_res = STAND_INS[FULL_RES_MODEL] if report["quick"] else FULL_RES_MODEL
    stand_in = f"{full_res} stands in for {FULL_RES_MODEL}" if report["quick"] else None

    def row(kind: str, model: str) -> dict | None:
        return next((r for r in rows if r["kind"] == kind and r["model"] == model
                     and r["size"] == size and r["status"] == "ok"), None)

    e2e, naive = row("end-to-end", "default"), row("naive", "default")
    targets = [
        _target("e2e-vs-model-only",
                f"default model end to end ≥ {TARGET_E2E_VS_MODEL:g} × model-only frames/s "
                f"at {TARGET_SIZE}",
                e2e.get("vs_model_only") if e2e else None, TARGET_E2E_VS_MODEL, where,
                f"{e2e['fps']:.1f} vs {e2e['model_only_fps']:.1f} frames/s ({e2e['precision']})"
                if e2e and e2e.get("model_only_fps") else "no end-to-end or model-only row"),
    ]
    peak_precision = report["peak"]["dtype"]
    best = _best_model_only(rows, full_res, size, peak_precision, eager_only=False)
    targets.append(_target(
        "full-res-of-peak",
        f"{FULL_RES_MODEL} ≥ {TARGET_PEAK_FRACTION:.0%} of the measured bf16 peak at {TARGET_SIZE}",
        best["of_peak"] if best else None, TARGET_PEAK_FRACTION,
        where or stand_in or (None if on_gpu else "the bf16 peak is a GPU figure"),
        f"{best['tflops']:.3g} of {report['peak']['tflops']:.3g} TFLOP/s ({peak_precision} "
        f"peak), batch {best['batch']}{', compiled' if best['compiled'] else ''}"
        if best else f"no {peak_precision} model-only row for {full_res}"))
    targets.append(_target(
        "vs-naive", f"default model ≥ {TARGET_NAIVE_SPEEDUP:g} × the naive loop's frames/s",
        naive.get("speedup") if naive else None, TARGET_NAIVE_SPEEDUP, where,
        f"{naive['e2e_fps']:.1f} vs {naive['fps']:.1f} frames/s"
        if naive and naive.get("e2e_fps") else "no naive or end-to-end row"))
    gpu_name = report["device_name"]
    not_target_gpu = (None if any(g in gpu_name for g in TARGET_GPUS)
                      else f"the target is for an H100/H200, this is {gpu_name}")
    targets.append(_target(
        "e2e-fps", f"default model ≥ {TARGET_E2E_FPS:g} frames/s end to end, {TARGET_SIZE} H.264",
        e2e["fps"] if e2e else None, TARGET_E2E_FPS,
        where or (not_target_gpu if on_gpu else "the target is for a GPU"),
        f"{e2e['frames']} frames in {e2e['seconds']:.2f} s" if e2e else "no end-to-end row"))
    return targets


# ---------------------------------------------------------------------------------------------
# Report


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def format_report(report: dict) -> str:
    lines = [
        f"unsmear throughput — {report['date']}",
        f"device: {report['device']} ({report['device_name']}); torch {report['torch']}"
        f"{'; CUDA ' + report['cuda'] if report['cuda'] else ''}"
        f"{'; cuDNN ' + str(report['cudnn']) if report['cudnn'] else ''}; "
        f"PyAV {report['av']}; {report['cpus']} CPUs",
        f"peak: {report['peak']['tflops']:.3g} TFLOP/s ({report['peak']['dtype']} "
        f"{report['peak']['matmul_size']}³ matmul"
        f"{', %d threads' % report['peak']['threads'] if 'threads' in report['peak'] else ''})",
        "",
        "models (FLOPs counted per frame; floor = frames/s at the measured peak):",
    ]
    for name, m in report["models"].items():
        arch = m["arch"]
        lines.append(f"  {name}: {arch['num_block']} blocks × {arch['num_feat']} features "
                     f"(growth {arch['num_grow_ch']}), downscale {arch['downscale']}, "
                     f"{m['params'] / 1e6:.2f} M params — {m['source']}")
        for size, flops in m["flops_per_frame"].items():
            lines.append(f"    {size}: {flops / 1e12:.3g} TFLOP/frame, floor "
                         f"{m['floor_fps'][size]:.4g} frames/s")
    lines += ["", "model-only (synthetic frames on the device):",
              f"  {'model':<12} {'size':>9} {'prec':>5} {'batch':>5} {'compiled':>9} "
              f"{'frames/s':>9} {'ms/frame':>9} {'TFLOP/s':>8} {'of peak':>8}  status"]
    for r in report["rows"]:
        if r["kind"] != "model-only":
            continue
        ok = r["status"] == "ok"
        lines.append(
            f"  {r['model']:<12} {r['size']:>9} {r['precision']:>5} {_fmt(r['batch'], 'd'):>5} "
            f"{r['compiled'] or '-':>9} {_fmt(r.get('fps'), '.2f'):>9} "
            f"{_fmt(r.get('ms_per_frame'), '.2f'):>9} {_fmt(r.get('tflops'), '.3g'):>8} "
            f"{_fmt(r.get('of_peak'), '.1%'):>8}  {'ok' if ok else r['status'] + ': ' + r['reason']}")
    lines += ["", "clips (decode → model → encode; H.264 CRF 18 medium, audio copied):",
              f"  {'kind':<12} {'model':<12} {'size':>9} {'prec':>5} {'batch':>5} {'frames':>7} "
              f"{'seconds':>8} {'frames/s':>9}  ratio"]
    for r in report["rows"]:
        if r["kind"] == "model-only":
            continue
        if r["status"] != "ok":
            lines.append(f"  {r['kind']:<12} {r['model'] or '-':<12} {r['size']:>9}  "
                         f"{r['status']}: {r['reason']}")
            continue
        ratio = ""
        if r["kind"] == "end-to-end" and r.get("vs_model_only") is not None:
            ratio = f"{r['vs_model_only']:.2f} × model-only ({r['model_only_fps']:.1f} frames/s)"
        elif r["kind"] == "naive" and r.get("speedup") is not None:
            ratio = f"pipeline ÷ naive = {r['speedup']:.2f}"
        lines.append(
            f"  {r['kind']:<12} {r['model'] or '-':<12} {r['size']:>9} {r['precision'] or '-':>5} "
            f"{r['batch'] if r['batch'] is not None else '-':>5} {r['frames']:>7} "
            f"{r['seconds']:>8.2f} {r['fps']:>9.2f}  {ratio}")
    if not any(r["kind"] != "model-only" for r in report["rows"]):
        lines.append("  (none: no --e2e-models)")
    lines += ["", "targets:"]
    for t in report["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:.3g}"
        margin = "" if t["margin"] is None else f" (margin {t['margin']:+.0%})"
        lines.append(f"  {t['status']:<4}  {t['target']}: {value} vs {t['threshold']:g}"
                     f"{margin} — {t['detail']}")
    lines.append(f"\nJSON: {report['json']}")
    return "\n".join(lines)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------


def run(cfg: BenchConfig, workdir: Path) -> dict:
    device = torch.device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "device": str(device),
        "device_name": _device_name(device), "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "av": av.__version__, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "quick": cfg.quick,
        "config": {k: (str(v) if isinstance(v, Path) else v)
                   for k, v in dataclasses.asdict(cfg).items()},
        "json": str(cfg.json_path),
    }
    log.info("measuring the %s matmul peak", "bf16" if device.type == "cuda" else "fp32")
    report["peak"] = peak = measure_peak(device)
    entries = {name: load_entry(name, workdir)
               for name in dict.fromkeys(cfg.models + cfg.e2e_models)}

    clips: dict[str, tuple[Path, int]] = {}
    if cfg.e2e_models:
        if cfg.clip is not None:
            info = probe(cfg.clip)
            # Counted, not read from the header: that count can be missing or off.
            clips[f"{info.width}x{info.height}"] = (cfg.clip, _packets(cfg.clip, "video"))
        else:
            for width, height in cfg.sizes:
                path = workdir / f"clip-{width}x{height}.mp4"
                log.info("making a %g s %dx%d clip", cfg.clip_seconds, width, height)
                clips[f"{width}x{height}"] = (path, make_synthetic_clip(
                    path, width, height, cfg.clip_seconds, cfg.clip_fps))

    sizes = sorted({f"{w}x{h}" for w, h in cfg.sizes} | set(clips))
    report["models"] = {}
    for name, entry in entries.items():
        flops = {s: count_flops(entry.model, *map(int, s.split("x"))) for s in sizes}
        report["models"][name] = {
            "arch": dataclasses.asdict(entry.model.config), "source": entry.source,
            "params": sum(p.numel() for p in entry.model.parameters()),
            "flops_per_frame": flops,
            "floor_fps": {s: peak["tflops"] * 1e12 / f for s, f in flops.items()}}

    report["clips"] = {size: {"path": str(path) if cfg.clip else "synthetic", "frames": frames}
                       for size, (path, frames) in clips.items()}
    report["rows"] = rows = []
    # Clips first, then the cheap models before the 23-block full-resolution one: a run cut
    # short by a time limit still has what the most targets need in its partial JSON.
    for size, (clip, frames) in clips.items():
        rows += io_rows(clip, frames, size, workdir)
        for name in cfg.e2e_models:
            rows.append(end_to_end_row(entries[name], clip, frames, size, cfg, device, workdir))
            rows.append(naive_row(entries[name], clip, frames, size, device, workdir))
            _write_json(report, cfg.json_path, partial=True)
    for name in sorted(cfg.models, key=lambda n: n == FULL_RES_MODEL):
        rows += model_only_rows(entries[name], cfg, device,
                                report["models"][name]["flops_per_frame"], peak["tflops"])
        _write_json(report, cfg.json_path, partial=True)
    return report


def _write_json(report: dict, path: Path, *, partial: bool) -> None:
    """Ratios and targets from the rows so far, then the whole report to ``path``."""
    add_ratios(report["rows"])
    report["targets"] = evaluate_targets(report)
    report["partial"] = partial
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--table"]:
        return print_table(argv[1:])
    cfg = parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="unsmear-throughput-") as tmp:
        report = run(cfg, Path(tmp))
    _write_json(report, cfg.json_path, partial=False)
    print(format_report(report))
    return 1 if any(t["status"] == "FAIL" for t in report["targets"]) else 0


def print_table(argv: list[str]) -> int:
    """``--table FILE``: the table of an earlier run's JSON, e.g. a partial one cut short."""
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print("usage: python benchmarks/throughput.py --table RESULTS.json", file=sys.stderr)
        return 2
    report = json.loads(Path(argv[0]).read_text())
    print(format_report(report))
    if report.get("partial"):
        print("(partial: the run stopped before it finished)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
