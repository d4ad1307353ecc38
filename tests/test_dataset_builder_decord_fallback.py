"""decord is optional (no wheels for macOS or Linux ARM): without it the builder reads videos
with PyAV and builds the same pairs; with it, 8-bit videos are read through decord."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from dataset_builder.sources import decord, probe_source
from tests.media import make_clip, psnr

REPO = Path(__file__).resolve().parents[1]
# Runs the builder in a fresh interpreter where `import decord` fails, as on a Mac.
WITHOUT_DECORD = ("import sys; sys.modules['decord'] = None; "
                  "from dataset_builder.cli import main; sys.exit(main(sys.argv[1:]))")


def _build(args: list[str], *, decord_available: bool) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dataset_builder"] if decord_available else \
        [sys.executable, "-c", WITHOUT_DECORD]
    return subprocess.run([*command, *args], cwd=REPO, capture_output=True, text=True)


def _pngs(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*.png"))}


@pytest.mark.skipif(decord is None, reason="decord is not installed on this platform")
@pytest.mark.parametrize("width, height, rotation", [(64, 48, None), (96, 64, 90)])
def test_same_pairs_with_and_without_decord(tmp_path, width, height, rotation):
    """The same pairs, upright (a phone's rotated clip too: decord turns its frames, PyAV's
    are turned by the display matrix)."""
    (tmp_path / "footage").mkdir()
    clip = make_clip(tmp_path / "footage" / "clip.mp4", frames=40, width=width, height=height,
                     rotation=rotation).path
    info = probe_source(clip)
    assert info.reader == "decord"
    assert (info.width, info.height) == ((height, width) if rotation else (width, height))
    built = {}
    for available in (True, False):
        out = tmp_path / f"pairs_{available}"
        result = _build(["build", str(clip.parent), str(out), "--window", "5", "--stride", "8",
                         "--val-fraction", "0", "--no-progress"], decord_available=available)
        assert result.returncode == 0, result.stderr
        built[available] = _pngs(out)
    assert built[True].keys() == built[False].keys()
    assert len(built[True]) >= 8  # blurry + sharp for every pair
    for name, path in built[True].items():
        with_decord = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        with_pyav = cv2.imread(str(built[False][name]), cv2.IMREAD_UNCHANGED)
        assert with_decord.shape[:2] == with_pyav.shape[:2] == (info.height, info.width), name
        # Both decode with FFmpeg; only the YUV→RGB conversion may round differently.
        assert psnr(with_decord, with_pyav) > 40, name


def test_probe_without_decord_reads_with_pyav(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=10).path
    script = ("import sys; sys.modules['decord'] = None; "
              "from dataset_builder.sources import probe_source, open_source; "
              f"info = probe_source({str(clip)!r}); r = open_source(info); "
              "print(info.reader, len(r.read(0, 100)))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pyav", "10"]  # every frame, read by PyAV
