"""Spike-gated accumulator (the PE array for Conv / Linear on spikes): additions only.

A binary spike selects a weight or zero; ``lanes`` output channels are summed in parallel
from ``terms`` (input, tap) pairs per beat. There is no multiplier anywhere: the term sum
is an adder tree of multiplexed weights (``form="lut"``) or a cascade of DSP48E2 slices
used as SIMD adders (``form="dsp"``, ``USE_MULT="NONE"``), and multi-bit inputs arrive as
bit-planes whose partial sums are shifted (not multiplied) into the accumulator.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ...models.errors import HardwareError
from ._common import refusing, check_bits, check_int, dsp48e2_adder, output_register, tree_sum

__all__ = ["GatedAccumulator", "DSPAdderChain", "DSP_LANE_BITS", "DSP_LANES"]

#: FOUR12 SIMD: four 12-bit lanes per DSP48E2
DSP_LANE_BITS = 12
DSP_LANES = 4


def _check_lane_bound(who: str, terms: int, w_abs_max: int) -> None:
    """Refuse a chain whose lane sum could leave the 12-bit SIMD lane (``|sum| <= 2047``)."""
    worst = terms * w_abs_max
    if worst > (1 << (DSP_LANE_BITS - 1)) - 1:
        raise HardwareError(f"{who}: {terms} terms of weights up to |{w_abs_max}| can reach {worst}, "
                            f"beyond a {DSP_LANE_BITS}-bit SIMD lane (2047); use at most "
                            f"{((1 << (DSP_LANE_BITS - 1)) - 1) // w_abs_max} terms per chain")


class DSPAdderChain(wiring.Component):
    """Spike-gated 4-lane SIMD adder chain: DSP48E2 ``FOUR12`` slices with ``USE_MULT="NONE"``.

    ``n = ceil(terms / 2)`` slices in a PCIN cascade. Slice ``k`` adds the 4-lane weight
    vector of term ``2k`` on its X port (``A:B``) and that of term ``2k+1`` on its Y port
    (``C``), each gated by its spike through the OPMODE multiplexers, plus the previous
    slice's ``P`` on Z (``PCIN``):

    ``OPMODE = W:00 | Z:(k == 0 ? 000 : 001 PCIN) | Y:(s[2k+1] ? 11 C : 00 zero) |
    X:(s[2k] ? 11 A:B : 00 zero)``, ``ALUMODE = 0000`` (``Z + W + X + Y + CIN``),
    ``CARRYIN = 0``. Every register is bypassed (``*REG = 0``): the chain is
    combinational, one accumulate per cycle in the fabric after it. (A timing-closed
    version registers ``P`` per slice with systolic input skew as in FireFly v2; check the
    OPMODE encoding against UG579 in Vivado.)

    Each 12-bit lane wraps modulo ``2**12`` independently (SIMD: no carry between lanes).
    The sum is exact because the constructor proves ``|sum| <= terms * w_abs_max <= 2047``
    (``w_abs_max``: the largest ``|weight|``, ``2**(w_bits-1)`` unless the weights are known
    to be symmetric, e.g. 127 for the compiler's int8; 16 terms then fit); otherwise it
    refuses.

    ``instance=True`` emits the ``DSP48E2`` primitives (synthesis: Yosys counts them as
    DSPs and has no simulation model for them); ``instance=False`` emits the behavioural
    twin with the same lane-wrapping arithmetic (simulation, and where no DSP is wanted).

    Members
    -------
    spikes : In(unsigned(terms))
    weights : In(ArrayLayout(ArrayLayout(signed(w_bits), 4), terms))
    lanes : Out(ArrayLayout(signed(12), 4)) — combinational lane sums.
    """

    @refusing
    def __init__(self, terms: int, w_bits: int = 8, *, w_abs_max: int | None = None,
                 instance: bool = False):
        who = "DSPAdderChain"
        self.terms = check_int(who, "terms", terms, 1)
        self.w_bits = check_int(who, "w_bits", w_bits, 1, DSP_LANE_BITS)
        self.w_abs_max = check_int(who, "w_abs_max", 1 << (w_bits - 1) if w_abs_max is None
                                   else w_abs_max, 0, 1 << (w_bits - 1))
        _check_lane_bound(who, terms, self.w_abs_max)
        self.instance = bool(instance)
        super().__init__({
            "spikes": In(unsigned(terms)),
            "weights": In(data.ArrayLayout(data.ArrayLayout(signed(w_bits), DSP_LANES), terms)),
            "lanes": Out(data.ArrayLayout(signed(DSP_LANE_BITS), DSP_LANES)),
        })

    @property
    def slices(self) -> int:
        return (self.terms + 1) // 2

    def elaborate(self, platform):
        m = Module()
        vecs = []
        for j in range(2 * self.slices):
            if j < self.terms:
                v = Signal(48, name=f"w48_{j}")
                parts = []
                for lane in range(DSP_LANES):
                    e = Signal(signed(DSP_LANE_BITS), name=f"w{j}_l{lane}")
                    m.d.comb += e.eq(self.weights[j][lane])
                    parts.append(e)
                m.d.comb += v.eq(Cat(*parts))
                vecs.append(v)
            else:
                vecs.append(Const(0, 48))
        gate = [self.spikes[j] if j < self.terms else Const(0, 1) for j in range(2 * self.slices)]
        if self.instance:
            pc = None
            for k in range(self.slices):
                ab, c = vecs[2 * k], vecs[2 * k + 1]
                opmode = Signal(9, name=f"opmode{k}")
                m.d.comb += opmode.eq(Cat(Mux(gate[2 * k], 0b11, 0b00), Mux(gate[2 * k + 1], 0b11, 0b00),
                                          Const(0b000 if k == 0 else 0b001, 3), Const(0, 2)))
                p = Signal(48, name=f"p{k}")
                pcout = Signal(48, name=f"pcout{k}")
                m.submodules[f"dsp{k}"] = dsp48e2_adder("FOUR12", ab=ab, c=c, opmode=opmode, p=p,
                                                        pcin=pc, pcout=pcout)
                pc = pcout
            m.d.comb += self.lanes.as_value().eq(p)
        else:
            for lane in range(DSP_LANES):
                sl = slice(DSP_LANE_BITS * lane, DSP_LANE_BITS * (lane + 1))
                acc = Const(0, DSP_LANE_BITS)
                for j in range(self.terms):
                    acc = (acc + Mux(gate[j], vecs[j][sl], 0))[:DSP_LANE_BITS]  # lane wraps mod 2**12
                m.d.comb += self.lanes[lane].eq(acc.as_signed())
        return m


class GatedAccumulator(wiring.Component):
    """Spike-gated accumulator for ``lanes`` output channels.

    Per accepted beat (``s = spikes``, ``w = weights``, ``p = plane``):

    ``part[o] = sum_{j : s[j] = 1} w[j][o]``  (no multiplier: a mux per term)

    ``acc[o] := (first ? bias[o] : acc[o]) + (part[o] << p)``

    and on a ``last`` beat the new ``acc`` is emitted. A run of beats ``first ... last``
    therefore computes ``bias[o] + sum_beats sum_j s[j] w[j][o] 2**p``: a Conv/Linear output
    over binary spikes (``planes = 1``) or over multi-bit inputs ``x = sum_p 2**p plane_p``
    sent as bit-planes (:mod:`.bitplane`). Beats may arrive in any order: every partial
    sum is bounded by the node's proved bound, so ``acc_bits`` (from the compiler) never
    overflows and the result equals :func:`compiler.reference.ref_gated_accumulate`.

    Forms: ``"lut"`` sums the terms with a balanced LUT/CARRY adder tree (any ``terms``,
    ``w_bits``); ``"dsp"`` uses one :class:`DSPAdderChain` per 4 lanes (the synthesis
    build passes ``dsp_instance=True`` to get DSP48E2 primitives; simulation uses their
    behavioural twin). The accumulator itself is fabric in both.

    Latency 1: the sum of a ``last`` beat is on ``o`` the next cycle; one beat per cycle;
    ``i.ready = ~o.valid | o.ready``.

    Members
    -------
    i : In(stream.Signature(StructLayout))
        ``spikes: unsigned(terms)``, ``weights: [terms][lanes] signed(w_bits)``,
        ``bias: [lanes] signed(acc_bits)``, ``plane: unsigned`` (``planes > 1``),
        ``first``, ``last``.
    o : Out(stream.Signature(StructLayout))
        ``acc: [lanes] signed(acc_bits)``.
    """

    @refusing
    def __init__(self, lanes: int, terms: int, w_bits: int, acc_bits: int, *, planes: int = 1,
                 form: str = "lut", dsp_instance: bool = False, w_abs_max: int | None = None):
        who = "GatedAccumulator"
        self.lanes = check_int(who, "lanes", lanes, 1)
        self.terms = check_int(who, "terms", terms, 1)
        self.w_bits = check_int(who, "w_bits", w_bits, 1, 32)
        self.acc_bits = check_bits(who, "acc_bits", acc_bits)
        self.planes = check_int(who, "planes", planes, 1, 32)
        if form not in ("lut", "dsp"):
            raise HardwareError(f"{who}: form must be 'lut' or 'dsp', not {form!r}")
        if form == "dsp" and lanes % DSP_LANES:
            raise HardwareError(f"{who}: the DSP form packs {DSP_LANES} lanes per slice; "
                                f"lanes={lanes} is not a multiple of {DSP_LANES}")
        self.form = form
        self.dsp_instance = bool(dsp_instance)
        self.w_abs_max = check_int(who, "w_abs_max", 1 << (w_bits - 1) if w_abs_max is None
                                   else w_abs_max, 0, 1 << (w_bits - 1))
        if form == "dsp":
            if w_bits > DSP_LANE_BITS:
                raise HardwareError(f"{who}: int{w_bits} weights do not fit a {DSP_LANE_BITS}-bit SIMD lane")
            _check_lane_bound(who, terms, self.w_abs_max)
        fields = {
            "spikes": unsigned(terms),
            "weights": data.ArrayLayout(data.ArrayLayout(signed(w_bits), lanes), terms),
            "bias": data.ArrayLayout(signed(acc_bits), lanes),
            "first": unsigned(1),
            "last": unsigned(1),
        }
        if planes > 1:
            fields["plane"] = unsigned(ceil_log2(planes))
        self.in_layout = data.StructLayout(fields)
        self.out_layout = data.StructLayout({"acc": data.ArrayLayout(signed(acc_bits), lanes)})
        super().__init__({"i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    def elaborate(self, platform):
        m = Module()
        p = self.i.payload
        parts = []
        if self.form == "lut":
            for o in range(self.lanes):
                parts.append(tree_sum([Mux(p.spikes[j], p.weights[j][o], 0) for j in range(self.terms)]))
        else:
            for g in range(self.lanes // DSP_LANES):
                ch = m.submodules[f"chain{g}"] = DSPAdderChain(self.terms, self.w_bits,
                                                                w_abs_max=self.w_abs_max,
                                                                instance=self.dsp_instance)
                m.d.comb += ch.spikes.eq(p.spikes)
                for j in range(self.terms):
                    for lane in range(DSP_LANES):
                        m.d.comb += ch.weights[j][lane].eq(p.weights[j][g * DSP_LANES + lane])
                parts.extend(ch.lanes[lane] for lane in range(DSP_LANES))
        acc = Signal(data.ArrayLayout(signed(self.acc_bits), self.lanes))
        nxt = Signal(data.ArrayLayout(signed(self.acc_bits), self.lanes))
        for o in range(self.lanes):
            part = parts[o]
            if self.planes > 1:
                part = part << p.plane
            m.d.comb += nxt[o].eq(Mux(p.first, p.bias[o], acc[o]) + part)
        take = output_register(m, self.i, self.o, p.last, [self.o.payload.acc.eq(nxt)])
        with m.If(take):
            m.d.sync += acc.eq(nxt)
        return m
