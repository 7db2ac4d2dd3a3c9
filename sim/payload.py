"""Pack and unpack stream payloads (Amaranth data layouts) as plain Python integers.

A payload beat is a nested value mirroring the layout: a ``dict`` for a
``StructLayout``, a sequence (list / numpy array) for an ``ArrayLayout``, an ``int`` for
a plain shape. :func:`pack` gives the integer seen on the flattened Verilog port
(``<stream>__payload``) and in ``amaranth.sim``; :func:`unpack` inverts it, sign-extending
signed fields. Both simulators of :mod:`svf_deploy.sim` speak only these integers.
"""

from __future__ import annotations

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["pack", "unpack", "width"]


def width(layout) -> int:
    if isinstance(layout, data.Layout):
        return layout.size
    return Shape.cast(layout).width


def pack(layout, value) -> int:
    """Integer image of ``value`` in ``layout``; raises ValueError on a value that does not fit."""
    if isinstance(layout, data.StructLayout):
        out = 0
        for name, fld in layout:
            if name not in value:
                raise ValueError(f"payload lacks field {name!r}")
            out |= pack(fld.shape, value[name]) << fld.offset
        return out
    if isinstance(layout, data.ArrayLayout):
        if len(value) != layout.length:
            raise ValueError(f"array of {len(value)} elements for a layout of {layout.length}")
        w = width(layout.elem_shape)
        out = 0
        for k, v in enumerate(value):
            out |= pack(layout.elem_shape, v) << (k * w)
        return out
    shape = Shape.cast(layout)
    v = int(value)
    lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed \
        else (0, (1 << shape.width) - 1)
    if not lo <= v <= hi:
        raise ValueError(f"{v} does not fit {shape!r}")
    return v & ((1 << shape.width) - 1)


def unpack(layout, word: int):
    """Inverse of :func:`pack`: dicts, lists and ints."""
    if isinstance(layout, data.StructLayout):
        return {name: unpack(fld.shape, word >> fld.offset) for name, fld in layout}
    if isinstance(layout, data.ArrayLayout):
        w = width(layout.elem_shape)
        return [unpack(layout.elem_shape, word >> (k * w)) for k in range(layout.length)]
    shape = Shape.cast(layout)
    v = word & ((1 << shape.width) - 1)
    if shape.signed and v >> (shape.width - 1):
        v -= 1 << shape.width
    return v
