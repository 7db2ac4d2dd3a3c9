"""Every core under cocotb + Verilator from its emitted Verilog: rtl == reference.

One cached Verilator build per core parameter set (``build/sim/<core>-<hash>``); each build
runs all edge modes back to back, free-flowing and under random back-pressure, and a
mutation run (one flipped weight/parameter bit must be caught).
"""

import numpy as np
import pytest

from svf_deploy.hw.cores import (AttentionUnit, BitPlaneAccumulator, GatedAccumulator,
                                 IntLIFLane, Requant, SaccadeUnit, StreamAdd, SumPool)
from svf_deploy.sim import cases as C
from svf_deploy.sim.check import Mismatch
from svf_deploy.sim.verilator import build

CORES = {
    # name: (factory, case function, modes, mutation (stream, field, bit))
    "pe-dsp": (lambda: GatedAccumulator(8, 16, 8, 16, form="dsp", w_abs_max=127), C.pe_case,
               C.MODES, ("i", "weights", 8 * 9 + 1)),
    "bitplane": (lambda: BitPlaneAccumulator(4, 3, 8, 8, 24), C.bitplane_case, C.MODES,
                 ("i", "x", 6)),
    "ilif": (lambda: IntLIFLane(in_bits=9, mem_bits=24, theta_bits=10, bias_bits=12, frac_bits=1,
                                leak_shift=2, decay_input=False, reset="soft", levels=4),
             C.lif_case, ("random", "max", "min", "zeros", "boundary"), ("i", "bias", 1)),
    "requant": (lambda: Requant(in_bits=20, out_bits=20, max_shift=9), C.requant_case,
                ("random", "max", "min", "boundary"), ("i", "x", 5)),
    "add": (lambda: StreamAdd(a_bits=17, b_bits=15, out_bits=18, lanes=3), C.add_case,
            ("random", "max", "min"), ("b", "v", 3)),
    "pool": (lambda: SumPool(in_bits=12, out_bits=16, lanes=2), C.pool_case, ("random", "max", "min"),
             ("i", "x", 2)),
    "sdha": (lambda: AttentionUnit(d=6, kv_bits=7, y_bits=10, kind="sdha"), C.attention_case,
             C.MODES, ("i", "v", 2)),
    "sssa": (lambda: SaccadeUnit(d=4, tokens=5, gains=(3, -5, 0, 6), theta=30, mem_bits=16,
                                 frac_bits=1, leak_shift=1, decay_input=True, reset="soft"),
             C.sssa_case, C.MODES, ("i", "kq", 1)),
}


@pytest.fixture(scope="module")
def builds():
    return {}


def _get(builds, name):
    if name not in builds:
        core = CORES[name][0]()
        builds[name] = (core, build(core, name))
    return builds[name]


def _case(name, core, seed=0):
    _, fn, modes, _ = CORES[name]
    rng = np.random.default_rng(seed)
    return C.concat([fn(core, rng, m) for m in modes])


@pytest.mark.parametrize("name", list(CORES))
def test_core_on_verilator(builds, name):
    core, vb = _get(builds, name)
    case = _case(name, core)
    C.run_case(core, case, vb.run)                                        # free-flowing
    C.run_case(core, case, lambda i, e: vb.run(i, e, p_valid=0.6, p_ready=0.5, seed=11))


@pytest.mark.parametrize("name", list(CORES))
def test_core_mutation_on_verilator(builds, name):
    core, vb = _get(builds, name)
    case = _case(name, core, seed=1)
    stream, fld, bit = CORES[name][3]
    layout = {"a": getattr(core, "a_layout", None), "b": getattr(core, "b_layout", None)}.get(
        stream) or core.in_layout
    bad = C.mutate(case, stream, beat=0, bit=layout[fld].offset + bit)
    with pytest.raises(Mismatch, match="first mismatch at beat"):
        C.run_case(core, bad, vb.run)


def test_build_cache_is_reused(builds):
    core, vb = _get(builds, "pool")
    again = build(SumPool(in_bits=12, out_bits=16, lanes=2), "pool")
    assert again.cached and again.build_dir == vb.build_dir
