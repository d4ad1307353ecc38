"""Stopped runs leave nothing behind: SIGTERM is handled like Ctrl-C, and the debris of a run
killed outright (SIGKILL, power loss) is removed by the next run for the same output, while
the files of a run still going are never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.outputs import remove_dead_leftovers
from pipeline.video_reader import read_timestamps
from tests.media import make_clip

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_sigterm_mid_run_exits_130_and_leaves_only_what_resumes(tmp_path, identity_model_file):
    clip = make_clip(tmp_path / "clip.mp4", frames=2000, width=64, height=48)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "process", "-q", str(clip.path), "-o",
         str(out_dir / "clip.mp4"), "--model", identity_model_file, "--batch-size", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + START_TIMEOUT_S
    # 2000 frames are long enough to be done in segments: a partial segment file appears
    # with the first restored frame.
    while not list(out_dir.glob(".clip.mp4.resume-*/.segment-*")):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert "interrupted; no output written" in err
    assert out == ""
    # Only the folder of finished segments stays (for the same command to resume; see
    # test_pipeline_resume): no output, no partial file.
    [kept] = out_dir.iterdir()
    assert kept.name.startswith(".clip.mp4.resume-") and kept.is_dir()
    assert not [p for p in kept.iterdir() if ".partial-" in p.name]


def test_leftovers_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    output = tmp_path / "clip.mp4"
    dead, alive = _dead_pid(), os.getpid()
    (tmp_path / f".clip.partial-{dead}.mp4").write_bytes(b"half")
    (tmp_path / f".clip.segments-{dead}-0123abcd").mkdir()
    (tmp_path / f".clip.segments-{dead}-0123abcd" / "segment-0-00000.mp4").write_bytes(b"x")
    kept = {f".clip.partial-{alive}.mp4", f".clip.segments-{alive}-4567ef01",
            f".other.partial-{dead}.mp4", f".clip.partial-{dead}.mkv"}
    for name in kept:
        (tmp_path / name).write_bytes(b"not ours to touch")
    assert remove_dead_leftovers(output) == 2
    assert {p.name for p in tmp_path.iterdir()} == kept


def test_a_run_after_a_kill_removes_its_debris(tmp_path, identity_model_file, capsys):
    from pipeline.cli import main

    clip = make_clip(tmp_path / "clip.mp4", frames=12)
    out = tmp_path / "out.mp4"
    debris = tmp_path / f".out.partial-{_dead_pid()}.mp4"
    debris.write_bytes(b"what kill -9 left")
    assert main(["process", "-q", str(clip.path), "-o", str(out),
                 "--model", identity_model_file]) == 0
    assert not debris.exists()
    assert len(read_timestamps(out)) == 12


@pytest.mark.slow  # three runs over 1,300 frames
def test_kill_9_then_the_same_command_gives_the_uninterrupted_output(tmp_path, identity_model_file):
    """kill -9 once a segment is finished; the same command again resumes from the segments
    kept and writes the file an uninterrupted run writes, byte for byte."""
    clip = make_clip(tmp_path / "clip.mp4", frames=1300, width=64, height=48).path

    def command(output: Path) -> list[str]:
        return [sys.executable, "-m", "pipeline", "process", "-q", str(clip), "-o", str(output),
                "--model", identity_model_file, "--preset", "ultrafast"]

    env = dict(os.environ, OMP_NUM_THREADS="1")
    whole = tmp_path / "whole" / "clip.mp4"
    whole.parent.mkdir()
    subprocess.run(command(whole), cwd=REPO, env=env, check=True, capture_output=True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run = subprocess.Popen(command(out_dir / "clip.mp4"), cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not list(out_dir.glob(".clip.mp4.resume-*/segment-00000.json")):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)
    assert not (out_dir / "clip.mp4").exists()
    done = subprocess.run(command(out_dir / "clip.mp4"), cwd=REPO, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming: 1 segment(s) finished by an earlier run are kept" in done.stderr
    assert (out_dir / "clip.mp4").read_bytes() == whole.read_bytes()
    # The killed run's partial segment went with the resume folder; nothing else is left.
    assert [p.name for p in out_dir.iterdir()] == ["clip.mp4"]
