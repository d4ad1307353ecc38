"""Command line for ``python -m models``: train, evaluate, export, interpolate.

Results go to stdout, progress bars and log messages to stderr; a user mistake (bad
config key, missing file, unusable checkpoint) is one ``error: ...`` line on stderr and
exit status 2, without a traceback (see unsmear.cli_conventions).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dataset_builder.errors import BuildError
from models import configs
from models.errors import CheckpointError, ConfigError, DataError
from unsmear.cli_conventions import Parser, add_output_options, add_version, program, run

# User mistakes: reported as one line. Anything else is a bug and keeps its traceback.
# (BuildError: the photos of on-the-fly pairs are found by the builder's renderer.)
USER_ERRORS = (ConfigError, DataError, CheckpointError, BuildError, FileNotFoundError)
# A diverging run is failed work (exit status 1), reported as one line that says what to change.
FAILURES = (FloatingPointError,)

DESCRIPTION = """\
Train, evaluate and ship unsmear's deblurring generator (ESRGAN's RRDBNet without
the upsampler) on blurry/sharp pairs written by `python -m dataset_builder build`."""

TRAIN_EPILOG = """\
shipped configs (give a name or a path): {names}

examples:
  python -m models train default synthetic.photos=[photos/] out=runs/default max_minutes=60
  python -m models train default synthetic.photos=[photos/] data=pairs/ synthetic.fraction=0.5 out=runs/mixed
  python -m models train tiny data=pairs/ out=runs/tiny
  python -m models train default_gan data=pairs/ out=runs/gan \\
      --init runs/psnr/model.safetensors perceptual=fft
  python -m models train default synthetic.photos=[photos/] out=runs/default --resume
  python -m models train my.yaml out=runs/mine

overrides are KEY=VALUE with YAML values; dotted keys reach sections, e.g.
  steps=200 stage=gan lr_g=1e-4 generator.num_block=4 discriminator.kind=patch
a run folder gets config.yaml, log.csv, checkpoints/, val_images/ and, at the end, model.safetensors
(the EMA weights)."""

EVALUATE_EPILOG = """\
PSNR: RGB, [0, 1] floats, data range 1.0, border crop --crop-border px.
SSIM: Wang et al. 2004, Gaussian 11x11 sigma 1.5, per RGB channel then averaged.
Baselines use the single best setting per method on the same pairs (favours them).

example:
  python -m models evaluate --model runs/psnr/model.safetensors pairs/ --out eval/psnr"""


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _odd_int_list(text: str) -> tuple[int, ...]:
    values = _int_list(text)
    if any(v % 2 == 0 for v in values):
        raise argparse.ArgumentTypeError(f"kernel sizes must be odd, got {text!r}")
    return values


def _safetensors_path(text: str) -> str:
    if not text.endswith(".safetensors"):
        raise argparse.ArgumentTypeError(f"weights are saved as safetensors: name the file *.safetensors, not {text!r}")
    return text


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"alpha must be between 0 and 1, got {value}")
    return value


def _integer_at_least(minimum: int):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from err
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


_non_negative = _integer_at_least(0)
_positive = _integer_at_least(1)


def _of_parity(odd: bool):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> int:
        value = _positive(text)
        if value % 2 != odd:
            raise argparse.ArgumentTypeError(f"expected an {'odd' if odd else 'even'} number, got {value}")
        return value

    return parse


_even, _odd = _of_parity(False), _of_parity(True)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m models`` argument parser."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = Parser(prog=program("python -m models"), description=DESCRIPTION, formatter_class=raw)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # -q and -v belong to every subcommand, so they may come anywhere after the command's name.
    common = Parser(add_help=False)
    add_output_options(common)

    train = sub.add_parser(
        "train",
        parents=[common],
        help="train a generator (ESRGAN recipe: stage psnr, then stage gan)",
        description="Train a generator on pairs; see models/configs/*.yaml for the keys.",
        epilog=TRAIN_EPILOG.format(names=", ".join(configs.names())),
        formatter_class=raw,
    )
    train.add_argument("config", help="a shipped config's name (see below) or a YAML file "
                       "(keys of models.train_config.TrainConfig)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, applied after the file")
    train.add_argument(
        "--init",
        metavar="CKPT",
        help="start the generator from this checkpoint (ours, or a BasicSR/ESRGAN RRDBNet .pth): "
        "tensors that fit are loaded, the others are reported and skipped",
    )
    train.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CKPT",
        help="continue the run in out= from its newest checkpoint, or from CKPT",
    )

    evaluate = sub.add_parser(
        "evaluate",
        parents=[common],
        help="PSNR/SSIM gain of a model on pairs, with baselines and DBN's plot",
        description="Evaluate a generator on pairs: table on stdout, results.json and gain_plot.png in --out.",
        epilog=EVALUATE_EPILOG,
        formatter_class=raw,
    )
    evaluate.add_argument("pairs", help="pairs folder (with manifest.jsonl)")
    evaluate.add_argument("--model", required=True, help="generator file (.safetensors from train/export, or .pth)")
    evaluate.add_argument(
        "--out", default="evaluation", help="folder for results.json and gain_plot.png (default: %(default)s)"
    )
    evaluate.add_argument("--overwrite", action="store_true",
                          help="replace the results of an earlier evaluation in --out")
    evaluate.add_argument(
        "--split",
        choices=("val", "train", "all"),
        default="val",
        help="manifest split to evaluate (default: %(default)s, the held-out sources)",
    )
    evaluate.add_argument(
        "--crop-border",
        type=_non_negative,
        default=0,
        metavar="PX",
        help="pixels ignored on every side by PSNR/SSIM (default: %(default)s)",
    )
    evaluate.add_argument(
        "--no-baselines", action="store_true", help="skip unsharp masking, Richardson-Lucy and Wiener"
    )
    evaluate.add_argument(
        "--kernel-sizes",
        type=_odd_int_list,
        default=(3, 5, 9, 15, 21),
        metavar="K,K,...",
        help="disk PSF diameters tried by Richardson-Lucy and Wiener (default: 3,5,9,15,21)",
    )
    evaluate.add_argument(
        "--rl-iterations",
        type=_int_list,
        default=(5, 20),
        metavar="N,N,...",
        help="Richardson-Lucy iteration counts tried (default: 5,20)",
    )
    evaluate.add_argument(
        "--no-sharp-check", action="store_true", help="skip feeding each sharp frame as a static window"
    )
    evaluate.add_argument("--max-pairs", type=_positive, default=None, metavar="N", help="evaluate N pairs spread evenly over the manifest (default: all)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default: %(default)s)")
    evaluate.add_argument("--ensemble", type=int, default=1, choices=(1, 2, 4, 8),  # models.symmetry.ENSEMBLE_SIZES
                          help="average the model over 2, 4 or 8 mirrored/rotated copies of each "
                               "input, as pipeline process --ensemble (default: 1)")

    render = sub.add_parser(
        "render-pairs",
        parents=[common],
        help="write pairs made as training makes them on the fly (for evaluate and its baselines)",
        description="Render blurred/sharp pairs from photos with the on-the-fly recipe of a training "
        "config (motion, shutter, noise, compression) into a pairs folder in dataset_builder's format.",
        epilog="example:\n  python -m models render-pairs photos/ evalpairs/ --val-photos kodim01,kodim10 "
        "--count 64 --size 256\n  python -m models evaluate evalpairs/ --model models/weights/default.safetensors",
        formatter_class=raw,
    )
    render.add_argument("photos", help="photo file or folder")
    render.add_argument("out", help="pairs folder to write (created)")
    render.add_argument("--overwrite", action="store_true",
                        help="write into OUT even if it holds files (its manifest is replaced)")
    render.add_argument("--config", default="default", help="training config whose synthetic section is used "
                        "(name or file; default: %(default)s)")
    render.add_argument("--val-photos", type=lambda t: tuple(x for x in t.split(",") if x), default=None,
                        metavar="NAME,...", help="photo names to render from (the config's val_photos by default)")
    render.add_argument("--count", type=_positive, default=64, help="pairs (default: %(default)s)")
    render.add_argument("--size", type=_even, default=256, help="square side, px, even (default: %(default)s)")
    render.add_argument("--frames", type=_odd, default=1, help="blurred frames per pair, odd (default: 1)")
    render.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    render.add_argument("--consecutive", action="store_true",
                        help="each sample as two consecutive pairs of one motion (2 x --count pairs), so "
                        "evaluate also reports the flow-warping error (flicker) on rendered video; needs --frames > 1")

    export = sub.add_parser(
        "export",
        parents=[common],
        help="write a run's EMA generator as one .safetensors file for pipeline",
        description="Export generator weights and config from a run or checkpoint folder.",
    )
    export.add_argument("checkpoint", help="run folder (newest checkpoint), checkpoint folder or generator file")
    export.add_argument("out", type=_safetensors_path, help="destination .safetensors")
    export.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    export.add_argument(
        "--weights",
        choices=("ema", "generator"),
        default="ema",
        help="EMA (shipped) or raw generator weights (default: %(default)s)",
    )

    interp = sub.add_parser(
        "interpolate",
        parents=[common],
        help="ESRGAN network interpolation between a PSNR and a GAN model",
        description="Write (1 - alpha) * PSNR weights + alpha * GAN weights (same architecture).",
    )
    interp.add_argument("psnr_model", help="generator trained with stage psnr")
    interp.add_argument("gan_model", help="generator trained with stage gan")
    interp.add_argument("out", type=_safetensors_path, help="destination .safetensors")
    interp.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    interp.add_argument(
        "--alpha",
        type=_alpha,
        default=0.8,
        help="weight of the GAN model in [0, 1]; higher is sharper (default: %(default)s)",
    )
    return parser


def _run_train(args: argparse.Namespace) -> int:
    from models.train import train
    from models.train_config import load_config

    overrides = list(args.overrides)
    if args.init:
        overrides.append(f"init={json.dumps(args.init)}")  # quoted: YAML reads " #" as a comment
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise ConfigError(f"{bad[0]!r} is not KEY=VALUE (only the config file is positional)")
    config = load_config(args.config, overrides)
    if Path(config.out).exists() and not Path(config.out).is_dir():
        raise ConfigError(f"out={config.out} is a file; name a folder for the run")
    result = train(config, resume=args.resume, progress=not args.quiet)
    print(f"trained {result.step} steps; model: {result.model_path}; checkpoint: {result.checkpoint}")
    if result.validation:
        v = result.validation
        labels = {"val": "stored val pairs", "val_synth": "rendered held-out photos", "val_real": "real footage"}
        for name, label in labels.items():
            if f"{name}_psnr" in v:
                ssim = f" / SSIM {v['val_ssim']:.4f}" if name == "val" else ""
                print(f"validation (EMA), {label}: PSNR {v[f'{name}_psnr']:.2f} dB{ssim} "
                      f"(input {v[f'{name}_psnr_input']:.2f} dB, gain {v[f'{name}_psnr'] - v[f'{name}_psnr_input']:+.2f} dB)")
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from models.evaluate import EvaluateConfig, evaluate, format_table, write_outputs

    config = EvaluateConfig(
        model=args.model, pairs=args.pairs, out=args.out, split=args.split, crop_border=args.crop_border,
        baselines=not args.no_baselines, kernel_sizes=args.kernel_sizes, rl_iterations=args.rl_iterations,
        sharp_check=not args.no_sharp_check, max_pairs=args.max_pairs, device=args.device,
        ensemble=args.ensemble,
    )
    if not Path(config.model).exists():
        raise FileNotFoundError(f"model not found: {config.model}")
    _check_folder(Path(config.out), args.overwrite, holds="results.json")
    report = evaluate(config, progress=not args.quiet)
    print(format_table(report))
    json_path, plot_path, sheet_path = write_outputs(report, config.out)
    sheet = f" and {sheet_path} (worst and best pairs)" if sheet_path else " (no blurred pairs: no sheet)"
    print(f"wrote {json_path}, {plot_path}{sheet}")
    return 0


def _check_file(path: Path, overwrite: bool) -> None:
    """An output file: refused where one exists, unless ``overwrite``."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; name the .safetensors file to write")
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: already exists (pass --overwrite to replace it)")


def _check_folder(path: Path, overwrite: bool, *, holds: str | None = None) -> None:
    """An output folder: refused where it is a file, or where it already holds ``holds`` (any
    file when None), unless ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: is a file; name a folder to write into")
    taken = (path / holds).exists() if holds else path.is_dir() and any(path.iterdir())
    if taken and not overwrite:
        raise ConfigError(f"{path}: already holds {'a ' + holds if holds else 'files'} "
                          f"(pass --overwrite to write into it, or name another folder)")


def _run_export(args: argparse.Namespace) -> int:
    from models.export import export

    _check_file(Path(args.out), args.overwrite)
    out = export(args.checkpoint, args.out, weights=args.weights)
    print(f"wrote {out}")
    return 0


def _run_interpolate(args: argparse.Namespace) -> int:
    from models.export import interpolate

    _check_file(Path(args.out), args.overwrite)
    out = interpolate(args.psnr_model, args.gan_model, args.out, alpha=args.alpha)
    print(f"wrote {out} = {1 - args.alpha:g} * {args.psnr_model} + {args.alpha:g} * {args.gan_model}")
    return 0


def _gather_overrides(args: argparse.Namespace, extra: list[str], parser: argparse.ArgumentParser) -> None:
    """Accept KEY=VALUE overrides anywhere on the line, also after --init/--resume.

    argparse stops filling a ``nargs="*"`` positional at the first option, and an optional
    ``--resume [CKPT]`` takes a following override as its CKPT.
    """
    if isinstance(args.resume, str) and "=" in args.resume and not Path(args.resume).exists():
        extra = [args.resume, *extra]
        args.resume = True
    unknown = [item for item in extra if item.startswith("-") or "=" not in item]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [*args.overrides, *extra]


def _run_render_pairs(args: argparse.Namespace) -> int:
    import dataclasses

    from models.synthetic import write_rendered_pairs
    from models.train_config import load_config

    config = load_config(args.config, ["out=unused", "synthetic.fraction=1",
                                       f"synthetic.photos=[{json.dumps(args.photos)}]"])  # any file name
    synthetic = config.synthetic
    if args.val_photos is not None:
        synthetic = dataclasses.replace(synthetic, val_photos=args.val_photos)
    if not synthetic.val_photos:
        raise ConfigError("no photos to render from: give --val-photos NAME,... (held out of training)")
    if args.consecutive and args.frames < 2:
        raise ConfigError("--consecutive needs neighbouring frames: give --frames 3 or more")
    _check_folder(Path(args.out), args.overwrite)
    try:
        manifest = write_rendered_pairs(synthetic, args.out, count=args.count, size=args.size,
                                        in_frames=args.frames, seed=args.seed, consecutive=args.consecutive)
    except ValueError as exc:  # photos not found, held-out names missing
        raise ConfigError(str(exc)) from exc
    print(f"wrote {args.count * (2 if args.consecutive else 1)} pairs: {manifest}")
    return 0


COMMANDS = {"train": _run_train, "evaluate": _run_evaluate, "render-pairs": _run_render_pairs,
            "export": _run_export, "interpolate": _run_interpolate}


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m models``; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":
        _gather_overrides(args, extra, parser)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return run(lambda: COMMANDS[args.command](args), verbose=args.verbose,
               user_errors=USER_ERRORS, failures=FAILURES)
