r"""Fold each BatchNorm into the Conv/Linear that feeds it.

A BN ``y = a[o] z + b[o]`` after ``z = sum_{i,k} W[o, i, k] x[i, k] + c[o]`` is one layer:

.. math::

    y[o] = \sum_{i,k} (a[o] W[o, i, k])\, x[i, k] + (a[o] c[o] + b[o])

so ``W' = a[:, None, None, None] * W`` and ``c' = a * c + b`` (``c = 0`` when the layer
has no bias). The fold applies when the BN's input is a Conv or Linear whose *only*
consumer is that BN (and which is not a graph output), so no other reader sees the
changed values. SepConv's ``bn2`` folds into the dense conv that :mod:`fuse_depthwise`
made of ``dwconv -> pwconv2``. BatchNorms that do not follow a layer
(the ``attn_bn`` after an Attention) stay; :mod:`absorb_thresholds` absorbs them into
the next neuron.

The merged node keeps the layer's name; the BN's readers and graph outputs are
rewired to it, and ``meta["folded_bn"]`` maps each removed BN name to the layer it
went into (so tools can still find the torch module).

Invariant established: no BatchNorm reads a Conv/Linear of which it is the only
consumer; every remaining BatchNorm reads something else.
"""

from __future__ import annotations

import numpy as np

from ...models.errors import GraphError
from .. import ir
from . import Contract

__all__ = ["run", "foldable"]

CONTRACT = Contract("fold_bn", "float", "float", ())


def foldable(graph: ir.Graph, bn: ir.Node) -> bool:
    """Whether ``bn`` is a BatchNorm that can be merged into its producer."""
    if not isinstance(bn, ir.BatchNorm):
        return False
    src = graph.node(bn.inputs[0])
    if not isinstance(src, (ir.Conv, ir.Linear)) or src.name in graph.outputs:
        return False
    return [c.name for c in graph.consumers(src.name)] == [bn.name]


def _merge(layer: ir.Node, bn: ir.BatchNorm) -> ir.Node:
    if layer.out_scale is not None:
        raise GraphError(f"fold_bn: {layer.name!r} already carries an out_scale; "
                         "fold BatchNorms before residual_scales/quantize")
    w = np.asarray(layer.weight, dtype=np.float64)
    a = bn.a.reshape((-1,) + (1,) * (w.ndim - 1))
    bias = np.zeros(w.shape[0]) if layer.bias is None else np.asarray(layer.bias, np.float64)
    per = (-1,) + (1,) * (bias.ndim - 1)  # a bias map [O, Ho, Wo] folds position by position
    return layer.replace(weight=w * a, bias=bias * bn.a.reshape(per) + bn.b.reshape(per))


def _fold_once(graph: ir.Graph) -> tuple[ir.Graph, dict[str, str]]:
    merged: dict[str, ir.Node] = {}   # layer name -> merged layer
    rename: dict[str, str] = {}       # removed BN -> layer
    for n in graph.nodes:
        if foldable(graph, n):
            layer = graph.node(n.inputs[0])
            merged[layer.name] = _merge(layer, n)
            rename[n.name] = layer.name
    nodes = []
    for n in graph.nodes:
        if n.name in rename:
            continue
        n = merged.get(n.name, n)
        if any(i in rename for i in n.inputs):
            n = n.replace(inputs=tuple(rename.get(i, i) for i in n.inputs))
        nodes.append(n)
    return graph.replace(nodes=nodes, outputs=[rename.get(o, o) for o in graph.outputs]), rename


def run(graph: ir.Graph) -> ir.Graph:
    """Return a new graph with every foldable BatchNorm merged into its producing layer.

    Repeats until none is left (a chain ``Conv -> BN -> BN`` folds both).

    Raises
    ------
    GraphError
        On a non-float graph or an already scaled layer, or if a foldable BatchNorm
        survives (invariant check).
    """
    if graph.stage != "float":
        raise GraphError(f"fold_bn runs on float graphs, got a {graph.stage} graph")
    folded: dict[str, str] = dict(graph.meta.get("folded_bn", {}))
    out = graph
    for _ in range(len(graph.nodes)):
        out, rename = _fold_once(out)
        if not rename:
            break
        folded.update(rename)
    out = out.replace(meta={**out.meta, "folded_bn": folded})
    left = [n.name for n in out.nodes if foldable(out, n)]
    if left:
        raise GraphError(f"fold_bn: foldable BatchNorms remain: {left}")
    return out
