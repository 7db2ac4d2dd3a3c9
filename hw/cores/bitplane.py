"""Multi-bit inputs without multipliers: bit-planes shifted into the accumulator.

The analog first layer (8-bit pixel codes) and I-LIF integer spikes (``0..D``) are split
into binary planes, ``x = sum_p 2**p plane_p``; each plane drives the spike-gated adders
like a binary spike map and its partial sum enters the accumulator shifted left by ``p``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._common import refusing, check_int
from .pe import GatedAccumulator

__all__ = ["BitPlaneAccumulator"]


class BitPlaneAccumulator(wiring.Component):
    """A :class:`~.pe.GatedAccumulator` fed bit-plane by bit-plane from multi-bit inputs.

    Each input beat carries ``terms`` unsigned ``in_bits``-bit values with their weights;
    the core replays it ``in_bits`` times, plane ``p = 0 .. in_bits - 1`` as the spike
    vector ``(x[j] >> p) & 1`` with shift ``p``, so a run ``first ... last`` computes
    ``y[o] = bias[o] + sum_beats sum_j x[j] w[j][o]`` by additions and shifts only
    (:func:`compiler.reference.ref_gated_accumulate` with ``bits = in_bits``).

    Throughput: one input beat per ``in_bits`` cycles (the input is accepted with its last
    plane). Latency: 1 cycle after the last plane of a ``last`` beat. Back-pressure as
    :class:`~.pe.GatedAccumulator`.

    Members
    -------
    i : In(stream.Signature) ``x: [terms] unsigned(in_bits)``, ``weights``, ``bias``,
        ``first``, ``last`` (as the accumulator's, with ``x`` instead of ``spikes``)
    o : Out(stream.Signature) ``acc: [lanes] signed(acc_bits)``
    """

    @refusing
    def __init__(self, lanes: int, terms: int, in_bits: int, w_bits: int, acc_bits: int, *,
                 form: str = "lut", dsp_instance: bool = False, w_abs_max: int | None = None):
        self.in_bits = check_int("BitPlaneAccumulator", "in_bits", in_bits, 1, 16)
        self.pe = GatedAccumulator(lanes, terms, w_bits, acc_bits, planes=in_bits, form=form,
                                   dsp_instance=dsp_instance, w_abs_max=w_abs_max)
        self.lanes, self.terms = lanes, terms
        self.in_layout = data.StructLayout({
            "x": data.ArrayLayout(unsigned(in_bits), terms),
            "weights": self.pe.in_layout["weights"].shape,
            "bias": self.pe.in_layout["bias"].shape,
            "first": unsigned(1), "last": unsigned(1)})
        self.out_layout = self.pe.out_layout
        super().__init__({"i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.pe = pe = self.pe
        p = self.i.payload
        nb = self.in_bits
        plane = Signal(range(max(nb, 2)))
        last_plane = plane == nb - 1
        q = pe.i.payload
        m.d.comb += [
            pe.i.valid.eq(self.i.valid),
            q.spikes.eq(Cat(p.x[j].bit_select(plane, 1) for j in range(self.terms))),
            q.weights.eq(p.weights),
            q.bias.eq(p.bias),
            q.first.eq(p.first & (plane == 0)),
            q.last.eq(p.last & last_plane),
            self.i.ready.eq(pe.i.ready & last_plane),
        ]
        if nb > 1:
            m.d.comb += q.plane.eq(plane)
        with m.If(pe.i.valid & pe.i.ready):
            m.d.sync += plane.eq(Mux(last_plane, 0, plane + 1))
        wiring.connect(m, wiring.flipped(self.o), pe.o)
        return m
