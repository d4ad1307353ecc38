"""Temporal consistency: does restoring frame by frame flicker?

The flow-warping error of Lai et al. (*Learning Blind Video Temporal Consistency*, ECCV 2018):
for consecutive frames t-1, t, warp frame t-1 onto frame t along the motion between the two
*sharp* frames (OpenCV DIS, the builder's flow) and take the mean squared difference over the
pixels that flow sees in both (forward-backward consistent):

    E_warp = mean_t  sum_x M_t(x) |O_t(x) - warp(O_{t-1})(x)|^2 / sum_x M_t(x)

The same figure for the sharp frames is the floor (flow errors, lighting); for the blurred
input it is what the video looked like. A restoration that flickers scores worse than its input.
Reported as MSE x 1000 on RGB in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dataset_builder.flow import DIS_PRESETS, consistent, guide_from_encoded

WARP_ERROR_SCALE = 1000.0


def sequences(records: Sequence) -> list[list]:
    """Runs of consecutive frames among pairs (``PairRecord``): same source, sharp frames one
    stride apart. Rendered pairs (independent samples) form none."""
    by_source: dict[str, list] = {}
    for record in records:
        if record.stride > 0 and record.sharp_frame >= 0:
            by_source.setdefault(record.source, []).append(record)
    runs = []
    for source in sorted(by_source):
        ordered = sorted(by_source[source], key=lambda r: r.sharp_frame)
        run = [ordered[0]]
        for record in ordered[1:]:
            if record.sharp_frame - run[-1].sharp_frame == record.stride:
                run.append(record)
            else:
                if len(run) > 1:
                    runs.append(run)
                run = [record]
        if len(run) > 1:
            runs.append(run)
    return runs


class WarpingError:
    """Accumulates E_warp of several versions of the same frames (output, input, sharp)."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS["medium"])
        self._sums: dict[str, float] = {}
        self.pairs = 0

    def add(self, motion_from: tuple[np.ndarray, np.ndarray], **versions: tuple[np.ndarray, np.ndarray]) -> None:
        """One pair of consecutive frames (t-1, t): the sharp frames that give the motion
        (uint8/uint16 RGB) and each version's frames ((H, W, 3) float in [0, 1])."""
        guides = [guide_from_encoded(frame) for frame in motion_from]
        back = self._dis.calc(guides[1], guides[0], None)  # frame t -> t-1
        forth = self._dis.calc(guides[0], guides[1], None)
        mask = consistent(back, forth).astype(np.float32)
        h, w = mask.shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        map_x, map_y = xs + back[..., 0], ys + back[..., 1]
        for name, (previous, current) in versions.items():
            warped = cv2.remap(previous.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
            error = ((current - warped) ** 2).mean(axis=2)
            self._sums[name] = self._sums.get(name, 0.0) + float((error * mask).sum() / max(mask.sum(), 1.0))
        self.pairs += 1

    def result(self) -> dict[str, float] | None:
        """{"pairs": n, name: mean E_warp (MSE x 1000)} or None when no pair was added."""
        if not self.pairs:
            return None
        return {"pairs": self.pairs, **{k: WARP_ERROR_SCALE * v / self.pairs for k, v in self._sums.items()}}
