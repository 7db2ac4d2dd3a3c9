"""Deployment targets of ``svf-compile``.

Every target first gets what the ``reference`` target writes (the integer graph,
``golden.npz``, report, manifest); its own :func:`build` then adds files to the same
temporary output directory and returns the entries it contributes to ``manifest.json``.
The directory is renamed into place only when every step succeeded, so a failing target
leaves nothing behind.

A target module ``svf_deploy.targets.<name>`` defines::

    def build(ctx: TargetContext) -> dict:   # manifest entries, e.g. {"nir": {...}}

Targets whose module is missing are not offered on the command line.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["KNOWN_TARGETS", "TargetContext", "available", "build"]

#: every target name, in the order ``--help`` lists them
KNOWN_TARGETS = ("reference", "zcu104", "nir", "onnx")


@dataclass
class TargetContext:
    """What a target's :func:`build` may read (never mutate the graph or model).

    Members
    -------
    tmpdir : Path
        The temporary output directory (renamed to the user's OUTDIR on success).
    graph : compiler.ir.Graph
        The compiled integer graph (already saved as ``graph.json`` + ``weights.npz``).
    model : torch.nn.Module | None
        The float torch model (eval mode), or ``None`` when MODEL was not a checkpoint.
    golden_frames : torch.Tensor
        The clip ``golden.npz`` stores, ``[T, 1, C, H, W]`` real-valued frames.
    golden : compiler.reference.Result
        ``reference.run(graph, golden_frames)`` with ``values`` holding every *spike* node's
        output only (``[T, 1, *shape]``, narrowed to uint8/uint16 as in ``golden.npz``; no
        integer accumulators or membranes, so real-size models stay in bounded memory).
    options : dict
        Target options from the command line (``verify``, ``strict``, ...).
    progress, log
        Progress callback ``(step, done, total)`` and a one-line logger (stderr).
    """

    tmpdir: Path
    graph: Any
    model: Any
    golden_frames: Any
    golden: Any
    options: dict = field(default_factory=dict)
    progress: Callable[[str, int, int], None] | None = None
    log: Callable[[str], None] = lambda s: None


def _module_name(name: str) -> str:
    return f"{__name__}.{name}"


def available() -> tuple[str, ...]:
    """Targets whose implementation is installed."""
    return tuple(t for t in KNOWN_TARGETS
                 if t == "reference" or importlib.util.find_spec(_module_name(t)) is not None)


def build(name: str, ctx: TargetContext) -> dict:
    """Run target ``name`` on ``ctx``; returns its manifest entries."""
    if name == "reference":
        return {}
    mod = importlib.import_module(_module_name(name))
    return mod.build(ctx)
