"""A run killed part-way through a long video resumes: the same command redoes only the
segments that were not finished, and the output is the uninterrupted run's, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest

import pipeline.process
import pipeline.resume
from pipeline import EncoderSettings, ProcessConfig, process_video
from pipeline.video_reader import read_timestamps
from tests.conftest import make_identity_model
from tests.media import make_clip

GOP = 8
X264_GOP = {"x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0", "bf": "3"}
CONFIG = ProcessConfig(progress=False, encoder=EncoderSettings(crf=20, preset="ultrafast",
                                                               threads=1))


@pytest.fixture
def long_clip(tmp_path, monkeypatch) -> Path:
    """45 frames with B-frames and audio; segments of 8 frames count as "long" here."""
    monkeypatch.setattr(pipeline.process, "RESUME_SEGMENT_FRAMES", GOP)
    return make_clip(tmp_path / "clip.mp4", frames=45, options=X264_GOP, audio="aac").path


class Interrupt:
    """Ctrl-C (or a kill) right after the ``after``-th segment is recorded as finished."""

    def __init__(self, monkeypatch, after: int) -> None:
        self.recorded = 0
        real = pipeline.resume.ResumeFolder.record

        def record(folder, result):
            real(folder, result)
            self.recorded += 1
            if self.recorded == after:
                raise KeyboardInterrupt

        monkeypatch.setattr(pipeline.resume.ResumeFolder, "record", record)


def _restored_segments(monkeypatch) -> list[int]:
    """Count the segments restored from now on."""
    done: list[int] = []
    real = pipeline.process.restore_segment

    def restore(task, restorer, **kwargs):
        done.append(task.segment.index)
        return real(task, restorer, **kwargs)

    monkeypatch.setattr(pipeline.process, "restore_segment", restore)
    return done


def _interrupted(clip: Path, output: Path, model, monkeypatch, *, after: int) -> None:
    """Run ``process_video`` and interrupt it after ``after`` finished segments."""
    with monkeypatch.context() as patch:
        Interrupt(patch, after=after)
        with pytest.raises(KeyboardInterrupt):
            process_video(clip, output, config=CONFIG, model=model)


def test_killed_run_resumes_and_gives_the_uninterrupted_output(long_clip, tmp_path, monkeypatch):
    model = make_identity_model()
    whole = process_video(long_clip, tmp_path / "whole.mp4", config=CONFIG, model=model)
    output = tmp_path / "out.mp4"
    with monkeypatch.context() as patch:
        Interrupt(patch, after=3)
        with pytest.raises(KeyboardInterrupt):
            process_video(long_clip, output, config=CONFIG, model=model)
    assert not output.exists()
    kept = [p for p in tmp_path.iterdir() if ".out.mp4.resume-" in p.name]
    assert len(kept) == 1 and len(list(kept[0].glob("segment-*.json"))) == 3
    redone = _restored_segments(monkeypatch)
    resumed = process_video(long_clip, output, config=CONFIG, model=model)
    assert redone == [3, 4]  # five segments of ~9 frames; three were finished before
    assert resumed.frames == whole.frames == 45
    assert output.read_bytes() == whole.output.read_bytes()
    assert read_timestamps(output) == read_timestamps(long_clip)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing left behind


def test_other_settings_start_afresh(long_clip, tmp_path, monkeypatch):
    model, output = make_identity_model(), tmp_path / "out.mp4"
    _interrupted(long_clip, output, model, monkeypatch, after=2)
    redone = _restored_segments(monkeypatch)
    other = ProcessConfig(progress=False, encoder=EncoderSettings(crf=30, preset="ultrafast"))
    process_video(long_clip, output, config=other, model=model)
    assert redone == [0, 1, 2, 3, 4]  # nothing made with crf 20 is reused for crf 30
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_one_pass_run_after_an_interrupted_segmented_one_leaves_nothing(long_clip, tmp_path, monkeypatch):
    """Interrupted in segments, then finished in one pass (here: segments judged too short;
    for a user: --workers 2, then one worker): the interrupted run's hidden folder, of no
    use to the one pass, goes too (it stayed, gigabytes of segments for real videos)."""
    model, output = make_identity_model(), tmp_path / "out.mp4"
    _interrupted(long_clip, output, model, monkeypatch, after=2)
    assert [p for p in tmp_path.iterdir() if ".out.mp4.resume-" in p.name]
    monkeypatch.setattr(pipeline.process, "RESUME_SEGMENT_FRAMES", 1000)  # one pass now
    assert process_video(long_clip, output, config=CONFIG, model=model).frames == 45
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_error_removes_the_finished_segments(long_clip, tmp_path, monkeypatch):
    real = pipeline.process.restore_segment
    calls = []

    def failing(task, restorer, **kwargs):
        calls.append(task.segment.index)
        if len(calls) == 3:
            raise pipeline.process.PipelineError("disk on fire")
        return real(task, restorer, **kwargs)

    monkeypatch.setattr(pipeline.process, "restore_segment", failing)
    with pytest.raises(pipeline.process.PipelineError, match="disk on fire"):
        process_video(long_clip, tmp_path / "out.mp4", config=CONFIG, model=make_identity_model())
    assert list(tmp_path.iterdir()) == [long_clip]


def test_outputs_with_the_same_stem_keep_their_own_segments(tmp_path):
    """clip.mp4 and clip.mov side by side (as `jobs` writes a folder of both): opening one's
    folder leaves the other's finished segments alone."""
    mp4 = pipeline.resume.ResumeFolder(tmp_path / "clip.mp4", "a" * pipeline.resume.KEY_CHARS)
    mp4.open()
    mp4.segment_path(0).write_bytes(b"finished")
    pipeline.resume.ResumeFolder(tmp_path / "clip.mov", "b" * pipeline.resume.KEY_CHARS).open()
    assert mp4.segment_path(0).read_bytes() == b"finished"
    assert len([p for p in tmp_path.iterdir() if ".resume-" in p.name]) == 2


def test_streams_the_output_cannot_hold_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline.process, "RESUME_SEGMENT_FRAMES", GOP)
    clip = make_clip(tmp_path / "clip.mkv", frames=45, options=X264_GOP, subtitles=True).path
    with pytest.raises(pipeline.process.PipelineError, match="cannot be copied into this container"):
        process_video(clip, tmp_path / "out.mp4", config=CONFIG, model=make_identity_model())
    assert list(tmp_path.iterdir()) == [clip]
