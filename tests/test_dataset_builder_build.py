"""Building, splitting, resuming and refusing (issue 3): what a user of
``python -m dataset_builder build`` relies on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dataset_builder import BuildConfig, BuildError, assign_split, build_pairs, build_source
from dataset_builder import build as build_module
from dataset_builder.cli import main
from dataset_builder.contact_sheet import make_contact_sheet
from dataset_builder.images import read_image, write_png
from dataset_builder.render import write_video
from dataset_builder.sources import find_sources, probe_source

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
H, W = 32, 48
REQUIRED_KEYS = {"split", "source", "index", "sharp", "blurry", "blurry_frames",
                 "frames_averaged", "window", "stride", "fps", "response", "interpolate",
                 "duty_cycle", "noise", "jpeg", "seed", "static", "bit_depth"}


def moving_clip(path: Path, count: int = 40, *, seed: int = 0, speed: int = 2, fps=240,
                metadata=None) -> Path:
    """A textured square drifting over noise: every window has motion."""
    rng = np.random.default_rng(seed)
    background = (rng.random((H, W, 3)) * 120).astype(np.uint8)
    square = (120 + rng.random((10, 10, 3)) * 135).astype(np.uint8)
    frames = []
    for i in range(count):
        f = background.copy()
        x = (3 + speed * i) % (W - 10)
        f[10:20, x:x + 10] = square
        frames.append(f)
    write_video(path, frames, fps=fps, metadata=metadata)
    return path


def frame_folder(path: Path, count: int = 20, *, seed: int = 0, size=(H, W)) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(count):
        write_png(path / f"frame_{i:03d}.png", (rng.random((*size, 3)) * 255).astype(np.uint8))
    return path


def records_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def tree_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_manifest_records_pairs_with_every_documented_key(tmp_path):
    clip = moving_clip(tmp_path / "clip.mkv")
    summary = build_pairs([clip], tmp_path / "out", BuildConfig(), progress=False)
    records = records_of(tmp_path / "out")
    assert summary.pairs == len(records) == 5  # centres 3, 11, 19, 27, 35 of 40 frames
    for r in records:
        assert REQUIRED_KEYS <= set(r)
        assert r["sharp"] == f"{r['split']}/sharp/clip/{r['index']:06d}.png"
        assert r["blurry_frames"] == [r["blurry"]]
        assert (tmp_path / "out" / r["sharp"]).is_file()
        assert read_image(tmp_path / "out" / r["blurry"]).shape == (H, W, 3)
    build_record = json.loads((tmp_path / "out" / "build.json").read_text())
    assert build_record["settings"]["window"] == 7


def test_splits_never_share_a_source_and_are_deterministic(tmp_path):
    sources = [frame_folder(tmp_path / "in" / f"scene{i}", 10, seed=i) for i in range(8)]
    config = BuildConfig(window=3, stride=4, val_fraction=0.5, static_keep=1.0)
    build_pairs(sources, tmp_path / "out", config, progress=False)
    split_of: dict[str, set[str]] = {}
    for r in records_of(tmp_path / "out"):
        split_of.setdefault(r["source"], set()).add(r["split"])
        assert r["split"] == assign_split(r["source"], config)
    assert all(len(s) == 1 for s in split_of.values())
    assert {s.pop() for s in split_of.values()} == {"train", "val"}
    for name in split_of:  # a source's files live under one split only
        present = [s for s in ("train", "val") if (tmp_path / "out" / s / "sharp" / name).exists()]
        assert len(present) == 1
    assert [assign_split(f"scene{i}", config) for i in range(8)] == \
        [assign_split(f"scene{i}", config) for i in range(8)]


def test_same_seed_same_bytes_and_another_seed_other_noise(tmp_path):
    clip = moving_clip(tmp_path / "clip.mkv")
    config = BuildConfig(noise=0.02, jpeg=85, frames=3, static_keep=1.0)
    build_pairs([clip], tmp_path / "a", config, progress=False)
    build_pairs([clip], tmp_path / "b", config, progress=False)
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert a == b and any(k.endswith(".png") for k in a)
    build_pairs([clip], tmp_path / "c", BuildConfig(noise=0.02, jpeg=85, frames=3, seed=1,
                                                      static_keep=1.0), progress=False)
    r = records_of(tmp_path / "a")[0]
    other = records_of(tmp_path / "c")[0]
    file_a = lambda key: (tmp_path / "a" / r[key]).read_bytes()
    file_c = lambda key: (tmp_path / "c" / other[key]).read_bytes()
    assert file_a("sharp") == file_c("sharp") and file_a("blurry") != file_c("blurry")


def test_noise_and_jpeg_touch_only_the_blurred_side(tmp_path):
    clip = moving_clip(tmp_path / "clip.mkv")
    build_pairs([clip], tmp_path / "clean", BuildConfig(), progress=False)
    build_pairs([clip], tmp_path / "noisy", BuildConfig(noise=0.02, jpeg=50), progress=False)
    clean, noisy = records_of(tmp_path / "clean")[0], records_of(tmp_path / "noisy")[0]
    assert noisy["noise"] == 0.02 and noisy["jpeg"] == 50
    sharp = [read_image(tmp_path / d / r["sharp"]) for d, r in (("clean", clean), ("noisy", noisy))]
    assert np.array_equal(*sharp)
    blurry = [read_image(tmp_path / d / r["blurry"]).astype(float)
              for d, r in (("clean", clean), ("noisy", noisy))]
    difference = np.abs(blurry[0] - blurry[1])
    assert difference.mean() > 1.0  # visible noise and artefacts
    assert abs(blurry[0].mean() - blurry[1].mean()) < 3  # zero-mean: brightness kept


def test_interrupted_build_resumes_to_identical_files(tmp_path, monkeypatch):
    clip = moving_clip(tmp_path / "clip.mkv", 60)
    config = BuildConfig(frames=3, static_keep=1.0)
    build_pairs([clip], tmp_path / "reference", config, progress=False)

    original = build_module._SourceBuilder._emit
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(build_module._SourceBuilder, "_emit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_pairs([clip], tmp_path / "out", config, progress=False)
    out = tmp_path / "out"
    assert not (out / "manifest.jsonl").exists()  # nothing looks finished
    assert not (out / "sources" / "clip.jsonl").exists()
    assert len((out / ".partial" / "clip.jsonl").read_text().splitlines()) == 2
    monkeypatch.setattr(build_module._SourceBuilder, "_emit", original)
    summary = build_pairs([clip], out, config, progress=False)
    assert summary.pairs == 5
    assert tree_bytes(out) == tree_bytes(tmp_path / "reference")
    again = build_pairs([clip], out, config, progress=False)  # finished: left alone
    assert again.built_now == 0 and again.already_done == 1


def test_rerun_with_other_settings_is_refused(tmp_path):
    clip = moving_clip(tmp_path / "clip.mkv")
    build_pairs([clip], tmp_path / "out", BuildConfig(), progress=False)
    with pytest.raises(BuildError, match=r"window: 7 -> 5"):
        build_pairs([clip], tmp_path / "out", BuildConfig(window=5), progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="not empty"):
        build_pairs([clip], tmp_path / "other", BuildConfig(), progress=False)


def test_static_windows_are_kept_at_the_static_keep_rate(tmp_path):
    rng = np.random.default_rng(0)
    still = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    frames = [still] * 80 + [np.roll(still, 3 * i, axis=1) for i in range(80)]
    clip = tmp_path / "half_static.mkv"
    write_video(clip, frames, fps=240)
    kept = {}
    for keep in (0.0, 0.5, 1.0):
        out = tmp_path / f"keep{keep}"
        build_pairs([clip], out, BuildConfig(static_keep=keep), progress=False)
        kept[keep] = records_of(out)
    all_records = kept[1.0]
    static = [r for r in all_records if r["static"]]
    assert len(static) == 10 and len(all_records) == 20  # 10 still windows, 10 moving
    assert all(r["blurry_psnr"] >= 40 for r in static)
    assert not any(r["static"] for r in kept[0.0]) and len(kept[0.0]) == 10
    assert 0 < sum(r["static"] for r in kept[0.5]) < 10


def test_frames_option_writes_neighbouring_blurred_frames_oldest_first(tmp_path):
    clip = moving_clip(tmp_path / "clip.mkv", 60)
    build_pairs([clip], tmp_path / "out", BuildConfig(frames=5, static_keep=1.0), progress=False)
    records = records_of(tmp_path / "out")
    assert [r["index"] for r in records] == [2, 3, 4]  # grid points 0..6, two each side
    for r in records:
        assert len(r["blurry_frames"]) == 5 and r["blurry_frames"][2] == r["blurry"]
        names = [Path(p).stem for p in r["blurry_frames"]]
        assert names == [f"{r['index'] + k:06d}" for k in range(-2, 3)]
        assert all((tmp_path / "out" / p).is_file() for p in r["blurry_frames"])


def test_capture_rate_tag_is_read_and_target_fps_picks_the_stride(tmp_path):
    clip = moving_clip(tmp_path / "slowmo.mp4", 40, fps=30,
                       metadata={"com.android.capture.fps": "240.000000"})
    info = probe_source(clip)
    assert info.fps == 240.0 and info.fps_origin == "com.android.capture.fps"
    assert probe_source(clip, fps=120).fps == 120.0
    build_pairs([clip], tmp_path / "out", BuildConfig(target_fps=60), progress=False)
    records = records_of(tmp_path / "out")
    assert {r["stride"] for r in records} == {4} and {r["fps"] for r in records} == {240.0}


def test_find_sources_walks_folders_of_videos_and_frame_folders(tmp_path):
    moving_clip(tmp_path / "day1" / "a.mkv", 10)
    frame_folder(tmp_path / "day2" / "b_frames", 3)
    (tmp_path / "day1" / "notes.json").write_text("{}")
    found = find_sources(tmp_path)
    assert [p.name for p in found] == ["a.mkv", "b_frames"]
    build_pairs(found, tmp_path.parent / "out_walk", BuildConfig(window=3, stride=2,
                                                                  skip_short=True),
                progress=False, root=tmp_path)
    assert {r["source"] for r in records_of(tmp_path.parent / "out_walk")} <= \
        {"day1__a", "day2__b_frames"}


def test_build_source_is_idempotent_for_a_ray_task(tmp_path):
    clip = moving_clip(tmp_path / "clip.mkv")
    config = BuildConfig()
    first = build_source(clip, tmp_path / "out", config, "val")
    files = tree_bytes(tmp_path / "out")
    second = build_source(clip, tmp_path / "out", config, "val")
    assert first == second and tree_bytes(tmp_path / "out") == files
    assert {r.split for r in first} == {"val"}


@pytest.mark.parametrize("make,args,message", [
    (lambda d: moving_clip(d / "c.mkv"), ["--window", "6"], "odd"),
    (lambda d: moving_clip(d / "c.mkv", 5), [], "5 frames, too few for --window 7"),
    (lambda d: moving_clip(d / "c.mkv"), ["--response", "sepia"], "--response"),
    (lambda d: moving_clip(d / "c.mkv"), ["--frames", "2"], "--frames"),
    (lambda d: d / "missing.mp4", [], "does not exist"),
])
def test_cli_mistakes_are_one_line_and_exit_2(tmp_path, capsys, make, args, message):
    source = make(tmp_path)
    status = main(["build", str(source), str(tmp_path / "out"), "--no-progress", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


def test_bad_frame_folders_and_unreadable_videos_are_explained(tmp_path, capsys):
    gap = frame_folder(tmp_path / "gap", 6)
    (gap / "frame_003.png").unlink()
    mixed = frame_folder(tmp_path / "mixed", 6)
    write_png(mixed / "frame_004.png", np.zeros((H + 2, W, 3), np.uint8))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    for source, message in ((gap, "has a gap: frame_002.png is followed by frame_004.png"),
                            (mixed, "mixes frame formats"), (broken, "cannot read video")):
        status = main(["build", str(source), str(tmp_path / "out"), "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()  # bad input is refused before anything is written


def test_cli_build_and_sheet_end_to_end(tmp_path, capsys):
    footage = tmp_path / "footage"
    moving_clip(footage / "one.mkv", 40, seed=1)
    moving_clip(footage / "two.mkv", 40, seed=2)
    out = tmp_path / "pairs"
    assert main(["build", str(footage), str(out), "--no-progress", "--val-fraction", "0.5"]) == 0
    stdout = capsys.readouterr().out
    assert "10 pairs" in stdout and str(out / "manifest.jsonl") in stdout
    assert main(["sheet", str(out), "--pairs", "3", "--tile-height", "32"]) == 0
    sheet = read_image(out / "contact_sheet.png")
    assert sheet.shape[0] == 3 * 32 + 2 * 4  # three rows of tiles, gaps between them
    # Another blur setting of the same footage shares the sharp frames: compare them.
    assert main(["build", str(footage), str(tmp_path / "pairs_k2"), "--interpolate", "2",
                 "--val-fraction", "0.5", "--no-progress"]) == 0
    assert main(["sheet", str(out), "--compare", str(tmp_path / "pairs_k2"), "--pairs", "3",
                 "--tile-height", "32", "-o", str(tmp_path / "compare.png")]) == 0
    compared = read_image(tmp_path / "compare.png")
    assert compared.shape[1] == sheet.shape[1] + 32 + 4  # one more crop per row
    # An existing file is the user's until --overwrite; the sheet is a PNG, named so.
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for target, expected in ((notes, "name it .png"), (tmp_path / "compare.png", "already exists"),
                             (tmp_path / "sheet.jpg", "name it .png")):
        assert main(["sheet", str(out), "-o", str(target), "-q"]) == 2
        assert expected in capsys.readouterr().err
    assert notes.read_text() == "mine" and not (tmp_path / "sheet.jpg").exists()
    assert read_image(tmp_path / "compare.png").shape == compared.shape
    assert main(["sheet", str(out), "-o", str(tmp_path / "compare.png"), "--overwrite", "-q",
                 "--pairs", "3", "--tile-height", "32"]) == 0
    assert read_image(tmp_path / "compare.png").shape == sheet.shape
    assert main(["build", str(footage), str(footage / "pairs"), "--no-progress"]) == 2
    assert "inside SOURCE" in capsys.readouterr().err


def test_help_explains_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option, default in (("--window", "7"), ("--stride", "8"), ("--response", "srgb"),
                            ("--interpolate", "1"), ("--duty-cycle", "1.0"),
                            ("--val-fraction", "0.1"), ("--static-keep", "0.1")):
        assert option in text and f"(default: {default}" in text


def test_contact_sheet_needs_a_manifest(tmp_path):
    with pytest.raises(BuildError, match="run `build` first"):
        make_contact_sheet(tmp_path, tmp_path / "sheet.png")


def test_contact_sheet_rows_fill_the_width_whatever_the_aspect(tmp_path):
    """Square footage beside 3:2 footage: the square rows are taller, not shorter with a
    band of background on the right (the high-fps sheet in the README had one)."""
    wide = frame_folder(tmp_path / "footage" / "wide", 20, seed=1, size=(32, 48))
    square = frame_folder(tmp_path / "footage" / "square", 20, seed=2, size=(40, 40))
    build_pairs([wide, square], tmp_path / "out", BuildConfig(val_fraction=0), progress=False)
    sheet = read_image(make_contact_sheet(tmp_path / "out", tmp_path / "sheet.png", pairs=4,
                                          tile_height=32))
    background = (sheet == 24).all(axis=2)
    content = ~background.all(axis=1)  # pixel rows of tiles, not of the gaps between rows
    edges = np.flatnonzero(np.diff(np.r_[False, content, False].astype(int)))
    heights = sorted((edges[1::2] - edges[::2]).tolist())
    # Four rows, gaps between them and none around: the canvas is the content. 3:2 rows at
    # the asked height (2 * 48 + 2 crops * 32 + 3 gaps * 4 = 172 px wide); square rows
    # as wide, so taller: (172 - 12) / (2 frames + 2 crops) = 40 px.
    assert content[0] and content[-1]
    assert heights == [32, 32, 40, 40]
    # No background band on the right of any row: its last columns are picture.
    right_band = background[content][:, -8:]
    assert right_band.mean() < 0.05, "a row leaves an empty band on the right"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not available")
def test_real_slow_motion_clip_uses_its_capture_rate(tmp_path):
    clip = SHARED_DATA / "highfps" / "sample_sef_slow_motion.mp4"
    build_pairs([clip], tmp_path / "out", BuildConfig(static_keep=1.0), progress=False)
    records = records_of(tmp_path / "out")
    assert len(records) == 8 and {r["fps"] for r in records} == {240.0}
    assert all(r["blurry_psnr"] < 40 for r in records)  # a pan over a floor: real blur


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not available")
def test_real_sixteen_bit_high_speed_frames(tmp_path):
    folder = SHARED_DATA / "highfps" / "ball_30000fps_png16"
    build_pairs([folder], tmp_path / "out", BuildConfig(fps=30000, static_keep=1.0),
                progress=False)
    records = records_of(tmp_path / "out")
    assert len(records) == 2 and all(r["bit_depth"] == 16 for r in records)
    assert read_image(tmp_path / "out" / records[0]["blurry"]).dtype == np.uint16


def test_another_source_of_the_same_name_is_refused_not_skipped(tmp_path):
    """Two cards' clip.mkv into one folder: the second is not taken for done."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = moving_clip(tmp_path / "a" / "clip.mkv", seed=1)
    second = moving_clip(tmp_path / "b" / "clip.mkv", seed=2)
    build_pairs([first], tmp_path / "out", BuildConfig(), progress=False)
    with pytest.raises(BuildError, match=r"already holds pairs named 'clip', built from .*a/clip.mkv"):
        build_pairs([second], tmp_path / "out", BuildConfig(), progress=False)
    assert build_pairs([first], tmp_path / "out", BuildConfig(), progress=False).already_done == 1


def test_the_same_footage_under_another_name_is_not_built_twice(tmp_path):
    """Built from tree/day1, then from tree (where its name gains the folder): one copy of its
    pairs, so no scene sits in both splits."""
    (tmp_path / "tree" / "day1").mkdir(parents=True)
    moving_clip(tmp_path / "tree" / "day1" / "clip.mkv")
    out = tmp_path / "out"
    for root in (tmp_path / "tree" / "day1", tmp_path / "tree"):
        summary = build_pairs(find_sources(root), out, BuildConfig(), progress=False, root=root)
    assert summary.already_done == 1 and summary.built_now == 0
    assert {r["source"] for r in records_of(out)} == {"clip"}


def test_an_output_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    clip = moving_clip(tmp_path / "c.mkv")
    photo = tmp_path / "photos" / "p.png"
    photo.parent.mkdir()
    write_png(photo, np.zeros((48, 64, 3), np.uint8))
    taken = tmp_path / "taken"
    taken.write_text("mine")
    for command in (["build", str(clip), str(taken)],
                    ["render", str(photo.parent), str(taken), "--seconds", "0.05"]):
        status = main([*command, "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1 and "is a file, not a folder" in err[0], err
    assert taken.read_text() == "mine"


def test_a_variable_frame_rate_source_is_warned_about(tmp_path, caplog):
    """Frames 17 to 50 ms apart (a phone's variable frame rate): a window of N frames spans a
    varying time, so the user is told."""
    from tests.media import make_clip

    even = make_clip(tmp_path / "even.mkv", frames=32, fps=240).path
    probe_source(even)
    assert "variable frame rate" not in caplog.text
    uneven = make_clip(tmp_path / "uneven.mkv", frames=32, fps=240, vfr=True).path
    probe_source(uneven)
    assert "variable frame rate" in caplog.text


def test_a_video_failing_to_decode_partway_exits_1(tmp_path, capsys, monkeypatch):
    """The work ran and failed (README: exit 1), unlike a usage mistake (2)."""
    import dataset_builder.build
    from dataset_builder.errors import DecodeFailed

    def failing(*args, **kwargs):
        raise DecodeFailed("cannot decode clip.mp4 frame 12: Invalid data found")

    monkeypatch.setattr(dataset_builder.build, "build_pairs", failing)
    footage = tmp_path / "footage"
    moving_clip(footage / "one.mkv", 20, seed=1)
    assert main(["build", str(footage), str(tmp_path / "pairs"), "-q"]) == 1
    assert capsys.readouterr().err.strip() == "error: cannot decode clip.mp4 frame 12: Invalid data found"


def test_a_source_changed_since_its_pairs_were_built_is_named(tmp_path, caplog):
    """Pairs are kept per source name; a source file replaced since (re-rendered with other
    settings) used to be skipped silently as done, its old pairs standing for it."""
    footage = tmp_path / "footage"
    clip = moving_clip(footage / "one.mkv", 40, seed=1)
    out = tmp_path / "pairs"
    config = BuildConfig(val_fraction=0.0)
    build_pairs([clip], out, config, progress=False)
    with caplog.at_level("WARNING"):
        build_pairs([clip], out, config, progress=False)  # the same file: done, nothing said
    assert "changed since its pairs were built" not in caplog.text
    moving_clip(clip, 40, seed=2)  # another clip under the same name
    with caplog.at_level("WARNING"):
        build_pairs([clip], out, config, progress=False)
    assert "changed since its pairs were built" in caplog.text and "one.jsonl" in caplog.text
