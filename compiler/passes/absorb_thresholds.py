r"""Absorb every scale into integer neuron thresholds: ``quantized`` -> ``integer`` graph.

A float ``LIF`` (optionally preceded by a ``BatchNorm (a, b)`` that could not be folded,
e.g. ``attn_bn`` after an Attention) reading an integer tensor ``x`` of scale ``s_in[c]``
sees the real input

.. math::  X[c] = a[c]\, s_{in}[c]\, x[c] + b[c]  \qquad (a = 1,\ b = 0 \text{ without BN}).

The LIF dynamics (charge ``H = V + (X - V)/tau`` or ``V - V/tau + X``, fire
``H >= V_th``, hard reset to 0 or soft reset by ``V_th``) are positively homogeneous:
dividing the input, the membrane and the threshold by the same ``u > 0`` leaves every
spike unchanged. With the unit ``u[c] = |a[c] s_in[c]|`` and ``F`` fraction bits the
membrane is an integer in units of ``u[c] 2^{-F}`` and

.. math::

    \mathrm{polarity}[c] = \mathrm{sign}(a[c] s_{in}[c]), \quad
    \theta[c] = \lceil V_{th} 2^F / u[c] \rceil, \quad
    \mathrm{bias}[c] = \mathrm{round}(b[c] 2^F / u[c]), \quad k = \log_2 \tau .

A negative BN gain thus flips the input (``polarity = -1``) rather than the comparison.
The only approximations are the floor of the leak shift (< 1 membrane unit per step)
and the rounding of ``bias``; when the input is a multiple of the unit (``b`` a multiple
of ``u 2^{-F}``) and ``T <= F / k`` the integer neuron is exact.

*Ceil, not round, for binary neurons* (an improvement over ``round`` in the design
notes): the integer membrane ``H`` is compared with ``V_th 2^F / u``; for an integer
``H``, ``H >= r`` is the same as ``H >= ceil(r)``, so ``ceil`` makes the comparison exact
whenever the membrane is, while ``round`` would fire one unit early half of the time.
I-LIF neurons (``levels > 1``) round ``H / theta``, so there ``theta = round(...)``.
A ratio within ``1e-9`` of an integer is taken as that integer (float noise).

``F`` is chosen per node: the smallest ``F >= 0`` with
``min_c V_th / u[c] * 2^F >= 2**min_theta_bits`` (default 10 bits of threshold
resolution), capped at 16; a threshold that would round to 0 is raised to 1.
Leak ``tau`` must be a power of two (``tau = 2^k``, the leak is a shift).

SSSA: the saccade neuron's input is ``gain[t] * sal`` with an integer salience ``sal``.
The gain is quantised to ``g_int[t] = round(gain[t] / u_g)`` with
``u_g = max_t |gain[t]| / (2**(bits-1) - 1)`` (``bits = weight_bits``), so the neuron's
input is ``u_g * (g_int[t] sal)``, an integer times the unit ``u_g``; ``sal_theta`` and
``sal_frac_bits`` follow the same rule as above with ``u = u_g`` (polarity +1, bias 0).

Invariant established: stage ``integer``; no float ``LIF`` or ``BatchNorm`` remains;
every ``IntLIF`` has positive thresholds and ``|polarity| == 1``.
"""

from __future__ import annotations

import math

import numpy as np

from ...models.errors import ConfigError, GraphError, UnsupportedModelError
from ...models.neurons import leak_shift
from .. import ir
from .quantize import qmax

__all__ = ["run", "leak_shift", "frac_bits", "thresholds", "MAX_FRAC_BITS"]

#: upper limit on the membrane fraction bits
MAX_FRAC_BITS = 16


def frac_bits(ratio_min: float, min_theta_bits: int) -> int:
    """Smallest ``F >= 0`` with ``ratio_min * 2**F >= 2**min_theta_bits``, at most 16."""
    if not ratio_min > 0:
        return MAX_FRAC_BITS
    f = math.ceil(min_theta_bits - math.log2(ratio_min))
    while f > 0 and ratio_min * 2.0 ** (f - 1) >= 2.0 ** min_theta_bits:  # log2 rounding
        f -= 1
    while f < MAX_FRAC_BITS and ratio_min * 2.0 ** f < 2.0 ** min_theta_bits:
        f += 1
    return int(min(max(f, 0), MAX_FRAC_BITS))


def _ceil(r: np.ndarray) -> np.ndarray:
    near = np.round(r)
    return np.where(np.abs(r - near) <= 1e-9 * np.maximum(1.0, np.abs(r)), near, np.ceil(r))


def thresholds(v_th: float, unit: np.ndarray, levels: int, min_theta_bits: int
               ) -> tuple[np.ndarray, int]:
    """``(theta, F)`` for a neuron with threshold ``v_th`` and per-channel unit ``unit``."""
    r = float(v_th) / np.asarray(unit, np.float64)
    f = frac_bits(float(r.min()), min_theta_bits)
    scaled = r * 2.0 ** f
    theta = _ceil(scaled) if levels == 1 else np.round(scaled)
    return np.maximum(theta, 1).astype(np.int64), f


def _int_lif(node: ir.LIF, x: str, s_in: np.ndarray, a: np.ndarray, b: np.ndarray,
             min_theta_bits: int) -> ir.IntLIF:
    g = a * s_in
    if np.any(g == 0) or not np.all(np.isfinite(g)):
        c = int(np.flatnonzero((g == 0) | ~np.isfinite(g))[0])
        raise UnsupportedModelError(
            f"neuron {node.name!r}: channel {c} has input gain {float(g[c])!r} (a zero BatchNorm gamma?); "
            "a constant neuron input cannot be expressed as a threshold")
    u = np.abs(g)
    theta, f = thresholds(node.v_threshold, u, node.levels, min_theta_bits)
    bias = np.round(b / u * 2.0 ** f).astype(np.int64)
    return ir.IntLIF(node.name, (x,), theta=theta, bias=bias,
                     polarity=np.sign(g).astype(np.int64), frac_bits=f,
                     leak_shift=leak_shift(node.tau, f"LIF {node.name!r}"),
                     decay_input=node.decay_input, reset=node.reset, levels=node.levels)


def _int_sssa(node: ir.SSSA, weight_bits: int, min_theta_bits: int) -> ir.SSSA:
    leak_shift(node.sal_tau, f"SSSA {node.name!r} saccade neuron")
    gain = np.asarray(node.gain, np.float64)
    peak = float(np.abs(gain).max(initial=0.0))
    u = peak / qmax(weight_bits) if peak > 0 else 1.0
    g_int = np.round(gain / u).astype(np.int64)
    theta, f = thresholds(node.sal_threshold, np.array([u]), 1, min_theta_bits)
    return node.replace(gain=g_int, sal_theta=int(theta[0]), sal_frac_bits=f)


def run(graph: ir.Graph, min_theta_bits: int = 10, weight_bits: int = 8) -> ir.Graph:
    """Turn every LIF (with its preceding unfolded BatchNorm) into an IntLIF.

    Parameters
    ----------
    min_theta_bits : threshold resolution target (default 10 bits), see module docstring.
    weight_bits : width of the quantised SSSA gain (default 8, as the weights).

    Raises
    ------
    UnsupportedModelError
        A ``tau`` that is not a power of two, or a zero input gain.
    GraphError
        On a non-quantised graph, a BatchNorm not followed by neurons only, or if a
        float LIF/BatchNorm survives (invariant check).
    """
    if graph.stage != "quantized":
        raise GraphError(f"absorb_thresholds runs on quantized graphs, got a {graph.stage} graph")
    if not (isinstance(min_theta_bits, int) and 1 <= min_theta_bits <= 24):
        raise ConfigError(f"min_theta_bits must be an int in 1..24, got {min_theta_bits!r}")
    types = graph.types
    nodes: list[ir.Node] = []
    for n in graph.nodes:
        if isinstance(n, ir.BatchNorm):
            readers = graph.consumers(n.name)
            if not readers or not all(isinstance(r, ir.LIF) for r in readers) or n.name in graph.outputs:
                raise GraphError(f"absorb_thresholds: BatchNorm {n.name!r} must feed neurons only")
            continue  # absorbed into its readers
        if isinstance(n, ir.LIF):
            src = graph.node(n.inputs[0])
            ch = types[n.name].shape[0]
            if isinstance(src, ir.BatchNorm):
                x, a, b = src.inputs[0], np.asarray(src.a, np.float64), np.asarray(src.b, np.float64)
            else:
                x, a, b = src.name, np.ones(ch), np.zeros(ch)
            t = types[x]
            if t.kind not in ("int", "spike") or t.scale is None:
                raise GraphError(f"absorb_thresholds: neuron {n.name!r} reads {x!r} of kind {t.kind}")
            n = _int_lif(n, x, np.asarray(t.scale, np.float64), a, b, min_theta_bits)
        elif isinstance(n, ir.SSSA):
            n = _int_sssa(n, weight_bits, min_theta_bits)
        nodes.append(n)
    out = graph.replace(nodes=nodes, stage="integer",
                        meta={**graph.meta, "min_theta_bits": int(min_theta_bits)})
    left = [n.name for n in out.nodes if isinstance(n, (ir.LIF, ir.BatchNorm))]
    if left:
        raise GraphError(f"absorb_thresholds: float neurons/BatchNorms remain: {left}")
    return out
