"""Losses, discriminators and the VGG19 feature extractor used by the GAN stage."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.discriminator import DiscriminatorConfig, PatchDiscriminator, VGGStyleDiscriminator, build_discriminator
from models.losses import (
    FFTLoss,
    PerceptualLoss,
    gradient_penalty,
    psnr_loss,
    ragan_discriminator_loss,
    ragan_generator_loss,
    wgan_critic_loss,
    wgan_generator_loss,
)
from models.vgg import VGG19_LAYERS, VGG19Features, load_vgg19_features

# torchvision's vgg19().features: convolutions at these indices (ReLUs after, pools between).
TORCHVISION_VGG19_CONVS = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)




def _smooth_images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)


def _box_blur(x: torch.Tensor, width: int = 5) -> torch.Tensor:
    kernel = torch.full((3, 1, 1, width), 1.0 / width)
    return F.conv2d(F.pad(x, (width // 2, width // 2, 0, 0), mode="replicate"), kernel, groups=3)


# --------------------------------------------------------------------------- VGG19


def test_vgg19_parameter_names_match_torchvision():
    vgg = VGG19Features(("pool5",))
    expected = {f"features.{i}.{p}" for i in TORCHVISION_VGG19_CONVS for p in ("weight", "bias")}
    assert {f"features.{k}" for k in vgg.features.state_dict()} == expected
    assert vgg.features[34].weight.shape == (512, 512, 3, 3)
    assert VGG19_LAYERS["conv5_4"] == 34 and VGG19_LAYERS["conv3_3"] == 14  # ESRGAN / DeblurGAN layers


def test_vgg19_loads_a_local_torchvision_file_and_refuses_incomplete_ones(tmp_path):
    donor = VGG19Features(("pool5",))
    state = {f"features.{k}": v for k, v in donor.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files carry the classifier too
    torch.save(state, tmp_path / "vgg19.pth")
    vgg = load_vgg19_features(tmp_path / "vgg19.pth", layers=("conv2_2",))
    assert torch.equal(vgg.features[7].weight, donor.features[7].weight)
    assert not any(p.requires_grad for p in vgg.parameters()) and not vgg.training
    x = torch.rand(1, 3, 16, 16)
    # conv2_2 is taken before its ReLU (ESRGAN): negative responses must survive.
    assert (vgg(x)["conv2_2"] < 0).any()

    del state["features.7.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="features.7.weight"):
        load_vgg19_features(tmp_path / "partial.pth", layers=("conv2_2",))
    with pytest.raises(FileNotFoundError, match="VGG19 weight file not found"):
        load_vgg19_features(tmp_path / "absent.pth")


def test_perceptual_loss_is_zero_on_identical_images_and_trains_only_the_input():
    vgg = VGG19Features(("conv2_2",)).eval().requires_grad_(False)
    loss = PerceptualLoss(vgg)
    sharp = _smooth_images()
    assert loss(sharp, sharp).item() == 0.0
    restored = _box_blur(sharp).requires_grad_(True)
    value = loss(restored, sharp)
    value.backward()
    assert value.item() > 0 and restored.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


# --------------------------------------------------------------------------- FFT loss


def test_fft_loss_penalises_blur_and_its_gradient_restores_detail():
    sharp = _smooth_images()
    blurry = _box_blur(sharp)
    fft = FFTLoss()
    assert fft(sharp, sharp).item() == 0.0
    restored = blurry.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([restored], lr=1e-2)
    start = (blurry - sharp).abs().mean().item()
    for _ in range(30):
        optimiser.zero_grad()
        fft(restored, sharp).backward()
        optimiser.step()
    assert (restored - sharp).abs().mean().item() < 0.5 * start


# --------------------------------------------------------------------------- GAN losses


def _bce_real(x: float) -> float:  # -log(sigmoid(x))
    return math.log1p(math.exp(-x))


def _bce_fake(x: float) -> float:  # -log(1 - sigmoid(x))
    return math.log1p(math.exp(x))


def test_psnr_loss_is_minus_the_mean_sample_psnr_and_its_cap_keeps_sharp_samples_from_dominating():
    torch.manual_seed(0)
    sharp = torch.rand(2, 3, 16, 16)
    # One sample 20 dB off (MSE 1e-2), one 60 dB off (MSE 1e-6): a sample fed sharp.
    restored = sharp + torch.stack([torch.full((3, 16, 16), 0.1), torch.full((3, 16, 16), 1e-3)])
    assert psnr_loss(restored, sharp, cap_db=200).item() == pytest.approx(-(20 + 60) / 2, abs=1e-3)
    # Capped at 40 dB the sharp sample counts about 40 and its pull per unit of error falls
    # from 1e4x the blurred sample's to 100x.
    assert psnr_loss(restored, sharp, cap_db=40).item() == pytest.approx(-(19.96 + 39.96) / 2, abs=0.01)
    restored.requires_grad_(True)
    psnr_loss(restored, sharp, cap_db=200).backward()
    uncapped = (restored.grad[1].abs().mean() / 1e-3) / (restored.grad[0].abs().mean() / 0.1)
    restored.grad = None
    psnr_loss(restored, sharp, cap_db=40).backward()
    capped = (restored.grad[1].abs().mean() / 1e-3) / (restored.grad[0].abs().mean() / 0.1)
    assert uncapped == pytest.approx(1e4, rel=0.01) and capped == pytest.approx(100, rel=0.01)


def test_relativistic_losses_match_the_esrgan_formulas():
    real = torch.tensor([[2.0], [0.0]])
    fake = torch.tensor([[-1.0], [1.0]])
    # D_Ra(real, fake) = sigmoid(C(real) - E[C(fake)]), E[C(fake)] = 0, E[C(real)] = 1.
    real_rel, fake_rel = [2.0, 0.0], [-2.0, 0.0]
    d_expected = 0.5 * (sum(map(_bce_real, real_rel)) / 2 + sum(map(_bce_fake, fake_rel)) / 2)
    g_expected = 0.5 * (sum(map(_bce_fake, real_rel)) / 2 + sum(map(_bce_real, fake_rel)) / 2)
    assert ragan_discriminator_loss(real, fake).item() == pytest.approx(d_expected, rel=1e-6)
    assert ragan_generator_loss(real, fake).item() == pytest.approx(g_expected, rel=1e-6)
    # A discriminator that separates better has a lower loss; its generator a higher one.
    assert ragan_discriminator_loss(real + 5, fake - 5) < ragan_discriminator_loss(real, fake)
    assert ragan_generator_loss(real + 5, fake - 5) > ragan_generator_loss(real, fake)


def test_relativistic_generator_loss_sends_gradients_only_to_fake_scores():
    real = torch.tensor([[1.0], [2.0]], requires_grad=True)
    fake = torch.tensor([[0.0], [-1.0]], requires_grad=True)
    ragan_generator_loss(real, fake).backward()
    assert real.grad is None and fake.grad is not None
    assert (fake.grad < 0).all()  # raising the fake scores lowers the generator's loss


def test_wgan_losses_and_gradient_penalty_of_a_linear_critic():
    real, fake = torch.tensor([3.0, 1.0]), torch.tensor([0.5, -0.5])
    assert wgan_critic_loss(real, fake).item() == pytest.approx(-2.0)
    assert wgan_generator_loss(fake).item() == pytest.approx(0.0)
    x = _smooth_images(3, 8)
    for norm, penalty in ((1.0, 0.0), (2.0, 1.0)):
        weight = torch.randn(3, 8, 8)
        weight = weight / weight.norm() * norm

        def critic(images: torch.Tensor, w: torch.Tensor = weight) -> torch.Tensor:
            return (images * w).flatten(1).sum(dim=1, keepdim=True)  # gradient norm = ||w||

        value = gradient_penalty(critic, x, x.flip(0), generator=torch.Generator().manual_seed(0))
        assert value.item() == pytest.approx(penalty, abs=1e-5)


# --------------------------------------------------------------------------- discriminators


@pytest.mark.parametrize("size", [32, 48, 128])
def test_vgg_discriminator_takes_any_crop_size_and_every_parameter_learns(size):
    disc = VGGStyleDiscriminator(num_feat=8)
    x = torch.rand(2, 3, size, size)
    scores = disc(x)
    assert scores.shape == (2, 1)
    scores.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())


def test_vgg_discriminator_keeps_basicsr_names_and_shapes():
    state = VGGStyleDiscriminator(num_feat=64).state_dict()
    assert state["conv0_0.weight"].shape == (64, 3, 3, 3)
    assert state["conv4_1.weight"].shape == (512, 512, 4, 4)
    assert state["linear1.weight"].shape == (100, 512 * 4 * 4)  # BasicSR's 128 px layout
    assert "bn0_0.weight" not in state and "bn0_1.weight" in state


def test_patch_discriminator_scores_every_patch_and_rejects_no_crop_size():
    disc = build_discriminator(DiscriminatorConfig(kind="patch", num_feat=8, norm="instance"))
    assert isinstance(disc, PatchDiscriminator)
    assert disc(torch.rand(2, 3, 64, 96)).shape == (2, 1, 6, 10)
    with pytest.raises(ValueError, match="choose batch, instance or none"):
        build_discriminator(DiscriminatorConfig(kind="vgg", norm="layer"))  # type: ignore[arg-type]


def test_discriminator_learns_to_tell_sharp_from_blurred():
    torch.manual_seed(0)
    disc = VGGStyleDiscriminator(num_feat=8, norm="none")
    optimiser = torch.optim.Adam(disc.parameters(), lr=1e-3)
    sharp = _smooth_images(4, 32)
    blurry = _box_blur(sharp, 7)
    first = None
    for _ in range(30):
        loss = ragan_discriminator_loss(disc(sharp), disc(blurry))
        first = loss.item() if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.5 * first
    assert disc(sharp).mean() > disc(blurry).mean()
