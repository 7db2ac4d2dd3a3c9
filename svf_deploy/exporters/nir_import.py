"""Read a ``model.nir`` written by :mod:`.nir_export` back into the integer graph.

The structure (node order, inputs, residual ``Add`` nodes) and the nodes NIR cannot hold
(carried opaquely in the graph metadata ``svf_graph``) come from the metadata; every
parameter NIR *does* hold is read from the NIR node and converted back to integers:

* conv/linear weights ``W = W_nir / g`` with the folded neuron's gain
  ``g = polarity * 2**F / theta`` (``g = 1`` for a plain copy), biases likewise after
  removing the folded neuron bias ``bias / theta``; each must be an integer to within
  ``1e-9`` relative, else the file was edited into something the integer graph cannot
  express and :class:`GraphError` names the node;
* neurons: ``tau`` must be ``2**leak_shift * dt``, ``v_reset`` 0 and ``v_threshold`` the
  exported ``1 - 2**-(T+1) / max(theta)``.

So ``graph_from_nir(export_nir(g, T).graph)`` rebuilds ``g`` node for node
(tests: :mod:`tests.svf_deploy.exporters`). A NIR graph from another tool lacks the
metadata and is refused with a clear message: our IR needs integer weights, thresholds
and scales that a real-valued NIR graph does not determine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..compiler import ir
from ..models.errors import GraphError
from .nir_export import DT, threshold_for

__all__ = ["graph_from_nir", "load_nir"]


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _int_exact(a: np.ndarray, who: str, what: str) -> np.ndarray:
    r = np.rint(a)
    if not np.all(np.abs(a - r) <= 1e-9 * np.maximum(1.0, np.abs(a))):
        worst = float(np.max(np.abs(a - r)))
        raise GraphError(f"model.nir: {who}: {what} are not integers in the exported units (off by "
                         f"up to {worst:.3g}); the file was changed after svf-compile wrote it")
    return r.astype(np.int64)


def graph_from_nir(g) -> ir.Graph:
    """Rebuild the integer :class:`ir.Graph` from a NIR graph written by :func:`export_nir`."""
    md = getattr(g, "metadata", None) or {}
    if "svf_graph" not in md:
        raise GraphError("the NIR graph has no svf-deploy metadata: only NIR files written by "
                         "`svf-compile --target nir` can be compiled (a real-valued NIR graph does "
                         "not determine the integer weights, thresholds and scales)")
    try:
        st = json.loads(_s(md["svf_graph"]))
        meta = json.loads(_s(md.get("svf_meta", "{}")))
        T = int(st["T"])
        order, outputs, info = st["order"], st["outputs"], st["nodes"]
        opaque, add_bits = st.get("opaque", {}), st.get("add_bits", {})
    except (ValueError, KeyError, TypeError) as e:
        raise GraphError(f"model.nir: malformed svf_graph metadata ({type(e).__name__}: {e})") from None
    nodes_nir = g.nodes
    lif_meta = {k: v.metadata for k, v in nodes_nir.items() if _s(v.metadata.get("svf_op", "")) == "IntLIF"}
    built: list[ir.Node] = []

    def gain(lif_name: str):
        m = lif_meta.get(lif_name)
        if m is None:
            raise GraphError(f"model.nir: neuron {lif_name!r} is missing")
        theta = np.asarray(m["theta"], np.float64)
        return (np.asarray(m["polarity"], np.float64) * 2.0 ** int(m["frac_bits"]) / theta,
                np.asarray(m["bias"], np.float64) / theta)

    for name in order:
        op, inputs = info[name]["op"], tuple(info[name]["inputs"])
        try:
            if name in opaque:
                cls = ir.NODE_TYPES[op]
                kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in opaque[name]["attrs"].items()}
                kw.update({k: np.asarray(v) for k, v in opaque[name]["arrays"].items()})
                built.append(cls(name=name, inputs=inputs, **kw))
            elif op == "Input":
                m = nodes_nir["input"].metadata
                built.append(ir.Input(name=name, inputs=(), shape=tuple(int(s) for s in
                                      nodes_nir["input"].output_type["output"]),
                                      scale=float(m["scale"]), bits=int(m["bits"])))
            elif op in ("Conv", "Linear"):
                built.append(_affine(name, op, inputs, nodes_nir, gain))
            elif op == "IntLIF":
                built.append(_lif(name, inputs, nodes_nir.get(name), T))
            elif op == "Add":
                built.append(ir.Add(name=name, inputs=inputs, acc_bits=int(add_bits.get(name, 0))))
            elif op == "GlobalPool":
                built.append(ir.GlobalPool(name=name, inputs=inputs, acc_bits=int(add_bits.get(name, 0))))
            else:
                raise GraphError(f"model.nir: node {name!r} has op {op!r}, which is neither exported nor carried")
        except (KeyError, TypeError, ValueError) as e:
            raise GraphError(f"model.nir: node {name!r} ({op}) cannot be rebuilt ({type(e).__name__}: {e})") from None
    return ir.Graph(tuple(built), tuple(outputs), st.get("stage", "integer"), meta)


def _affine(name, op, inputs, nodes_nir, gain) -> ir.Node:
    cands = [k for k in nodes_nir if k == name or k.startswith(name + "@")]
    if not cands:
        raise GraphError(f"model.nir: {op} {name!r} is missing (no plain or folded copy)")
    k = name if name in cands else cands[0]
    nn_ = nodes_nir[k]
    m = nn_.metadata
    w = np.asarray(nn_.weight, np.float64)
    b = np.asarray(nn_.bias, np.float64)
    if k != name:
        lif = _s(m["folded_into"])
        g, lb = gain(lif)
        if int(m.get("folded_lif_bias", 0)):
            b = b - lb
        w = w / g.reshape((-1,) + (1,) * (w.ndim - 1))
        b = b / g
    wi = _int_exact(w, f"{op} {name!r}", "weights")
    bi = _int_exact(b, f"{op} {name!r}", "biases") if int(m["has_bias"]) else None
    out_scale = np.asarray(m["out_scale"], np.float64)
    if op == "Conv":
        stride = np.atleast_1d(nn_.stride)
        pad = np.atleast_1d(nn_.padding)
        if len(set(stride.tolist())) != 1 or len(set(pad.tolist())) != 1 or np.any(np.atleast_1d(nn_.dilation) != 1):
            raise GraphError(f"model.nir: Conv2d {k!r}: only square stride/padding and dilation 1 are expressible")
        return ir.Conv(name=name, inputs=inputs, weight=wi, bias=bi, stride=int(stride[0]),
                       padding=int(pad[0]), groups=int(nn_.groups), out_scale=out_scale,
                       acc_bits=int(m["acc_bits"]))
    return ir.Linear(name=name, inputs=inputs, weight=wi, bias=bi, out_scale=out_scale,
                     acc_bits=int(m["acc_bits"]))


def _lif(name, inputs, node, T: int) -> ir.IntLIF:
    if node is None:
        raise GraphError(f"model.nir: neuron {name!r} is missing")
    m = node.metadata
    k = int(m["leak_shift"])
    theta = np.asarray(m["theta"], np.int64)
    who = f"model.nir: LIF {name!r}"
    if not np.allclose(node.tau, 2.0 ** k * DT, rtol=1e-12, atol=0):
        raise GraphError(f"{who}: tau {np.unique(node.tau)} is not 2**{k} * dt (dt={DT}); the integer leak "
                         "is a shift and needs that tau")
    if np.any(node.v_reset != 0):
        raise GraphError(f"{who}: v_reset must be 0 (the integer neuron resets to 0)")
    if not np.allclose(node.v_threshold, threshold_for(theta, T), rtol=0, atol=1e-15):
        raise GraphError(f"{who}: v_threshold {np.unique(node.v_threshold)} is not the exported "
                         f"1 - 2**-(T+1)/max(theta); the integer thresholds theta do not match it")
    return ir.IntLIF(name=name, inputs=inputs, theta=theta, bias=np.asarray(m["bias"], np.int64),
                     polarity=np.asarray(m["polarity"], np.int64), frac_bits=int(m["frac_bits"]),
                     leak_shift=k, decay_input=bool(int(m["decay_input"])), reset=_s(m["reset"]),
                     levels=int(m["levels"]), mem_bits=int(m["mem_bits"]))


def load_nir(path) -> ir.Graph:
    """``nir.read(path)`` then :func:`graph_from_nir`; raises :class:`GraphError` on a file
    that is not NIR or not one of ours."""
    try:
        import nir
    except ImportError:  # pragma: no cover - a declared dependency
        raise GraphError("reading a .nir MODEL needs the 'nir' package; run `make setup`") from None
    p = Path(path)
    try:
        g = nir.read(p)
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise GraphError(f"cannot read {p} as NIR ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                         "pass a file written by `svf-compile --target nir`") from None
    return graph_from_nir(g)
