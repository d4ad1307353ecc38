"""The building blocks of ESRGAN's generator: residual dense blocks nested in a residual.

Wang et al., *ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks*, 2018,
section 3.1: batch norm removed, dense blocks inside a residual-in-residual structure,
residuals scaled by 0.2. The code follows BasicSR's ``basicsr/archs/rrdbnet_arch.py``
(XPixelGroup/BasicSR) so that parameter names (``rdb1.conv1.weight``...) and initial
weights match, and public ESRGAN / Real-ESRGAN checkpoints load unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# ESRGAN scales each residual branch by 0.2 before adding it back: with 23 blocks of
# 3 dense blocks each, unscaled residuals make a deep trunk without batch norm unstable.
RESIDUAL_SCALE = 0.2
# LeakyReLU slope used throughout ESRGAN / BasicSR.
LRELU_SLOPE = 0.2
# BasicSR multiplies the Kaiming-normal initial weights of the dense-block convolutions by
# 0.1 so that every residual branch starts close to zero and the trunk close to identity.
INIT_SCALE = 0.1


@torch.no_grad()
def default_init_weights(modules: list[nn.Module], scale: float = 1.0, bias_fill: float = 0.0) -> None:
    """Kaiming-normal (fan in) weights multiplied by ``scale``, constant biases, as BasicSR does.

    Args:
        modules: Modules whose ``nn.Conv2d`` / ``nn.Linear`` children are initialised.
        scale: Factor applied to the Kaiming-normal weights.
        bias_fill: Value written into every bias.
    """
    for module in modules:
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                m.weight.mul_(scale)
                if m.bias is not None:
                    m.bias.fill_(bias_fill)


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convolutions, each seeing the block input and every earlier output.

    Args:
        num_feat: Channels of the block's input and output.
        num_grow_ch: Channels each of the first four convolutions adds ("growth").
    """

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        # In place: the activations are the largest tensors of the trunk.
        self.lrelu = nn.LeakyReLU(negative_slope=LRELU_SLOPE, inplace=True)
        default_init_weights([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], INIT_SCALE)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, num_feat, H, W) features. Returns the same shape."""
        x1 = self.lrelu(self.conv1(x))  # (N, G, H, W)
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))  # (N, G, H, W)
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))  # (N, num_feat, H, W)
        return x5 * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks inside one scaled residual.

    Args:
        num_feat: Channels of the block's input and output.
        num_grow_ch: Growth channels of each dense block.
    """

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, num_feat, H, W) features. Returns the same shape."""
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * RESIDUAL_SCALE + x
