"""The typed spike-graph IR: frozen, validated dataclasses, serialisable to JSON + npz.

A :class:`Graph` is a topologically ordered tuple of nodes. Every node produces one
tensor per time step and sample; :class:`TensorType` describes it without the leading
``[T, B]`` axes. A graph is at one of two *stages*:

``float``
    What the frontend emits: real-valued weights, ``BatchNorm``, ``RepConv``, float
    ``LIF`` neurons. Executing it reproduces the torch model (to float rounding).
``quantized``
    Between the two: integer weights with scales, but float ``LIF`` neurons (and the
    ``BatchNorm`` after an attention) not yet absorbed into integer thresholds.
``integer``
    After quantisation and threshold absorption: integer weights and biases, ``IntLIF`` neurons with integer
    thresholds. Executing it with :mod:`compiler.reference` is the definition of the
    compiled model, bit for bit.

Tensor kinds: ``analog`` (input frames; integer codes in an integer graph), ``spike``
(integers ``0..levels``; binary when ``levels == 1``), ``int`` (integer accumulators:
real value ``= scale[c] * x``), ``float`` (float graphs only).

Integer semantics of every node are stated in its docstring; :mod:`compiler.reference`
implements exactly those. Arrays are ``numpy`` arrays; integer arrays are ``int64``.

Clip length. Bounds (and so every ``acc_bits`` / ``mem_bits``) and the neurons'
fraction bits depend on the number of time steps ``T``; a compiled integer graph
records the ``T`` they were proved for in ``meta["T"]`` (an int), and every executor
refuses clips of another length (re-compile with that ``T`` instead).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..models.errors import GraphError

__all__ = [
    "SCHEMA_VERSION", "TensorType", "Node", "Input", "Conv", "BatchNorm", "RepConv", "LIF",
    "IntLIF", "Add", "Requant", "Attention", "SSSA", "GlobalPool", "Linear", "TimeMean", "Slice",
    "Concat", "TimeSlice", "Upsample", "Graph",
    "NODE_TYPES", "STAGES", "FORBIDDEN",
]

SCHEMA_VERSION = 1


def _arr(x, dtype=None) -> np.ndarray:
    a = np.asarray(x, dtype=dtype)
    a.setflags(write=False)
    return a


def _is_int(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.integer)


@dataclass(frozen=True)
class TensorType:
    """Per-step, per-sample tensor description.

    ``shape``: ``(C, H, W)`` or ``(C,)``. ``scale``: per-channel real value of one integer
    unit (``int``/``analog`` kinds in integer graphs; 1.0 for spikes), else ``None``.
    ``bound``: proved bound on ``|x|`` (integer graphs, once known), else ``None``.
    """

    shape: tuple[int, ...]
    kind: str
    levels: int = 1
    scale: tuple[float, ...] | None = None
    bound: int | None = None

    KINDS: ClassVar[tuple[str, ...]] = ("analog", "spike", "int", "float")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise GraphError(f"tensor kind {self.kind!r} is not one of {self.KINDS}")
        if not self.shape or any(int(s) <= 0 for s in self.shape):
            raise GraphError(f"tensor shape {self.shape!r} must be non-empty and positive")
        if self.scale is not None and len(self.scale) != self.shape[0]:
            raise GraphError(f"scale has {len(self.scale)} entries for {self.shape[0]} channels")

    @property
    def channels(self) -> int:
        return self.shape[0]


# ----------------------------------------------------------------------------- nodes


@dataclass(frozen=True, eq=False)
class Node:
    """Base: a named operation on the outputs of earlier nodes.

    Subclasses set ``op`` and implement :meth:`infer` (output type from input types,
    raising :class:`GraphError` on any mismatch). Array-valued fields go to
    ``weights.npz``; all other fields to ``graph.json``.
    """

    name: str
    inputs: tuple[str, ...]

    op: ClassVar[str] = "Node"
    arity: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise GraphError(f"node name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if len(self.inputs) != self.arity:
            raise GraphError(f"{self.op} {self.name!r} takes {self.arity} input(s), got {len(self.inputs)}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                object.__setattr__(self, f.name, _arr(v))
        self.check()

    def check(self) -> None:
        """Field validation independent of the graph (override)."""

    def infer(self, ins: list[TensorType], stage: str) -> TensorType:  # pragma: no cover
        raise NotImplementedError

    def replace(self, **kw) -> "Node":
        return dataclasses.replace(self, **kw)

    # --- serialisation helpers
    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def attrs(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("name", "inputs"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                continue
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise GraphError(msg)


def _same_spatial(a: TensorType, b: TensorType, who: str) -> None:
    _need(a.shape[1:] == b.shape[1:], f"{who}: spatial shapes {a.shape} and {b.shape} differ")


@dataclass(frozen=True, eq=False)
class Input(Node):
    """Analog frames ``(C, H, W)``. Integer graphs quantise a real frame ``x`` to codes
    ``q = clamp(round(x / scale), 0, 2**bits - 1)`` (round half to even, as numpy)."""

    shape: tuple[int, ...] = (1, 32, 32)
    scale: float = 1.0 / 255.0
    bits: int = 8

    op: ClassVar[str] = "Input"
    arity: ClassVar[int] = 0

    def check(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        _need(len(self.shape) == 3, f"Input {self.name!r}: shape must be (C, H, W), got {self.shape}")
        _need(self.scale > 0 and 1 <= self.bits <= 16, f"Input {self.name!r}: bad scale/bits")

    def infer(self, ins, stage):
        if stage == "float":
            return TensorType(self.shape, "float")
        return TensorType(self.shape, "analog", scale=(self.scale,) * self.shape[0],
                          bound=2 ** self.bits - 1)


@dataclass(frozen=True, eq=False)
class Conv(Node):
    """2-D convolution ``y[o] = sum_{i,k} W[o, i, k] x[i, k] + bias[o]`` (zero padding).

    Float graphs: real ``weight``/``bias``. Integer graphs: integer ``weight``, integer
    ``bias`` in accumulator units, and ``out_scale[o]``: the real value of one unit of
    ``y[o]``. On spike inputs this is a gated addition of weights; only an ``analog``
    input (the first layer) multiplies. ``acc_bits``: signed accumulator width, derived
    by the bit-width pass from the proved bound (0 = not yet derived). In a float graph
    ``out_scale`` may be set as an annotation: the scale quantisation must use (the
    residual stream's shared scale).

    Bias map: ``bias`` may also be ``[O, Ho, Wo]``, one value per output position,
    ``y[o, p] = sum_{i,k} W[o, i, k] x[i, p + k] + bias[o, p]``. Only the analog first
    layer gets one, when the frontend folds an input normalisation ``(x - mean) / std``
    into it: a zero pad of the *normalised* frame is the raw value ``mean``, so the fold
    ``W' = W / std`` with ``bias[o, p] = b[o] - sum_{i,k valid at p} W'[o, i, k] mean[i]``
    is exact at the borders too (a per-channel bias would be exact only inside). Every
    pass treats it as the per-channel bias, position by position (BN fold ``a[o] bias + b[o]``,
    quantisation ``round(bias / s[o])``; bounds use ``max_p |bias[o, p]|``).
    """

    weight: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 1, 1)))
    bias: np.ndarray | None = None
    stride: int = 1
    padding: int = 0
    groups: int = 1
    out_scale: np.ndarray | None = None
    acc_bits: int = 0

    op: ClassVar[str] = "Conv"

    def check(self) -> None:
        w = self.weight
        _need(w.ndim == 4, f"Conv {self.name!r}: weight must be [O, I/groups, kh, kw], got {w.shape}")
        o = w.shape[0]
        _need(self.groups >= 1 and o % self.groups == 0, f"Conv {self.name!r}: {o} outputs not divisible by groups={self.groups}")
        _need(self.stride >= 1 and self.padding >= 0, f"Conv {self.name!r}: bad stride/padding")
        if self.bias is not None:
            _need(self.bias.shape == (o,) or (self.bias.ndim == 3 and self.bias.shape[0] == o),
                  f"Conv {self.name!r}: bias shape {self.bias.shape} is neither ({o},) nor a "
                  f"bias map ({o}, Ho, Wo)")
        if self.out_scale is not None:
            _need(self.out_scale.shape == (o,) and bool(np.all(self.out_scale > 0)),
                  f"Conv {self.name!r}: out_scale must be ({o},) positive")

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def bias_map(self) -> bool:
        """True when ``bias`` is a per-position map ``[O, Ho, Wo]``."""
        return self.bias is not None and self.bias.ndim == 3

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        kh, kw = self.weight.shape[2:]
        return ((h + 2 * self.padding - kh) // self.stride + 1,
                (w + 2 * self.padding - kw) // self.stride + 1)

    def infer(self, ins, stage):
        (x,) = ins
        _need(len(x.shape) == 3, f"Conv {self.name!r}: input must be (C, H, W), got {x.shape}")
        _need(x.shape[0] == self.weight.shape[1] * self.groups,
              f"Conv {self.name!r}: input has {x.shape[0]} channels, weight expects {self.weight.shape[1] * self.groups}")
        oh, ow = self.out_hw(*x.shape[1:])
        _need(oh > 0 and ow > 0, f"Conv {self.name!r}: output would be empty")
        shape = (self.out_channels, oh, ow)
        if self.bias_map:
            _need(self.bias.shape == shape, f"Conv {self.name!r}: bias map {self.bias.shape} != output {shape}")
        if stage == "float":
            return TensorType(shape, "float")
        _need(self.out_scale is not None and _is_int(self.weight)
              and (self.bias is None or _is_int(self.bias)),
              f"Conv {self.name!r}: a quantised conv needs integer weight/bias and out_scale")
        return TensorType(shape, "int", scale=tuple(float(s) for s in self.out_scale))


@dataclass(frozen=True, eq=False)
class Linear(Node):
    """``y[o] = sum_i W[o, i] x[i] + bias[o]`` on ``(C,)`` vectors; integer form as :class:`Conv`."""

    weight: np.ndarray = field(default_factory=lambda: np.zeros((1, 1)))
    bias: np.ndarray | None = None
    out_scale: np.ndarray | None = None
    acc_bits: int = 0

    op: ClassVar[str] = "Linear"

    def check(self) -> None:
        _need(self.weight.ndim == 2, f"Linear {self.name!r}: weight must be [O, I]")
        o = self.weight.shape[0]
        if self.bias is not None:
            _need(self.bias.shape == (o,), f"Linear {self.name!r}: bias shape mismatch")
        if self.out_scale is not None:
            _need(self.out_scale.shape == (o,) and bool(np.all(self.out_scale > 0)),
                  f"Linear {self.name!r}: out_scale must be ({o},) positive")

    def infer(self, ins, stage):
        (x,) = ins
        _need(x.shape == (self.weight.shape[1],),
              f"Linear {self.name!r}: input {x.shape} does not fit weight {self.weight.shape}")
        shape = (int(self.weight.shape[0]),)
        if stage == "float":
            return TensorType(shape, "float")
        _need(self.out_scale is not None and _is_int(self.weight)
              and (self.bias is None or _is_int(self.bias)),
              f"Linear {self.name!r}: a quantised linear needs integer weight/bias and out_scale")
        return TensorType(shape, "int", scale=tuple(float(s) for s in self.out_scale))


@dataclass(frozen=True, eq=False)
class BatchNorm(Node):
    """Inference BN as a per-channel affine ``y = a[c] x + b[c]`` (float graphs only)."""

    a: np.ndarray = field(default_factory=lambda: np.ones(1))
    b: np.ndarray = field(default_factory=lambda: np.zeros(1))

    op: ClassVar[str] = "BatchNorm"

    def check(self) -> None:
        _need(self.a.ndim == 1 and self.a.shape == self.b.shape, f"BatchNorm {self.name!r}: a/b shape mismatch")
        _need(bool(np.all(np.isfinite(self.a)) and np.all(np.isfinite(self.b))),
              f"BatchNorm {self.name!r}: non-finite statistics")

    def infer(self, ins, stage):
        (x,) = ins
        _need(x.shape[0] == self.a.shape[0], f"BatchNorm {self.name!r}: {x.shape[0]} channels vs {self.a.shape[0]}")
        return TensorType(x.shape, "float")


@dataclass(frozen=True, eq=False)
class RepConv(Node):
    """Re-parameterisable conv (float graphs only): ``1x1 (w1) -> BN1 & pad 1 with BN1(0)
    -> depthwise 3x3 valid (wdw) -> 1x1 (w2) -> BN2``. Equals one zero-padded 3x3 conv."""

    w1: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 1, 1)))
    a1: np.ndarray = field(default_factory=lambda: np.ones(1))
    b1: np.ndarray = field(default_factory=lambda: np.zeros(1))
    wdw: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 3, 3)))
    w2: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 1, 1)))
    a2: np.ndarray = field(default_factory=lambda: np.ones(1))
    b2: np.ndarray = field(default_factory=lambda: np.zeros(1))

    op: ClassVar[str] = "RepConv"

    def check(self) -> None:
        c = self.w1.shape[0]
        o = self.w2.shape[0]
        _need(self.w1.shape == (c, c, 1, 1) and self.wdw.shape == (c, 1, 3, 3)
              and self.w2.shape == (o, c, 1, 1) and self.a1.shape == (c,) and self.b1.shape == (c,)
              and self.a2.shape == (o,) and self.b2.shape == (o,),
              f"RepConv {self.name!r}: inconsistent parameter shapes")

    def infer(self, ins, stage):
        (x,) = ins
        _need(x.shape[0] == self.w1.shape[1], f"RepConv {self.name!r}: channel mismatch")
        return TensorType((int(self.w2.shape[0]),) + x.shape[1:], "float")


@dataclass(frozen=True, eq=False)
class LIF(Node):
    """Float multi-step LIF / I-LIF, as :mod:`models.neurons` (float graphs only)."""

    tau: float = 2.0
    decay_input: bool = True
    v_threshold: float = 1.0
    reset: str = "hard"
    levels: int = 1

    op: ClassVar[str] = "LIF"

    def check(self) -> None:
        _need(self.tau > 1 and self.v_threshold > 0 and self.reset in ("hard", "soft") and self.levels >= 1,
              f"LIF {self.name!r}: bad parameters")

    def infer(self, ins, stage):
        (x,) = ins
        return TensorType(x.shape, "spike", levels=self.levels, scale=(1.0,) * x.shape[0])


@dataclass(frozen=True, eq=False)
class IntLIF(Node):
    """Integer LIF with ``F = frac_bits`` fraction bits and leak ``tau = 2**leak_shift``.

    Per step, with membrane ``V`` (starts at 0) and integer input ``x``:

    * ``X = polarity[c] * (x << F) + bias[c]``
    * ``H = V + ((X - V) >> k)`` if ``decay_input`` else ``H = V - (V >> k) + X``;
      ``>>`` is an arithmetic shift (floor division by ``2**k``)
    * ``levels == 1``: ``S = H >= theta[c]``; hard reset ``V = S ? 0 : H``, soft
      ``V = H - S * theta[c]``
    * ``levels = D > 1`` (I-LIF): ``S = clamp(round_half_even(H / theta), 0, D)`` (as
      ``torch.round`` in the float model), ``V = H - S * theta``. Hardware form, a compare
      chain with no divider: ``S = #{j in 1..D : 2H > (2j-1) theta, or 2H == (2j-1) theta
      and j is even}``.

    ``polarity`` is +-1: a negative BN gain flips the input instead of the comparison.

    ``mem_bits``: signed register width, derived from the proved bound (0 = not derived
    yet). It covers every intermediate: ``X``, ``X - V``, ``H``, ``V``, ``V - (V >> k)``,
    ``H - theta`` (soft reset) and, for I-LIF, ``2H``, ``2H + theta``, the compare operands
    ``(2j-1) theta`` (``j <= D``) and ``S * theta`` (see ``reference.register_bounds``).

    Exactness (``absorb_thresholds``). With input unit ``u[c]`` the float neuron sees
    ``X_real = u x + b``; the integer membrane is the real one in units ``u 2**-F``
    exactly, spike for spike for *any* input, when (i) ``x`` itself is exact (weights and
    input codes exactly representable at their scales), (ii) ``b / u`` is a dyadic
    rational ``m / 2**e`` (``e <= 24``; always true without an unfolded BatchNorm, b = 0),
    (iii) for soft reset and I-LIF, ``V_th / u`` is dyadic too, and (iv) ``F >= e + T k``:
    every input enters as a multiple of ``2**(F - e)``, each ``>> k`` on the way halves
    that grain at most ``T`` times, so no shift ever floors a non-zero remainder. Binary
    hard-reset neurons need no condition on ``V_th``: for an integer ``H``,
    ``H >= r`` iff ``H >= ceil(r)``. The compiler records every neuron for which (ii) or
    (iii) fails in ``meta["inexact_neurons"]`` (shown in the report): there the bias or
    threshold is rounded to ``2**-F`` units and a spike can differ only when the float
    membrane lies within about ``T * u * 2**-F`` of the threshold. (iv) is met up to
    ``T k = 20`` (``absorb_thresholds.MAX_LEAK_BITS``); longer clips would need membranes
    wider than 48 bits, so there ``F >= e + 20`` and the neuron is listed too: a leak may
    then floor a remainder after step ``20 / k``.
    """

    theta: np.ndarray = field(default_factory=lambda: np.ones(1, dtype=np.int64))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    polarity: np.ndarray = field(default_factory=lambda: np.ones(1, dtype=np.int64))
    frac_bits: int = 0
    leak_shift: int = 1
    decay_input: bool = True
    reset: str = "hard"
    levels: int = 1
    mem_bits: int = 0

    op: ClassVar[str] = "IntLIF"

    def check(self) -> None:
        c = self.theta.shape
        _need(self.theta.ndim == 1 and self.bias.shape == c and self.polarity.shape == c,
              f"IntLIF {self.name!r}: theta/bias/polarity must be per-channel vectors of one length")
        _need(_is_int(self.theta) and _is_int(self.bias) and _is_int(self.polarity),
              f"IntLIF {self.name!r}: theta, bias and polarity must be integers")
        _need(bool(np.all(self.theta > 0)), f"IntLIF {self.name!r}: thresholds must be positive integers, "
              f"got min {int(self.theta.min())}")
        _need(bool(np.all(np.abs(self.polarity) == 1)), f"IntLIF {self.name!r}: polarity must be +-1")
        _need(0 <= self.frac_bits <= 48 and self.leak_shift >= 1,
              f"IntLIF {self.name!r}: frac_bits must be in 0..48 and leak_shift >= 1, "
              f"got {self.frac_bits}, {self.leak_shift}")
        _need(self.reset in ("hard", "soft") and self.levels >= 1, f"IntLIF {self.name!r}: bad reset/levels")
        _need(self.levels == 1 or self.reset == "soft", f"IntLIF {self.name!r}: I-LIF must reset softly")

    def infer(self, ins, stage):
        (x,) = ins
        _need(x.kind in ("int", "spike"), f"IntLIF {self.name!r}: input must be integer, got {x.kind}")
        _need(x.shape[0] == self.theta.shape[0], f"IntLIF {self.name!r}: {x.shape[0]} channels vs {self.theta.shape[0]}")
        return TensorType(x.shape, "spike", levels=self.levels, scale=(1.0,) * x.shape[0])


@dataclass(frozen=True, eq=False)
class Add(Node):
    """Residual add ``y = a + b``. Integer graphs: both operands carry the same per-channel
    scale (the stream's), so this is a plain integer add."""

    acc_bits: int = 0

    op: ClassVar[str] = "Add"
    arity: ClassVar[int] = 2

    def infer(self, ins, stage):
        a, b = ins
        _need(a.shape == b.shape, f"Add {self.name!r}: shapes {a.shape} and {b.shape} differ")
        if stage == "float":
            return TensorType(a.shape, "float")
        _need(a.kind == "int" and b.kind == "int", f"Add {self.name!r}: operands must be int tensors")
        _need(a.scale is not None and b.scale is not None
              and np.allclose(a.scale, b.scale, rtol=1e-12, atol=0),
              f"Add {self.name!r}: operands have different scales; the residual-scale pass must run first")
        return TensorType(a.shape, "int", scale=a.scale)


@dataclass(frozen=True, eq=False)
class Requant(Node):
    """Rounding right shift per channel: ``y[c] = (x[c] + (2**s[c] >> 1)) >> s[c]``.

    ``s = shift[c] >= 0``; ``s = 0`` passes ``x`` through, ``s > 0`` rounds half up (the
    one rounding rule the reference and the hardware share). The output scale is
    ``in_scale * 2**shift``. Used where a writer of a residual stream computes at a finer
    scale than the stream's (the analog first layer): its weights keep ``weight_bits``
    resolution and the shift lands the result on the stream's scale with one rounding.
    Integer stages only; no multiplier (a shift and an increment). ``acc_bits`` covers
    the input, the intermediate ``x + 2**(s-1)`` (largest ``s``) and the output.
    """

    shift: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    acc_bits: int = 0

    op: ClassVar[str] = "Requant"

    def check(self) -> None:
        _need(self.shift.ndim == 1 and _is_int(self.shift) and bool(np.all(self.shift >= 0))
              and bool(np.all(self.shift <= 30)),
              f"Requant {self.name!r}: shift must be a per-channel vector of ints in 0..30")

    def infer(self, ins, stage):
        (x,) = ins
        _need(x.kind == "int" and x.scale is not None, f"Requant {self.name!r}: input must be an int tensor")
        _need(x.shape[0] == self.shift.shape[0], f"Requant {self.name!r}: {x.shape[0]} channels vs {self.shift.shape[0]}")
        return TensorType(x.shape, "int", scale=tuple(float(s) * 2.0 ** int(k)
                                                     for s, k in zip(x.scale, self.shift)))


@dataclass(frozen=True, eq=False)
class Attention(Node):
    """Spike-driven attention on binary ``Q, K, V`` of shape ``(C, H, W)`` (tokens = H*W).

    Heads split the channels into ``heads`` groups of ``d = C / heads``. Tokens:
    ``joint`` = all ``T*H*W`` tokens of the clip (needs the whole clip first),
    ``spatial`` = the ``H*W`` tokens of each step, ``temporal`` = the ``T`` steps of each
    location (hierarchical / factorized SDHA; needs the whole clip). Per head, with
    integer results:

    * ``kind="sdha"``: ``y = (2Q - 1) ((2K - 1)^T V)``
    * ``kind="sdsa"``: ``y = Q (K^T V)``

    Spikes are binary in the backbone; the segmentation memory read feeds I-LIF counts
    ``0..D`` (the same formula, as the torch model computes it). ``Q`` may cover fewer
    steps than ``K``/``V`` (a cross-attention after ``TimeSlice``): with ``joint`` tokens
    every step of ``Q`` attends to all ``T_kv * H * W`` tokens of ``K``/``V``.

    ``factor`` is the real value of one unit of ``y`` (``1/(2C)`` for SDHA, 0.125 for
    SDSA); integer graphs carry it as the output scale, to be absorbed downstream.
    """

    kind: str = "sdha"
    heads: int = 1
    tokens: str = "joint"
    factor: float = 1.0
    acc_bits: int = 0

    op: ClassVar[str] = "Attention"
    arity: ClassVar[int] = 3

    def check(self) -> None:
        _need(self.kind in ("sdha", "sdsa"), f"Attention {self.name!r}: kind {self.kind!r} not sdha/sdsa")
        _need(self.tokens in ("joint", "spatial", "temporal"),
              f"Attention {self.name!r}: tokens {self.tokens!r} not joint/spatial/temporal")
        _need(self.heads >= 1 and self.factor > 0, f"Attention {self.name!r}: bad heads/factor")

    def infer(self, ins, stage):
        q, k, v = ins
        _need(q.shape == k.shape == v.shape and len(q.shape) == 3,
              f"Attention {self.name!r}: Q, K, V must share one (C, H, W) shape")
        _need(q.shape[0] % self.heads == 0, f"Attention {self.name!r}: {q.shape[0]} channels / {self.heads} heads")
        for t in ins:
            _need(t.kind == "spike", f"Attention {self.name!r}: inputs must be spikes")
        if stage == "float":
            return TensorType(q.shape, "float")
        return TensorType(q.shape, "int", scale=(float(self.factor),) * q.shape[0])


@dataclass(frozen=True, eq=False)
class SSSA(Node):
    """Saccadic attention core (SNN-ViT), output ``S * V`` (binary), per head ``h``:

    * counts ``Qc[t, h, n] = sum_{c in h} Q``, ``alpha[t, h] = sum_{n, c in h} K``
    * salience ``sal = Qc * alpha`` (integer)
    * gated salience ``g[t] * sal`` drives the saccade neuron (fields ``sal_*``), whose
      binary output ``S[t, h, n]`` masks ``V``.

    Float graphs: ``gain[t]`` real (= learnable gain / (d*d*N)) and a float LIF given by
    ``sal_tau``, ``sal_threshold``, ``sal_reset``. Integer graphs: ``gain`` is an integer
    per-step multiplier (a constant shift-add) and ``sal_theta`` / ``sal_frac_bits`` follow
    :class:`IntLIF`'s semantics (decay_input form, polarity +1, bias 0).
    """

    heads: int = 1
    gain: np.ndarray = field(default_factory=lambda: np.ones(1))
    sal_tau: float = 2.0
    sal_decay_input: bool = True
    sal_threshold: float = 1.0
    sal_reset: str = "hard"
    sal_theta: int = 0
    sal_frac_bits: int = 0
    mem_bits: int = 0

    op: ClassVar[str] = "SSSA"
    arity: ClassVar[int] = 3

    def check(self) -> None:
        _need(self.heads >= 1 and self.gain.ndim == 1, f"SSSA {self.name!r}: bad heads/gain")
        _need(self.sal_reset in ("hard", "soft"), f"SSSA {self.name!r}: bad reset")

    def infer(self, ins, stage):
        q, k, v = ins
        _need(q.shape == k.shape == v.shape and len(q.shape) == 3, f"SSSA {self.name!r}: Q, K, V shapes differ")
        if stage == "integer":
            _need(_is_int(self.gain) and self.sal_theta > 0, f"SSSA {self.name!r}: not quantised")
        return TensorType(q.shape, "spike", levels=1, scale=(1.0,) * q.shape[0])


@dataclass(frozen=True, eq=False)
class Slice(Node):
    """Channels ``start:stop`` of a ``(C, H, W)`` tensor, any kind (scale and levels kept).
    No arithmetic: a wiring choice (factorized SDHA's channel halves)."""

    start: int = 0
    stop: int = 1

    op: ClassVar[str] = "Slice"

    def check(self) -> None:
        _need(0 <= self.start < self.stop, f"Slice {self.name!r}: need 0 <= start < stop, got "
              f"{self.start}:{self.stop}")

    def infer(self, ins, stage):
        (x,) = ins
        _need(self.stop <= x.shape[0], f"Slice {self.name!r}: {self.start}:{self.stop} exceeds "
              f"{x.shape[0]} channels")
        scale = None if x.scale is None else x.scale[self.start:self.stop]
        return TensorType((self.stop - self.start,) + x.shape[1:], x.kind, x.levels, scale)


@dataclass(frozen=True, eq=False)
class Concat(Node):
    """Channel concatenation ``[a; b]`` of two tensors of one kind and spatial shape; the
    per-channel scales concatenate too. No arithmetic."""

    op: ClassVar[str] = "Concat"
    arity: ClassVar[int] = 2

    def infer(self, ins, stage):
        a, b = ins
        _same_spatial(a, b, f"Concat {self.name!r}")
        _need(a.kind == b.kind and a.levels == b.levels,
              f"Concat {self.name!r}: operands are {a.kind}/{a.levels} and {b.kind}/{b.levels}")
        scale = None if a.scale is None or b.scale is None else a.scale + b.scale
        return TensorType((a.shape[0] + b.shape[0],) + a.shape[1:], a.kind, a.levels, scale)


@dataclass(frozen=True, eq=False)
class TimeSlice(Node):
    """Steps ``start:stop`` of the clip (Python slice semantics, negative indices count
    from the end, ``stop=None`` = to the end), any kind: the segmentation head's "last
    step" (``-1:``) and "memory" (``:-1``). Downstream nodes run on fewer steps; bounds
    that grow with the clip (joint attention, TimeMean) count the steps they see."""

    start: int = -1
    stop: int | None = None

    op: ClassVar[str] = "TimeSlice"

    def steps(self, t: int) -> int:
        """Number of steps out of a ``t``-step input."""
        return len(range(t)[self.start:self.stop])

    def infer(self, ins, stage):
        (x,) = ins
        return x


@dataclass(frozen=True, eq=False)
class Upsample(Node):
    """Nearest-neighbour upsampling by an integer ``factor``: ``y[c, i, j] = x[c, i // f,
    j // f]`` (``F.interpolate(mode="nearest")`` to an exact multiple). No arithmetic."""

    factor: int = 2

    op: ClassVar[str] = "Upsample"

    def check(self) -> None:
        _need(isinstance(self.factor, int) and self.factor >= 1,
              f"Upsample {self.name!r}: factor must be an int >= 1, got {self.factor!r}")

    def infer(self, ins, stage):
        (x,) = ins
        _need(len(x.shape) == 3, f"Upsample {self.name!r}: input must be (C, H, W)")
        return TensorType((x.shape[0], x.shape[1] * self.factor, x.shape[2] * self.factor),
                          x.kind, x.levels, x.scale)


@dataclass(frozen=True, eq=False)
class GlobalPool(Node):
    """Spatial pooling ``(C, H, W) -> (C,)``. Float: mean. Integer: sum, with the output
    scale ``in_scale / (H*W)``, so the real value is still the mean."""

    acc_bits: int = 0

    op: ClassVar[str] = "GlobalPool"

    def infer(self, ins, stage):
        (x,) = ins
        _need(len(x.shape) == 3, f"GlobalPool {self.name!r}: input must be (C, H, W)")
        if stage == "float":
            return TensorType((x.shape[0],), "float")
        _need(x.kind == "int", f"GlobalPool {self.name!r}: input must be int")
        n = x.shape[1] * x.shape[2]
        return TensorType((x.shape[0],), "int", scale=tuple(s / n for s in x.scale))


@dataclass(frozen=True, eq=False)
class TimeMean(Node):
    """Readout over time ``(C,)``: float mean over ``T``; integer: sum over ``T`` (the
    executor reports the real value ``scale * sum / T``)."""

    acc_bits: int = 0

    op: ClassVar[str] = "TimeMean"

    def infer(self, ins, stage):
        (x,) = ins
        if stage == "float":
            return TensorType(x.shape, "float")
        _need(x.kind == "int", f"TimeMean {self.name!r}: input must be int")
        return TensorType(x.shape, "int", scale=x.scale)


NODE_TYPES: dict[str, type[Node]] = {c.op: c for c in (
    Input, Conv, Linear, BatchNorm, RepConv, LIF, IntLIF, Add, Requant, Attention, SSSA, GlobalPool,
    TimeMean, Slice, Concat, TimeSlice, Upsample)}
STAGES = ("float", "quantized", "integer")
#: ops that may not appear at a stage
FORBIDDEN = {"float": frozenset({"IntLIF", "Requant"}),
             "quantized": frozenset({"RepConv", "IntLIF"}),
             "integer": frozenset({"RepConv", "BatchNorm", "LIF"})}


# ----------------------------------------------------------------------------- graph


@dataclass(frozen=True, eq=False)
class Graph:
    """A validated, topologically ordered spike graph.

    Invariants (checked on construction): unique node names; every input names an
    earlier node; exactly one ``Input`` first; ``outputs`` name existing nodes; stage
    is one of :data:`STAGES` and holds no node :data:`FORBIDDEN` there; every node's
    :meth:`Node.infer` accepts its inputs. ``types`` maps node name -> TensorType.
    ``meta`` holds JSON-serialisable provenance (model config, options, ...).
    """

    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    stage: str = "float"
    meta: dict = field(default_factory=dict)
    types: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        _need(self.stage in STAGES, f"graph stage {self.stage!r} is not one of {STAGES}")
        _need(len(self.nodes) > 0 and isinstance(self.nodes[0], Input), "graph must start with one Input node")
        types: dict[str, TensorType] = {}
        for n in self.nodes:
            if not isinstance(n, Node):  # (no eager repr: a node's repr prints its weight arrays)
                raise GraphError(f"graph node of type {type(n).__name__} is not an IR node")
            _need(n.name not in types, f"duplicate node name {n.name!r}")
            _need(not (isinstance(n, Input) and types), f"Input {n.name!r} must be the first node")
            _need(n.op not in FORBIDDEN[self.stage],
                  f"{n.op} {n.name!r} cannot appear in a {self.stage} graph; run the earlier passes")
            for i in n.inputs:
                _need(i in types, f"{n.op} {n.name!r} reads {i!r}, which is not an earlier node")
            types[n.name] = n.infer([types[i] for i in n.inputs], self.stage)
        for o in self.outputs:
            _need(o in types, f"graph output {o!r} is not a node")
        _need(len(self.outputs) > 0, "graph has no outputs")
        object.__setattr__(self, "types", types)

    # --- queries
    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise GraphError(f"no node named {name!r}")

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    @property
    def input(self) -> Input:
        return self.nodes[0]  # type: ignore[return-value]

    def replace(self, nodes=None, outputs=None, stage=None, meta=None) -> "Graph":
        return Graph(tuple(self.nodes if nodes is None else nodes),
                     tuple(self.outputs if outputs is None else outputs),
                     self.stage if stage is None else stage,
                     dict(self.meta if meta is None else meta))

    def summary(self) -> str:
        lines = [f"Graph ({self.stage}, {len(self.nodes)} nodes)"]
        for n in self.nodes:
            t = self.types[n.name]
            lines.append(f"  {n.name:<40} {n.op:<11} {t.kind:<6} {t.shape}")
        return "\n".join(lines)

    # --- serialisation
    def to_files(self) -> tuple[str, dict[str, np.ndarray]]:
        """``(graph_json_text, arrays)``; arrays are keyed ``"<node>/<field>"``."""
        arrays: dict[str, np.ndarray] = {}
        nodes = []
        for n in self.nodes:
            refs = {}
            for k, a in n.arrays().items():
                key = f"{n.name}/{k}"
                arrays[key] = np.asarray(a)
                refs[k] = key
            nulls = [f.name for f in dataclasses.fields(n)
                     if getattr(n, f.name) is None]
            nodes.append({"op": n.op, "name": n.name, "inputs": list(n.inputs),
                          "attrs": {k: v for k, v in n.attrs().items() if v is not None},
                          "arrays": refs, "null": nulls})
        doc = {"schema": SCHEMA_VERSION, "format": "svf-deploy spike graph", "stage": self.stage,
               "outputs": list(self.outputs), "meta": self.meta, "nodes": nodes}
        return json.dumps(doc, indent=1, sort_keys=False, default=_json_default), arrays

    @classmethod
    def from_files(cls, text: str, arrays) -> "Graph":
        """Inverse of :meth:`to_files`; raises :class:`GraphError` on any inconsistency."""
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise GraphError(f"graph.json is not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(doc, dict) or doc.get("format") != "svf-deploy spike graph":
            raise GraphError("graph.json is not an svf-deploy spike graph")
        if doc.get("schema") != SCHEMA_VERSION:
            raise GraphError(f"graph.json has schema {doc.get('schema')!r}; this svf-deploy reads schema {SCHEMA_VERSION}")
        nodes = []
        try:
            for d in doc["nodes"]:
                cls_ = NODE_TYPES.get(d["op"])
                if cls_ is None:
                    raise GraphError(f"graph.json: unknown node op {d['op']!r}")
                kw: dict[str, Any] = {}
                flds = {f.name: f for f in dataclasses.fields(cls_)}
                for k, v in d["attrs"].items():
                    if k not in flds:
                        raise GraphError(f"graph.json: {d['op']} has no field {k!r}")
                    kw[k] = tuple(v) if isinstance(v, list) else v
                for k, key in d["arrays"].items():
                    if key not in arrays:
                        raise GraphError(f"weights.npz lacks array {key!r}")
                    kw[k] = np.array(arrays[key])
                for k in d.get("null", []):
                    kw[k] = None
                nodes.append(cls_(name=d["name"], inputs=tuple(d["inputs"]), **kw))
            return cls(tuple(nodes), tuple(doc["outputs"]), doc["stage"], doc.get("meta", {}))
        except GraphError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise GraphError(f"graph.json is malformed ({type(e).__name__}: {e})") from None

    def save(self, directory) -> None:
        """Write ``graph.json`` and ``weights.npz`` into an existing directory."""
        from pathlib import Path

        d = Path(directory)
        text, arrays = self.to_files()
        (d / "graph.json").write_text(text)
        np.savez_compressed(d / "weights.npz", **arrays)

    @classmethod
    def load(cls, directory) -> "Graph":
        from pathlib import Path
        import zipfile

        d = Path(directory)
        try:
            text = (d / "graph.json").read_text()
        except OSError as e:
            raise GraphError(f"cannot read {d / 'graph.json'}: {e.strerror}") from None
        try:
            with np.load(d / "weights.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise GraphError(f"cannot read {d / 'weights.npz'}: {e}") from None
        return cls.from_files(text, arrays)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
