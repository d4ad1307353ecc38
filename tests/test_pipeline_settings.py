"""Every ProcessConfig setting means the same in one process and on a Ray worker.

Both paths run the one stage loop (pipeline.stages.run_stages); what differs is who builds the
reader, the restorer and the writer. A config with every field changed from its default is
run through each path with spies on those constructors, and each field must reach the place
that uses it. A new field that neither path passes on fails here until it is wired (or listed
as checked elsewhere, with the test that checks it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import pipeline.process
import pipeline.restorer
import pipeline.segments
from pipeline import EncoderSettings, PipelineError, ProcessConfig, process_video
from pipeline.parallel import process_video_parallel
from pipeline.segments import Segment, SegmentTask
from pipeline.worker import SegmentWorker
from tests.conftest import make_identity_model
from tests.media import make_clip

CHANGED = ProcessConfig(
    precision="fp32", batch_size=3, tile=96, tile_overlap=8,
    encoder=EncoderSettings(codec="libx264", crf=10, preset="ultrafast", pix_fmt="yuv444p",
                            threads=1),
    decode_threads=2, convert_threads=2, hwdec="auto", queue_frames=5, cpu_threads=1,
    compile=True, strength=0.5, ensemble=2, accept_damaged=True, progress=False, overwrite=True,
)
# Fields the driver uses rather than the stage loop, and the tests that check them.
DRIVER_FIELDS = {
    "model": "test_pipeline_parallel (workers load config.model)",
    "device": "test_pipeline_parallel (cuda:N on a worker is its one GPU)",
    "overwrite": "test_pipeline_errors / test_pipeline_parallel (existing outputs)",
    "progress": "the progress bar is disabled (nothing to spy on)",
    "compare": "test_compare_is_refused_on_workers below",
    "reference": "goes with compare",
}


class Spies:
    """Records the keyword arguments the reader, restorer, stage loop and writer were given."""

    def __init__(self, monkeypatch, module) -> None:
        self.seen: dict[str, dict] = {}
        real_reader, real_stages = module.FrameReader, module.run_stages
        real_restorer, real_writer = pipeline.restorer.Restorer, module.VideoWriter

        def reader(path, **kwargs):
            self.seen["reader"] = kwargs
            return real_reader(path, **{**kwargs, "hwdec": "none"})  # no GPU decoder here

        def restorer(model, **kwargs):
            self.seen["restorer"] = kwargs
            return real_restorer(model, **{**kwargs, "compile": False})  # compiling takes long

        def stages(items, restorer, info, **kwargs):
            self.seen["stages"] = kwargs
            return real_stages(items, restorer, info, **kwargs)

        def writer(path, info, **kwargs):
            self.seen["writer"] = kwargs
            return real_writer(path, info, **kwargs)

        monkeypatch.setattr(module, "FrameReader", reader)
        monkeypatch.setattr(module, "run_stages", stages)
        monkeypatch.setattr(module, "VideoWriter", writer)
        monkeypatch.setattr(pipeline.restorer, "Restorer", restorer)

    def check(self, config: ProcessConfig) -> set[str]:
        """Assert every stage-loop setting arrived; return the fields covered."""
        reader, restorer = self.seen["reader"], self.seen["restorer"]
        stages, writer = self.seen["stages"], self.seen["writer"]
        assert reader["threads"] == config.decode_threads
        assert reader["hwdec"] == config.hwdec
        assert reader["convert_threads"] == config.convert_threads
        assert reader["accept_damaged"] == config.accept_damaged
        assert stages["queue_frames"] == config.queue_frames
        assert stages["convert_threads"] == config.convert_threads
        assert writer["settings"] == config.encoder
        for name in ("precision", "batch_size", "tile", "tile_overlap", "compile",
                     "cpu_threads", "strength", "ensemble"):
            assert restorer[name] == getattr(config, name), name
        return {"decode_threads", "hwdec", "convert_threads", "accept_damaged", "queue_frames",
                "encoder", "precision", "batch_size", "tile", "tile_overlap", "compile",
                "cpu_threads", "strength", "ensemble"}


def _every_field_covered(covered: set[str]) -> None:
    fields = {f.name for f in dataclasses.fields(ProcessConfig)}
    assert fields - covered - set(DRIVER_FIELDS) == set()
    for name in fields - set(DRIVER_FIELDS):  # the test config changes every one
        assert getattr(CHANGED, name) != getattr(ProcessConfig(), name), name


@pytest.fixture
def clip(tmp_path) -> Path:
    return make_clip(tmp_path / "clip.mp4", frames=10, width=64, height=48).path


def test_one_process_honours_every_setting(monkeypatch, clip, tmp_path):
    spies = Spies(monkeypatch, pipeline.process)
    result = process_video(clip, tmp_path / "out.mp4", config=CHANGED, model=make_identity_model())
    assert result.frames == 10
    _every_field_covered(spies.check(CHANGED))


def test_a_ray_worker_honours_every_setting(monkeypatch, clip, tmp_path):
    # The worker class runs here as a plain object: what Ray adds is transport, tested in
    # test_pipeline_parallel. The driver hands each task the run's config with the video's
    # encoder (pipeline.scheduler.Run._dispatch).
    spies = Spies(monkeypatch, pipeline.segments)
    worker = SegmentWorker(CHANGED, shipped=True)
    worker._load(make_identity_model())
    task = SegmentTask(input=clip, segment=Segment(index=0, start_pts=None, end_pts=None,
                                                   frames=10),
                       path=tmp_path / "segment.mp4", output_name=tmp_path / "out.mp4",
                       config=CHANGED)
    result = worker.restore(task)
    assert result.frames == 10
    _every_field_covered(spies.check(CHANGED))


def test_compare_is_refused_on_workers(clip, tmp_path):
    config = ProcessConfig(compare=tmp_path / "compare.png", progress=False)
    with pytest.raises(PipelineError, match="--compare works with one worker"):
        process_video_parallel(clip, tmp_path / "out.mp4", config=config,
                               model=make_identity_model())
    assert not (tmp_path / "out.mp4").exists()
