"""Yosys totals of the production engine against the XCZU7EV (slow: tens of minutes)."""

import pytest

from svf_deploy.hw.accel import PRODUCTION, XCZU7EV
from svf_deploy.hw.accel.engine import Engine
from svf_deploy.hw.accel.verilog import skip_zero_meminit


@pytest.mark.slow
def test_production_engine_fits_the_xczu7ev_without_multipliers():
    from svf_deploy.hw.synth import synthesize

    with skip_zero_meminit():
        r = synthesize(Engine(PRODUCTION, dsp_instance=True), f"accel-{PRODUCTION.name}", timeout=7200)
    assert r.mul_cells == 0 and r.dsp_mult == 0          # addition only, also on address paths
    assert r.dsp == PRODUCTION.dsps                       # the CONV array: DSP48E2 SIMD adders
    for k, cap in XCZU7EV.items():
        assert getattr(r, k) <= cap, (k, getattr(r, k), cap)
    assert r.uram > 0 and r.bram36 > 0                   # the buffers map to block memories
    assert r.ltp > r.ltp_carry >= 0 and r.deep_bits >= 0  # the logic depth was measured


def test_verilog_skips_only_all_zero_memory_init():
    from amaranth import Module
    from amaranth.lib import memory, wiring
    from amaranth.lib.wiring import Out

    from svf_deploy.hw.accel.verilog import to_verilog

    class Two(wiring.Component):
        o: Out(8)

        def elaborate(self, platform):
            m = Module()
            m.submodules.z = z = memory.Memory(shape=8, depth=64, init=[])
            m.submodules.n = n = memory.Memory(shape=8, depth=4, init=[1, 2, 3, 4])
            rz, rn = z.read_port(), n.read_port()
            m.d.comb += self.o.eq(rz.data + rn.data)
            return m

    v = to_verilog(Two(), "two")
    assert "8'h04" in v or "8'd4" in v          # the non-zero init survives
    assert v.count("initial begin") == 1        # the all-zero one is gone
