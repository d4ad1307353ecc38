"""The GPU procedure rehearsed on the CPU: bundle, then smoke, train and bench with --tiny.

The lent GPU machine has no network and lacks some of our dependencies (Ray, decord,
imageio-ffmpeg; PyAV travels as a wheel). The rehearsal runs with those imports blocked,
so the first GPU call cannot fail on a missing module, file or flag.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_models_synthetic import write_photo
from tests.test_models_train import write_pairs

ROOT = Path(__file__).resolve().parents[1]
ABSENT_ON_GPU_IMAGE = ("ray", "decord", "imageio_ffmpeg")

BLOCKER = f'''
import importlib.abc, sys
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT_ON_GPU_IMAGE!r}:
            raise ImportError(f"{{name}} is not on the GPU image")
sys.meta_path.insert(0, _Absent())
'''


@pytest.mark.slow
def test_the_gpu_procedure_runs_end_to_end_on_the_cpu(tmp_path):
    photos = tmp_path / "photos"
    for i, name in enumerate(("kodim01", "kodim10", "kodim14", "kodim20", "street", "park")):
        write_photo(photos / f"{name}.png", width=120, height=96, seed=i)
    real = write_pairs(tmp_path / "real_pairs")
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, str(ROOT / "gpu" / "bundle.py"), "--photos", str(photos), "--real", str(real),
                    "--no-wheels", "--out", str(bundle)], check=True, cwd=ROOT)
    assert json.loads((bundle / "bundle.json").read_text())["photos"] == 6

    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}"}
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "gpu" / "procedure.py"), "smoke", "train", "bench", "--tiny", "--device", "cpu",
         "--minutes", "0.05", "--bench-seconds", "300", "--bundle", str(bundle), "--out", str(out),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]

    smoke = json.loads((out / "smoke.json").read_text())
    assert smoke["process_frames"] == 10 and smoke["train_steps_per_s"] > 0
    assert smoke["environment"]["av"]
    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["steps"] >= 1
    assert {"rendered", "real_real_pairs"} <= set(evaluation["evaluations"])
    assert evaluation["evaluations"]["rendered"]["sharp_check"]["pairs"] == 4
    for name in ("model.safetensors", "train_log.csv", "sheet.png"):
        assert (out / name).stat().st_size > 0, name
    from models.checkpoint import load_generator
    trained = load_generator(out / "model.safetensors").config
    assert (trained.in_frames, trained.motion) == (3, "flow"), "the chosen video recipe"
    assert (out / "throughput.json").is_file()
    # the device tool brings back at most 8 files
    assert len(list(out.iterdir())) <= 8


def test_the_procedure_says_what_is_missing(tmp_path):
    completed = subprocess.run([sys.executable, str(ROOT / "gpu" / "procedure.py"), "smoke", "--bundle",
                                str(tmp_path / "nothing"), "--out", str(tmp_path / "out")],
                               cwd=ROOT, capture_output=True, text=True)
    assert completed.returncode == 2 and "gpu/bundle.py" in completed.stderr
