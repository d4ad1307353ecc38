"""Files that appear only when complete: written under a hidden partial name beside their
destination, then renamed into place (a rename within one folder is atomic), so an interrupted
or failed write never leaves something that looks finished.

The partial name, ``.NAME.partial-PID.EXT``, keeps the extension (writers pick the format by
it) and names the process that owns it, so the leftovers of a killed run can be told from the
files of a run still going (:func:`pipeline.outputs.remove_dead_leftovers`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ReplaceError(OSError):
    """A finished file could not be renamed onto its destination (an immutable file, a
    read-only folder or mount): the destination is as it was."""


def replace(partial: Path, path: Path) -> None:
    """Rename ``partial`` onto ``path``; raise ReplaceError (one line, naming ``path``) if the
    system refuses."""
    try:
        os.replace(partial, path)
    except OSError as exc:
        raise ReplaceError(f"{path}: cannot be replaced ({exc.strerror}); it is left as it "
                           f"was") from exc


def partial_path(path: Path, *, tag: str = "") -> Path:
    """Where this process writes ``path`` before renaming it into place; ``tag`` names a
    second such file of the same process (``.NAME.partial-PID-TAG.EXT``)."""
    path = Path(path)
    suffix = f"-{tag}" if tag else ""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{suffix}{path.suffix}")


@contextmanager
def replaced_when_done(path: Path) -> Iterator[Path]:
    """Yield the partial path to write (a file, or a folder the block creates); when the block
    ends normally it replaces ``path`` (a folder replaces a folder), otherwise it is removed."""
    path = Path(path)
    partial = partial_path(path)
    try:
        yield partial
        if partial.is_dir() and path.is_dir():
            shutil.rmtree(path)
        replace(partial, path)
    finally:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (its folder created if needed) via a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_when_done(path) as partial:
        partial.write_bytes(data)
