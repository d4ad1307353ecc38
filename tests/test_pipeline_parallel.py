"""One video across several Ray workers: segments cut at keyframes, restored apart, stitched.

What users care about: the output of N workers has exactly the frames, timestamps and audio
of the input and of a one-worker run (bit-identical frames at a lossless setting), for B-frame
MP4 with an edit list, variable frame rate, and lengths that don't divide evenly; a worker
killed mid-segment costs nothing; an error in a segment fails the run and leaves no file.

All Ray tests share one local Ray instance and one pool of 4 CPU workers (a run with N workers
uses N of them), so the module stays fast on a small machine.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import ray
import torch

import pipeline.resume
import pipeline.scheduler
from models import RRDBNet
from pipeline import EncoderSettings, PipelineError, ProcessConfig, process_video
from pipeline import cli
from pipeline.cluster import ParallelConfig
from pipeline.ffmpeg_cli import ffmpeg_exe
from pipeline.parallel import WorkerPool, process_video_parallel
from pipeline.restorer import Restorer
from pipeline.segments import (Segment, SegmentMismatch, SegmentTask, StraightDecode, plan_segments,
                               restore_segment, scan_keyframes, segment_items)
from pipeline.stitch import stitch
from pipeline.video_reader import X264_FIXED_444_CORE, FrameReader, probe, read_timestamps
from pipeline.worker import KILL_WORKER_ONCE_ENV
from tests.conftest import make_identity_model
import pipeline.process
from tests.media import (audio_packet_times, frame_times, make_clip, make_old_x264_444_clip,
                         packet_counts, stream_summary)

GOP = 8                          # keyframe interval of the test clips
X264_GOP = {"x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0", "bf": "3"}
LOSSLESS = EncoderSettings(codec="libx264", crf=0, pix_fmt="yuv444p")
QUIET = ProcessConfig(progress=False)
BT709 = {"color_primaries": 1, "color_trc": 1, "colorspace": 1, "color_range": 1}


# -- media -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("parallel-media")
    clips = {
        # B-frames in MP4 (an edit list shifts them), AAC audio, 45 frames = 5 GOPs + 5,
        # rotated and colour-tagged.
        "mp4": make_clip(folder / "bframes.mp4", frames=45, options=X264_GOP, audio="aac",
                         rotation=90, colour=BT709),
        # Variable frame rate, Matroska, Opus audio and SubRip subtitles, 37 frames.
        "vfr": make_clip(folder / "vfr.mkv", frames=37, vfr=True, options=X264_GOP,
                         audio="libopus", subtitles=True),
        # Every frame a keyframe: neighbours for a segment lie several "GOPs" back.
        "intra": make_clip(folder / "intra.mkv", frames=20, codec="ffv1", pix_fmt="yuv444p"),
        # A raw H.264 stream: no timestamps to seek by.
        "raw": make_clip(folder / "raw.h264", frames=30, options=X264_GOP),
    }
    return {name: clip.path for name, clip in clips.items()}


def decoded(path: Path) -> list[np.ndarray]:
    return [frame.rgb for frame in FrameReader(path).frames()]


def audio_packets(path: Path) -> list[tuple[float, bytes]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [(float(p.pts * p.time_base), bytes(p)) for p in container.demux(stream) if p.size]


def stream_properties(path: Path) -> tuple:
    """Rotation and colour tags, as the pipeline reads them."""
    reader = FrameReader(path)
    next(reader.frames())
    return reader.display_matrix, reader.colour


def neighbour_model(motion: str = "none") -> RRDBNet:
    """A 3-frame model whose output depends on both neighbours (random, fixed weights), and
    with ``motion`` on the flow to them too."""
    torch.manual_seed(0)
    model = RRDBNet(num_feat=4, num_block=1, num_grow_ch=4, downscale=4, in_frames=3, motion=motion)
    return model.eval()


# -- planning and the worker side, without Ray ------------------------------------------------

def test_plan_cuts_at_keyframes_into_similar_segments(media):
    scan = scan_keyframes(probe(media["mp4"]))
    assert scan.frames == 45 and len(scan.keyframes) == 6 and scan.splittable
    segments = plan_segments(scan, 3, context=1)
    assert len(segments) == 3
    assert sum(s.frames for s in segments) == 45
    assert [s.start_pts for s in segments][1:] == [s.end_pts for s in segments][:-1]
    assert all(s.start_pts in scan.keyframes for s in segments[1:])
    assert max(s.frames for s in segments) - min(s.frames for s in segments) <= GOP
    # More segments than GOPs: one per GOP, never an empty one.
    assert [s.frames for s in plan_segments(scan, 20)] == [8, 8, 8, 8, 8, 5]


@pytest.mark.parametrize("clip", ["mp4", "vfr", "intra"])
@pytest.mark.parametrize("context", [0, 1, 2])
def test_union_of_segments_is_exactly_the_single_pass(media, clip, context):
    path = media[clip]
    full = [f.pts for f in FrameReader(path).frames()]
    scan = scan_keyframes(probe(path))
    for count in (2, 3, 5):
        union = []
        for segment in plan_segments(scan, count, context=context):
            items = list(segment_items(FrameReader(path), segment, context))
            targets = [f.pts for f, is_target in items if is_target]
            neighbours = [f.pts for f, is_target in items if not is_target]
            assert len(neighbours) == 2 * context
            # The neighbours are the frames just outside the segment (edge frame replicated
            # only at the clip's ends), exactly what the one-pass path feeds the model.
            first, last = full.index(targets[0]), full.index(targets[-1])
            padded = [full[0]] * context + full + [full[-1]] * context
            assert neighbours[:context] == padded[first:first + context]
            assert neighbours[context:] == padded[last + 1 + context:last + 1 + 2 * context]
            union += targets
        assert union == full


def test_segment_that_disagrees_with_its_packets_is_refused(media):
    scan = scan_keyframes(probe(media["mp4"]))
    segment = plan_segments(scan, 3)[1]
    wrong = Segment(index=segment.index, start_pts=segment.start_pts, end_pts=segment.end_pts,
                    frames=segment.frames + 1, seek_points=segment.seek_points)
    with pytest.raises(SegmentMismatch, match="packets say"):
        list(segment_items(FrameReader(media["mp4"]), wrong, 0))


@pytest.mark.parametrize("motion", ["none", "aligned+flow"])
def test_segments_with_neighbours_stitch_to_the_single_pass_bit_for_bit(media, tmp_path, motion):
    """A 3-frame model sees the right neighbours (and the flow to them) across every join
    (no Ray involved)."""
    model = neighbour_model(motion)
    config = ProcessConfig(progress=False, batch_size=1, encoder=LOSSLESS)
    single = process_video(media["mp4"], tmp_path / "single.mp4", config=config, model=model)
    restorer = Restorer(model, device=torch.device("cpu"), batch_size=1)
    info = probe(media["mp4"])
    segments = plan_segments(scan_keyframes(info), 4, context=restorer.context)
    results = [restore_segment(SegmentTask(input=media["mp4"], segment=s,
                                           path=tmp_path / f"seg{s.index}.mp4",
                                           output_name=tmp_path / "joined.mp4",
                                           config=ProcessConfig(encoder=LOSSLESS)), restorer)
               for s in segments]
    for result in results:  # every segment file opens on a keyframe
        with av.open(str(result.path)) as container:
            assert next(container.demux(container.streams.video[0])).is_keyframe
    StraightDecode(media["mp4"], ProcessConfig()).check(results)  # the frames of one pass
    assert stitch(results, info, tmp_path / "joined.mp4") == 45
    assert read_timestamps(tmp_path / "joined.mp4") == read_timestamps(single.output)
    a, b = decoded(single.output), decoded(tmp_path / "joined.mp4")
    assert len(a) == len(b) == 45
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


# An H.264 4:4:4 stream whose version note names an x264 build before core 151: FFmpeg decodes
# it differently after a seek than from its start (and, this being a re-labelled modern
# stream, flags frames of the straight decode as decoded with errors: --accept-damaged). One
# decoder thread: with several, FFmpeg's frame threads pick up the note at random.
# Lossless, so "the same frames" is exact: x264's lossy output of identical frames differs now
# and then from run to run (seen here: 1 run in ~9, drifting to 35 dB on these tiny frames).
ACCEPT = ProcessConfig(progress=False, accept_damaged=True, encoder=LOSSLESS)
STRICT = ProcessConfig(progress=False, encoder=LOSSLESS)


@pytest.fixture(scope="module")
def old_x264(tmp_path_factory) -> Path:
    return make_old_x264_444_clip(tmp_path_factory.mktemp("old-x264") / "old444.mp4").path


def same_frames(a: Path, b: Path) -> bool:
    """Frame for frame the same pixels (of lossless encodes)."""
    x, y = decoded(a), decoded(b)
    return len(x) == len(y) and all(np.array_equal(f, g) for f, g in zip(x, y))


def test_old_x264_is_decoded_the_same_every_time(old_x264):
    # FFmpeg's threads decoded 30-34 of its 48 frames otherwise, differently from run to run.
    assert probe(old_x264).x264_core == X264_FIXED_444_CORE - 1
    straight = [f.rgb for f in FrameReader(old_x264, threads=1, accept_damaged=True).frames()]
    for _ in range(3):
        default = [f.rgb for f in FrameReader(old_x264, accept_damaged=True).frames()]
        assert len(default) == 48
        assert all(np.array_equal(a, b) for a, b in zip(straight, default))
    clip = make_clip(old_x264.parent / "new444.mp4", frames=4, pix_fmt="yuv444p")
    assert probe(clip.path).x264_core >= X264_FIXED_444_CORE
    assert probe(make_clip(old_x264.parent / "new420.mp4", frames=4).path).x264_core is None


def test_segments_that_decode_differently_after_a_seek_are_refused(old_x264, tmp_path):
    restorer = Restorer(make_identity_model(), device=torch.device("cpu"))
    segments = plan_segments(scan_keyframes(probe(old_x264)), 4)
    results = [restore_segment(SegmentTask(input=old_x264, segment=s, config=ACCEPT,
                                           path=tmp_path / f"seg{s.index}.mp4",
                                           output_name=tmp_path / "joined.mp4"), restorer)
               for s in segments]
    assert sum(r.frames for r in results) == 48
    with pytest.raises(SegmentMismatch, match="decodes differently after a seek"):
        StraightDecode(old_x264, ACCEPT).check(results)


def test_long_video_that_decodes_differently_after_a_seek_is_done_in_one_pass(
        old_x264, tmp_path, monkeypatch, caplog):
    model = make_identity_model()
    single = process_video(old_x264, tmp_path / "single.mp4", config=ACCEPT, model=model)
    monkeypatch.setattr(pipeline.process, "RESUME_SEGMENT_FRAMES", 12)  # 4 resumable segments
    with caplog.at_level(logging.WARNING, logger="pipeline.process"):
        out = process_video(old_x264, tmp_path / "segmented.mp4", config=ACCEPT, model=model)
    assert "in one pass instead" in caplog.text
    assert out.frames == 48 and same_frames(out.output, single.output)


# -- on Ray ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pool():
    """Four CPU workers with a 3-frame identity model (so every join needs neighbours)."""
    started = not ray.is_initialized()
    if started:
        # More CPUs than cores: the CLI test starts a second pool beside this one.
        ray.init(address="local", num_cpus=8, include_dashboard=False,
                 logging_level=logging.WARNING)
    with WorkerPool(ProcessConfig(progress=False),
                    parallel=ParallelConfig(workers=4), model=make_identity_model(3)) as workers:
        yield workers
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def single(media, tmp_path_factory):
    """One-worker, in-process outputs to compare with."""
    folder = tmp_path_factory.mktemp("single")
    model = make_identity_model(3)
    lossless = ProcessConfig(progress=False, encoder=LOSSLESS)
    return {
        "mp4": process_video(media["mp4"], folder / "mp4.mp4", config=QUIET, model=model).output,
        "vfr": process_video(media["vfr"], folder / "vfr.mkv", config=QUIET, model=model).output,
        "lossless": process_video(media["mp4"], folder / "lossless.mp4", config=lossless,
                                  model=model).output,
    }


@pytest.mark.slow  # a local Ray pool
@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_n_workers_give_the_single_worker_output(pool, media, single, tmp_path, workers):
    run = ParallelConfig(workers=workers)
    # Default encoder settings: same frames, timestamps and audio as input and one worker.
    out = process_video_parallel(media["mp4"], tmp_path / "out.mp4", config=QUIET,
                                 parallel=run, pool=pool)
    assert out.frames == 45
    assert read_timestamps(out.output) == read_timestamps(media["mp4"])
    assert read_timestamps(out.output) == read_timestamps(single["mp4"])
    assert audio_packets(out.output) == audio_packets(media["mp4"])
    assert stream_summary(out.output) == stream_summary(single["mp4"])
    assert stream_properties(out.output) == stream_properties(media["mp4"])
    # Lossless: bit-identical frames to the one-worker run.
    lossless = process_video_parallel(media["mp4"], tmp_path / "lossless.mp4", parallel=run,
                                      config=ProcessConfig(progress=False, encoder=LOSSLESS),
                                      pool=pool)
    a, b = decoded(single["lossless"]), decoded(lossless.output)
    assert len(a) == len(b) == 45 and all(np.array_equal(x, y) for x, y in zip(a, b))
    # Variable frame rate, 37 frames (no multiple of the segment size), Opus audio.
    vfr = process_video_parallel(media["vfr"], tmp_path / "vfr.mkv", config=QUIET,
                                 parallel=run, pool=pool)
    assert vfr.frames == 37
    assert read_timestamps(vfr.output) == read_timestamps(media["vfr"])
    assert read_timestamps(vfr.output) == read_timestamps(single["vfr"])
    assert audio_packets(vfr.output) == audio_packets(single["vfr"])
    assert stream_summary(vfr.output) == stream_summary(single["vfr"])
    assert [kind for kind, _ in stream_summary(vfr.output)] == ["video", "audio", "subtitle"]
    assert packet_counts(vfr.output) == packet_counts(single["vfr"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


@pytest.mark.slow  # a local Ray pool
def test_video_that_starts_late_keeps_its_timestamps(pool, media, tmp_path):
    """A stream starting at 0.5213 s (cut from a longer recording): MP4 stores the start as an
    edit list, which must not round any frame's time in the joined file."""
    late = tmp_path / "late.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(media["mp4"]), "-c", "copy",
                    "-output_ts_offset", "0.5213", str(late)], check=True)
    assert read_timestamps(late)[0] == pytest.approx(0.5213, abs=1e-3)
    out = process_video_parallel(late, tmp_path / "out.mp4", config=QUIET,
                                 parallel=ParallelConfig(workers=2), pool=pool)
    assert read_timestamps(out.output) == read_timestamps(late)


@pytest.mark.slow  # a local Ray pool
@pytest.mark.parametrize("suffix", [".ts", ".m2ts"])
def test_mpeg_ts_on_two_workers_gives_the_single_worker_output(pool, media, tmp_path, suffix):
    """Transport streams as broadcast and camcorders write them (made by the ffmpeg command
    line: a 1.4 s start offset, 1/90000 time base, B-frames, AAC): FFmpeg's seek in them can
    land a GOP late, and its command line delays TS timestamps unless told not to."""
    clip = tmp_path / f"clip{suffix}"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(media["mp4"]),
                    "-c", "copy", str(clip)], check=True)
    assert read_timestamps(clip)[0] > 1.0
    model = make_identity_model(3)
    config = ProcessConfig(progress=False, encoder=LOSSLESS)
    single = process_video(clip, tmp_path / f"single{suffix}", config=config, model=model)
    split = process_video_parallel(clip, tmp_path / f"split{suffix}", config=config,
                                   parallel=ParallelConfig(workers=2), pool=pool)
    assert single.frames == split.frames == 45
    assert read_timestamps(split.output) == read_timestamps(single.output) == read_timestamps(clip)
    assert audio_packets(split.output) == audio_packets(single.output)
    a, b = decoded(single.output), decoded(split.output)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.slow  # a local Ray pool
@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
def test_avi_with_b_frames_on_two_workers_keeps_its_timeline(pool, tmp_path, suffix, caplog):
    """XviD-like AVI (MPEG-4 Part 2 with B-frames, AC-3): into AVI the video is done whole by
    one worker (AVI segments don't join exactly); into Matroska it is split. Either way frame
    and audio times are the one-worker run's."""
    clip = make_clip(tmp_path / "xvid.avi", frames=40, codec="mpeg4",
                     options={"bf": "2", "g": str(GOP)}, audio="ac3").path
    model = make_identity_model(3)
    single = process_video(clip, tmp_path / f"single{suffix}", config=QUIET, model=model)
    with caplog.at_level(logging.WARNING, logger="pipeline.scheduler"):
        split = process_video_parallel(clip, tmp_path / f"split{suffix}", config=QUIET,
                                       parallel=ParallelConfig(workers=2), pool=pool)
    assert ("one worker processes it whole" in caplog.text) == (suffix == ".avi")
    assert "as one segment instead" not in caplog.text  # the split into Matroska held
    assert single.frames == split.frames == 40
    tolerance = 1e-3 if suffix == ".mkv" else 1e-9
    assert frame_times(split.output) == pytest.approx(frame_times(single.output), abs=tolerance)
    assert audio_packet_times(split.output) == pytest.approx(audio_packet_times(single.output),
                                                              abs=tolerance)


@pytest.mark.slow  # a local Ray pool
def test_interrupted_run_resumes_on_workers(pool, media, tmp_path, monkeypatch):
    """Ctrl-C after two of four segments: the same call again restores the other two and the
    output is the uninterrupted run's, byte for byte."""
    config = ProcessConfig(progress=False, encoder=LOSSLESS)
    run = ParallelConfig(workers=2)
    whole = process_video_parallel(media["mp4"], tmp_path / "whole.mp4", config=config,
                                   parallel=run, pool=pool)
    real = pipeline.resume.ResumeFolder.record
    recorded = []

    def record(folder, result):
        real(folder, result)
        recorded.append(result.index)
        if len(recorded) == 2:
            raise KeyboardInterrupt

    output = tmp_path / "out.mp4"
    with monkeypatch.context() as patch:
        patch.setattr(pipeline.resume.ResumeFolder, "record", record)
        with pytest.raises(KeyboardInterrupt):
            process_video_parallel(media["mp4"], output, config=config, parallel=run, pool=pool)
    assert not output.exists()
    dispatched = []
    real_segment_task = pipeline.scheduler.SegmentTask

    def task(**kwargs):
        dispatched.append(kwargs["segment"].index)
        return real_segment_task(**kwargs)

    monkeypatch.setattr(pipeline.scheduler, "SegmentTask", task)
    resumed = process_video_parallel(media["mp4"], output, config=config, parallel=run, pool=pool)
    assert sorted(dispatched) == sorted(set(range(4)) - set(recorded))
    assert resumed.frames == 45
    assert output.read_bytes() == whole.output.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow  # a local Ray pool
def test_worker_killed_mid_segment_is_replaced(pool, media, single, tmp_path, monkeypatch,
                                               caplog):
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_WORKER_ONCE_ENV, str(marker))
    config = ProcessConfig(progress=False, encoder=LOSSLESS)
    with caplog.at_level(logging.WARNING, logger="pipeline.scheduler"):
        out = process_video_parallel(media["mp4"], tmp_path / "out.mp4", config=config,
                                     parallel=ParallelConfig(workers=2), pool=pool)
    assert marker.exists(), "the test hook did not kill a worker"
    assert "redoing the segment" in caplog.text
    a, b = decoded(single["lossless"]), decoded(out.output)
    assert len(a) == len(b) == 45 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert read_timestamps(out.output) == read_timestamps(media["mp4"])


@pytest.mark.slow  # a local Ray pool
def test_error_in_a_segment_fails_the_run_and_writes_nothing(pool, media, tmp_path):
    # ffv1 takes no --crf: every segment's encoder refuses, the error surfaces as it is.
    bad = ProcessConfig(progress=False, encoder=EncoderSettings(codec="ffv1", crf=10))
    with pytest.raises(PipelineError, match="--crf does not apply to encoder ffv1"):
        process_video_parallel(media["mp4"], tmp_path / "out.mkv", config=bad, pool=pool)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # a local Ray pool
def test_unsplittable_video_falls_back_to_one_segment(pool, media, tmp_path, monkeypatch,
                                                      caplog):
    """If decoded frames don't match the packet scan, the video is redone in one piece."""
    real_plan = pipeline.scheduler.plan_segments

    def miscounted(scan, count, *, context=0):
        segments = real_plan(scan, count, context=context)
        s = segments[1]
        segments[1] = Segment(s.index, s.start_pts, s.end_pts, s.frames - 1, s.seek_points)
        return segments

    monkeypatch.setattr(pipeline.scheduler, "plan_segments", miscounted)
    with caplog.at_level(logging.WARNING, logger="pipeline.scheduler"):
        out = process_video_parallel(media["mp4"], tmp_path / "out.mp4", config=QUIET,
                                     parallel=ParallelConfig(workers=2), pool=pool)
    assert "as one segment instead" in caplog.text
    assert read_timestamps(out.output) == read_timestamps(media["mp4"])


@pytest.mark.slow  # a local Ray pool
def test_video_that_decodes_differently_after_a_seek_gives_the_one_worker_frames(
        pool, old_x264, tmp_path, caplog):
    model = make_identity_model(3)
    single = process_video(old_x264, tmp_path / "single.mp4", config=ACCEPT, model=model)
    with (WorkerPool(ACCEPT, parallel=ParallelConfig(workers=2), model=model) as accepting,
          caplog.at_level(logging.WARNING, logger="pipeline.scheduler")):
        out = process_video_parallel(old_x264, tmp_path / "two.mp4", config=ACCEPT,
                                     pool=accepting)
    assert "as one segment instead" in caplog.text
    assert out.frames == 48 and same_frames(out.output, single.output)
    # Without --accept-damaged, the verdict of one worker: refused, nothing written.
    with pytest.raises(PipelineError, match="the input is damaged"):
        process_video(old_x264, tmp_path / "refused.mp4", config=STRICT, model=model)
    with pytest.raises(PipelineError, match="the input is damaged"):
        process_video_parallel(old_x264, tmp_path / "refused.mp4", config=STRICT,
                               parallel=ParallelConfig(workers=2), pool=pool)
    assert not (tmp_path / "refused.mp4").exists()


@pytest.mark.slow  # a local Ray pool
def test_raw_stream_is_processed_whole(pool, media, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.scheduler"):
        out = process_video_parallel(media["raw"], tmp_path / "raw.mkv", config=QUIET, pool=pool)
    assert "one worker processes it whole" in caplog.text
    assert out.frames == 30 and len(read_timestamps(out.output)) == 30


@pytest.mark.slow  # a local Ray pool
def test_cli_routes_workers_to_ray(pool, media, identity_model_file, tmp_path, capsys):
    out = tmp_path / "cli.mp4"
    code = cli.main(["process", str(media["mp4"]), "-o", str(out), "--workers", "2",
                     "--model", identity_model_file, "-q"])
    assert code == 0
    assert f"{out}\t45 frames" in capsys.readouterr().out
    assert read_timestamps(out) == read_timestamps(media["mp4"])


def test_cli_mistakes_are_one_line_before_any_work(media, identity_model_file, tmp_path,
                                                   capsys):
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"x")
    code = cli.main(["process", str(media["mp4"]), "-o", str(existing), "--workers", "2",
                     "--model", identity_model_file])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"error: {existing}: already exists (pass --overwrite to "
                                 f"replace it)"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["process", str(media["mp4"]), "--workers", "0"])
    assert exit_info.value.code == 2
    assert "--workers: must be ≥ 1" in capsys.readouterr().err


@pytest.mark.slow  # starts Ray in a process of its own, as a user's run does
def test_workers_print_warnings_cleanly_and_quiet_is_quiet(identity_model_file, tmp_path):
    """Ray's own notices (token authentication) stay out of a run's output, a worker's warning
    arrives once, as plain text on a line of its own (not in colour codes, not on the progress
    bar's line), and the result names the output as it was given."""
    clip = make_clip(tmp_path / "broadcast.ts", frames=240, width=64, height=48,
                     options={"x264-params": "keyint=24:min-keyint=24:scenecut=0"})
    data = bytearray(clip.path.read_bytes())
    for k in range(30):  # a burst of damage a third of the way in
        data[len(data) // 3 + k * 188 * 3 + 50] ^= 0xFF
    clip.path.write_bytes(bytes(data))

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", "process", "broadcast.ts", "-o", "out.ts",
             "--workers", "2", "--accept-damaged", "--overwrite", "--model",
             identity_model_file, *extra],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})

    quiet = run("-q")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("out.ts\t")  # relative, as without workers
    lines = quiet.stderr.splitlines()
    assert lines and all(line.startswith("WARNING pipeline.") for line in lines), quiet.stderr
    assert len(set(lines)) == len(lines), "each warning once"
    assert any("the input is damaged" in line for line in lines)
    assert "\x1b" not in quiet.stderr and "Token" not in quiet.stderr
    # With the bar drawn (a non-terminal gets it too): every warning starts a line.
    shown = run()
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stderr and "Token" not in shown.stderr
    assert "the input is damaged" in shown.stderr
    for piece in re.split(r"[\r\n]", shown.stderr):
        assert "WARNING" not in piece or piece.startswith("WARNING"), piece


def test_a_hardware_decoders_nv12_frames_give_a_software_decodes_rgb(media):
    """NVDEC hands over NV12; converted straight to RGB, 85 % of its pixels differ from a
    software decode's, and a driver without the GPU its workers have would find every split
    video 'decoding differently' (and redo it in one segment)."""
    reader = FrameReader(media["mp4"])
    software = [f.rgb for f in reader.frames()]
    with av.open(str(media["mp4"])) as container:
        decoded = list(container.decode(video=0))
    for rgb, frame in zip(software, decoded):
        assert np.array_equal(reader._to_rgb(frame.reformat(format="nv12"), "rgb24"), rgb)
