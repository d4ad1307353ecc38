"""VGG19 feature extractor for the perceptual loss, with torchvision's parameter names.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015; used as a loss by SRGAN (Ledig et al. 2017) and, before the
activation, by ESRGAN (Wang et al. 2018).

We write the network ourselves (torchvision has no CPU build here) with the same module
indices as ``torchvision.models.vgg19().features``, so a state dict saved from
torchvision (``features.N.weight`` / ``features.N.bias``; ``classifier.*`` is ignored)
loads unchanged. The ImageNet weights are never downloaded: they come from a local
``.pth`` or ``.safetensors`` file, and a missing or mismatched file is an error, never a
silently random network.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

# torchvision's configuration "E": conv widths, "M" = 2x2 max-pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# torchvision's vgg19 was trained on inputs normalised with these ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> dict[str, int]:
    """Map 'conv5_4' / 'relu5_4' / 'pool5' to torchvision's ``features`` index."""
    names: dict[str, int] = {}
    index, block, conv = 0, 1, 1
    for item in VGG19_LAYOUT:
        if item == "M":
            names[f"pool{block}"] = index
            index, block, conv = index + 1, block + 1, 1
        else:
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            index, conv = index + 2, conv + 1
    return names


VGG19_LAYERS = _layer_names()


class VGG19Features(nn.Module):
    """The convolutional part of VGG19, truncated after the deepest requested layer.

    Args:
        layers: layer names to return, e.g. ``("conv5_4",)`` (ESRGAN: before the ReLU)
            or ``("relu3_3",)``; see ``VGG19_LAYERS``.
    """

    def __init__(self, layers: tuple[str, ...] = ("conv5_4",)) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if unknown or not layers:
            raise ValueError(f"unknown VGG19 layer(s) {unknown}; choose from {sorted(VGG19_LAYERS)}")
        self.layers = tuple(layers)
        last = max(VGG19_LAYERS[name] for name in layers)
        modules: list[nn.Module] = []
        in_ch = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [nn.Conv2d(in_ch, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                in_ch = int(item)
        self.features = nn.Sequential(*modules[: last + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of ``x``.

        Args:
            x: (N, 3, H, W) RGB float in [0, 1], any H and W.

        Returns:
            {layer name: (N, C_l, H / 2^p, W / 2^p)} for each requested layer.
        """
        wanted = {VGG19_LAYERS[name]: name for name in self.layers}
        out: dict[str, torch.Tensor] = {}
        h = (x - self.mean) / self.std
        for index, module in enumerate(self.features):
            h = module(h)
            if index in wanted:
                out[wanted[index]] = h
        return out


def load_vgg19_features(path: str | Path, *, layers: tuple[str, ...] = ("conv5_4",)) -> VGG19Features:
    """Build ``VGG19Features`` and load its weights from a local file.

    Args:
        path: torchvision ``vgg19`` state dict (``vgg19-dcbb9e9d.pth``) or a
            ``.safetensors`` file with the same names.
        layers: layers the loss uses; weights deeper than the last one are ignored.

    Returns:
        The network in eval mode with ``requires_grad`` off (a fixed loss network).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file lacks weights the requested layers need, or shapes differ.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG19 weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    model = VGG19Features(layers)
    expected = model.features.state_dict()
    missing = [f"features.{name}" for name in expected if f"features.{name}" not in state]
    if missing:
        raise ValueError(
            f"{path} is not a torchvision vgg19 state dict: missing {missing[:4]}"
            f"{' ...' if len(missing) > 4 else ''}"
        )
    own = {}
    for name, tensor in expected.items():
        loaded = state[f"features.{name}"]
        if loaded.shape != tensor.shape:
            raise ValueError(f"{path}: features.{name} has shape {tuple(loaded.shape)}, expected {tuple(tensor.shape)}")
        own[name] = loaded.float()
    model.features.load_state_dict(own)
    logger.info("loaded VGG19 features up to %s from %s", max(layers, key=VGG19_LAYERS.get), path)
    model.eval()
    model.requires_grad_(False)
    return model
