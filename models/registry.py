"""The generator architectures unsmear knows, by name, and what the rest of the code may assume
of a generator (:class:`Generator`).

Checkpoints record their architecture's name; loading one looks the class up here. The
pipeline, the jobs and evaluation see only the :class:`Generator` interface, so a second
architecture (a multi-frame or U-shaped variant) is one file in ``models/`` and one line in
ARCHITECTURES.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor, nn

from .generator import GeneratorConfig, RRDBNet

# name -> (network class, its frozen config dataclass)
ARCHITECTURES: dict[str, tuple[type[nn.Module], type]] = {
    "rrdbnet": (RRDBNet, GeneratorConfig),
}
# Checkpoints written before architectures had names, and outside (BasicSR / ESRGAN) ones.
DEFAULT_ARCHITECTURE = "rrdbnet"


class Generator(Protocol):
    """What the pipeline needs of a generator (an ``nn.Module``)."""

    config: Any  # a frozen dataclass; ``config.in_frames`` (odd) frames give one restored frame

    def __call__(self, frames: Tensor) -> Tensor:
        """(N, in_frames*3, H, W) float in [0, 1], oldest frame first, any H and W ->
        (N, 3, H, W): the restored centre frame (not clamped)."""

    def activation_bytes(self, height: int, width: int) -> int:
        """Rough GPU memory one frame of this size needs while running (batch sizing)."""


def architecture_of(model: nn.Module) -> str:
    """The registered name of ``model``'s class; ValueError for an unregistered one."""
    for name, (cls, _) in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered generator "
                     f"(known: {', '.join(ARCHITECTURES)})")


def architecture(name: str) -> tuple[type[nn.Module], type]:
    """(class, config class) of the architecture ``name``; ValueError if unknown."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown generator architecture {name!r} "
                         f"(known: {', '.join(ARCHITECTURES)})") from None
