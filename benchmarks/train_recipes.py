"""Training recipes compared at the same CPU-time budget: which data, blur, input, trunk and loss.

Each recipe is ``models/configs/default.yaml`` (``--set video``: ``video.yaml``) plus a few
overrides, trained for the same CPU time of its own processes (``max_cpu_minutes``: the
training process and its render workers, fair on a shared machine; validation is not
counted), then every recipe's model is evaluated (``models.evaluate``) on the same
pairs: rendered held-out photos drawn from the realistic distribution (``--eval-pairs``,
written by ``python -m models render-pairs``) and real high-fps pairs (``--real``), with the
sharp-frame check (the lowest PSNR of a sharp frame fed in).
Recipes that keep the default architecture start from ``--init`` (the shipped model),
the others from scratch, and a from-scratch default is run as their reference.

    python benchmarks/train_recipes.py --photos ../shared/data/photos --stored PAIRS \\
        --eval-pairs EVALPAIRS --real PAIRS_A PAIRS_B --init models/weights/default.safetensors \\
        --minutes 5 --out runs/recipes [--only l1,charbonnier] [--json docs/recipes.json]
    python benchmarks/train_recipes.py --set video --photos ../shared/data/photos \
        --eval-pairs EVAL5 --real REAL5_A REAL5_B --init models/weights/default.safetensors \
        --minutes 45 --workers 1 --ema 0.999 --out runs/video_recipes --json benchmarks/video_recipes.json

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


# The video model's input, compared on models/configs/video.yaml (issue: which input pays):
# every recipe starts from --init (the shipped single-frame model, grown so it starts as it).
# Inputs without motion have no still gate (it is computed from the motion).
VIDEO_RECIPES: dict[str, tuple[str, list[str], bool]] = {
    "blind1": ("blind, 1 frame (the image model's input)",
               ["generator.in_frames=1", "generator.motion=none", "generator.still_gate=false"], True),
    "stack5": ("5 frames stacked (DBN)",
               ["generator.in_frames=5", "generator.motion=none", "generator.still_gate=false"], True),
    "aligned3": ("3 frames aligned by flow (DBN's flow variant)", ["generator.motion=aligned"], True),
    "flow3": ("3 frames + flow channels", ["generator.motion=flow"], True),
    "aligned_flow3": ("3 frames aligned by flow + flow channels", ["generator.motion=aligned+flow"], True),
}
SETS = {"default": ("default.yaml", RECIPES), "video": ("video.yaml", VIDEO_RECIPES)}


def _steps(run: Path) -> int:
    rows = list(csv.DictReader((run / "log.csv").open()))
    return max(int(r["step"]) for r in rows)


def _judge(model: Path, pairs: list[str]) -> dict[str, float]:
    """Mean gain over the blurred pairs of all ``pairs`` folders, and the lowest sharp-frame PSNR."""
    from models.evaluate import ALL_BLURRED, EvaluateConfig, evaluate

    gains, counts, sharp = [], [], []
    for folder in pairs:
        report = evaluate(EvaluateConfig(model=str(model), pairs=folder, baselines=False, device="cpu"),
                          progress=False)
        overall = next(g for g in report.groups if g.name == ALL_BLURRED)
        gains.append(overall.gain * overall.pairs)
        counts.append(overall.pairs)
        sharp.append(report.sharp_check["min_psnr"])
    return {"gain": sum(gains) / sum(counts), "sharp_min": min(sharp)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True, help="photo folder for on-the-fly pairs")
    parser.add_argument("--stored", help="pairs folder for the 'stored' recipe")
    parser.add_argument("--eval-pairs", required=True, help="rendered held-out pairs (models render-pairs)")
    parser.add_argument("--real", nargs="*", default=[], help="pairs folders of real high-fps footage (validation)")
    parser.add_argument("--init", help="weights the default-architecture recipes start from")
    parser.add_argument("--minutes", type=float, default=5.0, help="CPU minutes per recipe (default: 5)")
    parser.add_argument("--val-samples", type=int, default=16, help="rendered validation samples")
    parser.add_argument("--only", help="comma-separated recipe names (default: all)")
    parser.add_argument("--set", choices=sorted(SETS), default="default",
                        help="default: data, blur, loss and trunk of the image model; video: the video "
                             "model's input (blind, stacked, aligned, flow) on models/configs/video.yaml")
    parser.add_argument("--ema", type=float, default=0.98,
                        help="EMA decay of the runs (default 0.98: a 50-step time constant for short runs)")
    parser.add_argument("--workers", type=int, default=0,
                        help="render workers per run (default 0: the step renders; the CPU budget counts them)")
    parser.add_argument("--out", required=True, help="folder for the runs")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    from models.train import train
    from models.train_config import load_config

    base, recipes = SETS[args.set]
    names = args.only.split(",") if args.only else list(recipes)
    results = {}
    out = Path(args.out)
    for name in names:
        question, overrides, from_init = recipes[name]
        if "data={stored}" in overrides and not args.stored:
            print(f"skip {name}: needs --stored", file=sys.stderr)
            continue
        run = out / name
        common = [f"out={run}", f"synthetic.photos=[{args.photos}]", f"val_real=[{','.join(args.real)}]",
                  f"max_cpu_minutes={args.minutes}", "threads=1", f"synthetic_workers={args.workers}",
                  "num_workers=0", f"synthetic.val_samples={args.val_samples}", "val_every=1000000",
                  "checkpoint_every=1000000", f"ema_decay={args.ema}"]
        if from_init and args.init:
            common.append(f"init={args.init}")
        if not (run / "log.csv").is_file() or not (run / "model.safetensors").is_file():
            config = load_config(ROOT / "models/configs" / base,
                                 common + [o.format(stored=args.stored) for o in overrides])
            started = time.monotonic()
            train(config, progress=False)
            print(f"{name}: {time.monotonic() - started:.0f} s wall", file=sys.stderr)
        rendered = _judge(run / "model.safetensors", [args.eval_pairs])
        figures = {"steps": _steps(run), "synth_gain": rendered["gain"], "synth_sharp_min": rendered["sharp_min"]}
        if args.real:
            real = _judge(run / "model.safetensors", args.real)
            figures.update(real_gain=real["gain"], real_sharp_min=real["sharp_min"])
        results[name] = {"question": question, "overrides": overrides, "from_init": from_init and bool(args.init),
                         **figures}
        print(f"{name}: {figures}", file=sys.stderr, flush=True)
    if args.init:
        start = _judge(Path(args.init), [args.eval_pairs])
        real = _judge(Path(args.init), args.real) if args.real else {}
        results["start"] = {"question": "the starting weights, untrained (reference)", "from_init": True, "steps": 0,
                            "synth_gain": start["gain"], "synth_sharp_min": start["sharp_min"],
                            **({"real_gain": real["gain"], "real_sharp_min": real["sharp_min"]} if real else {})}
    print(f"| recipe | what it tests | start | steps in {args.minutes:g} CPU min | gain, rendered held-out "
          f"(sharp min) | gain, real high-fps (sharp min) |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        real = f"{r['real_gain']:+.2f} ({r['real_sharp_min']:.1f})" if "real_gain" in r else "-"
        print(f"| {name} | {r['question']} | {'shipped model' if r['from_init'] else 'scratch'} | {r['steps']} | "
              f"{r['synth_gain']:+.2f} ({r['synth_sharp_min']:.1f}) | {real} |")
    if args.json:
        payload = {"machine": platform.platform(), "date": time.strftime("%Y-%m-%d"), "cpu_minutes": args.minutes,
                   "recipes": results}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
