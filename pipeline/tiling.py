"""Running an image-to-image model over overlapping tiles, blended without seams.

Frames too large for the GPU (8K, or a big model at 4K) are cut into tiles that overlap by
``overlap`` pixels; each output pixel is the weighted mean of the tiles covering it, with
weights that fall linearly to zero towards a tile's inner edges, so no seam is visible.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool, device) -> Tensor:
    """1-D blending weights: linear ramps over the overlap, except at the image border."""
    w = torch.ones(length, device=device)
    if overlap > 0:
        ramp = torch.linspace(0, 1, overlap + 2, device=device)[1:-1]
        if not at_start:
            w[:overlap] = ramp
        if not at_end:
            w[-overlap:] = ramp.flip(0)
    return w


def run_tiled(fn: Callable[[Tensor], Tensor], x: Tensor, *, tile: int, overlap: int,
              out_channels: int = 3) -> Tensor:
    """Apply ``fn`` to overlapping tiles of ``x`` and blend the results.

    Each tile is run with ``overlap`` extra pixels of real image around it (so its border
    isn't computed from padding), cropped back, and blended with its neighbours over the
    ``overlap`` pixels they share. For an operator whose receptive field fits in ``overlap``
    the result equals the whole-frame result; for wider ones the blend hides the difference.

    Args:
        fn: maps (N, C, h, w) to (N, out_channels, h, w).
        x: (N, C, H, W) input.
        tile: tile side in pixels (tiles at the border may be cut to the image).
        overlap: pixels shared by neighbouring tiles; must be smaller than ``tile``.
    Returns (N, out_channels, H, W) float32.
    """
    if overlap >= tile:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile size {tile}")
    n, _, height, width = x.shape
    out = torch.zeros(n, out_channels, height, width, device=x.device, dtype=torch.float32)
    weight = torch.zeros(1, 1, height, width, device=x.device, dtype=torch.float32)
    ys, xs = _starts(height, tile, overlap), _starts(width, tile, overlap)
    for y in ys:
        for x0 in xs:
            h, w = min(tile, height - y), min(tile, width - x0)
            top, left = max(0, y - overlap), max(0, x0 - overlap)
            bottom, right = min(height, y + h + overlap), min(width, x0 + w + overlap)
            piece = fn(x[:, :, top:bottom, left:right]).float()
            piece = piece[:, :, y - top:y - top + h, x0 - left:x0 - left + w]
            wy = _ramp(h, min(overlap, h // 2), y == ys[0], y == ys[-1], x.device)
            wx = _ramp(w, min(overlap, w // 2), x0 == xs[0], x0 == xs[-1], x.device)
            mask = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, y:y + h, x0:x0 + w] += piece * mask
            weight[:, :, y:y + h, x0:x0 + w] += mask
    return out / weight
