"""Board files (platform, Vivado Tcl, XDC) and the host driver (with fake MMIO / DDR)."""

import re

import numpy as np
import pytest

from svf_deploy.hw.accel import CI, PRODUCTION, isa
from svf_deploy.hw.accel.engine import axi_signature
from svf_deploy.hw.accel.program import emit
from svf_deploy.hw.board import ZCU104Platform, write_project, xdc
from svf_deploy.hw.board.vivado import build_tcl
from svf_deploy.hw.driver import Accelerator, load_program


def test_platform_is_the_zcu104_part():
    p = ZCU104Platform()
    assert (p.device, p.package, p.speed, p.family) == ("xczu7ev", "ffvc1156", "2-e", "ultrascaleplus")
    lines = xdc().strip().splitlines()[1:]
    assert [re.search(r"PACKAGE_PIN (\w+)", l).group(1) for l in lines] == ["D5", "D6", "A5", "B5"]
    assert all("LVCMOS33" in l and f"status[{i}]" in l for i, l in enumerate(lines))


def test_tcl_builds_ps_ddr_hp_clock_and_engine():
    tcl = build_tcl(PRODUCTION)
    assert tcl.count("{") == tcl.count("}") and tcl.count("[") == tcl.count("]")
    assert "create_project" in tcl and "-part $part" in tcl and "set part xczu7ev-ffvc1156-2-e" in tcl
    for needle in ("xilinx.com:ip:zynq_ultra_ps_e", "apply_board_preset", "CONFIG.PSU__USE__S_AXI_GP2 {1}",
                   "CONFIG.PSU__SAXIGP2__DATA_WIDTH {128}", "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {250}",
                   "create_bd_cell -type module -reference svf_accel accel", "xilinx.com:ip:proc_sys_reset",
                   "ps/S_AXI_HP0_FPD", "ps/M_AXI_HPM0_FPD", "[get_bd_pins ps/pl_ps_irq0]",
                   "assign_bd_address", "validate_bd_design", "launch_runs impl_1 -to_step write_bitstream",
                   "svf_accel.hwh"):
        assert needle in tcl, needle
    # every engine pin the script names is a port of the RTL; the AXI interfaces are inferred
    ports = set(axi_signature(PRODUCTION)) | {"clk", "rst"}
    for pin in re.findall(r"accel/(\w+)", tcl):
        assert pin in ports or any(p.startswith(pin + "_") for p in ports), pin
    assert "FREQ_HZ {250000000}" in tcl


def test_project_files(tmp_path):
    names = write_project(tmp_path / "v", CI, "module svf_accel(); endmodule\n")
    assert sorted(names) == ["build.tcl", "svf_accel.v", "svf_accel.xdc"]
    assert (tmp_path / "v" / "svf_accel.xdc").read_text() == xdc()


class FakeMMIO:
    """Registers of an engine that 'finishes' immediately, recording every access."""

    def __init__(self, cfg, status=isa.STATUS_DONE, version=isa.VERSION):
        self.regs = {isa.REG_ID: isa.MAGIC, isa.REG_VERSION: version, isa.REG_STATUS: 0,
                     isa.REG_CONFIG: cfg.p_o | cfg.p_t << 16, isa.REG_CYCLES: 1234, isa.REG_PC: 7}
        self.done_status = status
        self.writes = []

    def read(self, off):
        return self.regs.get(off, 0)

    def write(self, off, val):
        self.writes.append((off, val))
        if off == isa.REG_CTRL and val & 1:
            self.regs[isa.REG_STATUS] = self.done_status


class FakeBuffer:
    def __init__(self, n, base):
        self.data = np.zeros(n, np.uint8)
        self.physical_address = base

    def __array__(self, dtype=None, copy=None):
        return self.data


def test_driver_relocates_loads_and_starts(bundled, tmp_path):
    graph, golden, _ = bundled
    prog = emit(graph, CI)
    prog.save(tmp_path)
    loaded = load_program(tmp_path)
    assert np.array_equal(loaded.words(), prog.words()) and loaded.stored == prog.stored
    # ddr_image.bin holds program, weights and parameters; the loader zero-fills the rest
    assert (tmp_path / "ddr_image.bin").stat().st_size == prog.regions["input"][0] < prog.image.size
    assert np.array_equal(loaded.image, prog.ddr_image())
    base = 0x6000_0000
    mmio = FakeMMIO(CI)
    buf = FakeBuffer(prog.image.size + 64, base)
    acc = Accelerator(loaded, mmio, buf)
    codes = golden.values[graph.input.name][:, 0].numpy()
    out = acc.run(codes)
    assert [w[0] for w in mmio.writes] == [isa.REG_PROG, isa.REG_IRQ_EN, isa.REG_CTRL, isa.REG_IRQ_STAT]
    assert mmio.writes[0][1] == base and acc.last_cycles == 1234
    ddr = buf.data[: prog.image.size]
    assert np.array_equal(ddr, prog.ddr_image(codes, base=base))
    first_ddr = next(f["ddr"] for op, f, _ in prog.descriptors if op == isa.OP_LOAD)
    load_row = next(i for i, (op, _, _) in enumerate(prog.descriptors) if op == isa.OP_LOAD)
    assert ddr[load_row * isa.DESC_BYTES:][:isa.DESC_BYTES].view("<u4")[1] == base + first_ddr
    assert set(out) == set(prog.stored)


def test_driver_refuses_wrong_engine_and_reports_errors(bundled):
    graph, golden, _ = bundled
    prog = emit(graph, CI)
    with pytest.raises(RuntimeError, match="P_o=128"):
        Accelerator(prog, FakeMMIO(PRODUCTION), FakeBuffer(prog.image.size, 0))
    with pytest.raises(RuntimeError, match="ISA version 99"):
        Accelerator(prog, FakeMMIO(CI, version=99), FakeBuffer(prog.image.size, 0))
    acc = Accelerator(prog, FakeMMIO(CI, status=isa.STATUS_DONE | isa.STATUS_ERROR), FakeBuffer(prog.image.size, 0))
    with pytest.raises(RuntimeError, match="error at descriptor 7"):
        acc.run(golden.values[graph.input.name][:, 0].numpy())


def test_driver_refuses_an_image_that_does_not_match_its_manifest(bundled, tmp_path):
    graph, _, _ = bundled
    emit(graph, CI).save(tmp_path)
    img = tmp_path / "ddr_image.bin"
    img.write_bytes(img.read_bytes()[:-4])
    with pytest.raises(ValueError, match="do not belong together"):
        load_program(tmp_path)
