"""Peak memory and CPU speed of `pipeline process` on a 10 s and a 40 s clip.

Memory must stay flat however long the video: the two peaks may differ by at most 20 %.
Each run is a fresh subprocess, so its peak resident set size is its own.

    python benchmarks/memory.py [--width 640 --height 360 --fps 30] [--model FILE] [--json out.json]

Without --model it uses the shipped default model, or a random model of the default
architecture when none ships yet (the speed is the same; only the pixels differ).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_GROWTH = 0.20


def _make_clip(path: Path, seconds: int, width: int, height: int, fps: int) -> None:
    from tests.media import make_clip

    make_clip(path, frames=seconds * fps, width=width, height=height, fps=fps, audio="aac",
              options={"preset": "ultrafast"})


def _model(path: str | None, workdir: Path) -> str:
    if path:
        return path
    from pipeline.config import DEFAULT_MODEL_PATH

    if DEFAULT_MODEL_PATH.exists():
        return str(DEFAULT_MODEL_PATH)
    from models import RRDBNet, save_generator

    random_model = workdir / "random-default-arch.safetensors"
    save_generator(RRDBNet(num_feat=32, num_block=4, num_grow_ch=16, downscale=4), random_model)
    return str(random_model)


def _run(clip: Path, model: str) -> dict:
    out = clip.with_name(clip.stem + ".out.mp4")
    code = (
        "import resource, sys, time\n"
        "from pipeline import process_video, ProcessConfig\n"
        "from pathlib import Path\n"
        "t = time.perf_counter()\n"
        f"r = process_video({str(clip)!r}, {str(out)!r}, config=ProcessConfig(model=Path({model!r}),"
        " progress=False, overwrite=True, device='cpu'))\n"
        "print(r.frames, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    frames, seconds, peak_kb = result.stdout.split()
    return {"frames": int(frames), "seconds": float(seconds), "fps": int(frames) / float(seconds),
            "peak_rss_mb": int(peak_kb) / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--model", help="generator checkpoint (default: the shipped model)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "memory.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = _model(args.model, workdir)
        for seconds in (10, 40):
            clip = workdir / f"clip{seconds}s.mp4"
            _make_clip(clip, seconds, args.width, args.height, args.fps)
            rows.append({"clip_seconds": seconds, **_run(clip, model)})
    growth = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1
    report = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
              "cpus": __import__("os").cpu_count(), "size": f"{args.width}x{args.height}",
              "model": Path(model).name, "rows": rows, "peak_growth": growth,
              "flat": growth <= MAX_GROWTH}
    args.json.write_text(json.dumps(report, indent=2))
    print(f"{'clip':>6} {'frames':>7} {'seconds':>8} {'fps':>7} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['clip_seconds']:>5}s {r['frames']:>7} {r['seconds']:>8.1f} {r['fps']:>7.2f} "
              f"{r['peak_rss_mb']:>12.0f}")
    print(f"peak memory growth 10 s → 40 s: {growth:+.1%} (limit {MAX_GROWTH:.0%}): "
          f"{'flat' if report['flat'] else 'NOT FLAT'}")
    return 0 if report["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
