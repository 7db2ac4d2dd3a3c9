"""Requant: the rounding right shift of :class:`compiler.ir.Requant` (a shift and an add)."""

from __future__ import annotations

from amaranth.hdl import Const, Module, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ._common import refusing, check_bits, check_int, output_register

__all__ = ["Requant"]


class Requant(wiring.Component):
    """``y = (x + (2**s >> 1)) >> s`` with the per-channel shift ``s`` in each beat.

    ``s = 0`` passes ``x``; ``s > 0`` rounds half up. ``>>`` is the arithmetic shift (a
    barrel shifter), the rounding constant a one-hot vector: no multiplier. ``out_bits``
    is the node's ``acc_bits``. Equals :func:`compiler.reference.ref_requant`.

    Latency 1, one beat per cycle, ``i.ready = ~o.valid | o.ready``.

    Members
    -------
    i : In(stream.Signature)  ``x: signed(in_bits)``, ``shift: unsigned(bits_for(max_shift))``
    o : Out(stream.Signature) ``y: signed(out_bits)``
    """

    @refusing
    def __init__(self, *, in_bits: int, out_bits: int, max_shift: int = 30):
        who = "Requant"
        self.in_bits = check_bits(who, "in_bits", in_bits)
        self.out_bits = check_bits(who, "out_bits (acc_bits)", out_bits)
        self.max_shift = check_int(who, "max_shift", max_shift, 0, 30)
        self.in_layout = data.StructLayout({"x": signed(in_bits),
                                            "shift": unsigned(max(1, bits_for(max_shift)))})
        self.out_layout = data.StructLayout({"y": signed(out_bits)})
        super().__init__({"i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    def elaborate(self, platform):
        m = Module()
        p = self.i.payload
        s = p.shift
        rnd = (Const(1, 1) << s) >> 1  # 2**s >> 1: one-hot (0 for s = 0)
        y = (p.x + rnd) >> s
        output_register(m, self.i, self.o, 1, [self.o.payload.y.eq(y)])
        return m
