"""Scoreboard: compare received beats with the reference, report the first mismatch by coordinates."""

from __future__ import annotations

from .payload import unpack

__all__ = ["Mismatch", "compare"]


class Mismatch(AssertionError):
    """RTL and reference differ; the message names the first differing beat and field."""


def _diff(path: str, got, exp):
    if isinstance(exp, dict):
        for k in exp:
            r = _diff(f"{path}.{k}" if path else k, got[k], exp[k])
            if r:
                return r
        return None
    if isinstance(exp, (list, tuple)):
        for i, (g, e) in enumerate(zip(got, exp)):
            r = _diff(f"{path}[{i}]", g, e)
            if r:
                return r
        return None
    return None if int(got) == int(exp) else (path, int(got), int(exp))


def compare(layout, got: list[int], expected: list, coords: list[str], who: str = "core") -> None:
    """Check every received beat (decoded with ``layout``) against ``expected`` (decoded
    values); raises :class:`Mismatch` naming the first difference: beat index, its
    coordinates (``coords[i]``, e.g. ``"n=3 t=2"``) and the field, e.g. ``h`` or ``acc[5]``."""
    for i, exp in enumerate(expected):
        if i >= len(got):
            raise Mismatch(f"{who}: beat {i} ({coords[i]}) missing: got {len(got)} of {len(expected)} beats")
        d = _diff("", unpack(layout, got[i]), exp)
        if d:
            raise Mismatch(f"{who}: first mismatch at beat {i} ({coords[i]}), field {d[0]}: "
                           f"rtl {d[1]} != reference {d[2]}")
    if len(got) > len(expected):
        raise Mismatch(f"{who}: {len(got) - len(expected)} extra beats after the expected {len(expected)}")
