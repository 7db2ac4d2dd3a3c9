"""Additions per time step of an integer graph, as compiled and with SepConvs factored.

The compiler fuses each depthwise ``k x k`` conv into the pointwise conv that reads it
(``compiler/passes/fuse_depthwise.py``): one dense ``k x k`` conv on spikes, ``k^2 C O``
additions per pixel. Factored, the depthwise conv runs on the spikes (``k^2 C`` adds per
pixel) and the pointwise conv reads its signed ``b``-bit integer output bit-serially
(two's-complement planes, the sign plane subtracted): ``b C O`` adds per pixel, still
exact and still additions only. :func:`adds_per_step` counts both per layer and picks the
cheaper one; ``b = bits_for(k^2 * w_max * levels) + 1`` is the depthwise output width at
``w_max = 127`` (int8), or the width the compiler predicted when it recorded the pair in
``meta["sepconv_forms"]`` (:func:`compiler.passes.fuse_depthwise.sepconv_cost`, the one
formula). A graph compiled with ``factor_depthwise="auto"`` already holds the factored
pairs: the pointwise conv reads the ``int`` output of the depthwise conv and is counted
with ``b`` = that conv's ``acc_bits`` planes.

Counts are dense (every term of every output, no spike sparsity), per time step and
sample, as a worst-case work figure: Conv/Linear ``pixels x O x (I / groups) x kh x kw x
planes`` (``planes``: bit-planes of multi-bit inputs), Attention ``2 x tokens x d^2`` per
head (phase 1 counting, phase 2 row additions; joint attention's clip-wide work divided by
``T``). Neurons, adds and pools (one add per element) are listed separately.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.utils import bits_for

from ..compiler.passes.fuse_depthwise import sepconv_cost

__all__ = ["LayerCost", "adds_per_step"]

W_MAX = 127


@dataclass(frozen=True)
class LayerCost:
    name: str
    op: str
    fused: int          # adds/step of the node as compiled
    factored: int       # adds/step of the cheapest exact form (== fused when not factorable)
    form: str           # "dense", "factored dw + bit-serial pw (b=..)", ...


def _planes(graph, name) -> int:
    t = graph.types[name]
    if t.kind == "spike":
        return bits_for(int(t.levels))
    if t.kind == "analog":
        return int(graph.input.bits)
    src = graph.node(name)
    return int(getattr(src, "acc_bits", 0))  # int input: bit-serial over its proved width


def adds_per_step(graph, T: int | None = None) -> list[LayerCost]:
    """Per-node additions per time step (dense), compiled vs cheapest factored form."""
    T = T or int(graph.meta.get("T", 1))
    fused_dw = set(graph.meta.get("fused_depthwise", {}).values())
    forms = graph.meta.get("sepconv_forms", {})
    out: list[LayerCost] = []
    for n in graph.nodes:
        t = graph.types[n.name]
        if n.op in ("Conv", "Linear"):
            w = n.weight
            o, i = int(w.shape[0]), int(w.shape[1])
            taps = int(w.shape[2] * w.shape[3]) if w.ndim == 4 else 1
            pix = int(t.shape[1] * t.shape[2]) if len(t.shape) == 3 else 1
            planes = max(1, _planes(graph, n.inputs[0]))
            dense = pix * o * i * taps * planes
            form, best = "dense", dense
            if graph.types[n.inputs[0]].kind == "int":
                form = f"bit-serial pw (b={planes})"
            if n.op == "Conv" and n.name in fused_dw and taps > 1:
                lv = graph.types[n.inputs[0]]
                levels = int(lv.levels) if lv.kind == "spike" else 2 ** graph.input.bits - 1
                b = int(forms.get(n.name, {}).get("dw_bits", 0)) or bits_for(taps * W_MAX * levels) + 1
                fact = sepconv_cost(pix, i, o, taps, planes, b)[1]
                if fact < dense:
                    form, best = f"dw on spikes + bit-serial pw (b={b})", fact
            out.append(LayerCost(n.name, n.op, dense, best, form))
        elif n.op == "Attention":
            c, h, w_ = graph.types[n.inputs[0]].shape
            d = c // n.heads
            tokens = h * w_  # per step; joint work / T is the same per step
            cost = n.heads * 2 * tokens * d * d
            out.append(LayerCost(n.name, n.op, cost, cost, f"{n.kind} counting"))
        elif n.op in ("IntLIF", "Add", "Requant", "GlobalPool", "TimeMean"):
            size = 1
            for s in t.shape:
                size *= int(s)
            out.append(LayerCost(n.name, n.op, size, size, "elementwise"))
    return out
