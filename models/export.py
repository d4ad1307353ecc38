"""Ship a trained generator: export a checkpoint's EMA weights, and ESRGAN's network
interpolation between a PSNR-oriented and a GAN-trained model.

Wang et al., *ESRGAN* (2018), section 3.4: with the same architecture,
theta = (1 - alpha) * theta_PSNR + alpha * theta_GAN trades the smooth but faithful
PSNR model against the sharper GAN model continuously (alpha = 0.8 in their demos),
without the artefacts of blending the two outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from models.checkpoint import RESERVED_KEYS, CheckpointError, load_generator, read_metadata, save_generator

logger = logging.getLogger(__name__)

EXPORTED_WEIGHTS = ("ema", "generator")


def _weights_file(checkpoint: Path, weights: str) -> Path:
    """The generator file to export from a weight file, checkpoint folder or run folder."""
    if weights not in EXPORTED_WEIGHTS:
        raise ValueError(f"weights must be one of {EXPORTED_WEIGHTS}, got {weights!r}")
    if checkpoint.is_file():
        return checkpoint
    if not checkpoint.exists():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    # Imported here: train pulls in the data and loss code that exporting does not need.
    from models.run_folder import resolve_checkpoint

    return resolve_checkpoint(checkpoint) / f"{weights}.safetensors"


def export(checkpoint: str | Path, out: str | Path, *, weights: str = "ema") -> Path:
    """Write a standalone generator file (weights + config) for ``pipeline``.

    Args:
        checkpoint: a run folder (newest checkpoint), a checkpoint folder, or a generator
            weight file (ours or a BasicSR/ESRGAN same-size ``.pth``).
        out: destination ``.safetensors``.
        weights: "ema" (the averaged weights, what we ship) or "generator" (raw weights);
            only used for folders.

    Returns:
        ``out`` as a Path.

    Raises:
        FileNotFoundError: no such checkpoint.
        CheckpointError: the file is not a loadable generator.
    """
    source = _weights_file(Path(checkpoint), weights)
    model = load_generator(source)
    # save_generator writes the config and format keys itself.
    metadata = {k: v for k, v in read_metadata(source).items() if k not in RESERVED_KEYS}
    metadata["unsmear.exported_from"] = str(source)
    save_generator(model, out, metadata=metadata)
    logger.info("exported %s to %s", source, out)
    return Path(out)


def interpolate(psnr_model: str | Path, gan_model: str | Path, out: str | Path, *, alpha: float = 0.8) -> Path:
    """ESRGAN network interpolation: (1 - alpha) * PSNR weights + alpha * GAN weights.

    Args:
        psnr_model: generator file trained with stage psnr.
        gan_model: generator file trained with stage gan, same architecture.
        out: destination ``.safetensors``.
        alpha: weight of the GAN model, in [0, 1] (0 gives the PSNR model).

    Raises:
        ValueError: alpha outside [0, 1].
        CheckpointError: unloadable files or different architectures.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    smooth = load_generator(psnr_model)
    sharp = load_generator(gan_model)
    if smooth.config != sharp.config:
        raise CheckpointError(
            f"cannot interpolate different architectures: {psnr_model} is {smooth.config}, "
            f"{gan_model} is {sharp.config}"
        )
    stages = [_stage(psnr_model), _stage(gan_model)]
    if stages != ["psnr", "gan"] and "psnr" in stages and "gan" in stages:
        raise CheckpointError(f"{psnr_model} was trained with stage {stages[0]} and {gan_model} with stage "
                              f"{stages[1]}: give the psnr model first, the gan model second")
    sharp_state = sharp.state_dict()
    with torch.no_grad():
        for name, tensor in smooth.state_dict().items():
            # lerp: tensor + alpha * (gan - tensor) = (1 - alpha) * psnr + alpha * gan
            tensor.lerp_(sharp_state[name].to(tensor.dtype), alpha)
    save_generator(
        smooth,
        out,
        metadata={"unsmear.interpolation": f"(1 - {alpha:g}) * {psnr_model} + {alpha:g} * {gan_model}"},
    )
    logger.info("interpolated %s and %s with alpha %g into %s", psnr_model, gan_model, alpha, out)
    return Path(out)


def _stage(path: str | Path) -> str | None:
    """The training stage a generator file states (its ``unsmear.stage``), or None (a BasicSR
    .pth, an interpolation)."""
    if not str(path).endswith(".safetensors"):
        return None
    return read_metadata(path).get("unsmear.stage")
