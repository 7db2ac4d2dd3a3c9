"""Verilog of the engine, fast: all-zero memory ``init`` is not emitted at all.

Amaranth writes a memory's ``init`` as one ``$meminit_v2`` constant of ``width x depth``
bits even when it is all zero; for the 128k-word activation buffer that costs minutes
in Python and Yosys (and :func:`hw.synth.strip_zero_init` only removes it afterwards).
Block and Ultra RAM power up as zero, so leaving the cell out changes nothing in hardware
or simulation (Verilator runs with ``--x-initial 0``). Memories with a non-zero ``init``
are emitted unchanged.
"""

from __future__ import annotations

import contextlib

from .config import AccelConfig

__all__ = ["engine_verilog", "skip_zero_meminit"]


@contextlib.contextmanager
def skip_zero_meminit():
    from amaranth.back import rtlil

    emitter = rtlil.ModuleEmitter
    orig = emitter.emit_memory

    def emit_memory(self, cell_idx, cell):
        if any(cell.init):
            return orig(self, cell_idx, cell)
        return None

    emitter.emit_memory = emit_memory
    try:
        yield
    finally:
        emitter.emit_memory = orig


def to_verilog(core, name: str) -> str:
    from amaranth.back import verilog

    with skip_zero_meminit():
        return verilog.convert(core, name=name, emit_src=False)


def engine_verilog(cfg: AccelConfig, name: str = "svf_accel", *, dsp_instance: bool = True) -> str:
    """The engine's Verilog, top module ``name``. ``dsp_instance`` (default, synthesis): the
    CONV accumulators are ``DSP48E2`` primitives; ``False``: their behavioural twin (what
    Verilator simulates, :mod:`.simd`)."""
    from .engine import Engine

    return to_verilog(Engine(cfg, dsp_instance=dsp_instance), name)
