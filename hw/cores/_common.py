"""Shared parts of the cores: parameter checks and the one-register stream stage.

Every core moves data with :mod:`amaranth.lib.stream` handshakes: a beat transfers on a
clock edge where ``valid & ready``; a producer holds ``payload`` (and ``valid``) until
then. The output stage of every core is :func:`output_register`, so each core has the
same back-pressure contract: ``i.ready = ~o.valid | o.ready`` (an input beat is taken
whenever the output register is empty or being emptied in the same cycle), full
throughput without back-pressure, and no combinational path from ``i.valid`` to
``o.valid``.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, ResetSignal, Value

from ...models.errors import HardwareError

__all__ = ["refusing", "check_int", "check_bits", "check_neuron", "signed_range", "output_register",
           "tree_sum", "dsp48e2_adder"]


def check_int(who: str, name: str, value, lo: int, hi: int | None = None) -> int:
    """``value`` as an ``int`` in ``[lo, hi]``, else :class:`HardwareError` naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise HardwareError(f"{who}: {name} must be an integer, not {value!r}") from None
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise HardwareError(f"{who}: {name} must be {rng}, not {value!r}")
    return value


def check_bits(who: str, name: str, bits: int, hi: int = 64) -> int:
    """A register width from the compiler (``acc_bits``/``mem_bits``): 0 means not derived."""
    if bits == 0:
        raise HardwareError(f"{who}: {name} is 0 (not derived); run the compiler's bit-width "
                            "pass before generating hardware")
    return check_int(who, name, bits, 2, hi)


def check_neuron(who: str, *, mem_bits: int, frac_bits: int, leak_shift: int, decay_input,
                 reset: str) -> tuple[int, int, int, bool, str]:
    """The integer-LIF parameters every neuron core shares, checked:
    ``(mem_bits, frac_bits, leak_shift, decay_input, reset)`` with ``mem_bits`` derived
    (2..64), ``frac_bits`` in 0..24, ``leak_shift`` k in 1..30 (leak ``2**-k``) and ``reset``
    ``'hard'`` or ``'soft'``."""
    if reset not in ("hard", "soft"):
        raise HardwareError(f"{who}: reset must be 'hard' or 'soft', not {reset!r}")
    return (check_bits(who, "mem_bits", mem_bits), check_int(who, "frac_bits", frac_bits, 0, 24),
            check_int(who, "leak_shift", leak_shift, 1, 30), bool(decay_input), reset)


def signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def output_register(m: Module, i, o, fire_out, assigns) -> Value:
    """The common output stage; returns the input-accept condition.

    ``i``/``o``: the input and output stream interfaces. On a cycle where an input beat
    is accepted and ``fire_out`` is true, ``assigns`` (statements on ``o.payload``) are
    registered and ``o.valid`` rises; an accepted output beat clears ``o.valid``.
    """
    m.d.comb += i.ready.eq(~o.valid | o.ready)
    take = i.valid & i.ready
    with m.If(o.ready):
        m.d.sync += o.valid.eq(0)
    with m.If(take & fire_out):
        m.d.sync += o.valid.eq(1)
        m.d.sync += assigns
    return take


def tree_sum(terms: list) -> Value:
    """Balanced adder tree (log depth); Amaranth widens each sum, so no overflow."""
    terms = list(terms)
    if not terms:
        from amaranth.hdl import Const

        return Const(0, 1)
    while len(terms) > 1:
        nxt = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


def refusing(init):
    """Decorate a core's ``__init__``: a refused construction (an exception from the
    parameter checks) does not also warn that the half-built core was never elaborated."""
    import functools

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        try:
            return init(self, *args, **kwargs)
        except Exception:
            self._MustUse__silence = True
            raise

    return wrapper


def dsp48e2_adder(simd: str, *, ab, c, opmode, p, pcin=None, pcout=None, preg: bool = False) -> Instance:
    """One DSP48E2 used as a SIMD adder, no multiplier (``USE_MULT="NONE"``).

    ``P = W + X + Y + Z`` per lane of ``simd`` (``"FOUR12"``, ``"TWO24"``, ``"ONE48"``; no carry
    between lanes), the multiplexers chosen by the 9-bit dynamic ``opmode`` (UG579:
    ``[1:0]`` X, ``[3:2]`` Y, ``[6:4]`` Z, ``[8:7]`` W), ``ALUMODE = 0000``, ``CARRYIN = 0``.
    ``A:B = ab`` (``A = ab[47:18]``, ``B = ab[17:0]``), ``C = c``, ``PCIN = pcin`` (0 if
    None), ``PCOUT`` to ``pcout`` if given. Every input register is bypassed; ``P`` is
    registered in the ``sync`` domain (``RSTP`` its reset) when ``preg``, else combinational.
    Synthesis only: Yosys has no simulation model for the primitive, so each user keeps a
    behavioural twin of the same lane arithmetic for simulation.
    """
    ports = {"o_P": p} | ({"o_PCOUT": pcout} if pcout is not None else {})
    return Instance(
        "DSP48E2",
        p_USE_MULT="NONE", p_USE_SIMD=simd, p_USE_WIDEXOR="FALSE",
        p_A_INPUT="DIRECT", p_B_INPUT="DIRECT", p_AMULTSEL="A", p_BMULTSEL="B",
        p_AREG=0, p_BREG=0, p_CREG=0, p_DREG=0, p_ADREG=0, p_MREG=0, p_PREG=int(preg),
        p_ACASCREG=0, p_BCASCREG=0, p_OPMODEREG=0, p_ALUMODEREG=0, p_INMODEREG=0,
        p_CARRYINREG=0, p_CARRYINSELREG=0,
        i_CLK=ClockSignal("sync") if preg else Const(0, 1),
        i_A=ab[18:48], i_B=ab[0:18], i_C=c, i_D=Const(0, 27),
        i_OPMODE=opmode, i_ALUMODE=Const(0, 4), i_INMODE=Const(0, 5),
        i_CARRYIN=Const(0, 1), i_CARRYINSEL=Const(0, 3),
        i_PCIN=pcin if pcin is not None else Const(0, 48),
        i_ACIN=Const(0, 30), i_BCIN=Const(0, 18), i_CARRYCASCIN=Const(0, 1), i_MULTSIGNIN=Const(0, 1),
        **{f"i_CE{n}": Const(1, 1) for n in ("A1", "A2", "B1", "B2", "C", "D", "AD", "M", "P",
                                             "CTRL", "ALUMODE", "INMODE", "CARRYIN")},
        **{f"i_RST{n}": Const(0, 1) for n in ("A", "B", "C", "D", "M", "CTRL", "ALUMODE", "INMODE",
                                              "ALLCARRYIN")},
        i_RSTP=ResetSignal("sync") if preg else Const(0, 1),
        **ports,
    )
