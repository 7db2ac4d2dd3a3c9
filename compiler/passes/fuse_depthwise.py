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

Invariant established: no depthwise Conv feeds a pointwise Conv that is its only reader.
"""

from __future__ import annotations

import numpy as np

from ...models.errors import GraphError
from .. import ir
from . import Contract

__all__ = ["run", "fusable"]

CONTRACT = Contract("fuse_depthwise", "float", "float", ())


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


def run(graph: ir.Graph) -> ir.Graph:
    """Return a new graph with every depthwise -> pointwise pair fused into one conv."""
    fused: dict[str, ir.Conv] = {}
    removed: dict[str, str] = {}
    for n in graph.nodes:
        if fusable(graph, n):
            dw = graph.node(n.inputs[0])
            fused[n.name] = _fuse(dw, n)
            removed[dw.name] = n.name
    nodes = [fused.get(n.name, n) for n in graph.nodes if n.name not in removed]
    meta = dict(graph.meta)
    meta["fused_depthwise"] = {**graph.meta.get("fused_depthwise", {}), **removed}
    out = graph.replace(nodes=nodes, meta=meta)
    for n in out.nodes:
        if fusable(out, n):
            raise GraphError(f"fuse_depthwise: {n.name!r} still reads a fusable depthwise conv")
    return out
