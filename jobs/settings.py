"""Fingerprints of the settings that shape a job's outputs, for the ledger.

A ledger entry counts as done only for the same fingerprint: re-running with another model,
codec or quality redoes the videos instead of keeping outputs made another way. Settings that
don't change the output bytes (device, batch size, number of workers) are left out, so a job
can be resumed on another machine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from models.generator import RRDBNet
from pipeline.config import DEFAULT_MODEL_PATH, ProcessConfig

# Bytes read at a time when hashing a checkpoint file.
HASH_CHUNK = 1 << 20


def deblur_fingerprint(config: ProcessConfig, model: RRDBNet | None = None) -> str:
    """A short hash of the model and of the settings that change a deblurred video."""
    fields = {
        "command": "deblur",
        "model": _model_hash(config.model, model),
        "precision": config.precision,
        "tile": config.tile,
        "tile_overlap": config.tile_overlap,
        "encoder": asdict(config.encoder),
    }
    fields["encoder"].pop("threads", None)  # encoder threads don't change the bytes we keep
    if config.strength != 1.0:  # left out at its default, so older ledgers stay valid
        fields["strength"] = config.strength
    return _digest(fields)


def fingerprint(fields: dict) -> str:
    """A short hash of any JSON-able settings."""
    return _digest(fields)


def _model_hash(path: Path | None, model: RRDBNet | None) -> str:
    digest = hashlib.sha256()
    if model is not None:
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    if not path.is_file():
        return f"missing:{path}"  # loading it fails later, with a clear error
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _digest(fields: dict) -> str:
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
