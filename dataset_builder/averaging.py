"""The shutter model: which instants an exposure integrates, and their mean.

A blurred frame is the light collected while the shutter is open. With ``window``
N and ``duty_cycle`` d the shutter is open for d*N source frame times, centred on
the sharp frame. Each source frame stands for one frame time (plain averaging of
N frames is the d = 1, K = 1 case, as in DBN and GoPro). With ``interpolate`` K
the scene is sampled K times per frame time -- K-1 of them optical-flow frames --
each sample standing for 1/K of a frame time, and weighted by how much of that
slice the shutter was open. Offsets are in source frames from the sharp frame.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from dataset_builder.flow import FlowInterpolator

# Samples whose share of the exposure is below this are rounding noise.
MIN_WEIGHT = 1e-9


@dataclass(frozen=True)
class ExposureSample:
    """One instant the shutter integrates.

    Args:
        offset: time from the sharp frame, in source frame intervals.
        weight: share of the exposure; the weights of an exposure sum to 1.
    """

    offset: float
    weight: float


def exposure_samples(window: int, interpolate: int = 1,
                     duty_cycle: float = 1.0) -> tuple[ExposureSample, ...]:
    """The samples of one exposure, oldest first.

    Args:
        window: N, odd; the shutter spans N frame times at duty cycle 1.
        interpolate: K >= 1 samples per frame time.
        duty_cycle: fraction of the N frame times the shutter is open, in (0, 1].
    """
    half = duty_cycle * window / 2.0
    step = 1.0 / interpolate
    reach = math.ceil((half + step / 2) * interpolate)
    samples = []
    for m in range(-reach, reach + 1):
        t = m * step
        overlap = min(t + step / 2, half) - max(t - step / 2, -half)
        if overlap * interpolate > MIN_WEIGHT:
            samples.append((t, overlap))
    total = sum(w for _, w in samples)
    return tuple(ExposureSample(offset=t, weight=w / total) for t, w in samples)


def frames_span(samples: tuple[ExposureSample, ...]) -> tuple[int, int]:
    """(lo, hi): the source frames an exposure reads, as offsets from the centre.

    A sample between two frames needs both; with K > 1 the outer half frame of
    the exposure lies between the window's last frame and the next one.
    """
    lo = min(math.floor(s.offset + 1e-9) for s in samples)
    hi = max(math.ceil(s.offset - 1e-9) for s in samples)
    return lo, hi


class WindowAverager:
    """Blurs one window: the weighted mean, in linear light, of its samples.

    Args:
        window: N, odd.
        interpolate: K; K > 1 needs ``interpolator``.
        duty_cycle: fraction of the window the shutter is open.
        interpolator: makes the virtual frames between source frames.
    """

    def __init__(self, *, window: int, interpolate: int = 1, duty_cycle: float = 1.0,
                 interpolator: FlowInterpolator | None = None):
        self.samples = exposure_samples(window, interpolate, duty_cycle)
        self.span = frames_span(self.samples)
        self._interpolator = interpolator
        if interpolator is None and any(not _is_whole(s.offset) for s in self.samples):
            raise ValueError("interpolate > 1 needs a FlowInterpolator")

    def frames_used(self, centre: int) -> list[int]:
        """The source frames that contribute to the exposure centred on ``centre``."""
        used = set()
        for s in self.samples:
            used.add(centre + math.floor(s.offset + 1e-9))
            used.add(centre + math.ceil(s.offset - 1e-9))
        return sorted(used)

    def blur(self, centre: int, linear: Callable[[int], np.ndarray],
             guide: Callable[[int], np.ndarray]) -> np.ndarray:
        """The blurred frame centred on source frame ``centre``.

        Args:
            centre: index of the sharp frame.
            linear: frame index -> (H, W, C) float32 linear light.
            guide: frame index -> (H, W) uint8 grey, for optical flow.

        Returns:
            (H, W, C) float32 linear light in [0, 1].
        """
        whole: dict[int, float] = defaultdict(float)
        between: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for s in self.samples:
            if _is_whole(s.offset):
                whole[centre + round(s.offset)] += s.weight
            else:
                base = math.floor(s.offset)
                between[centre + base].append((s.offset - base, s.weight))
        acc: np.ndarray | None = None
        for index, weight in sorted(whole.items()):
            acc = _accumulate(acc, linear(index), weight)
        for index, items in sorted(between.items()):
            assert self._interpolator is not None
            virtual = self._interpolator.interpolate(
                linear(index), linear(index + 1), guide(index), guide(index + 1),
                [t for t, _ in items])
            for frame, (_, weight) in zip(virtual, items):
                acc = _accumulate(acc, frame, weight)
        assert acc is not None
        return acc


def _accumulate(acc: np.ndarray | None, frame: np.ndarray, weight: float) -> np.ndarray:
    if acc is None:
        return frame * np.float32(weight)
    # acc += weight * frame without a temporary: the frames are ~11 MB each at 720p.
    cv2.scaleAdd(frame, float(weight), acc, dst=acc)
    return acc


def _is_whole(offset: float) -> bool:
    return abs(offset - round(offset)) < 1e-9
