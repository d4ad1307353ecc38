"""What kind of media a file is, by its name: one list of video and one of image extensions
for every command (jobs walking folders, the builder finding footage, process routing input)."""

from __future__ import annotations

from pathlib import Path

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
