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
from models.training_data import symmetric_variant
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
