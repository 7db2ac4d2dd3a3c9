"""Every core under cocotb + Verilator from its emitted Verilog: rtl == reference.

All cores of the suite sit side by side in one :class:`~svf_deploy.sim.bundle.Bundle`, so
the suite pays one cached Verilator build (``build/sim/cores-<hash>``). Per core: all
edge modes back to back, free-flowing and under random back-pressure, and a mutation run
(one flipped weight/parameter bit must be caught, reported with its coordinates).
"""

import numpy as np
import pytest

from svf_deploy.sim import cases as C
from svf_deploy.sim.catalogue import CORES
from svf_deploy.sim.bundle import Bundle
from svf_deploy.sim.check import Mismatch
from svf_deploy.sim.verilator import build


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
