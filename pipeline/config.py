"""The settings of one `process` run, as frozen dataclasses checked when they are made (the
CLI fills them from flags): a wrong value fails at once with one clear line, never as a
traceback deep inside a run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import PipelineError

# The models that ship inside the repository, used when no --model is given: the video model
# (it sees each frame's neighbours and the motion to them) for videos and numbered frames, the
# single-frame model for lone images (and for videos where no video model ships).
WEIGHTS = Path(__file__).resolve().parent.parent / "models" / "weights"
DEFAULT_MODEL_PATH = WEIGHTS / "default.safetensors"
DEFAULT_VIDEO_MODEL_PATH = WEIGHTS / "video.safetensors"


def default_model_path(*, video: bool) -> Path:
    """The shipped model for a video (or a sequence of frames), or for a lone image."""
    if video and DEFAULT_VIDEO_MODEL_PATH.exists():
        return DEFAULT_VIDEO_MODEL_PATH
    return DEFAULT_MODEL_PATH
# --precision's choices; the restorer resolves "auto" for the device it runs on.
PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")
# Self-ensemble sizes (models.symmetry.ENSEMBLE_SIZES, repeated so that --help needs no torch).
ENSEMBLE_SIZES = (1, 2, 4, 8)
HWDEC_CHOICES = ("none", "auto", "cuda")
DEFAULT_TILE_OVERLAP = 32
# The widest CRF scale of the encoders we drive (VP9, SVT-AV1: 0-63); each encoder's own range
# is checked once the encoder is known (pipeline.video_writer.CRF_RANGE).
MAX_CRF = 63
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


@dataclass(frozen=True)
class EncoderSettings:
    """How the restored video is encoded. ``None`` fields take a default fitting the input."""

    codec: str | None = None     # FFmpeg encoder name: libx264, libx265, libvpx-vp9, libsvtav1, ffv1, ...
    crf: int | None = None       # quality for CRF codecs (lower = better); codec default if None
    preset: str | None = None    # speed/size trade-off for x264/x265/svt-av1
    pix_fmt: str | None = None   # output pixel format; the input's when the encoder supports it
    threads: int = 0             # encoder threads; 0 = FFmpeg's automatic choice

    def __post_init__(self) -> None:
        if self.crf is not None and not 0 <= self.crf <= MAX_CRF:
            raise PipelineError(f"--crf must be between 0 and {MAX_CRF}, got {self.crf}")
        if self.threads < 0:
            raise PipelineError(f"encoder threads must be 0 (automatic) or more, got {self.threads}")


@dataclass(frozen=True)
class ProcessConfig:
    """How to deblur one video."""

    model: Path | None = None       # generator checkpoint; None = the shipped model (video / image)
    device: str = "auto"            # auto (CUDA if present), cpu, cuda, cuda:N
    precision: str = "auto"         # auto (bf16 where native: GPU or AVX-512 BF16/AMX CPU; else fp16 GPU, fp32 CPU), fp32, tf32, bf16, fp16
    batch_size: int = 0             # frames per model call; 0 = from free GPU memory (4 on CPU)
    tile: int = 0                   # tile side in pixels for huge frames; 0 = whole frames
    tile_overlap: int = DEFAULT_TILE_OVERLAP  # pixels shared by neighbouring tiles, blended linearly
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
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
    ensemble: int = 1               # 1, 2, 4 or 8 spatial variants of each input averaged (x cost)
    accept_damaged: bool = False    # restore what decodes of a damaged input instead of failing

    def __post_init__(self) -> None:
        if not _DEVICE.fullmatch(self.device):
            raise PipelineError(f"unknown device {self.device!r} (use auto, cpu, cuda or cuda:N)")
        _choice("precision", self.precision, PRECISIONS)
        _choice("hwdec", self.hwdec, HWDEC_CHOICES)
        for name in ("batch_size", "tile", "tile_overlap", "decode_threads", "convert_threads"):
            if getattr(self, name) < 0:
                raise PipelineError(f"--{_flag(name)} must be 0 or more, got {getattr(self, name)}")
        if self.tile and self.tile <= 2 * self.tile_overlap:
            raise PipelineError(f"--tile {self.tile} must be larger than twice --tile-overlap "
                                f"({self.tile_overlap}): use at least {2 * self.tile_overlap + 1}, "
                                f"a smaller overlap, or 0 for whole frames")
        if self.queue_frames < 1:
            raise PipelineError(f"queue_frames must be 1 or more, got {self.queue_frames}")
        if self.cpu_threads < -1:
            raise PipelineError(f"cpu_threads must be -1 (all cores but one) or more, "
                                f"got {self.cpu_threads}")
        if not 0.0 <= self.strength <= 1.0:
            raise PipelineError(f"--strength must be between 0 and 1, got {self.strength}")
        if self.ensemble not in ENSEMBLE_SIZES:
            raise PipelineError(f"--ensemble must be one of {', '.join(map(str, ENSEMBLE_SIZES))}, "
                                f"got {self.ensemble}")
        if self.reference is not None and (self.compare is None or self.compare.suffix.lower()
                                           not in (".png", ".jpg", ".jpeg")):
            raise PipelineError("--reference goes with a --compare grid (a .png or .jpg file)")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise PipelineError(f"unknown --{name} {value!r} (choose from {', '.join(choices)})")


def _flag(name: str) -> str:
    return name.replace("_", "-")
