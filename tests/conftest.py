"""Shared fixtures: tiny generators whose behaviour is known exactly."""

from __future__ import annotations

import pytest
import torch

from models import RRDBNet, save_generator

# One intra-op thread: the suite runs on 2 cores beside FFmpeg's decoder/encoder threads, and
# OpenMP threads that spin-wait for a busy core make each model call ~100x slower.
torch.set_num_threads(1)

try:
    HAS_CUDA = torch.cuda.is_available()
except Exception:  # pragma: no cover - broken driver installs
    HAS_CUDA = False


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)


def make_identity_model(in_frames: int = 1) -> RRDBNet:
    """A tiny residual generator whose correction is zero: output == centre input frame."""
    model = RRDBNet(num_feat=4, num_block=1, num_grow_ch=4, downscale=4, in_frames=in_frames)
    torch.nn.init.zeros_(model.conv_last.weight)
    torch.nn.init.zeros_(model.conv_last.bias)
    return model.eval()


@pytest.fixture(scope="session")
def identity_model() -> RRDBNet:
    return make_identity_model()


@pytest.fixture(scope="session")
def identity_model_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("models") / "identity.safetensors"
    save_generator(make_identity_model(), path)
    return str(path)


@pytest.fixture
def small_disk(tmp_path):
    """A 32 KiB file system (tmpfs), for what happens when the disk fills up; root only."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
