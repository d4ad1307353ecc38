"""Interlaced video stays interlaced, with its field order (issue 12, item 5).

Each frame of interlaced video weaves two fields taken 1/50 or 1/60 s apart; which one comes
first (top or bottom) is a flag on the stream and on every frame. An output flagged
progressive, or with the other field order, judders or combs when played or deinterlaced.
"""

from __future__ import annotations

import pytest

from pipeline import EncoderSettings, ProcessConfig, process_video
from pipeline.video_reader import FIELD_BB, FIELD_PROGRESSIVE, FIELD_TT, FrameReader, probe
from tests.media import make_clip, shown_field_orders

QUIET = ProcessConfig(progress=False, encoder=EncoderSettings(preset="ultrafast"))


@pytest.mark.parametrize("order,field_order", [("bff", FIELD_BB), ("tff", FIELD_TT)])
@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".ts"])
def test_field_order_kept_on_stream_and_frames(tmp_path, identity_model, order, field_order,
                                               suffix):
    tags = {"color_primaries": 1, "color_trc": 1, "colorspace": 1, "color_range": 1}
    clip = make_clip(tmp_path / "tape.mkv", frames=8, field_order=order, colour=tags)
    letter = {"tff": "T", "bff": "B"}[order]
    assert shown_field_orders(clip.path) == [letter] * 8, "the fixture must be interlaced"
    assert probe(clip.path).field_order == field_order
    out = process_video(clip.path, tmp_path / f"out{suffix}", config=QUIET,
                        model=identity_model).output
    # Every frame coded interlaced, with the input's field order, and the stream says so
    # (Matroska in its header, TS and MP4 in the H.264 stream).
    assert shown_field_orders(out) == [letter] * 8
    assert probe(out).field_order == field_order
    reader = FrameReader(out)
    next(reader.frames())
    assert reader.colour.matrix == 1, "marking the fields keeps the colour tags"


def test_progressive_stays_progressive(tmp_path, identity_model):
    clip = make_clip(tmp_path / "film.mkv", frames=4)
    out = process_video(clip.path, config=QUIET, model=identity_model).output
    assert not probe(out).interlaced
    assert shown_field_orders(out) == ["P"] * 4


def test_progressive_stated_stays_stated(tmp_path, identity_model):
    """A stream stating "progressive" keeps saying so, whatever encoder writes it (x265 states
    nothing of its own)."""
    import dataclasses
    import subprocess

    import av
    import imageio_ffmpeg

    clip = make_clip(tmp_path / "plain.mp4", frames=4, codec="libx265")
    stated = tmp_path / "progressive.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip.path), "-c", "copy",
                    "-field_order", "progressive", str(stated)], check=True)
    assert probe(stated).field_order == FIELD_PROGRESSIVE
    config = dataclasses.replace(QUIET, encoder=EncoderSettings(codec="libx265", preset="ultrafast"))
    out = process_video(stated, config=config, model=identity_model).output
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "hevc"
    assert probe(out).field_order == FIELD_PROGRESSIVE
