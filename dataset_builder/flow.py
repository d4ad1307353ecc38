"""Optical-flow temporal upsampling: virtual frames between two source frames.

Averaging discrete frames ghosts when something moves more than about a pixel
between them. REDS therefore interpolated 120 fps footage to a virtual 1920 fps
before averaging. This module does the same with OpenCV's DIS optical flow:

1. flows F01 (frame 0 -> 1) and F10 (1 -> 0), and a forward-backward consistency
   check that marks pixels about to be covered (occluded) in the other frame;
2. for time t, each pixel of frame 0 is projected to x + t F01(x) (frame 1 likewise
   to x + (1-t) F10(x)); where several land on one pixel, a consistent one beats an
   occluded one, then the larger motion wins (a moving object passes in front);
3. both frames are warped backwards with the projected flows and blended with
   weights (1-t, t), using only the frame in which a pixel is visible.

Projecting first and warping after keeps a moving object whole at its
intermediate position instead of cross-fading two copies of it.
Frames are float32 (H, W, C) linear light; guides are uint8 (H, W) grey.
"""

from __future__ import annotations

import logging
from typing import Sequence

import cv2
import numpy as np

log = logging.getLogger(__name__)

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# Forward-backward check of Sundaram et al. (ECCV 2010): |F01 + F10(x+F01)|^2 must stay
# below 1 % of the squared flow lengths plus half a pixel^2.
CONSISTENCY_RELATIVE = 0.01
CONSISTENCY_ABSOLUTE = 0.5
# A frame in which a pixel is not visible still gets this weight, so that a pixel
# seen in neither frame is a plain blend rather than a division by zero.
HIDDEN_WEIGHT = 1e-3
# Fixed-point steps used to rank projection candidates: 1/16 px.
PRIORITY_SCALE = 16.0
PRIORITY_MAX = (1 << 15) - 1


class FlowInterpolator:
    """Makes virtual frames between two frames with DIS optical flow.

    Args:
        preset: DIS preset, ``ultrafast``, ``fast`` or ``medium``.
    """

    def __init__(self, *, preset: str = "medium"):
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    def flow(self, guide0: np.ndarray, guide1: np.ndarray) -> np.ndarray:
        """Dense flow from ``guide0`` to ``guide1``: (H, W, 2) float32, pixels (dx, dy)."""
        return self._dis.calc(guide0, guide1, None)

    def interpolate(self, frame0: np.ndarray, frame1: np.ndarray, guide0: np.ndarray,
                    guide1: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
        """Virtual frames at fractions ``times`` (each in (0, 1)) between two frames.

        Args:
            frame0: (H, W, C) float32 linear light at time 0.
            frame1: (H, W, C) float32 linear light at time 1.
            guide0: (H, W) uint8 encoded grey of frame0, for the flow.
            guide1: (H, W) uint8 encoded grey of frame1.
            times: fractions in (0, 1).

        Returns:
            One (H, W, C) float32 frame per time.
        """
        f01 = self.flow(guide0, guide1)
        f10 = self.flow(guide1, guide0)
        xs, ys = self._coordinates(f01.shape[:2])
        ok0, key0 = _rank(f01, f10, xs, ys)
        ok1, key1 = _rank(f10, f01, xs, ys)
        out = []
        for t in times:
            back0, seen0 = _project(f01, key0, ok0, t, xs, ys)
            back1, seen1 = _project(f10, key1, ok1, 1.0 - t, xs, ys)
            warped0 = _warp(frame0, xs + back0[..., 0], ys + back0[..., 1])
            warped1 = _warp(frame1, xs + back1[..., 0], ys + back1[..., 1])
            w0 = np.where(seen0, 1.0 - t, HIDDEN_WEIGHT * (1.0 - t)).astype(np.float32)
            w1 = np.where(seen1, t, HIDDEN_WEIGHT * t).astype(np.float32)
            total = w0 + w1
            w0 = (w0 / total)[..., None]
            out.append(warped1 + w0 * (warped0 - warped1))
        return out

    def _coordinates(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        if self._grid is None or self._grid[0].shape != shape:
            ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
            self._grid = (xs, ys)
        return self._grid


def _rank(forward: np.ndarray, backward: np.ndarray, xs: np.ndarray,
          ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consistency mask and projection priority of every source pixel.

    Returns:
        ok: (H*W,) bool, the pixel passes the forward-backward check.
        key: (H*W,) int64, larger wins a projection collision; the low 32 bits hold
            the pixel's index so the winner can be looked up.
    """
    ok, error2, speed2 = _check(forward, backward, xs, ys)
    error = np.minimum(np.sqrt(error2) * PRIORITY_SCALE, PRIORITY_MAX - 1).astype(np.int64)
    speed = np.minimum(np.sqrt(speed2) * PRIORITY_SCALE, (1 << 16) - 1).astype(np.int64)
    # Consistent pixels first, then the least inconsistent, then the fastest.
    priority = (np.where(ok, PRIORITY_MAX, PRIORITY_MAX - 1 - error) << 16) | speed
    index = np.arange(error.size, dtype=np.int64)
    return ok.ravel(), (priority.ravel() << 32) | index


def consistent(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) bool: where ``forward`` (frame 0 -> 1) and ``backward`` (1 -> 0), both (H, W, 2)
    float32, agree (Sundaram et al.'s forward-backward check): the pixel is seen in both
    frames and its motion is trustworthy."""
    ys, xs = np.mgrid[0:forward.shape[0], 0:forward.shape[1]].astype(np.float32)
    return _check(forward, backward, xs, ys)[0]


def _check(forward: np.ndarray, backward: np.ndarray, xs: np.ndarray, ys: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(consistent (H, W) bool, squared round-trip error, squared forward length)."""
    fx, fy = forward[..., 0], forward[..., 1]
    back = cv2.remap(backward, xs + fx, ys + fy, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    bx, by = back[..., 0], back[..., 1]
    speed2 = fx * fx + fy * fy
    error2 = (fx + bx) ** 2 + (fy + by) ** 2
    ok = error2 < CONSISTENCY_RELATIVE * (speed2 + bx * bx + by * by) + CONSISTENCY_ABSOLUTE
    return ok, error2, speed2


def _project(forward: np.ndarray, key: np.ndarray, ok: np.ndarray, t: float, xs: np.ndarray,
             ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow from time t to the frame ``forward`` starts from.

    Returns:
        back: (H, W, 2) float32, where to sample the source frame (relative).
        seen: (H, W) bool, a consistent source pixel lands here.
    """
    h, w = xs.shape
    size = h * w
    tx = np.rint(xs + np.float32(t) * forward[..., 0]).astype(np.int32)
    ty = np.rint(ys + np.float32(t) * forward[..., 1]).astype(np.int32)
    target = ty * w + tx
    # Pixels that leave the frame all land on one extra slot, cheaper than masking.
    target[(tx < 0) | (tx >= w) | (ty < 0) | (ty >= h)] = size
    winner = np.full(size + 1, -1, dtype=np.int64)
    np.maximum.at(winner, target.ravel(), key)
    winner = winner[:size]
    hit = winner >= 0
    # Holes (nothing lands) borrow the flow found at the same place: good for smooth
    # motion, and such pixels are marked unseen so the other frame dominates.
    source = np.where(hit, winner & 0xFFFFFFFF, np.arange(size, dtype=np.int64))
    back = forward.reshape(-1, 2)[source] * np.float32(-t)
    seen = hit & ok[source]
    return back.reshape(h, w, 2), seen.reshape(h, w)


def _warp(frame: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    warped = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return warped[..., None] if warped.ndim == 2 else warped


def guide_from_encoded(frame: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8/uint16 encoded frame -> (H, W) uint8 grey for DIS."""
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    if frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(frame[..., 0])
