r"""Quantise weights: ``float`` graph -> ``quantized`` graph (integer weights, real scales).

Every tensor gets a per-channel *scale*: the real value of one integer unit. Spikes have
scale 1, the analog input ``input_scale`` (default ``1/255``: 8-bit codes of frames in
``[0, 1]``), an Attention output its ``factor``, a GlobalPool output ``in_scale / (H W)``.
A Conv/Linear reading a tensor of scale ``s_in[i]`` and producing scale ``s[o]`` gets

.. math::

    W_{int}[o, i, k] = \mathrm{round}\!\left(\frac{W[o, i, k]\, s_{in}[i]}{s[o]}\right), \qquad
    b_{int}[o] = \mathrm{round}\!\left(\frac{b[o]}{s[o]}\right)

so that ``s[o] * (sum W_int x_int + b_int) ~ sum W x + b`` with ``x = s_in x_int``. The
output scale is

* the ``out_scale`` annotation when present (residual streams, from
  :mod:`residual_scales`);
* else per output channel, symmetric:
  ``s[o] = max_{i,k} |W[o, i, k]| s_in[i] / (2**(bits-1) - 1)``; a zero row takes the
  layer's largest scale (or 1), since any positive scale represents it exactly;
* the classifier Linear (every reader a ``TimeMean``) shares one scale over all
  outputs, ``s = max_o s[o]``, so the integer argmax is the real argmax.

Residual-stream writers computing at a much finer scale than their stream (the analog
first layer reads codes of ``1/255``) would keep only a bit or two of weight resolution
at the stream's scale; they are quantised at ``s / 2**shift`` instead and followed by an
``ir.Requant`` (a rounding shift onto the stream scale): see ``requant_min_shift``.

Threshold grid (default): the scale of a layer read by neurons (directly, or as a
residual stream) is rounded up to ``v_th * 2**e``, the nearest power-of-two fraction
of the readers' threshold (:func:`threshold_grid`), so ``v_th / s`` is a power of two:
thresholds, and biases that are dyadic multiples of ``v_th`` (e.g. a BN bias of exactly
``2 v_th``), are then exact in the integer neuron. It costs at most one bit of weight
resolution.

Rounding is numpy's (half to even). The bias is a wide constant, not limited to
``bits``. A depthwise conv that is *not* fused (one with other readers) yields an int
tensor with its own per-channel scale, and a layer reading it sees ``s_in = s_dw`` per
input channel.
Neurons stay float (``LIF``) and BatchNorms that could not be folded (after an
Attention) stay: :mod:`absorb_thresholds` absorbs scales into thresholds next.

Invariant established: stage ``quantized``; every Conv/Linear has int64 weights and
bias and a positive ``out_scale``; ``|W_int| <= 2**(bits-1) - 1`` (shared residual
scales are by default the maximum over writers, so every writer fits). The one
documented exception: with :mod:`residual_scales`' ``stream_slack_bits`` option, the
writers of a residual stream may reach that stream's ``weight_limit`` (recorded in
``meta["residual_streams"]``). Every remaining BatchNorm reads an int tensor and feeds
only LIF neurons.
"""

from __future__ import annotations

import numpy as np

from ...models.errors import ConfigError, GraphError
from .. import ir
from . import Contract

__all__ = ["run", "qmax", "WEIGHT_BITS", "check_weight_bits", "natural_scale", "tensor_scales",
           "per_tensor", "weight_in_scale"]

CONTRACT = Contract("quantize", "float", "quantized",
                    ("weight_bits", "input_scale", "requant_min_shift", "threshold_grid"))


#: the supported weight widths (``--weight-bits``); :func:`check_weight_bits` is the one check
WEIGHT_BITS = range(2, 25)


def check_weight_bits(bits) -> int:
    """Return ``bits`` if it is an int in :data:`WEIGHT_BITS`, else raise :class:`ConfigError`."""
    if not (isinstance(bits, int) and not isinstance(bits, bool) and bits in WEIGHT_BITS):
        raise ConfigError(f"weight bits must be an int in {WEIGHT_BITS.start}..{WEIGHT_BITS.stop - 1}, "
                          f"got {bits!r} (--weight-bits)")
    return bits


def qmax(bits: int) -> int:
    """Largest magnitude of a symmetric signed ``bits``-bit weight: ``2**(bits-1) - 1``."""
    return 2 ** (check_weight_bits(bits) - 1) - 1


def weight_in_scale(layer: ir.Node, s_in: np.ndarray) -> np.ndarray:
    """The input scale seen by each weight entry, broadcastable to ``layer.weight``.

    ``s_in`` is per input channel of the layer's input tensor. Grouped convs read
    input channel ``g * (I/g) + i`` for output ``o`` in group ``g``.
    """
    w = layer.weight
    if isinstance(layer, ir.Linear):
        return np.asarray(s_in, np.float64)[None, :]
    o, ig = w.shape[:2]
    g = layer.groups
    idx = (np.arange(o) // (o // g))[:, None] * ig + np.arange(ig)[None, :]
    return np.asarray(s_in, np.float64)[idx][:, :, None, None]


def natural_scale(layer: ir.Node, s_in: np.ndarray, bits: int) -> np.ndarray:
    """Per-output-channel scale ``max |W[o]| s_in / qmax`` (zero rows: the largest, or 1)."""
    w = np.abs(np.asarray(layer.weight, np.float64)) * weight_in_scale(layer, s_in)
    s = w.reshape(w.shape[0], -1).max(axis=1) / qmax(bits)
    if not np.all(np.isfinite(s)):
        raise GraphError(f"{layer.op} {layer.name!r}: non-finite weights")
    fallback = s.max() if s.max() > 0 else 1.0
    return np.where(s > 0, s, fallback)


def per_tensor(graph: ir.Graph, node: ir.Node) -> bool:
    """The classifier readout: a Linear whose readers are all ``TimeMean``."""
    readers = graph.consumers(node.name)
    return isinstance(node, ir.Linear) and bool(readers) and all(
        isinstance(r, ir.TimeMean) for r in readers)


def neuron_threshold(graph: ir.Graph, names) -> float | None:
    """The smallest ``v_threshold`` of the LIF neurons reading any of ``names`` directly or
    through Adds, TimeSlices and Upsamples (a residual stream); None if no neuron reads them."""
    todo, seen, ths = list(names), set(names), []
    while todo:
        for r in graph.consumers(todo.pop()):
            if isinstance(r, ir.LIF):
                ths.append(float(r.v_threshold))
            elif isinstance(r, (ir.Add, ir.TimeSlice, ir.Upsample)) and r.name not in seen:
                seen.add(r.name)
                todo.append(r.name)
    return min(ths) if ths else None


def threshold_grid(scale: np.ndarray, v_th: float | None) -> np.ndarray:
    """Round each scale *up* to ``v_th * 2**e`` (integer ``e``): at most one bit of weight
    resolution for an exact threshold ratio ``v_th / s = 2**-e`` (``None``: unchanged)."""
    s = np.asarray(scale, np.float64)
    if v_th is None:
        return s
    e = np.ceil(np.log2(s / v_th))
    g = v_th * np.exp2(e)
    g = np.where(g < s, g * 2.0, g)  # log2 rounding
    return np.where(g / 2.0 >= s, g / 2.0, g)


def tensor_scales(graph: ir.Graph, input_scale: float = 1 / 255, bits: int = 8,
                  grid: bool = False) -> dict[str, np.ndarray | None]:
    """Per-channel scale of every node's output of a ``float`` graph, as :func:`run` assigns it.

    Layers with an ``out_scale`` annotation use it, others their :func:`natural_scale`
    (per tensor for the classifier), rounded up to :func:`threshold_grid` of the neurons
    reading them when ``grid``. BatchNorm outputs are float (``None``): only
    neurons may read them. (Quantised graphs carry their scales in ``graph.types``.)
    """
    if graph.stage != "float":
        raise GraphError(f"tensor_scales reads float graphs, got a {graph.stage} graph")
    sc: dict[str, np.ndarray | None] = {}
    for n in graph.nodes:
        ins = [sc[i] for i in n.inputs]
        ch = graph.types[n.name].shape[0]
        if isinstance(n, ir.Input):
            s = np.full(ch, float(input_scale))
        elif isinstance(n, (ir.LIF, ir.IntLIF, ir.SSSA)):
            s = np.ones(ch)
        elif isinstance(n, (ir.Conv, ir.Linear)):
            if ins[0] is None:
                raise GraphError(f"{n.op} {n.name!r} reads a float tensor ({n.inputs[0]!r}); "
                                 "a layer can read spikes, the analog input or an int tensor only")
            if n.out_scale is not None:
                s = np.asarray(n.out_scale, np.float64)
            else:
                s = natural_scale(n, ins[0], bits)
                if per_tensor(graph, n):
                    s = np.full_like(s, s.max())
                elif grid:
                    s = threshold_grid(s, neuron_threshold(graph, [n.name]))
        elif isinstance(n, ir.Add):
            s = ins[0]
        elif isinstance(n, ir.Attention):
            s = np.full(ch, float(n.factor))
        elif isinstance(n, ir.GlobalPool):
            hw = graph.types[n.inputs[0]].shape[1:]
            s = None if ins[0] is None else ins[0] / float(np.prod(hw))
        elif isinstance(n, ir.TimeMean):
            s = ins[0]
        elif isinstance(n, ir.Slice):
            s = None if ins[0] is None else ins[0][n.start:n.stop]
        elif isinstance(n, (ir.TimeSlice, ir.Upsample)):
            s = ins[0]
        elif isinstance(n, ir.Concat):
            s = None if ins[0] is None or ins[1] is None else np.concatenate(ins)
        elif isinstance(n, ir.BatchNorm):
            s = None
        else:
            raise GraphError(f"quantize: no scale rule for {n.op} {n.name!r} (run fold_repconv first)")
        sc[n.name] = s
    return sc


def _quantize_layer(n: ir.Node, s_in: np.ndarray, s_out: np.ndarray) -> ir.Node:
    w = np.asarray(n.weight, np.float64)
    so = s_out.reshape((-1,) + (1,) * (w.ndim - 1))
    w_int = np.round(w * weight_in_scale(n, s_in) / so).astype(np.int64)
    b_int = None if n.bias is None else np.round(  # a bias map [O, Ho, Wo]: per position
        np.asarray(n.bias, np.float64) / s_out.reshape((-1,) + (1,) * (n.bias.ndim - 1))).astype(np.int64)
    return n.replace(weight=w_int, bias=b_int, out_scale=np.asarray(s_out, np.float64))


def requant_shift(layer: ir.Node, s_in: np.ndarray, s_out: np.ndarray, bits: int) -> np.ndarray:
    """Per-channel shift ``floor(log2(s_out / natural_scale))`` (>= 0) for a stream writer."""
    ratio = np.asarray(s_out, np.float64) / natural_scale(layer, s_in, bits)
    return np.clip(np.floor(np.log2(ratio * (1 + 1e-12))), 0, 30).astype(np.int64)


def run(graph: ir.Graph, weight_bits: int = 8, input_scale: float = 1 / 255,
        requant_min_shift: int = 2, threshold_grid: bool = True) -> ir.Graph:
    """Quantise every Conv/Linear of a ``float`` graph; see the module docstring.

    Parameters
    ----------
    weight_bits : signed weight width (default 8).
    input_scale : real value of one input code (default ``1/255``).
    requant_min_shift : a residual-stream writer whose natural scale is at least
        ``2**requant_min_shift`` times finer than its stream's (the analog first layer:
        about 255x) is quantised at the finer scale ``s / 2**shift`` and followed by a
        :class:`ir.Requant` node (round-half-up shift onto the stream scale), so it keeps
        ``weight_bits`` of resolution. ``0`` disables this.
    threshold_grid : round the scale of every layer read by neurons up to
        ``v_th * 2**e`` (see :func:`threshold_grid`), so thresholds and biases that are
        dyadic multiples of ``v_th`` stay exact (``absorb_thresholds``); costs at most one
        bit of weight resolution.

    Raises
    ------
    GraphError
        On a non-float graph, a RepConv, a layer reading a float tensor, a BatchNorm
        read by something other than a neuron, or a violated invariant.
    """
    if graph.stage != "float":
        raise GraphError(f"quantize runs on float graphs, got a {graph.stage} graph")
    if not input_scale > 0:
        raise ConfigError(f"input_scale must be positive, got {input_scale!r}")
    q = qmax(weight_bits)
    # residual_scales' stream_slack_bits may allow stream writers wider weights
    limit = {w: max(q, int(st.get("weight_limit", q)))
             for st in graph.meta.get("residual_streams", []) for w in st["writers"]}
    sc = tensor_scales(graph, input_scale, weight_bits, grid=threshold_grid)
    nodes: list[ir.Node] = []
    rename: dict[str, str] = {}
    for n in graph.nodes:
        if any(i in rename for i in n.inputs):
            n = n.replace(inputs=tuple(rename.get(i, i) for i in n.inputs))
        if isinstance(n, ir.Input):
            n = n.replace(scale=float(input_scale))
        elif isinstance(n, ir.Conv) and n.out_scale is not None and requant_min_shift > 0:
            shift = requant_shift(n, sc[n.inputs[0]], sc[n.name], weight_bits)
            if int(shift.max()) >= requant_min_shift:
                nodes.append(_quantize_layer(n, sc[n.inputs[0]], sc[n.name] / 2.0 ** shift))
                n = ir.Requant(f"{n.name}.requant", (n.name,), shift=shift)
                rename[n.inputs[0]] = n.name
            else:
                n = _quantize_layer(n, sc[n.inputs[0]], sc[n.name])
        elif isinstance(n, (ir.Conv, ir.Linear)):
            n = _quantize_layer(n, sc[n.inputs[0]], sc[n.name])
        elif isinstance(n, ir.BatchNorm):
            bad = [r.name for r in graph.consumers(n.name) if not isinstance(r, ir.LIF)]
            if bad or sc[n.inputs[0]] is None:
                raise GraphError(f"quantize: BatchNorm {n.name!r} could not be folded and is read "
                                 f"by {bad or 'its input is float'}; an unfolded BatchNorm must read "
                                 "an int tensor and feed neurons only")
        nodes.append(n)
    # a writer that got a Requant keeps its full weight resolution: its warning is stale
    warnings = [w for w in graph.meta.get("precision_warnings", [])
                if w.split(":", 1)[0] not in rename]
    meta = {**graph.meta, "weight_bits": int(weight_bits), "input_scale": float(input_scale),
            "requantised": sorted(rename), "precision_warnings": warnings}
    out = graph.replace(nodes=nodes, outputs=[rename.get(o, o) for o in graph.outputs],
                        stage="quantized", meta=meta)
    for n in out.nodes:
        if isinstance(n, (ir.Conv, ir.Linear)):
            ok = (n.weight.dtype == np.int64 and (n.bias is None or n.bias.dtype == np.int64)
                  and n.out_scale is not None and bool(np.all(n.out_scale > 0))
                  and int(np.abs(n.weight).max(initial=0)) <= limit.get(n.name, q))
            if not ok:
                raise GraphError(f"quantize: {n.op} {n.name!r} violates the weight invariant "
                                 f"(int64, |W| <= {limit.get(n.name, q)}, positive out_scale)")
    return out
