"""The driver's scheduling loop: plans videos into segments lazily, hands segments to free
workers, redoes a segment elsewhere when its worker dies (process killed, node lost), falls
back to one segment when a video can't be split, stitches each video when its last segment
is in, and reports each video's outcome as it ends. One progress bar for all frames.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import ray
from tqdm import tqdm

from pipeline.cluster import WORKER_DIED, ParallelConfig, log_again
from pipeline.config import EncoderSettings, ProcessConfig
from pipeline.errors import PipelineError, RunFailedError
from pipeline.outputs import check_output, remove_dead_leftovers, segments_folder
from pipeline.resume import ResumeFolder, remove_other_runs, run_key
from pipeline.segments import (
    Segment,
    SegmentMismatch,
    SegmentResult,
    SegmentTask,
    StraightDecode,
    plan_segments,
    scan_keyframes,
)
from pipeline.stitch import check_copyable, joinable, stitch
from pipeline.video_reader import VideoInfo, probe, warn_left_out
from pipeline.video_writer import choose_codec, choose_pix_fmt
from pipeline.worker import KILL_WORKER_ONCE_ENV
from unsmear.errors import one_line
from unsmear.files import ReplaceError, replace, replaced_when_done

log = logging.getLogger(__name__)

# How often the driver refreshes the progress bar while waiting on workers (seconds).
PROGRESS_POLL_S = 0.5


class SegmentPool(Protocol):
    """What the loop needs of the worker pool it schedules on (``pipeline.parallel.WorkerPool``,
    which imports this module: the loop depends on this description, not on the pool)."""

    config: ProcessConfig           # settings every segment is restored with
    parallel: ParallelConfig        # workers, segments per worker, retries
    context: int                    # neighbours the model needs on each side of a frame
    model_key: str                  # names the resume folders of its videos
    device_kind: str                # "cuda" or "cpu": part of the resume key
    model_ref: Any                  # the model in Ray's object store, or None (workers load it)
    progress_board: Any             # the Ray actor counting restored frames


@dataclass(frozen=True)
class VideoRequest:
    """One video for the pool: where to read and where to write."""

    input: Path
    output: Path
    segments: int | None = None     # segments to cut it into (fewer if it has fewer GOPs);
                                    # None = from its length and min_segment_frames
    overwrite: bool | None = None   # replace an existing output; None = the pool's setting
    encoder: EncoderSettings | None = None  # how to encode it; None = the pool's settings


@dataclass(frozen=True)
class VideoOutcome:
    """What happened to one video."""

    input: Path
    output: Path
    status: str                     # "done" or "failed"
    frames: int = 0                 # frames written
    seconds: float = 0.0            # wall time from its first segment starting to its output
    segments: int = 0               # segment files stitched
    plan_seconds: float = 0.0       # probing, the packet scan and planning (driver)
    stitch_seconds: float = 0.0     # joining the segments and muxing the other streams (driver)
    codec: str = ""
    error: str | None = None        # one line, for failed videos
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0





@dataclass
class Video:
    """The driver's state for one video in flight."""

    request: VideoRequest
    key: int                        # unique within a run
    info: VideoInfo
    segments: list[Segment]
    workdir: Path                   # hidden folder beside the output, for its segment files
    resume: ResumeFolder | None = None  # the workdir when it keeps finished segments for a rerun
    straight: StraightDecode | None = None  # what its segments' frames must be, when split
    plan_seconds: float = 0.0       # time spent planning it
    generation: int = 0             # bumped when re-planned: older segments' results are stale
    results: dict[int, SegmentResult] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    started: float | None = None
    failed: bool = False

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments)



def _segment_count(frames: int, workers: int, parallel: ParallelConfig,
                   requested: int | None) -> int:
    if requested is not None:
        return requested
    wanted = workers * parallel.segments_per_worker
    return max(1, min(wanted, frames // parallel.min_segment_frames))




class Run:
    """One pass of the scheduling loop over a stream of videos."""

    def __init__(self, pool: SegmentPool, actors: list, requests: Iterator[VideoRequest],
                 on_outcome: Callable[[VideoOutcome], None] | None, stop_on_failure: bool,
                 progress: bool, description: str) -> None:
        self.pool = pool
        self.workers = len(actors)
        self.requests = requests
        self.on_outcome = on_outcome
        self.stop_on_failure = stop_on_failure
        self.queue: deque[tuple[Video, Segment]] = deque()
        self.in_flight: dict = {}   # ObjectRef -> (actor, video, generation, segment)
        self.free = list(actors)
        self.deaths: dict = {}      # actor -> times it died
        self.videos: dict[int, Video] = {}
        self.outcomes: list[VideoOutcome] = []
        self.run_id = uuid.uuid4().hex[:8]  # progress keys of pools shared by several runs
        self.next_key = 0
        self.exhausted = False
        self.done_before = 0        # frames of segments finished by earlier runs (resumed)
        self.stopping = False
        self.checking: list[Video] = []  # every segment done, waiting for the straight decode
        # Shown from the first planned video on: a bar made before knows no total and would
        # leave a stray "0frame" line behind.
        self.bar = tqdm(total=0, unit="frame", desc=description or None, disable=not progress,
                        file=sys.stderr, dynamic_ncols=True, delay=float("inf"))

    def execute(self) -> list[VideoOutcome]:
        try:
            while not self.stopping:
                self._finish_checked()
                self._fill_queue()
                self._dispatch()
                if not self.in_flight:
                    if self.queue:
                        raise RunFailedError("every Ray worker died; nothing is left to run on")
                    if self.checking:
                        time.sleep(PROGRESS_POLL_S)  # only straight decodes left to wait for
                        continue
                    if self.exhausted:
                        break
                    continue
                ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=PROGRESS_POLL_S)
                for ref in ready:
                    self._collect(ref)
                self._show_progress()
        finally:
            self.bar.close()
            self.pool.progress_board.forget.remote((self.run_id,))
            for video in list(self.videos.values()):
                if video.straight is not None:
                    video.straight.stop()
                if video.resume is None:  # an interrupted run keeps its finished segments
                    shutil.rmtree(video.workdir, ignore_errors=True)
        return self.outcomes

    def _show_progress(self) -> None:
        if self.bar.disable:
            return
        done = ray.get(self.pool.progress_board.total.remote((self.run_id,))) + self.done_before
        self.bar.n = min(done, self.bar.total)
        self.bar.refresh()

    # -- planning ---------------------------------------------------------------------------

    def _fill_queue(self) -> None:
        """Plan videos until there is a segment for every free worker, or none are left."""
        while not self.exhausted and len(self.queue) < max(1, len(self.free)):
            request = next(self.requests, None)
            if request is None:
                self.exhausted = True
                return
            try:
                video = self._plan(request)
            except PipelineError as exc:
                self._record(VideoOutcome(input=request.input, output=request.output,
                                          status="failed", error=one_line(exc), exception=exc))
                continue
            self.videos[video.key] = video
            self.queue.extend((video, segment) for segment in video.segments
                              if segment.index not in video.results)
            self.bar.total += video.frames
            self.done_before += sum(r.frames for r in video.results.values())
            self.bar.delay = 0
            self.bar.refresh()
            if len(video.results) == len(video.segments):
                self._finish_when_checked(video)  # every segment was finished by an earlier run

    def _plan(self, request: VideoRequest) -> Video:
        pool = self.pool
        planning = time.perf_counter()
        input_path = Path(request.input).resolve()
        output = Path(request.output).resolve()
        info = probe(input_path)
        overwrite = pool.config.overwrite if request.overwrite is None else request.overwrite
        check_output(input_path, output, overwrite)
        warn_left_out(info)
        # Settings mistakes surface now, not in every segment.
        encoder = request.encoder or pool.config.encoder
        codec = choose_codec(encoder, info, output)
        choose_pix_fmt(codec, encoder, info)
        scan = scan_keyframes(info, accept_damaged=pool.config.accept_damaged)
        count = _segment_count(scan.frames, self.workers, pool.parallel, request.segments)
        if info.raw_stream and count > 1:
            log.warning("%s: a raw stream has no timestamps to seek by; one worker processes "
                        "it whole", input_path)
        elif not joinable(output) and count > 1:
            log.warning("%s: segments can't be joined exactly in %s; one worker processes it "
                        "whole", input_path, output.suffix or "this container")
            count = 1
        segments = plan_segments(scan, count, context=pool.context)
        remove_dead_leftovers(output)
        resume, finished, straight = None, {}, None
        if len(segments) > 1:
            config = dataclasses.replace(pool.config, encoder=encoder)
            resume = ResumeFolder(output, run_key(input_path, output, pool.model_key, config,
                                                  segments, pool.device_kind))
            finished = resume.open()
            workdir = resume.path
            straight = StraightDecode(input_path, pool.config)
        else:
            remove_other_runs(output)  # one segment now: an interrupted run's folder is of no use
            workdir = segments_folder(output)
            workdir.mkdir()
        try:
            check_copyable(info, output, workdir)
        except BaseException:
            if straight is not None:
                straight.stop()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        video = Video(request=dataclasses.replace(request, input=input_path, output=output,
                                                   encoder=encoder),
                      key=self.next_key, info=info, segments=segments, workdir=workdir,
                      resume=resume, straight=straight, results=finished,
                      plan_seconds=time.perf_counter() - planning)
        self.next_key += 1
        log.info("%s: %d frames in %d segment(s)", input_path, scan.frames, len(segments))
        return video

    # -- dispatching and collecting ---------------------------------------------------------

    def _dispatch(self) -> None:
        while self.free and self.queue:
            video, segment = self.queue.popleft()
            if video.failed:
                continue
            actor = self.free.pop(0)
            if video.resume is not None and video.generation == 0:
                path = video.resume.segment_path(segment.index)
            else:
                path = video.workdir / (f"segment-{video.generation}-{segment.index:05d}"
                                        f"{video.request.output.suffix}")
            task = SegmentTask(
                input=video.request.input,
                segment=segment,
                path=path,
                output_name=video.request.output,
                config=dataclasses.replace(self.pool.config, encoder=video.request.encoder),
                whole=len(video.segments) == 1,
            )
            video.attempts[segment.index] = video.attempts.get(segment.index, 0) + 1
            if video.started is None:
                video.started = time.perf_counter()
            key = (self.run_id, video.key, video.generation, segment.index)
            ref = actor.restore.remote(task, self.pool.model_ref, self.pool.progress_board, key,
                                       os.environ.get(KILL_WORKER_ONCE_ENV))
            self.in_flight[ref] = (actor, video, video.generation, segment)

    def _collect(self, ref) -> None:
        actor, video, generation, segment = self.in_flight.pop(ref)
        stale = video.failed or generation != video.generation
        try:
            result: SegmentResult = ray.get(ref)
        except WORKER_DIED as exc:
            self._worker_died(actor)
            if not stale:
                self._retry(video, segment, exc)
            return
        except ray.exceptions.RayTaskError as exc:
            self.free.append(actor)
            if not stale:
                self._segment_failed(video, segment, exc.cause if exc.cause is not None else exc)
            return
        self.free.append(actor)
        log_again(result.warnings)
        if stale:
            return
        video.results[segment.index] = result
        if video.resume is not None and generation == 0:
            video.resume.record(result)
        if len(video.results) == len(video.segments):
            self._finish_when_checked(video)

    def _finish_when_checked(self, video: Video) -> None:
        """Join the video now, or once its straight decode is done: waiting for it here
        would leave every worker idle meanwhile (other videos' segments go on)."""
        if video.straight is None or video.straight.done():
            self._finish(video)
        else:
            self.checking.append(video)

    def _finish_checked(self) -> None:
        for video in [v for v in self.checking if v.straight is None or v.straight.done()]:
            self.checking.remove(video)
            self._finish(video)

    def _worker_died(self, actor) -> None:
        deaths = self.deaths[actor] = self.deaths.get(actor, 0) + 1
        if deaths <= self.pool.parallel.max_attempts:
            self.free.append(actor)  # Ray restarts it; calls to it wait until it is back
        else:
            log.warning("a Ray worker died %d times; not using it any more", deaths)

    def _retry(self, video: Video, segment: Segment, exc: Exception) -> None:
        self.pool.progress_board.forget.remote((self.run_id, video.key, video.generation,
                                           segment.index))
        tries = video.attempts.get(segment.index, 0)
        if tries >= self.pool.parallel.max_attempts:
            self._fail(video, PipelineError(
                f"{video.request.input}: the worker restoring segment {segment.index} died "
                f"{tries} times ({one_line(exc)})"))
            return
        log.warning("%s: the worker restoring segment %d died (%s); redoing the segment",
                    video.request.input, segment.index, one_line(exc))
        self.queue.appendleft((video, segment))

    def _segment_failed(self, video: Video, segment: Segment, error: BaseException) -> None:
        if isinstance(error, SegmentMismatch) and len(video.segments) > 1:
            self._one_segment(video, error)
            return
        self._fail(video, error)

    def _one_segment(self, video: Video, error: SegmentMismatch) -> None:
        """Redo a video that can't be split as one segment, from its start."""
        log.warning("%s; processing this video as one segment instead", error)
        self.pool.progress_board.forget.remote((self.run_id, video.key, video.generation))
        if video.straight is not None:
            video.straight.stop()  # one segment is itself the straight decode
            video.straight = None
        video.generation += 1
        video.results.clear()
        video.attempts.clear()
        video.segments = [Segment(index=0, start_pts=None, end_pts=None, frames=video.frames)]
        # The old plan's segments still queued are dropped; running ones come back stale.
        self.queue = deque(item for item in self.queue if item[0] is not video)
        self.queue.appendleft((video, video.segments[0]))

    def _fail(self, video: Video, error: BaseException) -> None:
        video.failed = True
        self.pool.progress_board.forget.remote((self.run_id, video.key))
        self.bar.total -= video.frames
        self.queue = deque(item for item in self.queue if item[0] is not video)
        self._close_video(video)
        self._record(VideoOutcome(input=video.request.input, output=video.request.output,
                                  status="failed", error=one_line(error), exception=error,
                                  seconds=_elapsed(video)))

    def _finish(self, video: Video) -> None:
        results = [video.results[s.index] for s in video.segments]
        output = video.request.output
        stitching = time.perf_counter()
        try:
            if len(results) == 1:  # written whole, other streams included: nothing to join
                replace(results[0].path, output)
            else:
                video.straight.check(results)
                with replaced_when_done(output) as partial:
                    stitch(results, video.info, partial, output_name=output)
        except SegmentMismatch as exc:
            self._one_segment(video, exc)
            return
        except (PipelineError, ReplaceError) as exc:
            video.failed = True
            self._close_video(video)
            self._record(VideoOutcome(input=video.request.input, output=output, status="failed",
                                      error=one_line(exc), exception=exc,
                                      seconds=_elapsed(video)))
            return
        self._close_video(video)
        outcome = VideoOutcome(input=video.request.input, output=output, status="done",
                               frames=sum(r.frames for r in results), seconds=_elapsed(video),
                               segments=len(results), plan_seconds=video.plan_seconds,
                               stitch_seconds=time.perf_counter() - stitching,
                               codec=results[0].codec)
        log.info("%s: %d frames from %d segment(s) in %.1f s (%.2f fps) → %s", outcome.input,
                 outcome.frames, outcome.segments, outcome.seconds, outcome.fps, output)
        self._record(outcome)

    def _close_video(self, video: Video) -> None:
        if video.straight is not None:
            video.straight.stop()
        self.videos.pop(video.key, None)
        shutil.rmtree(video.workdir, ignore_errors=True)

    def _record(self, outcome: VideoOutcome) -> None:
        self.outcomes.append(outcome)
        if outcome.status == "failed" and self.stop_on_failure:
            self.stopping = True
            self.exhausted = True
        if self.on_outcome is not None:
            self.on_outcome(outcome)


def _elapsed(video: Video) -> float:
    return time.perf_counter() - video.started if video.started is not None else 0.0
