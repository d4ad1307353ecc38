"""Still images in and out: RGB order, 8 or 16 bits, atomic PNG writes.

OpenCV works in BGR; everything outside this file is RGB. Frames are arrays of
shape (H, W, C) with C = 1 (grey) or 3 (RGB), dtype uint8 or uint16.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import cv2
import numpy as np

from dataset_builder.errors import BuildError
from unsmear.files import write_bytes_atomic

log = logging.getLogger(__name__)

# zlib level 1 with the "up" filter: as small as OpenCV's default (adaptive filters)
# for video frames at ~60 % of its CPU time; two PNGs per pair cost about as much as
# decoding the frames behind them.
PNG_COMPRESSION = 1
PNG_FILTER = cv2.IMWRITE_PNG_FILTER_UP


def read_image(path: Path) -> np.ndarray:
    """Read an image as (H, W, C) uint8 or uint16, C = 1 or 3, RGB order.

    An alpha channel is dropped (frames are opaque). Falls back to PyAV's decoders
    when OpenCV cannot read the file (e.g. its libpng was bound to another zlib).

    Raises:
        BuildError: the file is not a readable 8/16-bit image.
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        image = _read_with_pyav(path)
    elif image.ndim == 3:
        code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype not in (np.uint8, np.uint16):
        raise BuildError(f"{path}: {image.dtype} images are not supported (8- or 16-bit only)")
    return np.ascontiguousarray(image)


def _read_with_pyav(path: Path) -> np.ndarray:
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
    except (av.FFmpegError, StopIteration, OSError) as exc:
        raise BuildError(f"cannot read image {path}: {exc}") from exc
    fmt = frame.format
    deep = max(c.bits for c in fmt.components) > 8
    if fmt.name.startswith(("gray", "ya")):
        return frame.to_ndarray(format="gray16le" if deep else "gray")
    return frame.to_ndarray(format="rgb48le" if deep else "rgb24")


def write_png(path: Path, image: np.ndarray, *, small: bool = False) -> None:
    """Write (H, W, C) uint8/uint16 RGB or grey as PNG, atomically.

    The file appears under its final name only once complete, so an interrupted
    build never leaves a truncated PNG that looks finished.

    Args:
        path: where to write.
        image: the pixels.
        small: compress hard (figures) instead of fast (pairs).
    """
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 9] if small else \
        [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION, cv2.IMWRITE_PNG_FILTER, PNG_FILTER]
    ok, encoded = cv2.imencode(".png", image, params)
    if not ok:
        raise OSError(f"OpenCV could not encode {path} as PNG ({image.dtype}, {image.shape})")
    write_bytes_atomic(path, encoded.tobytes())


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 1) grey -> (H, W, 3) by repeating the channel; RGB unchanged."""
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
