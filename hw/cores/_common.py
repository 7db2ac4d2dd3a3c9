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

from amaranth.hdl import Module, Value

from ...models.errors import HardwareError

__all__ = ["refusing", "check_int", "check_bits", "check_neuron", "signed_range", "output_register",
           "tree_sum"]


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
