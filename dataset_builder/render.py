"""Synthetic high-fps footage from still photographs, for when no real footage exists.

A virtual camera looks at a photograph and moves over it at e.g. 240 fps: a pan,
a slow zoom and roll, and hand shake. Objects cut out of the same photograph (soft
masks with random blob shapes) move on their own paths over the view, so their
blur is local: object motion blur. All motion is sub-pixel; rendering is in linear
light with bilinear sampling of a photograph prescaled with area averaging
(anti-aliasing), and object edges are anti-aliased by supersampled masks.
The clips are written losslessly with PyAV and feed ``build`` like real footage.

Objects are cut from the clip's own photograph, never from another one: a photo's
content must not leak into a clip that may land in the other split.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

import av
import cv2
import numpy as np
from tqdm import tqdm

from dataset_builder.config import RenderConfig
from dataset_builder.errors import BuildError
from dataset_builder.images import read_image, to_rgb
from unsmear.media import IMAGE_EXTENSIONS
from dataset_builder.response import load_response
from unsmear.files import replaced_when_done

log = logging.getLogger(__name__)

# The camera view covers at most this share of the photo's width and height; the
# rest is room for the pan, the roll and the shake.
VIEW_SHARE = 0.85
# The camera never wanders faster than this (a slower photo-sized sweep, not a vibration).
MAX_WANDER_HZ = 2.0
MASK_SUPERSAMPLE = 4  # object masks are drawn 4x larger and area-averaged: smooth edges
OBJECT_SIZE = (0.18, 0.35)  # object diameter range, share of the output height
BLOB_HARMONICS = 3  # radius perturbations that make masks irregular, not ellipses
LOSSLESS = {"codec": "libx264rgb", "pix_fmt": "rgb24", "suffix": ".mkv"}
CAMERA_LIKE = {"codec": "libx264", "pix_fmt": "yuv420p", "suffix": ".mp4"}
X264_PRESET = "veryfast"  # lossless either way; slower presets only shrink files a bit
SHAKE_FREQUENCIES = (0.7, 1.0, 1.6)  # multiples of --shake-hz summed for a shake path


@dataclass(frozen=True)
class ObjectPath:
    """One moving object, in output pixels and frames.

    Args:
        start: (x, y) of the object's centre at frame 0; objects bounce off the
            view's edges (see :func:`object_centre`).
        velocity: (dx, dy) per frame.
        acceleration: (ddx, ddy) per frame squared (curved paths).
        spin: rotation per frame, degrees.
        size: diameter, pixels.
    """

    start: tuple[float, float]
    velocity: tuple[float, float]
    acceleration: tuple[float, float]
    spin: float
    size: float


def find_photos(path: Path) -> list[Path]:
    """Photos in ``path`` (a file, or a folder searched recursively), sorted.

    Raises:
        BuildError: nothing to render from.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BuildError(f"{path} does not exist")
    photos = sorted(p for p in path.rglob("*") if p.is_file() and
                    p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not photos:
        raise BuildError(f"no photos ({', '.join(IMAGE_EXTENSIONS)}) under {path}")
    return photos


def render_photos(photos: Sequence[Path], out: Path, config: RenderConfig, *,
                  progress: bool = True) -> list[Path]:
    """Render one clip per photo into ``out``; existing clips are kept (resumable).

    Returns:
        The clip paths, in the order of ``photos``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BuildError(f"{out} is a file, not a folder: give a folder for the clips")
    out.mkdir(parents=True, exist_ok=True)
    suffix = (LOSSLESS if config.codec == "lossless" else CAMERA_LIKE)["suffix"]
    names = [_clip_name(p) for p in photos]
    if len(set(names)) != len(names):
        raise BuildError("two photos share a file name; rename one so their clips stay apart")
    clips = []
    with tqdm(total=len(photos) * config.num_frames, unit="frame", disable=not progress,
              desc="render", dynamic_ncols=True) as bar:
        for photo, name in zip(photos, names):
            clip = out / f"{name}{suffix}"
            if _rendered_with(clip, config):
                log.info("%s exists; kept", clip)
                bar.update(config.num_frames)
            else:
                render_clip(photo, clip, config, on_frame=lambda: bar.update(1))
            clips.append(clip)
    return clips


def _rendered_with(clip: Path, config: RenderConfig) -> bool:
    """Whether ``clip`` exists, rendered with ``config`` (its sidecar says so): a clip of
    other settings (size, rate, length, motion) is rendered again, not kept."""
    sidecar = clip.with_suffix(".json")
    if not (clip.exists() and sidecar.exists()):
        return False
    try:
        stated = json.loads(sidecar.read_text(encoding="utf-8")).get("config")
    except (json.JSONDecodeError, OSError, AttributeError):
        return False
    if stated != json.loads(json.dumps(asdict(config))):
        log.info("%s was rendered with other settings; rendering it again", clip)
        return False
    return True


def render_clip(photo: Path, clip: Path, config: RenderConfig, *,
                on_frame: Callable[[], None] | None = None) -> Path:
    """Render one clip from one photo; writes ``clip`` and a ``.json`` sidecar.

    The clip appears under its name only once complete.
    """
    rng = np.random.default_rng([config.seed, zlib.crc32(photo.name.encode("utf-8"))])
    srgb = load_response("srgb")
    scene, cameras, camera_info = _scene_and_camera(photo, config, rng)
    objects = [_make_object(scene, config, rng) for _ in range(config.objects)]
    paths = [_object_path(config, rng, sprite.shape[0]) for sprite in objects]
    with replaced_when_done(clip) as tmp:
        write_video(tmp, (_frame(scene, cameras[i], objects, paths, i, config, srgb)
                          for i in range(config.num_frames)),
                    fps=config.fps, codec=config.codec, crf=config.crf, on_frame=on_frame)
    sidecar = {"photo": str(photo), "config": asdict(config), "camera": camera_info,
               "objects": [asdict(p) for p in paths], "frames": config.num_frames}
    clip.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return clip


def clip_motion(photo: Path, config: RenderConfig) -> tuple[np.ndarray, list[np.ndarray]]:
    """The scene and camera path :func:`render_clip` renders for ``photo``.

    Returns:
        (scene: (H, W, 3) float32 linear light, cameras: per frame the 2x3 matrix
        mapping output pixels to scene pixels), the same numbers the clip is made of.
    """
    rng = np.random.default_rng([config.seed, zlib.crc32(photo.name.encode("utf-8"))])
    scene, cameras, _ = _scene_and_camera(photo, config, rng)
    return scene, cameras


def _scene_and_camera(photo: Path, config: RenderConfig,
                      rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray], dict]:
    scene = _fit_photo(load_response("srgb").to_linear(to_rgb(read_image(photo))), config, photo)
    cameras, camera_info = _camera_path(scene.shape[:2], config, rng)
    return scene, cameras, camera_info


def _clip_name(photo: Path) -> str:
    return photo.stem


def _fit_photo(linear: np.ndarray, config: RenderConfig, photo: Path) -> np.ndarray:
    """Rescale the photo so one output pixel is one photo pixel at zoom 1 and the
    view covers ``VIEW_SHARE`` of it; area averaging keeps downscaling alias-free."""
    h, w = linear.shape[:2]
    factor = min(VIEW_SHARE * w / config.width, VIEW_SHARE * h / config.height)
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    if factor < 1:
        log.warning("%s (%dx%d) is small for %dx%d output: upscaled %.2fx, footage will be "
                    "soft", photo.name, w, h, config.width, config.height, 1 / factor)
        return cv2.resize(linear, size, interpolation=cv2.INTER_CUBIC).clip(0, 1)
    return cv2.resize(linear, size, interpolation=cv2.INTER_AREA)


def _camera_path(shape: tuple[int, int], config: RenderConfig,
                 rng: np.random.Generator) -> tuple[list[np.ndarray], dict]:
    """Per frame, the 2x3 matrix mapping output pixels to scene pixels.

    The view wanders smoothly inside the photo (two sinusoids per axis, random
    phases), timed so its mean speed is ``camera_speed`` scaled by a random factor
    in [0.5, 1]: some windows move fast, some barely, as a hand-held camera does.
    """
    sh, sw = shape
    frames = config.num_frames
    roll_max = math.radians(config.rotation) / 2
    # Half extents of the view at the largest roll; zoom only magnifies (covers less).
    ex = config.width / 2 * math.cos(roll_max) + config.height / 2 * math.sin(roll_max)
    ey = config.width / 2 * math.sin(roll_max) + config.height / 2 * math.cos(roll_max)
    margin = 3 * config.shake + 1
    room = np.array([max(0.0, sw / 2 - ex - margin), max(0.0, sh / 2 - ey - margin)])
    share = rng.dirichlet([2.0, 2.0], size=2)  # split each axis' room between two sinusoids
    rates = rng.uniform(0.5, 1.5, size=(2, 2))
    phases = rng.uniform(0, 2 * math.pi, size=(2, 2))
    steps = np.arange(frames, dtype=np.float64)

    def wander(scale: float) -> np.ndarray:
        return np.stack([sum(room[k] * share[k, j] * np.sin(scale * rates[k, j] * steps +
                                                              phases[k, j]) for j in range(2))
                         for k in range(2)], axis=1)

    target = config.camera_speed * rng.uniform(0.5, 1.0)
    # RMS speed of a sum of sinusoids A sin(w t): sqrt(sum (A w)^2 / 2), linear in scale.
    unit = math.sqrt(float(np.sum((room[:, None] * share * rates) ** 2)) / 2)
    scale = min(target / unit if unit > 0 else 0.0, MAX_WANDER_HZ * 2 * math.pi / config.fps)
    offsets = wander(scale)
    speed = float(np.mean(np.linalg.norm(np.diff(offsets, axis=0), axis=1))) if frames > 1 else 0.0
    if speed < 0.9 * target:
        log.info("camera moves %.2f px/frame, not %.2f: the photo leaves little room; use a "
                 "larger photo or a smaller --size", speed, target)
    centre = np.array([sw / 2, sh / 2])
    roll_end = rng.uniform(-roll_max, roll_max)
    zoom_end = 1 + config.zoom * rng.uniform(0, 1)
    zoom_in = rng.random() < 0.5
    shake_phases = rng.uniform(0, 2 * math.pi, size=(2, len(SHAKE_FREQUENCIES)))
    matrices = []
    for i in range(frames):
        s = i / max(1, frames - 1)
        t = i / config.fps
        shake = np.array([sum(math.sin(2 * math.pi * config.shake_hz * f * t + shake_phases[k, j])
                              for j, f in enumerate(SHAKE_FREQUENCIES)) for k in range(2)])
        # Sum of n unit sinusoids has RMS sqrt(n/2): normalise so --shake is the RMS.
        shake *= config.shake / math.sqrt(len(SHAKE_FREQUENCIES) / 2)
        position = centre + offsets[i] + shake
        roll = roll_end * (2 * s - 1)
        zoom = 1 + (zoom_end - 1) * (s if zoom_in else 1 - s)
        cos, sin = math.cos(roll) / zoom, math.sin(roll) / zoom
        a = np.array([[cos, -sin], [sin, cos]])
        offset = position - a @ np.array([(config.width - 1) / 2, (config.height - 1) / 2])
        matrices.append(np.hstack([a, offset[:, None]]).astype(np.float64))
    info = {"mean_speed_px_per_frame": speed, "roll_deg": math.degrees(roll_end) * 2,
            "zoom": zoom_end, "zoom_in": zoom_in}
    return matrices, info


def _make_object(scene: np.ndarray, config: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """A premultiplied RGBA cut-out (float32, linear) with a soft blob mask."""
    size = int(round(config.height * rng.uniform(*OBJECT_SIZE)))
    size = max(8, min(size, scene.shape[0] - 2, scene.shape[1] - 2))
    y = int(rng.integers(0, scene.shape[0] - size + 1))
    x = int(rng.integers(0, scene.shape[1] - size + 1))
    patch = scene[y:y + size, x:x + size]
    big = size * MASK_SUPERSAMPLE
    theta = np.linspace(0, 2 * math.pi, 180, endpoint=False)
    radius = np.ones_like(theta)
    for k in range(2, 2 + BLOB_HARMONICS):
        radius += rng.uniform(0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    radius *= 0.46 * big / radius.max()
    points = np.stack([big / 2 + radius * np.cos(theta), big / 2 + radius * np.sin(theta)], 1)
    mask = np.zeros((big, big), np.uint8)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    alpha = cv2.resize(mask.astype(np.float32) / 255, (size, size), interpolation=cv2.INTER_AREA)
    # Pad by a pixel of transparency so bilinear sampling fades the edge out.
    rgba = np.zeros((size + 2, size + 2, 4), np.float32)
    rgba[1:-1, 1:-1, :3] = patch * alpha[..., None]
    rgba[1:-1, 1:-1, 3] = alpha
    return rgba


def _object_path(config: RenderConfig, rng: np.random.Generator, size: int) -> ObjectPath:
    frames = config.num_frames
    speed = config.object_speed * rng.uniform(0.3, 1.0)
    angle = rng.uniform(0, 2 * math.pi)
    velocity = np.array([math.cos(angle), math.sin(angle)]) * speed
    start = np.array([rng.uniform(0, config.width), rng.uniform(0, config.height)])
    bend = rng.normal(0, 0.15 * speed / max(1, frames), size=2)
    return ObjectPath(start=(float(start[0]), float(start[1])),
                      velocity=(float(velocity[0]), float(velocity[1])),
                      acceleration=(float(bend[0]), float(bend[1])),
                      spin=float(rng.normal(0, 0.3)), size=float(size))


def object_centre(path: ObjectPath, index: int, width: int, height: int) -> np.ndarray:
    """Where an object is at frame ``index``: its path, bounced off the view's edges
    (an object may stick out by a quarter of its size) so it stays in the clip."""
    free = (np.array(path.start) + np.array(path.velocity) * index +
            np.array(path.acceleration) * index ** 2 / 2)
    slack = path.size / 4
    return np.array([_bounce(free[0], -slack, width + slack),
                     _bounce(free[1], -slack, height + slack)])


def _bounce(x: float, lo: float, hi: float) -> float:
    span = hi - lo
    phase = (x - lo) % (2 * span)
    return lo + (phase if phase <= span else 2 * span - phase)


def _frame(scene: np.ndarray, camera: np.ndarray, objects: list[np.ndarray],
           paths: list[ObjectPath], index: int, config: RenderConfig, srgb) -> np.ndarray:
    """One output frame: (H, W, 3) uint8 sRGB."""
    view = cv2.warpAffine(scene, camera, (config.width, config.height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)
    for sprite, path in zip(objects, paths):
        _paste(view, sprite, path, index)
    return srgb.from_linear(view, np.dtype(np.uint8))


def _paste(view: np.ndarray, sprite: np.ndarray, path: ObjectPath, index: int) -> None:
    """Composite a premultiplied sprite over ``view`` in place (linear light)."""
    h, w = view.shape[:2]
    centre = object_centre(path, index, w, h)
    angle = math.radians(path.spin * index)
    half = sprite.shape[0] / 2 * math.sqrt(2) + 1
    x0, y0 = max(0, int(centre[0] - half)), max(0, int(centre[1] - half))
    x1, y1 = min(w, int(centre[0] + half) + 2), min(h, int(centre[1] + half) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    # Output pixel q -> sprite pixel: rotate by -angle about the object's centre.
    cos, sin = math.cos(angle), math.sin(angle)
    a = np.array([[cos, sin], [-sin, cos]])
    sprite_centre = np.array([(sprite.shape[1] - 1) / 2, (sprite.shape[0] - 1) / 2])
    offset = sprite_centre - a @ (centre - np.array([x0, y0]))
    matrix = np.hstack([a, offset[:, None]])
    layer = cv2.warpAffine(sprite, matrix, (x1 - x0, y1 - y0),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    region = view[y0:y1, x0:x1]
    region *= 1 - layer[..., 3:4]
    region += layer[..., :3]


def write_video(path: Path, frames: Iterable[np.ndarray], *, fps: float,
                codec: str = "lossless", crf: int = 18, metadata: dict[str, str] | None = None,
                on_frame: Callable[[], None] | None = None) -> int:
    """Encode RGB frames with PyAV.

    Args:
        path: output file; ``.mkv`` or ``.mp4``.
        frames: (H, W, 3) uint8 RGB frames, H and W even.
        fps: frame rate of the timestamps.
        codec: ``lossless`` (H.264 RGB at qp 0, bit-exact) or ``h264`` (4:2:0 at ``crf``).
        crf: quality for ``h264``.
        metadata: container tags, e.g. ``{"com.android.capture.fps": "240"}``.
        on_frame: called after each frame (progress).

    Returns:
        Frames written.
    """
    spec = LOSSLESS if codec == "lossless" else CAMERA_LIKE
    rate = Fraction(fps).limit_denominator(1001)
    # bitexact: no random segment IDs or dates, so the same frames give the same bytes.
    options = {"fflags": "+bitexact"}
    if Path(path).suffix.lower() == ".mp4":
        options["movflags"] = "use_metadata_tags"  # MP4 keeps custom tags only with it
    count = 0
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=options) as container:
        container.metadata.update(metadata or {})
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream(spec["codec"], rate=rate)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = spec["pix_fmt"]
                stream.options = ({"qp": "0", "preset": X264_PRESET} if codec == "lossless"
                                  else {"crf": str(crf), "preset": X264_PRESET})
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            count += 1
            if on_frame is not None:
                on_frame()
        if stream is not None:
            container.mux(stream.encode())
    return count
