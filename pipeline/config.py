"""The settings of one `process` run, as one frozen dataclass (the CLI fills it from flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.video_writer import EncoderSettings

# The model that ships inside the repository, used when no --model is given.
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "weights" / "default.safetensors"
# --precision's choices; the restorer resolves "auto" for the device it runs on.
PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")


def _default_encoder() -> EncoderSettings:
    # Imported when a config is made, not with this module: the writer loads PyAV, and
    # the CLI imports this module to print --help.
    from pipeline.video_writer import EncoderSettings

    return EncoderSettings()


@dataclass(frozen=True)
class ProcessConfig:
    """How to deblur one video."""

    model: Path | None = None       # generator checkpoint; None = the shipped default model
    device: str = "auto"            # auto (CUDA if present), cpu, cuda, cuda:N
    precision: str = "auto"         # auto (bf16/fp16 on GPU, fp32 on CPU), fp32, tf32, bf16, fp16
    batch_size: int = 0             # frames per model call; 0 = from free GPU memory (4 on CPU)
    tile: int = 0                   # tile side in pixels for huge frames; 0 = whole frames
    tile_overlap: int = 32          # pixels shared by neighbouring tiles, blended linearly
    encoder: EncoderSettings = field(default_factory=_default_encoder)
    compare: Path | None = None     # also write a before/after video (side by side) or PNG grid
    reference: Path | None = None   # sharp frames of the input (a video), shown with PSNRs in the grid
    overwrite: bool = False         # replace an existing output file
    progress: bool = True           # progress bar on stderr
    decode_threads: int = 0         # decoder threads; 0 = FFmpeg's automatic choice
    convert_threads: int = 0        # YUV<->RGB conversion threads on each side; 0 = by core count
    hwdec: str = "none"             # hardware decoding: none, cuda (NVDEC, CPU fallback), auto
    queue_frames: int = 32          # frames buffered between decode, model and encode stages
    cpu_threads: int = -1           # torch threads on CPU; -1 = all cores but one (left to FFmpeg)
    compile: bool = False           # torch.compile the model (worth it on GPU for long videos)
    strength: float = 1.0           # 0..1: blend of restored and input (1 = fully restored)
    accept_damaged: bool = False    # restore what decodes of a damaged input instead of failing
