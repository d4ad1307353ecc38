"""More real validation pairs from one short high-fps clip: its frames at several phases.

``dataset_builder build`` centres its sharp frames on a fixed grid (``window // 2 + n *
stride``), so a 63-frame 240 fps clip gives 4 five-frame pairs. This writes the clip's frames,
decoded as the builder decodes them, into one numbered-frame folder per offset (the first
``offset`` frames dropped), which the builder then reads as sources of their own: the grid
lands on other frames, and the same footage gives several times the pairs (overlapping
windows: use them for validation, not as independent samples). Offset 0 reproduces the plain
build byte for byte.

    python benchmarks/phase_frames.py ../shared/data/highfps/sample_sef_slow_motion.mp4 phases/sef --offsets 0,2,4,6
    python -m dataset_builder build phases/sef REALP_SEF --fps 240 --window 7 --stride 8 --frames 5 \\
        --val-fraction 1 --static-keep 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataset_builder.sources import open_source, probe_source  # noqa: E402


def write_phases(source: Path, out: Path, offsets: list[int]) -> list[Path]:
    """One folder of PNG frames per offset, ``<stem>_pNN``; returns the folders."""
    info = probe_source(source)
    reader = open_source(info)
    try:
        frames = reader.read(0, info.num_frames)  # (n, H, W, 3) RGB, uint8 or uint16
    finally:
        reader.close()
    folders = []
    for offset in offsets:
        if not 0 <= offset < len(frames):
            raise SystemExit(f"offset {offset} is outside the clip's {len(frames)} frames")
        folder = out / f"{source.stem}_p{offset:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames[offset:]):
            cv2.imwrite(str(folder / f"{i:06d}.png"), frame[..., ::-1])  # PNG keeps 16 bits
        folders.append(folder)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a video or a folder of numbered frames")
    parser.add_argument("out", type=Path, help="folder for the <stem>_pNN frame folders")
    parser.add_argument("--offsets", default="0,2,4,6", help="frames dropped at the start, one folder each")
    args = parser.parse_args()
    offsets = [int(x) for x in args.offsets.split(",")]
    for folder in write_phases(args.source, args.out, offsets):
        print(folder)


if __name__ == "__main__":
    main()
