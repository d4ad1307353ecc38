"""Before/after views of a run, so a person can see what deblurring did.

``--compare FILE`` writes either a side-by-side video (input | restored, same timestamps and
audio as the output) when FILE has a video extension, or a PNG/JPEG grid of a few frames
spread over the clip (one row per frame: input | restored, with labels).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np

from pipeline.colour import ColourProperties
from pipeline.errors import PipelineError
from pipeline.leftovers import partial_path
from pipeline.video_reader import VideoInfo
from pipeline.video_writer import EncoderSettings, VideoWriter

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
GRID_FRAMES = 3
# Frames sampled for the grid when the container doesn't say how many frames it holds.
FALLBACK_GRID_INDICES = (0, 30, 60)
LABEL_HEIGHT_FRACTION = 0.06


def grid_indices(frame_count: int | None) -> tuple[int, ...]:
    """Frames at 1/4, 1/2 and 3/4 of the clip (or the first few when the length is unknown)."""
    if not frame_count:
        return FALLBACK_GRID_INDICES
    return tuple(sorted({min(frame_count - 1, frame_count * (k + 1) // (GRID_FRAMES + 1))
                         for k in range(GRID_FRAMES)}))


def _to_u8(rgb: np.ndarray) -> np.ndarray:
    return (rgb >> 8).astype(np.uint8) if rgb.dtype == np.uint16 else rgb


def _label(image: np.ndarray, text: str) -> np.ndarray:
    height = max(16, int(image.shape[0] * LABEL_HEIGHT_FRACTION))
    band = np.full((height, image.shape[1], 3), 24, np.uint8)
    cv2.putText(band, text, (6, int(height * 0.75)), cv2.FONT_HERSHEY_SIMPLEX,
                height / 30, (235, 235, 235), 1, cv2.LINE_AA)
    return np.concatenate([band, image])


class Comparison:
    """Collects (input, restored) frame pairs during a run and writes the comparison.

    Args:
        path: the comparison file (.png/.jpg for a grid, a video extension for side by side).
        info, colour, display_matrix, settings: as for the output's VideoWriter.
    """

    def __init__(self, path: Path, info: VideoInfo, *, colour: ColourProperties,
                 display_matrix, settings: EncoderSettings) -> None:
        self.path = Path(path)
        self._partial = partial_path(self.path)
        self._is_image = self.path.suffix.lower() in IMAGE_SUFFIXES
        self._wanted = grid_indices(info.frame_count)
        self._rows: list[np.ndarray] = []
        self._index = 0
        self._writer = None
        if not self._is_image:
            wide = dataclasses.replace(info, width=info.width * 2)
            self._writer = VideoWriter(self._partial, wide, colour=colour,
                                       display_matrix=display_matrix, settings=settings,
                                       output_name=self.path)

    def add(self, before: np.ndarray, after: np.ndarray, pts: int) -> None:
        """One frame: the decoded input and its restored version, (H, W, 3) each."""
        if self._writer is not None:
            self._writer.write(np.concatenate([before, after], axis=1), pts)
        elif self._index in self._wanted:
            self._rows.append(np.concatenate(
                [_label(_to_u8(before), f"input, frame {self._index}"),
                 _label(_to_u8(after), "unsmear")], axis=1))
        self._index += 1

    def close(self) -> Path:
        """Finish the file and move it into place."""
        if self._writer is not None:
            self._writer.close()
        else:
            if not self._rows:
                raise PipelineError(f"{self.path}: the clip has too few frames for a grid")
            grid = np.concatenate(self._rows)
            if not cv2.imwrite(str(self._partial), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
                raise PipelineError(f"{self.path}: could not write the comparison image")
        os.replace(self._partial, self.path)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
        if self._partial.exists():
            self._partial.unlink()
