"""Sum pooling: GlobalPool (sum over H*W) and TimeMean (sum over T) of integer streams."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._common import refusing, check_bits, check_int, output_register

__all__ = ["SumPool"]


class SumPool(wiring.Component):
    """Running sum over a run of beats ``first ... last``, ``lanes`` channels at a time.

    ``acc := (first ? 0 : acc) + x``; the ``last`` beat emits ``acc``. A
    :class:`~compiler.ir.GlobalPool` streams the ``H*W`` pixels of a channel group, a
    :class:`~compiler.ir.TimeMean` the ``T`` steps (its ``1/T`` lives in the output scale,
    never in hardware). ``out_bits`` is the node's ``acc_bits``. Equals
    :func:`compiler.reference.ref_sum_pool`.

    Latency 1 after ``last``; one beat per cycle; ``i.ready = ~o.valid | o.ready``.

    Members
    -------
    i : In(stream.Signature) ``x: [lanes] signed(in_bits)``, ``first: 1``, ``last: 1``
    o : Out(stream.Signature) ``sum: [lanes] signed(out_bits)``
    """

    @refusing
    def __init__(self, *, in_bits: int, out_bits: int, lanes: int = 1):
        who = "SumPool"
        self.in_bits = check_bits(who, "in_bits", in_bits)
        self.out_bits = check_bits(who, "out_bits (acc_bits)", out_bits)
        self.lanes = check_int(who, "lanes", lanes, 1)
        self.in_layout = data.StructLayout({"x": data.ArrayLayout(signed(in_bits), lanes),
                                            "first": unsigned(1), "last": unsigned(1)})
        self.out_layout = data.StructLayout({"sum": data.ArrayLayout(signed(out_bits), lanes)})
        super().__init__({"i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    def elaborate(self, platform):
        m = Module()
        p = self.i.payload
        acc = Signal(data.ArrayLayout(signed(self.out_bits), self.lanes))
        nxt = Signal(data.ArrayLayout(signed(self.out_bits), self.lanes))
        for k in range(self.lanes):
            m.d.comb += nxt[k].eq(Mux(p.first, 0, acc[k]) + p.x[k])
        take = output_register(m, self.i, self.o, p.last, [self.o.payload.sum.eq(nxt)])
        with m.If(take):
            m.d.sync += acc.eq(nxt)
        return m
