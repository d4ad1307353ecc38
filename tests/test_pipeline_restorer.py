"""The restorer: batching, tiling, out-of-memory fallback, precision, bit depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import RRDBNet
from pipeline.restorer import Restorer
from pipeline.tiling import run_tiled
from tests.conftest import make_identity_model
from tests.media import frame_rgb, psnr

CPU = torch.device("cpu")


def _clip(n: int, width: int = 96, height: int = 64, depth: int = 8) -> np.ndarray:
    return np.stack([frame_rgb(i, width, height, depth=depth) for i in range(n)])


def _random_model(**kw) -> RRDBNet:
    torch.manual_seed(0)
    return RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, downscale=kw.pop("downscale", 2), **kw)


def test_tiles_blend_without_seams_for_a_local_operator():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 5, padding=2)  # receptive field 5 px ≪ the 16 px overlap
    x = torch.rand(2, 3, 70, 90)
    with torch.no_grad():
        whole = conv(x)
        tiled = run_tiled(conv, x, tile=32, overlap=16)
    assert torch.allclose(whole, tiled, atol=1e-5)


def test_tiled_generator_matches_whole_frame():
    frames = _clip(2, 200, 120)
    whole = Restorer(_random_model(), device=CPU).restore(frames)
    tiled = Restorer(_random_model(), device=CPU, tile=96, tile_overlap=32).restore(frames)
    assert min(psnr(a, b) for a, b in zip(whole, tiled)) > 40.0


def test_batches_do_not_change_results():
    frames = _clip(7)
    one = Restorer(_random_model(), device=CPU, batch_size=1).restore(frames)
    four = Restorer(_random_model(), device=CPU, batch_size=4).restore(frames)
    assert one.shape == frames.shape
    assert np.array_equal(one, four)


def test_identity_model_returns_frames_exactly_8_and_16_bit():
    for depth in (8, 16):
        frames = _clip(5, depth=depth)
        out = Restorer(make_identity_model(), device=CPU).restore(frames)
        assert out.dtype == frames.dtype
        assert np.array_equal(out, frames)


def test_multi_frame_windows_restore_the_centre_frames():
    frames = _clip(9)
    out = Restorer(make_identity_model(in_frames=5), device=CPU, batch_size=3).restore(frames)
    assert np.array_equal(out, frames[2:-2])


def test_bf16_matches_fp32_within_tolerance():
    frames = _clip(4)
    fp32 = Restorer(_random_model(), device=CPU, precision="fp32").restore(frames)
    bf16 = Restorer(_random_model(), device=CPU, precision="bf16").restore(frames)
    diff = np.abs(fp32.astype(int) - bf16.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8


class _OutOfMemoryAbove(torch.nn.Module):
    """Wraps a model; raises CUDA OOM when a call has more than `pixels` per batch."""

    def __init__(self, model: RRDBNet, pixels: int) -> None:
        super().__init__()
        self.inner, self.pixels, self.config = model, pixels, model.config

    def forward(self, x):
        if x.shape[0] * x.shape[2] * x.shape[3] > self.pixels:
            raise torch.cuda.OutOfMemoryError("simulated")
        return self.inner(x)


def test_out_of_memory_halves_the_batch_then_tiles_and_drops_nothing():
    frames = _clip(3, 300, 200)
    expected = Restorer(make_identity_model(), device=CPU, batch_size=4).restore(frames)
    restorer = Restorer(_OutOfMemoryAbove(make_identity_model(), 200 * 200), device=CPU,
                        batch_size=4)
    out = restorer.restore(frames)
    assert np.array_equal(out, expected)
    assert restorer._plan.batch_size == 1 and restorer._plan.tile == 128


def test_compiled_forward_pads_the_last_batch():
    frames = _clip(5)
    restorer = Restorer(make_identity_model(), device=CPU, batch_size=4, compile=False)
    restorer._compiled = True  # exercise the padding path without paying for compilation
    out = restorer.restore(frames)
    assert np.array_equal(out, frames)


@pytest.mark.gpu
def test_gpu_bf16_path_matches_cpu_fp32():
    frames = _clip(6, 256, 144)
    cpu = Restorer(_random_model(), device=CPU, precision="fp32").restore(frames)
    gpu = Restorer(_random_model(), device=torch.device("cuda"), precision="bf16").restore(frames)
    assert np.abs(cpu.astype(int) - gpu.astype(int)).mean() < 1.0
