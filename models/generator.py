"""ESRGAN's RRDBNet with the x4 upsampler removed: a same-size image-to-image generator.

Wang et al., *ESRGAN* (2018) restore detail with a trunk of Residual-in-Residual Dense
Blocks followed by a x4 upsampler. For deblurring the output has the input's size, so
the upsampler goes. Two layouts keep BasicSR's parameter names (``conv_first``,
``body.N.rdb1.conv1``, ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``,
``conv_last``) so public checkpoints load:

* ``downscale=1``: the trunk runs at full resolution (as ESRGAN's "1x" models);
  ~16.6 M multiply-accumulates per pixel with the default width and depth.
* ``downscale=2`` / ``4``: the input is pixel-unshuffled by 2 or 4, the trunk runs at
  1/2 or 1/4 resolution, and one or two nearest-x2 + conv stages bring it back, as
  Real-ESRGAN's scale-1 and scale-2 models do. ``downscale=4`` is ~15x cheaper than
  ``downscale=1`` and sees a wider area, which large blur needs. A BasicSR scale=1
  checkpoint is exactly ``downscale=4, residual=False``.

Two extensions, both optional: several neighbouring frames stacked on the channels
(Su et al., *Deep Video Deblurring*, 2017, stack 5), and a global residual
(output = centre input frame + correction, as DeblurGAN and NAFNet learn it).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import LRELU_SLOPE, RRDB

logger = logging.getLogger(__name__)

# Pixel-unshuffle factors with a matching number of nearest-x2 upsampling stages.
DOWNSCALES = (1, 2, 4)
# Activation memory per trunk pixel and feature channel, with headroom for the dense blocks'
# concatenations and the allocator (bytes; measured on RRDBNet variants).
ACTIVATION_BYTES_PER_FEATURE = 24


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of an :class:`RRDBNet`; saved inside every checkpoint we write."""

    num_feat: int = 64  # trunk width (channels of every trunk feature map)
    num_block: int = 23  # RRDB blocks in the trunk (ESRGAN: 23)
    num_grow_ch: int = 32  # growth channels of each dense-block convolution (ESRGAN: 32)
    downscale: int = 1  # pixel-unshuffle factor 1, 2 or 4: trunk at full, 1/2 or 1/4 resolution
    in_frames: int = 1  # odd: neighbouring frames stacked on channels, centre one restored
    residual: bool = True  # output = centre input frame + learned correction
    num_ch: int = 3  # channels per frame (3 = RGB)

    def __post_init__(self) -> None:
        for name in ("num_feat", "num_block", "num_grow_ch", "num_ch", "in_frames", "downscale"):
            value = getattr(self, name)
            # bool is an int subclass; True as a width is always a mistake.
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GeneratorConfig.{name} must be a positive integer, got {value!r}")
        if self.in_frames % 2 == 0:
            raise ValueError(
                f"GeneratorConfig.in_frames must be odd (a centre frame and as many neighbours "
                f"on each side), got {self.in_frames}"
            )
        if self.downscale not in DOWNSCALES:
            raise ValueError(f"GeneratorConfig.downscale must be one of {DOWNSCALES}, got {self.downscale}")
        if not isinstance(self.residual, bool):
            raise ValueError(f"GeneratorConfig.residual must be True or False, got {self.residual!r}")

    @property
    def in_channels(self) -> int:
        """Channels the generator expects: ``in_frames * num_ch``."""
        return self.in_frames * self.num_ch

    @property
    def centre_frame(self) -> int:
        """Index of the restored frame among the stacked input frames."""
        return self.in_frames // 2

    @property
    def num_upsample(self) -> int:
        """Nearest-x2 + conv stages after the trunk: log2(downscale)."""
        return int(math.log2(self.downscale))


class RRDBNet(nn.Module):
    """Same-size RRDB generator: blurry frame(s) in, restored centre frame out.

    Args:
        config: Network shape; defaults to :class:`GeneratorConfig` ().
        **overrides: Fields of :class:`GeneratorConfig` to change, e.g.
            ``RRDBNet(num_block=6, downscale=4)``.
    """

    config: GeneratorConfig

    def __init__(self, config: GeneratorConfig | None = None, **overrides: object) -> None:
        super().__init__()
        base = config if config is not None else GeneratorConfig()
        try:
            cfg = dataclasses.replace(base, **overrides)
        except TypeError as err:  # unknown field name
            raise ValueError(f"RRDBNet: {err}") from err
        self.config = cfg
        f, d = cfg.num_feat, cfg.downscale
        # Pixel-unshuffle folds each d x d patch of every frame into channels.
        self.conv_first = nn.Conv2d(cfg.in_channels * d * d, f, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(f, cfg.num_grow_ch) for _ in range(cfg.num_block)))
        self.conv_body = nn.Conv2d(f, f, 3, 1, 1)
        # Upsamplers only where the trunk ran below full resolution; absent for downscale=1
        # so that parameter names and counts match the checkpoints of each layout.
        self.conv_up1 = nn.Conv2d(f, f, 3, 1, 1) if cfg.num_upsample >= 1 else None
        self.conv_up2 = nn.Conv2d(f, f, 3, 1, 1) if cfg.num_upsample >= 2 else None
        self.conv_hr = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_last = nn.Conv2d(f, cfg.num_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=LRELU_SLOPE, inplace=True)
        logger.debug("RRDBNet %s: %d parameters", cfg, sum(p.numel() for p in self.parameters()))

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, in_frames*num_ch, H, W) float in [0, 1] (frames oldest→newest, centre frame at
        channels [c*num_ch:(c+1)*num_ch], c = in_frames//2), any H and W.

        Returns (N, num_ch, H, W): the restored centre frame (not clamped).
        """
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"RRDBNet expects (N, {cfg.in_channels}, H, W) input ({cfg.in_frames} frame(s) of "
                f"{cfg.num_ch} channels), got shape {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        c0 = cfg.centre_frame * cfg.num_ch
        centre = x[:, c0 : c0 + cfg.num_ch]  # (N, num_ch, H, W)

        d = cfg.downscale
        feat = x
        if d > 1:
            pad_h, pad_w = -h % d, -w % d
            if pad_h or pad_w:
                # Reflect keeps edge statistics natural; it needs pad < size, so tiny
                # inputs (smaller than the unshuffle factor) fall back to replicate.
                mode = "reflect" if pad_h < h and pad_w < w else "replicate"
                feat = F.pad(feat, (0, pad_w, 0, pad_h), mode=mode)
            feat = F.pixel_unshuffle(feat, d)  # (N, C*d*d, H/d, W/d)

        feat = self.conv_first(feat)  # (N, F, H/d, W/d)
        feat = feat + self.conv_body(self.body(feat))
        if self.conv_up1 is not None:
            feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        if self.conv_up2 is not None:
            feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))  # (N, num_ch, H+pad, W+pad)
        if d > 1:
            out = out[..., :h, :w]
        if cfg.residual:
            out = out + centre
        return out

    def activation_bytes(self, height: int, width: int) -> int:
        """Rough GPU memory one ``height`` x ``width`` frame needs while it runs: the trunk's
        features and the dense blocks' concatenations, with headroom for the allocator."""
        cfg = self.config
        trunk_pixels = height * width / cfg.downscale ** 2
        return int(trunk_pixels * (cfg.num_feat + 4 * cfg.num_grow_ch) * ACTIVATION_BYTES_PER_FEATURE)

    def extra_repr(self) -> str:
        return f"config={self.config}"
