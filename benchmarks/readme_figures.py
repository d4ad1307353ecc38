"""The README's before/after pictures: zoomed crops of real blur, blurred | restored (| sharp).

Two figures, made with the model `pipeline process` uses (or --model):

* ``--real-pairs PAIRS``: pairs built from real high-fps footage (dataset_builder build), whose
  sharp frames are known: for the N pairs with the largest gain, a crop where the restored frame
  changed most, zoomed, as blurred | restored | sharp, each labelled with the crop's PSNR;
* ``--photos FOLDER``: real blurred photographs (no sharp reference), as blurred | restored crops.

    python benchmarks/readme_figures.py --real-pairs PAIRS --photos ../shared/data/blurry \\
        --out docs/images [--model FILE] [--crop 96 --zoom 3]
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

from dataset_builder.images import IMAGE_SUFFIXES, read_image  # noqa: E402
from models.checkpoint import load_generator  # noqa: E402
from models.data import load_pair, read_manifest, to_float  # noqa: E402
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


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 100.0 if mse == 0 else 10 * np.log10(1.0 / mse)


def tile(image: np.ndarray, y: int, x: int, size: int, zoom: int, text: str) -> np.ndarray:
    crop = image[y:y + size, x:x + size]
    big = cv2.resize(crop, (size * zoom, size * zoom), interpolation=cv2.INTER_NEAREST)
    out = np.ascontiguousarray((np.clip(big, 0, 1) * 255).round().astype(np.uint8)[:, :, ::-1])
    band = np.full((26, out.shape[1], 3), 24, np.uint8)
    cv2.putText(band, text, (6, 18), FONT, 0.5, (235, 235, 235), 1, cv2.LINE_AA)
    return np.concatenate([band, out])


def real_pairs_figure(model, pairs: Path, out: Path, *, rows: int, size: int, zoom: int) -> list[float]:
    records = read_manifest(pairs)
    scored = []
    for record in records:
        pair = load_pair(record, 1)
        blurry, sharp = to_float(pair.blurry_frames[0]), to_float(pair.sharp)
        restored = restore(model, blurry)
        scored.append((psnr(restored, sharp) - psnr(blurry, sharp), blurry, restored, sharp))
    gains = [s[0] for s in scored]
    lines = []
    for _, blurry, restored, sharp in sorted(scored, key=lambda s: -s[0])[:rows]:
        y, x = busiest_crop(blurry, restored, min(size, *blurry.shape[:2]))
        s = min(size, *blurry.shape[:2])
        crops = [(blurry, "blurred"), (restored, "unsmear"), (sharp, "sharp")]
        lines.append(np.concatenate([
            tile(img, y, x, s, zoom, f"{label} {psnr(img[y:y + s, x:x + s], sharp[y:y + s, x:x + s]):.2f} dB"
                 if label != "sharp" else label) for img, label in crops], axis=1))
    cv2.imwrite(str(out), _stack(lines))
    return gains


def photos_figure(model, folder: Path, out: Path, *, size: int, zoom: int) -> None:
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        image = read_image(path)
        image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
        blurry = to_float(image)
        restored = restore(model, blurry)
        y, x = busiest_crop(blurry, restored, size)
        lines.append(np.concatenate([tile(blurry, y, x, size, zoom, f"{path.name}: blurred"),
                                     tile(restored, y, x, size, zoom, "unsmear")], axis=1))
    pairs = [np.concatenate(lines[i:i + 2], axis=1) if i + 1 < len(lines) else
             np.pad(lines[i], ((0, 0), (0, lines[i].shape[1]), (0, 0))) for i in range(0, len(lines), 2)]
    cv2.imwrite(str(out), _stack(pairs), [cv2.IMWRITE_JPEG_QUALITY, 88])


def _stack(lines: list[np.ndarray]) -> np.ndarray:
    width = max(line.shape[1] for line in lines)
    return np.concatenate([np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0))) for line in lines])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--real-pairs", type=Path, help="pairs from real high-fps footage")
    parser.add_argument("--photos", type=Path, help="folder of real blurred photos")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--zoom", type=int, default=3)
    args = parser.parse_args(argv)
    model = load_generator(args.model).eval()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.real_pairs:
        gains = real_pairs_figure(model, args.real_pairs, args.out / "real_blur_before_after.png",
                                  rows=args.rows, size=args.crop, zoom=args.zoom)
        print(f"real pairs: mean gain {np.mean(gains):+.2f} dB over {len(gains)} pairs "
              f"(min {min(gains):+.2f}, max {max(gains):+.2f})")
    if args.photos:
        photos_figure(model, args.photos, args.out / "real_photos_before_after.jpg", size=args.crop * 2,
                      zoom=max(1, args.zoom - 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
