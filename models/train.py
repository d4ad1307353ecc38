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
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from models.checkpoint import CONFIG_KEY, load_trunk, read_metadata, read_state_dict, save_generator
from models.data import PairsDataset
from models.devices import pick_device
from models.discriminator import build_discriminator
from models.errors import ConfigError
from models.generator import RRDBNet, checkpoint_filter_fn
from models.losses import (
    FFTLoss,
    PerceptualLoss,
    gradient_penalty,
    psnr_loss,
    ragan_discriminator_loss,
    ragan_generator_loss,
    wgan_critic_loss,
    wgan_generator_loss,
)
from models.precision import PrecisionChoice, auto_precision
from models.run_folder import (
    CHECKPOINT_PREFIX,
    CHECKPOINTS_DIR,
    FINAL_MODEL,
    STATE_FILE,
    CsvLog,
    TrainResult,
    checkpoint_dirs,
    resolve_checkpoint,
)
from models.synthetic import SyntheticPairs
from models.temporal import PairWarps, temporal_loss
from models.train_config import TrainConfig, config_to_yaml
from models.motion import network_input
from models.training_data import TrainingBatches, WithMotion, split_cores, stored_workers
from models.validation import VAL_SETS, Validation
from models.vgg import load_vgg19_features
from unsmear.files import replaced_when_done

logger = logging.getLogger(__name__)

# init= must fill at least this share of the generator's weights: a file of another
# architecture fits a stray bias or two and would start the run from noise, not from it.
MIN_INIT_SHARE = 0.5

# Mixed into the seed of each step's own RNG (used by the gradient penalty).
_STEP_RNG_TAG = 7919


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run: ``amp: auto`` asks :func:`models.precision.auto_precision`
    (bf16 where the GPU or CPU runs it natively); weights, optimiser and EMA stay fp32."""
    if config.amp == "off":
        choice = PrecisionChoice("fp32", "amp: off")
    elif config.amp == "auto":
        choice = auto_precision(device)
    elif config.amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp: fp16 is for CUDA GPUs; on the CPU use bf16 (where the CPU has "
                          "avx512_bf16 or amx_bf16), auto or off")
    else:
        choice = PrecisionChoice(config.amp, f"amp: {config.amp}")
    logger.info("training precision %s on %s: %s", choice.name, device, choice.reason)
    return choice.autocast_dtype


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


def _load_schedules(schedules: list[torch.optim.lr_scheduler.LRScheduler], saved: Any) -> None:
    # A checkpoint holds one state per schedule (older ones: the milestone schedule's alone).
    saved = saved if isinstance(saved, list) else [saved]
    for sched, state in zip(schedules, saved):
        sched.load_state_dict(state)
    for sched in schedules[len(saved):]:  # a warm-up added on resume: the restored rate is already full
        sched.last_epoch = getattr(sched, "total_iters", sched.last_epoch)


class Trainer:
    """Owns the networks, optimisers and data of one run.

    Args:
        config: a resolved ``TrainConfig`` (see ``load_config``).
        progress: show a tqdm progress bar on stderr.
    """

    def __init__(self, config: TrainConfig, *, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.device = pick_device(config.device)
        self.amp_dtype = _amp_dtype(config, self.device)
        # NHWC: cuDNN's fast layout, and oneDNN's too (bf16 step 0.30 -> 0.22 s on one core).
        self.channels_last = True
        self.run_dir = Path(config.out)
        self.step = 0
        # Time this run has spent, carried through checkpoints so that a resumed run's budgets
        # (max_minutes, max_cpu_minutes) and log.csv's time_s / cpu_s go on from where it was:
        # "train_*" count training steps only (the budgets), "log_*" everything (the log).
        self.spent = dict.fromkeys(("train_s", "train_cpu_s", "log_s", "log_cpu_s"), 0.0)
        self.batch_parts = 1  # set by _plan_cores
        self._part_pool: ThreadPoolExecutor | None = None
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest kernels
        self._build_data()  # first: a bad pairs folder fails before anything heavy is built
        torch.manual_seed(config.seed)
        self.generator = self._build_generator().to(self.device).train()
        self.ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.opt_g = self._adam(self.generator, config.lr_g)
        self.sched_g = self._schedules(self.opt_g)
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
        self._plan_cores()

    def _build_data(self) -> None:
        cfg, frames = self.config, self.config.generator.in_frames
        # Each batch: synthetic_per_batch samples rendered on the fly, the rest stored pairs.
        synthetic_per_batch = round(cfg.synthetic.fraction * cfg.batch_size)
        stored_per_batch = cfg.batch_size - synthetic_per_batch
        consecutive = cfg.temporal_weight > 0  # then each rendered sample is a pair: half as many
        self._warps = PairWarps() if consecutive else None
        stored = None
        if stored_per_batch:
            stored = PairsDataset(cfg.data, split="train", in_frames=frames, crop_size=cfg.crop_size,
                                  augment=True, seed=cfg.seed, cache_mb=cfg.cache_mb,
                                  sharp_fraction=cfg.sharp_input_fraction)
            if cfg.generator.motion != "none":
                stored = WithMotion(stored, cfg.generator)
        synthetic = None
        if synthetic_per_batch:
            synthetic = SyntheticPairs(cfg.synthetic, split="train", crop_size=cfg.crop_size,
                                       in_frames=frames, seed=cfg.seed, device=self.device,
                                       sharp_fraction=cfg.sharp_input_fraction, consecutive=consecutive)
        self.batches = TrainingBatches(
            stored=stored, stored_per_batch=stored_per_batch, synthetic=synthetic,
            synthetic_per_batch=synthetic_per_batch // 2 if consecutive else synthetic_per_batch,
            generator=cfg.generator, device=self.device,
            steps=cfg.steps, seed=cfg.seed, reuse=cfg.synthetic.reuse, pool=cfg.synthetic.pool,
            render_workers=0, stored_workers=stored_workers(cfg.num_workers, stored))
        self.validation = Validation(cfg, self.device)

    def _plan_cores(self) -> None:
        """Render workers and network threads: as configured, else from what one core takes
        for each (:func:`models.training_data.split_cores`), measured here."""
        cfg, batches = self.config, self.batches
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers, threads = cfg.synthetic_workers, cfg.threads
        if batches.synthetic is None:
            workers = 0
        elif workers < 0 and self.device.type == "cuda":
            workers = min(8, max(1, cores - 2))
        elif workers < 0:
            render_s, step_s = self._time_one_core()
            logger.info("one core: %.2f s to make a step's samples, %.2f s for a step", render_s, step_s)
            workers, auto_threads = split_cores(render_s, step_s, cores)
            threads = threads or auto_threads
        if threads is None and self.device.type == "cpu" and workers:
            threads = max(1, cores - workers)  # the cores the render workers leave
        parts = cfg.batch_split
        if parts is None:
            # From the cores alone, not the worker count: the split sums gradients in another
            # order, and a run must train the same weights with any number of render workers.
            parts = min(cores, cfg.batch_size) if self.device.type == "cpu" else 1
        self.batch_parts = min(parts, cfg.batch_size) if cfg.stage == "psnr" else 1
        if self.batch_parts > 1:
            # Each part on its own thread, the network's threads shared among them.
            threads = max(1, (threads or torch.get_num_threads()) // self.batch_parts)
        if threads:
            torch.set_num_threads(threads)
        batches.render_workers = workers
        logger.info("%d core(s): %d render worker(s), the batch in %d part(s) of %d network thread(s) each",
                    cores, workers, self.batch_parts, torch.get_num_threads())

    def _time_one_core(self) -> tuple[float, float]:
        """Seconds one core takes to make a step's new on-the-fly samples, and for a step."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            chunks = self.batches.chunks(0)
            started = time.perf_counter()
            sample = next(iter(chunks))
            render_s = time.perf_counter() - started
            if isinstance(sample, list):
                sample = self.batches.synthetic.batch(sample)
            model = copy.deepcopy(self.generator)
            inputs = network_input(sample)
            inputs = inputs.flatten(0, inputs.dim() - 4)  # consecutive pairs (pairs, 2, ...): samples
            inputs = inputs[:1].expand(self.config.batch_size, -1, -1, -1).to(self.device)
            step_s = float("inf")
            for _ in range(2):  # the first call also sets oneDNN up
                started = time.perf_counter()
                with self._autocast():
                    loss = model(inputs).float().square().mean()
                loss.backward()
                step_s = min(step_s, time.perf_counter() - started)
        finally:
            torch.set_num_threads(threads)
        return render_s, step_s

    def _build_generator(self) -> RRDBNet:
        cfg = self.config
        generator = RRDBNet(cfg.generator)
        restart_last = cfg.zero_init_last and cfg.generator.residual
        if cfg.init:
            source = _init_source(cfg.init)
            loaded, skipped = load_trunk(generator, checkpoint_filter_fn(read_state_dict(source), generator))
            own = generator.state_dict()
            share = sum(own[name].numel() for name in loaded) / sum(t.numel() for t in own.values())
            if share < MIN_INIT_SHARE:
                raise ConfigError(f"init {source}: only {len(loaded)} of this generator's "
                                  f"{len(own)} tensors fit ({share:.1%} of its weights): another "
                                  f"architecture (num_feat, num_block, ...); start without init= or "
                                  f"from a model of this one")
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

    def _adam(self, net: nn.Module, lr: float) -> torch.optim.Adam:
        # Fused: one kernel for all parameters instead of ~6 per tensor: 5.1 -> 3.1 ms of the
        # default model's ~210 ms CPU step (docs/benchmarks.md); the same update.
        fused = self.device.type in ("cpu", "cuda")
        return torch.optim.Adam(net.parameters(), lr=lr, betas=self.config.adam_betas, fused=fused)

    def _schedules(self, opt: torch.optim.Optimizer) -> list[torch.optim.lr_scheduler.LRScheduler]:
        # Both chainable: the milestone decay and, if asked, a linear warm-up multiply each other.
        cfg = self.config
        schedules: list[torch.optim.lr_scheduler.LRScheduler] = [
            torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.lr_milestones), cfg.lr_gamma)]
        if cfg.lr_warmup > 0:
            schedules.append(torch.optim.lr_scheduler.LinearLR(
                opt, start_factor=1 / cfg.lr_warmup, end_factor=1.0, total_iters=cfg.lr_warmup))
        return schedules

    def _build_gan(self) -> None:
        cfg = self.config
        self.discriminator = build_discriminator(cfg.discriminator).to(self.device).train()
        self.opt_d = self._adam(self.discriminator, cfg.lr_d)
        self.sched_d = self._schedules(self.opt_d)
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

    def _step_generator(self, loss: torch.Tensor | None) -> None:
        """Back-propagate ``loss`` (None: the gradients are set already), Adam step, EMA."""
        if loss is not None:
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
            loss = psnr_loss(restored, sharp, self.config.psnr_loss_cap_db)
        else:
            loss = F.l1_loss(restored, sharp)
        if self.config.fft_weight:
            loss = loss + self.config.fft_weight * self._fft(restored, sharp)
        return loss

    def psnr_step(self, inputs: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
        """Stage 1: one Adam step on the pixel loss (L1 or MSE).

        Args:
            inputs: (N, in_channels, h, w): blurred frames in [0, 1], then any motion channels.
            sharp: (N, 3, h, w) float in [0, 1].
        """
        warps = self._warps(sharp) if self._warps is not None else None
        if self.batch_parts > 1:
            l_pix, l_temporal = self._split_gradients(inputs, sharp, warps)
            self._step_generator(None)
        else:
            with self._autocast():
                restored = self.generator(inputs)
            l_pix, l_temporal = self._psnr_losses(restored, sharp, warps)
            self._step_generator(l_pix + l_temporal)
        values = {"loss_g": (l_pix + l_temporal).item(), "l_pix": l_pix.item()}
        if warps is not None:
            values["l_temporal"] = l_temporal.item()
        return values

    def _psnr_losses(self, restored: torch.Tensor, sharp: torch.Tensor,
                     warps: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1's weighted pixel loss and temporal term (0 without ``warps``)."""
        l_pix = self.config.pixel_weight * self._pixel_loss(restored.float(), sharp)
        if warps is None:
            return l_pix, torch.zeros((), device=l_pix.device)
        return l_pix, self.config.temporal_weight * temporal_loss(restored, sharp, *warps)

    def _split_gradients(self, inputs: torch.Tensor, sharp: torch.Tensor,
                         warps: tuple[torch.Tensor, torch.Tensor] | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Set the generator's gradients of the loss from the batch cut in ``batch_parts``
        parts, each part's forward and backward at once on a thread of its own; return the
        pixel loss and the temporal term.

        Every loss is a mean over the batch (the temporal term over its pairs, which a cut
        never separates), so the whole batch's loss is the parts' losses weighted by their
        share of it, and its gradient the sum of theirs: the same update, summed in a fixed
        order (deterministic). One bare bf16 step of the default model on 2 cores: 0.225 s on
        one thread, 0.123 s in 2 parts (docs/benchmarks.md).
        """
        if self._part_pool is None:
            self._part_pool = ThreadPoolExecutor(self.batch_parts, thread_name_prefix="batch-part")
        params = list(self.generator.parameters())
        total = len(inputs)

        def part(x: torch.Tensor, y: torch.Tensor, warp: tuple[torch.Tensor, torch.Tensor] | None
                 ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
            with self._autocast():  # thread-local: entered on the part's own thread
                restored = self.generator(x)
            l_pix, l_temporal = (loss * (len(x) / total) for loss in self._psnr_losses(restored, y, warp))
            return l_pix.detach(), l_temporal.detach(), torch.autograd.grad(l_pix + l_temporal, params,
                                                                            materialize_grads=True)

        if warps is None:
            cuts = [(x, y, None) for x, y in zip(inputs.tensor_split(self.batch_parts),
                                                 sharp.tensor_split(self.batch_parts))]
        else:  # cut between pairs: (2N, ...) -> (N, 2, ...) cut, then flattened back
            def paired(t: torch.Tensor) -> list[torch.Tensor]:
                return [c.flatten(0, 1) for c in t.unflatten(0, (-1, 2)).tensor_split(self.batch_parts)]
            grids, masks = (w.tensor_split(self.batch_parts) for w in warps)
            cuts = [(x, y, (g, m)) for x, y, g, m in zip(paired(inputs), paired(sharp), grids, masks)
                    if len(x)]
        futures = [self._part_pool.submit(part, *cut) for cut in cuts]
        results = [future.result() for future in futures]
        l_pix, l_temporal, grads = results[0][0], results[0][1], list(results[0][2])
        for part_pix, part_temporal, part_grads in results[1:]:
            l_pix, l_temporal = l_pix + part_pix, l_temporal + part_temporal
            torch._foreach_add_(grads, list(part_grads))
        for param, grad in zip(params, grads):
            param.grad = grad
        return l_pix, l_temporal

    def gan_step(self, inputs: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
        """Stage 2: one generator step, then one discriminator step (BasicSR's order).

        Args:
            inputs: (N, in_channels, h, w): blurred frames in [0, 1], then any motion channels.
            sharp: (N, 3, h, w) float in [0, 1].
        """
        cfg, disc = self.config, self.discriminator
        ragan = cfg.gan_loss == "ragan"
        # --- generator: L_G = w_p * content + w_gan * L_G^adv + w_pix * L1
        disc.requires_grad_(False)
        with self._autocast():
            restored = self.generator(inputs)
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

    def validate(self) -> dict[str, float]:
        """The EMA model's figures on the validation sets (:meth:`models.validation.Validation.run`)."""
        return self.validation.run(self.ema, self.step, self.run_dir, self._autocast)

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
                "sched_g": [sched.state_dict() for sched in self.sched_g],
                "scaler_g": self.scaler_g.state_dict(),
                "spent": dict(self.spent),
            }
            if self.discriminator is not None:
                tensors = {k: v.detach().cpu().contiguous() for k, v in self.discriminator.state_dict().items()}
                disc_meta = {"unsmear.discriminator_config": json.dumps(dataclasses.asdict(self.config.discriminator))}
                save_file(tensors, str(tmp / "discriminator.safetensors"), metadata=disc_meta)
                state.update(opt_d=self.opt_d.state_dict(), sched_d=[sched.state_dict() for sched in self.sched_d],
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
        _load_schedules(self.sched_g, state["sched_g"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        if self.discriminator is not None:
            disc_state = load_file(str(path / "discriminator.safetensors"), device=str(self.device))
            self.discriminator.load_state_dict(disc_state)
            self.opt_d.load_state_dict(state["opt_d"])
            _load_schedules(self.sched_d, state["sched_d"])
            self.scaler_d.load_state_dict(state["scaler_d"])
        self.step = int(state["step"])
        self.spent.update({k: float(v) for k, v in state.get("spent", {}).items() if k in self.spent})
        logger.info("resumed from %s at step %d", path, self.step)

    # ---- loop

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
        log = CsvLog(self.run_dir / "log.csv", resume_step=self.step)
        step_fn = self.gan_step if cfg.stage == "gan" else self.psnr_step
        sums: dict[str, float] = {}
        count, losses, validation, start = 0, [], {}, time.monotonic()
        start_cpu = self.batches.cpu_seconds()
        postfix: dict[str, str] = {}
        checkpoint = None
        bar = tqdm(total=cfg.steps, initial=self.step, file=sys.stderr, disable=not self.progress,
                   desc=f"train ({cfg.stage})", unit="step", dynamic_ncols=True)
        # Budgets count training steps (and waiting for data), never validation or checkpoints;
        # CPU time counts this process and its render workers; both go on from a resumed
        # checkpoint's.
        train_seconds, train_cpu = self.spent["train_s"], self.spent["train_cpu_s"]
        log_s, log_cpu_s = self.spent["log_s"], self.spent["log_cpu_s"]

        def note_spent() -> None:
            self.spent.update(train_s=train_seconds, train_cpu_s=train_cpu,
                              log_s=log_s + time.monotonic() - start,
                              log_cpu_s=log_cpu_s + self.batches.cpu_seconds() - start_cpu)
        tick, tick_cpu = time.monotonic(), self.batches.cpu_seconds()
        try:
            for batch in self.batches(self.step):
                values = step_fn(self._to_device(network_input(batch)), batch["sharp"])
                if not all(math.isfinite(v) for v in values.values()):
                    raise FloatingPointError(
                        f"non-finite loss at step {self.step + 1}: {values}; lower lr_g or use amp=off"
                    )
                for sched in self.sched_g + (self.sched_d if self.discriminator is not None else []):
                    sched.step()
                self.step += 1
                bar.update(1)
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    means = {k: v / count for k, v in sums.items()}
                    lr_g = self.opt_g.param_groups[0]["lr"]
                    log.write(self.step, {"time_s": log_s + time.monotonic() - start,
                                          "cpu_s": log_cpu_s + self.batches.cpu_seconds() - start_cpu,
                                          "lr_g": lr_g, **means})
                    losses.append((self.step, means["loss_g"]))
                    postfix["loss"] = f"{means['loss_g']:.4g}"
                    bar.set_postfix(postfix)
                    sums, count = {}, 0
                train_seconds += time.monotonic() - tick
                train_cpu += self.batches.cpu_seconds() - tick_cpu
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
                    note_spent()
                    checkpoint = self.save_checkpoint()
                if last:
                    if self.step < cfg.steps:
                        logger.info("time budget spent at step %d of %d", self.step, cfg.steps)
                    break
                tick, tick_cpu = time.monotonic(), self.batches.cpu_seconds()
        finally:
            bar.close()
            log.close()
            if self._part_pool is not None:
                self._part_pool.shutdown()
                self._part_pool = None
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
    given = Path(config.out) / "config.yaml"
    if resume is False and given.is_file() and given.read_text(encoding="utf-8") != config_to_yaml(config):
        # A config the user wrote into the run folder (comments and all): the run writes its
        # resolved config there, so the user's is kept beside it.
        kept = given.with_name("config.given.yaml")
        given.replace(kept)
        logger.warning("%s: kept as %s; %s is now the run's resolved config", given, kept.name, given.name)
    trainer = Trainer(config, progress=progress)
    if checkpoint is not None:
        trainer.load_checkpoint(checkpoint)
    return trainer.fit()
