r"""Fold every ``RepConv`` into one zero-padded 3x3 ``Conv`` with bias.

A RepConv computes, on a zero-padded input ``x`` (padding 1), with the 1x1 weights
``w1[m, i]``, the first BN ``(a1, b1)`` (whose output is padded with its own value at
zero, ``b1``), the depthwise 3x3 ``wdw[m, k]`` (valid), the 1x1 ``w2[o, m]`` and the
second BN ``(a2, b2)``::

    z[m, p]  = a1[m] sum_i w1[m, i] x[i, p] + b1[m]          (equal to the padded BN output)
    y[o, p]  = a2[o] sum_m w2[o, m] sum_k wdw[m, k] z[m, p + k] + b2[o]

Expanding ``z`` gives one convolution ``y[o, p] = sum_{i,k} W[o, i, k] x[i, p + k] + bias[o]``:

.. math::

    W[o, i, k_h, k_w] &= a_2[o] \sum_m w_2[o, m]\, w_{dw}[m, k_h, k_w]\, a_1[m]\, w_1[m, i] \\
    \mathrm{bias}[o] &= a_2[o] \sum_m w_2[o, m]\, b_1[m] \sum_{k} w_{dw}[m, k] + b_2[o]

Padding the BN output with ``b1`` is what makes the border exact: a zero input pixel
gives ``z = b1`` there as well. The fold is exact up to float rounding.

Invariant established: the graph holds no ``RepConv``; each folded node keeps the
RepConv's name (the torch path of ``Sequential(RepConv, BN)``), so consumers are unchanged.
"""

from __future__ import annotations

import numpy as np

from ...models.errors import GraphError
from .. import ir
from . import Contract

__all__ = ["run", "fold"]

CONTRACT = Contract("fold_repconv", "float", "float", ())


def fold(node: ir.RepConv) -> ir.Conv:
    """The single 3x3 conv (padding 1, stride 1, bias) equal to ``node``."""
    w1 = node.w1[:, :, 0, 0]            # [m, i]
    wdw = node.wdw[:, 0]                # [m, kh, kw]
    w2 = node.w2[:, :, 0, 0]            # [o, m]
    inner = np.einsum("mhw,m,mi->mihw", wdw, node.a1, w1)
    weight = node.a2[:, None, None, None] * np.einsum("om,mihw->oihw", w2, inner)
    bias = node.a2 * (w2 @ (node.b1 * wdw.sum(axis=(1, 2)))) + node.b2
    return ir.Conv(node.name, node.inputs, weight=weight, bias=bias, stride=1, padding=1, groups=1)


def run(graph: ir.Graph) -> ir.Graph:
    """Return a new graph with every :class:`ir.RepConv` replaced by :func:`fold`.

    Raises
    ------
    GraphError
        If a RepConv survives (invariant check).
    """
    nodes = tuple(fold(n) if isinstance(n, ir.RepConv) else n for n in graph.nodes)
    meta = dict(graph.meta)
    folded = [n.name for n in graph.nodes if isinstance(n, ir.RepConv)]
    meta["folded_repconv"] = sorted(set(meta.get("folded_repconv", [])) | set(folded))
    out = graph.replace(nodes=nodes, meta=meta)
    left = [n.name for n in out.nodes if isinstance(n, ir.RepConv)]
    if left:
        raise GraphError(f"fold_repconv: RepConv nodes remain: {left}")
    return out
