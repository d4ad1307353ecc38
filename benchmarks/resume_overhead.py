"""What resumability costs: one long video in one pass vs in keyframe segments joined at the end.

A video of at least 2 x RESUME_SEGMENT_FRAMES frames is restored segment by segment (each kept,
so a killed run resumes) and joined with ffmpeg; this times both ways on the same clip with a
model that costs almost nothing (so the difference is the pipeline's, not the network's), and
checks they write the same frames.

    python benchmarks/resume_overhead.py --frames 1800 --size 640x360 --out resume.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pipeline.process  # noqa: E402
from pipeline import EncoderSettings, ProcessConfig, process_video  # noqa: E402
from pipeline.video_reader import read_timestamps  # noqa: E402
from tests.conftest import make_identity_model  # noqa: E402
from tests.media import make_clip  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1800)
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    model = make_identity_model()
    config = ProcessConfig(progress=False, overwrite=True,
                           encoder=EncoderSettings(preset="ultrafast"))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        clip = make_clip(work / "long.mp4", frames=args.frames, width=width, height=height,
                         fps=30, options={"g": "60"}, audio="aac").path
        seconds = {"one pass": [], "segments": []}
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            for way, segment_frames in (("one pass", 10**9), ("segments", DEFAULT_SEGMENT_FRAMES)):
                pipeline.process.RESUME_SEGMENT_FRAMES = segment_frames
                out = work / f"{way.replace(' ', '_')}.mp4"
                started = time.perf_counter()
                result = process_video(clip, out, config=config, model=model)
                seconds[way].append(time.perf_counter() - started)
                assert result.frames == args.frames
        same_times = read_timestamps(work / "one_pass.mp4") == read_timestamps(work / "segments.mp4")
    best = {way: min(values) for way, values in seconds.items()}
    figures = {"frames": args.frames, "size": args.size, "segment_frames": DEFAULT_SEGMENT_FRAMES,
               "seconds": seconds, "best": best,
               "overhead": best["segments"] / best["one pass"] - 1,
               "same_timestamps": same_times, "machine": platform.platform()}
    print(f"{args.frames} frames {args.size}: one pass {best['one pass']:.1f} s, in segments "
          f"{best['segments']:.1f} s ({figures['overhead']:+.1%}); same timestamps: {same_times}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


DEFAULT_SEGMENT_FRAMES = pipeline.process.RESUME_SEGMENT_FRAMES

if __name__ == "__main__":
    sys.exit(main())
