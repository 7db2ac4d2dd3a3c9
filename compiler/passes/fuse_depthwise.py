r"""Fuse a depthwise conv and the pointwise conv that reads it into one dense conv.

SepConv computes ``z = pw * (dw * s)`` on spikes ``s``: a depthwise ``k x k`` conv (one
filter per channel ``i``) followed by a ``1 x 1`` conv. Both are linear, so

.. math::

    z[o] = \sum_i P[o, i] \Big(\sum_k D[i, k]\, s[i, k] + d[i]\Big) + p[o]
         = \sum_{i,k} \underbrace{P[o, i] D[i, k]}_{W[o, i, k]} s[i, k]
           + \Big(\sum_i P[o, i] d[i] + p[o]\Big)

is one dense ``k x k`` conv with product weights ``W`` that reads the *spikes*
directly. Why fuse: kept apart, the pointwise conv would read the depthwise conv's
integer output and so multiply (not a spike path), and its integer weights would carry
only the resolution left over by the depthwise quantisation (measured on svf-tiny: the
whole SepConv branch rounded to 0/+-1 at 8 bits). Fused, the product weight is quantised
once at full ``weight_bits`` resolution and the conv is a gated addition on spikes.

Applies when a Conv with ``groups == in_channels == out_channels`` and stride 1 is read
only by a 1x1, stride-1, ungrouped, unpadded Conv (and is not a graph output). The fused
node takes the pointwise conv's name (its BN folds into it next); ``meta["fused_depthwise"]``
maps the removed depthwise node to it.

Factored form (option ``factor_depthwise="auto"``). Fusing costs additions: per output
pixel the dense conv adds ``k^2 C O P`` weights (``P`` input planes: 1 for binary spikes,
``bits(levels)`` for I-LIF spikes), while the pair costs ``k^2 C P`` for the depthwise conv
on spikes plus ``b C O`` for the pointwise conv run *bit-serially* over the ``b``
two's-complement bit-planes of the depthwise conv's integer output
``x = -2^{b-1} x_{b-1} + \sum_{p<b-1} 2^p x_p``:

.. math::

    z[o] = p[o] + \sum_{p=0}^{b-1} \sigma_p 2^p \sum_i P[o, i]\, x_p[i],
    \qquad \sigma_p = -1 \text{ for the sign plane, else } +1

so each plane is a spike-gated addition of pointwise weights, the partial sums are
shifted into the accumulator and the sign plane's is subtracted: additions and shifts
only, exact. ``b`` is the depthwise output's proved width, ``b = signed_bits(B)`` with
``B = max_i (sum_k |D_int[i, k]| levels + |d_int[i]|)`` from its ``weight_bits``
quantisation (the bound :mod:`bitwidths` proves, so ``b`` is the pair's ``acc_bits``).
With SepConv's ``C = 2 C_{dim}``, ``O = C_{dim}``, ``k = 7``: fused ``98 C_{dim}^2`` vs
factored ``98 C_{dim} + 2 b C_{dim}^2`` adds per pixel (``b = 14`` at 8-bit weights on
binary spikes). :func:`sepconv_cost` is the one formula (``hw.costmodel`` uses it too);
the per-plane shift-add of partial sums (``O b`` per pixel) is not counted, as for every
multi-plane input.

With ``"auto"`` each pair whose depthwise conv reads spikes is kept factored when
:func:`sepconv_cost` says it is cheaper; the pair then stays two Convs (the IR already
executes a Conv on an ``int`` input exactly, and :mod:`quantize` gives the pointwise conv
the depthwise output's per-channel scale as ``s_in``, so both keep ``weight_bits`` of
resolution). ``"never"`` (the default) fuses every pair, the form the ZCU104 engine and
the other targets were validated on. Either way ``meta["sepconv_forms"]`` records, per
pointwise conv, the form chosen and both costs in adds per time step.

Invariant established: every depthwise Conv that feeds a pointwise Conv that is its only
reader is listed as ``"factored"`` in ``meta["sepconv_forms"]`` (with ``"never"``: none is).
"""

from __future__ import annotations

import numpy as np

from ...models.errors import ConfigError, GraphError
from .. import ir
from . import Contract
from .bitwidths import signed_bits
from .quantize import natural_scale, qmax

__all__ = ["run", "fusable", "FACTOR_MODES", "check_factor_mode", "sepconv_cost", "dw_planes"]

CONTRACT = Contract("fuse_depthwise", "float", "float", ("factor_depthwise", "weight_bits"))

#: values of the ``factor_depthwise`` option (``--factor-depthwise``)
FACTOR_MODES = ("never", "auto")


def check_factor_mode(mode) -> str:
    """Return ``mode`` if it is one of :data:`FACTOR_MODES`, else raise :class:`ConfigError`."""
    if mode not in FACTOR_MODES:
        raise ConfigError(f"factor_depthwise must be one of {', '.join(FACTOR_MODES)}, got {mode!r} "
                          "(--factor-depthwise)")
    return mode


def sepconv_cost(pixels: int, channels: int, outputs: int, taps: int, in_planes: int,
                 dw_bits: int) -> tuple[int, int]:
    """Additions per time step ``(fused, factored)`` of a depthwise ``taps``-tap conv on
    ``channels`` spike maps of ``in_planes`` planes read by a ``channels -> outputs``
    pointwise conv, over ``pixels`` output pixels: fused ``pixels taps C O P``, factored
    ``pixels (taps C P + b C O)`` with ``b = dw_bits`` bit-serial planes."""
    fused = pixels * taps * channels * outputs * in_planes
    factored = pixels * (taps * channels * in_planes + dw_bits * channels * outputs)
    return int(fused), int(factored)


def dw_planes(dw: ir.Conv, levels: int, weight_bits: int) -> int:
    """The depthwise conv's output width ``b`` once quantised at ``weight_bits`` on spikes
    of ``levels``: ``signed_bits(max_i sum_k |D_int[i, k]| levels + |d_int[i]|)``, as
    :mod:`quantize` (spike input scale 1, natural per-channel scale) and :mod:`bitwidths`
    will make it."""
    s = natural_scale(dw, np.ones(dw.weight.shape[0]), weight_bits)
    w = np.abs(np.round(np.asarray(dw.weight, np.float64) / s[:, None, None, None]))
    bound = w.reshape(w.shape[0], -1).sum(axis=1) * int(levels)
    if dw.bias is not None:
        bound = bound + np.abs(np.round(np.asarray(dw.bias, np.float64) / s))
    assert int(w.max(initial=0)) <= qmax(weight_bits)
    return signed_bits(int(bound.max(initial=0)))


def _is_depthwise(n: ir.Node) -> bool:
    return (isinstance(n, ir.Conv) and n.groups > 1 and n.weight.shape[1] == 1
            and n.groups == n.weight.shape[0] and n.stride == 1)


def _is_pointwise(n: ir.Node) -> bool:
    return (isinstance(n, ir.Conv) and n.groups == 1 and n.weight.shape[2:] == (1, 1)
            and n.stride == 1 and n.padding == 0)


def fusable(graph: ir.Graph, pw: ir.Node) -> bool:
    """Whether ``pw`` is a pointwise conv whose input is a depthwise conv read only by it."""
    if not _is_pointwise(pw):
        return False
    dw = graph.node(pw.inputs[0])
    if not _is_depthwise(dw) or dw.name in graph.outputs:
        return False
    return [c.name for c in graph.consumers(dw.name)] == [pw.name]


def _fuse(dw: ir.Conv, pw: ir.Conv) -> ir.Conv:
    if dw.out_scale is not None or pw.out_scale is not None:
        raise GraphError(f"fuse_depthwise: {pw.name!r} is already quantised; fuse before quantize")
    d = np.asarray(dw.weight, np.float64)[:, 0]          # [C, kh, kw]
    p = np.asarray(pw.weight, np.float64)[:, :, 0, 0]    # [O, C]
    w = p[:, :, None, None] * d[None]                    # [O, C, kh, kw]
    bias = np.zeros(p.shape[0]) if pw.bias is None else np.asarray(pw.bias, np.float64)
    if dw.bias is not None:
        bias = bias + p @ np.asarray(dw.bias, np.float64)
    has_bias = pw.bias is not None or dw.bias is not None
    return ir.Conv(pw.name, dw.inputs, weight=w, bias=bias if has_bias else None,
                   stride=1, padding=dw.padding, groups=1)


def _choice(graph: ir.Graph, dw: ir.Conv, pw: ir.Conv, mode: str, weight_bits: int) -> dict:
    src = graph.types[dw.inputs[0]]
    out = graph.types[pw.name]
    pixels = int(np.prod(out.shape[1:]))
    channels, outputs = int(dw.weight.shape[0]), int(pw.weight.shape[0])
    taps = int(dw.weight.shape[2] * dw.weight.shape[3])
    rec = {"dw": dw.name, "form": "fused", "pixels": pixels, "channels": channels,
           "outputs": outputs, "taps": taps}
    if src.kind != "spike":  # the factored form's depthwise conv is a gated addition on spikes
        return {**rec, "reason": f"depthwise input is {src.kind}, not spikes"}
    planes = max(1, int(src.levels).bit_length())
    b = dw_planes(dw, src.levels, weight_bits)
    fused, factored = sepconv_cost(pixels, channels, outputs, taps, planes, b)
    rec.update(in_planes=planes, dw_bits=b, fused_adds=fused, factored_adds=factored)
    if mode == "auto" and factored < fused:
        rec["form"] = "factored"
    return rec


def run(graph: ir.Graph, factor_depthwise: str = "never", weight_bits: int = 8) -> ir.Graph:
    """Return a new graph with every depthwise -> pointwise pair fused into one conv, or,
    with ``factor_depthwise="auto"``, kept as the pair where that needs fewer additions
    per time step (see the module docstring); ``weight_bits`` predicts the depthwise
    output's width ``b``."""
    check_factor_mode(factor_depthwise)
    fused: dict[str, ir.Conv] = {}
    removed: dict[str, str] = {}
    forms: dict[str, dict] = {}
    for n in graph.nodes:
        if fusable(graph, n):
            dw = graph.node(n.inputs[0])
            if dw.out_scale is not None or n.out_scale is not None:
                raise GraphError(f"fuse_depthwise: {n.name!r} is already quantised; fuse before quantize")
            forms[n.name] = _choice(graph, dw, n, factor_depthwise, weight_bits)
            if forms[n.name]["form"] == "fused":
                fused[n.name] = _fuse(dw, n)
                removed[dw.name] = n.name
    nodes = [fused.get(n.name, n) for n in graph.nodes if n.name not in removed]
    meta = dict(graph.meta)
    meta["fused_depthwise"] = {**graph.meta.get("fused_depthwise", {}), **removed}
    meta["sepconv_forms"] = {**graph.meta.get("sepconv_forms", {}), **forms}
    out = graph.replace(nodes=nodes, meta=meta)
    for n in out.nodes:
        if fusable(out, n) and meta["sepconv_forms"].get(n.name, {}).get("form") != "factored":
            raise GraphError(f"fuse_depthwise: {n.name!r} still reads a fusable depthwise conv")
    return out
