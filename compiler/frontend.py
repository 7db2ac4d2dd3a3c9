"""Frontend: a torch :class:`~svf_deploy.models.svf.SpikeVideoFormer` -> a ``float`` IR graph.

The translation is a walk over the *known* module structure (not a trace): neurons and
attentions are leaves, every other module must be exactly one of the types listed
below, and anything else raises :class:`UnsupportedModelError` naming the module path,
its type and what is supported. Node names are torch module paths, so every IR node
maps back to a module with ``model.get_submodule(name)``, except the few nodes that are
not modules: ``input``, the residual adds ``<block>.add1`` / ``<block>.add2``, the head's
``pool`` and ``time_mean``.

==================  ==================================================================
torch               IR (``float`` stage)
==================  ==================================================================
``Downsample``      ``[LIF encode_lif] -> Conv encode_conv (bias) -> BatchNorm encode_bn``
``ConvBlock``       ``Conv.lif1 -> Conv.pwconv1 -> Conv.bn1 -> Conv.lif2 -> Conv.dwconv``
                    (depthwise 7x7, float output) ``-> Conv.pwconv2 -> Conv.bn2 -> add1``;
                    ``lif1 -> conv1 -> bn1 -> lif2 -> conv2 -> bn2 -> add2``
``TransformerBlock``  ``attn`` (below) ``-> add1``; ``mlp.fc1_lif -> mlp.fc1_conv -> mlp.fc1_bn
                    -> mlp.fc2_lif -> mlp.fc2_conv -> mlp.fc2_bn -> add2`` (Conv1d k=1 becomes
                    a 1x1 Conv with weight ``[O, I, 1, 1]``)
SDHA / SDSA         ``head_lif``; ``q_conv`` (RepConv) ``-> q_conv.1`` (BatchNorm) ``-> q_lif``,
                    same for k, v; ``Attention attn`` (``factor = 1/(2C)`` for SDHA with
                    ``C`` the full width, 0.125 for SDSA; tokens ``joint`` for SDHA joint
                    (``3D_ham``) and SDSA joint (``3D_dot``), ``spatial`` per frame
                    (``2D``)); ``attn_bn`` (SDHA only); ``attn_lif`` (its own threshold:
                    1.0 after Hamming, 0.5 after dot product); ``proj_conv -> proj_conv.1``
hierarchical SDHA   ``attn.spatial`` (an SDHA, tokens ``spatial``) whose proj output feeds
                    ``attn.temporal`` (an SDHA, tokens ``temporal``: the T steps of each
                    location); the temporal proj output is the branch
factorized SDHA     shared ``q_lif``; ``Slice`` nodes ``<lif>.s`` / ``<lif>.t`` take channel
                    halves; ``Attention attn.spatial`` (q, k, v, spatial) and
                    ``attn.temporal`` (q, kt, vt, temporal), half the heads each; ``Concat
                    attn`` -> ``attn_bn`` -> ``attn_lif`` -> ``proj_conv``
SSSA                as SDHA, but the core is ``SSSA attn`` with ``gain[t] =
                    saccade_gain[t] / (d*d*N)`` and the saccade neuron ``sal_lif``
classification      ``GlobalPool pool -> LIF lif -> Linear head -> TimeMean time_mean``; with
                    the distillation head (``kd``) the one ``Linear head`` has
                    ``W = (W_head + W_head_kd) / 2``, ``b = (b_head + b_head_kd) / 2``: the
                    eval output ``(head(z).mean_t + head_kd(z).mean_t) / 2`` is linear in
                    ``z``, so this is exact in real arithmetic (float64 fold; the float32
                    model differs from it by rounding only, ~1e-7 relative)
pose                ``GlobalPool pool -> LIF lif -> Linear head_shape / head_pose /
                    head_trans`` (three per-step outputs)
==================  ==================================================================

The RepConv node of ``q_conv = Sequential(RepConv, BatchNorm2d)`` takes the Sequential's
path (``...attn.q_conv``) and its BN the BN's own path (``...attn.q_conv.1``): after
folding, the single Conv named ``...q_conv`` is exactly that Sequential.

Input normalisation (``cfg.input_mean/input_std``): the first conv ``downsample1_1.encode_conv``
sees ``(x - mean) / std``; it is folded exactly into that analog conv as ``W' = W / std``
(per input channel) and a bias *map* ``b[o] - conv(W', zero-pad(mean image))[o, p]``
(see ``ir.Conv``): a zero pad of the normalised frame is the raw value ``mean``, which the
map accounts for position by position, so the graph input stays the raw frame in [0, 1].

BatchNorms are translated with their *running* statistics, i.e. inference semantics,
as ``y = a x + b`` with ``a = gamma / sqrt(var + eps)``, ``b = beta - mean * a``
(computed in float64). Not supported (loud errors): the segmentation head, hard reset to ``v_reset != 0``, BatchNorms
without running statistics, convolutions with dilation, non-zero padding modes or
non-square strides/paddings, and any module of an unexpected type.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..models import attention as attn_mod
from ..models import blocks, neurons, svf
from ..models.errors import MissingStatisticsError, NotSpikingError, UnsupportedModelError
from . import ir

__all__ = ["from_torch", "SUPPORTED"]

#: what the frontend translates, for error messages
SUPPORTED = ("SpikeVideoFormer with classification or pose head; CNN blocks (SepConv + "
             "ChannelConv), transformer blocks with SDHA (joint, spatial, hierarchical or "
             "factorized), SDSA or "
             "SSSA attention and ChannelMLP; LIF / I-LIF neurons with v_reset = 0")


def _unsupported(path: str, module: object, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"module {path or '<model>'!r} of type {type(module).__name__}: {why}. "
        f"Supported: {SUPPORTED}")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy().copy()


class _Builder:
    """Accumulates nodes in topological order; each ``emit`` returns the node's name."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.nodes: list[ir.Node] = []
        self.neuron_levels: dict[str, int] = {}

    def emit(self, node: ir.Node) -> str:
        self.nodes.append(node)
        return node.name

    # --- checks
    @staticmethod
    def expect(path: str, module: object, types: tuple[type, ...]) -> None:
        if type(module) not in types:
            names = " or ".join(t.__name__ for t in types)
            raise _unsupported(path, module, f"expected {names} here")

    @staticmethod
    def expect_children(path: str, module: nn.Module, names: set[str]) -> None:
        extra = sorted(set(dict(module.named_children())) - names)
        if extra:
            sub = getattr(module, extra[0])
            raise _unsupported(f"{path}.{extra[0]}" if path else extra[0], sub,
                               f"unexpected child of {type(module).__name__} (the frontend "
                               "translates the known structure only)")

    # --- leaves
    def neuron(self, path: str, m: nn.Module, x: str) -> str:
        self.expect(path, m, (neurons.LIF, neurons.ILIF))
        c: neurons.NeuronConfig = m.cfg
        if c.reset == "hard" and c.v_reset != 0.0:
            raise _unsupported(path, m, f"hard reset to v_reset={c.v_reset!r} is not supported "
                                        "(only v_reset = 0)")
        self.neuron_levels[path] = c.levels
        return self.emit(ir.LIF(path, (x,), tau=float(c.tau), decay_input=bool(c.decay_input),
                                v_threshold=float(c.v_threshold), reset=c.reset,
                                levels=int(c.levels)))

    def bn(self, path: str, m: nn.Module, x: str) -> str:
        a, b = self.bn_affine(path, m)
        return self.emit(ir.BatchNorm(path, (x,), a=a, b=b))

    def bn_affine(self, path: str, m: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """Inference BN as ``(a, b)`` in float64: ``a = gamma / sqrt(var + eps)``, ``b = beta - mean a``."""
        self.expect(path, m, (nn.BatchNorm1d, nn.BatchNorm2d))
        if not m.track_running_stats or m.running_mean is None or m.running_var is None:
            raise MissingStatisticsError(
                f"BatchNorm {path} has no running statistics (model saved in training mode "
                "without track_running_stats?); cannot fold")
        a = 1.0 / np.sqrt(_np(m.running_var) + float(m.eps))
        if m.affine:
            a = _np(m.weight) * a
            b = _np(m.bias) - _np(m.running_mean) * a
        else:
            b = -_np(m.running_mean) * a
        return a, b

    def conv(self, path: str, m: nn.Module, x: str, *, name: str | None = None) -> str:
        self.expect(path, m, (nn.Conv2d, nn.Conv1d))
        pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,)  # noqa: E731
        if isinstance(m.padding, str):
            raise _unsupported(path, m, f"padding={m.padding!r} is not supported (use integers)")
        stride, padding, dil = pair(m.stride), pair(m.padding), pair(m.dilation)
        if m.padding_mode != "zeros" or any(d != 1 for d in dil):
            raise _unsupported(path, m, "only zero padding and dilation 1 are supported")
        if len(set(stride)) != 1 or len(set(padding)) != 1:
            raise _unsupported(path, m, "only equal strides/paddings on both axes are supported")
        w = _np(m.weight)
        if isinstance(m, nn.Conv1d):
            if w.shape[2] != 1 or stride[0] != 1 or padding[0] != 0:
                raise _unsupported(path, m, "only pointwise (kernel 1, stride 1) Conv1d is supported")
            w = w[:, :, :, None]
        bias = None if m.bias is None else _np(m.bias)
        return self.emit(ir.Conv(name or path, (x,), weight=w, bias=bias, stride=int(stride[0]),
                                 padding=int(padding[0]), groups=int(m.groups)))

    def repconv(self, path: str, seq: nn.Module, x: str) -> str:
        """``Sequential(RepConv, BatchNorm2d)`` -> ``RepConv <path>`` + ``BatchNorm <path>.1``."""
        self.expect(path, seq, (nn.Sequential,))
        if len(seq) != 2:
            raise _unsupported(path, seq, "expected Sequential(RepConv, BatchNorm2d)")
        rep = seq[0]
        self.expect(f"{path}.0", rep, (blocks.RepConv,))
        body = rep.body
        p = f"{path}.0.body"
        self.expect(p, body, (nn.Sequential,))
        if len(body) != 3:
            raise _unsupported(p, body, "expected [1x1 conv, BNAndPadLayer, [dw3x3, 1x1, BN]]")
        c1, bnpad, tail = body
        self.expect(f"{p}.0", c1, (nn.Conv2d,))
        self.expect(f"{p}.1", bnpad, (blocks.BNAndPadLayer,))
        self.expect(f"{p}.2", tail, (nn.Sequential,))
        if len(tail) != 3:
            raise _unsupported(f"{p}.2", tail, "expected [dw3x3, 1x1, BatchNorm2d]")
        dw, c2, bn2 = tail
        self.expect(f"{p}.2.0", dw, (nn.Conv2d,))
        self.expect(f"{p}.2.1", c2, (nn.Conv2d,))
        cin = c1.in_channels
        ok = (c1.kernel_size == (1, 1) and c1.out_channels == cin and c1.groups == 1
              and c1.bias is None and tuple(c1.stride) == (1, 1) and tuple(c1.padding) == (0, 0)
              and bnpad.pad_pixels == 1
              and dw.kernel_size == (3, 3) and dw.groups == cin and dw.in_channels == cin
              and dw.out_channels == cin and dw.bias is None and tuple(dw.padding) == (0, 0)
              and tuple(dw.stride) == (1, 1) and tuple(dw.dilation) == (1, 1)
              and c2.kernel_size == (1, 1) and c2.in_channels == cin and c2.groups == 1
              and c2.bias is None and tuple(c2.stride) == (1, 1) and tuple(c2.padding) == (0, 0))
        if not ok:
            raise _unsupported(f"{path}.0", rep, "RepConv layers differ from 1x1 -> BN&pad(1) -> "
                                                 "dw3x3 valid -> 1x1 -> BN (no biases)")
        a1n = self.bn_affine(f"{p}.1.bn", bnpad.bn)
        a2n = self.bn_affine(f"{p}.2.2", bn2)
        name = self.emit(ir.RepConv(path, (x,), w1=_np(c1.weight), a1=a1n[0], b1=a1n[1],
                                    wdw=_np(dw.weight), w2=_np(c2.weight), a2=a2n[0], b2=a2n[1]))
        return self.bn(f"{path}.1", seq[1], name)

    # --- blocks
    def downsample(self, path: str, m: nn.Module, x: str, norm=None) -> str:
        self.expect(path, m, (blocks.Downsample,))
        kids = {"encode_conv", "encode_bn"} | (set() if m.first_layer else {"encode_lif"})
        self.expect_children(path, m, kids)
        if not m.first_layer:
            x = self.neuron(f"{path}.encode_lif", m.encode_lif, x)
        if norm is not None:
            x = self.normalized_first_conv(f"{path}.encode_conv", m.encode_conv, x, *norm)
        else:
            x = self.conv(f"{path}.encode_conv", m.encode_conv, x)
        return self.bn(f"{path}.encode_bn", m.encode_bn, x)

    def conv_block(self, path: str, m: nn.Module, x: str) -> str:
        self.expect(path, m, (blocks.ConvBlock,))
        self.expect_children(path, m, {"Conv", "lif1", "conv1", "bn1", "lif2", "conv2", "bn2"})
        sep, sp = m.Conv, f"{path}.Conv"
        self.expect(sp, sep, (blocks.SepConv,))
        self.expect_children(sp, sep, {"lif1", "pwconv1", "bn1", "lif2", "dwconv", "pwconv2", "bn2"})
        if sep.dwconv.groups != sep.dwconv.in_channels or sep.dwconv.bias is not None:
            raise _unsupported(f"{sp}.dwconv", sep.dwconv, "expected a depthwise conv without bias")
        y = self.neuron(f"{sp}.lif1", sep.lif1, x)
        y = self.conv(f"{sp}.pwconv1", sep.pwconv1, y)
        y = self.bn(f"{sp}.bn1", sep.bn1, y)
        y = self.neuron(f"{sp}.lif2", sep.lif2, y)
        y = self.conv(f"{sp}.dwconv", sep.dwconv, y)
        y = self.conv(f"{sp}.pwconv2", sep.pwconv2, y)
        y = self.bn(f"{sp}.bn2", sep.bn2, y)
        x = self.emit(ir.Add(f"{path}.add1", (x, y)))
        y = self.neuron(f"{path}.lif1", m.lif1, x)
        y = self.conv(f"{path}.conv1", m.conv1, y)
        y = self.bn(f"{path}.bn1", m.bn1, y)
        y = self.neuron(f"{path}.lif2", m.lif2, y)
        y = self.conv(f"{path}.conv2", m.conv2, y)
        y = self.bn(f"{path}.bn2", m.bn2, y)
        return self.emit(ir.Add(f"{path}.add2", (x, y)))

    def attention(self, path: str, m: nn.Module, x: str, frame_hw: tuple[int, int],
                  tokens: str | None = None) -> str:
        if type(m) is attn_mod.HierarchicalSDHA:
            return self.hierarchical(path, m, x, frame_hw)
        if type(m) is attn_mod.FactorizedSDHA:
            return self.factorized(path, m, x)
        kinds = (attn_mod.SDHA, attn_mod.SDSA, attn_mod.SSSA)
        if type(m) not in kinds:
            raise _unsupported(path, m, "this attention variant has no exact integer translation "
                                        "(supported: SDHA joint/spatial, SDSA, SSSA)")
        kids = {"head_lif", "q_conv", "k_conv", "v_conv", "q_lif", "k_lif", "v_lif", "attn_lif",
                "proj_conv"}
        if m.has_attn_bn:
            kids.add("attn_bn")
        if type(m) is attn_mod.SSSA:
            kids.add("sal_lif")
        self.expect_children(path, m, kids)
        h = self.neuron(f"{path}.head_lif", m.head_lif, x)
        qkv = []
        for z in "qkv":
            y = self.repconv(f"{path}.{z}_conv", getattr(m, f"{z}_conv"), h)
            lif = f"{path}.{z}_lif"
            qkv.append(self.neuron(lif, getattr(m, f"{z}_lif"), y))
            if self.neuron_levels[lif] != 1:
                raise _unsupported(lif, getattr(m, f"{z}_lif"), "attention needs binary Q, K, V "
                                                                "(levels = 1)")
        if type(m) is attn_mod.SSSA:
            sal = m.sal_lif
            self.expect(f"{path}.sal_lif", sal, (neurons.LIF,))
            c = sal.cfg
            if c.reset == "hard" and c.v_reset != 0.0:
                raise _unsupported(f"{path}.sal_lif", sal, "v_reset must be 0")
            d = m.dim // m.num_heads
            n = frame_hw[0] * frame_hw[1]
            gain = _np(m.saccade_gain) / float(d * d * n)
            y = self.emit(ir.SSSA(path, tuple(qkv), heads=int(m.num_heads), gain=gain,
                                  sal_tau=float(c.tau), sal_decay_input=bool(c.decay_input),
                                  sal_threshold=float(c.v_threshold), sal_reset=c.reset))
        elif type(m) is attn_mod.SDHA:
            y = self.emit(ir.Attention(path, tuple(qkv), kind="sdha", heads=int(m.num_heads),
                                       tokens=tokens or m.mode, factor=1.0 / (2 * m.dim)))
        else:  # SDSA: per frame (2D) or joint T*H*W tokens (3D_dot)
            y = self.emit(ir.Attention(path, tuple(qkv), kind="sdsa", heads=int(m.num_heads),
                                       tokens=m.mode, factor=float(m.scale)))
        if m.has_attn_bn:
            y = self.bn(f"{path}.attn_bn", m.attn_bn, y)
        y = self.neuron(f"{path}.attn_lif", m.attn_lif, y)
        return self.repconv(f"{path}.proj_conv", m.proj_conv, y)

    def hierarchical(self, path: str, m: nn.Module, x: str, frame_hw: tuple[int, int]) -> str:
        """``HierarchicalSDHA``: a spatial SDHA (per frame), then an SDHA whose tokens are the
        ``T`` steps of each location, reading the spatial branch's output."""
        self.expect_children(path, m, {"spatial", "temporal"})
        for part in ("spatial", "temporal"):
            self.expect(f"{path}.{part}", getattr(m, part), (attn_mod.SDHA,))
        y = self.attention(f"{path}.spatial", m.spatial, x, frame_hw, tokens="spatial")
        return self.attention(f"{path}.temporal", m.temporal, y, frame_hw, tokens="temporal")

    def factorized(self, path: str, m: nn.Module, x: str) -> str:
        """``FactorizedSDHA``: shared Q; channels ``[0, C/2)`` attend per frame with K, V,
        channels ``[C/2, C)`` over the ``T`` steps of each location with Kt, Vt (``Slice``
        nodes), each with half the heads; ``Concat`` -> attn_bn -> attn_lif -> proj."""
        self.expect_children(path, m, {"head_lif", "q_conv", "k_conv", "v_conv", "q_lif", "k_lif",
                                       "v_lif", "kt_conv", "vt_conv", "kt_lif", "vt_lif",
                                       "attn_bn", "attn_lif", "proj_conv"})
        h = self.neuron(f"{path}.head_lif", m.head_lif, x)
        s = {}
        for z in ("q", "k", "v", "kt", "vt"):
            y = self.repconv(f"{path}.{z}_conv", getattr(m, f"{z}_conv"), h)
            lif = f"{path}.{z}_lif"
            s[z] = self.neuron(lif, getattr(m, f"{z}_lif"), y)
            if self.neuron_levels[lif] != 1:
                raise _unsupported(lif, getattr(m, f"{z}_lif"), "attention needs binary Q, K, V "
                                                                "(levels = 1)")
        c, half, hh = m.dim, m.dim // 2, m.num_heads // 2

        def part(z: str, lo: int, hi: int) -> str:
            return self.emit(ir.Slice(f"{s[z]}.{'s' if lo == 0 else 't'}", (s[z],), start=lo, stop=hi))
        f = 1.0 / (2 * c)
        ys = self.emit(ir.Attention(f"{path}.spatial", (part("q", 0, half), part("k", 0, half),
                                                          part("v", 0, half)),
                                    kind="sdha", heads=hh, tokens="spatial", factor=f))
        yt = self.emit(ir.Attention(f"{path}.temporal", (part("q", half, c), part("kt", half, c),
                                                           part("vt", half, c)),
                                    kind="sdha", heads=hh, tokens="temporal", factor=f))
        y = self.emit(ir.Concat(path, (ys, yt)))
        y = self.bn(f"{path}.attn_bn", m.attn_bn, y)
        y = self.neuron(f"{path}.attn_lif", m.attn_lif, y)
        return self.repconv(f"{path}.proj_conv", m.proj_conv, y)

    def conv_bn(self, path: str, seq: nn.Module, x: str) -> str:
        """``Sequential(Conv2d, BatchNorm2d)`` -> ``Conv <path>.0`` + ``BatchNorm <path>.1``."""
        self.expect(path, seq, (nn.Sequential,))
        if len(seq) != 2:
            raise _unsupported(path, seq, "expected Sequential(Conv2d, BatchNorm2d)")
        return self.bn(f"{path}.1", seq[1], self.conv(f"{path}.0", seq[0], x))

    def segmentation(self, model: nn.Module, stages: list[str], divs: tuple[int, ...]) -> str:
        """Memory read (the last step's query attends to all tokens of the earlier steps)
        fused into the last stage, then the spiking FPN on the last step of each stage;
        returns the logits node (``fpn.cls``, at ``H/4``, one step)."""
        mem, fpn = model.memory, model.fpn
        self.expect("memory", mem, (svf.MemoryRead,))
        self.expect_children("memory", mem, {"q_lif", "kv_lif", "q_conv", "k_conv", "v_conv",
                                             "q_out", "k_out", "v_out", "attn_bn", "attn_lif", "proj"})
        s = self.neuron("memory.q_lif", mem.q_lif, stages[3])
        last = self.emit(ir.TimeSlice("memory.q_lif.last", (s,), start=-1, stop=None))
        past = self.emit(ir.TimeSlice("memory.q_lif.past", (s,), start=0, stop=-1))
        q = self.neuron("memory.q_out", mem.q_out, self.conv_bn("memory.q_conv", mem.q_conv, last))
        k = self.neuron("memory.k_out", mem.k_out, self.conv_bn("memory.k_conv", mem.k_conv, past))
        v = self.neuron("memory.v_out", mem.v_out, self.conv_bn("memory.v_conv", mem.v_conv, past))
        y = self.emit(ir.Attention("memory.attn", (q, k, v), kind="sdha", heads=int(mem.num_heads),
                                   tokens="joint", factor=1.0 / (2 * mem.dim)))
        y = self.bn("memory.attn_bn", mem.attn_bn, y)
        y = self.neuron("memory.attn_lif", mem.attn_lif, y)
        y = self.conv_bn("memory.proj", mem.proj, y)
        x_last = self.emit(ir.TimeSlice("memory.last", (stages[3],), start=-1, stop=None))
        feats = [self.emit(ir.TimeSlice(f"fpn.feat{i}", (stages[i],), start=-1, stop=None))
                 for i in range(3)] + [self.emit(ir.Add("memory.add", (x_last, y)))]
        self.expect("fpn", fpn, (svf.SpikingFPN,))
        self.expect_children("fpn", fpn, {"lateral_lif", "lateral", "out_lif", "out_conv",
                                          "cls_lif", "cls"})
        y = None
        for i in reversed(range(len(feats))):
            z = self.neuron(f"fpn.lateral_lif.{i}", fpn.lateral_lif[i], feats[i])
            z = self.conv_bn(f"fpn.lateral.{i}", fpn.lateral[i], z)
            if y is not None:
                f = divs[i + 1] // divs[i]  # nearest interpolation to an exact multiple
                up = y if f == 1 else self.emit(ir.Upsample(f"fpn.up.{i}", (y,), factor=f))
                z = self.emit(ir.Add(f"fpn.add.{i}", (z, up)))
            y = z
        o = self.conv_bn("fpn.out_conv", fpn.out_conv, self.neuron("fpn.out_lif", fpn.out_lif, y))
        y = self.emit(ir.Add("fpn.add_out", (y, o)))
        return self.conv("fpn.cls", fpn.cls, self.neuron("fpn.cls_lif", fpn.cls_lif, y))

    def mlp(self, path: str, m: nn.Module, x: str) -> str:
        self.expect(path, m, (blocks.ChannelMLP,))
        self.expect_children(path, m, {"fc1_conv", "fc1_bn", "fc1_lif", "fc2_conv", "fc2_bn", "fc2_lif"})
        y = self.neuron(f"{path}.fc1_lif", m.fc1_lif, x)
        y = self.conv(f"{path}.fc1_conv", m.fc1_conv, y)
        y = self.bn(f"{path}.fc1_bn", m.fc1_bn, y)
        y = self.neuron(f"{path}.fc2_lif", m.fc2_lif, y)
        y = self.conv(f"{path}.fc2_conv", m.fc2_conv, y)
        return self.bn(f"{path}.fc2_bn", m.fc2_bn, y)

    def transformer_block(self, path: str, m: nn.Module, x: str, frame_hw: tuple[int, int]) -> str:
        self.expect(path, m, (svf.TransformerBlock,))
        self.expect_children(path, m, {"attn", "mlp"})
        y = self.attention(f"{path}.attn", m.attn, x, frame_hw)
        x = self.emit(ir.Add(f"{path}.add1", (x, y)))
        y = self.mlp(f"{path}.mlp", m.mlp, x)
        return self.emit(ir.Add(f"{path}.add2", (x, y)))

    def linear(self, path: str, m: nn.Module, x: str, kd: nn.Module | None = None) -> str:
        """A Linear; with ``kd`` (the distillation head) the exact average of the two."""
        self.expect(path, m, (nn.Linear,))
        w = _np(m.weight)
        b = np.zeros(w.shape[0]) if m.bias is None else _np(m.bias)
        if kd is not None:
            self.expect("head_kd", kd, (nn.Linear,))
            if tuple(kd.weight.shape) != tuple(m.weight.shape):
                raise _unsupported("head_kd", kd, "head_kd must have the shape of head")
            w = (w + _np(kd.weight)) / 2
            b = (b + (0.0 if kd.bias is None else _np(kd.bias))) / 2
        elif m.bias is None:
            b = None
        return self.emit(ir.Linear(path, (x,), weight=w, bias=b))

    def normalized_first_conv(self, path: str, m: nn.Module, x: str, mean: np.ndarray,
                              std: np.ndarray, in_hw: tuple[int, int]) -> str:
        """The analog first conv reading ``(x - mean) / std``, folded exactly (module docstring)."""
        self.expect(path, m, (nn.Conv2d,))
        self.conv(path, m, x)  # validates the conv; replaced below by its folded form
        conv = self.nodes.pop()
        w = conv.weight / std[None, :, None, None]
        b = np.zeros(w.shape[0]) if conv.bias is None else np.asarray(conv.bias)
        mean_img = torch.from_numpy(np.broadcast_to(mean[:, None, None], (len(mean), *in_hw)).copy())
        corr = torch.nn.functional.conv2d(mean_img[None], torch.from_numpy(w), None, conv.stride,
                                          conv.padding)[0].numpy()
        bias = b[:, None, None] - corr
        if conv.padding == 0:  # no border: the map is constant, a per-channel bias is exact
            bias = bias[:, 0, 0].copy()
        return self.emit(conv.replace(weight=w, bias=bias))


_STAGES: tuple[tuple[str, str], ...] = (
    ("downsample1_1", "down"), ("ConvBlock1_1", "cnn"), ("downsample1_2", "down"),
    ("ConvBlock1_2", "cnn"), ("downsample2", "down"), ("ConvBlock2_1", "cnn"),
    ("ConvBlock2_2", "cnn"), ("downsample3", "down"), ("block3", "tf"), ("downsample4", "down"),
    ("block4", "tf"))
_HEAD_CHILDREN = {"classification": {"lif", "head"}, "classification_kd": {"lif", "head", "head_kd"},
                  "pose": {"lif", "head_shape", "head_pose", "head_trans"}}


_HEAD_CHILDREN["segmentation"] = {"memory", "fpn"}
#: the stages whose output streams the segmentation FPN reads
_SEG_STAGES = ("ConvBlock1_2", "ConvBlock2_2", "block3", "block4")


def from_torch(model: nn.Module, frame_shape: tuple[int, int, int] | None = None) -> ir.Graph:
    """Translate a SpikeVideoFormer into a ``float`` IR graph.

    Parameters
    ----------
    model : SpikeVideoFormer
        The torch model (train/eval mode does not matter: BatchNorms are translated
        with their running statistics, i.e. as in ``model.eval()``).
    frame_shape : (C, H, W), optional
        Frame shape of the graph input; default ``(in_channels, img_size, img_size)``
        of the model's config. ``H`` and ``W`` must be multiples of 16.

    Returns
    -------
    ir.Graph
        Stage ``"float"``; executing it reproduces ``model`` (in float64, to rounding).
        ``meta["model_config"]`` holds the config dict, ``meta["T"]`` its default steps.

    Raises
    ------
    UnsupportedModelError
        The model is not spiking, or contains a module, variant or setting without an
        exact translation (the message names the module path and type).
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"expected a torch nn.Module, got {type(model).__name__}")
    if not any(isinstance(m, neurons.SpikingNeuron) for m in model.modules()):
        raise NotSpikingError(
            f"{type(model).__name__} is not a spiking model (it has no spiking neuron "
            f"modules); svf-deploy compiles spiking models only. Supported: {SUPPORTED}")
    if type(model) is not svf.SpikeVideoFormer:
        raise _unsupported("", model, "the frontend translates SpikeVideoFormer models "
                                      "(build them with svf_deploy.models.build_model)")
    cfg = model.cfg
    if cfg.head not in _HEAD_CHILDREN:
        raise _unsupported("", model, f"the {cfg.head!r} head is not supported; use the "
                                      "classification, pose or segmentation head")
    head_kids = _HEAD_CHILDREN["classification_kd" if cfg.head == "classification" and cfg.kd
                               else cfg.head]
    _Builder.expect_children("", model, {n for n, _ in _STAGES} | head_kids)

    if frame_shape is None:
        frame_shape = (cfg.in_channels, cfg.img_size, cfg.img_size)
    frame_shape = tuple(int(s) for s in frame_shape)
    if len(frame_shape) != 3 or frame_shape[0] != cfg.in_channels:
        raise UnsupportedModelError(f"frame_shape {frame_shape} must be (C={cfg.in_channels}, H, W)")
    if frame_shape[1] % 16 or frame_shape[2] % 16 or min(frame_shape[1:]) <= 0:
        raise UnsupportedModelError(f"frame size {frame_shape[1:]} must be positive multiples of 16")
    hw16 = (frame_shape[1] // 16, frame_shape[2] // 16)  # transformer stages' resolution

    b = _Builder(model)
    stage_out: list[str] = []  # the residual stream after each stage (segmentation head)
    x = b.emit(ir.Input("input", (), shape=frame_shape))
    norm = None
    if cfg.input_mean is not None:
        mean, std = _np(model.input_mean).reshape(-1), _np(model.input_std).reshape(-1)
        norm = (mean, std, frame_shape[1:])
    handlers: dict[str, Callable[[str, nn.Module, str], str]] = {
        "down": lambda p, m, z: b.downsample(p, m, z, norm if p == "downsample1_1" else None),
        "cnn": b.conv_block,
        "tf": lambda p, m, z: b.transformer_block(p, m, z, hw16)}
    for name, kind in _STAGES:
        mod = getattr(model, name)
        if kind == "down":
            x = handlers[kind](name, mod, x)
            continue
        b.expect(name, mod, (nn.ModuleList,))
        for i, blk in enumerate(mod):
            x = handlers[kind](f"{name}.{i}", blk, x)
        if name in _SEG_STAGES:
            stage_out.append(x)

    if cfg.head == "segmentation":  # logits of the last step at H/4 (bilinear x4 is outside)
        outputs = (b.segmentation(model, stage_out, (4, 8, 16, 16)),)
    else:
        x = b.emit(ir.GlobalPool("pool", (x,)))
        x = b.neuron("lif", model.lif, x)
    if cfg.head == "classification":
        y = b.linear("head", model.head, x, getattr(model, "head_kd", None) if cfg.kd else None)
        outputs: tuple[str, ...] = (b.emit(ir.TimeMean("time_mean", (y,))),)
    elif cfg.head == "pose":
        outputs = tuple(b.linear(h, getattr(model, h), x)
                        for h in ("head_shape", "head_pose", "head_trans"))
    meta = {"model_config": cfg.to_dict(), "T": int(cfg.T), "frontend": "svf_deploy.compiler.frontend",
            "head": cfg.head, "frame_shape": list(frame_shape),
            "input_normalization": cfg.normalization, "kd_folded": bool(cfg.kd)}
    if not math.isfinite(float(sum(np.abs(n.weight).sum() for n in b.nodes
                                   if isinstance(n, (ir.Conv, ir.Linear))))):
        raise UnsupportedModelError("the model has non-finite weights")
    return ir.Graph(tuple(b.nodes), outputs, "float", meta)
