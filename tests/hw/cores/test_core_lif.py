"""IntLIFLane in amaranth.sim against ref_intlif_lane: every IntLIF semantic."""

import numpy as np
import pytest
from _core_util import PATTERN_IDS, PATTERNS, pysim

from svf_deploy.hw.cores import IntLIFLane
from svf_deploy.models.errors import HardwareError
from svf_deploy.sim.cases import lif_case, mutate, run_case
from svf_deploy.sim.check import Mismatch

SETTINGS = {  # (frac_bits, leak_shift, decay_input, reset, levels)
    "decay-hard": (4, 1, True, "hard", 1),
    "decay-soft": (0, 2, True, "soft", 1),
    "nodecay-hard": (2, 1, False, "hard", 1),
    "nodecay-soft": (1, 3, False, "soft", 1),
    "ilif-d4-decay": (1, 1, True, "soft", 4),
    "ilif-d3-nodecay": (0, 2, False, "soft", 3),
}


def make(key):
    f, k, decay, reset, levels = SETTINGS[key]
    return IntLIFLane(in_bits=9, mem_bits=24, theta_bits=10, bias_bits=12, frac_bits=f,
                      leak_shift=k, decay_input=decay, reset=reset, levels=levels)


@pytest.mark.parametrize("key", list(SETTINGS))
@pytest.mark.parametrize("mode", ["random", "max", "min", "zeros", "boundary"])
@pytest.mark.parametrize("pat", PATTERNS, ids=PATTERN_IDS)
def test_lif_matches_reference(key, mode, pat):
    dut = make(key)
    rng = np.random.default_rng(hash((key, mode)) % 2**32)
    run_case(dut, lif_case(dut, rng, mode), pysim(dut, *pat, seed=5))


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_boundary_cases_sit_on_the_threshold():
    """The boundary generator really puts H on theta (binary) / on (k - 1/2) theta (I-LIF),
    where ``>=`` and round-half-to-even decide."""
    for key in ("decay-hard", "ilif-d4-decay", "ilif-d3-nodecay"):
        dut = make(key)
        case = lif_case(dut, np.random.default_rng(0), "boundary", neurons=30)
        H0 = case.meta["H"][0]
        assert (H0 != 0).sum() > 10
        if dut.levels == 1:
            assert np.any(case.meta["S"][0] == 1)
        else:  # some tie rounded down to an even count, some up
            assert {0, 2} <= set(case.meta["S"][0].tolist())


def test_lif_mutation_is_caught():
    dut = make("ilif-d4-decay")
    case = lif_case(dut, np.random.default_rng(1), "random")
    bias_off = dut.in_layout["bias"].offset
    bad = mutate(case, "i", beat=6, bit=bias_off + 1)  # neuron 1, t=2: bias off by 2, H by 1
    with pytest.raises(Mismatch, match=r"neuron 1 t=2"):
        run_case(dut, bad, pysim(dut))


@pytest.mark.parametrize("kw, msg", [
    (dict(mem_bits=0), "not derived"),
    (dict(levels=3, reset="hard"), "resets softly"),
    (dict(levels=16, reset="soft"), r"levels must be in 1\.\.15"),
    (dict(reset="zero"), "reset must be"),
])
def test_lif_refuses_unimplementable(kw, msg):
    args = dict(in_bits=8, mem_bits=16, theta_bits=8, bias_bits=8) | kw
    with pytest.raises(HardwareError, match=msg):
        IntLIFLane(**args)
