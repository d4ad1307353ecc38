"""Joining a video's segment files into the output with FFmpeg: the concat demuxer and ``-c copy``
(no re-encoding), the input's audio and subtitles muxed untouched, and the result checked
(frame count, first and last timestamps) before anyone sees it.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import ffmpeg

from pipeline.errors import RunFailedError
from pipeline.ffmpeg_cli import QUIET_ARGS, run_ffmpeg
from pipeline.segments import SegmentResult
from pipeline.video_reader import VideoInfo
from pipeline.video_writer import MATROSKA_FAMILY, MOV_FAMILY, container_hint

# Output containers whose segments join into exactly the one-pass output (frames, timestamps,
# audio; tested in test_pipeline_parallel). Others (AVI, FLV, MPEG-PS, ...) are done in one
# segment: known before the work, not found out after it.
JOINABLE_OUTPUTS = MOV_FAMILY | MATROSKA_FAMILY | {"ts", "m2ts", "mts"}


def joinable(output: Path) -> bool:
    """Whether segments of a video join exactly into ``output``'s container."""
    return output.suffix.lower().lstrip(".") in JOINABLE_OUTPUTS


def _concat_quote(path: Path) -> str:
    # The concat script's quoting: inside single quotes everything is literal except the
    # quote itself, which is written as '\''.
    return "'" + str(path).replace("'", "'\\''") + "'"


def _seconds(microseconds: int) -> str:
    """Microseconds as an exact FFmpeg duration string (av_parse_time reads 6 decimals)."""
    sign = "-" if microseconds < 0 else ""
    whole, fraction = divmod(abs(microseconds), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def write_concat_list(results: list[SegmentResult], path: Path) -> int:
    """Write the concat demuxer's script for ``results``; returns the offset to undo (µs).

    The concat demuxer shifts file k's timestamps by (sum of the durations before it) minus
    (file k's start time). Declaring each file's duration as exactly the gap between its start
    time and the next file's makes that shift the same for every file: minus the first file's
    start time, which ``-itsoffset`` then adds back. Every timestamp comes out as written.
    """
    lines = ["ffconcat version 1.0"]
    for current, following in zip(results, [*results[1:], None]):
        lines.append(f"file {_concat_quote(current.path)}")
        if following is not None:
            gap = following.start_time_us - current.start_time_us
            if gap <= 0:
                raise RunFailedError(f"internal error: segment {following.index} starts at or "
                                     f"before segment {current.index}")
            lines.append(f"duration {_seconds(gap)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return results[0].start_time_us


def stitch(results: list[SegmentResult], info: VideoInfo, output: Path, *,
           output_name: Path | None = None) -> int:
    """Concatenate segment files (``-c copy``) and mux the input's audio and subtitles.

    Args:
        results: the segments, in order.
        info: the probed input, whose other streams and metadata are copied.
        output: the file to write (normally a temporary name the caller renames).
        output_name: the name reported in errors.
    Returns the number of video frames in the output, after checking it against the segments.
    """
    name = output_name or output
    listing = results[0].path.parent / "concat.txt"
    offset = write_concat_list(results, listing)
    video = ffmpeg.input(str(listing), format="concat", safe=0, itsoffset=_seconds(offset))
    source = ffmpeg.input(str(info.path))
    # Optional maps ("?"): the input is always there for its metadata, audio only if it has some.
    streams = [video["v:0"], source["a?"], source["s?"]]
    # muxdelay 0: the ffmpeg command line otherwise delays MPEG-TS/PS timestamps by 2 x 0.7 s
    # (libavformat's max_delay), which the segment files, written in-process, do not have.
    options = dict(c="copy", copyts=None, map_metadata=1, map_chapters=1, muxdelay=0)
    if timecode := _timecode(info.path):  # the segments' files carry none (VideoWriter)
        options["metadata:s:v:0"] = f"timecode={timecode}"
    # The video's flags: the concat demuxer passes on none, so Matroska would lose "default".
    options["disposition:v:0"] = _video_disposition(info.path)
    if output.suffix.lower().lstrip(".") in MOV_FAMILY:
        # As VideoWriter does: a non-zero start time is an edit list in the movie time scale,
        # exact only in the video's own.
        options["movie_timescale"] = info.time_base.denominator
    command = ffmpeg.output(*streams, str(output), **options).global_args(*QUIET_ARGS)
    run_ffmpeg(command, f"{name.name}: joining the segments failed", RunFailedError)
    return _check_stitched(results, info, output, name)


def _timecode(path: Path) -> str | None:
    """The timecode of the input's first frame, as its video stream or container states it."""
    with av.open(str(path), metadata_errors="ignore") as container:
        for tags in (container.streams.video[0].metadata, container.metadata):
            for key, value in tags.items():
                if key.lower() == "timecode":
                    return value
    return None


def _video_disposition(path: Path) -> str:
    """The input video's flags as the ffmpeg command line names them ("default", "0" for none)."""
    with av.open(str(path), metadata_errors="ignore") as container:
        flags = container.streams.video[0].disposition
    names = [flag.name for flag in type(flags) if flag.name and flag.value and flag in flags
             and flag.name != "attached_pic"]
    return "+".join(names) or "0"


def check_copyable(info: VideoInfo, output: Path, workdir: Path) -> None:
    """Fail now, not after restoring, if the input's audio/subtitles can't go into ``output``'s
    container (e.g. SubRip subtitles into MP4): mux a moment of them into a scratch file."""
    if not info.copied_streams:
        return
    scratch = workdir / f".streams-check-{os.getpid()}{output.suffix}"  # hidden, this process's
    source = ffmpeg.input(str(info.path))
    command = ffmpeg.output(source["a?"], source["s?"], str(scratch), c="copy", t=0.1,
                            ).global_args(*QUIET_ARGS)
    try:
        run_ffmpeg(command, f"{output.name}: the input's audio/subtitle streams "
                             f"({', '.join(info.copied_streams)}) cannot be copied into this "
                             f"container; {container_hint(info.path, output)}")
    finally:
        scratch.unlink(missing_ok=True)


def _check_stitched(results: list[SegmentResult], info: VideoInfo, output: Path,
                    name: Path) -> int:
    """Count the output's video packets and compare its first and last timestamps with the
    segments': a join that lost, duplicated or shifted frames fails here, not in a player."""
    expected = sum(r.frames for r in results)
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.size and p.pts is not None]
        out_tb = stream.time_base
    if len(pts) != expected:
        raise RunFailedError(f"{name.name}: the joined video has {len(pts)} frames, the "
                             f"segments {expected}")
    for found, wanted in ((min(pts), results[0].first_pts), (max(pts), results[-1].last_pts)):
        if found != _rescale(wanted, info.time_base, out_tb):
            raise RunFailedError(f"{name.name}: the joined video's timestamps are shifted "
                                 f"({found} vs {wanted} expected)")
    return len(pts)


def _rescale(value: int, source: Fraction, target: Fraction) -> int:
    """av_rescale_q's round-to-nearest (halves away from zero)."""
    exact = Fraction(value) * Fraction(source) / Fraction(target)
    return int(exact + Fraction(1, 2)) if exact >= 0 else -int(-exact + Fraction(1, 2))

