"""How far ``pipeline process`` output in bf16 is from the same run in fp32, frame by frame.

The clip is processed twice, as a user runs it (a fresh process, default settings and model
unless ``--model``), with ``--precision fp32`` and ``--precision bf16``, into lossless FFV1 so
that only the arithmetic differs; the decoded frames are compared (PSNR, RGB, 8 bits).

    python benchmarks/bf16_agreement.py ../shared/data/videos/moviepy__chaplin.mp4 \\
        [--model FILE] [--json benchmarks/bf16_agreement.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def restored_frames(clip: Path, precision: str, model: str | None, out: Path) -> list[np.ndarray]:
    command = [sys.executable, "-m", "pipeline", "process", str(clip), "-o", str(out),
               "--precision", precision, "--codec", "ffv1", "--overwrite", "-q",
               *(["--model", model] if model else [])]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    from pipeline.video_reader import FrameReader

    return [frame.rgb for frame in FrameReader(out).frames()]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model", help="checkpoint (default: what process picks)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from models.precision import native_cpu_bf16

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        fp32 = restored_frames(args.clip, "fp32", args.model, Path(tmp) / "fp32.mkv")
        bf16 = restored_frames(args.clip, "bf16", args.model, Path(tmp) / "bf16.mkv")
    if len(fp32) != len(bf16):
        raise SystemExit(f"frame counts differ: fp32 {len(fp32)}, bf16 {len(bf16)}")
    values = [psnr(a, b) for a, b in zip(fp32, bf16)]
    finite = [v for v in values if np.isfinite(v)]
    result = {
        "machine": platform.platform(), "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"), "clip": str(args.clip), "model": args.model or "default",
        "cpu_native_bf16": native_cpu_bf16(), "frames": len(values),
        "identical_frames": len(values) - len(finite),
        "min_psnr_db": min(finite) if finite else float("inf"),
        "mean_psnr_db": float(np.mean(finite)) if finite else float("inf"),
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
