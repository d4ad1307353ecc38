"""How much learning a CPU-hour buys: ``models train`` against the bare step of the same model.

For each precision (fp32 and, where the CPU runs it natively, bf16):

* **bare step**: the config's generator on a fixed random batch (batch x crop x crop, the
  config's sizes): forward, MSE, backward, Adam, on ``--threads`` threads; nothing else.
* **models train**: the shipped config (``--config``, default ``default``) run as a user runs
  it, ``python -m models train CONFIG synthetic.photos=[PHOTOS] amp=... steps=N`` in a fresh
  process with its defaults (render workers and network threads as it picks them), timed from
  its ``log.csv`` over the steps after the first log row (start-up excluded); its CPU time
  counts the render workers.
* with ``--baseline TREE``: the same ``models train`` command run from another checkout (e.g.
  a worktree of an older commit), side by side, to measure a speed-up on the same machine.

Steps per wall-second, and pixel-iterations (samples x pixels per step) per CPU-second.

    python benchmarks/train_throughput.py --photos ../shared/data/photos [--steps 150]
        [--baseline ../main-before] [--json benchmarks/train_throughput.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from models.generator import RRDBNet  # noqa: E402
from models.precision import native_cpu_bf16  # noqa: E402
from models.train_config import load_config  # noqa: E402


def bare_step(config_name: str, precision: str, threads: int, steps: int) -> dict:
    """Seconds per bare training step (median of ``steps`` after 3 warm-up steps)."""
    config = load_config(config_name, ["out=unused", "synthetic.fraction=0", "data=unused"])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    # The layout models train uses (NHWC: oneDNN's fast one).
    model = RRDBNet(config.generator).train().to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-4)
    n, size = config.batch_size, config.crop_size
    inputs = torch.rand(n, config.generator.in_channels, size, size).contiguous(memory_format=torch.channels_last)
    target = torch.rand(n, 3, size, size)
    dtype = torch.bfloat16 if precision == "bf16" else None
    times, cpu = [], []
    for i in range(steps + 3):
        started, started_cpu = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            restored = model(inputs)
        loss = torch.nn.functional.mse_loss(restored.float(), target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if i >= 3:
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
    times.sort()
    per_step = times[len(times) // 2]
    pixels = n * size * size
    return {"kind": "bare step", "precision": precision, "threads": threads, "s_per_step": per_step,
            "steps_per_s": 1 / per_step, "pixel_iters_per_cpu_s": pixels * len(cpu) / sum(cpu)}


def train_run(tree: Path, config_name: str, photos: str, precision: str, steps: int, label: str,
              *, baseline: bool = False) -> dict:
    """``python -m models train`` from ``tree`` for ``steps`` steps, timed from its log (a
    baseline runs with its own default precision: amp is not given)."""
    amp = [] if baseline else [f"amp={'bf16' if precision == 'bf16' else 'off'}"]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        command = [sys.executable, "-m", "models", "train", config_name, f"synthetic.photos=[{photos}]",
                   f"out={out}", f"steps={steps}", *amp, "log_every=10", f"val_every={10 * steps}",
                   f"checkpoint_every={10 * steps}", "synthetic.val_samples=4"]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        started = time.perf_counter()
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{label}: models train failed:\n{done.stderr[-2000:]}")
        rows = [r for r in csv.DictReader((out / "log.csv").open()) if r.get("time_s")]
        config = load_config(config_name, ["out=unused", "synthetic.fraction=0", "data=unused"])
    first, last = rows[0], rows[-1]
    steps_timed = int(last["step"]) - int(first["step"])
    seconds = float(last["time_s"]) - float(first["time_s"])
    pixels = config.batch_size * config.crop_size ** 2
    row = {"kind": label, "precision": precision, "steps": steps, "wall_s": wall,
           "s_per_step": seconds / steps_timed, "steps_per_s": steps_timed / seconds}
    if first.get("cpu_s"):
        cpu = float(last["cpu_s"]) - float(first["cpu_s"])
        row["pixel_iters_per_cpu_s"] = pixels * steps_timed / cpu
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True, help="photo folder for the on-the-fly pairs")
    parser.add_argument("--config", default="default", help="shipped config name or file (default: default)")
    parser.add_argument("--steps", type=int, default=150, help="steps of each models train run (default: 150)")
    parser.add_argument("--bare-steps", type=int, default=20, help="timed bare steps (default: 20)")
    parser.add_argument("--threads", type=int, default=1, help="threads of the bare step (default: 1)")
    parser.add_argument("--baseline", type=Path, help="another checkout to run the same models train command from")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_suffix(".json"),
                        help="where to write the results (default: beside this script)")
    args = parser.parse_args(argv)

    precisions = ["fp32"] + (["bf16"] if native_cpu_bf16() else [])
    rows = []
    for precision in precisions:
        rows.append(bare_step(args.config, precision, args.threads, args.bare_steps))
        print(rows[-1], file=sys.stderr, flush=True)
        rows.append(train_run(ROOT, args.config, args.photos, precision, args.steps, "models train"))
        print(rows[-1], file=sys.stderr, flush=True)
    if args.baseline:
        # The baseline's own defaults (its amp: auto was fp32 on every CPU).
        rows.append(train_run(args.baseline.resolve(), args.config, args.photos, "fp32", args.steps,
                              "models train (baseline)", baseline=True))
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"| what | precision | s per step | steps/s | pixel-iterations per CPU-s |")
    print("|---|---|---|---|---|")
    for r in rows:
        pix = f"{r['pixel_iters_per_cpu_s'] / 1e6:.2f} M" if "pixel_iters_per_cpu_s" in r else "-"
        print(f"| {r['kind']} | {r['precision']} | {r['s_per_step']:.3f} | {r['steps_per_s']:.2f} | {pix} |")
    if args.baseline:
        base = rows[-1]["steps_per_s"]
        best = max(r["steps_per_s"] for r in rows if r["kind"] == "models train")
        print(f"models train, best precision vs baseline: {best / base:.2f}x the steps per wall-second")
    payload = {"machine": platform.platform(), "cpu": platform.processor() or platform.machine(),
               "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d"), "config": args.config, "rows": rows}
    args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
