"""A write that fails (full disk, vanished folder) fails the run and leaves no output file.

FFmpeg's muxers do not report most failed writes; without reading the output back, a full
disk used to leave a cut-short file and a "48 frames" success line.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from pipeline import EncoderSettings, PipelineError, ProcessConfig
from pipeline.cli import main
from pipeline.restorer import Restorer
from pipeline.segments import Segment, SegmentTask, restore_segment
from pipeline.video_writer import check_written
from tests.conftest import make_identity_model
from tests.media import make_clip


def test_full_disk_fails_the_run_and_leaves_nothing(tmp_path, small_disk, capsys,
                                                    identity_model_file):
    clip = make_clip(tmp_path / "clip.mp4", frames=48, width=128, height=96, audio="aac")
    code = main(["process", "-q", str(clip.path), "-o", str(small_disk / "out.mp4"),
                 "--model", identity_model_file])
    err = capsys.readouterr()
    assert code == 1
    assert err.out == ""
    assert err.err.startswith("error: out.mp4: writing the output failed")
    assert "disk is full" in err.err or "No space left" in err.err
    assert list(small_disk.iterdir()) == [], "no output or partial file may remain"


def test_full_disk_in_a_segment_is_a_disk_error(tmp_path, small_disk):
    """What a `jobs` worker reports for a segment written to a full disk."""
    clip = make_clip(tmp_path / "clip.mp4", frames=48, width=128, height=96)
    task = SegmentTask(input=clip.path, segment=Segment(index=0, start_pts=None, end_pts=None,
                                                        frames=48),
                       path=small_disk / "segment-0.mp4", output_name=small_disk / "out.mp4",
                       config=ProcessConfig(encoder=EncoderSettings(crf=0)))
    restorer = Restorer(make_identity_model(), device=torch.device("cpu"), batch_size=4)
    with pytest.raises(PipelineError, match="writing the output failed") as error:
        restore_segment(task, restorer)
    assert "Invalid data" not in str(error.value)
    assert list(small_disk.iterdir()) == []


def test_a_short_file_is_refused_with_the_counts(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=24)
    check_written(clip.path, 24)  # complete: accepted
    data = clip.path.read_bytes()
    clip.path.write_bytes(data[:len(data) // 2])
    with pytest.raises(PipelineError, match=r"reads back with 0 of the 24 frames"):
        check_written(clip.path, 24)


def test_overwrite_onto_a_file_that_cannot_be_replaced_is_one_error_line(
        tmp_path, capsys, monkeypatch, identity_model_file):
    """An immutable file, or one on a read-only mount: the final rename is refused."""
    clip = make_clip(tmp_path / "clip.mp4", frames=8)
    out = tmp_path / "out" / "clip.mp4"
    out.parent.mkdir()
    out.write_bytes(b"the earlier output")
    real_replace = os.replace

    def refused(source, destination):
        if Path(destination) == out:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", refused)
    code = main(["process", "-q", str(clip.path), "-o", str(out), "--overwrite",
                 "--model", identity_model_file])
    err = capsys.readouterr().err
    assert code == 1
    assert err == f"error: {out}: cannot be replaced (Operation not permitted); it is left as it was\n"
    assert out.read_bytes() == b"the earlier output"
    assert [p.name for p in out.parent.iterdir()] == ["clip.mp4"]  # no partial files
