"""`python -m pipeline`: deblur a video from the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.config import ProcessConfig
from pipeline.errors import PipelineError
from pipeline.restorer import PRECISIONS
from pipeline.video_writer import EncoderSettings

DESCRIPTION = """\
Remove motion blur from a video. Frames are decoded, restored in batches by the generator
(on the GPU when there is one) and re-encoded, keeping the input's frame count, every frame's
timestamp, audio and subtitle streams (copied, not re-encoded), rotation and colour tags."""

PROCESS_EPILOG = """\
examples:
  python -m pipeline process clip.mp4                      # writes clip.deblurred.mp4
  python -m pipeline process clip.mp4 -o out.mkv --crf 16 --preset slow
  python -m pipeline process clip.mov --model my.safetensors --device cuda:1 --precision fp16
  python -m pipeline process 8k.mp4 --tile 512              # frames too big for the GPU"""


def _positive_or_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("process", help="deblur one video file",
                       description=DESCRIPTION, epilog=PROCESS_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, help="the video to deblur (any format FFmpeg reads)")
    p.add_argument("-o", "--output", type=Path,
                   help="output file (default: INPUT's name with .deblurred before the extension)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--model", type=Path,
                   help="generator checkpoint: our .safetensors, or a BasicSR/Real-ESRGAN or "
                        "ESRGAN 1x .pth (default: the model shipped with unsmear)")
    g = p.add_argument_group("compute")
    g.add_argument("--device", default="auto",
                   help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto = bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU")
    g.add_argument("--batch-size", type=_positive_or_zero, default=0,
                   help="frames per model call (default 0: from free GPU memory; 4 on CPU)")
    g.add_argument("--tile", type=_positive_or_zero, default=0,
                   help="process frames in overlapping tiles of this many pixels (default 0: "
                        "whole frames; tiling also switches on by itself on GPU out-of-memory)")
    g.add_argument("--tile-overlap", type=_positive_or_zero, default=32,
                   help="pixels shared by neighbouring tiles, blended (default 32)")
    e = p.add_argument_group("encoding")
    e.add_argument("--codec", help="video encoder: libx264 (default; libx265 for >8-bit input; "
                                   "VP9 for .webm), libx265, libvpx-vp9, libsvtav1, ffv1, ...")
    e.add_argument("--crf", type=int, help="quality for x264/x265/VP9/SVT-AV1, lower is better "
                                          "(default 18 / 20 / 24 / 28)")
    e.add_argument("--preset", help="x264/x265 speed preset (default medium), SVT-AV1 0-13 (8)")
    e.add_argument("--pix-fmt", help="output pixel format (default: the input's, when the "
                                     "encoder supports it, so bit depth and chroma are kept)")
    o = p.add_argument_group("output")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    o.add_argument("-v", "--verbose", action="store_true", help="log details on stderr")
    return parser


def _config(args: argparse.Namespace) -> ProcessConfig:
    return ProcessConfig(
        model=args.model,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        encoder=EncoderSettings(codec=args.codec, crf=args.crf, preset=args.preset,
                                pix_fmt=args.pix_fmt),
        overwrite=args.overwrite,
        progress=not args.quiet,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from pipeline.process import process_video  # heavy imports (torch) after --help

    try:
        result = process_video(args.input, args.output, config=_config(args))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; no output written", file=sys.stderr)
        return 130
    print(f"{result.output}\t{result.frames} frames\t{result.seconds:.1f} s\t{result.fps:.2f} fps")
    return 0
