"""Jobs against a real Ray cluster: a head started with `ray start --head` on localhost, and
drivers run as users run them (`python -m jobs ... --address`, `python -m pipeline process
--address`), in their own processes.

What users care about: a folder with a corrupt file completes the others, reports the bad one
and exits non-zero; a job killed mid-way leaves no finished-looking partial file, and running
it again processes only what was missing; the dataset builder runs one task per source.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jobs.ledger import LOCK_NAME
from pipeline.video_reader import read_timestamps
from tests.media import make_clip

# A Ray cluster and drivers in their own processes: 3 minutes on 2 cores.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
HEAD_START_TIMEOUT_S = 60
DRIVER_TIMEOUT_S = 240
X264_GOP = {"x264-params": "keyint=8:min-keyint=8:scenecut=0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """A one-node Ray cluster of our own: private temp dir, ports and auth token, so it
    neither joins nor disturbs any other Ray instance on this machine."""
    temp_dir = tempfile.mkdtemp(prefix="unsmear-ray-", dir="/tmp")  # short: socket paths
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    ports = {"port": port, "dashboard-agent-listen-port": _free_port(),
             "dashboard-agent-grpc-port": _free_port(), "runtime-env-agent-port": _free_port(),
             "metrics-export-port": _free_port()}
    command = [str(RAY), "start", "--head", "--block", "--num-cpus=4",
               "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}",
               *[f"--{name}={value}" for name, value in ports.items()]]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    ready = Path(temp_dir) / "ray_current_cluster"  # written once the head is up
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"ray start --head failed:\n{process.stdout.read().decode()[-3000:]}")
        time.sleep(0.2)
    yield f"127.0.0.1:{port}", env
    process.terminate()  # `ray start --block` stops the processes it started
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group this fixture created, only
        process.wait()


def run(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=DRIVER_TIMEOUT_S)


def report_of(folder: Path) -> dict:
    return json.loads((folder / "unsmear-report.json").read_text())


def statuses(report: dict) -> dict[str, str]:
    return {item["item"]: item["status"] for item in report["items"]}


def test_folder_with_a_corrupt_file_completes_the_others(head, identity_model_file, tmp_path):
    address, env = head
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    (in_dir / "day1").mkdir(parents=True)
    good = [make_clip(in_dir / "a.mp4", frames=30, options=X264_GOP, audio="aac").path,
            make_clip(in_dir / "day1" / "b.mkv", frames=21, vfr=True, options=X264_GOP).path]
    (in_dir / "day1" / "corrupt.mp4").write_bytes(good[0].read_bytes()[:2000])
    (in_dir / "notes.txt").write_text("not a video")
    result = run(env, "jobs", "deblur", str(in_dir), str(out_dir), "--address", address,
                 "--model", identity_model_file, "--workers", "2", "--segment-frames", "8",
                 "-q")
    assert result.returncode == 1, result.stderr
    report = report_of(out_dir)
    assert statuses(report) == {"a.mp4": "done", "day1/b.mkv": "done",
                                "day1/corrupt.mp4": "failed"}
    failed = [i for i in report["items"] if i["status"] == "failed"][0]
    assert "corrupt.mp4" in failed["error"]
    assert [line.split()[:2] for line in result.stderr.splitlines()
            if "corrupt.mp4" in line][-1] == ["day1/corrupt.mp4", "failed"]
    for source in good:
        output = out_dir / source.relative_to(in_dir)
        assert read_timestamps(output) == read_timestamps(source)
    assert {i["item"]: i["frames"] for i in report["items"]}["a.mp4"] == 30


def test_interrupted_job_resumes_with_only_what_was_missing(head, identity_model_file,
                                                            tmp_path):
    address, env = head
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    clips = {f"clip{i}.mp4": make_clip(in_dir / f"clip{i}.mp4", frames=48, options=X264_GOP)
             for i in range(4)}
    command = [sys.executable, "-m", "jobs", "deblur", str(in_dir), str(out_dir), "--address",
               address, "--model", identity_model_file, "--workers", "1", "-q"]
    driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    ledger = out_dir / "unsmear-jobs.jsonl"
    deadline = time.monotonic() + DRIVER_TIMEOUT_S
    while not (ledger.exists() and '"status": "done"' in ledger.read_text()):
        assert driver.poll() is None and time.monotonic() < deadline, "no video finished"
        time.sleep(0.05)
    driver.kill()  # as hard as a crash: no cleanup runs
    driver.wait()
    done_before = {json.loads(line)["item"] for line in ledger.read_text().splitlines()
                   if '"status": "done"' in line}
    # Whatever is visible is complete; unfinished work only ever sits in hidden files.
    visible = {p.name for p in out_dir.glob("*.mp4")}
    assert visible == done_before
    for name in visible:
        assert len(read_timestamps(out_dir / name)) == 48

    result = run(env, "jobs", "deblur", str(in_dir), str(out_dir), "--address", address,
                 "--model", identity_model_file, "--workers", "1", "-q")
    assert result.returncode == 0, result.stderr
    report = report_of(out_dir)
    assert statuses(report) == {name: "skipped" if name in done_before else "done"
                                for name in clips}
    for name, clip in clips.items():
        assert read_timestamps(out_dir / name) == read_timestamps(clip.path)
    # No debris; the folder's lock file stays, like the ledger (unlocked once the job ends).
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".") and p.name != LOCK_NAME]


def test_pipeline_process_joins_the_cluster(head, identity_model_file, tmp_path):
    address, env = head
    clip = make_clip(tmp_path / "clip.mp4", frames=30, options=X264_GOP, audio="aac").path
    output = tmp_path / "restored.mp4"
    result = run(env, "pipeline", "process", str(clip), "-o", str(output), "--address", address,
                 "--model", identity_model_file, "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{output}\t30 frames")
    assert read_timestamps(output) == read_timestamps(clip)


def test_build_pairs_one_task_per_source(head, tmp_path):
    address, env = head
    footage, pairs = tmp_path / "footage", tmp_path / "pairs"
    (footage / "set2").mkdir(parents=True)
    first = make_clip(footage / "one.mp4", frames=24, options=X264_GOP).path
    make_clip(footage / "set2" / "two.mp4", frames=24, options=X264_GOP)
    (footage / "broken.mp4").write_bytes(first.read_bytes()[:1500])
    options = ["--window", "3", "--stride", "4", "--fps", "240", "-q"]
    result = run(env, "jobs", "build-pairs", str(footage), str(pairs), "--address", address,
                 *options)
    assert result.returncode == 1, result.stderr
    report = report_of(pairs)
    assert statuses(report) == {"one.mp4": "done", "set2/two.mp4": "done",
                                "broken.mp4": "failed"}
    manifest = (pairs / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == report["items"][1]["frames"] + report["items"][2]["frames"] > 0
    # Resumable: with the bad file gone, nothing is rebuilt (and no Ray is needed).
    (footage / "broken.mp4").unlink()
    again = run(env, "jobs", "build-pairs", str(footage), str(pairs), "--address", address,
                *options)
    assert again.returncode == 0, again.stderr
    assert set(statuses(report_of(pairs)).values()) == {"skipped"}
    assert (pairs / "manifest.jsonl").read_text().splitlines() == manifest


def test_video_that_decodes_differently_after_a_seek_is_done_whole(head, identity_model_file,
                                                                    tmp_path):
    """Old-x264 4:4:4 (issue 20): its segments would decode wrongly; the job gives the
    one-worker frames, and --accept-damaged never turns a split-decoding fault into success."""
    from pipeline import EncoderSettings, ProcessConfig, process_video
    from models.checkpoint import load_generator
    from tests.media import make_old_x264_444_clip
    from tests.test_pipeline_parallel import same_frames

    address, env = head
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    clip = make_old_x264_444_clip(in_dir / "old444.mp4").path
    lossless = ["--crf", "0", "--pix-fmt", "yuv444p"]
    single = process_video(clip, tmp_path / "single.mp4", model=load_generator(identity_model_file),
                           config=ProcessConfig(progress=False, accept_damaged=True,
                                                encoder=EncoderSettings(crf=0, pix_fmt="yuv444p")))
    out_dir = tmp_path / "out"
    result = run(env, "jobs", "deblur", str(in_dir), str(out_dir), "--address", address,
                 "--model", identity_model_file, "--workers", "2", "--segment-frames", "12",
                 "--accept-damaged", *lossless, "-q")
    assert result.returncode == 0, result.stderr
    assert statuses(report_of(out_dir)) == {"old444.mp4": "done"}
    assert same_frames(out_dir / "old444.mp4", single.output)
    strict = run(env, "jobs", "deblur", str(in_dir), str(tmp_path / "strict"), "--address",
                 address, "--model", identity_model_file, "--workers", "2", "--segment-frames",
                 "12", *lossless, "-q")
    assert strict.returncode == 1
    assert statuses(report_of(tmp_path / "strict")) == {"old444.mp4": "failed"}
    assert not (tmp_path / "strict" / "old444.mp4").exists()
