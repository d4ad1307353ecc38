"""``python -m dataset_builder``: build training pairs from high-fps footage.

Subcommands: ``build`` (pairs from footage), ``render`` (synthetic 240 fps footage
from photos), ``probe`` (what the builder reads from a source) and ``sheet`` (a
contact sheet of built pairs). Results go to stdout, progress and warnings to
stderr; a user mistake is one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import textwrap
from pathlib import Path
from typing import Sequence

from dataset_builder.config import FLOW_PRESETS, MAX_INTERPOLATE, RENDER_CODECS, BuildConfig, \
    RenderConfig
from dataset_builder.errors import BuildError, DecodeFailed, SourceTooShort
from unsmear.cli_conventions import Parser, add_output_options, add_version, program, run

log = logging.getLogger(__name__)

EPILOG_BUILD = """\
examples:
  python -m dataset_builder build footage/ pairs/
  python -m dataset_builder build slowmo.mp4 pairs/ --interpolate 8 --frames 5
  python -m dataset_builder build frames_png16/ pairs/ --fps 30000 --response none
  python -m dataset_builder build clips/ pairs/ --window 5 --stride 5 --interpolate 16 \\
      --duty-cycle 0.8                      # REDS-like: 120 fps -> 24 fps, shutter 0.8

Output: OUT/{train,val}/{blurry,sharp}/<source>/<index>.png (lossless PNG, 16-bit for
deeper sources), OUT/manifest.jsonl (one record per pair) and OUT/build.json. Re-run the
same command to resume after an interruption; other settings into the same OUT are
refused.
"""


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=88)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32, width=92)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    defaults = BuildConfig()
    parser = Parser(prog=program("python -m dataset_builder"), formatter_class=_formatter,
                    description=_wrap("Make blurred/sharp training pairs from high-frame-rate "
                                       "footage "
                                 "by averaging frames in linear light (DBN/GoPro/REDS method)."))
    add_version(parser)
    # Before the command, as this CLI used to take it; kept for scripts that do.
    parser.add_argument("-v", dest="verbose_first", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    b = sub.add_parser("build", help="build pairs from footage", formatter_class=_formatter,
                       description=_wrap("Average the frames around every STRIDE-th frame of each "
                                   "source into a blurred frame; that frame's sharp original is "
                                   "its target."), epilog=EPILOG_BUILD)
    b.add_argument("source", type=Path, metavar="SOURCE",
                   help="a video, a folder of numbered frames, or a folder of those")
    b.add_argument("out", type=Path, metavar="OUT", help="output folder (created)")
    g = b.add_argument_group("averaging")
    g.add_argument("--window", type=int, default=defaults.window, metavar="N",
                   help="frames averaged per blurred frame, odd, centred on the sharp frame "
                        "(default: %(default)s)")
    rate = g.add_mutually_exclusive_group()
    rate.add_argument("--stride", type=int, default=defaults.stride, metavar="S",
                      help="source frames between sharp frames; 8 turns 240 fps into 30 fps "
                           "pairs (default: %(default)s)")
    rate.add_argument("--target-fps", type=float, default=None, metavar="F",
                      help="rate of the pairs instead of --stride: stride = round(fps / F)")
    g.add_argument("--fps", type=float, default=None, metavar="F",
                   help="capture rate of every source, for clips that don't record it "
                        "(default: the com.android.capture.fps tag, else the container's rate)")
    g.add_argument("--response", default=defaults.response, metavar="R",
                   help="camera response undone before averaging: srgb, gamma2.2, none (linear "
                        "footage) or a file with the inverse response curve, 256 rows of 1 or "
                        "3 columns (.npy/.txt/.csv) (default: %(default)s)")
    g.add_argument("--interpolate", type=int, default=defaults.interpolate, metavar="K",
                   help=f"optical-flow upsampling: K-1 virtual frames between each pair of "
                        f"frames, so fast motion makes streaks, not ghost copies; 1 = off, at "
                        f"most {MAX_INTERPOLATE} (default: %(default)s)")
    g.add_argument("--duty-cycle", type=float, default=defaults.duty_cycle, metavar="D",
                   help="fraction of the window the shutter is open, in (0, 1]; use with "
                        "--interpolate (default: %(default)s)")
    g.add_argument("--flow-preset", choices=FLOW_PRESETS, default=defaults.flow_preset,
                   help="OpenCV DIS optical-flow preset for --interpolate (default: %(default)s)")
    d = b.add_argument_group("degradations of the blurred side (after averaging)")
    d.add_argument("--noise", type=float, default=defaults.noise, metavar="SIGMA",
                   help="Gaussian sensor noise std in linear light, fraction of full scale, "
                        "e.g. 0.01 (default: %(default)s = off)")
    d.add_argument("--jpeg", type=int, default=defaults.jpeg, metavar="Q",
                   help="JPEG-compress the blurred frame at quality Q, 1-100 (default: off)")
    o = b.add_argument_group("pairs and splits")
    o.add_argument("--frames", type=int, default=defaults.frames, metavar="K",
                   help="blurred frames per pair, odd: also writes the K-1 neighbouring "
                        "blurred frames for multi-frame models (default: %(default)s)")
    o.add_argument("--val-fraction", type=float, default=defaults.val_fraction, metavar="P",
                   help="share of sources (never of frames) in the validation split "
                        "(default: %(default)s)")
    o.add_argument("--seed", type=int, default=defaults.seed,
                   help="seeds the split, static-window sampling and noise; same seed, same "
                        "bytes (default: %(default)s)")
    o.add_argument("--static-keep", type=float, default=defaults.static_keep, metavar="P",
                   help="share of almost motionless windows kept, so sharp-in/sharp-out pairs "
                        "don't dominate (default: %(default)s)")
    o.add_argument("--static-psnr", type=float, default=defaults.static_psnr, metavar="DB",
                   help="a window is static when its blurred frame is within this PSNR of the "
                        "sharp one (default: %(default)s dB)")
    o.add_argument("--skip-short", action="store_true",
                   help="skip sources too short for the window instead of stopping")
    add_output_options(b)

    r = sub.add_parser("render", help="render synthetic high-fps footage from photos",
                       formatter_class=_formatter,
                       description=_wrap("One clip per photo: a camera wandering over the photo "
                                         "(pan, "
                                   "zoom, roll, hand shake) plus objects cut from it moving on "
                                   "their own paths, sub-pixel and anti-aliased, in linear light. "
                                   "Feed OUT to `build` like real footage."),
                       epilog="example:\n  python -m dataset_builder render photos/ footage/ "
                              "--seconds 2\n  python -m dataset_builder build footage/ pairs/ "
                              "--interpolate 4")
    rd = RenderConfig()
    r.add_argument("photos", type=Path, metavar="PHOTOS", help="a photo or a folder of photos")
    r.add_argument("out", type=Path, metavar="OUT", help="folder for the clips (created)")
    r.add_argument("--size", default=f"{rd.width}x{rd.height}", metavar="WxH",
                   help="frame size (default: %(default)s)")
    r.add_argument("--fps", type=float, default=rd.fps, help="frame rate (default: %(default)s)")
    r.add_argument("--seconds", type=float, default=rd.seconds,
                   help="clip length (default: %(default)s)")
    r.add_argument("--objects", type=int, default=rd.objects, metavar="N",
                   help="moving cut-outs per clip (default: %(default)s)")
    r.add_argument("--camera-speed", type=float, default=rd.camera_speed, metavar="PX",
                   help="typical camera speed, pixels per frame (default: %(default)s)")
    r.add_argument("--object-speed", type=float, default=rd.object_speed, metavar="PX",
                   help="fastest object speed, pixels per frame (default: %(default)s)")
    r.add_argument("--zoom", type=float, default=rd.zoom,
                   help="largest zoom change over a clip, 0.1 = 10%% (default: %(default)s)")
    r.add_argument("--rotation", type=float, default=rd.rotation, metavar="DEG",
                   help="largest camera roll over a clip, degrees (default: %(default)s)")
    r.add_argument("--shake", type=float, default=rd.shake, metavar="PX",
                   help="hand-shake amplitude (RMS), pixels (default: %(default)s)")
    r.add_argument("--shake-hz", type=float, default=rd.shake_hz, metavar="HZ",
                   help="hand-shake frequency (default: %(default)s)")
    r.add_argument("--seed", type=int, default=rd.seed, help="(default: %(default)s)")
    r.add_argument("--codec", choices=RENDER_CODECS, default=rd.codec,
                   help="lossless: RGB H.264 at qp 0, bit-exact but large; h264: 4:2:0 like a "
                        "camera (default: %(default)s)")
    r.add_argument("--crf", type=int, default=rd.crf,
                   help="quality for --codec h264 (default: %(default)s)")
    r.add_argument("--limit", type=int, default=None, metavar="N",
                   help="render only the first N photos (sorted by path)")
    add_output_options(r)

    p = sub.add_parser("probe", help="show what the builder reads from footage",
                       formatter_class=_formatter,
                       description=_wrap("List each source with its frames, size, bit depth, frame "
                                   "rate (and where it came from), reader, and the pairs "
                                   "`build` would make with the given --window/--stride."))
    p.add_argument("source", type=Path, metavar="SOURCE", help="as for build")
    p.add_argument("--fps", type=float, default=None, metavar="F", help="as for build")
    p.add_argument("--window", type=int, default=defaults.window, metavar="N",
                   help="(default: %(default)s)")
    p.add_argument("--stride", type=int, default=defaults.stride, metavar="S",
                   help="(default: %(default)s)")
    add_output_options(p)

    s = sub.add_parser("sheet", help="contact sheet of built pairs (PNG)",
                       formatter_class=_formatter,
                       description=_wrap("Rows of blurred | sharp | 2x crops of both where the "
                                         "blur is "
                                   "strongest, spread over sources."),
                       epilog="examples:\n  python -m dataset_builder sheet pairs/ -o sheet.png\n"
                              "  python -m dataset_builder sheet pairs/ --compare pairs_interp4/")
    s.add_argument("out", type=Path, metavar="OUT", help="a folder made by build")
    s.add_argument("-o", "--output", type=Path, default=None, metavar="PNG",
                   help="where to write the sheet, a .png (default: OUT/contact_sheet.png)")
    s.add_argument("--overwrite", action="store_true", help="replace the sheet if it exists")
    s.add_argument("--pairs", type=int, default=8, metavar="N", help="rows (default: %(default)s)")
    s.add_argument("--tile-height", type=int, default=180, metavar="PX",
                   help="height of each image (default: %(default)s)")
    s.add_argument("--split", choices=("train", "val"), default=None,
                   help="only this split (default: both)")
    s.add_argument("--no-crops", action="store_true", help="leave out the 2x crops")
    s.add_argument("--compare", type=Path, nargs="+", default=(), metavar="OTHER",
                   help="other builds of the same footage (same --window and --stride): add "
                        "their blurred crop of the same frame, e.g. one with --interpolate")
    add_output_options(s)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    command = {"build": _build, "render": _render, "probe": _probe, "sheet": _sheet}[args.command]
    return run(lambda: command(args), verbose=args.verbose or args.verbose_first,
               user_errors=(BuildError,), failures=(DecodeFailed,),
               interrupted="interrupted: run the same command again to resume")


def _build(args: argparse.Namespace) -> int:
    from dataset_builder.build import build_pairs
    from dataset_builder.sources import find_sources

    config = BuildConfig(
        window=args.window, stride=args.stride, target_fps=args.target_fps, fps=args.fps,
        response=args.response, interpolate=args.interpolate, duty_cycle=args.duty_cycle,
        flow_preset=args.flow_preset, noise=args.noise, jpeg=args.jpeg, frames=args.frames,
        val_fraction=args.val_fraction, seed=args.seed, static_keep=args.static_keep,
        static_psnr=args.static_psnr, skip_short=args.skip_short)
    source, out = args.source.resolve(), args.out.resolve()
    if source.is_dir() and (out == source or source in out.parents):
        raise BuildError(f"OUT ({args.out}) is inside SOURCE ({args.source}): its pairs would "
                         "be read back as footage; choose an output folder elsewhere")
    sources = find_sources(args.source)
    summary = build_pairs(sources, args.out, config, progress=not args.quiet,
                          root=args.source if args.source.is_dir() else None)
    print(f"{summary.pairs} pairs ({summary.train_pairs} train, {summary.val_pairs} val) from "
          f"{summary.sources} source{'s' if summary.sources != 1 else ''} in {summary.out}")
    print(f"manifest: {summary.manifest}")
    print(f"this run: {summary.built_now} sources built, {summary.already_done} already done, "
          f"{summary.static_dropped} static windows left out, {summary.seconds:.1f} s")
    for reason in summary.skipped:
        print(f"skipped: {reason}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from dataset_builder.render import find_photos, render_photos

    width, height = _parse_size(args.size)
    config = RenderConfig(width=width, height=height, fps=args.fps, seconds=args.seconds,
                          objects=args.objects, camera_speed=args.camera_speed,
                          object_speed=args.object_speed, zoom=args.zoom,
                          rotation=args.rotation, shake=args.shake, shake_hz=args.shake_hz,
                          seed=args.seed, codec=args.codec, crf=args.crf)
    if args.limit is not None and args.limit < 1:
        raise BuildError(f"--limit must be >= 1 (got {args.limit})")
    photos = find_photos(args.photos)[:args.limit]
    clips = render_photos(photos, args.out, config, progress=not args.quiet)
    for clip in clips:
        print(clip)
    print(f"{len(clips)} clips of {config.num_frames} frames at {config.fps:g} fps in {args.out}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from dataset_builder.averaging import exposure_samples, frames_span
    from dataset_builder.build import plan_source
    from dataset_builder.sources import find_sources, probe_source, source_name

    config = BuildConfig(window=args.window, stride=args.stride, fps=args.fps)
    span = frames_span(exposure_samples(config.window))
    root = args.source if args.source.is_dir() else None
    header = f"{'source':32} {'frames':>7} {'size':>11} {'bits':>4} {'fps':>9}  {'fps from':24} " \
             f"{'reader':7} {'pairs':>5}"
    print(header)
    for path in find_sources(args.source):
        info = probe_source(path, name=source_name(path, root), fps=config.fps)
        try:
            pairs = str(len(plan_source(info, config, span).pairs))
        except SourceTooShort:
            pairs = "short"
        fps = f"{info.fps:9.3f}" if info.fps else f"{'?':>9}"
        print(f"{info.name[:32]:32} {info.num_frames:7d} {info.width:>5}x{info.height:<5} "
              f"{info.bit_depth:4d} {fps}  {info.fps_origin[:24]:24} {info.reader:7} {pairs:>5}")
    return 0


def _sheet(args: argparse.Namespace) -> int:
    from dataset_builder.contact_sheet import make_contact_sheet

    if args.pairs < 1 or args.tile_height < 16:
        raise BuildError("--pairs must be >= 1 and --tile-height >= 16")
    output = args.output or args.out / "contact_sheet.png"
    if output.suffix.lower() != ".png":
        raise BuildError(f"{output}: the sheet is written as a PNG; name it .png")
    if output.is_dir():
        raise BuildError(f"{output}: is a folder; name the sheet's .png file")
    if output.exists() and not args.overwrite:
        raise BuildError(f"{output}: already exists (pass --overwrite to replace it)")
    path = make_contact_sheet(args.out, output, pairs=args.pairs, tile_height=args.tile_height,
                              split=args.split, crops=not args.no_crops,
                              compare=args.compare)
    print(path)
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BuildError(f"--size must look like 640x360 (got {text!r})") from None
    return width, height
