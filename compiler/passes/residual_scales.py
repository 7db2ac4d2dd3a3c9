r"""Give every residual stream one per-channel scale shared by all its writers.

A *residual stream* is a connected component of nodes joined through ``Add`` nodes:
each Add is joined with both operands and (through later Adds reading it) with its
readers that are Adds; an operand that is a ``TimeSlice`` or ``Upsample`` (the
segmentation head's last step of a stage, the FPN's upsampled sum) joins its input too. Its *writers* are the Conv/Linear layers in the component (the
downsample conv that opens a stage and every branch's last layer).

Each writer ``w`` has a *natural* per-channel scale, the one :mod:`quantize` would give
it alone: with its input scale ``s_in`` (1 for spikes, ``input_scale`` for the analog
frame, the depthwise conv's per-channel scale for SepConv's pointwise conv; see
:func:`quantize.tensor_scales`) and ``q = 2**(bits-1) - 1``

.. math::  n_w[c] = \max_{i,k} |W_w[c, i, k]|\, s_{in,w}[i] \,/\, q .

Default rule (``stream_slack_bits=None``): the shared scale is the largest,

.. math::  s[c] = \max_w n_w[c],

the smallest scale at which every writer's weights still fit in ``bits``. Each writer
is annotated with ``out_scale = s``; :mod:`quantize` quantises its weights *to that
scale*, so every Add is a plain integer add (design note 2).

Precision trade-off (measured, not hidden). A writer whose natural scale is far below
``s`` keeps only ``q n_w / s`` integer levels at the stream's scale. The analog first
layer is such a writer (``s_in = 1/255``: it would keep about 2 levels), and so was
SepConv's pointwise conv before :mod:`fuse_depthwise` merged it with the depthwise conv.
The default pipeline answers this in :mod:`quantize`, which gives such writers a finer
scale ``s / 2**shift`` and an ``ir.Requant`` rounding shift onto the stream
(``requant_min_shift``); ``meta["residual_streams"]`` lists each writer's levels at the
shared scale and ``meta["precision_warnings"]`` names every
writer left with fewer than ``2**(bits-2)`` levels. The option ``stream_slack_bits = k``
bounds the loss to ``k`` bits by making the scale finer where the writers disagree:

.. math::  s[c] = \min\big(\max_w n_w[c],\; 2^{k} \min_w n_w[c]\big)

(zero rows ignored in the minimum). Writers with a larger natural scale then need
weights wider than ``bits``, up to ``q \max_w n_w / s``; the stream's entry records that
limit as ``weight_limit`` and :mod:`quantize` checks it (its documented exception).
Streams are processed in graph order, so a writer reading an earlier stream sees that
stream's final scale. A channel with all-zero weights in every writer takes the
stream's largest scale (any positive scale represents it exactly).

Invariant established: all writers of a stream carry identical ``out_scale``, and every
Add operand is a writer or an Add of the same stream.
"""

from __future__ import annotations

import math

import numpy as np

from ...models.errors import ConfigError, GraphError
from .. import ir
from . import Contract
from . import quantize

__all__ = ["run", "streams", "TRANSPARENT"]

#: nodes that pass a stream on unchanged (same scale): the last step, an upsampled copy
TRANSPARENT = (ir.TimeSlice, ir.Upsample)

CONTRACT = Contract("residual_scales", "float", "float",
                    ("weight_bits", "input_scale", "stream_slack_bits", "threshold_grid"))


def streams(graph: ir.Graph) -> list[list[str]]:
    """Connected components (node names, graph order) of the Add-operand relation."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb

    for n in graph.nodes:
        if isinstance(n, ir.Add):
            for i in n.inputs:
                union(n.name, i)
                src = graph.node(i)
                while isinstance(src, TRANSPARENT):  # a slice / upsampled copy of a stream
                    union(src.name, src.inputs[0])
                    src = graph.node(src.inputs[0])
    comps: dict[str, list[str]] = {}
    for n in graph.nodes:
        if n.name in parent:
            comps.setdefault(find(n.name), []).append(n.name)
    return list(comps.values())


def _shared_scale(nat: np.ndarray, slack: int | None) -> np.ndarray:
    """``nat``: ``[writers, C]`` natural scales (0 = zero row) -> the stream scale ``[C]``."""
    s = nat.max(axis=0)
    if slack is not None:
        lo = np.where(nat > 0, nat, np.inf).min(axis=0)
        s = np.where(np.isfinite(lo), np.minimum(s, lo * 2.0 ** slack), s)
    return np.where(s > 0, s, s.max() if s.max() > 0 else 1.0)


def run(graph: ir.Graph, weight_bits: int = 8, input_scale: float = 1 / 255,
        stream_slack_bits: int | None = None, threshold_grid: bool = True) -> ir.Graph:
    """Annotate every residual stream's writers with the stream's shared ``out_scale``.

    Parameters
    ----------
    weight_bits : signed weight width of the natural scales.
    input_scale : real value of one input code (the analog first layer's ``s_in``).
    stream_slack_bits : ``None`` (default): every writer fits ``weight_bits``. An int
        ``k >= 0``: no writer loses more than ``k`` bits of resolution to the shared
        scale; others may need wider weights (see the module docstring).
    threshold_grid : round the shared scale up to ``v_th * 2**e`` of the neurons reading
        the stream (:func:`quantize.threshold_grid`: exact thresholds, at most one bit).

    Raises
    ------
    GraphError
        If an Add operand is neither a layer nor an Add, a writer reads its own stream
        (the scale would depend on itself), or the invariant fails.
    """
    if graph.stage != "float":
        raise GraphError(f"residual_scales runs on float graphs, got a {graph.stage} graph")
    q = quantize.qmax(weight_bits)
    if stream_slack_bits is not None and not (isinstance(stream_slack_bits, int)
                                              and 0 <= stream_slack_bits <= 24):
        raise ConfigError(f"stream_slack_bits must be None or an int in 0..24, got {stream_slack_bits!r}")
    g = graph
    info, warnings = [], []
    for comp in streams(graph):
        members = set(comp)
        for m in comp:
            node = g.node(m)
            if not isinstance(node, (ir.Add, ir.Conv, ir.Linear) + TRANSPARENT):
                raise GraphError(f"residual_scales: {node.op} {m!r} is added into a residual "
                                 "stream; only Conv/Linear layers (and Adds) may write a stream")
        writers = [g.node(m) for m in comp if isinstance(g.node(m), (ir.Conv, ir.Linear))]
        for w in writers:
            if w.inputs[0] in members:
                raise GraphError(f"residual_scales: writer {w.name!r} reads its own stream")
        sc = quantize.tensor_scales(g, input_scale, weight_bits, grid=threshold_grid)
        nat = []
        for w in writers:
            a = np.abs(np.asarray(w.weight, np.float64)) * quantize.weight_in_scale(w, sc[w.inputs[0]])
            nat.append(a.reshape(a.shape[0], -1).max(axis=1) / q)
        nat_a = np.stack(nat)
        s = _shared_scale(nat_a, stream_slack_bits)
        if threshold_grid:
            s = quantize.threshold_grid(s, quantize.neuron_threshold(g, comp))
        names = {w.name for w in writers}
        g = g.replace(nodes=[n.replace(out_scale=s.copy()) if n.name in names else n for n in g.nodes])
        # integer levels each writer keeps (its largest |W_int|), and the widest weight
        levels = {w.name: float(q * (nat_a[j] / s).max()) for j, w in enumerate(writers)}
        limit = max(q, math.ceil(max(levels.values()) - 1e-9)) if levels else q
        for w, lv in levels.items():
            if lv < 2 ** (weight_bits - 2):
                warnings.append(f"{w}: {lv:.3g} weight levels at its residual stream's scale "
                                f"(natural: {q}); see residual_scales' stream_slack_bits")
        info.append({"adds": [m for m in comp if isinstance(g.node(m), ir.Add)],
                     "writers": [w.name for w in writers], "levels": levels,
                     "weight_limit": int(limit),
                     "scale_min": float(s.min()), "scale_max": float(s.max())})
    meta = {**g.meta, "residual_streams": info, "precision_warnings": warnings}
    out = g.replace(meta=meta)
    for st in info:
        scales = [out.node(w).out_scale for w in st["writers"]]
        if any(x is None or not np.array_equal(x, scales[0]) for x in scales):
            raise GraphError(f"residual_scales: writers {st['writers']} do not share one out_scale")
    return out
