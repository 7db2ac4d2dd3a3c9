"""BitPlaneAccumulator (multi-bit inputs as shifted bit-planes) in amaranth.sim."""

import numpy as np
import pytest
from _core_util import PATTERN_IDS, PATTERNS, pysim

from svf_deploy.hw.cores import BitPlaneAccumulator
from svf_deploy.sim.cases import MODES, bitplane_case, mutate, run_case
from svf_deploy.sim.check import Mismatch


@pytest.mark.parametrize("in_bits, form", [(8, "lut"), (2, "dsp"), (1, "lut")])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pat", PATTERNS, ids=PATTERN_IDS)
def test_bitplane_matches_reference(in_bits, form, mode, pat):
    dut = BitPlaneAccumulator(4, 3, in_bits, 8, 24, form=form)
    rng = np.random.default_rng(hash((in_bits, form, mode)) % 2**32)
    run_case(dut, bitplane_case(dut, rng, mode), pysim(dut, *pat, seed=9))


def test_bitplane_mutation_is_caught():
    dut = BitPlaneAccumulator(4, 3, 8, 8, 24)
    case = bitplane_case(dut, np.random.default_rng(2), "max")
    bad = mutate(case, "i", beat=0, bit=dut.in_layout["x"].offset + 7)  # x[0] MSB flips
    with pytest.raises(Mismatch, match=r"output 0"):
        run_case(dut, bad, pysim(dut))
