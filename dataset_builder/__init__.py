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

from dataset_builder.build import (
    BuildSummary,
    assign_split,
    build_pairs,
    build_source,
    write_manifest,
)
from dataset_builder.config import BuildConfig, RenderConfig
from dataset_builder.errors import BuildError, SourceTooShort
from dataset_builder.sources import find_sources, probe_source, source_name

__all__ = [
    "BuildConfig",
    "BuildError",
    "BuildSummary",
    "RenderConfig",
    "SourceTooShort",
    "assign_split",
    "build_pairs",
    "build_source",
    "find_sources",
    "probe_source",
    "source_name",
    "write_manifest",
]
