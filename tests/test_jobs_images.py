"""`jobs deblur` over folders of image frames: mirrored, same names, resumable, a bad folder
reported while the others complete."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from jobs import cli
from tests.media import frame_rgb
from unsmear.cli_conventions import EXIT_FAILED


def _frames(folder: Path, count: int, *, depth: int = 8) -> list[np.ndarray]:
    folder.mkdir(parents=True)
    frames = [frame_rgb(i, 40, 30, depth=depth) for i in range(count)]
    for i, rgb in enumerate(frames):
        assert cv2.imwrite(str(folder / f"f{i + 1:03d}.png"), rgb[:, :, ::-1])
    return frames


def test_folders_of_frames_are_deblurred_resumably(tmp_path, capsys, identity_model_file):
    root = tmp_path / "in"
    plate = _frames(root / "shots" / "plate", 4, depth=16)
    _frames(root / "bad", 2)
    assert cv2.imwrite(str(root / "bad" / "f003.png"), frame_rgb(2, 16, 16))  # another size
    out = tmp_path / "out"
    args = ["deblur", str(root), str(out), "--model", identity_model_file, "-q",
            "--device", "cpu"]

    assert cli.main(args) == EXIT_FAILED  # one folder failed, the other is done
    capsys.readouterr()
    names = sorted(p.name for p in (out / "shots" / "plate").iterdir())
    assert names == ["f001.png", "f002.png", "f003.png", "f004.png"]
    for name, rgb in zip(names, plate):
        written = cv2.imread(str(out / "shots" / "plate" / name), cv2.IMREAD_UNCHANGED)
        assert written.dtype == np.uint16  # 16 bits kept
        np.testing.assert_array_equal(written[:, :, ::-1], rgb)
    report = json.loads((out / "unsmear-report.json").read_text())
    status = {row["item"]: (row["status"], row["frames"]) for row in report["items"]}
    assert status == {"shots/plate/": ("done", 4), "bad/": ("failed", 0)}
    assert not (out / "bad").exists() or not list((out / "bad").iterdir())

    (root / "bad" / "f003.png").unlink()  # fixed: only that folder is redone
    assert cli.main(args) == 0
    report = json.loads((out / "unsmear-report.json").read_text())
    status = {row["item"]: (row["status"], row["frames"]) for row in report["items"]}
    assert status == {"shots/plate/": ("skipped", 4), "bad/": ("done", 2)}

    # A restored frame deleted from a finished folder: the folder is restored again, whole.
    (out / "shots" / "plate" / "f002.png").unlink()
    assert cli.main(args) == 0
    report = json.loads((out / "unsmear-report.json").read_text())
    status = {row["item"]: (row["status"], row["frames"]) for row in report["items"]}
    assert status == {"shots/plate/": ("done", 4), "bad/": ("skipped", 2)}
    assert sorted(p.name for p in (out / "shots" / "plate").iterdir()) == names


def test_photos_are_restored_one_by_one(tmp_path, capsys, identity_model_file):
    """A folder whose images carry no frame numbers holds photos (and so does the top folder
    with a poster beside the videos): each is restored on its own, to the same name, resumably;
    they used to fail as a 'folder of frames' without numbers."""
    root = tmp_path / "in"
    (root / "holiday").mkdir(parents=True)
    photos = {"holiday/beach.jpg": frame_rgb(0, 40, 30), "holiday/dog.png": frame_rgb(1, 36, 28),
              "poster.png": frame_rgb(2, 32, 24)}
    for name, rgb in photos.items():
        assert cv2.imwrite(str(root / name), rgb[:, :, ::-1])
    out = tmp_path / "out"
    args = ["deblur", str(root), str(out), "--model", identity_model_file, "-q", "--device", "cpu"]
    assert cli.main(args) == 0, capsys.readouterr().err
    report = json.loads((out / "unsmear-report.json").read_text())
    assert {row["item"]: (row["status"], row["frames"]) for row in report["items"]} == \
        {name: ("done", 1) for name in photos}
    for name, rgb in photos.items():
        written = cv2.imread(str(out / name))[:, :, ::-1]
        assert written.shape == rgb.shape
        if name.endswith(".png"):  # lossless: the identity model gives the photo back
            np.testing.assert_array_equal(written, rgb)
    (out / "holiday" / "dog.png").unlink()
    assert cli.main(args) == 0
    report = json.loads((out / "unsmear-report.json").read_text())
    assert {row["item"]: row["status"] for row in report["items"]} == \
        {"holiday/beach.jpg": "skipped", "holiday/dog.png": "done", "poster.png": "skipped"}
