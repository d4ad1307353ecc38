"""The ffmpeg command line, where it is the right tool (joining segments, restating what
PyAV cannot set on a stream): which binary, and how a failure reads."""

from __future__ import annotations

import shutil

import ffmpeg

from pipeline.errors import PipelineError, RunFailedError

# FFmpeg's output on failure is long; the last lines say what went wrong.
FFMPEG_ERROR_LINES = 3
# Every command: no banner, no reading of stdin (a job in the background would stop), errors only.
QUIET_ARGS = ("-hide_banner", "-nostdin", "-loglevel", "error")


def ffmpeg_exe() -> str:
    """The ffmpeg binary: imageio-ffmpeg's (a dependency, so no system ffmpeg is needed), else
    the system's. Looked up when a command needs it: most runs in one pass never do."""
    try:
        import imageio_ffmpeg
    except ImportError:
        found = shutil.which("ffmpeg")
        if found is None:
            raise RunFailedError("no ffmpeg binary: install imageio-ffmpeg (pip install "
                                 "imageio-ffmpeg) or put ffmpeg on the PATH") from None
        return found
    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(command, message: str, error: type[PipelineError] = PipelineError) -> None:  # noqa: ANN001
    """Run an ffmpeg-python command with our binary; raise ``error`` with ``message`` and the
    last lines FFmpeg printed if it fails."""
    try:
        command.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as exc:
        lines = [line for line in exc.stderr.decode(errors="replace").splitlines() if line.strip()]
        detail = " / ".join(lines[-FFMPEG_ERROR_LINES:]) or "no message"
        raise error(f"{message} ({detail})") from exc
