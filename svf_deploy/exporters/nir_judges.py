"""Third-party NIR simulators as judges of the NIR export.

The exported graph is imported by SpikingJelly 2.0, snnTorch 1.0 and Norse 1.1 (each with
its own NIR importer, none written here) and run on the parts they can run: *segments*
that start at a recorded spike tensor and contain only convolutions, linears, residual
adds (summed NIR edges) and exactly exportable neurons (hard reset, tau 2, decay_input,
binary). Each segment is fed the golden reference's spikes and its output neuron's
spikes are compared with the golden ones, step for step; every runnable neuron is the
output of one segment.

Importer conventions (see the report for what each one printed):

* SpikingJelly: ``tau_sj = tau / dt = 2``, ``r = 1`` means decay_input, fires on ``>=``;
  run with ``dtype=float64`` (its documented option).
* snnTorch: fixed ``dt = 1e-4``; ``w_scale = r dt / tau = 1/2`` is moved into the threshold
  (``U = U/2 + I`` stores ``2H``, threshold ``2 v_th``, an exact power-of-two rescale); its
  spikes are always ``float32``, so it runs in float32.
* snnTorch's float32 leaves a smaller margin than the exactness argument assumes
  (``2**-(T+1) / max(theta)`` against float32 rounding of the normalised membrane); its
  rows report what it computed.
* Norse: ``v += dt/tau (v_leak - v + I)`` (our operation order), fires on ``>``; run in
  float64. Its importer runs nirtorch's legacy GraphExecutor, which returns the last node
  of its execution order instead of the graph's ``Output``: on a segment with a fan-in
  (a residual add) that is another tensor, and the row says so (wrong shape / differs).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np

from ..compiler import ir
from .nir_export import DT, _inexact_reason, export_nir

__all__ = ["IMPORTERS", "Segment", "segments", "run_importer", "judge"]

IMPORTERS = ("spikingjelly", "snntorch", "norse")


@dataclass(frozen=True)
class Segment:
    """A runnable part: the spike tensor fed in, the nodes, and the neuron compared."""

    start: str
    nodes: tuple
    output: str


def _runnable(n: ir.Node) -> bool:
    if isinstance(n, ir.IntLIF):
        return n.levels == 1 and _inexact_reason(n) is None
    return isinstance(n, (ir.Conv, ir.Linear, ir.Add))


def segments(graph: ir.Graph) -> list[Segment]:
    """Runnable segments of ``graph``: from each recorded spike tensor, the largest part
    the simulators can run; one segment per neuron in it (that neuron and its ancestors),
    so every runnable neuron's spikes are compared."""
    lifs = [n for n in graph.nodes if isinstance(n, ir.IntLIF) and n.levels == 1]
    covered: set[str] = set()
    out: list[Segment] = []
    for start in lifs:
        if start.name in covered:
            continue
        inside: set[str] = set()
        for n in graph.nodes:
            if n.inputs and _runnable(n) and all(i in inside or i == start.name for i in n.inputs):
                inside.add(n.name)
        seg_lifs = [n.name for n in graph.nodes if n.name in inside and isinstance(n, ir.IntLIF)]
        covered.update(seg_lifs)
        if not seg_lifs:
            continue

        def ancestors(name: str) -> set[str]:
            acc, todo = set(), [name]
            while todo:
                x = todo.pop()
                if x in inside and x not in acc:
                    acc.add(x)
                    todo.extend(graph.node(x).inputs)
            return acc

        for l in seg_lifs:  # every neuron is the output of its own segment: all compared
            anc = ancestors(l)
            out.append(Segment(start.name, tuple(n.name for n in graph.nodes if n.name in anc), l))
    return out


@contextlib.contextmanager
def _quiet():
    """Importers print banners and warnings; torch logs that Triton is absent (CPU-only)."""
    lg = logging.getLogger("torch._library.triton")
    level = lg.level
    lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        lg.setLevel(level)


def run_importer(name: str, nir_graph, x):
    """Import ``nir_graph`` with simulator ``name`` and run it on ``x`` ``[T, B, ...]``
    (a float torch tensor), step by step from rest; returns the output ``[T, B, ...]``."""
    import torch

    outs = []
    with _quiet(), torch.no_grad():
        if name == "spikingjelly":
            from spikingjelly.activation_based.nir_exchange import import_from_nir

            m = import_from_nir(nir_graph, dt=DT, dtype=torch.float64)
            st = None
            for t in range(x.shape[0]):
                y, st = m(x[t].double(), st)
                outs.append(y)
        elif name == "snntorch":
            from snntorch.import_nir import import_from_nir

            m = import_from_nir(nir_graph)
            st = None
            for t in range(x.shape[0]):
                y, st = m(x[t].float()) if st is None else m(x[t].float(), st)
                outs.append(y)
        elif name == "norse":
            import norse.torch as nt

            m = nt.from_nir(nir_graph, dt=DT).double()
            st = None
            for t in range(x.shape[0]):
                y, st = m(x[t].double(), st)
                outs.append(y)
        else:
            raise ValueError(f"unknown NIR importer {name!r}; known: {IMPORTERS}")
    return torch.stack([o.detach().to(torch.float64) for o in outs])


def judge(graph: ir.Graph, spikes: dict, T: int, importers=IMPORTERS) -> list[dict]:
    """Run every segment in every installed importer against the golden ``spikes``
    (``{node: array [T, B, ...]}``); one row per (segment, importer)."""
    import importlib.util

    import torch

    rows = []
    mods = {"spikingjelly": "spikingjelly", "snntorch": "snntorch", "norse": "norse"}
    for seg in segments(graph):
        if seg.start not in spikes or seg.output not in spikes:
            continue
        g = export_nir(graph, T, only=set(seg.nodes), outputs=[seg.output]).graph
        x = torch.from_numpy(np.asarray(spikes[seg.start], np.float64))
        want = np.asarray(spikes[seg.output])
        n_lif = sum(isinstance(graph.node(k), ir.IntLIF) for k in seg.nodes)
        for imp in importers:
            row = {"importer": imp, "start": seg.start, "output": seg.output, "neurons": n_lif,
                   "values": int(want.size), "golden_spikes": int(want.sum())}
            if importlib.util.find_spec(mods[imp]) is None:
                row.update(status="not installed")
            else:
                try:
                    y = run_importer(imp, g, x).numpy()
                except Exception as e:  # noqa: BLE001 - a third-party importer's failure is a finding
                    row.update(status=f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
                else:
                    if y.shape != want.shape:
                        row.update(status=f"wrong output shape {tuple(y.shape)} (expected {tuple(want.shape)})")
                    else:
                        bad = int((y != want).sum())
                        row.update(status="equal" if bad == 0 else "differs", mismatches=bad)
            rows.append(row)
    return rows
