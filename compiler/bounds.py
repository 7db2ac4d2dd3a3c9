"""Static value bounds of an integer graph: the proofs every width is checked against.

:func:`bounds` bounds each node's output, :func:`register_bounds` every intermediate its
hardware computes; both are propagated from the input range in topological order and never
look at data. Numpy and Python integers only (no torch), so the hardware generators
(:mod:`hw`) can prove their widths without the torch executor; :mod:`compiler.reference`
re-exports them and holds every computed value to them.
"""

from __future__ import annotations

import numpy as np

from . import ir
from ..models.errors import ConfigError, GraphError
from ..models.leak import leak_shift

__all__ = ["bounds", "register_bounds", "node_steps"]


def _pyint_abs_row_sums(w: np.ndarray) -> list[int]:
    """Exact ``sum_k |w[o, k]|`` per row as Python ints (no int64 overflow)."""
    w = np.asarray(w)
    w = w.reshape(w.shape[0], -1)
    if w.size == 0:
        return [0] * w.shape[0]
    peak = max(-int(w.min()), int(w.max()))
    if peak * w.shape[1] < 2 ** 62:  # int64 sums cannot overflow
        return [int(v) for v in np.abs(w.astype(np.int64, copy=False)).sum(1)]
    return [sum(abs(int(v)) for v in row) for row in w.tolist()]


def _affine_bound(weight: np.ndarray, bias: np.ndarray | None, in_bound: int) -> int:
    """``max_o (sum_k |W[o, k]| * in_bound + |b[o]|)`` exactly, as a Python int."""
    rows = _pyint_abs_row_sums(weight)
    bs = [0] * len(rows) if bias is None else [  # a bias map [O, Ho, Wo]: its largest |b| per row
        abs(int(v)) for v in np.abs(np.asarray(bias)).reshape(len(rows), -1).max(1).tolist()]
    return max(r * in_bound + b for r, b in zip(rows, bs))


def _membrane_bound(in_bound: int, frac_bits: int, k: int, theta, bias, decay_input: bool) -> int:
    """Proved bound on ``|H|`` (and ``|V|``) of an integer LIF; see :func:`bounds`."""
    theta = [int(t) for t in np.asarray(theta).ravel().tolist()]
    bias = [int(b) for b in np.asarray(bias).ravel().tolist()]
    out = 0
    for th, b in zip(theta, bias):
        a = in_bound * 2 ** frac_bits + abs(b)  # maxabs X for this channel
        out = max(out, max(a, th) + 1 if decay_input else 2 ** k * (a + th))
    return out


def _leak(tau: float, who: str) -> int:
    try:
        return leak_shift(tau)
    except ConfigError as e:
        raise GraphError(f"{who}: {e}") from None


def _sssa_check(g: ir.Graph, n: ir.SSSA, T: int) -> None:
    for i in n.inputs:
        t = g.types[i]
        if t.kind != "spike" or t.levels != 1:
            raise GraphError(f"SSSA {n.name!r}: Q, K, V must be binary spikes, {i!r} is {t.kind} "
                             f"with levels={t.levels}")
    if g.types[n.inputs[0]].shape[0] % n.heads:
        raise GraphError(f"SSSA {n.name!r}: {g.types[n.inputs[0]].shape[0]} channels / {n.heads} heads")
    if n.gain.shape[0] < T:
        raise GraphError(f"SSSA {n.name!r}: gain has {n.gain.shape[0]} steps, the clip has T={T}")


def bounds(graph: ir.Graph, T: int) -> dict[str, int]:
    """Static bounds on ``|value|`` of every node of an integer graph, for clips of ``T`` steps.

    The bounds are proofs, propagated in topological order from the input range; they
    do not depend on data. A consumer reads its input's bound ``B_in`` as: ``levels`` for
    spikes, else the producer's entry here. Per node:

    ========== =========================================================================
    Input      ``2**bits - 1``
    Conv       ``max_o (sum_{i,k} |W[o,i,k]| * B_in + |bias[o]|)``
    Linear     ``max_o (sum_i |W[o,i]| * B_in + |bias[o]|)``
    IntLIF     the membrane ``|H|``, ``|V|``; with ``A_c = B_in * 2**F + |bias[c]|``
               (the largest ``|X|``): ``max_c max(A_c, theta_c) + 1`` with decay_input,
               else ``max_c 2**k * (A_c + theta_c)``
    Add        ``B_a + B_b``
    Requant    ``(B_in + 2**s >> 1) >> s`` with ``s`` the smallest shift
    Attention  ``d * tokens`` (``d = C / heads``; tokens ``T*H*W`` joint, ``H*W`` spatial,
               ``T`` temporal, ``T`` the steps of K/V), times ``(2Lq-1)(2Lk-1)Lv`` (sdha)
               or ``Lq Lk Lv`` (sdsa) for spike levels ``L`` (1 when binary)
    TimeSlice, Upsample  ``B_in`` (TimeMean and attention count the steps they see)
    Slice      ``B_in``; Concat ``max(B_a, B_b)``
    SSSA       the saccade membrane, as IntLIF with ``A = max|gain[:T]| * d * d*H*W * 2**F``
    GlobalPool ``H * W * B_in``
    TimeMean   ``T * B_in``
    ========== =========================================================================

    Why the neuron bounds hold. With decay_input, ``H = V + floor((X - V) / 2**k)`` lies
    between ``V`` and ``X`` (inclusive; the floor of a negative step never overshoots
    ``X`` because both are integers), and every reset moves ``V`` towards zero or to
    within ``theta / 2`` of it, so ``|V|, |H| <= max(|X|, theta)``. Without it,
    ``|V - (V >> k)| <= (|V| + 1)(1 - 2**-k)``, so ``|H| <= (|V| + 1)(1 - 2**-k) + |X|``,
    whose fixed point is below ``2**k (|X| + 1)``, itself ``<= 2**k (|X| + theta)``.

    Parameters
    ----------
    graph : an ``integer`` stage graph.
    T : number of time steps (joint attention and ``TimeMean`` grow with it).

    Returns
    -------
    dict mapping every node name to a non-negative Python ``int``.

    Raises
    ------
    GraphError
        If the graph is not at the integer stage, ``T < 1``, or a node cannot be bounded.
    """
    if graph.stage != "integer":
        raise GraphError(f"bounds() needs an integer graph, got stage {graph.stage!r}")
    if not isinstance(T, int) or T < 1:
        raise GraphError(f"bounds() needs T >= 1 time steps, got {T!r}")
    out: dict[str, int] = {}

    def vb(name: str) -> int:
        t = graph.types[name]
        return int(t.levels) if t.kind == "spike" else out[name]

    steps = node_steps(graph, T)
    for n in graph.nodes:
        T_n = steps[n.inputs[-1]] if n.inputs else T  # K/V's steps for an attention
        if isinstance(n, ir.Input):
            b = 2 ** n.bits - 1
        elif isinstance(n, (ir.Conv, ir.Linear)):
            b = _affine_bound(n.weight, n.bias, vb(n.inputs[0]))
        elif isinstance(n, ir.IntLIF):
            b = _membrane_bound(vb(n.inputs[0]), n.frac_bits, n.leak_shift, n.theta, n.bias,
                                n.decay_input)
        elif isinstance(n, ir.Add):
            b = vb(n.inputs[0]) + vb(n.inputs[1])
        elif isinstance(n, ir.Requant):
            s_min = int(np.min(n.shift))
            b = (vb(n.inputs[0]) + ((1 << s_min) >> 1)) >> s_min
        elif isinstance(n, ir.Attention):
            c, h, w = graph.types[n.inputs[0]].shape
            tokens = {"joint": T_n * h * w, "spatial": h * w, "temporal": T_n}[n.tokens]
            lq, lk, lv = (int(graph.types[i].levels) for i in n.inputs)
            b = (c // n.heads) * tokens * ((2 * lq - 1) * (2 * lk - 1) * lv if n.kind == "sdha"
                                           else lq * lk * lv)
        elif isinstance(n, (ir.TimeSlice, ir.Upsample)):
            b = vb(n.inputs[0])
        elif isinstance(n, ir.Slice):
            b = vb(n.inputs[0])
        elif isinstance(n, ir.Concat):
            b = max(vb(n.inputs[0]), vb(n.inputs[1]))
        elif isinstance(n, ir.SSSA):
            _sssa_check(graph, n, T)
            c, h, w = graph.types[n.inputs[0]].shape
            d = c // n.heads
            gmax = max(abs(int(g)) for g in np.asarray(n.gain[:T]).tolist())
            b = _membrane_bound(gmax * d * d * h * w, n.sal_frac_bits,
                                _leak(n.sal_tau, f"SSSA {n.name!r}"), [n.sal_theta], [0],
                                n.sal_decay_input)
        elif isinstance(n, ir.GlobalPool):
            _, h, w = graph.types[n.inputs[0]].shape
            b = h * w * vb(n.inputs[0])
        elif isinstance(n, ir.TimeMean):
            b = T_n * vb(n.inputs[0])
        else:
            raise GraphError(f"bounds(): no integer semantics for {n.op} {n.name!r}")
        out[n.name] = int(b)
    return out


def node_steps(graph: ir.Graph, T: int) -> dict[str, int]:
    """Number of time steps each node's output covers for a ``T``-step clip (``TimeSlice``
    shortens it; every other node keeps its last input's)."""
    out: dict[str, int] = {}
    for n in graph.nodes:
        t = out[n.inputs[-1]] if n.inputs else T
        out[n.name] = n.steps(t) if isinstance(n, ir.TimeSlice) else t
        if out[n.name] < 1:
            raise GraphError(f"TimeSlice {n.name!r} leaves no step of a {t}-step clip")
    return out


def _neuron_register(in_bound: int, frac_bits: int, theta, bias, levels: int, reset: str,
                     h_bound: int) -> int:
    """Bound on every intermediate of an integer neuron (see :func:`register_bounds`)."""
    out = h_bound
    for th, b in zip((int(t) for t in np.asarray(theta).ravel().tolist()),
                     (int(v) for v in np.asarray(bias).ravel().tolist())):
        a = in_bound * 2 ** frac_bits + abs(b)  # |X|
        out = max(out, a + h_bound + 1)  # X - V, and V - (V >> k) + X on the way to H
        if reset == "soft" or levels > 1:
            out = max(out, h_bound + th)  # H - theta (binary soft reset)
        if levels > 1:  # 2H + theta, compare operands (2j - 1) theta, S theta
            out = max(out, 2 * h_bound + th, (2 * levels - 1) * th)
    return out


def register_bounds(graph: ir.Graph, T: int) -> dict[str, int]:
    """Bounds on every *intermediate* a node's hardware computes, for clips of ``T`` steps.

    What the declared widths must cover (``acc_bits`` / ``mem_bits`` = ``signed_bits`` of
    this). It is :func:`bounds` (the value) widened where an operation computes more than
    its result:

    ========== =========================================================================
    Requant    ``max(B_in + (2**s_max >> 1), B_out)``: the rounding increment
    IntLIF     ``max(B_H, A_c + B_H + 1)`` (``X - V`` and ``V - (V >> k) + X``), plus
               ``B_H + theta_c`` for soft reset, and ``2 B_H + theta_c`` and
               ``(2D - 1) theta_c`` for I-LIF (``2H + theta`` and the compare chain)
    SSSA       the saccade neuron, as IntLIF (binary, ``A = gain * sal << F``)
    others     the value bound: any partial sum of a Conv/Linear/Attention/pool is
               bounded by the same sum of magnitudes
    ========== =========================================================================
    """
    b = bounds(graph, T)
    out = dict(b)

    def vb(name: str) -> int:
        t = graph.types[name]
        return int(t.levels) if t.kind == "spike" else b[name]

    for n in graph.nodes:
        if isinstance(n, ir.Requant):
            s_max = int(np.max(n.shift))
            out[n.name] = max(b[n.name], vb(n.inputs[0]) + ((1 << s_max) >> 1))
        elif isinstance(n, ir.IntLIF):
            out[n.name] = _neuron_register(vb(n.inputs[0]), n.frac_bits, n.theta, n.bias,
                                           n.levels, n.reset, b[n.name])
        elif isinstance(n, ir.SSSA):
            c, h, w = graph.types[n.inputs[0]].shape
            d = c // n.heads
            gmax = max(abs(int(g)) for g in np.asarray(n.gain[:T]).tolist())
            out[n.name] = _neuron_register(gmax * d * d * h * w, n.sal_frac_bits, [n.sal_theta],
                                           [0], 1, n.sal_reset, b[n.name])
    return out
