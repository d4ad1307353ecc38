"""Degradations of the blurred side after averaging: sensor noise and compression.

Real blurred footage is also noisy and compressed; a model trained only on clean
blur learns to sharpen noise. Both are applied to the blurred frame only (the
sharp target stays clean) and are reproducible from a seeded generator.
"""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np

from dataset_builder.errors import BuildError


def add_sensor_noise(linear: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add zero-mean Gaussian noise in linear light, where a sensor adds it.

    Args:
        linear: (H, W, C) float32 linear light in [0, 1].
        sigma: standard deviation as a fraction of full scale.
        rng: the pair's generator (same seed, same noise).

    Returns:
        (H, W, C) float32 in [0, 1]: clipped as a sensor saturates and floors at zero.
    """
    if sigma <= 0:
        return linear
    noise = rng.standard_normal(linear.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(linear + noise, 0.0, 1.0)


def jpeg_roundtrip(encoded: np.ndarray, quality: int) -> np.ndarray:
    """Compress to JPEG at ``quality`` and decode again (deterministic).

    Args:
        encoded: (H, W, C) uint8 or uint16 code values, C = 1 or 3, RGB.
        quality: 1-100.

    Returns:
        The decoded image, same shape and dtype (16-bit input goes through 8 bits,
        as JPEG has no more).
    """
    deep = encoded.dtype == np.uint16
    image8 = (encoded.astype(np.uint32) * 255 + 32767) // 65535 if deep else encoded
    image8 = image8.astype(np.uint8)
    bgr = cv2.cvtColor(image8, cv2.COLOR_RGB2BGR) if image8.shape[2] == 3 else image8[..., 0]
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise BuildError(f"OpenCV could not JPEG-encode a {encoded.shape} frame")
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB) if decoded.ndim == 3 else decoded[..., None]
    return decoded.astype(np.uint16) * 257 if deep else decoded


def h264_roundtrip(encoded: np.ndarray, crf: int) -> np.ndarray:
    """Compress one RGB frame as an H.264 intra frame in 4:2:0 and decode it again.

    Video stores chroma at half resolution and quantises blocks; a model that never saw
    either sharpens their artefacts. Deterministic for the same input.

    Args:
        encoded: (H, W, 3) uint8 RGB, H and W even.
        crf: x264 constant rate factor (18 ~ transparent, 30+ visibly blocky).

    Returns:
        (H, W, 3) uint8 RGB.
    """
    height, width = encoded.shape[:2]
    if height % 2 or width % 2 or encoded.dtype != np.uint8 or encoded.shape[2] != 3:
        raise BuildError(f"h264_roundtrip needs an 8-bit RGB frame of even size, got {encoded.shape} {encoded.dtype}")
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = {"crf": str(int(crf)), "preset": "veryfast", "threads": "1"}
    frame = av.VideoFrame.from_ndarray(encoded, format="rgb24").reformat(format="yuv420p")
    frame.pts = 0
    packets = list(encoder.encode(frame)) + list(encoder.encode(None))
    decoder = av.CodecContext.create("h264", "r")
    decoded = [f for packet in packets for f in decoder.decode(packet)] + list(decoder.decode(None))
    if not decoded:
        raise BuildError("H.264 round trip produced no frame")
    return decoded[-1].to_ndarray(format="rgb24")
