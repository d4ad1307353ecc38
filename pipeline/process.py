"""Deblurring one video in this process: decode → restore in batches → encode (the stage loop of
:mod:`pipeline.stages`), with a progress bar.

The output is written to a temporary file beside the destination and renamed only when
complete: an interrupted or failed run leaves nothing at the output path. A long video (at
least two RESUME_SEGMENT_FRAMES of keyframe-cut segments, into a container the segments join
in) is restored segment by segment, each kept when finished, and joined at the end, so the
same command after a kill redoes only what is missing (:mod:`pipeline.resume`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from models.registry import Generator
from pipeline.compare import Comparison
from pipeline.config import ProcessConfig
from pipeline.errors import PipelineError, RunFailedError
from pipeline.ordered import conversion_threads
from pipeline.outputs import check_output, remove_dead_leftovers
from pipeline.restorer import Restorer, make_restorer
from pipeline.resume import ResumeFolder, model_fingerprint, remove_other_runs, run_key
from pipeline.segments import (
    SegmentMismatch,
    SegmentTask,
    StraightDecode,
    plan_segments,
    restore_segment,
    scan_keyframes,
)
from pipeline.stages import edge_padded, run_stages
from pipeline.stitch import check_copyable, joinable, stitch
from pipeline.video_reader import FrameReader, VideoInfo, warn_left_out
from pipeline.video_writer import VideoWriter, default_output_suffix
from unsmear.files import replaced_when_done

log = logging.getLogger(__name__)

# A video of at least twice this many frames is restored in keyframe segments of about this
# size, each kept when finished: a killed run loses at most one segment's work (~20 s of video).
RESUME_SEGMENT_FRAMES = 600


@dataclass(frozen=True)
class ProcessResult:
    """What a run produced."""

    output: Path
    frames: int
    seconds: float
    codec: str

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def default_output_path(input_path: Path) -> Path:
    """``clip.mp4`` → ``clip.deblurred.mp4`` beside the input (raw streams get ``.mkv``)."""
    return input_path.with_name(f"{input_path.stem}.deblurred{default_output_suffix(input_path)}")


def process_video(input_path: str | os.PathLike, output: str | os.PathLike | None = None, *,
                  config: ProcessConfig = ProcessConfig(), model: Generator | None = None
                  ) -> ProcessResult:
    """Deblur a video file.

    Args:
        input_path: the video to deblur.
        output: where to write; default ``<stem>.deblurred<ext>`` beside the input.
        config: device, precision, batching, tiling and encoder settings.
        model: a generator to use instead of loading ``config.model``.
    Returns a ProcessResult. Raises PipelineError for bad input or settings, leaving no output.
    """
    input_path = Path(input_path)
    convert_threads = config.convert_threads or conversion_threads()
    reader = FrameReader(input_path, threads=config.decode_threads, hwdec=config.hwdec,
                         convert_threads=convert_threads, accept_damaged=config.accept_damaged)
    output = Path(output) if output is not None else default_output_path(input_path)
    check_output(input_path, output, config.overwrite)
    warn_left_out(reader.info)
    from pipeline.images import is_image  # pipeline.images builds on this module

    if is_image(output):
        raise PipelineError(f"{output}: {output.suffix} holds a picture, not a video; name a video "
                            f"file (.mp4, .mkv, .mov, ...) for the output")
    if config.compare is not None:
        check_output(input_path, Path(config.compare), config.overwrite)
        if Path(config.compare).resolve() == output.resolve():
            raise PipelineError(f"{output}: --compare must name another file than the output")
    restorer = make_restorer(config, model)
    remove_dead_leftovers(output)
    started = time.perf_counter()
    with replaced_when_done(output) as partial:
        done = _run_in_segments(input_path, reader.info, restorer, partial, output, config)
        if done is None:
            remove_other_runs(output)  # one pass: an interrupted segmented run's folder is of no use
        written, codec = done or _run(reader, restorer, partial, output, config, convert_threads)
    result = ProcessResult(output=output, frames=written, seconds=time.perf_counter() - started,
                           codec=codec)
    log.info("%s: %d frames in %.1f s (%.2f fps) → %s", input_path, result.frames,
             result.seconds, result.fps, output)
    return result


def _run(reader: FrameReader, restorer: Restorer, partial: Path, output: Path, config: ProcessConfig,
         convert_threads: int) -> tuple[int, str]:
    info = reader.info

    def open_writer() -> VideoWriter:
        return VideoWriter(partial, info, colour=reader.colour,
                           display_matrix=reader.display_matrix, settings=config.encoder,
                           output_name=output, source_end=lambda: reader.end_pts)

    def open_compare() -> Comparison:
        return Comparison(config.compare, info, colour=reader.colour,
                          display_matrix=reader.display_matrix, settings=config.encoder,
                          reference=config.reference)

    progress = tqdm(total=_expected_frames(info), unit="frame", desc=info.path.name,
                    disable=not config.progress, file=sys.stderr, dynamic_ncols=True)
    restored = 0

    def on_progress(done: int) -> None:
        nonlocal restored
        progress.update(done - restored)
        restored = done

    try:
        writer = run_stages(edge_padded(reader.frames(), restorer.context), restorer, info,
                            open_writer=open_writer,
                            open_compare=open_compare if config.compare is not None else None,
                            queue_frames=config.queue_frames, convert_threads=convert_threads,
                            on_progress=on_progress)
        if writer is None:
            raise PipelineError(f"{info.path}: contains no video frames")
        progress.total = restored  # the estimate, if any, gives way to the true count
        progress.refresh()
    finally:
        progress.close()
    if writer.frames_written != restored:
        raise RunFailedError(f"internal error: restored {restored} frames but wrote "
                             f"{writer.frames_written}")
    return writer.frames_written, writer.codec


def _run_in_segments(input_path: Path, info: VideoInfo, restorer: Restorer, partial: Path,
                     output: Path, config: ProcessConfig) -> tuple[int, str] | None:
    """Restore a long video segment by segment, resuming an earlier run's finished segments,
    and join them into ``partial``; None (nothing written) when the video is better done in
    one pass: short, unsplittable, with --compare, or into a container segments don't join in."""
    if config.compare is not None or info.raw_stream or not joinable(output):
        return None
    scan = scan_keyframes(info, accept_damaged=config.accept_damaged, warn=False)
    segments = plan_segments(scan, scan.frames // RESUME_SEGMENT_FRAMES, context=restorer.context)
    if len(segments) < 2:
        return None  # the one pass's reader checks the whole file, and warns once
    if scan.damage is not None:
        scan.damage.check(info.path, config.accept_damaged)
    folder = ResumeFolder(output, run_key(input_path, output, model_fingerprint(restorer.model),
                                          config, segments, restorer.device.type))
    check_copyable(info, output, output.parent)  # before the folder exists: a refusal leaves nothing
    results = folder.open()
    progress = tqdm(total=scan.frames, unit="frame", desc=info.path.name,
                    initial=sum(r.frames for r in results.values()),
                    disable=not config.progress, file=sys.stderr, dynamic_ncols=True)
    straight = StraightDecode(input_path, config)
    try:
        for segment in segments:
            if segment.index in results:
                continue
            task = SegmentTask(input=input_path, segment=segment, output_name=output,
                               path=folder.segment_path(segment.index), config=config)
            before = progress.n
            result = restore_segment(task, restorer,
                                     on_progress=lambda done: progress.update(before + done - progress.n))
            folder.record(result)
            results[segment.index] = result
        ordered = [results[s.index] for s in segments]
        straight.check(ordered)
        joined = stitch(ordered, info, partial, output_name=output)
    except SegmentMismatch as exc:
        log.warning("%s; processing this video in one pass instead", exc)
        folder.remove()
        return None
    except PipelineError:
        folder.remove()  # an error: the next run needs other input or settings
        raise
    finally:
        straight.stop()
        progress.close()
    folder.remove()
    return joined, results[0].codec


def _expected_frames(info: VideoInfo) -> int | None:
    """The progress bar's total: the header's frame count, else duration × nominal rate (an
    estimate, for the ETA of containers such as Matroska that store no count)."""
    if info.frame_count:
        return info.frame_count
    if info.duration:
        return max(1, round(info.duration * float(info.frame_rate)))
    return None
