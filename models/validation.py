"""Validation during training: fixed held-out samples, their PSNR before and after, and a picture.

Three sets, each used when configured: the stored pairs' val split (``val``), samples rendered
from held-out photos (``val_synth``) and pairs of real high-frame-rate footage (``val_real``).
The samples are made once when the run starts (with their flow, for generators that take
motion) and kept in memory, so a validation is only the forward passes: ~1-2 s for the default
config on one CPU core, every ``val_every`` steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from models.data import PairsDataset, read_manifest
from models.evaluate import comparison_row, write_sheet
from models.metrics import psnr, ssim
from models.run_folder import CHECKPOINT_PREFIX
from models.synthetic import SyntheticPairs
from models.train_config import TrainConfig
from models.motion import MotionEstimator, add_motion, network_input

logger = logging.getLogger(__name__)

VAL_IMAGES_DIR = "val_images"
# Per-sample PSNR is capped here before averaging: a sharp sample fed in unchanged has an
# infinite (or 100 dB) input PSNR, and one such sample would outweigh every blurred one.
# A sharp sample that comes out at >= 50 dB counts as untouched.
VAL_PSNR_CAP = 50.0
# Validation sets: stored pairs' val split, rendered held-out photos, real footage's pairs.
VAL_SETS = ("val", "val_synth", "val_real")


def _hwc(batch: Tensor) -> np.ndarray:
    """The first image of a (N, 3, H, W) batch as an (H, W, 3) float32 array."""
    return batch[0].permute(1, 2, 0).float().cpu().numpy()


class Validation:
    """The validation sets of a run, made once, and the figures of a model on them.

    Args:
        config: the run's config.
        device: where the samples live and the model runs.
    """

    def __init__(self, config: TrainConfig, device: torch.device) -> None:
        self.config, self.device = config, device
        frames = config.generator.in_frames
        estimator = MotionEstimator.for_generator(config.generator)
        # name -> samples {"blurry", "sharp"[, "motion"]}, fixed for the run
        self.sets: dict[str, list[dict[str, Tensor]]] = {}
        sources: dict[str, Sequence[dict[str, Tensor]]] = {}
        if config.data and any(r.split == "val" for r in read_manifest(config.data)):
            sources["val"] = PairsDataset(config.data, split="val", in_frames=frames, crop_size=config.val_crop,
                                          max_pairs=config.val_max_pairs, cache_mb=config.cache_mb)
        if config.synthetic.photos and config.synthetic.val_photos and config.synthetic.val_samples:
            rendered = SyntheticPairs(config.synthetic, split="val", crop_size=config.val_crop or 256,
                                      in_frames=frames, seed=config.seed, device=device)
            sources["val_synth"] = [rendered.sample(n) for n in range(config.synthetic.val_samples)]
        if config.val_real:
            sources["val_real"] = torch.utils.data.ConcatDataset([
                PairsDataset(folder, split="val", in_frames=frames, crop_size=config.val_crop,
                             max_pairs=config.val_max_pairs, cache_mb=config.cache_mb)
                for folder in config.val_real])
        for name, samples in sources.items():
            made = [samples[i] for i in range(len(samples))]
            self.sets[name] = [add_motion(s, estimator) for s in made] if estimator else made
        if not self.sets:
            logger.warning("no validation pairs (no val split in data, no synthetic.val_photos, no val_real): "
                           "training without validation")

    @torch.no_grad()
    def run(self, model: nn.Module, step: int, run_dir: Path,
            autocast: Callable[[], object]) -> dict[str, float]:
        """Mean PSNR (``models.metrics``, capped at ``VAL_PSNR_CAP`` per sample) of ``model``
        and of its input on each set, and SSIM on the stored pairs' val split: ``val_psnr``,
        ``val_synth_psnr``, ``val_real_psnr``... The model runs under ``autocast()``, the
        precision the run (and the pipeline) uses.

        The first ``val_images`` samples (of the sets in that order) are also drawn, a row each,
        into ``val_images/step_NNNNNNNN.png``, to see what the numbers mean."""
        c = self.config.generator.centre_frame * 3
        result: dict[str, float] = {}
        shown: list[list[tuple[np.ndarray, str]]] = []
        for name, samples in self.sets.items():
            sums: dict[str, float] = {}
            prefix = "val" if name == "val" else name
            for sample in samples:
                inputs = network_input(sample)[None].to(self.device)
                blurry = inputs[:, c:c + 3].float()
                sharp = sample["sharp"][None].to(self.device)
                with autocast():
                    restored = model(inputs)
                restored = restored.float().clamp(0, 1)
                figures = {f"{prefix}_psnr": psnr(restored, sharp).clamp(max=VAL_PSNR_CAP),
                           f"{prefix}_psnr_input": psnr(blurry, sharp).clamp(max=VAL_PSNR_CAP)}
                if name == "val":
                    figures.update(val_ssim=ssim(restored, sharp), val_ssim_input=ssim(blurry, sharp))
                for key, value in figures.items():
                    sums[key] = sums.get(key, 0.0) + value.item()
                if len(shown) < self.config.val_images:
                    shown.append(comparison_row(_hwc(blurry), _hwc(restored), _hwc(sharp),
                                                figures[f"{prefix}_psnr_input"].item(),
                                                figures[f"{prefix}_psnr"].item()))
            result.update({key: value / len(samples) for key, value in sums.items()})
        if shown:
            folder = run_dir / VAL_IMAGES_DIR
            folder.mkdir(parents=True, exist_ok=True)
            write_sheet(shown, folder / f"{CHECKPOINT_PREFIX}{step:08d}.png")
        return result
