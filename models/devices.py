"""Choosing the torch device from a user's setting: the one rule for training, evaluation and
the pipeline."""

from __future__ import annotations

import torch

from models.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' is CUDA when present, else the CPU; 'cpu', 'cuda', 'cuda:N' are taken as given.

    Raises ConfigError (a ValueError; one line) for a name torch doesn't know, or CUDA asked
    for where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here")
    return device
