"""End-to-end ``python -m pipeline process`` frames/s of this checkout against another one.

The same clip, the same weights (``--model``), each tree's default settings, run as a user
runs it (a fresh process: start-up, decode, model, encode), alternately ``--repeats`` times;
the best wall time of each counts.

    python benchmarks/process_speedup.py ../shared/data/videos/moviepy__chaplin.mp4 \\
        --baseline ../main-1a821bd --model models/weights/default.safetensors [--json FILE]
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

ROOT = Path(__file__).resolve().parent.parent


def frames_of(clip: Path) -> int:
    import av

    with av.open(str(clip)) as container:
        return sum(1 for _ in container.decode(video=0))


def run(tree: Path, clip: Path, model: Path, out: Path) -> float:
    """Wall seconds of one ``process`` run from ``tree``."""
    command = [sys.executable, "-m", "pipeline", "process", str(clip), "-o", str(out), "--model", str(model),
               "--overwrite", "-q"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: process failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", type=Path)
    parser.add_argument("--baseline", type=Path, required=True, help="the other checkout")
    parser.add_argument("--model", type=Path, default=ROOT / "models/weights/default.safetensors",
                        help="weights both trees load (default: the shipped single-frame model)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args(argv)
    clip, model = args.clip.resolve(), args.model.resolve()
    frames = frames_of(clip)
    best = {"this": float("inf"), "baseline": float("inf")}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for name, tree in (("baseline", args.baseline.resolve()), ("this", ROOT)):
                best[name] = min(best[name], run(tree, clip, model, Path(folder) / f"{name}{clip.suffix}"))
                print(f"{name}: {frames / best[name]:.2f} frames/s", file=sys.stderr, flush=True)
    speedup = best["baseline"] / best["this"]
    print(f"{clip.name}, {frames} frames: this {frames / best['this']:.2f} frames/s, baseline "
          f"{frames / best['baseline']:.2f} frames/s: {speedup:.2f}x")
    payload = {"machine": platform.platform(), "cores": len(os.sched_getaffinity(0)),
               "date": time.strftime("%Y-%m-%d"), "clip": clip.name, "frames": frames, "model": model.name,
               "baseline": str(args.baseline), "seconds": best, "speedup": speedup}
    args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
