"""Precision is chosen from what the processor can do natively, for training and for the pipeline."""

from __future__ import annotations

import pytest
import torch

import models.precision
from models.errors import ConfigError
from models.generator import RRDBNet
from models.precision import auto_precision
from models.train import Trainer
from models.train_config import load_config
from pipeline.restorer import resolve_precision
from tests.test_models_train import CONFIGS, write_pairs


@pytest.fixture
def fake_cpu(monkeypatch):
    """Make the CPU report the features given."""
    def report(**features):
        monkeypatch.setattr(models.precision, "cpu_capabilities", lambda: dict(features))
    return report


@pytest.mark.parametrize("features, expected", [
    ({"avx512_bf16": True, "avx512_f": True}, "bf16"),
    ({"amx_bf16": True}, "bf16"),
    ({"avx512_f": True, "avx2": True}, "fp32"),  # bf16 would be emulated: slower than fp32
    ({}, "fp32"),
])
def test_auto_precision_follows_the_cpus_native_bf16(fake_cpu, features, expected):
    fake_cpu(**features)
    cpu = torch.device("cpu")
    choice = auto_precision(cpu)
    assert choice.name == expected and choice.reason
    assert resolve_precision("auto", cpu) == expected  # process and jobs: --precision auto
    assert resolve_precision("fp32", cpu) == "fp32"  # a request always wins


@pytest.mark.parametrize("native, dtype", [(True, torch.bfloat16), (False, None)])
def test_training_amp_auto_follows_the_cpu_and_amp_off_always_wins(fake_cpu, tmp_path, native, dtype):
    fake_cpu(**({"avx512_bf16": True} if native else {}))
    pairs = write_pairs(tmp_path / "pairs")
    base = [f"data={pairs}", f"out={tmp_path}/run", "steps=1", "val_every=1000"]
    assert Trainer(load_config(CONFIGS / "tiny.yaml", base + ["amp=auto"]), progress=False).amp_dtype == dtype
    assert Trainer(load_config(CONFIGS / "tiny.yaml", base + ["amp=off"]), progress=False).amp_dtype is None
    with pytest.raises(ConfigError, match="fp16 is for CUDA"):
        Trainer(load_config(CONFIGS / "tiny.yaml", base + ["amp=fp16"]), progress=False)


@pytest.mark.skipif(models.precision.native_cpu_bf16() is None, reason="this CPU has no native bf16")
def test_a_bf16_cpu_training_step_lowers_the_loss_and_keeps_fp32_weights(tmp_path):
    pairs = write_pairs(tmp_path / "pairs")
    config = load_config(CONFIGS / "tiny.yaml", [f"data={pairs}", f"out={tmp_path}/run", "amp=bf16",
                                                  "steps=1", "batch_size=4", "crop_size=32"])
    trainer = Trainer(config, progress=False)
    batch = next(iter(trainer.batches(0)))
    inputs, sharp = batch["blurry"], batch["sharp"]
    assert trainer.amp_dtype == torch.bfloat16

    def loss() -> float:
        with torch.no_grad(), trainer._autocast():
            return torch.nn.functional.mse_loss(trainer.generator(inputs).float(), sharp).item()

    before = loss()
    for _ in range(40):
        trainer.psnr_step(inputs, sharp)
    assert loss() < 0.9 * before  # from the identity start: -13 % in 40 steps here
    assert all(p.dtype == torch.float32 for p in trainer.generator.parameters())
    assert all(p.dtype == torch.float32 for p in trainer.ema.parameters())
    assert all(s.dtype == torch.float32 for state in trainer.opt_g.state.values() for s in state.values()
               if torch.is_tensor(s) and s.is_floating_point())
    assert isinstance(trainer.generator, RRDBNet)
