"""Y'CbCr -> RGB as the reader converts every frame: exact levels, so an output is not darker
than its input (swscale's own conversion truncated: up to a level dark)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from pipeline.colour import RANGE_FULL, RANGE_LIMITED, yuv_to_rgb

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
