"""Building pairs: one source at a time, deterministic, resumable.

For every source the sharp frames sit on a grid ``stride`` frames apart; each
grid point gets a blurred frame, the exposure centred on it (see
:mod:`dataset_builder.averaging`). A pair is the grid point's sharp frame and its
blurred frame, plus the K-1 neighbouring blurred frames with ``--frames K``.
Everything random is drawn from generators seeded by (seed, source, grid index),
so results do not depend on the order of work, on resuming, or on the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from dataset_builder.averaging import WindowAverager
from dataset_builder.config import BuildConfig
from dataset_builder.degrade import add_sensor_noise, jpeg_roundtrip
from dataset_builder.errors import BuildError, SourceTooShort
from dataset_builder.flow import FlowInterpolator, guide_from_encoded
from dataset_builder.images import to_rgb, write_png
from dataset_builder.manifest import (PARTIAL_DIR, SOURCES_DIR, PairRecord,
                                      ensure_build_record, pair_paths, read_records,
                                      write_manifest, write_records)
from dataset_builder.response import Response, load_response
from dataset_builder.sources import (FrameReader, SourceInfo, open_source, probe_source,
                                     source_name)
from unsmear.files import write_bytes_atomic

log = logging.getLogger(__name__)

# Independent random streams per pair, so adding noise never shifts static sampling.
STATIC_STREAM = 1
NOISE_STREAM = 2
# Footage slower than this is probably not high-fps (or lacks its capture-rate tag).
LOW_FPS = 100.0
PSNR_CAP = 100.0  # identical images; JSON has no infinity
WRITER_THREADS = 2  # PNG encoding releases the GIL: overlap it with decoding
MAX_PENDING_PAIRS = 8  # bound the memory held by PNGs waiting to be written


@dataclass(frozen=True)
class SourcePlan:
    """Where one source's sharp and blurred frames lie.

    Grid point n sits on source frame ``first_centre + n * stride`` with
    ``first_centre = window // 2`` whatever the interpolation or duty cycle, so
    builds of one footage with different blur settings share their sharp frames
    and indices (and can be compared pair by pair).

    Args:
        stride: source frames between grid points.
        first_centre: source frame of grid point 0.
        first: first grid point whose exposure fits in the source.
        last: last grid point whose exposure fits in the source.
        neighbours: blurred frames on each side of a pair's own (``(frames-1)/2``).
    """

    stride: int
    first_centre: int
    first: int
    last: int
    neighbours: int

    @property
    def pairs(self) -> range:
        """Grid indices that get a pair (their neighbours must exist too)."""
        return range(self.first + self.neighbours,
                     max(self.first + self.neighbours, self.last - self.neighbours + 1))

    def centre(self, index: int) -> int:
        return self.first_centre + index * self.stride


@dataclass(frozen=True)
class BuildSummary:
    """What :func:`build_pairs` did.

    Args:
        out: the output folder.
        manifest: path of manifest.jsonl.
        sources: sources in the manifest (built now or earlier).
        pairs: pairs in the manifest.
        train_pairs: of which in the train split.
        val_pairs: of which in the validation split.
        built_now: sources built (or finished) by this call.
        already_done: sources found finished and left alone.
        skipped: sources skipped as too short (``--skip-short``), with the reason.
        static_dropped: static windows left out by this call.
        seconds: wall time of this call.
    """

    out: Path
    manifest: Path
    sources: int
    pairs: int
    train_pairs: int
    val_pairs: int
    built_now: int
    already_done: int
    skipped: list[str] = field(default_factory=list)
    static_dropped: int = 0
    seconds: float = 0.0


def assign_split(name: str, config: BuildConfig) -> str:
    """``train`` or ``val`` for a source, from its name and the seed alone.

    Each source falls in ``val`` with probability ``val_fraction``, independently
    of the others, so adding footage later never moves an old source across.
    """
    digest = hashlib.sha256(f"{config.seed}:{name}".encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    return "val" if u < config.val_fraction else "train"


def plan_source(info: SourceInfo, config: BuildConfig, span: tuple[int, int]) -> SourcePlan:
    """The grid of sharp frames for ``info``.

    Raises:
        SourceTooShort: the source is too short for the window.
        BuildError: --target-fps needs a frame rate the source does not have.
    """
    stride = config.stride
    if config.target_fps is not None:
        if info.fps is None:
            raise BuildError(f"{info.name}: --target-fps needs the source's frame rate, which "
                             "nothing records; pass --fps")
        stride = round(info.fps / config.target_fps)
        if stride < 1:
            raise BuildError(f"{info.name}: --target-fps {config.target_fps:g} is above the "
                             f"source's {info.fps:g} fps")
    lo, hi = span
    neighbours = (config.frames - 1) // 2
    centre0 = config.window // 2
    first = max(0, -((centre0 + lo) // stride))  # ceil((-lo - centre0) / stride)
    last = (info.num_frames - 1 - hi - centre0) // stride
    plan = SourcePlan(stride=stride, first_centre=centre0, first=first, last=last,
                      neighbours=neighbours)
    if len(plan.pairs) == 0:
        need = (first + 2 * neighbours) * stride + centre0 + hi + 1
        what = f"--window {config.window}"
        if config.interpolate > 1:
            what += f" with --interpolate (reads {hi - lo + 1} frames)"
        if neighbours:
            what += f", --frames {config.frames} and --stride {stride}"
        raise SourceTooShort(f"{info.name} has {info.num_frames} frames, too few for {what}: "
                             f"it needs at least {need}")
    return plan


def build_pairs(sources: Sequence[Path], out: Path, config: BuildConfig, *,
                progress: bool = True, root: Path | None = None) -> BuildSummary:
    """Build pairs from every source into ``out`` and write its manifest.

    All sources are probed before anything is written, so bad input fails fast.
    Sources already finished in ``out`` are left alone; an unfinished one resumes.

    Args:
        sources: video files and frame folders (see :func:`find_sources`).
        out: output folder; created, or a previous build's with the same settings.
        config: the build settings.
        progress: show a progress bar on stderr.
        root: folder the sources were found under; names then keep sub-folders.

    Raises:
        BuildError: bad input or options, in one line.
    """
    started = time.monotonic()
    out = Path(out)
    response = load_response(config.response)
    named = _unique_names(sources, root)
    infos = [probe_source(path, name=name, fps=config.fps) for path, name in named]
    averager = _averager(config)
    plans: list[tuple[SourceInfo, SourcePlan]] = []
    skipped = []
    for info in infos:
        try:
            plans.append((info, plan_source(info, config, averager.span)))
        except SourceTooShort as exc:
            if not config.skip_short:
                raise
            log.warning("skipping %s", exc)
            skipped.append(str(exc))
    ensure_build_record(out, build_settings(config, response))
    todo = [(i, p) for i, p in plans if not already_built(out, i.name, i.path)]
    total = sum(len(p.pairs) for _, p in todo)
    dropped = 0
    with tqdm(total=total, unit="pair", disable=not progress, dynamic_ncols=True,
              desc="build") as bar:
        for info, plan in todo:
            bar.set_postfix_str(info.name, refresh=False)
            result = _SourceBuilder(info, plan, out, config, response,
                                    assign_split(info.name, config), bar).run()
            dropped += result
    manifest = write_manifest(out)
    records = read_records(manifest)
    splits = {r.source: r.split for r in records}
    # Each source is drawn independently: with few sources no val split is normal.
    if "val" not in splits.values() and config.val_fraction * len(splits) >= 1:
        log.warning("no source fell in the validation split (%d sources, --val-fraction %g); "
                    "add sources or raise --val-fraction", len(splits), config.val_fraction)
    return BuildSummary(
        out=out, manifest=manifest, sources=len(splits), pairs=len(records),
        train_pairs=sum(r.split == "train" for r in records),
        val_pairs=sum(r.split == "val" for r in records),
        built_now=len(todo), already_done=len(plans) - len(todo), skipped=skipped,
        static_dropped=dropped, seconds=time.monotonic() - started)


def build_source(source: Path, out: Path, config: BuildConfig, split: str | None = None, *,
                 name: str | None = None, progress: bool = False) -> list[PairRecord]:
    """Build the pairs of one source (one Ray task); idempotent and resumable.

    Call :func:`write_manifest` once all sources are done to (re)write
    ``OUT/manifest.jsonl``.

    Args:
        source: a video file or frame folder.
        out: the output folder shared by all sources of the build.
        config: the build settings; must match ``OUT/build.json`` if it exists.
        split: ``train`` or ``val``; defaults to :func:`assign_split`.
        name: the source's name in OUT; defaults to :func:`source_name`.
        progress: show a progress bar on stderr.

    Returns:
        The source's records (its kept pairs), whether built now or earlier.
    """
    out = Path(out)
    response = load_response(config.response)
    info = probe_source(Path(source), name=name, fps=config.fps)
    split = split or assign_split(info.name, config)
    if split not in ("train", "val"):
        raise BuildError(f"split must be 'train' or 'val' (got {split!r})")
    plan = plan_source(info, config, _averager(config).span)
    ensure_build_record(out, build_settings(config, response))
    done = out / SOURCES_DIR / f"{info.name}.jsonl"
    if not already_built(out, info.name, info.path):
        with tqdm(total=len(plan.pairs), unit="pair", disable=not progress,
                  desc=info.name) as bar:
            _SourceBuilder(info, plan, out, config, response, split, bar).run()
    return read_records(done)


def _built_from(done: Path) -> Path | None:
    """The source a finished source's pairs were built from, where it can still be found."""
    with open(done, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                stored = Path(json.loads(line).get("source_path") or "")
                return stored.resolve() if stored.name and stored.exists() else None
    return None


def already_built(out: Path, name: str, path: Path) -> bool:
    """Whether the pairs of source ``path`` (named ``name`` in ``out``) are already there.
    Raises BuildError when its name is taken by another source's pairs (two cards' clip.mp4
    into one folder): they would be skipped as done."""
    done = Path(out) / SOURCES_DIR / f"{name}.jsonl"
    source = Path(path).resolve()
    if done.exists():
        built_from = _built_from(done)
        if built_from is not None and built_from != source:
            raise BuildError(f"{out} already holds pairs named {name!r}, built from "
                             f"{built_from}; {path} has the same name: build it into "
                             f"another folder, or rename it")
        _warn_if_changed(done, source)
        return True
    for other in sorted((Path(out) / SOURCES_DIR).glob("*.jsonl")):
        if _built_from(other) == source:  # the same footage under another name (another root)
            log.warning("%s: already built as %r; skipped", path, other.stem)
            return True
    return False


def _fingerprint_path(done: Path) -> Path:
    """Beside a finished source's records: the size and modification time it was built from."""
    return done.with_suffix(".source.json")


def _fingerprint(path: Path) -> dict[str, int]:
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _warn_if_changed(done: Path, source: Path) -> None:
    """Warn when a finished source's file changed since its pairs were built (re-rendered with
    other settings, re-exported): they are kept, as pairs of the old file."""
    try:
        then = json.loads(_fingerprint_path(done).read_text(encoding="utf-8"))
        now = _fingerprint(source)
    except (OSError, ValueError):  # built before fingerprints were kept, or gone
        return
    if then != now:
        log.warning("%s: changed since its pairs were built (size or modification time); its "
                    "pairs are of the old file: delete %s to build them again", source, done)


def _unique_names(sources: Sequence[Path], root: Path | None) -> list[tuple[Path, str]]:
    named = [(Path(s), source_name(Path(s), root)) for s in sources]
    seen: dict[str, Path] = {}
    for path, name in named:
        if name in seen:
            raise BuildError(f"{seen[name]} and {path} would both be named {name!r}; rename one")
        seen[name] = path
    return named


def _averager(config: BuildConfig) -> WindowAverager:
    interpolator = FlowInterpolator(preset=config.flow_preset) if config.interpolate > 1 else None
    return WindowAverager(window=config.window, interpolate=config.interpolate,
                          duty_cycle=config.duty_cycle, interpolator=interpolator)


def build_settings(config: BuildConfig, response: Response) -> dict[str, Any]:
    """What build.json records: every setting that changes the pairs' bytes."""
    return {**config.output_fields(), **response.describe()}


def _rng(config: BuildConfig, name: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, zlib.crc32(name.encode("utf-8")), index, stream])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    top = float(np.iinfo(a.dtype).max)
    squared = cv2.norm(a, b, cv2.NORM_L2SQR)
    mse = squared / (a.size * top * top)
    return PSNR_CAP if mse <= 0 else min(PSNR_CAP, 10.0 * math.log10(1.0 / mse))


class _Frames:
    """The source frames around the current window: encoded, linear and grey."""

    def __init__(self, reader: FrameReader, response: Response):
        self._reader = reader
        self._response = response
        self._encoded: dict[int, np.ndarray] = {}
        self._linear: dict[int, np.ndarray] = {}
        self._guide: dict[int, np.ndarray] = {}

    def load(self, lo: int, hi: int) -> bool:
        """Make frames lo..hi available, dropping older ones; False if the source ends first."""
        for cache in (self._encoded, self._linear, self._guide):
            for i in [i for i in cache if i < lo]:
                del cache[i]
        missing = [i for i in range(lo, hi + 1) if i not in self._encoded]
        if missing:
            start, stop = missing[0], missing[-1] + 1
            frames = self._reader.read(start, stop)
            for offset, frame in enumerate(frames):
                self._encoded[start + offset] = frame
        return all(i in self._encoded for i in range(lo, hi + 1))

    def encoded(self, index: int) -> np.ndarray:
        return self._encoded[index]

    def linear(self, index: int) -> np.ndarray:
        if index not in self._linear:
            self._linear[index] = self._response.to_linear(self._encoded[index])
        return self._linear[index]

    def guide(self, index: int) -> np.ndarray:
        if index not in self._guide:
            self._guide[index] = guide_from_encoded(self._encoded[index])
        return self._guide[index]


class _Writer:
    """Writes PNGs on a thread pool; appends a pair's progress line only once all
    of its files are complete, in order, so a resume never trusts a missing file."""

    def __init__(self, progress_path: Path):
        self._pool = ThreadPoolExecutor(max_workers=WRITER_THREADS,
                                        thread_name_prefix="png-writer")
        self._progress_path = progress_path
        self._pending: deque[tuple[str, list[Future]]] = deque()
        progress_path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(progress_path, "a", encoding="utf-8")

    def png(self, path: Path, image: np.ndarray) -> Future:
        return self._pool.submit(write_png, path, image)

    def commit(self, line: str, futures: list[Future]) -> None:
        self._pending.append((line, futures))
        self._drain(block=len(self._pending) > MAX_PENDING_PAIRS)

    def _drain(self, *, block: bool) -> None:
        while self._pending:
            line, futures = self._pending[0]
            if not block and not all(f.done() for f in futures):
                return
            for f in futures:
                f.result()  # re-raises a failed write
            self._fh.write(line + "\n")
            self._pending.popleft()
            block = block and len(self._pending) > MAX_PENDING_PAIRS
        self._fh.flush()

    def close(self, *, ok: bool) -> None:
        """Finish the queued writes. After a failure elsewhere (``ok`` False, an
        exception already on its way) the pairs whose files did get written are
        still recorded, so a resume does not redo them; the first failed write
        stops that, and its error is left to the exception already raised."""
        try:
            self._pool.shutdown(wait=True)
            while self._pending:
                line, futures = self._pending[0]
                if not ok and any(f.exception() is not None for f in futures):
                    break
                self._drain(block=True)
        finally:
            self._fh.close()


class _SourceBuilder:
    """Builds one source; see :func:`build_source`."""

    def __init__(self, info: SourceInfo, plan: SourcePlan, out: Path, config: BuildConfig,
                 response: Response, split: str, bar: tqdm):
        self.info, self.plan, self.out, self.config = info, plan, out, config
        self.response, self.split, self.bar = response, split, bar
        self.averager = _averager(config)
        self.progress_path = out / PARTIAL_DIR / f"{info.name}.jsonl"
        self.done_path = out / SOURCES_DIR / f"{info.name}.jsonl"

    def run(self) -> int:
        """Build, then mark the source finished. Returns static windows dropped."""
        self._warn_about_rate()
        emitted = self._read_progress()
        last = max(emitted, default=-1)
        self.bar.update(len(emitted))
        reader = open_source(self.info)
        writer = _Writer(self.progress_path)
        ok = False
        try:
            dropped = self._loop(reader, writer, last)
            ok = True
        finally:
            writer.close(ok=ok)
            reader.close()
        records = [r for r in self._read_progress().values() if r is not None]
        if not records and not self._read_progress():
            raise BuildError(f"{self.info.name}: the video ended after fewer frames than its "
                             "header says, too few for one pair")
        write_records(self.done_path, sorted(records, key=lambda r: r.index))
        write_bytes_atomic(_fingerprint_path(self.done_path), json.dumps(_fingerprint(self.info.path)).encode())
        self.progress_path.unlink()
        # Tidy up the empty folder; another process (Ray task) may be filling it again.
        with contextlib.suppress(OSError):
            self.progress_path.parent.rmdir()
        log.info("%s: %d pairs (%s), %d static windows left out", self.info.name, len(records),
                 self.split, dropped)
        return dropped

    def _warn_about_rate(self) -> None:
        info = self.info
        if info.fps is None:
            log.warning("%s: frame rate unknown (the manifest records null); pass --fps",
                        info.name)
        elif info.fps < LOW_FPS and info.fps_origin == "container":
            log.warning("%s is stored at %.3g fps with no capture-rate tag: if it is slow motion "
                        "pass its capture rate with --fps; averaging low-fps footage ghosts",
                        info.name, info.fps)

    def _read_progress(self) -> dict[int, PairRecord | None]:
        """Grid index -> record (None: window left out) of pairs already emitted."""
        emitted: dict[int, PairRecord | None] = {}
        if not self.progress_path.exists():
            return emitted
        with open(self.progress_path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    item = json.loads(line)
                except ValueError:
                    break  # the line being written when the build was interrupted
                record = item.get("record")
                emitted[item["index"]] = PairRecord.from_dict(record) if record else None
        return emitted

    def _loop(self, reader: FrameReader, writer: _Writer, last: int) -> int:
        """Blur every grid point after ``last``; returns static windows left out."""
        plan, config, r = self.plan, self.config, self.plan.neighbours
        lo, hi = self.averager.span
        frames = _Frames(reader, self.response)
        blurred: dict[int, np.ndarray] = {}
        sharp: dict[int, np.ndarray] = {}
        keep: dict[int, tuple[bool, bool, float]] = {}
        written: set[int] = set()
        dropped = 0
        for n in range(max(plan.first, last + 1 - r), plan.last + 1):
            centre = plan.centre(n)
            if not frames.load(centre + lo, centre + hi):
                log.warning("%s ended at frame %d, before the %d its header announced",
                            self.info.name, centre + hi, self.info.num_frames)
                break
            linear = self.averager.blur(centre, frames.linear, frames.guide)
            clean = self.response.from_linear(linear, self.info.dtype)
            sharp[n] = frames.encoded(centre)
            psnr = _psnr(clean, sharp[n])
            static = psnr >= config.static_psnr
            kept = not static or _rng(config, self.info.name, n, STATIC_STREAM).random() < \
                config.static_keep
            keep[n] = (static, kept, psnr)
            blurred[n] = self._degrade(linear, clean, n)
            for old in [k for k in blurred if k < n - 2 * r]:
                del blurred[old], sharp[old], keep[old]
            m = n - r
            if m in plan.pairs and m > last:
                record = self._emit(m, blurred, sharp[m], keep[m], writer, written)
                dropped += record is None
                self.bar.update(1)
        return dropped

    def _degrade(self, linear: np.ndarray, clean: np.ndarray, n: int) -> np.ndarray:
        config = self.config
        if config.noise <= 0 and config.jpeg is None:
            return clean
        encoded = clean
        if config.noise > 0:
            rng = _rng(config, self.info.name, n, NOISE_STREAM)
            encoded = self.response.from_linear(add_sensor_noise(linear, config.noise, rng),
                                                self.info.dtype)
        if config.jpeg is not None:
            encoded = jpeg_roundtrip(encoded, config.jpeg)
        return encoded

    def _emit(self, m: int, blurred: dict[int, np.ndarray], sharp: np.ndarray,
              decision: tuple[bool, bool, float], writer: _Writer,
              written: set[int]) -> PairRecord | None:
        static, kept, psnr = decision
        if not kept:
            writer.commit(json.dumps({"index": m, "record": None}), [])
            return None
        plan, config, name = self.plan, self.config, self.info.name
        futures = []
        sharp_rel, _ = pair_paths(self.split, name, m)
        futures.append(writer.png(self.out / sharp_rel, to_rgb(sharp)))
        blurry_frames = []
        for n in range(m - plan.neighbours, m + plan.neighbours + 1):
            rel = pair_paths(self.split, name, n)[1]
            blurry_frames.append(rel)
            if n not in written and not (self.out / rel).exists():
                futures.append(writer.png(self.out / rel, to_rgb(blurred[n])))
            written.add(n)
        centre = plan.centre(m)
        record = PairRecord(
            split=self.split, source=name, index=m, sharp=sharp_rel,
            blurry=blurry_frames[plan.neighbours], blurry_frames=blurry_frames,
            frames_averaged=self.averager.frames_used(centre), sharp_frame=centre,
            window=config.window, stride=plan.stride, fps=self.info.fps,
            response=self.response.name, interpolate=config.interpolate,
            duty_cycle=config.duty_cycle, noise=config.noise, jpeg=config.jpeg,
            seed=config.seed, static=static, bit_depth=self.info.bit_depth,
            blurry_psnr=round(psnr, 3), source_path=str(self.info.path))
        writer.commit(json.dumps({"index": m, "record": json.loads(record.to_json())}), futures)
        return record
