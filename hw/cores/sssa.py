"""SSSA saccade unit (SNN-ViT saccadic attention) in an exact addition-only form.

The integer :class:`~compiler.ir.SSSA` node computes per step ``t`` and head ``h`` the
salience ``sal[n] = Qc[n] * alpha`` (``Qc[n]`` the count of Q spikes of token ``n`` in the
head, ``alpha`` the count of all K spikes of the step) and drives the saccade neuron with
``X = (gain[t] * sal) << F``. Neither product needs a multiplier:

* ``Qc[n] * alpha = sum_{c : Q[n, c] = 1} alpha``: every active Q spike gates ``alpha``
  into an adder tree (the spike-gated accumulation of the PE array, with ``alpha`` as
  the weight);
* ``gain[t]`` is a compile-time constant per step: ``gain * sal`` is a sum of shifted
  copies of ``sal``, one per set bit of ``|gain[t]|`` (negated for a negative gain), and
  the step's network is selected by ``t``.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ...models.errors import HardwareError
from ._common import check_bits, check_int, check_neuron, output_register, refusing, tree_sum

__all__ = ["SaccadeUnit", "refuse_sssa", "OP_ALPHA", "OP_TOKEN", "shift_add_terms"]

OP_ALPHA = 0
OP_TOKEN = 1


def shift_add_terms(g: int) -> list[int]:
    """The shifts ``j`` with ``|g| = sum_j 2**j`` (the set bits of ``|g|``)."""
    g = abs(int(g))
    return [j for j in range(g.bit_length()) if (g >> j) & 1]


def refuse_sssa(node, why: str) -> None:
    """Raise :class:`HardwareError` for an SSSA node the saccade unit cannot take."""
    raise HardwareError(f"SSSA {node.name!r}: {why}")


class SaccadeUnit(wiring.Component):
    """One SSSA head: K-spike counts per step, then each token's ``T`` steps back to back.

    Beats (``op``):

    * ``OP_ALPHA`` (``t``, ``kq = K[t, n]``, ``first`` on the step's first token):
      ``alpha[t] := (first ? 0 : alpha[t]) + popcount(kq)``; no output. All ``N`` tokens
      of all steps are counted before the first ``OP_TOKEN`` beat.
    * ``OP_TOKEN`` (``t``, ``kq = Q[t, n]``, ``v = V[t, n]``, ``first`` at ``t = 0``):
      ``sal = sum_{c : kq[c]} alpha[t]``; ``X = (sum_{j in bits(|gain[t]|)} sal << j)``
      negated if ``gain[t] < 0``, then ``<< F``; the saccade neuron (IntLIF semantics:
      polarity +1, bias 0, threshold ``theta``, leak ``>> k``, ``decay_input``, hard or
      soft reset) gives ``S`` and ``H``; the beat emits ``(s, h, y = s ? v : 0)``.

    Equals :func:`compiler.reference.ref_sssa_head`. Widths: ``alpha`` ``bits_for(d*N)``,
    membrane ``mem_bits`` (the node's). Latency 1 per token beat, one beat per cycle,
    ``i.ready = ~o.valid | o.ready``.

    Members
    -------
    i : In(stream.Signature) ``op``, ``t: range(T)``, ``first``, ``kq: unsigned(d)``, ``v: unsigned(d)``
    o : Out(stream.Signature) ``s: 1``, ``h: signed(mem_bits)``, ``y: unsigned(d)``
    """

    @refusing
    def __init__(self, *, d: int, tokens: int, gains, theta: int, mem_bits: int,
                 frac_bits: int = 0, leak_shift: int = 1, decay_input: bool = True,
                 reset: str = "hard"):
        who = "SaccadeUnit"
        self.d = check_int(who, "d", d, 1, 1024)
        self.tokens = check_int(who, "tokens", tokens, 1)
        self.gains = tuple(int(g) for g in np.asarray(gains).ravel().tolist())
        if not self.gains:
            raise HardwareError(f"{who}: gains must hold one integer per step")
        self.T = len(self.gains)
        self.theta = check_int(who, "theta", int(theta), 1)
        self.mem_bits, self.frac_bits, self.leak_shift, self.decay_input, self.reset = check_neuron(
            who, mem_bits=mem_bits, frac_bits=frac_bits, leak_shift=leak_shift,
            decay_input=decay_input, reset=reset)
        self.alpha_bits = bits_for(d * tokens)
        self.in_layout = data.StructLayout({
            "op": unsigned(1), "t": unsigned(max(1, bits_for(self.T - 1))), "first": unsigned(1),
            "kq": unsigned(d), "v": unsigned(d)})
        self.out_layout = data.StructLayout({"s": unsigned(1), "h": signed(mem_bits), "y": unsigned(d)})
        super().__init__({"i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    @classmethod
    def for_node(cls, node, graph, T: int) -> "SaccadeUnit":
        from ...models.leak import leak_shift
        from ...models.errors import ConfigError

        if getattr(node, "op", None) != "SSSA":
            raise HardwareError(f"SaccadeUnit.for_node needs an SSSA node, not {node!r}")
        c, h, w = graph.types[node.inputs[0]].shape
        if node.gain.shape[0] < T:
            refuse_sssa(node, f"gain has {node.gain.shape[0]} steps, the bounds were proved for T={T}")
        if not np.issubdtype(np.asarray(node.gain).dtype, np.integer):
            refuse_sssa(node, "gain is not integer (run the compiler's quantisation first)")
        try:
            k = leak_shift(node.sal_tau)
        except ConfigError as e:
            refuse_sssa(node, str(e))
        check_bits(f"SSSA {node.name!r}", "mem_bits", node.mem_bits)
        return cls(d=c // node.heads, tokens=h * w, gains=np.asarray(node.gain)[:T],
                   theta=node.sal_theta, mem_bits=node.mem_bits, frac_bits=node.sal_frac_bits,
                   leak_shift=k, decay_input=node.sal_decay_input, reset=node.sal_reset)

    def elaborate(self, platform):
        m = Module()
        p = self.i.payload
        alpha = [Signal(self.alpha_bits, name=f"alpha{t}") for t in range(self.T)]
        pc = tree_sum([p.kq[c] for c in range(self.d)])
        cur = Signal(self.alpha_bits)
        with m.Switch(p.t):
            for t in range(self.T):
                with m.Case(t):
                    m.d.comb += cur.eq(alpha[t])
        # sal = sum of alpha over the active Q spikes (spike-gated adder tree)
        sal = Signal(bits_for(self.d * (1 << self.alpha_bits)))
        m.d.comb += sal.eq(tree_sum([Mux(p.kq[c], cur, 0) for c in range(self.d)]))
        # gain[t] * sal as a shift-add of the constant's bits, chosen by t
        gmax = max(abs(g) for g in self.gains)
        X = Signal(signed(len(sal) + bits_for(gmax) + 1 + self.frac_bits))
        with m.Switch(p.t):
            for t, g in enumerate(self.gains):
                with m.Case(t):
                    terms = [sal << j for j in shift_add_terms(g)]
                    if not terms:
                        m.d.comb += X.eq(0)
                    else:  # the sum is unsigned: negate (signed, one bit wider) for g < 0
                        gs = tree_sum(terms)
                        m.d.comb += X.eq((-gs if g < 0 else gs) << self.frac_bits)
        v = Signal(signed(self.mem_bits))
        v_in = Mux(p.first, 0, v)
        k = self.leak_shift
        H = v_in + ((X - v_in) >> k) if self.decay_input else v_in - (v_in >> k) + X
        h = Signal(signed(len(H) + 1))
        m.d.comb += h.eq(H)
        s = Signal()
        m.d.comb += s.eq(h >= self.theta)
        v_next = Mux(s, 0, h) if self.reset == "hard" else Mux(s, h - self.theta, h)
        is_tok = p.op == OP_TOKEN
        take = output_register(m, self.i, self.o, is_tok,
                               [self.o.payload.s.eq(s), self.o.payload.h.eq(h),
                                self.o.payload.y.eq(Mux(s, p.v, 0))])
        with m.If(take):
            with m.If(is_tok):
                m.d.sync += v.eq(v_next)
            with m.Else():
                with m.Switch(p.t):
                    for t in range(self.T):
                        with m.Case(t):
                            m.d.sync += alpha[t].eq(Mux(p.first, 0, alpha[t]) + pc)
        return m
