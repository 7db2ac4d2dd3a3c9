"""Residual add of two integer streams (:class:`compiler.ir.Add`)."""

from __future__ import annotations

from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._common import refusing, check_bits, check_int

__all__ = ["StreamAdd"]


class StreamAdd(wiring.Component):
    """``y[l] = a[l] + b[l]`` for ``lanes`` channels; the two input streams are joined.

    Both operands carry the residual stream's scale (the compiler proved it), so this is
    a plain integer add of width ``out_bits`` (the node's ``acc_bits``). Equals
    :func:`compiler.reference.ref_add`.

    Latency 1. A beat is taken from ``a`` and ``b`` together, when both are valid and the
    output register is free or being emptied (``a.ready = b.ready = b.valid & a.valid &
    (~o.valid | o.ready)``); one beat per cycle.

    Members
    -------
    a, b : In(stream.Signature) ``v: [lanes] signed(a_bits / b_bits)``
    o : Out(stream.Signature) ``v: [lanes] signed(out_bits)``
    """

    @refusing
    def __init__(self, *, a_bits: int, b_bits: int, out_bits: int, lanes: int = 1):
        who = "StreamAdd"
        self.a_bits = check_bits(who, "a_bits", a_bits)
        self.b_bits = check_bits(who, "b_bits", b_bits)
        self.out_bits = check_bits(who, "out_bits (acc_bits)", out_bits)
        self.lanes = check_int(who, "lanes", lanes, 1)
        self.a_layout = data.StructLayout({"v": data.ArrayLayout(signed(a_bits), lanes)})
        self.b_layout = data.StructLayout({"v": data.ArrayLayout(signed(b_bits), lanes)})
        self.out_layout = data.StructLayout({"v": data.ArrayLayout(signed(out_bits), lanes)})
        super().__init__({"a": In(stream.Signature(self.a_layout)),
                          "b": In(stream.Signature(self.b_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    def elaborate(self, platform):
        m = Module()
        free = ~self.o.valid | self.o.ready
        take = self.a.valid & self.b.valid & free
        m.d.comb += [self.a.ready.eq(self.b.valid & free), self.b.ready.eq(self.a.valid & free)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += self.o.valid.eq(1)
            for k in range(self.lanes):
                m.d.sync += self.o.payload.v[k].eq(self.a.payload.v[k] + self.b.payload.v[k])
        return m
