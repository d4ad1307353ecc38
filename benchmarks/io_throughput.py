"""Decode-only and encode-only frames/s of the pipeline's reader and writer on a clip.

Every frame is decoded to RGB with ``FrameReader`` (as ``pipeline process`` does), held in
memory, then encoded with ``VideoWriter`` (CRF 18, the given x264 preset): the two ceilings on
end-to-end frames/s whatever the model does. ``--tree`` imports the pipeline from another
checkout instead, to compare commits on the same machine:

    python benchmarks/io_throughput.py clip1080.mp4 --preset medium
    git worktree add /tmp/before c8f231f
    python benchmarks/io_throughput.py clip1080.mp4 --preset medium --tree /tmp/before

Make a clip with e.g. ``ffmpeg -f lavfi -i testsrc2=size=1920x1080:rate=30 -frames:v 90
-c:v libx264 -preset fast -crf 18 -pix_fmt yuv420p clip1080.mp4``. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", type=Path, help="an encoded video (held decoded in memory: keep it short)")
    parser.add_argument("--preset", default="medium", help="x264 preset of the encode-only pass (default medium)")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1],
                        help="checkout whose pipeline package to import (default: this one)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.tree.resolve()))
    from pipeline.video_reader import FrameReader
    from pipeline.config import EncoderSettings
    from pipeline.video_writer import VideoWriter

    reader = FrameReader(args.clip)
    started = time.perf_counter()
    frames = list(reader.frames())
    decode_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        writer = VideoWriter(Path(tmp) / f"out{args.clip.suffix}", reader.info, colour=reader.colour,
                             display_matrix=reader.display_matrix,
                             settings=EncoderSettings(preset=args.preset, crf=18))
        for frame in frames:
            writer.write(frame.rgb, frame.pts)
        written = writer.close()
        encode_s = time.perf_counter() - started
    print(json.dumps({"tree": str(args.tree), "clip": str(args.clip), "frames": len(frames),
                      "decode_fps": round(len(frames) / decode_s, 1),
                      "encode_fps": round(written / encode_s, 1), "preset": args.preset}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
