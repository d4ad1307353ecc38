"""Generators by name: checkpoints record their architecture, and a second architecture added
to models.registry alone is saved, loaded and run by the pipeline like the shipped one."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from safetensors import safe_open
from torch import nn

import models.registry
from models import save_generator
from models.checkpoint import ARCH_KEY, CheckpointError, load_generator
from pipeline import EncoderSettings, ProcessConfig, process_video
from pipeline.video_reader import FrameReader
from tests.conftest import make_identity_model
from tests.media import make_clip


@dataclass(frozen=True)
class BrightenConfig:
    in_frames: int = 1
    gain: float = 1.0


class Brighten(nn.Module):
    """A one-parameter "architecture": output = gain * input."""

    def __init__(self, config: BrightenConfig = BrightenConfig()) -> None:
        super().__init__()
        self.config = config
        self.gain = nn.Parameter(torch.tensor(config.gain))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames * self.gain

    def activation_bytes(self, height: int, width: int) -> int:
        return height * width * 12


def test_checkpoints_name_their_architecture(tmp_path):
    path = tmp_path / "g.safetensors"
    save_generator(make_identity_model(), path)
    with safe_open(str(path), "pt") as f:
        assert f.metadata()[ARCH_KEY] == "rrdbnet"
    with pytest.raises(TypeError, match="not a registered generator"):
        save_generator(Brighten(), tmp_path / "b.safetensors")


def test_a_second_architecture_needs_only_the_registry(tmp_path, monkeypatch):
    monkeypatch.setitem(models.registry.ARCHITECTURES, "brighten", (Brighten, BrightenConfig))
    path = tmp_path / "brighten.safetensors"
    save_generator(Brighten(BrightenConfig(gain=0.5)), path)
    model = load_generator(path)
    assert isinstance(model, Brighten) and float(model.gain) == 0.5
    clip = make_clip(tmp_path / "clip.mkv", frames=6, codec="ffv1", pix_fmt="yuv444p").path
    lossless = ProcessConfig(model=path, progress=False,
                             encoder=EncoderSettings(codec="ffv1", pix_fmt="yuv444p"))
    out = process_video(clip, tmp_path / "out.mkv", config=lossless)
    before = [f.rgb.astype(float) for f in FrameReader(clip).frames()]
    after = [f.rgb.astype(float) for f in FrameReader(out.output).frames()]
    assert out.frames == 6
    # The network ran: every frame came out at half its brightness (up to YUV rounding).
    assert all(abs(a.mean() - 0.5 * b.mean()) < 1.0 for b, a in zip(before, after))
    # Without the registry entry the file is refused with a clear reason.
    monkeypatch.delitem(models.registry.ARCHITECTURES, "brighten")
    with pytest.raises(CheckpointError, match="unknown generator architecture 'brighten'"):
        load_generator(path)
