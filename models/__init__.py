"""unsmear's generator, its checkpoints, and (in sibling modules) training and evaluation.

Never imports video code: ``pipeline`` depends on ``models``, not the other way round.
"""

from .blocks import RRDB, ResidualDenseBlock
from .checkpoint import (
    CheckpointError,
    convert_old_esrgan,
    infer_config,
    load_generator,
    load_trunk,
    read_metadata,
    read_state_dict,
    save_generator,
)
from .generator import GeneratorConfig, RRDBNet

__all__ = [
    "CheckpointError",
    "GeneratorConfig",
    "RRDB",
    "RRDBNet",
    "ResidualDenseBlock",
    "convert_old_esrgan",
    "infer_config",
    "load_generator",
    "load_trunk",
    "read_metadata",
    "read_state_dict",
    "save_generator",
]
