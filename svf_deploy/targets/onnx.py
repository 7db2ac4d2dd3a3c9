"""``--target onnx``: ``model-int.onnx``, ``model-float.onnx`` and ``onnx-report.md``.

* ``model-int.onnx`` (:mod:`svf_deploy.exporters.onnx_int`): the whole integer graph in
  standard integer ONNX ops. The build runs it with onnxruntime on the golden clip and
  requires every spike and every output to equal the golden reference exactly; a single
  difference is an exporter bug and fails the build (nothing written).
* ``model-float.onnx`` (:mod:`svf_deploy.exporters.onnx_float`): the float torch model,
  neurons unrolled over T; onnx.checker, then onnxruntime vs torch within float
  tolerance. Skipped (and said so) when MODEL was not a torch checkpoint.
"""

from __future__ import annotations

import numpy as np

from ..exporters.onnx_float import export_float_onnx
from ..exporters.onnx_int import export_int_onnx, run_int_onnx
from ..models.errors import ExportError


def _T(ctx) -> int:
    t = ctx.graph.meta.get("T") if isinstance(ctx.graph.meta, dict) else None
    return int(t) if t else int(ctx.golden_frames.shape[0])


def compare_with_golden(outs: dict, golden, graph) -> dict:
    """Compare onnxruntime outputs with a ``reference.Result``; returns counts per kind."""
    spikes = values = bad_t = bad_v = 0
    first_bad = None
    for k, v in golden.values.items():
        if graph.types[k].kind != "spike":
            continue
        got = outs.get(f"spikes/{k}")
        want = v.numpy()
        spikes += 1
        values += want.size
        if got is None or got.shape != want.shape:
            bad_t += 1
            first_bad = first_bad or k
            continue
        nb = int((got.astype(np.int64) != want).sum())
        bad_v += nb
        if nb:
            bad_t += 1
            first_bad = first_bad or k
    out_bad = []
    for k, v in golden.outputs.items():
        got = outs.get(f"out/{k}")
        if got is None or got.shape != tuple(v.shape) or not np.array_equal(got, v.numpy()):
            out_bad.append(k)
    return {"spike_tensors": spikes, "spike_values": values, "spike_tensors_differing": bad_t,
            "spike_values_differing": bad_v, "outputs": len(golden.outputs), "outputs_differing": out_bad,
            "first_difference": first_bad}


def build(ctx) -> dict:
    import onnx

    T = _T(ctx)
    frames = ctx.golden_frames.numpy().astype(np.float32)
    if frames.shape[0] != T:
        raise ExportError(f"graph.meta T={T} but the golden clip has {frames.shape[0]} steps")
    exp = export_int_onnx(ctx.graph, T)
    onnx.save(exp.model, str(ctx.tmpdir / "model-int.onnx"))
    outs = run_int_onnx(ctx.tmpdir / "model-int.onnx", frames)
    cmp = compare_with_golden(outs, ctx.golden, ctx.graph)
    if cmp["spike_values_differing"] or cmp["outputs_differing"] or cmp["spike_tensors_differing"]:
        raise ExportError(f"model-int.onnx under onnxruntime differs from the golden reference "
                          f"(first at {cmp['first_difference'] or cmp['outputs_differing'][0]!r}); this is an "
                          "exporter bug")
    if ctx.progress:
        ctx.progress("onnx", 1, 2)
    info = exp.info()
    info.update(file="model-int.onnx", golden_check=cmp)
    float_info: dict
    if ctx.model is None:
        float_info = {"file": None, "skipped": "MODEL was not a torch checkpoint (no float model to export)"}
    else:
        float_info = export_float_onnx(ctx.model, ctx.golden_frames, ctx.tmpdir / "model-float.onnx")
        float_info["file"] = "model-float.onnx"
    if ctx.progress:
        ctx.progress("onnx", 2, 2)
    _write_report(ctx.tmpdir / "onnx-report.md", info, float_info)
    ctx.log(f"onnx: model-int.onnx equals the golden reference on {cmp['spike_values']} spike values; "
            f"model-float.onnx {'max |diff| %.2g' % float_info['max_abs_diff'] if float_info.get('file') else 'skipped'}")
    return {"onnx": {"int": info, "float": float_info, "report": "onnx-report.md"}}


def _write_report(path, info, fl) -> None:
    c = info["golden_check"]
    paths: dict[str, int] = {}
    for v in info["conv_paths"].values():
        paths[v] = paths.get(v, 0) + 1
    L = ["# ONNX export", "",
         "## model-int.onnx: the integer graph, executed by onnxruntime", "",
         "| item | value |", "|---|---|",
         f"| opset | {info['opset']} (default domain only) |",
         f"| input | `frames`: {info['input']}; `B` is dynamic |",
         f"| T | {info['T']} (unrolled) |",
         f"| ONNX nodes | {info['onnx_nodes']} |",
         f"| convolutions | " + ", ".join(f"{n} x {p}" for p, n in sorted(paths.items())) + " |",
         f"| outputs | `spikes/<node>` (uint8) for every spiking node, `int/<out>` (int64), `out/<out>` (float64) |",
         f"| spike tensors vs golden | {c['spike_tensors']} tensors, {c['spike_values']} values, "
         f"{c['spike_values_differing']} differ |",
         f"| outputs vs golden | {c['outputs']} compared, {len(c['outputs_differing'])} differ (bitwise) |",
         f"| nodes it could not express | {', '.join(info['not_expressed']) or 'none'} |", "",
         "Integer conv: `ConvInteger` with uint8 inputs and `w + 128` (uint8, scalar zero point) where "
         "exact, else im2col (`Pad`, strided `Slice` per tap) + int64 `MatMul`. Floor shifts are "
         "`Div(Sub(a, Mod(a, 2**k)), 2**k)`: `Mod` (fmod=0) is the floor modulus, so the division is exact. "
         "No `x int8 * w uint8` ConvInteger and no `MatMulInteger u8 x i8` (wrong on x86 without VNNI).", "",
         "Op counts: " + ", ".join(f"{k} {v}" for k, v in info["op_counts"].items()), "",
         "## model-float.onnx: the float torch model", ""]
    if fl.get("file"):
        L += ["| item | value |", "|---|---|",
              f"| opset | {fl['opset']} |", f"| input | {fl['input']} |",
              f"| ONNX nodes | {fl['nodes']} (neurons unrolled over T) |",
              f"| onnx.checker | passed (full_check) |",
              f"| max abs diff onnxruntime vs torch | {fl['max_abs_diff']:.3g} (tolerance {fl['tolerance']}) |"]
    else:
        L.append(f"Not written: {fl['skipped']}.")
    path.write_text("\n".join(L) + "\n")
