"""Probing and decoding the input video with PyAV, one frame at a time, in presentation order.

Decoding never holds more than the frames in flight, so memory stays flat however long the
video. Each frame keeps its own timestamp (variable frame rate stays variable); where a
container gives none or a non-increasing one (raw elementary streams), the frame gets the
previous timestamp plus one frame duration, as FFmpeg's best-effort timestamp does, so the
encoder always receives strictly increasing timestamps and no frame is dropped.

AVI stores no presentation times at all: one frame per time slot, in decode order. FFmpeg
guesses pts for its B-frames from the codec's reordering, right for MPEG-4 Part 2 and out of
order for H.264; the slot of the packet being decoded when a frame comes out of the decoder
(the frame's dts) is always increasing and equals that pts wherever the guess is right, so
AVI frames are timed by it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.colour import RANGE_FULL, SWS_THREADS, ColourProperties, thread_reformatter, yuv_to_rgb
from pipeline.config import HWDEC_CHOICES
from pipeline.errors import PipelineError, RunFailedError
from pipeline.ordered import ordered_map
from unsmear.media import display_matrix

log = logging.getLogger(__name__)

# Used only when a stream states no frame rate at all.
FALLBACK_FRAME_RATE = Fraction(25)
# A time base for streams that carry no timestamps (raw H.264): fine enough for any rate.
RAW_STREAM_TIME_BASE = Fraction(1, 90000)
# A video whose frames end this much before its stated duration is truncated, not just
# trimmed by an edit list or rounding (seen in real files: up to 0.09 s).
TRUNCATION_TOLERANCE_S = 0.25
TRUNCATION_TOLERANCE_FRACTION = 0.02
# Frames a seek steps back (doubling each time) when it lands past the keyframe it wanted.
SEEK_BACK_FRAMES = 8
# Containers whose header frame count is their index, one entry per packet (MP4/MOV's sample
# table). AVI's stated length can exceed its index in files that play fine.
EXACT_FRAME_COUNT_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2"})
# Containers that time frames by their slot in decode order, with no presentation times.
DECODE_ORDER_FORMATS = frozenset({"avi"})
# FFmpeg's AVFieldOrder (libavcodec/defs.h): the first letter is the field coded first, the
# second the field shown first.
FIELD_UNKNOWN, FIELD_PROGRESSIVE, FIELD_TT, FIELD_BB, FIELD_TB, FIELD_BT = range(6)
INTERLACED_FIELD_ORDERS = frozenset({FIELD_TT, FIELD_BB, FIELD_TB, FIELD_BT})
# The first x264 build whose lossless 4:4:4 intra prediction follows the standard; FFmpeg
# decodes older builds' streams their way once it reads the version note ("x264 - core NNN").
X264_FIXED_444_CORE = 151
_X264_NOTE = re.compile(rb"x264 - core (\d+)")
# Layouts hardware decoders hand frames over in (semi-planar): same samples as yuv420p & co.
HW_TRANSFER_FORMATS = frozenset({"nv12", "nv21", "p010le", "p016le", "nv16", "nv24"})
H264_444_PROFILE = "High 4:4:4"  # "High 4:4:4 Predictive" and "High 4:4:4 Intra" (profile_idc 244)


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
    left_out_streams: tuple[str, ...] = field(default=())  # what the output will not carry
    sample_aspect_ratio: Fraction | None = None  # pixel shape as stated (32/27 for 16:9 DVD, 1), None if unset
    field_order: int = FIELD_UNKNOWN  # FFmpeg's AVFieldOrder: interlaced (TT, BB, TB, BT) or not
    profile: str | None = None   # the codec's profile, e.g. "High", "High 4:4:4 Predictive"
    x264_core: int | None = None  # 4:4:4 H.264 from x264: the build its version note names

    @property
    def decode_threads_safe(self) -> bool:
        """Whether FFmpeg decodes the same frames with threads as without. Not for 4:4:4
        H.264 from x264 builds before core 151: FFmpeg copies their lossless intra prediction
        once it has read the version note in the first frame, and its threads pick that up
        unreliably (seen here: 30-34 of 48 frames different, from run to run)."""
        return (self.x264_core is None or self.x264_core >= X264_FIXED_444_CORE
                or not (self.profile or "").startswith(H264_444_PROFILE))

    @property
    def interlaced(self) -> bool:
        """Each frame weaves two fields taken at different times (TV, camcorders)."""
        return self.field_order in INTERLACED_FIELD_ORDERS

    @property
    def top_field_first(self) -> bool:
        """For interlaced video: the top field is the earlier one (shown first)."""
        return self.field_order in (FIELD_TT, FIELD_BT)

    @property
    def decode_order_times(self) -> bool:
        """Frames are timed by their decode-order slot (AVI): with B-frames, a keyframe
        packet's pts (FFmpeg's guess) need not be the time its frame is given."""
        return self.container_format in DECODE_ORDER_FORMATS


@dataclass
class DecodedFrame:
    """One decoded frame: its RGB pixels and its presentation timestamp."""

    index: int                   # position in presentation order, from 0
    pts: int                     # in VideoInfo.time_base units, strictly increasing
    rgb: np.ndarray              # (H, W, 3) uint8, or uint16 for sources deeper than 8 bits


@dataclass
class Damage:
    """What went wrong while reading a damaged input, with where (seconds into the video)."""

    header_frames: int | None = None   # the frame count the header states, if any
    packets: int = 0                   # video packets read
    decoded: int = 0                   # frames decoded (bad ones included)
    decode_errors: list[float] = field(default_factory=list)   # packets the decoder refused
    corrupt_frames: list[float] = field(default_factory=list)  # frames decoded with errors
    unreadable_at: float | None = None  # where reading the file stopped with an error
    unreadable_reason: str = ""
    stated_seconds: float | None = None  # the duration the header states
    ends_at: float | None = None         # where the decoded frames end, when well before it
    last_pts: int | None = None          # of the last packet read, to say where errors are
    # Where the packets say the stream ends (ticks), from the packets read: see packets_end.
    _max_pts: int | None = None
    _max_dts: int | None = None
    _dts_end: int | None = None   # the latest dts + duration
    _pts_end: int | None = None   # the latest pts + duration (packets without a dts)

    def note_packet(self, pts: int | None, dts: int | None, duration: int) -> None:
        """Note a packet's timing for :attr:`packets_end`."""
        if pts is None or not duration:
            return
        self._max_pts = pts if self._max_pts is None else max(self._max_pts, pts)
        if dts is None:
            self._pts_end = max(self._pts_end or 0, pts + duration)
            return
        self._max_dts = dts if self._max_dts is None else max(self._max_dts, dts)
        self._dts_end = max(self._dts_end or 0, dts + duration)

    @property
    def packets_end(self) -> int | None:
        """Where the last frame shown stops showing, in presentation time (ticks), or None.

        A packet's duration is the gap to the next packet's *decode* time (MP4's sample
        durations): with B-frames, pts + duration of a reordered packet lands anywhere (a
        gap in a variable-rate stream, put on a frame shown late, stretched the last frame).
        The decode order's end, moved by the stream's reorder delay (latest pts - latest
        dts), is where presentation ends: a held last frame keeps its hold, B-frames or not.
        """
        ends = [self._pts_end] if self._pts_end is not None else []
        if self._dts_end is not None:
            ends.append(self._dts_end + max(0, self._max_pts - self._max_dts))
        return max(ends, default=None)

    def describe(self) -> str | None:
        """One line of numbers, or None for an undamaged input."""
        parts = []
        if self.header_frames and self.packets < self.header_frames:
            parts.append(f"it holds {self.packets} of the {self.header_frames} frames its "
                         f"header lists")
        if self.ends_at is not None:
            parts.append(f"its frames end at {self.ends_at:.2f} s of the "
                         f"{self.stated_seconds:.2f} s its header states")
        if self.unreadable_at is not None:
            parts.append(f"reading stopped at {self.unreadable_at:.2f} s "
                         f"({self.unreadable_reason})")
        for what, times in (("packet(s) failed to decode", self.decode_errors),
                            ("frame(s) decoded with errors", self.corrupt_frames)):
            if times:
                parts.append(f"{len(times)} {what}, the first at {times[0]:.2f} s")
        return "; ".join(parts) or None

    def note_end(self, seconds: float) -> None:
        """Note where the frames end: well before the stated duration means a file cut short
        (not one trimmed by an edit list or rounding)."""
        stated = self.stated_seconds
        if stated is not None and stated - seconds > max(TRUNCATION_TOLERANCE_S,
                                                         TRUNCATION_TOLERANCE_FRACTION * stated):
            self.ends_at = seconds

    def check(self, path: Path, accept: bool) -> None:
        """Raise PipelineError for a damaged input, or with ``accept`` log a warning."""
        found = self.describe()
        if found is None:
            return
        if not accept:
            raise RunFailedError(f"{path}: the input is damaged (truncated or corrupt): {found}; "
                                 f"pass --accept-damaged to restore the frames that decode")
        if (str(path), found) in _DAMAGE_WARNED:
            return  # a segmented run's keyframe scan and straight-decode check find the same
        _DAMAGE_WARNED.add((str(path), found))
        log.warning("%s: the input is damaged: %s; restoring the frames that decode", path, found)


_DAMAGE_WARNED: set[tuple[str, str]] = set()  # (path, what) already said in this process




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
                        path, ffmpeg_reason(exc))
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise PipelineError(f"{path}: cannot be read as a video ({ffmpeg_reason(exc)}); "
                            f"it is truncated, corrupt or not a video file") from exc


def ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _describe(stream) -> str:  # noqa: ANN001 - a PyAV stream
    """'video #3 (h264)', 'attachment #4 (font.ttf)', 'video #1 (mjpeg, cover art)'."""
    if stream.type == "attachment":
        name = stream.metadata.get("filename") or getattr(stream, "name", None) or "a file"
        return f"attachment #{stream.index} ({name})"
    codec = (stream.codec_context.name if stream.codec_context else None) \
        or getattr(stream, "codec_tag", None) or stream.metadata.get("handler_name") or "unknown"
    cover = ", cover art" if stream.disposition & av.stream.Disposition.attached_pic else ""
    return f"{stream.type} #{stream.index} ({codec}{cover})"


def _rebuilt(stream, container) -> bool:  # noqa: ANN001 - PyAV stream and container
    """A data track the output gets back another way: MOV/MP4's timecode track (rebuilt from
    the video's timecode tag) and chapter text track (chapters are copied)."""
    if stream.type != "data":
        return False
    handler = stream.metadata.get("handler_name", "")
    return "timecode" in stream.metadata or (bool(container.chapters()) and
                                             ("Subtitle" in handler or "Chapter" in handler))


def warn_left_out(info: VideoInfo) -> None:
    """Say which of the input's streams the output will not carry, once, before the work."""
    if info.left_out_streams:
        log.warning("%s: not copied to the output: %s (only the first video stream is restored, "
                    "with the audio and subtitles)", info.path, ", ".join(info.left_out_streams))


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
        left_out = tuple(_describe(s) for s in container.streams
                         if s.type not in ("audio", "subtitle") and s.index != stream.index
                         and not _rebuilt(s, container))
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
            left_out_streams=left_out,
            sample_aspect_ratio=_sample_aspect_ratio(stream),
            # Set by the container (Matroska, QuickTime) or, while probing, by the decoder.
            field_order=ctx.field_order or FIELD_UNKNOWN,
            profile=ctx.profile or None,
            # Only where it matters (the note is read from the first packet: more I/O).
            x264_core=(_x264_core(container, stream)
                       if ctx.name == "h264" and (ctx.profile or "").startswith(H264_444_PROFILE)
                       else None),
        )
    finally:
        container.close()


def _stream_duration(stream) -> float | None:
    """The video stream's own stated duration: MP4's track duration, or Matroska's tag.

    FFmpeg writes Matroska's DURATION tag as where the stream ends on its own clock, so a
    stream starting at 10 s (a cut made with -copyts, -output_ts_offset) and lasting 1 s says
    11 s: its start is taken off (files starting at 0, most of them, read the same either way).
    """
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            end = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            return None
        start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
        return end - start if end > start else None
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
        accept_damaged: decode what can be decoded from a damaged input (cut short, corrupt
            packets) and log a warning with the numbers, instead of raising PipelineError
            after the last frame.

    After the first frame has been read, ``colour`` and ``display_matrix`` describe the
    stream, so the writer can reproduce them.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 0, hwdec: str = "none",
                 convert_threads: int = 1, accept_damaged: bool = False) -> None:
        self._hwaccel = _hwaccel(hwdec)
        self.info = probe(path)
        self._threads = threads
        if threads != 1 and not self.info.decode_threads_safe:
            log.info("%s: H.264 from x264 core %d (before %d): decoding in one thread, as "
                     "FFmpeg's threads may decode it otherwise", self.info.path,
                     self.info.x264_core, X264_FIXED_444_CORE)
        self._convert_threads = convert_threads
        self.accept_damaged = accept_damaged
        self.damage = Damage()
        self.colour = ColourProperties()
        self.display_matrix: tuple[int, ...] | None = None
        self.repaired_timestamps = 0
        self.resized_frames = 0
        # Where the last frame read ends (its pts plus what its packet says it lasts, at least
        # one frame interval; the input's time base), once a read has reached the end.
        self.end_pts: int | None = None

    def frames(self, seek_pts: int | None = None) -> Iterator[DecodedFrame]:
        """Yield every frame that decodes, once, in order.

        Raises PipelineError after the last frame if the input is damaged (packets that fail
        to decode, frames decoded with errors, a file cut short), unless ``accept_damaged``.

        Args:
            seek_pts: start decoding at the last keyframe at or before this timestamp (in
                ``info.time_base``) instead of the beginning; indices then count from there,
                and the damage found is left in ``damage`` for the caller to judge: a decoder
                that starts mid-stream can fail where a straight decode does not.
        """
        info = self.info
        container = _open(info.path, self._hwaccel)
        try:
            stream = _video_stream(container, info.path)
            stream.thread_type = "AUTO"
            # One thread where threads would decode other frames than a straight decode, and
            # for inputs accepted as damaged: frame threads drop the frames in flight when a
            # packet fails, unsaid (a cut MP4: 11 of the 13 frames one thread decodes).
            safe = info.decode_threads_safe and not self.accept_damaged
            stream.codec_context.thread_count = self._threads if safe else 1
            start = 0 if info.raw_stream else (stream.start_time or 0)
            if seek_pts is not None and info.raw_stream:
                raise PipelineError(f"{info.path}: a raw stream has no timestamps to seek by")
            frame_ticks = max(1, round(1 / (info.frame_rate * info.time_base)))
            if seek_pts is not None:
                _seek_keyframe(container, stream, seek_pts, frame_ticks)
            rgb_format = "rgb48le" if info.bit_depth > 8 else "rgb24"
            last_pts: int | None = None
            best_effort = _BestEffortTimestamps()
            index = 0
            self.damage = Damage(header_frames=info.frame_count if seek_pts is None
                                 and info.container_format in EXACT_FRAME_COUNT_FORMATS else None,
                                 stated_seconds=info.stream_duration)

            def timed() -> Iterator[tuple[int, int, av.VideoFrame]]:
                nonlocal index, last_pts
                for frame in self._decode(container, stream):
                    if index == 0:
                        self._read_stream_properties(frame)  # before any conversion starts
                    if frame.width != info.width or frame.height != info.height:
                        self.resized_frames += 1
                    if info.raw_stream:
                        pts = None
                    elif info.decode_order_times:
                        pts = frame.dts if frame.dts is not None else frame.pts
                    else:
                        pts = best_effort(frame.pts, frame.dts)
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
        end = None
        if index and last_pts is not None:
            # The last frame lasts what its packet says (a screen recording or slideshow
            # may hold it for seconds), else one nominal frame.
            end = max(last_pts + frame_ticks, self.damage.packets_end or 0)
            self.end_pts = None if info.raw_stream else end
        if seek_pts is None:
            if end is not None:
                self.damage.note_end(float((end - start) * info.time_base))
            self.damage.check(info.path, self.accept_damaged)
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

    def _decode(self, container, stream) -> Iterator[av.VideoFrame]:
        """Every frame that decodes; what doesn't is noted in ``self.damage``."""
        damage = self.damage
        start = stream.start_time or 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                # Nothing after this point can be read: flush what the decoder holds.
                damage.unreadable_at = self._seconds(damage.last_pts, start)
                damage.unreadable_reason = ffmpeg_reason(exc)
                packet = None
            # Empty packets with a timestamp count: AVI's dropped-frame markers are in its
            # header's frame count. The demuxer's closing flush packets have neither.
            if packet is not None and (packet.size or packet.dts is not None):
                damage.packets += 1
                damage.last_pts = packet.pts if packet.pts is not None else damage.last_pts
                damage.note_packet(packet.pts, packet.dts, packet.duration)
            try:
                frames = stream.decode(packet)
            except av.error.FFmpegError:
                damage.decode_errors.append(self._seconds(damage.last_pts, start))
                frames = []
            for frame in frames:
                damage.decoded += 1
                if frame.is_corrupt:
                    damage.corrupt_frames.append(self._seconds(frame.pts, start))
                yield frame
            if packet is None:
                return

    def _seconds(self, pts: int | None, start: int) -> float:
        if pts is None or self.info.raw_stream:
            return 0.0
        return float((pts - start) * self.info.time_base)

    def _read_stream_properties(self, frame: av.VideoFrame) -> None:
        self.colour = ColourProperties.of_frame(frame, self.info.pix_fmt)
        self.display_matrix = display_matrix(frame)

    def _to_rgb(self, frame: av.VideoFrame, rgb_format: str) -> np.ndarray:
        info = self.info
        if frame.format.name in HW_TRANSFER_FORMATS and frame.format.name != info.pix_fmt:
            # A hardware decoder's frame (NVDEC gives NV12): first into the stream's own
            # planar layout (the same samples, moved), so the RGB is exactly a software
            # decode's, as the straight-decode check between machines needs.
            frame = frame.reformat(format=info.pix_fmt)
        size = {}
        if frame.width != info.width or frame.height != info.height:
            # An encoder cannot change size mid-stream; keep every frame at the first size.
            size = {"width": info.width, "height": info.height}
        elif (rgb := yuv_to_rgb(frame, self.colour.sws_matrix(info.height), self.colour.sws_range,
                                rgb_format)) is not None:
            return rgb
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


def _seek_keyframe(container, stream, target: int, frame_ticks: int) -> None:  # noqa: ANN001
    """Position ``container`` so that decoding starts at a keyframe at or before ``target``.

    MPEG-TS has no index: FFmpeg seeks it by a binary search on packet dts and stops on
    whatever packet it finds there (``any_frame=False`` is not honoured), so a keyframe whose
    B-frames put its dts before its pts is passed over and decoding starts a GOP late. Where
    the first keyframe after a seek is later than ``target``, seek again further back.
    """
    start = stream.start_time or 0
    point, back = target, SEEK_BACK_FRAMES * frame_ticks
    while True:
        container.seek(point, stream=stream, backward=True, any_frame=False)
        keyframe = _first_keyframe_pts(container, stream)
        if (keyframe is not None and keyframe <= target) or point <= start:
            break
        point, back = max(start, point - back), 2 * back
    container.seek(point, stream=stream, backward=True, any_frame=False)


def _first_keyframe_pts(container, stream) -> int | None:  # noqa: ANN001 - PyAV objects
    try:
        for packet in container.demux(stream):
            if packet.is_keyframe and packet.pts is not None:
                return packet.pts
    except av.error.FFmpegError:
        pass  # unreadable from here: treated as no keyframe, so the seek goes further back
    return None


def read_timestamps(path: str | os.PathLike) -> list[float]:
    """Every frame's presentation time in seconds, as the pipeline sees them (for tests/tools)."""
    reader = FrameReader(path)
    tb = reader.info.time_base
    return [float(f.pts * tb) for f in reader.frames()]


def _x264_core(container, stream) -> int | None:  # noqa: ANN001 - PyAV objects
    """The x264 build named in the stream's version note (an SEI in the first frame, or in
    the header), or None if there is none."""
    found = _X264_NOTE.search(bytes(stream.codec_context.extradata or b""))
    if found is None:
        try:
            for packet in container.demux(stream):
                if packet.size:
                    found = _X264_NOTE.search(bytes(packet))
                    break
        except av.error.FFmpegError:
            return None
    return int(found.group(1)) if found else None


def _sample_aspect_ratio(stream) -> Fraction | None:  # noqa: ANN001 - a PyAV video stream
    """The stream's sample (pixel) aspect ratio as stated (1 for square pixels said to be
    square), or None where nothing states it: as FFmpeg guesses it, the container's first
    (Matroska's display size, QuickTime's pasp: what a retag with -aspect changes), else the
    codec's (H.264's VUI, ...)."""
    sar = stream.sample_aspect_ratio  # av_guess_sample_aspect_ratio: container, else codec
    return Fraction(sar) if sar and sar.numerator else None
