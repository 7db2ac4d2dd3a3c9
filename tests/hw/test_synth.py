"""Yosys synthesis (synth_xilinx -family xcup): cell counting, zero multipliers, zero-init stripping."""

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from svf_deploy.hw.production import PRODUCTION, SMALL
from svf_deploy.hw.synth import DEEP_CELLS, depth_profile, strip_zero_init, synthesize, to_verilog


class _Multiplier(wiring.Component):
    """Negative control: a real multiplier must be counted."""

    a: In(signed(8))
    b: In(signed(8))
    y: Out(signed(16))

    def elaborate(self, platform):
        m = Module()
        r = Signal(signed(16))
        m.d.sync += r.eq(self.a * self.b)
        m.d.comb += self.y.eq(r)
        return m


class _Mem(wiring.Component):
    addr: In(4)
    data: Out(8)

    def __init__(self, init):
        self._init = init
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=8, depth=16, init=self._init)
        rp = mem.read_port()
        m.d.comb += [rp.addr.eq(self.addr), self.data.eq(rp.data)]
        return m


class _Counter(wiring.Component):
    """A 32-bit counter: its only path runs from its register back into it."""

    y: Out(32)

    def elaborate(self, platform):
        m = Module()
        c = Signal(32)
        m.d.sync += c.eq(c + 1)
        m.d.comb += self.y.eq(c)
        return m


class _Chain(wiring.Component):
    """Three dependent 32-bit add-xor steps, combinational or with a register after each."""

    x: In(32 * 4)
    y: Out(32)

    def __init__(self, piped: bool):
        self.piped = piped
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        acc = self.x[0:32]
        for i in range(1, 4):
            nxt = Signal(32, name=f"s{i}")
            step = nxt.eq((acc + self.x[32 * i:32 * i + 32])[:32] ^ (acc << 1)[:32])
            if self.piped:
                m.d.sync += step
            else:
                m.d.comb += step
            acc = nxt
        r = Signal(32)
        m.d.sync += r.eq(acc)
        m.d.comb += self.y.eq(r)
        return m


def test_logic_depth_stops_at_registers():
    # ltp through FDRE cells would walk the counter's feedback loop; cut there, the path is
    # the 8 CARRY4 of one 32-bit increment and a LUT
    r = synthesize(_Counter(), "test-counter")
    assert r.ltp_carry == 32 // 4 and r.ltp_carry < r.ltp <= r.ltp_carry + 2
    assert r.ltp_from == "y" and r.deep_bits == 0
    comb, piped = synthesize(_Chain(False), "test-chain"), synthesize(_Chain(True), "test-chain-piped")
    assert (comb.lut, comb.carry) == (piped.lut, piped.carry) and comb.ff < piped.ff
    assert comb.ltp > piped.ltp > 0           # the registers cut the path


def _lut(i, o):
    return {"type": "LUT2", "port_directions": {"I0": "input", "I1": "input", "O": "output"},
            "connections": {"I0": [i], "I1": ["0"], "O": [o]}}


def _ff(d, q):
    return {"type": "FDRE", "port_directions": {"D": "input", "C": "input", "Q": "output"},
            "connections": {"D": [d], "C": [99], "Q": [q]}}


def test_depth_profile_counts_cells_per_endpoint_and_reports_loops():
    # r1 -> 3 LUTs -> r2 -> 1 LUT -> out port; DEEP_CELLS + 1 LUTs from input a -> r3
    cells = {"r1": _ff(10, 1), "l1": _lut(1, 2), "l2": _lut(2, 3), "l3": _lut(3, 4), "r2": _ff(4, 5),
             "l4": _lut(5, 6)}
    n = DEEP_CELLS + 1
    cells |= {f"d{k}": _lut(100 + k, 101 + k) for k in range(n)} | {"r3": _ff(100 + n, 7)}
    mod = {"ports": {"a": {"direction": "input", "bits": [100]}, "y": {"direction": "output", "bits": [6]}},
           "cells": cells,
           "netnames": {"r1": {"hide_name": 0, "bits": [1]}, "r2": {"hide_name": 0, "bits": [5]},
                        "r3": {"hide_name": 0, "bits": [7]}, "x": {"hide_name": 0, "bits": [10]}}}
    p = depth_profile({"modules": {"top": mod}})
    assert p["hist"] == {"0": 1, "1": 1, "3": 1, str(n): 1} and p["max"] == n and p["loop_cells"] == 0
    assert p["endpoints"] == 4 and p["groups"][0] == ["r#", n, 1]
    # a combinational loop is counted, not walked
    mod["cells"] |= {"x1": _lut(200, 201), "x2": _lut(201, 200)}
    assert depth_profile({"modules": {"top": mod}})["loop_cells"] == 2


def test_dsp_form_uses_dsps_as_adders_only():
    r = synthesize(SMALL["pe-dsp small"](), "test-pe-dsp-small")
    assert r.dsp == 4  # 2 lane groups x 2 slices (4 terms, 2 per slice)
    assert r.mul_cells == 0 and r.dsp_mult == 0 and r.multipliers == 0
    assert r.ff >= 2 * 8 * 14  # accumulator + output register


def test_lif_lane_has_no_multiplier():
    r = synthesize(SMALL["intlif small"](), "test-intlif-small")
    assert r.multipliers == 0 and r.dsp == 0 and r.lut > 0 and r.carry > 0


def test_a_multiplier_is_counted():
    r = synthesize(_Multiplier(), "test-multiplier")
    assert r.mul_cells == 1 and r.dsp_mult == 1  # Yosys maps it to a DSP48E2 used as a multiplier


def test_strip_zero_init_keeps_nonzero_memories():
    zero = to_verilog(_Mem([0] * 16))
    assert "initial" in zero and "initial" not in strip_zero_init(zero)
    ones = to_verilog(_Mem([1] * 16))
    assert strip_zero_init(ones) == ones


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PRODUCTION))
def test_production_core_has_no_multiplier(name):
    r = synthesize(PRODUCTION[name][1](), name.split(" ")[0] + "-prod")
    assert r.multipliers == 0
    if name.startswith("pe-dsp"):
        assert r.dsp == 16 * 8  # 64 lanes / 4 x 16 terms / 2


def test_a_kept_result_is_recorded_for_exactly_its_rtl(tmp_path, monkeypatch):
    import json

    from svf_deploy.hw import synth

    monkeypatch.setattr(synth, "RECORD", tmp_path / "record.json")
    r = synthesize(_Mem([1, 2, 3]), "mem3", build_root=tmp_path, keep=True)
    h = synth.rtl_hash(strip_zero_init(to_verilog(_Mem([1, 2, 3]), "top")))
    e = synth.recorded("mem3", h)
    assert e is not None and e["rtl_hash"] == h and "Yosys" in e["yosys"]
    assert (e["lut"], e["ff"], e["bram36"], e["multipliers"]) == (r.lut, r.ff, r.bram36, 0)
    other = synth.rtl_hash(strip_zero_init(to_verilog(_Mem([1, 2, 4]), "top")))
    assert other != h and synth.recorded("mem3", other) is None      # another RTL misses it
    assert list(json.loads((tmp_path / "record.json").read_text())) == [f"mem3-{h}"]
    # a new RTL's record replaces the old one's (one entry per design)
    synthesize(_Mem([1, 2, 4]), "mem3", build_root=tmp_path, keep=True)
    assert list(json.loads((tmp_path / "record.json").read_text())) == [f"mem3-{other}"]


def test_zcu104_resources_use_a_record_only_for_the_same_rtl(tmp_path, monkeypatch):
    import json

    from svf_deploy.hw import synth
    from svf_deploy.hw.accel import PRODUCTION as ENGINE
    from svf_deploy.targets.zcu104 import _cached_yosys

    text = "module top(input a, output b);\n  assign b = a;\nendmodule\n"
    h = synth.rtl_hash(strip_zero_init(text))
    entry = {"lut": 123, "ff": 45, "dsp": 6, "bram36": 7.0, "uram": 8, "mul_cells": 0, "dsp_mult": 0,
             "date": "2026-11-27"}
    (tmp_path / "record.json").write_text(json.dumps({f"accel-{ENGINE.name}-{h}": entry}))
    monkeypatch.setattr(synth, "RECORD", tmp_path / "record.json")
    r = _cached_yosys(ENGINE, text)
    assert (r["lut"], r["dsp"], r["multipliers"]) == (123, 6, 0) and h in r["source"]
    assert _cached_yosys(ENGINE, text.replace("a;", "~a;")) is None
