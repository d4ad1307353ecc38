"""Training losses: pixel, perceptual, frequency-domain and adversarial.

* PSNR loss (HINet, NAFNet): the mean over samples of 10 log10(MSE), i.e. minus each
  sample's PSNR, softly capped: the mean dB gain we report, where MSE weighs the heavily
  blurred samples most.
* Perceptual: L1 between VGG19 features of restored and sharp, taken before the
  activation (ESRGAN, Wang et al. 2018; BasicSR's ``PerceptualLoss`` with conv5_4).
* Frequency: L1 between the 2-D FFTs of restored and sharp (Cho et al., MIMO-UNet,
  ICCV 2021). It rewards recovered high frequencies without any pretrained network, so
  it stands in for the perceptual loss when no VGG19 weight file is available.
* Relativistic average GAN (Jolicoeur-Martineau 2018, as used by ESRGAN):
  D_Ra(a, b) = sigmoid(C(a) - E[C(b)]), trained with binary cross-entropy; the
  expectation over the other side is taken as a constant, as BasicSR does.
* WGAN-GP (Gulrajani et al. 2017, as used by DeblurGAN): critic loss
  E[C(fake)] - E[C(real)] + lambda * E[(||grad C(x_hat)|| - 1)^2].

All image arguments are (N, 3, H, W) float in [0, 1]; discriminator outputs are raw
scores of any shape with the batch first ((N, 1) for the VGG-style discriminator,
(N, 1, h, w) for PatchGAN); their mean runs over every element.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.vgg import VGG19Features


class PerceptualLoss(nn.Module):
    """Weighted L1 distance between VGG19 features.

    Args:
        vgg: a loaded, frozen ``VGG19Features`` (see ``models.vgg.load_vgg19_features``).
        layer_weights: weight per layer name; every name must be among ``vgg.layers``.
    """

    def __init__(self, vgg: VGG19Features, *, layer_weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.vgg = vgg
        self.layer_weights = dict(layer_weights or {name: 1.0 for name in vgg.layers})
        unknown = set(self.layer_weights) - set(vgg.layers)
        if unknown:
            raise ValueError(f"layers {sorted(unknown)} are not computed by the VGG ({vgg.layers})")

    def forward(self, restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        """Scalar loss; gradients flow into ``restored`` only."""
        restored_feats = self.vgg(restored)
        with torch.no_grad():
            sharp_feats = self.vgg(sharp)
        loss = restored.new_zeros(())
        for name, weight in self.layer_weights.items():
            loss = loss + weight * F.l1_loss(restored_feats[name].float(), sharp_feats[name].float())
        return loss


def psnr_loss(restored: torch.Tensor, sharp: torch.Tensor, cap_db: float = 80.0) -> torch.Tensor:
    """Minus the mean per-sample PSNR (dB), each sample's counted softly up to ``cap_db``.

    The MSE floor 10^(-cap_db/10) is added to every sample's MSE: a sample fed sharp and
    restored to an MSE near 1e-6 would otherwise pull thousands of times harder per unit of
    error than a blurred one (MSE ~1e-2 to 1e-3); at a cap of 40 dB, samples past 40 dB stop
    dominating the batch.
    """
    floor = 10.0 ** (-cap_db / 10)
    return 10 * torch.log10(((restored - sharp) ** 2).mean(dim=(1, 2, 3)) + floor).mean()


class FFTLoss(nn.Module):
    """L1 distance between the real and imaginary parts of the images' 2-D FFTs."""

    def forward(self, restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        """Scalar loss (orthonormal FFT, so its scale does not depend on crop size)."""
        # FFTs in half precision are limited to power-of-two sizes: compute in float32.
        restored_f = torch.fft.rfft2(restored.float(), norm="ortho")
        sharp_f = torch.fft.rfft2(sharp.float(), norm="ortho")
        return F.l1_loss(torch.view_as_real(restored_f), torch.view_as_real(sharp_f))


def ragan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Relativistic average discriminator loss (ESRGAN eq. 2, BasicSR's D step).

    Args:
        real_scores: C(sharp), with gradients to the discriminator.
        fake_scores: C(restored.detach()), with gradients to the discriminator.
    """
    real_rel = real_scores - fake_scores.detach().mean()
    fake_rel = fake_scores - real_scores.detach().mean()
    loss_real = F.binary_cross_entropy_with_logits(real_rel, torch.ones_like(real_rel))
    loss_fake = F.binary_cross_entropy_with_logits(fake_rel, torch.zeros_like(fake_rel))
    return 0.5 * (loss_real + loss_fake)


def ragan_generator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Relativistic average generator loss L_G^Ra (ESRGAN eq. 3): the mirror image of
    the discriminator's, so the generator profits from both real and fake scores.

    Args:
        real_scores: C(sharp) (detached here: the generator cannot change it).
        fake_scores: C(restored), with gradients to the generator.
    """
    real_scores = real_scores.detach()
    real_rel = real_scores - fake_scores.mean()
    fake_rel = fake_scores - real_scores.mean()
    loss_real = F.binary_cross_entropy_with_logits(real_rel, torch.zeros_like(real_rel))
    loss_fake = F.binary_cross_entropy_with_logits(fake_rel, torch.ones_like(fake_rel))
    return 0.5 * (loss_real + loss_fake)


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss E[C(fake)] - E[C(real)] (add ``gradient_penalty``)."""
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN generator loss -E[C(restored)]."""
    return -fake_scores.mean()


def gradient_penalty(
    critic: nn.Module,
    sharp: torch.Tensor,
    restored: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """E[(||grad_x C(x)||_2 - 1)^2] at random points x between sharp and restored.

    Args:
        critic: the discriminator; it must not mix samples (no batch norm).
        sharp: (N, 3, H, W) real images.
        restored: (N, 3, H, W) generator output, detached.
        generator: RNG for the interpolation weights, for reproducible runs.
    """
    n = sharp.shape[0]
    alpha = torch.rand(n, 1, 1, 1, generator=generator, device="cpu").to(sharp)
    mixed = (alpha * sharp.detach() + (1 - alpha) * restored.detach()).requires_grad_(True)
    scores = critic(mixed)
    (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return (grads.flatten(1).norm(dim=1) - 1).pow(2).mean()
