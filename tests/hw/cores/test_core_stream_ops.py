"""Requant, StreamAdd and SumPool in amaranth.sim against their references."""

import numpy as np
import pytest
from _core_util import PATTERN_IDS, PATTERNS, pysim

from svf_deploy.hw.cores import Requant, StreamAdd, SumPool
from svf_deploy.models.errors import HardwareError
from svf_deploy.sim.cases import add_case, mutate, pool_case, requant_case, run_case
from svf_deploy.sim.check import Mismatch


@pytest.mark.parametrize("mode", ["random", "max", "min", "boundary"])
@pytest.mark.parametrize("pat", PATTERNS, ids=PATTERN_IDS)
def test_requant(mode, pat):
    dut = Requant(in_bits=20, out_bits=20, max_shift=9)
    run_case(dut, requant_case(dut, np.random.default_rng(hash(mode) % 2**32), mode),
             pysim(dut, *pat, seed=1))


@pytest.mark.parametrize("mode", ["random", "max", "min"])
@pytest.mark.parametrize("pat", PATTERNS, ids=PATTERN_IDS)
def test_add(mode, pat):
    dut = StreamAdd(a_bits=17, b_bits=15, out_bits=18, lanes=3)
    run_case(dut, add_case(dut, np.random.default_rng(hash(mode) % 2**32), mode),
             pysim(dut, *pat, seed=2))


@pytest.mark.parametrize("mode", ["random", "max", "min"])
@pytest.mark.parametrize("pat", PATTERNS, ids=PATTERN_IDS)
def test_pool(mode, pat):
    dut = SumPool(in_bits=12, out_bits=16, lanes=2)
    run_case(dut, pool_case(dut, np.random.default_rng(hash(mode) % 2**32), mode),
             pysim(dut, *pat, seed=3))


def test_stream_ops_mutations_are_caught():
    rng = np.random.default_rng(0)
    for dut, case, stream in (
            (Requant(in_bits=20, out_bits=20, max_shift=9), None, "i"),
            (StreamAdd(a_bits=17, b_bits=15, out_bits=18, lanes=3), None, "b"),
            (SumPool(in_bits=12, out_bits=16, lanes=2), None, "i")):
        case = {Requant: requant_case, StreamAdd: add_case, SumPool: pool_case}[type(dut)](dut, rng)
        bad = mutate(case, stream, beat=3, bit=4)
        with pytest.raises(Mismatch):
            run_case(dut, bad, pysim(dut))


def test_requant_refuses_underived_width():
    with pytest.raises(HardwareError, match="acc_bits"):
        Requant(in_bits=16, out_bits=0)
