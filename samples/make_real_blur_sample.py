"""Make samples/floor_blurred.mp4 and samples/floor_sharp.mp4 from real 240 fps footage.

The dataset builder averages 11 frames of a real phone slow-motion clip (hand-held pan over
a wooden floor, 240 fps) in linear light around every 8th frame: real motion blur of a
1/22 s exposure at 30 fps, with the sharp centre frames as the reference.

    python samples/make_real_blur_sample.py ../shared/data/highfps/sample_sef_slow_motion.mp4
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2

HERE = Path(__file__).resolve().parent
WINDOW = 11  # frames averaged at 240 fps (GoPro: 7-13)


def write(path: Path, frames: list[Path]) -> None:
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(30))
        first = cv2.imread(str(frames[0]))
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt, stream.options = "yuv444p", {"crf": "12", "preset": "slow"}
        for name in frames:
            rgb = cv2.cvtColor(cv2.imread(str(name)), cv2.COLOR_BGR2RGB)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def main(source: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        pairs = Path(tmp) / "pairs"
        subprocess.run([sys.executable, "-m", "dataset_builder", "build", source, str(pairs), "--window", str(WINDOW),
                        "--val-fraction", "1", "--static-keep", "1", "-q"], check=True)
        write(HERE / "floor_blurred.mp4", sorted((pairs / "val" / "blurry").rglob("*.png")))
        write(HERE / "floor_sharp.mp4", sorted((pairs / "val" / "sharp").rglob("*.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
