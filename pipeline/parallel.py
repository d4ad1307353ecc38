"""Deblurring videos on a pool of Ray workers: one long video split across GPUs, or many videos.

Each worker is a Ray actor that loads the model once (``num_gpus=1`` on GPU clusters) and then
restores segments (see :mod:`pipeline.segments`): ranges of frames cut at keyframes, each
written to a segment file of its own next to the output. Only file paths and small results
travel through Ray, never frames. The rooms of this wing:

- :mod:`pipeline.cluster`: ParallelConfig, connecting to Ray, sizing the workers;
- :mod:`pipeline.worker`: the actors (segment worker, progress board);
- :mod:`pipeline.scheduler`: the driver's loop (plan, dispatch, retry, fall back, stitch);
- :mod:`pipeline.stitch`: joining segments with FFmpeg's concat demuxer and ``-c copy``,
  the input's audio and subtitles muxed untouched, the result checked before it is renamed
  into place (an output file exists only once it is complete);
- here: the pool (WorkerPool) and the one-video entry point.

The input and output paths must be visible to every worker (shared storage on a cluster).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import ray

from models.registry import Generator
from pipeline.cluster import ParallelConfig, connect, local_cpus, worker_count
from pipeline.config import ProcessConfig
from pipeline.errors import PipelineError, RunFailedError
from pipeline.outputs import check_output
from pipeline.process import ProcessResult, default_output_path
from pipeline.restorer import load_model
from pipeline.resume import model_fingerprint
from pipeline.scheduler import Run, VideoOutcome, VideoRequest
from pipeline.video_reader import probe
from pipeline.worker import ProgressBoard, SegmentWorker

log = logging.getLogger(__name__)


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
                 parallel: ParallelConfig = ParallelConfig(), model: Generator | None = None) -> None:
        self.config = config
        self.parallel = parallel
        # Workers load a checkpoint file themselves (the path must be visible to them, as the
        # videos are): only a model given as an object travels through Ray.
        shipped: Generator | Path | None = model
        if model is None:
            model = load_model(config.model)
            shipped = config.model.resolve() if config.model is not None else None
        self.context = model.config.in_frames // 2
        self.model_key = model_fingerprint(model)  # names the resume folders of its videos
        self._started_ray = connect(parallel.address, num_cpus=None if parallel.address else
                                    local_cpus(parallel.workers, parallel.cpus_per_worker))
        try:
            self.workers, gpus = worker_count(parallel.workers, parallel.cpus_per_worker,
                                              parallel.gpus_per_worker, config.device)
            self._actors = self._start_actors(shipped, gpus)
            self.device_kind = "cuda" if gpus else "cpu"
        except BaseException:
            self.close()
            raise

    def _start_actors(self, model: Generator | Path | None, gpus: float) -> list:
        # Restarts are Ray's (a dead worker comes back, reloading the model); retries are the
        # driver's, so a segment can go to any free worker instead of waiting for that one.
        options = dict(num_cpus=self.parallel.cpus_per_worker, num_gpus=gpus,
                       max_restarts=self.parallel.max_attempts, max_task_retries=0)
        self.progress_board = ray.remote(ProgressBoard).options(num_cpus=0).remote()
        actor_class = ray.remote(SegmentWorker).options(**options)
        if model is not None and not isinstance(model, Path):
            self.model_ref = [ray.put(model.cpu().eval())]
            actors = [actor_class.remote(self.config, shipped=True) for _ in range(self.workers)]
        else:
            self.model_ref = None
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
        run = Run(self, actors, iter(requests), on_outcome, stop_on_failure, progress,
                   description)
        return run.execute()



def process_video_parallel(input_path: str | os.PathLike, output: str | os.PathLike | None = None,
                           *, config: ProcessConfig = ProcessConfig(),
                           parallel: ParallelConfig = ParallelConfig(),
                           model: Generator | None = None,
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
    # Input, output and settings mistakes surface before Ray and the workers start.
    if config.compare is not None:
        raise PipelineError("--compare works with one worker (leave out --workers/--address)")
    probe(input_path)
    check_output(input_path, output, config.overwrite)
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
    # The name as given (relative or not), as a run in this process reports it.
    return ProcessResult(output=output, frames=outcome.frames,
                         seconds=time.perf_counter() - started, codec=outcome.codec)
