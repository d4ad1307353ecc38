"""Which number format a run computes in, chosen from what the hardware does natively.

bf16 halves the bytes every convolution moves and, where the processor has bf16 dot-product
instructions (AVX-512 BF16, or AMX tiles), oneDNN runs bf16 convolutions natively: measured
on our 2-core Xeon VM, a training step of the default generator takes 0.24 s in bf16 against
0.52 s in fp32, and inference runs ~2x faster, with outputs 85 dB from fp32's. Without those
instructions bf16 is emulated and slower than fp32, so the choice is made per machine, never
by a fixed rule. CUDA: bf16 where the GPU has it (Ampere and newer), else fp16.

Weights, optimiser state and the EMA always stay fp32: only the arithmetic inside
``torch.autocast`` drops to 16 bits.

Training (``amp``) and the pipeline (``--precision``) both ask :func:`auto_precision`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

# CPU features with which oneDNN runs bf16 convolutions natively (torch.cpu.get_capabilities()).
NATIVE_BF16_FEATURES = ("avx512_bf16", "amx_bf16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class PrecisionChoice:
    """A precision and the reason it was chosen (logged, and shown by ``--help`` examples)."""

    name: str  # "bf16", "fp16" or "fp32"
    reason: str  # one line, e.g. "the CPU has avx512_bf16: oneDNN runs bf16 natively"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype for ``torch.autocast``; None for fp32 (autocast off)."""
        return AUTOCAST_DTYPES.get(self.name)


def cpu_capabilities() -> dict[str, object]:
    """What this processor reports (torch.cpu.get_capabilities(); empty where unknown)."""
    try:
        return dict(torch.cpu.get_capabilities())
    except (AttributeError, RuntimeError):  # older torch, or a platform it can't query
        return {}


def native_cpu_bf16() -> str | None:
    """The feature that makes bf16 native on this CPU (e.g. ``avx512_bf16``), or None."""
    if not torch.backends.mkldnn.is_available():
        return None
    capabilities = cpu_capabilities()
    return next((name for name in NATIVE_BF16_FEATURES if capabilities.get(name)), None)


def auto_precision(device: torch.device) -> PrecisionChoice:
    """The fastest precision that keeps quality on ``device``: bf16 where it is native, fp16
    on CUDA GPUs without bf16, fp32 on other CPUs."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", f"{torch.cuda.get_device_name(device)} has bf16")
        return PrecisionChoice("fp16", f"{torch.cuda.get_device_name(device)} has no bf16")
    if device.type == "cpu":
        feature = native_cpu_bf16()
        if feature:
            return PrecisionChoice("bf16", f"the CPU has {feature}: oneDNN runs bf16 natively")
        return PrecisionChoice("fp32", "the CPU has no native bf16 (avx512_bf16 or amx_bf16), "
                                       "where emulated bf16 is slower than fp32")
    return PrecisionChoice("fp32", f"no reduced precision chosen automatically on {device.type}")
