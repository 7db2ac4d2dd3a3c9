"""IntLIF neuron lane: every integer LIF semantic of :class:`compiler.ir.IntLIF`, no multiplier.

One lane serves one neuron at a time and takes all ``T`` steps of that neuron back to back
(``first`` marks ``t = 0``), so its membrane lives in one register and is never stored:
the conv in front produces all ``T`` outputs of one (pixel, channel) together.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ...models.errors import HardwareError
from ._common import refusing, check_bits, check_int, check_neuron, output_register, tree_sum

__all__ = ["IntLIFLane", "MAX_LEVELS"]

#: longest I-LIF compare chain offered (one comparator per level)
MAX_LEVELS = 15


class IntLIFLane(wiring.Component):
    """One integer LIF lane; static layer settings, per-channel parameters in each beat.

    Per accepted beat (``V`` is the lane's membrane register, 0 on a ``first`` beat):

    * ``X = (neg ? -(x << F) : (x << F)) + bias``  (polarity -1 flips the input)
    * ``H = V + ((X - V) >> k)`` (``decay_input``) or ``H = V - (V >> k) + X``;
      ``>>`` is the arithmetic shift (floor), a rewiring, not a divider
    * ``levels == 1``: ``S = H >= theta``; hard reset ``V = S ? 0 : H``, soft
      ``V = S ? H - theta : H``
    * ``levels = D > 1`` (I-LIF, round half to even as ``torch.round``): a compare chain
      ``c_k = 2H > (2k-1) theta  or  (2H == (2k-1) theta and k even)`` for ``k = 1..D``
      with the odd multiples built by adding ``2 theta`` (a shift) to the previous one;
      ``S = sum_k c_k`` (the ``c_k`` are a thermometer code), ``V = H - sum_k c_k theta``.

    The beat emits ``(S, H)`` (the pre-reset membrane ``H``, as the reference records).
    Widths: ``H`` and ``V`` are ``mem_bits`` wide (the compiler's proved bound); every
    intermediate is computed at full width, so the lane equals
    :func:`compiler.reference.ref_intlif_lane` whenever the inputs respect that bound.

    Latency 1, one beat per cycle, ``i.ready = ~o.valid | o.ready``.

    Members
    -------
    i : In(stream.Signature)
        ``x: signed(in_bits)``, ``theta: unsigned(theta_bits)``, ``bias: signed(bias_bits)``,
        ``neg: 1`` (polarity -1), ``first: 1`` (step 0 of a new neuron).
    o : Out(stream.Signature)
        ``s: unsigned(bits_for(levels))``, ``h: signed(mem_bits)``.
    """

    @refusing
    def __init__(self, *, in_bits: int, mem_bits: int, theta_bits: int, bias_bits: int,
                 frac_bits: int = 0, leak_shift: int = 1, decay_input: bool = True,
                 reset: str = "hard", levels: int = 1):
        who = "IntLIFLane"
        self.in_bits = check_int(who, "in_bits", in_bits, 2, 64)
        self.mem_bits, self.frac_bits, self.leak_shift, self.decay_input, self.reset = check_neuron(
            who, mem_bits=mem_bits, frac_bits=frac_bits, leak_shift=leak_shift,
            decay_input=decay_input, reset=reset)
        self.theta_bits = check_int(who, "theta_bits", theta_bits, 1, 64)
        self.bias_bits = check_int(who, "bias_bits", bias_bits, 1, 64)
        self.levels = check_int(who, "levels", levels, 1, MAX_LEVELS)
        if levels > 1 and reset != "soft":
            raise HardwareError(f"{who}: an I-LIF (levels={levels}) resets softly, not {reset!r}")
        self.in_layout = data.StructLayout({
            "x": signed(in_bits), "theta": unsigned(theta_bits), "bias": signed(bias_bits),
            "neg": unsigned(1), "first": unsigned(1)})
        self.out_layout = data.StructLayout({"s": unsigned(bits_for(levels)), "h": signed(mem_bits)})
        super().__init__({"i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    @classmethod
    def for_node(cls, node, in_bound: int) -> "IntLIFLane":
        """A lane for an :class:`~compiler.ir.IntLIF` node whose input is bounded by
        ``in_bound`` (``levels`` for spikes, the producer's bound otherwise)."""
        import numpy as np

        if getattr(node, "op", None) != "IntLIF":
            raise HardwareError(f"IntLIFLane.for_node needs an IntLIF node, not {node!r}")
        who = f"IntLIF {node.name!r}"
        check_bits(who, "mem_bits", node.mem_bits)
        return cls(in_bits=bits_for(int(in_bound), require_sign_bit=True),
                   mem_bits=node.mem_bits, theta_bits=bits_for(int(np.max(node.theta))),
                   bias_bits=bits_for(int(np.max(np.abs(node.bias))), require_sign_bit=True),
                   frac_bits=node.frac_bits, leak_shift=node.leak_shift,
                   decay_input=node.decay_input, reset=node.reset, levels=node.levels)

    def elaborate(self, platform):
        m = Module()
        p = self.i.payload
        k = self.leak_shift
        v = Signal(signed(self.mem_bits))
        v_in = Mux(p.first, 0, v)
        xs = p.x.as_signed() << self.frac_bits
        X = Mux(p.neg, -xs, xs) + p.bias
        if self.decay_input:
            H = v_in + ((X - v_in) >> k)
        else:
            H = v_in - (v_in >> k) + X
        h = Signal(signed(len(H) + 1))
        m.d.comb += h.eq(H)
        theta = p.theta.as_unsigned()
        if self.levels == 1:
            s = Signal(1)
            m.d.comb += s.eq(h >= theta)
            if self.reset == "hard":
                v_next = Mux(s, 0, h)
            else:
                v_next = Mux(s, h - theta, h)
        else:
            two_h = h << 1
            odd = theta  # (2k-1) theta, built by additions of 2 theta
            cs = []
            for kk in range(1, self.levels + 1):
                c = Signal(name=f"c{kk}")
                tie = (two_h == odd) if kk % 2 == 0 else 0
                m.d.comb += c.eq((two_h > odd) | tie)
                cs.append(c)
                odd = odd + (theta << 1)
            s = Signal(unsigned(bits_for(self.levels)))
            m.d.comb += s.eq(tree_sum(list(cs)))
            v_next = h - tree_sum([Mux(c, theta, 0) for c in cs])
        take = output_register(m, self.i, self.o, 1,
                               [self.o.payload.s.eq(s), self.o.payload.h.eq(h)])
        with m.If(take):
            m.d.sync += v.eq(v_next)
        return m
