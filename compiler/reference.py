"""The golden reference executor: the definition of bit-exact.

:func:`run` executes an :class:`~compiler.ir.Graph` on a clip of frames. For an
``integer`` graph its results *are* the compiled model: the hardware, the ONNX export
and every test are held to them bit for bit (design note 1). A ``float`` graph is run in
float64 and reproduces the torch model of :mod:`models` (to float rounding), which is the
first rung of the verification ladder.

Execution order
---------------
Layer by layer over the whole clip, as the layer-sequential engine runs it: every node
produces its output for all ``T`` steps and ``B`` samples, ``[T, B, *type.shape]``, before
the next node starts. Convolutions, linears, adds and pools are vectorised over ``T`` and
``B`` (time folded into the batch); neurons loop over ``t`` inside the node, carrying their
membrane. Joint attention therefore sees the whole clip's ``K``/``V``, as the hardware
does. Tensors are freed after their last consumer unless ``record=True``.

Integer semantics
-----------------
Exactly the node docstrings of :mod:`compiler.ir`; every value is an ``int64``:

* ``Input``: ``q = clamp(round(x / scale), 0, 2**bits - 1)``, ``x / scale`` in float64,
  ``round`` half to even (``torch.round``).
* ``Conv`` / ``Linear``: ``y[o] = sum W[o, i, k] x[i, k] + bias[o]``, zero padding.
* ``IntLIF``: ``X = polarity * (x << F) + bias``; ``H = V + ((X - V) >> k)`` (decay_input)
  or ``H = V - (V >> k) + X``; ``>>`` is the arithmetic shift (floor division by ``2**k``,
  also for negative membranes); fire ``H >= theta`` (binary, hard or soft reset) or
  ``S = clamp(round_half_even(H / theta), 0, D)``, ``V = H - S theta`` (I-LIF; half to
  even as ``torch.round`` in the float model).
* ``Attention``: per head ``(2Q - 1)((2K - 1)^T V)`` (sdha) or ``Q (K^T V)`` (sdsa).
* ``SSSA``: ``S = IntLIF(gain[t] * Qc * alpha)``, output ``S * V``.
* ``Add``: integer sum; ``GlobalPool``: integer sum over ``H, W``; ``TimeMean``: integer
  sum over ``T`` (the real output is ``scale * sum / T``).

Exactness of float kernels
--------------------------
Convolutions and matrix products run through torch's float kernels, but only where the
result is provably the exact integer. Let ``B_node = max_o(sum |W[o]| * B_in + |b[o]|)``
be the node's static bound (:func:`bounds`). Every product ``w * x`` of two integers is an
integer with ``|w x| <= |w| B_in``, so every partial sum of any subset of the products and
the bias, in any order, blocked or fused (FMA), is an integer of magnitude at most
``B_node``. Floats represent every integer of magnitude ``<= 2**24`` (float32) or
``<= 2**53`` (float64) exactly, so no rounding ever happens (the operands themselves are
below the bound too, or multiply a zero): float32 is used when ``B_node < 2**24``, float64
when ``B_node < 2**53``, and anything larger raises :class:`GraphError`. The argument
needs kernels that only sum products in the stated precision: float32 is used only while
torch and oneDNN compute float32 in IEEE precision (no TF32/BF16 modes, else float64 is
used), NNPACK (Winograd/FFT) is switched off around the convolutions, and the integer
stage always runs on the CPU (GPU libraries may pick FFT or Winograd algorithms). Results
are cast back to ``int64`` after a range check against the bound (``check_bounds``);
integrality is what the argument proves. Neurons, adds and pools are computed directly
in ``int64``; :func:`run` refuses bounds that could overflow it (``>= 2**62``).

Bounds are static proofs, propagated node by node from the input range (spikes:
``levels``; analog: ``2**bits - 1``), never observed maxima. With ``check_bounds=True``
(default) every computed integer is compared with its bound and with the node's
``acc_bits`` / ``mem_bits`` width when set: a violation is a compiler bug and raises
:class:`GraphError`.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import ir
from ..models.errors import GraphError
from .bounds import _leak, bounds, node_steps, register_bounds  # noqa: F401 (re-exported)

__all__ = ["Result", "run", "input_codes", "bounds", "register_bounds", "kernel_dtype", "int_conv2d", "int_linear",
           "FLOAT32_EXACT", "FLOAT64_EXACT", "INT64_SAFE"]

#: integers of magnitude below these are exact in float32 / float64 sums of products
FLOAT32_EXACT = 2 ** 24
FLOAT64_EXACT = 2 ** 53
#: bounds at or above this are refused (int64 arithmetic must not overflow)
INT64_SAFE = 2 ** 62


@dataclass(frozen=True)
class Result:
    """What :func:`run` returns.

    Members
    -------
    outputs : dict[str, torch.Tensor]
        Real-valued (float64) outputs for ``graph.outputs``: float graphs as computed;
        integer graphs dequantised, ``scale[c] * x``. Shape ``[T, B, *shape]``, except a
        ``TimeMean`` output: ``[B, *shape]``, the mean over time (integer graphs:
        ``scale * sum / T``).
    values : dict[str, torch.Tensor]
        With ``record=True``: every node's raw output, ``[T, B, *shape]`` (``[1, B,
        *shape]`` for ``TimeMean``); ``int64`` in integer graphs (spikes too), float64 in
        float graphs. Empty otherwise.
    membranes : dict[str, torch.Tensor]
        With ``record=True``: the pre-reset membrane ``H``, ``[T, B, *shape]``, of every
        ``LIF`` / ``IntLIF`` node, and ``[T, B, heads, H*W]`` for the saccade neuron of an
        ``SSSA`` node (as ``models.attention.SSSA.sal_lif.last_h``). Empty otherwise.
    """

    outputs: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    membranes: dict[str, torch.Tensor] = field(default_factory=dict)


# ----------------------------------------------------------------------------- exact kernels


def _float32_is_ieee() -> bool:
    """True when torch (and oneDNN) compute float32 matmuls/convs in full IEEE precision."""
    try:
        if torch.get_float32_matmul_precision() != "highest":
            return False
    except RuntimeError:  # legacy and new precision APIs mixed: the new getters decide
        pass
    for var in ("ONEDNN_DEFAULT_FPMATH_MODE", "DNNL_DEFAULT_FPMATH_MODE"):
        if os.environ.get(var, "strict").strip().lower() not in ("", "strict"):
            return False  # oneDNN may then compute float32 primitives in bf16/tf32
    onednn_tf32 = getattr(torch._C, "_get_onednn_allow_tf32", None)
    if onednn_tf32 is not None and onednn_tf32():
        return False
    getter = getattr(torch._C, "_get_fp32_precision_getter", None)
    if getter is None:  # pragma: no cover - older torch without the new API
        return True
    for backend, op in (("generic", "all"), ("mkldnn", "all"), ("mkldnn", "conv"),
                        ("mkldnn", "matmul")):
        try:
            if getter(backend, op) not in ("none", "ieee"):
                return False
        except (RuntimeError, ValueError):  # pragma: no cover - unknown backend/op
            pass
    return True


def kernel_dtype(bound: int) -> torch.dtype:
    """Float dtype in which a sum of integer products bounded by ``bound`` is exact.

    ``float32`` if ``bound < 2**24`` (and torch computes float32 in IEEE precision),
    ``float64`` if ``bound < 2**53``; raises :class:`GraphError` otherwise.
    """
    if bound < FLOAT32_EXACT and _float32_is_ieee():
        return torch.float32
    if bound < FLOAT64_EXACT:
        return torch.float64
    raise GraphError(f"a sum of products bounded by {bound} (>= 2**53) cannot be computed "
                     "exactly with float kernels; the quantisation produced too-wide integers")


@contextlib.contextmanager
def _exact_kernels():
    """Only sum-of-products kernels: NNPACK (Winograd/FFT convolutions) off."""
    with torch.backends.nnpack.flags(enabled=False):
        yield


def _to_int(y: torch.Tensor, bound: int, who: str, check: bool, bits: int = 0) -> torch.Tensor:
    """Cast an exact float result to int64, checking it against the proved bound.

    Integrality needs no check: it is what the exactness argument proves. The range check
    (with ``check``) catches a wrong bound, i.e. a compiler bug, and a declared register
    width ``bits`` (``acc_bits``) that is too narrow.
    """
    if check and y.numel():
        mn, mx = (float(z) for z in torch.aminmax(y))
        _check_range(mn, mx, bound, bits, who)
    return y.to(torch.int64)


def _check_range(mn, mx, bound: int, bits: int, who: str, what: str = "value") -> None:
    lo, hi = -bound, bound
    if bits:
        lo, hi = max(lo, -(2 ** (bits - 1))), min(hi, 2 ** (bits - 1) - 1)
    if mn < lo or mx > hi:
        raise GraphError(f"{who}: {what} range [{mn:.0f}, {mx:.0f}] exceeds [{lo}, {hi}] (proved "
                         f"bound {bound}, width {bits or '-'}); this is a compiler bug")


def _as_tensor(a, dtype: torch.dtype, device=None) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.to(dtype=dtype, device=device)
    return torch.tensor(np.asarray(a), dtype=dtype, device=device)


def int_conv2d(x: torch.Tensor, weight, bias=None, *, stride: int = 1, padding: int = 0,
               groups: int = 1, bound: int, dtype: torch.dtype | None = None,
               check: bool = True, bits: int = 0, who: str = "conv") -> torch.Tensor:
    """Exact integer 2-D convolution through a float kernel.

    ``y[n, o] = sum_{i, k} W[o, i, k] x[n, i, k] + bias[o]`` with zero padding, as
    ``int64``. The bias is one more summand, so the sum stays exact under the same bound.

    Parameters
    ----------
    x : integer-valued ``[N, C, H, W]`` (int64, or already the kernel's float dtype).
    weight : integer ``[O, C / groups, kh, kw]`` (numpy or torch).
    bias : integer ``[O]`` or None.
    bound : proved bound ``max_o (sum |W[o]| * B_in + |bias[o]|)`` (or larger).
    dtype : force the float kernel dtype (tests); default :func:`kernel_dtype` of ``bound``.
    check : verify that the result lies within ``bound`` (and ``bits``, when non-zero).

    Raises
    ------
    GraphError
        If ``bound >= 2**53`` or (with ``check``) a result breaks the bound.
    """
    dt = dtype or kernel_dtype(bound)
    w = _as_tensor(weight, dt, x.device)
    b = None if bias is None else _as_tensor(bias, dt, x.device)
    with _exact_kernels():
        y = F.conv2d(x.to(dt), w, b, stride, padding, 1, groups)
    return _to_int(y, bound, who, check, bits)


def int_linear(x: torch.Tensor, weight, bias=None, *, bound: int,
               dtype: torch.dtype | None = None, check: bool = True, bits: int = 0,
               who: str = "linear") -> torch.Tensor:
    """Exact integer ``y = x W^T + bias`` through a float kernel; ``x`` ``[..., I]``.

    Same contract as :func:`int_conv2d`.
    """
    dt = dtype or kernel_dtype(bound)
    w = _as_tensor(weight, dt, x.device)
    b = None if bias is None else _as_tensor(bias, dt, x.device)
    y = F.linear(x.to(dt), w, b)
    return _to_int(y, bound, who, check, bits)


# ----------------------------------------------------------------------------- helpers


def _heads(z: torch.Tensor, heads: int) -> torch.Tensor:
    """``[T, B, C, H, W] -> [T, B, h, N, d]``; channel ``c`` is head ``c // d``, slot ``c % d``
    (as :func:`models.attention._heads`)."""
    t, b, c = z.shape[:3]
    return z.reshape(t, b, heads, c // heads, -1).transpose(-1, -2)


def _unheads(y: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``[T, B, h, N, d] -> [T, B, C, H, W]``."""
    t, b = y.shape[:2]
    return y.transpose(-1, -2).reshape(t, b, *shape)


def _attention_core(q, k, v, kind: str, heads: int, joint: bool | str) -> torch.Tensor:
    """Integer-valued attention in the dtype of ``q`` (sums of 0/+-1 products).

    ``joint``: True / ``"joint"`` (all ``T*N`` tokens), False / ``"spatial"`` (per step) or
    ``"temporal"`` (the ``T`` steps of each location)."""
    tokens = {True: "joint", False: "spatial"}.get(joint, joint)
    joint = tokens == "joint"
    t, b = q.shape[:2]
    shape = tuple(q.shape[2:])
    qh, kh, vh = (_heads(z, heads) for z in (q, k, v))  # [T, B, h, N, d]
    if tokens == "temporal":  # tokens = the T steps, batch over (B, h, N): [B, h, N, T, d]
        qh, kh, vh = (z.permute(1, 2, 3, 0, 4) for z in (qh, kh, vh))
        y = (2 * qh - 1) @ ((2 * kh - 1).transpose(-1, -2) @ vh) if kind == "sdha" else \
            qh @ (kh.transpose(-1, -2) @ vh)
        return _unheads(y.permute(3, 0, 1, 2, 4), shape)
    if joint:  # tokens = all T*N of the clip: [B, h, T*N, d]
        qh, kh, vh = (z.permute(1, 2, 0, 3, 4).reshape(b, heads, -1, z.shape[-1]) for z in (qh, kh, vh))
    if kind == "sdha":
        y = (2 * qh - 1) @ ((2 * kh - 1).transpose(-1, -2) @ vh)
    else:
        y = qh @ (kh.transpose(-1, -2) @ vh)
    if joint:
        y = y.reshape(b, heads, t, -1, y.shape[-1]).permute(2, 0, 1, 3, 4)
    return _unheads(y, shape)


# ----------------------------------------------------------------------------- neurons


def _lif_float(x: torch.Tensor, tau: float, decay_input: bool, vth: float, reset: str,
               levels: int, record: bool):
    """Float multi-step LIF / I-LIF with the arithmetic of :mod:`models.neurons` (``v_reset = 0``).

    Both charge in spikingjelly's operation order, as the torch neurons do:
    ``H = V + (X - V) / tau`` (decay_input) or ``H = V - V / tau + X``; copying the order
    makes the float graph match the model bit for bit.
    """
    out = torch.empty_like(x)
    hs = torch.empty_like(x) if record else None
    v = torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        if levels == 1:
            h = v + (x[t] - v) / tau if decay_input else v - v / tau + x[t]
            fired = h >= vth
            s = fired.to(x.dtype)
            v = h.masked_fill(fired, 0.0) if reset == "hard" else h - s * vth
        else:
            h = v + (x[t] - v) / tau if decay_input else v - v / tau + x[t]
            s = torch.clamp(torch.round(h / vth), 0, levels)
            v = h - s * vth
        out[t] = s
        if record:
            hs[t] = h
    return out, hs


def _lif_int(x: torch.Tensor, gain, bias, theta, k: int, decay_input: bool, reset: str,
             levels: int, bound: int, mem_bits: int, who: str, record: bool, check: bool):
    """Integer multi-step LIF (see :class:`ir.IntLIF`) on int64 ``x`` ``[T, ...]``.

    Per step ``X = gain * x[t] + bias`` (``gain = polarity * 2**F``; None means 1 / 0),
    then charge with the arithmetic shift, fire and reset. Returns ``(spikes, H or None)``.
    """
    out = torch.empty(x.shape, dtype=torch.int64, device=x.device)
    hs = torch.empty_like(out) if record else None
    v = torch.zeros(x.shape[1:], dtype=torch.int64, device=x.device)
    ext = []
    two_theta = 2 * theta
    for t in range(x.shape[0]):
        X = x[t] if gain is None else x[t] * gain
        if bias is not None:
            X = X + bias
        if decay_input:  # H = V + ((X - V) >> k)
            h = X - v
            h.bitwise_right_shift_(k).add_(v)
        else:  # H = V - (V >> k) + X
            h = v - (v >> k)
            h.add_(X)
        if record:
            hs[t] = h
        if check and h.numel():
            ext.append(torch.stack(torch.aminmax(h)))
        if levels == 1:
            s = h >= theta
            out[t] = s
            v = h.masked_fill_(s, 0) if reset == "hard" else h.sub_(s * theta)
        else:  # S = clamp(round_half_even(H / theta), 0, D); V = H - S theta
            num = 2 * h + theta
            s = torch.div(num, two_theta, rounding_mode="floor")  # round half up
            s.sub_(((num == s * two_theta) & (s % 2 == 1)).to(torch.int64))  # ties to even
            s.clamp_(0, levels)
            out[t] = s
            v = h.sub_(s * theta)
    if check and ext:
        e = torch.stack(ext)
        _check_range(int(e[:, 0].min()), int(e[:, 1].max()), bound, mem_bits, who, "membrane")
    return out, hs


# ----------------------------------------------------------------------------- executor

#: per-graph caches (graphs are immutable): proved bounds per T and parameter tensors
_CACHE: "weakref.WeakKeyDictionary[ir.Graph, dict]" = weakref.WeakKeyDictionary()


def _graph_cache(graph: ir.Graph) -> dict:
    c = _CACHE.get(graph)
    if c is None:
        c = _CACHE[graph] = {}
    return c


class _Run:
    """One execution: graph, stage, bounds, live tensors and their float views."""

    def __init__(self, graph: ir.Graph, frames: torch.Tensor, record: bool, check: bool, device):
        self.g = graph
        self.frames = frames
        self.T = int(frames.shape[0])
        self.record = record
        self.check = check
        self.device = device
        self.integer = graph.stage == "integer"
        self.dt = torch.int64 if self.integer else torch.float64
        self.cache = _graph_cache(graph)
        if self.integer:
            key = ("bounds", self.T)
            if key not in self.cache:
                b = bounds(graph, self.T)
                for name, v in b.items():
                    if v >= INT64_SAFE:
                        raise GraphError(f"{graph.node(name).op} {name!r}: proved bound {v} >= "
                                         "2**62 could overflow int64 arithmetic")
                self.cache[key] = b
            self.bounds = self.cache[key]
        else:
            self.bounds = {}
        self.values: dict[str, torch.Tensor] = {}
        self.fviews: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        self.membranes: dict[str, torch.Tensor] = {}
        self.steps: dict[str, int] = {}  # steps summed by each TimeMean

    # --- tensors
    def param(self, n: ir.Node, fld: str, dtype: torch.dtype, shape: tuple[int, ...] | None = None):
        """A node's array field as a cached tensor; ``shape`` makes it per-channel broadcastable."""
        key = (n.name, fld, dtype, self.device, shape)
        p = self.cache.get(key)
        if p is None:
            a = getattr(n, fld)
            p = _as_tensor(a, dtype, self.device)
            if shape is not None:
                p = p.reshape((len(a),) + (1,) * (len(shape) - 1))
            self.cache[key] = p
        return p

    def fview(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """An integer value converted once to a float kernel dtype (shared by consumers)."""
        x = self.values[name]
        if x.dtype == dtype:
            return x
        key = (name, dtype)
        if key not in self.fviews:
            self.fviews[key] = x.to(dtype)
        return self.fviews[key]

    def free(self, name: str) -> None:
        self.values.pop(name, None)
        for key in [k for k in self.fviews if k[0] == name]:
            del self.fviews[key]

    def check_int(self, y: torch.Tensor, n: ir.Node, bits: int = 0) -> None:
        """Compare an int64 result with the node's proved bound and declared width."""
        if self.check and self.integer and y.numel():
            mn, mx = (int(z) for z in torch.aminmax(y))
            _check_range(mn, mx, self.bounds[n.name], bits, f"{n.op} {n.name!r}")

    # --- one method per op
    def Input(self, n: ir.Input) -> torch.Tensor:
        if not self.integer:
            return self.frames.to(device=self.device, dtype=torch.float64)
        return input_codes(n, self.frames.to(device=self.device))

    def Conv(self, n: ir.Conv) -> torch.Tensor:
        src = n.inputs[0]
        t, b = self.values[src].shape[:2]
        if not self.integer:
            dt, bound = torch.float64, 0
        else:
            bound = self.bounds[n.name]
            dt = kernel_dtype(bound)
        w = self.param(n, "weight", dt)
        bmap = n.bias_map  # [O, Ho, Wo]: added after the sum (exact: int64 in integer graphs)
        bias = None if n.bias is None or bmap else self.param(n, "bias", dt)
        x = self.fview(src, dt).flatten(0, 1)
        if not self.integer:
            y = F.conv2d(x, w, bias, n.stride, n.padding, 1, n.groups)
            if bmap:
                y = y + self.param(n, "bias", dt)
        else:
            y = int_conv2d(x, w, bias, stride=n.stride, padding=n.padding, groups=n.groups,
                           bound=bound, dtype=dt, check=self.check, bits=n.acc_bits,
                           who=f"Conv {n.name!r}")
            if bmap:
                y = y + self.param(n, "bias", torch.int64)
                self.check_int(y, n, n.acc_bits)
        return y.reshape(t, b, *y.shape[1:])

    def Linear(self, n: ir.Linear) -> torch.Tensor:
        src = n.inputs[0]
        if not self.integer:
            bias = None if n.bias is None else self.param(n, "bias", torch.float64)
            return F.linear(self.values[src], self.param(n, "weight", torch.float64), bias)
        bound = self.bounds[n.name]
        dt = kernel_dtype(bound)
        bias = None if n.bias is None else self.param(n, "bias", dt)
        return int_linear(self.fview(src, dt), self.param(n, "weight", dt), bias, bound=bound,
                          dtype=dt, check=self.check, bits=n.acc_bits, who=f"Linear {n.name!r}")

    def BatchNorm(self, n: ir.BatchNorm) -> torch.Tensor:
        x = self.values[n.inputs[0]]
        shape = tuple(x.shape[2:])
        return x * self.param(n, "a", torch.float64, shape) + self.param(n, "b", torch.float64, shape)

    def RepConv(self, n: ir.RepConv) -> torch.Tensor:
        x = self.values[n.inputs[0]]
        t, b, c, h, w = x.shape
        f64 = torch.float64
        chw = (c, 1, 1)
        y = F.conv2d(x.flatten(0, 1), self.param(n, "w1", f64))
        b1 = self.param(n, "b1", f64, chw)
        y = y * self.param(n, "a1", f64, chw) + b1
        # pad by one pixel with BN1(0) = b1, then the depthwise 3x3 is "valid"
        yp = b1.expand(y.shape[0], c, h + 2, w + 2).clone()
        yp[:, :, 1:-1, 1:-1] = y
        y = F.conv2d(yp, self.param(n, "wdw", f64), groups=c)
        y = F.conv2d(y, self.param(n, "w2", f64))
        o = y.shape[1]
        y = y * self.param(n, "a2", f64, (o, 1, 1)) + self.param(n, "b2", f64, (o, 1, 1))
        return y.reshape(t, b, o, h, w)

    def LIF(self, n: ir.LIF) -> torch.Tensor:
        if n.levels > 1 and n.reset != "soft":
            raise GraphError(f"LIF {n.name!r}: an I-LIF (levels={n.levels}) resets softly")
        s, h = _lif_float(self.values[n.inputs[0]], n.tau, n.decay_input, n.v_threshold,
                          n.reset, n.levels, self.record)
        if self.record:
            self.membranes[n.name] = h
        return s

    def IntLIF(self, n: ir.IntLIF) -> torch.Tensor:
        x = self.values[n.inputs[0]]
        shape = tuple(x.shape[2:])
        key = (n.name, "gain", shape)
        if key not in self.cache:  # gain = polarity * 2**F, or None when it is all ones
            g = n.polarity.astype(np.int64) * 2 ** n.frac_bits
            self.cache[key] = None if bool(np.all(g == 1)) else \
                _as_tensor(g, torch.int64, self.device).reshape((len(g),) + (1,) * (len(shape) - 1))
        bias = self.param(n, "bias", torch.int64, shape) if bool(np.any(n.bias != 0)) else None
        s, h = _lif_int(x, self.cache[key], bias, self.param(n, "theta", torch.int64, shape),
                        n.leak_shift, n.decay_input, n.reset, n.levels, self.bounds[n.name],
                        n.mem_bits, f"IntLIF {n.name!r}", self.record, self.check)
        if self.record:
            self.membranes[n.name] = h
        return s

    def Add(self, n: ir.Add) -> torch.Tensor:
        y = self.values[n.inputs[0]] + self.values[n.inputs[1]]
        self.check_int(y, n, n.acc_bits)
        return y

    def Requant(self, n: ir.Requant) -> torch.Tensor:
        x = self.values[n.inputs[0]]
        sh = self.param(n, "shift", torch.int64, tuple(x.shape[2:]))
        y = (x + ((1 << sh) >> 1)) >> sh
        self.check_int(y, n, n.acc_bits)
        return y

    def TimeSlice(self, n: ir.TimeSlice) -> torch.Tensor:
        x = self.values[n.inputs[0]]
        if n.steps(x.shape[0]) < 1:
            raise GraphError(f"TimeSlice {n.name!r} leaves no step of a {x.shape[0]}-step clip")
        return x[n.start:n.stop]

    def Upsample(self, n: ir.Upsample) -> torch.Tensor:
        f = n.factor
        return self.values[n.inputs[0]].repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)

    def Slice(self, n: ir.Slice) -> torch.Tensor:
        return self.values[n.inputs[0]][:, :, n.start:n.stop]

    def Concat(self, n: ir.Concat) -> torch.Tensor:
        return torch.cat([self.values[n.inputs[0]], self.values[n.inputs[1]]], dim=2)

    def Attention(self, n: ir.Attention) -> torch.Tensor:
        joint = n.tokens
        if not self.integer:
            q, k, v = (self.values[s] for s in n.inputs)
            y = _attention_core(q, k, v, n.kind, n.heads, joint)
            r = 1.0 / n.factor  # the torch model divides by 2C: do the same when 1/factor is whole
            return y / round(r) if abs(r - round(r)) <= 1e-9 * r else y * n.factor
        bound = self.bounds[n.name]
        dt = kernel_dtype(bound)
        q, k, v = (self.fview(s, dt) for s in n.inputs)
        y = _attention_core(q, k, v, n.kind, n.heads, joint)
        return _to_int(y, bound, f"Attention {n.name!r}", self.check, n.acc_bits)

    def SSSA(self, n: ir.SSSA) -> torch.Tensor:
        q, k, v = (self.values[s] for s in n.inputs)
        t = q.shape[0]
        shape = tuple(q.shape[2:])
        if n.gain.shape[0] < t:
            raise GraphError(f"SSSA {n.name!r}: gain has {n.gain.shape[0]} steps, the clip has T={t}")
        qh, kh, vh = (_heads(z, n.heads) for z in (q, k, v))  # [T, B, h, N, d]
        sal = qh.sum(-1) * kh.sum(dim=(-1, -2)).unsqueeze(-1)  # [T, B, h, N]
        g = self.param(n, "gain", self.dt)[:t].view(t, 1, 1, 1)
        if not self.integer:
            s, h = _lif_float(sal * g, n.sal_tau, n.sal_decay_input, n.sal_threshold,
                              n.sal_reset, 1, self.record)
        else:  # X = (gain[t] * sal) << F, polarity +1, bias 0
            theta = torch.tensor(int(n.sal_theta), dtype=torch.int64, device=self.device)
            s, h = _lif_int(sal * g, 2 ** n.sal_frac_bits, None, theta,
                            _leak(n.sal_tau, f"SSSA {n.name!r}"), n.sal_decay_input, n.sal_reset,
                            1, self.bounds[n.name], n.mem_bits, f"SSSA {n.name!r}", self.record,
                            self.check)
        if self.record:
            self.membranes[n.name] = h
        return _unheads(s.unsqueeze(-1) * vh, shape)

    def GlobalPool(self, n: ir.GlobalPool) -> torch.Tensor:
        x = self.values[n.inputs[0]]
        if not self.integer:
            return x.flatten(3).mean(3)
        y = x.sum(dim=(3, 4))
        self.check_int(y, n, n.acc_bits)
        return y

    def TimeMean(self, n: ir.TimeMean) -> torch.Tensor:
        x = self.values[n.inputs[0]]
        self.steps[n.name] = int(x.shape[0])  # after a TimeSlice: fewer than the clip's T
        if not self.integer:
            return x.mean(0, keepdim=True)
        y = x.sum(0, keepdim=True)
        self.check_int(y, n, n.acc_bits)
        return y

    # --- outputs
    def real(self, name: str) -> torch.Tensor:
        n = self.g.node(name)
        y = self.values[name].to(torch.float64)
        if self.integer:
            t = self.g.types[name]
            scale = (1.0,) * t.shape[0] if t.scale is None else t.scale
            y = y * _as_tensor(np.asarray(scale, np.float64), torch.float64, self.device).reshape(
                (t.shape[0],) + (1,) * (len(t.shape) - 1))
            if isinstance(n, ir.TimeMean):
                y = y / self.steps[name]
        return y[0] if isinstance(n, ir.TimeMean) else y


def input_codes(n: ir.Input, frames: torch.Tensor) -> torch.Tensor:
    """The integer graph's input: ``q = clamp(round(x / scale), 0, 2**bits - 1)`` (int64,
    ``x / scale`` in float64, half to even) of ``frames``."""
    x = frames.to(dtype=torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise GraphError(f"Input {n.name!r}: frames contain NaN or inf")
    return torch.clamp(torch.round(x / n.scale), 0, 2 ** n.bits - 1).to(torch.int64)


def run(graph: ir.Graph, frames: torch.Tensor, *, record: bool = False,
        check_bounds: bool = True, observe=None) -> Result:
    """Execute ``graph`` on a clip; for integer graphs this is the definition of the model.

    Parameters
    ----------
    graph : a ``float`` or ``integer`` stage graph.
    frames : real pixel values ``[T, B, C, H, W]`` (any float dtype). Integer graphs
        quantise them as the ``Input`` node says and always run on the CPU; float graphs
        run in float64 on the frames' device.
    record : keep every node's raw value and every neuron's membrane in the result;
        otherwise a tensor is freed after its last consumer.
    check_bounds : compare every integer value with its proved bound (:func:`bounds`) and
        the node's declared ``acc_bits`` / ``mem_bits``.
    observe : optional ``observe(name, value)``, called with every node's raw output as
        soon as it is computed (before it may be freed): streaming comparisons without
        ``record``'s memory (fidelity at real frame sizes).

    Returns
    -------
    Result

    Raises
    ------
    GraphError
        For a ``quantized`` graph, frames that do not fit the ``Input``, a clip whose length
        differs from the ``meta["T"]`` an integer graph was proved for, a bound that is too
        large for exact arithmetic, or (``check_bounds``) a value outside its bound.
    """
    if graph.stage not in ("float", "integer"):
        raise GraphError(f"run() executes float or integer graphs, got stage {graph.stage!r}")
    if not isinstance(frames, torch.Tensor):
        raise GraphError(f"frames must be a torch.Tensor [T, B, C, H, W], got {type(frames).__name__}")
    if frames.dim() != 5:
        raise GraphError(f"frames must be [T, B, C, H, W], got shape {tuple(frames.shape)}")
    if tuple(frames.shape[2:]) != graph.input.shape:
        raise GraphError(f"frames {tuple(frames.shape)} do not fit Input {graph.input.name!r} of "
                         f"shape {graph.input.shape} (as [T, B, C, H, W])")
    if frames.shape[0] < 1 or frames.shape[1] < 1:
        raise GraphError(f"frames {tuple(frames.shape)} hold no clip")
    proved_T = graph.meta.get("T") if graph.stage == "integer" else None
    if proved_T is not None and int(frames.shape[0]) != int(proved_T):
        raise GraphError(f"this graph's widths and fraction bits were proved for T={proved_T} "
                         f"steps, the clip has T={int(frames.shape[0])}; re-compile with "
                         f"--T {int(frames.shape[0])}")
    device = torch.device("cpu") if graph.stage == "integer" else frames.device
    ex = _Run(graph, frames, record, check_bounds, device)

    last: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        for name in n.inputs:
            last[name] = i
    keep = set(graph.outputs)
    time_means = {n.name for n in graph.nodes if isinstance(n, ir.TimeMean)}
    with torch.no_grad():
        for i, n in enumerate(graph.nodes):
            if ex.integer and time_means.intersection(n.inputs):
                raise GraphError(f"{n.op} {n.name!r} reads a TimeMean: integer semantics after the "
                                 "time reduction are not defined (its 1/T is not in the scale)")
            ex.values[n.name] = getattr(ex, n.op)(n)
            if observe is not None:
                observe(n.name, ex.values[n.name])
            if not record:
                for s in set(n.inputs):
                    if last[s] == i and s not in keep:
                        ex.free(s)
            for s in set(n.inputs):  # float views are never needed after the last consumer
                if last[s] == i:
                    ex.fviews = {k: v for k, v in ex.fviews.items() if k[0] != s}
        outputs = {o: ex.real(o) for o in graph.outputs}
    return Result(outputs=outputs, values=ex.values if record else {},
                  membranes=ex.membranes if record else {})


# =============================================================================
# hardware core references
# -----------------------------------------------------------------------------
# One numpy integer function per core of ``svf_deploy.hw.cores``, written the way the
# core computes (additions, shifts, compare chains), each tested against the executor
# above (``tests/hw/test_core_refs.py``). The RTL tests hold every core to these.
# =============================================================================


def ref_bitplanes(x, bits: int) -> np.ndarray:
    """Bit-planes of non-negative integers: ``planes[p] = (x >> p) & 1`` for ``p < bits``, so
    ``x = sum_p 2**p planes[p]``. Raises :class:`GraphError` for values outside ``0..2**bits-1``."""
    x = np.asarray(x, dtype=np.int64)
    if x.size and (int(x.min()) < 0 or int(x.max()) >= 1 << bits):
        raise GraphError(f"bit-planes: values must lie in 0..{(1 << bits) - 1}, got "
                         f"{int(x.min())}..{int(x.max())}")
    return np.stack([(x >> p) & 1 for p in range(bits)]) if bits else np.zeros((0,) + x.shape, np.int64)


def ref_gated_accumulate(x, weight, bias=None, bits: int = 1) -> np.ndarray:
    """Spike-gated accumulation (``GatedAccumulator``): ``y[..., o] = bias[o] + sum_i x[..., i] W[o, i]``.

    Computed as the core does: for every bit-plane ``p`` of the non-negative integer
    input (``bits = 1`` for binary spikes), the weights of the active inputs are added and
    the plane's sum is shifted left by ``p``. ``x``: ``[..., I]`` integers in
    ``0..2**bits-1``; ``weight``: ``[O, I]``; returns int64 ``[..., O]``. Equals the
    executor's ``int_linear`` / ``int_conv2d`` on im2col patches.
    """
    w = np.asarray(weight, dtype=np.int64)
    planes = ref_bitplanes(x, bits)
    y = np.zeros(planes.shape[1:-1] + (w.shape[0],), dtype=np.int64)
    for p in range(bits):
        y += (planes[p] @ w.T) << p  # 0/1 gates select weights: a sum, never a product
    if bias is not None:
        y += np.asarray(bias, dtype=np.int64)
    return y


def ref_signed_bitplane_accumulate(x, weight, bias=None, bits: int = 2) -> np.ndarray:
    """Pointwise accumulation over signed integers (``SignedBitPlaneAccumulator``):
    ``y[..., o] = bias[o] + sum_i x[..., i] W[o, i]``, computed as the core does.

    ``x``: ``[..., I]`` integers in ``-2**(bits-1) .. 2**(bits-1)-1``, offset to
    ``u = x + 2**(bits-1)`` (the sign bit inverted, ``0 .. 2**bits - 1``) and accumulated
    as unsigned bit-planes (:func:`ref_gated_accumulate`), plus the folded constant
    ``bias'[o] = bias[o] - 2**(bits-1) sum_i W[o, i]``. ``weight``: ``[O, I]``; returns
    int64 ``[..., O]``. Equals the executor's 1x1 ``int_conv2d`` on an ``int`` tensor (the
    factored SepConv's pointwise half). Raises :class:`GraphError` outside the signed range.
    """
    x = np.asarray(x, dtype=np.int64)
    if bits < 2:
        raise GraphError(f"signed bit-planes: bits must be >= 2 (a sign and a value plane), not {bits}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if x.size and (int(x.min()) < lo or int(x.max()) > hi):
        raise GraphError(f"signed bit-planes: values must lie in {lo}..{hi}, got "
                         f"{int(x.min())}..{int(x.max())}")
    w = np.asarray(weight, dtype=np.int64)
    b = np.zeros(w.shape[0], np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
    return ref_gated_accumulate(x + (1 << (bits - 1)), w, b - (w.sum(axis=1) << (bits - 1)), bits=bits)


def ref_intlif_lane(x, theta, bias, polarity, *, frac_bits: int, leak_shift: int,
                    decay_input: bool, reset: str, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """The IntLIF lane (``IntLIFLane``) on ``x`` ``[T, ...]``; returns ``(S, H)`` int64.

    Per-neuron parameters broadcast against ``x[t]``. Per step: ``X = pol (x << F) + bias``;
    ``H = V + ((X - V) >> k)`` or ``V - (V >> k) + X``; binary: ``S = H >= theta``, hard or
    soft reset; I-LIF (``levels = D > 1``), round half to even by a compare chain:
    ``S = #{k in 1..D : 2H > (2k-1) theta or (2H == (2k-1) theta and k even)}``,
    ``V = H - S theta``. Equals the executor's ``_lif_int``.
    """
    x = np.asarray(x, dtype=np.int64)
    th = np.asarray(theta, dtype=np.int64)
    b = np.asarray(bias, dtype=np.int64)
    pol = np.asarray(polarity, dtype=np.int64)
    v = np.zeros(x.shape[1:], dtype=np.int64)
    S = np.zeros(x.shape, dtype=np.int64)
    H = np.zeros(x.shape, dtype=np.int64)
    k = leak_shift
    for t in range(x.shape[0]):
        xs = x[t] << frac_bits
        X = np.where(pol < 0, -xs, xs) + b
        h = v + ((X - v) >> k) if decay_input else v - (v >> k) + X
        if levels == 1:
            s = (h >= th).astype(np.int64)
            v = np.where(s == 1, 0, h) if reset == "hard" else h - s * th
        else:
            s = np.zeros_like(h)
            for kk in range(1, levels + 1):
                odd = (2 * kk - 1) * th
                s += (2 * h > odd) | ((2 * h == odd) & (kk % 2 == 0))
            v = h - s * th
        S[t], H[t] = s, h
    return S, H


def ref_requant(x, shift) -> np.ndarray:
    """``y = (x + (2**s >> 1)) >> s`` (``Requant`` core; arithmetic shift, half up)."""
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    return (x + ((1 << s) >> 1)) >> s


def ref_add(a, b) -> np.ndarray:
    """Residual add (``StreamAdd``): ``a + b`` in int64."""
    return np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)


def ref_sum_pool(x, axis) -> np.ndarray:
    """``SumPool``: integer sum over ``axis`` (H*W for GlobalPool, T for TimeMean)."""
    return np.asarray(x, dtype=np.int64).sum(axis=axis)


def ref_attention_head(q, k, v, kind: str = "sdha") -> tuple[np.ndarray, np.ndarray]:
    """One head of spike-driven attention as the ``AttentionUnit`` counts it.

    ``q, k, v``: binary ``[N, d]`` over the head's token set (joint: all ``T*H*W`` tokens
    of the clip; spatial: the ``H*W`` of one step). Phase 1 (up/down counting over the
    tokens with an active ``V``): ``kv[a, b] = sum_n (2K[n,a] - 1) V[n,b]`` for sdha,
    ``sum_n K[n,a] V[n,b]`` for sdsa, and ``colsum[b] = sum_a kv[a, b]``. Phase 2 (signed
    additions of kv rows): ``y[n, b] = 2 sum_{a : Q[n,a]=1} kv[a, b] - colsum[b]`` (sdha,
    ``= ((2Q - 1) kv)[n, b]``) or ``sum_{a : Q[n,a]=1} kv[a, b]`` (sdsa). Returns
    ``(y, kv)``; ``y`` equals the executor's attention for that head.
    """
    q, k, v = (np.asarray(z, dtype=np.int64) for z in (q, k, v))
    n, d = q.shape
    kv = np.zeros((d, d), dtype=np.int64)
    for t in range(n):
        if not v[t].any():
            continue  # a token with no active V changes no counter
        step = 2 * k[t] - 1 if kind == "sdha" else k[t]
        kv += np.outer(step, v[t])
    colsum = kv.sum(0)
    y = np.zeros((n, d), dtype=np.int64)
    for t in range(n):
        sel = kv[q[t] == 1].sum(0)
        y[t] = 2 * sel - colsum if kind == "sdha" else sel
    return y, kv


def ref_sssa_head(q, k, v, gain, *, theta: int, frac_bits: int, leak_shift: int,
                  decay_input: bool, reset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One SSSA head as the ``SaccadeUnit`` adds it; ``q, k, v`` binary ``[T, N, d]``.

    ``alpha[t] = sum_{n, c} K[t, n, c]``; ``sal[t, n] = sum_{c : Q[t, n, c] = 1} alpha[t]``
    (``= Qc * alpha``); ``X = (gain[t] * sal) << F`` with ``gain[t] * sal`` a sum of
    ``sal << j`` over the set bits ``j`` of ``|gain[t]|`` (negated for a negative gain);
    the saccade neuron is :func:`ref_intlif_lane` (polarity +1, bias 0). Returns
    ``(y = S * V, S, H)``, ``S``/``H`` ``[T, N]``; equals the executor's SSSA per head.
    """
    q, k, v = (np.asarray(z, dtype=np.int64) for z in (q, k, v))
    T = q.shape[0]
    alpha = k.reshape(T, -1).sum(1)
    sal = np.where(q == 1, alpha[:, None, None], 0).sum(-1)  # [T, N]
    X = np.zeros_like(sal)
    for t in range(T):
        g = int(gain[t])
        acc = sum((sal[t] << j for j in range(abs(g).bit_length()) if (abs(g) >> j) & 1),
                  np.zeros_like(sal[t]))
        X[t] = -acc if g < 0 else acc
    S, H = ref_intlif_lane(X, theta, 0, 1, frac_bits=frac_bits, leak_shift=leak_shift,
                           decay_input=decay_input, reset=reset, levels=1)
    return S[..., None] * v, S, H
