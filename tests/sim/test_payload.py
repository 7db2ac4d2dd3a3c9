"""Payload packing (the integers both simulators speak) and the pysim watchdog."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from hypothesis import given
from hypothesis import strategies as st

from svf_deploy.hw.cores import SumPool
from svf_deploy.sim.payload import pack, unpack
from svf_deploy.sim.pysim import run_streams

LAYOUT = data.StructLayout({"a": signed(5), "v": data.ArrayLayout(data.ArrayLayout(signed(3), 2), 3),
                            "f": unsigned(1)})


@given(st.integers(-16, 15), st.lists(st.integers(-4, 3), min_size=6, max_size=6), st.integers(0, 1))
def test_pack_roundtrip(a, v, f):
    val = {"a": a, "v": [v[0:2], v[2:4], v[4:6]], "f": f}
    word = pack(LAYOUT, val)
    assert 0 <= word < 1 << LAYOUT.size
    assert unpack(LAYOUT, word) == val


def test_pack_refuses_values_that_do_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        pack(LAYOUT, {"a": 16, "v": [[0, 0]] * 3, "f": 0})


def test_watchdog_reports_missing_beats():
    dut = SumPool(in_bits=4, out_bits=6)
    beat = pack(dut.in_layout, {"x": [1], "first": 1, "last": 0})  # never a `last`: no output
    with pytest.raises(TimeoutError, match="watchdog"):
        run_streams(dut, {"i": [beat]}, {"o": 1}, max_cycles=50)
