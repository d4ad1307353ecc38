"""Synthetic high-fps footage from photos (``render``), and building pairs from it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset_builder import BuildConfig, BuildError, build_pairs
from dataset_builder.cli import main
from dataset_builder.config import RenderConfig
from dataset_builder.images import read_image, write_png
from dataset_builder.render import find_photos, render_photos
from dataset_builder.sources import open_source, probe_source


def photo(path: Path, seed: int, size=(150, 200)) -> Path:
    """A photo-like texture: smooth shapes plus fine detail."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.random((6, 8, 3)).astype(np.float32), size[::-1],
                        interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((*size, 3)).astype(np.float32), (0, 0), 1.0)
    image = np.clip(0.7 * coarse + 0.3 * fine, 0, 1)
    write_png(path, np.round(image * 255).astype(np.uint8))
    return path


SMALL = dict(width=64, height=48, seconds=0.15, fps=240.0)


def test_render_writes_lossless_240fps_clips_reproducibly(tmp_path):
    photos = [photo(tmp_path / "photos" / f"p{i}.png", i) for i in range(2)]
    config = RenderConfig(**SMALL, objects=1)
    clips = render_photos(photos, tmp_path / "a", config, progress=False)
    again = render_photos(photos, tmp_path / "b", config, progress=False)
    assert [c.name for c in clips] == ["p0.mkv", "p1.mkv"]
    for clip, twin in zip(clips, again):
        info = probe_source(clip)
        assert info.num_frames == 36 and info.fps == 240.0
        assert (info.width, info.height) == (64, 48)
        assert clip.read_bytes() == twin.read_bytes()  # same seed, same bytes
        sidecar = json.loads(clip.with_suffix(".json").read_text())
        assert sidecar["frames"] == 36 and len(sidecar["objects"]) == 1
    reader = open_source(probe_source(clips[0]))
    frames = reader.read(0, 36)
    assert not np.array_equal(frames[0], frames[-1])  # the camera moved


def test_objects_alone_give_local_blur(tmp_path):
    still_camera = RenderConfig(**SMALL, objects=1, camera_speed=0, shake=0, zoom=0, rotation=0,
                                object_speed=4)
    clip, = render_photos([photo(tmp_path / "p.png", 3)], tmp_path / "clips", still_camera,
                          progress=False)
    frames = open_source(probe_source(clip)).read(0, 36).astype(int)
    changed = np.abs(frames[5] - frames[30]).sum(axis=2) > 0
    assert 0 < changed.mean() < 0.6  # only where the object was or went
    build_pairs([clip], tmp_path / "out", BuildConfig(static_keep=1.0), progress=False)
    for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines():
        r = json.loads(line)
        blurry = read_image(tmp_path / "out" / r["blurry"]).astype(int)
        sharp = read_image(tmp_path / "out" / r["sharp"]).astype(int)
        blurred = np.abs(blurry - sharp).sum(axis=2) > 3
        assert 0 < blurred.mean() < 0.5  # object motion blur, the background stays sharp


def test_render_cli_then_build(tmp_path, capsys):
    photos = tmp_path / "photos"
    photo(photos / "a.png", 1)
    photo(photos / "b.png", 2)
    assert main(["render", str(photos), str(tmp_path / "footage"), "--size", "64x48",
                 "--seconds", "0.15", "--limit", "1", "--no-progress"]) == 0
    assert "1 clips of 36 frames at 240 fps" in capsys.readouterr().out
    assert main(["build", str(tmp_path / "footage"), str(tmp_path / "pairs"),
                 "--static-keep", "1", "--no-progress"]) == 0
    assert "4 pairs" in capsys.readouterr().out
    assert main(["render", str(photos), str(tmp_path / "x"), "--size", "64x47"]) == 2
    assert "even" in capsys.readouterr().err


def test_find_photos_complains_about_an_empty_folder(tmp_path):
    with pytest.raises(BuildError, match="no photos"):
        find_photos(tmp_path)


def test_rendering_again_keeps_same_settings_clips_and_redoes_the_others(tmp_path):
    photos = [photo(tmp_path / "photos" / "p0.png", 0)]
    config = RenderConfig(**SMALL)
    [clip] = render_photos(photos, tmp_path / "out", config, progress=False)
    first = clip.stat().st_mtime_ns
    render_photos(photos, tmp_path / "out", config, progress=False)
    assert clip.stat().st_mtime_ns == first  # kept
    bigger = RenderConfig(**{**SMALL, "width": 96, "height": 64, "fps": 120.0})
    render_photos(photos, tmp_path / "out", bigger, progress=False)
    info = probe_source(clip)
    assert (info.width, info.height, info.fps) == (96, 64, 120.0)  # not the stale 64x48 240 fps
