"""The Ray actors of a worker pool: the segment worker (loads the model once, restores segments
on its device) and the progress board the driver reads.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import ray

from models.registry import Generator
from pipeline.cluster import collected_warnings
from pipeline.config import ProcessConfig
from pipeline.errors import PipelineError
from pipeline.restorer import Restorer, load_model, make_restorer, resolve_device
from pipeline.segments import SegmentResult, SegmentTask, restore_segment

log = logging.getLogger(__name__)

# Workers report progress at most this often (seconds): one small Ray call each time.
PROGRESS_REPORT_S = 0.5
# Test hook, read by the driver: when this environment variable names a file that does not
# exist yet, the first worker to restore a batch creates it and kills its own process
# mid-segment, as a crash would.
KILL_WORKER_ONCE_ENV = "UNSMEAR_TEST_KILL_WORKER_ONCE"


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
        if self.device.type == "cpu" and config.cpu_threads == -1 and ray.is_initialized():
            # The cores Ray gave this worker, not the machine's: workers share the machine.
            assigned = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
            config = self.config = dataclasses.replace(config, cpu_threads=max(1, int(assigned)))
        self.restorer: Restorer | None = None
        if not shipped:
            self._load(load_model(model_path))

    def _load(self, generator: Generator) -> None:
        self.restorer = make_restorer(self.config, generator, device=self.device)

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

        with collected_warnings() as warnings:
            result = restore_segment(task, self.restorer, on_progress=on_progress)
        if progress is not None:
            progress.report.remote(key, result.frames)
        return dataclasses.replace(result, warnings=tuple(warnings))


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

