"""SaccadeUnit (SSSA, addition-only) in amaranth.sim, and its reference against the executor."""

import numpy as np
import pytest
import torch
from _core_util import PATTERN_IDS, PATTERNS, pysim

from svf_deploy.compiler import ir, reference
from svf_deploy.hw.cores import SaccadeUnit, core_for
from svf_deploy.hw.cores.sssa import shift_add_terms
from svf_deploy.sim.cases import MODES, mutate, run_case, sssa_case
from svf_deploy.sim.check import Mismatch

SETTINGS = {
    "decay-hard": dict(gains=(3, 5, 1, 7), theta=40, frac_bits=1, leak_shift=1, decay_input=True, reset="hard"),
    "nodecay-soft-neg": dict(gains=(2, -3, 0, 6), theta=25, frac_bits=0, leak_shift=2, decay_input=False,
                             reset="soft"),
}


def make(key):
    return SaccadeUnit(d=4, tokens=5, mem_bits=16, **SETTINGS[key])


def test_shift_add_terms():
    for g in (0, 1, 6, 13, -13, 255):
        assert sum(1 << j for j in shift_add_terms(g)) == abs(g)


@pytest.mark.parametrize("key", list(SETTINGS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pat", PATTERNS, ids=PATTERN_IDS)
def test_sssa_matches_reference(key, mode, pat):
    dut = make(key)
    run_case(dut, sssa_case(dut, np.random.default_rng(hash((key, mode)) % 2**32), mode),
             pysim(dut, *pat, seed=6))


def test_sssa_mutation_is_caught():
    dut = make("decay-hard")
    case = sssa_case(dut, np.random.default_rng(2), "ones")
    bad = mutate(case, "i", beat=0, bit=dut.in_layout["kq"].offset)  # one K spike of step 0
    with pytest.raises(Mismatch, match=r"token 0 t=0"):
        run_case(dut, bad, pysim(dut))


def _sssa_graph(T, heads=2, C=4, H=2, W=3, gain=(3, -2, 5)):
    rng = np.random.default_rng(0)
    nodes = [ir.Input("x", (), shape=(1, H, W), bits=8)]
    for b in "qkv":
        nodes.append(ir.Conv(f"c{b}", ("x",), weight=rng.integers(-3, 4, (C, 1, 1, 1)),
                             out_scale=np.ones(C), acc_bits=14))
        nodes.append(ir.IntLIF(f"l{b}", (f"c{b}",), theta=rng.integers(20, 80, C),
                               bias=np.zeros(C, np.int64), polarity=np.ones(C, np.int64), mem_bits=16))
    s = ir.SSSA("s", ("lq", "lk", "lv"), heads=heads, gain=np.array(gain[:T], np.int64), sal_tau=2.0,
                sal_theta=6, sal_frac_bits=1, mem_bits=16)
    nodes.append(s)
    return ir.Graph(tuple(nodes), ("s",), "integer", {"T": T})


def test_reference_and_core_equal_the_executor():
    T, heads, C = 3, 2, 4
    g = _sssa_graph(T, heads, C)
    frames = torch.rand(T, 1, 1, 2, 3, generator=torch.Generator().manual_seed(3))
    res = reference.run(g, frames, record=True)
    d = C // heads
    tok = lambda z, h: z[:, 0, h * d:(h + 1) * d].reshape(T, d, -1).transpose(0, 2, 1)  # noqa: E731
    q, k, v = (res.values[n].numpy() for n in ("lq", "lk", "lv"))
    want_y = res.values["s"].numpy()
    want_h = res.membranes["s"].numpy()  # [T, B, heads, N]
    assert want_y.any()
    dut = core_for(g.node("s"), g, reference.bounds(g, T))
    assert isinstance(dut, SaccadeUnit)
    for h in range(heads):
        case = sssa_case(dut, None, q=tok(q, h), k=tok(k, h), v=tok(v, h))
        assert np.array_equal(case.meta["H"], want_h[:, 0, h])
        assert all(e["y"] == int(sum(int(b) << j for j, b in enumerate(tok(want_y, h)[t, n])))
                   for e, (n, t) in zip(case.expected["o"], [(n, t) for n in range(6) for t in range(T)]))
        run_case(dut, case, pysim(dut, 0.8, 0.7))
