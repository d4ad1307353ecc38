"""Evaluation: PSNR/SSIM against direct computations, baselines, report, plot and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models import RRDBNet, save_generator
from models.baselines import baseline_settings, disk_kernel, richardson_lucy, unsharp_mask, wiener_deconvolve
from models.cli import main
from models.evaluate import ALL_BLURRED, PLOT_SIZE, EvaluateConfig, evaluate, format_table, write_outputs
from models.metrics import MAX_PSNR_DB, psnr, ssim




def _scene(h: int = 40, w: int = 44, seed: int = 0) -> np.ndarray:
    """(H, W, 3) float64 in [0, 1]: gradients, a square and some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([x, y, 0.5 + 0.3 * np.sin(8 * x + 5 * y)], axis=-1)
    img[h // 4 : h // 2, w // 3 : w // 2 + 6] = (0.9, 0.2, 0.1)
    return np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1)


def _numpy_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.clip(a, 0, 1) - b) ** 2)))


def _numpy_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 by the definition: every 11x11 window, Gaussian weights sigma 1.5."""
    offsets = np.arange(11) - 5
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    per_channel = []
    for c in range(a.shape[2]):
        values = []
        for i in range(a.shape[0] - 10):
            for j in range(a.shape[1] - 10):
                x, y = a[i : i + 11, j : j + 11, c], b[i : i + 11, j : j + 11, c]
                mx, my = (w * x).sum(), (w * y).sum()
                vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
                cov = (w * (x - mx) * (y - my)).sum()
                values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
        per_channel.append(np.mean(values))
    return float(np.mean(per_channel))


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


# --------------------------------------------------------------------------- metrics


def test_psnr_and_ssim_match_a_direct_numpy_computation():
    sharp = _scene(16, 21)
    restored = np.clip(sharp + 0.1 * np.sin(np.arange(21))[None, :, None], -0.2, 1.2)  # some values out of range
    assert psnr(_t(restored), _t(sharp)).item() == pytest.approx(_numpy_psnr(restored, sharp), abs=1e-9)
    expected = _numpy_ssim(np.clip(restored, 0, 1), sharp)
    assert ssim(_t(restored), _t(sharp)).item() == pytest.approx(expected, abs=1e-9)
    # float32 input (what evaluate uses) agrees to well below the printed precision.
    assert ssim(_t(restored).float(), _t(sharp).float()).item() == pytest.approx(expected, abs=1e-5)
    cropped = psnr(_t(restored), _t(sharp), crop_border=3).item()
    assert cropped == pytest.approx(_numpy_psnr(restored[3:-3, 3:-3], sharp[3:-3, 3:-3]), abs=1e-9)


def test_identical_images_give_the_psnr_cap_and_ssim_one_and_bad_input_is_refused():
    sharp = _t(_scene(16, 16))
    assert psnr(sharp, sharp).item() == pytest.approx(MAX_PSNR_DB)
    assert ssim(sharp, sharp).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(sharp, sharp[:, :8])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(sharp, sharp, crop_border=4)


# --------------------------------------------------------------------------- baselines


def test_deconvolution_baselines_undo_a_known_blur():
    sharp = _scene(48, 48).astype(np.float32)
    kernel = disk_kernel(7)
    blurry = cv2.filter2D(sharp, -1, kernel, borderType=cv2.BORDER_REFLECT)
    before = _numpy_psnr(blurry, sharp)
    assert _numpy_psnr(richardson_lucy(blurry, kernel, iterations=30), sharp) > before + 1
    wiener = wiener_deconvolve(blurry, kernel, balance=1e-3)
    assert _numpy_psnr(wiener, sharp) > before + 2
    assert abs(wiener.mean() - blurry.mean()) < 1e-3  # the Laplacian prior keeps brightness
    assert _numpy_psnr(unsharp_mask(blurry, sigma=1.5, amount=1.0), sharp) > before
    assert np.array_equal(unsharp_mask(blurry, sigma=2, amount=0.0), np.clip(blurry, 0, 1))


# --------------------------------------------------------------------------- evaluate


def _png(path: Path, img: np.ndarray) -> str:
    cv2.imwrite(str(path), np.round(img[:, :, ::-1] * 255).astype(np.uint8))
    return path.name


def _hand_made_pairs(root: Path) -> Path:
    """Two blurred pairs from two sources and one static pair, all in the val split."""
    root.mkdir()
    lines = []
    for index, (source, static) in enumerate([("street", False), ("dog", False), ("tripod", True)]):
        sharp = _scene(seed=index)
        blurry = sharp if static else cv2.blur(sharp, (9, 1), borderType=cv2.BORDER_REFLECT)
        name = _png(root / f"{index}_blurry.png", blurry)
        lines.append(json.dumps({"split": "val", "source": source, "index": index, "static": static,
                                 "sharp": _png(root / f"{index}_sharp.png", sharp), "blurry": name,
                                 "blurry_frames": [name], "bit_depth": 8}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[:, :, ::-1].astype(np.float64) / 255


def test_evaluate_numbers_match_a_direct_computation(tmp_path):
    pairs = _hand_made_pairs(tmp_path / "pairs")
    torch.manual_seed(0)
    model = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, downscale=2)  # untrained: changes its input
    save_generator(model, tmp_path / "model.safetensors")
    config = EvaluateConfig(
        model=str(tmp_path / "model.safetensors"), pairs=str(pairs), kernel_sizes=(3, 9), rl_iterations=(2, 5)
    )
    report = evaluate(config, progress=False)

    assert [r.source for r in report.results] == ["street", "dog", "tripod"]
    for index, row in enumerate(report.results):
        sharp, blurry = _read(pairs / f"{index}_sharp.png"), _read(pairs / f"{index}_blurry.png")
        with torch.no_grad():
            restored = model(_t(blurry).float()[None])[0].double().numpy().transpose(1, 2, 0)
        restored = np.clip(restored, 0, 1)
        assert row.psnr_input == pytest.approx(_numpy_psnr(blurry, sharp) if index < 2 else MAX_PSNR_DB, abs=1e-3)
        assert row.psnr_output == pytest.approx(_numpy_psnr(restored, sharp), abs=1e-3)
        assert row.ssim_output == pytest.approx(_numpy_ssim(restored, sharp), abs=1e-4)
        assert row.gain == pytest.approx(row.psnr_output - row.psnr_input)
    static = report.results[2]
    assert report.static["min_psnr_vs_input"] == pytest.approx(static.psnr_output_vs_input)

    overall = next(g for g in report.groups if g.name == ALL_BLURRED)
    assert overall.pairs == 2  # the static pair is reported on its own
    assert overall.gain == pytest.approx(np.mean([r.gain for r in report.results[:2]]))
    assert [g.name for g in report.groups] == ["dog", "street", ALL_BLURRED]
    # Each baseline keeps the setting with the best mean PSNR over the blurred pairs.
    for method, label in report.best_baselines.items():
        means = {lab: np.mean([r.baseline_psnr[method][lab] for r in report.results[:2]])
                 for lab in report.results[0].baseline_psnr[method]}
        assert means[label] == max(means.values())
        assert overall.baselines[method]["psnr"] == pytest.approx(means[label])
        # ...and its SSIM is that of the chosen setting's output.
        setting = next(x for x in baseline_settings(kernel_sizes=(3, 9), rl_iterations=(2, 5)) if x.label == label)
        blurry = _read(pairs / "0_blurry.png").astype(np.float32)
        expected = _numpy_ssim(setting.apply(blurry).astype(np.float64), _read(pairs / "0_sharp.png"))
        assert report.results[0].baseline_ssim[method] == pytest.approx(expected, abs=1e-4)

    json_path, plot_path, sheet_path = write_outputs(report, tmp_path / "eval")
    saved = json.loads(json_path.read_text())
    assert saved["results"][0]["psnr_output"] == pytest.approx(report.results[0].psnr_output)
    assert "RGB" in saved["definitions"]["psnr"] and "11x11" in saved["definitions"]["ssim"]
    plot = cv2.imread(str(plot_path))
    assert plot.shape == (PLOT_SIZE[1], PLOT_SIZE[0], 3) and plot.std() > 10  # drawn, not blank
    assert sheet_path == json_path.with_name("sheet.png")
    sheet = cv2.imread(str(sheet_path))
    # one row per blurred pair (two here): blurred | restored | sharp
    assert sheet.shape[0] == 2 * 256 and sheet.shape[1] >= 3 * 256 and sheet.std() > 10


def test_an_identity_model_passes_the_sharp_frame_checks(tmp_path, identity_model_file):
    pairs = _hand_made_pairs(tmp_path / "pairs")
    report = evaluate(EvaluateConfig(model=identity_model_file, pairs=str(pairs), baselines=False), progress=False)
    assert report.static["min_psnr_vs_input"] == pytest.approx(MAX_PSNR_DB)
    assert report.sharp_check["min_psnr"] == pytest.approx(MAX_PSNR_DB)
    assert all(abs(r.gain) < 1e-6 for r in report.results)
    table = format_table(report)
    assert "static pairs (1)" in table and "[ok: >= 40 dB]" in table and "FAIL" not in table


# --------------------------------------------------------------------------- CLI


def test_cli_evaluate_prints_the_table_and_writes_json_and_plot(tmp_path, identity_model_file, capsys):
    pairs = _hand_made_pairs(tmp_path / "pairs")
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", identity_model_file, str(pairs), "--out", str(out),
            "--kernel-sizes", "3,5", "--rl-iterations", "3", "--no-progress"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert ALL_BLURRED in stdout and "street" in stdout and "R-L gain" in stdout
    assert "best single setting per method on these same pairs" in stdout
    assert (out / "results.json").is_file() and (out / "gain_plot.png").is_file()


def test_cli_evaluate_user_errors_are_one_line(tmp_path, capsys):
    pairs = _hand_made_pairs(tmp_path / "pairs")
    assert main(["evaluate", "--model", str(tmp_path / "none.safetensors"), str(pairs)]) == 2
    assert capsys.readouterr().err.strip() == f"error: model not found: {tmp_path / 'none.safetensors'}"

    three = RRDBNet(num_feat=4, num_block=1, num_grow_ch=4, downscale=2, in_frames=3)
    save_generator(three, tmp_path / "three.safetensors")
    assert main(["evaluate", "--model", str(tmp_path / "three.safetensors"), str(pairs), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "has 1 blurred frame(s) but the model takes 3" in err

    save_generator(RRDBNet(num_feat=4, num_block=1, num_grow_ch=4, downscale=2), tmp_path / "one.safetensors")
    assert main(["evaluate", "--model", str(tmp_path / "one.safetensors"), str(pairs), "--no-progress",
                 "--crop-border", "5000", "--no-baselines"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --crop-border 5000 leaves nothing of") and "\n" not in err


def test_a_missing_pair_image_is_one_error_line(tmp_path, capfd):
    """OpenCV's own '[ WARN...] findDecoder' lines (printed by its C++ code) stay quiet."""
    pairs = _hand_made_pairs(tmp_path / "pairs")
    record = json.loads((pairs / "manifest.jsonl").read_text().splitlines()[0])
    (pairs / record["blurry"]).unlink()
    save_generator(RRDBNet(num_feat=4, num_block=1, num_grow_ch=4, downscale=2), tmp_path / "one.safetensors")
    assert main(["evaluate", "--model", str(tmp_path / "one.safetensors"), str(pairs), "-q",
                 "--no-baselines"]) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("error: cannot read image") and "\n" not in err, err


# --------------------------------------------------------------------------- temporal consistency


def _panning_pairs(root: Path, count: int = 4, speed: int = 3) -> Path:
    """Consecutive pairs of one source (sharp frames a stride apart), a scene panning right."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    canvas = cv2.GaussianBlur(rng.random((64, 160, 3)).astype(np.float32), (0, 0), 1.2)
    canvas = (canvas - canvas.min()) / (canvas.max() - canvas.min())

    def view(shift: float) -> np.ndarray:
        return cv2.warpAffine(canvas, np.float32([[1, 0, shift], [0, 1, 0]]), (96, 64),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    lines = []
    for i in range(count):
        centre = 5 * i  # px the scene moves between consecutive frames
        sharp = view(centre)
        blurry = np.mean([view(centre + s) for s in np.linspace(-speed, speed, 9)], axis=0)
        for name, image in ((f"{i}_sharp.png", sharp), (f"{i}_blurry.png", blurry)):
            cv2.imwrite(str(root / name), np.round(image[:, :, ::-1] * 255).astype(np.uint8))
        lines.append(json.dumps({"split": "val", "source": "pan", "index": i, "sharp": f"{i}_sharp.png",
                                 "blurry": f"{i}_blurry.png", "blurry_frames": [f"{i}_blurry.png"],
                                 "sharp_frame": 8 * i, "stride": 8, "static": False, "bit_depth": 8}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


class _Flicker(torch.nn.Module):
    """The identity plus a brightness that changes on every call: a restoration that flickers."""

    def __init__(self) -> None:
        super().__init__()
        self.config = RRDBNet(num_feat=4, num_block=1, num_grow_ch=4).config
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x[:, :3] + (0.04 if self.calls % 2 else -0.04)


def test_evaluate_reports_the_warping_error_of_output_input_and_sharp_frames(tmp_path, identity_model_file,
                                                                             monkeypatch):
    pairs = _panning_pairs(tmp_path / "pairs")
    steady = evaluate(EvaluateConfig(model=identity_model_file, pairs=str(pairs), baselines=False,
                                     sharp_check=False), progress=False)
    t = steady.temporal
    assert t["pairs"] == 3 and 0 < t["input"] < t["sharp"]  # blur smooths away what flow can't match
    # The identity model returns its input (up to 8-bit rounding of the input): as steady as it.
    assert t["output"] == pytest.approx(t["input"], rel=0.05)
    assert "temporal consistency (3 consecutive pairs)" in format_table(steady)

    import models.evaluate
    monkeypatch.setattr(models.evaluate, "load_generator", lambda *a, **k: _Flicker())
    flicker = evaluate(EvaluateConfig(model=identity_model_file, pairs=str(pairs), baselines=False,
                                      sharp_check=False), progress=False)
    assert flicker.temporal["output"] > 5 * flicker.temporal["input"]
    assert "flickers more than the input" in format_table(flicker)
