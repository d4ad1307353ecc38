"""`python -m jobs`: deblur folders of videos, or build training pairs from folders of footage,
on a local Ray instance or a Ray cluster."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from jobs.errors import JobError
from pipeline.cli import add_model_arguments, add_ray_arguments, positive_int, process_config
from pipeline.errors import PipelineError, RunFailedError
from unsmear.cli_conventions import EXIT_FAILED, Parser, add_output_options, add_version, program, run
from unsmear.files import ReplaceError

DESCRIPTION = """\
Run unsmear over whole folders on a pool of Ray workers: locally (a private Ray instance is
started) or on a cluster (--address). Every run is resumable: a ledger in the output folder
records what is done, and running the same command again skips it and redoes the rest.
Outputs appear only when complete. One bad file is reported and the others go on; the exit
status is 0 only if every item succeeded. A report is written as JSON (per item: frames,
seconds, fps, status, error) and shown as a table on stderr."""

DEBLUR_EPILOG = """\
examples:
  python -m jobs deblur footage/ restored/                    # every video, all local GPUs
  python -m jobs deblur footage/ restored/ --glob '*.mp4' --crf 16
  python -m jobs deblur /shared/in /shared/out --address HEAD:6379   # on a Ray cluster

OUT_DIR mirrors IN_DIR's tree (raw .h264/.hevc streams become .mkv). A folder of numbered
images (frame_0001.png...) is one sequence, restored with its neighbouring frames; images with
no frame number in their names are photos, each restored on its own. Long videos are cut at
keyframes into segments so all workers stay busy; the joins are exact. On a cluster, IN_DIR,
OUT_DIR and any --model file must be at the same path on every machine (shared storage)."""

PAIRS_EPILOG = """\
builder options: every option of `python -m dataset_builder build` (see its --help), e.g.
  --window N --stride S --target-fps F --fps F --response R --interpolate K --duty-cycle D
  --flow-preset P --noise SIGMA --jpeg Q --frames K --val-fraction P --seed N --skip-short

examples:
  python -m jobs build-pairs footage/ pairs/ --window 7 --stride 8
  python -m jobs build-pairs /shared/footage /shared/pairs --address HEAD:6379 --interpolate 8

One Ray task per source (video or folder of numbered frames), each using --cpus-per-task CPUs.
PAIRS_DIR gets the builder's layout (build.json, manifest.jsonl, train/, val/) plus the
ledger and the report."""


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    j = parser.add_argument_group("job")
    j.add_argument("--glob", action="append", default=[], metavar="PATTERN",
                   help="only files whose name or relative path matches this shell pattern "
                        "(repeatable), e.g. '*.mp4' or 'day1/*'")
    j.add_argument("--report", type=Path,
                   help="where to write the JSON report (default: OUT_DIR/unsmear-report.json)")
    j.add_argument("--retries", type=positive_int, default=3,
                   help="attempts per segment/source when a worker dies (default 3)")
    add_output_options(j)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=program("python -m jobs"), description=DESCRIPTION)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("deblur", help="deblur every video in a folder tree",
                       description=DESCRIPTION, epilog=DEBLUR_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("in_dir", type=Path, metavar="IN_DIR",
                   help="folder searched recursively for videos (by extension, and by probing "
                        "files with unknown extensions), folders of frames and photos")
    d.add_argument("out_dir", type=Path, metavar="OUT_DIR",
                   help="folder for the restored videos, the ledger and the report (created)")
    add_model_arguments(d)
    add_ray_arguments(d, workers_help="Ray workers, each loading the model once and taking one "
                                      "GPU on GPU clusters (default: the number of GPUs Ray "
                                      "sees, 1 without GPUs)")
    d.add_argument("--segment-frames", type=positive_int, default=300,
                   help="cut videos longer than this into segments of at least this many frames "
                        "so workers share them (default 300)")
    _add_job_options(d)

    p = sub.add_parser("build-pairs", help="build training pairs from a folder of footage",
                       description=DESCRIPTION, epilog=PAIRS_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("footage", type=Path, metavar="FOOTAGE_DIR",
                   help="high-fps videos and/or folders of numbered frames (recursive)")
    p.add_argument("pairs", type=Path, metavar="PAIRS_DIR", help="output folder (created)")
    add_ray_arguments(p, workers_help="sources built at the same time (default: as many as "
                                      "the cluster's CPUs allow)", address_note="")
    p.add_argument("--cpus-per-task", type=_positive_float, default=1.0,
                   help="CPUs Ray reserves for each source's task (default 1)")
    _add_job_options(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "build-pairs":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return run(lambda: _run(args, extra), verbose=args.verbose,
               user_errors=(JobError, PipelineError), failures=(RunFailedError, ReplaceError),
               interrupted="interrupted: run the same command again to finish the job")


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    report = _deblur(args) if args.command == "deblur" else _build_pairs(args, extra)
    unit = "frames" if args.command == "deblur" else "pairs"
    print(report.table(unit), file=sys.stderr)
    print(f"report: {args.report or _report_path(args)}")
    # Failed items are listed in the report; the others are done.
    return 0 if report.ok else EXIT_FAILED


def _report_path(args: argparse.Namespace) -> Path:
    from jobs.report import REPORT_NAME

    folder = args.out_dir if args.command == "deblur" else args.pairs
    return folder / REPORT_NAME


def _deblur(args: argparse.Namespace):
    from jobs.deblur import deblur_folder  # heavy imports (torch, ray) after --help
    from jobs.folder import FolderConfig
    from pipeline.cluster import ParallelConfig

    config = process_config(args)
    parallel = ParallelConfig(workers=args.workers or 0, address=args.address,
                              min_segment_frames=args.segment_frames, max_attempts=args.retries)
    folder = FolderConfig(patterns=tuple(args.glob), report=args.report)
    return deblur_folder(args.in_dir, args.out_dir, config=config, parallel=parallel,
                         folder=folder)


def _build_pairs(args: argparse.Namespace, extra: list[str]):
    from dataset_builder.cli import build_parser as builder_parser
    from dataset_builder.config import BuildConfig
    from dataset_builder.errors import BuildError
    from jobs.folder import FolderConfig
    from jobs.pairs import build_pairs_folder
    from pipeline.cluster import ParallelConfig

    # The builder's own parser reads (and checks) its options, so both CLIs accept the same.
    builder_args = builder_parser().parse_args(["build", str(args.footage), str(args.pairs),
                                                *extra])
    names = {f.name for f in dataclasses.fields(BuildConfig)}
    try:
        config = BuildConfig(**{n: getattr(builder_args, n) for n in names
                                if hasattr(builder_args, n)})
    except BuildError as exc:
        raise JobError(str(exc)) from exc
    parallel = ParallelConfig(workers=args.workers or 0, address=args.address,
                              cpus_per_worker=args.cpus_per_task, max_attempts=args.retries)
    folder = FolderConfig(patterns=tuple(args.glob), report=args.report)
    return build_pairs_folder(args.footage, args.pairs, config, parallel=parallel, folder=folder,
                              progress=not args.quiet)
