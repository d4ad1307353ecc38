"""Probing and decoding the input video with PyAV, one frame at a time, in presentation order.

Decoding never holds more than the frames in flight, so memory stays flat however long the
video. Each frame keeps its own timestamp (variable frame rate stays variable); where a
container gives none or a non-increasing one (raw elementary streams, AVI with B-frames), the
frame gets the previous timestamp plus one frame duration, as FFmpeg's best-effort timestamp
does, so the encoder always receives strictly increasing timestamps and no frame is dropped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.colour import RANGE_FULL, SWS_THREADS, ColourProperties, thread_reformatter
from pipeline.errors import PipelineError
from pipeline.ordered import ordered_map

log = logging.getLogger(__name__)

# Used only when a stream states no frame rate at all.
FALLBACK_FRAME_RATE = Fraction(25)
# A time base for streams that carry no timestamps (raw H.264): fine enough for any rate.
RAW_STREAM_TIME_BASE = Fraction(1, 90000)
# A video whose frames end this much before its stated duration is truncated, not just
# trimmed by an edit list or rounding (seen in real files: up to 0.09 s).
TRUNCATION_TOLERANCE_S = 0.5
TRUNCATION_TOLERANCE_FRACTION = 0.1


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about an input before decoding it."""

    path: Path
    container_format: str        # e.g. "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "h264"
    codec: str                   # decoder name, e.g. "h264"
    width: int
    height: int
    pix_fmt: str                 # e.g. "yuv420p", "yuv420p10le", "gray"
    bit_depth: int               # bits per sample of the first component
    time_base: Fraction          # of the video stream's timestamps
    frame_rate: Fraction         # nominal (guessed) rate; timestamps are the truth
    frame_count: int | None      # from the header; absent in many containers, off with edit lists
    duration: float | None       # seconds, of the video stream or else the container
    stream_duration: float | None = None  # seconds the video stream itself claims to last
    raw_stream: bool = False     # an elementary stream (.h264...): frames carry no timestamps
    copied_streams: tuple[str, ...] = field(default=())  # "audio:aac", "subtitle:subrip", ...


@dataclass
class DecodedFrame:
    """One decoded frame: its RGB pixels and its presentation timestamp."""

    index: int                   # position in presentation order, from 0
    pts: int                     # in VideoInfo.time_base units, strictly increasing
    rgb: np.ndarray              # (H, W, 3) uint8, or uint16 for sources deeper than 8 bits


HWDEC_CHOICES = ("none", "auto", "cuda")


def _hwaccel(hwdec: str):
    """PyAV's hardware-decoding settings for ``hwdec``, or None for software decoding."""
    if hwdec not in HWDEC_CHOICES:
        raise PipelineError(f"unknown --hwdec {hwdec!r} (choose from {', '.join(HWDEC_CHOICES)})")
    if hwdec == "none":
        return None
    from av.codec.hwaccel import HWAccel, hwdevices_available

    if "cuda" not in hwdevices_available():
        if hwdec == "cuda":
            log.warning("this FFmpeg build has no CUDA decoding; decoding on the CPU")
        return None
    if hwdec == "auto":
        import torch

        if not torch.cuda.is_available():
            return None
    # Streams NVDEC can't decode (e.g. 4:4:4 H.264) fall back to the software decoder.
    return HWAccel(device_type="cuda", allow_software_fallback=True)


def _open(path: Path, hwaccel=None) -> av.container.InputContainer:
    if not path.exists():
        raise PipelineError(f"{path}: no such file")
    if path.is_dir():
        raise PipelineError(f"{path}: is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise PipelineError(f"{path}: permission denied")
    if hwaccel is not None:
        try:
            return av.open(str(path), metadata_errors="ignore", hwaccel=hwaccel)
        except av.error.FFmpegError as exc:
            # No usable GPU decoder here (no device, no driver): decode on the CPU instead.
            log.warning("%s: hardware decoding unavailable (%s); decoding on the CPU",
                        path, _ffmpeg_reason(exc))
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise PipelineError(f"{path}: cannot be read as a video ({_ffmpeg_reason(exc)}); "
                            f"it is truncated, corrupt or not a video file") from exc


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _video_stream(container: av.container.InputContainer, path: Path):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise PipelineError(f"{path}: has no video stream (it holds {', '.join(kinds)})")
    stream = container.streams.video[0]
    if stream.codec_context is None or stream.codec_context.name in (None, "", "none"):
        raise PipelineError(f"{path}: this FFmpeg build has no decoder for its video codec")
    return stream


def _bit_depth(pix_fmt: str) -> int:
    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, TypeError):
        return 8


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read an input's header. Raises PipelineError for anything that isn't a decodable video."""
    path = Path(path)
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        ctx = stream.codec_context
        if not ctx.width or not ctx.height:
            raise PipelineError(f"{path}: the video stream has no frame size (corrupt header?)")
        pix_fmt = ctx.pix_fmt or "yuv420p"
        rate = stream.guessed_rate or stream.average_rate or FALLBACK_FRAME_RATE
        time_base = stream.time_base
        if stream.duration is not None and time_base:
            duration = float(stream.duration * time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = None
        raw = _is_raw_stream(container)
        if raw:
            time_base = RAW_STREAM_TIME_BASE
        copied = tuple(
            f"{s.type}:{s.codec_context.name if s.codec_context else s.codec_tag}"
            for s in container.streams
            if s.type in ("audio", "subtitle")
        )
        return VideoInfo(
            path=path,
            container_format=container.format.name,
            codec=ctx.name,
            width=ctx.width,
            height=ctx.height,
            pix_fmt=pix_fmt,
            bit_depth=_bit_depth(pix_fmt),
            time_base=Fraction(time_base) if time_base else RAW_STREAM_TIME_BASE,
            frame_rate=Fraction(rate),
            frame_count=stream.frames or None,
            duration=duration,
            stream_duration=_stream_duration(stream),
            raw_stream=raw,
            copied_streams=copied,
        )
    finally:
        container.close()


def _stream_duration(stream) -> float | None:
    """The video stream's own stated duration: MP4's track duration, or Matroska's tag."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            return None
    return None


def _is_raw_stream(container) -> bool:
    # Elementary streams (.h264, .hevc, .m4v...) have no timestamps of their own.
    return container.format.name in {"h264", "hevc", "m4v", "mpegvideo", "vvc", "av1", "obu"}


class _BestEffortTimestamps:
    """FFmpeg's guess_correct_pts: trust pts, unless it has gone backwards more often than dts.

    AVI and some raw-ish containers store only decode timestamps; with B-frames their frames'
    pts come out of order while dts stays monotonic.
    """

    def __init__(self) -> None:
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        return dts


class FrameReader:
    """Decodes a video's frames in presentation order as RGB arrays with their timestamps.

    Args:
        path: the video file.
        threads: decoder threads (0 = FFmpeg's automatic choice).
        hwdec: "none" (CPU decoding), "cuda" (NVDEC, falling back to the CPU where it
            can't), or "auto" (NVDEC when a CUDA GPU is present).
        convert_threads: threads converting decoded frames to RGB while decoding goes on
            (1 = on the thread iterating ``frames()``).

    After the first frame has been read, ``colour`` and ``display_matrix`` describe the
    stream, so the writer can reproduce them.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 0, hwdec: str = "none",
                 convert_threads: int = 1) -> None:
        self._hwaccel = _hwaccel(hwdec)
        self.info = probe(path)
        self._threads = threads
        self._convert_threads = convert_threads
        self.colour = ColourProperties()
        self.display_matrix: tuple[int, ...] | None = None
        self.repaired_timestamps = 0
        self.resized_frames = 0

    def frames(self, seek_pts: int | None = None) -> Iterator[DecodedFrame]:
        """Yield every frame once, in order. Raises PipelineError if decoding fails mid-way.

        Args:
            seek_pts: start decoding at the last keyframe at or before this timestamp (in
                ``info.time_base``) instead of the beginning; indices then count from there
                and the completeness check is skipped (the caller decides where to stop).
        """
        info = self.info
        container = _open(info.path, self._hwaccel)
        try:
            stream = _video_stream(container, info.path)
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self._threads
            start = 0 if info.raw_stream else (stream.start_time or 0)
            if seek_pts is not None:
                if info.raw_stream:
                    raise PipelineError(f"{info.path}: a raw stream has no timestamps to seek by")
                container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
            frame_ticks = max(1, round(1 / (info.frame_rate * info.time_base)))
            rgb_format = "rgb48le" if info.bit_depth > 8 else "rgb24"
            last_pts: int | None = None
            best_effort = _BestEffortTimestamps()
            index = 0

            def timed() -> Iterator[tuple[int, int, av.VideoFrame]]:
                nonlocal index, last_pts
                for frame in self._decode(container, stream):
                    if index == 0:
                        self._read_stream_properties(frame)  # before any conversion starts
                    if frame.width != info.width or frame.height != info.height:
                        self.resized_frames += 1
                    pts = None if info.raw_stream else best_effort(frame.pts, frame.dts)
                    if pts is None or (last_pts is not None and pts <= last_pts):
                        pts = 0 if last_pts is None else last_pts + frame_ticks
                        self.repaired_timestamps += 1
                    last_pts = pts
                    yield index, pts, frame
                    index += 1

            def convert(item: tuple[int, int, av.VideoFrame]) -> DecodedFrame:
                n, pts, frame = item
                return DecodedFrame(index=n, pts=pts, rgb=self._to_rgb(frame, rgb_format))

            yield from ordered_map(convert, timed(), self._convert_threads, name="decode-convert")
        finally:
            container.close()
        if index and last_pts is not None and seek_pts is None:
            self._check_complete((last_pts + frame_ticks - start) * info.time_base)
        if self.repaired_timestamps:
            log.warning(
                "%s: %d frame(s) had no or non-increasing timestamps; gave them the previous "
                "one plus a frame duration", info.path, self.repaired_timestamps,
            )
        if self.resized_frames:
            log.warning(
                "%s: the frame size changes mid-stream; %d frame(s) were scaled to the first "
                "size %dx%d", info.path, self.resized_frames, info.width, info.height,
            )

    def _check_complete(self, decoded_seconds) -> None:
        """Refuse a file whose frames stop well before the duration its header states."""
        stated = self.info.stream_duration
        if stated is None:
            return
        missing = stated - float(decoded_seconds)
        if missing > max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRACTION * stated):
            raise PipelineError(
                f"{self.info.path}: truncated: its header says the video lasts {stated:.2f} s "
                f"but its frames end after {float(decoded_seconds):.2f} s")

    def _decode(self, container, stream) -> Iterator[av.VideoFrame]:
        path = self.info.path
        try:
            for packet in container.demux(stream):
                yield from packet.decode()
        except av.error.FFmpegError as exc:
            raise PipelineError(f"{path}: decoding failed mid-way ({_ffmpeg_reason(exc)}); "
                                f"the file is truncated or corrupt") from exc

    def _read_stream_properties(self, frame: av.VideoFrame) -> None:
        self.colour = ColourProperties.of_frame(frame, self.info.pix_fmt)
        for side_data in frame.side_data:
            if side_data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
                self.display_matrix = tuple(
                    int(v) for v in np.frombuffer(bytes(side_data), dtype="<i4")[:9]
                )

    def _to_rgb(self, frame: av.VideoFrame, rgb_format: str) -> np.ndarray:
        info = self.info
        size = {}
        if frame.width != info.width or frame.height != info.height:
            # An encoder cannot change size mid-stream; keep every frame at the first size.
            size = {"width": info.width, "height": info.height}
        rgb = thread_reformatter().reformat(
            frame,
            format=rgb_format,
            src_colorspace=self.colour.sws_matrix(info.height),
            src_color_range=self.colour.sws_range,
            dst_color_range=RANGE_FULL,
            threads=SWS_THREADS,
            **size,
        )
        return rgb.to_ndarray()


def read_timestamps(path: str | os.PathLike) -> list[float]:
    """Every frame's presentation time in seconds, as the pipeline sees them (for tests/tools)."""
    reader = FrameReader(path)
    tb = reader.info.time_base
    return [float(f.pts * tb) for f in reader.frames()]
