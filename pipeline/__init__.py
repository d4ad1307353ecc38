"""Deblurring videos (decode with PyAV, restore frames with the generator, re-encode), images
and folders of frames."""

from __future__ import annotations

from unsmear.lazy_exports import lazy_getattr

# Names re-exported here, loaded on first use (PEP 562): importing ``pipeline.cli`` (for
# ``--help``) must not load PyAV or torch.
_EXPORTS = {
    "EncoderSettings": "pipeline.config",
    "PipelineError": "pipeline.errors",
    "ProcessConfig": "pipeline.config",
    "process_images": "pipeline.images",
    "process_video": "pipeline.process",
    "process_video_parallel": "pipeline.parallel",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
