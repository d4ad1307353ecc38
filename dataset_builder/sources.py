"""Footage in: finding sources, reading their metadata, reading their frames.

A source is a video file or a folder of numbered frames. Videos are read with
decord (batches of frames per window, forward only: see DecordReader), or with
PyAV where decord is not installed (it has wheels for x86-64 Linux and Windows
only) or cannot read the video: deeper than
8 bits, codecs decord's bundled FFmpeg lacks, or containers whose frame count
decord gets wrong (decord then hangs at the end of the file, dmlc/decord#373).
PyAV also reads the capture rate that phones write into slow-motion clips
(``com.android.capture.fps``): they store 240 fps captures at 30 fps timestamps.

Frames come out as (N, H, W, C) uint8 or uint16, C = 1 (grey) or 3 (RGB).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

# cv2 must be loaded before decord: decord's wheel bundles zlib 1.2.3, and if it is
# loaded first OpenCV's libpng binds to it and every cv2.imread of a PNG fails with
# "libpng error: bad parameters to zlib". This module is the only importer of decord.
import cv2  # noqa: F401  (import order matters, see above)
import av
import numpy as np

try:
    import decord
except ImportError:  # no decord wheel for this platform (macOS, Linux ARM): PyAV reads all
    decord = None

from dataset_builder.errors import BuildError, DecodeFailed
from dataset_builder.images import read_image
from unsmear.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, display_matrix, displayed, turns_quarter

log = logging.getLogger(__name__)

# Container tags that name the real capture rate of a slow-motion clip.
CAPTURE_FPS_KEYS = ("com.android.capture.fps",)
GREY_PIX_FMT = re.compile(r"^(gray|ya)")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DECORD_SKIP_BATCH = 64  # frames decoded and dropped per call when skipping ahead
# Colour types of the PNG header: 0 grey, 4 grey+alpha; the others decode to RGB.
PNG_GREY_TYPES = (0, 4)
# Frame intervals further than this share from the usual one make a source "variable frame rate".
UNEVEN_FRAME_SPACING = 0.25


@dataclass(frozen=True)
class SourceInfo:
    """What the builder knows about a source before reading its frames.

    Args:
        path: the video file or frame folder.
        name: unique name used in output paths and the manifest.
        kind: ``video`` or ``frames``.
        num_frames: frames the source holds (for PyAV, packets: the exact count is
            only known at the end, and the build stops there).
        width: frame width in pixels.
        height: frame height in pixels.
        channels: 1 (grey) or 3 (RGB).
        bit_depth: 8 or 16 (deeper video is read as 16-bit).
        fps: capture frame rate, or None when nothing says it.
        fps_origin: where ``fps`` came from (``--fps``, a metadata key, ``container``).
        reader: ``decord``, ``pyav`` or ``images``.
        display_matrix: the video's display rotation, which the PyAV reader applies (decord
            turns its frames itself): pairs come out upright, whichever reader made them.
    """

    path: Path
    name: str
    kind: str
    num_frames: int
    width: int
    height: int
    channels: int
    bit_depth: int
    fps: float | None
    fps_origin: str
    reader: str
    display_matrix: tuple[int, ...] | None = None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.bit_depth > 8 else np.uint8)


class FrameReader(Protocol):
    """Reads frames of one source, cheapest when ``start`` only moves forward."""

    info: SourceInfo

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as (n, H, W, C); fewer if the source ends sooner."""
        ...

    def close(self) -> None:
        ...


def find_sources(path: Path) -> list[Path]:
    """The sources under ``path``: a video, a frame folder, or a folder of them.

    Folders are searched recursively; a folder that holds image files is one
    frame-folder source (its sub-folders are not searched). Hidden entries and
    files that are neither videos nor images (e.g. render sidecars) are ignored.

    Raises:
        BuildError: ``path`` does not exist, or holds no source.
    """
    path = Path(path)
    if not path.exists():
        raise BuildError(f"{path} does not exist")
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            raise BuildError(f"{path} is a single image; pass the folder of numbered frames")
        return [path]
    found: list[Path] = []
    _walk(path, found)
    if not found:
        raise BuildError(f"no videos or frame folders found under {path} "
                         "(videos: .mp4 .mov .mkv .webm .avi .mts ...; frames: numbered images)")
    return found


def _walk(folder: Path, found: list[Path]) -> None:
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in entries):
        found.append(folder)
        found.extend(p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        return
    for p in entries:
        if p.is_dir():
            _walk(p, found)
        elif p.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(p)


def source_name(source: Path, root: Path | None = None) -> str:
    """A name for ``source`` that is safe in paths: its stem, or its path under
    ``root`` with ``/`` turned into ``__`` (so clips in different folders stay apart)."""
    source = Path(source)
    if root is not None and Path(root).is_dir():
        try:
            rel = source.resolve().relative_to(Path(root).resolve())
        except ValueError:
            rel = Path(source.name)
        parts = list(rel.parts) or [source.name]
    else:
        parts = [source.name]
    if source.is_file() or source.suffix.lower() in VIDEO_EXTENSIONS:
        parts[-1] = Path(parts[-1]).stem
    name = "__".join(parts)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "source"


def probe_source(source: Path, *, name: str | None = None, fps: float | None = None) -> SourceInfo:
    """Read a source's metadata and check its first frame decodes.

    Args:
        source: video file or frame folder.
        name: name to record; defaults to :func:`source_name`.
        fps: capture rate to use instead of what the source says.

    Raises:
        BuildError: unreadable video, frame folder with gaps or mixed sizes, etc.
    """
    source = Path(source)
    name = name or source_name(source)
    if source.is_dir():
        return _probe_frames(source, name, fps)
    if not source.is_file():
        raise BuildError(f"{source} does not exist")
    return _probe_video(source, name, fps)


def open_source(info: SourceInfo) -> FrameReader:
    """A reader for a probed source."""
    if info.reader == "images":
        return ImageFolderReader(info)
    if info.reader == "decord":
        return DecordReader(info)
    return PyAVReader(info)


# --- videos -------------------------------------------------------------------------


def _probe_video(path: Path, name: str, fps: float | None) -> SourceInfo:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"cannot read video {path}: {_reason(exc)}") from exc
    with container:
        if not container.streams.video:
            raise BuildError(f"{path} has no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        pix_fmt = ctx.pix_fmt or ""
        if not pix_fmt or not ctx.width or not ctx.height:
            raise BuildError(f"cannot read video {path}: no decoder for codec "
                             f"{stream.codec_context.name!r} in this FFmpeg build")
        bits = max(c.bits for c in av.VideoFormat(pix_fmt).components)
        channels = 1 if GREY_PIX_FMT.match(pix_fmt) else 3
        fps_value, origin = _video_fps(container, stream, fps)
        try:
            # Packets an edit list cuts away (a clip trimmed with stream copy) are marked
            # discard: FFmpeg decodes them as references but shows none of them.
            shown = [(packet.pts, packet.is_discard) for packet in container.demux(stream) if packet.size]
        except av.FFmpegError as exc:
            raise BuildError(f"cannot read video {path}: {_reason(exc)}") from exc
    times = [pts for pts, discard in shown if not discard]
    trimmed = len(times) < len(shown)
    packets = len(times)
    if packets == 0:
        raise BuildError(f"{path} holds no video frames")
    _warn_if_uneven(path, [t for t in times if t is not None])
    info = SourceInfo(path=path, name=name, kind="video", num_frames=packets, width=ctx.width,
                      height=ctx.height, channels=channels, bit_depth=16 if bits > 8 else 8,
                      fps=fps_value, fps_origin=origin, reader="pyav")
    matrix = _first_display_matrix(path)
    # decord ignores edit lists (it served a trimmed clip's cut frames as copies of its last
    # one) and mirroring (it applies the rotation only): PyAV reads those as players show them.
    mirrored = matrix is not None and matrix[0] * matrix[4] - matrix[1] * matrix[3] < 0
    if bits <= 8 and channels == 3 and decord is not None and not trimmed and not mirrored:
        info = _prefer_decord(info)
    if info.reader == "pyav" and matrix is not None:
        turned = turns_quarter(matrix)
        size = (info.height, info.width) if turned else (info.width, info.height)
        info = dataclasses.replace(info, display_matrix=matrix, width=size[0], height=size[1])
    reader = open_source(info)
    try:
        first = reader.read(0, 1)
    finally:
        reader.close()
    if len(first) == 0:
        raise BuildError(f"cannot decode video {path}: no frame decodes")
    return info


def _warn_if_uneven(path: Path, pts: list[int]) -> None:
    """Warn when frames are not evenly spaced in time (a variable frame rate): a window of N
    frames then spans a varying exposure, and the pairs' blur lengths vary with it."""
    steps = np.diff(np.unique(np.asarray(pts, dtype=np.int64)))
    if len(steps) < 2:
        return
    typical = float(np.median(steps))
    uneven = int(np.sum(np.abs(steps - typical) > UNEVEN_FRAME_SPACING * typical))
    if uneven:
        log.warning("%s: %d of %d frame intervals differ from the usual one by more than %d %% "
                    "(a variable frame rate): windows average frames unevenly spaced in time",
                    path, uneven, len(steps), round(100 * UNEVEN_FRAME_SPACING))


def _first_display_matrix(path: Path) -> tuple[int, ...] | None:
    """The display matrix of the video's first frame (phones store rotation this way)."""
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0), None)
    except (av.FFmpegError, OSError) as exc:
        raise BuildError(f"cannot read video {path}: {_reason(exc)}") from exc
    return display_matrix(frame) if frame is not None else None


def _prefer_decord(info: SourceInfo) -> SourceInfo:
    try:
        vr = decord.VideoReader(str(info.path), ctx=decord.cpu(0))
        count = len(vr)
        # get_batch, not vr[0]: it is what reading uses, and it fails on some frame
        # widths (48 px: "DECORDArrayCopyFromTo: The size must exactly match").
        height, width = vr.get_batch([0]).shape[1:3] if count else (info.height, info.width)
        del vr
    except (decord.DECORDError, RuntimeError) as exc:
        log.info("%s: decord cannot read it (%s); reading with PyAV", info.path, _reason(exc))
        return info
    if count != info.num_frames:
        # A count from the header that the stream does not match makes decord hang
        # at the end of the file; PyAV reads until the real end.
        log.warning("%s: decord counts %d frames, the stream holds %d packets; reading "
                    "with PyAV", info.path, count, info.num_frames)
        return info
    # decord applies the display rotation, so its frames may be transposed.
    return SourceInfo(**{**info.__dict__, "reader": "decord", "width": width, "height": height})


def _video_fps(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
               override: float | None) -> tuple[float | None, str]:
    if override is not None:
        return float(override), "--fps"
    for tags in (container.metadata, stream.metadata):
        # Matroska upper-cases tag names; MP4 keeps them as written.
        lowered = {k.lower(): v for k, v in tags.items()}
        for key in CAPTURE_FPS_KEYS:
            if key in lowered:
                try:
                    value = float(lowered[key])
                except ValueError:
                    continue
                if value > 0:
                    return value, key
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate), "container"
    return None, "unknown"


class DecordReader:
    """Windows of frames through decord, decoded forward only.

    decord's seeking is not reliable: in an MKV written by PyAV it returned frame 0
    when asked for frame 6 (and dmlc/decord#54, #195 report wrong frames after
    seeks). So windows are read in order, each batch continuing exactly where the
    previous one stopped, which decord decodes without seeking; frames between
    windows are decoded and dropped, as a codec has to decode them anyway.
    """

    def __init__(self, info: SourceInfo):
        self.info = info
        self._vr: decord.VideoReader | None = None
        self._next = 0
        self._pyav: PyAVReader | None = None  # after decord failed on this file

    def _open(self) -> decord.VideoReader:
        try:
            return decord.VideoReader(str(self.info.path), ctx=decord.cpu(0))
        except (decord.DECORDError, RuntimeError) as exc:
            raise BuildError(f"cannot read video {self.info.path}: {_reason(exc)}") from exc

    def read(self, start: int, stop: int) -> np.ndarray:
        if self._pyav is not None:
            return self._pyav.read(start, stop)
        stop = min(stop, self.info.num_frames)
        if stop <= start:
            return np.empty((0, self.info.height, self.info.width, 3), np.uint8)
        if self._vr is None or start < self._next:
            self._vr, self._next = self._open(), 0
        try:
            while self._next < start:
                skip = min(start - self._next, DECORD_SKIP_BATCH)
                self._vr.get_batch(list(range(self._next, self._next + skip)))
                self._next += skip
            frames = self._vr.get_batch(list(range(start, stop))).asnumpy()
        except (decord.DECORDError, RuntimeError) as exc:
            # decord's threaded decoder fails on some streams FFmpeg decodes (a VP9 WebM at
            # random frames): PyAV reads the same frames from here on, turned as decord turns
            # them (the display matrix, which decord's probe left out).
            log.warning("%s: decord failed at frames %d-%d (%s); reading with PyAV", self.info.path,
                        start, stop - 1, _reason(exc))
            self.close()
            self._pyav = PyAVReader(dataclasses.replace(self.info, reader="pyav",
                                                        display_matrix=_first_display_matrix(self.info.path)))
            return self._pyav.read(start, stop)
        self._next = stop
        _check_size(self.info, frames.shape[1:3], start)
        return frames

    def close(self) -> None:
        self._vr = None
        if self._pyav is not None:
            self._pyav.close()


class PyAVReader:
    """Sequential decoding through PyAV, for what decord cannot read."""

    def __init__(self, info: SourceInfo):
        self.info = info
        self._fmt = {(1, 8): "gray", (1, 16): "gray16le",
                     (3, 8): "rgb24", (3, 16): "rgb48le"}[(info.channels, info.bit_depth)]
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] = iter(())
        self._next = 0
        self._ended = False

    def _reopen(self) -> None:
        self.close()
        try:
            self._container = av.open(str(self.info.path))
        except (av.FFmpegError, OSError) as exc:
            raise BuildError(f"cannot read video {self.info.path}: {_reason(exc)}") from exc
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        self._frames = self._container.decode(stream)
        self._next = 0
        self._ended = False

    def read(self, start: int, stop: int) -> np.ndarray:
        if self._container is None or start < self._next:
            self._reopen()
        out = []
        while self._next < stop and not self._ended:
            try:
                frame = next(self._frames)
            except StopIteration:
                self._ended = True
                break
            except av.FFmpegError as exc:
                raise DecodeFailed(f"cannot decode {self.info.path} frame {self._next}: "
                                 f"{_reason(exc)}") from exc
            if self._next >= start:
                array = frame.to_ndarray(format=self._fmt)
                array = displayed(array[:, :, None] if array.ndim == 2 else array, self.info.display_matrix)
                _check_size(self.info, array.shape[:2], self._next)
                out.append(np.ascontiguousarray(array))
            self._next += 1
        if not out:
            return np.empty((0, self.info.height, self.info.width, self.info.channels),
                            self.info.dtype)
        return np.stack(out)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


# --- frame folders ------------------------------------------------------------------


def _probe_frames(folder: Path, name: str, fps: float | None) -> SourceInfo:
    files = _numbered_frames(folder)
    header = _png_header(files[0]) if files[0].suffix.lower() == ".png" else None
    if header is not None and all(f.suffix.lower() == ".png" for f in files):
        # PNG headers are cheap: check every frame now instead of failing mid-build.
        for f in files[1:]:
            other = _png_header(f)
            if other != header:
                raise BuildError(f"frame folder {folder} mixes frame formats: {files[0].name} is "
                                 f"{_describe(header)}, {f.name} is {_describe(other)}")
    first = read_image(files[0])
    height, width, channels = first.shape
    return SourceInfo(path=folder, name=name, kind="frames", num_frames=len(files), width=width,
                      height=height, channels=channels, bit_depth=8 * first.dtype.itemsize,
                      fps=float(fps) if fps is not None else None,
                      fps_origin="--fps" if fps is not None else "unknown", reader="images")


def _numbered_frames(folder: Path) -> list[Path]:
    images = [p for p in folder.iterdir()
              if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        raise BuildError(f"{folder} holds no image frames")
    numbered: dict[int, Path] = {}
    for p in images:
        match = re.search(r"(\d+)(?!.*\d)", p.stem)
        if match is None:
            raise BuildError(f"frame folder {folder}: {p.name} has no frame number in its name")
        number = int(match.group(1))
        if number in numbered:
            raise BuildError(f"frame folder {folder}: {numbered[number].name} and {p.name} "
                             f"both claim frame {number}")
        numbered[number] = p
    order = sorted(numbered)
    for before, after in zip(order, order[1:]):
        if after != before + 1:
            raise BuildError(f"frame folder {folder} has a gap: {numbered[before].name} is "
                             f"followed by {numbered[after].name} (frames {before + 1}-{after - 1} "
                             "missing)")
    return [numbered[n] for n in order]


def _png_header(path: Path) -> tuple[int, int, int, int] | None:
    """(width, height, bits, channels) from a PNG's IHDR, or None if not a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(29)
    if len(head) < 29 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height, bits, colour = struct.unpack(">IIBB", head[16:26])
    return width, height, 16 if bits == 16 else 8, 1 if colour in PNG_GREY_TYPES else 3


def _describe(header: tuple[int, int, int, int] | None) -> str:
    if header is None:
        return "not a PNG"
    width, height, bits, channels = header
    return f"{width}x{height} {bits}-bit {'grey' if channels == 1 else 'RGB'}"


class ImageFolderReader:
    """Frames from a folder of numbered images, any bit depth OpenCV reads."""

    def __init__(self, info: SourceInfo):
        self.info = info
        self._files = _numbered_frames(info.path)

    def read(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, len(self._files))
        frames = []
        for i in range(start, stop):
            image = read_image(self._files[i])
            if image.shape != (self.info.height, self.info.width, self.info.channels) or \
                    image.dtype != self.info.dtype:
                raise BuildError(
                    f"frame folder {self.info.path} mixes frame sizes: {self._files[0].name} is "
                    f"{self.info.width}x{self.info.height}x{self.info.channels} "
                    f"{self.info.bit_depth}-bit, {self._files[i].name} is "
                    f"{image.shape[1]}x{image.shape[0]}x{image.shape[2]} "
                    f"{8 * image.dtype.itemsize}-bit")
            frames.append(image)
        if not frames:
            return np.empty((0, self.info.height, self.info.width, self.info.channels),
                            self.info.dtype)
        return np.stack(frames)

    def close(self) -> None:
        pass


def _check_size(info: SourceInfo, shape: tuple[int, int], index: int) -> None:
    if tuple(shape) != (info.height, info.width):
        raise BuildError(f"{info.path}: frame size changes mid-stream at frame {index} "
                         f"({info.width}x{info.height} -> {shape[1]}x{shape[0]}); split the "
                         "video where it changes")


def _reason(exc: BaseException) -> str:
    # decord prefixes its messages with a timestamp and source location; keep the rest.
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^\[[0-9:]+\] \S+:\d+: ", "", text).strip() or type(exc).__name__
