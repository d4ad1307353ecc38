"""The `unsmear` console command runs what the `python -m` forms run, and says its version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import pytest

import unsmear
from jobs import cli as jobs_cli
from pipeline import cli as pipeline_cli
from unsmear.cli import main
from unsmear.cli_conventions import EXIT_USAGE
from tests.media import frame_rgb

REPO = Path(__file__).resolve().parents[1]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"unsmear {unsmear.__version__}"
    # The same answer from a fresh interpreter, the way the console script starts it.
    out = subprocess.run([sys.executable, "-m", "unsmear", "--version"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"unsmear {unsmear.__version__}"


def test_process_is_pipeline_process(tmp_path, capsys, identity_model_file):
    assert cv2.imwrite(str(tmp_path / "frame.png"), frame_rgb(1, 40, 30, depth=16))
    common = ["--model", identity_model_file, "-q", "--strength", "0.5"]
    assert main(["process", str(tmp_path / "frame.png"), "-o", str(tmp_path / "a.png"),
                 *common]) == 0
    assert pipeline_cli.main(["process", str(tmp_path / "frame.png"), "-o",
                              str(tmp_path / "b.png"), *common]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    capsys.readouterr()


def test_errors_and_exit_codes_are_the_commands_own(tmp_path, capsys):
    args = ["deblur", str(tmp_path / "missing"), str(tmp_path / "out")]
    assert main(["jobs", *args]) == jobs_cli.main(args) == EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert err[0] == err[1] and "no such folder" in err[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["deblur-everything"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("argv,usage", [
    (["process", "--help"], "usage: unsmear process "),
    (["jobs", "deblur", "--help"], "usage: unsmear jobs deblur "),
    (["build", "--help"], "usage: unsmear build "),
    (["train", "--help"], "usage: unsmear train "),
])
def test_help_names_the_command_the_user_typed(argv, usage, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(usage)
    # The python -m forms keep their own name.
    with pytest.raises(SystemExit):
        pipeline_cli.main(["process", "--help"])
    assert capsys.readouterr().out.startswith("usage: python -m pipeline process ")
