"""AttentionUnit (SDHA / SDSA by up/down counting) in amaranth.sim against ref_attention_head."""

import numpy as np
import pytest
from _core_util import PATTERN_IDS, PATTERNS, pysim

from svf_deploy.hw.cores import AttentionUnit
from svf_deploy.sim.cases import MODES, attention_case, mutate, run_case
from svf_deploy.sim.check import Mismatch


@pytest.mark.parametrize("kind", ["sdha", "sdsa"])
@pytest.mark.parametrize("d", [1, 4, 7])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pat", PATTERNS, ids=PATTERN_IDS)
def test_attention_matches_reference(kind, d, mode, pat):
    tokens = 10
    dut = AttentionUnit(d=d, kv_bits=6, y_bits=10, kind=kind)
    rng = np.random.default_rng(hash((kind, d, mode)) % 2**32)
    run_case(dut, attention_case(dut, rng, mode, tokens=tokens), pysim(dut, *pat, seed=4))


def test_attention_counters_reach_the_bound():
    """All-ones Q/K/V: kv = N everywhere, y = d*N (sdha): the y_bits bound reached exactly."""
    d, n = 4, 15
    dut = AttentionUnit(d=d, kv_bits=5, y_bits=8, kind="sdha")
    case = attention_case(dut, np.random.default_rng(0), "ones", tokens=n, sets=1)
    assert case.expected["o"][0]["y"] == [d * n] * d
    run_case(dut, case, pysim(dut, 0.7, 0.6))


def test_attention_mutation_is_caught():
    dut = AttentionUnit(d=4, kv_bits=6, y_bits=10)
    case = attention_case(dut, np.random.default_rng(5), "random")
    bad = mutate(case, "i", beat=2, bit=dut.in_layout["v"].offset + 1)  # one V spike of token 2
    with pytest.raises(Mismatch, match=r"set 0 token"):
        run_case(dut, bad, pysim(dut))
