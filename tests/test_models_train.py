"""Training: configs, pairs data, the PSNR and GAN steps, resume, init, export/interpolate, CLI."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from models import RRDBNet, load_generator, save_generator
from models.checkpoint import CheckpointError
from models.cli import main
from models.data import DataError, PairsDataset
from models.export import export, interpolate
from models.errors import ConfigError
from models.train import train
from models.train_config import TrainConfig, config_to_yaml, load_config
from models.vgg import VGG19Features

CONFIGS = Path(__file__).resolve().parents[1] / "models" / "configs"
TINY_YAML = CONFIGS / "tiny.yaml"
TINY_NET = "generator={num_feat: 8, num_block: 1, num_grow_ch: 4, downscale: 2}"
FAST = ["batch_size=2", "crop_size=32", "log_every=2", "val_every=1000", "checkpoint_every=1000"]


def write_pairs(root: Path, *, n_train: int = 6, n_val: int = 2, size: int = 48, frames: int = 3,
                speed: int = 3, seed: int = 0, bit_depth: int = 8) -> Path:
    """Tiny pairs in dataset_builder's format: a textured scene panning right, blurred by
    averaging shifted copies (so the blur is real motion blur of known length)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    margin = speed * (frames + 2) * 2
    peak, dtype = (255, np.uint8) if bit_depth == 8 else (65535, np.uint16)
    lines = []
    for i in range(n_train + n_val):
        split = "train" if i < n_train else "val"
        noise = rng.random((size + 2 * margin, size + 2 * margin, 3)).astype(np.float32)
        canvas = cv2.GaussianBlur(noise, (0, 0), 1.5)
        canvas = (canvas - canvas.min()) / (canvas.max() - canvas.min())

        def view(shift: int) -> np.ndarray:
            return canvas[margin : margin + size, margin - shift : margin - shift + size]

        def save(name: str, image: np.ndarray) -> str:
            cv2.imwrite(str(root / name), np.round(image[:, :, ::-1] * peak).astype(dtype))
            return name

        blurred = [
            np.mean([view((f - frames // 2) * speed * 2 + s) for s in range(-speed, speed + 1)], axis=0)
            for f in range(frames)
        ]
        names = [save(f"{i}_b{f}.png", b) for f, b in enumerate(blurred)]
        lines.append(json.dumps({
            "split": split, "source": f"clip{i % 3}" if split == "train" else "heldout", "index": i,
            "sharp": save(f"{i}_sharp.png", view(0)), "blurry": names[frames // 2], "blurry_frames": names,
            "static": False, "bit_depth": bit_depth,
        }))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root




@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs"))


def _config(pairs: Path, out: Path, *overrides: str) -> TrainConfig:
    return load_config(TINY_YAML, [f"data={pairs}", f"out={out}", TINY_NET, *FAST, *overrides])


# --------------------------------------------------------------------------- config


def test_shipped_configs_load_and_round_trip(tmp_path):
    for path in sorted(CONFIGS.glob("*.yaml")):
        config = load_config(path, [f"data={tmp_path}", f"out={tmp_path / 'run'}", f"synthetic.photos=[{tmp_path}]"])
        saved = tmp_path / f"{path.stem}.resolved.yaml"
        saved.write_text(config_to_yaml(config))
        assert load_config(saved) == config, path.name


def test_shipped_configs_load_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("tiny", ["data=p", "out=r"]) == load_config(TINY_YAML, ["data=p", "out=r"])
    assert load_config("default", ["out=r", "synthetic.photos=[x]"]).synthetic.fraction == 1.0
    with pytest.raises(ConfigError, match="shipped configs: default, default_gan, gpu, gpu_video, tiny, video"):
        load_config("defualt", ["data=p", "out=r"])


def test_unknown_key_fails_with_suggestion(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("stpes: 10\n")
    with pytest.raises(ConfigError, match=r"unknown config key stpes \(did you mean steps\?\)"):
        load_config(cfg, ["data=x", "out=y"])
    with pytest.raises(ConfigError, match="generator.num_blocks"):
        load_config(None, ["data=x", "out=y", "generator.num_blocks=2"])


def test_wrong_types_and_values_fail_clearly():
    with pytest.raises(ConfigError, match="steps must be a number"):
        load_config(None, ["data=x", "out=y", "steps=many"])
    with pytest.raises(ConfigError, match="stage must be one of psnr, gan"):
        load_config(None, ["data=x", "out=y", "stage=adversarial"])
    with pytest.raises(ConfigError, match="data is not set"):
        load_config(None, ["out=y"])
    with pytest.raises(ConfigError, match="in_frames must be odd"):
        load_config(None, ["data=x", "out=y", "generator.in_frames=2"])
    with pytest.raises(ConfigError, match="val_images must be >= 0"):
        load_config(None, ["data=x", "out=y", "val_images=-1"])
    with pytest.raises(ConfigError, match=r"psnr_loss_cap_db must be in \(0, 200\] dB"):
        load_config(None, ["data=x", "out=y", "psnr_loss_cap_db=0"])


def test_stage_override_picks_stage_defaults_and_demands_an_explicit_perceptual_loss():
    psnr = load_config(None, ["data=x", "out=y"])
    assert (psnr.lr_g, psnr.pixel_weight) == (2e-4, 1.0)  # BasicSR stage 1
    with pytest.raises(ConfigError, match="vgg19 needs vgg_weights.*perceptual: fft"):
        load_config(None, ["data=x", "out=y", "stage=gan"])
    gan = load_config(None, ["data=x", "out=y", "stage=gan", "perceptual=fft", "lr_d=2e-4"])
    assert (gan.lr_g, gan.pixel_weight, gan.gan_weight, gan.lr_d) == (1e-4, 1e-2, 5e-3, 2e-4)
    with pytest.raises(ConfigError, match="batch norm"):
        load_config(None, ["data=x", "out=y", "stage=gan", "perceptual=fft", "gan_loss=wgan-gp"])


# --------------------------------------------------------------------------- data


def test_augmentation_is_identical_for_every_frame_and_deterministic(tmp_path):
    root = tmp_path / "same"
    root.mkdir()
    rng = np.random.default_rng(1)
    image = (rng.random((40, 56, 3)) * 65535).astype(np.uint16)  # 16-bit, not square
    cv2.imwrite(str(root / "a.png"), image[:, :, ::-1])
    entry = {"split": "train", "source": "s", "index": 0, "sharp": "a.png", "blurry": "a.png",
             "blurry_frames": ["a.png"] * 5, "static": True, "bit_depth": 16}
    (root / "manifest.jsonl").write_text(json.dumps(entry) + "\n")
    data = PairsDataset(root, split="train", in_frames=5, crop_size=24, augment=True, seed=3)
    seen = set()
    for n in range(12):
        sample = data[n]
        assert sample["blurry"].shape == (15, 24, 24) and sample["sharp"].shape == (3, 24, 24)
        for f in range(5):  # same crop, flip and rotation on every frame and the target
            assert torch.equal(sample["blurry"][3 * f : 3 * f + 3], sample["sharp"])
        assert torch.equal(data[n]["sharp"], sample["sharp"])  # a pure function of n
        seen.add(sample["sharp"].numpy().tobytes())
    assert len(seen) > 6  # and different samples differ
    full = PairsDataset(root, split="train", in_frames=1)[0]["sharp"]
    assert torch.allclose(full, torch.from_numpy(image.transpose(2, 0, 1) / 65535.0).float())
    with pytest.raises(DataError, match="has 5 blurred frame"):
        PairsDataset(root, split="train", in_frames=7)
    with pytest.raises(DataError, match="no val pairs"):
        PairsDataset(root, split="val")


def test_sharp_input_fraction_feeds_some_samples_their_target_and_keeps_the_crops(pairs):
    plain = PairsDataset(pairs, split="train", in_frames=3, crop_size=24, augment=True, seed=5)
    mixed = PairsDataset(pairs, split="train", in_frames=3, crop_size=24, augment=True, seed=5,
                         sharp_fraction=0.3)
    identity = 0
    for n in range(60):
        a, b = plain[n], mixed[n]
        assert torch.equal(a["sharp"], b["sharp"])  # same pair, crop, flip and rotation
        if torch.equal(b["blurry"], a["blurry"]):
            continue
        identity += 1  # every input frame replaced by the sharp target
        assert all(torch.equal(b["blurry"][3 * f : 3 * f + 3], b["sharp"]) for f in range(3))
    assert 8 <= identity <= 30  # ~30 % of 60
    with pytest.raises(ConfigError, match="sharp_input_fraction"):
        load_config(None, ["data=x", "out=y", "sharp_input_fraction=1.5"])


# --------------------------------------------------------------------------- training


def test_tiny_yaml_from_the_command_line_lowers_the_loss_and_raises_validation_psnr(pairs, tmp_path, capsys):
    # Exactly the README's command: python -m models train models/configs/tiny.yaml data=PAIRS out=RUN
    out = tmp_path / "run"
    assert main(["train", str(TINY_YAML), f"data={pairs}", f"out={out}", "--no-progress"]) == 0
    assert f"model: {out / 'model.safetensors'}" in capsys.readouterr().out
    with (out / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    losses = [(int(r["step"]), float(r["l_pix"])) for r in rows if r["l_pix"]]
    assert [step for step, _ in losses] == [10, 20, 30, 40, 50, 60]
    assert losses[-1][1] < 0.97 * losses[0][1]
    final = [r for r in rows if r["val_psnr"]][-1]
    assert float(final["val_psnr"]) > float(final["val_psnr_input"]) + 0.2  # held-out source, EMA weights
    assert load_generator(out / "model.safetensors").config.num_feat == 16  # tiny.yaml's architecture


def test_the_default_config_trains_on_stored_pairs_only(pairs, tmp_path, capsys):
    """The README's stage 1 on stored pairs: synthetic.fraction=0 needs no photos (its rendered
    validation set is left out, it used to crash looking for val photos), and without it the
    error says what to pass."""
    out = tmp_path / "run"
    small = ["steps=2", "batch_size=2", "crop_size=32", "val_crop=32", "-q"]
    assert main(["train", "default", f"data={pairs}", f"out={out}", *small]) == 2
    assert "synthetic.fraction=0" in capsys.readouterr().err
    assert main(["train", "default", f"data={pairs}", "synthetic.fraction=0", f"out={out}", *small]) == 0, \
        capsys.readouterr().err
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("val_images, rows", [(4, 2), (1, 1), (0, 0)])
def test_each_validation_saves_blurred_restored_sharp_images(pairs, tmp_path, val_images, rows):
    """As BasicSR does: a look at the first validation pairs at every validation (the
    fixture holds 2 val pairs of 48x48 px, validated whole)."""
    out = tmp_path / "run"
    train(_config(pairs, out, "steps=3", "val_every=2", f"val_images={val_images}"), progress=False)
    if not rows:
        assert not (out / "val_images").exists()
        return
    saved = sorted(p.name for p in (out / "val_images").iterdir())
    assert saved == ["step_00000002.png", "step_00000003.png"]  # every 2 steps, and at the end
    sheet = cv2.imread(str(out / "val_images" / saved[-1]))
    assert sheet.shape == (rows * 48, 3 * 48, 3)  # a row per pair: blurred | restored | sharp
    # The tiles are the pairs: the sharp tile of the first row is the first val pair's target.
    sharp = cv2.imread(str(pairs / "6_sharp.png"))
    assert np.abs(sheet[20:48, 96:].astype(int) - sharp[20:].astype(int)).mean() < 1


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


@pytest.mark.parametrize("stage", ["psnr", "gan"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(pairs, tmp_path, stage):
    extra = ["generator.in_frames=3", "num_workers=1", "cache_mb=0", "lr_milestones=[4]",
                                      "lr_warmup=4"] if stage == "psnr" else [
        "stage=gan", "perceptual=fft", "gan_loss=wgan-gp",
        "discriminator={kind: patch, num_feat: 8, norm: instance}",
    ]
    whole = train(_config(pairs, tmp_path / "whole", "steps=6", *extra), progress=False)
    half = train(_config(pairs, tmp_path / "split", "steps=3", *extra), progress=False)
    assert half.step == 3
    resumed = train(_config(pairs, tmp_path / "split", "steps=6", *extra), resume=True, progress=False)
    assert resumed.step == 6 and resumed.checkpoint.name == whole.checkpoint.name
    names = ["generator", "ema"] + (["discriminator"] if stage == "gan" else [])
    for name in names:
        a, b = _tensors(whole.checkpoint / f"{name}.safetensors"), _tensors(resumed.checkpoint / f"{name}.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs after resume"
    with (tmp_path / "split" / "log.csv").open() as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle) if r["loss_g"]] == [2, 3, 4, 6]


def test_a_config_written_into_the_run_folder_is_kept(pairs, tmp_path):
    """train runs/mine/config.yaml out=runs/mine: the run writes its resolved config there; the
    user's file, comments and all, is kept beside it (it was replaced)."""
    run = tmp_path / "mine"
    run.mkdir()
    mine = TINY_YAML.read_text(encoding="utf-8") + "# my notes on this run\n"
    (run / "config.yaml").write_text(mine, encoding="utf-8")
    train(load_config(run / "config.yaml", [f"data={pairs}", f"out={run}", TINY_NET, *FAST, "steps=1"]),
          progress=False)
    assert (run / "config.given.yaml").read_text(encoding="utf-8") == mine
    assert load_config(run / "config.yaml").steps == 1  # the resolved config, overrides in


def test_a_resumed_run_keeps_counting_its_time_budget(pairs, tmp_path):
    """max_minutes / max_cpu_minutes are the run's, not each invocation's: a run that spent
    its budget and is resumed stops at once (it used to get the whole budget again), and
    log.csv's time_s / cpu_s go on from where they were."""
    budget = ["steps=100000", "max_cpu_minutes=0.01", "log_every=1"]  # 0.6 CPU-seconds
    first = train(_config(pairs, tmp_path / "run", *budget), progress=False)
    assert 1 <= first.step < 100000
    resumed = train(_config(pairs, tmp_path / "run", *budget), resume=True, progress=False)
    assert resumed.step == first.step + 1  # one step, then the budget is found spent
    with (tmp_path / "run" / "log.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["cpu_s"]]
    assert [int(r["step"]) for r in rows] == list(range(1, resumed.step + 1))
    cpu = [float(r["cpu_s"]) for r in rows]
    assert cpu == sorted(cpu) and cpu[-1] >= 0.6


@pytest.mark.parametrize("pixel_loss", ["mse", "psnr"])
def test_a_batch_split_over_threads_trains_the_same_model_deterministically(pairs, tmp_path, pixel_loss, caplog):
    """batch_split cuts each step's batch (here 3 samples in parts of 2 and 1) over threads:
    its gradients are the whole batch's, so the weights match the unsplit run's to float
    rounding, and two split runs are identical."""
    runs = {}
    for name, parts in (("whole", 1), ("split", 2), ("again", 2)):
        with caplog.at_level("INFO", logger="models.train"):
            runs[name] = train(_config(pairs, tmp_path / name, "steps=4", "batch_size=3", "amp=off",
                                       f"pixel_loss={pixel_loss}", f"batch_split={parts}"), progress=False)
    assert "the batch in 2 part(s)" in caplog.text
    whole, split, again = (_tensors(runs[n].checkpoint / "generator.safetensors") for n in ("whole", "split", "again"))
    assert any(not torch.equal(whole[k], split[k]) for k in whole)  # summed in another order
    for key in whole:
        assert torch.equal(split[key], again[key]), key
        torch.testing.assert_close(split[key], whole[key], rtol=1e-4, atol=1e-6)


def test_warmup_ramps_the_learning_rate_up_to_lr_g_then_milestones_halve_it(pairs, tmp_path):
    train(_config(pairs, tmp_path / "run", "steps=6", "lr_g=1e-3", "lr_warmup=4", "lr_milestones=[5]",
                  "log_every=1"), progress=False)
    with (tmp_path / "run" / "log.csv").open() as handle:
        rates = [float(r["lr_g"]) for r in csv.DictReader(handle) if r["loss_g"]]
    # The first step runs at lr_g / 4, each further one a quarter of the rest up: 0.25, 0.44, ... 1.
    assert rates == pytest.approx([4.375e-4, 6.25e-4, 8.125e-4, 1e-3, 5e-4, 5e-4])


def test_gan_stage_from_psnr_model_with_a_local_vgg_file(pairs, tmp_path):
    psnr = train(_config(pairs, tmp_path / "psnr", "steps=4"), progress=False)
    vgg = VGG19Features(("relu2_2",))
    weights = {f"features.{k}": v for k, v in vgg.features.state_dict().items()}
    torch.save(weights, tmp_path / "vgg19.pth")
    gan = train(
        _config(pairs, tmp_path / "gan", "steps=4", "stage=gan", f"init={psnr.model_path}",
                f"vgg_weights={tmp_path / 'vgg19.pth'}", "vgg_layer=relu2_2", "discriminator.num_feat=8"),
        progress=False,
    )
    with (tmp_path / "gan" / "log.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["loss_g"]]
    assert all(float(r["l_percep"]) > 0 and float(r["loss_d"]) > 0 for r in rows)
    disc = load_file(str(gan.checkpoint / "discriminator.safetensors"))
    assert "conv0_0.weight" in disc and "linear2.weight" in disc  # BasicSR's names


def test_init_loads_the_fitting_trunk_and_reports_what_it_skipped(pairs, tmp_path, caplog):
    # Like a BasicSR model: deeper, and without the global residual.
    donor = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4, downscale=2, residual=False)
    save_generator(donor, tmp_path / "donor.safetensors")
    caplog.set_level("INFO")
    result = train(_config(pairs, tmp_path / "run", "steps=1", "lr_g=1e-12", f"init={tmp_path / 'donor.safetensors'}"),
                   progress=False)
    assert "skipped 30 tensor(s)" in caplog.text and "body.1.rdb1.conv1.weight" in caplog.text
    trained = load_file(str(result.checkpoint / "generator.safetensors"))
    donor_state = donor.state_dict()
    assert torch.allclose(trained["body.0.rdb1.conv1.weight"], donor_state["body.0.rdb1.conv1.weight"], atol=1e-6)
    # The donor's conv_last drew whole images; our residual generator starts from "no correction".
    assert trained["conv_last.weight"].abs().max() < 1e-6


def test_init_from_another_architecture_is_refused(pairs, tmp_path):
    """A model whose tensors barely fit (a bias of the same shape) would start the run from
    noise while calling it an init: refused, saying why."""
    other = RRDBNet(num_feat=16, num_block=2, num_grow_ch=8, downscale=2)
    save_generator(other, tmp_path / "other.safetensors")
    with pytest.raises(ConfigError, match="another architecture"):
        train(_config(pairs, tmp_path / "run", "steps=1", f"init={tmp_path / 'other.safetensors'}"),
              progress=False)


# --------------------------------------------------------------------------- export / interpolate


def test_export_and_interpolate_round_trip(pairs, tmp_path):
    run = train(_config(pairs, tmp_path / "run", "steps=2"), progress=False)
    exported = export(tmp_path / "run", tmp_path / "psnr.safetensors")
    ema = _tensors(run.checkpoint / "ema.safetensors")
    assert all(torch.equal(v, _tensors(exported)[k]) for k, v in ema.items())
    assert load_generator(exported).config == load_config(tmp_path / "run" / "config.yaml").generator

    gan = RRDBNet(load_generator(exported).config)  # another set of weights, same architecture
    save_generator(gan, tmp_path / "gan.safetensors")
    for alpha in (0.0, 0.8, 1.0):
        out = interpolate(exported, tmp_path / "gan.safetensors", tmp_path / f"mix{alpha}.safetensors", alpha=alpha)
        mixed = load_generator(out).state_dict()
        for name, value in gan.state_dict().items():
            expected = (1 - alpha) * ema[name] + alpha * value
            assert torch.allclose(mixed[name], expected, atol=1e-6), (alpha, name)
    other = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4, downscale=2)
    save_generator(other, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="different architectures"):
        interpolate(exported, tmp_path / "other.safetensors", tmp_path / "bad.safetensors")
    # Swapped files would give the opposite blend of what alpha asks: their stages say so.
    save_generator(gan, tmp_path / "staged_gan.safetensors", metadata={"unsmear.stage": "gan"})
    with pytest.raises(CheckpointError, match="give the psnr model first"):
        interpolate(tmp_path / "staged_gan.safetensors", exported, tmp_path / "swapped.safetensors")


# --------------------------------------------------------------------------- CLI


def test_cli_train_refuses_to_overwrite_a_run_and_resumes_it(pairs, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", str(TINY_YAML), f"data={pairs}", f"out={out}", TINY_NET, "steps=4", "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "already holds a run" in err and "\n" not in err
    # Overrides may follow the options too, also right after --resume's optional CKPT.
    assert main([*argv[:-2], "--resume", "steps=6", "--no-progress", "log_every=3"]) == 0
    assert "trained 6 steps" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*argv[:-2], "--resume", "--bogus"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "missing.yaml", "data=x", "out=y"], "config file not found"),
        (["train", str(TINY_YAML), "data=/nonexistent", "out=y"], "manifest.jsonl not found"),
        (["train", str(TINY_YAML), "out=y", "steps"], "is not KEY=VALUE"),
        (["export", "/nonexistent/run", "out.safetensors"], "checkpoint not found"),
        (["train", str(TINY_YAML), "data=x", "out=y", "lr_g=-1"], "lr_g must be > 0"),
        (["train", str(TINY_YAML), "data=x", "out=y", "lr_d=0"], "lr_d must be > 0"),
        (["train", str(TINY_YAML), "data=x", "out=y", "adam_betas=[2,0.9]"], "adam_betas must be"),
        (["train", str(TINY_YAML), "data=x", "out=y", "fft_weight=-1"], "fft_weight must be >= 0"),
        (["train", str(TINY_YAML), "data=x", "out=y", "lr_warmup=-3"], "lr_warmup must be >= 0"),
        (["train", str(TINY_YAML), "data=x", "out=y", "lr_gamma=-1"], "lr_gamma must be > 0"),
    ],
)
def test_cli_user_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_cli_outputs_are_not_replaced_without_overwrite(pairs, tmp_path, capsys):
    """export, interpolate, evaluate and render-pairs refuse what exists (exit 2, nothing
    touched), as every command does, and replace it with --overwrite; a file where a folder
    is wanted is one error line, not a traceback."""
    run = tmp_path / "run"
    assert main(["train", str(TINY_YAML), f"data={pairs}", f"out={run}", TINY_NET, "steps=2", "-q"]) == 0
    model = tmp_path / "model.safetensors"
    assert main(["export", str(run), str(model), "-q"]) == 0
    before = model.read_bytes()
    mine = tmp_path / "notes.safetensors"
    mine.write_text("mine")
    evaluated = tmp_path / "eval"
    common = ["--model", str(model), str(pairs), "--no-baselines", "-q"]
    assert main(["evaluate", *common, "--out", str(evaluated)]) == 0
    first = (evaluated / "results.json").read_text()
    capsys.readouterr()
    for argv, expected in ((["export", str(run), str(mine)], "already exists"),
                           (["interpolate", str(model), str(model), str(model)], "already exists"),
                           (["evaluate", *common, "--out", str(evaluated)], "already holds a results.json"),
                           (["render-pairs", str(tmp_path), str(pairs), "--val-photos", "x"], "already holds files"),
                           (["evaluate", *common, "--out", str(mine)], "is a file"),
                           (["train", str(TINY_YAML), f"data={pairs}", f"out={mine}"], "is a file")):
        assert main([*argv, "-q"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expected in err and "\n" not in err, err
    assert mine.read_text() == "mine" and model.read_bytes() == before
    assert (evaluated / "results.json").read_text() == first
    assert (pairs / "manifest.jsonl").is_file()
    assert main(["export", str(run), str(mine), "--overwrite", "-q"]) == 0
    assert load_generator(mine).config == load_generator(model).config
    assert main(["evaluate", *common, "--out", str(evaluated), "--overwrite"]) == 0


def test_cli_interpolate_rejects_alpha_out_of_range(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["interpolate", "a.safetensors", "b.safetensors", "out.safetensors", "--alpha", "1.5"])
    assert exit_info.value.code == 2
    assert "alpha must be between 0 and 1" in capsys.readouterr().err



_HELD = threading.Lock()  # held by another thread while the loader starts its worker


class _NeedsTheLock(torch.utils.data.Dataset):
    """Stored pairs whose reading takes a lock of this module, as decoders and allocators do."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        with _HELD:
            return {"blurry": torch.zeros(3, 8, 8), "sharp": torch.zeros(3, 8, 8)}


def test_loader_workers_do_not_inherit_locks_other_threads_hold():
    """A worker forked while another thread holds a lock would wait for it forever (a render
    worker hung so in CI); workers start from a clean fork server instead."""
    from models.generator import GeneratorConfig
    from models.training_data import TrainingBatches

    batches = TrainingBatches(stored=_NeedsTheLock(), stored_per_batch=2, synthetic=None, synthetic_per_batch=0,
                              generator=GeneratorConfig(), device=torch.device("cpu"), steps=2, seed=0,
                              reuse=1, pool=1, render_workers=0, stored_workers=1)
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with _HELD:
            taken.set()
            release.wait(120)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    taken.wait()
    got: list[dict[str, torch.Tensor]] = []
    reader = threading.Thread(target=lambda: got.extend(batches(0)), daemon=True)
    reader.start()
    reader.join(60)
    release.set()
    assert not reader.is_alive(), "a loader worker hung on a lock held at its start"
    assert len(got) == 2 and got[0]["blurry"].shape == (2, 3, 8, 8)
