"""The integer spike graph as a NIR 1.0 graph (``model.nir``), in float-threshold form.

NIR is continuous-time and real-valued; it has no integers, no rounding, no attention.
This module exports every node NIR can represent *exactly* and lists every other node,
with the reason, in :attr:`NIRExport.skipped`; their tensors cross the NIR graph's
boundary as extra ``Input`` (``in:<node>``) and ``Output`` (``out:<tensor>``) nodes, so
nothing is dropped silently.

Units
-----
Integer tensors (conv/linear accumulators, the residual stream) keep their integer units
(``real = scale[c] * value``): a ``Conv``'s NIR weights are its integer weights. Each
neuron's membrane is normalised by its threshold, ``u = H / theta_c`` (the "float-threshold
form", one uniform threshold per node, as SpikingJelly requires). The input gain
``g_c = polarity_c * 2**F / theta_c`` and the neuron bias ``bias_c / theta_c`` are folded
into a per-neuron copy ``<conv>@<lif>`` of each conv/linear that writes the neuron's input
(through residual ``Add`` nodes, whose operands become edges summed by NIR); other writers
(pools, boundary inputs) pass through a ``Scale`` node ``scale@<lif>``.

The tau-2 leak, exactly
-----------------------
NIR's LIF is ``tau dv/dt = (v_leak - v) + r I``. With forward Euler at step ``dt`` and
``tau = 2 dt``, ``r = 1``, ``v_leak = 0`` one step is ``v <- v + (I - v) / 2``, reset to
``v_reset = 0`` after a spike. Our integer neuron (decay_input, ``k = 1``) is
``H = V + floor((X - V) / 2) = floor((X + V) / 2)``. Lemma: with ``Vf`` the real-valued
Euler membrane and ``V = floor(Vf)`` (true at ``t = 0``, both 0),
``floor((X + floor(Vf)) / 2) = floor(floor(X + Vf) / 2) = floor((X + Vf) / 2) = floor(Hf)``
for integer ``X``, and ``floor(Hf) >= theta`` iff ``Hf >= theta`` for integer ``theta``;
so both fire at the same steps and reset to 0 together, and ``V = floor(Vf)`` again. The
real-valued dynamics therefore produce exactly our spikes. ``Hf`` is a dyadic rational with
at most ``t`` fraction bits at step ``t``, so a non-firing ``Hf`` is at most
``theta - 2**-T``: in normalised units every threshold strictly between
``1 - 2**-T / theta_max`` and 1 separates the cases; we export
``v_threshold = 1 - 2**-(T+1) / theta_max``, which works with both firing conventions
(NIR's ``v > thr``, SpikingJelly's ``>=``) for clips of up to ``T`` steps, given float
arithmetic fine enough to resolve ``2**-(T+1) / theta_max`` (float64 is; see the report).

Not exact, and therefore flagged (``metadata["exact"] = 0`` and in the report): a leak
``tau = 2**k`` with ``k > 1`` (the lemma needs ``k = 1``), ``decay_input=False``, and soft
reset (NIR neurons reset hard; ``metadata["reset"] = "soft"``). Multi-level I-LIF neurons,
``Requant`` (a rounding shift), ``Attention``/``SSSA``, ``TimeMean`` and the input
quantisation (rounding) are not exported.

Every exported node carries ``metadata`` (``svf_node``, ``svf_op`` and the integer fields)
and the graph carries the structure (``svf_graph``, JSON), from which
:mod:`.nir_import` rebuilds the integer graph and checks it against the NIR parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..compiler import ir
from ..models.errors import ExportError

__all__ = ["DT", "NIRExport", "Skipped", "export_nir", "threshold_for"]

#: the Euler step every LIF is exported with (snnTorch's fixed dt; SpikingJelly's default)
DT = 1e-4
#: ops exported to NIR nodes (Add becomes summed edges)
EXPORTED_OPS = ("Input", "Conv", "Linear", "IntLIF", "Add", "GlobalPool")


def _nir():
    try:
        import nir
    except ImportError:  # pragma: no cover - a declared dependency
        raise ExportError("the nir target needs the 'nir' package; run `make setup`") from None
    return nir


@dataclass(frozen=True)
class Skipped:
    """A node of the integer graph that is not in the NIR graph, and why."""

    name: str
    op: str
    reason: str


@dataclass
class NIRExport:
    """Result of :func:`export_nir`."""

    graph: object  # nir.NIRGraph
    T: int
    skipped: tuple = ()
    inexact: tuple = ()  # Skipped entries for exported but not bit-exact nodes
    exported: tuple = ()  # names of exported integer-graph nodes
    boundary_inputs: tuple = ()
    boundary_outputs: tuple = ()

    def info(self) -> dict:
        return {"dt": DT, "T": self.T, "nir_nodes": len(self.graph.nodes),
                "nir_edges": len(self.graph.edges), "exported": len(self.exported),
                "skipped": [s.__dict__ for s in self.skipped],
                "inexact": [s.__dict__ for s in self.inexact],
                "boundary_inputs": list(self.boundary_inputs),
                "boundary_outputs": list(self.boundary_outputs)}


def threshold_for(theta: np.ndarray, T: int) -> float:
    """The uniform normalised threshold ``1 - 2**-(T+1) / max(theta)`` (see module doc)."""
    return 1.0 - 2.0 ** -(T + 1) / float(np.max(theta))


def _skip_reason(n: ir.Node) -> str | None:
    if isinstance(n, ir.IntLIF) and n.levels > 1:
        return f"multi-level I-LIF (levels={n.levels}): NIR neurons emit binary spikes"
    if isinstance(n, ir.Requant):
        return "rounding right shift: NIR has no rounding (its real-valued Scale would drift from the integer)"
    if isinstance(n, (ir.Attention, ir.SSSA)):
        return "spike-driven attention: NIR has no attention (products of two spike tensors)"
    if isinstance(n, ir.TimeMean):
        return "readout mean over time: NIR graphs are per-step; the caller sums the head over T"
    if isinstance(n, ir.Conv) and n.bias is not None and np.asarray(n.bias).ndim > 1:
        return ("conv with a per-position bias map (input normalisation folded exactly at the "
                "zero-padded borders): NIR's Conv2d bias is per channel")
    if n.op not in EXPORTED_OPS:
        return f"{n.op} has no NIR primitive"
    return None


def _inexact_reason(n: ir.IntLIF) -> str | None:
    why = []
    if n.leak_shift != 1:
        why.append(f"tau=2**{n.leak_shift}: the integer floor of the leak is not a real-valued LIF")
    if not n.decay_input:
        why.append("decay_input=False: exported with r = tau/dt, the integer floor differs")
    if n.reset == "soft":
        why.append("soft reset: NIR neurons reset hard (flagged metadata reset='soft')")
    return "; ".join(why) or None


def export_nir(graph: ir.Graph, T: int, *, only: set | None = None,
               outputs: list | None = None) -> NIRExport:
    """Export ``graph`` (integer stage) to a :class:`nir.NIRGraph`.

    Parameters
    ----------
    T : clip length the thresholds are exact for (see the module doc).
    only : export only these nodes (a segment; everything else becomes boundary).
    outputs : the tensors to expose as ``Output`` nodes; default: every exported tensor
        read by a non-exported node, and the graph outputs.
    """
    nir = _nir()
    if graph.stage != "integer":
        raise ExportError(f"the NIR export needs an integer graph, got stage {graph.stage!r}")
    if not isinstance(T, int) or T < 1:
        raise ExportError(f"T must be a positive int, got {T!r}")
    skipped: list[Skipped] = []
    inexact: list[Skipped] = []
    exported: set[str] = set()
    for n in graph.nodes:
        r = _skip_reason(n)
        if r is None and only is not None and n.name not in only:
            continue
        if r is not None:
            skipped.append(Skipped(n.name, n.op, r))
        else:
            exported.add(n.name)
    nodes: dict = {}
    edges: list[tuple[str, str]] = []
    shape = {k: tuple(int(s) for s in t.shape) for k, t in graph.types.items()}
    b_in: list[str] = []
    b_out: list[str] = []

    def meta(n: ir.Node, **extra) -> dict:
        m = {"svf_node": n.name, "svf_op": n.op}
        m.update(extra)
        return m

    def terms(name: str) -> list[str]:
        """The tensors whose sum is ``name`` (through exported Adds)."""
        n = graph.node(name)
        if isinstance(n, ir.Add) and name in exported:
            return terms(n.inputs[0]) + terms(n.inputs[1])
        return [name]

    def raw(name: str) -> list[str]:
        """NIR node ids whose outputs sum to the unscaled tensor ``name``."""
        out = []
        for t in terms(name):
            out.append(_raw_one(t))
        return out

    def _raw_one(name: str) -> str:
        n = graph.node(name)
        if name not in exported:
            nid = f"in:{name}"
            if nid not in nodes:
                nodes[nid] = nir.Input(input_type={"input": np.array(shape[name])})
                b_in.append(nid)
            return nid
        if isinstance(n, ir.Input):
            if "input" not in nodes:
                nodes["input"] = nir.Input(input_type={"input": np.array(n.shape)}, metadata=meta(
                    n, scale=float(n.scale), bits=int(n.bits),
                    takes=f"integer codes clamp(round(x / scale), 0, 2**bits - 1) (quantisation not in NIR)"))
            return "input"
        if isinstance(n, ir.IntLIF):
            return lif_node(n)
        if isinstance(n, (ir.Conv, ir.Linear)):
            return affine_node(n, None)
        if isinstance(n, ir.GlobalPool):
            nid = n.name
            if nid not in nodes:
                c, h, w = shape[n.inputs[0]]
                nodes[nid + ".sum"] = nir.SumPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]),
                                                    padding=np.array([0, 0]), metadata=meta(n))
                nodes[nid] = nir.Flatten(input_type={"input": np.array([c, 1, 1])}, start_dim=0,
                                         end_dim=-1, metadata=meta(n, part="flatten"))
                for s in raw(n.inputs[0]):
                    edges.append((s, nid + ".sum"))
                edges.append((nid + ".sum", nid))
            return nid
        raise ExportError(f"{n.op} {name!r}: no NIR form")  # pragma: no cover - guarded by _skip_reason

    def affine_node(n, lif: ir.IntLIF | None, with_bias: bool = False) -> str:
        """``n`` (Conv/Linear), plain or with ``lif``'s gain folded in."""
        nid = n.name if lif is None else f"{n.name}@{lif.name}"
        if nid in nodes:
            return nid
        w = np.asarray(n.weight, np.float64)
        bias = np.zeros(w.shape[0]) if n.bias is None else np.asarray(n.bias, np.float64)
        extra = {"weight_scale": "1"}
        if lif is not None:
            g = np.asarray(lif.polarity, np.float64) * 2.0 ** lif.frac_bits / np.asarray(lif.theta, np.float64)
            w = w * g.reshape((-1,) + (1,) * (w.ndim - 1))
            bias = bias * g
            if with_bias:
                bias = bias + np.asarray(lif.bias, np.float64) / np.asarray(lif.theta, np.float64)
            extra = {"folded_into": lif.name, "folded_lif_bias": int(with_bias),
                     "weight_scale": "polarity * 2**frac_bits / theta of folded_into, per output channel"}
        m = meta(n, has_bias=int(n.bias is not None), acc_bits=int(n.acc_bits),
                 out_scale=np.asarray(n.out_scale, np.float64), **extra)
        if isinstance(n, ir.Conv):
            hw = shape[n.inputs[0]][1:]
            nodes[nid] = nir.Conv2d(input_shape=tuple(hw), weight=w, stride=n.stride, padding=n.padding,
                                    dilation=1, groups=n.groups, bias=bias, metadata=m)
        else:
            nodes[nid] = nir.Affine(weight=w, bias=bias, metadata=m)
        for s in raw(n.inputs[0]):
            edges.append((s, nid))
        return nid

    def lif_node(n: ir.IntLIF) -> str:
        nid = n.name
        if nid in nodes:
            return nid
        shp = shape[nid]
        ones = np.ones(shp)
        theta = np.asarray(n.theta, np.float64)
        bias_done = False
        srcs = []
        others = []
        for t in terms(n.inputs[0]):
            p = graph.node(t)
            if t in exported and isinstance(p, (ir.Conv, ir.Linear)):
                srcs.append(affine_node(p, n, with_bias=not bias_done))
                bias_done = True
            else:
                others.append(t)
        if others:
            g = np.asarray(n.polarity, np.float64) * 2.0 ** n.frac_bits / theta
            sid = f"scale@{n.name}"
            nodes[sid] = nir.Scale(scale=g.reshape((-1,) + (1,) * (len(shp) - 1)) * ones,
                                   metadata=meta(n, part="input gain polarity * 2**frac_bits / theta"))
            for t in others:
                edges.append((_raw_one(t), sid))
            srcs.append(sid)
        v_leak = np.zeros(shp)
        if not bias_done:
            v_leak = (np.asarray(n.bias, np.float64) / theta).reshape((-1,) + (1,) * (len(shp) - 1)) * ones
        k = n.leak_shift
        r = ones if n.decay_input else ones * 2.0 ** k
        reason = _inexact_reason(n)
        if reason:
            inexact.append(Skipped(n.name, n.op, reason))
        nodes[nid] = nir.LIF(
            tau=ones * (2.0 ** k) * DT, r=r, v_leak=v_leak,
            v_threshold=ones * threshold_for(theta, T), v_reset=np.zeros(shp),
            metadata=meta(n, dt=DT, euler="forward: v += dt/tau * (v_leak - v + r*I), then fire v > "
                          "v_threshold and reset to v_reset", reset=n.reset, exact=int(reason is None),
                          exact_for_T=T, theta=np.asarray(n.theta, np.int64),
                          polarity=np.asarray(n.polarity, np.int64), bias=np.asarray(n.bias, np.int64),
                          frac_bits=int(n.frac_bits), leak_shift=int(k), decay_input=int(n.decay_input),
                          mem_bits=int(n.mem_bits), levels=int(n.levels)))
        for s in srcs:
            edges.append((s, nid))
        return nid

    # outputs: exported tensors read by non-exported nodes, and graph outputs
    want: list[str] = []
    if outputs is None:
        for n in graph.nodes:
            if n.name in exported:
                continue
            for i in n.inputs:
                if i in exported and i not in want:
                    want.append(i)
        for o in graph.outputs:
            if o in exported and o not in want:
                want.append(o)
    else:
        want = list(outputs)
        for o in want:
            if o not in exported:
                raise ExportError(f"NIR output {o!r} is not an exported node")
    for n in graph.nodes:  # make every exported node (in order), even if nothing reads it
        if n.name in exported and not isinstance(n, ir.Add) and (only is None or n.name in only):
            if isinstance(n, (ir.Conv, ir.Linear)) and all(
                    isinstance(c, ir.IntLIF) or isinstance(c, ir.Add) for c in graph.consumers(n.name)) \
                    and n.name not in want:
                continue  # only its folded copies are needed
            _raw_one(n.name)
    for o in want:
        oid = f"out:{o}"
        nodes[oid] = nir.Output(output_type={"output": np.array(shape[o])})
        for s in raw(o):
            edges.append((s, oid))
        b_out.append(oid)
    # drop plain convs nothing reads (all consumers took folded copies)
    used = {s for s, _ in edges} | {d for _, d in edges}
    for nid in [k for k in nodes if k not in used]:
        del nodes[nid]
    struct = {"T": T, "order": [n.name for n in graph.nodes], "outputs": list(graph.outputs),
              "exported": sorted(exported), "stage": graph.stage,
              "nodes": {n.name: {"op": n.op, "inputs": list(n.inputs)} for n in graph.nodes},
              # nodes NIR cannot hold, carried opaquely so that the round trip is complete
              "opaque": {n.name: {"attrs": n.attrs(),
                                  "arrays": {k: np.asarray(a).tolist() for k, a in n.arrays().items()}}
                         for n in graph.nodes if n.name not in exported},
              "add_bits": {n.name: int(n.acc_bits) for n in graph.nodes
                           if isinstance(n, (ir.Add, ir.GlobalPool)) and n.name in exported}}
    gmeta = {"svf_graph": json.dumps(struct), "svf_meta": json.dumps(graph.meta, default=str),
             "dt": DT, "producer": "svf-deploy", "units": "integer accumulators; membranes / theta"}
    try:
        g = nir.NIRGraph(nodes=nodes, edges=edges, metadata=gmeta, type_check=True)
    except TypeError:  # older nir without type_check
        g = nir.NIRGraph(nodes=nodes, edges=edges, metadata=gmeta)
    return NIRExport(g, T, tuple(skipped), tuple(inexact), tuple(sorted(exported)), tuple(b_in), tuple(b_out))
