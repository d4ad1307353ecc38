"""Build blurred/sharp training pairs from high-frame-rate footage.

Blur is made the way the DBN, GoPro and REDS datasets made it -- by averaging the
frames around each sharp frame -- but in linear light, optionally through
optical-flow temporal upsampling so fast motion gives streaks instead of ghosts,
with splits by source so no scene leaks between train and validation.

Entry points: ``python -m dataset_builder --help`` and :func:`build_pairs`.
"""

from __future__ import annotations

# cv2 must be loaded before decord: decord's wheel bundles zlib 1.2.3, and if it is
# loaded first OpenCV's libpng binds to it and every cv2.imread of a PNG fails with
# "libpng error: bad parameters to zlib".
import cv2  # noqa: F401  (import order matters, see above)

import importlib

# Names re-exported here, loaded on first use (PEP 562): importing one module of the
# builder (the motion model, the renderer) must not load the frame readers and decord.
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


def __getattr__(name: str):  # noqa: ANN202 - any exported object
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dataset_builder' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
