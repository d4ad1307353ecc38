"""Deblurring videos on a pool of Ray workers: one long video split across GPUs, or many videos.

Each worker is a Ray actor that loads the model once (``num_gpus=1`` on GPU clusters) and then
restores segments (see :mod:`pipeline.segments`): ranges of frames cut at keyframes, each
written to a segment file of its own next to the output. Only file paths and small results
travel through Ray, never frames. The driver

- plans each video's segments from a packet scan and hands them to whichever worker is free;
- redoes a segment elsewhere when its worker dies (process killed, node lost), up to
  ``max_attempts`` times; an error inside a segment fails that video with that error;
- shows one progress bar for all frames;
- stitches a video's segments in order with FFmpeg's concat demuxer and ``-c copy`` (no
  re-encoding), muxing the input's audio and subtitle streams untouched, checks the result's
  frame count and first/last timestamps, and renames it into place: an output file exists only
  once it is complete.

The input and output paths must be visible to every worker (shared storage on a cluster).
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import ffmpeg
import imageio_ffmpeg
import ray
from tqdm import tqdm

from models.generator import RRDBNet
from pipeline.config import ProcessConfig
from pipeline.errors import PipelineError, RunFailedError
from pipeline.leftovers import partial_path, remove_dead_leftovers, segments_folder
from pipeline.process import ProcessResult, _check_output, default_output_path, load_model
from pipeline.restorer import Restorer, resolve_device
from pipeline.segments import (
    Segment,
    SegmentMismatch,
    SegmentResult,
    SegmentTask,
    plan_segments,
    restore_segment,
    scan_keyframes,
)
from pipeline.video_reader import VideoInfo, probe
from pipeline.video_writer import MOV_FAMILY, EncoderSettings, choose_codec, choose_pix_fmt

log = logging.getLogger(__name__)

# A new, private Ray instance on this machine (ray.init(address=None) would instead join the
# last cluster `ray start` left behind, perhaps someone else's).
LOCAL_RAY = "local"
# How often the driver refreshes the progress bar while waiting on workers (seconds).
PROGRESS_POLL_S = 0.5
# Workers report progress at most this often (seconds): one small Ray call each time.
PROGRESS_REPORT_S = 0.5
# Test hook, read by the driver: when this environment variable names a file that does not
# exist yet, the first worker to restore a batch creates it and kills its own process
# mid-segment, as a crash would.
KILL_WORKER_ONCE_ENV = "UNSMEAR_TEST_KILL_WORKER_ONCE"
# FFmpeg's output on failure is long; the last lines say what went wrong.
FFMPEG_ERROR_LINES = 3


@dataclass(frozen=True)
class ParallelConfig:
    """How work is spread over Ray workers."""

    workers: int = 0                # Ray actors; 0 = one per GPU Ray sees (1 without GPUs)
    address: str | None = None      # Ray cluster to join ("auto", "HOST:PORT", "ray://HOST:PORT");
                                    # None = start a private local Ray instance
    segments_per_worker: int = 2    # segments planned per worker: spares absorb uneven speeds
    min_segment_frames: int = 300   # don't cut a video into pieces shorter than this (jobs);
                                    # one video on N workers always gets N segments if it can
    max_attempts: int = 3           # times a segment is tried when its worker dies
    cpus_per_worker: float = 1.0    # Ray CPUs reserved by each worker
    gpus_per_worker: float | None = None  # None = 1 when the cluster has GPUs (0 with --device cpu)

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise PipelineError(f"--workers must be 1 or more, got {self.workers}")
        if self.max_attempts < 1 or self.segments_per_worker < 1 or self.min_segment_frames < 1:
            raise PipelineError("max_attempts, segments_per_worker and min_segment_frames "
                                "must be 1 or more")


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


# --------------------------------------------------------------------------------------------
# Ray: connecting and the actors


def connect(address: str | None, *, num_cpus: int | None = None) -> bool:
    """Make sure this process is connected to Ray. Returns True if it started Ray itself
    (the caller then shuts it down); an existing connection is used as it is."""
    if ray.is_initialized():
        return False
    quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
    try:
        if address is None:
            ray.init(address=LOCAL_RAY, num_cpus=num_cpus, include_dashboard=False,
                     logging_level=logging.WARNING if quiet else logging.INFO)
        else:
            ray.init(address=address, logging_level=logging.WARNING if quiet else logging.INFO)
    except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # Ray >= 2.5x clusters started where a token exists require it, and a driver given an
        # explicit address only sends one when told to.
        hint = (" (is `ray start --head` running there? with token authentication, set "
                "RAY_AUTH_MODE=token and the head's token in RAY_AUTH_TOKEN or ~/.ray/auth_token)"
                if address else "")
        raise PipelineError(f"cannot connect to {where}{hint}: {reason}") from exc
    return True


class SegmentWorker:
    """A Ray actor: loads the generator once, then restores segments on its device.

    Args:
        config: device, precision, batching and tiling settings.
        model_path: the checkpoint to load now (None = the default model); the file must be
            visible to the worker.
        shipped: load nothing now: the driver sends a generator object with each segment
            (a large object among the constructor's arguments would make Ray warn that
            restarts depend on it; a restarted worker fetches it again with its next one).
    """

    def __init__(self, config: ProcessConfig, model_path: Path | None = None,
                 shipped: bool = False) -> None:
        self.config = config
        device_name = config.device
        if device_name.startswith("cuda:"):
            # Ray shows each worker only the GPU it assigned, as cuda:0.
            device_name = "cuda"
        self.device = resolve_device(device_name)
        self.restorer: Restorer | None = None
        if not shipped:
            self._load(load_model(model_path))

    def _load(self, generator: RRDBNet) -> None:
        config = self.config
        self.restorer = Restorer(generator, device=self.device, precision=config.precision,
                                 batch_size=config.batch_size, tile=config.tile,
                                 tile_overlap=config.tile_overlap, compile=config.compile,
                                 strength=config.strength)

    def restore(self, task: SegmentTask, model: list | None = None, progress=None,
                key: tuple = (), kill_once: str | None = None) -> SegmentResult:
        """Restore one segment into ``task.path``.

        Args:
            task: the segment.
            model: ``[ref]``, the generator's object-store reference (in a list, so Ray
                leaves fetching it to the worker, which does so only when it has no model).
            progress: the driver's ProgressBoard (a Ray actor handle), or None.
            key: the segment's name on the board.
            kill_once: test hook, see KILL_WORKER_ONCE_ENV.
        """
        if self.restorer is None:
            if not model:
                raise PipelineError("internal error: this worker was given no model")
            self._load(ray.get(model[0]))
        last_report = 0.0

        def on_progress(frames: int) -> None:
            nonlocal last_report
            if kill_once and _claim(kill_once):
                log.warning("test hook %s: killing this worker mid-segment", KILL_WORKER_ONCE_ENV)
                os._exit(1)
            now = time.monotonic()
            if progress is not None and now - last_report >= PROGRESS_REPORT_S:
                last_report = now
                progress.report.remote(key, frames)

        result = restore_segment(task, self.restorer, on_progress=on_progress)
        if progress is not None:
            progress.report.remote(key, result.frames)
        return result


def _claim(marker: str) -> bool:
    """True for exactly one caller across processes: the one that creates ``marker``."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


class ProgressBoard:
    """A tiny Ray actor where workers post frames done per segment; the driver reads the sum."""

    def __init__(self) -> None:
        self._done: dict[tuple, int] = {}

    def report(self, key: tuple, frames: int) -> None:
        self._done[key] = frames

    def forget(self, prefix: tuple) -> None:
        """Drop the counts of every segment whose key starts with ``prefix``."""
        for key in [k for k in self._done if k[:len(prefix)] == prefix]:
            del self._done[key]

    def total(self, prefix: tuple = ()) -> int:
        """Frames done by the segments whose key starts with ``prefix``."""
        return sum(n for k, n in self._done.items() if k[:len(prefix)] == prefix)


# --------------------------------------------------------------------------------------------
# The driver


@dataclass
class _Video:
    """The driver's state for one video in flight."""

    request: VideoRequest
    key: int                        # unique within a run
    info: VideoInfo
    segments: list[Segment]
    workdir: Path                   # hidden folder beside the output, for its segment files
    plan_seconds: float = 0.0       # time spent planning it
    generation: int = 0             # bumped when re-planned: older segments' results are stale
    results: dict[int, SegmentResult] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    started: float | None = None
    failed: bool = False

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments)


class WorkerPool:
    """Ray workers that restore segments of any number of videos.

    Args:
        config: model, device and encoder settings (one set for every video).
        parallel: worker count, cluster address, segmenting and retry settings.
        model: a generator to use instead of loading ``config.model``.

    Use as a context manager: it connects to Ray (starting a local instance when no address
    is given) and shuts down what it started.
    """

    def __init__(self, config: ProcessConfig = ProcessConfig(), *,
                 parallel: ParallelConfig = ParallelConfig(), model: RRDBNet | None = None) -> None:
        self.config = config
        self.parallel = parallel
        # Workers load a checkpoint file themselves (the path must be visible to them, as the
        # videos are): only a model given as an object travels through Ray.
        shipped: RRDBNet | Path | None = model
        if model is None:
            model = load_model(config.model)
            shipped = config.model.resolve() if config.model is not None else None
        self.context = model.config.in_frames // 2
        self._started_ray = connect(parallel.address,
                                    num_cpus=_local_cpus(parallel) if parallel.address is None else None)
        try:
            self.workers, gpus = _worker_count(parallel, config)
            self._actors = self._start_actors(shipped, gpus)
        except BaseException:
            self.close()
            raise

    def _start_actors(self, model: RRDBNet | Path | None, gpus: float) -> list:
        # Restarts are Ray's (a dead worker comes back, reloading the model); retries are the
        # driver's, so a segment can go to any free worker instead of waiting for that one.
        options = dict(num_cpus=self.parallel.cpus_per_worker, num_gpus=gpus,
                       max_restarts=self.parallel.max_attempts, max_task_retries=0)
        self._progress = ray.remote(ProgressBoard).options(num_cpus=0).remote()
        actor_class = ray.remote(SegmentWorker).options(**options)
        if isinstance(model, RRDBNet):
            self._model = [ray.put(model.cpu().eval())]
            actors = [actor_class.remote(self.config, shipped=True) for _ in range(self.workers)]
        else:
            self._model = None
            actors = [actor_class.remote(self.config, model) for _ in range(self.workers)]
        log.info("%d Ray worker(s), %g GPU each", len(actors), gpus)
        return actors

    def close(self) -> None:
        """Stop the workers, and Ray itself if this pool started it."""
        for actor in getattr(self, "_actors", []):
            ray.kill(actor, no_restart=True)
        self._actors = []
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, requests: Iterable[VideoRequest], *,
            on_outcome: Callable[[VideoOutcome], None] | None = None,
            stop_on_failure: bool = False, progress: bool = True,
            description: str = "", workers: int | None = None) -> list[VideoOutcome]:
        """Restore every requested video; one failing doesn't stop the others.

        Args:
            requests: the videos, planned lazily in this order.
            workers: use only this many of the pool's workers (None = all).
            on_outcome: called as each video finishes or fails (e.g. to record it).
            stop_on_failure: stop at the first failed video (one-video runs).
            progress: show one progress bar on stderr.
            description: the progress bar's label.
        Returns the outcomes in the order the videos finished.
        """
        actors = self._actors[:workers] if workers else self._actors
        run = _Run(self, actors, iter(requests), on_outcome, stop_on_failure, progress,
                   description)
        return run.execute()


def _local_cpus(parallel: ParallelConfig) -> int:
    # A local instance gets at least one CPU per worker even on a small machine: CPU workers
    # then share cores, which is slower but never waits forever for a CPU Ray doesn't have.
    wanted = max(1, parallel.workers) * parallel.cpus_per_worker
    return int(max(os.cpu_count() or 1, wanted))


def _worker_count(parallel: ParallelConfig, config: ProcessConfig) -> tuple[int, float]:
    """Workers to start and GPUs per worker, checked against what the cluster has."""
    resources = ray.cluster_resources()
    cluster_gpus = int(resources.get("GPU", 0))
    cluster_cpus = resources.get("CPU", 0)
    if parallel.gpus_per_worker is not None:
        gpus = parallel.gpus_per_worker
    else:
        gpus = 1.0 if cluster_gpus and config.device != "cpu" else 0.0
    if config.device.startswith("cuda") and cluster_gpus == 0:
        raise PipelineError(f"--device {config.device} asked for, but the Ray cluster has no GPUs")
    workers = parallel.workers or (cluster_gpus if gpus else 1) or 1
    if gpus and workers * gpus > cluster_gpus:
        raise PipelineError(f"{workers} workers with {gpus:g} GPU each need {workers * gpus:g} "
                            f"GPUs, but the Ray cluster has {cluster_gpus}")
    if workers * parallel.cpus_per_worker > cluster_cpus:
        raise PipelineError(f"{workers} workers with {parallel.cpus_per_worker:g} CPU each need "
                            f"{workers * parallel.cpus_per_worker:g} CPUs, but the Ray cluster "
                            f"has {cluster_cpus:g}")
    free = ray.available_resources()
    if (free.get("GPU", 0) < workers * gpus
            or free.get("CPU", 0) < workers * parallel.cpus_per_worker):
        log.warning("the Ray cluster has %g CPU(s) and %g GPU(s) free right now; some workers "
                    "will start only when other jobs release theirs",
                    free.get("CPU", 0), free.get("GPU", 0))
    return workers, gpus


_RETRYABLE = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
              ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)


def _segment_count(frames: int, workers: int, parallel: ParallelConfig,
                   requested: int | None) -> int:
    if requested is not None:
        return requested
    wanted = workers * parallel.segments_per_worker
    return max(1, min(wanted, frames // parallel.min_segment_frames))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Run:
    """One pass of the scheduling loop over a stream of videos."""

    def __init__(self, pool: WorkerPool, actors: list, requests: Iterator[VideoRequest],
                 on_outcome: Callable[[VideoOutcome], None] | None, stop_on_failure: bool,
                 progress: bool, description: str) -> None:
        self.pool = pool
        self.workers = len(actors)
        self.requests = requests
        self.on_outcome = on_outcome
        self.stop_on_failure = stop_on_failure
        self.queue: deque[tuple[_Video, Segment]] = deque()
        self.in_flight: dict = {}   # ObjectRef -> (actor, video, generation, segment)
        self.free = list(actors)
        self.deaths: dict = {}      # actor -> times it died
        self.videos: dict[int, _Video] = {}
        self.outcomes: list[VideoOutcome] = []
        self.run_id = uuid.uuid4().hex[:8]  # progress keys of pools shared by several runs
        self.next_key = 0
        self.exhausted = False
        self.stopping = False
        self.bar = tqdm(total=0, unit="frame", desc=description or None, disable=not progress,
                        file=sys.stderr, dynamic_ncols=True)

    def execute(self) -> list[VideoOutcome]:
        try:
            while not self.stopping:
                self._fill_queue()
                self._dispatch()
                if not self.in_flight:
                    if self.queue:
                        raise RunFailedError("every Ray worker died; nothing is left to run on")
                    if self.exhausted:
                        break
                    continue
                ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=PROGRESS_POLL_S)
                for ref in ready:
                    self._collect(ref)
                self._show_progress()
        finally:
            self.bar.close()
            self.pool._progress.forget.remote((self.run_id,))
            for video in list(self.videos.values()):
                shutil.rmtree(video.workdir, ignore_errors=True)
        return self.outcomes

    def _show_progress(self) -> None:
        if self.bar.disable:
            return
        done = ray.get(self.pool._progress.total.remote((self.run_id,)))
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
                                          status="failed", error=_one_line(exc), exception=exc))
                continue
            self.videos[video.key] = video
            self.queue.extend((video, segment) for segment in video.segments)
            self.bar.total += video.frames
            self.bar.refresh()

    def _plan(self, request: VideoRequest) -> _Video:
        pool = self.pool
        planning = time.perf_counter()
        input_path = Path(request.input).resolve()
        output = Path(request.output).resolve()
        info = probe(input_path)
        overwrite = pool.config.overwrite if request.overwrite is None else request.overwrite
        _check_output(input_path, output, overwrite)
        # Settings mistakes surface now, not in every segment.
        encoder = request.encoder or pool.config.encoder
        codec = choose_codec(encoder, info, output)
        choose_pix_fmt(codec, encoder, info)
        scan = scan_keyframes(info, accept_damaged=pool.config.accept_damaged)
        count = _segment_count(scan.frames, self.workers, pool.parallel, request.segments)
        if info.raw_stream and count > 1:
            log.warning("%s: a raw stream has no timestamps to seek by; one worker processes "
                        "it whole", input_path)
        segments = plan_segments(scan, count, context=pool.context)
        remove_dead_leftovers(output)
        workdir = segments_folder(output)
        workdir.mkdir()
        try:
            check_copyable(info, output, workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        video = _Video(request=dataclasses.replace(request, input=input_path, output=output,
                                                   encoder=encoder),
                       key=self.next_key, info=info, segments=segments, workdir=workdir,
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
            task = SegmentTask(
                input=video.request.input,
                segment=segment,
                path=video.workdir / (f"segment-{video.generation}-{segment.index:05d}"
                                      f"{video.request.output.suffix}"),
                output_name=video.request.output,
                encoder=video.request.encoder,
                decode_threads=self.pool.config.decode_threads,
                hwdec=self.pool.config.hwdec,
                accept_damaged=self.pool.config.accept_damaged,
            )
            video.attempts[segment.index] = video.attempts.get(segment.index, 0) + 1
            if video.started is None:
                video.started = time.perf_counter()
            key = (self.run_id, video.key, video.generation, segment.index)
            ref = actor.restore.remote(task, self.pool._model, self.pool._progress, key,
                                       os.environ.get(KILL_WORKER_ONCE_ENV))
            self.in_flight[ref] = (actor, video, video.generation, segment)

    def _collect(self, ref) -> None:
        actor, video, generation, segment = self.in_flight.pop(ref)
        stale = video.failed or generation != video.generation
        try:
            result: SegmentResult = ray.get(ref)
        except _RETRYABLE as exc:
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
        if stale:
            return
        video.results[segment.index] = result
        if len(video.results) == len(video.segments):
            self._finish(video)

    def _worker_died(self, actor) -> None:
        deaths = self.deaths[actor] = self.deaths.get(actor, 0) + 1
        if deaths <= self.pool.parallel.max_attempts:
            self.free.append(actor)  # Ray restarts it; calls to it wait until it is back
        else:
            log.warning("a Ray worker died %d times; not using it any more", deaths)

    def _retry(self, video: _Video, segment: Segment, exc: Exception) -> None:
        self.pool._progress.forget.remote((self.run_id, video.key, video.generation,
                                           segment.index))
        tries = video.attempts.get(segment.index, 0)
        if tries >= self.pool.parallel.max_attempts:
            self._fail(video, PipelineError(
                f"{video.request.input}: the worker restoring segment {segment.index} died "
                f"{tries} times ({_one_line(exc)})"))
            return
        log.warning("%s: the worker restoring segment %d died (%s); redoing the segment",
                    video.request.input, segment.index, _one_line(exc))
        self.queue.appendleft((video, segment))

    def _segment_failed(self, video: _Video, segment: Segment, error: BaseException) -> None:
        if isinstance(error, SegmentMismatch) and len(video.segments) > 1:
            log.warning("%s; processing this video as one segment instead", error)
            self.pool._progress.forget.remote((self.run_id, video.key, video.generation))
            video.generation += 1
            video.results.clear()
            video.attempts.clear()
            video.segments = [Segment(index=0, start_pts=None, end_pts=None, frames=video.frames)]
            # The old plan's segments still queued are dropped; running ones come back stale.
            self.queue = deque(item for item in self.queue if item[0] is not video)
            self.queue.appendleft((video, video.segments[0]))
            return
        self._fail(video, error)

    def _fail(self, video: _Video, error: BaseException) -> None:
        video.failed = True
        self.pool._progress.forget.remote((self.run_id, video.key))
        self.bar.total -= video.frames
        self.queue = deque(item for item in self.queue if item[0] is not video)
        self._close_video(video)
        self._record(VideoOutcome(input=video.request.input, output=video.request.output,
                                  status="failed", error=_one_line(error), exception=error,
                                  seconds=_elapsed(video)))

    def _finish(self, video: _Video) -> None:
        results = [video.results[s.index] for s in video.segments]
        output = video.request.output
        partial = partial_path(output)
        stitching = time.perf_counter()
        try:
            stitch(results, video.info, partial, output_name=output)
            os.replace(partial, output)
        except PipelineError as exc:
            video.failed = True
            self._close_video(video)
            self._record(VideoOutcome(input=video.request.input, output=output, status="failed",
                                      error=_one_line(exc), exception=exc,
                                      seconds=_elapsed(video)))
            return
        finally:
            partial.unlink(missing_ok=True)
        self._close_video(video)
        outcome = VideoOutcome(input=video.request.input, output=output, status="done",
                               frames=sum(r.frames for r in results), seconds=_elapsed(video),
                               segments=len(results), plan_seconds=video.plan_seconds,
                               stitch_seconds=time.perf_counter() - stitching,
                               codec=results[0].codec)
        log.info("%s: %d frames from %d segment(s) in %.1f s (%.2f fps) → %s", outcome.input,
                 outcome.frames, outcome.segments, outcome.seconds, outcome.fps, output)
        self._record(outcome)

    def _close_video(self, video: _Video) -> None:
        self.videos.pop(video.key, None)
        shutil.rmtree(video.workdir, ignore_errors=True)

    def _record(self, outcome: VideoOutcome) -> None:
        self.outcomes.append(outcome)
        if outcome.status == "failed" and self.stop_on_failure:
            self.stopping = True
            self.exhausted = True
        if self.on_outcome is not None:
            self.on_outcome(outcome)


def _elapsed(video: _Video) -> float:
    return time.perf_counter() - video.started if video.started is not None else 0.0


# --------------------------------------------------------------------------------------------
# Stitching


def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped with imageio-ffmpeg (no system ffmpeg needed)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


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
                raise PipelineError(f"internal error: segment {following.index} starts at or "
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
    options = dict(c="copy", copyts=None, map_metadata=1, map_chapters=-1)
    if output.suffix.lower().lstrip(".") in MOV_FAMILY:
        # As VideoWriter does: a non-zero start time is an edit list in the movie time scale,
        # exact only in the video's own.
        options["movie_timescale"] = info.time_base.denominator
    command = ffmpeg.output(*streams, str(output), **options).global_args(
        "-hide_banner", "-nostdin", "-loglevel", "error")
    _run_ffmpeg(command, f"{name.name}: joining the segments failed")
    return _check_stitched(results, info, output, name)


def check_copyable(info: VideoInfo, output: Path, workdir: Path) -> None:
    """Fail now, not after restoring, if the input's audio/subtitles can't go into ``output``'s
    container (e.g. SubRip subtitles into MP4): mux a moment of them into a scratch file."""
    if not info.copied_streams:
        return
    scratch = workdir / f"streams-check{output.suffix}"
    source = ffmpeg.input(str(info.path))
    command = ffmpeg.output(source["a?"], source["s?"], str(scratch), c="copy", t=0.1,
                            ).global_args("-hide_banner", "-nostdin", "-loglevel", "error")
    try:
        _run_ffmpeg(command, f"{output.name}: the input's audio/subtitle streams "
                             f"({', '.join(info.copied_streams)}) cannot be copied into this "
                             f"container; choose another output extension such as .mkv")
    finally:
        scratch.unlink(missing_ok=True)


def _run_ffmpeg(command, message: str) -> None:
    try:
        command.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as exc:
        lines = [line for line in exc.stderr.decode(errors="replace").splitlines() if line.strip()]
        detail = " / ".join(lines[-FFMPEG_ERROR_LINES:]) or "no message"
        raise PipelineError(f"{message} ({detail})") from exc


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
        raise PipelineError(f"{name.name}: the joined video has {len(pts)} frames, the "
                            f"segments {expected}")
    for found, wanted in ((min(pts), results[0].first_pts), (max(pts), results[-1].last_pts)):
        if found != _rescale(wanted, info.time_base, out_tb):
            raise PipelineError(f"{name.name}: the joined video's timestamps are shifted "
                                f"({found} vs {wanted} expected)")
    return len(pts)


def _rescale(value: int, source: Fraction, target: Fraction) -> int:
    """av_rescale_q's round-to-nearest (halves away from zero)."""
    exact = Fraction(value) * Fraction(source) / Fraction(target)
    return int(exact + Fraction(1, 2)) if exact >= 0 else -int(-exact + Fraction(1, 2))


# --------------------------------------------------------------------------------------------
# One video


def process_video_parallel(input_path: str | os.PathLike, output: str | os.PathLike | None = None,
                           *, config: ProcessConfig = ProcessConfig(),
                           parallel: ParallelConfig = ParallelConfig(),
                           model: RRDBNet | None = None,
                           pool: WorkerPool | None = None) -> ProcessResult:
    """Deblur one video on Ray workers, split into at least one segment per worker.

    Args:
        input_path: the video to deblur.
        output: where to write; default ``<stem>.deblurred<ext>`` beside the input.
        config: model, device and encoder settings.
        parallel: workers, cluster address and retries.
        model: a generator to use instead of loading ``config.model``.
        pool: an existing WorkerPool to run on: its workers' model, device and precision
            are used (``config`` still gives the encoder, overwrite and progress settings),
            and ``parallel.workers``, if set, limits how many of its workers this video takes.
    Returns a ProcessResult. Raises PipelineError if the video fails, leaving no output.
    """
    input_path = Path(input_path)
    output = Path(output) if output is not None else default_output_path(input_path)
    started = time.perf_counter()
    # Input and output mistakes surface before Ray and the workers start.
    probe(input_path)
    _check_output(input_path, output, config.overwrite)
    own_pool = pool is None
    if own_pool:
        pool = WorkerPool(config, parallel=parallel, model=model)
    try:
        workers = min(parallel.workers or pool.workers, pool.workers)
        # One video on N workers gets N or more segments, however short it is.
        request = VideoRequest(input_path, output,
                               segments=workers * pool.parallel.segments_per_worker,
                               overwrite=config.overwrite, encoder=config.encoder)
        outcomes = pool.run([request], stop_on_failure=True, progress=config.progress,
                            description=input_path.name, workers=workers)
    finally:
        if own_pool:
            pool.close()
    outcome = outcomes[0]
    if outcome.status != "done":
        error = outcome.exception
        if isinstance(error, BaseException):
            raise error
        raise RunFailedError(outcome.error or f"{input_path}: failed")
    return ProcessResult(output=outcome.output, frames=outcome.frames,
                         seconds=time.perf_counter() - started, codec=outcome.codec)
