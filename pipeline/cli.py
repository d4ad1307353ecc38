"""`python -m pipeline`: deblur a video from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import ENSEMBLE_SIZES, PRECISIONS, EncoderSettings, ProcessConfig
from pipeline.errors import PipelineError, RunFailedError
from unsmear.cli_conventions import Parser, add_output_options, add_version, program, run
from unsmear.files import ReplaceError
from unsmear.media import is_image_name

DESCRIPTION = """\
Remove motion blur from a video. Frames are decoded, restored in batches by the generator
(on the GPU when there is one) and re-encoded, keeping the input's frame count, every frame's
timestamp, audio and subtitle streams (copied, not re-encoded), rotation and colour tags."""

PROCESS_EPILOG = """\
examples:
  python -m pipeline process clip.mp4                      # writes clip.deblurred.mp4
  python -m pipeline process clip.mp4 -o out.mkv --crf 16 --preset slow
  python -m pipeline process clip.mov --model my.safetensors --device cuda:1 --precision fp16
  python -m pipeline process 8k.mp4 --tile 512              # frames too big for the GPU
  python -m pipeline process clip.mp4 --strength 0.6        # a gentler effect
  python -m pipeline process long.mp4 --workers 4           # 4 Ray workers (e.g. 4 GPUs)
  python -m pipeline process long.mp4 --address HEAD:6379   # every GPU of a Ray cluster
  python -m pipeline process clip.mp4 --compare before_after.png   # see what it did
  python -m pipeline process photo.tif                      # writes photo.deblurred.tif (16-bit kept)
  python -m pipeline process shot_010/ -o shot_010_sharp/   # numbered frames, same names

With more than one worker, or --address, the video is cut at keyframes into segments that
Ray workers restore in parallel (each loads the model once and takes one GPU); the segments
are joined without re-encoding and the audio/subtitles muxed back, so the output has the same
frames and timestamps as a one-worker run. On a cluster, the input, the output folder and any
--model file must be at the same path on every machine (shared storage).

Interrupted? Run the same command again. A long video (1,200 frames or more into MP4/MOV,
MKV/WebM or MPEG-TS), and any video split across workers, keeps its finished segments in a
hidden .NAME.resume-KEY folder beside the output (NAME: the output's file name); the same
command redoes only the rest and writes the file an uninterrupted run would. Other settings
start afresh."""


def _positive_or_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, compute and encoding options, shared with ``python -m jobs deblur``."""
    parser.add_argument("--model", type=Path,
                        help="generator checkpoint: our .safetensors, or a BasicSR/Real-ESRGAN "
                             "or ESRGAN 1x .pth (default: the model shipped with unsmear)")
    parser.add_argument("--strength", type=_fraction, default=1.0,
                        help="how much deblurring to apply, 0..1: the output is the input "
                             "blended with the restored frame (default 1: fully restored)")
    parser.add_argument("--ensemble", type=int, default=1, choices=ENSEMBLE_SIZES,
                        help="run the model on 2, 4 or 8 mirrored/rotated copies of every frame "
                             "and average them: as many times slower, a little sharper and "
                             "steadier (shipped video model, 8: +0.03 dB rendered, +0.02/+0.21 dB "
                             "real; default 1)")
    g = parser.add_argument_group("compute")
    g.add_argument("--device", default="auto",
                   help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto (default) = bf16 where the hardware runs it natively (GPUs with bf16; "
                        "CPUs with AVX-512 BF16 or AMX, ~2x fp32 there), fp16 on older GPUs, "
                        "fp32 on other CPUs; -v logs the choice and why")
    g.add_argument("--batch-size", type=_positive_or_zero, default=0,
                   help="frames per model call (default 0: from free GPU memory; 4 on CPU)")
    g.add_argument("--tile", type=_positive_or_zero, default=0,
                   help="process frames in overlapping tiles of this many pixels (default 0: "
                        "whole frames; tiling also switches on by itself on GPU out-of-memory)")
    g.add_argument("--tile-overlap", type=_positive_or_zero, default=32,
                   help="pixels shared by neighbouring tiles, blended (default 32)")
    g.add_argument("--hwdec", default="none", choices=("none", "auto", "cuda"),
                   help="decode on the GPU with NVDEC (cuda; streams it can't decode fall back "
                        "to the CPU), auto = cuda when a GPU is present (default: none)")
    parser.add_argument("--accept-damaged", action="store_true",
                        help="restore every frame that decodes from a damaged input (cut "
                             "short, corrupt packets) and warn, instead of failing; decodes "
                             "in one thread, which loses no frame at the damage")
    g.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile (pays off on GPU for long videos; "
                        "the first batch takes a minute longer)")
    e = parser.add_argument_group("encoding")
    e.add_argument("--codec", help="video encoder: libx264 (default; libx265 for >8-bit input, "
                                   "libx264rgb for 8-bit RGB input, which browsers and QuickTime "
                                   "do not play: --codec libx264 for a YUV copy; VP9 for .webm "
                                   "(AV1 for >8-bit), MPEG-4 for .avi, VP8 for .ogv, raw for "
                                   ".y4m), libx265, libvpx-vp9, libsvtav1, ffv1, ...; a format "
                                   "name (h264, hevc, av1) means FFmpeg's encoder for it")
    e.add_argument("--crf", type=int, help="quality for x264/x265/VP9/SVT-AV1, lower is better "
                                          "(default 18 / 20 / 24 / 28)")
    e.add_argument("--preset", help="speed/size preset, x264's names: ultrafast … medium "
                                    "(default) … veryslow; mapped onto VP9's cpu-used and "
                                    "SVT-AV1's 0-13")
    e.add_argument("--pix-fmt", help="output pixel format (default: the input's, when the "
                                     "encoder supports it, so bit depth and chroma are kept)")


def add_ray_arguments(parser: argparse.ArgumentParser, *, workers_help: str,
                      address_note: str = "; workers then default to the cluster's GPU count"
                      ) -> None:
    """--workers and --address, shared with ``python -m jobs``."""
    r = parser.add_argument_group("parallel (Ray)")
    r.add_argument("--workers", type=positive_int, help=workers_help)
    r.add_argument("--address",
                   help="join this Ray cluster (HOST:PORT printed by `ray start --head`, or "
                        f"auto) instead of starting a local Ray instance{address_note}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=program("python -m pipeline"), description=DESCRIPTION)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("process", help="deblur a video, an image or a folder of frames",
                       description=DESCRIPTION, epilog=PROCESS_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path,
                   help="the video to deblur (any format FFmpeg reads), an image (PNG, JPEG, "
                        "TIFF, WebP, BMP; 16-bit and alpha kept) or a folder of numbered frames")
    p.add_argument("-o", "--output", type=Path,
                   help="output file, or folder for a folder of frames (default: INPUT's name "
                        "with .deblurred before the extension)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    add_model_arguments(p)
    add_ray_arguments(p, workers_help="Ray workers restoring segments of the video in "
                                      "parallel, one GPU each on GPU machines (default: the "
                                      "number of GPUs, 1 without; 1 runs in this process "
                                      "without Ray)")
    o = p.add_argument_group("output")
    o.add_argument("--compare", type=Path, metavar="FILE",
                   help="also write input and output side by side: a video when FILE has a "
                        "video extension (e.g. compare.mp4), or a PNG/JPEG grid of three frames "
                        "with zoomed crops where the model changed most")
    o.add_argument("--reference", type=Path, metavar="SHARP",
                   help="with a --compare grid: a video of the input's sharp frames (same size and "
                        "order); each tile then shows its PSNR against them")
    add_output_options(o)
    return parser


def process_config(args: argparse.Namespace, **overrides) -> ProcessConfig:
    """A ProcessConfig from the options of :func:`add_model_arguments` (and -q, --overwrite)."""

    fields = dict(
        model=args.model,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        encoder=EncoderSettings(codec=args.codec, crf=args.crf, preset=args.preset,
                                pix_fmt=args.pix_fmt),
        compile=args.compile,
        strength=args.strength,
        ensemble=args.ensemble,
        accept_damaged=args.accept_damaged,
        hwdec=args.hwdec,
        compare=getattr(args, "compare", None),
        reference=getattr(args, "reference", None),
        overwrite=getattr(args, "overwrite", False),
        progress=not getattr(args, "quiet", False),
    )
    fields.update(overrides)
    return ProcessConfig(**fields)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(lambda: _process(args), verbose=args.verbose, user_errors=(PipelineError,),
               failures=(RunFailedError, ReplaceError), interrupted="interrupted; no output written")


def _process(args: argparse.Namespace) -> int:
    from pipeline.images import is_image_input, process_images  # heavy imports (torch)
    from pipeline.process import process_video                    # after --help

    config = process_config(args)
    workers = args.workers if args.workers is not None else _local_gpus(args)
    if is_image_input(args.input):
        if (args.workers or 1) > 1 or args.address is not None or config.compare is not None:
            raise PipelineError("images and folders of frames run in this process: leave "
                                "out --workers, --address and --compare")
        result = process_images(args.input, args.output, config=config)
    elif workers > 1 or args.address is not None:
        from pipeline.cluster import ParallelConfig
        from pipeline.parallel import process_video_parallel

        # On a cluster without --workers, 0 lets the pool count the cluster's GPUs.
        count = (args.workers or 0) if args.address is not None else workers
        parallel = ParallelConfig(workers=count, address=args.address)
        result = process_video_parallel(args.input, args.output, config=config,
                                        parallel=parallel)
    else:
        result = process_video(args.input, args.output, config=config)
    # An image (given as one, or found to be one behind a video's name) is one image, not frames.
    count = "1 image" if is_image_name(result.output) and result.output.is_file() else \
        f"{result.frames} frames"
    print(f"{result.output}\t{count}\t{result.seconds:.1f} s\t{result.fps:.2f} fps")
    return 0


def _local_gpus(args: argparse.Namespace) -> int:
    """Default worker count on this machine: one per visible GPU (1 on CPU, on one GPU, or
    when --device names one GPU)."""
    if args.address is not None or args.device not in ("auto", "cuda"):
        return 1
    import torch

    return max(1, torch.cuda.device_count())
