"""The four command lines and `unsmear` keep the same conventions (issue 13, README).

Exit status 2 and one `error:` line for a usage mistake, `--version`, -q/-v after every
subcommand, and a `--help` that does not wait for torch.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import unsmear
from unsmear.cli_conventions import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE,
                                     run)

REPO = Path(__file__).resolve().parents[1]
# What `python -m X` runs for each entry point; `unsmear` is the console command's module.
ENTRY_POINTS = {"pipeline": "pipeline.cli", "jobs": "jobs.cli",
                "dataset_builder": "dataset_builder.cli", "models": "models.cli",
                "unsmear": "unsmear.cli"}
SUBCOMMANDS = {"pipeline": ["process"], "jobs": ["deblur", "build-pairs"],
               "dataset_builder": ["build", "render", "probe", "sheet"],
               "models": ["train", "evaluate", "render-pairs", "export", "interpolate"]}
# Modules that take seconds to import (torch) or a noticeable part of one: none of them
# may load before a command runs, or `--help` waits for them.
HEAVY_MODULES = ("torch", "ray", "cv2", "decord", "av")


def _python_m(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def _assert_one_error_line(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["pipeline", "process", "clip.mp4", "--bogus"],
    ["pipeline", "process", "clip.mp4", "--batch-size", "-1"],
    ["jobs", "deblur", "in", "out", "--bogus"],
    ["jobs", "deblur", "in", "out", "--retries", "0"],
    ["dataset_builder", "build", "in", "out", "--bogus"],
    ["dataset_builder", "build", "in", "out", "--window", "seven"],
    ["models", "train", "tiny", "--bogus"],
    ["models", "evaluate", "pairs", "--model", "m.safetensors", "--crop-border", "-1"],
    ["models", "export", "run"],
    ["unsmear", "deblur-everything"],
    ["pipeline"],
])
def test_usage_error_is_one_line_and_exit_2(argv):
    done = _python_m(*argv)
    assert done.returncode == EXIT_USAGE, done.stderr
    _assert_one_error_line(done.stderr)
    assert done.stdout == ""


@pytest.mark.parametrize("package", ENTRY_POINTS)
def test_version(package):
    done = _python_m(package, "--version")
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.strip() == f"unsmear {unsmear.__version__}"


@pytest.mark.parametrize("module", ENTRY_POINTS.values())
def test_importing_the_cli_loads_no_heavy_module(module):
    code = (f"import sys, {module}; "
            f"print(' '.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip() == "", f"{module} imports {done.stdout.strip()}"


@pytest.mark.parametrize("package, subcommand",
                         [(p, s) for p, subs in SUBCOMMANDS.items() for s in subs])
def test_quiet_and_verbose_on_every_subcommand(package, subcommand, capsys):
    main = importlib.import_module(ENTRY_POINTS[package]).main
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--help"])
    assert exit_info.value.code == EXIT_OK
    text = capsys.readouterr().out
    assert "-q, --quiet" in text and "-v, --verbose" in text
    assert "--no-progress" not in text, "the old spelling works but is not advertised"


def test_no_progress_is_kept_as_an_alias():
    from dataset_builder.cli import build_parser as builder_parser
    from models.cli import build_parser as models_parser

    assert builder_parser().parse_args(["build", "in", "out", "--no-progress"]).quiet
    assert models_parser().parse_args(["train", "tiny", "--no-progress"]).quiet
    assert not models_parser().parse_args(["train", "tiny"]).quiet


@pytest.mark.parametrize("argv", [
    ["pipeline", "process", "{tmp}/nope.mp4"],
    ["jobs", "deblur", "{tmp}/nope", "{tmp}/out"],
    ["dataset_builder", "build", "{tmp}/nope", "{tmp}/out"],
    ["models", "evaluate", "{tmp}/nope", "--model", "{tmp}/nope.safetensors"],
    ["models", "train", "{tmp}/nope.yaml", "out={tmp}/run"],
    ["unsmear", "process", "{tmp}/nope.mp4"],
])
def test_missing_input_is_a_usage_error(argv, tmp_path, capsys):
    main = importlib.import_module(ENTRY_POINTS[argv[0]]).main
    assert main([a.format(tmp=tmp_path) for a in argv[1:]]) == EXIT_USAGE
    captured = capsys.readouterr()
    _assert_one_error_line(captured.err)
    assert "nope" in captured.err and captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing may be written"


class _Mistake(ValueError):
    pass


class _Failure(_Mistake):
    pass


def _raise(exc: BaseException):
    def command() -> int:
        raise exc
    return command


@pytest.mark.parametrize("exc, status, line", [
    (_Mistake("bad --thing"), EXIT_USAGE, "error: bad --thing"),
    (_Failure("the disk is full"), EXIT_FAILED, "error: the disk is full"),
    (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted"),
])
def test_run_maps_outcomes_to_exit_status(exc, status, line, capsys):
    assert run(_raise(exc), verbose=False, user_errors=(_Mistake,),
               failures=(_Failure,)) == status
    assert capsys.readouterr().err.strip() == line
    assert run(lambda: EXIT_OK, verbose=False, user_errors=(_Mistake,)) == EXIT_OK


def test_run_keeps_the_traceback_of_a_bug():
    with pytest.raises(ZeroDivisionError):
        run(_raise(ZeroDivisionError()), verbose=False, user_errors=(_Mistake,))


def test_warnings_print_above_the_progress_bar(monkeypatch):
    import io
    import logging

    from tqdm import tqdm

    from unsmear.cli_conventions import LOG_FORMAT, ConsoleHandler

    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    console = ConsoleHandler()
    console.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("unsmear.test_console")
    logger.addHandler(console)
    logger.propagate = False
    try:
        with tqdm(total=10, desc="clip.mp4", file=stderr) as bar:
            bar.update(3)
            logger.warning("clip.mp4: the input is damaged")
            bar.update(3)
        shown = stderr.getvalue()
        # A bar still waiting for its delay (a run's, before its first video is planned).
        with tqdm(total=5, desc="not-yet-shown", file=stderr, delay=float("inf")):
            logger.warning("the Ray cluster has 1 CPU(s) free right now")
    finally:
        logger.removeHandler(console)
        logger.propagate = True
    pieces = [p for p in re.split(r"[\r\n]", shown) if "WARNING" in p]
    assert pieces == ["WARNING unsmear.test_console: clip.mp4: the input is damaged"]
    assert stderr.getvalue()[len(shown):] == (
        "WARNING unsmear.test_console: the Ray cluster has 1 CPU(s) free right now\n")


def test_a_workers_repeated_warning_prints_once_and_the_drivers_own_each_time(monkeypatch):
    import io
    import logging

    from pipeline.cluster import collected_warnings, log_again
    from unsmear.cli_conventions import LOG_FORMAT, ConsoleHandler

    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    console = ConsoleHandler()
    console.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    with collected_warnings() as warnings:  # in a Ray worker
        logging.getLogger("pipeline.video_reader").warning("clip.ts: the input is damaged")
    assert warnings == [("pipeline.video_reader", "clip.ts: the input is damaged")]
    root.addHandler(console)  # the driver's
    try:
        log_again(warnings)
        log_again(warnings)  # the next segment's worker
        driver = logging.getLogger("pipeline.scheduler")
        driver.warning("clip.ts: redoing segment 2")
        driver.warning("clip.ts: redoing segment 2")  # the driver's own events: each time
    finally:
        root.removeHandler(console)
    assert stderr.getvalue().splitlines() == [
        "WARNING pipeline.video_reader: clip.ts: the input is damaged",
        "WARNING pipeline.scheduler: clip.ts: redoing segment 2",
        "WARNING pipeline.scheduler: clip.ts: redoing segment 2"]


def test_a_closed_output_pipe_ends_quietly():
    """`... | head`: the reader goes away; no traceback, status 141 as shell tools give."""
    script = ("import sys; from unsmear.cli_conventions import run\n"
              "def command():\n"
              "    for i in range(200000):\n"
              "        print('line', i)\n"
              "    return 0\n"
              "sys.exit(run(command, verbose=False, user_errors=()))\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    process.stdout.read(10)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_sigterm_still_interrupts_after_ray_starts(monkeypatch):
    """Ray's core worker installs its own SIGTERM handler in the driver (a crash dump, exit 1):
    after connecting, a `kill` must end the run as Ctrl-C does (exit 130)."""
    import signal

    import pipeline.cluster as cluster

    previous = signal.getsignal(signal.SIGTERM)

    def ray_init(**kwargs):  # what Ray does to the driver's SIGTERM
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    monkeypatch.setattr(cluster.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(cluster.ray, "init", ray_init)
    try:
        assert cluster.connect(None, num_cpus=1) is True
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGTERM, previous)
