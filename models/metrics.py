"""Image-quality metrics: PSNR and SSIM, exactly as unsmear reports them.

Deblurring papers differ in how they compute PSNR/SSIM (RGB or Y channel, border crop,
which SSIM code), and their numbers are not comparable otherwise. Ours:

* **PSNR** — RGB, float images in [0, 1] (8-bit PNGs divided by 255, 16-bit by 65535),
  data range 1.0, mean squared error over all three channels and all pixels of one
  image, optional border crop of ``crop_border`` pixels on every side. The restored
  image is clamped to [0, 1] (as any writer would) but not rounded. The MSE is floored
  at ``MSE_FLOOR`` so identical images give ``MAX_PSNR_DB`` (100 dB) instead of
  infinity. Set averages are the mean of per-image PSNRs.
* **SSIM** — Wang, Bovik, Sheikh & Simoncelli (2004): Gaussian window 11x11 with
  sigma 1.5, K1 = 0.01, K2 = 0.03, 'valid' filtering (no padding) and no automatic
  downsampling, computed per RGB channel on the same [0, 1] images and crop as PSNR,
  the SSIM map averaged over pixels and then over the three channels. This is the
  computation of BasicSR's ``calculate_ssim`` on RGB input, written here in torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Identical images would give an infinite PSNR, which breaks means and JSON.
MSE_FLOOR = 1e-10
MAX_PSNR_DB = -10.0 * math.log10(MSE_FLOOR)

SSIM_WINDOW = 11  # Wang et al. 2004
SSIM_SIGMA = 1.5  # Wang et al. 2004
SSIM_K1 = 0.01  # stabilises the luminance term for dark regions
SSIM_K2 = 0.03  # stabilises the contrast-structure term for flat regions

PSNR_DEFINITION = (
    "PSNR: RGB, images as floats in [0, 1], data range 1.0, MSE over all channels and "
    "pixels of each image, border crop {crop} px, restored image clamped to [0, 1] (not "
    f"rounded), capped at {MAX_PSNR_DB:.0f} dB; set figures are means of per-image PSNRs."
)
SSIM_DEFINITION = (
    "SSIM: Wang et al. 2004, Gaussian window 11x11 sigma 1.5, K1 0.01, K2 0.03, valid "
    "filtering, no downsampling, per RGB channel on [0, 1] images (data range 1.0, border "
    "crop {crop} px) then averaged over channels (unsmear's torch implementation, same "
    "computation as BasicSR's calculate_ssim)."
)


def _as_batch(image: torch.Tensor, name: str) -> torch.Tensor:
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4:
        raise ValueError(f"{name} must be (3, H, W) or (N, 3, H, W), got shape {tuple(image.shape)}")
    return image


def _prepare(
    restored: torch.Tensor, sharp: torch.Tensor, crop_border: int
) -> tuple[torch.Tensor, torch.Tensor]:
    restored = _as_batch(restored, "restored")
    sharp = _as_batch(sharp, "sharp")
    if restored.shape != sharp.shape:
        raise ValueError(
            f"restored and sharp differ in shape: {tuple(restored.shape)} vs {tuple(sharp.shape)}"
        )
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        restored = restored[..., crop_border:-crop_border, crop_border:-crop_border]
        sharp = sharp[..., crop_border:-crop_border, crop_border:-crop_border]
    if restored.shape[-1] == 0 or restored.shape[-2] == 0:
        raise ValueError(f"border crop of {crop_border} px leaves an empty image")
    # Float32 is enough for PSNR/SSIM of [0, 1] images; float64 input stays float64.
    dtype = torch.float64 if sharp.dtype == torch.float64 else torch.float32
    return restored.to(dtype).clamp(0.0, 1.0), sharp.to(dtype)


def psnr(restored: torch.Tensor, sharp: torch.Tensor, *, crop_border: int = 0) -> torch.Tensor:
    """PSNR in dB per image (see the module docstring for the exact definition).

    Args:
        restored: (N, 3, H, W) or (3, H, W) float, nominally in [0, 1]; clamped.
        sharp: same shape, float in [0, 1], the reference.
        crop_border: pixels removed from every side before comparing.

    Returns:
        (N,) tensor of PSNRs in dB, at most ``MAX_PSNR_DB``.
    """
    restored, sharp = _prepare(restored, sharp, crop_border)
    mse = (restored - sharp).pow(2).mean(dim=(1, 2, 3)).clamp_min(MSE_FLOOR)
    return -10.0 * torch.log10(mse)


def _gaussian_kernel_1d(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    offsets = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - (SSIM_WINDOW - 1) / 2
    kernel = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return kernel / kernel.sum()


def ssim(restored: torch.Tensor, sharp: torch.Tensor, *, crop_border: int = 0) -> torch.Tensor:
    """SSIM per image (see the module docstring for the exact definition).

    Args:
        restored: (N, C, H, W) or (C, H, W) float, nominally in [0, 1]; clamped.
        sharp: same shape, float in [0, 1], the reference.
        crop_border: pixels removed from every side before comparing.

    Returns:
        (N,) tensor: mean over channels of the mean SSIM map ('valid' 11x11 window).
    """
    restored, sharp = _prepare(restored, sharp, crop_border)
    n, c, h, w = sharp.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {w}x{h}")
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1.0
    g = _gaussian_kernel_1d(sharp.dtype, sharp.device)
    # The 2-D Gaussian window is separable: filter rows then columns, per channel.
    g_rows = g.view(1, 1, 1, -1).expand(c, 1, 1, SSIM_WINDOW)
    g_cols = g.view(1, 1, -1, 1).expand(c, 1, SSIM_WINDOW, 1)

    def window_mean(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, g_rows, groups=c), g_cols, groups=c)

    mu_x, mu_y = window_mean(restored), window_mean(sharp)
    var_x = window_mean(restored * restored) - mu_x**2
    var_y = window_mean(sharp * sharp) - mu_y**2
    cov_xy = window_mean(restored * sharp) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.mean(dim=(2, 3)).mean(dim=1)
