"""A catalogue of small core configurations with their case generators.

One entry per core family: ``name -> (factory, case function, modes, mutation)`` where
``mutation = (stream, field, bit)`` names one input bit a mutation run flips. The
Verilator suite (tests/sim) and the simulation-speed benchmark share it, so both measure
the same designs.
"""

from __future__ import annotations

from ..hw.cores import (AttentionUnit, BitPlaneAccumulator, GatedAccumulator, IntLIFLane, Requant,
                        SaccadeUnit, SignedBitPlaneAccumulator, StreamAdd, SumPool)
from . import cases as C

__all__ = ["CORES"]

CORES = {
    # name: (factory, case function, modes, mutation (stream, field, bit))
    "pe": (lambda: GatedAccumulator(8, 16, 8, 16, form="dsp", w_abs_max=127), C.pe_case,
           C.MODES, ("i", "weights", 8 * 9 + 1)),
    "pelut": (lambda: GatedAccumulator(3, 5, 8, 16, planes=3, form="lut"), C.pe_case, C.MODES,
              ("i", "spikes", 0)),
    "bitplane": (lambda: BitPlaneAccumulator(4, 3, 8, 8, 24), C.bitplane_case, C.MODES, ("i", "x", 6)),
    "pointwise": (lambda: SignedBitPlaneAccumulator(4, 3, 6, 8, 17, form="dsp", w_abs_max=128),
                  C.pointwise_case, C.MODES, ("i", "x", 5)),
    "ilif": (lambda: IntLIFLane(in_bits=9, mem_bits=24, theta_bits=10, bias_bits=12, frac_bits=1,
                                leak_shift=2, decay_input=False, reset="soft", levels=4),
             C.lif_case, ("random", "max", "min", "zeros", "boundary"), ("i", "bias", 1)),
    "lif": (lambda: IntLIFLane(in_bits=9, mem_bits=24, theta_bits=10, bias_bits=12, frac_bits=4,
                               leak_shift=1, decay_input=True, reset="hard", levels=1),
            C.lif_case, ("random", "max", "min", "zeros", "boundary"), ("i", "bias", 1)),
    "requant": (lambda: Requant(in_bits=20, out_bits=20, max_shift=9), C.requant_case,
                ("random", "max", "min", "boundary"), ("i", "x", 5)),
    "add": (lambda: StreamAdd(a_bits=17, b_bits=15, out_bits=18, lanes=3), C.add_case,
            ("random", "max", "min"), ("b", "v", 3)),
    "pool": (lambda: SumPool(in_bits=12, out_bits=16, lanes=2), C.pool_case, ("random", "max", "min"),
             ("i", "x", 2)),
    "sdha": (lambda: AttentionUnit(d=6, kv_bits=7, y_bits=10, kind="sdha"), C.attention_case,
             C.MODES, ("i", "v", 2)),
    "sdsa": (lambda: AttentionUnit(d=3, kv_bits=6, y_bits=9, kind="sdsa"), C.attention_case,
             C.MODES, ("i", "v", 0)),
    "sssa": (lambda: SaccadeUnit(d=4, tokens=5, gains=(3, -5, 0, 6), theta=30, mem_bits=16,
                                 frac_bits=1, leak_shift=1, decay_input=True, reset="soft"),
             C.sssa_case, C.MODES, ("i", "kq", 1)),
}
