"""How things move between neighbouring frames, as the video generator sees it.

A blurred frame's streaks run along the motion during its exposure; in a video that motion
shows between the frame and its neighbours. For every restored frame this module estimates
the optical flow from it to each neighbour, from the *blurred* frames themselves (what the
pipeline has, and what training computes on its rendered blurred frames: the same function,
so the network sees at inference the flow it learnt from):

* OpenCV's DIS flow (``FLOW_PRESET``) on grey frames area-downscaled by ``FLOW_DOWNSCALE``
  (blur is smooth, and half the resolution is a quarter of the cost: ~80 ms per 1080p frame
  on one CPU core for its two flows, against seconds for the network there), upsampled back;
* checked forward-backward (:func:`dataset_builder.flow.consistent`, Sundaram et al.): where
  the two flows disagree (occlusions, unreliable matches) the motion given is zero, which
  asks the network to restore nothing it cannot see moving;
* a neighbour whose flow is consistent on less than ``MIN_CONSISTENT`` of the frame (a
  scene cut, a flash) is dropped: it is replaced by the restored frame itself with zero
  motion, exactly what the first and last frames of a clip get (their missing neighbours
  are the edge frame replicated). Identical frames get zero flow without a flow call.

Flow is in pixels of the full frame, (dx, dy): where a pixel of the restored frame is found
in the neighbour. Generators that take motion get it as extra input channels after the
stacked frames (``GeneratorConfig.motion_channels``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from dataset_builder.flow import DIS_PRESETS, consistent, guide_from_encoded

FLOW_PRESET = "medium"
FLOW_DOWNSCALE = 2
MIN_CONSISTENT = 0.5  # share of consistent pixels below which a neighbour counts as another shot
MIN_FLOW_SIDE = 16  # frames smaller than this (after downscaling) get no flow: too little to match


class MotionEstimator:
    """Flows from restored frames to their neighbours, and which neighbours to keep.

    Args:
        in_frames: frames the generator stacks (odd); ``in_frames // 2`` neighbours each side.
    """

    def __init__(self, in_frames: int) -> None:
        self.in_frames = in_frames
        self.context = in_frames // 2
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[FLOW_PRESET])

    @property
    def channels(self) -> int:
        """Motion channels per restored frame: (dx, dy) for each neighbour."""
        return 2 * (self.in_frames - 1)

    def windows(self, frames: Sequence[np.ndarray], count: int) -> tuple[np.ndarray, np.ndarray]:
        """Motion for ``count`` restored frames of a run of consecutive frames.

        Args:
            frames: ``count + 2 * context`` (H, W, 3) uint8/uint16 RGB frames, oldest first;
                restored frame i is ``frames[i + context]``, its neighbours around it.

        Returns:
            order: (count, in_frames) int, for each restored frame the index in ``frames`` of
                each frame to stack, oldest first (a dropped neighbour points at the restored
                frame itself);
            motion: (count, channels, H, W) float32, flow in pixels to each neighbour (oldest
                first, the restored frame skipped), zero where it is not trustworthy.
        """
        c = self.context
        height, width = frames[0].shape[:2]
        guides: dict[int, np.ndarray] = {}
        flows: dict[tuple[int, int], np.ndarray | None] = {}

        def flow(a: int, b: int) -> np.ndarray | None:
            """Low-resolution flow a -> b; None where the frames are the same picture."""
            if (a, b) not in flows:
                if frames[a] is frames[b] or np.array_equal(frames[a], frames[b]):
                    flows[a, b] = None
                else:
                    flows[a, b] = self._dis.calc(guide(a), guide(b), None)
            return flows[a, b]

        def guide(i: int) -> np.ndarray:
            if i not in guides:
                guides[i] = _guide(frames[i])
            return guides[i]

        order = np.tile(np.arange(self.in_frames), (count, 1)) + np.arange(count)[:, None]
        motion = np.zeros((count, self.channels, height, width), np.float32)
        if _flow_size(height, width) is None:
            return order, motion
        for i in range(count):
            centre = i + c
            slot = 0
            for offset in range(-c, c + 1):
                if offset == 0:
                    continue
                neighbour = centre + offset
                forward = flow(centre, neighbour)
                if forward is not None:
                    ok = consistent(forward, flow(neighbour, centre))
                    if ok.mean() < MIN_CONSISTENT:
                        order[i, offset + c] = centre  # another shot: drop the neighbour
                    else:
                        motion[i, 2 * slot:2 * slot + 2] = _full_resolution(forward * ok[..., None],
                                                                          height, width)
                slot += 1
        return order, motion


def _flow_size(height: int, width: int) -> tuple[int, int] | None:
    """(width, height) the flow is estimated at, or None for frames too small to match."""
    w, h = round(width / FLOW_DOWNSCALE), round(height / FLOW_DOWNSCALE)
    return (w, h) if min(w, h) >= MIN_FLOW_SIDE else None


def _guide(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB frame -> the uint8 grey picture DIS matches, at the flow's size."""
    grey = guide_from_encoded(frame)
    size = _flow_size(*grey.shape)
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def _full_resolution(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, 2) low-resolution flow -> (2, height, width) in full-resolution pixels."""
    h, w = flow.shape[:2]
    up = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    up[..., 0] *= width / w
    up[..., 1] *= height / h
    return up.transpose(2, 0, 1)


def add_motion(sample: dict[str, Tensor], estimator: MotionEstimator) -> dict[str, Tensor]:
    """``sample`` with its flow: {"blurry": (F*3, H, W) with dropped neighbours replaced by the
    centre frame, "sharp", "motion": (2*(F-1), H, W) float32} (:mod:`models.motion`)."""
    blurry = sample["blurry"]
    frames_u8 = (blurry.float().reshape(-1, 3, *blurry.shape[-2:]) * 255).round().to(torch.uint8)
    frames = [np.ascontiguousarray(f) for f in frames_u8.permute(0, 2, 3, 1).cpu().numpy()]
    order, motion = estimator.windows(frames, 1)
    stacked = blurry.reshape(-1, 3, *blurry.shape[-2:])[torch.from_numpy(order[0])]
    return {**sample, "blurry": stacked.reshape(blurry.shape),
            "motion": torch.from_numpy(motion[0]).to(blurry.device)}


def network_input(sample: dict[str, Tensor]) -> Tensor:
    """What the generator takes: the stacked frames, then the motion channels if any."""
    motion = sample.get("motion")
    return sample["blurry"] if motion is None else torch.cat([sample["blurry"], motion], dim=-3)
