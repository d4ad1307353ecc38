"""Classical deblurring baselines the learned model must beat: unsharp masking,
Richardson–Lucy and Wiener deconvolution.

Motion blur in real footage has an unknown, spatially varying direction and length,
while these methods need one kernel. We give them a direction-agnostic kernel — a
uniform disk of diameter ``size`` pixels — and let the evaluator pick the single size
(and strength) that scores best on the very pairs being evaluated. That oracle choice
favours the baselines, which is the fair direction for a comparison we want to win.

Richardson, "Bayesian-based iterative method of image restoration", JOSA 1972;
Lucy, "An iterative technique for the rectification of observed distributions", AJ 1974;
Wiener deconvolution with a Laplacian prior (Wiener–Hunt; Hunt, "The application of
constrained least squares estimation to image restoration by digital computer", IEEE
Trans. Computers 1973), as ``skimage.restoration.wiener`` computes it.

All functions take and return (H, W, 3) float32 numpy images in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

# Keeps the Richardson–Lucy ratio finite where the re-blurred estimate is black.
RL_EPSILON = 1e-6
# The Wiener–Hunt prior penalises the image's Laplacian (its high frequencies).
LAPLACIAN = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=np.float64)


def disk_kernel(size: int) -> np.ndarray:
    """Uniform disk point-spread function of diameter ``size`` pixels, summing to 1.

    Args:
        size: odd diameter in pixels, >= 1 (1 is the identity).

    Returns:
        (size, size) float32 kernel.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 1, got {size}")
    radius = size / 2
    coords = np.arange(size, dtype=np.float32) - (size - 1) / 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    kernel = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    return kernel / kernel.sum()


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # filter2D correlates; flipping the kernel makes it a convolution (the PSF model).
    return cv2.filter2D(image, cv2.CV_32F, kernel[::-1, ::-1].copy(), borderType=cv2.BORDER_REFLECT)


def unsharp_mask(image: np.ndarray, *, sigma: float, amount: float) -> np.ndarray:
    """Sharpen by adding back ``amount`` times the difference to a Gaussian blur.

    Args:
        image: (H, W, 3) float32 in [0, 1].
        sigma: standard deviation of the Gaussian in pixels.
        amount: strength; 0 returns the input.
    """
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(image + amount * (image - blurred), 0.0, 1.0)


def richardson_lucy(image: np.ndarray, kernel: np.ndarray, *, iterations: int = 20) -> np.ndarray:
    """Richardson–Lucy deconvolution, starting from the blurry image itself.

    Args:
        image: (H, W, 3) float32 in [0, 1], blurred by ``kernel``.
        kernel: (k, k) PSF summing to 1.
        iterations: multiplicative updates; more sharpens more and amplifies noise.
    """
    mirrored = kernel[::-1, ::-1].copy()
    estimate = image.copy()
    for _ in range(iterations):
        ratio = image / (_filter(estimate, kernel) + RL_EPSILON)
        estimate = estimate * _filter(ratio, mirrored)
    return np.clip(estimate, 0.0, 1.0)


def _transfer_function(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """rfft2 of ``kernel`` centred on pixel (0, 0) of an image of ``shape`` (no shift)."""
    k = kernel.shape[0]
    psf = np.zeros(shape, dtype=np.float64)
    psf[:k, :k] = kernel
    return np.fft.rfft2(np.roll(psf, (-(k // 2), -(k // 2)), axis=(0, 1)))


def wiener_deconvolve(image: np.ndarray, kernel: np.ndarray, *, balance: float) -> np.ndarray:
    """Wiener–Hunt deconvolution: the Wiener filter with a Laplacian image prior.

    restored = F^-1[ conj(H) / (|H|^2 + balance * |L|^2) * F[image] ], with H the blur's
    and L the Laplacian's transfer function (as ``skimage.restoration.wiener``). Unlike a
    constant noise-to-signal ratio, the Laplacian prior leaves flat areas (and the mean
    brightness) untouched and damps only high frequencies. The DFT treats the image as
    periodic; we filter its mirrored 2x2 tiling, periodic without jumps at the seams, so
    the frame edges do not ring.

    Args:
        image: (H, W, 3) float32 in [0, 1], blurred by ``kernel``.
        kernel: (k, k) PSF summing to 1.
        balance: weight of the prior; larger is smoother.
    """
    h, w = image.shape[:2]
    tiled = np.concatenate([image, image[::-1]], axis=0)
    tiled = np.concatenate([tiled, tiled[:, ::-1]], axis=1).astype(np.float64)  # (2H, 2W, 3)
    blur = _transfer_function(kernel, (2 * h, 2 * w))
    laplacian = _transfer_function(LAPLACIAN, (2 * h, 2 * w))
    gain = np.conj(blur) / (np.abs(blur) ** 2 + balance * np.abs(laplacian) ** 2)
    spectrum = np.fft.rfft2(tiled, axes=(0, 1))
    restored = np.fft.irfft2(spectrum * gain[..., None], s=(2 * h, 2 * w), axes=(0, 1))
    return np.clip(restored[:h, :w], 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class BaselineSetting:
    """One baseline method with one parameter setting."""

    method: str  # "unsharp", "richardson_lucy" or "wiener"
    label: str  # human-readable parameters, e.g. "size=9" or "sigma=2,amount=1"
    apply: Callable[[np.ndarray], np.ndarray]  # (H, W, 3) float32 -> same


def baseline_settings(
    *,
    kernel_sizes: tuple[int, ...] = (3, 5, 9, 15, 21),
    rl_iterations: tuple[int, ...] = (5, 20),
    wiener_balance: tuple[float, ...] = (1e-3, 1e-2, 1e-1),
    unsharp_sigmas: tuple[float, ...] = (1.0, 2.0, 4.0),
    unsharp_amounts: tuple[float, ...] = (0.5, 1.0, 2.0),
) -> list[BaselineSetting]:
    """Every parameter setting the evaluator tries; it keeps the best per method.

    Args:
        kernel_sizes: disk diameters (px) for Richardson–Lucy and Wiener.
        rl_iterations: Richardson–Lucy iteration counts (few: less noise amplification).
        wiener_balance: prior weights tried for Wiener–Hunt.
        unsharp_sigmas: Gaussian sigmas (px) tried for unsharp masking.
        unsharp_amounts: strengths tried for unsharp masking.
    """
    settings: list[BaselineSetting] = []
    for sigma in unsharp_sigmas:
        for amount in unsharp_amounts:
            settings.append(
                BaselineSetting(
                    "unsharp",
                    f"sigma={sigma:g},amount={amount:g}",
                    lambda im, s=sigma, a=amount: unsharp_mask(im, sigma=s, amount=a),
                )
            )
    for size in kernel_sizes:
        kernel = disk_kernel(size)
        for iterations in rl_iterations:
            settings.append(
                BaselineSetting(
                    "richardson_lucy",
                    f"size={size},iterations={iterations}",
                    lambda im, k=kernel, n=iterations: richardson_lucy(im, k, iterations=n),
                )
            )
        for balance in wiener_balance:
            settings.append(
                BaselineSetting(
                    "wiener",
                    f"size={size},balance={balance:g}",
                    lambda im, k=kernel, b=balance: wiener_deconvolve(im, k, balance=b),
                )
            )
    return settings
