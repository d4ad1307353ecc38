"""Blurred/sharp pairs made while training, with the builder's physics, on the training device.

Stored pairs fix the blur they were built with; here every sample gets a new motion
(:func:`dataset_builder.motion.sample_motion`: camera pans and hand shake, zoom, roll,
moving cut-outs, shutter window and duty cycle) over a random crop of a random photo.
The sample is rendered as high-frame-rate footage would be: the scene at each instant
of the exposure (bilinear warps of the photo in linear light, cut-outs composited over
it), averaged with the builder's exposure weights, the sharp target being the instant
at the centre; then, on the blurred side only, sensor noise in linear light, the sRGB
curve, 8-bit quantisation and, for a share of samples, JPEG or H.264 compression (the
builder's JPEG round trip; H.264 intra frames in 4:2:0 through PyAV).

Warps and averaging run in torch on the training device, so a GPU renders its own
batches; the motion is drawn with numpy (cheap), and compression goes through the CPU.
Every random choice is a pure function of (seed, sample number), as for stored pairs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dataset_builder.degrade import h264_roundtrip, jpeg_roundtrip
from dataset_builder.images import read_image, to_rgb, write_png
from dataset_builder.manifest import MANIFEST_NAME, PairRecord, pair_paths, write_records
from dataset_builder.motion import Motion, MotionConfig, sample_motion
from dataset_builder.render import find_photos
from dataset_builder.response import encode_srgb, load_response

logger = logging.getLogger(__name__)

_SAMPLE_TAG = 11  # mixed into each sample's seed: never shares a stream with stored pairs
_VAL_TAG = 12
_LEVELS = 255.0  # 8-bit video


@dataclass(frozen=True)
class SyntheticConfig:
    """Pairs made on the fly: where the scenes come from, and what happens to them."""

    fraction: float = 0.0  # share of every batch made on the fly (0: stored pairs only; 1: no stored pairs)
    photos: tuple[str, ...] = ()  # photo files or folders (searched recursively) the scenes are cut from
    val_photos: tuple[str, ...] = ()  # photo names (file stems) kept out of training for the rendered val set
    val_samples: int = 32  # rendered validation samples (fixed by the seed)
    scales: tuple[float, ...] = (1.0, 1.5, 2.0)  # photos area-downscaled by each: finer and coarser detail
    noise: float = 0.5  # share of samples with sensor noise on the blurred side
    noise_sigma: tuple[float, float] = (0.001, 0.01)  # its std in linear light, fraction of full scale
    compression: float = 0.4  # share of samples whose blurred side is compressed
    h264_share: float = 0.5  # of those, share through H.264 (4:2:0 intra) rather than JPEG
    jpeg_quality: tuple[int, int] = (50, 95)  # JPEG quality range
    h264_crf: tuple[int, int] = (18, 32)  # H.264 CRF range
    motion: MotionConfig = field(default_factory=MotionConfig)  # the motion distributions
    no_neighbours: float = 0.0  # video: share of samples whose neighbours are the frame itself, as at a clip's ends and at scene cuts
    sharp_video: float = 0.0  # video: share of the sharp-in samples (sharp_input_fraction) fed as a sharp video, each neighbour its own sharp frame (motion, no blur: a fast shutter), the rest a still window
    reuse: float = 1.0  # steps each rendered sample serves, in its 8 (16 for video) symmetric variants; 1: each once
    pool: int = 64  # with reuse > 1: the newest rendered samples drawn from

    def __post_init__(self) -> None:
        for name in ("fraction", "noise", "compression", "h264_share", "no_neighbours", "sharp_video"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"synthetic.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.fraction > 0 and not self.photos:
            raise ValueError("synthetic.fraction > 0 needs synthetic.photos (files or folders of photos); "
                             "to train on stored pairs (data=) only, pass synthetic.fraction=0")
        if not self.scales or min(self.scales) < 1.0:
            raise ValueError("synthetic.scales must be downscale factors >= 1")
        if self.val_samples < 0:
            raise ValueError("synthetic.val_samples must be >= 0")
        if self.reuse < 1 or self.pool < 1:
            raise ValueError("synthetic.reuse must be >= 1 and synthetic.pool >= 1")


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 affine maps (..., 2, 3): ``outer`` after ``inner``."""
    a = outer[..., :2, :2] @ inner[..., :2, :2]
    b = outer[..., :2, :2] @ inner[..., :2, 2:] + outer[..., :2, 2:]
    return np.concatenate([a, b], axis=-1)


def render_motion(photo: Tensor, motion: Motion, size: int | tuple[int, int],
                  to_photo: np.ndarray) -> tuple[Tensor, Tensor]:
    """Render one sample's exposures and its sharp frame, in linear light.

    Args:
        photo: (3, H, W) float linear light, on the rendering device.
        motion: what moves and the exposure weights.
        size: output side, px, or (height, width).
        to_photo: (2, 3) scene pixel -> photo pixel.

    Returns:
        (blurred (F, 3, h, w), sharp (3, h, w)), float32 linear light; for a consecutive pair's
        motion (``motion.next_sharp_index``) sharp is (2, 3, h, w), the pair's two sharp frames.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    device = photo.device
    height, width = photo.shape[-2:]

    # Photo pixel -> grid_sample's coordinates; align_corners=True: -1 and 1 are the centres
    # of the first and last pixels, the convention of cv2.warpAffine that the builder uses.
    to_unit = np.array([[2 / (width - 1), 0.0, -1.0], [0.0, 2 / (height - 1), -1.0]])

    def sample(matrices: np.ndarray, box: tuple[int, int, int, int]) -> Tensor:
        """Photo sampled through (T, 2, 3) output -> photo maps over ``box``: (3, T, h, w)."""
        x0, y0, x1, y1 = box
        grid = _map(compose(to_unit, matrices), box, device)  # (T, h, w, 2)
        grid = grid.reshape(1, -1, x1 - x0, 2)  # all instants in one call: (1, T*h, w, 2)
        out = F.grid_sample(photo[None], grid, mode="bilinear", padding_mode="reflection", align_corners=True)
        return out.reshape(3, len(matrices), y1 - y0, x1 - x0)

    frames = sample(compose(to_photo, motion.camera), (0, 0, out_w, out_h))
    for obj in motion.objects:
        box = _object_box(obj, out_w, out_h)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        source = np.array([[1.0, 0.0, obj.source[0]], [0.0, 1.0, obj.source[1]]])
        texture = sample(compose(to_photo, compose(source, obj.matrices)), box)
        region = frames[:, :, y0:y1, x0:x1]
        frames[:, :, y0:y1, x0:x1] = torch.lerp(region, texture, _blob_alpha(obj, box, device))
    weights = torch.as_tensor(motion.weights, dtype=torch.float32, device=device)
    # (F, T) @ (3, T, h*w): the instants summed in place, without a permuted copy of frames.
    blurred = (weights @ frames.flatten(2)).transpose(0, 1).reshape(-1, 3, out_h, out_w)
    if motion.next_sharp_index is not None:
        return blurred, frames[:, [motion.sharp_index, motion.next_sharp_index]].transpose(0, 1)
    return blurred, frames[:, motion.sharp_index]


def _map(matrices: np.ndarray, box: tuple[int, int, int, int], device: torch.device) -> Tensor:
    """The pixels of ``box`` (x0, y0, x1, y1) through (T, 2, 3) maps: (T, h, w, 2), (x, y) last."""
    x0, y0, x1, y1 = box
    m = torch.as_tensor(matrices, dtype=torch.float32, device=device)
    xs = torch.arange(x0, x1, device=device, dtype=torch.float32)
    ys = torch.arange(y0, y1, device=device, dtype=torch.float32)
    # x' = a x + b y + c separably: a (T, 2, w) term plus a (T, 2, h) one, broadcast once.
    along_x = m[:, :, 0, None] * xs                                   # (T, 2, w)
    along_y = m[:, :, 1, None] * ys + m[:, :, 2, None]                # (T, 2, h)
    return along_x.transpose(1, 2)[:, None] + along_y.transpose(1, 2)[:, :, None]


def _object_box(obj, width: int, height: int) -> tuple[int, int, int, int] | None:  # noqa: ANN001
    """The output pixels an object covers at any instant, or None if it stays outside."""
    a, b = obj.matrices[:, :, :2], obj.matrices[:, :, 2]
    centres = -np.linalg.solve(a, b[..., None])[..., 0]  # where object-local (0, 0) is, per instant
    reach = obj.radius + 1
    x0, y0 = np.floor(centres.min(axis=0) - reach).astype(int)
    x1, y1 = np.ceil(centres.max(axis=0) + reach).astype(int) + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _blob_alpha(obj, box: tuple[int, int, int, int], device: torch.device) -> Tensor:  # noqa: ANN001
    """Coverage (1, T, h, w) of a soft-edged blob over ``box``, anti-aliased over one pixel."""
    local = _map(obj.matrices, box, device)
    u, v = local[..., 0], local[..., 1]
    r = torch.sqrt(u * u + v * v)
    # cos(k phi + p) = Re(e^{ip} z^k) with z = (u + iv) / r: powers of z, no atan2.
    cos1, sin1 = u / r.clamp_min(1e-6), v / r.clamp_min(1e-6)
    cos_k, sin_k = cos1, sin1
    shape = torch.ones_like(r)
    for amplitude, phase in obj.harmonics:
        cos_k, sin_k = cos_k * cos1 - sin_k * sin1, sin_k * cos1 + cos_k * sin1
        shape += float(amplitude) * (cos_k * float(np.cos(phase)) - sin_k * float(np.sin(phase)))
    edge = obj.radius * shape / (1 + float(np.sum(obj.harmonics[:, 0])))
    return (edge - r + 0.5).clamp(0, 1)[None]


class SyntheticPairs:
    """Samples rendered on demand from photos, for one split.

    Args:
        config: the synthetic section of the training config.
        split: "train" (every photo not in ``val_photos``) or "val" (those only).
        crop_size: output side, px (even).
        in_frames: blurred frames per sample (the generator's ``in_frames``).
        seed: base of every random choice.
        device: where photos live and rendering runs.
        sharp_fraction: share of samples fed their sharp target as input (train only).
        consecutive: every sample is two consecutive ones of one motion (the temporal term of
            training): blurry (2, in_frames*3, S, S), sharp (2, 3, S, S), the second one frame
            interval after the first, sharing all but one of its blurred frames.
    """

    def __init__(self, config: SyntheticConfig, *, split: str, crop_size: int, in_frames: int = 1,
                 seed: int = 0, device: torch.device | str = "cpu", sharp_fraction: float = 0.0,
                 consecutive: bool = False) -> None:
        if crop_size % 2:
            raise ValueError(f"crop_size must be even for 4:2:0 compression, got {crop_size}")
        if consecutive and in_frames < 2:
            raise ValueError("consecutive samples need neighbouring frames (in_frames > 1)")
        self.config, self.split, self.crop_size, self.in_frames = config, split, crop_size, in_frames
        self.consecutive = consecutive
        self.seed, self.device, self.sharp_fraction = seed, torch.device(device), sharp_fraction
        held_out = set(config.val_photos)
        found = sorted({p for entry in config.photos for p in find_photos(Path(entry))})
        chosen = [p for p in found if (p.stem in held_out) == (split == "val")]
        if not chosen:
            raise ValueError(f"synthetic: no {split} photos in {', '.join(config.photos)} "
                             f"(val_photos: {', '.join(config.val_photos) or 'none'})")
        missing = held_out - {p.stem for p in found}
        if missing:
            raise ValueError(f"synthetic.val_photos not found among the photos: {', '.join(sorted(missing))}")
        self.photos = chosen
        srgb = load_response("srgb")
        self._levels: list[Tensor] = []  # every photo at every scale, linear light, (3, H, W)
        for path in chosen:
            linear = srgb.to_linear(to_rgb(read_image(path)))
            for scale in config.scales:
                h, w = linear.shape[:2]
                size = (max(1, round(w / scale)), max(1, round(h / scale)))
                level = linear if scale == 1 else cv2.resize(linear, size, interpolation=cv2.INTER_AREA)
                self._levels.append(torch.from_numpy(np.ascontiguousarray(level.transpose(2, 0, 1))).to(self.device))
        logger.info("synthetic %s: %d photos x %d scales", split, len(chosen), len(config.scales))

    def plan(self, number: int) -> SamplePlan:
        """Every random choice of sample ``number`` (numpy only: cheap, runs in loader workers)."""
        tag = _VAL_TAG if self.split == "val" else _SAMPLE_TAG
        rng = np.random.default_rng([self.seed, tag, number])
        size, cfg = self.crop_size, self.config
        level = int(rng.integers(len(self._levels)))
        photo = self._levels[level]
        motion_state = rng.bit_generator.state
        motion = sample_motion(rng, cfg.motion, size=size, in_frames=self.in_frames, consecutive=self.consecutive)
        to_photo = _place(rng, motion, size, photo.shape[-1], photo.shape[-2])
        noise = float(rng.uniform(*cfg.noise_sigma)) if rng.random() < cfg.noise else 0.0
        noise_seed = int(rng.integers(2**62))
        codec, quality = None, 0
        if rng.random() < cfg.compression:
            if rng.random() < cfg.h264_share:
                codec, quality = "h264", int(rng.integers(cfg.h264_crf[0], cfg.h264_crf[1] + 1))
            else:
                codec, quality = "jpeg", int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        sharp_in = self.split != "val" and self.sharp_fraction > 0 and rng.random() < self.sharp_fraction
        # Drawn last, and only for video, so single-frame samples stay what they were.
        alone = (self.split != "val" and self.in_frames > 1 and cfg.no_neighbours > 0
                 and rng.random() < cfg.no_neighbours)
        # Then, as rarely, a sharp video: the same motion redrawn from the same state without blur.
        sharp_video = (sharp_in and not alone and self.in_frames > 1 and cfg.sharp_video > 0
                       and rng.random() < cfg.sharp_video)
        if sharp_video:
            again = np.random.default_rng()
            again.bit_generator.state = motion_state
            motion = sample_motion(again, cfg.motion, size=size, in_frames=self.in_frames,
                                   consecutive=self.consecutive, zero_shutter=True)
        return SamplePlan(level, motion, to_photo, noise, noise_seed, codec, quality, sharp_in, alone, sharp_video)

    def render(self, plan: SamplePlan) -> dict[str, Tensor]:
        """Render a plan: {"blurry": (in_frames*3, S, S), "sharp": (3, S, S)}, float in [0, 1]
        on the device, 8-bit levels, oldest blurred frame first (consecutive: a leading pair
        dimension of 2 on both)."""
        size, frames = self.crop_size, self.in_frames
        blurred, sharp = render_motion(self._levels[plan.level], plan.motion, size, plan.to_photo)
        if plan.noise > 0 and not plan.sharp_video:  # sharp in, sharp out: the frames as they are
            generator = torch.Generator(device=self.device).manual_seed(plan.noise_seed)
            noise = torch.randn(blurred.shape, generator=generator, device=self.device)
            blurred = (blurred + plan.noise * noise).clamp(0, 1)
        blurry = _quantise(encode_srgb(blurred))
        if plan.codec is not None and not plan.sharp_video:
            blurry = self._compress(blurry, plan.codec, plan.quality)
        sharp = _quantise(encode_srgb(sharp))
        if not self.consecutive:
            return {"blurry": _input(blurry, sharp, plan, frames).reshape(-1, size, size), "sharp": sharp}
        pair = [_input(blurry[first:first + frames], sharp[first], plan, frames) for first in (0, 1)]
        return {"blurry": torch.stack(pair).reshape(2, -1, size, size), "sharp": sharp}

    def sample(self, number: int) -> dict[str, Tensor]:
        """Sample ``number``, planned and rendered (see :meth:`render`)."""
        return self.render(self.plan(number))

    def batch(self, numbers: range | list[int] | list[SamplePlan]) -> dict[str, Tensor]:
        """Samples (or plans) stacked: {"blurry": (N, in_frames*3, S, S), "sharp": (N, 3, S, S)}."""
        samples = [self.render(n) if isinstance(n, SamplePlan) else self.sample(n) for n in numbers]
        return {key: torch.stack([s[key] for s in samples]) for key in ("blurry", "sharp")}

    def _compress(self, blurry: Tensor, codec: str, quality: int) -> Tensor:
        frames = (blurry * _LEVELS).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        roundtrip = h264_roundtrip if codec == "h264" else jpeg_roundtrip
        out = np.stack([roundtrip(np.ascontiguousarray(frame), quality) for frame in frames])
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(self.device, torch.float32) / _LEVELS


@dataclass(frozen=True)
class SamplePlan:
    """The random choices of one sample, made before rendering."""

    level: int  # which photo at which scale
    motion: Motion
    to_photo: np.ndarray  # (2, 3) scene -> photo pixels
    noise: float  # sensor noise std in linear light (0: none)
    noise_seed: int
    codec: str | None  # "jpeg", "h264" or None
    quality: int  # JPEG quality or H.264 CRF
    sharp_input: bool  # fed its own sharp target as input
    alone: bool = False  # its neighbours are the centre frame itself (no neighbours)
    sharp_video: bool = False  # sharp input as a video: its frames rendered without blur (motion kept)


def _input(blurry: Tensor, sharp: Tensor, plan: SamplePlan, frames: int) -> Tensor:
    """What the network is fed for one sample: its blurred frames (F, 3, S, S), or its sharp
    frame (``sharp_input``; as a sharp video, ``blurry`` is already its sharp frames) or its centre
    frame (``alone``) in every slot."""
    if plan.sharp_input and not plan.sharp_video:
        return sharp[None].expand(frames, -1, -1, -1)
    if plan.alone:
        return blurry[frames // 2][None].expand(frames, -1, -1, -1)
    return blurry


def _quantise(code: Tensor) -> Tensor:
    return (code * _LEVELS).round() / _LEVELS


# The 8 rotations/reflections of the square, as 2x2 matrices (DBN's flips and rotations).
_DIHEDRAL = [np.array(m, float) for m in ([[1, 0], [0, 1]], [[-1, 0], [0, 1]], [[1, 0], [0, -1]],
                                          [[-1, 0], [0, -1]], [[0, 1], [1, 0]], [[0, -1], [1, 0]],
                                          [[0, 1], [-1, 0]], [[0, -1], [-1, 0]])]


def _place(rng: np.random.Generator, motion: Motion, size: int, width: int, height: int) -> np.ndarray:
    """A random orientation and position of the scene in the photo: (2, 3) scene -> photo px.

    The position keeps everything the camera sees inside the photo when it fits;
    otherwise the photo is mirrored at its edges (reflection padding).
    """
    turn = _DIHEDRAL[int(rng.integers(len(_DIHEDRAL)))]
    x0, y0, x1, y1 = motion.scene_extent(size)
    corners = turn @ np.array([[x0, x1, x0, x1], [y0, y0, y1, y1]])
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    anchor = []
    for low, high, extent in ((lo[0], hi[0], width), (lo[1], hi[1], height)):
        room_lo, room_hi = -low, extent - 1 - high
        anchor.append(rng.uniform(room_lo, room_hi) if room_hi > room_lo else (extent - 1) / 2)
    return np.hstack([turn, np.array(anchor)[:, None]])


def write_rendered_pairs(config: SyntheticConfig, out: str | Path, *, split: str = "val", count: int = 64,
                         size: int = 256, in_frames: int = 1, seed: int = 0, consecutive: bool = False) -> Path:
    """Write ``count`` samples of ``split`` as a pairs folder in the builder's format.

    Evaluation (``python -m models evaluate``) and its baselines then see exactly the
    samples training validates on. With ``consecutive`` every sample is two consecutive
    pairs of one motion (``2 * count`` pairs), recorded as frames one stride apart, so that
    evaluation measures the flow-warping error of rendered video too. Returns the manifest's path.
    """
    out = Path(out)
    pairs = SyntheticPairs(config, split=split, crop_size=size, in_frames=in_frames, seed=seed,
                           consecutive=consecutive)
    records = []
    for number in range(count):
        plan = pairs.plan(number)
        rendered = pairs.render(plan)
        source = f"{pairs.photos[plan.level // len(config.scales)].stem}_rendered"
        members = ([{key: value[k] for key, value in rendered.items()} for k in (0, 1)] if consecutive
                   else [rendered])
        for member, sample in enumerate(members):
            records.append(_write_rendered(out, sample, plan, config, split=split, source=source,
                                           index=len(members) * number + member, size=size, in_frames=in_frames,
                                           seed=seed, sharp_frame=3 * number + member if consecutive else 0,
                                           stride=1 if consecutive else config.motion.frame_stride))
    manifest = out / MANIFEST_NAME
    write_records(manifest, records)
    return manifest


def _write_rendered(out: Path, sample: dict[str, Tensor], plan: SamplePlan, config: SyntheticConfig, *,
                    split: str, source: str, index: int, size: int, in_frames: int, seed: int,
                    sharp_frame: int, stride: int) -> PairRecord:
    """One rendered sample's PNGs, and its manifest record (consecutive pairs: sharp frames
    one ``stride`` apart, those of different samples further)."""
    sharp_path, blurry_path = pair_paths(split, source, index)
    frames = sample["blurry"].reshape(in_frames, 3, size, size)
    names = [blurry_path if f == in_frames // 2 else blurry_path.replace(".png", f"_f{f}.png")
             for f in range(in_frames)]
    for name, image in [(sharp_path, sample["sharp"]), *zip(names, frames)]:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        write_png(out / name, (image * _LEVELS).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy())
    centre = frames[in_frames // 2]
    mse = float(torch.mean((centre - sample["sharp"]) ** 2))
    return PairRecord(
        split=split, source=source, index=index, sharp=sharp_path, blurry=blurry_path,
        blurry_frames=names, frames_averaged=[], sharp_frame=sharp_frame, window=plan.motion.window,
        stride=stride, fps=None, response="srgb", interpolate=plan.motion.substeps,
        duty_cycle=plan.motion.duty_cycle, noise=plan.noise,
        jpeg=plan.quality if plan.codec == "jpeg" else None, seed=seed,
        static=plan.sharp_input or plan.motion.blur_px == 0 and not plan.motion.objects, bit_depth=8,
        blurry_psnr=round(10 * math.log10(1 / mse), 3) if mse > 0 else 100.0, source_path="on the fly")


def blur_lengths(config: SyntheticConfig, count: int, *, seed: int = 0, size: int = 128) -> np.ndarray:
    """Camera streak lengths (px) of ``count`` motions drawn as training draws them."""
    return np.array([sample_motion(np.random.default_rng([seed, _SAMPLE_TAG, n]), config.motion,
                                   size=size).blur_px for n in range(count)])

