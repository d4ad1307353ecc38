"""The settings of a training run: :class:`TrainConfig`, and the YAML files and ``key=value``
overrides it is read from (``yaml.safe_load`` onto the dataclass: unknown keys and wrong types
fail with one line naming the key)."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from models import configs as shipped_configs
from models.discriminator import DiscriminatorConfig
from models.errors import ConfigError
from models.generator import GeneratorConfig
from models.synthetic import SyntheticConfig
from models.vgg import VGG19_LAYERS

# BasicSR's ESRGAN options (train_ESRGAN_x4plus / train_RRDBNet_PSNR_x4).
STAGE_DEFAULTS = {
    "psnr": {"lr_g": 2e-4, "pixel_weight": 1.0},
    "gan": {"lr_g": 1e-4, "pixel_weight": 1e-2},
}
PERCEPTUAL_WEIGHT_DEFAULTS = {"vgg19": 1.0, "fft": 0.1, "none": 0.0}  # fft: MIMO-UNet's 0.1



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
    max_cpu_minutes: float | None = None  # or this much CPU time of the run (this process and its render workers): fair budgets on a shared machine
    threads: int | None = None  # torch CPU threads; None: the cores the render workers leave (measured at the start)
    batch_split: int | None = None  # parts each stage-psnr CPU step's batch is cut into, each part's forward and backward on a thread of its own, gradients summed in a fixed order (oneDNN splits one small batch over cores badly); None: the cores, up to batch_size (1 on a GPU); 1: off
    synthetic_workers: int = -1  # processes rendering (CPU) or planning (CUDA) on-the-fly samples; -1: cores shared by measured cost
    lr_g: float | None = None  # generator learning rate; None: 2e-4 (psnr) or 1e-4 (gan)
    lr_d: float = 1e-4  # discriminator learning rate (BasicSR: 1e-4)
    adam_betas: tuple[float, float] = (0.9, 0.99)  # Adam betas for both networks (BasicSR)
    lr_milestones: tuple[int, ...] = ()  # steps at which both learning rates are multiplied by lr_gamma
    lr_gamma: float = 0.5  # learning-rate factor at each milestone (BasicSR: 0.5)
    lr_warmup: int = 0  # steps over which both learning rates ramp linearly from 1/lr_warmup of their value (the first step) to all of it: eases a fresh Adam into a run started from trained weights (init=); 0: off
    ema_decay: float = 0.999  # EMA of generator weights, the weights we ship (BasicSR: 0.999)
    pixel_weight: float | None = None  # pixel-loss weight; None: 1.0 (psnr) or 1e-2 (gan)
    pixel_loss: Literal["l1", "mse", "charbonnier", "psnr"] = "l1"  # L1 (BasicSR), MSE, Charbonnier (eps 1e-3) or PSNR loss (-PSNR per sample)
    psnr_loss_cap_db: float = 80.0  # pixel_loss psnr: each sample's PSNR counts softly up to this (the MSE floor 10^(-cap/10)); e.g. 40: sharp-in samples past 40 dB stop dominating
    fft_weight: float = 0.0  # weight of the FFT loss (MIMO-UNet) added to the pixel loss in any stage; 0: off
    temporal_weight: float = 0.0  # video, stage psnr, rendered samples only: weight of the temporal term (models/temporal.py temporal_loss): samples come as consecutive pairs of one motion and the output error's change along the sharp frames' motion is penalised (less flicker); 0: off
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
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # autocast; auto: bf16 where native (GPU, or CPU with AVX-512 BF16/AMX), fp16 on older GPUs, else off

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "crop_size", "log_every", "val_every", "checkpoint_every",
                    "keep_checkpoints")
        for name in ("max_minutes", "max_cpu_minutes", "threads", "batch_split"):
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
        if not 0 < self.psnr_loss_cap_db <= 200:
            raise ConfigError(f"psnr_loss_cap_db must be in (0, 200] dB, got {self.psnr_loss_cap_db}")
        if self.temporal_weight < 0:
            raise ConfigError(f"temporal_weight must be >= 0, got {self.temporal_weight}")
        for name in ("lr_g", "lr_d"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ConfigError(f"adam_betas must be two numbers in [0, 1), got {list(self.adam_betas)}")
        if not self.lr_gamma > 0:
            raise ConfigError(f"lr_gamma must be > 0, got {self.lr_gamma}")
        if self.lr_warmup < 0:
            raise ConfigError(f"lr_warmup must be >= 0 (0: off), got {self.lr_warmup}")
        for name in ("fft_weight", "pixel_weight", "perceptual_weight"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.temporal_weight > 0:
            if self.stage != "psnr" or self.generator.in_frames < 2 or self.synthetic.fraction < 1:
                raise ConfigError("temporal_weight > 0 needs stage psnr, a video generator (in_frames > 1) and "
                                  "rendered samples only (synthetic.fraction: 1): stored pairs are not consecutive")
            if self.batch_size % 2:
                raise ConfigError(f"temporal_weight > 0 needs an even batch_size (consecutive pairs), got {self.batch_size}")
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
        if isinstance(value, bool) and ("off" if value is False else "on") in args:
            value = "on" if value else "off"  # YAML 1.1 reads a bare off / on as a bool
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
