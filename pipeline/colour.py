"""Colour properties of a video stream, and the swscale settings that convert it to RGB and back.

The model works on RGB, so every frame is converted YUV → RGB → YUV. Both directions must use
the stream's own matrix and range, or colours shift (the classic BT.601-vs-709 mistake), and the
output must carry the input's primaries / transfer / matrix / range tags so players show it alike.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, replace

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from unsmear.media import frame_side_data

# FFmpeg's AVColorSpace values (libavutil/pixfmt.h).
_SPC_RGB = 0
_SPC_BT709 = 1
_SPC_UNSPECIFIED = 2
_SPC_FCC = 4
_SPC_BT470BG = 5
_SPC_SMPTE170M = 6
_SPC_SMPTE240M = 7
_SPC_BT2020_NCL = 9
_SPC_BT2020_CL = 10

# swscale's SWS_CS_* constants, which PyAV's reformatter takes as its colorspace argument.
_SWS_BT709 = 1
_SWS_FCC = 4
_SWS_BT601 = 5
_SWS_SMPTE240M = 7
_SWS_BT2020 = 9

_SPC_TO_SWS = {
    _SPC_BT709: _SWS_BT709,
    _SPC_FCC: _SWS_FCC,
    _SPC_BT470BG: _SWS_BT601,
    _SPC_SMPTE170M: _SWS_BT601,
    _SPC_SMPTE240M: _SWS_SMPTE240M,
    _SPC_BT2020_NCL: _SWS_BT2020,
    _SPC_BT2020_CL: _SWS_BT2020,
}

# The matrix tag that names each swscale conversion we may fall back to (sws_matrix).
_SWS_TO_SPC = {_SWS_BT709: _SPC_BT709, _SWS_BT601: _SPC_SMPTE170M}

# AVColorRange values.
RANGE_UNSPECIFIED = 0
RANGE_LIMITED = 1
RANGE_FULL = 2

# swscale threads per conversion. ``VideoFrame.reformat`` builds a fresh context for every
# frame, with PyAV's default of one thread per core: RGB -> YUV of a 1080p frame took 10.2 ms
# on the quiet 2-core dev machine against 3.2 ms with one reused single-threaded context, and
# with the cores busy (as the encoder and model keep them) 14.5 / 31.9 ms each way against
# 5.4 / 15.6 ms (docs/benchmarks.md). Parallelism comes from converting several frames at
# once (pipeline.ordered) instead.
SWS_THREADS = 1

_local = threading.local()

# (Kr, Kb) of each swscale matrix: R'G'B' from Y'CbCr (ITU-R BT.601, BT.709, BT.2020, SMPTE 240M, FCC).
_LUMA_WEIGHTS = {_SWS_BT709: (0.2126, 0.0722), _SWS_BT601: (0.299, 0.114), _SWS_BT2020: (0.2627, 0.0593),
                 _SWS_SMPTE240M: (0.212, 0.087), _SWS_FCC: (0.30, 0.11)}


def _planar_yuv_bits(fmt: av.VideoFormat, sws_matrix: int) -> int | None:
    """Bits per sample of a little-endian planar Y'CbCr layout (Y, Cb, Cr in planes 0, 1, 2)
    of 8 to 16 bits with a matrix we know, or None (swscale converts other layouts)."""
    components = fmt.components
    if (not fmt.is_planar or fmt.is_rgb or fmt.is_big_endian or len(components) != 3
            or [c.plane for c in components] != [0, 1, 2] or sws_matrix not in _LUMA_WEIGHTS
            or not 8 <= components[0].bits <= 16):
        return None
    return components[0].bits


def _gray_bits(fmt: av.VideoFormat) -> int | None:
    """Bits per sample of a little-endian grey layout of 9 to 16 bits, or None. swscale reads
    and writes grey as full range whatever its tag (8-bit grey it copies, exactly; deeper grey
    it shifts, and writes back biased: +1.6 codes per pass at 10 bits, +7.8 at 12)."""
    components = fmt.components
    if (len(components) != 1 or fmt.is_rgb or fmt.is_big_endian or not fmt.name.startswith("gray")
            or not 9 <= components[0].bits <= 16):
        return None
    return components[0].bits


def _yuv_from_rgb(sws_matrix: int, sws_range: int, bits: int, peak: float) -> np.ndarray:
    """(3, 4) affine map from R'G'B' in [0, peak] to Y'CbCr code values of ``bits`` bits."""
    kr, kb = _LUMA_WEIGHTS[sws_matrix]
    kg = 1.0 - kr - kb
    if sws_range == RANGE_FULL:
        y0, y_span, c_span = 0.0, float((1 << bits) - 1), float((1 << bits) - 1)
    else:
        y0, y_span, c_span = float(16 << (bits - 8)), float(219 << (bits - 8)), float(224 << (bits - 8))
    c0 = float(1 << (bits - 1))
    luma = np.array([kr, kg, kb])
    matrix = np.stack([luma * y_span,
                       (np.array([0.0, 0.0, 1.0]) - luma) / (2 * (1 - kb)) * c_span,
                       (np.array([1.0, 0.0, 0.0]) - luma) / (2 * (1 - kr)) * c_span]) / peak
    return np.hstack([matrix, np.array([[y0], [c0], [c0]])])


def yuv_to_rgb(frame: av.VideoFrame, sws_matrix: int, sws_range: int, rgb_format: str) -> np.ndarray | None:
    """A planar Y'CbCr frame (4:2:0, 4:2:2, 4:4:4..., 8 to 16 bits) or a grey one of 9 to 16
    bits as RGB (H, W, 3), uint8 for rgb24, uint16 for rgb48le; None for other layouts
    (swscale converts those).

    swscale's own YUV -> RGB truncates: its RGB came out up to a level dark (mean -0.49 of 255
    for 8- and 10-bit video, docs/benchmarks.md), so every output was a little darker than its
    input. Here each chroma sample is repeated to full size (as swscale's RGB path does:
    bilinear chroma lost 3 dB on sharp coloured edges; swscale's own nearest scaler shifts it
    by a pixel) and OpenCV applies the matrix, rounded.
    """
    peak = 255.0 if rgb_format == "rgb24" else 65535.0
    if (bits := _gray_bits(frame.format)) is not None:
        plane = frame.planes[0]
        grey = np.frombuffer(plane, "<u2").reshape(plane.height, plane.line_size // 2)[:, :plane.width]
        grey = np.rint(grey * np.float32(peak / ((1 << bits) - 1)))
        return cv2.merge([grey.astype(np.uint8 if rgb_format == "rgb24" else np.uint16)] * 3)
    bits = _planar_yuv_bits(frame.format, sws_matrix)
    if bits is None:
        return None
    dtype = np.dtype(np.uint8) if bits == 8 else np.dtype("<u2")
    height, width = frame.height, frame.width
    planes = []
    for plane in frame.planes:
        samples = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
        samples = samples[:, :plane.width]
        if samples.shape != (height, width):  # subsampled chroma: each sample repeated
            fy, fx = -(-height // plane.height), -(-width // plane.width)
            samples = cv2.resize(samples, (plane.width * fx, plane.height * fy),
                                 interpolation=cv2.INTER_NEAREST)[:height, :width]
        planes.append(np.ascontiguousarray(samples))
    forward = _yuv_from_rgb(sws_matrix, sws_range, bits, peak)
    matrix = np.linalg.inv(forward[:, :3])
    image = cv2.merge(planes)
    if (image.dtype == np.uint8) != (rgb_format == "rgb24"):
        image = image.astype(np.float32)
    rgb = cv2.transform(image, np.hstack([matrix, -matrix @ forward[:, 3:]]))  # rounded, clipped to the type
    if rgb.dtype == np.float32:
        return np.clip(np.rint(rgb), 0.0, peak).astype(np.uint8 if rgb_format == "rgb24" else np.uint16)
    return rgb


def rgb48_to_yuv(rgb: np.ndarray, pix_fmt: str, sws_matrix: int, sws_range: int) -> av.VideoFrame | None:
    """16-bit RGB (H, W, 3) as a frame of the planar Y'CbCr ``pix_fmt`` (8 to 16 bits) or grey
    one (9 to 16 bits), or None for other layouts (swscale converts those).

    swscale's RGB48 -> Y'CbCr is biased: a 10-bit frame came out up to 4 code values bright
    (mean +1.7 on Y, white at 943 > 940), and each pass through the tool added it again
    (docs/benchmarks.md); its 8-bit RGB input is exact and keeps swscale. Here OpenCV applies
    the matrix and the subsampled chroma is the mean of the pixels it covers (the
    reader repeats each chroma sample back: a flat area comes back as it was), all in 16-bit
    integers (14.6 ms per 1080p 10-bit frame on one busy core, swscale 8.2 ms).
    """
    fmt = av.VideoFormat(pix_fmt)
    bits = _planar_yuv_bits(fmt, sws_matrix)
    gray = _gray_bits(fmt)
    if bits is None and gray is None:
        return None
    height, width = rgb.shape[:2]
    rgb = np.ascontiguousarray(rgb)
    if gray is not None:  # full range, as swscale reads it (_gray_bits)
        kr, kb = _LUMA_WEIGHTS.get(sws_matrix, _LUMA_WEIGHTS[_SWS_BT709])
        bits, to_yuv = gray, np.array([[kr, 1.0 - kr - kb, kb, 0.0]]) * (((1 << gray) - 1) / 65535.0)
    else:
        to_yuv = _yuv_from_rgb(sws_matrix, sws_range, bits, 65535.0)
    frame = av.VideoFrame(width, height, pix_fmt)
    dtype = np.dtype(np.uint8) if bits == 8 else np.dtype("<u2")
    chroma = None
    for index, plane in enumerate(frame.planes):
        if index == 0:  # OpenCV rounds and saturates to the type
            samples = cv2.transform(rgb, to_yuv[:1])
        else:
            if chroma is None:
                # The matrix is affine: the mean of a block's chroma is the chroma of its mean RGB.
                block = rgb
                if (plane.height, plane.width) != (height, width):
                    fy, fx = -(-height // plane.height), -(-width // plane.width)
                    block = cv2.copyMakeBorder(rgb, 0, plane.height * fy - height, 0, plane.width * fx - width,
                                               cv2.BORDER_REPLICATE)
                    block = cv2.resize(block, (plane.width, plane.height), interpolation=cv2.INTER_AREA)
                chroma = cv2.transform(block, to_yuv[1:])
            samples = chroma[..., index - 1]
        # Straight into the frame's plane (its padding past the width is never read).
        codes = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
        np.minimum(samples, (1 << bits) - 1, out=codes[:, :plane.width], casting="unsafe")
    return frame


def thread_reformatter() -> VideoReformatter:
    """This thread's swscale context holder, reused frame after frame (not thread-safe)."""
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:
        reformatter = _local.reformatter = VideoReformatter()
    return reformatter


# Players assume BT.709 for untagged HD and BT.601 for untagged SD video; so do we.
_HD_MIN_HEIGHT = 720


@dataclass(frozen=True)
class HdrMetadata:
    """HDR10's static metadata (SMPTE ST 2086 mastering display, CTA-861.3 light levels), in
    the units HEVC's and AV1's SEI/OBUs code them: chromaticities in 1/50000, luminance in
    1/10000 cd/m². Absent parts are None."""

    primaries: tuple[int, ...] | None = None   # G x, y, B x, y, R x, y, white point x, y
    luminance: tuple[int, int] | None = None   # max, min
    light_level: tuple[int, int] | None = None  # MaxCLL, MaxFALL (cd/m²)

    @classmethod
    def of_frame(cls, frame) -> "HdrMetadata | None":
        """From a decoded frame's side data (FFmpeg's AVMasteringDisplayMetadata and
        AVContentLightMetadata structs), or None when it has neither."""
        primaries = luminance = light_level = None
        for side_data in frame_side_data(frame):
            data = bytes(side_data)
            if side_data.type == av.sidedata.sidedata.Type.MASTERING_DISPLAY_METADATA and len(data) >= 88:
                # display_primaries[3][2] (R, G, B), white_point[2], min, max: AVRationals
                # (int32 num, den), then int has_primaries, has_luminance.
                values = struct.unpack("<20i2i", data[:88])
                ratio = [values[2 * i] / values[2 * i + 1] if values[2 * i + 1] else 0.0 for i in range(10)]
                has_primaries, has_luminance = values[20], values[21]
                if has_primaries:
                    r, g, b, white = ratio[0:2], ratio[2:4], ratio[4:6], ratio[6:8]
                    primaries = tuple(round(v * 50000) for v in (*g, *b, *r, *white))
                if has_luminance:
                    luminance = (round(ratio[9] * 10000), round(ratio[8] * 10000))
            elif side_data.type == av.sidedata.sidedata.Type.CONTENT_LIGHT_LEVEL and len(data) >= 8:
                light_level = struct.unpack("<2I", data[:8])
        if primaries is None and luminance is None and light_level is None:
            return None
        return cls(primaries, luminance, light_level)

    def x265_params(self) -> list[str]:
        """x265's ``master-display`` and ``max-cll`` parameters."""
        params = []
        if self.primaries is not None and self.luminance is not None:
            gx, gy, bx, by, rx, ry, wx, wy = self.primaries
            params.append(f"master-display=G({gx},{gy})B({bx},{by})R({rx},{ry})WP({wx},{wy})"
                          f"L({self.luminance[0]},{self.luminance[1]})")
        if self.light_level is not None:
            params.append(f"max-cll={self.light_level[0]},{self.light_level[1]}")
        return params

    def svtav1_params(self) -> list[str]:
        """SVT-AV1's ``mastering-display`` and ``content-light`` parameters (chromaticities
        and cd/m² as decimals)."""
        params = []
        if self.primaries is not None and self.luminance is not None:
            gx, gy, bx, by, rx, ry, wx, wy = (v / 50000 for v in self.primaries)
            params.append(f"mastering-display=G({gx:.4f},{gy:.4f})B({bx:.4f},{by:.4f})"
                          f"R({rx:.4f},{ry:.4f})WP({wx:.4f},{wy:.4f})"
                          f"L({self.luminance[0] / 10000:.4f},{self.luminance[1] / 10000:.4f})")
        if self.light_level is not None:
            params.append(f"content-light={self.light_level[0]},{self.light_level[1]}")
        return params


@dataclass(frozen=True)
class ColourProperties:
    """The four colour tags of a video stream, as FFmpeg's integer enums (0/2 = unspecified),
    and HDR10's static metadata where the input carries it."""

    primaries: int = 2
    transfer: int = 2
    matrix: int = _SPC_UNSPECIFIED
    range: int = RANGE_UNSPECIFIED
    hdr: HdrMetadata | None = None

    @classmethod
    def of_frame(cls, frame, pix_fmt: str) -> "ColourProperties":
        """Read the tags of a decoded ``av.VideoFrame``; ``yuvj*`` formats imply full range."""
        colour_range = int(frame.color_range)
        if colour_range == RANGE_UNSPECIFIED and pix_fmt.startswith("yuvj"):
            colour_range = RANGE_FULL
        return cls(
            primaries=int(frame.color_primaries),
            transfer=int(frame.color_trc),
            matrix=int(frame.colorspace),
            range=colour_range,
            hdr=HdrMetadata.of_frame(frame),
        )

    def sws_matrix(self, height: int) -> int:
        """The swscale colorspace to convert with: the tagged one, or the usual default."""
        if self.matrix in _SPC_TO_SWS:
            return _SPC_TO_SWS[self.matrix]
        return _SWS_BT709 if height >= _HD_MIN_HEIGHT else _SWS_BT601

    @property
    def sws_range(self) -> int:
        """The range swscale should assume: untagged video is limited range."""
        return RANGE_FULL if self.range == RANGE_FULL else RANGE_LIMITED

    def for_output(self, pix_fmt: str, height: int) -> "ColourProperties":
        """The tags of an output in ``pix_fmt``: an RGB format is tagged RGB (full range),
        whatever matrix the input named (a YUV tag on RGB pictures makes decoders read the
        planes as YUV); a YUV format converted from an RGB input gets the matrix it was
        converted with (:meth:`sws_matrix`). Otherwise the input's own tags."""
        if av.VideoFormat(pix_fmt).is_rgb:
            return replace(self, matrix=_SPC_RGB, range=RANGE_FULL)
        if self.matrix == _SPC_RGB:
            return replace(self, matrix=_SWS_TO_SPC[self.sws_matrix(height)])
        return self

    def tag(self, target) -> None:
        """Write the tags onto an ``av.VideoFrame`` or a video codec context."""
        target.color_primaries = self.primaries
        target.color_trc = self.transfer
        target.colorspace = self.matrix
        target.color_range = self.range
