"""The builder's pairs feed training as they are: one pair format, written by dataset_builder
and read by models (dataset_builder.manifest.PairRecord)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dataset_builder.cli import main as build_main
from dataset_builder.manifest import PairRecord, read_manifest
from models.checkpoint import load_generator
from models.cli import main as models_main
from models.data import PairsDataset
from tests.test_dataset_builder_build import moving_clip
from tests.test_models_train import FAST, TINY_YAML


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Pairs built by the CLI from two 240 fps clips, three blurred frames per sample."""
    root = tmp_path_factory.mktemp("builder_to_training")
    footage = root / "footage"
    moving_clip(footage / "one.mkv", 48, seed=1)
    moving_clip(footage / "two.mkv", 48, seed=2)
    out = root / "pairs"
    assert build_main(["build", str(footage), str(out), "--val-fraction", "0.5", "--frames", "3",
                       "--no-progress"]) == 0
    return out


def test_every_written_record_is_read_back_whole(built):
    lines = (built / "manifest.jsonl").read_text().splitlines()
    records = read_manifest(built)
    assert len(records) == len(lines) > 0
    for line, record in zip(lines, records):
        written = PairRecord.from_dict(json.loads(line))
        assert record == written.resolved(built)  # every field, paths made absolute
        assert len(record.blurry_frames) == 3 and Path(record.sharp).is_file()
    assert {r.split for r in records} == {"train", "val"}


def test_a_model_trains_on_built_pairs_and_validates_on_their_held_out_source(built, tmp_path):
    records = read_manifest(built)
    val = [r for r in records if r.split == "val"]
    data = PairsDataset(built, split="val", in_frames=3, crop_size=None)
    assert len(data) == len(val)
    out = tmp_path / "run"
    generator = "generator={num_feat: 8, num_block: 1, num_grow_ch: 4, downscale: 2, in_frames: 3}"
    assert models_main(["train", str(TINY_YAML), f"data={built}", f"out={out}", generator,
                        *FAST, "steps=12", "val_every=12", "--no-progress"]) == 0
    assert load_generator(out / "model.safetensors").config.in_frames == 3
    with (out / "log.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["val_psnr_input"]]
    # Validation read the builder's held-out pairs: its input PSNR is theirs (whole frames,
    # no noise or JPEG in this build).
    mean_written = sum(r.blurry_psnr for r in val) / len(val)
    assert abs(float(rows[-1]["val_psnr_input"]) - mean_written) < 0.05
