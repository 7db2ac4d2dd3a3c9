"""Spike-driven attention unit (SDHA and SDSA) by up/down counting: additions only.

One head at a time. Phase 1 streams the head's tokens ``(K[n], V[n])`` and counts
``kv[a, b]``; phase 2 streams the queries ``Q[n]`` and adds rows of ``kv``. The token set
is whatever the driver streams between two ``clear`` beats: all ``T*H*W`` tokens of the
clip for joint attention, the ``H*W`` of one step for spatial attention, the ``T`` steps
of one location for temporal attention, so the same unit serves all three. The folded threshold after the attention (``attn_lif``) is an
:class:`~.lif.IntLIFLane` on the output stream.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from ...models.errors import HardwareError
from ._common import refusing, check_bits, check_int, tree_sum

__all__ = ["AttentionUnit", "OP_KV", "OP_QUERY"]

OP_KV = 0
OP_QUERY = 1


class AttentionUnit(wiring.Component):
    """One attention head, ``d`` channels, row-serial over a ``d x d`` counter memory.

    Beats (``op``):

    * ``OP_KV`` (``kq = K[n]``, ``v = V[n]``, ``clear`` on the first token of a set):
      for every row ``a``: ``kv[a, b] += v[b] ? (kq[a] ? +1 : -1) : 0`` (sdha; sdsa:
      ``+= v[b] & kq[a]``), i.e. ``kv = sum_n (2K[n] - 1)^T V[n]``; and
      ``colsum[b] += v[b] ? 2 popcount(kq) - d : 0`` (sdsa: ``popcount(kq)``), so
      ``colsum[b] = sum_a kv[a, b]``. A token with ``v = 0`` (and no ``clear``) is skipped
      in one cycle; otherwise ``d`` cycles (one memory row per cycle).
    * ``OP_QUERY`` (``kq = Q[n]``): ``acc[b] = sum_{a : kq[a] = 1} kv[a, b]`` over ``d``
      rows, then ``y[b] = 2 acc[b] - colsum[b]`` (sdha, ``= ((2Q - 1) kv)[n, b]``) or
      ``acc[b]`` (sdsa), emitted as one output beat. ``kq = 0`` answers in one cycle
      (``-colsum`` / ``0``).

    Widths: counters are ``kv_bits`` (``|kv| <= tokens``), outputs and ``colsum``
    ``y_bits`` (the node's ``acc_bits``, ``|y| <= d * tokens``). Equals
    :func:`compiler.reference.ref_attention_head`.

    Handshake: the input beat is held (not accepted) while its rows are processed and
    accepted on its last cycle; a query's last cycle also waits for the output register
    to be free. Output latency: 1 cycle after the query's last row.

    Members
    -------
    i : In(stream.Signature) ``op: 1``, ``clear: 1``, ``kq: unsigned(d)``, ``v: unsigned(d)``
    o : Out(stream.Signature) ``y: [d] signed(y_bits)``
    """

    @refusing
    def __init__(self, *, d: int, kv_bits: int, y_bits: int, kind: str = "sdha"):
        who = "AttentionUnit"
        self.d = check_int(who, "d (channels per head)", d, 1, 1024)
        self.kv_bits = check_bits(who, "kv_bits", kv_bits)
        self.y_bits = check_bits(who, "y_bits (acc_bits)", y_bits)
        if kind not in ("sdha", "sdsa"):
            raise HardwareError(f"{who}: kind must be 'sdha' or 'sdsa', not {kind!r}")
        self.kind = kind
        self.in_layout = data.StructLayout({"op": unsigned(1), "clear": unsigned(1),
                                            "kq": unsigned(d), "v": unsigned(d)})
        self.out_layout = data.StructLayout({"y": data.ArrayLayout(signed(y_bits), d)})
        super().__init__({"i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    @classmethod
    def for_node(cls, node, graph, T: int) -> "AttentionUnit":
        """The unit for an :class:`~compiler.ir.Attention` node of ``graph`` at ``T`` steps."""
        if getattr(node, "op", None) != "Attention":
            raise HardwareError(f"AttentionUnit.for_node needs an Attention node, not {node!r}")
        who = f"Attention {node.name!r}"
        for i in node.inputs:
            t = graph.types[i]
            if t.kind != "spike" or t.levels != 1:
                raise HardwareError(f"{who}: the attention unit counts binary spikes; {i!r} carries "
                                    f"{t.kind} values with levels={t.levels} (multi-level attention "
                                    "inputs have no core)")
        c, h, w = graph.types[node.inputs[0]].shape
        counts = {"joint": T * h * w, "spatial": h * w, "temporal": T}
        if node.tokens not in counts:
            raise HardwareError(f"{who}: token set {node.tokens!r} has no core")
        tokens = counts[node.tokens]
        check_bits(who, "acc_bits", node.acc_bits)
        return cls(d=c // node.heads, kv_bits=bits_for(tokens, require_sign_bit=True),
                   y_bits=node.acc_bits, kind=node.kind)

    def elaborate(self, platform):
        m = Module()
        d = self.d
        p = self.i.payload
        row_t = data.ArrayLayout(signed(self.kv_bits), d)
        m.submodules.kv = mem = Memory(shape=row_t, depth=d, init=[])
        rd = mem.read_port(domain="comb")
        wr = mem.write_port()
        a = Signal(range(max(d, 2)))
        last_row = a == d - 1
        colsum = Signal(data.ArrayLayout(signed(self.y_bits), d))
        acc = Signal(data.ArrayLayout(signed(self.y_bits), d))
        m.d.comb += [rd.addr.eq(a), wr.addr.eq(a)]
        ka = p.kq.bit_select(a, 1)  # K[n, a] (phase 1) or Q[n, a] (phase 2)
        free = ~self.o.valid | self.o.ready
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        # phase 1: one row of counters per cycle
        pc = tree_sum([p.kq[j] for j in range(d)])
        for b in range(d):
            base = Mux(p.clear, 0, rd.data[b])
            if self.kind == "sdha":
                step = Mux(p.v[b], Mux(ka, 1, -1), 0)
            else:
                step = (p.v[b] & ka).as_unsigned()
            m.d.comb += wr.data[b].eq(base + step)
        col_step = (pc << 1) - d if self.kind == "sdha" else pc

        # phase 2: add selected rows
        acc_next = [Mux(a == 0, 0, acc[b]) + Mux(ka, rd.data[b], 0) for b in range(d)]
        ys = [(acc_next[b] << 1) - colsum[b] if self.kind == "sdha" else acc_next[b]
              for b in range(d)]
        y_empty = [-colsum[b] if self.kind == "sdha" else 0 for b in range(d)]

        with m.If(self.i.valid):
            with m.If(p.op == OP_KV):
                with m.If((p.v == 0) & ~p.clear):
                    m.d.comb += self.i.ready.eq(1)  # no active V: no counter moves
                with m.Else():
                    m.d.comb += wr.en.eq(1)
                    with m.If(last_row):
                        m.d.comb += self.i.ready.eq(1)
                        m.d.sync += a.eq(0)
                        for b in range(d):
                            m.d.sync += colsum[b].eq(Mux(p.clear, 0, colsum[b]) + Mux(p.v[b], col_step, 0))
                    with m.Else():
                        m.d.sync += a.eq(a + 1)
            with m.Else():
                with m.If(p.kq == 0):
                    with m.If(free):
                        m.d.comb += self.i.ready.eq(1)
                        m.d.sync += self.o.valid.eq(1)
                        m.d.sync += [self.o.payload.y[b].eq(y_empty[b]) for b in range(d)]
                with m.Elif(~last_row):
                    m.d.sync += a.eq(a + 1)
                    m.d.sync += [acc[b].eq(acc_next[b]) for b in range(d)]
                with m.Elif(free):
                    m.d.comb += self.i.ready.eq(1)
                    m.d.sync += a.eq(0)
                    m.d.sync += self.o.valid.eq(1)
                    m.d.sync += [self.o.payload.y[b].eq(ys[b]) for b in range(d)]
        return m
