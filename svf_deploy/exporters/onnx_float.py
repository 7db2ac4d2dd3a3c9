"""The float torch model as ONNX (``model-float.onnx``), neuron state unrolled over T.

``torch.onnx.export`` (the ``torch.export`` based exporter, which needs ``onnxscript``)
traces the model on the golden clip ``[T, 1, C, H, W]``: every neuron's Python loop over
the ``T`` steps becomes ``T`` copies of its charge / fire / reset ops, so the ONNX graph
holds the membrane state explicitly and needs no custom op. The model is checked with
``onnx.checker`` and run by onnxruntime; :func:`export_float_onnx` returns the largest
absolute difference from the torch model's output on that clip.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..models.errors import ExportError

__all__ = ["FLOAT_OPSET", "FLOAT_TOL", "export_float_onnx"]

FLOAT_OPSET = 18
#: float tolerance between onnxruntime and torch (float32 kernels in different orders)
FLOAT_TOL = 1e-4


class _DictOutputs(torch.nn.Module):
    """A model whose forward returns a dict (pose heads), as a tuple in ``names`` order."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.inner = model
        self.names = list(names)

    def forward(self, x):
        out = self.inner(x)
        return tuple(out[k] for k in self.names)


def export_float_onnx(model, frames, path: Path) -> dict:
    """Export ``model`` (eval mode) to ``path`` on ``frames`` ``[T, B, C, H, W]``; check and
    run it. Returns ``{"opset", "nodes", "max_abs_diff", "output_shape", ...}``.

    Raises :class:`ExportError` when the export fails or onnxruntime's output differs
    from torch's by more than :data:`FLOAT_TOL`.
    """
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - declared dependencies
        raise ExportError("the onnx target needs 'onnx', 'onnxscript' and 'onnxruntime'; run `make setup`") from None
    x = frames.to(torch.float32).contiguous()
    with torch.no_grad():
        want = model(x)
    if isinstance(want, torch.Tensor):
        names, net = ["output"], model
        wants = [want]
    elif isinstance(want, dict) and all(isinstance(v, torch.Tensor) for v in want.values()):
        names = sorted(want)  # pose heads: one ONNX output per key
        net = _DictOutputs(model, names).eval()
        wants = [want[k] for k in names]
    else:
        raise ExportError(f"the float ONNX export needs a model returning tensors, got {type(want).__name__}")
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.onnx._internal.exporter._registration")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), str(path), dynamo=True, external_data=False, verbose=False,
                              input_names=["frames"], output_names=names, opset_version=FLOAT_OPSET)
    except Exception as e:  # noqa: BLE001 - torch.onnx raises many types; report one line
        raise ExportError(f"torch.onnx.export failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    finally:
        for lg, lv in zip(quiet, levels):
            lg.setLevel(lv)
    m = onnx.load(str(path))
    try:
        onnx.checker.check_model(m, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"model-float.onnx fails onnx.checker: {str(e).splitlines()[0]}") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    gots = sess.run(names, {sess.get_inputs()[0].name: x.numpy()})
    diff = 0.0
    for name, got, want in zip(names, gots, wants):
        want = want.detach().numpy()
        if got.shape != want.shape:
            raise ExportError(f"model-float.onnx output {name!r} has shape {got.shape}, torch's {want.shape}")
        if want.size:
            diff = max(diff, float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))))
    if not diff <= FLOAT_TOL:
        raise ExportError(f"model-float.onnx differs from the torch model by {diff:.3g} > {FLOAT_TOL}")
    counts: dict[str, int] = {}
    for n in m.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return {"opset": FLOAT_OPSET, "nodes": len(m.graph.node), "input": f"frames float32 {list(x.shape)}",
            "outputs": {n: list(w.shape) for n, w in zip(names, wants)}, "max_abs_diff": diff, "tolerance": FLOAT_TOL,
            "op_counts": dict(sorted(counts.items()))}
