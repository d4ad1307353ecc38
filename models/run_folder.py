"""What a run folder holds and how it is found: checkpoints ``checkpoints/step_NNNNNNNN/``
(generator, EMA, discriminator as safetensors; optimiser state in ``state.pt``), ``log.csv``
(and TensorBoard events when installed), ``val_images/`` and the final ``model.safetensors``."""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path

CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "step_"
STATE_FILE = "state.pt"
FINAL_MODEL = "model.safetensors"
# One row per log_every steps (mean training losses; time_s and cpu_s count from this
# process's first step, cpu_s with its render workers) and one per validation (val_* only).
CSV_COLUMNS = ("step", "time_s", "cpu_s", "lr_g", "loss_g", "l_pix", "l_temporal", "l_percep", "l_gan", "loss_d",
               "val_psnr", "val_ssim", "val_psnr_input", "val_ssim_input",
               "val_synth_psnr", "val_synth_psnr_input", "val_real_psnr", "val_real_psnr_input")



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


class CsvLog:
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
