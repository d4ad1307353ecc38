"""Encoding restored frames with PyAV, and copying the input's other streams beside them.

The video is re-encoded with each frame's original timestamp in the input's time base; audio
and subtitle packets are remuxed untouched from a second reader of the input, interleaved by
time as the video is written. Rotation (the display matrix), colour tags and container/stream
metadata are carried over, so the output plays exactly like the input, only sharper.

AVI has no timestamps and no start time, only one frame per slot of 1/rate s: its video is
written on that grid (empty slots where the input has gaps, before the first frame too) with
every stream's times counted from a common origin. MPEG-4 Part 2 can't encode a time base as
fine as MPEG-TS's 1/90000 s, so it encodes on the same grid and its packets are put back on
the input's clock.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import ffmpeg
import numpy as np

from pipeline.colour import RANGE_FULL, SWS_THREADS, ColourProperties, rgb48_to_yuv, thread_reformatter
from pipeline.config import EncoderSettings
from pipeline.errors import PipelineError, RunFailedError
from pipeline.ffmpeg_cli import QUIET_ARGS, run_ffmpeg
from pipeline.video_reader import FIELD_BB, FIELD_PROGRESSIVE, FIELD_TT, VideoInfo
from unsmear.files import partial_path

# SVT-AV1 prints its banner, configuration and warnings to stderr at every encoder start, past
# FFmpeg's log level (and -q): errors only, unless the user's environment says otherwise.
os.environ.setdefault("SVT_LOG", "1")

log = logging.getLogger(__name__)

# Per-codec quality defaults: visually lossless-ish, what a restoration user expects.
DEFAULT_CRF = {"libx264": 18, "libx264rgb": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 28}
# The CRF values each encoder accepts (x264/x265 clamp silently; VP9 and SVT-AV1 fail late).
CRF_RANGE = {"libx264": (0, 51), "libx264rgb": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63), "libsvtav1": (0, 63)}
DEFAULT_PRESET = {"libx264": "medium", "libx264rgb": "medium", "libx265": "medium", "libsvtav1": "8", "libvpx-vp9": "medium"}
# x264's preset names, mapped onto the speed knobs of encoders that have no presets of their own.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")
_VP9_CPU_USED = dict(zip(X264_PRESETS, ("5", "5", "4", "4", "3", "2", "1", "0", "0", "0")))
_SVTAV1_PRESET = dict(zip(X264_PRESETS, ("12", "11", "10", "9", "8", "6", "4", "2", "1", "0")))
# For codecs without CRF (mpeg4, mjpeg, mpeg2video...): qscale 2 is near-transparent.
DEFAULT_QSCALE = 2
FF_QP2LAMBDA = 118
# Audio is muxed this far ahead of the video so the muxer can interleave without buffering much.
INTERLEAVE_AHEAD_S = 1.0
# Containers whose video we write as WebM-compatible codecs only.
WEBM_EXTENSIONS = {".webm"}
Y4M_EXTENSIONS = {".y4m"}
OGG_EXTENSIONS = {".ogv", ".ogg"}
# Raw elementary streams can't hold timestamps or audio; their output goes into Matroska.
RAW_STREAM_EXTENSIONS = {".h264", ".264", ".h265", ".265", ".hevc", ".m4v", ".vvc", ".266", ".ivf", ".obu"}
MOV_FAMILY = {"mp4", "mov", "m4v", "3gp", "3g2", "ismv"}
MATROSKA_FAMILY = {"mkv", "webm", "matroska"}
MPEG_PS_FAMILY = {"mpg", "mpeg", "vob"}  # MPEG program streams (extensions and muxer names)
# Muxers that store a display matrix (rotation, mirroring): the ISO media family and Matroska
# (checked by writing each extension of unsmear.media.VIDEO_EXTENSIONS, 2026-12-08).
DISPLAY_MATRIX_MUXERS = {"mp4", "mov", "3gp", "3g2", "ipod", "ismv", "matroska", "webm"}
_ROTATION_WARNED: set[str] = set()  # outputs already warned about in this process (segments)
# Metadata keys that describe the old file's muxer/encoder rather than its content.
_STALE_METADATA = {"encoder", "major_brand", "minor_version", "compatible_brands", "duration"}
# Containers that hold one video frame per slot of a fixed duration and no start time.
FRAME_SLOT_FORMATS = {"avi"}
# MPEG-4 Part 2 codes its time base in 16 bits: a 1/90000 one (MPEG-TS, many cameras' MP4)
# makes the encoder refuse to open.
MPEG4_MAX_TIME_BASE_DEN = 65535
# Encoders whose time base must be the frame rate itself (MPEG-1/2 code one of a few rates).
FRAME_RATE_ENCODERS = {"mpeg1video", "mpeg2video"}
# Frame-based compressed audio whose AVI header states a block size that is a maximum frame
# size, not a sample size (see VideoWriter._avi_audio_stream).
AVI_FRAMED_AUDIO = {"ac3", "mp2", "mp3", "aac"}
# The AVI tag of AAC in ADTS framing (each packet with its own header, no extradata: AAC from
# an MPEG-TS, a phone, a stream copy): the only tag the AVI muxer takes such packets with.
AVI_ADTS_TAG = "\x10\x16\x00\x00"  # WAVE_FORMAT_MPEG_ADTS_AAC, 0x1610 little-endian
# Encoders that code interlaced frames field-aware (interlaced DCT and motion estimation) when
# asked; the others code the woven frame as one picture, still flagged interlaced.
INTERLACED_ENCODERS = {"libx264", "libx264rgb", "mpeg2video", "mpeg4"}
# Codecs whose streams state the pixel aspect ratio themselves; for the others (VP8, VP9, AV1,
# FFV1, raw video, ...) only the container can.
CODED_ASPECT = {"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video", "vvc"}


def container_hint(input_path: Path, output: Path) -> str:
    """What to do when the input's audio/subtitles don't fit the output's container: its own
    container holds them (MP4's mov_text goes into no Matroska), else Matroska most things."""
    own = default_output_suffix(input_path)
    if own.lower() != output.suffix.lower():
        return f"write to the input's own container ({own}), which holds them"
    return "choose another output extension such as .mkv"


def default_output_suffix(input_path: Path) -> str:
    """The output's extension: the input's, except for raw streams, which go into .mkv."""
    suffix = input_path.suffix.lower()
    if suffix in RAW_STREAM_EXTENSIONS or not suffix:
        return ".mkv"
    return input_path.suffix


def choose_codec(settings: EncoderSettings, info: VideoInfo, output: Path) -> str:
    """The encoder to use: the user's, else H.264 (HEVC for >8-bit, VP9/AV1 for WebM, MPEG-4 for
    AVI, MPEG-2 for MPEG program streams, VP8 for Ogg, raw frames for YUV4MPEG)."""
    if settings.codec:
        try:
            codec = av.codec.Codec(settings.codec, "w")
        except (av.error.FFmpegError, ValueError) as exc:
            raise PipelineError(f"unknown video encoder {settings.codec!r} "
                                f"(try libx264, libx265, libvpx-vp9, libsvtav1, ffv1)") from exc
        if codec.type != "video":
            raise PipelineError(f"{settings.codec!r} is an {codec.type} encoder, not a video one "
                                f"(try libx264, libx265, libvpx-vp9, libsvtav1, ffv1)")
        if output.suffix.lower().lstrip(".") in MPEG_PS_FAMILY and codec.name not in FRAME_RATE_ENCODERS:
            raise PipelineError(f"{output.name}: an MPEG program stream keeps the frames' timestamps "
                                f"only for MPEG-1/2 video (--codec mpeg2video); write .ts or .mkv "
                                f"for {codec.name}")
        # A format's name (h264, hevc, vp9) opens FFmpeg's default encoder for it: name that
        # encoder, so its settings (CRF, presets, odd sizes) are the ones applied.
        return codec.name
    if output.suffix.lower() in WEBM_EXTENSIONS:
        return "libsvtav1" if info.bit_depth > 8 else "libvpx-vp9"
    if output.suffix.lower() in Y4M_EXTENSIONS:
        return "rawvideo"  # YUV4MPEG holds uncompressed frames only
    if output.suffix.lower() in OGG_EXTENSIONS:
        return "libvpx"  # Ogg video: Theora or VP8, and this FFmpeg has no Theora encoder
    if output.suffix.lower() == ".avi":
        # H.264 in AVI reads back one frame late (AVI has no pts); MPEG-4 Part 2 is native there.
        return "mpeg4"
    if output.suffix.lower().lstrip(".") in MPEG_PS_FAMILY:
        # H.264 in MPEG program streams reads back without the first frames' timestamps, shifted
        # (FFmpeg's muxer alike); MPEG-2 video is that container's own.
        return "mpeg2video"
    if info.bit_depth > 8:
        return "libx265"  # which also keeps high-bit-depth RGB (gbrp10le/12le)
    # RGB in, RGB out: through YUV, even 4:4:4, the round trip alone costs 8-bit RGB ~0.5 levels.
    return "libx264rgb" if _is_rgb(info.pix_fmt) else "libx264"


def choose_pix_fmt(codec: str, settings: EncoderSettings, info: VideoInfo) -> str:
    """Keep the input's pixel format (bit depth, chroma) where the encoder allows it."""
    supported = [f.name for f in av.codec.Codec(codec, "w").video_formats or []]
    if settings.pix_fmt:
        if supported and settings.pix_fmt not in supported:
            raise PipelineError(f"encoder {codec} does not support pixel format "
                                f"{settings.pix_fmt!r} (it supports {', '.join(supported)})")
        if codec in _EVEN_SIZE_ENCODERS and _odd_for(settings.pix_fmt, info.width, info.height):
            raise PipelineError(f"{codec} needs an even width{' and height' if '420' in settings.pix_fmt else ''} "
                                f"for --pix-fmt {settings.pix_fmt} (subsampled chroma); this video is "
                                f"{info.width}x{info.height}: use a 4:4:4 format such as yuv444p "
                                f"(the default for odd sizes keeps the size exact)")
        return settings.pix_fmt
    if not supported:
        return info.pix_fmt
    odd = info.width % 2 or info.height % 2
    wanted = [info.pix_fmt]
    rgb = _is_rgb(info.pix_fmt)
    if rgb:  # the same RGB in another layout, else full chroma
        wanted += (["gbrp", "rgb24", "bgr0"] if info.bit_depth <= 8 else
                   ["gbrp10le", "gbrp12le", "gbrp16le"] if info.bit_depth <= 10 else ["gbrp12le", "gbrp16le"])
    if info.bit_depth > 8:
        wanted += ["yuv444p10le" if odd or rgb else "yuv420p10le", "yuv420p10le"]
    # 4:2:0 needs even sizes in x264/x265; 4:4:4 keeps an odd size exact instead of cropping.
    wanted += ["yuv444p", "yuv420p"] if odd or rgb else ["yuv420p", "yuv444p"]
    for name in wanted:
        if name in supported and not (codec in _EVEN_SIZE_ENCODERS and _odd_for(name, info.width, info.height)):
            return name
    return supported[0]


# Encoders that refuse subsampled chroma on an odd size (x264: "width not divisible by 2").
_EVEN_SIZE_ENCODERS = ("libx264", "libx264rgb", "libx265")


def _odd_for(pix_fmt: str, width: int, height: int) -> bool:
    """Whether ``pix_fmt``'s chroma subsampling does not divide ``width`` x ``height``."""
    if "420" in pix_fmt or pix_fmt.startswith("nv"):
        return bool(width % 2 or height % 2)
    return "422" in pix_fmt and bool(width % 2)


def _is_rgb(pix_fmt: str) -> bool:
    try:
        return av.VideoFormat(pix_fmt).is_rgb
    except (ValueError, av.error.FFmpegError):
        return False


@dataclass
class FrameSlots:
    """Frame times on a grid of fixed slots, for outputs that can't take the input's clock.

    AVI has no timestamps, only one frame per slot and no start time; MPEG-4 Part 2 can't
    encode a fine time base. Frames on the grid (every constant-rate input) keep their exact
    time; others (variable frame rate) go to the nearest free slot, counted in ``moved``.
    """

    slot: Fraction                 # seconds per slot: the encoder's time base
    origin: Fraction | None        # the input time of slot 0; None = the first frame's
    tolerance: Fraction            # half the input's tick: closer than this is on the grid
    last: int | None = None        # the last slot given
    moved: int = 0                 # frames given a slot off their time
    worst: Fraction = Fraction(0)  # the largest such move, seconds

    def index(self, seconds: Fraction) -> int:
        """The slot of a frame shown at ``seconds`` (input clock); strictly increasing."""
        if self.origin is None:
            self.origin = seconds
        elif self.last is None and seconds < self.origin:
            # A first frame before the origin (a stated start later than the first frame)
            # would get a negative slot, which AVI can't hold: start the grid earlier.
            self.origin -= math.ceil((self.origin - seconds) / self.slot) * self.slot
        exact = (seconds - self.origin) / self.slot
        index = math.floor(exact + Fraction(1, 2))
        if self.last is not None and index <= self.last:
            index = self.last + 1
        error = abs(index - exact) * self.slot
        if error > self.tolerance:
            self.moved += 1
            self.worst = max(self.worst, error)
        self.last = index
        return index

    def seconds(self, index: int) -> Fraction:
        """The input-clock time of slot ``index``."""
        return self.origin + index * self.slot


def _slot_duration(rate: Fraction) -> Fraction:
    """One frame's duration as a time base every encoder and AVI accept."""
    return (1 / rate).limit_denominator(MPEG4_MAX_TIME_BASE_DEN)


def _start_seconds(stream) -> Fraction | None:  # noqa: ANN001 - a PyAV stream
    if stream.start_time is None or not stream.time_base:
        return None
    return stream.start_time * Fraction(stream.time_base)


class VideoWriter:
    """Writes restored RGB frames with given timestamps, plus the input's audio and subtitles.

    Args:
        path: where to write (normally a temporary path the caller renames when done).
        info: the probed input, whose other streams are copied.
        colour: the input's colour tags, reproduced on every output frame.
        display_matrix: the input's rotation/flip matrix (9 ints), or None.
        settings: codec, quality and pixel format choices.
        container_format: FFmpeg muxer name, or None to pick it from the path's extension.
        copy_streams: copy the input's audio and subtitle streams (False for segment files).
        output_name: the name shown in errors and used for codec defaults, when ``path`` is
            a temporary name.
        container_options: muxer options (e.g. MP4's ``movie_timescale`` for segment files).
        source_end: asked at close, where the input's last frame ends (pts plus duration, in
            its time base; None when not known): the output's last frame lasts as long.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        info: VideoInfo,
        *,
        colour: ColourProperties,
        display_matrix: tuple[int, ...] | None,
        settings: EncoderSettings = EncoderSettings(),
        container_format: str | None = None,
        copy_streams: bool = True,
        output_name: Path | None = None,
        container_options: dict[str, str] | None = None,
        source_end: Callable[[], int | None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.info = info
        self.output_name = name_for_defaults = output_name or self.path
        self.codec = choose_codec(settings, info, name_for_defaults)
        self.pix_fmt = choose_pix_fmt(self.codec, settings, info)
        self.colour = colour.for_output(self.pix_fmt, info.height)
        options = dict(container_options or {})
        kind = container_format or self.path.suffix.lower().lstrip(".")
        if kind in MOV_FAMILY:
            # MP4 keeps a non-zero start time with an edit list written in the movie time
            # scale (1/1000 s by default); in the video's own scale no frame moves by rounding.
            options.setdefault("movie_timescale", str(info.time_base.denominator))
        if kind in MATROSKA_FAMILY:
            # AAC/Opus priming puts the first audio packet before 0; by default the muxer
            # would shift every stream (the video too) to start at 0. Matroska stores the
            # negative time as it is, so every timestamp stays the input's.
            options.setdefault("avoid_negative_ts", "disabled")
        if kind in FRAME_SLOT_FORMATS:
            # Audio starting up to a slot before the video's grid (see _avi_origin) would make
            # the muxer shift every stream, the video off its slots by rounding. AVI ignores
            # audio times anyway: its audio starts with the file.
            options.setdefault("avoid_negative_ts", "disabled")
        if kind in MPEG_PS_FAMILY:
            # The program stream muxer delays every timestamp by its decoder preload (0.5 s).
            options.setdefault("preload", "0")
        try:
            self._out = av.open(str(self.path), "w", format=container_format,
                                container_options=options)
        except (av.error.FFmpegError, ValueError) as exc:
            raise PipelineError(f"{name_for_defaults}: cannot create output ({exc})") from exc
        self._source = None
        self._slots: FrameSlots | None = None
        self._leading_slots_written = False
        try:
            # One reader of the input serves the metadata and, kept open, the stream copy.
            self._source = av.open(str(info.path), metadata_errors="ignore")
            self._video = self._add_video_stream(settings, display_matrix)
            self._copy_metadata(whole=copy_streams)
            self._copies = self._add_copied_streams() if copy_streams else {}
            if not self._copies:
                self._source.close()
                self._source = None
        except BaseException:
            self.abort()
            raise
        self._rgb_format = "rgb48le" if info.bit_depth > 8 else "rgb24"
        self._field_marker: av.filter.Graph | None = None
        self.frames_written = 0
        self._pending_copy = None
        # A last frame the input holds for longer than a frame interval (a screen recording, a
        # slideshow) keeps its hold where the container stores durations: the muxers end a
        # stream at the latest pts + duration of its packets, the last one's in decode order
        # given, the others' from the timestamps. So each packet waits for the next, and at
        # close the last is given the hold.
        self._source_end = source_end if self._container_name() not in FRAME_SLOT_FORMATS else None
        self._held = None
        self._latest_pts: int | None = None  # of the packets muxed, on the input's clock

    def _add_video_stream(self, settings: EncoderSettings, display_matrix):
        info = self.info
        rate = info.frame_rate if info.frame_rate > 0 else Fraction(25)
        try:
            stream = self._out.add_stream(self.codec, rate=rate)
        except ValueError as exc:  # e.g. "'gif' format does not support 'libx264' codec"
            raise PipelineError(f"{self.output_name.name}: {self._container_name()} cannot hold "
                                f"{self.codec} video ({exc}); choose another --codec or write "
                                f"to .mkv") from exc
        stream.width = info.width
        stream.height = info.height
        stream.pix_fmt = self.pix_fmt
        # Timestamps are written in the input's own time base, so every one survives exactly;
        # where the container or encoder can't take it, on a grid of frame slots.
        time_base = info.time_base
        if self._container_name() in FRAME_SLOT_FORMATS:
            slot = _slot_duration(rate)
            self._slots = FrameSlots(slot, origin=self._avi_origin(slot),
                                     tolerance=info.time_base / 2)
            time_base = slot
        elif ((self.codec == "mpeg4" and info.time_base.denominator > MPEG4_MAX_TIME_BASE_DEN)
              or self.codec in FRAME_RATE_ENCODERS):
            self._slots = FrameSlots(_slot_duration(rate), origin=None,
                                     tolerance=info.time_base / 2)
        stream.time_base = time_base
        stream.codec_context.time_base = self._slots.slot if self._slots else time_base
        stream.codec_context.thread_count = settings.threads
        stream.thread_type = "AUTO"
        self.colour.tag(stream.codec_context)
        if info.interlaced:
            # The muxer's field order (Matroska's FieldOrder, QuickTime's fiel): ours codes the
            # field shown first first.
            stream.codec_context.field_order = FIELD_TT if info.top_field_first else FIELD_BB
        elif info.field_order == FIELD_PROGRESSIVE:
            stream.codec_context.field_order = FIELD_PROGRESSIVE  # stated as the input states it
        if info.sample_aspect_ratio is not None:
            # Non-square pixels (DVD, HDV, anamorphic): the picture's shape depends on it;
            # square ones stated as such stay stated (players differ on an unset one).
            stream.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
        options = self._codec_options(settings)
        if self._container_name() == "avi":
            # AVI stores decode order only; B-frames there come back with shifted timestamps.
            options["bf"] = "0"
        stream.options = options
        if display_matrix is not None:
            stream.set_display_matrix(list(display_matrix))
            self._warn_rotation_lost(display_matrix)
        return stream

    def _warn_rotation_lost(self, display_matrix: tuple[int, ...]) -> None:
        """Say, once per output, that its container drops the picture's rotation or mirroring
        (a portrait phone clip written to MPEG-TS, AVI or FLV plays sideways)."""
        muxer = self._out.format.name
        turned = tuple(display_matrix[:2]) + tuple(display_matrix[3:5]) != (1 << 16, 0, 0, 1 << 16)
        key = str(self.output_name)
        if not turned or muxer in DISPLAY_MATRIX_MUXERS or key in _ROTATION_WARNED:
            return
        _ROTATION_WARNED.add(key)
        log.warning("%s: %s can't store the input's display rotation (%s); the video will play "
                    "as stored, not turned; write .mp4, .mov or .mkv to keep it", self.output_name,
                    self._out.format.long_name or muxer, _describe_matrix(display_matrix))

    def _container_name(self) -> str:
        return self._out.format.name

    def _avi_origin(self, slot: Fraction) -> Fraction:
        """The input time that becomes 0 in an AVI output.

        AVI has no start time: every stream starts with the file. The origin is the video's
        start, less the whole slots by which another stream (audio) starts earlier, so the
        video keeps its place against the audio (an AVI whose B-frames make its first frame
        one slot late keeps that slot) and stays on its grid. Computed from the input alone,
        so the segment files of a parallel run agree on it.
        """
        streams = self._source.streams
        video = _start_seconds(streams.video[0]) or Fraction(0)
        earliest = min([video, *(t for s in streams if s.type in ("audio", "subtitle")
                                 if (t := _start_seconds(s)) is not None)])
        return video - math.floor((video - earliest) / slot) * slot

    def _codec_options(self, settings: EncoderSettings) -> dict[str, str]:
        codec = self.codec
        options: dict[str, str] = {}
        if codec in DEFAULT_CRF:
            low, high = CRF_RANGE[codec]
            if settings.crf is not None and not low <= settings.crf <= high:
                raise PipelineError(f"--crf {settings.crf} is outside {codec}'s range "
                                    f"{low}-{high}")
            options["crf"] = str(settings.crf if settings.crf is not None else DEFAULT_CRF[codec])
        elif settings.crf is not None:
            raise PipelineError(f"--crf does not apply to encoder {codec}; "
                                f"use one of {', '.join(DEFAULT_CRF)}")
        elif codec not in ("ffv1", "png", "huffyuv", "utvideo") and not codec.endswith("rgb"):
            options.update(flags="+qscale", global_quality=str(DEFAULT_QSCALE * FF_QP2LAMBDA))
        if codec in FRAME_RATE_ENCODERS:
            # Without B-frames, decode order is presentation order: no frame of delay, which the
            # program stream muxer would add to every timestamp (dts >= 0).
            options["flags"] = options.get("flags", "") + "+low_delay"
        preset = settings.preset or DEFAULT_PRESET.get(codec)
        if codec == "libvpx-vp9":
            if preset not in _VP9_CPU_USED:
                raise PipelineError(f"unknown preset {preset!r} for {codec} "
                                    f"(use one of {', '.join(X264_PRESETS)})")
            options.update(b="0", deadline="good", **{"cpu-used": _VP9_CPU_USED[preset],
                                                      "row-mt": "1"})
        elif codec == "libsvtav1":
            options["preset"] = _SVTAV1_PRESET.get(preset, preset)
        elif codec in DEFAULT_PRESET:
            if preset not in X264_PRESETS:
                raise PipelineError(f"unknown preset {preset!r} for {codec} "
                                    f"(use one of {', '.join(X264_PRESETS)})")
            options["preset"] = preset
        elif settings.preset is not None:
            if settings.codec:
                raise PipelineError(f"--preset does not apply to encoder {codec}; presets "
                                    f"exist for {', '.join(DEFAULT_PRESET)}")
            log.info("encoder %s has no presets; ignoring preset %r", codec, settings.preset)
        if codec == "libx265":
            # HDR10's mastering display and light levels, as the input states them: without
            # them players tone-map HDR video by guesswork.
            hdr = self.colour.hdr.x265_params() if self.colour.hdr else []
            options["x265-params"] = ":".join(["log-level=error", *hdr])
        if codec == "libsvtav1" and self.colour.hdr and (hdr := self.colour.hdr.svtav1_params()):
            options["svtav1-params"] = ":".join(hdr)
        if self.info.interlaced and codec in INTERLACED_ENCODERS:
            options["flags"] = options.get("flags", "") + "+ilme+ildct"
        if self.info.interlaced and codec in ("libx264", "libx264rgb") and not self.info.top_field_first:
            # x264 follows each frame's field order, but writes the stream's (which TS and MP4
            # readers report) from the order it was opened with: top first unless told.
            options["x264-params"] = "bff=1"
        return options

    def _add_copied_streams(self) -> dict[int, object]:
        copies = {}
        for stream in self._source.streams:
            if stream.type not in ("audio", "subtitle"):
                continue
            try:
                copies[stream.index] = (self._avi_audio_stream(stream)
                                        or self._out.add_stream_from_template(stream))
            except (av.error.FFmpegError, ValueError) as exc:
                raise PipelineError(
                    f"{self.output_name.name}: the {stream.type} stream #{stream.index} "
                    f"({stream.codec_context.name}) cannot be copied into this container "
                    f"({exc}); {container_hint(self.info.path, self.output_name)}") from exc
            copies[stream.index].metadata.update(stream.metadata)
            copies[stream.index].disposition = stream.disposition  # default, forced, ...
        if copies:
            self._packets = self._source.demux(*[self._source.streams[i] for i in copies])
        return copies

    def _avi_audio_stream(self, template):  # noqa: ANN001, ANN202 - PyAV streams
        """An AVI stream for copying AC-3, MP2, MP3 or AAC-LC packets timed one per frame, or
        None to copy ``template`` as it is.

        Read from an AVI, such audio states a block size (nBlockAlign: 3840 for AC-3, 1152 for
        MP3) that is a maximum frame size; copied unchanged, the muxer writes it as the stream's
        sample size and readers time the audio by bytes: AC-3 at 96 kb/s comes back with its
        packet times squeezed ten to one. FFmpeg's own stream copy clears the block size for
        AC-3 and MP3; PyAV can't set it on a copied stream, so the stream is made from the
        codec's encoder instead (opened here and never fed), which has no block size and
        gives the frame size, with the input's sample rate, channels, bit rate and extradata.
        """
        ctx = template.codec_context
        codec = ctx.codec.canonical_name  # "mp3", where the decoder is "mp3float"
        if self._container_name() not in FRAME_SLOT_FORMATS or codec not in AVI_FRAMED_AUDIO:
            return None
        if codec == "aac" and ctx.profile != "LC":
            return None  # HE-AAC's frames hold 2048 samples: the encoder's header would say 1024
        # AAC in ADTS framing has no extradata: every packet carries its header.
        adts = codec == "aac" and not ctx.extradata
        # A rate the encoder refuses (a nominal one from a VBR header) only loses the header's
        # byte rate, a hint for players; an encoder that won't open leaves the plain copy.
        for bit_rate in dict.fromkeys((ctx.bit_rate or 0, 0)):
            if not _encoder_opens(codec, ctx, bit_rate):
                continue
            stream = self._out.add_stream(codec, rate=ctx.sample_rate, bit_rate=bit_rate)
            stream.layout = ctx.layout
            stream.codec_context.open()
            if adts:
                # The AVI muxer takes ADTS packets under their own tag only ("ADTS is only
                # supported with codec tag 0x1610"); an encoder's stream has none of its own.
                stream.codec_context.codec_tag = AVI_ADTS_TAG
            else:
                stream.codec_context.extradata = ctx.extradata
            return stream
        log.warning("%s: no %s encoder here to describe the copied audio to the AVI muxer; its "
                    "header may time the audio by bytes", self.output_name.name, codec)
        return None

    def _copy_metadata(self, whole: bool) -> None:
        """The input's tags; for a whole output (not a segment file, which the join gives
        them from the input) also its chapters and timecode: a segment's timecode track would
        start it at 0."""
        source = self._source
        kept = {k: v for k, v in source.metadata.items() if k.lower() not in _STALE_METADATA}
        self._out.metadata.update(kept)
        video_meta = source.streams.video[0].metadata
        # timecode: MOV/MP4 muxers write it back as a timecode track, Matroska as a tag.
        keys = ("language", "title", "creation_time") + (("timecode",) if whole else ())
        self._video.metadata.update({k: v for k, v in video_meta.items() if k.lower() in keys})
        # Its flags (default, ...), as the copied streams keep theirs: Matroska writes none unless told.
        self._video.disposition = source.streams.video[0].disposition
        if whole and (chapters := source.chapters()):
            self._out.set_chapters(chapters)

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one restored frame. rgb: (H, W, 3) uint8 or uint16, full-range RGB."""
        self.write_frame(self.convert(rgb), pts)

    def convert(self, rgb: np.ndarray) -> av.VideoFrame:
        """The encoder's frame for one RGB frame: the stream's pixel format, matrix and range.

        Safe to call from several threads at once (each thread has its own swscale context,
        and swscale runs without the GIL); pass the results to ``write_frame`` in
        presentation order.
        """
        matrix = self.colour.sws_matrix(self.info.height)
        frame = None
        if rgb.dtype == np.uint16:  # swscale's 16-bit RGB input is biased (pipeline.colour)
            frame = rgb48_to_yuv(rgb, self.pix_fmt, matrix, self.colour.sws_range)
        if frame is None:
            # from_numpy_buffer wraps the array; from_ndarray would copy it first.
            frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(rgb), format=self._rgb_format)
            frame = thread_reformatter().reformat(
                frame,
                format=self.pix_fmt,
                src_colorspace=matrix,
                dst_colorspace=matrix,
                src_color_range=RANGE_FULL,
                dst_color_range=self.colour.sws_range,
                threads=SWS_THREADS,
            )
        self.colour.tag(frame)
        return frame

    def write_frame(self, frame: av.VideoFrame, pts: int) -> None:
        """Encode a frame made by ``convert`` at ``pts`` (in the input's time base)."""
        if self.info.interlaced:
            frame = self._mark_fields(frame)
        if self._slots is not None:
            frame.pts = self._slots.index(pts * self.info.time_base)
            frame.time_base = self._slots.slot
        else:
            frame.pts = pts
            frame.time_base = self.info.time_base
        self._mux(self._encode(frame))
        self.frames_written += 1

    def _mark_fields(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The frame flagged interlaced with the input's field order.

        Encoders read the field order from each frame (x264 switches to bottom field first
        for a frame without the top-field-first flag), and PyAV can't set frame flags: the
        ``setparams`` filter does (it copies no pixels).
        """
        if self._field_marker is None:
            graph = av.filter.Graph()
            source = graph.add_buffer(width=frame.width, height=frame.height,
                                      format=frame.format.name, time_base=self.info.time_base)
            mode = "tff" if self.info.top_field_first else "bff"
            mark = graph.add("setparams", f"field_mode={mode}")
            source.link_to(mark)
            mark.link_to(graph.add("buffersink"))
            graph.configure()
            self._field_marker = graph
        self._field_marker.push(frame)
        return self._field_marker.pull()

    def _encode(self, frame):
        try:
            return self._video.encode(frame)
        except (av.error.FFmpegError, ValueError) as exc:
            raise RunFailedError(f"encoding with {self.codec} failed ({exc})") from exc

    def _mux(self, packets) -> None:
        for packet in packets:
            if self._source_end is None:
                self._mux_packet(packet)
                continue
            if self._held is not None:
                self._mux_packet(self._held)
            self._held = packet

    def _mux_packet(self, packet, end: int | None = None) -> None:  # noqa: ANN001 - a PyAV packet
        """Mux one encoded packet (with the copied streams' packets due before it); with
        ``end`` (input time base), it is the last and lasts until then."""
        self._place(packet)  # on the input's clock from here
        if packet.pts is not None:
            self._latest_pts = max(packet.pts, self._latest_pts if self._latest_pts is not None else packet.pts)
            if end is not None and self.info.frame_rate > 0 and end - self._latest_pts > \
                    HELD_FRAME_INTERVALS / (self.info.frame_rate * self.info.time_base):
                packet.duration = end - packet.pts
        if packet.pts is not None and self._copies:
            self._copy_until(float(packet.pts * packet.time_base) + INTERLEAVE_AHEAD_S)
        self._mux_one(packet)

    def _place(self, packet) -> None:  # noqa: ANN001 - a PyAV packet
        """Move an encoded packet from frame slots to the output stream's clock, and start an
        AVI whose first frame is not at 0 with empty slots up to it."""
        slots = self._slots
        if slots is None:
            return
        if self._container_name() not in FRAME_SLOT_FORMATS:
            tick = self.info.time_base
            for name in ("pts", "dts"):
                if (value := getattr(packet, name)) is not None:
                    setattr(packet, name, round(slots.seconds(value) / tick))
            packet.time_base = tick
        elif not self._leading_slots_written:
            self._leading_slots_written = True
            if packet.dts is not None and packet.dts > 0:
                # The muxer fills gaps between frames with empty chunks, not before the first.
                empty = av.Packet(0)
                empty.stream = self._video
                empty.time_base = packet.time_base
                empty.pts = empty.dts = 0
                self._mux_one(empty)

    def _mux_one(self, packet) -> None:  # noqa: ANN001 - a PyAV packet
        try:
            self._out.mux(packet)
        except av.error.FFmpegError as exc:
            raise self._write_error(exc) from exc

    def _write_error(self, exc: av.error.FFmpegError) -> RunFailedError:
        return RunFailedError(f"{self.output_name.name}: writing the output failed "
                              f"({exc.strerror})")

    def _copy_until(self, seconds: float | None) -> None:
        """Remux copied-stream packets whose time is before ``seconds`` (None = all)."""
        while True:
            packet = self._pending_copy
            if packet is None:
                packet = next(self._packets, None)
                if packet is None:
                    return
            if packet.dts is None and packet.pts is None:
                self._pending_copy = None  # a demuxer flush marker, nothing to copy
                continue
            when = packet.dts if packet.dts is not None else packet.pts
            if seconds is not None and float(when * packet.time_base - self._shift) > seconds:
                self._pending_copy = packet
                return
            self._pending_copy = None
            if self._shift:
                offset = round(self._shift / packet.time_base)
                packet.pts = None if packet.pts is None else packet.pts - offset
                packet.dts = None if packet.dts is None else packet.dts - offset
            kind = packet.stream.type
            packet.stream = self._copies[packet.stream.index]
            try:
                self._out.mux(packet)
            except av.error.FFmpegError as exc:
                if exc.errno in WRITE_ERRNOS:
                    raise self._write_error(exc) from exc
                raise PipelineError(
                    f"{self.output_name.name}: the input's {kind} stream cannot be copied into "
                    f"{self._container_name()} unchanged ({exc.strerror}); "
                    f"write to .mkv instead (-o NAME.mkv)") from exc

    @property
    def _shift(self) -> Fraction:
        """Seconds taken off the input's times in the output: AVI's origin, else none."""
        slots = self._slots
        if slots is None or self._container_name() not in FRAME_SLOT_FORMATS:
            return Fraction(0)
        return slots.origin

    def close(self) -> int:
        """Flush the encoder, copy what is left of the other streams, finish the file.

        Returns the number of video frames written. Raises PipelineError, after the file
        is closed, if it does not read back with every frame."""
        try:
            self._mux(self._encode(None))
            if self._held is not None:
                held, self._held = self._held, None
                self._mux_packet(held, self._source_end())
            if self._copies:
                self._copy_until(None)
        finally:
            self.abort()
        check_written(self.path, self.frames_written, self.output_name)
        if self._aspect_in_container_only():
            self._state_aspect()
        slots = self._slots
        if slots is not None and slots.moved:
            log.warning("%s: %s with %s holds one frame per %.2f ms slot; %d frame(s) off that "
                        "grid (variable frame rate) moved by up to %.2f ms",
                        self.output_name.name, self._container_name().upper(), self.codec,
                        1000 * slots.slot, slots.moved, 1000 * slots.worst)
        return self.frames_written

    def _aspect_in_container_only(self) -> bool:
        """Whether the pixel shape has to be stated by the container (Matroska's display size)
        because the codec's stream has no place for it (VP9, AV1, FFV1...). A stream copy
        of the output: cheap beside encoding it."""
        return (self.info.sample_aspect_ratio is not None
                and self._container_name().split(",")[0] in MATROSKA_FAMILY
                and av.codec.Codec(self.codec, "w").canonical_name not in CODED_ASPECT)

    def _state_aspect(self) -> None:
        """Rewrite the finished file (stream copy) with its display size: Matroska takes it from
        the stream's aspect ratio, which PyAV can't set. It is rounded to whole pixels there."""
        sar = self.info.sample_aspect_ratio
        dar = sar * Fraction(self.info.width, self.info.height)
        # A name remove_dead_leftovers knows, should this process die meanwhile.
        restated = partial_path(self.path.with_name(self.output_name.name), tag="aspect")
        command = ffmpeg.output(ffmpeg.input(str(self.path)), str(restated), map=0, c="copy",
                                aspect=f"{dar.numerator}:{dar.denominator}",
                                copyts=None, avoid_negative_ts="disabled", map_metadata=0,
                                map_chapters=0).global_args(*QUIET_ARGS)
        try:
            run_ffmpeg(command, f"{self.output_name.name}: stating the pixel aspect ratio failed")
            os.replace(restated, self.path)
        finally:
            restated.unlink(missing_ok=True)

    def abort(self) -> None:
        for container in (self._out, self._source):
            if container is not None:
                try:
                    container.close()
                except av.error.FFmpegError as exc:
                    log.debug("closing %s: %s", container.name, exc)
        self._source = None


# A last frame lasting longer than this many frame intervals is a hold the output keeps;
# shorter, the muxer's own last duration (one interval) stands, as for every other frame.
HELD_FRAME_INTERVALS = 1.5


# Errors of the file system, not of the data: the output can't be written, whatever goes in.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOENT, errno.EROFS,
                          errno.EFBIG})
# Less free space than this left beside a short output means the disk filled up.
NEARLY_FULL_BYTES = 16 * 1024 * 1024


def _encoder_opens(codec: str, ctx, bit_rate: int) -> bool:  # noqa: ANN001 - a PyAV context
    """Whether a ``codec`` encoder opens with ``ctx``'s sample rate and channels at
    ``bit_rate`` (0 = the encoder's default): tried on a scratch context, because a stream
    added to the output can't be taken back."""
    try:
        encoder = av.CodecContext.create(codec, "w")
        encoder.sample_rate = ctx.sample_rate
        encoder.layout = ctx.layout
        encoder.format = encoder.codec.audio_formats[0]
        encoder.bit_rate = bit_rate
        encoder.open()
    except (av.error.FFmpegError, ValueError, TypeError, IndexError):
        return False
    return True


def check_written(path: Path, frames: int, name: Path | None = None) -> None:
    """Refuse an output that does not read back with ``frames`` video frames.

    FFmpeg's muxers do not report failed writes (a full disk, a quota, a folder removed
    meanwhile): the file is left cut short, with no index, and closing it still succeeds.
    Reading it back is the only way to know it holds what was written.
    """
    name = name or path
    readable = 0
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                readable += bool(packet.size)
    except (av.error.FFmpegError, IndexError, OSError):
        pass  # counted what could be read
    if readable == frames:
        return
    raise RunFailedError(f"{name.name}: writing the output failed ({_write_failure(path)}): it "
                         f"reads back with {readable} of the {frames} frames written")


def _write_failure(path: Path) -> str:
    """The likely reason why a file came out short, for the error message."""
    folder = path.parent
    if not folder.is_dir():
        return f"the folder {folder} was removed while writing"
    free = shutil.disk_usage(folder).free
    if free < NEARLY_FULL_BYTES:
        return f"the disk is full: {free // 1024} KiB free in {folder}"
    return "a write error: disk full, quota exceeded or an I/O error"


def _describe_matrix(display_matrix: Sequence[int]) -> str:
    """'rotation -90 degrees', 'mirrored', ... for a warning: the angle as ffprobe states it
    (FFmpeg's av_display_rotation_get, counter-clockwise)."""
    degrees = -round(math.degrees(math.atan2(display_matrix[1], display_matrix[0])))
    degrees = degrees - 360 if degrees > 180 else degrees
    mirrored = display_matrix[0] * display_matrix[4] - display_matrix[1] * display_matrix[3] < 0
    parts = [f"rotation {degrees} degrees"] if degrees else []
    return " and ".join(parts + (["mirrored"] if mirrored else [])) or "a transform"
