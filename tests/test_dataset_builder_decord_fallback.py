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


def _numbered_clip(path: Path, frames: int) -> Path:
    """An 8-bit H.264 clip whose frame i is flat grey 6 * i: which frame a reader served shows."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=240)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": "8", "qp": "0"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 6 * i, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_a_trimmed_mp4_is_read_as_players_show_it(tmp_path):
    """Cut with stream copy (an edit list), an MP4 holds packets before its new start that no
    player shows: the builder counts and reads only the shown frames (decord, which ignores
    edit lists, served the cut frames as copies of the last one, and pairs were made of them)."""
    import imageio_ffmpeg
    import numpy as np

    from dataset_builder.sources import open_source

    full = _numbered_clip(tmp_path / "full.mp4", 40)
    trimmed = tmp_path / "trimmed.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-ss", "0.05", "-i", str(full),
                    "-c", "copy", str(trimmed)], check=True)
    info = probe_source(trimmed)
    assert info.reader == "pyav" and info.num_frames == 28  # frames 12-39 are shown
    reader = open_source(info)
    try:
        levels = [round(float(frame.mean()) / 6) for frame in reader.read(0, 100)]
    finally:
        reader.close()
    assert levels == list(range(12, 40))
    assert np.all(np.diff(levels) == 1)


def test_a_mirrored_video_is_not_read_by_decord():
    """decord applies a display matrix's rotation but not its mirroring."""
    from tests.media import SHARED_DATA

    clip = SHARED_DATA / "videos" / "androidx_media__mp4__sample_rotate_and_reflect.mp4"
    if not clip.is_file():
        pytest.skip("shared sample not present")
    info = probe_source(clip)
    assert info.reader == "pyav" and info.display_matrix is not None
    assert (info.width, info.height) == (720, 1080)  # turned upright


@pytest.mark.skipif(decord is None, reason="decord is not installed on this platform")
def test_decord_failing_mid_file_falls_back_to_pyav(tmp_path, monkeypatch):
    """decord's threaded decoder fails at random frames of some streams FFmpeg decodes (a VP9
    WebM): the reader goes on with PyAV from there, the same frames, instead of failing the
    whole build."""
    from dataset_builder import sources

    clip = _numbered_clip(tmp_path / "clip.mp4", 24)
    info = probe_source(clip)
    assert info.reader == "decord"
    reader = sources.open_source(info)
    first = reader.read(0, 8)

    class Failing:
        def get_batch(self, indices):
            raise RuntimeError("Thread worker: Error sending packet.")

    reader._vr = Failing()
    rest = reader.read(8, 24)
    reader.close()
    levels = [round(float(frame.mean()) / 6) for frame in [*first, *rest]]
    assert levels == list(range(24))
