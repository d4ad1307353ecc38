"""What every unsmear command line does the same way (README: "Command-line conventions").

``python -m dataset_builder``, ``python -m models``, ``python -m pipeline``, ``python -m jobs``
and the ``unsmear`` command that runs them all build their parsers and run their commands
through this module, so they agree on:

- exit status: 0 done, 1 the work failed (a full disk, a diverging training run, items of a
  job), 2 a usage mistake (a bad option or value, a missing input file), 130 interrupted
  (Ctrl-C, or SIGTERM from ``kill`` or a scheduler);
- a mistake is one ``error: ...`` line on stderr, without a traceback;
- ``-q/--quiet`` and ``-v/--verbose`` after every subcommand, ``--version`` on each command;
- results on stdout; progress bars, warnings and log messages on stderr.

It imports only the standard library, so that every package may use it (they import one
way: dataset_builder → models → pipeline → jobs) and ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from unsmear import __version__

EXIT_OK = 0
EXIT_FAILED = 1  # the work ran and failed; the message says what happened
EXIT_USAGE = 2  # argparse's own status for bad usage; also a missing file, a bad value
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our output went away (`| head`)

VERSION = f"unsmear {__version__}"
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

ErrorTypes = tuple[type[BaseException], ...]
# Set by the ``unsmear`` command while it runs one of the others, so that their usage lines
# and errors name the command the user typed ("unsmear process"), not "python -m pipeline".
_program_name: str | None = None


def program(default: str) -> str:
    """The program name for a parser: ``default`` ("python -m pipeline"), or the name the
    ``unsmear`` command runs it under."""
    return _program_name or default


@contextmanager
def program_named(name: str) -> Iterator[None]:
    """Run another package's CLI under the name ``name`` (see :func:`program`)."""
    global _program_name
    previous, _program_name = _program_name, name
    try:
        yield
    finally:
        _program_name = previous


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``error:`` line (exit 2), like every other mistake.

    Subcommands added with ``add_subparsers().add_parser`` are of this class too.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: prints ``unsmear X.Y.Z`` on stdout and exits 0."""
    parser.add_argument("--version", action="version", version=VERSION)


def add_output_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``-q/--quiet`` and ``-v/--verbose``, for every subcommand (they come after its name)."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    # The builder's and trainer's older spelling, kept so that scripts using it still run.
    parser.add_argument("--no-progress", dest="quiet", action="store_true",
                        help=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log details (INFO) on stderr")


def interrupt_on_sigterm() -> None:
    """Make SIGTERM (a plain `kill`, a scheduler stopping the run) end the run as Ctrl-C does:
    partial files removed, exit status 130."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def run(command: Callable[[], int], *, verbose: bool, user_errors: ErrorTypes,
        failures: ErrorTypes = (), interrupted: str = "interrupted") -> int:
    """Run one command's work and return its exit status, the same way in every CLI.

    Log messages go to stderr (INFO with ``verbose``). An exception of ``failures`` (checked
    first, so it may subclass a user error) is reported as one ``error:`` line with status 1,
    one of ``user_errors`` as one line with status 2, Ctrl-C or SIGTERM as the
    ``interrupted`` line with status 130, a closed output pipe silently with 141. Anything
    else is a bug and keeps its traceback.
    """
    interrupt_on_sigterm()
    # OpenCV prints its own "[ WARN:0@4.5] ... findDecoder ..." lines for a file it can't open,
    # beside the one error line we give; its errors still print (set before cv2 loads, so
    # Ray's local workers inherit it too). With -v its warnings show.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "WARNING" if verbose else "ERROR")
    if "cv2" in sys.modules:  # already loaded (commands run in-process, as the tests do)
        levels = sys.modules["cv2"].utils.logging
        levels.setLogLevel(levels.LOG_LEVEL_WARNING if verbose else levels.LOG_LEVEL_ERROR)
    console = ConsoleHandler()
    console.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[console])
    try:
        return command()
    except failures as exc:
        return _report(exc, EXIT_FAILED)
    except user_errors as exc:
        return _report(exc, EXIT_USAGE)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `... | head` closed our output: stop quietly, as shell tools do, and let the
        # interpreter's last flush go nowhere instead of printing another traceback.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE


# Set on a log record that repeats a Ray worker's warning in the driver (pipeline.cluster).
RELOGGED = "unsmear_relogged"


class ConsoleHandler(logging.StreamHandler):
    """Log messages on stderr, each on a line of its own above the progress bars on screen
    (cleared and drawn again around it). A worker's warning that was already printed (every
    segment of a damaged video says so, and so does the driver) is not printed again."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self._warned: set[tuple[str, str]] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            key = (record.name, record.getMessage())
            if getattr(record, RELOGGED, False) and key in self._warned:
                return
            self._warned.add(key)
        tqdm = sys.modules.get("tqdm")  # loaded by every command that draws a bar
        if tqdm is None:
            super().emit(record)
            return
        with tqdm.tqdm.get_lock():
            # Only bars already on screen: one still waiting for its delay (a run's bar before
            # its first video is planned) would be drawn by the redraw.
            shown = [bar for bar in list(getattr(tqdm.tqdm, "_instances", ()))
                     if not bar.disable and getattr(bar, "fp", None) is not None
                     and time.time() - getattr(bar, "start_t", 0) >= getattr(bar, "delay", 0)]
            for bar in shown:
                bar.clear(nolock=True)
            super().emit(record)
            for bar in shown:
                bar.refresh(nolock=True)


def _report(exc: BaseException, status: int) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return status
