"""The decode → restore → encode loop, the one both the single-process path and every Ray worker
run: three overlapped stages with bounded queues between them.

Decoding runs in a thread ahead of the model, encoding (with its colour conversion spread over
``convert_threads``) in a thread behind it, and the model in the calling thread; PyAV releases
the GIL while FFmpeg works, so the model never waits on I/O, and memory stays flat however long
the video. The caller hands in the frames to restore *with their temporal neighbours already
in place* (:func:`edge_padded` for a whole clip, :func:`pipeline.segments.segment_items` for a
segment), so every frame sees the same neighbours whichever way the video is split.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from pipeline.ordered import conversion_threads, ordered_map
from pipeline.restorer import Restorer
from pipeline.video_reader import DecodedFrame, VideoInfo

log = logging.getLogger(__name__)

# Decoded frames waiting for the model may use this much memory (8K frames are 100 MB each).
QUEUE_BUDGET_BYTES = 512 * 1024 * 1024
# How often a blocked stage looks whether it has been told to stop (seconds).
_POLL_S = 0.1
_END = object()


class FrameSink(Protocol):
    """Where restored frames go: a VideoWriter, or a Comparison beside it."""

    def close(self) -> object: ...
    def abort(self) -> None: ...


def edge_padded(frames: Iterable[DecodedFrame], context: int) -> Iterator[DecodedFrame]:
    """A whole clip with its first and last frame repeated ``context`` times past its ends:
    the neighbours a multi-frame model sees at the clip's real start and end."""
    last = None
    for frame in frames:
        if last is None:
            yield from [frame] * context
        yield frame
        last = frame
    if last is not None:
        yield from [last] * context


def padded_windows(items: Iterable[DecodedFrame], batch: int, context: int
                   ) -> Iterator[tuple[list[DecodedFrame], list[DecodedFrame]]]:
    """Group a neighbour-padded sequence into model batches: (window, targets) with
    ``len(window) == len(targets) + 2*context``, every target exactly once, in order."""
    buffer: list[DecodedFrame] = []
    for frame in items:
        buffer.append(frame)
        if len(buffer) >= batch + 2 * context:
            yield buffer[:batch + 2 * context], buffer[context:context + batch]
            buffer = buffer[batch:]
    if len(buffer) > 2 * context:
        yield buffer, buffer[context:len(buffer) - context]


def queue_depth(info: VideoInfo, batch: int, max_frames: int) -> int:
    """Frames to buffer between decoding and the model: enough to cover two batches, at most
    ``max_frames``, within the memory budget."""
    frame_bytes = info.width * info.height * 3 * (2 if info.bit_depth > 8 else 1)
    by_memory = QUEUE_BUDGET_BYTES // max(frame_bytes, 1)
    return max(2 * batch, min(max_frames, by_memory))


def run_stages(items: Iterable[DecodedFrame], restorer: Restorer, info: VideoInfo, *,
               open_writer: Callable[[], FrameSink],
               open_compare: Callable[[], FrameSink] | None = None,
               queue_frames: int = 32, convert_threads: int = 0,
               on_progress: Callable[[int], None] | None = None) -> FrameSink | None:
    """Restore ``items`` (frames with their neighbours, see :func:`padded_windows`) and encode
    the restored frames, overlapped.

    Args:
        items: the frames, neighbour-padded for ``restorer.context``; decoded in a thread.
        restorer: the model.
        info: the video, for the batch size and the queue's memory budget.
        open_writer: makes the writer when the first frame is restored (the input's colour tags
            are known by then); it must have ``convert(rgb)`` and ``write_frame(frame, pts)``.
        open_compare: makes a Comparison (``add(before, after, pts)``) beside it, or None.
        queue_frames: at most this many decoded frames wait for the model.
        convert_threads: threads for the RGB → YUV conversion before encoding; 0 = by cores.
        on_progress: called with the number of frames restored so far, after every batch.
    Returns the closed writer, or None when ``items`` held no frame. On any error (or
    KeyboardInterrupt) the stages are stopped, the writers aborted, and the error re-raised.
    """
    batch = restorer.batch_size_for(info.height, info.width)
    depth = queue_depth(info, batch, queue_frames)
    decoded = _Prefetch(items, depth, name="decode")
    encoder = _Encoder(open_writer, open_compare, convert_threads or conversion_threads(),
                       maxsize=max(2, depth // batch))
    done = 0
    try:
        for window, targets in padded_windows(decoded, batch, restorer.context):
            restored = restorer.restore([f.rgb for f in window])
            encoder.put((restored, targets))
            done += len(targets)
            if on_progress is not None:
                on_progress(done)
        return encoder.finish()
    except BaseException:
        encoder.abort()
        raise
    finally:
        decoded.close()


class _Prefetch:
    """Runs an iterator in a daemon thread, a bounded queue ahead of its consumer.

    Its exception is re-raised in the consumer; ``close()`` stops the thread and closes the
    source, so a stage stopped early never blocks on a full queue.
    """

    def __init__(self, source: Iterable, maxsize: int, *, name: str) -> None:
        self._source = iter(source)
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._source:
                if not _put(self._queue, item, self._stop):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._error = exc
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
            _put(self._queue, _END, self._stop)

    def __iter__(self) -> _Prefetch:
        return self

    def __next__(self):
        item = self._queue.get()
        if item is _END:
            if self._error is not None:
                raise self._error
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class _Encoder:
    """The encoding stage: a thread that writes restored batches as they come."""

    def __init__(self, open_writer: Callable[[], FrameSink],
                 open_compare: Callable[[], FrameSink] | None, convert_threads: int, *,
                 maxsize: int) -> None:
        self._open_writer, self._open_compare = open_writer, open_compare
        self._threads = convert_threads
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.writer: FrameSink | None = None
        self.compare: FrameSink | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="encode")
        self._thread.start()

    def put(self, item) -> None:
        """Queue a (restored batch, target frames) pair; raises the stage's error if it failed."""
        while not _put(self._queue, item, self._stop, self._thread):
            self._raise()
            raise RuntimeError("internal error: the encoding stage stopped early")  # pragma: no cover

    def finish(self) -> FrameSink | None:
        self.put(_END)
        self._thread.join()
        self._raise()
        return self.writer

    def abort(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sink in (self.writer, self.compare):
            if sink is not None:
                sink.abort()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _batches(self) -> Iterator[tuple]:
        while (item := self._get()) is not _END:
            restored, targets = item
            yield from zip(restored, targets)

    def _get(self):
        while not self._stop.is_set():
            try:
                return self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END

    def _run(self) -> None:
        try:
            frames = self._batches()
            first = next(frames, None)
            if first is None:
                return
            writer = self.writer = self._open_writer()
            compare = self.compare = self._open_compare() if self._open_compare else None

            def convert(item):
                rgb, target = item
                return writer.convert(rgb), rgb, target

            for converted, rgb, target in ordered_map(convert, itertools.chain([first], frames),
                                                      self._threads, name="encode-convert"):
                writer.write_frame(converted, target.pts)
                if compare is not None:
                    compare.add(target.rgb, rgb, target.pts)
            if self._stop.is_set():
                return  # aborted: the caller aborts the writers
            writer.close()
            if compare is not None:
                compare.close()
        except BaseException as exc:  # handed to the model's thread, which re-raises it
            self._error = exc
            self._stop.set()


def _put(q: queue.Queue, item, stop: threading.Event,
         consumer: threading.Thread | None = None) -> bool:
    """Put ``item`` unless told to stop (or the consumer has died): False if not put."""
    while not stop.is_set() and (consumer is None or consumer.is_alive()):
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False
