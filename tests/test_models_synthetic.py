"""Pairs made on the fly: the builder's physics, the motion distributions, and training on them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dataset_builder.build import build_pairs
from dataset_builder.config import BuildConfig, RenderConfig
from dataset_builder.motion import MotionConfig, camera_motion, sample_motion
from dataset_builder.render import clip_motion, render_clip
from dataset_builder.response import encode_srgb
from models.checkpoint import load_generator
from models.metrics import psnr as tensor_psnr
from models.synthetic import SyntheticConfig, SyntheticPairs, blur_lengths, render_motion
from models.errors import ConfigError
from models.train import train
from models.train_config import load_config
from tests.media import psnr

CONFIGS = Path(__file__).resolve().parents[1] / "models" / "configs"


def write_photo(path: Path, *, width: int = 160, height: int = 120, seed: int = 0) -> Path:
    """A textured 'photo': smooth noise with edges, so motion shows as blur."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 2.0)
    image = (image - image.min()) / (image.max() - image.min())
    cv2.rectangle(image, (width // 4, height // 4), (width // 2, height // 2), (1.0, 0.9, 0.1), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.round(image * 255).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(("alpha", "beta", "gamma")):
        write_photo(root / f"{name}.png", seed=i)
    return root


def test_onthefly_pair_equals_the_builders_pair_for_the_same_motion(tmp_path):
    """Render footage with the builder, build a pair from it, and render the same camera
    motion on the fly: the blurred frames and the sharp frames agree to within 8-bit rounding."""
    photo = write_photo(tmp_path / "photos" / "scene.png", width=240, height=180)
    config = RenderConfig(width=96, height=64, fps=240, seconds=0.1, objects=0, camera_speed=3.0, seed=3)
    render_clip(photo, tmp_path / "footage" / "scene.mkv", config)
    build_pairs([tmp_path / "footage" / "scene.mkv"], tmp_path / "pairs",
                BuildConfig(window=7, stride=8, val_fraction=0.0, static_keep=1.0), progress=False)
    record = json.loads((tmp_path / "pairs" / "manifest.jsonl").read_text().splitlines()[1])
    blurry = cv2.imread(str(tmp_path / "pairs" / record["blurry"]))[:, :, ::-1]
    sharp = cv2.imread(str(tmp_path / "pairs" / record["sharp"]))[:, :, ::-1]

    scene, cameras = clip_motion(photo, config)
    motion = camera_motion(cameras, record["sharp_frame"], window=record["window"])
    photo_t = torch.from_numpy(np.ascontiguousarray(scene.transpose(2, 0, 1)))
    blurred, sharp_t = render_motion(photo_t, motion, (64, 96), np.array([[1.0, 0, 0], [0, 1.0, 0]]))

    def to8(t: torch.Tensor) -> np.ndarray:
        return np.round(encode_srgb(t).permute(1, 2, 0).numpy() * 255).astype(np.uint8)

    agreement = psnr(to8(blurred[0]), blurry)
    assert psnr(to8(sharp_t), sharp) > 45
    assert agreement > 42
    # and it is blur: the pair differs far more than the two renderers do
    assert psnr(blurry, sharp) < agreement - 10


def test_exposure_weights_are_the_builders_and_the_sharp_instant_is_the_centre():
    rng = np.random.default_rng(0)
    for _ in range(20):
        motion = sample_motion(rng, MotionConfig(), size=64, in_frames=3)
        np.testing.assert_allclose(motion.weights.sum(axis=1), 1.0)
        assert motion.times[motion.sharp_index] == 0.0
        # the centre exposure is centred on the sharp instant
        centre = motion.weights[1] @ motion.times
        assert abs(centre) < 1e-6
        # output frames are one stride apart
        assert np.allclose(motion.weights[2] @ motion.times - motion.weights[0] @ motion.times, 16)


def test_blur_lengths_cover_real_footage():
    """Mostly 5-25 px, none over 40 px, some sharp samples (never damage sharp frames)."""
    lengths = blur_lengths(SyntheticConfig(), 800)
    moving = lengths[lengths > 0]
    assert lengths.max() <= 40.0
    assert 0.04 < np.mean(lengths == 0) < 0.15
    assert 0.65 < np.mean((moving >= 5) & (moving <= 25)) < 0.9
    assert np.mean(moving > 25) > 0.05  # and a real tail of long streaks
    narrow = SyntheticConfig(motion=MotionConfig(blur_median=4, blur_spread=0.1, blur_max=6))
    assert blur_lengths(narrow, 200).max() <= 6.0


def test_samples_are_reproducible_8bit_and_blurred(photos):
    config = SyntheticConfig(fraction=1.0, photos=(str(photos),), val_photos=("gamma",))
    pairs = SyntheticPairs(config, split="train", crop_size=48, in_frames=3, seed=5)
    assert {p.stem for p in pairs.photos} == {"alpha", "beta"}
    first, again = pairs.sample(7), pairs.sample(7)
    assert first["blurry"].shape == (9, 48, 48) and first["sharp"].shape == (3, 48, 48)
    assert torch.equal(first["blurry"], again["blurry"]) and torch.equal(first["sharp"], again["sharp"])
    for key in ("blurry", "sharp"):
        levels = first[key] * 255
        assert torch.allclose(levels, levels.round(), atol=1e-4)  # 8-bit video levels
    batch = pairs.batch(range(24))
    gaps = [float(tensor_psnr(batch["blurry"][i:i + 1, 3:6], batch["sharp"][i:i + 1])) for i in range(24)]
    assert np.median(gaps) < 35  # most samples are visibly blurred


def test_sharp_input_fraction_feeds_the_target_itself(photos):
    config = SyntheticConfig(fraction=1.0, photos=(str(photos),))
    pairs = SyntheticPairs(config, split="train", crop_size=32, sharp_fraction=0.5, seed=1)
    same = [torch.equal(s["blurry"], s["sharp"]) for s in (pairs.sample(n) for n in range(40))]
    assert 8 <= sum(same) <= 32


def test_sharp_video_samples_move_without_blur(photos):
    """synthetic.sharp_video: a sharp-in sample of a video model fed as a sharp video, its
    frames the same motion's instants without blur (a fast shutter): the centre frame is the
    target itself, the neighbours have moved, and the motion is the blurred sample's."""
    kw = dict(fraction=1.0, photos=(str(photos),), motion=MotionConfig(static_fraction=0.0))
    video = SyntheticPairs(SyntheticConfig(sharp_video=1.0, **kw), split="train", crop_size=48, in_frames=3,
                           sharp_fraction=0.5, seed=4)
    blurred = SyntheticPairs(SyntheticConfig(**kw), split="train", crop_size=48, in_frames=3,
                             sharp_fraction=0.5, seed=4)
    numbers = [n for n in range(40) if video.plan(n).sharp_video]
    assert 8 <= len(numbers) <= 32  # every sharp-in sample that has neighbours
    for n in numbers[:4]:
        plan, plain = video.plan(n), blurred.plan(n)
        assert plain.sharp_input and not plain.sharp_video  # the same draws, a still window there
        assert np.array_equal(plan.motion.camera[plan.motion.sharp_index], plain.motion.camera[plain.motion.sharp_index])
        assert plan.motion.blur_px == plain.motion.blur_px
        assert (plan.motion.weights.max(axis=1) == 1.0).all()  # one instant per frame: no blur
        sample = video.sample(n)
        frames = sample["blurry"].reshape(3, 3, 48, 48)
        assert torch.equal(frames[1], sample["sharp"])
        assert not torch.equal(frames[0], frames[1]) and not torch.equal(frames[2], frames[1])
    single = SyntheticPairs(SyntheticConfig(sharp_video=1.0, **kw), split="train", crop_size=48, sharp_fraction=0.5,
                            seed=4)
    assert not any(single.plan(n).sharp_video for n in range(40))  # one frame: nothing to move


def test_validation_photos_are_held_out(photos):
    config = SyntheticConfig(fraction=1.0, photos=(str(photos),), val_photos=("beta",))
    assert [p.stem for p in SyntheticPairs(config, split="val", crop_size=32).photos] == ["beta"]
    with pytest.raises(ValueError, match="not found"):
        SyntheticPairs(SyntheticConfig(fraction=1.0, photos=(str(photos),), val_photos=("nope",)),
                       split="train", crop_size=32)


def test_config_needs_photos_for_onthefly_pairs(tmp_path):
    with pytest.raises(ConfigError, match="synthetic.photos"):
        load_config(CONFIGS / "default.yaml", [f"out={tmp_path}/run"])
    with pytest.raises(ConfigError, match="data is not set"):
        load_config(CONFIGS / "tiny.yaml", [f"out={tmp_path}/run"])


def test_training_on_the_fly_learns_and_stops_on_its_time_budget(tmp_path, photos):
    overrides = [f"out={tmp_path}/run", "synthetic.fraction=1", f"synthetic.photos=[{photos}]",
                 "synthetic.val_photos=[gamma]", "synthetic.val_samples=4", "val_crop=48",
                 "crop_size=32", "batch_size=4", "steps=40", "val_every=20", "log_every=5",
                 "synthetic_workers=0", "generator={num_feat: 8, num_block: 1, num_grow_ch: 4, downscale: 2}"]
    result = train(load_config(CONFIGS / "tiny.yaml", overrides), progress=False)
    assert result.step == 40
    assert result.validation["val_synth_psnr"] > result.validation["val_synth_psnr_input"]
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert sum(1 for r in rows if r["val_synth_psnr"]) == 2

    budget = overrides[:-1] + [f"out={tmp_path}/budget", "max_cpu_minutes=0.0001", "steps=1000",
                               "generator={num_feat: 8, num_block: 1, num_grow_ch: 4, downscale: 2}"]
    stopped = train(load_config(CONFIGS / "tiny.yaml", budget), progress=False)
    assert stopped.step < 5 and stopped.model_path.is_file() and stopped.validation


def test_training_mixes_stored_and_onthefly_pairs(tmp_path, photos):
    from tests.test_models_train import write_pairs

    pairs = write_pairs(tmp_path / "pairs")
    overrides = [f"data={pairs}", f"out={tmp_path}/run", "synthetic.fraction=0.5", f"synthetic.photos=[{photos}]",
                 "crop_size=32", "batch_size=4", "steps=6", "val_every=6", "synthetic_workers=1",
                 "generator={num_feat: 8, num_block: 1, num_grow_ch: 4, downscale: 2}", "pixel_loss=charbonnier",
                 "fft_weight=0.05", f"val_real=[{pairs}]"]
    result = train(load_config(CONFIGS / "tiny.yaml", overrides), progress=False)
    assert result.step == 6
    assert {"val_psnr", "val_real_psnr"} <= set(result.validation)
    assert all(np.isfinite(loss) for _, loss in result.losses)


def test_render_pairs_writes_pairs_that_evaluate_reads(tmp_path, photos, identity_model_file):
    from models.cli import main
    from models.evaluate import EvaluateConfig, evaluate

    assert main(["render-pairs", str(photos), str(tmp_path / "pairs"), "--val-photos", "gamma",
                 "--count", "5", "--size", "32"]) == 0
    records = [json.loads(line) for line in (tmp_path / "pairs" / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 5 and {r["source"] for r in records} == {"gamma_rendered"}
    report = evaluate(EvaluateConfig(model=identity_model_file, pairs=str(tmp_path / "pairs"), baselines=False),
                      progress=False)
    assert len(report.results) == 5
    assert all(abs(r.gain) < 1e-6 for r in report.results)  # the identity changes nothing
    assert report.temporal is None  # independent samples: no consecutive frames


def test_consecutive_rendered_pairs_measure_flicker(tmp_path, photos, identity_model_file, capsys):
    """render-pairs --consecutive: two pairs per sample, one frame apart, and evaluate reports
    the warping error on them (the identity's output is its input, so the two agree)."""
    from models.cli import main
    from models.evaluate import EvaluateConfig, evaluate

    assert main(["render-pairs", str(photos), str(tmp_path / "pairs"), "--val-photos", "gamma", "--count", "3",
                 "--size", "48", "--frames", "3", "--consecutive", "--config", "video"]) == 0
    assert "wrote 6 pairs" in capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "pairs" / "manifest.jsonl").read_text().splitlines()]
    assert [r["sharp_frame"] for r in records] == [0, 1, 3, 4, 6, 7]
    report = evaluate(EvaluateConfig(model=identity_model_file, pairs=str(tmp_path / "pairs"), baselines=False,
                                     sharp_check=False), progress=False)
    assert report.temporal["pairs"] == 3
    assert report.temporal["output"] == pytest.approx(report.temporal["input"], rel=1e-6)
    assert report.sharp_video is None  # a single-frame model: the static-window check says it all
    # A video model is also fed each run's sharp frames as a sharp video (neighbours moving,
    # nothing blurred): a model that keeps sharp frames keeps all six.
    from models.checkpoint import save_generator
    from models.evaluate import format_table
    from models.metrics import MAX_PSNR_DB
    from tests.conftest import make_identity_model
    save_generator(make_identity_model(in_frames=3), tmp_path / "identity3.safetensors")
    report = evaluate(EvaluateConfig(model=str(tmp_path / "identity3.safetensors"), pairs=str(tmp_path / "pairs"),
                                     baselines=False), progress=False)
    assert report.sharp_video["pairs"] == 6 and report.sharp_video["min_psnr"] == pytest.approx(MAX_PSNR_DB)
    assert "sharp frames fed as a video, with their sharp neighbours (6)" in format_table(report)
    assert main(["render-pairs", str(photos), str(tmp_path / "single"), "--val-photos", "gamma",
                 "--consecutive"]) == 2
    assert "--frames 3" in capsys.readouterr().err


VIDEO_NET = "generator={num_feat: 8, num_block: 1, num_grow_ch: 4, downscale: 2, in_frames: 3, motion: flow}"


def _video_run(tmp_path: Path, photos: Path, name: str, *extra: str):
    overrides = [f"out={tmp_path}/{name}", "synthetic.fraction=1", f"synthetic.photos=[{photos}]",
                 "synthetic.val_photos=[gamma]", "synthetic.val_samples=2", "val_crop=48",
                 "crop_size=48", "batch_size=4", "val_every=1000", "log_every=2",
                 "synthetic.reuse=2", "synthetic.pool=8", "synthetic.no_neighbours=0.25",
                 "synthetic.motion.exposure_share=[0.4,1.0]", "threads=1", VIDEO_NET, *extra]
    return load_config(CONFIGS / "tiny.yaml", overrides)


def _weights(result) -> dict:
    from safetensors.torch import load_file

    return load_file(str(result.checkpoint / "generator.safetensors"))


def test_video_training_with_reuse_is_the_same_run_resumed_or_on_another_worker_count(tmp_path, photos):
    """Rendered samples reused from a pool (in symmetric variants) with their flow: a run
    resumed half-way, or rendered by a worker process, trains the very same weights."""
    whole = train(_video_run(tmp_path, photos, "whole", "steps=8", "synthetic_workers=0"), progress=False)
    assert whole.step == 8 and all(np.isfinite(loss) for _, loss in whole.losses)
    assert train(_video_run(tmp_path, photos, "split", "steps=5", "synthetic_workers=0"), progress=False).step == 5
    resumed = train(_video_run(tmp_path, photos, "split", "steps=8", "synthetic_workers=0"), resume=True,
                    progress=False)
    worker = train(_video_run(tmp_path, photos, "worker", "steps=8", "synthetic_workers=1"), progress=False)
    a = _weights(whole)
    for other in (resumed, worker):
        b = _weights(other)
        assert all(torch.equal(a[key], b[key]) for key in a), other.run_dir
    assert load_generator(whole.model_path).config.motion == "flow"


@pytest.mark.parametrize("render, step, cores, expected", [
    (0.16, 0.24, 2, (1, 1)),    # this VM: one core renders while the other trains
    (0.05, 1.0, 2, (1, 2)),     # rendering is cheap: the worker's idle core trains too
    (0.06, 0.21, 2, (1, 2)),    # each sample serving 2 steps (synthetic.reuse: 2)
    (0.10, 0.21, 2, (1, 1)),    # workers busy half the time: an extra thread would cost
    (0.16, 0.24, 1, (0, 1)),    # one core: the step renders its own samples
    (0.2, 0.8, 16, (3, 13)),    # shared in proportion to the work
    (1.0, 0.2, 32, (8, 24)),    # at most 8 render workers
])
def test_cores_are_shared_between_rendering_and_the_network_by_their_cost(render, step, cores, expected):
    from models.training_data import split_cores

    assert split_cores(render, step, cores) == expected


def test_consecutive_samples_share_frames_and_follow_one_motion(photos):
    """A consecutive pair is two samples of one motion, one frame interval apart: the later
    sample's frames are the earlier one's shifted by one, and its sharp frame is the
    earlier sharp frame moved by the scene's motion (a steady pan: a shift)."""
    config = SyntheticConfig(fraction=1.0, photos=(str(photos),), noise=0.0, compression=0.0,
                             motion=MotionConfig(exposure_share=(0.5, 0.5), shake_fraction=0.0, pan_curvature=0.0,
                                                 blur_median=3.0, blur_spread=0.0, blur_max=3.0,
                                                 zoom=0.0, roll=0.0, objects=(0, 0), static_fraction=0.0))
    pairs = SyntheticPairs(config, split="train", crop_size=48, in_frames=3, seed=2, consecutive=True)
    sample = pairs.sample(3)
    assert sample["blurry"].shape == (2, 9, 48, 48) and sample["sharp"].shape == (2, 3, 48, 48)
    assert torch.equal(sample["blurry"][0, 3:], sample["blurry"][1, :6])  # frames 1, 2 shared
    assert not torch.equal(sample["sharp"][0], sample["sharp"][1])
    motion = pairs.plan(3).motion
    assert motion.weights.shape[0] == 4 and motion.next_sharp_index is not None
    # The later sharp frame is the earlier one moved by the pan over one frame interval.
    shift = motion.camera[motion.next_sharp_index, :, 2] - motion.camera[motion.sharp_index, :, 2]
    earlier = (sample["sharp"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    moved = cv2.warpAffine(earlier, np.array([[1.0, 0, -shift[0]], [0, 1.0, -shift[1]]]), (48, 48),
                           flags=cv2.INTER_LINEAR)
    inner = (slice(12, 36), slice(12, 36))  # away from what enters the view
    later = (sample["sharp"][1].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.hypot(*shift) == pytest.approx(6.0)  # 3 px streaks at half the frame interval
    assert psnr(moved[inner], later[inner]) > 30 > psnr(earlier[inner], later[inner])
    # Plain samples are what they were: consecutive rendering adds a kind, it changes no other.
    plain = SyntheticPairs(config, split="train", crop_size=48, in_frames=3, seed=2).sample(3)
    assert plain["blurry"].shape == (9, 48, 48)


def test_temporal_term_trains_on_consecutive_pairs_and_is_split_exactly(tmp_path, photos):
    """temporal_weight: batches of consecutive pairs, a temporal loss in the log, and the same
    weights with the batch cut over two threads (cut between pairs) as without."""
    runs, configs = {}, {}
    for parts in (1, 2):
        configs[parts] = _video_run(tmp_path, photos, f"t{parts}", "steps=4", "synthetic_workers=0",
                                    "temporal_weight=1.0", "amp=off", "log_every=1", f"batch_split={parts}")
        runs[parts] = train(configs[parts], progress=False)
    with (tmp_path / "t1" / "log.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["loss_g"]]
    assert len(rows) == 4 and all(float(r["l_temporal"]) > 0 for r in rows)
    assert all(float(r["loss_g"]) == pytest.approx(float(r["l_pix"]) + float(r["l_temporal"]), rel=1e-4) for r in rows)
    a, b = _weights(runs[1]), _weights(runs[2])
    # Adam moves every weight by up to ~lr a step whatever its gradient's size, so a gradient
    # component that the order of the sums alone changes (oneDNN's fp32 kernels differ between
    # CPUs: up to 1.9e-5 here on an AVX2 machine, under 1e-6 on an AVX-512 one) can move a
    # weight by that much: the two must agree to 1 % of the farthest a weight can go.
    farthest = configs[1].lr_g * 4
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0.01 * farthest)
    with pytest.raises(ConfigError, match="synthetic.fraction"):
        load_config(CONFIGS / "tiny.yaml", ["out=x", "temporal_weight=1", VIDEO_NET])


def test_temporal_term_runs_with_the_default_core_plan(tmp_path, photos):
    """synthetic_workers=-1 (the default) times one core on a step's samples first: with the
    temporal term those come as consecutive pairs, and the run must start and train."""
    config = _video_run(tmp_path, photos, "auto", "steps=2", "temporal_weight=1.0", "log_every=1")
    assert config.synthetic_workers == -1
    result = train(config, progress=False)
    assert result.step == 2 and result.model_path.exists()


@pytest.mark.parametrize("args, expected", [
    (["--size", "33"], "expected an even number, got 33"),
    (["--frames", "2"], "expected an odd number, got 2"),
    (["--val-photos", "nosuch"], "(val_photos: nosuch)"),
])
def test_render_pairs_mistakes_are_one_line_errors(tmp_path, photos, capsys, args, expected):
    from models.cli import main

    try:
        code = main(["render-pairs", str(photos), str(tmp_path / "pairs"), "--count", "2",
                     *(["--val-photos", "gamma"] if "--val-photos" not in args else []), *args])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code != 0 and expected in err and "Traceback" not in err
    assert not (tmp_path / "pairs").exists()


def test_render_pairs_takes_any_folder_name(tmp_path, photos):
    """A photos folder whose name YAML would read as a list or a comment."""
    import shutil

    from models.cli import main

    odd = tmp_path / "Photos, 2023 #1"
    shutil.copytree(photos, odd)
    assert main(["render-pairs", str(odd), str(tmp_path / "pairs"), "--val-photos", "gamma",
                 "--count", "2", "--size", "32"]) == 0
