"""`process_video` keeps everything a user cares about: frames, timestamps, streams, tags."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from pipeline import EncoderSettings, ProcessConfig, process_video
from pipeline.process import default_output_path
from pipeline.video_reader import FrameReader, probe, read_timestamps
from tests.conftest import make_identity_model
from tests.media import make_clip, packet_counts, psnr, stream_summary

FAST = EncoderSettings(preset="ultrafast")
QUIET = ProcessConfig(progress=False, encoder=FAST)


def _frames(path) -> list[np.ndarray]:
    return [f.rgb for f in FrameReader(path).frames()]


def test_frames_timestamps_audio_kept_and_identity_model_reproduces_input(tmp_path, identity_model):
    clip = make_clip(tmp_path / "clip.mp4", frames=30, audio="aac")
    out = process_video(clip.path, config=QUIET, model=identity_model).output
    assert out == tmp_path / "clip.deblurred.mp4"
    assert read_timestamps(out) == read_timestamps(clip.path)
    assert len(read_timestamps(out)) == 30
    counts = packet_counts(out)
    assert counts["audio"] == packet_counts(clip.path)["audio"]  # copied, not re-encoded
    assert [s for s in stream_summary(out) if s[0] == "audio"] == [("audio", "aac")]
    src, dst = probe(clip.path), probe(out)
    assert dst.duration == pytest.approx(src.duration, abs=0.05)
    gains = [psnr(a, b) for a, b in zip(_frames(clip.path), _frames(out))]
    assert min(gains) >= 35.0


def test_variable_frame_rate_timestamps_survive_exactly(tmp_path, identity_model):
    clip = make_clip(tmp_path / "vfr.mkv", frames=20, vfr=True)
    out = process_video(clip.path, config=QUIET, model=identity_model).output
    src = read_timestamps(clip.path)
    assert len(set(np.round(np.diff(src), 3))) > 1, "the fixture must really be VFR"
    assert read_timestamps(out) == src


def test_rotation_and_colour_tags_kept(tmp_path, identity_model):
    tags = {"color_primaries": 1, "color_trc": 1, "colorspace": 1, "color_range": 1}
    clip = make_clip(tmp_path / "phone.mp4", rotation=90, colour=tags)
    out = process_video(clip.path, config=QUIET, model=identity_model).output
    src, dst = FrameReader(clip.path), FrameReader(out)
    next(src.frames()), next(dst.frames())
    assert dst.display_matrix == src.display_matrix is not None
    assert dst.colour == src.colour
    assert (dst.colour.primaries, dst.colour.matrix, dst.colour.range) == (1, 1, 1)


@pytest.mark.parametrize("suffix, kept", [(".mkv", True), (".mov", True), (".ts", False), (".avi", False)])
def test_a_container_that_drops_the_rotation_says_so(tmp_path, identity_model, caplog, suffix, kept):
    """A portrait phone clip written where no display matrix fits plays sideways: a warning
    names the rotation and the containers that keep it."""
    clip = make_clip(tmp_path / "phone.mp4", frames=4, rotation=90)
    with caplog.at_level("WARNING"):
        out = process_video(clip.path, tmp_path / f"out{suffix}", config=QUIET, model=identity_model).output
    dst = FrameReader(out)
    next(dst.frames())
    warned = [r.getMessage() for r in caplog.records if "display rotation" in r.getMessage()]
    assert (dst.display_matrix is not None) == kept
    assert len(warned) == (0 if kept else 1)
    if not kept:
        assert "rotation 90 degrees" in warned[0] and ".mp4, .mov or .mkv" in warned[0]


def test_full_range_and_bt709_colours_round_trip_without_shift(tmp_path, identity_model):
    tags = {"color_primaries": 1, "color_trc": 1, "colorspace": 1, "color_range": 2}
    clip = make_clip(tmp_path / "full.mkv", pix_fmt="yuv444p", colour=tags,
                     options={"qp": "0"})
    config = ProcessConfig(progress=False, encoder=EncoderSettings(preset="ultrafast", crf=0))
    out = process_video(clip.path, config=config, model=identity_model).output
    means = [np.abs(a.astype(int) - b.astype(int)).mean()
             for a, b in zip(_frames(clip.path), _frames(out))]
    assert max(means) < 1.0  # a 601/709 or range mix-up shifts colours by several levels


@pytest.mark.parametrize("width,height", [(321, 241), (161, 121)])
def test_odd_sizes_keep_their_size(tmp_path, identity_model, width, height):
    clip = make_clip(tmp_path / "odd.mkv", frames=6, width=width, height=height,
                     pix_fmt="yuv444p")
    out = process_video(clip.path, config=QUIET, model=identity_model).output
    info = probe(out)
    assert (info.width, info.height) == (width, height)
    assert len(read_timestamps(out)) == 6


@pytest.mark.parametrize("source", ["clip.mp4", "clip.mpg"])
def test_mpeg_program_stream_output_keeps_every_timestamp(tmp_path, identity_model, source):
    """.mpg gets MPEG-2 video (H.264 there read back without its first timestamps, shifted),
    written without the muxer's 0.5 s preload or a frame of B-frame delay."""
    codec = "mpeg2video" if source.endswith(".mpg") else "libx264"
    clip = make_clip(tmp_path / source, frames=8, fps=25, codec=codec, audio="mp2" if codec == "mpeg2video" else None)
    out = process_video(clip.path, tmp_path / "out.mpg", config=QUIET, model=identity_model).output
    assert probe(out).codec == "mpeg2video"
    assert read_timestamps(out) == pytest.approx(read_timestamps(clip.path), abs=1e-4)
    assert min(psnr(a, b) for a, b in zip(_frames(clip.path), _frames(out))) > 30.0


def test_h264_asked_for_an_mpeg_program_stream_is_refused(tmp_path, capsys, identity_model_file):
    from pipeline.cli import main

    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    code = main(["process", "-q", str(clip.path), "-o", str(tmp_path / "out.mpg"), "--codec", "libx264",
                 "--model", identity_model_file])
    err = capsys.readouterr().err
    assert code == 2 and "mpeg2video" in err and ".ts" in err
    assert not (tmp_path / "out.mpg").exists()


def test_subsampled_chroma_asked_for_an_odd_size_is_a_usage_error(tmp_path, capsys, identity_model_file):
    """x264 refuses 4:2:0 on an odd size: said before any work, with what to use (exit 2), not
    an encoder's 'Generic error in an external library' (exit 1)."""
    from pipeline.cli import main

    clip = make_clip(tmp_path / "odd.mkv", frames=3, width=161, height=121, pix_fmt="yuv444p")
    out = tmp_path / "out.mp4"
    code = main(["process", "-q", str(clip.path), "-o", str(out), "--pix-fmt", "yuv420p",
                 "--model", identity_model_file])
    err = capsys.readouterr().err
    assert code == 2 and "even width and height" in err and "yuv444p" in err and "Traceback" not in err
    assert not out.exists()
    # 4:2:2 halves only the width: an odd height is fine.
    clip = make_clip(tmp_path / "tall.mkv", frames=3, width=160, height=121, pix_fmt="yuv422p")
    assert main(["process", "-q", str(clip.path), "-o", str(out), "--pix-fmt", "yuv422p",
                 "--model", identity_model_file]) == 0
    assert (probe(out).width, probe(out).height, probe(out).pix_fmt) == (160, 121, "yuv422p")


@pytest.mark.parametrize("name,codec,pix_fmt,options", [
    ("h264_bframes.mp4", "libx264", "yuv420p", {"bf": "3", "g": "48"}),
    ("hevc.mp4", "libx265", "yuv420p", {"x265-params": "log-level=error"}),
    ("ten_bit.mkv", "libx265", "yuv420p10le", {"x265-params": "log-level=error"}),
    ("vp9.webm", "libvpx-vp9", "yuv420p", None),
    ("mpeg4.avi", "mpeg4", "yuv420p", None),
    ("mjpeg.mkv", "mjpeg", "yuvj420p", None),
    ("gray.mkv", "ffv1", "gray", None),
    ("yuv444.mp4", "libx264", "yuv444p", None),
    ("raw.y4m", "rawvideo", "yuv420p", None),  # the default output keeps .y4m: raw frames
    ("vp8.ogv", "libvpx", "yuv420p", None),    # and .ogv: VP8
])
def test_codecs_and_pixel_formats(tmp_path, identity_model, name, codec, pix_fmt, options):
    clip = make_clip(tmp_path / name, frames=12, codec=codec, pix_fmt=pix_fmt, options=options)
    out = process_video(clip.path, config=QUIET, model=identity_model).output
    src, dst = probe(clip.path), probe(out)
    assert read_timestamps(out) == read_timestamps(clip.path)
    assert dst.bit_depth == src.bit_depth
    if pix_fmt in ("yuv444p", "yuv420p10le"):
        assert dst.pix_fmt == pix_fmt
    a, b = _frames(clip.path), _frames(out)
    if pix_fmt == "gray":  # H.264 4:0:0 decodes as yuv420p with neutral chroma: still grey
        assert all(np.abs(f.astype(int) - f[..., :1]).max() <= 2 for f in b)
    assert min(psnr(x, y) for x, y in zip(a, b)) > 30.0


@pytest.mark.parametrize("name, codec, pix_fmt, options, out_codec, out_fmt", [
    ("rgb.mkv", "libx264rgb", "rgb24", {"qp": "0"}, "h264", "gbrp"),
    ("rgb.mp4", "libx264rgb", "bgr0", {"qp": "0"}, "h264", "gbrp"),
    ("rgb10.mkv", "ffv1", "gbrp10le", None, "hevc", "gbrp10le"),
])
def test_rgb_video_stays_rgb(tmp_path, identity_model, name, codec, pix_fmt, options, out_codec, out_fmt):
    """RGB in, RGB out: through YUV, even 4:4:4, the round trip alone would change the
    pictures; lossless settings keep every pixel of an RGB source exactly."""
    clip = make_clip(tmp_path / name, frames=6, codec=codec, pix_fmt=pix_fmt, options=options)
    config = ProcessConfig(progress=False, encoder=EncoderSettings(crf=0, preset="ultrafast"))
    out = process_video(clip.path, config=config, model=identity_model).output
    info = probe(out)
    assert (info.codec, info.pix_fmt) == (out_codec, out_fmt)
    assert read_timestamps(out) == read_timestamps(clip.path)
    if info.bit_depth == 8:  # x264 at CRF 0 is lossless; x265 at CRF 0 is not
        assert all(np.array_equal(a, b) for a, b in zip(_frames(clip.path), _frames(out)))
    else:
        assert min(psnr(a, b) for a, b in zip(_frames(clip.path), _frames(out))) > 45.0


@pytest.mark.parametrize("tag", [0, 1, 2])  # RGB, BT.709 (a wrong but seen tag), unspecified
def test_rgb_sources_come_out_in_their_colours_whatever_their_matrix_tag(tmp_path, identity_model, tag):
    """RGB pictures are tagged RGB on output (a YUV matrix tag on RGB planes makes decoders
    read them as YUV), and converted to YUV when asked, tagged with the matrix used."""
    clip = make_clip(tmp_path / "rgb.mkv", frames=4, codec="ffv1", pix_fmt="bgr0", colour={"colorspace": tag})
    lossless = ProcessConfig(progress=False, encoder=EncoderSettings(crf=0, preset="ultrafast"))
    out = process_video(clip.path, tmp_path / "out.mkv", config=lossless, model=identity_model).output
    assert probe(out).pix_fmt == "gbrp"
    assert all(np.array_equal(a, b) for a, b in zip(_frames(clip.path), _frames(out)))
    yuv = ProcessConfig(progress=False, encoder=EncoderSettings(codec="libx264", crf=0, preset="ultrafast"))
    out = process_video(clip.path, tmp_path / "yuv.mkv", config=yuv, model=identity_model).output
    assert probe(out).pix_fmt == "yuv444p"
    assert min(psnr(a, b) for a, b in zip(_frames(clip.path), _frames(out))) > 40.0


def test_multi_frame_model_restores_every_frame_once(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=11)
    model = make_identity_model(in_frames=3)
    config = ProcessConfig(progress=False, encoder=FAST, batch_size=4)
    out = process_video(clip.path, config=config, model=model).output
    assert read_timestamps(out) == read_timestamps(clip.path)
    # Identity on the centre frame: frame i of the output is frame i of the input.
    assert min(psnr(a, b) for a, b in zip(_frames(clip.path), _frames(out))) > 35.0


def test_subtitles_copied(tmp_path, identity_model):
    clip = make_clip(tmp_path / "subs.mkv", frames=12, audio="libopus", subtitles=True)
    out = process_video(clip.path, config=QUIET, model=identity_model).output
    assert stream_summary(out) == stream_summary(clip.path)
    assert packet_counts(out) == packet_counts(clip.path) | {"video": 12}


def test_failure_midway_leaves_no_output(tmp_path, identity_model):
    clip = make_clip(tmp_path / "clip.mp4", frames=20)

    class Failing(type(identity_model)):
        calls = 0

        def forward(self, x):
            Failing.calls += 1
            if Failing.calls == 3:
                raise RuntimeError("boom")
            return super().forward(x)

    model = Failing(identity_model.config).eval()
    with pytest.raises(RuntimeError, match="boom"):
        process_video(clip.path, config=ProcessConfig(progress=False, batch_size=2,
                                                      encoder=FAST), model=model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_default_output_names():
    from pathlib import Path

    assert default_output_path(Path("/v/clip.mov")) == Path("/v/clip.deblurred.mov")
    assert default_output_path(Path("/v/raw.h264")) == Path("/v/raw.deblurred.mkv")


@pytest.mark.parametrize("name", ["compare.mp4", "compare.png"])
def test_compare_writes_before_and_after_side_by_side(tmp_path, identity_model, name):
    import dataclasses

    import cv2

    clip = make_clip(tmp_path / "clip.mp4", frames=12, audio="aac")
    config = dataclasses.replace(QUIET, compare=tmp_path / name)
    process_video(clip.path, config=config, model=identity_model)
    if name.endswith(".mp4"):
        info = probe(tmp_path / name)
        assert (info.width, info.height) == (128, 48)
        assert read_timestamps(tmp_path / name) == read_timestamps(clip.path)
        assert packet_counts(tmp_path / name)["audio"] == clip.audio_packets
    else:
        grid = cv2.imread(str(tmp_path / name))
        # three frames, each a row of whole frames and a row of zoomed crops: input | output
        assert grid.shape[1] >= 128 and grid.shape[0] > 6 * 48


def test_compare_grid_with_a_sharp_reference_labels_psnr(tmp_path, identity_model, capsys):
    import dataclasses

    import cv2

    from pipeline.cli import main
    from pipeline.errors import PipelineError

    clip = make_clip(tmp_path / "clip.mp4", frames=8)
    config = dataclasses.replace(QUIET, compare=tmp_path / "grid.png", reference=clip.path)
    process_video(clip.path, tmp_path / "out.mp4", config=config, model=identity_model)
    grid = cv2.imread(str(tmp_path / "grid.png"))
    assert grid.shape[1] >= 3 * 64  # input | output | sharp reference
    small = make_clip(tmp_path / "small.mp4", frames=8, width=32, height=32)
    wrong = dataclasses.replace(config, reference=small.path, compare=tmp_path / "grid2.png")
    with pytest.raises(PipelineError, match="32x32"):
        process_video(clip.path, tmp_path / "out2.mp4", config=wrong, model=identity_model)
    assert not (tmp_path / "out2.mp4").exists() and not (tmp_path / "grid2.png").exists()
    # --reference only makes sense with a grid
    assert main(["process", str(clip.path), "-o", str(tmp_path / "o3.mp4"), "--reference", str(clip.path)]) != 0
    assert "--reference goes with a --compare grid" in capsys.readouterr().err


def test_mp4_with_aac_priming_to_mkv_keeps_video_timestamps(tmp_path, identity_model):
    # The AAC encoder's priming packet sits before 0; a muxer that shifts all streams to
    # start at 0 would move every video frame by 21 ms.
    clip = make_clip(tmp_path / "clip.mp4", frames=12, audio="aac")
    out = process_video(clip.path, tmp_path / "out.mkv", config=QUIET, model=identity_model).output
    assert read_timestamps(out) == pytest.approx(read_timestamps(clip.path), abs=5e-4)
    assert packet_counts(out)["audio"] == packet_counts(clip.path)["audio"]


def test_hardware_decoding_falls_back_cleanly_without_a_gpu(tmp_path, identity_model):
    import dataclasses

    clip = make_clip(tmp_path / "clip.mp4", frames=8)
    software = _frames(clip.path)
    requested = [f.rgb for f in FrameReader(clip.path, hwdec="cuda").frames()]
    assert len(requested) == 8
    assert all(np.array_equal(a, b) for a, b in zip(software, requested))
    config = dataclasses.replace(QUIET, hwdec="auto")
    out = process_video(clip.path, config=config, model=identity_model).output
    assert read_timestamps(out) == read_timestamps(clip.path)


@pytest.mark.parametrize("name,codec,pix_fmt,options", [
    ("h264.mp4", "libx264", "yuv420p", {"bf": "3"}),
    ("ten_bit.mkv", "libx265", "yuv420p10le", {"x265-params": "log-level=error"}),
])
def test_threaded_colour_conversion_gives_the_same_file(tmp_path, identity_model, name, codec,
                                                         pix_fmt, options):
    # On CI's 2 cores conversions run inline by default; force threads so that path runs too.
    import dataclasses

    clip = make_clip(tmp_path / name, frames=40, codec=codec, pix_fmt=pix_fmt, options=options,
                     audio="aac" if name.endswith(".mkv") else None)
    outputs = []
    for threads in (1, 3):
        config = dataclasses.replace(QUIET, convert_threads=threads, batch_size=3,
                                     compare=tmp_path / f"compare{threads}.mp4")
        outputs.append(process_video(clip.path, tmp_path / f"out{threads}{clip.path.suffix}",
                                     config=config, model=identity_model).output)
    inline, threaded = outputs
    assert read_timestamps(threaded) == read_timestamps(inline) == read_timestamps(clip.path)
    assert all(np.array_equal(a, b) for a, b in zip(_frames(inline), _frames(threaded)))
    assert probe(threaded).pix_fmt == pix_fmt
    assert len(read_timestamps(tmp_path / "compare3.mp4")) == 40
    threaded_reader = FrameReader(clip.path, convert_threads=4)
    assert [f.index for f in threaded_reader.frames()] == list(range(40))


@pytest.mark.parametrize("sar", [Fraction(32, 27), Fraction(1)])
@pytest.mark.parametrize("suffix,segments,codec", [(".mp4", 1, None), (".mkv", 1, None),
                                                   (".webm", 1, None), (".webm", 3, None),
                                                   (".mkv", 1, "ffv1")])
def test_sample_aspect_ratio_is_written_as_the_input_states_it(tmp_path, identity_model,
                                                               monkeypatch, suffix, segments,
                                                               codec, sar):
    """720x480-style footage with a 32:27 SAR stays 16:9 on screen (it used to come out 3:2,
    and unset in WebM); a stated 1:1 stays stated (it used to come out unset in MP4 and
    WebM). In one pass and in joined segments, every timestamp kept."""
    import av

    import pipeline.process

    monkeypatch.setattr(pipeline.process, "RESUME_SEGMENT_FRAMES", 18 // segments)
    source = tmp_path / "sar.mp4"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.sample_aspect_ratio = sar
        stream.options = {"x264-params": "keyint=6:min-keyint=6:scenecut=0"}
        for i in range(18):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 12 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame.reformat(format="yuv420p")))
        container.mux(stream.encode())
    assert probe(source).sample_aspect_ratio == sar
    config = QUIET if codec is None else ProcessConfig(progress=False,
                                                       encoder=EncoderSettings(codec=codec))
    out = process_video(source, tmp_path / f"out{suffix}", config=config, model=identity_model).output
    if suffix == ".webm" or codec:  # no field for it in VP9, FFV1: Matroska's display size
        assert probe(out).sample_aspect_ratio == pytest.approx(sar, abs=1 / 64)
    else:
        assert probe(out).sample_aspect_ratio == sar
    assert read_timestamps(out) == read_timestamps(source)
    plain = make_clip(tmp_path / "square.mp4", frames=4)
    assert probe(plain.path).sample_aspect_ratio is None
    assert probe(process_video(plain.path, config=QUIET, model=identity_model).output).sample_aspect_ratio is None


def _tagged(path, subtitles: bool):
    """A clip with chapters, a timecode and (MKV) forced subtitles, tagged with the ffmpeg
    binary as a camera or an editor leaves them."""
    import subprocess

    import imageio_ffmpeg

    plain = make_clip(path.with_name(f"plain{path.suffix}"), frames=45, audio="aac",
                      subtitles=subtitles, options={"x264-params": "keyint=8:min-keyint=8:scenecut=0"})
    chapters = path.with_name("chapters.txt")
    chapters.write_text(";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\ntitle=One\n"
                        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=1875\ntitle=Two\n")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(plain.path), "-i", str(chapters),
                    "-map", "0", "-map_chapters", "1", "-c", "copy", "-metadata:s:v:0", "timecode=01:02:03:04",
                    "-disposition:v:0", "default",
                    *(["-disposition:s:0", "forced"] if subtitles else []), str(path)], check=True)
    return path


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
@pytest.mark.parametrize("segments", [False, True])
def test_chapters_timecode_and_stream_flags_kept(tmp_path, identity_model, monkeypatch, suffix, segments):
    """One pass or in segments (joined by the ffmpeg binary), the output keeps the input's
    chapters, its timecode and the flags of its copied streams."""
    import av

    import pipeline.process

    if segments:
        monkeypatch.setattr(pipeline.process, "RESUME_SEGMENT_FRAMES", 8)
    clip = _tagged(tmp_path / f"tagged{suffix}", subtitles=suffix == ".mkv")
    out = process_video(clip, tmp_path / f"out{suffix}", config=QUIET, model=identity_model).output

    def tags(path):
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            timecode = next((v for tags in (video.metadata, container.metadata)
                             for k, v in tags.items() if k.lower() == "timecode"), None)
            return ([(c["metadata"].get("title"), round(float(c["start"] * c["time_base"]), 3))
                     for c in container.chapters()], timecode,
                    [(s.type, s.disposition) for s in container.streams if s.type in ("video", "audio", "subtitle")])

    expected = tags(clip)
    assert expected[0] == [("One", 0.0), ("Two", 1.0)] and expected[1] == "01:02:03:04"
    assert tags(out) == expected
    assert read_timestamps(out) == read_timestamps(clip)


@pytest.mark.parametrize("suffix", [".mkv", ".webm"])  # HEVC (x265), AV1 (SVT-AV1)
def test_hdr10_static_metadata_kept(tmp_path, identity_model, capfd, suffix):
    """An HDR10 clip's mastering display and light levels reach the output's HEVC SEI or AV1
    metadata OBUs; and the AV1 encoder prints nothing."""
    from pipeline.colour import HdrMetadata

    master = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
    clip = make_clip(tmp_path / "hdr.mkv", frames=6, codec="libx265", pix_fmt="yuv420p10le",
                     options={"x265-params": f"log-level=error:master-display={master}:max-cll=1000,400"},
                     colour={"color_primaries": 9, "color_trc": 16, "colorspace": 9})
    capfd.readouterr()
    out = process_video(clip.path, tmp_path / f"out{suffix}", config=QUIET, model=identity_model).output
    assert capfd.readouterr().err == ""

    def hdr(path):
        reader = FrameReader(path)
        list(reader.frames())
        return reader.colour

    source, restored = hdr(clip.path), hdr(out)
    assert source.hdr == HdrMetadata((13250, 34500, 7500, 3000, 34000, 16000, 15635, 16450),
                                     (10000000, 1), (1000, 400))
    assert (restored.hdr, restored.primaries, restored.transfer) == (source.hdr, 9, 16)


def test_side_data_is_read_with_either_pyav_iteration():
    """PyAV 18.1.0 iterates a frame's side data over its entries, 18.1.1 over their types (a
    mapping): the display matrix and HDR metadata are read the same from both."""
    import struct
    from types import SimpleNamespace

    from pipeline.colour import HdrMetadata
    from unsmear.media import display_matrix

    import av.sidedata.sidedata as sd

    class Entry:  # what PyAV's SideData offers: its type and its bytes
        def __init__(self, data: bytes, kind) -> None:
            self.data, self.type = data, kind

        def __bytes__(self) -> bytes:
            return self.data

    kinds = {name: getattr(sd.Type, name) for name in
             ("DISPLAYMATRIX", "MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL")}
    rationals = [34000, 50000, 16000, 50000, 13250, 50000, 34500, 50000, 7500, 50000, 3000, 50000,
                 15635, 50000, 16450, 50000, 1, 10000, 10000000, 10000]
    entries = [Entry(struct.pack("<9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30), kinds["DISPLAYMATRIX"]),
               Entry(struct.pack("<20i2i", *rationals, 1, 1), kinds["MASTERING_DISPLAY_METADATA"]),
               Entry(struct.pack("<2I", 1000, 400), kinds["CONTENT_LIGHT_LEVEL"])]

    class AsMapping(dict):  # 18.1.1: iterating gives the keys
        pass

    old_style = SimpleNamespace(side_data=list(entries))
    new_style = SimpleNamespace(side_data=AsMapping({e.type.name: e for e in entries}))
    for frame in (old_style, new_style):
        assert display_matrix(frame) == (0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
        assert HdrMetadata.of_frame(frame) == HdrMetadata(
            (13250, 34500, 7500, 3000, 34000, 16000, 15635, 16450), (10000000, 1), (1000, 400))


def test_streams_left_out_are_named_before_the_work(tmp_path, identity_model, caplog):
    """A second video track is not restored nor copied: the run says so, and the timecode
    (rebuilt from the video's tags) is not counted among what is lost."""
    import av

    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as out:
        streams = [out.add_stream("libx264", rate=25) for _ in range(2)]
        for stream in streams:
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            for stream in streams:
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
                frame.pts = i
                for packet in stream.encode(frame):
                    out.mux(packet)
        for stream in streams:
            for packet in stream.encode(None):
                out.mux(packet)
    result = process_video(path, config=QUIET, model=identity_model)
    assert result.frames == 5
    assert "not copied to the output: video #1 (h264)" in caplog.text
    caplog.clear()
    timecode = _tagged(tmp_path / "tc.mov", subtitles=False)
    with av.open(str(timecode)) as container:
        assert [s.type for s in container.streams] == ["video", "audio", "data", "data"]  # chapters, tmcd
    process_video(timecode, config=QUIET, model=identity_model)
    assert "not copied" not in caplog.text
