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
Exactness by construction (the proof is in ``ir.IntLIF``'s docstring). The membrane is
exact, spike for spike, when no ``>> k`` ever floors a non-zero remainder and the
constants are exact. Every input ``x << F`` is a multiple of ``2^F``; the bias ``b / u``
and (soft reset, I-LIF) the threshold ``V_th / u`` are exact in ``2^{-F}`` units when they
are dyadic, ``m / 2^e``; each leak step halves the grain of the membrane at most once, so
with

.. math::  F \ge e + T k

all ``T`` steps are exact (the ``T k`` part is capped at ``MAX_LEAK_BITS = 20``: longer
clips would need membranes wider than the 48-bit registers, so such neurons are listed in
``meta["inexact_neurons"]``: the leak may floor a bit after step ``20 / k``).
``e`` is the smallest exponent ``<= 24`` making every such
constant of the neuron an integer (``e = 0`` without a bias: the common case of a BN
folded into the layer before the neuron). Binary hard-reset neurons compare with
``ceil`` (below) and need no condition on ``V_th``. A neuron whose constants are not
dyadic (an unfolded BN, ``attn_bn``, with a general bias) keeps ``F >= T k`` and is
listed in ``meta["inexact_neurons"]`` with the reason: its bias/threshold are rounded to
``2^{-F}`` units, so spikes can differ only when a float membrane lies within about
``T u 2^{-F}`` of the threshold. ``meta["exactness"]`` states the condition for the whole
graph.

*Ceil, not round, for binary neurons* (an improvement over ``round`` in the design
notes): the integer membrane ``H`` is compared with ``V_th 2^F / u``; for an integer
``H``, ``H >= r`` is the same as ``H >= ceil(r)``, so ``ceil`` makes the comparison exact
whenever the membrane is, while ``round`` would fire one unit early half of the time.
I-LIF neurons (``levels > 1``) round ``H / theta``, so there ``theta = round(...)``.
A ratio within ``1e-9`` of an integer is taken as that integer (float noise).

``F`` is chosen per node: the smallest ``F >= 0`` with
``min_c V_th / u[c] * 2^F >= 2**min_theta_bits`` (default 10 bits of threshold
resolution) and ``F >= e + T k`` (exactness), at most 48; a threshold that would round
to 0 is raised to 1. A threshold beyond ``2^52`` units is refused with a message naming
the neuron (float64 cannot even hold it; such a neuron would never fire).
Leak ``tau`` must be a power of two (``tau = 2^k``, the leak is a shift).

SSSA: the saccade neuron's input is ``gain[t] * sal`` with an integer salience ``sal``.
The gain is quantised to ``g_int[t] = round(gain[t] / u_g)`` with
``u_g = max_t |gain[t]| / (2**(bits-1) - 1)`` (``bits = weight_bits``), so the neuron's
input is ``u_g * (g_int[t] sal)``, an integer times the unit ``u_g``; ``sal_theta`` and
``sal_frac_bits`` follow the same rule as above with ``u = u_g`` (polarity +1, bias 0;
exact when the gains quantise exactly).

Invariant established: stage ``integer``; no float ``LIF`` or ``BatchNorm`` remains;
every ``IntLIF`` has positive thresholds and ``|polarity| == 1``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ...models.errors import ConfigError, GraphError, UnsupportedModelError
from ...models.neurons import leak_shift
from .. import ir
from . import Contract
from .quantize import qmax

__all__ = ["run", "leak_shift", "frac_bits", "thresholds", "dyadic_exponent", "MAX_FRAC_BITS",
           "MAX_DYADIC_EXP", "MAX_LEAK_BITS", "leak_bits"]

CONTRACT = Contract("absorb_thresholds", "quantized", "integer",
                    ("min_theta_bits", "weight_bits", "T"))

#: upper limit on the membrane fraction bits
MAX_FRAC_BITS = 48
#: at most this many of them serve exactness over the clip (``T k``): beyond it (T > 20 at
#: tau 2) the membrane would outgrow the 48-bit registers, so the neuron is listed inexact
MAX_LEAK_BITS = 20
#: largest ``e`` for which a constant ``m / 2**e`` counts as exactly representable
MAX_DYADIC_EXP = 24
#: thresholds at or beyond this many units are refused (float64 integers stop here)
MAX_THETA = 2 ** 52


def dyadic_exponent(values, limit: int = MAX_DYADIC_EXP) -> int | None:
    """Smallest ``e`` in ``0..limit`` with every ``values * 2**e`` an integer, else None.

    Exact test on the float64 values (a float is dyadic; only its last bits decide), with
    ``|values * 2**e| < 2**50`` so that integrality is not an artefact of the mantissa
    running out. An empty input gives 0.
    """
    r = np.asarray(values, np.float64).ravel()
    if r.size == 0:
        return 0
    if not np.all(np.isfinite(r)):
        return None
    for e in range(limit + 1):
        y = r * 2.0 ** e  # exact: a power-of-two scaling
        if np.all(np.abs(y) < 2.0 ** 50) and np.all(y == np.round(y)):
            return e
    return None


def frac_bits(ratio_min: float, min_theta_bits: int) -> int:
    """Smallest ``F >= 0`` with ``ratio_min * 2**F >= 2**min_theta_bits``, at most 48."""
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


def thresholds(v_th: float, unit: np.ndarray, levels: int, min_theta_bits: int,
               min_frac_bits: int = 0, who: str = "neuron") -> tuple[np.ndarray, int]:
    """``(theta, F)`` for a neuron with threshold ``v_th`` and per-channel unit ``unit``.

    ``F = max(frac_bits(min ratio), min_frac_bits)``; ``theta = ceil(v_th / unit * 2**F)``
    for binary neurons, ``round(...)`` (half to even) for I-LIF.
    """
    r = float(v_th) / np.asarray(unit, np.float64)
    f = max(frac_bits(float(r.min()), min_theta_bits), int(min_frac_bits))
    if f > MAX_FRAC_BITS:
        raise UnsupportedModelError(
            f"{who}: exactness over the clip needs {f} membrane fraction bits (> {MAX_FRAC_BITS}); "
            "compile for fewer time steps (--T)")
    scaled = r * 2.0 ** f
    if not np.all(scaled < MAX_THETA):
        raise UnsupportedModelError(
            f"{who}: v_threshold={v_th!r} is {float(r.max()):.3g} times its input unit, beyond "
            f"the 2**52 an integer threshold can hold (it could never fire); lower v_threshold "
            "or the layer's scale")
    theta = _ceil(scaled) if levels == 1 else np.round(scaled)
    return np.maximum(theta, 1).astype(np.int64), f


def _exact_grain(node_name: str, ratios: dict[str, np.ndarray], notes: list) -> int:
    """``e`` making every listed constant (in input units) an integer; 0 and a note if none."""
    e_all = 0
    for what, r in ratios.items():
        e = dyadic_exponent(r)
        if e is None:
            notes.append({"node": node_name, "reason": f"{what} is not a dyadic multiple of the "
                          f"input unit (rounded to 2**-F units)"})
        else:
            e_all = max(e_all, e)
    return e_all


def leak_bits(T: int, k: int, name: str, notes: list, cap: int = MAX_LEAK_BITS,
              why: str = "so the membrane fits the 48-bit registers") -> int:
    """``min(T k, cap)``; a note in ``notes`` when capped (the neuron is inexact)."""
    need = T * k
    if need > cap:
        notes.append({"node": name, "reason": f"exactness over T={T} steps needs {need} leak fraction "
                      f"bits; capped at {cap} {why} "
                      f"(the leak may floor a bit after step {cap // k})"})
        return cap
    return need


def _int_lif(node: ir.LIF, x: str, s_in: np.ndarray, a: np.ndarray, b: np.ndarray,
             min_theta_bits: int, T: int, notes: list, cap: tuple = (MAX_LEAK_BITS,)) -> ir.IntLIF:
    g = a * s_in
    if np.any(g == 0) or not np.all(np.isfinite(g)):
        c = int(np.flatnonzero((g == 0) | ~np.isfinite(g))[0])
        raise UnsupportedModelError(
            f"neuron {node.name!r}: channel {c} has input gain {float(g[c])!r} (a zero BatchNorm gamma?); "
            "a constant neuron input cannot be expressed as a threshold")
    u = np.abs(g)
    k = leak_shift(node.tau, f"LIF {node.name!r}")
    ratios = {}
    if np.any(b != 0):
        ratios["bias"] = b / u
    if node.reset == "soft" or node.levels > 1:
        ratios["threshold"] = node.v_threshold / u
    e = _exact_grain(node.name, ratios, notes)
    theta, f = thresholds(node.v_threshold, u, node.levels, min_theta_bits,
                          min_frac_bits=e + leak_bits(T, k, node.name, notes, *cap), who=f"neuron {node.name!r}")
    bias = np.round(b / u * 2.0 ** f).astype(np.int64)
    return ir.IntLIF(node.name, (x,), theta=theta, bias=bias,
                     polarity=np.sign(g).astype(np.int64), frac_bits=f, leak_shift=k,
                     decay_input=node.decay_input, reset=node.reset, levels=node.levels)


def _int_sssa(node: ir.SSSA, weight_bits: int, min_theta_bits: int, T: int,
              notes: list, cap: tuple = (MAX_LEAK_BITS,)) -> ir.SSSA:
    k = leak_shift(node.sal_tau, f"SSSA {node.name!r} saccade neuron")
    gain = np.asarray(node.gain, np.float64)
    peak = float(np.abs(gain).max(initial=0.0))
    u = peak / qmax(weight_bits) if peak > 0 else 1.0
    g_int = np.round(gain / u).astype(np.int64)
    ratios = {"threshold": np.array([node.sal_threshold / u])} if node.sal_reset == "soft" else {}
    e = _exact_grain(node.name, ratios, notes)
    theta, f = thresholds(node.sal_threshold, np.array([u]), 1, min_theta_bits,
                          min_frac_bits=e + leak_bits(T, k, node.name, notes, *cap),
                          who=f"SSSA {node.name!r} saccade neuron")
    return node.replace(gain=g_int, sal_theta=int(theta[0]), sal_frac_bits=f)


def _fit_registers(graph: ir.Graph, nodes: list, make: dict, T: int, notes: list) -> list:
    """Build the neurons (``make[name](notes, (cap, why))``) and lower a neuron's leak fraction bits where
    its membrane would outgrow the 48-bit registers.

    A neuron's membrane bound (:func:`reference.register_bounds`) grows by about one bit per
    fraction bit and depends on nothing downstream (it emits spikes), so a neuron ``d`` bits
    too wide is rebuilt with its ``T k`` part capped ``d`` bits lower (listed inexact, with
    its input bound) and checked again, at most 4 rounds; a neuron whose width does not come
    from the leak part is left for ``bitwidths`` to refuse by name.
    """
    from .. import reference
    from .bitwidths import MAX_BITS, signed_bits

    caps = {name: MAX_LEAK_BITS for name in make}
    pending: dict[str, list] = {}

    def build(name):
        pending[name] = []
        why = ("so the membrane fits the 48-bit registers" if caps[name] == MAX_LEAK_BITS else
               f"so the membrane (input bound {inb.get(name, '?')}) fits the {MAX_BITS}-bit registers")
        return make[name](pending[name], (caps[name], why))

    inb: dict[str, int] = {}
    built = {name: build(name) for name in make}
    for _ in range(4):
        g = graph.replace(nodes=[built.get(n.name, n) for n in nodes], stage="integer",
                          meta={**graph.meta, "T": T})
        bounds = reference.register_bounds(g, T)
        val = reference.bounds(g, T)
        over = {}
        for name, nd in built.items():
            d = signed_bits(bounds[name]) - MAX_BITS
            if d > 0 and caps[name] > 0:
                over[name] = d
                src = nd.inputs[0]
                inb[name] = int(g.types[src].levels) if g.types[src].kind == "spike" else int(val[src])
        if not over:
            break
        for name, d in over.items():
            caps[name] = max(0, caps[name] - d)
            built[name] = build(name)
    for name in make:
        notes.extend(pending[name])
    return [built.get(n.name, n) for n in nodes]


#: the condition under which the integer graph equals the float model spike for spike
EXACTNESS_CONDITION = (
    "The integer graph equals the float model (exact real arithmetic) spike for spike, for "
    "any input, when every weight, bias and input value is exactly representable at its "
    "quantisation scale and no neuron is listed in inexact_neurons; otherwise spikes can "
    "differ only where a float membrane lies within the rounding error of its threshold.")


def run(graph: ir.Graph, min_theta_bits: int = 10, weight_bits: int = 8,
        T: int | None = None) -> ir.Graph:
    """Turn every LIF (with its preceding unfolded BatchNorm) into an IntLIF.

    Parameters
    ----------
    min_theta_bits : threshold resolution target (default 10 bits), see module docstring.
    weight_bits : width of the quantised SSSA gain (default 8, as the weights).
    T : clip length the fraction bits are chosen for (``F >= e + T k``); default
        ``graph.meta["T"]`` (the model's); one of them is required.

    Raises
    ------
    UnsupportedModelError
        A ``tau`` that is not a power of two, a zero input gain, or an unreachable threshold.
    GraphError
        On a non-quantised graph, a BatchNorm not followed by neurons only, or if a
        float LIF/BatchNorm survives (invariant check).
    """
    if graph.stage != "quantized":
        raise GraphError(f"absorb_thresholds runs on quantized graphs, got a {graph.stage} graph")
    if not (isinstance(min_theta_bits, int) and 1 <= min_theta_bits <= 24):
        raise ConfigError(f"min_theta_bits must be an int in 1..24, got {min_theta_bits!r}")
    T = graph.meta.get("T") if T is None else T
    if not (isinstance(T, int) and T >= 1):
        raise ConfigError(f"absorb_thresholds: pass the clip length T (an int >= 1), got {T!r}")
    types = graph.types
    notes: list[dict] = []
    nodes: list[ir.Node] = []
    make = {}    # neuron name -> (rebuild with a leak-bit cap, its notes)
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
            make[n.name] = functools.partial(_int_lif, n, x, np.asarray(t.scale, np.float64), a, b,
                                             min_theta_bits, T)
        elif isinstance(n, ir.SSSA):
            make[n.name] = functools.partial(_int_sssa, n, weight_bits, min_theta_bits, T)
        nodes.append(n)
    nodes = _fit_registers(graph, nodes, make, T, notes)
    meta = {**graph.meta, "min_theta_bits": int(min_theta_bits), "T": T,
            "inexact_neurons": notes,
            "exactness": {"condition": EXACTNESS_CONDITION, "T": T,
                          "inexact_neurons": sorted({d["node"] for d in notes})}}
    out = graph.replace(nodes=nodes, stage="integer", meta=meta)
    left = [n.name for n in out.nodes if isinstance(n, (ir.LIF, ir.BatchNorm))]
    if left:
        raise GraphError(f"absorb_thresholds: float neurons/BatchNorms remain: {left}")
    return out
