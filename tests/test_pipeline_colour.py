"""Y'CbCr <-> RGB as the reader and writer convert every frame: exact levels, so an output is
neither darker than its input (swscale's Y'CbCr -> RGB truncated: up to a level dark) nor, at
10 bits, brighter (swscale's 16-bit RGB -> Y'CbCr added up to 4 code values, on every pass)."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from pipeline.colour import RANGE_FULL, RANGE_LIMITED, rgb48_to_yuv, yuv_to_rgb
from pipeline.config import EncoderSettings, ProcessConfig
from pipeline.process import process_video
from tests.media import make_clip

BT601, BT709 = 5, 1  # swscale's colorspace numbers


def _grey_ramp(bits: int, full: bool) -> tuple[av.VideoFrame, np.ndarray]:
    """Every luma level of the range, chroma neutral, 4:2:0; and the exact RGB level of each in
    [0, 1]."""
    black, white = (0, (1 << bits) - 1) if full else (16 << (bits - 8), 235 << (bits - 8))
    levels = np.arange(black, white + 1)
    levels = levels[: len(levels) - len(levels) % 2]
    dtype = np.uint8 if bits == 8 else np.uint16
    luma = np.tile(levels.astype(dtype), (4, 1))
    chroma = np.full((2, len(levels)), 1 << (bits - 1), dtype)
    frame = av.VideoFrame.from_ndarray(np.concatenate([luma, chroma]),
                                       format="yuv420p" if bits == 8 else "yuv420p10le")
    return frame, (levels - black) / (white - black)


@pytest.mark.parametrize("bits, full, matrix", [(8, False, BT709), (8, True, BT601), (10, False, BT709)])
def test_grey_levels_come_out_exact(bits, full, matrix):
    frame, exact = _grey_ramp(bits, full)
    rgb_format, peak = ("rgb24", 255) if bits == 8 else ("rgb48le", 65535)
    rgb = yuv_to_rgb(frame, matrix, RANGE_FULL if full else RANGE_LIMITED, rgb_format)
    assert rgb.shape == (4, len(exact), 3) and rgb.dtype == (np.uint8 if bits == 8 else np.uint16)
    error = rgb[0].astype(float) - (exact * peak)[:, None]
    # Rounded, not truncated (swscale: errors 0 to -1 level, mean -0.49); OpenCV's 8-bit
    # arithmetic is fixed point, a little off where the exact level ends in .5.
    assert np.abs(error).max() <= (0.6 if bits == 8 else 0.51)
    assert abs(error.mean()) < 0.05 * peak / 255


def test_colour_matches_the_matrix():
    """A pure colour: BT.709 limited-range (Y, Cb, Cr) of 100 % red gives (255, 0, 0)."""
    ycbcr = (63, 102, 240)  # ITU-R BT.709 red, 8-bit limited range
    planes = np.array([[ycbcr[0]] * 2, [ycbcr[0]] * 2, [ycbcr[1], ycbcr[2]]], np.uint8)  # Y 2x2, then U, V
    frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
    rgb = yuv_to_rgb(frame, BT709, RANGE_LIMITED, "rgb24")
    assert np.abs(rgb.astype(int) - [255, 0, 0]).max() <= 2


def test_other_layouts_are_left_to_swscale():
    frame = av.VideoFrame.from_ndarray(np.zeros((6, 4), np.uint8), format="nv12")
    assert yuv_to_rgb(frame, BT709, RANGE_LIMITED, "rgb24") is None


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    dtype = np.uint8 if frame.format.components[0].bits == 8 else np.dtype("<u2")
    return [np.frombuffer(p, dtype).reshape(p.height, p.line_size // dtype.itemsize)[:, :p.width].copy()
            for p in frame.planes]


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "yuv444p10le", "yuv422p12le"])
def test_16_bit_rgb_gives_the_exact_codes(pix_fmt):
    """Black, mid grey and white of 16-bit RGB land on their Y'CbCr codes (BT.601, limited)."""
    bits = int(pix_fmt[7:9])
    rgb = np.zeros((4, 6, 3), np.uint16)
    rgb[:, 2:4], rgb[:, 4:] = 32768, 65535
    y, cb, cr = _planes(rgb48_to_yuv(rgb, pix_fmt, BT601, RANGE_LIMITED))
    scale = 1 << (bits - 8)
    expected = [16 * scale, round(16 * scale + 219 * scale * 32768 / 65535), 235 * scale]
    assert [int(v) for v in y[0, ::2]] == expected
    assert (cb == 128 * scale).all() and (cr == 128 * scale).all()


def test_10_bit_round_trips_do_not_drift():
    """Read back and written again, a frame's codes stay what they were: no level is gained per
    pass (swscale: +2 on mid grey, white 940 -> 943, again on the next pass)."""
    rng = np.random.default_rng(0)
    # Smooth colours inside the gamut: where a pixel's colour differs from its chroma block's
    # mean, a 4:2:0 pass can leave RGB's range, is clipped, and moves by subsampling, not by bias.
    coarse = rng.uniform(0.2, 0.8, (4, 6, 3)).astype(np.float32)
    rgb = (cv2.resize(coarse, (24, 16), interpolation=cv2.INTER_LINEAR) * 65535).round().astype(np.uint16)
    for pix_fmt in ("yuv444p10le", "yuv420p10le"):
        first = rgb48_to_yuv(rgb, pix_fmt, BT709, RANGE_LIMITED)
        again = rgb48_to_yuv(yuv_to_rgb(first, BT709, RANGE_LIMITED, "rgb48le"), pix_fmt, BT709, RANGE_LIMITED)
        for a, b in zip(_planes(first), _planes(again)):
            assert np.abs(a.astype(int) - b.astype(int)).max() <= (0 if pix_fmt == "yuv444p10le" else 1)
            assert abs(a.astype(float).mean() - b.astype(float).mean()) < 0.05


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "gray10le", "gray12le"])
def test_deep_video_comes_out_at_its_levels(tmp_path, identity_model, pix_fmt):
    """A 10/12-bit clip through the pipeline and a lossless encoder: luma as it came, twice
    (swscale: +1.7 per pass on 10-bit Y'CbCr, +1.6 / +7.8 on 10 / 12-bit grey)."""
    clip = make_clip(tmp_path / "deep.mkv", frames=3, codec="ffv1", pix_fmt=pix_fmt)
    config = ProcessConfig(progress=False, encoder=EncoderSettings(codec="ffv1"))
    once = process_video(clip.path, tmp_path / "once.mkv", config=config, model=identity_model).output
    twice = process_video(once, tmp_path / "twice.mkv", config=config, model=identity_model).output
    for path in (once, twice):
        with av.open(str(clip.path)) as a, av.open(str(path)) as b:
            for fa, fb in zip(a.decode(video=0), b.decode(video=0)):
                assert fb.format.name == pix_fmt
                ya, yb = _planes(fa)[0].astype(int), _planes(fb)[0].astype(int)
                assert abs((yb - ya).mean()) < 0.05
                assert (ya == yb).mean() > 0.95
