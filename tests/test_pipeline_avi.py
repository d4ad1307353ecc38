"""AVI and other inputs without a usable clock keep their timeline (issue 12, items 4 and 9a).

AVI has no presentation times: one frame per slot, in decode order, no start time, and audio
timed by its header (per packet, or by bytes). Frame and audio packet times, in seconds, must
come out as they went in, whatever the output container.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction

import av
import imageio_ffmpeg
import pytest

from pipeline.cli import main
from pipeline.video_reader import FrameReader
from pipeline.video_writer import FrameSlots
from tests.media import audio_packet_times, frame_times, make_clip

# Matroska counts milliseconds; the other containers keep times exactly.
MKV_TICK = 1e-3


def _process(capsys, model_file, source, output, *extra) -> None:
    code = main(["process", str(source), "-o", str(output), "--model", model_file, "-q",
                 *map(str, extra)])
    assert code == 0, capsys.readouterr().err


def _avi_audio_is_timed_per_packet(path) -> bool:
    """Whether an AVI's header counts its audio in packets (frames), as players must read
    AC-3 and MP3, rather than in bytes of a fixed sample size."""
    with av.open(str(path)) as container:
        stated = container.streams.audio[0].frames  # the header's stream length
        packets = sum(1 for p in container.demux(audio=0) if p.size)
    return stated == packets


def _has_b_frames(path) -> bool:
    with av.open(str(path)) as container:
        return any(p.pts != p.dts for p in container.demux(video=0) if p.size)


@pytest.mark.parametrize("suffix", [".avi", ".mp4", ".mkv"])
def test_avi_with_b_frames_and_ac3_keeps_frame_and_audio_times(tmp_path, capsys,
                                                               identity_model_file, suffix):
    clip = make_clip(tmp_path / "xvid.avi", frames=12, codec="mpeg4", options={"bf": "2"},
                     audio="ac3")
    assert _has_b_frames(clip.path), "the fixture must really have B-frames"
    out = tmp_path / f"out{suffix}"
    _process(capsys, identity_model_file, clip.path, out)
    tolerance = MKV_TICK / 2 if suffix == ".mkv" else 1e-9
    # The first frame is shown one slot late (the B-frame delay): that slot is kept too.
    assert frame_times(clip.path)[0] == pytest.approx(1 / 24)
    assert frame_times(out) == pytest.approx(frame_times(clip.path), abs=tolerance)
    audio = audio_packet_times(clip.path)
    assert len(audio) == clip.audio_packets
    assert audio_packet_times(out) == pytest.approx(audio, abs=tolerance)
    if suffix == ".avi":
        assert _avi_audio_is_timed_per_packet(out)


def test_avi_with_mp3_audio_keeps_audio_times(tmp_path, capsys, identity_model_file):
    clip = make_clip(tmp_path / "xvid.avi", frames=12, codec="mpeg4", options={"bf": "2"},
                     audio="libmp3lame")
    out = tmp_path / "out.avi"
    _process(capsys, identity_model_file, clip.path, out)
    assert frame_times(out) == pytest.approx(frame_times(clip.path), abs=1e-9)
    assert audio_packet_times(out) == pytest.approx(audio_packet_times(clip.path), abs=1e-9)
    # FFmpeg reads MP3 times from the packets themselves; other players go by the header.
    assert _avi_audio_is_timed_per_packet(out)


@pytest.mark.parametrize("suffix,codec", [(".avi", None), (".mkv", "mpeg4")])
def test_mpeg_ts_into_mpeg4_keeps_frame_count_and_times(tmp_path, capsys, identity_model_file,
                                                        suffix, codec):
    # MPEG-TS counts in 1/90000 s, a time base MPEG-4 Part 2 can't encode; broadcasts start
    # anywhere on that clock.
    clip = make_clip(tmp_path / "broadcast.ts", frames=12, time_base=Fraction(1, 90000),
                     audio="mp2", container_options={"output_ts_offset": "10"})
    out = tmp_path / f"out{suffix}"
    _process(capsys, identity_model_file, clip.path, out, *(["--codec", codec] if codec else []))
    before, after = frame_times(clip.path), frame_times(out)
    assert len(after) == clip.frames
    if suffix == ".avi":
        # AVI has no start time: the video starts at 0, its frames as far apart as before,
        # and the audio keeps its place against the video.
        assert before[0] >= 10 and after[0] == 0.0
        assert after == pytest.approx([t - before[0] for t in before], abs=1e-9)
        audio = [t - before[0] for t in audio_packet_times(clip.path)]
        assert audio_packet_times(out) == pytest.approx([t - audio[0] for t in audio], abs=1e-9)
        assert abs(audio[0]) < 1 / 24, "the audio starts within a frame of the video"
    else:
        assert after == pytest.approx(before, abs=MKV_TICK / 2)
        assert audio_packet_times(out) == pytest.approx(audio_packet_times(clip.path),
                                                        abs=MKV_TICK / 2)


def test_frame_slots_keep_frames_on_the_grid_and_move_the_others_forward():
    slots = FrameSlots(Fraction(1, 24), origin=Fraction(1), tolerance=Fraction(1, 2000))
    # 1 s, 1/24 s later, a frame 1 ms off the grid, then one whose slot is already taken.
    times = [Fraction(1), Fraction(25, 24), Fraction(26, 24) + Fraction(1, 1000),
             Fraction(26, 24) + Fraction(2, 1000)]
    assert [slots.index(t) for t in times] == [0, 1, 2, 3]
    assert slots.moved == 2
    assert slots.worst == pytest.approx(1 / 24 - 0.002)
    assert slots.seconds(3) == Fraction(27, 24)


def test_frame_slots_never_go_below_zero():
    # A stream whose stated start is later than its first frame: the grid starts earlier.
    slots = FrameSlots(Fraction(1, 24), origin=Fraction(1), tolerance=Fraction(1, 2000))
    assert slots.index(Fraction(1) - Fraction(2, 24)) == 0
    assert slots.index(Fraction(1)) == 2


def test_seeking_mpeg_ts_with_b_frames_starts_at_the_keyframe_asked_for(tmp_path):
    # FFmpeg seeks MPEG-TS by packet dts and stops on any packet: a keyframe whose dts is two
    # B-frames before its pts used to be passed over, so decoding started a GOP late (and a
    # parallel run's segments fell back to one).
    clip = make_clip(tmp_path / "broadcast.ts", frames=18, options={"bf": "2", "g": "6"},
                     time_base=Fraction(1, 90000))
    with av.open(str(clip.path)) as container:
        keyframes = [p.pts for p in container.demux(video=0) if p.is_keyframe]
    assert len(keyframes) == 3
    for keyframe in keyframes[1:]:
        frames = FrameReader(clip.path).frames(seek_pts=keyframe)
        assert next(frames).pts <= keyframe
        frames.close()


@pytest.mark.parametrize("source_suffix", [".ts", ".avi"])
def test_adts_aac_from_a_phone_or_a_ts_goes_into_avi(tmp_path, capsys, identity_model_file,
                                                     source_suffix):
    # AAC in ADTS framing (each packet with its header, no extradata), as a TS or a phone's
    # AVI carries it: the AVI muxer takes it only under the ADTS tag, and used to refuse the
    # output ("writing the output failed (Invalid argument)").
    clip = make_clip(tmp_path / "phone.ts", frames=12, codec="mpeg4", audio="aac")
    source, out = clip.path, tmp_path / "phone.deblurred.avi"
    if source_suffix == ".avi":  # that audio beside an AVI's video, as a phone writes it
        source = tmp_path / "phone.avi"
        video = make_clip(tmp_path / "video.avi", frames=12, codec="mpeg4")
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(video.path),
                        "-i", str(clip.path), "-map", "0:v", "-map", "1:a", "-c", "copy",
                        "-tag:a", "0x1610", str(source)], check=True)
    code = main(["process", str(source), "--model", identity_model_file, "-q",
                 *(["-o", str(out)] if source_suffix == ".ts" else [])])
    assert code == 0, capsys.readouterr().err
    assert out.exists()
    # AVI has no start time: frames keep their distances, the audio its place within a slot.
    before, after = frame_times(source), frame_times(out)
    assert [t - after[0] for t in after] == pytest.approx([t - before[0] for t in before],
                                                          abs=1e-9)
    audio_before, audio_after = audio_packet_times(source), audio_packet_times(out)
    assert len(audio_before) > 10
    assert [t - after[0] for t in audio_after] == pytest.approx(
        [t - before[0] for t in audio_before], abs=1 / 24)  # AVI: audio starts in a slot
    assert _avi_audio_is_timed_per_packet(out)
    decoded = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(out),
                              "-f", "null", "-"], capture_output=True, text=True, check=True)
    assert decoded.stderr == ""
