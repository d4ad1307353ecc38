"""Building training pairs from a folder of footage: one Ray task per source, resumably.

Each source (a video or a folder of numbered frames) is built by
:func:`dataset_builder.build.build_source` in its own Ray task, which is idempotent: the
builder marks a source finished only when its records are written, and resumes an unfinished
one. Ray re-runs a task whose worker died; a source that fails (corrupt, too short) is
reported and the others go on. The manifest is rewritten from every finished source at the
end, so it never depends on the order in which tasks finished.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import ray
from tqdm import tqdm

from dataset_builder.build import already_built, assign_split, build_settings, build_source
from dataset_builder.config import BuildConfig
from dataset_builder.errors import BuildError
from dataset_builder.manifest import ensure_build_record, write_manifest
from dataset_builder.response import load_response
from dataset_builder.sources import find_sources, source_name
from jobs import ledger as states
from jobs.errors import JobError
from jobs.folder import FolderConfig, matches_patterns
from jobs.ledger import LEDGER_NAME, Ledger, folder_lock
from jobs.report import DONE, FAILED, REPORT_NAME, SKIPPED, Report, Row, rows_in_order
from jobs.settings import fingerprint
from pipeline.cluster import ParallelConfig, collected_warnings, connect, log_again
from unsmear.errors import one_line

log = logging.getLogger(__name__)

# How often the driver wakes up to refresh the progress bar (seconds).
POLL_S = 0.5
# The builder's message for sources shorter than the window (kept as "skipped" with --skip-short).
TOO_SHORT = "too few"


def _build_one(source: Path, out: Path, config: BuildConfig, split: str, name: str
               ) -> tuple[int, float, list[tuple[str, str]]]:
    """One source, in a Ray worker: (pairs written, seconds, warnings logged)."""
    started = time.perf_counter()
    with collected_warnings() as warnings:
        records = build_source(source, out, config, split, name=name, progress=False)
    return len(records), time.perf_counter() - started, warnings


def ensure_pairs_folder(pairs: Path, config: BuildConfig) -> None:
    """Create PAIRS/build.json (or check it matches) before the job writes its own files there.

    The builder refuses a non-empty folder without build.json, so it must exist before the
    ledger does.
    """
    ensure_build_record(pairs, build_settings(config, load_response(config.response)))


def build_pairs_folder(footage: str | Path, pairs: str | Path, config: BuildConfig = BuildConfig(),
                       *, parallel: ParallelConfig = ParallelConfig(),
                       folder: FolderConfig = FolderConfig(), progress: bool = True) -> Report:
    """Build pairs from every source under ``footage`` into ``pairs``, one Ray task each.

    Args:
        footage: a folder of videos and/or frame folders (searched recursively).
        pairs: the output folder (the builder's layout, plus the ledger and report).
        config: the builder's settings.
        parallel: cluster address, worker count (tasks in flight), CPUs per task, retries.
        folder: file patterns and report path.
        progress: show a progress bar on stderr.
    Returns the Report (also written as JSON). JobError for bad folders or settings.
    """
    started = time.perf_counter()
    footage, pairs = Path(footage).resolve(), Path(pairs).resolve()
    if footage.is_dir() and (pairs == footage or footage in pairs.parents):
        raise JobError(f"PAIRS_DIR ({pairs}) is inside FOOTAGE_DIR ({footage}): its pairs "
                       f"would be read back as footage; choose an output folder elsewhere")
    try:
        sources = find_sources(footage)
        named = _names(footage, sources, folder.patterns)
        ensure_pairs_folder(pairs, config)
    except BuildError as exc:
        raise JobError(str(exc)) from exc
    with folder_lock(pairs):
        ledger = Ledger(pairs / LEDGER_NAME)
        settings = fingerprint({"command": "build-pairs", **config.output_fields()})
        rows: dict[str, Row] = {}
        todo = []
        for item, source, name in named:
            try:
                built = already_built(pairs, name, source)
            except BuildError as exc:  # another source's pairs hold its name
                rows[item] = Row(item=item, output=name, status=FAILED, error=str(exc))
                continue
            if built:
                entry = ledger.latest(item)
                rows[item] = Row(item=item, output=name, status=SKIPPED,
                                 frames=entry.frames if entry else 0,
                                 seconds=entry.seconds if entry else 0.0)
            else:
                todo.append((item, source, name))
        log.info("%d source(s), %d already built, %d to build", len(named), len(named) - len(todo),
                 len(todo))
        if todo:
            _run_tasks(todo, pairs, config, parallel, ledger, settings, rows, progress)
        if any(row.status in (DONE, SKIPPED) for row in rows.values()):
            write_manifest(pairs)
        report = Report(command="build-pairs", rows=rows_in_order(list(rows.values())),
                        seconds=time.perf_counter() - started)
        report.write(folder.report or pairs / REPORT_NAME)
        return report


def _names(footage: Path, sources: list[Path], patterns: tuple[str, ...]
           ) -> list[tuple[str, Path, str]]:
    """(item, source, name) for the sources matching ``patterns``; names must be unique."""
    named = []
    seen: dict[str, Path] = {}
    root = footage if footage.is_dir() else None
    for source in sources:
        rel = source.resolve().relative_to(footage) if root else Path(source.name)
        if patterns and not matches_patterns(rel, patterns):
            continue
        name = source_name(source, root)
        if name in seen:
            raise BuildError(f"{seen[name]} and {source} would both be named {name!r}; "
                             f"rename one")
        seen[name] = source
        named.append((rel.as_posix(), source.resolve(), name))
    if not named:
        raise BuildError(f"no sources matching {' '.join(patterns)} under {footage}")
    return named


def _run_tasks(todo, pairs: Path, config: BuildConfig, parallel: ParallelConfig, ledger: Ledger,
               settings: str, rows: dict[str, Row], progress: bool) -> None:
    started_ray = connect(parallel.address)
    try:
        task = ray.remote(_build_one).options(num_cpus=parallel.cpus_per_worker,
                                             max_retries=parallel.max_attempts - 1,
                                             retry_exceptions=False)
        limit = parallel.workers or len(todo)
        waiting = list(todo)
        in_flight: dict = {}
        with tqdm(total=len(todo), unit="source", desc="build-pairs", disable=not progress,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            while waiting or in_flight:
                while waiting and len(in_flight) < limit:
                    item, source, name = waiting.pop(0)
                    ledger.record(item, states.RUNNING, settings, source)
                    ref = task.remote(source, pairs, config, assign_split(name, config), name)
                    in_flight[ref] = (item, source, name)
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    item, source, name = in_flight.pop(ref)
                    rows[item] = _outcome(ref, item, source, name, config, ledger, settings)
                    bar.update(1)
    finally:
        if started_ray:
            ray.shutdown()


def _outcome(ref, item: str, source: Path, name: str, config: BuildConfig, ledger: Ledger,
             settings: str) -> Row:
    try:
        count, seconds, warnings = ray.get(ref)
        log_again(warnings)
    except ray.exceptions.RayTaskError as exc:
        error = exc.cause if exc.cause is not None else exc
        message = one_line(error)
        status = SKIPPED if (config.skip_short and TOO_SHORT in message) else FAILED
    except ray.exceptions.RayError as exc:  # the worker died more often than retries allow
        message, status = f"worker died: {one_line(exc)}", FAILED
    else:
        ledger.record(item, states.DONE, settings, source, frames=count, seconds=seconds)
        return Row(item=item, output=name, status=DONE, frames=count, seconds=seconds)
    ledger.record(item, states.FAILED, settings, source, error=message)
    if status == FAILED:
        log.warning("%s: %s", item, message)  # builder messages name the source, not the path
    return Row(item=item, output=name, status=status, error=message)
