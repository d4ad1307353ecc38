"""Fingerprints of the settings that shape a job's outputs, for the ledger.

A ledger entry counts as done only for the same fingerprint: re-running with another model,
codec or quality redoes the videos instead of keeping outputs made another way. Settings that
don't change the output bytes (device, batch size, number of workers) are left out, so a job
can be resumed on another machine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from models.registry import Generator
from pipeline.config import ProcessConfig, default_model_path
from pipeline.resume import model_fingerprint, output_settings

# Bytes read at a time when hashing a checkpoint file.
HASH_CHUNK = 1 << 20


def deblur_fingerprint(config: ProcessConfig, model: Generator | None = None) -> str:
    """A short hash of the model and of the settings that change a deblurred video."""
    fields = {"command": "deblur", "model": _model_hash(config.model, model),
              **output_settings(config)}
    return _digest(fields)


def fingerprint(fields: dict) -> str:
    """A short hash of any JSON-able settings."""
    return _digest(fields)


def _model_hash(path: Path | None, model: Generator | None) -> str:
    if model is not None:
        return model_fingerprint(model)[:16]
    digest = hashlib.sha256()
    # The shipped models: the video one for videos and frame folders, the image one for images.
    paths = [Path(path)] if path is not None else sorted({default_model_path(video=v) for v in (True, False)})
    for path in paths:
        if not path.is_file():
            return f"missing:{path}"  # loading it fails later, with a clear error
        with path.open("rb") as f:
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _digest(fields: dict) -> str:
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
