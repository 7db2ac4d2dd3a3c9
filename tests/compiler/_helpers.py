"""Helpers shared by the compiler tests."""

import torch
from torch import nn


def randomize_bn(model: nn.Module, seed: int = 0, negative: float = 0.2) -> nn.Module:
    """Random running stats and affine params for every BN (a fraction of gammas < 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.3)
                sign = torch.where(torch.rand(c, generator=g) < negative, -1.0, 1.0)
                m.weight.copy_(sign * (torch.rand(c, generator=g) + 0.7))
                m.bias.copy_(torch.randn(c, generator=g) * 0.3 + 0.2)
    return model
