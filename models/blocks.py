"""Convolutional building blocks of SpikeVideoFormer / Meta-SpikeFormer.

All blocks take and return the real-valued *membrane-shortcut* residual stream of shape
``[T, B, C, H, W]``; every branch starts with a neuron, so convolutions only ever see
spikes, except the first (analog) downsampling layer. Module and attribute names follow
the public Spike-Driven Transformer V2 code, so its ``state_dict`` keys load unchanged:

==================  ===============================================================
``Downsample``      ``[encode_lif] -> encode_conv (bias) -> encode_bn``
``SepConv``         ``lif1 -> pwconv1 -> bn1 -> lif2 -> dwconv (7x7) -> pwconv2 -> bn2``
``ConvBlock``       ``x += Conv(x)`` (SepConv); ``x += bn2(conv2(lif2(bn1(conv1(lif1(x))))))``
                    (the *ChannelConv*, 3x3 convs C -> 4C -> C)
``ChannelMLP``      ``fc1_lif -> fc1_conv -> fc1_bn -> fc2_lif -> fc2_conv -> fc2_bn``
``RepConv``         ``body = [1x1, BN-and-pad, [dw3x3 valid, 1x1, BN]]``: exactly one 3x3 conv
==================  ===============================================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .neurons import NeuronConfig, make_neuron

__all__ = ["BNAndPadLayer", "RepConv", "SepConv", "ConvBlock", "ChannelMLP", "Downsample",
           "bn_affine"]


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference-time BN as ``y = a * x + b``: ``a = gamma / sqrt(var + eps)``, ``b = beta - mean * a``."""
    a = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        a = bn.weight * a
        b = bn.bias - bn.running_mean * a
    else:
        b = -bn.running_mean * a
    return a, b


def _tb(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame 2-D module to ``[T, B, C, H, W]`` by folding T into the batch."""
    t, b = x.shape[:2]
    y = fn(x.flatten(0, 1))
    return y.reshape(t, b, *y.shape[1:])


class BNAndPadLayer(nn.Module):
    """BatchNorm, then pad by ``pad_pixels`` with the BN's own output for a zero input.

    Padding with ``BN(0) = beta - mean * gamma / sqrt(var + eps)`` makes
    ``pad(BN(conv1x1(x)))`` equal ``BN(conv1x1(pad(x, 0)))``, which is what lets RepConv
    re-parameterise into one zero-padded 3x3 convolution.
    """

    def __init__(self, pad_pixels: int, num_features: int, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps, momentum)
        self.pad_pixels = pad_pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(x)
        p = self.pad_pixels
        if p > 0:
            # running statistics, as the published code does (also while training)
            pad = bn_affine(self.bn)[1].detach()
            y = F.pad(y, [p] * 4)
            pad = pad.view(1, -1, 1, 1)
            h, w = y.shape[-2:]
            border = torch.ones(1, 1, h, w, dtype=torch.bool, device=y.device)
            border[:, :, p:h - p, p:w - p] = False
            y = torch.where(border, pad.to(y.dtype).expand_as(y), y)
        return y


class RepConv(nn.Module):
    """Re-parameterisable 3x3 conv: 1x1 -> BN&pad -> depthwise 3x3 (valid) -> 1x1 -> BN."""

    def __init__(self, in_channel: int, out_channel: int):
        super().__init__()
        conv1x1 = nn.Conv2d(in_channel, in_channel, 1, 1, 0, bias=False)
        bn = BNAndPadLayer(pad_pixels=1, num_features=in_channel)
        conv3x3 = nn.Sequential(
            nn.Conv2d(in_channel, in_channel, 3, 1, 0, groups=in_channel, bias=False),
            nn.Conv2d(in_channel, out_channel, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channel),
        )
        self.body = nn.Sequential(conv1x1, bn, conv3x3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SepConv(nn.Module):
    """Inverted separable conv (MobileNetV2 style) with spiking activations."""

    def __init__(self, dim: int, neuron: NeuronConfig, expansion_ratio: int = 2,
                 kernel_size: int = 7, padding: int = 3):
        super().__init__()
        med = int(expansion_ratio * dim)
        self.lif1 = make_neuron(neuron)
        self.pwconv1 = nn.Conv2d(dim, med, kernel_size=1, stride=1, bias=False)
        self.bn1 = nn.BatchNorm2d(med)
        self.lif2 = make_neuron(neuron)
        self.dwconv = nn.Conv2d(med, med, kernel_size=kernel_size, padding=padding,
                                groups=med, bias=False)
        self.pwconv2 = nn.Conv2d(med, dim, kernel_size=1, stride=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lif1(x)
        x = _tb(lambda z: self.bn1(self.pwconv1(z)), x)
        x = self.lif2(x)
        return _tb(lambda z: self.bn2(self.pwconv2(self.dwconv(z))), x)


class ConvBlock(nn.Module):
    """CNN block (``MS_ConvBlock``): SepConv residual, then the ChannelConv residual."""

    def __init__(self, dim: int, neuron: NeuronConfig, mlp_ratio: int = 4):
        super().__init__()
        self.Conv = SepConv(dim, neuron)
        self.lif1 = make_neuron(neuron)
        self.conv1 = nn.Conv2d(dim, dim * mlp_ratio, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim * mlp_ratio)
        self.lif2 = make_neuron(neuron)
        self.conv2 = nn.Conv2d(dim * mlp_ratio, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def channel_conv(self, x: torch.Tensor) -> torch.Tensor:
        x = _tb(lambda z: self.bn1(self.conv1(z)), self.lif1(x))
        return _tb(lambda z: self.bn2(self.conv2(z)), self.lif2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.Conv(x)
        return x + self.channel_conv(x)


class ChannelMLP(nn.Module):
    """Spiking channel MLP (``MS_MLP``): two pointwise Conv1d (with bias) + BN, ratio 4."""

    def __init__(self, in_features: int, hidden_features: int, neuron: NeuronConfig):
        super().__init__()
        self.fc1_conv = nn.Conv1d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_lif = make_neuron(neuron)
        self.fc2_conv = nn.Conv1d(hidden_features, in_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm1d(in_features)
        self.fc2_lif = make_neuron(neuron)
        self.c_hidden = hidden_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, c, h, w = x.shape
        x = self.fc1_lif(x.flatten(3))
        x = _tb(lambda z: self.fc1_bn(self.fc1_conv(z)), x)
        x = self.fc2_lif(x)
        x = _tb(lambda z: self.fc2_bn(self.fc2_conv(z)), x)
        return x.reshape(t, b, c, h, w)


class Downsample(nn.Module):
    """``MS_DownSampling``: ``[encode_lif] -> encode_conv -> encode_bn``.

    The first layer (``first_layer=True``) has no neuron: it sees analog frames and is the
    only layer whose convolution multiplies.
    """

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: int, stride: int,
                 padding: int, first_layer: bool, neuron: NeuronConfig):
        super().__init__()
        self.encode_conv = nn.Conv2d(in_channels, embed_dims, kernel_size=kernel_size,
                                     stride=stride, padding=padding)
        self.encode_bn = nn.BatchNorm2d(embed_dims)
        self.first_layer = first_layer
        if not first_layer:
            self.encode_lif = make_neuron(neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.first_layer:
            x = self.encode_lif(x)
        return _tb(lambda z: self.encode_bn(self.encode_conv(z)), x)
