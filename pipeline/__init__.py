"""Deblurring videos: decode with PyAV, restore frames with the generator, re-encode."""

from pipeline.config import ProcessConfig
from pipeline.errors import PipelineError
from pipeline.video_writer import EncoderSettings


def process_video(*args, **kwargs):
    """Deblur a video file; see :func:`pipeline.process.process_video`."""
    from pipeline.process import process_video as _process_video

    return _process_video(*args, **kwargs)


def process_video_parallel(*args, **kwargs):
    """Deblur a video on Ray workers; see :func:`pipeline.parallel.process_video_parallel`."""
    from pipeline.parallel import process_video_parallel as _parallel

    return _parallel(*args, **kwargs)


__all__ = ["EncoderSettings", "PipelineError", "ProcessConfig", "process_video",
           "process_video_parallel"]
