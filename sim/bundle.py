"""Several cores side by side in one top-level, so one Verilator build serves them all.

A Verilated model costs one C++ compile, most of it cocotb's and Verilator's runtime, not
the design: bundling the cores of a test suite pays it once. Every stream port of core
``name`` appears as ``<name>_<port>``; the cores share the clock and reset and are
otherwise independent (an idle core's inputs stay invalid).
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from .cases import Case, rename

__all__ = ["Bundle"]


class Bundle(wiring.Component):
    """``cores``: ``{name: core}``; ports ``<name>_<port>`` for every member of each core."""

    def __init__(self, cores: dict):
        self.cores = dict(cores)
        members = {}
        for p, core in self.cores.items():
            for k, mem in core.signature.members.items():
                members[f"{p}_{k}"] = mem
        super().__init__(members)

    def case(self, name: str, case: Case) -> Case:
        """``case`` (written for core ``name``) addressed to this bundle's ports."""
        ports = {k: f"{name}_{k}" for k in self.cores[name].signature.members}
        return rename(case, ports)

    def elaborate(self, platform):
        m = Module()
        for p, core in self.cores.items():
            m.submodules[p] = core
            for k, mem in core.signature.members.items():
                outer = getattr(self, f"{p}_{k}")
                if mem.flow == In:
                    wiring.connect(m, wiring.flipped(outer), getattr(core, k))
                else:
                    wiring.connect(m, getattr(core, k), wiring.flipped(outer))
        return m
