"""Bad input gets one clear line on stderr, a non-zero exit, and no output file."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.cli import main
from tests.media import make_clip


def _run(capsys, *args) -> tuple[int, str]:
    code = main(["process", "-q", *map(str, args)])
    err = capsys.readouterr().err.strip()
    return code, err


def _assert_clean_failure(code: int, err: str, folder: Path, expected: str, inputs: set[str]):
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert expected in lines[0]
    assert "Traceback" not in err
    assert {p.name for p in folder.iterdir()} == inputs, "no output or partial file may remain"


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        stream.layout = "mono"
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, i * 1024, Fraction(1, 48000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _zero_frames(path: Path) -> None:
    """A Matroska file with a video stream that holds no frames (and some audio)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=48000)
        audio.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, 0, Fraction(1, 48000)
        for packet in [*audio.encode(frame), *audio.encode()]:
            container.mux(packet)


def test_missing_file(tmp_path, capsys):
    code, err = _run(capsys, tmp_path / "nope.mp4")
    _assert_clean_failure(code, err, tmp_path, "no such file", set())


def test_directory(tmp_path, capsys):
    (tmp_path / "dir.mp4").mkdir()
    code, err = _run(capsys, tmp_path / "dir.mp4")
    _assert_clean_failure(code, err, tmp_path, "is a directory", {"dir.mp4"})


def test_not_a_video(tmp_path, capsys):
    (tmp_path / "notes.mp4").write_text("these are not frames\n" * 50)
    code, err = _run(capsys, tmp_path / "notes.mp4")
    _assert_clean_failure(code, err, tmp_path, "cannot be read as a video", {"notes.mp4"})


def test_audio_only(tmp_path, capsys):
    _audio_only(tmp_path / "song.m4a")
    code, err = _run(capsys, tmp_path / "song.m4a")
    _assert_clean_failure(code, err, tmp_path, "has no video stream", {"song.m4a"})


def test_zero_frame_video(tmp_path, capsys, identity_model_file):
    _zero_frames(tmp_path / "empty.mkv")
    code, err = _run(capsys, tmp_path / "empty.mkv", "--model", identity_model_file)
    _assert_clean_failure(code, err, tmp_path, "no video frames", {"empty.mkv"})


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_truncated_video(tmp_path, capsys, identity_model_file, suffix):
    # MP4 with its index first (faststart), so the cut is found mid-way, not at opening.
    clip = make_clip(tmp_path / f"full{suffix}", frames=48, container_options=(
        {"movflags": "+faststart"} if suffix == ".mp4" else None))
    data = clip.path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    clip.path.unlink()
    code, err = _run(capsys, cut, "--model", identity_model_file)
    _assert_clean_failure(code, err, tmp_path, "truncated", {cut.name})


def test_output_folder_missing(tmp_path, capsys, identity_model_file):
    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    code, err = _run(capsys, clip.path, "-o", tmp_path / "no" / "out.mp4",
                     "--model", identity_model_file)
    _assert_clean_failure(code, err, tmp_path, "output folder does not exist", {"clip.mp4"})


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_output_folder_not_writable(tmp_path, capsys, identity_model_file):
    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, err = _run(capsys, clip.path, "-o", locked / "out.mp4", "--model", identity_model_file)
    _assert_clean_failure(code, err, tmp_path, "not writable", {"clip.mp4", "locked"})


def test_existing_output_needs_overwrite(tmp_path, capsys, identity_model_file):
    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    existing = tmp_path / "clip.deblurred.mp4"
    existing.write_bytes(b"keep me")
    code, err = _run(capsys, clip.path, "--model", identity_model_file)
    _assert_clean_failure(code, err, tmp_path, "--overwrite", {"clip.mp4", existing.name})
    assert existing.read_bytes() == b"keep me"
    code, _ = _run(capsys, clip.path, "--model", identity_model_file, "--overwrite",
                   "--preset", "ultrafast")
    assert code == 0 and existing.stat().st_size > 1000


@pytest.mark.parametrize("option,expected", [
    (["--codec", "nosuchcodec"], "unknown video encoder"),
    (["--codec", "aac"], "'aac' is an audio encoder, not a video one"),
    (["--preset", "warp9"], "unknown preset"),
    (["--codec", "mpeg4", "--crf", "20"], "--crf does not apply"),
    (["--crf", "55"], "--crf 55 is outside libx264's range 0-51"),
    (["--crf", "99"], "--crf must be between 0 and 63, got 99"),
    (["--crf", "-1"], "--crf must be between 0 and 63, got -1"),
    (["--tile", "16"], "--tile 16 must be larger than twice --tile-overlap (32)"),
    (["--pix-fmt", "rgb565"], "does not support pixel format"),
    (["--device", "tpu"], "unknown device"),
])
def test_bad_encoder_options(tmp_path, capsys, identity_model_file, option, expected):
    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    code, err = _run(capsys, clip.path, "--model", identity_model_file, *option)
    _assert_clean_failure(code, err, tmp_path, expected, {"clip.mp4"})


def test_model_that_does_not_fit(tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    bad = tmp_path / "bad.pth"
    import torch

    torch.save({"params": {"conv_foo.weight": torch.zeros(3, 3)}}, bad)
    code, err = _run(capsys, clip.path, "--model", bad)
    _assert_clean_failure(code, err, tmp_path, "bad.pth", {"clip.mp4", "bad.pth"})


def test_cli_end_to_end_prints_result(tmp_path, capsys, identity_model_file):
    clip = make_clip(tmp_path / "clip.mp4", frames=6)
    code = main(["process", "-q", str(clip.path), "--model", identity_model_file,
                 "--preset", "ultrafast"])
    out = capsys.readouterr().out
    assert code == 0
    assert "clip.deblurred.mp4" in out and "6 frames" in out


@pytest.mark.parametrize("codec", ["h264", "libx264"])
def test_a_format_name_as_codec_means_its_encoder_with_its_settings(tmp_path, capsys, identity_model_file, codec):
    """--codec h264 is libx264: --crf applies, and x264 writes the CRF it was given."""
    clip = make_clip(tmp_path / "clip.mp4", frames=6)
    out = tmp_path / f"{codec}.mp4"
    code, err = _run(capsys, clip.path, "-o", out, "--model", identity_model_file, "--codec", codec,
                     "--crf", "20", "--preset", "ultrafast")
    assert code == 0, err
    assert b"crf=20.0" in out.read_bytes()  # x264's settings, in its SEI message


def test_compare_into_the_output_itself_is_refused(tmp_path, capsys, identity_model_file):
    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    same = tmp_path / "same.mp4"
    code, err = _run(capsys, clip.path, "-o", same, "--compare", same, "--model", identity_model_file)
    _assert_clean_failure(code, err, tmp_path, "--compare must name another file than the output", {"clip.mp4"})


def test_subtitles_only_the_input_container_holds_point_back_to_it(tmp_path, capsys, identity_model_file):
    """MP4's mov_text subtitles go into no Matroska: the error names .mp4, not .mkv."""
    import subprocess

    import imageio_ffmpeg

    clip = make_clip(tmp_path / "plain.mp4", frames=4)
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,100\nhello\n\n")
    source = tmp_path / "clip.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip.path), "-i", str(srt),
                    "-map", "0", "-map", "1", "-c", "copy", "-c:s", "mov_text", str(source)], check=True)
    clip.path.unlink()
    srt.unlink()
    code, err = _run(capsys, source, "-o", tmp_path / "out.mkv", "--model", identity_model_file)
    _assert_clean_failure(code, err, tmp_path, "write to the input's own container (.mp4)", {"clip.mp4"})


@pytest.mark.parametrize("name, expected", [("out.png", ".png holds a picture, not a video"),
                                            ("out.gif", "gif cannot hold libx264 video"),
                                            ("out.mp3", "mp3 cannot hold libx264 video")])
def test_output_format_that_cannot_hold_the_video(tmp_path, capsys, identity_model_file, name, expected):
    clip = make_clip(tmp_path / "clip.mp4", frames=6)
    code, err = _run(capsys, clip.path, "-o", tmp_path / name, "--model", identity_model_file)
    assert code == 2
    _assert_clean_failure(code, err, tmp_path, expected, {"clip.mp4"})
