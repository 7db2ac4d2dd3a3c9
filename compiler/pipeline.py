"""The compile pipeline: float graph -> integer graph through the ordered passes.

=====================  =====================  ==============================================
pass                   stage                  establishes
=====================  =====================  ==============================================
``fold_repconv``       float -> float         no RepConv (one 3x3 conv each)
``fuse_depthwise``     float -> float         no depthwise conv feeding a pointwise conv
``fold_bn``            float -> float         no BatchNorm directly after its only layer
``residual_scales``    float -> float         one shared ``out_scale`` per residual stream
``quantize``           float -> quantized     integer weights, per-channel scales
``absorb_thresholds``  quantized -> integer   IntLIF neurons with integer thresholds
``bitwidths``          integer -> integer     ``acc_bits`` / ``mem_bits`` from proved bounds
=====================  =====================  ==============================================

Each pass is a pure function ``run(graph, **options) -> graph``; :func:`compile_graph`
hands each one the options its signature names, times it and records node counts.
"""

from __future__ import annotations

import inspect
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

__all__ = ["CompileOptions", "PassRecord", "PASSES", "compile_graph", "compile_model",
           "effective_input_scale"]

#: the passes in order, as ``(name, module)``; each module has ``run(graph, **options)``
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
    weight_bits : signed width of quantised weights (and of the SSSA gain), 2..32.
    input_scale : real value of one input code; frames in ``[0, 1]`` as 8-bit codes
        give ``1/255``. Overridden by ``calibration``.
    min_theta_bits : threshold resolution: each neuron's fraction bits ``F`` are chosen so
        that its smallest threshold is at least ``2**min_theta_bits``.
    calibration : optional float tensor of a few clips ``[T, B, C, H, W]``; when given,
        ``input_scale = max(calibration) / 255``.
    T : clip length the bit widths are proved for; default the model's ``T``.
    stream_slack_bits : ``None`` (default): every weight fits ``weight_bits``, residual
        streams take the largest writer scale. An int ``k``: no residual-stream writer
        loses more than ``k`` bits of resolution to its stream's shared scale, at the
        cost of wider weights for others (see :mod:`passes.residual_scales`, which
        measures why this matters for the analog first layer).
    requant_min_shift : stream writers at least ``2**k`` times finer than their stream
        get a rounding-shift ``Requant`` instead of losing weight resolution (0 = off).
    """

    weight_bits: int = 8
    input_scale: float = 1 / 255
    min_theta_bits: int = 10
    calibration: torch.Tensor | None = field(default=None, compare=False)
    T: int | None = None
    stream_slack_bits: int | None = None
    requant_min_shift: int = 2

    def __post_init__(self) -> None:
        if not (isinstance(self.weight_bits, int) and 2 <= self.weight_bits <= 32):
            raise ConfigError(f"weight_bits must be an int in 2..32, got {self.weight_bits!r}")
        if not (isinstance(self.input_scale, (int, float)) and self.input_scale > 0):
            raise ConfigError(f"input_scale must be a positive number, got {self.input_scale!r}")
        if not (isinstance(self.min_theta_bits, int) and 1 <= self.min_theta_bits <= 24):
            raise ConfigError(f"min_theta_bits must be an int in 1..24, got {self.min_theta_bits!r}")
        if self.calibration is not None and not (
                isinstance(self.calibration, torch.Tensor) and self.calibration.dim() == 5
                and self.calibration.is_floating_point()):
            raise ConfigError("calibration must be a float tensor of clips [T, B, C, H, W]")
        if self.T is not None and not (isinstance(self.T, int) and self.T >= 1):
            raise ConfigError(f"T must be a positive int, got {self.T!r}")
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
    """Smallest ``q <= limit`` with every value of ``x`` an integer multiple of ``1/q``."""
    v = x.detach().double().flatten().unique()
    for q in range(1, limit + 1):
        if torch.all(torch.abs(v * q - torch.round(v * q)) <= 1e-6):
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
        m = int(255 // (q * peak + 1e-9))
        if m >= 1:
            return 1.0 / (q * m)
    return peak / 255.0


def _kwargs(module: ModuleType, available: dict) -> dict:
    params = inspect.signature(module.run).parameters
    return {k: v for k, v in available.items() if k in params}


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
    available = {"weight_bits": options.weight_bits, "input_scale": effective_input_scale(options),
                 "min_theta_bits": options.min_theta_bits,
                 "requant_min_shift": options.requant_min_shift}
    if options.T is not None:
        available["T"] = options.T
    if options.stream_slack_bits is not None:
        available["stream_slack_bits"] = options.stream_slack_bits
    records: list[PassRecord] = []
    g = graph
    for name, module in PASSES:
        before = Counter(n.op for n in g.nodes)
        t0 = time.perf_counter()
        g = module.run(g, **_kwargs(module, available))
        rec = PassRecord(name, sum(before.values()), len(g.nodes), dict(before),
                         dict(Counter(n.op for n in g.nodes)), g.stage, time.perf_counter() - t0)
        records.append(rec)
        if progress is not None:
            progress(rec)
    meta = {**g.meta, "compile_options": {**options.describe(),
                                          "input_scale": available["input_scale"],
                                          "T": g.meta.get("bitwidths_T")}}
    return g.replace(meta=meta), records


def compile_model(model: torch.nn.Module, options: CompileOptions | None = None,
                  frame_shape: tuple[int, int, int] | None = None,
                  progress: Callable[[PassRecord], None] | None = None
                  ) -> tuple[ir.Graph, list[PassRecord]]:
    """:func:`frontend.from_torch` then :func:`compile_graph`; returns ``(graph, records)``."""
    return compile_graph(frontend.from_torch(model, frame_shape), options, progress)
