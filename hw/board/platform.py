"""Amaranth platform for the ZCU104 (XCZU7EV-2FFVC1156E) with the pins the design uses.

The engine talks to the Zynq UltraScale+ PS over AXI (no package pins) and takes its clock
and reset from the PS (``pl_clk0``, ``pl_resetn0``); the only PL pins are the four user
LEDs showing ``busy, done, error, irq`` (ZCU104 user guide UG1267, GPIO LEDs DS35-DS38:
D5, D6, A5, B5, 3.3 V bank).
"""

from __future__ import annotations

from amaranth.build import Attrs, Pins, Resource
from amaranth.vendor import XilinxPlatform

__all__ = ["ZCU104Platform", "xdc", "PART"]

PART = "xczu7ev-ffvc1156-2-e"
LED_PINS = ("D5", "D6", "A5", "B5")


class ZCU104Platform(XilinxPlatform):
    """``xczu7ev`` / ``ffvc1156`` / ``-2-e``: family ``ultrascaleplus``, Vivado toolchain."""

    device = "xczu7ev"
    package = "ffvc1156"
    speed = "2-e"
    default_clk = None
    resources = [
        Resource("led", i, Pins(p, dir="o"), Attrs(IOSTANDARD="LVCMOS33"))
        for i, p in enumerate(LED_PINS)
    ]
    connectors = []


def xdc(port: str = "status") -> str:
    """Constraints for the block design's ``status[3:0]`` output, from the platform's pins."""
    plat = ZCU104Platform()
    lines = [f"# {PART}: ZCU104 user LEDs <- engine {port} (busy, done, error, irq)"]
    for i in range(4):
        r = plat.lookup("led", i)
        pin = r.ios[0].names[0]
        std = r.attrs["IOSTANDARD"]
        lines.append(f"set_property -dict {{PACKAGE_PIN {pin} IOSTANDARD {std}}} [get_ports {{{port}[{i}]}}]")
    return "\n".join(lines) + "\n"
