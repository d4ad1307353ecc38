"""Blur for still images: Markov camera-shake kernels and object motion blur."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_builder.kernels import (apply_kernel, object_motion_blur, random_shake_kernel,
                                     random_trajectory, trajectory_kernel)


def test_shake_kernels_are_normalised_reproducible_and_vary():
    kernels = [random_shake_kernel(np.random.default_rng(seed), length=20) for seed in range(4)]
    for k in kernels:
        assert k.dtype == np.float32 and k.min() >= 0
        assert k.sum() == pytest.approx(1.0, abs=1e-5)
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    again = random_shake_kernel(np.random.default_rng(0), length=20)
    assert np.array_equal(kernels[0], again)
    assert not np.array_equal(kernels[0], kernels[1])


def test_trajectory_has_the_requested_length_and_kernel_is_centred_on_its_mass():
    trajectory = random_trajectory(np.random.default_rng(5), length=25)
    assert np.abs(np.diff(trajectory)).sum() == pytest.approx(25, rel=1e-6)
    kernel = trajectory_kernel(trajectory)
    ys, xs = np.mgrid[:kernel.shape[0], :kernel.shape[1]]
    centre = kernel.shape[0] // 2
    # Centred on the mass: the blurred image stays registered with the sharp one.
    assert (kernel * xs).sum() == pytest.approx(centre, abs=1e-3)
    assert (kernel * ys).sum() == pytest.approx(centre, abs=1e-3)


def test_shake_blur_keeps_brightness_and_spreads_a_point_into_the_kernel():
    rng = np.random.default_rng(1)
    kernel = random_shake_kernel(rng, length=15)
    image = rng.random((64, 64, 3)).astype(np.float32)
    blurred = apply_kernel(image, kernel)
    # No min-max normalisation (DeblurGAN's mistake): mean brightness is unchanged.
    assert blurred.mean() == pytest.approx(image.mean(), abs=2e-3)
    assert blurred.std() < image.std()
    point = np.zeros((65, 65, 1), np.float32)
    point[32, 32] = 1
    spread = apply_kernel(point, kernel)[..., 0]
    half = kernel.shape[0] // 2
    np.testing.assert_allclose(spread[32 - half:33 + half, 32 - half:33 + half], kernel, atol=1e-6)


def test_partial_exposure_gives_a_shorter_kernel():
    trajectory = random_trajectory(np.random.default_rng(2), length=30)
    full, tenth = trajectory_kernel(trajectory), trajectory_kernel(trajectory, exposure=0.1)
    assert (tenth > 1e-4).sum() < (full > 1e-4).sum()


def test_object_motion_blur_is_local_and_conserves_light():
    image = np.zeros((40, 80, 3), np.float32)
    image[15:25, 30:40] = 0.8  # a bright square on black
    mask = np.zeros((40, 80), np.float32)
    mask[15:25, 30:40] = 1
    blurred, sharp = object_motion_blur(image, mask, (8.0, 0.0), background=np.zeros_like(image))
    assert np.allclose(sharp, image)  # the object at rest is the sharp target
    assert blurred.sum() == pytest.approx(image.sum(), rel=1e-3)  # light is conserved
    row = blurred[20, :, 0]
    # The 10 px square swept from x-4 to x+4: an 18 px trapezoid.
    assert np.all(row[:26] < 1e-6) and np.all(row[44:] < 1e-6)
    np.testing.assert_allclose(row[34:36], 0.8, atol=1e-6)  # covered all the time
    assert row[27] < row[30] < row[33] < 0.8  # edges ramp: a semi-transparent streak
    assert np.all(blurred[:14] == 0) and np.all(blurred[26:] == 0)  # rows untouched


def test_object_motion_blur_inpaints_the_hidden_background_by_default():
    yy, xx = np.mgrid[:40, :80]
    image = np.repeat((0.2 + 0.3 * xx / 80).astype(np.float32)[..., None], 3, axis=2)
    image[15:25, 30:40] = 0.9
    mask = np.zeros((40, 80), np.float32)
    mask[15:25, 30:40] = 1
    blurred, sharp = object_motion_blur(image, mask, (0.0, 16.0))
    # Away from the object nothing changes; where it moved away, the gradient shows.
    assert np.allclose(blurred[:, :25], image[:, :25])
    assert np.allclose(sharp, image, atol=1e-6)
    assert blurred[20, 35, 0] < 0.9 and blurred[20, 35, 0] > 0.4
