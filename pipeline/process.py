"""Deblurring one video: decode → restore in batches → encode, as three overlapped stages.

Decoding and encoding run in their own threads (PyAV releases the GIL while FFmpeg works), with
bounded queues between the stages, so the model never waits on I/O and memory stays flat
however long the video. The output is written to a temporary file beside the destination and
renamed only when complete: an interrupted or failed run leaves nothing at the output path.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.checkpoint import CheckpointError, load_generator
from models.generator import RRDBNet
from pipeline.compare import Comparison
from pipeline.config import DEFAULT_MODEL_PATH, ProcessConfig
from pipeline.errors import PipelineError
from pipeline.leftovers import partial_path, remove_dead_leftovers
from pipeline.ordered import conversion_threads, ordered_map
from pipeline.restorer import Restorer, resolve_device
from pipeline.video_reader import DecodedFrame, FrameReader
from pipeline.video_writer import VideoWriter, default_output_suffix

log = logging.getLogger(__name__)

_END = object()
# Decoded frames waiting for the model may use this much memory (8K frames are 100 MB each).
QUEUE_BUDGET_BYTES = 512 * 1024 * 1024


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


def load_model(path: Path | None) -> RRDBNet:
    """The generator from ``path``, or the default model shipped in the repository."""
    if path is None:
        path = DEFAULT_MODEL_PATH
        if not path.exists():
            raise PipelineError(f"the default model {path} is missing from this checkout; "
                                f"pass --model FILE")
    try:
        return load_generator(path)
    except CheckpointError as exc:
        raise PipelineError(str(exc)) from exc


def make_restorer(config: ProcessConfig, model: RRDBNet | None = None) -> Restorer:
    """The Restorer for a run on this machine: ``model`` or ``config.model`` (None = the
    default model), on ``config``'s device with its precision, batching and tiling."""
    return Restorer(model if model is not None else load_model(config.model),
                    device=resolve_device(config.device), precision=config.precision,
                    batch_size=config.batch_size, tile=config.tile,
                    tile_overlap=config.tile_overlap, compile=config.compile,
                    cpu_threads=_cpu_threads(config.cpu_threads), strength=config.strength)


def _check_output(input_path: Path, output: Path, overwrite: bool, *,
                  allow_folder: bool = False) -> None:
    """Refuse outputs that would lose data or can't be written; ``allow_folder`` for outputs
    that are folders (of image frames)."""
    if output.resolve() == input_path.resolve():
        raise PipelineError(f"{output}: the output would overwrite the input")
    if output.exists() and not overwrite:
        raise PipelineError(f"{output}: already exists (pass --overwrite to replace it)")
    if output.is_dir() != allow_folder and output.exists():
        raise PipelineError(f"{output}: is a directory" if output.is_dir()
                            else f"{output}: is a file, not a folder")
    folder = output.parent
    if not folder.is_dir():
        raise PipelineError(f"{folder}: output folder does not exist")
    if not os.access(folder, os.W_OK):
        raise PipelineError(f"{folder}: output folder is not writable")


class _Stage(threading.Thread):
    """A daemon thread feeding or draining a bounded queue; its exception is re-raised."""

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self.error = exc


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stage: _Stage):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if not stage.is_alive():
                if stage.error is not None:
                    raise stage.error
                try:
                    return q.get_nowait()
                except queue.Empty:
                    return _END


def windows(frames: Iterable[DecodedFrame], batch: int, context: int
            ) -> Iterator[tuple[list[DecodedFrame], list[DecodedFrame]]]:
    """Group frames into model batches with their temporal neighbours.

    Yields (window, targets): ``window`` holds ``len(targets) + 2*context`` consecutive
    frames with the clip's first and last frame replicated past its ends; ``targets`` are
    the frames restored from it, in order. Every frame is a target exactly once.
    """
    buffer: list[DecodedFrame] = []
    for frame in frames:
        if not buffer:
            buffer.extend([frame] * context)
        buffer.append(frame)
        if len(buffer) - 2 * context >= batch:
            yield buffer[:batch + 2 * context], buffer[context:context + batch]
            buffer = buffer[batch:]
    if buffer:
        buffer.extend([buffer[-1]] * context)
        if len(buffer) > 2 * context:
            yield buffer, buffer[context:len(buffer) - context]


def process_video(input_path: str | os.PathLike, output: str | os.PathLike | None = None, *,
                  config: ProcessConfig = ProcessConfig(), model: RRDBNet | None = None
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
    info = reader.info
    output = Path(output) if output is not None else default_output_path(input_path)
    _check_output(input_path, output, config.overwrite)
    if config.compare is not None:
        _check_output(input_path, Path(config.compare), config.overwrite)
    restorer = make_restorer(config, model)
    remove_dead_leftovers(output)
    partial = partial_path(output)
    started = time.perf_counter()
    try:
        written, codec = _run(reader, restorer, partial, output, config, convert_threads)
        os.replace(partial, output)
    finally:
        if partial.exists():
            partial.unlink()
    result = ProcessResult(output=output, frames=written, seconds=time.perf_counter() - started,
                           codec=codec)
    log.info("%s: %d frames in %.1f s (%.2f fps) → %s", input_path, result.frames,
             result.seconds, result.fps, output)
    return result


def _run(reader: FrameReader, restorer: Restorer, partial: Path, output: Path,
         config: ProcessConfig, convert_threads: int) -> tuple[int, str]:
    info = reader.info
    stop = threading.Event()
    batch = restorer.batch_size_for(info.height, info.width)
    depth = _queue_depth(info.width * info.height * 3 * (2 if info.bit_depth > 8 else 1),
                         batch, config.queue_frames)
    decoded: queue.Queue = queue.Queue(maxsize=depth)
    restored: queue.Queue = queue.Queue(maxsize=max(2, depth // batch))

    def decode() -> None:
        for frame in reader.frames():
            if not _put(decoded, frame, stop):
                return
        _put(decoded, _END, stop)

    decoder = _Stage("decode", decode)
    decoder.start()
    writer_box: dict[str, VideoWriter] = {}

    def restored_frames() -> Iterator[tuple[np.ndarray, int, np.ndarray | None]]:
        while (item := restored.get()) is not _END:
            rgb_batch, pts_list, originals = item
            for i, (rgb, pts) in enumerate(zip(rgb_batch, pts_list)):
                yield rgb, pts, None if originals is None else originals[i]

    def encode() -> None:
        frames = restored_frames()
        first = next(frames, None)
        if first is None:
            return
        # The writer copies the input's colour tags, known once the first frame is decoded.
        writer = writer_box["w"] = VideoWriter(
            partial, info, colour=reader.colour, display_matrix=reader.display_matrix,
            settings=config.encoder, output_name=output)
        if config.compare is not None:
            writer_box["compare"] = Comparison(
                config.compare, info, colour=reader.colour,
                display_matrix=reader.display_matrix, settings=config.encoder,
                reference=config.reference)

        def convert(item):
            rgb, pts, original = item
            return writer.convert(rgb), rgb, pts, original

        for frame, rgb, pts, original in ordered_map(convert, itertools.chain([first], frames),
                                                     convert_threads, name="encode-convert"):
            writer.write_frame(frame, pts)
            if original is not None:
                writer_box["compare"].add(original, rgb, pts)
        writer.close()
        if "compare" in writer_box:
            writer_box["compare"].close()

    encoder = _Stage("encode", encode)
    encoder.start()
    progress = tqdm(total=_expected_frames(info), unit="frame", desc=info.path.name,
                    disable=not config.progress, file=sys.stderr, dynamic_ncols=True)

    def decoded_frames() -> Iterator[DecodedFrame]:
        while (item := _get(decoded, decoder)) is not _END:
            yield item

    count = 0
    try:
        for window, targets in windows(decoded_frames(), batch, restorer.context):
            out = restorer.restore([f.rgb for f in window])
            _check_stage(encoder)
            originals = [f.rgb for f in targets] if config.compare is not None else None
            if not _put(restored, (out, [f.pts for f in targets], originals), stop):
                break
            count += len(targets)
            progress.update(len(targets))
        if count == 0:
            raise PipelineError(f"{info.path}: contains no video frames")
        progress.total = count  # the estimate, if any, gives way to the true count
        progress.refresh()
        _put(restored, _END, stop)
        encoder.join()
        _check_stage(encoder)
    except BaseException:
        stop.set()
        _drain(restored)
        _put(restored, _END, threading.Event())
        encoder.join(timeout=10)
        for name in ("w", "compare"):
            if name in writer_box:
                writer_box[name].abort()
        raise
    finally:
        stop.set()
        progress.close()
        decoder.join(timeout=10)
    writer = writer_box["w"]
    if writer.frames_written != count:
        raise PipelineError(f"internal error: restored {count} frames but wrote {writer.frames_written}")
    return count, writer.codec


def _expected_frames(info) -> int | None:
    """The progress bar's total: the header's frame count, else duration × nominal rate (an
    estimate, for the ETA of containers such as Matroska that store no count)."""
    if info.frame_count:
        return info.frame_count
    if info.duration:
        return max(1, round(info.duration * float(info.frame_rate)))
    return None


def _cpu_threads(requested: int) -> int:
    """Torch threads for CPU inference: by default one core is left to decoding and encoding,
    because OpenMP threads that spin-wait for a core FFmpeg is using slow every call down."""
    if requested >= 0:
        return requested
    return max(1, (os.cpu_count() or 2) - 1)


def _queue_depth(frame_bytes: int, batch: int, max_frames: int) -> int:
    """Frames to buffer between stages: enough to cover two batches, within a memory budget."""
    by_memory = QUEUE_BUDGET_BYTES // max(frame_bytes, 1)
    return max(2 * batch, min(max_frames, by_memory))


def _check_stage(stage: _Stage) -> None:
    if stage.error is not None:
        raise stage.error


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
