"""The --compare grid shows frames the way players show the video (issue 12, item 9c)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline import EncoderSettings, ProcessConfig, process_video
from pipeline.compare import displayed
from pipeline.video_reader import FrameReader
from tests.media import make_clip, psnr

LABEL_ROWS = 16  # the label band above each tile, for frames this small


def test_grid_of_a_portrait_phone_clip_is_upright(tmp_path, identity_model):
    # Stored 64x48 (landscape) with a 90-degree display rotation: shown 48 wide, 64 tall.
    clip = make_clip(tmp_path / "phone.mp4", frames=8, rotation=90)
    grid_path = tmp_path / "compare.png"
    config = ProcessConfig(progress=False, encoder=EncoderSettings(preset="ultrafast"),
                           compare=grid_path)
    process_video(clip.path, config=config, model=identity_model)
    grid = cv2.cvtColor(cv2.imread(str(grid_path)), cv2.COLOR_BGR2RGB)
    first_row = grid[LABEL_ROWS:LABEL_ROWS + 64]
    assert grid.shape[1] == 2 * 48, "two portrait tiles side by side: input | restored"
    frames = [f.rgb for f in FrameReader(clip.path).frames()]
    # The first grid frame is frame 2 of 8; a counter-clockwise quarter turn, as players do.
    upright = np.rot90(frames[2])
    for tile in (first_row[:, :48], first_row[:, 48:]):
        assert tile.shape == upright.shape and psnr(tile, upright) > 30


@pytest.mark.parametrize("matrix,expected", [
    ((0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30), lambda im: np.rot90(im, 1)),   # 90
    ((-65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30), lambda im: np.rot90(im, 2)),  # 180
    ((0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30), lambda im: np.rot90(im, 3)),   # 270
    ((-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30), lambda im: im[:, ::-1]),       # mirrored
    (None, lambda im: im),
])
def test_display_matrices_turn_images_as_ffmpeg_shows_them(matrix, expected):
    # Matrices as PyAV's set_display_rotation writes them (FFmpeg's autorotate agrees).
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    np.testing.assert_array_equal(displayed(image, matrix), expected(image))
