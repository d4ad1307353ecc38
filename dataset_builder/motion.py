"""Random motion during an exposure: what the camera and the objects do, drawn per sample.

The builder's footage fixes the motion when it is filmed (or rendered); training on
pairs made on the fly instead draws a new motion for every sample from distributions a
user can read and change (:class:`MotionConfig`):

* the camera's streak length, mostly 5-25 px and up to ~40 px (GoPro-style hand-held
  240 fps footage at 1280x720), as a straight or gently curved pan or as hand shake
  (Boracchi & Foi's Markov trajectories, as DeblurGAN draws its kernels), plus a slow
  zoom and roll;
* several cut-outs moving on their own paths at their own speeds (object blur and
  occlusion);
* the shutter: window length and duty cycle, with the builder's exposure weights
  (:func:`dataset_builder.averaging.exposure_samples`), sampled finely enough in time
  that nothing moves more than ``step_px`` between two instants (streaks, no ghosts).

A :class:`Motion` is plain numbers: the instants rendered, each exposure's weights on
them, and per instant an affine map from output pixels to scene pixels (the camera) and
to object-local pixels (each object). Renderers (``models.synthetic`` on the GPU or the
CPU) turn it into frames; :func:`camera_motion` makes the same description from a
rendered clip's camera path, so the builder's pairs and the on-the-fly ones are the same
physics and are tested to agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dataset_builder.averaging import exposure_samples
from dataset_builder.kernels import random_trajectory

# Markov shake paths are drawn with this many points per pixel of path (and at least
# MIN_TRAJECTORY_STEPS): DeblurGAN's 2000 points for every path cost ~10 ms in Python.
TRAJECTORY_POINTS_PER_PX = 4
MIN_TRAJECTORY_STEPS = 64
MAX_TRAJECTORY_STEPS = 600
DEBLURGAN_STEPS = 2000  # the step count DeblurGAN's anxiety is tuned for
MAX_SUBSTEPS = 64  # samples per frame time at the most (exposure_samples' K)
BLOB_HARMONICS = 3  # radius perturbations that make object masks irregular, not discs


@dataclass(frozen=True)
class MotionConfig:
    """Distributions of the motion drawn for each on-the-fly sample.

    Lengths are in pixels of the training image, for the centre exposure.
    """

    blur_median: float = 12.0  # median camera streak, px (log-normal)
    blur_spread: float = 0.65  # std of log(streak): with median 12, ~75 % of streaks fall in 5-25 px
    blur_max: float = 40.0  # longest streak, px; longer draws are redrawn at this
    static_fraction: float = 0.08  # share of samples with a still camera and still objects
    shake_fraction: float = 0.5  # share of camera paths that are hand shake (curved, Markov); others pan
    shake_anxiety: float = 0.005  # Boracchi & Foi's erratic-ness (DeblurGAN's default)
    pan_curvature: float = 0.3  # sideways acceleration of a pan, share of its speed per exposure
    zoom: float = 0.02  # largest relative change of scale during the exposure
    roll: float = 1.0  # largest camera roll during the exposure, degrees
    objects: tuple[int, int] = (0, 3)  # moving cut-outs per sample, min and max
    object_size: tuple[float, float] = (0.15, 0.5)  # cut-out diameter, share of the crop side
    object_still: float = 0.25  # share of cut-outs that do not move (they still occlude)
    object_spin: float = 2.0  # largest spin of a cut-out during the exposure, degrees
    windows: tuple[int, ...] = (5, 7, 9, 11, 13)  # frames per exposure at 240 fps (GoPro: 7-13)
    duty_cycle: tuple[float, float] = (0.5, 1.0)  # share of the window the shutter is open (REDS: 0.8)
    frame_stride: int = 8  # source frames between neighbouring output frames (240 -> 30 fps)
    # Neighbouring frames of video instead: the exposure as a share of the frame interval
    # (shutter angle / 360 deg), drawn per sample; a video camera's exposure never outlasts its
    # frame, and footage blurred enough to need us was shot with long ones (180-360 deg).
    # None: frames frame_stride source frames apart, as the builder's pairs.
    exposure_share: tuple[float, float] | None = None
    step_px: float = 0.7  # most any pixel moves between two rendered instants

    def __post_init__(self) -> None:
        _check(self.blur_median > 0 and self.blur_spread >= 0 and self.blur_max >= self.blur_median,
               "blur_median must be > 0, blur_spread >= 0 and blur_max >= blur_median")
        for name in ("static_fraction", "shake_fraction", "object_still"):
            _check(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1]")
        _check(0 <= self.objects[0] <= self.objects[1], "objects must be (min, max) with 0 <= min <= max")
        _check(0 < self.object_size[0] <= self.object_size[1] <= 1.5,
               "object_size must be (min, max) with 0 < min <= max <= 1.5")
        _check(len(self.windows) > 0 and all(w >= 1 and w % 2 == 1 for w in self.windows),
               "windows must be odd frame counts >= 1")
        _check(0 < self.duty_cycle[0] <= self.duty_cycle[1] <= 1, "duty_cycle must be (min, max) in (0, 1]")
        _check(self.frame_stride >= 1 and self.step_px > 0, "frame_stride must be >= 1 and step_px > 0")
        _check(self.exposure_share is None or 0 < self.exposure_share[0] <= self.exposure_share[1] <= 1,
               "exposure_share must be (min, max) in (0, 1], or null")
        _check(self.zoom >= 0 and self.roll >= 0 and self.object_spin >= 0,
               "zoom, roll and object_spin must be >= 0")


@dataclass(frozen=True)
class ObjectMotion:
    """One cut-out: its shape and, per instant, where it is.

    Args:
        radius: mean radius, px.
        harmonics: (BLOB_HARMONICS, 2) amplitude and phase of the radius perturbations.
        source: (x, y) where the cut-out's texture is taken from, scene pixels.
        matrices: (T, 2, 3) output pixel -> object-local pixel (origin at its centre).
    """

    radius: float
    harmonics: np.ndarray
    source: tuple[float, float]
    matrices: np.ndarray


@dataclass(frozen=True)
class Motion:
    """Everything a renderer needs to make one blurred/sharp sample.

    Args:
        times: (T,) instants rendered, in source frame intervals from the sharp frame.
        weights: (F, T) each output frame's exposure weights (rows sum to 1), oldest
            frame first; the centre row is the blurred frame paired with the sharp one.
        sharp_index: index of t = 0 in ``times`` (the sharp target).
        next_sharp_index: for a consecutive pair (:func:`sample_motion`'s ``consecutive``),
            index in ``times`` of the next frame's sharp instant, one frame interval later.
        camera: (T, 2, 3) output pixel -> scene pixel, scene origin where the crop's
            centre is at t = 0.
        objects: the moving cut-outs, drawn in order (later ones in front).
        blur_px: the camera's streak length during the centre exposure.
        window, duty_cycle, substeps: the shutter (as the builder's --window,
            --duty-cycle and --interpolate).
    """

    times: np.ndarray
    weights: np.ndarray
    sharp_index: int
    camera: np.ndarray
    objects: tuple[ObjectMotion, ...] = field(default=())
    blur_px: float = 0.0
    window: int = 1
    duty_cycle: float = 1.0
    substeps: int = 1
    next_sharp_index: int | None = None

    def scene_extent(self, size: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the scene area the camera sees at any instant."""
        corners = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], float)
        points = np.einsum("tij,kj->tki", self.camera, corners).reshape(-1, 2)
        return (*points.min(axis=0), *points.max(axis=0))


def exposure_weights(centres: list[float], window: int, substeps: int,
                     duty_cycle: float, instants: tuple[float, ...] = ()) -> tuple[np.ndarray, np.ndarray, int]:
    """The builder's shutter for several exposures, on one shared list of instants.

    Args:
        centres: the exposures' centres, source frames from the sharp frame.
        window, substeps, duty_cycle: as :func:`~dataset_builder.averaging.exposure_samples`.
        instants: more instants to render (weight 0 in every exposure), e.g. a second sharp
            frame; find them in ``times`` with :func:`instant_index`.

    Returns:
        (times (T,), weights (len(centres), T), index of t = 0 in times).
    """
    samples = exposure_samples(window, substeps, duty_cycle)
    keyed: dict[float, int] = {0.0: 0}
    for t in instants:
        keyed.setdefault(round(t, 9), len(keyed))
    entries = []
    for row, centre in enumerate(centres):
        for s in samples:
            t = round(centre + s.offset, 9)
            keyed.setdefault(t, len(keyed))
            entries.append((row, keyed[t], s.weight))
    order = sorted(keyed, key=keyed.get)
    weights = np.zeros((len(centres), len(order)), np.float64)
    for row, column, weight in entries:
        weights[row, column] += weight
    # Instants in time order: renderers may then reuse neighbouring work.
    sort = np.argsort(order)
    times = np.asarray(order, np.float64)[sort]
    return times, weights[:, sort], instant_index(times, 0.0)


def instant_index(times: np.ndarray, t: float) -> int:
    """Where instant ``t`` (source frames from the sharp frame) is in :func:`exposure_weights`' times."""
    return int(np.flatnonzero(times == round(t, 9))[0])


def sample_motion(rng: np.random.Generator, config: MotionConfig, *, size: int,
                  in_frames: int = 1, consecutive: bool = False, zero_shutter: bool = False) -> Motion:
    """Draw one sample's motion.

    Args:
        rng: the sample's generator (same seed, same motion).
        config: the distributions.
        size: side of the square output crop, px.
        in_frames: output frames rendered (odd), centred on the sharp one.
        consecutive: render one frame more, after them, and the sharp instant one frame
            interval after the first (``Motion.next_sharp_index``): two consecutive samples of
            one motion, frames ``[0, in_frames)`` for t = 0 and ``[1, in_frames]`` for the next.
        zero_shutter: every output frame is the instant at its exposure's centre (a shutter
            open for no time): the same draws, so the same motion between frames, but no blur.
            The random draws do not depend on it: the same ``rng`` state gives the blurred
            sample's motion with or without it.
    """
    window = int(rng.choice(config.windows))
    duty = float(rng.uniform(*config.duty_cycle))
    open_time = duty * window  # frame times the shutter is open
    interval = float(config.frame_stride)
    if config.exposure_share is not None and in_frames > 1:
        interval = open_time / float(rng.uniform(*config.exposure_share))
    centres = [(f - in_frames // 2) * interval for f in range(in_frames + consecutive)]
    t_lo, t_hi = centres[0] - open_time / 2, centres[-1] + open_time / 2
    still = rng.random() < config.static_fraction
    length = 0.0 if still else _streak_length(rng, config)
    half = size / 2
    zoom_rate = 0.0 if still else rng.uniform(-1, 1) * config.zoom / open_time
    roll_rate = 0.0 if still else math.radians(rng.uniform(-1, 1) * config.roll) / open_time
    path = _camera_path(rng, config, length, open_time, t_lo, t_hi)
    count = 0 if still else int(rng.integers(config.objects[0], config.objects[1] + 1))
    objects = [_object_plan(rng, config, size, open_time) for _ in range(count)]
    # Fastest image motion, px per frame time: sets how finely time is sampled.
    speed = (length / open_time + half * (abs(zoom_rate) + abs(roll_rate)) +
             max([o["speed"] + o["radius"] * abs(o["spin"]) for o in objects], default=0.0))
    substeps = int(min(MAX_SUBSTEPS, max(1, math.ceil(speed / config.step_px))))
    if zero_shutter:  # one instant per frame, its exposure's centre: nothing else to render
        times = np.round(np.asarray(centres, np.float64), 9)
        weights, sharp_index = np.eye(len(centres)), instant_index(times, 0.0)
    else:
        times, weights, sharp_index = exposure_weights(centres, window, substeps, duty,
                                                       (interval,) if consecutive else ())
    centre = np.array([(size - 1) / 2, (size - 1) / 2])
    camera = _affine(roll_rate * times, 1.0 / (1.0 + zoom_rate * times), centre, path(times))
    placed = tuple(_object_motion(o, times) for o in objects)
    return Motion(times=times, weights=weights, sharp_index=sharp_index, camera=camera,
                  objects=placed, blur_px=length, window=window, duty_cycle=duty, substeps=substeps,
                  next_sharp_index=instant_index(times, interval) if consecutive else None)


def camera_motion(cameras: list[np.ndarray], centre_frame: int, *, window: int,
                  in_frames: int = 1, stride: int = 8) -> Motion:
    """The motion of a rendered clip's camera around one sharp frame, for the renderers.

    Args:
        cameras: per source frame, the 2x3 output -> scene matrix of
            :func:`dataset_builder.render.clip_motion`.
        centre_frame: the sharp frame.
        window: frames averaged (the builder's ``--window``; plain averaging).
        in_frames, stride: neighbouring blurred frames, as the builder's ``--frames``/``--stride``.
    """
    centres = [float((f - in_frames // 2) * stride) for f in range(in_frames)]
    times, weights, sharp_index = exposure_weights(centres, window, 1, 1.0)
    camera = np.stack([cameras[centre_frame + int(round(t))] for t in times]).astype(np.float64)
    return Motion(times=times, weights=weights, sharp_index=sharp_index, camera=camera, window=window)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"motion: {message}")


def _streak_length(rng: np.random.Generator, config: MotionConfig) -> float:
    length = config.blur_median * math.exp(config.blur_spread * rng.standard_normal())
    return float(min(length, config.blur_max))


def _affine(angle: np.ndarray, scale: np.ndarray | float, centre: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Per instant, output pixel q -> scale * R(angle) (q - centre) + shift: (T, 2, 3).

    Args:
        angle: (T,) radians; scale: (T,) or a number; centre: (2,) or (T, 2); shift: (T, 2).
    """
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    a = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (T, 2, 2)
    centre = np.broadcast_to(centre, shift.shape)
    offset = shift - np.einsum("tij,tj->ti", a, centre)
    return np.concatenate([a, offset[..., None]], axis=-1)


def _camera_path(rng: np.random.Generator, config: MotionConfig, length: float, open_time: float,
                 t_lo: float, t_hi: float):
    """times (T,) -> the camera's (x, y) shifts (T, 2), px; zero at t = 0, ``length`` long over the exposure."""
    if length <= 0:
        return lambda t: np.zeros((len(t), 2))
    speed = length / open_time
    if rng.random() < config.shake_fraction:
        total = speed * (t_hi - t_lo)
        steps = int(np.clip(total * TRAJECTORY_POINTS_PER_PX, MIN_TRAJECTORY_STEPS, MAX_TRAJECTORY_STEPS))
        # Fewer points than DeblurGAN's 2000: scale the anxiety so a path turns as often.
        anxiety = config.shake_anxiety * DEBLURGAN_STEPS / steps
        points = random_trajectory(rng, length=total, anxiety=anxiety, steps=steps)
        grid = np.linspace(t_lo, t_hi, steps)
        xs, ys = np.interp(0.0, grid, points.real), np.interp(0.0, grid, points.imag)
        return lambda t: np.stack([np.interp(t, grid, points.real) - xs, np.interp(t, grid, points.imag) - ys], -1)
    angle = rng.uniform(0, 2 * math.pi)
    direction = np.array([math.cos(angle), math.sin(angle)])
    side = np.array([-direction[1], direction[0]]) * rng.normal(0, config.pan_curvature) * speed / open_time
    return lambda t: direction * speed * t[:, None] + side * (t * t / 2)[:, None]


def _object_plan(rng: np.random.Generator, config: MotionConfig, size: int, open_time: float) -> dict:
    radius = size * rng.uniform(*config.object_size) / 2
    moving = rng.random() >= config.object_still
    speed = _streak_length(rng, config) / open_time if moving else 0.0
    angle = rng.uniform(0, 2 * math.pi)
    harmonics = np.stack([rng.uniform(0, 0.12, BLOB_HARMONICS), rng.uniform(0, 2 * math.pi, BLOB_HARMONICS)], 1)
    return {
        "radius": radius, "speed": speed, "harmonics": harmonics,
        "velocity": speed * np.array([math.cos(angle), math.sin(angle)]),
        "bend": rng.normal(0, 0.15, 2) * speed / open_time,
        "spin": math.radians(rng.uniform(-1, 1) * config.object_spin) / open_time,
        "start": rng.uniform(0, size, 2),
        # Texture from elsewhere in the same photo, within about a crop of the view.
        "source": tuple(rng.uniform(-size, size, 2)),
    }


def _object_motion(plan: dict, times: np.ndarray) -> ObjectMotion:
    t = times[:, None]
    centres = plan["start"] + plan["velocity"] * t + plan["bend"] * t * t / 2
    # Output pixel q -> object-local R(-spin t) (q - centre).
    matrices = _affine(-plan["spin"] * times, 1.0, centres, np.zeros_like(centres))
    return ObjectMotion(radius=float(plan["radius"]), harmonics=plan["harmonics"],
                        source=plan["source"], matrices=matrices)
