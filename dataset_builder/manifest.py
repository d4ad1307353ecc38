"""The output folder's bookkeeping: pair records, manifest.jsonl and build.json.

Layout of OUT::

    build.json                    settings of the build; a re-run must match them
    manifest.jsonl                one PairRecord per line, finished sources only
    {train,val}/{blurry,sharp}/<source>/<index>.png
    sources/<source>.jsonl        records of one finished source
    .partial/<source>.jsonl       progress of an unfinished source (for resuming)

A source counts as finished only when ``sources/<source>.jsonl`` exists; it is
written last, atomically, so an interrupted build never looks finished.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataset_builder.errors import BuildError
from dataset_builder.images import write_bytes_atomic

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
BUILD_RECORD_NAME = "build.json"
SOURCES_DIR = "sources"
PARTIAL_DIR = ".partial"
FORMAT_VERSION = 1  # bump when the meaning of a record or of build.json changes
SPLITS = ("train", "val")


@dataclass(frozen=True)
class PairRecord:
    """One blurred/sharp pair; paths are relative to OUT.

    Args:
        split: ``train`` or ``val``; decided per source, never per frame.
        source: the source's name (output folder name).
        index: position of the sharp frame on the source's stride grid.
        sharp: the sharp target, source frame ``sharp_frame``.
        blurry: the blurred frame centred on the sharp one.
        blurry_frames: K blurred frames oldest to newest; the centre one is ``blurry``.
        frames_averaged: source frames contributing to ``blurry`` (with interpolation
            this includes the frames the outer virtual frames were made from).
        sharp_frame: source frame index of the sharp target.
        window: N source frames averaged.
        stride: source frames between consecutive sharp frames.
        fps: the source's capture rate (None when unknown).
        response: camera response undone before averaging.
        interpolate: K samples per source frame time.
        duty_cycle: fraction of the window the shutter was open.
        noise: linear-light noise std added to the blurred side.
        jpeg: JPEG quality applied to the blurred side, or None.
        seed: the build's seed.
        static: the window had almost no motion (kept at --static-keep's rate).
        bit_depth: 8 or 16, both PNGs.
        blurry_psnr: PSNR (dB, RGB, before noise/JPEG) of blurry against sharp.
        source_path: the source file or folder as given.
    """

    split: str
    source: str
    index: int
    sharp: str
    blurry: str
    blurry_frames: list[str]
    frames_averaged: list[int]
    sharp_frame: int
    window: int
    stride: int
    fps: float | None
    response: str
    interpolate: int
    duty_cycle: float
    noise: float
    jpeg: int | None
    seed: int
    static: bool
    bit_depth: int
    blurry_psnr: float
    source_path: str = field(default="")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PairRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def pair_paths(split: str, source: str, index: int) -> tuple[str, str]:
    """(sharp, blurry) paths relative to OUT for grid index ``index``."""
    return (f"{split}/sharp/{source}/{index:06d}.png", f"{split}/blurry/{source}/{index:06d}.png")


def read_records(path: Path) -> list[PairRecord]:
    """Records of a JSONL file (a manifest or a finished source)."""
    with open(path, encoding="utf-8") as fh:
        return [PairRecord.from_dict(json.loads(line)) for line in fh if line.strip()]


def write_records(path: Path, records: list[PairRecord]) -> None:
    """Write records as JSONL, atomically."""
    text = "".join(r.to_json() + "\n" for r in records)
    write_bytes_atomic(path, text.encode("utf-8"))


def write_manifest(out: Path) -> Path:
    """Gather every finished source's records into ``OUT/manifest.jsonl``.

    Records are sorted by split, source and index, so the file does not depend on
    the order in which sources (or Ray tasks) finished.
    """
    out = Path(out)
    records: list[PairRecord] = []
    for part in sorted((out / SOURCES_DIR).glob("*.jsonl")):
        records.extend(read_records(part))
    records.sort(key=lambda r: (SPLITS.index(r.split), r.source, r.index))
    path = out / MANIFEST_NAME
    write_records(path, records)
    return path


def ensure_build_record(out: Path, settings: dict[str, Any]) -> None:
    """Create ``OUT/build.json`` from ``settings``, or check it matches them.

    Safe when several processes (Ray tasks) call it at once: the file is created
    complete or not at all.

    Raises:
        BuildError: OUT was built with other settings, or is a non-empty folder
            that ``build`` did not make.
    """
    out = Path(out)
    record = {"format": FORMAT_VERSION, "settings": settings}
    path = out / BUILD_RECORD_NAME
    if not path.exists():
        if out.exists() and any(p for p in out.iterdir() if p.name != PARTIAL_DIR):
            raise BuildError(f"{out} is not empty and has no {BUILD_RECORD_NAME}; build into a "
                             "new or empty folder")
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".{BUILD_RECORD_NAME}.tmp{os.getpid()}"
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)  # fails if another process created it first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read {path}: {exc}") from exc
    if existing == record:
        return
    old = existing.get("settings", {}) if isinstance(existing, dict) else {}
    changes = [f"{k}: {old.get(k)!r} -> {settings.get(k)!r}"
               for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
    if isinstance(existing, dict) and existing.get("format") != FORMAT_VERSION:
        changes.insert(0, f"format: {existing.get('format')!r} -> {FORMAT_VERSION}")
    raise BuildError(f"{out} was built with other settings ({'; '.join(changes)}); use a new "
                     "output folder, or the same settings to resume")
