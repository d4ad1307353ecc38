"""`benchmarks/checkpoint_sweep.py` (which models a run folder stands for, a row's figures) and
`benchmarks/phase_frames.py` (more real validation pairs from one clip)."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import checkpoint_sweep  # noqa: E402
from tests.test_models_synthetic import write_photo  # noqa: E402


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_a_run_folder_stands_for_its_checkpoints_in_step_order_then_its_last_weights(tmp_path):
    run = tmp_path / "run"
    for step in (1500, 500, 1000):
        _touch(run / "checkpoints" / f"step_{step:08d}" / "ema.safetensors")
    _touch(run / "ema.safetensors")
    labels = [label for label, _ in checkpoint_sweep.models_of(run, every=1)]
    assert labels == ["run @ 500", "run @ 1,000", "run @ 1,500", "run (last)"]
    every = [label for label, _ in checkpoint_sweep.models_of(run, every=1000)]
    assert every == ["run @ 1,000", "run (last)"]


def test_a_folder_without_weights_is_refused_with_its_name(tmp_path):
    with pytest.raises(SystemExit, match="empty"):
        checkpoint_sweep.models_of(tmp_path / "empty", every=1)


def test_a_row_has_the_rendered_gain_and_the_sharp_check_of_the_model(tmp_path, identity_model_file):
    from models.cli import main

    write_photo(tmp_path / "photos" / "gamma.png", seed=2)
    pairs = tmp_path / "pairs"
    assert main(["render-pairs", str(tmp_path / "photos"), str(pairs), "--val-photos", "gamma",
                 "--count", "3", "--size", "32"]) == 0
    args = Namespace(rendered=pairs, real=[], video=None, pan=False)
    row = checkpoint_sweep.measure(Path(identity_model_file), args)
    # The identity changes nothing: no gain, and sharp frames come out as they went in.
    assert row["rendered_gain"] == pytest.approx(0.0, abs=1e-6)
    assert row["sharp_in_min"] >= 60


def test_phase_frames_give_more_pairs_and_offset_zero_is_the_plain_build(tmp_path):
    import phase_frames

    from dataset_builder import BuildConfig, build_pairs
    from tests.test_dataset_builder_build import moving_clip

    clip = moving_clip(tmp_path / "clip.mkv", count=40)
    config = BuildConfig(window=7, stride=8, frames=3, val_fraction=1.0, static_keep=1.0, fps=240)
    build_pairs([clip], tmp_path / "plain", config, progress=False)
    folders = phase_frames.write_phases(clip, tmp_path / "phases", [0, 4])
    build_pairs(folders, tmp_path / "phased", config, progress=False)
    plain = sorted((tmp_path / "plain" / "val" / "blurry" / "clip").glob("*.png"))
    zero = sorted((tmp_path / "phased" / "val" / "blurry" / "clip_p00").glob("*.png"))
    four = sorted((tmp_path / "phased" / "val" / "blurry" / "clip_p04").glob("*.png"))
    assert plain and [p.read_bytes() for p in plain] == [p.read_bytes() for p in zero]
    assert four and four[0].read_bytes() != zero[0].read_bytes()  # another grid of the same footage
