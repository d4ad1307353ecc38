"""A contact sheet: blurred and sharp frames side by side, for a person to check.

Each row is one pair: the blurred frame, the sharp frame, and 2x crops of both
around the place where they differ most (where the blur is), so streaks versus
ghost copies can be judged without opening files one by one. Other builds of
the same footage (e.g. with ``--interpolate``) can be added as extra crops of
the same place, to compare settings.

Rows are justified, like a photo gallery's: all are as wide as the widest one at
the asked tile height, and a row whose frames are narrower (a square clip beside
16:9 ones) is made taller instead of leaving a band of background on the right.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from dataset_builder.errors import BuildError
from dataset_builder.images import read_image, to_rgb, write_png
from dataset_builder.manifest import BUILD_RECORD_NAME, MANIFEST_NAME, PairRecord, read_records

log = logging.getLogger(__name__)

CROP_ZOOM = 2  # crops show their pixels twice as large as the full frames do
GAP = 4  # pixels between tiles
BACKGROUND = 24  # dark grey behind the tiles
LABEL_SCALE = 0.42
LABEL_MIN_SCALE = 0.3  # below this Hershey text is unreadable; longer labels are cut
LABEL_BAR = 16  # height of the dark strip a label is written on
LABEL_ALPHA = 0.6


def make_contact_sheet(out: Path, sheet: Path, *, pairs: int = 8, tile_height: int = 180,
                       split: str | None = None, crops: bool = True,
                       compare: Sequence[Path] = ()) -> Path:
    """Write a PNG contact sheet of pairs from ``out``'s manifest.

    Pairs are spread over the sources (round robin) and over each source's clip
    (evenly spaced); static windows are shown only when nothing else is left.

    Args:
        out: a folder made by ``build``.
        sheet: the PNG to write.
        pairs: rows.
        tile_height: height of each tile, pixels.
        split: only ``train`` or ``val`` pairs; both by default.
        crops: add 2x crops around the strongest blur.
        compare: other builds of the same footage; each adds a crop of its blurred
            frame for the same sharp frame (same --window and --stride needed).

    Raises:
        BuildError: no manifest, or no pair to show.
    """
    records = _records(Path(out))
    others = [(_describe(Path(o)), {(r.source, r.sharp_frame): (Path(o), r)
                                    for r in _records(Path(o))}) for o in compare]
    records = [r for r in records if (split is None or r.split == split) and
               all((r.source, r.sharp_frame) in table for _, table in others)]
    chosen = choose_pairs(records, pairs)
    if not chosen:
        raise BuildError(f"{Path(out) / MANIFEST_NAME} has no {split + ' ' if split else ''}"
                         f"pairs to show{' that the compared builds also have' if others else ''}")
    label = _describe(Path(out))
    crop_tiles = 2 + len(others) if crops else 0
    aspects = [_aspect(read_image(Path(out) / r.blurry)) for r in chosen]
    width = max(_row_width(aspect, tile_height, crop_tiles) for aspect in aspects)
    rows = []
    for r, aspect in zip(chosen, aspects):
        extra = [(name, table[(r.source, r.sharp_frame)]) for name, table in others]
        height = round((width - _gaps(crop_tiles)) / (2 * aspect + crop_tiles))
        rows.append(_row(Path(out), r, label, extra, height, width, crops))
    between = np.full((GAP, width, 3), BACKGROUND, np.uint8)
    parts = [part for row in rows for part in (row, between)][:-1]
    write_png(Path(sheet), np.concatenate(parts, axis=0), small=True)
    return Path(sheet)


def choose_pairs(records: list[PairRecord], count: int) -> list[PairRecord]:
    """Up to ``count`` records spread over sources and over each source's length."""
    by_source: dict[str, list[PairRecord]] = defaultdict(list)
    for r in records:
        by_source[r.source].append(r)
    queues = []
    share = max(1, -(-count // max(1, len(by_source))))
    for name in sorted(by_source):
        items = sorted(by_source[name], key=lambda r: r.index)
        moving = [r for r in items if not r.static] or items
        take = min(share, len(moving))
        # Middles of equal stretches: one pick is the middle of the clip, not its start.
        picks = [int((j + 0.5) * len(moving) / take) for j in range(take)]
        queues.append([moving[i] for i in picks])
    chosen: list[PairRecord] = []
    while len(chosen) < count and any(queues):
        for q in queues:
            if q and len(chosen) < count:
                chosen.append(q.pop(0))
    return chosen


def _records(out: Path) -> list[PairRecord]:
    manifest = out / MANIFEST_NAME
    if not manifest.exists():
        raise BuildError(f"{manifest} does not exist; run `build` first (or let it finish)")
    return read_records(manifest)


def _describe(out: Path) -> str:
    """A short name for a build's blur settings, from its build.json."""
    try:
        settings = json.loads((out / BUILD_RECORD_NAME).read_text())["settings"]
    except (OSError, ValueError, KeyError):
        return out.name
    parts = [f"window {settings['window']}"]
    if settings.get("interpolate", 1) > 1:
        parts.append(f"interp {settings['interpolate']}")
    if settings.get("duty_cycle", 1.0) < 1:
        parts.append(f"duty {settings['duty_cycle']:g}")
    return ", ".join(parts)


def _aspect(image: np.ndarray) -> float:
    return image.shape[1] / image.shape[0]


def _gaps(crop_tiles: int) -> int:
    """Pixels of gap in a row: between the two frames and the crops."""
    return (1 + crop_tiles) * GAP


def _row_width(aspect: float, height: int, crop_tiles: int) -> int:
    return 2 * max(1, round(height * aspect)) + crop_tiles * height + _gaps(crop_tiles)


def _row(out: Path, record: PairRecord, label: str,
         others: list[tuple[str, tuple[Path, PairRecord]]], tile_height: int, width: int,
         crops: bool) -> np.ndarray:
    """One pair as a (tile_height, width, 3) row: the frames take what the crops leave."""
    blurry = _to8(to_rgb(read_image(out / record.blurry)))
    sharp = _to8(to_rgb(read_image(out / record.sharp)))
    crop_tiles = 2 + len(others) if crops else 0
    frames_width = width - _gaps(crop_tiles) - crop_tiles * tile_height
    # The two frames share it; rounding may make one a pixel wider than its aspect says.
    sizes = [(max(1, frames_width // 2), tile_height),
             (max(1, frames_width - frames_width // 2), tile_height)]
    tiles = [_label(cv2.resize(blurry, sizes[0], interpolation=cv2.INTER_AREA),
                    f"{record.source} #{record.index}"),
             _label(cv2.resize(sharp, sizes[1], interpolation=cv2.INTER_AREA),
                    f"sharp: frame {record.sharp_frame}; blurred {record.blurry_psnr:.1f} dB")]
    if crops:
        y, x, half = _strongest_blur(blurry, sharp, tile_height // (2 * CROP_ZOOM))
        cut = lambda image: cv2.resize(image[y - half:y + half, x - half:x + half],
                                       (tile_height, tile_height),
                                       interpolation=cv2.INTER_NEAREST)
        tiles.append(_label(cut(blurry), f"{label} 2x"))
        for name, (other_out, other) in others:
            tiles.append(_label(cut(_to8(to_rgb(read_image(other_out / other.blurry)))),
                                f"{name} 2x"))
        tiles.append(_label(cut(sharp), "sharp 2x"))
    gap = np.full((tile_height, GAP, 3), BACKGROUND, np.uint8)
    parts = []
    for tile in tiles:
        parts += [tile, gap]
    return np.concatenate(parts[:-1], axis=1)


def _strongest_blur(blurry: np.ndarray, sharp: np.ndarray, half: int) -> tuple[int, int, int]:
    """Centre (y, x) of the crop where the frames differ most, and its half size."""
    h, w = blurry.shape[:2]
    half = max(4, min(half, h // 2, w // 2))
    diff = np.abs(blurry.astype(np.float32) - sharp.astype(np.float32)).sum(axis=2)
    energy = cv2.boxFilter(diff, -1, (2 * half, 2 * half))
    energy[:half, :] = 0
    energy[h - half:, :] = 0
    energy[:, :half] = 0
    energy[:, w - half:] = 0
    y, x = np.unravel_index(int(np.argmax(energy)), energy.shape)
    return int(min(max(y, half), h - half)), int(min(max(x, half), w - half)), half


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` on a dark strip across the top of ``tile``, shrunk to fit."""
    tile = np.ascontiguousarray(tile)
    bar = tile[:LABEL_BAR].astype(np.float32)
    tile[:LABEL_BAR] = (bar * (1 - LABEL_ALPHA)).astype(np.uint8)
    scale = LABEL_SCALE
    while scale > LABEL_MIN_SCALE and \
            cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > tile.shape[1] - 6:
        scale -= 0.02
    cv2.putText(tile, text, (3, LABEL_BAR - 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _to8(image: np.ndarray) -> np.ndarray:
    return (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image
