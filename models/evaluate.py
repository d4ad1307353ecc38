"""Evaluate a generator on held-out pairs: PSNR/SSIM gain, baselines and DBN's plot.

For every pair the model restores the centre blurred frame (from ``in_frames`` blurred
frames) and we measure PSNR and SSIM (``models.metrics``: RGB, [0, 1], data range 1.0,
Wang et al. SSIM per channel) of the blurred input and of the output against the sharp
frame. Figures are reported per source and over all blurred pairs, next to three
classical baselines run in the same call on the same pairs — unsharp masking,
Richardson–Lucy and Wiener deconvolution — each with the single setting (kernel size,
strength) that scores best on these very pairs, an oracle choice that favours them.

Two checks that a deblurring tool never damages sharp frames:

* manifest pairs marked ``static``: PSNR(output, input) — should be >= 40 dB, i.e. the
  model changes a sharp frame by less than what a 0.5 dB loss would reveal;
* every pair's *sharp* frame fed as a static window (the sharp frame repeated for every
  input frame): PSNR(output, sharp) — the same criterion on all sources.

Su et al. (DBN, CVPR 2017) plot PSNR gain against input PSNR: deblurring networks often
make nearly sharp inputs worse, which shows as negative gains on the right of the plot.
``draw_gain_plot`` draws it with OpenCV.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from tqdm import tqdm

from models.baselines import BaselineSetting, baseline_settings
from models.checkpoint import load_generator
from models.symmetry import SelfEnsemble
from dataset_builder.manifest import PairRecord
from models.data import load_pair, read_manifest, stack_frames, to_float, to_tensor
from models.registry import Generator
from models.temporal import WarpingError, sequences
from models.metrics import MAX_PSNR_DB, PSNR_DEFINITION, SSIM_DEFINITION, psnr, ssim
from models.devices import pick_device
from models.errors import DataError
from models.motion import MotionEstimator, add_motion, network_input

logger = logging.getLogger(__name__)

# A model "never damages sharp frames" when its output on sharp input stays this close.
SHARP_FIDELITY_DB = 40.0
BASELINE_METHODS = ("unsharp", "richardson_lucy", "wiener")
ALL_BLURRED = "all blurred"


@dataclass(frozen=True)
class EvaluateConfig:
    """One evaluation run."""

    model: str  # generator checkpoint (.safetensors from train/export, or a BasicSR .pth)
    pairs: str  # pairs folder with manifest.jsonl
    out: str | None = None  # folder for results.json and gain_plot.png; None writes no files
    split: Literal["val", "train", "all"] = "val"  # which manifest pairs; val = held-out sources
    crop_border: int = 0  # pixels ignored on every side by PSNR/SSIM
    baselines: bool = True  # also run unsharp masking, Richardson–Lucy and Wiener
    kernel_sizes: tuple[int, ...] = (3, 5, 9, 15, 21)  # disk diameters (px) tried by RL and Wiener
    rl_iterations: tuple[int, ...] = (5, 20)  # Richardson–Lucy iteration counts tried
    sharp_check: bool = True  # also feed each sharp frame as a static window
    max_pairs: int | None = None  # evaluate this many pairs spread evenly over the manifest; None: all
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", ...
    ensemble: int = 1  # spatial variants averaged per input (models.symmetry.SelfEnsemble), as process --ensemble


@dataclass
class PairResult:
    """Figures for one pair (PSNR in dB)."""

    source: str
    index: int
    static: bool
    psnr_input: float  # blurred centre frame vs sharp
    ssim_input: float
    psnr_output: float  # model output vs sharp
    ssim_output: float
    psnr_output_vs_input: float  # model output vs its (blurred) input: fidelity on static pairs
    psnr_sharp_input: float | None  # model fed the sharp frame, vs sharp (sharp check)
    baseline_psnr: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> setting label -> PSNR
    baseline_ssim: dict[str, float] = field(default_factory=dict)  # method -> SSIM of the chosen setting

    def baseline_gain(self, method: str, label: str) -> float:
        """PSNR gain of one baseline setting over the input, dB."""
        return self.baseline_psnr[method][label] - self.psnr_input

    @property
    def gain(self) -> float:
        """PSNR gain of the output over the input, dB."""
        return self.psnr_output - self.psnr_input


@dataclass
class GroupSummary:
    """Means over a group of pairs (one source, or all blurred pairs)."""

    name: str
    pairs: int
    psnr_input: float
    ssim_input: float
    psnr_output: float
    ssim_output: float
    gain: float  # mean PSNR gain, dB
    baselines: dict[str, dict[str, float]]  # method -> {"psnr", "ssim", "gain"} (best setting)


@dataclass
class EvaluationReport:
    """Everything ``evaluate`` measured; ``to_json`` gives the file written."""

    model: str
    pairs_dir: str
    split: str
    crop_border: int
    results: list[PairResult]
    groups: list[GroupSummary]  # per source, then ALL_BLURRED
    best_baselines: dict[str, str]  # method -> label of the setting kept
    static: dict[str, float] | None  # {"pairs", "mean_psnr_vs_input", "min_psnr_vs_input"}
    sharp_check: dict[str, float] | None  # {"pairs", "mean_psnr", "min_psnr"}
    temporal: dict[str, float] | None  # flow-warping error of consecutive pairs: {"pairs", "output", "input", "sharp"}
    definitions: dict[str, str]
    ensemble: int = 1  # spatial variants the model was averaged over (EvaluateConfig.ensemble)
    # Video models, consecutive pairs: each run's sharp frames fed as a video (their sharp
    # neighbours): {"pairs", "mean_psnr", "min_psnr"}; None otherwise.
    sharp_video: dict[str, float] | None = None

    def to_json(self) -> dict:
        """Plain data for ``json.dump`` (per-pair rows include the gain)."""
        data = dataclasses.asdict(self)
        for row, result in zip(data["results"], self.results):
            row["gain"] = result.gain
        return data


@torch.no_grad()
def _restore(model: torch.nn.Module, frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(in_frames*3, H, W) → restored (3, H, W) on the CPU, clamped to [0, 1], in fp32 (figures
    that are the same on every machine); the flow to the neighbours is estimated from the
    frames for generators that take it, as the pipeline does."""
    sample = {"blurry": frames}
    estimator = MotionEstimator.for_generator(model.config)
    if estimator is not None:
        sample = add_motion(sample, estimator)
    # channels_last, as the pipeline and training run the network (1.4x faster on the CPU).
    batch = network_input(sample)[None].to(device).contiguous(memory_format=torch.channels_last)
    return model(batch).float().clamp(0.0, 1.0)[0].cpu()


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _choose_baselines(results: list[PairResult], settings: list[BaselineSetting]) -> dict[str, str]:
    """Per method, the setting with the best mean PSNR over the blurred (else all) pairs."""
    scored = [r for r in results if not r.static] or results
    best = {}
    for method in BASELINE_METHODS:
        labels = [s.label for s in settings if s.method == method]
        if labels:
            best[method] = max(labels, key=lambda lab: _mean([r.baseline_psnr[method][lab] for r in scored]))
    return best


def _summarise(name: str, rows: list[PairResult], best: dict[str, str]) -> GroupSummary:
    baselines = {}
    for method, label in best.items():
        p = _mean([r.baseline_psnr[method][label] for r in rows])
        baselines[method] = {
            "psnr": p,
            "ssim": _mean([r.baseline_ssim[method] for r in rows]),
            "gain": p - _mean([r.psnr_input for r in rows]),
        }
    return GroupSummary(
        name=name,
        pairs=len(rows),
        psnr_input=_mean([r.psnr_input for r in rows]),
        ssim_input=_mean([r.ssim_input for r in rows]),
        psnr_output=_mean([r.psnr_output for r in rows]),
        ssim_output=_mean([r.ssim_output for r in rows]),
        gain=_mean([r.gain for r in rows]),
        baselines=baselines,
    )


def _definitions(border: int) -> dict[str, str]:
    """What every figure of a report means, written into the JSON and the table."""
    return {
        "psnr": PSNR_DEFINITION.format(crop=border),
        "ssim": SSIM_DEFINITION.format(crop=border),
        "gain": "PSNR(output, sharp) - PSNR(blurred input, sharp), dB, mean over pairs",
        "baselines": "unsharp masking, Richardson–Lucy and Wiener deconvolution (uniform disk PSF); per method the "
        "single setting with the best mean PSNR on these same blurred pairs (an oracle choice that favours them)",
        "static": "pairs marked static in the manifest: PSNR(output, input); a model that never damages sharp "
        f"frames keeps it >= {SHARP_FIDELITY_DB:.0f} dB",
        "sharp_check": "each pair's sharp frame fed as a static window: PSNR(output, sharp), "
        f">= {SHARP_FIDELITY_DB:.0f} dB expected",
        "sharp_video": "video models, consecutive pairs: each run's sharp frames fed as a video, every frame with its "
        "sharp neighbours in the run (past the run's ends the frame itself, as at a clip's ends), so that the motion "
        f"between them is real but nothing is blurred (a fast shutter): PSNR(output, sharp), >= {SHARP_FIDELITY_DB:.0f} "
        "dB expected",
        "temporal": "flow-warping error (Lai et al. 2018) between consecutive pairs' frames: frame t-1 warped "
        "onto t along DIS flow of the sharp frames, MSE x 1000 on RGB [0, 1] over forward-backward consistent "
        "pixels, mean over pairs; lower is steadier, the sharp frames' figure is the floor",
    }


def _measure_pair(
    model: Generator,
    record: PairRecord,
    settings: list[BaselineSetting],
    config: EvaluateConfig,
    device: torch.device,
) -> tuple[PairResult, torch.Tensor]:
    """Model figures, the sharp-frame check and every baseline setting's PSNR for one pair, and
    the restored frame (3, H, W)."""
    in_frames, border = model.config.in_frames, config.crop_border
    pair = load_pair(record, in_frames)
    sharp = to_tensor(pair.sharp)
    blurry = to_tensor(pair.blurry_frames[in_frames // 2])
    restored = _restore(model, stack_frames(pair.blurry_frames), device)
    if 2 * border >= min(sharp.shape[-2:]):
        raise DataError(f"--crop-border {border} leaves nothing of {record.sharp} "
                        f"({sharp.shape[-1]}x{sharp.shape[-2]}); give less than half its shorter side")
    psnr_in, ssim_in = psnr(blurry, sharp, crop_border=border).item(), ssim(blurry, sharp, crop_border=border).item()
    sharp_in = None
    if config.sharp_check:
        static_window = stack_frames([pair.sharp] * in_frames)
        sharp_in = psnr(_restore(model, static_window, device), sharp, crop_border=border).item()
    result = PairResult(
        source=record.source,
        index=record.index,
        static=record.static,
        psnr_input=psnr_in,
        ssim_input=ssim_in,
        psnr_output=psnr(restored, sharp, crop_border=border).item(),
        ssim_output=ssim(restored, sharp, crop_border=border).item(),
        psnr_output_vs_input=psnr(restored, blurry, crop_border=border).item(),
        psnr_sharp_input=sharp_in,
    )
    blurry_hwc = to_float(pair.blurry_frames[in_frames // 2])
    for setting in settings:
        value = psnr(to_tensor(setting.apply(blurry_hwc)), sharp, crop_border=border).item()
        result.baseline_psnr.setdefault(setting.method, {})[setting.label] = value
    return result, restored


def evaluate(config: EvaluateConfig, *, progress: bool = True) -> EvaluationReport:
    """Measure the model (and the baselines) on the pairs of ``config.split``.

    Args:
        config: what to evaluate and how.
        progress: show a progress bar on stderr.

    Raises:
        DataError: unusable pairs folder or a model needing more frames than the pairs have.
        CheckpointError: unusable model file.
    """
    device = pick_device(config.device)
    model = load_generator(config.model, device=device).to(memory_format=torch.channels_last)
    if config.ensemble != 1:
        model = SelfEnsemble(model, config.ensemble)
    records = read_manifest(config.pairs, split=None if config.split == "all" else config.split)
    if config.max_pairs is not None and len(records) > config.max_pairs:
        # Spread evenly over the manifest (which is ordered by source), so every source counts.
        step = len(records) / config.max_pairs
        records = [records[int(i * step)] for i in range(config.max_pairs)]
    settings: list[BaselineSetting] = []
    if config.baselines:
        settings = baseline_settings(kernel_sizes=config.kernel_sizes, rl_iterations=config.rl_iterations)
    runs = sequences(records)
    in_runs = {id(r) for run in runs for r in run}
    results, restored = [], {}
    for record in tqdm(records, desc="evaluate", unit="pair", disable=not progress):
        result, output = _measure_pair(model, record, settings, config, device)
        results.append(result)
        if id(record) in in_runs:  # kept for the temporal check
            restored[id(record)] = output.permute(1, 2, 0).numpy()
    temporal, sharp_video = _run_checks(model, runs, restored, device, config)

    best = _choose_baselines(results, settings) if settings else {}
    if best:
        # SSIM costs ~50x a PSNR: computed in a second pass, for the chosen settings only.
        chosen = [s for s in settings if best.get(s.method) == s.label]
        for record, result in zip(tqdm(records, desc="baselines", unit="pair", disable=not progress), results):
            pair = load_pair(record, 1)
            blurry_hwc, sharp = to_float(pair.blurry_frames[0]), to_tensor(pair.sharp)
            for setting in chosen:
                output = to_tensor(setting.apply(blurry_hwc))
                result.baseline_ssim[setting.method] = ssim(output, sharp, crop_border=config.crop_border).item()

    blurred = [r for r in results if not r.static]
    by_source: dict[str, list[PairResult]] = defaultdict(list)
    for r in blurred:
        by_source[r.source].append(r)
    groups = [_summarise(source, by_source[source], best) for source in sorted(by_source)]
    if blurred:
        groups.append(_summarise(ALL_BLURRED, blurred, best))
    static_rows = [r.psnr_output_vs_input for r in results if r.static]
    sharp_rows = [r.psnr_sharp_input for r in results if r.psnr_sharp_input is not None]
    static = None
    if static_rows:
        static = {"pairs": len(static_rows), "mean_psnr_vs_input": _mean(static_rows),
                  "min_psnr_vs_input": min(static_rows)}
    sharp_check = None
    if sharp_rows:
        sharp_check = {"pairs": len(sharp_rows), "mean_psnr": _mean(sharp_rows), "min_psnr": min(sharp_rows)}
    return EvaluationReport(
        model=str(config.model),
        pairs_dir=str(config.pairs),
        split=config.split,
        crop_border=config.crop_border,
        results=results,
        groups=groups,
        best_baselines=best,
        static=static,
        sharp_check=sharp_check,
        temporal=temporal,
        definitions=_definitions(config.crop_border),
        ensemble=config.ensemble,
        sharp_video=sharp_video,
    )


def _run_checks(model: torch.nn.Module, runs: list[list[PairRecord]], restored: dict[int, np.ndarray],
                device: torch.device, config: EvaluateConfig) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    """The checks of runs of consecutive pairs, each run's pairs loaded once:

    * the flow-warping error (:mod:`models.temporal`) of the output, the input and the sharp
      frames over every two consecutive pairs;
    * for video models with ``sharp_check``, each run's sharp frames fed as a sharp video:
      every frame with the sharp frames of its neighbours in the run (past the run's ends the
      frame itself, as at a clip's first and last frames): {"pairs", "mean_psnr", "min_psnr"}.
    """
    in_frames, centre = model.config.in_frames, model.config.in_frames // 2
    error, sharp_in = WarpingError(), []
    for run in runs:
        loaded = [load_pair(record, in_frames) for record in run]
        for (a, pa), (b, pb) in zip(zip(run, loaded), zip(run[1:], loaded[1:])):
            error.add((pa.sharp, pb.sharp),
                      output=(restored[id(a)], restored[id(b)]),
                      input=(to_float(pa.blurry_frames[centre]), to_float(pb.blurry_frames[centre])),
                      sharp=(to_float(pa.sharp), to_float(pb.sharp)))
        if config.sharp_check and in_frames > 1:
            sharps = [pair.sharp for pair in loaded]
            for i, sharp in enumerate(sharps):
                window = [sharps[i + o] if 0 <= i + o < len(sharps) else sharp for o in range(-centre, centre + 1)]
                output = _restore(model, stack_frames(window), device)
                sharp_in.append(psnr(output, to_tensor(sharp), crop_border=config.crop_border).item())
    sharp_video = None
    if sharp_in:
        sharp_video = {"pairs": len(sharp_in), "mean_psnr": _mean(sharp_in), "min_psnr": min(sharp_in)}
    return error.result(), sharp_video


# --------------------------------------------------------------------------- output


def _verdict(value: float) -> str:
    return "ok" if value >= SHARP_FIDELITY_DB else "FAIL"


def format_table(report: EvaluationReport) -> str:
    """Human-readable results: per-source table, baseline choice, sharp-frame checks, definitions."""
    methods = list(report.best_baselines)
    short = {"unsharp": "unsharp", "richardson_lucy": "R-L", "wiener": "Wiener"}
    head = f"{'source':<22}{'pairs':>6}  {'input PSNR/SSIM':>16}  {'output PSNR/SSIM':>17}  {'gain':>7}"
    head += "".join(f"  {short[m] + ' gain':>12}" for m in methods)
    lines = [
        f"model {report.model} on {report.pairs_dir} (split {report.split}, {len(report.results)} pairs, "
        f"{sum(r.static for r in report.results)} static)",
        head,
        "-" * len(head),
    ]
    for g in report.groups:
        if g.name == ALL_BLURRED:
            lines.append("-" * len(head))
        row = (f"{g.name[:22]:<22}{g.pairs:>6}  {g.psnr_input:>8.2f} / {g.ssim_input:.3f}  "
               f"{g.psnr_output:>9.2f} / {g.ssim_output:.3f}  {g.gain:>+7.2f}")
        row += "".join(f"  {g.baselines[m]['gain']:>+12.2f}" for m in methods)
        lines.append(row)
    if not report.groups:
        lines.append("(no blurred pairs)")
    lines.append("PSNR in dB; gain = output PSNR - input PSNR, mean over pairs.")
    if methods:
        chosen = "; ".join(f"{short[m]} {report.best_baselines[m]}" for m in methods)
        lines.append(f"baselines: best single setting per method on these same pairs: {chosen}")
    if report.static:
        s = report.static
        lines.append(
            f"static pairs ({s['pairs']:.0f}): PSNR(output, input) mean {s['mean_psnr_vs_input']:.2f} dB, "
            f"min {s['min_psnr_vs_input']:.2f} dB [{_verdict(s['min_psnr_vs_input'])}: >= {SHARP_FIDELITY_DB:.0f} dB]"
        )
    if report.sharp_check:
        s = report.sharp_check
        lines.append(
            f"sharp frames fed as static windows ({s['pairs']:.0f}): PSNR(output, sharp) mean {s['mean_psnr']:.2f} dB, "
            f"min {s['min_psnr']:.2f} dB [{_verdict(s['min_psnr'])}: >= {SHARP_FIDELITY_DB:.0f} dB]"
        )
    if report.sharp_video:
        s = report.sharp_video
        lines.append(
            f"sharp frames fed as a video, with their sharp neighbours ({s['pairs']:.0f}): PSNR(output, sharp) mean "
            f"{s['mean_psnr']:.2f} dB, min {s['min_psnr']:.2f} dB [{_verdict(s['min_psnr'])}: >= {SHARP_FIDELITY_DB:.0f} dB]"
        )
    if report.temporal:
        t = report.temporal
        verdict = "ok" if t["output"] <= t["input"] else "flickers more than the input"
        lines.append(
            f"temporal consistency ({t['pairs']:.0f} consecutive pairs): warping error output {t['output']:.3f}, "
            f"input {t['input']:.3f}, sharp {t['sharp']:.3f} [{verdict}]")
    lines.append(report.definitions["psnr"])
    lines.append(report.definitions["ssim"])
    return "\n".join(lines)


def write_json(report: EvaluationReport, path: str | Path) -> None:
    """Write ``report.to_json()``; NaN (empty groups) becomes null."""

    def clean(value):  # noqa: ANN001, ANN202
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    Path(path).write_text(json.dumps(clean(report.to_json()), indent=2) + "\n", encoding="utf-8")


# BGR colours that stay distinct on white (Tableau 10).
PALETTE = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
           (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23))
BASELINE_COLOURS = {"unsharp": (150, 150, 150), "richardson_lucy": (90, 90, 90), "wiener": (30, 30, 30)}
PLOT_SIZE = (1000, 640)  # width, height in px
MARGINS = (90, 230, 60, 80)  # left, right (legend), top, bottom
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _ticks(lo: float, hi: float) -> list[float]:
    """About six round tick values (multiples of 1, 2, 2.5 or 5 x 10^k) in [lo, hi]."""
    raw = (hi - lo) / 6
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step)
    return [round(k * step, 6) for k in range(first, math.floor(hi / step) + 1)]


def _marker(img: np.ndarray, method: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    if method == "unsharp":
        cv2.drawMarker(img, (x, y), colour, cv2.MARKER_TILTED_CROSS, 9, 1, cv2.LINE_AA)
    elif method == "richardson_lucy":
        cv2.drawMarker(img, (x, y), colour, cv2.MARKER_TRIANGLE_UP, 9, 1, cv2.LINE_AA)
    else:
        cv2.drawMarker(img, (x, y), colour, cv2.MARKER_SQUARE, 8, 1, cv2.LINE_AA)


def draw_gain_plot(report: EvaluationReport, path: str | Path) -> None:
    """DBN's plot: x = input PSNR, y = PSNR gain, one point per pair, written as PNG.

    Model points are filled discs coloured by source (static pairs hollow); the best
    setting of each baseline is drawn in grey markers; the dashed line is zero gain.
    """
    width, height = PLOT_SIZE
    left, right, top, bottom = MARGINS
    img = np.full((height, width, 3), 255, np.uint8)
    rows = [r for r in report.results if r.psnr_input < MAX_PSNR_DB]
    xs = [r.psnr_input for r in rows] or [20.0, 40.0]
    ys = [r.gain for r in rows] + [0.0]
    for method, label in report.best_baselines.items():
        ys += [r.baseline_gain(method, label) for r in rows]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    x_pad, y_pad = max(0.5, 0.05 * (x_hi - x_lo)), max(0.5, 0.08 * (y_hi - y_lo))
    x_lo, x_hi, y_lo, y_hi = x_lo - x_pad, x_hi + x_pad, y_lo - y_pad, y_hi + y_pad

    def to_px(x: float, y: float) -> tuple[int, int]:
        px = left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)
        py = height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom)
        return int(round(px)), int(round(py))

    # Grid, ticks and labels.
    for value in _ticks(x_lo, x_hi):
        px, _ = to_px(value, y_lo)
        cv2.line(img, (px, top), (px, height - bottom), (235, 235, 235), 1)
        cv2.putText(img, f"{value:g}", (px - 12, height - bottom + 22), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for value in _ticks(y_lo, y_hi):
        _, py = to_px(x_lo, value)
        cv2.line(img, (left, py), (width - right, py), (235, 235, 235), 1)
        cv2.putText(img, f"{value:+g}" if value else "0", (left - 55, py + 5), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    _, zero_y = to_px(x_lo, 0.0)
    for x in range(left, width - right, 12):
        cv2.line(img, (x, zero_y), (min(x + 6, width - right), zero_y), (0, 0, 0), 1)
    x_label_at = (left + (width - left - right) // 2 - 70, height - 25)
    cv2.putText(img, "input PSNR (dB)", x_label_at, FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "PSNR gain (dB)", (10, top - 20), FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    title = "PSNR gain vs input PSNR (DBN plot)"
    cv2.putText(img, title, (left + 150, top - 20), FONT, 0.65, (0, 0, 0), 1, cv2.LINE_AA)

    # Points: baselines first so the model's stay on top.
    for method, label in report.best_baselines.items():
        for r in rows:
            _marker(img, method, *to_px(r.psnr_input, r.baseline_gain(method, label)), BASELINE_COLOURS[method])
    sources = sorted({r.source for r in rows})
    colour_of = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sources)}
    for r in rows:
        cv2.circle(img, to_px(r.psnr_input, r.gain), 5, colour_of[r.source], 1 if r.static else -1, cv2.LINE_AA)

    # Legend.
    lx, ly = width - right + 15, top + 10
    cv2.putText(img, "model, by source:", (lx, ly), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for source in sources[:12]:
        ly += 22
        cv2.circle(img, (lx + 6, ly - 5), 5, colour_of[source], -1, cv2.LINE_AA)
        cv2.putText(img, source[:22], (lx + 18, ly), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if len(sources) > 12:
        ly += 22
        cv2.putText(img, f"... {len(sources) - 12} more", (lx + 18, ly), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if any(r.static for r in rows):
        ly += 22
        cv2.circle(img, (lx + 6, ly - 5), 5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, "static pair", (lx + 18, ly), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if report.best_baselines:
        ly += 34
        cv2.putText(img, "baselines (best setting):", (lx, ly), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        names = {"unsharp": "unsharp mask", "richardson_lucy": "Richardson-Lucy", "wiener": "Wiener"}
        for method in report.best_baselines:
            ly += 22
            _marker(img, method, lx + 6, ly - 5, BASELINE_COLOURS[method])
            cv2.putText(img, names[method], (lx + 18, ly), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


SHEET_TILE = 256  # px: each tile of the sheet is scaled to this height


def draw_sheet(report: EvaluationReport, path: str | Path, *, count: int = 3, device: str = "auto") -> Path:
    """The ``count`` worst and best blurred pairs by gain, a row each: blurred | restored | sharp,
    each tile labelled with its PSNR against the sharp frame (as BasicSR's visualisations)."""
    rows = sorted((r for r in report.results if not r.static), key=lambda r: r.gain)
    chosen = rows if len(rows) <= 2 * count else rows[:count] + rows[-count:]
    if not chosen:
        raise ValueError("no blurred pairs to show")
    torch_device = pick_device(device)
    model = load_generator(report.model, device=torch_device).to(memory_format=torch.channels_last)
    if report.ensemble != 1:
        model = SelfEnsemble(model, report.ensemble)
    records = {(r.source, r.index): r for r in read_manifest(report.pairs_dir)}
    sheet_rows = []
    for result in chosen:
        pair = load_pair(records[(result.source, result.index)], model.config.in_frames)
        restored = _restore(model, stack_frames(pair.blurry_frames), torch_device)
        sheet_rows.append(comparison_row(to_float(pair.blurry_frames[model.config.in_frames // 2]),
                                         restored.permute(1, 2, 0).cpu().numpy(), to_float(pair.sharp),
                                         result.psnr_input, result.psnr_output))
    return write_sheet(sheet_rows, path, tile_height=SHEET_TILE)


def comparison_row(blurry: np.ndarray, restored: np.ndarray, sharp: np.ndarray,
                   psnr_input: float, psnr_output: float) -> list[tuple[np.ndarray, str]]:
    """The tiles of one sheet row, (H, W, 3) float RGB in [0, 1] with their labels:
    blurred and restored with their PSNR against the sharp frame, then the sharp frame."""
    return [(blurry, f"blurred {psnr_input:.2f} dB"),
            (restored, f"restored {psnr_output:.2f} dB ({psnr_output - psnr_input:+.2f})"),
            (sharp, "sharp")]


def write_sheet(rows: list[list[tuple[np.ndarray, str]]], path: str | Path, *,
                tile_height: int | None = None) -> Path:
    """Write rows of labelled tiles, (H, W, 3) float RGB in [0, 1], as one image: each tile
    scaled to ``tile_height`` (None: as it is), its label written on it; rows are padded
    with black to the widest."""
    lines = []
    for tiles in rows:
        scaled = []
        for image, text in tiles:
            h, w = image.shape[:2]
            if tile_height is not None:
                image = cv2.resize(image, (round(w * tile_height / h), tile_height), interpolation=cv2.INTER_AREA)
            tile = np.ascontiguousarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)[:, :, ::-1])
            cv2.putText(tile, text, (6, 18), FONT, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(tile, text, (6, 18), FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            scaled.append(tile)
        lines.append(np.concatenate(scaled, axis=1))
    width = max(line.shape[1] for line in lines)
    sheet = np.concatenate([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))) for line in lines])
    path = Path(path)
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"could not write {path}")
    return path


def write_outputs(report: EvaluationReport, out_dir: str | Path) -> tuple[Path, Path, Path | None]:
    """Write ``results.json``, ``gain_plot.png`` and, where there are blurred pairs,
    ``sheet.png`` (worst and best pairs) into ``out_dir``; return their paths (the sheet's
    None when there was none to draw; an earlier run's is removed, not left to look current)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, plot_path, sheet_path = out / "results.json", out / "gain_plot.png", out / "sheet.png"
    write_json(report, json_path)
    draw_gain_plot(report, plot_path)
    if any(not r.static for r in report.results):
        draw_sheet(report, sheet_path)
        return json_path, plot_path, sheet_path
    sheet_path.unlink(missing_ok=True)
    return json_path, plot_path, None
