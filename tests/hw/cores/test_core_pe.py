"""GatedAccumulator and DSPAdderChain in amaranth.sim against ref_gated_accumulate."""

import numpy as np
import pytest
from _core_util import PATTERN_IDS, PATTERNS, pysim

from svf_deploy.hw.cores import DSPAdderChain, GatedAccumulator
from svf_deploy.models.errors import HardwareError
from svf_deploy.sim.cases import MODES, mutate, pe_case, run_case
from svf_deploy.sim.check import Mismatch

PARAMS = {  # (lanes, terms, w_bits, acc_bits, planes, form)
    "lut": (3, 5, 8, 16, 1, "lut"),
    "dsp": (8, 16, 8, 16, 1, "dsp"),
    "lut-planes": (4, 4, 8, 20, 3, "lut"),
    "dsp-planes": (4, 6, 8, 20, 4, "dsp"),
}


def make(key):
    lanes, terms, w, acc, planes, form = PARAMS[key]
    return GatedAccumulator(lanes, terms, w, acc, planes=planes, form=form,
                            w_abs_max=127 if form == "dsp" and terms == 16 else None)


@pytest.mark.parametrize("key", list(PARAMS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pat", PATTERNS, ids=PATTERN_IDS)
def test_pe_matches_reference(key, mode, pat):
    dut = make(key)
    rng = np.random.default_rng(hash((key, mode)) % 2**32)
    case = pe_case(dut, rng, mode)
    run_case(dut, case, pysim(dut, *pat, seed=7))


def test_pe_sum_reaches_bound_exactly():
    """16 terms x 127 x 4 beats = 8128 in every lane, and the minimum, through the DSP twin."""
    dut = make("dsp")
    for mode, want in (("max", 4 * 16 * 127), ("min", -4 * 16 * 127)):
        case = pe_case(dut, np.random.default_rng(0), mode)
        assert all(a == want for e in case.expected["o"] for a in e["acc"])
        run_case(dut, case, pysim(dut))


def test_pe_mutation_is_caught():
    """Flip one weight bit of one beat in the DUT's input image: the comparison must fail."""
    dut = make("dsp")
    case = pe_case(dut, np.random.default_rng(3), "ones")
    w_field = dut.in_layout["weights"].offset
    bad = mutate(case, "i", beat=1, bit=w_field + 8 * 5 + 2)  # term 0, lane 5, bit 2
    with pytest.raises(Mismatch, match=r"first mismatch at beat \d+ \(output \d+\), field acc\[5\]"):
        run_case(dut, bad, pysim(dut))


def test_dsp_chain_lane_wrap_matches_exact_sum():
    """The twin wraps each 12-bit lane; within the proved bound that is the exact sum."""
    from amaranth.hdl import Value
    from amaranth.sim import Simulator

    dut = DSPAdderChain(16, 8, w_abs_max=127)
    rng = np.random.default_rng(1)
    vals = []

    async def bench(ctx):
        for _ in range(50):
            s = rng.integers(0, 2, 16)
            w = rng.integers(-127, 128, (16, 4))
            ctx.set(dut.spikes, int(sum(int(b) << j for j, b in enumerate(s))))
            for j in range(16):
                for lane in range(4):
                    ctx.set(dut.weights[j][lane], int(w[j, lane]))
            got = [ctx.get(dut.lanes[lane]) for lane in range(4)]
            vals.append((got, (s @ w).tolist()))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert all(g == e for g, e in vals)


@pytest.mark.parametrize("kw, msg", [
    (dict(lanes=6, form="dsp"), "multiple of 4"),
    (dict(terms=17, form="dsp"), "beyond a 12-bit SIMD lane"),
    (dict(acc_bits=0), "not derived"),
    (dict(form="mul"), "form must be"),
])
def test_pe_refuses_unimplementable(kw, msg):
    args = dict(lanes=4, terms=8, w_bits=8, acc_bits=16) | kw
    with pytest.raises(HardwareError, match=msg):
        GatedAccumulator(**args)
