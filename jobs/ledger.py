"""The ledger: one JSON line per state change of each item of a folder job, appended.

Appending one line per event survives interruption: a run killed mid-write leaves at most one
torn last line, which is ignored. The latest line for an item is its state. An item counts as
done only if its latest line says so *for the same settings* and the same input (size and
modification time), so re-running a command skips exactly what it finished before and redoes
the rest (failed, interrupted, never started, or changed since).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from jobs.errors import JobError

log = logging.getLogger(__name__)

# The ledger's file name in a job's output folder.
LEDGER_NAME = "unsmear-jobs.jsonl"
# Held (flock) by the job writing into a folder; the kernel releases it when the job dies.
LOCK_NAME = ".unsmear-jobs.lock"
RUNNING = "running"
DONE = "done"
FAILED = "failed"


@dataclass(frozen=True)
class Entry:
    """The latest state of one item (a video, or a footage source)."""

    item: str                    # path relative to the job's input folder, POSIX style
    status: str                  # running, done or failed
    settings: str                # fingerprint of the settings that produced it
    input_size: int              # bytes of the input when it was processed
    input_mtime_ns: int          # its modification time then
    frames: int = 0              # frames written (videos) or pairs written (footage)
    seconds: float = 0.0         # wall time spent on it
    error: str | None = None     # one line, for failed items
    time: float = 0.0            # when this line was written (Unix time)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder`` for this job: a second job into the same folder would remove the
    first's working files and interleave its ledger, so it fails with a clear error instead."""
    path = Path(folder) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise JobError(f"{folder}: another unsmear job (pid {owner}) is writing into this "
                           f"folder; wait for it to end or choose another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class Ledger:
    """An append-only JSON-lines file of :class:`Entry` records.

    Args:
        path: the ledger file (created with its folder on first write).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._latest: dict[str, Entry] = dict(self._read())

    def _read(self) -> Iterator[tuple[str, Entry]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    entry = Entry(**json.loads(line))
                except (json.JSONDecodeError, TypeError) as exc:
                    # A torn last line from an interrupted run; anything it said is redone.
                    log.warning("%s:%d: unreadable ledger line ignored (%s)", self.path, number, exc)
                    continue
                yield entry.item, entry

    def latest(self, item: str) -> Entry | None:
        return self._latest.get(item)

    def is_done(self, item: str, settings: str, source: Path, output: Path | None) -> bool:
        """Whether ``item`` was finished with these settings from this very input (and its
        output, when it has a single file, still exists)."""
        entry = self._latest.get(item)
        if entry is None or entry.status != DONE or entry.settings != settings:
            return False
        stat = _stat(source)
        if stat != (entry.input_size, entry.input_mtime_ns):
            return False
        return output is None or output.exists()

    def record(self, item: str, status: str, settings: str, source: Path, *, frames: int = 0,
               seconds: float = 0.0, error: str | None = None) -> Entry:
        """Append a state change for ``item`` and flush it to disk."""
        size, mtime = _stat(source)
        entry = Entry(item=item, status=status, settings=settings, input_size=size,
                      input_mtime_ns=mtime, frames=frames, seconds=round(seconds, 3),
                      error=error, time=round(time.time(), 3))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(entry)) + "\n"
        if not _ends_with_newline(self.path):
            line = "\n" + line  # after a torn line, start a fresh one
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._latest[item] = entry
        return entry


def _ends_with_newline(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:  # missing or empty
        return True


def _stat(path: Path) -> tuple[int, int]:
    try:
        stat = Path(path).stat()
    except OSError:
        return (-1, -1)
    if Path(path).is_dir():
        # A folder of frames: its newest file stands for it.
        newest = max((p.stat().st_mtime_ns for p in Path(path).iterdir() if p.is_file()),
                     default=stat.st_mtime_ns)
        count = sum(1 for p in Path(path).iterdir() if p.is_file())
        return (count, newest)
    return (stat.st_size, stat.st_mtime_ns)
