"""Deblurring a folder of videos on a pool of Ray workers, resumably.

The videos found under IN_DIR are restored into the same relative paths under OUT_DIR. They
share one pool of workers; long videos are cut into segments (see :mod:`pipeline.parallel`)
so every GPU stays busy until the last one finishes. OUT_DIR holds the ledger
(``unsmear-jobs.jsonl``: what is done, with which settings) and the report
(``unsmear-report.json``). Outputs appear only when complete (written under a hidden name,
then renamed), so an interrupted job never leaves a truncated file that looks finished, and
running the same command again redoes exactly what is not done.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import av

from jobs import ledger as ledger_states
from jobs.errors import JobError
from jobs.folder import FolderConfig, find_frame_folders, find_videos, mirrored_output
from jobs.ledger import LEDGER_NAME, Ledger, folder_lock
from jobs.report import DONE, FAILED, REPORT_NAME, SKIPPED, Report, Row, rows_in_order
from jobs.settings import deblur_fingerprint
from models.registry import Generator
from pipeline.config import ProcessConfig
from pipeline.errors import PipelineError
from pipeline.images import FRAME_NUMBER, is_image, numbered_frames, process_images
from pipeline.outputs import remove_dead_leftovers
from pipeline.cluster import ParallelConfig
from pipeline.parallel import WorkerPool
from pipeline.scheduler import VideoOutcome, VideoRequest
from pipeline.restorer import load_model
from unsmear.files import ReplaceError

log = logging.getLogger(__name__)

def check_folders(in_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """Resolve IN_DIR and OUT_DIR, refusing combinations that would lose data."""
    in_dir, out_dir = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not in_dir.is_dir():
        raise JobError(f"{in_dir}: no such folder" if not in_dir.exists()
                       else f"{in_dir}: is a file, not a folder of videos")
    if out_dir == in_dir:
        raise JobError(f"OUT_DIR is IN_DIR ({in_dir}): outputs would replace the inputs; "
                       f"choose another output folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise JobError(f"{out_dir}: exists and is not a folder")
    return in_dir, out_dir


def check_encoder(config: ProcessConfig) -> None:
    """Refuse an encoder FFmpeg doesn't have now, rather than once per video."""
    codec = config.encoder.codec
    if codec is None:
        return
    try:
        av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError) as exc:
        raise JobError(f"unknown video encoder {codec!r} (try libx264, libx265, libvpx-vp9, "
                       f"libsvtav1, ffv1)") from exc


def deblur_folder(in_dir: str | Path, out_dir: str | Path, *,
                  config: ProcessConfig = ProcessConfig(),
                  parallel: ParallelConfig = ParallelConfig(),
                  folder: FolderConfig = FolderConfig(),
                  model: Generator | None = None,
                  pool: WorkerPool | None = None) -> Report:
    """Deblur every video under ``in_dir`` into the same tree under ``out_dir``.

    Args:
        in_dir: folder searched recursively for videos.
        out_dir: folder for the outputs, the ledger and the report (created).
        config: model, device and encoder settings.
        parallel: workers, cluster address, segmenting and retries.
        folder: file patterns and report path.
        model: a generator to use instead of loading ``config.model``.
        pool: an existing WorkerPool to run on: its workers' model and device are used,
            ``config`` still gives the encoder settings (and ``model`` the fingerprint).
    Returns the Report (also written as JSON). A video that fails is reported, never raised;
    JobError is raised for a bad folder or when there is nothing to process.
    """
    started = time.perf_counter()
    in_dir, out_dir = check_folders(Path(in_dir), Path(out_dir))
    check_encoder(config)
    exclude = out_dir if in_dir in out_dir.parents else None
    videos = find_videos(in_dir, patterns=folder.patterns, exclude=exclude)
    frame_folders = find_frame_folders(in_dir, patterns=folder.patterns, exclude=exclude)
    if not videos and not frame_folders:
        matching = f" matching {' '.join(folder.patterns)}" if folder.patterns else ""
        raise JobError(f"no videos{matching} found under {in_dir} (nor folders of images)")
    out_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(out_dir):
        ledger = Ledger(out_dir / LEDGER_NAME)
        settings = deblur_fingerprint(config, model)
        rows: dict[str, Row] = {}
        todo: list[Path] = []
        claimed: dict[Path, str] = {}
        for rel in videos:
            item = rel.as_posix()
            output = mirrored_output(rel, out_dir)
            if output in claimed:  # e.g. clip.h264 and clip.mkv, both → clip.mkv
                rows[item] = Row(item=item, output=str(output), status=FAILED,
                                 error=f"its output {output.name} is also {claimed[output]}'s; "
                                       f"rename one of them")
                continue
            claimed[output] = item
            if ledger.latest(item) is None and (output.exists() or output.is_symlink()):
                # Not ours: no job here ever started this item, so the file is the user's.
                rows[item] = Row(item=item, output=str(output), status=FAILED,
                                 error=f"{output} exists and no job here wrote it; move it away "
                                       f"or choose another output folder (a job replaces only "
                                       f"its own outputs)")
                continue
            if ledger.is_done(item, settings, in_dir / rel, output):
                entry = ledger.latest(item)
                rows[item] = Row(item=item, output=str(output), status=SKIPPED, frames=entry.frames,
                                 seconds=entry.seconds)
            else:
                todo.append(rel)
        log.info("%d video(s) found, %d already done, %d to process", len(videos),
                 len(videos) - len(todo), len(todo))
        if todo:
            by_input = {(in_dir / rel).resolve(): rel for rel in todo}

            def requests():
                for rel in todo:
                    output = mirrored_output(rel, out_dir)
                    output.parent.mkdir(parents=True, exist_ok=True)
                    # An output the ledger doesn't call done is ours to replace: an earlier run
                    # with other settings, or one killed between the rename and the ledger line.
                    ledger.record(rel.as_posix(), ledger_states.RUNNING, settings, in_dir / rel)
                    yield VideoRequest(in_dir / rel, output, overwrite=True, encoder=config.encoder)

            def on_outcome(outcome: VideoOutcome) -> None:
                rel = by_input[Path(outcome.input).resolve()]
                item = rel.as_posix()
                done = outcome.status == "done"
                ledger.record(item, ledger_states.DONE if done else ledger_states.FAILED, settings,
                              in_dir / rel, frames=outcome.frames, seconds=outcome.seconds,
                              error=outcome.error)
                rows[item] = Row(item=item, output=str(outcome.output),
                                 status=DONE if done else FAILED, frames=outcome.frames,
                                 seconds=outcome.seconds, error=outcome.error)
                if not done:
                    log.warning("%s", outcome.error)

            if pool is not None:
                pool.run(requests(), on_outcome=on_outcome, progress=config.progress,
                         description="deblur")
            else:
                with WorkerPool(config, parallel=parallel, model=model) as own_pool:
                    own_pool.run(requests(), on_outcome=on_outcome, progress=config.progress,
                                 description="deblur")
        _deblur_frame_folders(frame_folders, in_dir, out_dir, ledger=ledger, settings=settings,
                              rows=rows, config=config, model=model)
        report = Report(command="deblur", rows=rows_in_order(list(rows.values())),
                        seconds=time.perf_counter() - started)
        report.write(folder.report or out_dir / REPORT_NAME)
        return report


def _deblur_frame_folders(folders: list[Path], in_dir: Path, out_dir: Path, *, ledger: Ledger,
                          settings: str, rows: dict[str, Row], config: ProcessConfig,
                          model: Generator | None) -> None:
    """Deblur each folder of image frames into the same relative folder under ``out_dir``
    (frames replaced by name, the folder's restored videos left alone), and each photo of a
    folder of photos (:func:`_photos`) to the same name there, in this process, one after
    another: the worker pool is built around video segments."""
    config = dataclasses.replace(config, overwrite=True)  # ours to replace, as for videos
    models: dict[bool, Generator] = {}

    def generator(video: bool) -> Generator:  # loaded once, when first needed
        if video not in models:
            models[video] = model if model is not None else load_model(config.model, video=video)
        return models[video]

    for rel in folders:
        source, output = in_dir / rel, out_dir / rel
        if (photos := _photos(source)) is not None:
            for photo in photos:
                _deblur_images((rel / photo.name).as_posix(), photo, output / photo.name,
                               ledger=ledger, settings=settings, rows=rows, config=config,
                               model=lambda: generator(False))
        else:
            _deblur_images(f"{rel.as_posix()}/", source, output, ledger=ledger, settings=settings,
                           rows=rows, config=config, model=lambda: generator(True))


def _deblur_images(item: str, source: Path, output: Path, *, ledger: Ledger, settings: str,
                   rows: dict[str, Row], config: ProcessConfig, model: Callable[[], Generator]) -> None:
    """One folder of frames (``source`` a folder) or one photo, with its ledger lines and
    report row; a failure is reported and the others go on."""
    folder = source.is_dir()
    if ledger.is_done(item, settings, source, output) and (not folder or _every_frame_written(source, output)):
        entry = ledger.latest(item)
        rows[item] = Row(item=item, output=str(output), status=SKIPPED, frames=entry.frames,
                         seconds=entry.seconds)
        return
    if not folder and ledger.latest(item) is None and output.exists():
        # As for videos: no job here started this item, so the file is the user's.
        rows[item] = Row(item=item, output=str(output), status=FAILED,
                         error=f"{output} exists and no job here wrote it; move it away or "
                               f"choose another output folder (a job replaces only its own outputs)")
        return
    ledger.record(item, ledger_states.RUNNING, settings, source)
    try:
        generator = model()
        output.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_leftovers(output)
        result = process_images(source, output, config=config, model=generator)
    except (PipelineError, ReplaceError) as exc:  # this item fails; the others go on
        ledger.record(item, ledger_states.FAILED, settings, source, error=str(exc))
        rows[item] = Row(item=item, output=str(output), status=FAILED, error=str(exc))
        log.warning("%s", exc)
        return
    ledger.record(item, ledger_states.DONE, settings, source, frames=result.frames,
                  seconds=result.seconds)
    rows[item] = Row(item=item, output=str(output), status=DONE, frames=result.frames,
                     seconds=result.seconds)


def _every_frame_written(source: Path, output: Path) -> bool:
    """Whether a finished folder's output still holds a restored frame for each of its frames
    (one deleted since is restored again: the whole folder, its frames being one sequence)."""
    try:
        return all((output / frame.name).is_file() for frame in numbered_frames(source))
    except PipelineError:  # the folder changed into one that can't be read: not done
        return False


def _photos(folder: Path) -> list[Path] | None:
    """A folder's images when none has a frame number in its name (``beach.jpg``, a
    ``poster.png`` beside the videos): photos, each restored on its own by the image model.
    None for a folder of frames (a name with no number among numbered frames is an error
    of that sequence, reported as such)."""
    images = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and is_image(p)]
    if images and not any(FRAME_NUMBER.search(p.stem) for p in images):
        return images
    return None
