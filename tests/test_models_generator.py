"""The same-size RRDB generator: shapes, gradients, identity at zero correction, BasicSR parity."""

from __future__ import annotations

import itertools
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import GeneratorConfig, RRDBNet, load_generator

TINY = dict(num_feat=8, num_block=1, num_grow_ch=4)
CONFIGS = [
    dict(TINY, downscale=d, in_frames=f, residual=r)
    for d, f, r in itertools.product((1, 2, 4), (1, 3, 5), (True, False))
]


def _cfg_id(cfg: dict) -> str:
    return f"d{cfg['downscale']}-f{cfg['in_frames']}-{'res' if cfg['residual'] else 'plain'}"


@pytest.mark.parametrize("cfg", CONFIGS, ids=_cfg_id)
def test_every_config_keeps_size_and_trains_every_parameter(cfg: dict) -> None:
    torch.manual_seed(0)
    model = RRDBNet(**cfg)
    channels = 3 * cfg["in_frames"]
    # Odd sizes, and one smaller than the unshuffle factor (replicate padding).
    for h, w in ((13, 17), (2, 3), (1, 1)):
        out = model(torch.rand(2, channels, h, w))
        assert out.shape == (2, 3, h, w)
        assert torch.isfinite(out).all()
    model.zero_grad()
    model(torch.rand(1, channels, 13, 17)).square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


@pytest.mark.parametrize("in_frames", (1, 3, 5))
@pytest.mark.parametrize("downscale", (1, 4))
def test_zero_correction_returns_the_centre_frame_exactly(in_frames: int, downscale: int) -> None:
    model = RRDBNet(**TINY, downscale=downscale, in_frames=in_frames, residual=True)
    with torch.no_grad():
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
    frames = torch.rand(2, in_frames, 3, 11, 14)
    out = model(frames.flatten(1, 2))
    assert torch.equal(out, frames[:, in_frames // 2])


def test_parameter_names_match_basicsr() -> None:
    names = {n for n, _ in RRDBNet(**TINY, downscale=4).named_parameters()}
    for name in (
        "conv_first.weight",
        "body.0.rdb1.conv1.weight",
        "body.0.rdb3.conv5.bias",
        "conv_body.weight",
        "conv_up1.weight",
        "conv_up2.weight",
        "conv_hr.weight",
        "conv_last.weight",
    ):
        assert name in names
    full_res = {n for n, _ in RRDBNet(**TINY, downscale=1).named_parameters()}
    assert not any(n.startswith("conv_up") for n in full_res)  # "the upsampler removed"
    half_res = {n for n, _ in RRDBNet(**TINY, downscale=2).named_parameters()}
    assert "conv_up1.weight" in half_res and "conv_up2.weight" not in half_res


def test_default_is_esrgan_size() -> None:
    model = RRDBNet()
    assert len(model.body) == 23 and model.conv_first.out_channels == 64
    # ESRGAN's 1x trunk: about 16.7 M parameters, none in an upsampler.
    assert 16.5e6 < sum(p.numel() for p in model.parameters()) < 16.9e6


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(in_frames=2), "in_frames must be odd"),
        (dict(in_frames=0), "in_frames must be a positive integer"),
        (dict(downscale=3), "downscale must be one of (1, 2, 4)"),
        (dict(num_feat=0), "num_feat must be a positive integer"),
        (dict(residual="yes"), "residual must be True or False"),
        (dict(num_blocks=3), "num_blocks"),
    ],
)
def test_invalid_config_raises_clear_error(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        RRDBNet(**overrides)


def test_wrong_input_channels_raise() -> None:
    model = RRDBNet(**TINY, in_frames=3)
    with pytest.raises(ValueError, match=r"expects \(N, 9, H, W\).*got shape \(1, 3, 8, 8\)"):
        model(torch.rand(1, 3, 8, 8))


def test_config_object_and_overrides_combine() -> None:
    model = RRDBNet(GeneratorConfig(**TINY), downscale=2)
    assert model.config == GeneratorConfig(**TINY, downscale=2)


def test_channels_last_autocast_and_fullgraph_compile_agree() -> None:
    torch.manual_seed(0)
    model = RRDBNet(**TINY, downscale=2, in_frames=3).eval()
    x = torch.rand(1, 9, 13, 17)
    with torch.no_grad():
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        assert torch.allclose(cl, ref, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
        assert low.shape == ref.shape and (low.float() - ref).abs().max() < 0.05
        # fullgraph=True fails on any graph break, i.e. data-dependent Python control flow.
        compiled = torch.compile(model, backend="eager", fullgraph=True)
        assert torch.allclose(compiled(x), ref, atol=1e-5)


# --- BasicSR reference --------------------------------------------------------------------
# Copied from XPixelGroup/BasicSR, basicsr/archs/rrdbnet_arch.py (RRDBNet, RRDB,
# ResidualDenseBlock) and basicsr/archs/arch_util.py (pixel_unshuffle), without the
# registry and the init, so that our loader is checked against the original forward.


def _basicsr_pixel_unshuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    b, c, hh, hw = x.size()
    out_channel = c * (scale**2)
    h, w = hh // scale, hw // scale
    x_view = x.view(b, c, h, scale, w, scale)
    return x_view.permute(0, 1, 3, 5, 2, 4).reshape(b, out_channel, h, w)


class _BasicSRDenseBlock(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class _BasicSRRRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = _BasicSRDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = _BasicSRDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = _BasicSRDenseBlock(num_feat, num_grow_ch)

    def forward(self, x):
        out = self.rdb1(x)
        out = self.rdb2(out)
        out = self.rdb3(out)
        return out * 0.2 + x


class _BasicSRRRDBNet(nn.Module):
    def __init__(self, num_in_ch, num_out_ch, scale=4, num_feat=64, num_block=23, num_grow_ch=32):
        super().__init__()
        self.scale = scale
        if scale == 2:
            num_in_ch = num_in_ch * 4
        elif scale == 1:
            num_in_ch = num_in_ch * 16
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(_BasicSRRRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        if self.scale == 2:
            feat = _basicsr_pixel_unshuffle(x, scale=2)
        elif self.scale == 1:
            feat = _basicsr_pixel_unshuffle(x, scale=4)
        else:
            feat = x
        feat = self.conv_first(feat)
        body_feat = self.conv_body(self.body(feat))
        feat = feat + body_feat
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


def test_basicsr_scale1_checkpoint_loads_and_computes_identically(tmp_path) -> None:
    torch.manual_seed(0)
    reference = _BasicSRRRDBNet(3, 3, scale=1, num_feat=8, num_block=2, num_grow_ch=4).eval()
    decoy = _BasicSRRRDBNet(3, 3, scale=1, num_feat=8, num_block=2, num_grow_ch=4)
    path = tmp_path / "RealESRNet_x1.pth"
    # BasicSR saves both; the EMA weights are the ones to use.
    torch.save({"params": decoy.state_dict(), "params_ema": reference.state_dict()}, path)

    model = load_generator(path)
    assert model.config == GeneratorConfig(num_feat=8, num_block=2, num_grow_ch=4, downscale=4, residual=False)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-6)
