"""SimdAcc: the behavioural twin against a numpy model of the DSP48E2 TWO24 accumulate, and
the Instance flavour through Yosys (exactly N DSP48E2, no multiplier)."""

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from svf_deploy.hw.accel.simd import LANE_BITS, SimdAcc

M24 = (1 << LANE_BITS) - 1


def model(p: int, clr: int, g0: int, g1: int, ab: int, c: int) -> int:
    """``P' = (clr ? 0 : P) + (g0 ? AB : 0) + (g1 ? C : 0)`` per 24-bit lane, mod 2**24."""
    out = 0
    for k in range(2):
        lane = lambda v: (v >> (LANE_BITS * k)) & M24  # noqa: E731
        s = (0 if clr else lane(p)) + (lane(ab) if g0 else 0) + (lane(c) if g1 else 0)
        out |= (s & M24) << (LANE_BITS * k)
    return out


def _vectors(n: int, seed: int):
    rng = np.random.default_rng(seed)
    big = [M24, M24 - 1, 1 << 23, (1 << 23) - 1]      # near the lane top: forces wraps
    vs = []
    for _ in range(n):
        lanes = [int(rng.choice(big)) if rng.random() < 0.3 else int(rng.integers(0, 1 << 24))
                 for _ in range(4)]
        ab = lanes[0] | lanes[1] << 24
        c = lanes[2] | lanes[3] << 24
        vs.append((int(rng.random() < 0.1), int(rng.integers(2)), int(rng.integers(2)), ab, c))
    return vs


def test_twin_matches_the_numpy_model_including_lane_wrap():
    dut = SimdAcc(instance=False)
    vecs = _vectors(600, 1)
    got = []

    async def bench(ctx):
        for clr, g0, g1, ab, c in vecs:
            ctx.set(dut.clr, clr)
            ctx.set(dut.g0, g0)
            ctx.set(dut.g1, g1)
            ctx.set(dut.ab, ab)
            ctx.set(dut.c, c)
            await ctx.tick()
            got.append(ctx.get(dut.p))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    p, want, wraps = 0, [], 0
    for clr, g0, g1, ab, c in vecs:
        nxt = model(p, clr, g0, g1, ab, c)
        base = [0 if clr else (p >> 24 * k) & M24 for k in range(2)]
        wraps += sum(base[k] + (((ab >> 24 * k) & M24) if g0 else 0) + (((c >> 24 * k) & M24) if g1 else 0)
                     > M24 for k in range(2))
        want.append(nxt)
        p = nxt
    assert wraps > 50                 # the vectors do exercise the lane wrap
    assert got == want
    # a carry out of lane 0 never reaches lane 1
    assert model(M24, 0, 1, 0, 1, 0) == 0 and model(0, 0, 1, 1, M24, 1) == 0


def test_one_lane_bit_flip_is_caught():
    """The comparison above can fail: a model with the lanes' carry chained differs."""
    vecs = _vectors(50, 2)
    p = q = 0
    differs = False
    for clr, g0, g1, ab, c in vecs:
        p = model(p, clr, g0, g1, ab, c)
        q48 = ((0 if clr else q) + (ab if g0 else 0) + (c if g1 else 0)) & ((1 << 48) - 1)
        differs |= q48 != p
        q = q48
    assert differs


class _Many(wiring.Component):
    """N SimdAcc instances side by side (their outputs XOR-folded so none is optimised away)."""

    def __init__(self, n: int):
        self.n = n
        super().__init__({"clr": In(1), "g0": In(n), "g1": In(n), "ab": In(48), "c": In(48), "p": Out(48)})

    def elaborate(self, platform):
        m = Module()
        acc = 0
        for i in range(self.n):
            a = m.submodules[f"a{i}"] = SimdAcc(instance=True)
            m.d.comb += [a.clr.eq(self.clr), a.g0.eq(self.g0[i]), a.g1.eq(self.g1[i]),
                         a.ab.eq(self.ab.rotate_left(i)), a.c.eq(self.c)]
            acc = acc ^ a.p
        m.d.comb += self.p.eq(acc)
        return m


def test_instance_flavour_synthesises_to_dsp48e2_without_multipliers():
    from svf_deploy.hw.synth import synthesize

    r = synthesize(_Many(3), "test-simdacc-3")
    assert r.dsp == 3
    assert r.mul_cells == 0 and r.dsp_mult == 0
    from svf_deploy.hw.synth import to_verilog

    text = to_verilog(SimdAcc(True), "top")
    assert '.USE_SIMD("TWO24")' in text and '.USE_MULT("NONE")' in text and ".PREG(32'd1)" in text


@pytest.mark.parametrize("clr,g0,g1,want", [(0, 1, 1, 0b0_0010_1111), (1, 1, 0, 0b0_0000_0011),
                                            (0, 0, 0, 0b0_0010_0000), (1, 0, 1, 0b0_0000_1100)])
def test_opmode_encoding(clr, g0, g1, want):
    """UG579: X = OPMODE[1:0] (11: A:B), Y = [3:2] (11: C), Z = [6:4] (010: P), W = [8:7] = 0."""
    from amaranth import Signal
    from amaranth.sim import Simulator as S

    from svf_deploy.hw.accel.simd import opmode

    m = Module()
    a, b, cc = Signal(), Signal(), Signal()
    o = Signal(9)
    m.d.comb += o.eq(opmode(a, b, cc))
    got = []

    async def bench(ctx):
        ctx.set(a, clr)
        ctx.set(b, g0)
        ctx.set(cc, g1)
        got.append(ctx.get(o))

    sim = S(m)
    sim.add_testbench(bench)
    sim.run()
    assert got[0] == want
