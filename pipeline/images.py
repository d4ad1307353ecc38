"""Deblurring still images and folders of numbered frames (photographs, VFX plates).

Images go through the same :class:`~pipeline.restorer.Restorer` as video frames (tiling,
precision, device, batching, multi-frame neighbours for sequences). What a picture holds
besides its RGB pixels is kept: 16-bit PNG/TIFF stay 16-bit, grey stays grey, an alpha channel
is carried over untouched (only RGB is restored). A folder of numbered frames
(``frame_0001.png`` …) becomes a folder of the same names. Outputs appear only when complete
(written under a hidden partial name, then renamed) and never replace an existing file or
folder without ``overwrite``, as for videos; overwriting a folder replaces the frames of the
same names and leaves its other files alone.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from models.registry import Generator
from pipeline.config import ProcessConfig
from pipeline.errors import PipelineError, RunFailedError
from pipeline.outputs import check_output
from pipeline.process import ProcessResult
from pipeline.restorer import make_restorer
from pipeline.stages import edge_padded, padded_windows
from unsmear.files import partial_path, replace
from unsmear.media import is_video_name

log = logging.getLogger(__name__)

# Image outputs and the deepest samples each format keeps (OpenCV writes 16-bit PNG and TIFF).
OUTPUT_BITS = {".png": 16, ".tif": 16, ".tiff": 16, ".jpg": 8, ".jpeg": 8, ".webp": 8,
               ".bmp": 8}
# Formats that store an alpha channel.
ALPHA_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".webp"})
IMAGE_SUFFIXES = frozenset(OUTPUT_BITS)
JPEG_QUALITY = 95
# The frame number is the last run of digits in a file's stem (shot_010_frame_0042 → 42).
FRAME_NUMBER = re.compile(r"(\d+)(?!.*\d)")
# How each image format read here begins, for images named like videos (a PNG saved as .mp4):
# FFmpeg would read them as one-frame videos.
SIGNATURES = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"II*\x00", ".tif"),
              (b"MM\x00*", ".tif"), (b"BM", ".bmp"))
FORMAT_NAMES = {".png": "PNG", ".jpg": "JPEG", ".tif": "TIFF", ".webp": "WebP", ".bmp": "BMP"}


@dataclass(frozen=True)
class Picture:
    """One image as read: ``rgb`` (H, W, 3) uint8 or uint16; ``alpha`` (H, W) or None;
    ``grey`` when the file had one colour channel (written back as grey)."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    grey: bool = False


def is_image(path: Path) -> bool:
    """Whether ``path`` is a file with an image extension unsmear reads."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.is_dir()


def image_format(path: Path) -> str | None:
    """The image format a file holds by its first bytes (".png", ".jpg", ".tif", ".webp",
    ".bmp"), whatever its name; None for anything else."""
    try:
        with open(path, "rb") as file:
            head = file.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    for signature, suffix in SIGNATURES:
        # BMP's two letters are weak: its header's reserved fields (bytes 6-9) are zero too.
        if head.startswith(signature) and (suffix != ".bmp" or head[6:10] == bytes(4)):
            return suffix
    return None


def misnamed_image(path: Path) -> str | None:
    """The real format (".png"...) of an image file whose extension isn't an image's."""
    if is_image(path) or not path.is_file():
        return None
    return image_format(path)


def numbered_frames(folder: Path) -> list[Path]:
    """The image files of ``folder`` in frame-number order (hidden files ignored).

    Raises PipelineError when there are none, when one has no number in its name, or when
    two claim the same number. Gaps are allowed (a render may skip frames); a multi-frame
    model then takes the frames on either side of the gap as neighbours.
    """
    numbered: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not is_image(path):
            continue
        match = FRAME_NUMBER.search(path.stem)
        if match is None:
            raise PipelineError(f"{path}: a frame in a folder of frames needs a number in its "
                                f"name (e.g. frame_0001.png)")
        number = int(match.group(1))
        if number in numbered:
            raise PipelineError(f"{folder}: {numbered[number].name} and {path.name} are both "
                                f"frame {number}")
        numbered[number] = path
    if not numbered:
        raise PipelineError(f"{folder}: is a directory with no numbered image frames "
                            f"({', '.join(sorted(IMAGE_SUFFIXES))}), not a video file")
    return [numbered[n] for n in sorted(numbered)]


def read_picture(path: Path) -> Picture:
    """Read an image file, keeping its bit depth, alpha channel and greyness.

    Raises PipelineError for files OpenCV can't read and for float or 32-bit images.
    """
    # JPEGs are read upright (their EXIF orientation applied), as they are written without
    # EXIF; the other formats are read as stored, alpha included.
    jpeg = (image_format(path) or path.suffix.lower()) in (".jpg", ".jpeg")
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR if jpeg else cv2.IMREAD_UNCHANGED
    image = cv2.imread(str(path), flags)
    if image is None:
        raise PipelineError(f"{path}: cannot read it as an image (truncated, corrupt or not "
                            f"an image)")
    if image.dtype not in (np.uint8, np.uint16):
        raise PipelineError(f"{path}: {image.dtype} images are not supported (8- or 16-bit "
                            f"integer samples only)")
    if image.ndim == 2 or image.shape[2] == 1:
        grey = image.reshape(image.shape[:2])
        return Picture(np.repeat(grey[:, :, None], 3, axis=2), grey=True)
    if image.shape[2] == 2:  # grey + alpha
        return Picture(np.repeat(image[:, :, :1], 3, axis=2), alpha=image[:, :, 1].copy(),
                       grey=True)
    rgb = np.ascontiguousarray(image[:, :, 2::-1])
    alpha = image[:, :, 3].copy() if image.shape[2] == 4 else None
    return Picture(rgb, alpha=alpha)


def check_image_output(path: Path) -> None:
    """Refuse an output extension no image writer here handles, naming those that work."""
    if path.suffix.lower() not in OUTPUT_BITS:
        raise PipelineError(
            f"{path}: cannot write {path.suffix or 'extension-less'} images; image outputs "
            f"can be .png or .tif/.tiff (16-bit kept), .jpg/.jpeg, .webp or .bmp (8-bit)")


def encode_picture(picture: Picture, suffix: str) -> bytes:
    """The image file bytes of ``picture`` in the format named by ``suffix``.

    Samples are reduced to 8 bits (rounded) for 8-bit formats; alpha is dropped, with a
    warning, for formats without it.
    """
    suffix = suffix.lower()
    check_image_output(Path(f"image{suffix}"))
    rgb, alpha = picture.rgb, picture.alpha
    if rgb.dtype == np.uint16 and OUTPUT_BITS[suffix] == 8:
        rgb = _to_8_bit(rgb)
        alpha = None if alpha is None else _to_8_bit(alpha)
    if alpha is not None and suffix not in ALPHA_SUFFIXES:
        log.warning("%s images have no alpha channel: the alpha channel is dropped", suffix)
        alpha = None
    if picture.grey:
        channels = [cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)]
    else:
        channels = [rgb[:, :, 2], rgb[:, :, 1], rgb[:, :, 0]]  # OpenCV writes BGR
    if alpha is not None:
        channels.append(alpha)
    image = channels[0] if len(channels) == 1 else np.dstack(channels)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if suffix in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise RunFailedError(f"OpenCV could not encode a {image.dtype} {image.shape} image "
                             f"as {suffix}")
    return encoded.tobytes()


def _to_8_bit(samples: np.ndarray) -> np.ndarray:
    return np.round(samples / 257.0).astype(np.uint8)


def default_image_output(input_path: Path) -> Path:
    """``frame.png`` → ``frame.deblurred.png``; ``shot/`` → ``shot.deblurred/``; a PNG named
    ``clip.mp4`` → ``clip.deblurred.png``."""
    if input_path.is_dir():
        return input_path.with_name(f"{input_path.name}.deblurred")
    suffix = misnamed_image(input_path) or input_path.suffix
    return input_path.with_name(f"{input_path.stem}.deblurred{suffix}")


def is_image_input(path: Path) -> bool:
    """Whether ``process`` should treat ``path`` as a still image or a folder of frames (an
    image named like a video included)."""
    return is_image(path) or path.is_dir() or misnamed_image(path) is not None


def process_images(input_path: str | os.PathLike, output: str | os.PathLike | None = None, *,
                   config: ProcessConfig = ProcessConfig(), model: Generator | None = None
                   ) -> ProcessResult:
    """Deblur one image file, or a folder of numbered frames into a folder of the same names.

    Args:
        input_path: an image (PNG, JPEG, TIFF, WebP, BMP) or a folder of numbered frames.
        output: an image file (its extension picks the format), or the output folder for a
            folder of frames (whose frames keep their names and formats); default
            ``<stem>.deblurred<ext>`` / ``<folder>.deblurred`` beside the input.
        config: model, device, precision, batching, tiling, strength, overwrite, progress.
        model: a generator to use instead of loading ``config.model``.
    Returns a ProcessResult (``codec`` is the output format). Raises PipelineError for bad
    input or settings, leaving no output.
    """
    input_path = Path(input_path)
    if not input_path.exists():
        raise PipelineError(f"{input_path}: no such file or folder")
    folder = input_path.is_dir()
    sources = numbered_frames(input_path) if folder else [input_path]
    real_format = None if folder else misnamed_image(input_path)
    if real_format is not None:
        kind = f"{FORMAT_NAMES[real_format]} image"
        if output is not None and Path(output).suffix.lower() not in OUTPUT_BITS:
            raise PipelineError(f"{input_path}: is a {kind}, not a video, despite its name; "
                                f"give an image output (e.g. -o {Path(output).stem}{real_format})")
        log.warning("%s: is a %s, not a video, despite its name: restoring it as an image",
                    input_path, kind)
    output = Path(output) if output is not None else default_image_output(input_path)
    if folder and output.suffix.lower() in IMAGE_SUFFIXES:
        raise PipelineError(f"{output}: a folder of frames is written to a folder, not to one "
                            f"image (give a folder name)")
    if folder and is_video_name(output):
        raise PipelineError(f"{output}: a folder of frames is written to a folder of frames of "
                            f"the same names, not to a video (give a folder name; frames have no "
                            f"frame rate to encode them at)")
    if not folder:
        check_image_output(output)
    check_output(input_path, output, config.overwrite, allow_folder=folder)
    # A folder of numbered frames is a sequence: the video model sees each frame's neighbours.
    restorer = make_restorer(config, model, video=folder)
    partial = partial_path(output)
    started = time.perf_counter()
    progress = tqdm(total=len(sources), unit="image", desc=input_path.name,
                    disable=not config.progress or not folder, file=sys.stderr,
                    dynamic_ncols=True)
    try:
        if folder:
            partial.mkdir()
        frames = _read_frames(sources)
        first = next(frames)
        batch = restorer.batch_size_for(*first.rgb.shape[:2])
        for window, targets in padded_windows(edge_padded(itertools.chain([first], frames),
                                                          restorer.context),
                                              batch, restorer.context):
            restored = restorer.restore([frame.rgb for frame in window])
            for frame, rgb in zip(targets, restored):
                picture = Picture(rgb, alpha=frame.picture.alpha, grey=frame.picture.grey)
                target = partial / frame.path.name if folder else partial
                target.write_bytes(encode_picture(picture, target.suffix))
                progress.update(1)
        _move_into_place(partial, output, config.overwrite)
    finally:
        progress.close()
        if partial.is_dir():
            shutil.rmtree(partial)
        elif partial.exists():
            partial.unlink()
    result = ProcessResult(output=output, frames=len(sources),
                           seconds=time.perf_counter() - started,
                           codec=output.suffix.lstrip(".").lower() if not folder else "images")
    log.info("%s: %d image(s) in %.1f s → %s", input_path, result.frames, result.seconds, output)
    return result


@dataclass(frozen=True)
class _Frame:
    """A picture and the file it came from, as the batching in :func:`pipeline.stages.padded_windows` sees it."""

    path: Path
    picture: Picture

    @property
    def rgb(self) -> np.ndarray:
        return self.picture.rgb


def _read_frames(paths: list[Path]) -> Iterator[_Frame]:
    """The frames one at a time (memory stays flat however many), all of one size and depth,
    since they are restored in batches."""
    first: Picture | None = None
    for path in paths:
        picture = read_picture(path)
        if first is None:
            first = picture
        elif picture.rgb.shape != first.rgb.shape or picture.rgb.dtype != first.rgb.dtype:
            raise PipelineError(
                f"{path}: is {_describe(picture)} but {paths[0].name} is {_describe(first)}; "
                f"the frames of a folder must share one size and bit depth")
        yield _Frame(path, picture)


def _describe(picture: Picture) -> str:
    height, width = picture.rgb.shape[:2]
    return f"{width}x{height} {8 * picture.rgb.dtype.itemsize}-bit"


def _move_into_place(partial: Path, output: Path, overwrite: bool) -> None:
    """Rename the finished file or folder to ``output``. Into an existing folder (with
    ``overwrite``) the frames are moved one by one, each replacing its namesake, and the
    folder's other files are left alone."""
    if not (partial.is_dir() and output.is_dir()):
        replace(partial, output)
        return
    if not overwrite:  # checked before the run; someone made it since
        raise PipelineError(f"{output}: already exists (pass --overwrite to replace it)")
    for frame in sorted(partial.iterdir()):
        replace(frame, output / frame.name)
    partial.rmdir()
