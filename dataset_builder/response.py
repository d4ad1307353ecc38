"""Camera response: encoded code values <-> linear light.

Frames must be averaged in linear light: the light a sensor collects over an
exposure is the mean of the light in each instant, not the mean of the
gamma-encoded values a video stores. GoPro raised frames to the power 2.2 before
averaging; REDS used an inverse camera-response curve fitted with OpenCV's
Robertson calibration. This module offers both and re-encodes to the source's
transfer afterwards (no min-max normalisation, which changes brightness).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dataset_builder.errors import BuildError

# IEC 61966-2-1 (sRGB) constants.
SRGB_DECODE_KNEE = 0.04045
SRGB_ENCODE_KNEE = 0.0031308
SRGB_LINEAR_SLOPE = 12.92
SRGB_EXPONENT = 2.4
SRGB_OFFSET = 0.055
CURVE_LEVELS = 256  # a response curve file has one row per 8-bit code value
CURVE_SUFFIXES = (".npy", ".txt", ".csv")
ENCODE_LUT_TOP = 65535  # sqrt(linear light) is quantised to 16 bits for an 8-bit encode


@dataclass(frozen=True, eq=False)
class Response:
    """A monotonic transfer between code values in [0, 1] and linear light in [0, 1].

    Args:
        name: how the manifest names it (``srgb``, ``gamma2.2``, ``none``, a file name).
        kind: ``srgb``, ``gamma``, ``none`` or ``curve``.
        gamma: the exponent for ``kind == "gamma"``.
        curve: for ``kind == "curve"``, (256, C) linear light per 8-bit code value,
            normalised so the brightest code is 1; C = 1 or 3.
        digest: sha256 of the curve file, so a changed file is noticed on resume.
    """

    name: str
    kind: str
    gamma: float = 1.0
    curve: np.ndarray | None = None
    digest: str | None = None
    _luts: dict[object, np.ndarray] = field(default_factory=dict, repr=False)

    def to_linear(self, frames: np.ndarray) -> np.ndarray:
        """Code values (..., C) uint8/uint16 -> linear light, float32 in [0, 1]."""
        lut = self._decode_lut(np.iinfo(frames.dtype).max, frames.shape[-1])
        if frames.dtype == np.uint8 and frames.ndim == 3 and frames.shape[-1] in (1, 3, 4):
            # OpenCV's LUT is several times faster than a numpy gather.
            table = lut[:, 0] if lut.shape[1] == 1 else lut.reshape(1, -1, lut.shape[1])
            out = cv2.LUT(frames, np.ascontiguousarray(table))
            return out[..., None] if out.ndim == 2 else out
        if lut.shape[1] == 1:
            return lut[:, 0][frames]
        out = np.empty(frames.shape, np.float32)
        for c in range(frames.shape[-1]):
            out[..., c] = lut[:, c][frames[..., c]]
        return out

    def from_linear(self, linear: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Linear light (..., C) float -> code values of ``dtype``, rounded and clipped."""
        dtype = np.dtype(dtype)
        if dtype == np.uint8 and linear.dtype == np.float32 and linear.shape[-1] in (1, 3) and \
                (self.curve is None or self.curve.shape[1] == 1):
            # One table lookup, ~4x faster than the formula. The table is indexed by
            # sqrt(linear) in 16 bits: fine enough near black for any gamma, so a
            # static window re-encodes to exactly its source frame.
            # (numpy for the clamps: cv2.min/max with a scalar only clamp channel 0.)
            index = cv2.sqrt(np.maximum(linear, np.float32(0))).reshape(linear.shape)
            index *= np.float32(ENCODE_LUT_TOP)
            index += np.float32(0.5)
            np.minimum(index, np.float32(ENCODE_LUT_TOP), out=index)
            return self._encode_lut()[index.astype(np.uint16)]
        clipped = np.clip(linear, 0.0, 1.0).astype(np.float32, copy=False)
        top = float(np.iinfo(dtype).max)
        encoded = self.encode(clipped)
        return np.clip(np.rint(encoded * top), 0, top).astype(dtype)

    def _encode_lut(self) -> np.ndarray:
        if "encode8" not in self._luts:
            roots = np.arange(ENCODE_LUT_TOP + 1, dtype=np.float64) / ENCODE_LUT_TOP
            codes = self.encode((roots ** 2).astype(np.float32)[:, None])[:, 0]
            self._luts["encode8"] = np.clip(np.rint(codes * 255), 0, 255).astype(np.uint8)
        return self._luts["encode8"]

    def decode(self, values: np.ndarray) -> np.ndarray:
        """Code values as floats in [0, 1] -> linear light in [0, 1] (same shape)."""
        v = np.clip(values, 0.0, 1.0).astype(np.float32, copy=False)
        if self.kind == "none":
            return v
        if self.kind == "gamma":
            return np.power(v, np.float32(self.gamma))
        if self.kind == "srgb":
            return np.where(v <= SRGB_DECODE_KNEE, v / np.float32(SRGB_LINEAR_SLOPE),
                            np.power((v + np.float32(SRGB_OFFSET)) / np.float32(1 + SRGB_OFFSET),
                                     np.float32(SRGB_EXPONENT))).astype(np.float32)
        return self._apply_curve(v, inverse=False)

    def encode(self, linear: np.ndarray) -> np.ndarray:
        """Linear light in [0, 1] -> code values as floats in [0, 1] (same shape)."""
        x = linear.astype(np.float32, copy=False)
        if self.kind == "none":
            return x
        if self.kind == "gamma":
            return np.power(x, np.float32(1.0 / self.gamma))
        if self.kind == "srgb":
            return encode_srgb(x).astype(np.float32)
        return self._apply_curve(x, inverse=True)

    def _decode_lut(self, top: int, channels: int) -> np.ndarray:
        # A table per code value makes decoding one gather, whatever the curve.
        key = (top, channels)
        cache = self._luts
        if key not in cache:
            codes = np.arange(top + 1, dtype=np.float32) / np.float32(top)
            width = 1 if self.curve is None else self.curve.shape[1]
            if width == 3 and channels == 1:
                width = 1  # grey footage through a colour curve: use the mean curve
            table = np.stack([self.decode(codes[:, None] * np.ones((1, width), np.float32))[:, c]
                              for c in range(width)], axis=1)
            cache[key] = table.astype(np.float32)
        return cache[key]

    def _apply_curve(self, values: np.ndarray, *, inverse: bool) -> np.ndarray:
        assert self.curve is not None
        codes = np.linspace(0.0, 1.0, CURVE_LEVELS, dtype=np.float64)
        curve = self.curve
        channels = values.shape[-1] if values.ndim else 1
        if curve.shape[1] == 3 and channels != 3:
            curve = curve.mean(axis=1, keepdims=True)
        out = np.empty(values.shape, np.float32)
        for c in range(values.shape[-1]):
            column = curve[:, min(c, curve.shape[1] - 1)]
            xp, fp = (column, codes) if inverse else (codes, column)
            out[..., c] = np.interp(values[..., c], xp, fp)
        return out

    def describe(self) -> dict[str, object]:
        """What build.json records: the name, and the file's digest for curves."""
        return {"response": self.name, "response_sha256": self.digest}


def encode_srgb(linear):  # noqa: ANN001, ANN201 - numpy arrays and torch tensors alike
    """Linear light -> sRGB code values in [0, 1] (IEC 61966-2-1).

    Written with operators only, so the builder (numpy) and the on-the-fly pairs
    (``models.synthetic``, torch on the GPU) share one curve.
    """
    x = linear.clip(0.0, 1.0)
    low = x <= SRGB_ENCODE_KNEE
    # x ** (1/2.4) of 0 is fine; the knee keeps the slope finite near black.
    return low * (x * SRGB_LINEAR_SLOPE) + ~low * ((1 + SRGB_OFFSET) * x ** (1 / SRGB_EXPONENT) - SRGB_OFFSET)


def load_response(spec: str) -> Response:
    """Parse ``--response``: ``srgb``, ``gammaG``, ``none``/``linear`` or a curve file.

    A curve file holds the inverse camera response: linear light for each of the
    256 code values, as a ``.npy`` array of shape (256,), (256, 3) or (256, 1, 3)
    (what ``cv2.createCalibrateRobertson().process`` returns) or a text/CSV table
    with 256 rows of 1 or 3 columns. It must increase with the code value.

    Raises:
        BuildError: unknown name, unreadable or non-monotonic curve.
    """
    key = spec.strip().lower()
    if key == "srgb":
        return Response(name="srgb", kind="srgb")
    if key in ("none", "linear"):
        return Response(name="none", kind="none")
    match = re.fullmatch(r"gamma[ =:]?([0-9]*\.?[0-9]+)", key)
    if match:
        gamma = float(match.group(1))
        if not 0.1 <= gamma <= 10:
            raise BuildError(f"--response {spec}: gamma must be between 0.1 and 10")
        return Response(name=f"gamma{gamma:g}", kind="gamma", gamma=gamma)
    path = Path(spec)
    if path.suffix.lower() not in CURVE_SUFFIXES and not path.exists():
        raise BuildError(f"--response {spec!r}: expected srgb, gamma2.2, none, or a curve "
                         f"file ({', '.join(CURVE_SUFFIXES)})")
    return _load_curve(path)


def _load_curve(path: Path) -> Response:
    if not path.is_file():
        raise BuildError(f"--response: curve file {path} does not exist")
    try:
        if path.suffix.lower() == ".npy":
            raw = np.load(path, allow_pickle=False)
        else:
            raw = np.loadtxt(path, delimiter="," if path.suffix.lower() == ".csv" else None,
                             ndmin=2)
    except (OSError, ValueError) as exc:
        raise BuildError(f"--response: cannot read curve file {path}: {exc}") from exc
    curve = np.asarray(raw, dtype=np.float64).reshape(raw.shape[0], -1)
    if curve.shape[0] != CURVE_LEVELS or curve.shape[1] not in (1, 3):
        raise BuildError(f"--response: {path} must hold {CURVE_LEVELS} rows of 1 or 3 values "
                         f"(linear light per 8-bit code value); got shape {tuple(raw.shape)}")
    if not np.all(np.isfinite(curve)) or np.any(np.diff(curve, axis=0) <= 0):
        raise BuildError(f"--response: the curve in {path} must be finite and strictly "
                         "increasing with the code value")
    # Only ratios of linear light matter; pin black to 0 and white to 1.
    curve = (curve - curve[0]) / (curve[-1] - curve[0])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Response(name=path.name, kind="curve", curve=curve.astype(np.float64), digest=digest)
