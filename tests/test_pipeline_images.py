"""Still images and folders of numbered frames: what comes out keeps what went in (bit depth,
alpha, grey, names, format), goes through the video path's restorer, and bad requests fail
with one clear line and no output."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models import save_generator
from pipeline.cli import main
from pipeline.config import ProcessConfig
from pipeline.images import process_images, read_picture
from pipeline.process import make_restorer
from tests.conftest import make_identity_model
from tests.media import frame_rgb, psnr


def _write(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    channels = [rgb[:, :, 2], rgb[:, :, 1], rgb[:, :, 0]]
    if alpha is not None:
        channels.append(alpha)
    assert cv2.imwrite(str(path), np.dstack(channels))


def _read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _process(capsys, *args) -> tuple[int, str, str]:
    code = main(["process", "-q", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_16_bit_png_with_alpha_keeps_depth_and_alpha(tmp_path, capsys, identity_model_file):
    rgb = frame_rgb(3, 40, 30, depth=16)
    alpha = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    _write(tmp_path / "frame.png", rgb, alpha)
    code, out, err = _process(capsys, tmp_path / "frame.png", "--model", identity_model_file)
    assert code == 0, err
    written = _read(tmp_path / "frame.deblurred.png")
    assert written.dtype == np.uint16 and written.shape == (30, 40, 4)
    np.testing.assert_array_equal(written[:, :, 3], alpha)  # alpha carried over untouched
    np.testing.assert_array_equal(written[:, :, 2::-1], rgb)  # identity model: same pixels
    assert "frame.deblurred.png" in out


@pytest.mark.parametrize("suffix", [".tif", ".jpg"])
def test_default_output_keeps_the_format(tmp_path, capsys, identity_model_file, suffix):
    depth = 16 if suffix == ".tif" else 8
    rgb = frame_rgb(1, 48, 32, depth=depth)
    _write(tmp_path / f"photo{suffix}", rgb)
    code, _, err = _process(capsys, tmp_path / f"photo{suffix}", "--model", identity_model_file)
    assert code == 0, err
    written = read_picture(tmp_path / f"photo.deblurred{suffix}")
    assert written.rgb.dtype == rgb.dtype and written.rgb.shape == rgb.shape
    if suffix == ".jpg":
        assert (tmp_path / "photo.deblurred.jpg").read_bytes()[:2] == b"\xff\xd8"
        decoded = read_picture(tmp_path / f"photo{suffix}").rgb
        assert psnr(written.rgb, decoded) > 30  # one more JPEG generation, at quality 95
    else:
        np.testing.assert_array_equal(written.rgb, rgb)


def test_grey_stays_grey_and_16_bit_to_jpeg_is_rounded(tmp_path, capsys, identity_model_file):
    grey = frame_rgb(2, 40, 30, depth=16)[:, :, 1]
    assert cv2.imwrite(str(tmp_path / "scan.png"), grey)
    code, _, err = _process(capsys, tmp_path / "scan.png", "-o", tmp_path / "scan.jpg",
                            "--model", identity_model_file)
    assert code == 0, err
    written = _read(tmp_path / "scan.jpg")
    assert written.dtype == np.uint8 and written.ndim == 2
    assert psnr(written, np.round(grey / 257).astype(np.uint8)) > 35


def test_image_goes_through_the_video_restorer(tmp_path):
    """Same model, tiling and precision as video frames: the pixels the restorer gives."""
    rgb = frame_rgb(5, 64, 48)
    _write(tmp_path / "in.png", rgb)
    model = make_identity_model()
    torch.manual_seed(0)
    with torch.no_grad():  # a model that changes pixels, so the comparison means something
        for p in model.parameters():
            p += 0.05 * torch.randn_like(p)
    config = ProcessConfig(tile=32, tile_overlap=8, progress=False, device="cpu")
    result = process_images(tmp_path / "in.png", tmp_path / "out.png", config=config, model=model)
    expected = make_restorer(config, model).restore([rgb])[0]
    assert result.frames == 1
    assert psnr(expected, rgb) < 60, "the test model must change the image"
    np.testing.assert_array_equal(read_picture(tmp_path / "out.png").rgb, expected)


def _frame_folder(folder: Path, count: int, *, first: int = 1, depth: int = 8) -> list[np.ndarray]:
    folder.mkdir()
    frames = [frame_rgb(i, 40, 30, depth=depth) for i in range(count)]
    for i, rgb in enumerate(frames):
        _write(folder / f"shot_010.{first + i:04d}.png", rgb)
    (folder / "notes.txt").write_text("not a frame")
    return frames


def test_frame_folder_to_folder_of_the_same_names(tmp_path, capsys):
    model = tmp_path / "three.safetensors"
    save_generator(make_identity_model(in_frames=3), model)  # neighbours across the batch
    frames = _frame_folder(tmp_path / "plate", 7, first=1001, depth=16)
    code, out, err = _process(capsys, tmp_path / "plate", "-o", tmp_path / "sharp",
                              "--model", model, "--batch-size", "3")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "sharp").iterdir())
    assert names == [f"shot_010.{1001 + i:04d}.png" for i in range(7)]
    for name, rgb in zip(names, frames):
        written = _read(tmp_path / "sharp" / name)
        assert written.dtype == np.uint16
        np.testing.assert_array_equal(written[:, :, ::-1], rgb)
    assert "7 frames" in out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no partial left"


def test_existing_output_needs_overwrite(tmp_path, capsys, identity_model_file):
    _frame_folder(tmp_path / "plate", 3)
    (tmp_path / "plate.deblurred").mkdir()
    (tmp_path / "plate.deblurred" / "old.png").write_bytes(b"old")
    code, _, err = _process(capsys, tmp_path / "plate", "--model", identity_model_file)
    assert code == 2 and "already exists" in err and "Traceback" not in err
    assert [p.name for p in (tmp_path / "plate.deblurred").iterdir()] == ["old.png"]
    code, _, err = _process(capsys, tmp_path / "plate", "--model", identity_model_file,
                            "--overwrite")
    assert code == 0, err
    # The frames are replaced by name; what else the folder holds is the user's and stays.
    assert sorted(p.name for p in (tmp_path / "plate.deblurred").iterdir()) == \
        ["old.png", "shot_010.0001.png", "shot_010.0002.png", "shot_010.0003.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("case, expected", [
    ("gif", "image outputs can be .png"),
    ("mixed sizes", "must share one size"),
    ("two frame 1", "both frame 1"),
    ("no number", "needs a number"),
    ("empty folder", "no numbered image frames"),
    ("corrupt", "cannot read it as an image"),
    ("folder to a video", "not to a video"),
])
def test_bad_requests_fail_cleanly(tmp_path, capsys, identity_model_file, case, expected):
    source = tmp_path / "in"
    output = tmp_path / "out"
    if case == "gif":
        source = tmp_path / "frame.png"
        _write(source, frame_rgb(0, 32, 24))
        output = tmp_path / "frame.gif"
    elif case == "corrupt":
        source = tmp_path / "frame.png"
        source.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        output = tmp_path / "frame.out.png"
    else:
        _frame_folder(source, 3)
        if case == "mixed sizes":
            _write(source / "shot_010.0004.png", frame_rgb(3, 20, 20))
        elif case == "two frame 1":
            _write(source / "other_1.png", frame_rgb(3, 40, 30))
        elif case == "no number":
            _write(source / "cover.png", frame_rgb(3, 40, 30))
        elif case == "empty folder":
            for p in source.glob("*.png"):
                p.unlink()
        elif case == "folder to a video":  # it used to make a folder named shot.mp4
            output = tmp_path / "shot.mp4"
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = _process(capsys, source, "-o", output, "--model", identity_model_file)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "no output or partial left"


@pytest.mark.parametrize("suffix,real", [(".mp4", ".png"), (".mov", ".jpg")])
def test_image_named_like_a_video_is_restored_as_an_image(tmp_path, capsys, caplog,
                                                          identity_model_file, suffix, real):
    # FFmpeg reads such a file as a one-frame video; the user is told it is an image, and
    # gets one back in its real format.
    rgb = frame_rgb(2, 48, 32)
    _write(tmp_path / f"photo{real}", rgb)
    (tmp_path / f"photo{real}").rename(tmp_path / f"clip{suffix}")
    source = read_picture(tmp_path / f"clip{suffix}").rgb
    code, out, err = _process(capsys, tmp_path / f"clip{suffix}", "--model", identity_model_file)
    assert code == 0, err
    assert "image, not a video" in caplog.text  # a warning, on stderr from the command line
    written = tmp_path / f"clip.deblurred{real}"
    assert f"{written}\t1 image\t" in out
    assert psnr(read_picture(written).rgb, source) > (60 if real == ".png" else 30)
    # Asked for a video, it says what to do instead, and writes nothing.
    code, out, err = _process(capsys, tmp_path / f"clip{suffix}", "-o", tmp_path / "x.mp4",
                              "--model", identity_model_file)
    assert code == 2 and f"give an image output (e.g. -o x{real})" in err  # a usage mistake
    assert not (tmp_path / "x.mp4").exists()
