"""cocotb testbench: drive packed beats into a core's input streams, record its outputs.

Loaded by :class:`svf_deploy.sim.verilator.VerilatorBuild.run`. Inputs come from the npz
in ``SVF_VECTORS`` (hex payload words per input stream, the per-cycle ``offer``/``ready``
coin flips); the received payloads go to ``SVF_RESULTS``. Timing discipline: every
driven signal changes just after a rising edge, and handshakes are sampled at the falling
edge (between the two nothing changes), so the combinational ``ready`` read is the one
the clock edge will see. The comparison with the reference happens in pytest, which
knows the coordinates of every beat.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge


@cocotb.test()
async def stream_run(dut):
    z = np.load(os.environ["SVF_VECTORS"])
    in_names = [str(s) for s in z["in_names"].tolist()]
    out_names = [str(s) for s in z["out_names"].tolist()]
    expect = dict(zip(out_names, (int(n) for n in z["expect"].tolist())))
    beats = {k: [int(h, 16) for h in z[f"in:{k}"].tolist()] for k in in_names}
    offer, ready = z["offer"], z["ready"]

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for k in in_names:
        getattr(dut, f"{k}__valid").value = 0
    for k in out_names:
        getattr(dut, f"{k}__ready").value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    idx = {k: 0 for k in in_names}
    holding = {k: False for k in in_names}
    got: dict[str, list[str]] = {k: [] for k in out_names}
    for cyc in range(len(offer)):
        await RisingEdge(dut.clk)
        for k in in_names:
            if not holding[k] and idx[k] < len(beats[k]) and offer[cyc]:
                holding[k] = True
                getattr(dut, f"{k}__payload").value = beats[k][idx[k]]
            getattr(dut, f"{k}__valid").value = int(holding[k])
        for k in out_names:
            getattr(dut, f"{k}__ready").value = int(ready[cyc])
        await FallingEdge(dut.clk)
        for k in in_names:
            if holding[k] and int(getattr(dut, f"{k}__ready").value):
                holding[k] = False
                idx[k] += 1
        for k in out_names:
            if int(getattr(dut, f"{k}__valid").value) and int(getattr(dut, f"{k}__ready").value):
                got[k].append(format(int(getattr(dut, f"{k}__payload").value), "x"))
        if all(len(got[k]) >= expect[k] for k in out_names) and \
                all(idx[k] == len(beats[k]) for k in in_names):
            break
    np.savez(os.environ["SVF_RESULTS"], **{f"out:{k}": np.array(v, dtype="U") for k, v in got.items()})
    assert all(len(got[k]) == expect[k] for k in out_names), (
        f"watchdog: after {len(offer)} cycles got { {k: len(v) for k, v in got.items()} } "
        f"of {expect} output beats")
