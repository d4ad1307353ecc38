"""Build blurred/sharp training pairs from high-frame-rate footage.

Blur is made the way the DBN, GoPro and REDS datasets made it -- by averaging the
frames around each sharp frame -- but in linear light, optionally through
optical-flow temporal upsampling so fast motion gives streaks instead of ghosts,
with splits by source so no scene leaks between train and validation.

Entry points: ``python -m dataset_builder --help`` and :func:`build_pairs`.
"""

from __future__ import annotations

from unsmear.lazy_exports import lazy_getattr

# Names re-exported here, loaded on first use (PEP 562): importing one module of the
# builder (the motion model, the renderer, the CLI for --help) must not load OpenCV,
# the frame readers and decord. dataset_builder.sources, the one importer of decord,
# loads OpenCV before it.
_EXPORTS = {
    "BuildSummary": "dataset_builder.build",
    "assign_split": "dataset_builder.build",
    "build_pairs": "dataset_builder.build",
    "build_source": "dataset_builder.build",
    "write_manifest": "dataset_builder.build",
    "BuildConfig": "dataset_builder.config",
    "RenderConfig": "dataset_builder.config",
    "BuildError": "dataset_builder.errors",
    "SourceTooShort": "dataset_builder.errors",
    "find_sources": "dataset_builder.sources",
    "probe_source": "dataset_builder.sources",
    "source_name": "dataset_builder.sources",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
