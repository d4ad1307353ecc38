"""Train the RRDBNet generator on blurry/sharp pairs: ESRGAN's two-stage recipe.

Wang et al., *ESRGAN* (2018), as implemented by BasicSR:

* stage ``psnr``: L1 loss only; Adam lr 2e-4, betas (0.9, 0.99); EMA 0.999.
* stage ``gan``: from stage 1's weights (``init``),
  L_G = perceptual + 5e-3 * L_G^Ra + 1e-2 * L1, with a relativistic average
  discriminator (``ragan``) or, as DeblurGAN does, WGAN-GP (``wgan-gp``); lr 1e-4.
  The perceptual term is VGG19 conv5_4 before activation from a local weight file
  (``perceptual: vgg19``) or, without one, the FFT loss (``perceptual: fft``): the
  config must say which — a random VGG is never used.

A run folder holds ``config.yaml`` (the resolved config), ``log.csv`` (and TensorBoard
events when ``tensorboard`` is installed), ``checkpoints/step_NNNNNNNN/`` (generator,
EMA and discriminator as safetensors, optimiser/scheduler state in ``state.pt``),
``val_images/step_NNNNNNNN.png`` (the first validation pairs, blurred | restored | sharp,
at each validation) and, at the end, ``model.safetensors`` (the EMA weights, ready for
``pipeline``).

Runs are deterministic on the CPU for a given seed, and a resumed run is identical to
an uninterrupted one: data order and augmentation depend only on (seed, sample number)
and all other randomness is re-seeded per step.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import difflib
import importlib.util
import json
import logging
import math
import os
import shutil
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from models import configs as shipped_configs
from models.checkpoint import CONFIG_KEY, load_trunk, read_metadata, read_state_dict, save_generator
from models.data import PairsDataset, read_manifest
from models.discriminator import DiscriminatorConfig, build_discriminator
from models.errors import ConfigError
from models.generator import GeneratorConfig, RRDBNet
from models.losses import (
    FFTLoss,
    PerceptualLoss,
    gradient_penalty,
    ragan_discriminator_loss,
    ragan_generator_loss,
    wgan_critic_loss,
    wgan_generator_loss,
)
from models.evaluate import comparison_row, write_sheet
from models.metrics import psnr, ssim
from models.synthetic import SamplePlan, SyntheticConfig, SyntheticPairs
from models.vgg import VGG19_LAYERS, load_vgg19_features
from models.devices import pick_device
from unsmear.files import replaced_when_done

logger = logging.getLogger(__name__)

# BasicSR's ESRGAN options (train_ESRGAN_x4plus / train_RRDBNet_PSNR_x4).
STAGE_DEFAULTS = {
    "psnr": {"lr_g": 2e-4, "pixel_weight": 1.0},
    "gan": {"lr_g": 1e-4, "pixel_weight": 1e-2},
}
PERCEPTUAL_WEIGHT_DEFAULTS = {"vgg19": 1.0, "fft": 0.1, "none": 0.0}  # fft: MIMO-UNet's 0.1
CHECKPOINTS_DIR = "checkpoints"
VAL_IMAGES_DIR = "val_images"
CHECKPOINT_PREFIX = "step_"
STATE_FILE = "state.pt"
FINAL_MODEL = "model.safetensors"
# One row per log_every steps (mean training losses; time_s counts from this process's
# first step) and one per validation (val_* columns only).
CSV_COLUMNS = ("step", "time_s", "lr_g", "loss_g", "l_pix", "l_percep", "l_gan", "loss_d",
               "val_psnr", "val_ssim", "val_psnr_input", "val_ssim_input",
               "val_synth_psnr", "val_synth_psnr_input", "val_real_psnr", "val_real_psnr_input")
# Per-sample PSNR is capped here before averaging: a sharp sample fed in unchanged has an
# infinite (or 100 dB) input PSNR, and one such sample would outweigh every blurred one.
# A sharp sample that comes out at >= 50 dB counts as untouched.
VAL_PSNR_CAP = 50.0
# Validation sets: stored pairs' val split, rendered held-out photos, real footage's pairs.
VAL_SETS = ("val", "val_synth", "val_real")
# Mixed into the seed of each step's own RNG (used by the gradient penalty).
_STEP_RNG_TAG = 7919


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved as ``config.yaml`` in the run folder."""

    data: str = ""  # pairs folder written by dataset_builder (holds manifest.jsonl); required unless synthetic.fraction is 1
    out: str = ""  # run folder for config, logs, checkpoints and the final model; required
    stage: Literal["psnr", "gan"] = "psnr"  # ESRGAN stage 1 (L1 only) or stage 2 (perceptual + GAN + L1)
    init: str | None = None  # checkpoint whose fitting tensors start G (stage gan: stage 1's model)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)  # architecture trained
    zero_init_last: bool = True  # without init, zero conv_last so a residual G starts as the identity
    seed: int = 0  # seeds weights, data order, augmentation: same seed, same run (on CPU)
    steps: int = 1000  # total optimiser steps of the run (a resumed run continues to this)
    batch_size: int = 16  # samples per step (BasicSR: 16)
    crop_size: int = 128  # training crop side in px; large blur needs large crops (BasicSR: 128)
    sharp_input_fraction: float = 0.0  # share of samples fed their sharp target as input: never damage sharp frames
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)  # pairs rendered on the fly, mixed in
    val_real: tuple[str, ...] = ()  # pairs folders of real high-fps footage kept out of training (their val splits)
    max_minutes: float | None = None  # stop after this much training time (wall clock, validation excluded)
    max_cpu_minutes: float | None = None  # or this much CPU time of this process: fair budgets on a shared machine
    threads: int | None = None  # torch CPU threads; None: torch's default (one per core)
    synthetic_workers: int = -1  # processes planning (CUDA) or rendering (CPU) on-the-fly batches; -1: auto
    lr_g: float | None = None  # generator learning rate; None: 2e-4 (psnr) or 1e-4 (gan)
    lr_d: float = 1e-4  # discriminator learning rate (BasicSR: 1e-4)
    adam_betas: tuple[float, float] = (0.9, 0.99)  # Adam betas for both networks (BasicSR)
    lr_milestones: tuple[int, ...] = ()  # steps at which both learning rates are multiplied by lr_gamma
    lr_gamma: float = 0.5  # learning-rate factor at each milestone (BasicSR: 0.5)
    ema_decay: float = 0.999  # EMA of generator weights, the weights we ship (BasicSR: 0.999)
    pixel_weight: float | None = None  # pixel-loss weight; None: 1.0 (psnr) or 1e-2 (gan)
    pixel_loss: Literal["l1", "mse", "charbonnier", "psnr"] = "l1"  # L1 (BasicSR), MSE, Charbonnier (eps 1e-3) or PSNR loss (-PSNR per sample)
    fft_weight: float = 0.0  # weight of the FFT loss (MIMO-UNet) added to the pixel loss in any stage; 0: off
    perceptual: Literal["vgg19", "fft", "none"] = "vgg19"  # stage gan content loss; vgg19 needs vgg_weights
    vgg_weights: str | None = None  # local torchvision vgg19 state dict (.pth/.safetensors)
    vgg_layer: str = "conv5_4"  # VGG19 layer before activation (ESRGAN conv5_4, DeblurGAN conv3_3)
    perceptual_weight: float | None = None  # None: 1.0 for vgg19 (BasicSR), 0.1 for fft (MIMO-UNet)
    gan_loss: Literal["ragan", "wgan-gp"] = "ragan"  # relativistic average GAN (ESRGAN) or WGAN-GP (DeblurGAN)
    gan_weight: float = 5e-3  # weight of the generator's adversarial loss (BasicSR: 5e-3)
    gp_weight: float = 10.0  # WGAN-GP gradient-penalty weight (Gulrajani et al.: 10)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)  # stage gan only
    log_every: int = 10  # steps between CSV rows of mean training losses
    val_every: int = 500  # steps between validations of the EMA model (and at the end)
    val_crop: int | None = 256  # centre crop of validation frames in px (speed); None: whole frames
    val_max_pairs: int | None = 32  # validation pairs used; None: all
    val_images: int = 4  # first validation pairs saved at each validation as blurred | restored | sharp rows in val_images/step_NNNNNNNN.png (BasicSR's visual check); 0: none
    checkpoint_every: int = 500  # steps between checkpoints (one is always written at the end)
    keep_checkpoints: int = 3  # newest checkpoints kept in the run folder
    num_workers: int = -1  # DataLoader workers; -1: 0 when pairs are cached, else up to 8 (cores - 1)
    cache_mb: float = 2048  # keep decoded pairs in memory when they fit in this many MB
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # CUDA autocast; auto: bf16 where supported

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "crop_size", "log_every", "val_every", "checkpoint_every",
                    "keep_checkpoints")
        for name in ("max_minutes", "max_cpu_minutes", "threads"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0 (or null), got {getattr(self, name)}")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.val_images < 0:
            raise ConfigError(f"val_images must be >= 0 (0: no images), got {self.val_images}")
        if not 0.0 <= self.sharp_input_fraction < 1.0:
            raise ConfigError(f"sharp_input_fraction must be in [0, 1), got {self.sharp_input_fraction}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.vgg_layer not in VGG19_LAYERS:
            raise ConfigError(f"vgg_layer {self.vgg_layer!r} is not a VGG19 layer; e.g. conv5_4, conv3_3")
        if self.stage != "gan":
            return
        if self.perceptual == "vgg19" and not self.vgg_weights:
            raise ConfigError(
                "perceptual: vgg19 needs vgg_weights (a local torchvision vgg19 state dict); "
                "without one set perceptual: fft (L1 + FFT loss) or none"
            )
        if self.gan_loss == "wgan-gp" and self.discriminator.norm == "batch":
            raise ConfigError(
                "gan_loss wgan-gp penalises per-sample gradients, which batch norm mixes; "
                "set discriminator.norm to instance or none"
            )
        if self.discriminator.kind == "vgg" and self.crop_size < 32:
            raise ConfigError("the vgg discriminator needs crop_size >= 32")

    def resolved(self) -> TrainConfig:
        """This config with every None that means "the stage's default" filled in."""
        stage = STAGE_DEFAULTS[self.stage]
        return dataclasses.replace(
            self,
            lr_g=stage["lr_g"] if self.lr_g is None else self.lr_g,
            pixel_weight=stage["pixel_weight"] if self.pixel_weight is None else self.pixel_weight,
            perceptual_weight=(
                PERCEPTUAL_WEIGHT_DEFAULTS[self.perceptual]
                if self.perceptual_weight is None
                else self.perceptual_weight
            ),
        )


# --------------------------------------------------------------------------- config files


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` (from YAML) checked against annotation ``tp``; raises ConfigError."""
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping of {tp.__name__} fields, got {value!r}")
        return config_from_mapping(tp, value, where=where)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} does not fit {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp in (int, float):
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value) if tp is float else int(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if tp is int and not float(value).is_integer():
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return tp(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {_type_name(tp)}")


def config_from_mapping(cls: type, mapping: dict[str, Any], *, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types.

    Args:
        cls: a dataclass such as ``TrainConfig`` (nested dataclass fields take mappings).
        mapping: field name → value, e.g. from ``yaml.safe_load``.
        where: how to name the mapping in error messages.
    """
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in mapping.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key {name}{hint}; known keys: {', '.join(names)}")
        values[key] = _coerce(value, hints[key], name)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from err


def apply_overrides(mapping: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``mapping`` with ``key=value`` overrides applied.

    Values are parsed as YAML (``steps=200``, ``init=null``, ``adam_betas=[0.9,0.99]``);
    dotted keys reach nested sections (``generator.num_block=4``).
    """
    result = copy.deepcopy(mapping)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value")
        target = result
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        try:
            target[parts[-1]] = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({err})") from err
    return result


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML training config (safe_load), apply overrides and resolve stage defaults.

    Args:
        path: YAML file whose keys are ``TrainConfig`` fields, or a shipped config's name
            (``default``, ``tiny``...; :mod:`models.configs`); None starts from defaults.
        overrides: ``key=value`` strings, applied after the file.

    Raises:
        ConfigError: unreadable file, unknown key, wrong type or impossible combination.
    """
    mapping: Any = {}
    if path is not None:
        path = shipped_configs.resolve(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (shipped configs: {', '.join(shipped_configs.names())})")
        try:
            mapping = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from err
        if not isinstance(mapping, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys")
    config = config_from_mapping(TrainConfig, apply_overrides(mapping, list(overrides)))
    if not config.out:
        raise ConfigError("out is not set; put it in the config or pass out=PATH")
    if not config.data and config.synthetic.fraction < 1:
        raise ConfigError("data is not set; put it in the config or pass data=PATH "
                          "(or train on pairs made on the fly only: synthetic.fraction=1)")
    return config.resolved()


def config_to_yaml(config: TrainConfig) -> str:
    """The config as YAML that ``load_config`` reads back to the same config."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return yaml.safe_dump(plain(dataclasses.asdict(config)), sort_keys=False)


# --------------------------------------------------------------------------- run folder


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(p for p in found if (p / STATE_FILE).is_file())


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from itself or from its run folder (then the newest one).

    Raises:
        FileNotFoundError: neither a checkpoint nor a run folder with checkpoints.
    """
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    found = checkpoint_dirs(path)
    if not found:
        raise FileNotFoundError(f"{path} is neither a checkpoint folder nor a run folder with checkpoints")
    return found[-1]


@dataclass(frozen=True)
class TrainResult:
    """What a finished ``train`` call produced."""

    run_dir: Path  # the run folder
    step: int  # steps done in total (including steps before a resume)
    checkpoint: Path  # newest checkpoint folder
    model_path: Path  # EMA generator as safetensors (run_dir / model.safetensors)
    losses: tuple[tuple[int, float], ...]  # (step, mean generator loss) per CSV row of this call
    validation: dict[str, float]  # last validation figures (empty without val pairs)


class _CsvLog:
    """Append-only CSV log; on resume, rows after the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        rows: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            with path.open(newline="", encoding="utf-8") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.tensorboard = None
        if importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(path.parent / "tensorboard"))

    def write(self, step: int, values: dict[str, float]) -> None:
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            row = {"step": step, **{k: f"{v:.6g}" for k, v in values.items()}}
            csv.DictWriter(handle, fieldnames=CSV_COLUMNS).writerow(row)
        if self.tensorboard is not None:
            for key, value in values.items():
                self.tensorboard.add_scalar(key, value, step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


# --------------------------------------------------------------------------- trainer


def _hwc(batch: torch.Tensor) -> np.ndarray:
    """The first image of a (N, 3, H, W) batch as an (H, W, 3) float32 array."""
    return batch[0].permute(1, 2, 0).float().cpu().numpy()


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or config.amp == "off":
        return None  # CPU autocast is slower than float32 for these convolutions
    if config.amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if config.amp == "bf16" else torch.float16


def _init_source(path: str) -> Path:
    """A weight file from ``init``: a file, a checkpoint folder or a run folder (EMA weights)."""
    candidate = Path(path)
    if candidate.is_dir():
        return resolve_checkpoint(candidate) / "ema.safetensors"
    return candidate


def _is_residual(path: Path) -> bool:
    """Whether a generator file adds its output to the input (BasicSR/ESRGAN files do not)."""
    text = read_metadata(path).get(CONFIG_KEY)
    return bool(json.loads(text).get("residual", False)) if text else False


CHARBONNIER_EPS = 1e-3  # as in LapSRN / MPRNet
PSNR_LOSS_EPS = 1e-8  # keeps log10 finite when a sample is restored exactly


class _SyntheticBatches(torch.utils.data.Dataset):
    """Item s: step s's on-the-fly batch (rendered), or its sample plans (``plan_only``)."""

    def __init__(self, pairs: SyntheticPairs, per_batch: int, *, plan_only: bool) -> None:
        self.pairs, self.per_batch, self.plan_only = pairs, per_batch, plan_only

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> dict[str, torch.Tensor] | list[SamplePlan]:
        numbers = range(step * self.per_batch, (step + 1) * self.per_batch)
        if self.plan_only:
            return [self.pairs.plan(n) for n in numbers]
        return self.pairs.batch(numbers)


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # a loader worker shares the cores with the training process


class Trainer:
    """Owns the networks, optimisers and data of one run.

    Args:
        config: a resolved ``TrainConfig`` (see ``load_config``).
        progress: show a tqdm progress bar on stderr.
    """

    def __init__(self, config: TrainConfig, *, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = pick_device(config.device)
        self.amp_dtype = _amp_dtype(config, self.device)
        self.channels_last = self.device.type == "cuda"
        self.run_dir = Path(config.out)
        self.step = 0
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest kernels
        self._build_data()  # first: a bad pairs folder fails before anything heavy is built
        torch.manual_seed(config.seed)
        self.generator = self._build_generator().to(self.device).train()
        self.ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr_g, betas=config.adam_betas)
        self.sched_g = torch.optim.lr_scheduler.MultiStepLR(self.opt_g, list(config.lr_milestones), config.lr_gamma)
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.discriminator: nn.Module | None = None
        self.content_loss: nn.Module | None = None
        self._fft = FFTLoss()
        if config.stage == "gan":
            self._build_gan()
        if self.channels_last:
            for net in (self.generator, self.ema, self.discriminator):
                if net is not None:
                    net.to(memory_format=torch.channels_last)

    def _build_data(self) -> None:
        cfg, frames = self.config, self.config.generator.in_frames
        # Each batch: synthetic_per_batch samples rendered on the fly, the rest stored pairs.
        self.synthetic_per_batch = round(cfg.synthetic.fraction * cfg.batch_size)
        stored_per_batch = cfg.batch_size - self.synthetic_per_batch
        self.train_set = None
        if stored_per_batch:
            self.train_set = PairsDataset(cfg.data, split="train", in_frames=frames, crop_size=cfg.crop_size,
                                          augment=True, seed=cfg.seed, cache_mb=cfg.cache_mb,
                                          sharp_fraction=cfg.sharp_input_fraction)
        self.synthetic = None
        if self.synthetic_per_batch:
            self.synthetic = SyntheticPairs(cfg.synthetic, split="train", crop_size=cfg.crop_size,
                                            in_frames=frames, seed=cfg.seed, device=self.device,
                                            sharp_fraction=cfg.sharp_input_fraction)
        # name -> a list of (blurry, sharp) samples, fixed for the run
        self.val_sets: dict[str, Sequence[dict[str, torch.Tensor]]] = {}
        if cfg.data and any(r.split == "val" for r in read_manifest(cfg.data)):
            self.val_sets["val"] = PairsDataset(cfg.data, split="val", in_frames=frames, crop_size=cfg.val_crop,
                                                max_pairs=cfg.val_max_pairs, cache_mb=cfg.cache_mb)
        if cfg.synthetic.val_photos and cfg.synthetic.val_samples:
            rendered = SyntheticPairs(cfg.synthetic, split="val", crop_size=cfg.val_crop or 256,
                                      in_frames=frames, seed=cfg.seed, device=self.device)
            self.val_sets["val_synth"] = [rendered.sample(n) for n in range(cfg.synthetic.val_samples)]
        if cfg.val_real:
            self.val_sets["val_real"] = torch.utils.data.ConcatDataset([
                PairsDataset(folder, split="val", in_frames=frames, crop_size=cfg.val_crop,
                             max_pairs=cfg.val_max_pairs, cache_mb=cfg.cache_mb) for folder in cfg.val_real])
        if not self.val_sets:
            logger.warning("no validation pairs (no val split in data, no synthetic.val_photos, no val_real): "
                           "training without validation")

    def _build_generator(self) -> RRDBNet:
        cfg = self.config
        generator = RRDBNet(cfg.generator)
        restart_last = cfg.zero_init_last and cfg.generator.residual
        if cfg.init:
            source = _init_source(cfg.init)
            loaded, skipped = load_trunk(generator, read_state_dict(source))
            if skipped:
                logger.warning("init %s: skipped %d tensor(s) that do not fit: %s", source, len(skipped),
                               ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
            logger.info("init %s: loaded %d tensor(s)", source, len(loaded))
            # A non-residual model's conv_last draws the image itself; a residual generator's
            # must draw a correction to the input, so it restarts from zero.
            restart_last = cfg.generator.residual and not _is_residual(source) and "conv_last.weight" in loaded
        elif cfg.stage == "gan":
            logger.warning("stage gan without init: ESRGAN starts stage 2 from the stage-1 (psnr) model")
        if restart_last:
            # A residual generator then starts as the identity: it never damages sharp
            # input before it has learnt something, and early training is stable.
            nn.init.zeros_(generator.conv_last.weight)
            nn.init.zeros_(generator.conv_last.bias)
        return generator

    def _build_gan(self) -> None:
        cfg = self.config
        self.discriminator = build_discriminator(cfg.discriminator).to(self.device).train()
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_d, betas=cfg.adam_betas)
        self.sched_d = torch.optim.lr_scheduler.MultiStepLR(self.opt_d, list(cfg.lr_milestones), cfg.lr_gamma)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if cfg.perceptual == "vgg19":
            vgg = load_vgg19_features(cfg.vgg_weights, layers=(cfg.vgg_layer,))
            self.content_loss = PerceptualLoss(vgg).to(self.device)
        elif cfg.perceptual == "fft":
            logger.info("no VGG19 weights: stage gan uses L1 + FFT loss + GAN (perceptual: fft)")
            self.content_loss = FFTLoss()

    # ---- steps

    def _autocast(self):  # noqa: ANN202 - a context manager
        enabled = self.amp_dtype is not None
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=enabled)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _step_generator(self, loss: torch.Tensor) -> None:
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        with torch.no_grad():
            # ema = decay * ema + (1 - decay) * weights
            for ema_param, param in zip(self.ema.parameters(), self.generator.parameters()):
                ema_param.lerp_(param, 1.0 - self.config.ema_decay)

    def _pixel_loss(self, restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        # Near the identity start, L1's gradient is the sign of tiny errors, which points
        # every way at once: measured on our pairs, L1 left a zero-initialised residual model
        # at the identity for 1000+ steps where MSE gained 1.3 dB in 150.
        kind = self.config.pixel_loss
        if kind == "mse":
            loss = F.mse_loss(restored, sharp)
        elif kind == "charbonnier":
            loss = torch.sqrt((restored - sharp) ** 2 + CHARBONNIER_EPS**2).mean()
        elif kind == "psnr":
            # PSNR loss (HINet, NAFNet): mean of 10 log10(MSE) per sample, i.e. -PSNR.
            loss = 10 * torch.log10(((restored - sharp) ** 2).mean(dim=(1, 2, 3)) + PSNR_LOSS_EPS).mean()
        else:
            loss = F.l1_loss(restored, sharp)
        if self.config.fft_weight:
            loss = loss + self.config.fft_weight * self._fft(restored, sharp)
        return loss

    def psnr_step(self, blurry: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
        """Stage 1: one Adam step on the pixel loss (L1 or MSE).

        Args:
            blurry: (N, in_frames*3, h, w) float in [0, 1].
            sharp: (N, 3, h, w) float in [0, 1].
        """
        with self._autocast():
            restored = self.generator(blurry)
        l_pix = self.config.pixel_weight * self._pixel_loss(restored.float(), sharp)
        self._step_generator(l_pix)
        return {"loss_g": l_pix.item(), "l_pix": l_pix.item()}

    def gan_step(self, blurry: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
        """Stage 2: one generator step, then one discriminator step (BasicSR's order).

        Args:
            blurry: (N, in_frames*3, h, w) float in [0, 1].
            sharp: (N, 3, h, w) float in [0, 1].
        """
        cfg, disc = self.config, self.discriminator
        ragan = cfg.gan_loss == "ragan"
        # --- generator: L_G = w_p * content + w_gan * L_G^adv + w_pix * L1
        disc.requires_grad_(False)
        with self._autocast():
            restored = self.generator(blurry)
            fake_scores = disc(restored).float()
            if ragan:
                real_scores = disc(sharp).float().detach()
                l_gan = cfg.gan_weight * ragan_generator_loss(real_scores, fake_scores)
            else:
                l_gan = cfg.gan_weight * wgan_generator_loss(fake_scores)
            l_percep = restored.new_zeros((), dtype=torch.float32)
            if self.content_loss is not None:
                l_percep = cfg.perceptual_weight * self.content_loss(restored, sharp)
        l_pix = cfg.pixel_weight * self._pixel_loss(restored.float(), sharp)
        loss_g = l_pix + l_percep + l_gan
        self._step_generator(loss_g)

        # --- discriminator, on the detached output
        disc.requires_grad_(True)
        restored = restored.detach()
        with self._autocast():
            real_scores = disc(sharp).float()
            fake_scores = disc(restored).float()
            if ragan:
                loss_d = ragan_discriminator_loss(real_scores, fake_scores)
            else:
                loss_d = wgan_critic_loss(real_scores, fake_scores)
        if not ragan:
            rng = torch.Generator().manual_seed(cfg.seed * _STEP_RNG_TAG + self.step)
            loss_d = loss_d + cfg.gp_weight * gradient_penalty(disc, sharp, restored, generator=rng)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss_d).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        return {"loss_g": loss_g.item(), "l_pix": l_pix.item(), "l_percep": l_percep.item(),
                "l_gan": l_gan.item(), "loss_d": loss_d.item()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean PSNR (``models.metrics``, capped at ``VAL_PSNR_CAP`` per sample) of the EMA model and
        of its input on each validation set, and SSIM on the stored pairs' val split: ``val_psnr``, ``val_synth_psnr``, ``val_real_psnr``...

        The first ``val_images`` samples (of the sets in that order) are also drawn, a row each,
        into ``val_images/step_NNNNNNNN.png``, to see what the numbers mean."""
        c = self.config.generator.centre_frame * 3
        result: dict[str, float] = {}
        shown: list[list[tuple[np.ndarray, str]]] = []
        for name, samples in self.val_sets.items():
            sums: dict[str, float] = {}
            prefix = "val" if name == "val" else name
            for index in range(len(samples)):
                sample = samples[index]
                blurry = self._to_device(sample["blurry"][None])
                sharp = sample["sharp"][None].to(self.device)
                restored = self.ema(blurry).float().clamp(0, 1)
                figures = {f"{prefix}_psnr": psnr(restored, sharp).clamp(max=VAL_PSNR_CAP),
                           f"{prefix}_psnr_input": psnr(blurry[:, c:c + 3], sharp).clamp(max=VAL_PSNR_CAP)}
                if name == "val":
                    figures.update(val_ssim=ssim(restored, sharp), val_ssim_input=ssim(blurry[:, c:c + 3], sharp))
                for key, value in figures.items():
                    sums[key] = sums.get(key, 0.0) + value.item()
                if len(shown) < self.config.val_images:
                    shown.append(comparison_row(_hwc(blurry[:, c:c + 3]), _hwc(restored), _hwc(sharp),
                                                figures[f"{prefix}_psnr_input"].item(),
                                                figures[f"{prefix}_psnr"].item()))
            result.update({key: value / len(samples) for key, value in sums.items()})
        if shown:
            folder = self.run_dir / VAL_IMAGES_DIR
            folder.mkdir(parents=True, exist_ok=True)
            write_sheet(shown, folder / f"{CHECKPOINT_PREFIX}{self.step:08d}.png")
        return result

    # ---- checkpoints

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_NNNNNNNN`` atomically and prune old ones."""
        root = self.run_dir / CHECKPOINTS_DIR
        final = root / f"{CHECKPOINT_PREFIX}{self.step:08d}"
        with replaced_when_done(final) as tmp:
            tmp.mkdir(parents=True)
            meta = {"unsmear.step": str(self.step), "unsmear.stage": self.config.stage}
            save_generator(self.generator, tmp / "generator.safetensors", metadata=meta)
            save_generator(self.ema, tmp / "ema.safetensors", metadata={**meta, "unsmear.weights": "ema"})
            state: dict[str, Any] = {
                "step": self.step,
                "config": json.dumps(dataclasses.asdict(self.config)),
                "opt_g": self.opt_g.state_dict(),
                "sched_g": self.sched_g.state_dict(),
                "scaler_g": self.scaler_g.state_dict(),
            }
            if self.discriminator is not None:
                tensors = {k: v.detach().cpu().contiguous() for k, v in self.discriminator.state_dict().items()}
                disc_meta = {"unsmear.discriminator_config": json.dumps(dataclasses.asdict(self.config.discriminator))}
                save_file(tensors, str(tmp / "discriminator.safetensors"), metadata=disc_meta)
                state.update(opt_d=self.opt_d.state_dict(), sched_d=self.sched_d.state_dict(),
                             scaler_d=self.scaler_d.state_dict())
            torch.save(state, tmp / STATE_FILE)
        for old in checkpoint_dirs(self.run_dir)[: -self.config.keep_checkpoints]:
            shutil.rmtree(old)
        logger.info("checkpoint %s", final)
        return final

    def load_checkpoint(self, path: Path) -> None:
        """Restore networks, optimisers, schedulers and step from a checkpoint folder."""
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        saved = json.loads(state["config"])
        if saved["generator"] != dataclasses.asdict(self.config.generator):
            raise ConfigError(f"{path} holds generator {saved['generator']}, the config asks for "
                              f"{dataclasses.asdict(self.config.generator)}")
        if saved["stage"] != self.config.stage:
            raise ConfigError(f"{path} is a stage-{saved['stage']} checkpoint; to start stage {self.config.stage} "
                              f"from it use init={path} in a new run folder")
        current = json.loads(json.dumps(dataclasses.asdict(self.config)))  # tuples -> lists, as saved
        changed = sorted(k for k, v in current.items() if saved.get(k) != v)
        if changed:
            logger.warning("resuming with changed settings: %s", ", ".join(changed))
        for name, net in (("generator", self.generator), ("ema", self.ema)):
            net.load_state_dict(load_file(str(path / f"{name}.safetensors"), device=str(self.device)))
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        if self.discriminator is not None:
            disc_state = load_file(str(path / "discriminator.safetensors"), device=str(self.device))
            self.discriminator.load_state_dict(disc_state)
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
            self.scaler_d.load_state_dict(state["scaler_d"])
        self.step = int(state["step"])
        logger.info("resumed from %s at step %d", path, self.step)

    # ---- loop

    def _loader(self, per_batch: int) -> DataLoader:
        cfg = self.config
        workers = cfg.num_workers
        if workers < 0:
            workers = 0 if self.train_set.cached else min(8, max(0, (os.cpu_count() or 1) - 1))
        # Sample numbers, not pair indices: step s always sees the same samples.
        samples = range(self.step * per_batch, cfg.steps * per_batch)
        return DataLoader(self.train_set, batch_size=per_batch, sampler=samples, num_workers=workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False)

    def _synthetic_loader(self) -> DataLoader | None:
        """Batches of on-the-fly samples: rendered by workers on the CPU; on CUDA workers only
        plan them (numpy) and the device renders (:meth:`_batches`)."""
        cfg, n = self.config, self.synthetic_per_batch
        workers = cfg.synthetic_workers
        if workers < 0:
            cores = os.cpu_count() or 1
            workers = min(8, max(1, cores - 2)) if self.device.type == "cuda" else (1 if cores >= 2 else 0)
        on_cuda = self.device.type == "cuda"
        dataset = _SyntheticBatches(self.synthetic, n, plan_only=on_cuda)
        return DataLoader(dataset, batch_size=None, sampler=range(self.step, cfg.steps), num_workers=workers,
                          worker_init_fn=_one_thread, persistent_workers=False,
                          prefetch_factor=4 if workers else None)

    def _batches(self):  # noqa: ANN202 - a generator of (blurry, sharp) on the device
        """One (blurry, sharp) batch per remaining step: stored pairs, then samples made on the fly."""
        stored = iter(self._loader(self.config.batch_size - self.synthetic_per_batch)) if self.train_set else None
        made = iter(self._synthetic_loader()) if self.synthetic else None
        for _ in range(self.step, self.config.steps):
            blurry, sharp = [], []
            if stored is not None:
                batch = next(stored)
                blurry.append(self._to_device(batch["blurry"]))
                sharp.append(self._to_device(batch["sharp"]))
            if made is not None:
                batch = next(made)
                if isinstance(batch, list):  # plans: render on the device
                    batch = self.synthetic.batch(batch)
                blurry.append(self._to_device(batch["blurry"]))
                sharp.append(self._to_device(batch["sharp"]))
            yield torch.cat(blurry), torch.cat(sharp)

    def _out_of_time(self, train_seconds: float, train_cpu: float) -> bool:
        cfg = self.config
        if cfg.max_minutes is not None and train_seconds >= 60 * cfg.max_minutes:
            return True
        return cfg.max_cpu_minutes is not None and train_cpu >= 60 * cfg.max_cpu_minutes

    def fit(self) -> TrainResult:
        """Train up to ``config.steps``, validating, logging and checkpointing on the way."""
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(config_to_yaml(cfg), encoding="utf-8")
        log = _CsvLog(self.run_dir / "log.csv", resume_step=self.step)
        step_fn = self.gan_step if cfg.stage == "gan" else self.psnr_step
        sums: dict[str, float] = {}
        count, losses, validation, start = 0, [], {}, time.monotonic()
        postfix: dict[str, str] = {}
        checkpoint = None
        bar = tqdm(total=cfg.steps, initial=self.step, file=sys.stderr, disable=not self.progress,
                   desc=f"train ({cfg.stage})", unit="step", dynamic_ncols=True)
        # Budgets count training steps (and waiting for data), never validation or checkpoints.
        train_seconds, train_cpu = 0.0, 0.0
        tick, tick_cpu = time.monotonic(), time.process_time()
        try:
            for blurry, sharp in self._batches():
                values = step_fn(blurry, sharp)
                if not all(math.isfinite(v) for v in values.values()):
                    raise FloatingPointError(
                        f"non-finite loss at step {self.step + 1}: {values}; lower lr_g or use amp=off"
                    )
                self.sched_g.step()
                if self.discriminator is not None:
                    self.sched_d.step()
                self.step += 1
                bar.update(1)
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    means = {k: v / count for k, v in sums.items()}
                    lr_g = self.opt_g.param_groups[0]["lr"]
                    log.write(self.step, {"time_s": time.monotonic() - start, "lr_g": lr_g, **means})
                    losses.append((self.step, means["loss_g"]))
                    postfix["loss"] = f"{means['loss_g']:.4g}"
                    bar.set_postfix(postfix)
                    sums, count = {}, 0
                train_seconds += time.monotonic() - tick
                train_cpu += time.process_time() - tick_cpu
                last = self.step == cfg.steps or self._out_of_time(train_seconds, train_cpu)
                if self.step % cfg.val_every == 0 or last:
                    validation = self.validate()
                    if validation:
                        log.write(self.step, validation)
                        gains = {name: validation[f"{name}_psnr"] - validation[f"{name}_psnr_input"]
                                 for name in VAL_SETS if f"{name}_psnr" in validation}
                        postfix.update({name: f"{gain:+.2f}dB" for name, gain in gains.items()})
                        bar.set_postfix(postfix)
                        logger.info("step %d: PSNR gain %s", self.step,
                                    ", ".join(f"{name} {gain:+.2f} dB" for name, gain in gains.items()))
                if self.step % cfg.checkpoint_every == 0 or last:
                    checkpoint = self.save_checkpoint()
                if last:
                    if self.step < cfg.steps:
                        logger.info("time budget spent at step %d of %d", self.step, cfg.steps)
                    break
                tick, tick_cpu = time.monotonic(), time.process_time()
        finally:
            bar.close()
            log.close()
        if checkpoint is None:  # nothing left to do (resumed at the last step)
            checkpoint = resolve_checkpoint(self.run_dir)
        model_path = self.run_dir / FINAL_MODEL
        save_generator(self.ema, model_path, metadata={"unsmear.step": str(self.step), "unsmear.stage": cfg.stage,
                                                       "unsmear.weights": "ema"})
        return TrainResult(self.run_dir, self.step, checkpoint, model_path, tuple(losses), validation)


def train(config: TrainConfig, *, resume: str | Path | bool = False, progress: bool = True) -> TrainResult:
    """Run (or continue) a training run.

    Args:
        config: resolved config (``load_config``); ``config.out`` is the run folder.
        resume: False starts fresh (the run folder must hold no checkpoint); True resumes
            from the newest checkpoint in ``config.out``; a path resumes from that
            checkpoint (or run) folder.
        progress: show a progress bar on stderr.

    Raises:
        ConfigError: bad config, or a fresh start in a folder that already holds a run.
        DataError: unusable pairs folder.
    """
    config = config.resolved()
    if resume is False and checkpoint_dirs(config.out):
        raise ConfigError(f"{config.out} already holds a run; resume it (--resume) or choose another out")
    checkpoint = None if resume is False else resolve_checkpoint(config.out if resume is True else resume)
    trainer = Trainer(config, progress=progress)
    if checkpoint is not None:
        trainer.load_checkpoint(checkpoint)
    return trainer.fit()
