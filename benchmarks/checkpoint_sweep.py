"""Every checkpoint of training runs, measured on the same held-out sets: the model card's table.

For each model (a run folder's ``checkpoints/step_N``, its EMA weights, or any generator file)
and each pairs folder given, ``models evaluate`` without baselines, then one row per model:

* ``--rendered``: the mean gain on rendered held-out pairs and the lowest PSNR of a sharp
  frame fed in as a still window;
* ``--real``: the mean gain on each real set, and their mean;
* ``--video``: consecutive rendered pairs (``models render-pairs ... --consecutive``): the
  gain, the flow-warping error of the output (the input's beside it in the header), and the
  lowest and mean PSNR of its sharp frames fed in as a moving sharp video;
* ``--pan``: the steady 20 px pan of ``tests/test_models_default.py`` through ``process_video``
  (the video model must gain more on it than the image model's +3.08 dB).

    python benchmarks/checkpoint_sweep.py runs/a runs/b --rendered EVAL5 --real SEF SEF_SUPER \\
        --video EVAL5C --pan --every 1000 --json sweep.json

A run folder stands for each of its checkpoints (every ``--every`` steps) and its final
``ema.safetensors``; ``--reference FILE`` adds a first row (default: the shipped video model).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.evaluate import EvaluateConfig, evaluate  # noqa: E402

STEP_DIR = re.compile(r"step_(\d+)$")


def models_of(path: Path, every: int) -> list[tuple[str, Path]]:
    """(label, weight file) for a run folder's checkpoints, or the file itself."""
    if path.is_file():
        return [(str(path), path)]
    found = []
    for folder in sorted((path / "checkpoints").glob("step_*")):
        match = STEP_DIR.search(folder.name)
        weights = folder / "ema.safetensors"
        if match and weights.is_file() and int(match.group(1)) % every == 0:
            found.append((f"{path.name} @ {int(match.group(1)):,}", weights))
    if (path / "ema.safetensors").is_file():
        found.append((f"{path.name} (last)", path / "ema.safetensors"))
    if not found:
        raise SystemExit(f"{path}: no checkpoints/step_N/ema.safetensors nor ema.safetensors")
    return found


def measure(weights: Path, args: argparse.Namespace) -> dict:
    row: dict = {"model": str(weights)}
    if args.rendered:
        rep = evaluate(EvaluateConfig(model=str(weights), pairs=str(args.rendered), baselines=False), progress=False)
        row["rendered_gain"] = rep.groups[-1].gain
        row["sharp_in_min"] = rep.sharp_check["min_psnr"] if rep.sharp_check else None
    gains = []
    for real in args.real:
        rep = evaluate(EvaluateConfig(model=str(weights), pairs=str(real), baselines=False), progress=False)
        row[f"real_{real.name}"] = rep.groups[-1].gain
        gains.append(rep.groups[-1].gain)
        if rep.temporal:
            row[f"warp_{real.name}"] = rep.temporal["output"]
            row[f"warp_{real.name}_input"] = rep.temporal["input"]
    if gains:
        row["real_mean"] = sum(gains) / len(gains)
    if args.video:
        rep = evaluate(EvaluateConfig(model=str(weights), pairs=str(args.video), baselines=False), progress=False)
        row["video_gain"] = rep.groups[-1].gain
        if rep.temporal:
            row["warp_video"] = rep.temporal["output"]
            row["warp_video_input"] = rep.temporal["input"]
        if rep.sharp_video:
            row["sharp_video_min"] = rep.sharp_video["min_psnr"]
            row["sharp_video_mean"] = rep.sharp_video["mean_psnr"]
    if args.pan:
        from tests.test_models_default import gain_of

        with tempfile.TemporaryDirectory() as tmp:
            row["steady_pan"] = gain_of(weights, Path(tmp), steady=True, frames=6)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders or generator files")
    parser.add_argument("--rendered", type=Path, help="rendered held-out pairs (models render-pairs)")
    parser.add_argument("--real", type=Path, nargs="*", default=[], help="real pairs folders (dataset_builder build)")
    parser.add_argument("--video", type=Path, help="consecutive rendered pairs (render-pairs --consecutive)")
    parser.add_argument("--pan", action="store_true", help="also the steady 20 px pan through process_video")
    parser.add_argument("--every", type=int, default=1, help="only checkpoints at multiples of this step")
    parser.add_argument("--reference", type=Path, default=ROOT / "models" / "weights" / "video.safetensors",
                        help="first row (default: the shipped video model); 'none' for none")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()

    models = [] if str(args.reference) == "none" else [("reference", args.reference)]
    for run in args.runs:
        models += models_of(run, args.every)
    rows = []
    for label, weights in models:
        start = time.perf_counter()
        row = {"label": label, **measure(weights, args)}
        rows.append(row)
        shown = {k: (f"{v:+.3f}" if "gain" in k or k.startswith("real") or k == "steady_pan" else f"{v:.4g}")
                 for k, v in row.items() if isinstance(v, float)}
        print(f"{label}: " + "  ".join(f"{k} {v}" for k, v in shown.items())
              + f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {platform.processor() or '?'}",
            "command": " ".join(sys.argv), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
