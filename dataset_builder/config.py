"""Frozen configs for the builder's entry points (``build`` and ``render``).

Every field has a default a new user can live with; the CLI overrides fields from
flags and never passes its ``argparse.Namespace`` further. Invalid values raise
:class:`~dataset_builder.errors.BuildError` with a message naming the flag.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dataset_builder.errors import BuildError

# Interpolating more than this many virtual frames per source frame costs a lot and
# gains nothing visible: REDS went from 120 to 1920 fps, i.e. K = 16.
MAX_INTERPOLATE = 64
FLOW_PRESETS = ("ultrafast", "fast", "medium")
RENDER_CODECS = ("lossless", "h264")


@dataclass(frozen=True)
class BuildConfig:
    """How ``build`` turns high-fps footage into blurred/sharp pairs.

    Args:
        window: source frames averaged per blurred frame (odd), centred on the sharp
            frame; with ``duty_cycle`` 1 the shutter is open ``window`` frame times.
        stride: source frames between consecutive sharp frames (240 fps / 8 = 30 fps).
        target_fps: if set, the stride is ``round(fps / target_fps)`` per source.
        fps: capture frame rate for every source, overriding what the files say.
        response: camera response to undo before averaging: ``srgb``, ``gammaG``
            (e.g. ``gamma2.2``), ``none`` (linear footage) or a curve file.
        interpolate: K; optical flow adds K-1 virtual frames between source frames.
        duty_cycle: fraction of the window's time span the shutter is open.
        flow_preset: OpenCV DIS preset used for interpolation.
        noise: std of Gaussian sensor noise added to the blurred frame in linear light.
        jpeg: JPEG quality applied to the blurred frame after noise, or None.
        frames: K; blurred frames written per pair (the centre one plus K-1 neighbours).
        val_fraction: share of sources put in the validation split.
        seed: seeds the split, static-window sampling, noise.
        static_keep: share of static (almost motionless) windows kept.
        static_psnr: a window is static when its blurred frame is at least this close
            (PSNR in dB, encoded values) to its sharp frame.
        skip_short: skip sources too short for the window instead of failing.
    """

    window: int = 7  # odd; DBN used 7, GoPro 7-13
    stride: int = 8  # 240 fps -> 30 fps pairs, as DBN/GoPro
    target_fps: float | None = None  # overrides stride when set
    fps: float | None = None  # None: read from the source (capture-fps tag first)
    response: str = "srgb"  # GoPro averaged frames**2.2; sRGB is the exact curve
    interpolate: int = 1  # 1 = plain averaging of source frames
    duty_cycle: float = 1.0  # REDS used 0.8 of the output frame time
    flow_preset: str = "medium"  # DIS quality/speed trade-off
    noise: float = 0.0  # linear-light std, fraction of full scale
    jpeg: int | None = None  # quality 1-100; None stores the blurred frame uncompressed
    frames: int = 1  # odd; 5 for DBN-style multi-frame models
    val_fraction: float = 0.1  # of sources, never of frames
    seed: int = 0
    static_keep: float = 0.1  # small, so sharp-in/sharp-out pairs don't dominate
    static_psnr: float = 40.0  # dB; ~1 code value of mean error at 8 bits
    skip_short: bool = False  # does not change any pair, so build.json ignores it

    # Fields that change which sources are attempted but never the bytes of a pair;
    # a re-run may change them without being refused.
    RUN_ONLY_FIELDS = ("skip_short",)

    def __post_init__(self) -> None:
        _check(self.window >= 1 and self.window % 2 == 1,
               f"--window must be an odd number >= 1 (got {self.window}): the sharp "
               "frame is the centre of the window")
        _check(self.stride >= 1, f"--stride must be >= 1 (got {self.stride})")
        _check(self.target_fps is None or self.target_fps > 0,
               f"--target-fps must be > 0 (got {self.target_fps})")
        _check(self.fps is None or (math.isfinite(self.fps) and self.fps > 0),
               f"--fps must be > 0 (got {self.fps})")
        _check(1 <= self.interpolate <= MAX_INTERPOLATE,
               f"--interpolate must be between 1 and {MAX_INTERPOLATE} (got {self.interpolate})")
        _check(0.0 < self.duty_cycle <= 1.0,
               f"--duty-cycle must be in (0, 1] (got {self.duty_cycle})")
        _check(self.flow_preset in FLOW_PRESETS,
               f"--flow-preset must be one of {', '.join(FLOW_PRESETS)} (got {self.flow_preset!r})")
        _check(0.0 <= self.noise < 1.0, f"--noise must be in [0, 1) (got {self.noise})")
        _check(self.jpeg is None or 1 <= self.jpeg <= 100,
               f"--jpeg quality must be between 1 and 100 (got {self.jpeg})")
        _check(self.frames >= 1 and self.frames % 2 == 1,
               f"--frames must be an odd number >= 1 (got {self.frames}): the pair's "
               "blurred frame is the centre one")
        _check(0.0 <= self.val_fraction <= 1.0,
               f"--val-fraction must be in [0, 1] (got {self.val_fraction})")
        _check(0.0 <= self.static_keep <= 1.0,
               f"--static-keep must be in [0, 1] (got {self.static_keep})")
        _check(self.static_psnr > 0, f"--static-psnr must be > 0 (got {self.static_psnr})")
        _check(bool(self.response), "--response must not be empty")

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-friendly values."""
        return dataclasses.asdict(self)

    def output_fields(self) -> dict[str, Any]:
        """The fields that determine the output bytes (what build.json compares)."""
        return {k: v for k, v in self.to_dict().items() if k not in self.RUN_ONLY_FIELDS}


@dataclass(frozen=True)
class RenderConfig:
    """How ``render`` makes synthetic high-fps footage from one still photograph.

    Args:
        width: output width in pixels.
        height: output height in pixels.
        fps: frame rate the footage pretends to be captured at.
        seconds: length of each clip.
        objects: moving cut-outs pasted over the camera view (local object blur).
        camera_speed: mean camera pan speed, output pixels per frame.
        object_speed: fastest object speed, output pixels per frame.
        zoom: largest relative zoom change over a clip (0.1 = 10 %).
        rotation: largest camera roll over a clip, degrees.
        shake: hand-shake amplitude, output pixels.
        shake_hz: typical hand-shake frequency.
        seed: seeds every random path; one clip per photo, same seed same bytes.
        codec: ``lossless`` (RGB H.264, bit-exact) or ``h264`` (4:2:0, camera-like).
        crf: quality of the ``h264`` codec (lower is better).
    """

    width: int = 640
    height: int = 360
    fps: float = 240.0  # phone slow-motion rate; build's default stride 8 gives 30 fps
    seconds: float = 2.0
    objects: int = 3
    camera_speed: float = 1.5  # ~360 px/s at 240 fps: a brisk pan
    object_speed: float = 6.0  # ~1440 px/s: a running subject close to the camera
    zoom: float = 0.1
    rotation: float = 2.0
    shake: float = 1.0  # a steady hand; raise for walking footage
    shake_hz: float = 6.0  # physiological tremor and walking bounce lie around 4-10 Hz
    seed: int = 0
    codec: str = "lossless"  # lossless keeps build's input exactly what was rendered
    crf: int = 18  # only for codec h264: visually transparent

    def __post_init__(self) -> None:
        _check(self.width >= 16 and self.height >= 16,
               f"--size must be at least 16x16 (got {self.width}x{self.height})")
        _check(self.width % 2 == 0 and self.height % 2 == 0,
               f"--size must have even width and height for H.264 (got {self.width}x{self.height})")
        _check(self.fps > 0, f"--fps must be > 0 (got {self.fps})")
        _check(self.seconds > 0, f"--seconds must be > 0 (got {self.seconds})")
        _check(self.objects >= 0, f"--objects must be >= 0 (got {self.objects})")
        _check(self.camera_speed >= 0, f"--camera-speed must be >= 0 (got {self.camera_speed})")
        _check(self.object_speed >= 0, f"--object-speed must be >= 0 (got {self.object_speed})")
        _check(0 <= self.zoom < 0.5, f"--zoom must be in [0, 0.5) (got {self.zoom})")
        _check(0 <= self.rotation <= 45,
               f"--rotation must be in [0, 45] degrees (got {self.rotation})")
        _check(self.shake >= 0, f"--shake must be >= 0 (got {self.shake})")
        _check(self.shake_hz > 0, f"--shake-hz must be > 0 (got {self.shake_hz})")
        _check(self.codec in RENDER_CODECS,
               f"--codec must be one of {', '.join(RENDER_CODECS)} (got {self.codec!r})")
        _check(0 <= self.crf <= 51, f"--crf must be in [0, 51] (got {self.crf})")

    @property
    def num_frames(self) -> int:
        """Frames per clip."""
        return max(1, round(self.seconds * self.fps))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise BuildError(message)
