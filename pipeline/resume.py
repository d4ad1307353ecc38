"""Resuming a killed run: the finished segments of a video, kept beside its output with what
made them, so the same command run again redoes only the missing ones.

A video cut into keyframe segments (on Ray workers, or in one process for long videos) keeps
its segment files in a hidden folder beside the output, ``.NAME.resume-KEY``, whose KEY is a
fingerprint of everything that decides the output: the input file (path, size, modification
time), the model's weights, the settings that change pixels or encoding, the output's
container and the segment plan. Each segment is recorded (a small JSON beside its file) only
once its file is complete. Running the same command again finds the folder and reuses every
recorded segment; any other command gets another KEY, and a run that starts removes the
folders of other KEYs for its output (their work can't be used). The folder is removed when
the output is complete, or when the video fails with an error (an error means something must
change before the next run); an interrupted or killed run keeps it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from models.registry import Generator
from pipeline.config import ProcessConfig
from pipeline.errors import RunFailedError
from pipeline.segments import Segment, SegmentResult
from unsmear.files import write_bytes_atomic

log = logging.getLogger(__name__)

# Version of the fingerprint and record format: bump when either changes meaning.
FORMAT = 1
KEY_CHARS = 16


def model_fingerprint(model: Generator) -> str:
    """A hash of the generator's architecture and weights."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(model.config), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def output_settings(config: ProcessConfig) -> dict:
    """The settings that change the restored pixels or the encoded video (not the device, the
    batch size, threads or workers), as JSON-able values: for fingerprints of outputs."""
    encoder = dataclasses.asdict(config.encoder)
    encoder.pop("threads", None)
    settings = {"precision": config.precision, "tile": config.tile,
                "tile_overlap": config.tile_overlap, "encoder": encoder}
    if config.strength != 1.0:  # left out at its default, so older fingerprints stay valid
        settings["strength"] = config.strength
    if config.ensemble != 1:
        settings["ensemble"] = config.ensemble
    return settings


def run_key(input_path: Path, output: Path, model_key: str, config: ProcessConfig,
            segments: Iterable[Segment], device: str) -> str:
    """The fingerprint of a run's output (see the module docstring).

    Args:
        device: where the model runs, e.g. "cpu" or "cuda" (with ``config.precision``, it
            decides the arithmetic, and so the restored pixels).
    """
    stat = Path(input_path).stat()
    settings = {
        "format": FORMAT,
        "input": [str(Path(input_path).resolve()), stat.st_size, stat.st_mtime_ns],
        "output": Path(output).suffix.lower(),
        "model": model_key,
        "device": device,
        "settings": output_settings(config),
        "segments": [[s.start_pts, s.end_pts, s.frames] for s in segments],
    }
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHARS]


class ResumeFolder:
    """The hidden folder of one video's finished segments (see the module docstring).

    Args:
        output: the video's final output path.
        key: :func:`run_key` of the run.
    """

    def __init__(self, output: Path, key: str) -> None:
        output = Path(output)
        self.output = output
        # The whole name: clip.mp4 and clip.mov beside each other must not share (or clear)
        # each other's folders.
        self.path = output.with_name(f".{output.name}.resume-{key}")
        self.suffix = output.suffix

    def open(self) -> dict[int, SegmentResult]:
        """Create the folder (removing other runs' folders for this output); return the
        segments already finished here, by index."""
        remove_other_runs(self.output, keep=self.path)
        try:
            self.path.mkdir(exist_ok=True)
        except OSError as exc:
            raise RunFailedError(f"{self.path}: cannot create the folder for finished segments "
                                 f"({exc.strerror})") from exc
        finished = {}
        for record in sorted(self.path.glob("segment-*.json")):
            result = self._read(record)
            if result is not None:
                finished[result.index] = result
        if finished:
            log.warning("%s: resuming: %d segment(s) finished by an earlier run are kept",
                        self.output, len(finished))
        return finished

    def segment_path(self, index: int) -> Path:
        """Where segment ``index`` is written."""
        return self.path / f"segment-{index:05d}{self.suffix}"

    def record(self, result: SegmentResult) -> None:
        """Note ``result`` as finished (after its file is complete), atomically."""
        data = dataclasses.asdict(result)
        data.update(path=Path(result.path).name, size=Path(result.path).stat().st_size)
        write_bytes_atomic(self.path / f"segment-{result.index:05d}.json",
                           (json.dumps(data) + "\n").encode("utf-8"))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _read(self, record: Path) -> SegmentResult | None:
        """A recorded segment whose file is still there and whole, else None."""
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            size = data.pop("size")
            data["path"] = self.path / data["path"]
            result = SegmentResult(**data)
            if result.path.stat().st_size == size and len(result.digests) == result.frames:
                return result
        except (OSError, ValueError, KeyError, TypeError):
            pass
        log.warning("%s: a finished segment's record is damaged; redoing it", record)
        return None


def remove_other_runs(output: Path, *, keep: Path | None = None) -> None:
    """Remove the segment folders other runs of ``output`` kept (but ``keep``): a run with
    other settings or another segment plan (e.g. one worker where the interrupted run had
    two) can't use them, and once it has started nothing else will."""
    output = Path(output)
    pattern = re.compile(rf"\.{re.escape(output.name)}\.resume-[0-9a-f]{{{KEY_CHARS}}}")
    if not output.parent.is_dir():
        return
    for entry in output.parent.iterdir():
        if entry != keep and entry.is_dir() and pattern.fullmatch(entry.name):
            log.info("%s: removing the segments of a run with other settings", entry)
            shutil.rmtree(entry, ignore_errors=True)
