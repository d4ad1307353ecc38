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

Three extensions, all optional: several neighbouring frames stacked on the channels
(Su et al., *Deep Video Deblurring*, 2017, stack 5); the motion to those neighbours
(``motion``: optical flow from :mod:`models.motion`, as input features at the trunk's
resolution, or used to warp the neighbours onto the centre frame before stacking, as
DBN's "flow" variant aligns them); and a global residual (output = centre input frame +
correction, as DeblurGAN and NAFNet learn it).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import LRELU_SLOPE, RRDB

logger = logging.getLogger(__name__)

# Pixel-unshuffle factors with a matching number of nearest-x2 upsampling stages.
DOWNSCALES = (1, 2, 4)
# How the motion to the neighbours reaches the network (GeneratorConfig.motion):
# none: frames only; flow: flow as input features; aligned: neighbours warped onto the centre
# frame by the flow; aligned+flow: both.
MOTION_INPUTS = ("none", "flow", "aligned", "aligned+flow")
# Flow features are divided by this many pixels: streaks of 5-40 px become ~0.3-2.5.
FLOW_NORM = 16.0
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
    motion: str = "none"  # none, flow, aligned or aligned+flow: how the flow to the neighbours is used (MOTION_INPUTS)
    still_gate: bool = False  # a last motion channel (models.motion.moving_gate) scales the correction: still pixels kept

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
        if self.motion not in MOTION_INPUTS:
            raise ValueError(f"GeneratorConfig.motion must be one of {', '.join(MOTION_INPUTS)}, "
                             f"got {self.motion!r}")
        if self.motion != "none" and self.in_frames == 1:
            raise ValueError("GeneratorConfig.motion needs neighbours: set in_frames to 3 or more")
        if not isinstance(self.still_gate, bool):
            raise ValueError(f"GeneratorConfig.still_gate must be True or False, got {self.still_gate!r}")
        if self.still_gate and (self.motion == "none" or not self.residual):
            raise ValueError("GeneratorConfig.still_gate needs motion and a residual generator "
                             "(it scales the correction added to the frame)")

    @property
    def flow_channels(self) -> int:
        """Flow channels after the frames: (dx, dy) to each neighbour, 0 without motion."""
        return 0 if self.motion == "none" else 2 * (self.in_frames - 1)

    @property
    def motion_channels(self) -> int:
        """Channels after the frames: the flows, then the still gate if the model has one."""
        return self.flow_channels + int(self.still_gate)

    @property
    def in_channels(self) -> int:
        """Channels the generator expects: ``in_frames * num_ch`` frames, then the motion."""
        return self.in_frames * self.num_ch + self.motion_channels

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
        # Pixel-unshuffle folds each d x d patch of every frame into channels; flow features
        # are averaged over each patch instead (the motion is smooth at that scale).
        flow_features = cfg.flow_channels if "flow" in cfg.motion else 0
        self.conv_first = nn.Conv2d(cfg.in_frames * cfg.num_ch * d * d + flow_features, f, 3, 1, 1)
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
        """x: (N, in_channels, H, W): ``in_frames`` frames of ``num_ch`` channels, float in
        [0, 1], oldest→newest (centre frame at channels [c*num_ch:(c+1)*num_ch], c =
        in_frames//2), then ``flow_channels`` of flow in pixels, (dx, dy) from the centre
        frame to each neighbour oldest first (:class:`models.motion.MotionEstimator`), then
        with ``still_gate`` the share of the correction each pixel takes; any H, W.

        Returns (N, num_ch, H, W): the restored centre frame (not clamped).
        """
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.in_channels:
            motion = f" and {cfg.motion_channels} motion channels" if cfg.motion_channels else ""
            raise ValueError(
                f"RRDBNet expects (N, {cfg.in_channels}, H, W) input ({cfg.in_frames} frame(s) of "
                f"{cfg.num_ch} channels{motion}), got shape {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        c0 = cfg.centre_frame * cfg.num_ch
        centre = x[:, c0 : c0 + cfg.num_ch]  # (N, num_ch, H, W)
        f0 = cfg.in_frames * cfg.num_ch
        frames, flow = x[:, :f0], x[:, f0 : f0 + cfg.flow_channels]
        if cfg.motion.startswith("aligned"):
            frames = align_neighbours(frames, flow, cfg.num_ch)

        d = cfg.downscale
        feat = frames
        if d > 1:
            pad_h, pad_w = -h % d, -w % d
            if pad_h or pad_w:
                # Reflect keeps edge statistics natural; it needs pad < size, so tiny
                # inputs (smaller than the unshuffle factor) fall back to replicate.
                mode = "reflect" if pad_h < h and pad_w < w else "replicate"
                feat = F.pad(feat, (0, pad_w, 0, pad_h), mode=mode)
                flow = F.pad(flow, (0, pad_w, 0, pad_h), mode=mode) if flow.shape[1] else flow
            feat = F.pixel_unshuffle(feat, d)  # (N, C*d*d, H/d, W/d)
        if "flow" in cfg.motion:
            pooled = F.avg_pool2d(flow, d) if d > 1 else flow  # (N, flow_channels, H/d, W/d)
            feat = torch.cat([feat, pooled.to(feat.dtype) / FLOW_NORM], dim=1)

        feat = self.conv_first(feat)  # (N, F, H/d, W/d)
        feat = feat + self.conv_body(self.body(feat))
        if self.conv_up1 is not None:
            feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        if self.conv_up2 is not None:
            feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))  # (N, num_ch, H+pad, W+pad)
        if d > 1:
            out = out[..., :h, :w]
        if cfg.still_gate:
            out = out * x[:, -1:].to(out.dtype)  # still pixels (gate 0) keep the frame as it is
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


def align_neighbours(frames: Tensor, flow: Tensor, num_ch: int = 3) -> Tensor:
    """Neighbours warped onto the centre frame by the flow (bilinear, edges replicated).

    Args:
        frames: (N, F*num_ch, H, W), oldest first.
        flow: (N, 2*(F-1), H, W), pixels from the centre frame to each neighbour, oldest first.

    Returns (N, F*num_ch, H, W): the centre frame as it was, each neighbour sampled where the
    flow says the centre's pixels are in it.
    """
    n, channels, h, w = frames.shape
    count = channels // num_ch
    c = count // 2
    ys, xs = torch.meshgrid(torch.arange(h, device=frames.device, dtype=torch.float32),
                            torch.arange(w, device=frames.device, dtype=torch.float32), indexing="ij")
    out, slot = [], 0
    for f in range(count):
        frame = frames[:, f * num_ch:(f + 1) * num_ch]
        if f != c:
            dx, dy = flow[:, 2 * slot].float(), flow[:, 2 * slot + 1].float()  # (N, H, W)
            # align_corners=True: -1 and 1 are the centres of the first and last pixels.
            grid = torch.stack([(xs + dx) * (2 / max(w - 1, 1)) - 1, (ys + dy) * (2 / max(h - 1, 1)) - 1], -1)
            frame = F.grid_sample(frame.float(), grid, mode="bilinear", padding_mode="border",
                                  align_corners=True).to(frames.dtype)
            slot += 1
        out.append(frame)
    return torch.cat(out, dim=1)


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor], model: RRDBNet) -> dict[str, Tensor]:
    """``state_dict`` mapped onto ``model``: a single-frame model's ``conv_first`` becomes a
    multi-frame one's that looks at the centre frame only (weights of the other frames and of
    the flow features zero), so a video model starts as exactly the image model it grew from.
    Other tensors pass unchanged (``models.checkpoint.load_trunk`` copies those that fit)."""
    out = dict(state_dict)
    weight = out.get("conv_first.weight")
    own = model.conv_first.weight
    cfg = model.config
    per_frame = cfg.num_ch * cfg.downscale ** 2
    if weight is None or weight.shape == own.shape or weight.shape[0] != own.shape[0] \
            or weight.shape[1] != per_frame or weight.shape[2:] != own.shape[2:]:
        return out
    wide = torch.zeros_like(own)
    start = cfg.centre_frame * per_frame
    wide[:, start:start + per_frame] = weight.to(own.dtype)
    out["conv_first.weight"] = wide
    return out
