"""cocotb testbench of the whole engine (top ``svf_accel_sim``: engine + HDL AXI RAM).

The DDR image is preloaded by the RAM model (``+DDR_INIT``); the test programs the engine
over AXI4-Lite exactly as the host driver does (:mod:`svf_deploy.hw.driver` register map),
waits for the interrupt under a cycle watchdog, reads ``STATUS``/``CYCLES``, and makes the
RAM model dump DDR (``+DDR_DUMP``), and records the RAM's sticky AXI
protocol-violation flag (``proto_err``). Results go to the JSON file named by ``SVF_RESULTS``.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout

from svf_deploy.hw.accel import isa

PERIOD_NS = 10


async def axil_write(dut, addr: int, data: int) -> None:
    dut.s_axil_awaddr.value = addr
    dut.s_axil_awvalid.value = 1
    dut.s_axil_wdata.value = data
    dut.s_axil_wstrb.value = 0xF
    dut.s_axil_wvalid.value = 1
    dut.s_axil_bready.value = 1
    aw = w = False
    while not (aw and w):
        await RisingEdge(dut.clk)
        aw = aw or bool(dut.s_axil_awready.value) and bool(dut.s_axil_awvalid.value)
        w = w or bool(dut.s_axil_wready.value) and bool(dut.s_axil_wvalid.value)
        if aw:
            dut.s_axil_awvalid.value = 0
        if w:
            dut.s_axil_wvalid.value = 0
    while True:
        await RisingEdge(dut.clk)
        if dut.s_axil_bvalid.value:
            break
    await RisingEdge(dut.clk)
    dut.s_axil_bready.value = 0


async def axil_read(dut, addr: int) -> int:
    dut.s_axil_araddr.value = addr
    dut.s_axil_arvalid.value = 1
    dut.s_axil_rready.value = 1
    while True:
        await RisingEdge(dut.clk)
        if dut.s_axil_arready.value:
            dut.s_axil_arvalid.value = 0
            break
    while True:
        if dut.s_axil_rvalid.value:
            v = int(dut.s_axil_rdata.value)
            await RisingEdge(dut.clk)
            dut.s_axil_rready.value = 0
            return v
        await RisingEdge(dut.clk)


@cocotb.test()
async def run_program(dut):
    out = os.environ["SVF_RESULTS"]
    max_cycles = int(os.environ.get("SVF_MAX_CYCLES", "50000000"))
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    for s in ("awaddr", "awvalid", "wdata", "wstrb", "wvalid", "bready", "araddr", "arvalid", "rready"):
        getattr(dut, f"s_axil_{s}").value = 0
    dut.dump.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    ident = await axil_read(dut, isa.REG_ID)
    await axil_write(dut, isa.REG_PROG, int(os.environ.get("SVF_PROG_ADDR", "0")))
    await axil_write(dut, isa.REG_IRQ_EN, 1)
    await axil_write(dut, isa.REG_CTRL, 1)
    timed_out = False
    try:
        await with_timeout(RisingEdge(dut.irq), max_cycles * PERIOD_NS, "ns")
    except SimTimeoutError:
        timed_out = True
    status = await axil_read(dut, isa.REG_STATUS)
    cycles = await axil_read(dut, isa.REG_CYCLES)
    pc = await axil_read(dut, isa.REG_PC)
    await axil_write(dut, isa.REG_IRQ_STAT, 1)
    irq_after = int(dut.irq.value)
    proto_err = int(dut.proto_err.value)
    dut.dump.value = 1
    await RisingEdge(dut.clk)
    dut.dump.value = 0
    await ClockCycles(dut.clk, 2)
    with open(out, "w") as fh:
        json.dump({"id": ident, "status": status, "cycles": cycles, "pc": pc, "timed_out": timed_out,
                   "irq_cleared": irq_after == 0, "proto_err": proto_err}, fh)
    assert not timed_out, f"watchdog: no interrupt within {max_cycles} cycles (pc={pc}, status={status})"
