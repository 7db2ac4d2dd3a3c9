r"""Derive accumulator and membrane widths from proved bounds.

For every integer node the static bound ``B`` on every intermediate it computes comes
from :func:`compiler.bounds.register_bounds` (the value bounds of
:func:`compiler.bounds.bounds`, one definition shared with the executor, which
checks every computed value against them, widened by the intermediates: Requant's
``x + 2**(s-1)``, a neuron's ``X - V``, I-LIF's ``2H + theta`` and compare operands).
A signed two's-complement register holding every integer in ``[-B, B]`` needs

.. math::  \mathrm{bits}(B) = \lceil \log_2 (B + 1) \rceil + 1

bits (``B = 0`` gives 1 bit). Conv, Linear, Add, Attention, GlobalPool and TimeMean get
``acc_bits = bits(B)``; IntLIF and SSSA get ``mem_bits = bits(B_membrane)``. Bounds grow
with the clip length (joint attention counts ``T*H*W`` tokens, TimeMean sums ``T``
steps), so they are proved for ``T`` steps (option ``T``; default the graph's
``meta["T"]``, which ``absorb_thresholds`` set from the same option); ``meta["T"]``
records it and every executor refuses clips of another length.

Invariant established: every integer node has ``acc_bits``/``mem_bits`` ``> 0``, none
above ``max_bits`` (48 by default: a :class:`GraphError` names the widest node otherwise).
"""

from __future__ import annotations

from ...models.errors import ConfigError, GraphError
from .. import ir
from ..bounds import register_bounds
from . import Contract

__all__ = ["run", "signed_bits", "ACC_OPS", "MEM_OPS", "MAX_BITS"]

CONTRACT = Contract("bitwidths", "integer", "integer", ("T",))

MAX_BITS = 48
ACC_OPS = (ir.Conv, ir.Linear, ir.Add, ir.Requant, ir.Attention, ir.GlobalPool, ir.TimeMean)
MEM_OPS = (ir.IntLIF, ir.SSSA)


def signed_bits(bound: int) -> int:
    """Width of a signed register holding ``[-bound, bound]``: ``ceil(log2(bound+1)) + 1``."""
    if bound < 0:
        raise GraphError(f"a bound must be non-negative, got {bound}")
    return int(bound).bit_length() + 1  # == ceil(log2(B + 1)) + 1 for integers B >= 0


def run(graph: ir.Graph, T: int | None = None, max_bits: int = MAX_BITS) -> ir.Graph:
    """Set ``acc_bits`` / ``mem_bits`` on every integer node of an ``integer`` graph.

    Parameters
    ----------
    T : number of time steps the bounds are proved for; default ``graph.meta["T"]``
        (the model's configured clip length).
    max_bits : the widest register allowed (default 48).

    Raises
    ------
    GraphError
        On a non-integer graph, or if a width exceeds ``max_bits`` or a node is left
        without a width (invariant check).
    """
    if graph.stage != "integer":
        raise GraphError(f"bitwidths runs on integer graphs, got a {graph.stage} graph")
    if T is None:
        T = graph.meta.get("T")
        if T is None:
            raise ConfigError("bitwidths: pass T (the graph's meta has no 'T')")
    bounds = register_bounds(graph, int(T))
    nodes = []
    too_wide = []
    for n in graph.nodes:
        if isinstance(n, ACC_OPS + MEM_OPS):
            bits = signed_bits(bounds[n.name])
            if bits > max_bits:
                too_wide.append((bits, n.name, bounds[n.name]))
            n = n.replace(**{"acc_bits" if isinstance(n, ACC_OPS) else "mem_bits": bits})
        nodes.append(n)
    if too_wide:
        bits, name, b = max(too_wide)
        raise GraphError(f"bitwidths: {name!r} needs {bits} bits (bound {b}) > {max_bits}; "
                         f"{len(too_wide)} node(s) exceed the limit")
    if "T" in graph.meta and int(graph.meta["T"]) != int(T):
        raise ConfigError(f"bitwidths: T={T} differs from the T={graph.meta['T']} the neurons' "
                          "fraction bits were chosen for; pass the same T to both passes")
    out = graph.replace(nodes=nodes, meta={**graph.meta, "T": int(T)})
    missing = [n.name for n in out.nodes
               if (isinstance(n, ACC_OPS) and n.acc_bits <= 0) or (isinstance(n, MEM_OPS) and n.mem_bits <= 0)]
    if missing:
        raise GraphError(f"bitwidths: nodes without a width: {missing}")
    return out
