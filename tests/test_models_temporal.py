"""The temporal term of training: the output error's change along the sharp frames' motion."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from models.temporal import PairWarps, temporal_loss


def _pair(shift: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Two 8-bit frames of a textured scene, the second panned ``shift`` px right: (2, 3, S, S)."""
    rng = np.random.default_rng(seed)
    scene = cv2.GaussianBlur(rng.random((size, size + shift, 3)).astype(np.float32), (0, 0), 1.5)
    scene = (scene - scene.min()) / (scene.max() - scene.min())
    frames = [scene[:, shift:shift + size], scene[:, :size]]  # content moves right by shift
    return torch.from_numpy(np.round(np.stack(frames) * 255) / 255).permute(0, 3, 1, 2).float()


def test_an_error_that_moves_with_the_scene_costs_nothing_one_that_flickers_does():
    sharp = _pair(3)
    grid, mask = PairWarps()(sharp)
    assert grid.shape == (1, 64, 64, 2) and mask.shape == (1, 1, 64, 64)
    assert mask.mean() > 0.8  # a plain pan: the flow is consistent almost everywhere
    assert float(temporal_loss(sharp, sharp, grid, mask)) == 0.0  # the sharp frames themselves
    # An error that is part of the scene (a stain on it) moves with it: it does not flicker.
    stain = torch.zeros(1, 3, 64, 67)
    stain[..., 20:40, 25:45] = 0.05
    moving = torch.cat([stain[..., 3:67], stain[..., :64]])
    steady = float(temporal_loss(sharp + moving, sharp, grid, mask))
    # The same error held still on the screen while the scene moves, and one that comes and goes.
    still = float(temporal_loss(sharp + moving[:1].expand(2, -1, -1, -1), sharp, grid, mask))
    blink = float(temporal_loss(sharp + moving * torch.tensor([1.0, 0.0])[:, None, None, None], sharp, grid, mask))
    assert steady < 0.05 * still and still < blink
    assert blink > 0.9 * float((moving[0] ** 2).mean(0)[mask[0, 0] > 0].mean())


def test_the_term_has_gradients_for_both_frames_of_a_pair():
    sharp = torch.cat([_pair(2, seed=1), _pair(4, seed=2)])  # two pairs
    grid, mask = PairWarps()(sharp)
    restored = (sharp + 0.02 * torch.randn_like(sharp)).requires_grad_(True)
    temporal_loss(restored, sharp, grid, mask).backward()
    per_frame = restored.grad.abs().flatten(1).sum(1)
    assert (per_frame > 0).all()
