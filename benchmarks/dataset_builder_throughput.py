"""Throughput of ``python -m dataset_builder build`` against plain decoding.

Renders (or takes) a 1280x720 clip, then measures on the same file:

1. decode only: the frames the builder reads, read the way it reads them (decord,
   one batch per window) and, for reference, PyAV decoding every frame;
2. averaging only: decode + linearise + average + re-encode, no files written;
3. build: the full ``build_pairs`` (two lossless PNGs per pair);
4. build with ``--interpolate K`` on the first frames of the clip.

Prints a table (pairs per second, wall and CPU) and writes JSON.

    python benchmarks/dataset_builder_throughput.py --json /tmp/throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2  # noqa: F401  (before decord, see dataset_builder/sources.py)

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataset_builder import BuildConfig, build_pairs  # noqa: E402
from dataset_builder.averaging import WindowAverager  # noqa: E402
from dataset_builder.config import RenderConfig  # noqa: E402
from dataset_builder.flow import FlowInterpolator  # noqa: E402
from dataset_builder.images import write_png  # noqa: E402
from dataset_builder.render import render_clip  # noqa: E402
from dataset_builder.response import load_response  # noqa: E402
from dataset_builder.sources import open_source, probe_source  # noqa: E402

DEFAULT_PHOTO = REPO.parent / "shared" / "data" / "photos" / "kodak" / "kodim23.png"


class Timer:
    """Wall and CPU (all threads of this process) time of a block."""

    def __enter__(self) -> "Timer":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def make_clip(folder: Path, frames: int, size: tuple[int, int]) -> Path:
    """A camera-like (H.264 4:2:0, crf 18) 240 fps clip rendered from a photo."""
    photo = DEFAULT_PHOTO
    if not photo.exists():  # no shared data: a synthetic texture will do
        rng = np.random.default_rng(0)
        texture = cv2.resize(rng.random((24, 32, 3)).astype(np.float32), (1600, 1200),
                             interpolation=cv2.INTER_CUBIC)
        photo = folder / "texture.png"
        write_png(photo, np.round(np.clip(texture, 0, 1) * 255).astype(np.uint8))
    config = RenderConfig(width=size[0], height=size[1], seconds=frames / 240, codec="h264",
                          camera_speed=3.0)
    return render_clip(photo, folder / f"clip_{frames}.mp4", config)


def decode_windows(clip: Path, window: int, stride: int) -> tuple[Timer, int, int]:
    """Read the clip as the builder does: one decord batch per window."""
    info = probe_source(clip)
    reader = open_source(info)
    half = window // 2
    centres = list(range(half, info.num_frames - half, stride))
    with Timer() as t:
        for c in centres:
            reader.read(c - half, c + half + 1)
    reader.close()
    return t, len(centres), info.num_frames


def decode_pyav(clip: Path) -> tuple[Timer, int]:
    with Timer() as t:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            n = sum(1 for f in container.decode(stream) if f.to_ndarray(format="rgb24") is not None)
    return t, n


def average_only(clip: Path, window: int, stride: int) -> tuple[Timer, int]:
    info = probe_source(clip)
    reader = open_source(info)
    response = load_response("srgb")
    averager = WindowAverager(window=window)
    half = window // 2
    centres = list(range(half, info.num_frames - half, stride))
    with Timer() as t:
        for c in centres:
            frames = reader.read(c - half, c + half + 1)
            linear = {c - half + i: response.to_linear(f) for i, f in enumerate(frames)}
            blurred = averager.blur(c, linear.__getitem__, lambda i: None)
            response.from_linear(blurred, np.dtype(np.uint8))
    reader.close()
    return t, len(centres)


def build(clip: Path, out: Path, config: BuildConfig) -> tuple[Timer, int]:
    with Timer() as t:
        summary = build_pairs([clip], out, config, progress=False)
    return t, summary.pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, help="measure this clip instead of rendering one")
    parser.add_argument("--frames", type=int, default=240, help="frames of the rendered clip")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--window", type=int, default=7)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--interpolate", type=int, default=4, help="K for the last row")
    parser.add_argument("--interp-frames", type=int, default=48,
                        help="frames of the clip used for the interpolation row")
    parser.add_argument("--flow-presets", default="medium,fast",
                        help="comma-separated DIS presets, one interpolation row each")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    tmp = Path(tempfile.mkdtemp(prefix="db_bench_"))
    try:
        clip = args.video or make_clip(tmp, args.frames, (width, height))
        short = make_clip(tmp, args.interp_frames, (width, height)) if not args.video else clip
        info = probe_source(clip)
        rows = []

        t, pairs, frames = decode_windows(clip, args.window, args.stride)
        rows.append(("decode only: decord, the builder's windows", t, pairs))
        t_av, n = decode_pyav(clip)
        rows.append(("decode only: PyAV, every frame", t_av, n / args.stride))
        t, pairs = average_only(clip, args.window, args.stride)
        rows.append(("decode + average in linear light (no files)", t, pairs))
        config = BuildConfig(window=args.window, stride=args.stride, static_keep=1.0)
        t, pairs = build(clip, tmp / "out", config)
        rows.append(("build (writes 2 PNGs per pair)", t, pairs))
        for preset in args.flow_presets.split(","):
            config_k = BuildConfig(window=args.window, stride=args.stride, static_keep=1.0,
                                   interpolate=args.interpolate, flow_preset=preset)
            t, pairs = build(short, tmp / f"out_k_{preset}", config_k)
            rows.append((f"build --interpolate {args.interpolate} --flow-preset {preset}", t,
                         pairs))

        machine = {"cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
                   "platform": platform.platform(), "processor": platform.processor(),
                   "python": platform.python_version(), "opencv": cv2.__version__,
                   "cv2_threads": cv2.getNumThreads()}
        print(f"clip: {clip.name if args.video else 'rendered'} {info.width}x{info.height}, "
              f"{frames} frames, window {args.window}, stride {args.stride}")
        print(f"machine: {machine['cpus']} CPUs, load {machine['load_avg_1min']:.1f}, "
              f"{machine['platform']}")
        print(f"{'stage':48} {'pairs':>6} {'wall s':>8} {'pairs/s':>8} {'CPU s/pair':>10}")
        results = []
        for name, timer, pairs in rows:
            rate = pairs / timer.wall if timer.wall else float("nan")
            print(f"{name:48} {pairs:6.0f} {timer.wall:8.2f} {rate:8.2f} "
                  f"{timer.cpu / max(pairs, 1e-9):10.3f}")
            results.append({"stage": name, "pairs": pairs, "wall_s": timer.wall,
                            "cpu_s": timer.cpu, "pairs_per_s": rate})
        if args.json:
            args.json.write_text(json.dumps({"machine": machine, "clip": {
                "width": info.width, "height": info.height, "frames": frames,
                "source": str(args.video) if args.video else "rendered H.264 crf 18"},
                "window": args.window, "stride": args.stride, "results": results}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
