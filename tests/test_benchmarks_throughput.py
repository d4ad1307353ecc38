"""`benchmarks/throughput.py --quick` on the CPU: every row kind, counted FLOPs, whole clips."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import throughput  # noqa: E402
from models.precision import auto_precision, native_cpu_bf16  # noqa: E402

SIZE = "64x48"
WIDTH, HEIGHT = 64, 48


def hand_count_flops(name: str) -> int:
    """2 × multiply-accumulates of every 3x3 convolution, at the resolution it runs at."""
    config = throughput.NAMED_MODELS[name]
    model = throughput.RRDBNet(config)
    d = config.downscale
    # Trunk at 1/d resolution; each upsampling stage doubles it; conv_hr and conv_last at full.
    scale = {"conv_up1": d // 2, "conv_up2": d // 4, "conv_hr": 1, "conv_last": 1}
    total = 0
    for module_name, conv in model.named_modules():
        if not isinstance(conv, nn.Conv2d):
            continue
        s = scale.get(module_name, d)
        pixels = (HEIGHT // s) * (WIDTH // s)
        k = conv.kernel_size[0] * conv.kernel_size[1]
        total += 2 * conv.in_channels * conv.out_channels * k * pixels
    return total


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("throughput") / "throughput.json"
    threads = torch.get_num_threads()
    try:
        # One thread: on a shared CPU, OpenMP barriers between two threads can stall 100x.
        status = throughput.main([
            "--quick", "--device", "cpu", "--threads", "1", "--json", str(out),
            "--models", "default,tiny-d1,tiny-d4", "--e2e-models", "default",
            "--batch-sizes", "1", "--frames", "2", "--clip-seconds", "0.5"])
    finally:
        torch.set_num_threads(threads)
    return status, json.loads(out.read_text()), out


def test_quick_run_succeeds_and_writes_the_device_and_versions(run, capsys):
    status, report, path = run
    assert status == 0  # every target is n/a on tiny sizes, so none can fail
    assert report["device"] == "cpu" and report["torch"] and report["date"]
    assert report["peak"]["dtype"] == "fp32" and report["peak"]["tflops"] > 0
    # The CPU peak: a matmul big enough to reach it, on every usable core (not --threads 1).
    assert report["peak"]["matmul_size"] >= 2048
    assert report["peak"]["threads"] == len(os.sched_getaffinity(0))
    measured = [r for r in report["rows"] if r["kind"] == "model-only" and r["status"] == "ok"]
    assert measured and all(0 < r["of_peak"] < 1 for r in measured)
    assert report["partial"] is False
    assert throughput.main(["--table", str(path)]) == 0  # the table again, from the JSON
    table = capsys.readouterr().out
    assert "targets:" in table and "end-to-end" in table and "device: cpu" in table


def test_model_only_rows_time_the_cpu_precisions_and_say_why_others_are_skipped(run):
    _, report, _ = run
    rows = [r for r in report["rows"] if r["kind"] == "model-only"]
    # fp32 everywhere; bf16 too where this CPU runs it natively (what --precision auto picks)
    native = {"fp32", "bf16"} if native_cpu_bf16() else {"fp32"}
    for model in ("default", "tiny-d1", "tiny-d4"):
        timed = [r for r in rows if r["model"] == model and r["status"] == "ok"]
        assert {r["precision"] for r in timed} == native, f"timed rows of {model}"
        for r in timed:
            assert r["size"] == SIZE
            assert r["fps"] > 0 and r["frames"] >= r["batch"]
            assert r["tflops"] > 0 and 0 < r["of_peak"]
        skipped = {r["precision"]: r["reason"] for r in rows
                   if r["model"] == model and r["status"] == "skipped" and r["batch"] is None}
        assert set(skipped) == {"tf32", "bf16", "fp16"} - native
        assert all(skipped.values())


@pytest.mark.parametrize("model", ["tiny-d1", "tiny-d4"])
def test_flops_per_frame_match_a_hand_count(run, model):
    _, report, _ = run
    counted = report["models"][model]["flops_per_frame"][SIZE]
    assert counted == pytest.approx(hand_count_flops(model), rel=0.10)


def test_end_to_end_and_naive_rows_process_every_frame_of_the_clip(run):
    _, report, _ = run
    clip_frames = report["clips"][SIZE]["frames"]
    assert clip_frames > 0
    by_kind = {r["kind"]: r for r in report["rows"] if r["kind"] != "model-only"}
    assert set(by_kind) == {"decode-only", "encode-only", "end-to-end", "naive"}
    for kind, row in by_kind.items():
        assert row["status"] == "ok" and row["fps"] > 0, kind
        assert row["frames"] == clip_frames, kind
    for kind in ("end-to-end", "naive"):
        assert by_kind[kind]["output_frames"] == clip_frames, kind
    e2e = by_kind["end-to-end"]
    assert e2e["audio_packets"] > 0  # the clip's audio is copied
    # auto: what the pipeline picks for this CPU (bf16 where it is native)
    assert e2e["precision"] == auto_precision(torch.device("cpu")).name and e2e["model"] == "default"
    assert e2e["vs_model_only"] == pytest.approx(e2e["fps"] / e2e["model_only_fps"])
    naive = by_kind["naive"]
    assert naive["speedup"] == pytest.approx(e2e["fps"] / naive["fps"])


def test_targets_are_computed_but_not_judged_on_stand_ins_at_tiny_sizes(run, capsys):
    _, report, _ = run
    targets = {t["id"]: t for t in report["targets"]}
    assert set(targets) == {"e2e-vs-model-only", "full-res-of-peak", "vs-naive", "e2e-fps"}
    for t in targets.values():
        assert t["status"] == "n/a" and "1920x1080" in t["detail"]
        assert t["value"] is not None and t["value"] > 0
        assert t["margin"] == pytest.approx(t["value"] / t["threshold"] - 1)


def test_table_is_printed_last_with_the_targets():
    report = {
        "date": "2026-01-01", "device": "cuda", "device_name": "NVIDIA H100 80GB HBM3",
        "torch": "2", "cuda": "12", "cudnn": 9, "av": "18", "cpus": 16, "json": "x.json",
        "quick": False,
        "peak": {"dtype": "bf16", "matmul_size": 8192, "tflops": 800.0},
        "models": {"default": {"arch": {"num_block": 4, "num_feat": 32, "num_grow_ch": 16,
                                        "downscale": 4}, "params": 1, "source": "s",
                               "flops_per_frame": {"1920x1080": 2e11},
                               "floor_fps": {"1920x1080": 4000.0}}},
        "rows": [
            {"kind": "model-only", "model": "default", "size": "1920x1080", "precision": "bf16",
             "batch": 16, "compiled": None, "status": "ok", "reason": None, "fps": 500.0,
             "ms_per_frame": 2.0, "tflops": 100.0, "of_peak": 0.125},
            {"kind": "end-to-end", "model": "default", "size": "1920x1080", "precision": "bf16",
             "batch": "auto", "frames": 300, "seconds": 5.0, "fps": 60.0, "status": "ok",
             "reason": None},
            {"kind": "naive", "model": "default", "size": "1920x1080", "precision": "fp16",
             "batch": 1, "frames": 300, "seconds": 30.0, "fps": 10.0, "status": "ok",
             "reason": None},
        ],
    }
    throughput.add_ratios(report["rows"])
    report["targets"] = throughput.evaluate_targets(report)
    status = {t["id"]: t["status"] for t in report["targets"]}
    # 60/500 of model-only fails; 6x the naive loop and exactly 60 frames/s pass; no rrdb23-d1.
    assert status == {"e2e-vs-model-only": "FAIL", "full-res-of-peak": "n/a",
                      "vs-naive": "PASS", "e2e-fps": "PASS"}
    table = throughput.format_report(report)
    assert table.index("targets:") > table.index("model-only")
    assert "FAIL  default model end to end" in table and "NVIDIA H100" in table


@pytest.mark.parametrize("max_seconds, expected", [
    # 0.5 s per frame: batch 8 would take 4 s, over a 3 s cap, so it and 16 are not tried.
    (3, {1: "ok", 4: "ok", 8: "skipped: one call would take ~4.0 s", 16: "skipped: one call"}),
    # With room for batch 8, it runs out of memory, and the larger batch is not tried.
    (10, {1: "ok", 4: "ok", 8: "OOM", 16: "skipped: batch 8 ran out of GPU memory"}),
])
def test_batches_past_an_oom_or_past_the_time_cap_are_skipped_with_the_reason(
        monkeypatch, max_seconds, expected):
    def fake_time_model(net, batch, *args, **kwargs):
        if batch >= 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return throughput.Timing(frames=batch, seconds=0.5 * batch, first_call_seconds=1.0)

    monkeypatch.setattr(throughput, "time_model", fake_time_model)
    cfg = throughput.parse_args(["--quick", "--device", "cpu", "--precisions", "fp32",
                                 "--batch-sizes", "1,4,8,16", "--max-seconds", str(max_seconds)])
    entry = throughput.Entry("tiny-d4", throughput.RRDBNet(throughput.NAMED_MODELS["tiny-d4"]),
                             Path("unused.safetensors"), "random weights")
    rows = throughput.model_only_rows(entry, cfg, torch.device("cpu"), {SIZE: 10**12}, peak=4.0)
    got = {r["batch"]: r["status"] + (f": {r['reason']}" if r["reason"] else "") for r in rows}
    assert set(got) == set(expected)
    for batch, start in expected.items():
        assert got[batch].startswith(start), (batch, got[batch])
    assert rows[0]["fps"] == pytest.approx(2.0) and rows[0]["tflops"] == pytest.approx(2.0)
    assert rows[0]["of_peak"] == pytest.approx(0.5)
