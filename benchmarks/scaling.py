"""Scaling of one video across Ray workers: frames/s for 1, 2, 4 ... workers on the same clip,
and what splitting and stitching cost.

For each worker count N a pool of N workers is started (its start-up time is reported apart:
it is paid once per job, not per video), warmed up on the clip, then timed on the same clip
with ``process_video_parallel`` (N workers, 2N segments cut at keyframes). Rows also give the
driver's own work: ``plan`` (probe + packet scan + planning) and ``stitch`` (concat demuxer
with ``-c copy`` + muxing the audio back + the frame check), which with the pool's per-call
latency make up the overhead of splitting. The in-process single-worker path (``process_video``,
no Ray) is the baseline, run with torch's default threads and with one thread (as a CPU
worker runs).

    python benchmarks/scaling.py                                  # CPU, 1/2/4 workers, 320x180
    python benchmarks/scaling.py --device cuda --workers 1 2 4 8 --size 1280x720 --frames 1200
    python benchmarks/scaling.py --clip footage.mp4 --model my.safetensors --json out.json

On CPU each worker is a Ray actor with one CPU, so it runs torch on one thread (Ray sets
OMP_NUM_THREADS=1); the in-process baseline uses every core. On a machine with fewer cores than
workers the workers share cores and the figures show that, not the method's scaling.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import ray
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import RRDBNet, load_generator  # noqa: E402
from models.generator import GeneratorConfig  # noqa: E402
from pipeline import ProcessConfig, process_video  # noqa: E402
from pipeline.config import DEFAULT_MODEL_PATH  # noqa: E402
from pipeline.cluster import ParallelConfig  # noqa: E402
from pipeline.parallel import WorkerPool  # noqa: E402
from pipeline.scheduler import VideoRequest  # noqa: E402
from pipeline.video_reader import read_timestamps  # noqa: E402

DEFAULT_CONFIG_YAML = ROOT / "models" / "configs" / "default.yaml"
CLIP_FPS = 24
# A keyframe every 2 s, as cameras and most encoders do: the cut points segments can use.
CLIP_GOP = 48
AUDIO_RATE = 48000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4],
                        help="worker counts to time (default 1 2 4)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--clip", type=Path, help="a clip to use instead of a synthetic one")
    parser.add_argument("--size", default="320x180", help="synthetic clip size (default 320x180)")
    parser.add_argument("--frames", type=int, default=240,
                        help=f"synthetic clip length in frames at {CLIP_FPS} fps (default 240)")
    parser.add_argument("--model", type=Path, help="checkpoint (default: the shipped model, or "
                        "random weights of models/configs/default.yaml's architecture)")
    parser.add_argument("--address", help="a Ray cluster to run on (default: a local instance)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "scaling.json",
                        help="where to write the results (default benchmarks/scaling.json)")
    return parser.parse_args(argv)


def make_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """A moving-pattern H.264 clip with AAC audio, keyframes every CLIP_GOP frames."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=CLIP_FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"x264-params": f"keyint={CLIP_GOP}:min-keyint={CLIP_GOP}:scenecut=0"}
        audio = out.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        for i in range(frames):
            img = 0.5 + 0.4 * np.sin((x + 3 * i) / 9.0) * np.cos((y - 2 * i) / 7.0)
            rgb = np.repeat((img[..., None] * 255).astype(np.uint8), 3, axis=2)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = frames * AUDIO_RATE // CLIP_FPS
        for start in range(0, samples, 1024):
            n = min(1024, samples - start)
            tone = (0.2 * np.sin(np.arange(start, start + n) * 0.06)).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(tone[None], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
            out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))
    return path


def load_model(path: Path | None) -> tuple[RRDBNet, str]:
    if path is not None:
        return load_generator(path), str(path)
    if DEFAULT_MODEL_PATH.exists():
        return load_generator(DEFAULT_MODEL_PATH), str(DEFAULT_MODEL_PATH.relative_to(ROOT))
    import yaml

    section = yaml.safe_load(DEFAULT_CONFIG_YAML.read_text())["generator"]
    torch.manual_seed(0)
    return RRDBNet(GeneratorConfig(**section)), (
        f"random weights, architecture of {DEFAULT_CONFIG_YAML.relative_to(ROOT)}")


def time_in_process(clip: Path, workdir: Path, model: RRDBNet, config: ProcessConfig) -> float:
    began = time.perf_counter()
    process_video(clip, workdir / "single.mp4", config=config, model=model)
    return time.perf_counter() - began


def time_workers(clip: Path, workdir: Path, model: RRDBNet, workers: int,
                 config: ProcessConfig, address: str | None) -> dict:
    started = time.perf_counter()
    parallel = ParallelConfig(workers=workers, address=address)
    with WorkerPool(config, parallel=parallel, model=model) as pool:
        # Start-up: actors created, the model loaded and warmed up (oneDNN/cuDNN pick their
        # kernels on the first calls): paid once per job, not per video.
        pool.run([VideoRequest(clip, workdir / f"warm-{workers}.mp4", segments=workers,
                               overwrite=True)], progress=False)
        start_s = time.perf_counter() - started
        output = workdir / f"scaled-{workers}.mp4"
        began = time.perf_counter()
        outcome = pool.run([VideoRequest(clip, output, overwrite=True,
                                         segments=workers * parallel.segments_per_worker)],
                           progress=False)[0]
        wall = time.perf_counter() - began
    if outcome.status != "done":
        raise RuntimeError(outcome.error)
    return {"workers": workers, "frames": outcome.frames, "segments": outcome.segments,
            "wall_s": round(wall, 3), "fps": round(outcome.frames / wall, 3),
            "plan_s": round(outcome.plan_seconds, 3), "stitch_s": round(outcome.stitch_seconds, 3),
            "pool_start_and_warmup_s": round(start_s, 3),
            "timestamps_match": read_timestamps(output) == read_timestamps(clip)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    model, model_name = load_model(args.model)
    config = ProcessConfig(device=args.device, progress=False, overwrite=True)
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        workdir = Path(tmp)
        if args.clip is not None:
            clip = args.clip
        else:
            width, height = (int(v) for v in args.size.split("x"))
            clip = make_clip(workdir / "clip.mp4", width, height, args.frames)
        frames = len(read_timestamps(clip))
        process_video(clip, workdir / "warm.mp4", config=config, model=model)  # warm-up
        baseline = time_in_process(clip, workdir, model, config)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as a CPU worker runs: one CPU, one torch thread
        baseline_1 = time_in_process(clip, workdir, model, config)
        torch.set_num_threads(threads)
        rows = [time_workers(clip, workdir, model, n, config, args.address) for n in args.workers]
    one = next((r for r in rows if r["workers"] == 1), rows[0])
    for row in rows:
        row["speedup_vs_1_worker"] = round(one["wall_s"] / row["wall_s"], 2)
        row["overhead_s"] = round(row["plan_s"] + row["stitch_s"], 3)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores"
                   + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        "load_average": os.getloadavg()[0],
        "device": args.device, "torch": torch.__version__, "ray": ray.__version__,
        "model": model_name, "clip": str(args.clip or f"synthetic {args.size}, {frames} frames"),
        "frames": frames,
        "in_process": {"wall_s": round(baseline, 3), "fps": round(frames / baseline, 3),
                       "torch_threads": torch.get_num_threads()},
        "in_process_1_thread": {"wall_s": round(baseline_1, 3),
                                "fps": round(frames / baseline_1, 3)},
        "workers": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['machine']}; load {result['load_average']:.1f}; device {args.device}; "
          f"model {model_name}; clip {result['clip']}")
    print(f"in-process (no Ray), {torch.get_num_threads()} torch threads: {frames} frames in "
          f"{baseline:.2f} s = {frames / baseline:.2f} fps")
    print(f"in-process (no Ray), 1 torch thread: {frames} frames in {baseline_1:.2f} s = "
          f"{frames / baseline_1:.2f} fps")
    print(f"{'workers':>7} {'segments':>8} {'wall s':>7} {'fps':>7} {'speed-up':>8} "
          f"{'plan s':>6} {'stitch s':>8} {'start+warm-up s':>15} {'timestamps':>10}")
    for r in rows:
        print(f"{r['workers']:>7} {r['segments']:>8} {r['wall_s']:>7.2f} {r['fps']:>7.2f} "
              f"{r['speedup_vs_1_worker']:>8.2f} {r['plan_s']:>6.2f} {r['stitch_s']:>8.2f} "
              f"{r['pool_start_and_warmup_s']:>15.1f} "
              f"{'same' if r['timestamps_match'] else 'DIFFER':>10}")
    print(f"JSON: {args.json}")
    return 0 if all(r["timestamps_match"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
