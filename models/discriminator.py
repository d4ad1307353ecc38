"""Discriminators for the GAN stage: ESRGAN's VGG-style classifier and PatchGAN.

* ``VGGStyleDiscriminator`` — ESRGAN / BasicSR (Wang et al. 2018): ten convolutions
  halving the resolution five times, then two linear layers, one score per image.
  BasicSR's version only accepts 128x128 (or 256x256) crops; we pool adaptively to
  4x4 before the linear layers so any crop size works, and a 128x128 crop goes through
  exactly BasicSR's computation (parameter names kept: ``conv0_0`` … ``linear2``).
* ``PatchDiscriminator`` — PatchGAN (Isola et al., pix2pix 2017; used by DeblurGAN):
  fully convolutional, one score per 70x70 receptive field.

WGAN-GP penalises the gradient per sample, which batch norm breaks (it mixes samples);
use ``norm="instance"`` or ``"none"`` with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

LEAKY_SLOPE = 0.2  # ESRGAN and pix2pix both use LeakyReLU(0.2)
VGG_POOLED_SIZE = 4  # a 128 px crop halved five times; fixes the linear layer's width
VGG_HIDDEN = 100  # BasicSR's linear1 width
PATCH_LAYERS = 3  # pix2pix's default: a 70x70 receptive field


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Which discriminator to build."""

    kind: Literal["vgg", "patch"] = "vgg"  # ESRGAN's classifier, or PatchGAN
    num_feat: int = 64  # channels of the first convolution (doubled per stage)
    norm: Literal["batch", "instance", "none"] = "batch"  # batch: BasicSR; WGAN-GP needs instance/none


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose batch, instance or none")


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's discriminator for crops of any size >= 32 px.

    Args:
        num_in_ch: input channels (3 for RGB).
        num_feat: channels of the first stage.
        norm: "batch" (BasicSR), "instance" or "none".
    """

    def __init__(self, *, num_in_ch: int = 3, num_feat: int = 64, norm: str = "batch") -> None:
        super().__init__()
        widths = [num_feat, num_feat * 2, num_feat * 4, num_feat * 8, num_feat * 8]
        in_ch = num_in_ch
        for stage, width in enumerate(widths):
            # conv{s}_0 keeps the resolution, conv{s}_1 halves it.
            setattr(self, f"conv{stage}_0", nn.Conv2d(in_ch, width, 3, 1, 1, bias=stage == 0))
            if stage > 0:
                setattr(self, f"bn{stage}_0", _norm(norm, width))
            setattr(self, f"conv{stage}_1", nn.Conv2d(width, width, 4, 2, 1, bias=False))
            setattr(self, f"bn{stage}_1", _norm(norm, width))
            in_ch = width
        self.num_stages = len(widths)
        self.pool = nn.AdaptiveAvgPool2d(VGG_POOLED_SIZE)
        self.linear1 = nn.Linear(widths[-1] * VGG_POOLED_SIZE**2, VGG_HIDDEN)
        self.linear2 = nn.Linear(VGG_HIDDEN, 1)
        self.lrelu = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Realness score per image.

        Args:
            x: (N, 3, H, W) float in [0, 1], H and W >= 32.

        Returns:
            (N, 1) raw scores (logits).
        """
        if min(x.shape[-2:]) < 2**self.num_stages:
            raise ValueError(f"VGG-style discriminator needs crops of at least {2**self.num_stages} px")
        h = x
        for stage in range(self.num_stages):
            h = getattr(self, f"conv{stage}_0")(h)
            if stage > 0:
                h = getattr(self, f"bn{stage}_0")(h)
            h = self.lrelu(h)
            h = self.lrelu(getattr(self, f"bn{stage}_1")(getattr(self, f"conv{stage}_1")(h)))
        h = self.pool(h).flatten(1)
        return self.linear2(self.lrelu(self.linear1(h)))


class PatchDiscriminator(nn.Module):
    """PatchGAN: a realness score for every 70x70 patch.

    Args:
        num_in_ch: input channels (3 for RGB).
        num_feat: channels of the first convolution.
        norm: "batch", "instance" (DeblurGAN) or "none".
    """

    def __init__(self, *, num_in_ch: int = 3, num_feat: int = 64, norm: str = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 4, 2, 1), nn.LeakyReLU(LEAKY_SLOPE, True)]
        width = num_feat
        for index in range(1, PATCH_LAYERS + 1):
            stride = 2 if index < PATCH_LAYERS else 1
            next_width = num_feat * min(2**index, 8)
            layers += [
                nn.Conv2d(width, next_width, 4, stride, 1, bias=norm == "none"),
                _norm(norm, next_width),
                nn.LeakyReLU(LEAKY_SLOPE, True),
            ]
            width = next_width
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores per patch.

        Args:
            x: (N, 3, H, W) float in [0, 1], H and W >= 32.

        Returns:
            (N, 1, H/8 - 2, W/8 - 2) raw scores (logits).
        """
        return self.body(x)


def build_discriminator(config: DiscriminatorConfig) -> nn.Module:
    """The discriminator ``config`` describes, freshly initialised."""
    if config.kind == "vgg":
        return VGGStyleDiscriminator(num_feat=config.num_feat, norm=config.norm)
    if config.kind == "patch":
        return PatchDiscriminator(num_feat=config.num_feat, norm=config.norm)
    raise ValueError(f"unknown discriminator kind {config.kind!r}; choose vgg or patch")
