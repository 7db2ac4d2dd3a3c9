"""Every core under cocotb + Verilator from its emitted Verilog: rtl == reference.

One cached Verilator build per core parameter set (``build/sim/<core>-<hash>``); each build
runs all edge modes back to back, free-flowing and under random back-pressure, and a
mutation run (one flipped weight/parameter bit must be caught).
"""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

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
    "sdha": (lambda: AttentionUnit(d=6, kv_bits=7, y_bits=10, kind="sdha"), C.attention_case,
             C.MODES, ("i", "v", 2)),
    "sssa": (lambda: SaccadeUnit(d=4, tokens=5, gains=(3, -5, 0, 6), theta=30, mem_bits=16,
                                 frac_bits=1, leak_shift=1, decay_input=True, reset="soft"),
             C.sssa_case, C.MODES, ("i", "kq", 1)),
}


class StreamOps(wiring.Component):
    """Requant, StreamAdd and SumPool side by side in one Verilator build (three small cores,
    one C++ compile): each keeps its own streams, renamed ``<core>_<port>``."""

    def __init__(self):
        self.cores = {"rq": Requant(in_bits=20, out_bits=20, max_shift=9),
                      "add": StreamAdd(a_bits=17, b_bits=15, out_bits=18, lanes=3),
                      "pool": SumPool(in_bits=12, out_bits=16, lanes=2)}
        members = {}
        for p, core in self.cores.items():
            for k, mem in core.signature.members.items():
                members[f"{p}_{k}"] = mem
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for p, core in self.cores.items():
            m.submodules[p] = core
            for k, mem in core.signature.members.items():
                outer = getattr(self, f"{p}_{k}")
                if mem.flow == In:
                    wiring.connect(m, wiring.flipped(outer), getattr(core, k))
                else:
                    wiring.connect(m, getattr(core, k), wiring.flipped(outer))
        return m


def _stream_ops_case(core, rng, mode):
    parts = [C.rename(fn(core.cores[p], rng, m), {k: f"{p}_{k}" for k in ports})
             for p, fn, ports in (("rq", C.requant_case, ("i", "o")), ("add", C.add_case, ("a", "b", "o")),
                                  ("pool", C.pool_case, ("i", "o")))
             for m in [mode]]
    return C.Case(mode, {k: v for c in parts for k, v in c.inputs.items()},
                  {k: v for c in parts for k, v in c.expected.items()},
                  {k: v for c in parts for k, v in c.coords.items()})


CORES["stream-ops"] = (StreamOps, _stream_ops_case, ("random", "max", "min", "boundary"), ("add_b", "v", 3))


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
    layout = core.signature.members[stream].signature.members["payload"].shape
    bad = C.mutate(case, stream, beat=0, bit=layout[fld].offset + bit)
    with pytest.raises(Mismatch, match="first mismatch at beat"):
        C.run_case(core, bad, vb.run)


def test_build_cache_is_reused(builds):
    core, vb = _get(builds, "stream-ops")
    again = build(StreamOps(), "stream-ops")
    assert again.cached and again.build_dir == vb.build_dir
