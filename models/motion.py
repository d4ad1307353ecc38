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
* for generators with ``still_gate``, a last channel says how far each pixel moves
  (:func:`moving_gate`): 0 where every neighbour shows it still (consistent flow under
  ``STILL_BELOW`` px, also around any moving thing whose streak could reach it), 1 where it
  moves by ``MOVING_ABOVE`` px or more, or where no neighbour can tell. With no motion there
  is no motion blur: the generator leaves those pixels exactly as they came.

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
# A pixel whose motion to every neighbour is below STILL_BELOW px (full-resolution pixels)
# is left alone, one moving by MOVING_ABOVE px or more is restored fully, linearly between:
# a streak under half a pixel is invisible, and on still, noisy texture (sigma 2-4 levels)
# DIS's vectors, averaged (:func:`_speed`), drift by up to ~0.7 px in flat areas
# (benchmarks/still_background.py --noise, docs/benchmarks.md).
STILL_BELOW = 0.5
MOVING_ABOVE = 1.0
# Grey levels (8-bit, local means over CHANGE_WINDOW px at the flow's resolution) by which
# standing still must explain a neighbour better than the flow for a pixel to count as still
# (:func:`_changed`).
CHANGE_MARGIN = 0.5
CHANGE_WINDOW = 5
# A moving thing's streak reaches up to half its motion beyond where it is in the frame; the
# gate opens that far around it, plus this margin (full-resolution pixels) for DIS's patches.
GATE_MARGIN = 4
GATE_SPREAD = 0.5
MAX_GATE_REACH = 64  # px: the widest opening around a mover (the longest streaks we restore)


class MotionEstimator:
    """Flows from restored frames to their neighbours, and which neighbours to keep.

    Args:
        in_frames: frames the generator stacks (odd); ``in_frames // 2`` neighbours each side.
        still_gate: add the :func:`moving_gate` channel after the flows.
    """

    def __init__(self, in_frames: int, *, still_gate: bool = False) -> None:
        self.in_frames = in_frames
        self.context = in_frames // 2
        self.still_gate = still_gate
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[FLOW_PRESET])

    @classmethod
    def for_generator(cls, config) -> MotionEstimator | None:
        """The estimator a generator of ``config`` (:class:`GeneratorConfig`) needs, or None
        for one that takes no motion."""
        if not getattr(config, "motion_channels", 0):
            return None
        return cls(config.in_frames, still_gate=getattr(config, "still_gate", False))

    @property
    def channels(self) -> int:
        """Motion channels per restored frame: (dx, dy) for each neighbour, then the gate."""
        return 2 * (self.in_frames - 1) + int(self.still_gate)

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
                first, the restored frame skipped), zero where it is not trustworthy; then,
                with ``still_gate``, the :func:`moving_gate` in [0, 1].
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
        if self.still_gate:
            motion[:, -1] = 1.0  # no neighbour to tell: restore as a single frame would
        if _flow_size(height, width) is None:
            return order, motion
        for i in range(count):
            centre = i + c
            slot = 0
            speeds, unsure = [], []  # per informative neighbour: px moved; inconsistent and changed
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
                        speed = _speed(forward, ok, width / forward.shape[1], height / forward.shape[0])
                        changed = _changed(guide(centre), guide(neighbour), forward)
                        speeds.append(np.where(ok, speed, 0.0) * changed)
                        unsure.append(np.where(ok, 0.0, changed))
                slot += 1
            if self.still_gate and speeds:
                motion[i, -1] = moving_gate(np.maximum.reduce(speeds), np.maximum.reduce(unsure),
                                            height, width)
        return order, motion


def _speed(flow: np.ndarray, ok: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """(h, w) float32: how far each pixel moves, in full-resolution pixels (``sx``, ``sy``
    per flow pixel), from the flow averaged over ``CHANGE_WINDOW`` (consistent pixels only).
    On a still, noisy picture DIS's vectors jitter by ~0.2 px in every direction and average
    out; a thing that moves, moves its neighbourhood the same way."""
    window = (CHANGE_WINDOW, CHANGE_WINDOW)
    weight = cv2.blur(ok.astype(np.float32), window)
    mean = [cv2.blur(flow[..., k] * ok, window) / np.maximum(weight, 1e-6) for k in (0, 1)]
    return np.hypot(mean[0] * sx, mean[1] * sy)


def _changed(a: np.ndarray, b: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """(h, w) float32 in [0, 1]: whether the picture moved between two grey guides, 0 where
    standing still explains the neighbour better than the flow does.

    DIS spills motion a few pixels beyond a moving edge onto the still background beside it
    (its patches straddle the edge). There the neighbour matches the frame as it is, without
    moving, better than along the flow: local mean absolute differences (``CHANGE_WINDOW``)
    at zero motion and along ``flow`` ((h, w, 2), the guides' pixels) are compared, and
    where the zero-motion one is lower by ``CHANGE_MARGIN`` grey levels (fully at twice
    that), or under ``CHANGE_MARGIN`` itself (nothing changed), the pixel stands still.
    Where both explain it alike (flat areas, slow low-contrast motion) the flow is trusted.
    """
    h, w = a.shape
    window = (CHANGE_WINDOW, CHANGE_WINDOW)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    along = cv2.remap(b, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE)
    still = cv2.blur(cv2.absdiff(a, b).astype(np.float32), window)
    moved = cv2.blur(cv2.absdiff(a, along).astype(np.float32), window)
    changed = np.clip(still / CHANGE_MARGIN - 1.0, 0.0, 1.0)
    better_still = np.clip((moved - still) / CHANGE_MARGIN - 1.0, 0.0, 1.0)
    return changed * (1.0 - better_still)


def moving_gate(speed: np.ndarray, unsure: np.ndarray, height: int, width: int) -> np.ndarray:
    """How much of the generator's correction each pixel takes, from its motion.

    Args:
        speed: (h, w) float32 at the flow's resolution: the largest motion to any neighbour in
            full-resolution pixels where the flow is consistent (0 where the picture did not
            change, :func:`_changed`).
        unsure: (h, w) float32 in [0, 1]: where the flow is inconsistent and the picture changed.

    Returns (height, width) float32 in [0, 1]: 0 where the pixel and everything whose streak
    could cover it stay under ``STILL_BELOW`` px, 1 from ``MOVING_ABOVE`` px up and where the
    motion is unknown. A blurred mover smears over the still pixels beside it, and those must
    be restored with it: the gate is max-filtered over ``GATE_MARGIN``, and pixels moving
    ``level`` px or more (levels doubling from ``2 * MOVING_ABOVE``) open it ``GATE_SPREAD``
    of their level further around them.
    """
    h, w = speed.shape
    scale = w / width  # flow pixels per full-resolution pixel

    def spread(mask: np.ndarray, reach: float) -> np.ndarray:
        radius = int(np.ceil(reach * scale))
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
        return cv2.dilate(mask.astype(np.float32), kernel)

    gate = np.clip((speed - STILL_BELOW) / (MOVING_ABOVE - STILL_BELOW), 0.0, 1.0)
    gate = spread(np.maximum(gate, unsure), GATE_MARGIN)
    # Things moving `level` px or more open the gate GATE_SPREAD of that around them: a
    # pixel's own speed bounds its streak, so a little drift of the flow opens a little.
    level = 2.0 * MOVING_ABOVE
    while level <= speed.max():  # doubling: a handful of dilations even for the fastest motion
        gate = np.maximum(gate, spread(speed >= level, min(level * GATE_SPREAD, MAX_GATE_REACH) + GATE_MARGIN))
        level *= 2
    return cv2.resize(gate, (width, height), interpolation=cv2.INTER_LINEAR)


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
    centre frame, "sharp", "motion": (2*(F-1), H, W) float32} (:mod:`models.motion`); a
    consecutive pair (a leading dimension of 2, :class:`models.synthetic.SyntheticPairs`) gets
    each of its two samples' flow."""
    blurry = sample["blurry"]
    if blurry.dim() == 4:
        members = [add_motion({key: value[i] for key, value in sample.items()}, estimator)
                   for i in range(len(blurry))]
        return {key: torch.stack([m[key] for m in members]) for key in members[0]}
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
