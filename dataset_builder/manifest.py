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
from unsmear.files import write_bytes_atomic

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
BUILD_RECORD_NAME = "build.json"
SOURCES_DIR = "sources"
PARTIAL_DIR = ".partial"
FORMAT_VERSION = 1  # bump when the meaning of a record or of build.json changes
SPLITS = ("train", "val")


class ManifestError(ValueError):
    """A manifest line that is not a pair record (the message names the file and line)."""


@dataclass(frozen=True)
class PairRecord:
    """One blurred/sharp pair: one line of ``manifest.jsonl``. The one definition of the pair
    format: the builder writes it, ``models`` reads it (and so may any tool that makes pairs,
    giving only the first five fields).

    Paths are relative to OUT as written; :func:`read_manifest` resolves them against the
    folder it reads.

    Args:
        split: ``train`` or ``val``; decided per source, never per frame.
        source: the source's name (output folder name).
        index: position of the sharp frame on the source's stride grid.
        sharp: the sharp target, source frame ``sharp_frame``.
        blurry: the blurred frame centred on the sharp one.
        blurry_frames: K blurred frames oldest to newest (K odd); the centre one is
            ``blurry``. Empty = just ``blurry``.
        static: the window had almost no motion (kept at --static-keep's rate).
        bit_depth: 8 or 16, both PNGs.
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
        blurry_psnr: PSNR (dB, RGB, before noise/JPEG) of blurry against sharp.
        source_path: the source file or folder as given.
    """

    split: str
    source: str
    index: int
    sharp: str
    blurry: str
    blurry_frames: list[str] = field(default_factory=list)
    static: bool = False
    bit_depth: int = 8
    # How the pair was made (the builder fills these; other tools may leave them out).
    frames_averaged: list[int] = field(default_factory=list)
    sharp_frame: int = -1
    window: int = 0
    stride: int = 0
    fps: float | None = None
    response: str = ""
    interpolate: int = 1
    duty_cycle: float = 1.0
    noise: float = 0.0
    jpeg: int | None = None
    seed: int = 0
    blurry_psnr: float = 0.0
    source_path: str = ""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ManifestError(f"split must be one of {SPLITS}, got {self.split!r}")
        frames = self.blurry_frames or [self.blurry]
        if len(frames) % 2 == 0 or frames[len(frames) // 2] != self.blurry:
            raise ManifestError("blurry_frames must have an odd count with 'blurry' in the centre")
        if self.bit_depth not in (8, 16):
            raise ManifestError(f"bit_depth must be 8 or 16, got {self.bit_depth}")
        object.__setattr__(self, "blurry_frames", list(frames))

    def frames_for(self, in_frames: int) -> list[str]:
        """The ``in_frames`` blurred frames centred on ``blurry``, oldest→newest."""
        available = len(self.blurry_frames)
        if in_frames > available:
            raise ManifestError(
                f"pair {self.source}#{self.index} has {available} blurred frame(s) but the model "
                f"takes {in_frames}; build the pairs with at least {in_frames} frames per sample")
        start = available // 2 - in_frames // 2
        return self.blurry_frames[start:start + in_frames]

    def resolved(self, root: Path) -> PairRecord:
        """This record with its image paths made absolute against ``root``."""
        return dataclasses.replace(self, sharp=str(root / self.sharp), blurry=str(root / self.blurry),
                                   blurry_frames=[str(root / name) for name in self.blurry_frames])

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairRecord:
        """A record from its JSON object; unknown keys (from newer builders) are ignored.
        Raises ManifestError for a missing field or a value of the wrong kind."""
        missing = [key for key in REQUIRED_FIELDS if key not in data]
        if missing:
            raise ManifestError(f"missing field(s) {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ManifestError(str(exc)) from exc


# What a line must hold; the rest describes how the pair was made.
REQUIRED_FIELDS = ("split", "source", "index", "sharp", "blurry")


def pair_paths(split: str, source: str, index: int) -> tuple[str, str]:
    """(sharp, blurry) paths relative to OUT for grid index ``index``."""
    return (f"{split}/sharp/{source}/{index:06d}.png", f"{split}/blurry/{source}/{index:06d}.png")


def read_records(path: Path) -> list[PairRecord]:
    """Records of a JSONL file (a manifest or a finished source), paths as written.

    Raises ManifestError naming the file and line of a malformed record."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                records.append(PairRecord.from_dict(json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            except ManifestError as exc:
                raise ManifestError(f"{path}:{number}: {exc}") from exc
    return records


def read_manifest(pairs_dir: str | Path, *, split: str | None = None) -> list[PairRecord]:
    """The pairs of a pairs folder, paths resolved against it.

    Args:
        pairs_dir: a folder written by the builder (or any tool that writes the format).
        split: keep only "train" or "val" pairs; None keeps all.
    Raises ManifestError: no manifest, a malformed line, or no pair in the requested split.
    """
    root = Path(pairs_dir)
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        raise ManifestError(f"{root} is not a pairs folder: {MANIFEST_NAME} not found")
    if split is not None and split not in SPLITS:
        raise ManifestError(f"split must be one of {SPLITS} or None, got {split!r}")
    records = [r.resolved(root) for r in read_records(manifest)
               if split is None or r.split == split]
    if not records:
        raise ManifestError(f"{manifest} has no {split + ' ' if split else ''}pairs")
    return records


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
    if out.exists() and not out.is_dir():
        raise BuildError(f"{out} is a file, not a folder: give a new or empty folder for the pairs")
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
