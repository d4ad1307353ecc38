"""CPU cost of the colour conversions around the model, per frame, and how threads spread it.

The pipeline decodes to YUV, converts to RGB for the model and back to YUV for the encoder,
in swscale (which runs without the GIL). At 60 frames/s a single reader or writer thread has
16.7 ms per frame for everything; this measures what the conversions take of that, for the
frame copy into PyAV both ways (``from_ndarray`` copies, ``from_numpy_buffer`` wraps), and
the frames/s of ``pipeline.ordered.ordered_map`` over 1..N threads.

    python benchmarks/colour_conversion.py                    # 1920x1080, 8- and 10-bit
    python benchmarks/colour_conversion.py --size 1280x720 --threads 1,2,4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.colour import SWS_THREADS, thread_reformatter  # noqa: E402
from pipeline.ordered import ordered_map  # noqa: E402

BT709 = 1
LIMITED, FULL = 1, 2


def _time_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times) * 1e3, statistics.median(times) * 1e3


def measure(width: int, height: int, threads: list[int], repeats: int, frames: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for bits, rgb_format, yuv_format, dtype in ((8, "rgb24", "yuv420p", np.uint8),
                                                  (10, "rgb48le", "yuv420p10le", np.uint16)):
        peak = 255 if bits == 8 else 65535
        rgb = rng.integers(0, peak + 1, (height, width, 3), dtype=dtype)
        planes = av.VideoFrame.from_ndarray(rgb, format=rgb_format).reformat(format=yuv_format).to_ndarray()
        to_rgb_args = {"format": rgb_format, "src_colorspace": BT709, "src_color_range": LIMITED,
                       "dst_color_range": FULL}
        to_yuv_args = {"format": yuv_format, "src_colorspace": BT709, "dst_colorspace": BT709,
                       "src_color_range": FULL, "dst_color_range": LIMITED}

        def decoded() -> av.VideoFrame:
            # A fresh frame, as every decoded frame is (a frame's own converter is not reused).
            return av.VideoFrame.from_ndarray(planes, format=yuv_format)

        def to_rgb_before(frame: av.VideoFrame) -> np.ndarray:
            return frame.to_ndarray(**to_rgb_args)  # a new swscale context per frame, all cores

        def to_rgb_now(frame: av.VideoFrame) -> np.ndarray:
            return thread_reformatter().reformat(frame, threads=SWS_THREADS, **to_rgb_args).to_ndarray()

        def to_yuv_before(array: np.ndarray) -> av.VideoFrame:
            return av.VideoFrame.from_ndarray(array, format=rgb_format).reformat(**to_yuv_args)

        def to_yuv_now(array: np.ndarray) -> av.VideoFrame:
            frame = av.VideoFrame.from_numpy_buffer(array, format=rgb_format)
            return thread_reformatter().reformat(frame, threads=SWS_THREADS, **to_yuv_args)

        for name, fn, make in (
            (f"{yuv_format}->{rgb_format} before (per-frame ctx)", to_rgb_before, decoded),
            (f"{yuv_format}->{rgb_format} now (reused ctx)", to_rgb_now, decoded),
            (f"{rgb_format}->{yuv_format} before (copy, per-frame ctx)", to_yuv_before, lambda: rgb),
            (f"{rgb_format}->{yuv_format} now (wrap, reused ctx)", to_yuv_now, lambda: rgb),
        ):
            inputs = [make() for _ in range(repeats + 1)]
            best, median = _time_ms(lambda: fn(inputs.pop()), repeats)
            rows.append({"bits": bits, "what": name, "threads": 1, "min_ms": best, "median_ms": median})
        for count in threads:
            for name, fn, make in ((f"reader conversions now, {count} thread(s)", to_rgb_now, decoded),
                                   (f"writer conversions now, {count} thread(s)", to_yuv_now, lambda: rgb)):
                inputs = [make() for _ in range(frames)]
                started = time.perf_counter()
                for _ in ordered_map(fn, inputs, count):
                    pass
                seconds = time.perf_counter() - started
                rows.append({"bits": bits, "what": name, "threads": count, "fps": frames / seconds,
                             "median_ms": seconds / frames * 1e3})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT (default 1920x1080)")
    parser.add_argument("--threads", default="1,2", help="thread counts to try (default 1,2)")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per single measurement")
    parser.add_argument("--frames", type=int, default=60, help="frames per threaded measurement")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    threads = [int(v) for v in args.threads.split(",")]
    rows = measure(width, height, threads, args.repeats, args.frames)
    print(f"{args.size}, {platform.processor() or platform.machine()}, PyAV {av.__version__}, "
          f"{date.today().isoformat()}")
    print(f"{'bits':>4}  {'what':52} {'min ms':>8} {'median ms':>10} {'frames/s':>9}")
    for row in rows:
        best = f"{row['min_ms']:8.2f}" if "min_ms" in row else f"{'':8}"
        fps = f"{row['fps']:9.1f}" if "fps" in row else ""
        print(f"{row['bits']:>4}  {row['what']:52} {best} {row['median_ms']:10.2f} {fps}")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
