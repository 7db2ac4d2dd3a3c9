"""The compile pipeline: float graph -> integer graph through the ordered passes.

=====================  =====================  ==============================================
pass                   stage                  establishes
=====================  =====================  ==============================================
``fold_repconv``       float -> float         no RepConv (one 3x3 conv each)
``fuse_depthwise``     float -> float         no depthwise conv feeding a pointwise conv,
                                              unless kept factored (``factor_depthwise``)
``fold_bn``            float -> float         no BatchNorm directly after its only layer
``residual_scales``    float -> float         one shared ``out_scale`` per residual stream
``quantize``           float -> quantized     integer weights, per-channel scales
``absorb_thresholds``  quantized -> integer   IntLIF neurons with integer thresholds
``bitwidths``          integer -> integer     ``acc_bits`` / ``mem_bits`` from proved bounds
=====================  =====================  ==============================================

Each pass is a pure function ``run(graph, **options) -> graph`` whose module declares
its contract, ``CONTRACT`` (:class:`passes.Contract`: input stage, output stage, option
names). :func:`compile_graph` validates the options once (:class:`CompileOptions`),
checks each pass's stages, hands it exactly its declared options, times it and records
node counts. ``T`` is one of those options: ``absorb_thresholds`` chooses the neurons'
fraction bits for it and ``bitwidths`` proves the widths for it; the integer graph
records it as ``meta["T"]`` and runs only on clips of that length.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

import torch

from ..models.errors import ConfigError, GraphError
from . import frontend, ir
from .passes import (absorb_thresholds, bitwidths, fold_bn, fold_repconv, fuse_depthwise, quantize,
                     residual_scales)
from .passes.fuse_depthwise import FACTOR_MODES, check_factor_mode
from .passes.quantize import WEIGHT_BITS, check_weight_bits

__all__ = ["CompileOptions", "FACTOR_MODES", "PassRecord", "PASSES", "WEIGHT_BITS", "check_weight_bits",
           "compile_graph", "compile_model", "effective_input_scale"]

#: the passes in order, as ``(name, module)``; each module has ``run(graph, **options)``
#: and ``CONTRACT``
PASSES: tuple[tuple[str, ModuleType], ...] = (
    ("fold_repconv", fold_repconv),
    ("fuse_depthwise", fuse_depthwise),
    ("fold_bn", fold_bn),
    ("residual_scales", residual_scales),
    ("quantize", quantize),
    ("absorb_thresholds", absorb_thresholds),
    ("bitwidths", bitwidths),
)


@dataclass(frozen=True)
class CompileOptions:
    """Options of :func:`compile_graph`.

    Parameters
    ----------
    weight_bits : signed width of quantised weights (and of the SSSA gain), in
        :data:`WEIGHT_BITS` (2..24; the one place this range is checked).
    input_scale : real value of one input code; frames in ``[0, 1]`` as 8-bit codes
        give ``1/255``. Overridden by ``calibration``.
    min_theta_bits : threshold resolution: each neuron's fraction bits ``F`` are chosen so
        that its smallest threshold is at least ``2**min_theta_bits``.
    calibration : optional float tensor of a few clips ``[T, B, C, H, W]``; when given,
        ``input_scale = max(calibration) / 255``.
    T : clip length the neurons' fraction bits and the bit widths are proved for
        (the integer graph runs on clips of exactly this length); default the model's ``T``.
    stream_slack_bits : ``None`` (default): every weight fits ``weight_bits``, residual
        streams take the largest writer scale. An int ``k``: no residual-stream writer
        loses more than ``k`` bits of resolution to its stream's shared scale, at the
        cost of wider weights for others (see :mod:`passes.residual_scales`, which
        measures why this matters for the analog first layer).
    requant_min_shift : stream writers at least ``2**k`` times finer than their stream
        get a rounding-shift ``Requant`` instead of losing weight resolution (0 = off).
    threshold_grid : scales of layers read by neurons are powers of two times the
        neurons' threshold (exact thresholds; at most one bit of weight resolution).
    factor_depthwise : one of :data:`FACTOR_MODES`. ``"never"`` (default): every
        depthwise conv is fused into the pointwise conv that reads it (one dense conv on
        spikes; the form the ZCU104 engine v1 and the other targets were validated on).
        ``"auto"`` (opt-in): keep the pair where the cost model of
        :mod:`passes.fuse_depthwise` counts fewer additions per time step (depthwise on
        spikes, then a pointwise conv on its integer output, bit-serial in hardware);
        the choice per SepConv is recorded in ``meta["sepconv_forms"]``.
    """

    weight_bits: int = 8
    input_scale: float = 1 / 255
    min_theta_bits: int = 10
    calibration: torch.Tensor | None = field(default=None, compare=False)
    T: int | None = None
    stream_slack_bits: int | None = None
    requant_min_shift: int = 2
    threshold_grid: bool = True
    factor_depthwise: str = "never"

    def __post_init__(self) -> None:
        check_weight_bits(self.weight_bits)
        check_factor_mode(self.factor_depthwise)
        if not (isinstance(self.input_scale, (int, float)) and self.input_scale > 0):
            raise ConfigError(f"input_scale must be a positive number, got {self.input_scale!r}")
        if not (isinstance(self.min_theta_bits, int) and 1 <= self.min_theta_bits <= 24):
            raise ConfigError(f"min_theta_bits must be an int in 1..24, got {self.min_theta_bits!r}")
        if self.calibration is not None and not (
                isinstance(self.calibration, torch.Tensor) and self.calibration.dim() == 5
                and self.calibration.is_floating_point()):
            raise ConfigError("calibration must be a float tensor of clips [T, B, C, H, W]")
        if self.T is not None and not (isinstance(self.T, int) and 1 <= self.T <= 1024):
            raise ConfigError(f"T must be an int in 1..1024, got {self.T!r}")
        if self.stream_slack_bits is not None and not (
                isinstance(self.stream_slack_bits, int) and 0 <= self.stream_slack_bits <= 24):
            raise ConfigError(f"stream_slack_bits must be None or an int in 0..24, "
                              f"got {self.stream_slack_bits!r}")
        if not (isinstance(self.requant_min_shift, int) and 0 <= self.requant_min_shift <= 30):
            raise ConfigError(f"requant_min_shift must be an int in 0..30, got {self.requant_min_shift!r}")


    def describe(self) -> dict:
        """JSON-ready summary (the calibration tensor as a flag)."""
        return {"weight_bits": self.weight_bits, "input_scale": float(self.input_scale),
                "min_theta_bits": self.min_theta_bits, "T": self.T,
                "stream_slack_bits": self.stream_slack_bits,
                "requant_min_shift": self.requant_min_shift,
                "threshold_grid": self.threshold_grid,
                "factor_depthwise": self.factor_depthwise,
                "calibrated": self.calibration is not None}


@dataclass(frozen=True)
class PassRecord:
    """What one pass did: node counts (total and per op) before/after, and its time."""

    name: str
    nodes_before: int
    nodes_after: int
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    stage: str
    seconds: float


def _grid_denominator(x: torch.Tensor, limit: int = 255) -> int | None:
    """Smallest ``q <= limit`` with every value of ``x`` an integer multiple of ``1/q``.

    ``x`` holds the values ``k/q`` rounded to its dtype, so ``x * q`` is within
    ``q * |x| * eps`` of the integer ``k`` (float32 frames of uint8 video: ``~1.5e-5`` at
    ``q = 255``); the tolerance is four times that, far below the ``1/limit`` that
    separates two grids.
    """
    eps = torch.finfo(x.dtype).eps if x.is_floating_point() else 0.0
    v = x.detach().double().flatten().unique()
    tol = 4 * eps * float(v.abs().max()) + 1e-12 if v.numel() else 1e-12
    for q in range(1, limit + 1):
        if torch.all(torch.abs(v * q - torch.round(v * q)) <= tol * q):
            return q
    return None


def effective_input_scale(options: CompileOptions) -> float:
    """The real value of one input code.

    Without calibration clips: ``input_scale``. With them: if every pixel value is a
    multiple of ``1/q`` (for the smallest such ``q <= 255``) the scale is
    ``1 / (q * m)`` with ``m = floor(255 / (q * max))``, so the frames are represented
    *exactly* by 8-bit codes (e.g. sixteenths -> 1/240); otherwise ``max / 255``.
    """
    if options.calibration is None:
        return float(options.input_scale)
    peak = float(options.calibration.detach().max())
    if not (peak > 0 and torch.isfinite(torch.tensor(peak))):
        raise ConfigError(f"calibration clips must have a positive finite maximum, got {peak!r}")
    q = _grid_denominator(options.calibration)
    if q is not None:
        m = 255 // int(round(q * peak))  # the peak's grid numerator, free of float error
        if m >= 1:
            return 1.0 / (q * m)
    return peak / 255.0


def compile_graph(graph: ir.Graph, options: CompileOptions | None = None,
                  progress: Callable[[PassRecord], None] | None = None
                  ) -> tuple[ir.Graph, list[PassRecord]]:
    """Run :data:`PASSES` on a ``float`` graph.

    Parameters
    ----------
    graph : stage ``float`` (from :func:`frontend.from_torch`).
    options : :class:`CompileOptions`; defaults if omitted.
    progress : called with each :class:`PassRecord` as its pass finishes.

    Returns
    -------
    (graph, records)
        The ``integer`` graph (``meta["compile_options"]`` records the options used)
        and one record per pass.
    """
    options = options or CompileOptions()
    if graph.stage != "float":
        raise GraphError(f"compile_graph starts from a float graph, got a {graph.stage} graph")
    T = options.T if options.T is not None else graph.meta.get("T")
    if T is None:
        raise ConfigError("the clip length T is unknown: pass CompileOptions(T=...) (--T)")
    available = {"weight_bits": options.weight_bits, "input_scale": effective_input_scale(options),
                 "min_theta_bits": options.min_theta_bits,
                 "requant_min_shift": options.requant_min_shift,
                 "stream_slack_bits": options.stream_slack_bits, "T": int(T),
                 "threshold_grid": bool(options.threshold_grid),
                 "factor_depthwise": options.factor_depthwise}
    records: list[PassRecord] = []
    g = graph
    for name, module in PASSES:
        c = module.CONTRACT
        if g.stage != c.input_stage:  # pragma: no cover - PASSES is ordered by contract
            raise GraphError(f"pass {name} reads {c.input_stage} graphs, got a {g.stage} graph")
        before = Counter(n.op for n in g.nodes)
        t0 = time.perf_counter()
        g = module.run(g, **{k: available[k] for k in c.options})
        if g.stage != c.output_stage:
            raise GraphError(f"pass {name} promised a {c.output_stage} graph, produced {g.stage}")
        rec = PassRecord(name, sum(before.values()), len(g.nodes), dict(before),
                         dict(Counter(n.op for n in g.nodes)), g.stage, time.perf_counter() - t0)
        records.append(rec)
        if progress is not None:
            progress(rec)
    meta = {**g.meta, "compile_options": {**options.describe(),
                                          "input_scale": available["input_scale"],
                                          "T": int(g.meta["T"])}}
    return g.replace(meta=meta), records


def compile_model(model: torch.nn.Module, options: CompileOptions | None = None,
                  frame_shape: tuple[int, int, int] | None = None,
                  progress: Callable[[PassRecord], None] | None = None
                  ) -> tuple[ir.Graph, list[PassRecord]]:
    """:func:`frontend.from_torch` then :func:`compile_graph`; returns ``(graph, records)``."""
    return compile_graph(frontend.from_torch(model, frame_shape), options, progress)
