"""Ray: how work is spread (ParallelConfig), connecting to a cluster (or starting a private local
one), and sizing the workers to what it has. Imports nothing heavy, so commands that only need Ray (building pairs) don't load
the model's libraries.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import ray

from pipeline.errors import PipelineError
from unsmear.cli_conventions import RELOGGED, interrupt_on_sigterm

log = logging.getLogger(__name__)

# A new, private Ray instance on this machine (ray.init(address=None) would instead join the
# last cluster `ray start` left behind, perhaps someone else's).
LOCAL_RAY = "local"
# Whether the Ray this process started forwards its workers' output (then log_again is silent).
_forwarding = {"ray": False}
# Failures that mean the worker (process or node) died, not that its task raised.
WORKER_DIED = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
               ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)


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


def connect(address: str | None, *, num_cpus: int | None = None) -> bool:
    """Make sure this process is connected to Ray. Returns True if it started Ray itself
    (the caller then shuts it down); an existing connection is used as it is."""
    if ray.is_initialized():
        return False
    # Ray's own notices (token authentication, ...) and its forwarding of the workers' output
    # (coloured, drawn over the progress bar) only with -v; the workers' warnings come back
    # with their results instead (collected_warnings, log_again).
    verbose = logging.getLogger().getEffectiveLevel() <= logging.INFO
    options = dict(logging_level=logging.INFO if verbose else logging.ERROR,
                   log_to_driver=verbose)
    _forwarding["ray"] = verbose
    try:
        if address is None:
            ray.init(address=LOCAL_RAY, num_cpus=num_cpus, include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # Ray >= 2.5x clusters started where a token exists require it, and a driver given an
        # explicit address only sends one when told to.
        hint = (" (is `ray start --head` running there? with token authentication, set "
                "RAY_AUTH_MODE=token and the head's token in RAY_AUTH_TOKEN or ~/.ray/auth_token)"
                if address else "")
        raise PipelineError(f"cannot connect to {where}{hint}: {reason}") from exc
    # Ray's core worker installs its own SIGTERM handler in this process (a crash dump and
    # exit 1): a plain `kill` or a scheduler stopping the run must end it as Ctrl-C does.
    interrupt_on_sigterm()
    return True



@contextmanager
def collected_warnings() -> Iterator[list[tuple[str, str]]]:
    """In a worker: the warnings logged in this process meanwhile, as (logger, message), for
    the driver to log with :func:`log_again` (Ray doesn't forward the workers' output)."""
    collected: list[tuple[str, str]] = []

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append((record.name, record.getMessage()))

    handler = Collector(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield collected
    finally:
        root.removeHandler(handler)


def log_again(warnings: Iterable[tuple[str, str]]) -> None:
    """In the driver: log a worker's collected warnings under their own loggers' names (not
    when this process started Ray forwarding the workers' output itself: -v)."""
    if _forwarding["ray"]:
        return
    for name, message in warnings:
        logging.getLogger(name).warning("%s", message, extra={RELOGGED: True})


def local_cpus(workers: int, cpus_per_worker: float) -> int:
    """CPUs for a local Ray instance: at least one per worker even on a small machine (CPU
    workers then share cores, which is slower but never waits forever for a CPU Ray doesn't
    have)."""
    wanted = max(1, workers) * cpus_per_worker
    return int(max(os.cpu_count() or 1, wanted))


def worker_count(workers: int, cpus_per_worker: float, gpus_per_worker: float | None,
                 device: str) -> tuple[int, float]:
    """Workers to start and GPUs per worker, checked against what the cluster has.

    Args:
        workers: wanted; 0 = one per GPU the cluster has (1 without GPUs).
        cpus_per_worker: Ray CPUs each reserves.
        gpus_per_worker: GPUs each reserves; None = 1 when the cluster has GPUs and ``device``
            is not the CPU.
        device: the run's device setting (auto, cpu, cuda, cuda:N).
    """
    resources = ray.cluster_resources()
    cluster_gpus = int(resources.get("GPU", 0))
    cluster_cpus = resources.get("CPU", 0)
    if gpus_per_worker is not None:
        gpus = gpus_per_worker
    else:
        gpus = 1.0 if cluster_gpus and device != "cpu" else 0.0
    if device.startswith("cuda") and cluster_gpus == 0:
        raise PipelineError(f"--device {device} asked for, but the Ray cluster has no GPUs")
    workers = workers or (cluster_gpus if gpus else 1) or 1
    if gpus and workers * gpus > cluster_gpus:
        raise PipelineError(f"{workers} workers with {gpus:g} GPU each need {workers * gpus:g} "
                            f"GPUs, but the Ray cluster has {cluster_gpus}")
    if workers * cpus_per_worker > cluster_cpus:
        raise PipelineError(f"{workers} workers with {cpus_per_worker:g} CPU each need "
                            f"{workers * cpus_per_worker:g} CPUs, but the Ray cluster "
                            f"has {cluster_cpus:g}")
    free = ray.available_resources()
    if free.get("GPU", 0) < workers * gpus or free.get("CPU", 0) < workers * cpus_per_worker:
        log.warning("the Ray cluster has %g CPU(s) and %g GPU(s) free right now; some workers "
                    "will start only when other jobs release theirs",
                    free.get("CPU", 0), free.get("GPU", 0))
    return workers, gpus
