"""``SimdAcc``: one DSP48E2 as a two-lane SIMD accumulator, no multiplier.

Every cycle (``sync`` domain, one cycle of latency, ``P`` resets to 0)::

    P <= (clr ? 0 : P) + (g0 ? AB : 0) + (g1 ? C : 0)

lane-wise on two 24-bit lanes (lane ``k`` = bits ``24k .. 24k+23`` of ``AB``, ``C`` and
``P``): carries never cross from lane 0 into lane 1 and each lane wraps modulo ``2**24``,
as the DSP48E2's ``USE_SIMD="TWO24"`` adder does. The CONV unit (:mod:`.engine`) feeds two
output channels' weights of one term on ``AB`` and of a second term on ``C``, gated by the
spike bits, so one slice adds a *pair of terms* per cycle into two channels; the program
emitter proves no lane ever wraps (:func:`.program.check_supported`).

Two flavours, chosen by ``instance``:

* ``instance=False`` (simulation, Verilator): a behavioural twin in Amaranth arithmetic.
* ``instance=True`` (synthesis): ``Instance("DSP48E2", USE_MULT="NONE", USE_SIMD="TWO24")``
  with only ``PREG = 1`` (every other register bypassed, so the latency is the twin's one
  cycle) and a dynamic OPMODE (UG579, "W, X, Y and Z multiplexers"):

  ======  ===============  ==============================================
  mux     OPMODE bits      value
  ======  ===============  ==============================================
  X       ``[1:0]``        ``11`` = ``A:B`` when ``g0``, else ``00`` = 0
  Y       ``[3:2]``        ``11`` = ``C`` when ``g1``, else ``00`` = 0
  Z       ``[6:4]``        ``010`` = ``P`` unless ``clr``, else ``000`` = 0
  W       ``[8:7]``        ``00`` = 0
  ======  ===============  ==============================================

  ``ALUMODE = 0000`` (``Z + W + X + Y + CIN``), ``CARRYIN = 0``, ``INMODE = 0``; ``A`` is
  ``AB[47:18]``, ``B`` is ``AB[17:0]``. ``RSTP`` is the domain reset. Yosys has no
  simulation model for the primitive (it is a blackbox in ``cells_xtra.v``), hence the twin.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..cores._common import dsp48e2_adder

__all__ = ["SimdAcc", "LANE_BITS", "opmode"]

#: width of one SIMD lane (``USE_SIMD="TWO24"``)
LANE_BITS = 24


def opmode(clr, g0, g1):
    """The 9-bit DSP48E2 OPMODE for the gates (W = 0, Z = P or 0, Y = C or 0, X = A:B or 0)."""
    return Cat(Mux(g0, 0b11, 0b00), Mux(g1, 0b11, 0b00), Mux(clr, 0b000, 0b010), Const(0, 2))


class SimdAcc(wiring.Component):
    """Two-lane gated accumulator (see the module docstring).

    Members
    -------
    clr, g0, g1 : In(1) — restart from 0, add ``ab``, add ``c``.
    ab, c : In(48) — two 24-bit lanes each (lane 1 in the high half).
    p : Out(48) — the registered accumulator, two 24-bit lanes.
    """

    def __init__(self, instance: bool = False):
        self.instance = bool(instance)
        super().__init__({"clr": In(1), "g0": In(1), "g1": In(1), "ab": In(48), "c": In(48),
                          "p": Out(48)})

    def elaborate(self, platform):
        m = Module()
        if self.instance:
            m.submodules.dsp = dsp48e2_adder("TWO24", ab=self.ab, c=self.c, p=self.p, preg=True,
                                             opmode=opmode(self.clr, self.g0, self.g1))
            return m
        lanes = []
        for k in range(2):
            sl = slice(LANE_BITS * k, LANE_BITS * (k + 1))
            s = Signal(LANE_BITS, name=f"lane{k}")
            m.d.comb += s.eq(Mux(self.clr, 0, self.p[sl]) + Mux(self.g0, self.ab[sl], 0)
                             + Mux(self.g1, self.c[sl], 0))   # truncated: wraps mod 2**24
            lanes.append(s)
        m.d.sync += self.p.eq(Cat(*lanes))
        return m
