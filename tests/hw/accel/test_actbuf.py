"""The banked activation buffer against a word-array model (Amaranth simulator)."""

import numpy as np
import pytest

from svf_deploy.hw.accel.actbuf import ActBuffer


def _write(model: list, wa: int, data: list, mode: int, mask: int) -> None:
    """The buffer's write port on a plain list: ``w_en`` (mode 1) writes word 0, ``mask``
    writes word ``i`` of the run for each set bit ``i``, modulo the depth."""
    if mode == 1:
        model[wa] = data[0]
    for i in range(len(data)):
        if mask >> i & 1:
            model[(wa + i) % len(model)] = data[i]


@pytest.mark.parametrize("u", [1, 2, 4])
def test_banked_buffer_matches_a_flat_word_array(u):
    """Random single-word writes and masked runs of ``u`` words at every alignment, with
    reads on both ports each cycle: each port returns the run ``A .. A+u-1`` and its word
    ``A`` one cycle later, the old contents when written in the same cycle (as the unbanked
    buffer), and port 0 holds its outputs while ``r0_en`` is low; the store port (port 2, on
    the third copy) reads as port 0 with its own address and enable."""
    from amaranth.sim import Simulator

    depth = 64
    dut = ActBuffer(depth, u, store_style="block")
    rng = np.random.default_rng(u)
    model = [0] * depth
    checked = {"runs": 0, "held": 0, "offsets": set(), "offsets1": set(), "held2": 0, "offsets2": set()}

    def pack(ws):
        return sum(int(w) << (32 * i) for i, w in enumerate(ws))

    async def tb(ctx):
        exp0 = exp2 = None
        for _ in range(400):
            mode = int(rng.integers(3))                 # 0 no write, 1 one word, 2 masked run
            wa = int(rng.integers(depth))
            data = [int(x) for x in rng.integers(0, 2**32, u, dtype=np.uint64)]
            mask = int(rng.integers(1, 2**u)) if mode == 2 else 0
            a0, a1 = int(rng.integers(depth)), int(rng.integers(depth))
            en0 = bool(rng.random() < 0.8)
            a2, en2 = int(rng.integers(depth)), bool(rng.random() < 0.7)
            ctx.set(dut.r2_addr, a2)
            ctx.set(dut.r2_en, int(en2))
            new2 = [model[(a2 + i) % depth] for i in range(u)] if en2 else exp2
            ctx.set(dut.w_addr, wa)
            ctx.set(dut.w_data, pack(data))
            ctx.set(dut.w_en, int(mode == 1))
            ctx.set(dut.w_mask, mask)
            ctx.set(dut.r0_addr, a0)
            ctx.set(dut.r0_en, int(en0))
            ctx.set(dut.r1_addr, a1)
            new0 = [model[(a0 + i) % depth] for i in range(u)] if en0 else exp0
            new1 = [model[(a1 + i) % depth] for i in range(u)]
            _write(model, wa, data, mode, mask)
            await ctx.tick()
            if new0 is not None:
                assert ctx.get(dut.r0_beat) == pack(new0)
                assert ctx.get(dut.r0_data) == new0[0]
                checked["runs"] += 1
                checked["held"] += not en0
                checked["offsets"].add(a0 % u)
            assert ctx.get(dut.r1_beat) == pack(new1)
            assert ctx.get(dut.r1_data) == new1[0]
            checked["offsets1"].add(a1 % u)
            if new2 is not None:
                assert ctx.get(dut.r2_beat) == pack(new2)
                assert ctx.get(dut.r2_data) == new2[0]
                checked["held2"] += not en2
                checked["offsets2"].add(a2 % u)
            exp0, exp2 = new0, new2

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert checked["runs"] > 300 and checked["held"] > 20 and checked["held2"] > 20
    assert checked["offsets"] == checked["offsets1"] == checked["offsets2"] == set(range(u))
    assert sum(1 for w in model if w) > depth // 2     # the writes landed


def test_configurations_the_banks_cannot_hold_are_rejected():
    from svf_deploy.hw.accel import AccelConfig
    from svf_deploy.models.errors import HardwareError

    with pytest.raises(HardwareError, match="act_depth 65535 must be a multiple of the 2"):
        AccelConfig(name="x", act_depth=65535, axi_data_width=64)
    with pytest.raises(HardwareError, match="p_o \\* 8 = 32 bits must be a multiple of axi_data_width 64"):
        AccelConfig(name="x", p_o=4, axi_data_width=64)
    assert AccelConfig(name="x", p_o=4, act_depth=65535, axi_data_width=32).units_per_beat == 1


def test_ci_engine_banks_its_buffer_and_has_no_multipliers():
    """The CI engine's RTLIL: ``u`` activation banks of ``act_depth / u`` words (and as many
    1-bit occupancy-flag memories), and no
    multiplier, divider or modulo cell anywhere (the banks' rotations are multiplexers)."""
    import re

    from amaranth.back import rtlil

    from svf_deploy.hw.accel import CI
    from svf_deploy.hw.accel.engine import Engine

    txt = rtlil.convert(Engine(CI))
    mems = re.findall(r"^\s*memory width (\d+) size (\d+) \\(\S+)", txt, re.M)
    u = CI.units_per_beat
    assert sorted((n, int(w), int(s)) for w, s, n in mems if n.startswith("bank")) == \
        [(f"bank{b}", 32, CI.act_depth // u) for b in range(u)]
    # the occupancy flags: one bit per word beside each bank
    assert sorted((n, int(w), int(s)) for w, s, n in mems if n.startswith("flag")) == \
        [(f"flag{b}", 1, CI.act_depth // u) for b in range(u)]
    cells = set(re.findall(r"^\s*cell \$(\w+)", txt, re.M))
    assert "add" in cells and "memwr_v2" in cells
    assert not cells & {"mul", "div", "mod", "divfloor", "modfloor", "pow"}


@pytest.mark.parametrize("u", [1, 2, 4])
def test_flag_ports_read_runs_of_word_non_zero_flags(u):
    """Occupancy flags: random writes (single words, masked runs, zero and non-zero data,
    overwrites of non-zero words by zero) and two flag ports reading runs at every
    alignment: bit ``i`` of a port's run is ``word(A + i) != 0`` one cycle later, with the
    old contents for a word written in the same cycle (as the data ports)."""
    from amaranth.sim import Simulator

    depth = 32
    dut = ActBuffer(depth, u, flags=2)
    rng = np.random.default_rng(10 + u)
    model = [0] * depth
    seen = {"set": 0, "clear": 0, "offsets": set()}

    async def tb(ctx):
        for _ in range(400):
            mode = int(rng.integers(3))
            wa = int(rng.integers(depth))
            # half the written words are zero, so flags are cleared as well as set
            data = [int(x) * int(rng.integers(2)) for x in rng.integers(1, 2**32, u, dtype=np.uint64)]
            mask = int(rng.integers(1, 2**u)) if mode == 2 else 0
            fa = [int(rng.integers(depth)) for _ in range(2)]
            ctx.set(dut.w_addr, wa)
            ctx.set(dut.w_data, sum(w << (32 * i) for i, w in enumerate(data)))
            ctx.set(dut.w_en, int(mode == 1))
            ctx.set(dut.w_mask, mask)
            for k in range(2):
                ctx.set(dut.flag_port(k)[0], fa[k])
            want = [sum(int(model[(a + i) % depth] != 0) << i for i in range(u)) for a in fa]
            _write(model, wa, data, mode, mask)
            await ctx.tick()
            for k in range(2):
                got = ctx.get(dut.flag_port(k)[1])
                assert got == want[k], (k, fa[k], got, want[k])
                seen["set"] += bin(got).count("1")
                seen["clear"] += u - bin(got).count("1")
                seen["offsets"].add(fa[k] % u)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen["set"] > 100 and seen["clear"] > 100 and seen["offsets"] == set(range(u))


def test_scan_width_is_validated():
    from svf_deploy.hw.accel import CI, PRODUCTION, AccelConfig
    from svf_deploy.models.errors import HardwareError

    for bad in (0, 1, 3, 7, "4"):
        with pytest.raises(HardwareError, match="AccelConfig.scan must be an even int >= 2"):
            AccelConfig(name="x", scan=bad)
    assert AccelConfig(name="x").scan == 2 and CI.scan == 4 and PRODUCTION.scan == 8
