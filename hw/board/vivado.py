"""Generate the Vivado project for the ZCU104: ``vivado -mode batch -source build.tcl``.

The Tcl builds a block design with the standard Xilinx IP only:

* ``zynq_ultra_ps_e`` (board preset: DDR4, clocks, MIO) with ``M_AXI_HPM0_FPD`` (control),
  ``S_AXI_HP0_FPD`` (128-bit DDR port for the engine), ``pl_clk0`` at the engine's clock and
  ``pl_ps_irq0`` for the done interrupt;
* the engine ``svf_accel`` as an RTL module reference (its ``m_axi_*`` / ``s_axil_*`` ports
  are inferred as AXI4 / AXI4-Lite interfaces by name);
* ``proc_sys_reset`` and two ``smartconnect`` (PS -> engine registers, engine -> HP0);
* the ``status[3:0]`` LEDs as external ports, constrained by ``svf_accel.xdc`` (from
  :func:`hw.board.platform.xdc`).

It then runs synthesis, implementation and ``write_bitstream`` and exports the ``.bit`` and
``.hwh`` next to the script (what ``pynq.Overlay`` loads). Nobody here has Vivado: the
structure is checked by tests, the IP configuration names follow the PS8 IP's.
"""

from __future__ import annotations

from pathlib import Path

from ..accel.config import AccelConfig
from .platform import PART, xdc

__all__ = ["build_tcl", "write_project", "TOP", "BD"]

TOP = "svf_accel"
BD = "svf_system"


def build_tcl(cfg: AccelConfig, rtl_name: str = f"{TOP}.v") -> str:
    """The project/block-design/bitstream script (paths relative to the script)."""
    mhz = int(round(cfg.clock_mhz))
    return f"""# svf-deploy: ZCU104 project for the layer-sequential engine ({cfg.name} configuration)
# usage: vivado -mode batch -source build.tcl
set here [file dirname [file normalize [info script]]]
set part {PART}
create_project {TOP}_prj [file join $here project] -part $part -force
catch {{set_property board_part [lindex [get_board_parts -quiet *zcu104*] end] [current_project]}}
add_files -norecurse [file join $here {rtl_name}]
add_files -fileset constrs_1 -norecurse [file join $here {TOP}.xdc]
update_compile_order -fileset sources_1

create_bd_design {BD}
# --- Zynq UltraScale+ PS: DDR4 from the board preset, HPM0 control, HP0 data, PL clock, IRQ
create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e ps
apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {{apply_board_preset "1"}} [get_bd_cells ps]
set_property -dict [list \\
  CONFIG.PSU__USE__M_AXI_GP0 {{1}} CONFIG.PSU__MAXIGP0__DATA_WIDTH {{32}} \\
  CONFIG.PSU__USE__M_AXI_GP1 {{0}} \\
  CONFIG.PSU__USE__S_AXI_GP2 {{1}} CONFIG.PSU__SAXIGP2__DATA_WIDTH {{{max(cfg.axi_data_width, 32)}}} \\
  CONFIG.PSU__FPGA_PL0_ENABLE {{1}} CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {{{mhz}}} \\
  CONFIG.PSU__USE__IRQ0 {{1}} \\
] [get_bd_cells ps]

# --- the engine (RTL module reference) and its clock/reset
create_bd_cell -type module -reference {TOP} accel
set_property CONFIG.ASSOCIATED_BUSIF {{m_axi:s_axil}} [get_bd_pins accel/clk]
set_property CONFIG.FREQ_HZ {{{mhz * 1_000_000}}} [get_bd_pins accel/clk]
set_property CONFIG.POLARITY {{ACTIVE_HIGH}} [get_bd_pins accel/rst]
create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst
create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect ctrl_sc
set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] [get_bd_cells ctrl_sc]
create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect mem_sc
set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] [get_bd_cells mem_sc]

set clk [get_bd_pins ps/pl_clk0]
foreach p {{accel/clk rst/slowest_sync_clk ctrl_sc/aclk mem_sc/aclk ps/maxihpm0_fpd_aclk ps/saxihp0_fpd_aclk}} {{
  connect_bd_net $clk [get_bd_pins $p]
}}
connect_bd_net [get_bd_pins ps/pl_resetn0] [get_bd_pins rst/ext_reset_in]
connect_bd_net [get_bd_pins rst/peripheral_reset] [get_bd_pins accel/rst]
connect_bd_net [get_bd_pins rst/peripheral_aresetn] [get_bd_pins ctrl_sc/aresetn] [get_bd_pins mem_sc/aresetn]

# --- AXI: PS -> engine registers, engine -> DDR, interrupt, LEDs
connect_bd_intf_net [get_bd_intf_pins ps/M_AXI_HPM0_FPD] [get_bd_intf_pins ctrl_sc/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins ctrl_sc/M00_AXI] [get_bd_intf_pins accel/s_axil]
connect_bd_intf_net [get_bd_intf_pins accel/m_axi] [get_bd_intf_pins mem_sc/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins mem_sc/M00_AXI] [get_bd_intf_pins ps/S_AXI_HP0_FPD]
connect_bd_net [get_bd_pins accel/irq] [get_bd_pins ps/pl_ps_irq0]
create_bd_port -dir O -from 3 -to 0 status
connect_bd_net [get_bd_pins accel/status] [get_bd_ports status]

assign_bd_address
validate_bd_design
save_bd_design

# --- wrapper, bitstream, PYNQ overlay files
make_wrapper -files [get_files {BD}.bd] -top
add_files -norecurse [glob [file join $here project *.gen sources_1 bd {BD} hdl {BD}_wrapper.v]]
set_property top {BD}_wrapper [current_fileset]
update_compile_order -fileset sources_1
launch_runs impl_1 -to_step write_bitstream -jobs 8
wait_on_run impl_1
if {{[get_property PROGRESS [get_runs impl_1]] != "100%"}} {{
  error "implementation failed: see [file join $here project]"
}}
file copy -force [glob [file join $here project *.runs impl_1 {BD}_wrapper.bit]] [file join $here {TOP}.bit]
file copy -force [glob [file join $here project *.gen sources_1 bd {BD} hw_handoff {BD}.hwh]] [file join $here {TOP}.hwh]
puts "wrote [file join $here {TOP}.bit] and {TOP}.hwh"
"""


def write_project(directory, cfg: AccelConfig, verilog: str) -> list[str]:
    """Write ``build.tcl``, ``svf_accel.xdc`` and ``svf_accel.v`` into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "build.tcl").write_text(build_tcl(cfg))
    (d / f"{TOP}.xdc").write_text(xdc("status"))
    (d / f"{TOP}.v").write_text(verilog)
    return ["build.tcl", f"{TOP}.xdc", f"{TOP}.v"]
