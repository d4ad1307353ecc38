"""The motion a video generator sees: flow from the blurred frames, what happens where it can't be
trusted, and that the 16 symmetric variants of a training sample keep their flow true."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.generator import RRDBNet, align_neighbours, checkpoint_filter_fn
from models.checkpoint import load_trunk
from models.motion import MotionEstimator, add_motion
from models.synthetic import SyntheticConfig, SyntheticPairs
from models.symmetry import symmetric_variant
from tests.test_models_synthetic import write_photo


def _textured(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth random texture (DIS needs structure at several scales), uint8 RGB."""
    rng = np.random.default_rng(seed)
    import cv2

    noise = rng.random((height // 8, width // 8, 3)).astype(np.float32)
    image = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    image += 0.3 * rng.random((height, width, 3)).astype(np.float32)
    return (np.clip(image / 1.3, 0, 1) * 255).astype(np.uint8)


def _shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return np.roll(image, (dy, dx), axis=(0, 1))


def test_flow_to_each_neighbour_is_the_motion_between_the_frames():
    centre = _textured(seed=1)
    # The scene moves right by 3 px a frame and down by 2: in the next frame each pixel of the
    # centre frame is found 3 px right and 2 px down, in the previous one as far the other way.
    frames = [_shifted(centre, -3, -2), centre, _shifted(centre, 3, 2)]
    order, motion = MotionEstimator(3).windows(frames, 1)
    assert order.tolist() == [[0, 1, 2]]  # both neighbours kept
    inner = (slice(16, -16), slice(16, -16))  # away from the wrapped edges
    assert np.median(motion[0, 0][inner]) == pytest.approx(-3, abs=0.3)
    assert np.median(motion[0, 1][inner]) == pytest.approx(-2, abs=0.3)
    assert np.median(motion[0, 2][inner]) == pytest.approx(3, abs=0.3)
    assert np.median(motion[0, 3][inner]) == pytest.approx(2, abs=0.3)


def test_repeated_edge_frames_get_zero_motion_and_another_shot_is_dropped():
    centre, other = _textured(seed=1), _textured(seed=7)
    # The first frame of a clip: its missing neighbour is itself repeated; the next frame is
    # another shot (a cut): neither may suggest any motion.
    frames = [centre, centre, other]
    order, motion = MotionEstimator(3).windows(frames, 1)
    assert order[0, 2] == 1  # the cut's frame is replaced by the frame itself
    assert all(np.array_equal(frames[i], centre) for i in order[0]) and not motion.any()


def test_frames_too_small_to_match_get_no_motion():
    tiny = _textured(20, 24)
    order, motion = MotionEstimator(3).windows([tiny, _shifted(tiny, 2, 0), tiny], 1)
    assert order.tolist() == [[0, 1, 2]] and motion.shape == (1, 4, 20, 24) and not motion.any()


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    write_photo(root / "scene.png", width=320, height=240, seed=4)
    return root


@pytest.mark.parametrize("variant", range(16))
def test_a_symmetric_variant_carries_the_flow_of_its_own_frames(variant, photo_folder):
    """Turning, mirroring or reversing a sample must turn its flow the same way: the flow
    estimated on the transformed frames equals the transformed flow."""
    config = SyntheticConfig(fraction=1.0, photos=(str(photo_folder),), noise=0, compression=0)
    pairs = SyntheticPairs(config, split="train", crop_size=96, in_frames=3, seed=3)
    estimator = MotionEstimator(3)
    # A sample that clearly moves, with flow trusted almost everywhere.
    sample = next(s for s in (add_motion(pairs.sample(n), estimator) for n in range(20))
                  if s["motion"].abs().mean() > 3 and (s["motion"] != 0).float().mean() > 0.9)
    turned = symmetric_variant(sample, variant, in_frames=3)
    again = add_motion({"blurry": turned["blurry"], "sharp": turned["sharp"]}, estimator)
    both = (turned["motion"] != 0) & (again["motion"] != 0)
    assert both.float().mean() > 0.7
    error = (turned["motion"] - again["motion"])[both].abs().median()
    assert error < 0.5, f"variant {variant}: flow off by {error:.2f} px"


def test_aligned_neighbours_land_on_the_centre_frame():
    centre = torch.rand(1, 3, 32, 40)
    moved = torch.roll(centre, shifts=(2, 3), dims=(2, 3))  # content 3 px right, 2 px down
    flow = torch.zeros(1, 4, 32, 40)
    flow[:, 2], flow[:, 3] = 3.0, 2.0  # centre -> next frame
    aligned = align_neighbours(torch.cat([centre, centre, moved], 1), flow)
    inner = (..., slice(4, -4), slice(4, -4))
    assert torch.allclose(aligned[:, 6:9][inner], centre[inner], atol=1e-5)


@pytest.mark.parametrize("motion", ["none", "flow", "aligned", "aligned+flow"])
def test_a_video_model_grown_from_an_image_model_starts_as_it(motion):
    torch.manual_seed(0)
    image = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, downscale=4).eval()
    torch.nn.init.normal_(image.conv_last.weight, std=0.1)
    video = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, downscale=4, in_frames=3, motion=motion).eval()
    loaded, skipped = load_trunk(video, checkpoint_filter_fn(image.state_dict(), video))
    assert not skipped
    frames = torch.rand(2, 9, 24, 28)
    flow = torch.randn(2, video.config.motion_channels, 24, 28)
    with torch.no_grad():
        assert torch.allclose(video(torch.cat([frames, flow], 1)), image(frames[:, 3:6]), atol=1e-6)


def test_a_still_background_keeps_the_gate_shut_while_a_mover_opens_it(tmp_path):
    """A disc moving 18 px a frame over a still, noisy background: the gate is shut on the
    still region (the generator leaves it as it is) and open on the disc and its streak."""
    from tests.media import disc_centre, disc_still_mask, moving_disc_clip

    frames, _ = moving_disc_clip(tmp_path / "disc.mkv", frames=5, noise=2.0)
    order, motion = MotionEstimator(3, still_gate=True).windows(frames[1:4], 1)
    gate = motion[0, -1]
    assert motion.shape[1] == 5 and order.tolist() == [[0, 1, 2]]
    yy, xx = np.mgrid[0:gate.shape[0], 0:gate.shape[1]]
    # Far from the disc's path through the three frames, every pixel is kept as it is; nearer,
    # the gate opens around the disc and the flow DIS spills beside it.
    path = np.min([np.hypot(xx - x, yy - y) for x, y in map(disc_centre, np.linspace(1, 4, 31))], axis=0)
    assert gate[path > 64].mean() < 0.02
    assert gate[disc_still_mask(2)].mean() < 0.15
    cx, cy = disc_centre(2.5)
    assert gate[np.hypot(xx - cx, yy - cy) < 10].min() > 0.9


def test_the_gate_is_open_where_no_neighbour_can_tell_and_on_a_pan():
    centre, other = _textured(seed=1), _textured(seed=7)
    estimator = MotionEstimator(3, still_gate=True)
    # The first frame of a clip before a cut: no neighbour tells how it moves.
    _, motion = estimator.windows([centre, centre, other], 1)
    assert np.all(motion[0, -1] == 1.0)
    tiny = _textured(20, 24)
    _, motion = estimator.windows([tiny, _shifted(tiny, 2, 0), tiny], 1)
    assert np.all(motion[0, -1] == 1.0)
    # A camera pan of 3 px a frame moves everything.
    _, motion = estimator.windows([_shifted(centre, -3, 0), centre, _shifted(centre, 3, 0)], 1)
    assert motion[0, -1][16:-16, 16:-16].min() > 0.99


def test_a_gated_generator_keeps_still_pixels_exactly():
    torch.manual_seed(0)
    model = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, downscale=4, in_frames=3, motion="flow",
                    still_gate=True).eval()
    torch.nn.init.normal_(model.conv_last.weight, std=0.1)
    assert model.config.motion_channels == 5 and model.config.in_channels == 14
    frames, flow = torch.rand(1, 9, 24, 32), torch.randn(1, 4, 24, 32)
    gate = torch.zeros(1, 1, 24, 32)
    gate[..., 16:] = 1.0  # the right half moves
    with torch.no_grad():
        out = model(torch.cat([frames, flow, gate], 1))
    centre = frames[:, 3:6]
    assert torch.equal(out[..., :16], centre[..., :16])
    assert (out[..., 16:] - centre[..., 16:]).abs().mean() > 1e-3


def test_a_still_gate_needs_motion_and_a_residual():
    with pytest.raises(ValueError, match="still_gate"):
        RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, in_frames=3, still_gate=True)
    with pytest.raises(ValueError, match="still_gate"):
        RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, in_frames=3, motion="flow", residual=False,
                still_gate=True)


@pytest.mark.parametrize("variant", [1, 4, 8, 15])
def test_a_symmetric_variant_moves_the_gate_with_the_picture_and_keeps_its_value(variant):
    flow = torch.randn(4, 6, 8)
    gate = torch.rand(1, 6, 8)
    sample = {"blurry": torch.rand(9, 6, 8), "sharp": torch.rand(3, 6, 8), "motion": torch.cat([flow, gate])}
    turned = symmetric_variant(sample, variant, in_frames=3)
    expected = gate
    if variant & 1:
        expected = expected.flip(-1)
    if variant & 2:
        expected = expected.flip(-2)
    if variant & 4:
        expected = expected.transpose(-1, -2)
    assert turned["motion"].shape[0] == 5
    assert torch.equal(turned["motion"][4:], expected)
    # The flows still turn as without a gate.
    plain = symmetric_variant({**sample, "motion": flow}, variant, in_frames=3)
    assert torch.equal(turned["motion"][:4], plain["motion"])
