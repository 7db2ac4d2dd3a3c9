"""Bit-serial pointwise conv on a signed integer input (the factored SepConv's second half).

With ``factor_depthwise="auto"`` the compiler keeps a SepConv as a depthwise conv on spikes
whose output is a signed ``b``-bit integer (``b`` = its proved width, the depthwise's
``acc_bits``), then a 1x1 Conv on it. Here that conv runs on the unsigned bit-planes of the
offset input ``u = x + 2**(b-1)`` (= ``x`` with its sign bit inverted, ``0 .. 2**b - 1``),
and the offset's contribution is a constant folded into the bias.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._common import check_int, refusing
from .bitplane import BitPlaneAccumulator

__all__ = ["SignedBitPlaneAccumulator", "offset_bias"]


def offset_bias(weight, bias, in_bits: int, acc_bits: int) -> np.ndarray:
    """The bias the core is given: ``bias'[o] = bias[o] - 2**(in_bits-1) sum_i W[o, i]``,
    reduced to ``signed(acc_bits)`` (``weight [O, I]``: every term of one output's run).

    The reduction modulo ``2**acc_bits`` is harmless (see :class:`SignedBitPlaneAccumulator`).
    A compile-time constant per output channel, like a folded bias: no hardware.
    """
    w = np.asarray(weight, dtype=np.int64)
    b = np.zeros(w.shape[0], np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
    v = b - (w.sum(axis=1) << (in_bits - 1))
    half = 1 << (acc_bits - 1)
    return ((v + half) & ((1 << acc_bits) - 1)) - half


class SignedBitPlaneAccumulator(wiring.Component):
    """Pointwise Conv/Linear on signed ``in_bits``-bit integers by additions and shifts only.

    Math (``b = in_bits``; a run of beats ``first ... last`` holds all terms ``i`` of one
    output pixel): with ``u_i = x_i + 2**(b-1)``, i.e. ``x_i`` with bit ``b-1`` inverted,

    ``y[o] = bias[o] + sum_i x_i W[o, i] = bias'[o] + sum_i u_i W[o, i]``,
    ``bias'[o] = bias[o] - 2**(b-1) sum_i W[o, i]`` (:func:`offset_bias`).

    ``sum_i u_i W[o, i]`` is the :class:`~.bitplane.BitPlaneAccumulator`'s: plane ``p`` of
    ``u`` gates the weights (a mux per term, adder tree or DSP48E2 SIMD adders, no
    multiplier) and its sum enters the accumulator shifted by ``p``. The only logic added
    is one inverter per term; ``bias'`` is a constant (the ``bias`` payload field carries
    it). Exact because a 1x1 conv has no padding: every term is a real input, so the
    offset is added and removed for the same terms.
    (:func:`compiler.reference.ref_signed_bitplane_accumulate`.)

    Widths: ``in_bits`` is the input's proved signed width (the depthwise node's
    ``acc_bits``), ``acc_bits`` the pointwise node's, which covers the final ``|y|``.
    ``bias'`` and the partial sums (``u >= 0``) may leave the ``signed(acc_bits)`` range;
    they wrap modulo ``2**acc_bits`` and that is harmless: every step is an addition or a
    left shift, ring operations of ``Z / 2**acc_bits``, so the register ends on
    ``y mod 2**acc_bits`` and, ``|y|`` being proved below ``2**(acc_bits-1)``, its signed
    reading is ``y`` exactly.

    Throughput: one input beat per ``in_bits`` cycles (taken with its last plane).
    Latency: 1 cycle after the last plane of a ``last`` beat. Back-pressure: as the
    accumulator's, ``i.ready`` only on the last plane and while the output register is
    free (``~o.valid | o.ready``); a held output stalls the plane counter and the beat.

    Members
    -------
    i : In(stream.Signature) ``x: [terms] signed(in_bits)``, ``weights: [terms][lanes]
        signed(w_bits)``, ``bias: [lanes] signed(acc_bits)`` (= ``bias'``), ``first``, ``last``
    o : Out(stream.Signature) ``acc: [lanes] signed(acc_bits)``
    """

    @refusing
    def __init__(self, lanes: int, terms: int, in_bits: int, w_bits: int, acc_bits: int, *,
                 form: str = "lut", dsp_instance: bool = False, w_abs_max: int | None = None):
        self.in_bits = check_int("SignedBitPlaneAccumulator", "in_bits", in_bits, 2, 16)
        self.bp = BitPlaneAccumulator(lanes, terms, in_bits, w_bits, acc_bits, form=form,
                                      dsp_instance=dsp_instance, w_abs_max=w_abs_max)
        self.pe = self.bp.pe
        self.lanes, self.terms = lanes, terms
        self.w_bits, self.acc_bits = self.pe.w_bits, self.pe.acc_bits
        self.in_layout = data.StructLayout({
            "x": data.ArrayLayout(signed(in_bits), terms),
            "weights": self.pe.in_layout["weights"].shape,
            "bias": self.pe.in_layout["bias"].shape,
            "first": unsigned(1), "last": unsigned(1)})
        self.out_layout = self.bp.out_layout
        super().__init__({"i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.bp = bp = self.bp
        p, q = self.i.payload, bp.i.payload
        nb = self.in_bits
        m.d.comb += [
            bp.i.valid.eq(self.i.valid),
            self.i.ready.eq(bp.i.ready),
            q.weights.eq(p.weights),
            q.bias.eq(p.bias),
            q.first.eq(p.first),
            q.last.eq(p.last),
        ]
        for j in range(self.terms):  # u = x + 2**(b-1): invert the sign bit
            xj = p.x[j].as_unsigned()
            m.d.comb += q.x[j].eq(Cat(xj[:nb - 1], ~xj[nb - 1]))
        wiring.connect(m, wiring.flipped(self.o), bp.o)
        return m
