"""Splitting one video into segments at keyframes, and restoring one segment into its own file.

A segment is a range of presentation timestamps that starts at a keyframe:
segment k holds exactly the frames with ``start_pts <= pts < end_pts``, where both bounds are
keyframe timestamps from a packet scan (no decoding), and consecutive GOPs are grouped so the
segments have similar frame counts. Cutting by timestamp ranges, never by seconds or by frame
counts guessed from an average rate, is what keeps every frame exactly once at the joins, with
B-frames, edit lists and variable frame rate alike.

The worker side seeks to a keyframe far enough before its range to have the neighbours a
multi-frame model needs, decodes forward, restores exactly its frames (neighbours across the
join included, edge frames replicated only at the clip's real ends, as the single-process path
does), and encodes them with their original timestamps into a segment file of its own, which
therefore starts with a keyframe. It then checks its range against the packet scan; a file
whose frames don't match its packets (discarded frames, repaired timestamps) raises
:class:`SegmentMismatch` and the driver processes that video as one segment instead.

A decoder that starts at a keyframe can still decode differently from one that came from the
stream's start: FFmpeg applies its fix for the intra prediction of old x264 builds' 4:4:4
streams (x264 core < 151) only once it has read the encoder's version note in the first
frame, and lets earlier frames' state carry into later ones. Packets don't show it; only a
straight decode does. So while the segments are restored, :class:`StraightDecode` decodes the
whole video from its start in a thread of its own, and the segments are joined only if every
frame they hold is the frame it decodes to there (one digest per frame); otherwise the video is
processed as one segment. The straight decode is also the one verdict on a damaged input:
a segment after a seek leaves it to that.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from pipeline.config import ProcessConfig
from pipeline.errors import PipelineError, RunFailedError
from pipeline.ordered import conversion_threads
from pipeline.restorer import Restorer
from pipeline.stages import run_stages
from pipeline.video_reader import (
    EXACT_FRAME_COUNT_FORMATS,
    Damage,
    DecodedFrame,
    FrameReader,
    VideoInfo,
    ffmpeg_reason,
)
from pipeline.video_writer import VideoWriter
from unsmear.files import replaced_when_done

log = logging.getLogger(__name__)

# Keyframes tried, one GOP further back each time, when the first seek point turns out to give
# too few neighbours before a segment (then the worker decodes from the start of the file).
EXTRA_SEEK_POINTS = 2
# Bytes of each frame's digest: enough that two different frames never share one by chance.
DIGEST_BYTES = 8


class SegmentMismatch(PipelineError):
    """A segment's decoded frames don't match the packet scan: this video can't be split."""


@dataclass(frozen=True)
class KeyframeScan:
    """What a scan of the video packets (no decoding) says about where a video can be cut."""

    keyframes: tuple[int, ...]   # pts of keyframe packets, ascending, in VideoInfo.time_base
    gop_frames: tuple[int, ...]  # frames with keyframes[i] <= pts < keyframes[i+1] (GOP 0 also
                                 # counts frames before keyframes[0], e.g. open-GOP leading B-frames)
    frames: int                  # shown video packets (those an edit list discards left out)
    splittable: bool             # False when packets lack timestamps: one segment only
    damage: Damage | None = None  # what the scan found wrong with an input accepted as damaged


@dataclass(frozen=True)
class Segment:
    """One contiguous range of frames, cut at keyframes."""

    index: int                   # position in the output, from 0
    start_pts: int | None        # first pts included, a keyframe's; None = from the first frame
    end_pts: int | None          # first pts excluded, the next segment's start; None = to the end
    frames: int                  # frames in the range according to the packet scan
    seek_points: tuple[int, ...] = field(default=())  # keyframes to seek to for the neighbours
                                 # before start_pts, nearest first; exhausted = decode from 0


@dataclass(frozen=True)
class SegmentTask:
    """Everything a worker needs to restore one segment (picklable, paths absolute)."""

    input: Path                  # the video to read (visible to the worker: shared storage)
    segment: Segment
    path: Path                   # the segment file to write; its extension picks the container
    output_name: Path            # the final output's name; its extension picks codec defaults
    config: ProcessConfig = ProcessConfig()  # the run's settings, with this video's encoder:
                                 # decoding, queues and conversion threads as in one process
    whole: bool = False          # the segment is the whole video: write the final file with the
                                 # input's other streams, as one process does (nothing to join)


@dataclass(frozen=True)
class SegmentResult:
    """A finished segment file and what the driver needs to stitch and check it."""

    index: int                   # Segment.index
    path: Path                   # the segment file, complete (written under a temporary name)
    frames: int                  # frames encoded
    first_pts: int               # pts of the first and last frame, in the input's time base
    last_pts: int
    start_time_us: int           # the segment file's start time as libavformat reports it (µs)
    seconds: float               # wall time spent on the segment
    codec: str                   # encoder used
    digests: tuple[str, ...] = ()  # frame_digest of each frame restored, in order
    warnings: tuple[tuple[str, str], ...] = ()  # (logger, message) logged by a Ray worker


def scan_keyframes(info: VideoInfo, *, accept_damaged: bool = False, warn: bool = True) -> KeyframeScan:
    """Read the video packets' timestamps and keyframe flags, without decoding.

    Raises PipelineError for a file that can't be opened, and, unless ``accept_damaged``, for
    one cut short or unreadable mid-way (the single-process reader's rule, so both paths
    refuse the same files); with it, warns of the damage unless not ``warn`` (a caller that
    may yet decode the whole file, whose reader says more, warns itself).
    """
    if info.raw_stream:
        return KeyframeScan(keyframes=(), gop_frames=(), frames=info.frame_count or 0,
                            splittable=False)
    shown: list[int] = []
    keyframes: set[int] = set()
    splittable = True
    last_duration = 0
    start = 0
    damage = Damage(header_frames=info.frame_count if info.container_format
                    in EXACT_FRAME_COUNT_FORMATS else None, stated_seconds=info.stream_duration)
    try:
        container = av.open(str(info.path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise PipelineError(f"{info.path}: not a readable video ({exc})") from exc
    try:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        for packet in container.demux(stream):
            if packet.size or packet.dts is not None:
                damage.packets += 1
            if packet.size == 0 or packet.is_discard:
                continue  # demuxer flush markers; frames an edit list cuts are never shown
            pts = packet.pts
            if pts is None:
                splittable = False
                continue
            shown.append(pts)
            last_duration = packet.duration or 0
            if packet.is_keyframe:
                keyframes.add(pts)
    except av.error.FFmpegError as exc:
        damage.unreadable_at = float((max(shown, default=start) - start) * info.time_base)
        damage.unreadable_reason = ffmpeg_reason(exc)
    finally:
        container.close()
    if not shown:
        raise PipelineError(f"{info.path}: contains no video frames")
    damage.note_end(float((max(shown) + last_duration - start) * info.time_base))
    if not accept_damaged or warn:
        damage.check(info.path, accept_damaged)
    shown.sort()
    if len(set(shown)) != len(shown):
        splittable = False  # duplicate timestamps: ranges can't tell those frames apart
    ordered = sorted(keyframes)
    if not ordered:  # no keyframe flags at all: nowhere known to be safe to cut
        splittable = False
        ordered = [shown[0]]
    gop_frames = []
    for i, key in enumerate(ordered):
        lower = 0 if i == 0 else bisect.bisect_left(shown, key)
        upper = bisect.bisect_left(shown, ordered[i + 1]) if i + 1 < len(ordered) else len(shown)
        gop_frames.append(upper - lower)
    return KeyframeScan(keyframes=tuple(ordered), gop_frames=tuple(gop_frames),
                        frames=len(shown), splittable=splittable,
                        damage=damage if damage.describe() else None)


def plan_segments(scan: KeyframeScan, count: int, *, context: int = 0) -> list[Segment]:
    """Group consecutive GOPs into ``count`` segments of similar frame counts (fewer if the
    video has fewer GOPs), each starting at a keyframe.

    Args:
        scan: the packet scan of the video.
        count: segments wanted.
        context: neighbouring frames the model needs on each side; picks the seek points.
    """
    gops = len(scan.keyframes)
    if count <= 1 or gops <= 1 or not scan.splittable:
        return [Segment(index=0, start_pts=None, end_pts=None, frames=scan.frames)]
    starts = [0]  # frames before GOP i, for i = 0..gops
    for n in scan.gop_frames:
        starts.append(starts[-1] + n)
    total = starts[-1]
    cuts: list[int] = []  # GOP indices where a new segment starts
    for j in range(1, count):
        target = total * j / count
        lowest = (cuts[-1] + 1) if cuts else 1
        if lowest >= gops:
            break
        best = min(range(lowest, gops), key=lambda g: (abs(starts[g] - target), g))
        cuts.append(best)
    bounds = [0, *cuts, gops]
    segments = []
    for index, (first, stop) in enumerate(zip(bounds, bounds[1:])):
        segments.append(Segment(
            index=index,
            start_pts=None if first == 0 else scan.keyframes[first],
            end_pts=None if stop == gops else scan.keyframes[stop],
            frames=starts[stop] - starts[first],
            seek_points=_seek_points(scan, first, context),
        ))
    return segments


def _seek_points(scan: KeyframeScan, first_gop: int, context: int) -> tuple[int, ...]:
    """Keyframes to try for a segment starting at GOP ``first_gop``: the latest one leaving at
    least ``context`` frames before the segment, then a few further back."""
    if first_gop == 0:
        return ()
    gop = first_gop
    before = 0
    while gop > 0 and before < context:
        gop -= 1
        before += scan.gop_frames[gop]
    if gop == 0:
        return ()  # the neighbours reach back into the first GOP: decode from the start
    points = [scan.keyframes[g] for g in range(gop, max(0, gop - EXTRA_SEEK_POINTS - 1), -1)
              if g > 0]
    return tuple(points)


class _TooFewNeighbours(Exception):
    """Seeking there leaves fewer neighbours before the segment than the model needs."""


def segment_items(reader: FrameReader, segment: Segment, context: int
                  ) -> Iterator[tuple[DecodedFrame, bool]]:
    """The segment's frames with ``context`` neighbours on each side, as (frame, is_target).

    Neighbours come from the adjacent segments where the clip continues, and are the edge
    frame replicated where it ends: exactly the sequence the single-process path feeds the
    model around these frames. Raises SegmentMismatch (after the last item) when the frames
    found don't match the segment's packets.
    """
    for seek in (*segment.seek_points, None):
        try:
            yield from _segment_from(reader, segment, seek, context)
            return
        except _TooFewNeighbours:
            # Nothing was yielded yet: retrying from an earlier keyframe is safe.
            log.debug("segment %d: too few neighbours after keyframe %s; seeking further back",
                      segment.index, seek)
    raise AssertionError("decoding from the start always finds the neighbours")  # pragma: no cover


def _segment_from(reader: FrameReader, segment: Segment, seek: int | None, context: int
                  ) -> Iterator[tuple[DecodedFrame, bool]]:
    start, end = segment.start_pts, segment.end_pts
    before: deque[DecodedFrame] = deque(maxlen=context)
    after: list[DecodedFrame] = []
    last_target: DecodedFrame | None = None
    targets = 0
    reader.repaired_timestamps = 0
    frames = reader.frames(seek_pts=seek)
    try:
        for frame in frames:
            if seek is not None and frame.pts < seek:
                continue  # leading frames of an open GOP: their references were not decoded
            if start is not None and frame.pts < start:
                before.append(frame)
                continue
            if end is not None and frame.pts >= end:
                after.append(frame)
                if len(after) >= context:
                    break
                continue
            if last_target is None:
                yield from _lead(reader, segment, seek, frame, list(before), context)
            yield frame, True
            last_target = frame
            targets += 1
    finally:
        frames.close()
    _check_range(reader, segment, targets, after)
    tail = after[:context]
    if len(tail) < context:  # the clip's end: replicate its last frame
        edge = tail[-1] if tail else last_target
        tail = tail + [edge] * (context - len(tail))
    for neighbour in tail:
        yield neighbour, False


def _lead(reader: FrameReader, segment: Segment, seek: int | None, first: DecodedFrame,
          before: list[DecodedFrame], context: int) -> Iterator[tuple[DecodedFrame, bool]]:
    """The neighbours before the segment's first frame."""
    if segment.start_pts is not None and first.pts != segment.start_pts:
        raise SegmentMismatch(
            f"{reader.info.path}: segment {segment.index} should start with the keyframe at "
            f"pts {segment.start_pts} but its first frame has pts {first.pts}")
    if len(before) < context:
        if seek is not None:
            raise _TooFewNeighbours()
        # Decoded from the file's start: this is the clip's start, replicate its first frame.
        edge = before[0] if before else first
        before = [edge] * (context - len(before)) + before
    for neighbour in before:
        yield neighbour, False


def _check_range(reader: FrameReader, segment: Segment, targets: int,
                 after: list[DecodedFrame]) -> None:
    """Refuse a segment whose frames differ from what its packets promised."""
    path, index, end = reader.info.path, segment.index, segment.end_pts
    if segment.start_pts is None and end is None:
        return  # the whole video in one pass: nothing to match against
    if targets == 0:
        raise SegmentMismatch(f"{path}: segment {index} decoded no frames in its range")
    if end is not None and (not after or after[0].pts != end):
        found = f"pts {after[0].pts}" if after else "the end of the video"
        raise SegmentMismatch(f"{path}: segment {index} should end at the keyframe at pts "
                              f"{end} but the next frame is at {found}")
    if targets != segment.frames:
        raise SegmentMismatch(f"{path}: segment {index} decoded {targets} frames where its "
                              f"packets say {segment.frames}")
    if reader.repaired_timestamps:
        raise SegmentMismatch(f"{path}: its timestamps need repair, which only works in one "
                              f"pass over the whole video")


def restore_segment(task: SegmentTask, restorer: Restorer, *,
                    on_progress: Callable[[int], None] | None = None) -> SegmentResult:
    """Decode, restore and encode one segment into ``task.path`` (written atomically), with the
    stage loop the single-process path runs (:func:`pipeline.stages.run_stages`) and the same
    settings. ``on_progress`` is called with the frames restored so far.
    """
    started = time.perf_counter()
    path = Path(task.path)
    config = task.config
    convert_threads = config.convert_threads or conversion_threads()
    reader = FrameReader(task.input, threads=config.decode_threads, hwdec=config.hwdec,
                         convert_threads=convert_threads, accept_damaged=config.accept_damaged)
    pts: list[int] = []
    digests: list[str] = []

    def open_writer() -> VideoWriter:
        return VideoWriter(partial, reader.info, colour=reader.colour,
                           display_matrix=reader.display_matrix, settings=config.encoder,
                           copy_streams=task.whole, output_name=task.output_name,
                           source_end=(lambda: reader.end_pts) if task.segment.end_pts is None else None)

    def items() -> Iterator[DecodedFrame]:
        for frame, is_target in segment_items(reader, task.segment, restorer.context):
            if is_target:
                pts.append(frame.pts)
                digests.append(frame_digest(frame))
            yield frame

    with replaced_when_done(path) as partial:
        writer = run_stages(items(), restorer, reader.info, open_writer=open_writer,
                            queue_frames=config.queue_frames, convert_threads=convert_threads,
                            on_progress=on_progress)
        if writer is None:
            raise RunFailedError(f"{task.input}: segment {task.segment.index} has no frames")
    if writer.frames_written != len(pts):
        raise RunFailedError(f"internal error: segment {task.segment.index} restored "
                             f"{len(pts)} frames but wrote {writer.frames_written}")
    return SegmentResult(index=task.segment.index, path=path, frames=writer.frames_written,
                         first_pts=pts[0], last_pts=pts[-1], start_time_us=file_start_time(path),
                         seconds=time.perf_counter() - started, codec=writer.codec,
                         digests=tuple(digests))


def frame_digest(frame: DecodedFrame) -> str:
    """A short digest of a frame's pixels: equal for equal frames, different otherwise."""
    return hashlib.blake2b(np.ascontiguousarray(frame.rgb).data,
                           digest_size=DIGEST_BYTES).hexdigest()


class StraightDecode:
    """The digests of a video's frames decoded in one pass from its start, in a thread of its
    own: what the frames of its segments must be (see the module's docstring).

    Args:
        path: the video.
        config: the run's decoding settings (threads, hardware decoding, --accept-damaged).
    """

    def __init__(self, path: Path, config: ProcessConfig) -> None:
        self.path = Path(path)
        self._stop = threading.Event()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="straight-decode")
        self._digests: Future = executor.submit(self._decode, config)
        executor.shutdown(wait=False)

    def _decode(self, config: ProcessConfig) -> list[str]:
        reader = FrameReader(self.path, threads=config.decode_threads, hwdec=config.hwdec,
                             accept_damaged=config.accept_damaged)
        digests = []
        frames = reader.frames()
        try:
            for frame in frames:
                if self._stop.is_set():
                    return []
                digests.append(frame_digest(frame))
        finally:
            frames.close()
        return digests

    def done(self) -> bool:
        """Whether the straight decode has finished (or failed): :meth:`check` won't wait."""
        return self._digests.done()

    def check(self, results: list[SegmentResult]) -> None:
        """Wait for the straight decode; raise SegmentMismatch unless ``results`` (every
        segment, in order) hold exactly its frames. A damaged input raises as it would in
        one pass (PipelineError, unless --accept-damaged)."""
        straight = self._digests.result()
        index = 0
        for result in results:
            for n, digest in enumerate(result.digests):
                if index >= len(straight) or digest != straight[index]:
                    raise SegmentMismatch(
                        f"{self.path}: frame {index} (frame {n} of segment {result.index}) "
                        f"decodes differently after a seek than from the start (as in H.264 "
                        f"4:4:4 from x264 builds older than core 151)")
                index += 1
        if index != len(straight):
            raise SegmentMismatch(f"{self.path}: the segments hold {index} frames, a decode "
                                  f"from the start {len(straight)}")

    def stop(self) -> None:
        """Give up: the thread ends at its next frame."""
        self._stop.set()


def file_start_time(path: Path) -> int:
    """A file's start time in microseconds, as libavformat (and so the concat demuxer) sees it."""
    with av.open(str(path)) as container:
        return container.start_time or 0
