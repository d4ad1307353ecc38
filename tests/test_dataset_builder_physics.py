"""The physics of the pairs: streak length and intensity, linear light, ghosting,
the shutter model and the sharp target (issue 3)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset_builder import BuildConfig, build_pairs
from dataset_builder.averaging import exposure_samples, frames_span
from dataset_builder.flow import FlowInterpolator
from dataset_builder.images import read_image, write_png
from dataset_builder.render import write_video
from dataset_builder.response import load_response

H, W = 48, 64
SRGB = load_response("srgb")


def srgb_encode(linear: float) -> float:
    return float(SRGB.encode(np.array([[linear]], np.float32))[0, 0])


def srgb_decode(code: int) -> float:
    return float(SRGB.decode(np.array([[code / 255]], np.float32))[0, 0])


def build_one(tmp_path: Path, frames: list[np.ndarray], **options) -> tuple[Path, list[dict]]:
    clip = tmp_path / "clip.mkv"
    write_video(clip, frames, fps=240)
    out = tmp_path / "out"
    config = BuildConfig(static_keep=1.0, val_fraction=0.0, **options)
    build_pairs([clip], out, config, progress=False)
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return out, records


def dot_frames(count: int, *, speed: int = 1, value: int = 255) -> list[np.ndarray]:
    frames = []
    for i in range(count):
        f = np.zeros((H, W, 3), np.uint8)
        f[20, 5 + speed * i] = value
        frames.append(f)
    return frames


def test_dot_moving_one_pixel_per_frame_makes_seven_pixel_streak_of_one_seventh(tmp_path):
    out, records = build_one(tmp_path, dot_frames(20), window=7, stride=8)
    r = records[0]
    blurry = read_image(out / r["blurry"])
    linear = SRGB.decode(blurry[20, :, 0].astype(np.float32) / 255)
    lit = np.flatnonzero(blurry[20, :, 0])
    centre = r["sharp_frame"]
    # The streak covers the dot's positions over frames centre-3 .. centre+3.
    assert lit.tolist() == list(range(5 + centre - 3, 5 + centre + 4))
    # 1/7 of the light on each pixel, in linear light (8-bit rounding: +-half a code).
    tolerance = srgb_decode(106) - srgb_decode(105)
    np.testing.assert_allclose(linear[lit], 1 / 7, atol=tolerance)
    assert blurry.sum() == blurry[20, lit].sum()  # nothing anywhere else
    # The light is conserved: 7 pixels of 1/7 hold what the single sharp pixel held.
    assert linear.sum() == pytest.approx(1.0, abs=7 * tolerance)


def test_linear_response_none_gives_255_over_7(tmp_path):
    out, records = build_one(tmp_path, dot_frames(20), response="none")
    blurry = read_image(out / records[0]["blurry"])
    values = blurry[20][blurry[20, :, 0] > 0, 0]
    assert values.tolist() == [round(255 / 7)] * 7


def test_averaging_in_linear_light_differs_from_averaging_codes_as_srgb_predicts(tmp_path):
    # A flickering grey field: frames alternate between two code values.
    low, high = 50, 200
    frames = [np.full((H, W, 3), high if i % 2 else low, np.uint8) for i in range(16)]
    out, records = build_one(tmp_path, frames, window=7)
    r = records[0]
    codes = [high if i % 2 else low for i in r["frames_averaged"]]
    predicted = 255 * srgb_encode(float(np.mean([srgb_decode(c) for c in codes])))
    naive = float(np.mean(codes))
    blurry = read_image(out / r["blurry"])
    assert np.all(np.abs(blurry.astype(float) - predicted) <= 0.5 + 1e-6)
    assert predicted - naive > 15  # the sRGB curve lifts the mean of bright and dark


def test_gamma_response_follows_its_curve(tmp_path):
    frames = [np.full((H, W, 3), 255 if i % 2 else 0, np.uint8) for i in range(16)]
    out, records = build_one(tmp_path, frames, response="gamma2.2")
    r = records[0]
    share = np.mean([1.0 if i % 2 else 0.0 for i in r["frames_averaged"]])  # 3/7 or 4/7
    blurry = read_image(out / r["blurry"])
    assert r["response"] == "gamma2.2"
    assert abs(int(blurry[0, 0, 0]) - round(255 * share ** (1 / 2.2))) <= 1


def test_centre_frame_is_the_sharp_target_and_window_is_centred(tmp_path):
    rng = np.random.default_rng(0)
    frames = [(rng.random((H, W, 3)) * 255).astype(np.uint8) for _ in range(30)]
    out, records = build_one(tmp_path, frames, window=5, stride=6)
    assert [r["sharp_frame"] for r in records] == [2, 8, 14, 20, 26]
    for r in records:
        sharp = read_image(out / r["sharp"])
        assert np.array_equal(sharp, frames[r["sharp_frame"]])  # lossless, RGB order kept
        c = r["sharp_frame"]
        assert r["frames_averaged"] == list(range(c - 2, c + 3))
        assert r["window"] == 5 and r["stride"] == 6 and r["fps"] == 240.0


def bar_frames(count: int, speed: float) -> tuple[list[np.ndarray], np.ndarray]:
    """A 4x30 textured bar moving ``speed`` px/frame over a smooth static background."""
    rng = np.random.default_rng(1)
    height, width = 48, 96
    background = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), 2)
    background = 0.15 + 0.2 * (background - background.min()) / np.ptp(background)
    texture = 0.7 + 0.3 * rng.random((30, 4)).astype(np.float32)
    frames = []
    for i in range(count):
        shift = np.float32([[1, 0, 10 + speed * i], [0, 1, 8]])
        bar = cv2.warpAffine(texture, shift, (width, height))
        cover = cv2.warpAffine(np.ones_like(texture), shift, (width, height))
        frame = background * (1 - cover) + bar * cover
        frames.append(np.repeat(np.round(frame * 255).astype(np.uint8)[..., None], 3, axis=2))
    return frames, np.round(background * 255).astype(np.uint8)


def test_interpolation_turns_ghost_copies_into_a_continuous_streak(tmp_path):
    speed, window = 6, 5  # the bar is 4 px wide: plain averaging leaves 2 px gaps
    frames, background = bar_frames(20, speed)
    streaks = {}
    for k in (1, 8):
        out, records = build_one(tmp_path / f"k{k}", frames, window=window, response="none",
                                 interpolate=k)
        r = records[0]
        assert r["interpolate"] == k
        row = read_image(out / r["blurry"])[23, :, 0].astype(float) - background[23]
        c = r["sharp_frame"]
        # Interior of the streak: between the bar's right edge at the exposure start and
        # its left edge at the exposure end.
        start = 10 + speed * (c - window / 2)
        streaks[k] = row[int(np.ceil(start + 4)):int(start + speed * window)]
    expected = (255 * 0.85 - 255 * 0.25) * 4 / (window * speed)  # mean excess light
    assert streaks[1].min() <= 2  # gaps: background shows between ghost copies
    assert streaks[8].min() > 0.6 * expected  # no gaps
    assert streaks[8].max() < 1.6 * expected  # no bright ghost copies either
    assert abs(streaks[8].mean() - expected) < 0.2 * expected  # light is conserved


def test_flow_midpoint_of_a_translation_is_the_half_way_image():
    rng = np.random.default_rng(3)
    base = cv2.GaussianBlur(rng.random((80, 120)).astype(np.float32), (0, 0), 3)
    base = (base - base.min()) / np.ptp(base)
    shift = lambda dx: cv2.warpAffine(base, np.float32([[1, 0, dx], [0, 1, 0]]), (120, 80),
                                      flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    f0, f1, truth = shift(0), shift(4), shift(2)
    guide = lambda f: np.round(f * 255).astype(np.uint8)
    mid = FlowInterpolator().interpolate(f0[..., None], f1[..., None], guide(f0), guide(f1),
                                         [0.5])[0][..., 0]
    inner = (slice(10, -10), slice(10, -10))
    err_interp = np.abs(mid - truth)[inner].mean()
    err_blend = np.abs((f0 + f1) / 2 - truth)[inner].mean()
    assert err_interp < 0.25 * err_blend  # a shifted image, not a cross-fade


@pytest.mark.parametrize("window,k,duty", [(7, 1, 1.0), (7, 4, 1.0), (7, 3, 0.5), (5, 16, 0.8)])
def test_exposure_samples_integrate_the_shutter_time(window, k, duty):
    samples = exposure_samples(window, k, duty)
    weights = np.array([s.weight for s in samples])
    offsets = np.array([s.offset for s in samples])
    assert weights.sum() == pytest.approx(1.0)
    assert np.allclose(offsets, -offsets[::-1]) and np.allclose(weights, weights[::-1])
    # Each sample stands for 1/k of a frame time: the exposure lasts duty * window.
    assert (weights.max() * k) ** -1 == pytest.approx(duty * window)
    assert np.all(np.abs(offsets) <= duty * window / 2)


def test_plain_averaging_reads_exactly_the_window_and_reds_setting_matches():
    assert frames_span(exposure_samples(7)) == (-3, 3)
    assert len(exposure_samples(7)) == 7
    # REDS: 120 fps upsampled 16x, 65 virtual frames = 4 frame times (5-frame window at 0.8).
    assert len(exposure_samples(5, 16, 0.8)) == 65


def test_duty_cycle_shortens_the_streak(tmp_path):
    out, records = build_one(tmp_path, dot_frames(20), window=7, duty_cycle=0.5,
                             response="none")
    row = read_image(out / records[0]["blurry"])[20, :, 0]
    lit = row[row > 0].astype(float) / 255
    # Shutter open 3.5 frame times: 3 full frames and two quarter frames.
    np.testing.assert_allclose(lit, np.array([0.25, 1, 1, 1, 0.25]) / 3.5, atol=0.5 / 255)


def test_sixteen_bit_frames_stay_sixteen_bit(tmp_path):
    folder = tmp_path / "frames"
    for i in range(12):
        f = np.full((H, W, 1), 1000, np.uint16)
        f[10, 5 + i] = 65535
        write_png(folder / f"{i:04d}.png", f)
    out = tmp_path / "out"
    build_pairs([folder], out, BuildConfig(fps=1000.0, static_keep=1.0), progress=False)
    r = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    blurry = read_image(out / r["blurry"])
    sharp = read_image(out / r["sharp"])
    assert r["bit_depth"] == 16 and blurry.dtype == np.uint16 and blurry.shape == (H, W, 3)
    assert np.array_equal(sharp[..., 0], sharp[..., 2])  # grey stored as RGB
    assert sharp[0, 0, 0] == 1000  # values are not rescaled
    streak = SRGB.decode(blurry[10, 5:12, 0].astype(np.float32) / 65535)
    background = float(SRGB.decode(np.float32([[1000 / 65535]]))[0, 0])
    # Each streak pixel saw the dot for one frame and the background for six.
    np.testing.assert_allclose(streak, (1 + 6 * background) / 7, atol=1e-4)


def test_response_curve_file_matches_the_curve_it_tabulates(tmp_path):
    # An inverse camera response as cv2.createCalibrateRobertson returns it: (256, 1, 3).
    curve = np.repeat(((np.arange(256) / 255.0) ** 2.2)[:, None, None], 3, axis=2)
    np.save(tmp_path / "crf.npy", 3.7 * curve.astype(np.float32))  # scale does not matter
    frames = [np.full((H, W, 3), 255 if i % 2 else 0, np.uint8) for i in range(16)]
    out_curve, records = build_one(tmp_path / "curve", frames, response=str(tmp_path / "crf.npy"))
    out_gamma, _ = build_one(tmp_path / "gamma", frames, response="gamma2.2")
    assert records[0]["response"] == "crf.npy"
    a = read_image(out_curve / records[0]["blurry"]).astype(int)
    b = read_image(out_gamma / records[0]["blurry"]).astype(int)
    assert np.abs(a - b).max() <= 1


def test_a_curve_that_does_not_increase_is_refused(tmp_path):
    from dataset_builder import BuildError

    np.savetxt(tmp_path / "bad.txt", np.r_[np.linspace(0, 1, 200), np.zeros(56)])
    with pytest.raises(BuildError, match="strictly increasing"):
        load_response(str(tmp_path / "bad.txt"))


def test_deep_video_is_read_with_pyav_and_stays_sixteen_bit(tmp_path):
    import av

    clip = tmp_path / "deep.mkv"
    rng = np.random.default_rng(4)
    frames = [(rng.random((H, W, 3)) * 65535).astype(np.uint16) for _ in range(10)]
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("ffv1", rate=240)
        stream.width, stream.height, stream.pix_fmt = W, H, "gbrp16le"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb48le")))
        container.mux(stream.encode())
    out = tmp_path / "out"
    build_pairs([clip], out, BuildConfig(static_keep=1.0), progress=False)
    r = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert r["bit_depth"] == 16
    assert np.array_equal(read_image(out / r["sharp"]), frames[r["sharp_frame"]])
