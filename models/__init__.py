"""unsmear's generator, its checkpoints, and (in sibling modules) training and evaluation.

Never imports video code: ``pipeline`` depends on ``models``, not the other way round.
"""

from __future__ import annotations

from unsmear.lazy_exports import lazy_getattr

# Names re-exported here, loaded on first use (PEP 562): importing ``models.cli`` (for
# ``--help``) or ``models.errors`` must not load torch.
_EXPORTS = {
    "RRDB": "models.blocks",
    "ResidualDenseBlock": "models.blocks",
    "CheckpointError": "models.errors",
    "convert_old_esrgan": "models.checkpoint",
    "infer_config": "models.checkpoint",
    "load_generator": "models.checkpoint",
    "load_trunk": "models.checkpoint",
    "read_metadata": "models.checkpoint",
    "read_state_dict": "models.checkpoint",
    "save_generator": "models.checkpoint",
    "GeneratorConfig": "models.generator",
    "RRDBNet": "models.generator",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
