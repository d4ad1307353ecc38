"""Finding the videos (and folders of image frames) under a folder and mirroring its tree
into an output folder.

A file is a video when its extension says so, or, for unknown extensions, when FFmpeg finds a
video stream in it that is not a single still image. Hidden files and folders (names starting
with a dot: our own partial outputs among them) are skipped, and so is the output folder when
it lies inside the input folder, so a second run never takes outputs for inputs.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import av

from pipeline.video_writer import default_output_suffix
from unsmear.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_image_name

log = logging.getLogger(__name__)

# Files never worth probing: images (FFmpeg reads them as one-frame "videos"), audio, text,
# and what unsmear itself writes.
NOT_VIDEO_EXTENSIONS = IMAGE_EXTENSIONS | frozenset({
    ".gif", ".exr", ".dng", ".heic",
    ".wav", ".mp3", ".aac", ".flac", ".ogg", ".opus", ".m4a",
    ".txt", ".md", ".json", ".jsonl", ".csv", ".yaml", ".yml", ".xml", ".srt", ".ass", ".vtt",
    ".pdf", ".zip", ".tar", ".gz", ".py", ".safetensors", ".pth", ".pt",
})
# Codecs of "video" streams that are really still pictures (cover art, single images).
STILL_IMAGE_CODECS = frozenset({"png", "mjpeg", "bmp", "tiff", "webp", "gif", "jpeg2000"})


@dataclass(frozen=True)
class FolderConfig:
    """Which files of a folder a job takes, and where its report goes."""

    patterns: tuple[str, ...] = ()  # shell globs on the file name or relative path; () = all
    report: Path | None = None      # JSON report; None = OUT_DIR/unsmear-report.json


def find_videos(in_dir: Path, *, patterns: Sequence[str] = (), exclude: Path | None = None
                ) -> list[Path]:
    """Videos under ``in_dir``, recursively, as sorted paths relative to it.

    Args:
        in_dir: the folder to search.
        patterns: shell globs (``*.mp4``, ``day1/*``); a file is kept if its name or its path
            relative to ``in_dir`` matches one. None given = every video.
        exclude: a folder to leave out (the output folder, when inside ``in_dir``).
    """
    in_dir = Path(in_dir)
    found: list[Path] = []
    for folder_path, files in _walk(in_dir, exclude):
        for name in files:
            path = folder_path / name
            rel = path.relative_to(in_dir)
            if patterns and not matches_patterns(rel, patterns):
                continue
            if is_video(path):
                found.append(rel)
    return sorted(found, key=lambda p: p.as_posix())


def find_frame_folders(in_dir: Path, *, patterns: Sequence[str] = (),
                       exclude: Path | None = None) -> list[Path]:
    """Folders under ``in_dir`` (itself included) that hold image files, as sorted paths
    relative to it: each is deblurred as one folder of numbered frames. Hidden folders and
    ``exclude`` are left out; ``patterns`` match the folder's name or relative path."""
    in_dir = Path(in_dir)
    found: list[Path] = []
    for folder_path, files in _walk(in_dir, exclude):
        rel = folder_path.relative_to(in_dir)
        if patterns and not matches_patterns(rel, patterns):
            continue
        if any(is_image_name(folder_path / name) for name in files):
            found.append(rel)
    return sorted(found, key=lambda p: p.as_posix())


def _walk(in_dir: Path, exclude: Path | None) -> Iterator[tuple[Path, list[str]]]:
    """(folder, sorted file names) for ``in_dir`` and every folder below it, hidden entries
    and the ``exclude`` folder left out."""
    skip = exclude.resolve() if exclude is not None else None
    for folder, dirs, files in os.walk(in_dir):
        folder_path = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (skip is None or (folder_path / d).resolve() != skip))
        yield folder_path, sorted(name for name in files if not name.startswith("."))


def matches_patterns(rel: Path, patterns: Sequence[str]) -> bool:
    """Whether a relative path's name or whole path matches one of the shell globs."""
    posix = PurePosixPath(rel.as_posix())
    return any(fnmatch.fnmatch(rel.name, p) or fnmatch.fnmatch(str(posix), p) for p in patterns)


def is_video(path: Path) -> bool:
    """True for video extensions; for unknown ones, when FFmpeg finds a moving video stream.

    A file with a video extension counts even if it is corrupt: it is then reported as a
    failed video rather than silently left out.
    """
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return True
    if suffix in NOT_VIDEO_EXTENSIONS:
        return False
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            streams = container.streams.video
            return bool(streams) and streams[0].codec_context.name not in STILL_IMAGE_CODECS
    except (av.error.FFmpegError, ValueError, OSError):
        return False


def mirrored_output(rel: Path, out_dir: Path) -> Path:
    """Where the restored ``rel`` goes: the same relative path under ``out_dir``, with the
    input's extension (raw streams, which can't hold timestamps, go into .mkv)."""
    return Path(out_dir) / rel.with_suffix(default_output_suffix(rel))
