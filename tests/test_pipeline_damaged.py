"""Damaged input: every frame that decodes is restored, and the damage is never silent.

Without --accept-damaged a damaged input (cut short, corrupt packets) fails with the numbers
(frames held vs listed, where the frames stop, where decoding failed) and leaves no output;
with it, the output holds every frame that decodes, at its own timestamp.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from pipeline import PipelineError
from pipeline.cli import main
from pipeline.segments import scan_keyframes
from pipeline.video_reader import FrameReader, probe, read_timestamps
from tests.media import make_clip

FRAMES = 91


def _cut_mp4(tmp_path: Path) -> Path:
    """An MP4 (index first) cut at 90 % of its size, as a failed download leaves it."""
    clip = make_clip(tmp_path / "full.mp4", frames=FRAMES, width=128, height=96, fps=30,
                     audio="aac", container_options={"movflags": "+faststart"})
    data = clip.path.read_bytes()
    cut = tmp_path / "in" / "cut.mp4"
    cut.parent.mkdir()
    cut.write_bytes(data[:len(data) * 9 // 10])
    return cut


def _corrupt_ts(tmp_path: Path) -> Path:
    """An MPEG-TS with three transport packets' payloads garbled in the middle."""
    clip = make_clip(tmp_path / "full.ts", frames=FRAMES, width=128, height=96, fps=30)
    data = bytearray(clip.path.read_bytes())
    middle = len(data) // 188 // 2
    for k in range(middle, middle + 3):
        for i in range(k * 188 + 4, k * 188 + 188):  # keep the 4-byte TS header
            data[i] ^= 0x55
    bad = tmp_path / "in" / "corrupt.ts"
    bad.parent.mkdir()
    bad.write_bytes(bytes(data))
    return bad


def _single_thread_frames(path: Path) -> int:
    """Frames one decoder thread gets out of a damaged file, corrupt packets skipped."""
    import av

    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for packet in container.demux(stream):
            try:
                count += len(stream.decode(packet))
            except av.error.FFmpegError:
                continue
    return count


def _decodable_timestamps(path: Path) -> list[float]:
    reader = FrameReader(path, accept_damaged=True)
    return [float(f.pts * reader.info.time_base) for f in reader.frames()]


@pytest.mark.parametrize("damage, expected", [
    (_cut_mp4, r"it holds \d+ of the 91 frames its header lists; its frames end at"),
    (_corrupt_ts, r"frame\(s\) decoded with errors, the first at 1\.\d\d s"),
])
def test_damaged_input_fails_with_numbers_unless_accepted(tmp_path, capsys, caplog,
                                                          identity_model_file,
                                                          damage, expected):
    source = damage(tmp_path)
    out = tmp_path / "out" / f"restored{source.suffix}"
    out.parent.mkdir()
    code = main(["process", "-q", str(source), "-o", str(out), "--model", identity_model_file])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "the input is damaged" in lines[0]
    assert "--accept-damaged" in lines[0]
    assert __import__("re").search(expected, lines[0]), lines[0]
    assert list(out.parent.iterdir()) == []

    code = main(["process", "-q", str(source), "-o", str(out), "--model", identity_model_file,
                 "--accept-damaged"])
    captured = capsys.readouterr()
    assert code == 0
    assert caplog.text.count("the input is damaged") == 1  # still said, as a warning, once
    decodable = _decodable_timestamps(source)
    assert 80 <= len(decodable) < FRAMES
    assert len(decodable) == _single_thread_frames(source)  # none lost to decoder threads
    tick = float(probe(out).time_base)
    assert read_timestamps(out) == pytest.approx(decodable, abs=max(1e-6, tick / 2))
    assert captured.out.split("\t")[1] == f"{len(decodable)} frames"


def test_segment_planning_applies_the_same_rule(tmp_path):
    """Ray runs and `jobs` refuse (or accept) the same inputs as a one-worker run."""
    info = probe(_cut_mp4(tmp_path))
    with pytest.raises(PipelineError, match="the input is damaged"):
        scan_keyframes(info)
    scan = scan_keyframes(info, accept_damaged=True)
    assert scan.frames == len(_decodable_timestamps(info.path))


def test_undamaged_clips_pass(tmp_path):
    for name in ("clip.mp4", "clip.ts", "clip.mkv"):
        clip = make_clip(tmp_path / name, frames=30)
        assert len(list(FrameReader(clip.path).frames())) == 30
        assert scan_keyframes(probe(clip.path)).frames == 30


def _held_last_frame(path: Path, frames: int = 10, hold_ms: int = 3000, gop: int = 250, bframes: int = 0) -> Path:
    """An MP4 at 25 fps whose last picture stays on screen for ``hold_ms`` (a screen recording
    or slideshow): its stated duration is the hold's end, far past the last timestamp."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"bf": str(bframes), "g": str(gop)}
        packets = []
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20 % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i * 40, Fraction(1, 1000)
            packets += stream.encode(frame)
        packets += stream.encode(None)
        for packet in packets:
            packet.duration = 40
        packets[-1].duration = hold_ms
        for packet in packets:
            out.mux(packet)
    return path


@pytest.mark.parametrize("bframes", [0, 2])
def test_a_long_held_last_frame_is_not_damage(tmp_path, capsys, identity_model_file, bframes):
    """The last frame lasts what its packet says: the file is whole, and every frame comes out
    at its own time (with B-frames too, where the last packet in decode order is not the last
    frame shown)."""
    source = _held_last_frame(tmp_path / "held.mp4", bframes=bframes)
    stated = probe(source).stream_duration  # 3.36 s; with B-frames MP4 states 3.32
    assert stated == pytest.approx(3.36 if bframes == 0 else 3.32, abs=0.01)
    out = tmp_path / "held.deblurred.mp4"
    code = main(["process", "-q", str(source), "-o", str(out), "--model", identity_model_file])
    assert code == 0, capsys.readouterr().err
    assert read_timestamps(out) == pytest.approx([i * 0.04 for i in range(10)], abs=1e-3)
    assert probe(out).stream_duration == pytest.approx(stated, abs=0.05)  # the hold is kept
    assert scan_keyframes(probe(source)).frames == 10


@pytest.mark.parametrize("name", ["held.deblurred.mkv", "held.deblurred.mov"])
def test_the_hold_of_a_last_frame_survives_segments(tmp_path, capsys, identity_model_file, monkeypatch, name):
    """Restored in segments (resumable output) and joined, the video still lasts until the
    input's last frame ends, not one frame after its timestamp."""
    import pipeline.process

    monkeypatch.setattr(pipeline.process, "RESUME_SEGMENT_FRAMES", 8)  # 3 segments of 8 frames
    joined = []

    def stitch(results, *args, **kwargs):
        joined.append(len(results))
        return original(results, *args, **kwargs)

    original = pipeline.process.stitch
    monkeypatch.setattr(pipeline.process, "stitch", stitch)
    source = _held_last_frame(tmp_path / "held.mp4", frames=24, hold_ms=2000, gop=8)
    out = tmp_path / name
    code = main(["process", "-q", str(source), "-o", str(out), "--model", identity_model_file])
    assert code == 0, capsys.readouterr().err
    assert joined == [3]
    assert read_timestamps(out) == pytest.approx([i * 0.04 for i in range(24)], abs=1e-3)
    assert probe(out).stream_duration == pytest.approx(0.92 + 2.0, abs=0.01)


def test_an_ordinary_last_frame_keeps_the_stream_as_long_as_the_input(tmp_path, capsys, identity_model_file):
    """Without a hold, the last frame lasts one interval as before: the output's video (B-frames,
    MP4) lasts as long as the input's, and its average rate is the input's."""
    import av

    clip = make_clip(tmp_path / "clip.mp4", frames=12, codec="libx265")  # B-frames in and out
    out = tmp_path / "clip.deblurred.mp4"
    assert main(["process", "-q", str(clip.path), "-o", str(out), "--model", identity_model_file]) == 0, \
        capsys.readouterr().err
    rates = []
    for path in (clip.path, out):
        with av.open(str(path)) as container:
            rates.append(container.streams.video[0].average_rate)
    assert rates[1] == rates[0]
    assert probe(out).stream_duration == pytest.approx(probe(clip.path).stream_duration, abs=1e-3)


def test_a_gap_in_a_variable_rate_mp4_does_not_stretch_its_last_frame(tmp_path, capsys, identity_model_file):
    """MP4 packet durations are decode-time gaps: with B-frames, a gap in the frame times ends
    up on a frame shown late, and pts + duration overshoots the end. The output lasts as long
    as the input, its last frame one interval."""
    import av
    import numpy as np

    source = tmp_path / "vfr.mp4"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i in [*range(5), *range(16, 25)]:  # frames 5-15 dropped: a 0.48 s gap
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 9, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i * 40, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert probe(source).stream_duration == pytest.approx(1.0, abs=0.01)
    out = tmp_path / "vfr.deblurred.mp4"
    code = main(["process", "-q", str(source), "-o", str(out), "--model", identity_model_file])
    assert code == 0, capsys.readouterr().err
    assert read_timestamps(out) == pytest.approx(read_timestamps(source), abs=1e-3)
    assert probe(out).stream_duration == pytest.approx(1.0, abs=0.01)


def test_a_matroska_video_starting_late_is_whole(tmp_path, capsys, identity_model_file):
    """FFmpeg states a Matroska stream's duration as where it ends (11 s for one second starting
    at 10 s, as cuts made with -copyts are): the video is whole, not cut short."""
    import av
    import numpy as np

    source = tmp_path / "late.mkv"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 9, np.uint8), format="rgb24")
            frame.pts, frame.time_base = 250 + i, Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with av.open(str(source)) as container:
        assert container.streams.video[0].metadata["DURATION"].startswith("00:00:11")
    out = tmp_path / "late.deblurred.mkv"
    code = main(["process", "-q", str(source), "-o", str(out), "--model", identity_model_file])
    assert code == 0, capsys.readouterr().err
    assert read_timestamps(out) == pytest.approx([10 + i * 0.04 for i in range(25)], abs=1e-3)


def test_accepted_damage_loses_no_frame_that_decodes(tmp_path, capsys, identity_model_file):
    """Frame threads drop the frames in flight where a cut file's last packet fails (here 24 of
    26 on this machine); an input accepted as damaged is decoded so that none is lost."""
    clip = make_clip(tmp_path / "full.mp4", frames=50, width=320, height=180, fps=25, audio="aac",
                     container_options={"movflags": "+faststart"})
    data = clip.path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) * 6 // 10])
    out = tmp_path / "out.mp4"
    code = main(["process", "-q", str(cut), "-o", str(out), "--model", identity_model_file, "--accept-damaged"])
    assert code == 0, capsys.readouterr().err
    assert len(read_timestamps(out)) == _single_thread_frames(cut)

