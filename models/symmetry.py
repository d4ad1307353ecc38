"""The 16 symmetric variants of a (video) sample, and the self-ensemble built on them.

Motion blur has no preferred orientation or direction of time: a sample turned, mirrored or
played backwards is as physical as the original, its flow turned with it. Training draws its
augmentations from these variants (:mod:`models.training_data`); at inference a
:class:`SelfEnsemble` runs the generator on several of them and averages the results turned
back (the "self-ensemble" of Lim et al., EDSR+, 2017): a little more PSNR and steadier output
for as many times the network's cost (docs/benchmarks.md).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# Spatial variants a SelfEnsemble may average: the identity, then flips, then transposes.
ENSEMBLE_SIZES = (1, 2, 4, 8)


def symmetric_variant(sample: dict[str, Tensor], variant: int, in_frames: int) -> dict[str, Tensor]:
    """One of the 16 variants of a sample (batched or not: the last two dims are H, W).

    ``variant`` bits: 1 flips left-right, 2 flips up-down, 4 transposes (with the flips, the 8
    rotations/reflections of the square), 8 plays time backwards. Flow vectors turn with the
    picture; backwards, each neighbour's flow moves to the mirrored slot.
    """
    out = dict(sample)
    hflip, vflip, transpose, backwards = (bool(variant & bit) for bit in (1, 2, 4, 8))
    for key, tensor in sample.items():
        if hflip:
            tensor = tensor.flip(-1)
        if vflip:
            tensor = tensor.flip(-2)
        if transpose:
            tensor = tensor.transpose(-1, -2)
        out[key] = tensor
    if "motion" in out:
        # The flows turn with the picture; a still gate after them (one channel) only moves.
        gate = out["motion"][..., 2 * (in_frames - 1):, :, :]
        flow = out["motion"][..., :2 * (in_frames - 1), :, :].unflatten(-3, (-1, 2))  # (..., F-1, 2, H, W)
        dx, dy = flow.select(-3, 0), flow.select(-3, 1)
        dx = -dx if hflip else dx
        dy = -dy if vflip else dy
        if transpose:
            dx, dy = dy, dx
        flow = torch.stack([dx, dy], dim=-3)
        out["motion"] = torch.cat([(flow.flip(-4) if backwards else flow).flatten(-4, -3), gate], dim=-3)
    if backwards and in_frames > 1:
        frames = out["blurry"].unflatten(-3, (in_frames, -1))
        out["blurry"] = frames.flip(-4).flatten(-4, -3)
    return out


def undo_spatial(image: Tensor, variant: int) -> Tensor:
    """``image`` (..., H, W) of variant ``variant`` turned back into the original orientation
    (the inverse of :func:`symmetric_variant`'s flips and transpose; time has no meaning here)."""
    if variant & 4:
        image = image.transpose(-1, -2)
    if variant & 2:
        image = image.flip(-2)
    if variant & 1:
        image = image.flip(-1)
    return image


class SelfEnsemble(nn.Module):
    """A generator run on ``size`` spatial variants of its input, its outputs turned back and
    averaged; takes and returns what the generator does.

    Args:
        model: a generator (:class:`models.generator.RRDBNet` or one with its ``config``).
        size: variants averaged, one of ``ENSEMBLE_SIZES``: 2 adds the left-right mirror, 4
            the up-down ones, 8 the transposes (all 8 rotations and reflections).
    """

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        if size not in ENSEMBLE_SIZES:
            raise ValueError(f"ensemble size must be one of {', '.join(map(str, ENSEMBLE_SIZES))}, got {size}")
        self.model, self.size = model, size

    @property
    def config(self):
        return self.model.config

    def activation_bytes(self, height: int, width: int) -> int:
        # Variants run one after the other; a transposed frame has the same pixel count.
        return self.model.activation_bytes(height, width)

    def forward(self, x: Tensor) -> Tensor:
        cfg = self.model.config
        split = cfg.in_frames * cfg.num_ch
        sample = {"blurry": x[:, :split]}
        if x.shape[1] > split:
            sample["motion"] = x[:, split:]
        total = None
        for variant in range(self.size):
            turned = symmetric_variant(sample, variant, cfg.in_frames)
            inputs = torch.cat([turned["blurry"], turned["motion"]], 1) if "motion" in turned else turned["blurry"]
            out = undo_spatial(self.model(inputs.contiguous(memory_format=torch.channels_last)), variant)
            total = out.float() if total is None else total + out.float()
        return total / self.size  # fp32: rounding the average back to bf16 would undo part of it
