"""Folder jobs without Ray: which files count as videos, where outputs go, what the ledger
says is done, the report, and the CLI's one-line errors. (Runs on Ray: test_jobs_cluster.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jobs import cli
from jobs.folder import find_videos, mirrored_output
from jobs.ledger import DONE, FAILED, LEDGER_NAME, RUNNING, Ledger, folder_lock
from jobs.report import Report, Row
from jobs.settings import deblur_fingerprint
from pipeline import EncoderSettings, ProcessConfig
from tests.conftest import make_identity_model
from unsmear.cli_conventions import EXIT_USAGE
from tests.media import make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=4).path


@pytest.fixture
def tree(tmp_path, clip) -> Path:
    """IN/ with videos in sub-folders, a corrupt .mp4, a video without extension, and files
    that are not videos (text, an image, hidden files)."""
    root = tmp_path / "in"
    (root / "day1" / "cam").mkdir(parents=True)
    (root / ".cache").mkdir()
    (root / "a.mp4").write_bytes(clip.read_bytes())
    (root / "day1" / "b.MOV").write_bytes(clip.read_bytes())
    (root / "day1" / "cam" / "noext").write_bytes(clip.read_bytes())
    (root / "day1" / "broken.mp4").write_bytes(clip.read_bytes()[:300])
    (root / "notes.txt").write_text("not a video")
    (root / "unknown.bin").write_bytes(os.urandom(2000))
    (root / ".hidden.mp4").write_bytes(clip.read_bytes())
    (root / ".cache" / "c.mp4").write_bytes(clip.read_bytes())
    return root


def test_finds_videos_by_extension_and_by_probing(tree):
    found = [p.as_posix() for p in find_videos(tree)]
    # The corrupt .mp4 is kept (it will be reported), the extensionless video is found by
    # probing, random bytes and hidden entries are not.
    assert found == ["a.mp4", "day1/b.MOV", "day1/broken.mp4", "day1/cam/noext"]


def test_glob_filters_on_name_or_relative_path(tree):
    assert [p.as_posix() for p in find_videos(tree, patterns=["*.mp4"])] == \
        ["a.mp4", "day1/broken.mp4"]
    assert [p.as_posix() for p in find_videos(tree, patterns=["day1/cam/*"])] == \
        ["day1/cam/noext"]


def test_output_folder_inside_input_is_never_searched(tree, clip):
    out = tree / "restored"
    (out / "day1").mkdir(parents=True)
    (out / "day1" / "b.MOV").write_bytes(clip.read_bytes())
    assert "restored/day1/b.MOV" not in [p.as_posix() for p in find_videos(tree, exclude=out)]


def test_outputs_mirror_the_tree(tmp_path):
    assert mirrored_output(Path("day1/b.MOV"), tmp_path) == tmp_path / "day1" / "b.MOV"
    # A raw stream can't hold timestamps or audio: its output is Matroska.
    assert mirrored_output(Path("x/raw.h264"), tmp_path) == tmp_path / "x" / "raw.mkv"


def test_ledger_done_only_for_same_settings_input_and_existing_output(tmp_path, clip):
    source = tmp_path / "in.mp4"
    source.write_bytes(clip.read_bytes())
    output = tmp_path / "out.mp4"
    output.write_bytes(b"restored")
    ledger = Ledger(tmp_path / LEDGER_NAME)
    ledger.record("in.mp4", RUNNING, "s1", source)
    assert not ledger.is_done("in.mp4", "s1", source, output)
    ledger.record("in.mp4", DONE, "s1", source, frames=4, seconds=1.0)
    assert ledger.is_done("in.mp4", "s1", source, output)
    assert not ledger.is_done("in.mp4", "s2", source, output)       # other settings
    # A torn last line (the run was killed while writing) is ignored, the rest is kept.
    with (tmp_path / LEDGER_NAME).open("a") as f:
        f.write('{"item": "in.mp4", "status": "fa')
    reread = Ledger(tmp_path / LEDGER_NAME)
    assert reread.is_done("in.mp4", "s1", source, output)
    assert reread.latest("in.mp4").frames == 4
    output.unlink()                                                  # output deleted
    assert not reread.is_done("in.mp4", "s1", source, output)
    output.write_bytes(b"restored")
    source.write_bytes(clip.read_bytes() + b"\0")                    # input changed
    assert not reread.is_done("in.mp4", "s1", source, output)
    reread.record("in.mp4", FAILED, "s1", source, error="boom")
    assert Ledger(tmp_path / LEDGER_NAME).latest("in.mp4").status == FAILED


def test_fingerprint_follows_what_changes_the_output():
    model = make_identity_model()
    base = deblur_fingerprint(ProcessConfig(), model)
    assert deblur_fingerprint(ProcessConfig(device="cpu", batch_size=8), model) == base
    crf = ProcessConfig(encoder=EncoderSettings(crf=10))
    assert deblur_fingerprint(crf, model) != base
    assert deblur_fingerprint(ProcessConfig(), make_identity_model(3)) != base


def test_report_json_and_table(tmp_path):
    report = Report(command="deblur", seconds=3.0, rows=(
        Row(item="a.mp4", output="out/a.mp4", status="done", frames=48, seconds=2.0),
        Row(item="b.mp4", output="out/b.mp4", status="skipped", frames=24, seconds=1.0),
        Row(item="c.mp4", output="out/c.mp4", status="failed", error="c.mp4: corrupt"),
    ))
    assert not report.ok
    report.write(tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert (data["done"], data["skipped"], data["failed"], data["ok"]) == (1, 1, 1, False)
    assert data["items"][0] == {"item": "a.mp4", "output": "out/a.mp4", "status": "done",
                                "frames": 48, "seconds": 2.0, "error": None, "fps": 24.0}
    table = report.table().splitlines()
    assert table[0].split() == ["item", "status", "frames", "seconds", "fps", "error"]
    assert table[3].split()[:2] == ["c.mp4", "failed"] and "corrupt" in table[3]
    assert table[-1] == "1 done, 1 skipped (done before), 1 failed, in 3.0 s"


@pytest.mark.parametrize("args, message", [
    (["deblur", "{missing}", "{out}"], "no such folder"),
    (["deblur", "{in}", "{in}"], "outputs would replace the inputs"),
    (["deblur", "{empty}", "{out}"], "no videos found under"),
    (["deblur", "{in}", "{out}", "--glob", "*.avi"], "no videos matching *.avi found"),
    (["deblur", "{in}", "{out}", "--codec", "nonsense"], "unknown video encoder 'nonsense'"),
])
def test_cli_folder_mistakes_are_one_line(tree, tmp_path, capsys, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    names = {"in": tree, "out": tmp_path / "out", "missing": tmp_path / "nope", "empty": empty}
    code = cli.main([a.format(**{k: str(v) for k, v in names.items()}) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_cli_unknown_option_is_a_usage_error(tree, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["deblur", str(tree), str(tmp_path / "out"), "--windw", "3"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --windw 3" in capsys.readouterr().err


def test_a_second_job_into_the_same_folder_is_refused_and_touches_nothing(tree, tmp_path,
                                                                          capsys):
    out_dir = tmp_path / "restored"
    out_dir.mkdir()
    working = out_dir / f".a.segments-{os.getpid()}-0123abcd"  # the first job's, in progress
    working.mkdir()
    with folder_lock(out_dir):  # the first job, running
        code = cli.main(["deblur", str(tree), str(out_dir), "-q"])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith("error: ") and "another unsmear job" in err
        assert f"pid {os.getpid()}" in err
        assert working.is_dir()
        assert not (out_dir / "unsmear-jobs.jsonl").exists()
    with folder_lock(out_dir):  # released when the first job ends (or dies)
        pass


def test_files_no_job_wrote_are_never_replaced(tmp_path, clip, capsys):
    """An output folder that already holds the user's own file under an output's name: that
    video is reported failed and the file is left as it was (without starting any worker)."""
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.mp4").write_bytes(clip.read_bytes())
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "a.mp4").write_bytes(b"the user's own edit")
    code = cli.main(["deblur", str(root), str(out_dir), "-q", "--device", "cpu"])
    capsys.readouterr()
    assert code != 0
    assert (out_dir / "a.mp4").read_bytes() == b"the user's own edit"
    [row] = json.loads((out_dir / "unsmear-report.json").read_text())["items"]
    assert row["status"] == "failed" and "no job here wrote it" in row["error"]
