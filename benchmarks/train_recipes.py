"""Training recipes compared at the same CPU-time budget: which data, blur, input, trunk and loss.

Each recipe is ``models/configs/default.yaml`` plus a few overrides, trained for the same
CPU time of its own process (``max_cpu_minutes``: fair on a shared machine; validation is
not counted), then validated on the rendered held-out photos and on real high-fps pairs.
Recipes that keep the default architecture start from ``--init`` (the shipped model),
the others from scratch, and a from-scratch default is run as their reference.

    python benchmarks/train_recipes.py --photos ../shared/data/photos --stored PAIRS \\
        --real PAIRS_A PAIRS_B --init models/weights/default.safetensors --minutes 5 \\
        --out runs/recipes [--only l1,charbonnier] [--json docs/recipes.json]

Prints a markdown table (gain = restored - input PSNR, dB) and writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The realistic motion's opposite: what the stored pairs were rendered with (slow pans,
# ~10 px streaks, no shake, no noise, no compression).
NARROW_BLUR = ["synthetic.motion.blur_median=9", "synthetic.motion.blur_spread=0.15",
               "synthetic.motion.blur_max=12", "synthetic.motion.shake_fraction=0",
               "synthetic.noise=0", "synthetic.compression=0"]

# name -> (question it answers, overrides, starts from --init)
RECIPES: dict[str, tuple[str, list[str], bool]] = {
    "onthefly": ("on-the-fly pairs, realistic blur, MSE (the default recipe)", [], True),
    "stored": ("stored pairs (dataset_builder, rendered pans)", ["synthetic.fraction=0", "data={stored}"], True),
    "narrow_blur": ("on-the-fly, today's narrow blur distribution", NARROW_BLUR, True),
    "l1": ("pixel loss L1", ["pixel_loss=l1"], True),
    "charbonnier": ("pixel loss Charbonnier", ["pixel_loss=charbonnier"], True),
    "psnr_loss": ("pixel loss PSNR (-10 log10 MSE per sample)", ["pixel_loss=psnr"], True),
    "mse_fft": ("MSE + 0.05 FFT loss", ["fft_weight=0.05"], True),
    "in_frames3": ("3 input frames (first conv from scratch)", ["generator.in_frames=3"], True),
    "scratch": ("from scratch: 32 wide, 4 blocks, downscale 4", [], False),
    "scratch_ds2": ("from scratch: downscale 2", ["generator.downscale=2"], False),
    "scratch_6blocks": ("from scratch: 6 blocks", ["generator.num_block=6"], False),
    "scratch_w48": ("from scratch: 48 wide, growth 24", ["generator.num_feat=48", "generator.num_grow_ch=24"], False),
}


def _last_validation(run: Path) -> dict[str, float]:
    rows = list(csv.DictReader((run / "log.csv").open()))
    steps = [int(r["step"]) for r in rows if r["loss_g"]]
    final = [r for r in rows if r["val_synth_psnr"] or r["val_real_psnr"]][-1]
    figures = {k: float(v) for k, v in final.items() if k.startswith("val_") and v}
    figures["steps"] = max(steps) if steps else int(final["step"])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True, help="photo folder for on-the-fly pairs")
    parser.add_argument("--stored", help="pairs folder for the 'stored' recipe")
    parser.add_argument("--real", nargs="*", default=[], help="pairs folders of real high-fps footage (validation)")
    parser.add_argument("--init", help="weights the default-architecture recipes start from")
    parser.add_argument("--minutes", type=float, default=5.0, help="CPU minutes per recipe (default: 5)")
    parser.add_argument("--val-samples", type=int, default=16, help="rendered validation samples")
    parser.add_argument("--only", help="comma-separated recipe names (default: all)")
    parser.add_argument("--out", required=True, help="folder for the runs")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    from models.train import load_config, train

    names = args.only.split(",") if args.only else list(RECIPES)
    results = {}
    out = Path(args.out)
    for name in names:
        question, overrides, from_init = RECIPES[name]
        if "data={stored}" in overrides and not args.stored:
            print(f"skip {name}: needs --stored", file=sys.stderr)
            continue
        run = out / name
        common = [f"out={run}", f"synthetic.photos=[{args.photos}]", f"val_real=[{','.join(args.real)}]",
                  f"max_cpu_minutes={args.minutes}", "threads=1", "synthetic_workers=0", "num_workers=0",
                  f"synthetic.val_samples={args.val_samples}", "val_every=1000000", "checkpoint_every=1000000",
                  # A short run: an EMA time constant of 50 steps, so the figures show this run's training.
                  "ema_decay=0.98"]
        if from_init and args.init:
            common.append(f"init={args.init}")
        if not (run / "log.csv").is_file() or not (run / "model.safetensors").is_file():
            config = load_config(ROOT / "models/configs/default.yaml",
                                 common + [o.format(stored=args.stored) for o in overrides])
            started = time.monotonic()
            train(config, progress=False)
            print(f"{name}: {time.monotonic() - started:.0f} s wall", file=sys.stderr)
        figures = _last_validation(run)
        figures["synth_gain"] = figures["val_synth_psnr"] - figures["val_synth_psnr_input"]
        if "val_real_psnr" in figures:
            figures["real_gain"] = figures["val_real_psnr"] - figures["val_real_psnr_input"]
        results[name] = {"question": question, "overrides": overrides, "from_init": from_init and bool(args.init),
                         **figures}
        print(f"{name}: {figures}", file=sys.stderr, flush=True)
    print(f"| recipe | what it tests | start | steps in {args.minutes:g} CPU min | gain, rendered held-out | gain, real high-fps |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        real = f"{r['real_gain']:+.2f}" if "real_gain" in r else "-"
        print(f"| {name} | {r['question']} | {'shipped model' if r['from_init'] else 'scratch'} | {r['steps']} | "
              f"{r['synth_gain']:+.2f} | {real} |")
    if args.json:
        payload = {"machine": platform.platform(), "date": time.strftime("%Y-%m-%d"), "cpu_minutes": args.minutes,
                   "recipes": results}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
