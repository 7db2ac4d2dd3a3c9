"""The whole integer graph as a standard integer ONNX model (``model-int.onnx``).

onnxruntime then executes the integer semantics of :mod:`svf_deploy.compiler.ir`
independently of :mod:`svf_deploy.compiler.reference` (no torch, no float kernels): for
every clip, every spike and the output must equal the golden reference exactly.

Layout and input
----------------
Input ``frames``: real-valued frames ``float32 [T, B, C, H, W]`` exactly as ``golden.npz``
stores them (``T`` fixed at export, ``B`` dynamic). The ``Input`` node's quantisation is
in the model: ``q = Clip(Round(Cast<double>(x) / scale), 0, 2**bits - 1)`` (ONNX ``Round``
rounds half to even, as ``torch.round``), cast to ``int64``. Every tensor then is ``int64``
``[T*B, *shape]`` (time folded into the batch, as the reference does).

Per op (all integer arithmetic is ``int64`` and exact; ``>>`` below is a floor shift):

* ``Conv``: **fast path** ``ConvInteger`` with ``x`` uint8 and ``w + 128`` uint8 with the
  scalar ``w_zero_point = 128`` (exact in onnxruntime on every x86; the ``int32``
  accumulator holds the proved bound) when the input lies in ``0..255`` (spikes, 8-bit
  codes), the weights in ``-128..127`` and the bound below ``2**31``; otherwise
  **exact im2col**: ``Pad`` + one strided ``Slice`` per kernel tap, ``Concat``, and an
  ``int64`` ``MatMul`` with the ``[G, O/G, C/G*kh*kw]`` weights. Bias: ``int64`` ``Add``.
* ``Linear``: ``int64`` ``MatMul`` with ``W^T`` + bias.
* ``IntLIF``: unrolled over ``T`` (``Gather`` of step ``t``); floor shifts as
  ``Div(Sub(a, Mod(a, 2**k)), 2**k)`` (``Mod`` with ``fmod=0`` is the floor modulus, so the
  numerator is an exact multiple and ``Div``'s truncation is exact); fire
  ``GreaterOrEqual``; hard reset ``Where``; soft ``Sub(H, S*theta)``; I-LIF
  ``round_half_even(H / theta)``: ``q = floor((2H + theta) / (2 theta))`` with the same
  floor division, minus 1 where ``2H + theta == 2 q theta`` and ``q`` is odd, then ``Clip``.
* ``Requant``: ``(x + (2**s >> 1)) >> s`` per channel, as above.
* ``Add``: ``int64`` ``Add``. ``GlobalPool``: ``ReduceSum`` over ``H, W``.
  ``TimeMean``: ``ReduceSum`` over ``T``.
* ``Attention``: per head integer ``MatMul``s ``(2Q-1)((2K-1)^T V)`` (sdha) or
  ``Q(K^T V)`` (sdsa) over the joint ``T*H*W`` tokens or per step.
* ``SSSA``: ``ReduceSum`` counts, ``Mul`` by the per-step gain, the saccade LIF as
  ``IntLIF``, ``Mul`` with ``V``.

Outputs: ``spikes/<node>`` (``uint8`` ``[T, B, *shape]``) for every spiking node,
``int/<out>`` (the integer output) and ``out/<out>`` (``float64``, the real value as
:func:`reference.run` reports it: ``Cast<double>(y) * scale`` and ``/ T`` for a
``TimeMean``, the same IEEE operations in the same order, so it is bit-identical).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..compiler import ir
from ..compiler.reference import bounds as int_bounds
from ..models.errors import ConfigError, ExportError, GraphError
from ..models.neurons import leak_shift

__all__ = ["OPSET", "IntOnnx", "export_int_onnx", "run_int_onnx"]

OPSET = 17


def _onnx():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:  # pragma: no cover - onnx is a declared dependency
        raise ExportError("the onnx target needs the 'onnx' package; run `make setup`") from None
    return onnx, TensorProto, helper, numpy_helper


@dataclass
class IntOnnx:
    """An exported integer model and what the report says about it."""

    model: object  # onnx.ModelProto
    T: int
    conv_paths: dict = field(default_factory=dict)  # node -> "ConvInteger u8xu8" | "im2col int64 MatMul"
    spike_outputs: tuple = ()
    outputs: tuple = ()

    def info(self) -> dict:
        counts: dict[str, int] = {}
        for n in self.model.graph.node:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
        return {"opset": OPSET, "T": self.T, "input": "frames float32 [T, B, C, H, W] as golden.npz "
                "stores them (quantised inside the model)",
                "onnx_nodes": len(self.model.graph.node), "op_counts": dict(sorted(counts.items())),
                "conv_paths": self.conv_paths, "spike_outputs": len(self.spike_outputs),
                "outputs": list(self.outputs), "not_expressed": []}


class _Builder:
    def __init__(self):
        onnx, self.TP, self.h, self.nh = _onnx()
        self.nodes = []
        self.inits = []
        self.n = 0
        self._consts: dict = {}

    def name(self, hint: str) -> str:
        self.n += 1
        return f"{hint}#{self.n}"

    def const(self, a, dtype=np.int64, hint: str = "c") -> str:
        a = np.asarray(a, dtype=dtype)
        key = (a.dtype.str, a.shape, a.tobytes())
        if key in self._consts:
            return self._consts[key]
        nm = self.name(hint)
        self.inits.append(self.nh.from_array(a, nm))
        self._consts[key] = nm
        return nm

    def op(self, op_type: str, inputs, hint: str = "", out: str | None = None, **attrs) -> str:
        o = out or self.name(hint or op_type)
        self.nodes.append(self.h.make_node(op_type, list(inputs), [o], **attrs))
        return o

    # exact integer helpers
    def floor_div(self, a: str, d: str, hint: str) -> str:
        """``floor(a / d)`` for int64 ``a`` and positive int64 ``d`` (broadcast)."""
        m = self.op("Mod", [a, d], hint, fmod=0)
        return self.op("Div", [self.op("Sub", [a, m], hint), d], hint)


def _chan(a, ndim: int) -> np.ndarray:
    """Per-channel vector -> ``[C, 1, ...]`` (``ndim`` axes) to broadcast over ``[N, C, ...]``."""
    a = np.asarray(a)
    return a.reshape((a.shape[0],) + (1,) * (ndim - 1))


def export_int_onnx(graph: ir.Graph, T: int, conv_path: str = "auto") -> IntOnnx:
    """Build the integer ONNX model of ``graph`` for clips of ``T`` steps.

    ``conv_path``: ``"auto"`` (ConvInteger where it is exact, else im2col) or ``"im2col"``
    (every conv through the int64 im2col path; tests use it to check that path).

    Raises :class:`ExportError` naming the node for anything it cannot express exactly
    (a proved bound at or above ``2**62``).
    """
    if graph.stage != "integer":
        raise ExportError(f"the integer ONNX export needs an integer graph, got stage {graph.stage!r}")
    if not isinstance(T, int) or T < 1:
        raise ExportError(f"T must be a positive int, got {T!r}")
    if conv_path not in ("auto", "im2col"):
        raise ExportError(f"conv_path must be 'auto' or 'im2col', got {conv_path!r}")
    try:
        bnd = int_bounds(graph, T)
    except GraphError as e:
        raise ExportError(f"cannot bound the graph for T={T}: {e}") from None
    for k, v in bnd.items():
        if v >= 2 ** 62:
            raise ExportError(f"{graph.node(k).op} {k!r}: proved bound {v} does not fit int64 arithmetic")
    b = _Builder()
    TP, h = b.TP, b.h
    vals: dict[str, str] = {}
    conv_paths: dict[str, str] = {}
    spike_outs: list[str] = []
    out_infos = []

    def shape_of(name: str) -> tuple[int, ...]:
        return tuple(graph.types[name].shape)

    def in_range_u8(name: str) -> bool:
        t = graph.types[name]
        if t.kind == "spike":
            return t.levels <= 255
        if t.kind == "analog":
            return bnd[name] <= 255
        return False

    def per_step(x: str, shape) -> list[str]:
        """``[T*B, *shape]`` -> T tensors ``[B, *shape]``."""
        xt = b.op("Reshape", [x, b.const([T, -1, *shape])], "steps")
        return [b.op("Gather", [xt, b.const(t)], "step", axis=0) for t in range(T)]

    def join_steps(parts: list[str], shape) -> str:
        us = [b.op("Unsqueeze", [p, b.const([0])], "u") for p in parts]
        cat = b.op("Concat", us, "cat", axis=0)
        return b.op("Reshape", [cat, b.const([-1, *shape])], "fold")

    def lif(steps: list[str], shape, gain, bias, theta, k: int, decay_input: bool, reset: str,
            levels: int, who: str) -> str:
        """Integer LIF over the per-step inputs (see ir.IntLIF); returns ``[T*B, *shape]``."""
        nd = len(shape)
        g = None if gain is None or bool(np.all(np.asarray(gain) == 1)) else \
            b.const(_chan(np.broadcast_to(gain, (shape[0],)), nd))
        bi = None if bias is None or not bool(np.any(np.asarray(bias) != 0)) else \
            b.const(_chan(np.broadcast_to(bias, (shape[0],)), nd))
        th = b.const(_chan(np.broadcast_to(theta, (shape[0],)), nd))
        two_th = None if levels == 1 else \
            b.const(_chan(2 * np.broadcast_to(np.asarray(theta, np.int64), (shape[0],)), nd))
        two_k = b.const(2 ** k)
        zero = b.const(0)
        v = None
        outs = []
        for t, x in enumerate(steps):
            X = x if g is None else b.op("Mul", [x, g], who)
            if bi is not None:
                X = b.op("Add", [X, bi], who)
            if decay_input:  # H = V + ((X - V) >> k)
                d = X if v is None else b.op("Sub", [X, v], who)
                hh = b.floor_div(d, two_k, who)
                H = hh if v is None else b.op("Add", [v, hh], who)
            else:  # H = V - (V >> k) + X
                H = X if v is None else b.op("Add", [b.op("Sub", [v, b.floor_div(v, two_k, who)], who), X], who)
            if levels == 1:
                fired = b.op("GreaterOrEqual", [H, th], who)
                s = b.op("Cast", [fired], who, to=TP.INT64)
                if reset == "hard":
                    v = b.op("Where", [fired, zero, H], who)
                else:
                    v = b.op("Sub", [H, b.op("Mul", [s, th], who)], who)
            else:  # S = clamp(round_half_even(H / theta), 0, D); V = H - S theta
                num = b.op("Add", [b.op("Mul", [H, b.const(2)], who), th], who)
                q = b.floor_div(num, two_th, who)  # round half up
                tie = b.op("And", [b.op("Equal", [num, b.op("Mul", [q, two_th], who)], who),
                                   b.op("Equal", [b.op("Mod", [q, b.const(2)], who, fmod=0), b.const(1)], who)], who)
                q = b.op("Sub", [q, b.op("Cast", [tie], who, to=TP.INT64)], who)  # ties to even
                s = b.op("Clip", [q, b.const(0), b.const(levels)], who)
                v = b.op("Sub", [H, b.op("Mul", [s, th], who)], who)
            outs.append(s)
        return join_steps(outs, shape)

    def heads(x: str, shape, nh: int, joint: bool) -> str:
        """``[T*B, C, H, W]`` -> ``[B, h, T*N, d]`` (joint) or ``[T, B, h, N, d]``."""
        c, hh, ww = shape
        d, n = c // nh, hh * ww
        z = b.op("Reshape", [x, b.const([T, -1, nh, d, n])], "heads")
        if joint:
            z = b.op("Transpose", [z], "heads", perm=[1, 2, 0, 4, 3])  # [B, h, T, N, d]
            return b.op("Reshape", [z, b.const([0, 0, T * n, d])], "heads")
        return b.op("Transpose", [z], "heads", perm=[0, 1, 2, 4, 3])  # [T, B, h, N, d]

    def unheads(y: str, shape, nh: int, joint: bool) -> str:
        c, hh, ww = shape
        d, n = c // nh, hh * ww
        if joint:
            y = b.op("Reshape", [y, b.const([0, 0, T, n, d])], "unheads")
            y = b.op("Transpose", [y], "unheads", perm=[2, 0, 1, 4, 3])  # [T, B, h, d, N]
        else:
            y = b.op("Transpose", [y], "unheads", perm=[0, 1, 2, 4, 3])
        return b.op("Reshape", [y, b.const([-1, c, hh, ww])], "unheads")

    def conv(n: ir.Conv) -> str:
        x = vals[n.inputs[0]]
        w = np.asarray(n.weight, np.int64)
        o, cg, kh, kw = w.shape
        fast = conv_path == "auto" and in_range_u8(n.inputs[0]) and w.min() >= -128 and w.max() <= 127 and bnd[n.name] < 2 ** 31
        if fast:
            xu = b.op("Cast", [x], n.name, to=TP.UINT8)
            wu = b.const((w + 128).astype(np.uint8), np.uint8, "w")
            y = b.op("ConvInteger", [xu, wu, "", b.const(np.uint8(128), np.uint8, "zp")], n.name,
                     group=n.groups, pads=[n.padding] * 4, strides=[n.stride] * 2,
                     kernel_shape=[kh, kw], dilations=[1, 1])
            y = b.op("Cast", [y], n.name, to=TP.INT64)
            conv_paths[n.name] = "ConvInteger u8xu8"
        else:
            c, hi, wi = shape_of(n.inputs[0])
            oh, ow = n.out_hw(hi, wi)
            p, s = n.padding, n.stride
            xp = b.op("Pad", [x, b.const([0, 0, p, p, 0, 0, p, p])], n.name) if p else x
            taps = []
            for dy in range(kh):
                for dx in range(kw):
                    sl = b.op("Slice", [xp, b.const([dy, dx]), b.const([dy + s * (oh - 1) + 1, dx + s * (ow - 1) + 1]),
                                        b.const([2, 3]), b.const([s, s])], n.name)
                    taps.append(b.op("Unsqueeze", [sl, b.const([2])], n.name))
            cols = b.op("Concat", taps, n.name, axis=2)  # [N, C, K, OH, OW]
            g = n.groups
            cols = b.op("Reshape", [cols, b.const([-1, g, cg * kh * kw, oh * ow])], n.name)
            wm = b.const(w.reshape(g, o // g, cg * kh * kw), np.int64, "w")
            y = b.op("MatMul", [wm, cols], n.name)  # [N, G, O/G, P]
            y = b.op("Reshape", [y, b.const([-1, o, oh, ow])], n.name)
            conv_paths[n.name] = "im2col int64 MatMul"
        if n.bias is not None:
            bias = np.asarray(n.bias)  # per channel, or a [O, Ho, Wo] bias map (folded normalisation)
            y = b.op("Add", [y, b.const(bias if bias.ndim == 3 else _chan(bias, 3))], n.name)
        return y

    x_in = "frames"
    for n in graph.nodes:
        who = n.name
        if isinstance(n, ir.Input):
            xd = b.op("Cast", [x_in], who, to=TP.DOUBLE)
            q = b.op("Round", [b.op("Div", [xd, b.const(n.scale, np.float64)], who)], who)
            q = b.op("Clip", [q, b.const(0.0, np.float64), b.const(float(2 ** n.bits - 1), np.float64)], who)
            q = b.op("Cast", [q], who, to=TP.INT64)
            vals[n.name] = b.op("Reshape", [q, b.const([-1, *n.shape])], who)
        elif isinstance(n, ir.Conv):
            vals[n.name] = conv(n)
        elif isinstance(n, ir.Linear):
            y = b.op("MatMul", [vals[n.inputs[0]], b.const(np.asarray(n.weight, np.int64).T)], who)
            if n.bias is not None:
                y = b.op("Add", [y, b.const(np.asarray(n.bias, np.int64))], who)
            vals[n.name] = y
        elif isinstance(n, ir.IntLIF):
            shape = shape_of(n.name)
            gain = np.asarray(n.polarity, np.int64) * 2 ** n.frac_bits
            vals[n.name] = lif(per_step(vals[n.inputs[0]], shape), shape, gain, n.bias, n.theta,
                               n.leak_shift, n.decay_input, n.reset, n.levels, who)
        elif isinstance(n, ir.Add):
            vals[n.name] = b.op("Add", [vals[n.inputs[0]], vals[n.inputs[1]]], who)
        elif isinstance(n, ir.Requant):
            sh = np.asarray(n.shift, np.int64)
            nd = len(shape_of(n.name))
            r = b.op("Add", [vals[n.inputs[0]], b.const(_chan((1 << sh) >> 1, nd))], who)
            vals[n.name] = b.floor_div(r, b.const(_chan(1 << sh, nd)), who)
        elif isinstance(n, ir.Attention):
            if n.tokens not in ("joint", "spatial"):
                raise ExportError(f"Attention {n.name!r}: tokens={n.tokens!r} has no integer ONNX form "
                                  "yet (joint and spatial only); use --target reference or nir")
            shape = shape_of(n.inputs[0])
            joint = n.tokens == "joint"
            q, k, v = (heads(vals[i], shape, n.heads, joint) for i in n.inputs)
            perm = [0, 1, 3, 2] if joint else [0, 1, 2, 4, 3]
            if n.kind == "sdha":
                one, two = b.const(1), b.const(2)
                q = b.op("Sub", [b.op("Mul", [q, two], who), one], who)
                k = b.op("Sub", [b.op("Mul", [k, two], who), one], who)
            kv = b.op("MatMul", [b.op("Transpose", [k], who, perm=perm), v], who)
            vals[n.name] = unheads(b.op("MatMul", [q, kv], who), shape, n.heads, joint)
        elif isinstance(n, ir.SSSA):
            shape = shape_of(n.inputs[0])
            c, hh, ww = shape
            nh = n.heads
            q, k, v = (heads(vals[i], shape, nh, False) for i in n.inputs)  # [T, B, h, N, d]
            qc = b.op("ReduceSum", [q, b.const([-1])], who, keepdims=0)  # [T, B, h, N]
            al = b.op("ReduceSum", [k, b.const([-2, -1])], who, keepdims=1)  # [T, B, h, 1, 1]
            sal = b.op("Mul", [qc, b.op("Squeeze", [al, b.const([-1])], who)], who)
            gain = np.asarray(n.gain, np.int64)[:T].reshape(T, 1, 1, 1)
            sal = b.op("Mul", [sal, b.const(gain)], who)
            steps = [b.op("Gather", [sal, b.const(t)], who, axis=0) for t in range(T)]  # [B, h, N]
            try:
                k_sal = leak_shift(n.sal_tau, f"SSSA {n.name!r}")
            except ConfigError as e:
                raise ExportError(str(e)) from None
            hn = hh * ww
            s = lif(steps, (nh, hn), np.full(nh, 2 ** n.sal_frac_bits), None, np.full(nh, n.sal_theta),
                    k_sal, n.sal_decay_input, n.sal_reset, 1, who)  # [T*B, h, N]
            s = b.op("Reshape", [s, b.const([T, -1, nh, hn, 1])], who)
            y = b.op("Mul", [s, v], who)  # [T, B, h, N, d]
            y = b.op("Transpose", [y], who, perm=[0, 1, 2, 4, 3])
            vals[n.name] = b.op("Reshape", [y, b.const([-1, c, hh, ww])], who)
        elif isinstance(n, ir.GlobalPool):
            vals[n.name] = b.op("ReduceSum", [vals[n.inputs[0]], b.const([2, 3])], who, keepdims=0)
        elif isinstance(n, ir.TimeMean):
            shape = shape_of(n.name)
            xt = b.op("Reshape", [vals[n.inputs[0]], b.const([T, -1, *shape])], who)
            vals[n.name] = b.op("ReduceSum", [xt, b.const([0])], who, keepdims=1)  # [1, B, *shape]
        else:
            raise ExportError(f"{n.op} {n.name!r}: no integer ONNX form (unknown op)")
        t = graph.types[n.name]
        if t.kind == "spike":
            shape = shape_of(n.name)
            y = b.op("Reshape", [vals[n.name], b.const([T, -1, *shape])], who)
            nm = f"spikes/{n.name}"
            b.op("Cast", [y], who, out=nm, to=TP.UINT8)
            spike_outs.append(nm)
            out_infos.append(h.make_tensor_value_info(nm, TP.UINT8, [T, "B", *shape]))
    outs = []
    for o in graph.outputs:
        t = graph.types[o]
        n = graph.node(o)
        shape = list(t.shape)
        y = vals[o]
        lead = [1, "B"] if isinstance(n, ir.TimeMean) else [T, "B"]
        if not isinstance(n, ir.TimeMean):
            y = b.op("Reshape", [y, b.const([T, -1, *shape])], o)
        iname, rname = f"int/{o}", f"out/{o}"
        b.op("Identity", [y], o, out=iname)
        scale = (1.0,) * shape[0] if t.scale is None else t.scale
        r = b.op("Mul", [b.op("Cast", [iname], o, to=TP.DOUBLE),
                         b.const(_chan(np.asarray(scale, np.float64), len(shape)), np.float64)], o)
        if isinstance(n, ir.TimeMean):
            r = b.op("Div", [r, b.const(float(T), np.float64)], o)
            r = b.op("Squeeze", [r, b.const([0])], o, out=rname)
            lead_r = ["B"]
        else:
            r = b.op("Identity", [r], o, out=rname)
            lead_r = [T, "B"]
        out_infos.append(h.make_tensor_value_info(iname, TP.INT64, lead + shape))
        out_infos.append(h.make_tensor_value_info(rname, TP.DOUBLE, lead_r + shape))
        outs += [iname, rname]
    inp = h.make_tensor_value_info(x_in, TP.FLOAT, [T, "B", *graph.input.shape])
    g = h.make_graph(b.nodes, "svf_integer_graph", [inp], out_infos, initializer=b.inits)
    model = h.make_model(g, opset_imports=[h.make_opsetid("", OPSET)],
                         producer_name="svf-deploy", doc_string="svf-deploy integer spike graph; "
                         "bit-exact with svf_deploy.compiler.reference")
    model.ir_version = 8
    onnx = _onnx()[0]
    onnx.checker.check_model(model, full_check=True)
    return IntOnnx(model, T, conv_paths, tuple(spike_outs), tuple(outs))


def run_int_onnx(model_or_path, frames: np.ndarray, threads: int = 1) -> dict[str, np.ndarray]:
    """Run ``model-int.onnx`` with onnxruntime on ``frames`` ``[T, B, C, H, W]``; returns
    every output by name."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a declared dependency
        raise ExportError("running the ONNX model needs 'onnxruntime'; run `make setup`") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only
    src = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    res = sess.run(names, {"frames": np.ascontiguousarray(frames, dtype=np.float32)})
    return dict(zip(names, res))
