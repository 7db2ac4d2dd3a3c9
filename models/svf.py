"""SpikeVideoFormer (and Meta-SpikeFormer / SNN-ViT relatives) with three heads.

Backbone, with attribute names of the published ``Spiking_vit_MetaFormer`` so a V2 /
SpikeVideoFormer ``state_dict`` loads with ``strict=True``:

====================  =========================  ==========  ======
attribute             layer                      resolution  width
====================  =========================  ==========  ======
``downsample1_1``     7x7 s2 conv + BN (analog)  H/2         C
``ConvBlock1_1``      1 CNN block                H/2         C
``downsample1_2``     3x3 s2                     H/4         2C
``ConvBlock1_2``      1 CNN block                H/4         2C
``downsample2``       3x3 s2                     H/8         4C
``ConvBlock2_1/2_2``  2 CNN blocks               H/8         4C
``downsample3``       3x3 s2                     H/16        8C
``block3``            ``depths[0]`` transformer  H/16        8C
``downsample4``       3x3 **s1**                 H/16        W4
``block4``            ``depths[1]`` transformer  H/16        W4
====================  =========================  ==========  ======

Input normalisation (``cfg.input_mean/input_std``, published pipelines): the first conv
sees ``(x - mean) / std`` per channel for frames ``x`` in [0, 1] (non-persistent buffers:
no state_dict entries, as the published models take normalised frames).

Heads: ``classification`` -- spatial mean -> ``lif`` -> ``head`` (linear) -> mean over T;
with ``cfg.kd`` also ``head_kd`` (same shape, same spikes): eval output
``(head(z).mean(0) + head_kd(z).mean(0)) / 2``, training output the pair, as published;
``pose`` -- spatial mean -> ``lif`` -> ``head_shape`` (10), ``head_pose`` (joints x 6D),
``head_trans`` (3) per step; ``segmentation`` -- SDHA memory read (last step queries the
earlier ones) fused into the last stage, then a spiking FPN over the four stages with
I-LIF neurons, predicting per-pixel logits for the last frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import hamming_core, make_attention, _heads, _unheads
from .blocks import ChannelMLP, ConvBlock, Downsample, _tb
from .config import ModelConfig
from .errors import ConfigError
from .neurons import make_neuron

__all__ = ["TransformerBlock", "SpikeVideoFormer", "build_model", "MemoryRead", "SpikingFPN"]


class TransformerBlock(nn.Module):
    """``MS_Block``: ``x += attn(x)``; ``x += mlp(x)``."""

    def __init__(self, dim: int, cfg: ModelConfig):
        super().__init__()
        self.attn = make_attention(cfg.attention, dim, cfg.num_heads, cfg.neuron, cfg.max_T,
                                   cfg.attn_threshold)
        self.mlp = ChannelMLP(dim, dim * cfg.mlp_ratio, cfg.neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class MemoryRead(nn.Module):
    """SDHA cross-attention memory read for segmentation.

    Query: the last step's stream; keys/values: the earlier ``T-1`` steps (all their
    tokens jointly). ``y = (2Q_last - 1)((2K_mem - 1)^T V_mem) / (2C)`` -> BN -> neuron ->
    1x1 conv + BN, added to the last step's stream (a membrane shortcut).
    """

    def __init__(self, dim: int, num_heads: int, neuron):
        super().__init__()
        self.num_heads = num_heads
        self.dim = dim
        self.q_lif = make_neuron(neuron)
        self.kv_lif = make_neuron(neuron)
        self.q_conv = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.k_conv = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.v_conv = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.q_out = make_neuron(neuron)
        self.k_out = make_neuron(neuron)
        self.v_out = make_neuron(neuron)
        self.attn_bn = nn.BatchNorm1d(dim)
        self.attn_lif = make_neuron(neuron, v_threshold=0.5)
        self.proj = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.last_ops = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[T, B, C, H, W]`` -> fused last-step features ``[1, B, C, H, W]``."""
        t, b, c, h, w = x.shape
        if t < 2:
            raise ConfigError("the segmentation memory read needs T >= 2 (earlier steps are the memory)")
        s = self.q_lif(x)
        q = self.q_out(_tb(self.q_conv, s[-1:])).flatten(3)  # [1, B, C, N]
        m = s[:-1]
        k = self.k_out(_tb(self.k_conv, m)).flatten(3)
        v = self.v_out(_tb(self.v_conv, m)).flatten(3)
        n = h * w
        qh = _heads(q, self.num_heads)[0]  # [B, h, N, d]
        kh = _heads(k, self.num_heads).permute(1, 2, 0, 3, 4).reshape(b, self.num_heads, (t - 1) * n, -1)
        vh = _heads(v, self.num_heads).permute(1, 2, 0, 3, 4).reshape(b, self.num_heads, (t - 1) * n, -1)
        y, self.last_ops = hamming_core(qh, kh, vh)
        y = _unheads(y.unsqueeze(0)) / (2 * self.dim)  # [1, B, C, N]
        y = self.attn_lif(_tb(self.attn_bn, y)).reshape(1, b, c, h, w)
        return x[-1:] + _tb(self.proj, y)


class SpikingFPN(nn.Module):
    """Top-down spiking FPN over the stage outputs, I-LIF neurons, logits at H/4."""

    def __init__(self, in_dims: tuple[int, ...], width: int, num_classes: int, neuron):
        super().__init__()
        self.lateral_lif = nn.ModuleList([make_neuron(neuron) for _ in in_dims])
        self.lateral = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(d, width, 1, bias=False), nn.BatchNorm2d(width)) for d in in_dims])
        self.out_lif = make_neuron(neuron)
        self.out_conv = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(width))
        self.cls_lif = make_neuron(neuron)
        self.cls = nn.Conv2d(width, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        y = None
        for f, lif, lat in reversed(list(zip(feats, self.lateral_lif, self.lateral))):
            z = _tb(lat, lif(f))
            if y is not None:
                up = _tb(lambda u: F.interpolate(u, size=z.shape[-2:], mode="nearest"), y)
                z = z + up
            y = z
        y = y + _tb(self.out_conv, self.out_lif(y))
        return _tb(self.cls, self.cls_lif(y))


class SpikeVideoFormer(nn.Module):
    """The spike-driven video transformer; input ``[T, B, C, H, W]`` (or ``[B, C, H, W]``,
    repeated over ``cfg.T`` steps)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        e0, e1, e2, e3 = cfg.embed_dim
        n = cfg.neuron
        r = cfg.mlp_ratio
        self.downsample1_1 = Downsample(cfg.in_channels, e0 // 2, 7, 2, 3, True, n)
        self.ConvBlock1_1 = nn.ModuleList([ConvBlock(e0 // 2, n, r)])
        self.downsample1_2 = Downsample(e0 // 2, e0, 3, 2, 1, False, n)
        self.ConvBlock1_2 = nn.ModuleList([ConvBlock(e0, n, r)])
        self.downsample2 = Downsample(e0, e1, 3, 2, 1, False, n)
        self.ConvBlock2_1 = nn.ModuleList([ConvBlock(e1, n, r)])
        self.ConvBlock2_2 = nn.ModuleList([ConvBlock(e1, n, r)])
        self.downsample3 = Downsample(e1, e2, 3, 2, 1, False, n)
        self.block3 = nn.ModuleList([TransformerBlock(e2, cfg) for _ in range(cfg.depths[0])])
        self.downsample4 = Downsample(e2, e3, 3, 1, 1, False, n)
        self.block4 = nn.ModuleList([TransformerBlock(e3, cfg) for _ in range(cfg.depths[1])])
        if cfg.input_mean is not None:
            view = (1, 1, cfg.in_channels, 1, 1)
            self.register_buffer("input_mean", torch.tensor(cfg.input_mean).view(view), persistent=False)
            self.register_buffer("input_std", torch.tensor(cfg.input_std).view(view), persistent=False)
        if cfg.head == "classification":
            self.lif = make_neuron(n)
            self.head = nn.Linear(e3, cfg.num_classes)
            if cfg.kd:
                self.head_kd = nn.Linear(e3, cfg.num_classes)
        elif cfg.head == "pose":
            self.lif = make_neuron(n)
            self.head_shape = nn.Linear(e3, 10)
            self.head_pose = nn.Linear(e3, cfg.pose_joints * 6)
            self.head_trans = nn.Linear(e3, 3)
        else:
            seg_neuron = n.replace(reset="soft", levels=cfg.seg_levels) if cfg.seg_levels > 1 else n
            self.memory = MemoryRead(e3, cfg.num_heads, seg_neuron)
            self.fpn = SpikingFPN((e0, e1, e2, e3), e0, cfg.num_classes, seg_neuron)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.unsqueeze(0).repeat(self.cfg.T, 1, 1, 1, 1)
        if x.dim() != 5:
            raise ConfigError(f"input must be [T, B, C, H, W] (or [B, C, H, W]), got shape {tuple(x.shape)}")
        if x.shape[2] != self.cfg.in_channels:
            raise ConfigError(f"input has {x.shape[2]} channels, the model expects {self.cfg.in_channels}")
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ConfigError(f"frame size {tuple(x.shape[-2:])} must be a multiple of 16")
        return x

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The residual stream after each stage: ``[s1 (H/4, 2C), s2, s3, s4]``."""
        x = self._check_input(x)
        if self.cfg.input_mean is not None:
            x = (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)
        x = self.downsample1_1(x)
        for blk in self.ConvBlock1_1:
            x = blk(x)
        x = self.downsample1_2(x)
        for blk in self.ConvBlock1_2:
            x = blk(x)
        s1 = x
        x = self.downsample2(x)
        for blk in (*self.ConvBlock2_1, *self.ConvBlock2_2):
            x = blk(x)
        s2 = x
        x = self.downsample3(x)
        for blk in self.block3:
            x = blk(x)
        s3 = x
        x = self.downsample4(x)
        for blk in self.block4:
            x = blk(x)
        return [s1, s2, s3, x]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1]

    def forward(self, x: torch.Tensor):
        head = self.cfg.head
        if head == "segmentation":
            s1, s2, s3, s4 = self.forward_stages(x)
            s4 = self.memory(s4)
            feats = [s1[-1:], s2[-1:], s3[-1:], s4]
            logits = self.fpn(feats)[0]  # [B, classes, H/4, W/4]
            return F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)
        x = self.forward_features(x).flatten(3).mean(3)  # [T, B, C]
        x = self.lif(x)
        if head == "classification":
            if self.cfg.kd:
                y, y_kd = self.head(x).mean(0), self.head_kd(x).mean(0)
                return (y, y_kd) if self.training else (y + y_kd) / 2
            return self.head(x).mean(0)
        return {"shape": self.head_shape(x), "pose": self.head_pose(x), "trans": self.head_trans(x)}


def build_model(cfg: ModelConfig | str, **overrides) -> SpikeVideoFormer:
    """Build a model from a :class:`ModelConfig` or a zoo name (see ``config.ZOO``)."""
    from .config import get_config

    if isinstance(cfg, str):
        cfg = get_config(cfg, **overrides)
    elif overrides:
        cfg = cfg.replace(**overrides)
    return SpikeVideoFormer(cfg)
