"""environment.yml solves where users are: conda-forge only (the `pytorch` channel froze at
torch 2.5 with an FFmpeg too old for PyAV), OpenCV once, decord left to pyproject's marker,
and every other dependency of the package from conda, so pip adds nothing twice."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# pip distribution → conda-forge package, where the names differ.
CONDA_NAMES = {"torch": "pytorch", "ray": "ray-core", "opencv-python-headless": None,
               "decord": None}  # None: installed by pip, never by conda


def _pyproject_dependencies() -> list[str]:
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    return [re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower()
            for d in re.findall(r'^\s*"([^"]+)"', block, re.M)]


def test_environment_yml_is_conda_forge_only_and_installs_each_package_once():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda = {re.match(r"[A-Za-z0-9_.-]+", d).group(0) for d in env["dependencies"]
             if isinstance(d, str)}
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == ["-e ."]  # the package; its markers decide decord
    assert not {"opencv", "py-opencv", "libopencv", "decord"} & conda
    for dist in _pyproject_dependencies():
        name = CONDA_NAMES.get(dist, dist)
        if name is not None:
            assert name in conda, f"{dist} would be installed by pip over conda's packages"
