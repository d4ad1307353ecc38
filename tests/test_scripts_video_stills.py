"""`scripts/video_stills.py`: stills of real clips for the video model's training to render from."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import pytest

from tests.media import SHARED_DATA

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import video_stills  # noqa: E402


@pytest.mark.skipif(not (SHARED_DATA / "videos").is_dir(), reason="../shared/data is not available")
def test_the_stills_are_the_listed_frames_at_most_1080p(tmp_path):
    written = video_stills.write_stills(SHARED_DATA / "videos", tmp_path)
    assert len(written) == sum(len(indices) for indices, _ in video_stills.STILLS.values()) == 15
    for path in written:
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] <= 1080 and image.shape[1] <= 1920
    assert not any("bikes" in p.name for p in written)  # the steady-pan test's source stays out
    assert (tmp_path / "8k24fps_300ms_000.png").is_file()  # 7680x4320 area-downscaled by 4


def test_a_missing_videos_folder_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="not found"):
        video_stills.write_stills(tmp_path / "nowhere", tmp_path / "out")
