"""The ``unsmear`` console command: one name for every job, beside the ``python -m`` forms.

``unsmear COMMAND ARGS…`` runs exactly what ``python -m PACKAGE [SUBCOMMAND] ARGS…`` runs
(the table below), so both forms take the same options and give the same exit codes
(unsmear.cli_conventions).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from unsmear.cli_conventions import Parser, add_version, program_named

# command → (module whose main() runs it, its subcommand or None, one-line help)
COMMANDS: dict[str, tuple[str, str | None, str]] = {
    "process": ("pipeline.cli", "process", "deblur a video, an image or a folder of frames"),
    "jobs": ("jobs.cli", None, "deblur folders of videos, or build pairs, on Ray (deblur, "
                               "build-pairs)"),
    "build": ("dataset_builder.cli", "build", "build blurred/sharp training pairs from "
                                              "high-fps footage"),
    "probe": ("dataset_builder.cli", "probe", "show what the pair builder reads from footage"),
    "render": ("dataset_builder.cli", "render", "render synthetic high-fps footage from photos"),
    "sheet": ("dataset_builder.cli", "sheet", "contact sheet of built pairs"),
    "train": ("models.cli", "train", "train the generator from a YAML config"),
    "evaluate": ("models.cli", "evaluate", "PSNR/SSIM of a model on pairs, with baselines"),
    "export": ("models.cli", "export", "export a run's EMA weights as one .safetensors"),
    "interpolate": ("models.cli", "interpolate", "blend two models' weights (ESRGAN's "
                                                 "PSNR ↔ GAN dial)"),
}


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<12} {text}" for name, (_, _, text) in COMMANDS.items())
    parser = Parser(
        prog="unsmear", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Remove motion blur from video and images.",
        epilog=f"commands:\n{listing}\n\n`unsmear COMMAND --help` shows a command's options.\n"
               f"examples:\n  unsmear process clip.mp4\n  unsmear process photo.png -o sharp.png"
               f"\n  unsmear jobs deblur footage/ restored/\n  unsmear build footage/ pairs/\n"
               f"  unsmear train models/configs/tiny.yaml data=pairs/ out=runs/tiny")
    add_version(parser)
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND",
                        help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, subcommand, _ = COMMANDS[args.command]
    forwarded = [subcommand, *args.args] if subcommand is not None else list(args.args)
    # "unsmear process ..." runs pipeline's "process" under the name "unsmear"; "unsmear jobs
    # deblur ..." runs jobs' own subcommands under "unsmear jobs".
    with program_named("unsmear" if subcommand is not None else f"unsmear {args.command}"):
        return importlib.import_module(module).main(forwarded)
