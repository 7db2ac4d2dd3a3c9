"""Every core under cocotb + Verilator from its emitted Verilog: rtl == reference.

All cores of the suite sit side by side in one :class:`~svf_deploy.sim.bundle.Bundle`, so
the suite pays one cached Verilator build (``build/sim/cores-<hash>``). Per core: all
edge modes back to back, free-flowing and under random back-pressure, and a mutation run
(one flipped weight/parameter bit must be caught, reported with its coordinates).
"""

import numpy as np
import pytest

from svf_deploy.hw.cores import (AttentionUnit, BitPlaneAccumulator, GatedAccumulator,
                                 IntLIFLane, Requant, SaccadeUnit, StreamAdd, SumPool)
from svf_deploy.sim import cases as C
from svf_deploy.sim.bundle import Bundle
from svf_deploy.sim.check import Mismatch
from svf_deploy.sim.verilator import build

CORES = {
    # name: (factory, case function, modes, mutation (stream, field, bit))
    "pe": (lambda: GatedAccumulator(8, 16, 8, 16, form="dsp", w_abs_max=127), C.pe_case,
           C.MODES, ("i", "weights", 8 * 9 + 1)),
    "pelut": (lambda: GatedAccumulator(3, 5, 8, 16, planes=3, form="lut"), C.pe_case, C.MODES,
              ("i", "spikes", 0)),
    "bitplane": (lambda: BitPlaneAccumulator(4, 3, 8, 8, 24), C.bitplane_case, C.MODES, ("i", "x", 6)),
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


@pytest.fixture(scope="module")
def bundle():
    b = Bundle({name: spec[0]() for name, spec in CORES.items()})
    return b, build(b, "cores")


def _case(b, name, seed=0):
    _, fn, modes, _ = CORES[name]
    rng = np.random.default_rng(seed)
    return b.case(name, C.concat([fn(b.cores[name], rng, m) for m in modes]))


@pytest.mark.parametrize("name", list(CORES))
def test_core_on_verilator(bundle, name):
    b, vb = bundle
    case = _case(b, name)
    C.run_case(b, case, vb.run)                                        # free-flowing
    C.run_case(b, case, lambda i, e: vb.run(i, e, p_valid=0.6, p_ready=0.5, seed=11))


@pytest.mark.parametrize("name", list(CORES))
def test_core_mutation_on_verilator(bundle, name):
    b, vb = bundle
    case = _case(b, name, seed=1)
    stream, fld, bit = CORES[name][3]
    core = b.cores[name]
    layout = core.signature.members[stream].signature.members["payload"].shape
    bad = C.mutate(case, f"{name}_{stream}", beat=0, bit=layout[fld].offset + bit)
    with pytest.raises(Mismatch, match="first mismatch at beat"):
        C.run_case(b, bad, vb.run)


def test_build_cache_is_reused(bundle):
    b, vb = bundle
    again = build(Bundle({name: spec[0]() for name, spec in CORES.items()}), "cores")
    assert again.cached and again.build_dir == vb.build_dir
