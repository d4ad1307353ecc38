"""Does ``pipeline process`` leave a still background alone while an object moves over it?

A clip is rendered from a frame of ``samples/bikes.mp4`` (the still background) with a disc
moving 18 px per frame across it, motion-blurred by averaging 16 instants of a 360-degree
exposure in linear light, 8-bit, lossless. It is processed as a user runs it (the model
``process`` picks for a video unless ``--model``), losslessly, and each output frame is
compared with its input on the still region: the pixels farther than two radii and a margin
from where the disc is during that frame and its neighbours. Issue 19 asks >= 45 dB there.

    python benchmarks/still_background.py [--model FILE] [--json benchmarks/still_background.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEIGHT, WIDTH, FRAMES = 192, 256, 8
RADIUS, SPEED, INSTANTS = 14, 18.0, 16  # px, px per frame, instants averaged per exposure
MARGIN = 8  # px beyond two radii from the disc's path that count as still
COLOUR = np.array([0.9, 0.3, 0.1])  # the disc, linear RGB


def disc_centre(t: float) -> tuple[float, float]:
    """Where the disc is at time ``t`` (in frames)."""
    return 40 + SPEED * t, 96 + 4 * np.sin(t)


def render(path: Path) -> list[np.ndarray]:
    """Write the clip (lossless RGB H.264) and return its frames, (H, W, 3) uint8."""
    import av

    from dataset_builder.response import load_response

    srgb = load_response("srgb")
    with av.open(str(ROOT / "samples" / "bikes.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    background = srgb.to_linear(first)[:HEIGHT, :WIDTH].astype(np.float64)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=Fraction(30))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "rgb24"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(FRAMES):
            exposure = np.zeros_like(background)
            for k in range(INSTANTS):
                cx, cy = disc_centre(i + k / INSTANTS)
                alpha = np.clip(RADIUS + 0.5 - np.hypot(xx - cx, yy - cy), 0, 1)[..., None]
                exposure += background * (1 - alpha) + COLOUR * alpha
            frame = srgb.from_linear((exposure / INSTANTS).astype(np.float32), np.uint8)
            frames.append(frame)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return frames


def still_mask(index: int) -> np.ndarray:
    """(H, W) bool: far from the disc during frame ``index`` and its neighbours."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    distance = np.full((HEIGHT, WIDTH), np.inf)
    for t in np.linspace(index - 1, index + 2, 49):
        cx, cy = disc_centre(t)
        distance = np.minimum(distance, np.hypot(xx - cx, yy - cy))
    return distance > 2 * RADIUS + MARGIN


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="checkpoint (default: what process picks for a video)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import av

    from pipeline import EncoderSettings, ProcessConfig, process_video

    with tempfile.TemporaryDirectory() as tmp:
        clip, out = Path(tmp) / "clip.mkv", Path(tmp) / "out.mkv"
        inputs = render(clip)
        config = ProcessConfig(model=args.model, progress=False, encoder=EncoderSettings(crf=0))
        process_video(clip, out, config=config)
        with av.open(str(out)) as container:
            outputs = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    still = [psnr(a[still_mask(i)], b[still_mask(i)]) for i, (a, b) in enumerate(zip(inputs, outputs))]
    result = {
        "machine": platform.platform(), "date": time.strftime("%Y-%m-%d"),
        "model": str(args.model) if args.model else "default for video",
        "frames": len(outputs), "still_share": float(np.mean([still_mask(i).mean() for i in range(FRAMES)])),
        "still_psnr_db": still, "still_psnr_min_db": min(still),
        "whole_frame_psnr_db": [psnr(a, b) for a, b in zip(inputs, outputs)],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
