"""Bit-serial pointwise conv on a signed integer input (the factored SepConv's second half).

With ``factor_depthwise="auto"`` the compiler keeps a SepConv as a depthwise conv on spikes
whose output is a signed ``b``-bit integer (``b`` = the depthwise's ``acc_bits``), then a
1x1 Conv on it. Each value enters as its ``b`` two's-complement bit-planes,

``x = sum_{p < b-1} 2**p plane_p - 2**(b-1) plane_{b-1}``,

each plane gating the weights like a binary spike map; the sign plane's sum is subtracted.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._common import check_int, refusing
from .pe import GatedAccumulator

__all__ = ["SignedBitPlaneAccumulator"]


class SignedBitPlaneAccumulator(wiring.Component):
    """Pointwise Conv/Linear on signed ``in_bits``-bit integers by additions and shifts only.

    Each input beat carries ``terms`` values ``x[j]`` (``signed(in_bits)``) with their
    weights ``w[j][o]`` (``signed(w_bits)``); the core replays it ``in_bits`` times, plane
    ``p = 0 .. in_bits - 1`` as the spike vector ``(x[j] >> p) & 1``, into a
    :class:`~.pe.GatedAccumulator` with ``signed_planes=True``:

    ``acc[o] := (first ? bias[o] : acc[o]) + s_p (sum_{j : bit_p(x[j]) = 1} w[j][o]) << p``,
    ``s_p = -1`` for the sign plane ``p = in_bits - 1``, else ``+1``,

    so a run ``first ... last`` gives ``y[o] = bias[o] + sum_beats sum_j x[j] w[j][o]``
    (:func:`compiler.reference.ref_signed_bitplane_accumulate`). No multiplier: a mux per
    term, an adder tree (``form="lut"``) or DSP48E2 SIMD adders (``form="dsp"``), a shift
    and one add/subtract per lane.

    Widths: ``in_bits`` is the input's proved signed width (the depthwise node's
    ``acc_bits``), ``acc_bits`` the pointwise node's, which covers the final ``|y|``. Partial
    sums (after the low planes, before the sign plane subtracts) may exceed that range;
    the register wraps modulo ``2**acc_bits``, which is harmless because every step is a
    ring operation of ``Z / 2**acc_bits`` and the final ``y`` is in range (see
    :class:`~.pe.GatedAccumulator`). A 1x1 conv has no padding, so no zero-padded term
    needs the sign plane's correction.

    Throughput: one input beat per ``in_bits`` cycles (taken with its last plane), i.e.
    ``in_bits`` cycles per ``terms x lanes`` weight block. Latency: 1 cycle after the
    sign plane of a ``last`` beat. Back-pressure: ``i.ready`` is high only on the sign
    plane and only while the output register is free (``~o.valid | o.ready``); a held
    output stalls the plane counter, the input beat and its payload stay put.

    Members
    -------
    i : In(stream.Signature) ``x: [terms] signed(in_bits)``, ``weights: [terms][lanes]
        signed(w_bits)``, ``bias: [lanes] signed(acc_bits)``, ``first``, ``last``
    o : Out(stream.Signature) ``acc: [lanes] signed(acc_bits)``
    """

    @refusing
    def __init__(self, lanes: int, terms: int, in_bits: int, w_bits: int, acc_bits: int, *,
                 form: str = "lut", dsp_instance: bool = False, w_abs_max: int | None = None):
        self.in_bits = check_int("SignedBitPlaneAccumulator", "in_bits", in_bits, 2, 32)
        self.pe = GatedAccumulator(lanes, terms, w_bits, acc_bits, planes=in_bits, form=form,
                                   dsp_instance=dsp_instance, w_abs_max=w_abs_max, signed_planes=True)
        self.lanes, self.terms = lanes, terms
        self.w_bits, self.acc_bits = self.pe.w_bits, self.pe.acc_bits
        self.in_layout = data.StructLayout({
            "x": data.ArrayLayout(signed(in_bits), terms),
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
        plane = Signal(range(nb))
        sign_plane = plane == nb - 1
        q = pe.i.payload
        m.d.comb += [
            pe.i.valid.eq(self.i.valid),
            q.spikes.eq(Cat(p.x[j].bit_select(plane, 1) for j in range(self.terms))),
            q.weights.eq(p.weights),
            q.bias.eq(p.bias),
            q.plane.eq(plane),
            q.first.eq(p.first & (plane == 0)),
            q.last.eq(p.last & sign_plane),
            self.i.ready.eq(pe.i.ready & sign_plane),
        ]
        with m.If(pe.i.valid & pe.i.ready):
            m.d.sync += plane.eq(Mux(sign_plane, 0, plane + 1))
        wiring.connect(m, wiring.flipped(self.o), pe.o)
        return m
