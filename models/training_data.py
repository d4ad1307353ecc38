"""Where every training step's batch comes from: stored pairs, samples made on the fly, or both
mixed in each batch, made ahead of the step by loader workers so the network never waits.

* Stored pairs (:class:`models.data.PairsDataset`): random crops, flips and rotations.
* On the fly (:class:`models.synthetic.SyntheticPairs`): rendered by ``render_workers``
  processes on the CPU; on CUDA the workers only plan them and the device renders, unless the
  generator takes motion (the flow is estimated on the CPU, so the workers render there too).
* Reuse (``synthetic.reuse`` > 1): rendering a video sample (several blurred frames and
  their flows) costs more than the step that learns from it, so each rendered sample may
  serve several steps from a pool of the newest ``synthetic.pool`` samples, each time in one
  of its 16 symmetric variants (8 rotations/reflections of the square, time forwards or
  backwards), which are as physical as the original.
* Motion: for generators that take it, the flow to the neighbours is estimated from the
  blurred frames of every sample (:class:`models.motion.MotionEstimator`), as the pipeline
  does on video.

Every batch is a pure function of (seed, step): which samples, their augmentation and their
pool draws never depend on worker count, timing or a resume.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from models.data import PairsDataset
from models.generator import GeneratorConfig
from models.motion import MotionEstimator, add_motion
from models.symmetry import symmetric_variant
from models.synthetic import SamplePlan, SyntheticPairs

logger = logging.getLogger(__name__)

_POOL_TAG = 13  # mixed into each step's pool-draw seed
_MAX_RENDER_WORKERS = 8


class WithMotion(Dataset):
    """A pairs dataset whose samples carry their flow (:func:`add_motion`)."""

    def __init__(self, pairs: Dataset, generator: GeneratorConfig) -> None:
        self.pairs, self.generator = pairs, generator
        self._estimator: MotionEstimator | None = None  # made in the process that uses it

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if self._estimator is None:
            self._estimator = MotionEstimator.for_generator(self.generator)
        return add_motion(self.pairs[index], self._estimator)

    @property
    def cached(self) -> bool:
        return bool(getattr(self.pairs, "cached", False))


class _RenderedChunks(Dataset):
    """Item i: the on-the-fly samples numbered [i*size, (i+1)*size), rendered (with their
    flow when ``motion``), or only planned (``plan_only``: the device renders them)."""

    def __init__(self, pairs: SyntheticPairs, size: int, *, plan_only: bool,
                 motion: GeneratorConfig | None) -> None:
        self.pairs, self.size, self.plan_only, self.motion = pairs, size, plan_only, motion
        self._estimator: MotionEstimator | None = None

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, chunk: int) -> dict[str, Tensor] | list[SamplePlan]:
        numbers = range(chunk * self.size, (chunk + 1) * self.size)
        if self.plan_only:
            return [self.pairs.plan(n) for n in numbers]
        if not self.motion:
            return self.pairs.batch(numbers)
        if self._estimator is None:
            self._estimator = MotionEstimator.for_generator(self.motion)
        samples = [add_motion(self.pairs.sample(n), self._estimator) for n in numbers]
        return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # a loader worker shares the cores with the training process


def _worker_context(workers: int) -> multiprocessing.context.BaseContext | None:
    """How loader workers start: from a fork server, never by forking this process.

    A fork copies this process as it is, the locks its other threads hold at that moment
    included (the step's part threads, a progress bar's monitor, the other loader's queue
    feeder); a worker that then needs one of them waits forever: a render worker hung so on
    a futex in CI. The server is a fresh single-threaded process that imports torch and this
    module once, so each worker forked from it starts clean and in a fraction of a second.
    """
    if not workers:
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", __name__])  # no effect once the server runs
    return context


# Idle render-worker cores that earn the network an extra thread: with each sample used once
# (workers busy ~57 %) an extra thread made the step 20 % slower on 2 cores, at ~30 % busy 3-8 %
# faster; measurement noise must not tip the first case over.
_IDLE_FOR_A_THREAD = 2 / 3


def split_cores(render_seconds: float, step_seconds: float, cores: int) -> tuple[int, int]:
    """(render workers, network threads) that keep both busy on ``cores`` cores.

    Args:
        render_seconds: one core's time to make one step's on-the-fly samples.
        step_seconds: one core's time for one training step.
        cores: the cores the run may use.

    The cores are shared in proportion to the work, at least one each: on 2 cores one
    worker renders while the network runs on the other; on 32, ~13 render for a network
    whose step costs 1.5x the rendering. With one core, the step renders its own batch.
    Where the workers would idle two thirds of a core or more (cheap rendering, or samples reused),
    the network gets one thread more: on 2 cores with each sample serving 2 steps, 0.195-0.205 s
    per step instead of 0.212 (docs/benchmarks.md).
    """
    if cores < 2:
        return 0, 1
    share = render_seconds / max(render_seconds + step_seconds, 1e-9)
    workers = min(cores - 1, _MAX_RENDER_WORKERS, max(1, round(cores * share)))
    threads = cores - workers
    idle = workers - render_seconds / max(step_seconds / threads, 1e-9)
    return workers, threads + (idle >= _IDLE_FOR_A_THREAD)


class TrainingBatches:
    """The batch of every training step, made ahead of it.

    Args:
        stored: stored training pairs (augmented by sample number), or None.
        stored_per_batch: samples of each batch taken from ``stored``.
        synthetic: on-the-fly training pairs, or None.
        synthetic_per_batch: samples of each batch made on the fly (consecutive pairs when
            ``synthetic.consecutive``: each adds two samples to the batch, adjacent).
        generator: the generator's config (frames, motion).
        device: where batches go.
        steps: the run's last step (loaders stop there).
        seed: the run's seed (pool draws).
        reuse: steps each rendered sample serves on average (1: each sample once, in order).
        pool: rendered samples kept for reuse.
        render_workers: processes rendering on-the-fly samples (0: in the training process).
        stored_workers: DataLoader workers for stored pairs.
    """

    def __init__(self, *, stored: Dataset | None, stored_per_batch: int, synthetic: SyntheticPairs | None,
                 synthetic_per_batch: int, generator: GeneratorConfig, device: torch.device, steps: int,
                 seed: int, reuse: float, pool: int, render_workers: int, stored_workers: int) -> None:
        self.stored, self.stored_per_batch = stored, stored_per_batch
        self.synthetic, self.synthetic_per_batch = synthetic, synthetic_per_batch
        self.generator, self.device, self.steps, self.seed = generator, device, steps, seed
        self.render_workers, self.stored_workers = render_workers, stored_workers
        self.motion = generator.motion != "none"
        # Consecutive pairs (the temporal term): each on-the-fly sample is two, adjacent in the batch.
        self.consecutive = bool(getattr(synthetic, "consecutive", False))
        self.reuse = reuse
        # Each step renders `chunk` new samples; the pool holds the newest `pool_chunks` chunks.
        self.chunk = synthetic_per_batch if reuse <= 1 else max(1, round(synthetic_per_batch / reuse))
        self.pool_chunks = 1 if reuse <= 1 else max(1, pool // self.chunk)
        self._iterators: list = []  # the loaders' iterators, whose workers' CPU time counts

    def cpu_seconds(self) -> float:
        """CPU time of this process and of the loader workers now running (Linux: /proc)."""
        total = time.process_time()
        for iterator in self._iterators:
            for worker in getattr(iterator, "_workers", ()):
                total += _process_cpu_seconds(worker.pid)
        return total

    def chunks(self, first: int) -> DataLoader:
        """Rendered chunks from chunk ``first`` on, in order."""
        on_cuda = self.device.type == "cuda"
        dataset = _RenderedChunks(self.synthetic, self.chunk, plan_only=on_cuda and not self.motion,
                                  motion=self.generator if self.motion else None)
        workers = self.render_workers
        return DataLoader(dataset, batch_size=None, sampler=range(first, self.steps), num_workers=workers,
                          worker_init_fn=_one_thread, persistent_workers=False,
                          prefetch_factor=4 if workers else None, multiprocessing_context=_worker_context(workers))

    def _stored_loader(self, start: int) -> DataLoader:
        # Sample numbers, not pair indices: step s always sees the same samples.
        samples = range(start * self.stored_per_batch, self.steps * self.stored_per_batch)
        return DataLoader(self.stored, batch_size=self.stored_per_batch, sampler=samples,
                          num_workers=self.stored_workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=False, multiprocessing_context=_worker_context(self.stored_workers))

    def _made(self, start: int) -> Iterator[dict[str, Tensor]]:
        """One step's on-the-fly samples per step from ``start`` on."""
        first = max(0, start - self.pool_chunks + 1)
        chunks = iter(self.chunks(first))
        self._iterators.append(chunks)
        pool: deque[dict[str, Tensor]] = deque(maxlen=self.pool_chunks)
        for chunk_index in range(first, self.steps):
            chunk = next(chunks)
            if isinstance(chunk, list):  # plans: render on the device
                chunk = self.synthetic.batch(chunk)
            if self.reuse <= 1:
                yield chunk
                continue
            pool.append(chunk)
            if chunk_index < start:
                continue  # refilling the pool a resumed run had
            yield self._draw(pool, chunk_index)

    def _draw(self, pool: deque[dict[str, Tensor]], step: int) -> dict[str, Tensor]:
        """``synthetic_per_batch`` samples of the pool, each in a random symmetric variant."""
        rng = np.random.default_rng([self.seed, _POOL_TAG, step])
        picks = rng.integers(len(pool) * self.chunk, size=self.synthetic_per_batch)
        variants = rng.integers(16 if self.generator.in_frames > 1 else 8, size=self.synthetic_per_batch)
        samples = []
        for pick, variant in zip(picks, variants):
            chunk = pool[pick // self.chunk]
            sample = {key: value[pick % self.chunk] for key, value in chunk.items()}
            sample = symmetric_variant(sample, int(variant), self.generator.in_frames)
            if self.consecutive and variant & 8:  # backwards, the later sample comes first
                sample = {key: value.flip(0) for key, value in sample.items()}
            samples.append(sample)
        return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}

    def __call__(self, start: int) -> Iterator[dict[str, Tensor]]:
        """{"blurry", "sharp"[, "motion"]} on the device, one batch per step from ``start`` on."""
        stored = iter(self._stored_loader(start)) if self.stored is not None and self.stored_per_batch else None
        if stored is not None:
            self._iterators.append(stored)
        made = self._made(start) if self.synthetic is not None and self.synthetic_per_batch else None
        for _ in range(start, self.steps):
            parts = []
            if stored is not None:
                parts.append(next(stored))
            if made is not None:
                parts.append(next(made))
            if self.consecutive:  # (pairs, 2, ...) -> (2 * pairs, ...): [a0, b0, a1, b1, ...]
                parts[-1] = {key: value.flatten(0, 1) for key, value in parts[-1].items()}
            yield {key: torch.cat([p[key] for p in parts]).to(self.device, non_blocking=True)
                   for key in parts[0]}


def _process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a live process, 0 where /proc can't tell."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # Fields 14 and 15 of proc(5) (utime, stime), counted after the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stored_workers(requested: int, dataset: PairsDataset | WithMotion | None) -> int:
    """DataLoader workers for stored pairs: as requested, or (-1) none when the pairs are
    cached in memory, else up to 8 (cores - 1)."""
    if requested >= 0:
        return requested
    if dataset is None or dataset.cached:
        return 0
    return min(8, max(0, (os.cpu_count() or 1) - 1))
