"""Temporal consistency: does restoring frame by frame flicker?

The flow-warping error of Lai et al. (*Learning Blind Video Temporal Consistency*, ECCV 2018):
for consecutive frames t-1, t, warp frame t-1 onto frame t along the motion between the two
*sharp* frames (OpenCV DIS, the builder's flow) and take the mean squared difference over the
pixels that flow sees in both (forward-backward consistent):

    E_warp = mean_t  sum_x M_t(x) |O_t(x) - warp(O_{t-1})(x)|^2 / sum_x M_t(x)

The same figure for the sharp frames is the floor (flow errors, lighting); for the blurred
input it is what the video looked like. A restoration that flickers scores worse than its input.
Reported as MSE x 1000 on RGB in [0, 1].

Training can lower it directly (:func:`temporal_loss`): for two consecutive rendered samples of
one motion, the change of the output's *error* along the same motion, |e_t - warp(e_{t-1})|^2
with e = output - sharp, is penalised. Where the output equals the sharp frames it is zero, so
the term never pulls away from them; it costs only the part of the error that flickers.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

import torch
import torch.nn.functional as F
from torch import Tensor

from dataset_builder.flow import DIS_PRESETS, consistent, guide_from_encoded

WARP_ERROR_SCALE = 1000.0


def sharp_motion(dis: cv2.DISOpticalFlow, previous: np.ndarray, current: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The motion between two consecutive sharp frames (uint8/uint16 RGB), as the warping
    error takes it: (flow (H, W, 2) from frame t to t-1 in px, mask (H, W) float32, 1 where
    it is forward-backward consistent)."""
    guides = [guide_from_encoded(frame) for frame in (previous, current)]
    back = dis.calc(guides[1], guides[0], None)  # frame t -> t-1
    forth = dis.calc(guides[0], guides[1], None)
    return back, consistent(back, forth).astype(np.float32)


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
        back, mask = sharp_motion(self._dis, *motion_from)
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


class PairWarps:
    """The warps of consecutive training pairs, from their sharp frames (as :class:`WarpingError`)."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS["medium"])

    def __call__(self, sharp: Tensor) -> tuple[Tensor, Tensor]:
        """For sharp frames (2N, 3, H, W) in [0, 1] on 8-bit levels, pairs adjacent (t-1, t):
        (grid (N, H, W, 2), grid_sample's coordinates of each frame-t pixel in frame t-1;
        mask (N, 1, H, W)), on sharp's device."""
        frames = (sharp.detach().float() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        height, width = frames.shape[1:3]
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        grids, masks = [], []
        for previous, current in zip(frames[0::2], frames[1::2]):
            back, mask = sharp_motion(self._dis, np.ascontiguousarray(previous), np.ascontiguousarray(current))
            # Pixel coordinates -> [-1, 1], align_corners=True (pixel centres at the ends).
            grids.append(np.stack([2 * (xs + back[..., 0]) / max(width - 1, 1) - 1,
                                   2 * (ys + back[..., 1]) / max(height - 1, 1) - 1], axis=-1))
            masks.append(mask[None])
        return (torch.from_numpy(np.stack(grids)).to(sharp.device),
                torch.from_numpy(np.stack(masks)).to(sharp.device))


def temporal_loss(restored: Tensor, sharp: Tensor, grid: Tensor, mask: Tensor) -> Tensor:
    """Mean over pairs of the masked mean of |e_t - warp(e_{t-1})|^2, e = restored - sharp.

    Args:
        restored, sharp: (2N, 3, H, W), consecutive pairs adjacent (t-1, t).
        grid, mask: the pairs' warps (:class:`PairWarps`).
    """
    error = restored.float() - sharp.float()
    warped = F.grid_sample(error[0::2], grid, mode="bilinear", padding_mode="border", align_corners=True)
    change = ((error[1::2] - warped) ** 2).mean(dim=1, keepdim=True)
    return ((change * mask).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp_min(1.0)).mean()
