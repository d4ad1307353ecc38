"""Before/after views of a run, so a person can see what deblurring did.

``--compare FILE`` writes either a side-by-side video (input | restored, same timestamps and
audio as the output) when FILE has a video extension, or a PNG/JPEG grid of a few frames
spread over the clip: per frame, a row of the whole frames (input | restored) and a row of
zoomed crops where the model changed the frame most, so the difference is visible at a
glance. With ``--reference SHARP`` (a video of the same frames without blur, e.g. made by
the dataset builder) the sharp frame joins each row and every tile is labelled with its
PSNR against it. The grid shows frames as players do, turned by the stream's rotation; the
side-by-side video carries the rotation as the output does.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np

from pipeline.colour import ColourProperties
from pipeline.config import EncoderSettings
from pipeline.errors import PipelineError
from pipeline.video_reader import VideoInfo
from pipeline.video_writer import VideoWriter
from unsmear.files import partial_path, replace
from unsmear.media import displayed

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
GRID_FRAMES = 3
# Frames sampled for the grid when the container doesn't say how many frames it holds.
FALLBACK_GRID_INDICES = (0, 30, 60)
LABEL_HEIGHT_FRACTION = 0.06
CROP_SHARE = 1 / 3  # side of the zoomed crop, share of the frame's shorter side


def grid_indices(frame_count: int | None) -> tuple[int, ...]:
    """Frames at 1/4, 1/2 and 3/4 of the clip (or the first few when the length is unknown)."""
    if not frame_count:
        return FALLBACK_GRID_INDICES
    return tuple(sorted({min(frame_count - 1, frame_count * (k + 1) // (GRID_FRAMES + 1))
                         for k in range(GRID_FRAMES)}))


def _to_u8(rgb: np.ndarray) -> np.ndarray:
    return (rgb >> 8).astype(np.uint8) if rgb.dtype == np.uint16 else rgb


def busiest_crop(before: np.ndarray, after: np.ndarray, size: int) -> tuple[int, int]:
    """(top, left) of the ``size`` square where ``after`` differs most from ``before``."""
    change = np.abs(after.astype(np.float32) - before.astype(np.float32)).mean(axis=2)
    score = cv2.boxFilter(change, -1, (size, size), normalize=True, borderType=cv2.BORDER_CONSTANT)
    h, w = change.shape
    half = size // 2
    score = score[half:h - size + half + 1, half:w - size + half + 1]
    top, left = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(top), int(left)


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two 8-bit images (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


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
        reference: a video of the sharp frames (same size and frame order), for the grid.
    """

    def __init__(self, path: Path, info: VideoInfo, *, colour: ColourProperties,
                 display_matrix, settings: EncoderSettings, reference: Path | None = None) -> None:
        self.path = Path(path)
        self._reference = _reference_frames(Path(reference), info) if reference is not None else None
        self._partial = partial_path(self.path)
        self._is_image = self.path.suffix.lower() in IMAGE_SUFFIXES
        self._wanted = grid_indices(info.frame_count)
        self._display_matrix = display_matrix
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
        # The reference is read in step with the input; only the grid shows it.
        sharp = next(self._reference, None) if self._reference is not None and self._writer is None else None
        if self._writer is not None:
            self._writer.write(np.concatenate([before, after], axis=1), pts)
        elif self._index in self._wanted:
            before, after, sharp = (None if image is None else
                                    displayed(_to_u8(image), self._display_matrix)
                                    for image in (before, after, sharp))
            self._rows.extend(self._grid_rows(before, after, sharp))
        self._index += 1

    def _grid_rows(self, before: np.ndarray, after: np.ndarray, sharp: np.ndarray | None) -> list[np.ndarray]:
        """Two rows for one frame: whole frames, then the zoomed crop where ``after`` changed most."""
        tiles = [(before, f"input, frame {self._index}"), (after, "unsmear")]
        if sharp is not None:
            tiles.append((sharp, "sharp reference"))
        size = max(8, int(min(before.shape[:2]) * CROP_SHARE))
        top, left = busiest_crop(before, after, size)
        zoom = max(1, before.shape[1] // size)
        whole, crops = [], []
        for image, name in tiles:
            crop = image[top:top + size, left:left + size]
            label = name
            if sharp is not None and image is not sharp:
                label += (f", {psnr_u8(image, sharp):.2f} dB"
                          f" (crop {psnr_u8(crop, sharp[top:top + size, left:left + size]):.2f} dB)")
            whole.append(_label(image, label))
            big = cv2.resize(crop, (size * zoom, size * zoom), interpolation=cv2.INTER_NEAREST)
            crops.append(_label(big, f"{name}, {zoom}x crop at ({left}, {top})"))
        rows = [np.concatenate(whole, axis=1), np.concatenate(crops, axis=1)]
        width = max(r.shape[1] for r in rows)
        return [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]

    def close(self) -> Path:
        """Finish the file and move it into place."""
        if self._writer is not None:
            self._writer.close()
        else:
            if not self._rows:
                raise PipelineError(f"{self.path}: the clip has too few frames for a grid")
            width = max(r.shape[1] for r in self._rows)
            grid = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in self._rows])
            if not cv2.imwrite(str(self._partial), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
                raise PipelineError(f"{self.path}: could not write the comparison image")
        replace(self._partial, self.path)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
        if self._partial.exists():
            self._partial.unlink()


def _reference_frames(path: Path, info: VideoInfo):  # noqa: ANN202 - a generator of (H, W, 3) uint8
    """The reference video's frames in decode order, checked against the input's size."""
    import av

    if not path.is_file():
        raise PipelineError(f"--reference {path}: no such file")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise PipelineError(f"--reference {path}: not a video ({exc})") from exc

    def frames():
        with container:
            for frame in container.decode(video=0):
                if (frame.width, frame.height) != (info.width, info.height):
                    raise PipelineError(f"--reference {path} is {frame.width}x{frame.height}, "
                                        f"the input {info.width}x{info.height}")
                yield frame.to_ndarray(format="rgb24")

    return frames()
