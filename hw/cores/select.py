"""Pick the core for an IR node and refuse, by name, what the cores cannot implement.

:func:`core_for` is the one entry point hardware generation uses per node: it checks the
node's fields (widths from the compiler's proved bounds, weight range, neuron settings)
and returns a configured core, or raises :class:`HardwareError` naming the node and the
reason. Nothing is approximated.
"""

from __future__ import annotations

import numpy as np
from amaranth.utils import bits_for

from ...models.errors import HardwareError
from ._common import check_bits
from .add import StreamAdd
from .bitplane import BitPlaneAccumulator
from .lif import MAX_LEVELS, IntLIFLane
from .pe import GatedAccumulator
from .pointwise import SignedBitPlaneAccumulator
from .pool import SumPool
from .requant import Requant
from .sdha import AttentionUnit
from .sssa import SaccadeUnit

__all__ = ["core_for", "W_BITS"]

#: weight width of the PE array (the compiler quantises to int8 by default)
W_BITS = 8


def _in_bound(graph, name: str, bounds: dict) -> int:
    t = graph.types[name]
    return int(t.levels) if t.kind == "spike" else int(bounds[name])


def core_for(node, graph, bounds: dict, *, lanes: int = 8, terms: int = 16, form: str = "lut",
             dsp_instance: bool = False):
    """The core implementing ``node`` of an integer ``graph`` (``bounds``: the reference's
    :func:`~compiler.reference.bounds` at ``graph.meta["T"]``).

    Raises
    ------
    HardwareError
        The node's op has no core (float-stage ops), a width is not derived
        (``acc_bits``/``mem_bits`` = 0), weights exceed int8, an I-LIF has more than
        :data:`MAX_LEVELS` levels, an integer input is wider than 16 bits, or the inputs
        are of a kind the core does not take. A Conv/Linear on an ``int`` tensor (the
        pointwise half of a factored SepConv) gets a :class:`SignedBitPlaneAccumulator`
        with ``in_bits`` = the input's proved signed width.
    """
    op = node.op
    who = f"{op} {node.name!r}"
    if graph.stage != "integer":
        raise HardwareError(f"{who}: hardware is generated from an integer graph, not a {graph.stage!r} one")
    if op in ("Conv", "Linear"):
        w = np.asarray(node.weight)
        wmax = int(np.abs(w).max()) if w.size else 0
        if wmax > (1 << (W_BITS - 1)):
            raise HardwareError(f"{who}: weights reach |{wmax}|, beyond the PE array's int{W_BITS}; "
                                f"compile with weight_bits <= {W_BITS}")
        acc = check_bits(who, "acc_bits", node.acc_bits)
        src = graph.types[node.inputs[0]]
        if src.kind == "spike" and src.levels == 1:
            return GatedAccumulator(lanes, terms, W_BITS, acc, form=form, dsp_instance=dsp_instance,
                                    w_abs_max=max(wmax, 1))
        if src.kind in ("spike", "analog"):
            in_bits = bits_for(int(src.levels if src.kind == "spike" else bounds[node.inputs[0]]))
            return BitPlaneAccumulator(lanes, terms, in_bits, W_BITS, acc, form=form,
                                       dsp_instance=dsp_instance, w_abs_max=max(wmax, 1))
        if src.kind == "int":  # the factored SepConv's pointwise half: signed bit-planes
            in_bits = max(2, bits_for(int(bounds[node.inputs[0]]), True))
            return SignedBitPlaneAccumulator(lanes, terms, in_bits, W_BITS, acc, form=form,
                                             dsp_instance=dsp_instance, w_abs_max=max(wmax, 1))
        raise HardwareError(f"{who}: reads a {src.kind!r} tensor; the PE array takes binary or "
                            "multi-bit spikes, analog codes (unsigned planes) and integers "
                            "(two's-complement planes) only")
    if op == "IntLIF":
        if node.levels > MAX_LEVELS:
            raise HardwareError(f"{who}: levels={node.levels} exceeds the lane's {MAX_LEVELS}-step "
                                "compare chain")
        return IntLIFLane.for_node(node, _in_bound(graph, node.inputs[0], bounds))
    if op == "Requant":
        check_bits(who, "acc_bits", node.acc_bits)
        return Requant(in_bits=bits_for(_in_bound(graph, node.inputs[0], bounds), True),
                       out_bits=node.acc_bits, max_shift=int(np.max(node.shift)))
    if op == "Add":
        check_bits(who, "acc_bits", node.acc_bits)
        a, b = (bits_for(_in_bound(graph, i, bounds), True) for i in node.inputs)
        return StreamAdd(a_bits=a, b_bits=b, out_bits=node.acc_bits, lanes=lanes)
    if op in ("GlobalPool", "TimeMean"):
        check_bits(who, "acc_bits", node.acc_bits)
        return SumPool(in_bits=bits_for(_in_bound(graph, node.inputs[0], bounds), True),
                       out_bits=node.acc_bits, lanes=lanes)
    if op == "Attention":
        return AttentionUnit.for_node(node, graph, int(graph.meta.get("T", 0)) or _need_T(who))
    if op == "SSSA":
        return SaccadeUnit.for_node(node, graph, int(graph.meta.get("T", 0)) or _need_T(who))
    raise HardwareError(f"{who}: no hardware core for op {op!r}")


def _need_T(who: str) -> int:
    raise HardwareError(f"{who}: graph.meta['T'] (the T the bounds were proved for) is missing")
