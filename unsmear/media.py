"""What kind of media a file is, by its name: one list of video and one of image extensions
for every command (jobs walking folders, the builder finding footage, process routing input);
and a video's display rotation, which the pipeline keeps and the builder applies."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg", ".ts",
    ".mts", ".m2ts", ".3gp", ".ogv", ".mxf", ".h264", ".264", ".h265", ".265", ".hevc", ".ivf",
    ".y4m", ".nut",
})
# Still images OpenCV reads (8 or 16 bits, grey or colour, with or without alpha).
IMAGE_EXTENSIONS = frozenset({".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm",
                              ".webp"})


def is_video_name(path: Path) -> bool:
    """Whether ``path``'s extension is a video container's or a raw video stream's."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_image_name(path: Path) -> bool:
    """Whether ``path``'s extension is an image format unsmear reads."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def frame_side_data(frame: Any) -> list[Any]:
    """A decoded PyAV frame's side data entries (each with ``.type`` and its bytes).

    PyAV 18.1.0 iterates ``frame.side_data`` over the entries; 18.1.1 made it a mapping whose
    iteration gives the types (and whose ``values()`` 18.1.0 cannot serve): both work here."""
    container = frame.side_data
    entries = list(container)
    if entries and not hasattr(entries[0], "type"):  # keys of a mapping: look each one up
        return [container[key] for key in entries]
    return entries


def display_matrix(frame: Any) -> tuple[int, ...] | None:
    """A decoded PyAV frame's display matrix (9 ints, FFmpeg's layout), or None."""
    for side_data in frame_side_data(frame):
        if getattr(side_data.type, "name", "") == "DISPLAYMATRIX":
            return struct.unpack("<9i", bytes(side_data)[:36])
    return None


def displayed(image: Any, display_matrix: Sequence[int] | None) -> Any:
    """``image`` (an (H, W, C) array) turned and mirrored as players show it, by the stream's
    display matrix (9 ints, FFmpeg's layout: a point (x, y) is shown at (a·x + c·y, b·x + d·y)
    with a, b, c, d = m[0], m[1], m[3], m[4]). Only quarter turns and mirrors exist in
    practice; any other matrix leaves the image as stored."""
    if display_matrix is None:
        return image
    a, b, c, d = display_matrix[0], display_matrix[1], display_matrix[3], display_matrix[4]
    if b == c == 0 and a and d:
        return image[::1 if d > 0 else -1, ::1 if a > 0 else -1]
    if a == d == 0 and b and c:  # a quarter turn: rows become columns
        return image.transpose(1, 0, 2)[::1 if b > 0 else -1, ::1 if c > 0 else -1]
    return image


def turns_quarter(display_matrix: Sequence[int] | None) -> bool:
    """Whether ``display_matrix`` turns the picture by a quarter (width and height swap)."""
    return display_matrix is not None and display_matrix[0] == display_matrix[4] == 0 \
        and bool(display_matrix[1]) and bool(display_matrix[3])
