"""Deblurring videos (decode with PyAV, restore frames with the generator, re-encode), images
and folders of frames."""

from pipeline.config import ProcessConfig
from pipeline.errors import PipelineError
from pipeline.config import EncoderSettings


def process_video(*args, **kwargs):
    """Deblur a video file; see :func:`pipeline.process.process_video`."""
    from pipeline.process import process_video as _process_video

    return _process_video(*args, **kwargs)


def process_images(*args, **kwargs):
    """Deblur an image or a folder of numbered frames; see :func:`pipeline.images.process_images`."""
    from pipeline.images import process_images as _process_images

    return _process_images(*args, **kwargs)


def process_video_parallel(*args, **kwargs):
    """Deblur a video on Ray workers; see :func:`pipeline.parallel.process_video_parallel`."""
    from pipeline.parallel import process_video_parallel as _parallel

    return _parallel(*args, **kwargs)


__all__ = ["EncoderSettings", "PipelineError", "ProcessConfig", "process_images",
           "process_video", "process_video_parallel"]
