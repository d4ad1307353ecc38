"""The README's before/after crops of real blurred photographs (no sharp reference).

For each photo in FOLDER, the square where the model changed the image most (the same choice
as `pipeline process --compare`), zoomed, as blurred | restored; two photos per row. Real
blur with a sharp reference is shown by `make demo` (`--compare … --reference`).

    python benchmarks/readme_figures.py ../shared/data/blurry [--model FILE] [--crop 192 --zoom 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataset_builder.images import read_image, to_rgb  # noqa: E402
from unsmear.media import IMAGE_EXTENSIONS  # noqa: E402
from models.checkpoint import load_generator  # noqa: E402
from models.data import to_float  # noqa: E402
from pipeline.compare import busiest_crop  # noqa: E402
from pipeline.config import DEFAULT_MODEL_PATH  # noqa: E402

FONT = cv2.FONT_HERSHEY_SIMPLEX


def restore(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float [0, 1] -> restored, same shape (pad to a multiple of 4, crop back)."""
    h, w = image.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    x = torch.nn.functional.pad(x, (0, -w % 4, 0, -h % 4), mode="replicate")
    with torch.inference_mode():
        y = model(x).clamp(0, 1)[0, :, :h, :w]
    return y.permute(1, 2, 0).numpy()


def tile(image: np.ndarray, y: int, x: int, size: int, zoom: int, text: str) -> np.ndarray:
    """A zoomed crop (BGR uint8) under a label band."""
    big = cv2.resize(image[y:y + size, x:x + size], (size * zoom, size * zoom), interpolation=cv2.INTER_NEAREST)
    out = np.ascontiguousarray((np.clip(big, 0, 1) * 255).round().astype(np.uint8)[:, :, ::-1])
    band = np.full((26, out.shape[1], 3), 24, np.uint8)
    cv2.putText(band, text, (6, 18), FONT, 0.5, (235, 235, 235), 1, cv2.LINE_AA)
    return np.concatenate([band, out])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path, help="folder of real blurred photos")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "images" / "real_photos_before_after.jpg")
    parser.add_argument("--crop", type=int, default=192, help="crop side, px (default: %(default)s)")
    parser.add_argument("--zoom", type=int, default=2, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    model = load_generator(args.model).eval()
    tiles = []
    for path in sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS):
        blurry = to_float(to_rgb(read_image(path)))
        restored = restore(model, blurry)
        size = min(args.crop, *blurry.shape[:2])
        y, x = busiest_crop(blurry, restored, size)
        tiles.append(np.concatenate([tile(blurry, y, x, size, args.zoom, f"{path.name}: blurred"),
                                     tile(restored, y, x, size, args.zoom, "unsmear")], axis=1))
    if not tiles:
        parser.error(f"no photos under {args.photos}")
    count = len(tiles)
    if count % 2:
        tiles.append(np.zeros_like(tiles[-1]))
    height, width = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0] + 4), (0, width - t.shape[1] + 4), (0, 0))) for t in tiles]
    sheet = np.concatenate([np.concatenate(tiles[i:i + 2], axis=1) for i in range(0, len(tiles), 2)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), sheet, [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.out} ({count} photos)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
