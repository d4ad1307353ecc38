"""Outputs: the checks before anything is written, hidden working files beside an output named
after the process that owns them, and the removal of those that dead runs left behind.

Every run writes ``.NAME.partial-PID.EXT`` (``.NAME.partial-PID-TAG.EXT`` for a second file,
such as the aspect-ratio remux; on Ray, a ``.NAME.segments-PID-ID`` folder)
and renames or removes it when it ends. A run killed with SIGKILL, or a machine that lost
power, cannot; the next run for the same output removes what belongs to processes that no
longer exist, and never touches the files of a run still going.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from pathlib import Path

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


def check_output(input_path: Path, output: Path, overwrite: bool, *,
                 allow_folder: bool = False) -> None:
    """Refuse outputs that would lose data or can't be written; ``allow_folder`` for outputs
    that are folders (of image frames)."""
    if output.resolve() == input_path.resolve():
        raise PipelineError(f"{output}: the output would overwrite the input")
    if output.exists() and not overwrite:
        raise PipelineError(f"{output}: already exists (pass --overwrite to replace it)")
    if output.is_dir() != allow_folder and output.exists():
        raise PipelineError(f"{output}: is a directory" if output.is_dir()
                            else f"{output}: is a file, not a folder")
    folder = output.parent
    if not folder.is_dir():
        raise PipelineError(f"{folder}: output folder does not exist")
    if not os.access(folder, os.W_OK):
        raise PipelineError(f"{folder}: output folder is not writable")


def segments_folder(output: Path) -> Path:
    """A new, unique folder name for this process's segment files of ``output``."""
    output = Path(output)
    return output.with_name(f".{output.stem}.segments-{os.getpid()}-{uuid.uuid4().hex[:12]}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_dead_leftovers(output: Path) -> int:
    """Delete the partial files and segment folders of ``output`` whose process is gone.

    Returns how many were removed. Files of live processes (another run writing the same
    output right now) are left alone.
    """
    output = Path(output)
    folder = output.parent
    if not folder.is_dir():
        return 0
    stem, suffix = re.escape(output.stem), re.escape(output.suffix)
    owned = re.compile(rf"\.{stem}\.(?:partial-(\d+)(?:-[a-z]+)?{suffix}|segments-(\d+)(?:-[0-9a-f]+)?)")
    removed = 0
    for entry in folder.iterdir():
        match = owned.fullmatch(entry.name)
        if match is None or pid_alive(int(match.group(1) or match.group(2))):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("%s: removed %d leftover(s) of a run that was killed", output, removed)
    return removed
