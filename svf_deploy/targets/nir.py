"""``--target nir``: ``model.nir`` (NIR 1.0) + ``nir-report.md``.

Writes the integer graph in NIR's float-threshold form (:mod:`svf_deploy.exporters.
nir_export`), reads it back and checks that the round trip rebuilds the same integer graph,
then lets the third-party NIR simulators (SpikingJelly, snnTorch, Norse) run every
runnable segment on the golden clip's spikes and records, per segment and simulator,
how many spikes differ (:mod:`svf_deploy.exporters.nir_judges`). Every node NIR cannot
represent is listed with its reason; ``--strict`` turns any such node into an error
(:class:`ExportError`, nothing written).
"""

from __future__ import annotations

from ..exporters.nir_export import DT, export_nir
from ..models.errors import ExportError


def _T(ctx) -> int:
    t = ctx.graph.meta.get("T") if isinstance(ctx.graph.meta, dict) else None
    return int(t) if t else int(ctx.golden_frames.shape[0])


def _table(rows, cols) -> list[str]:
    out = ["| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(str(f(r)) for _, f in cols) + " |")
    return out


def build(ctx) -> dict:
    import nir

    from ..exporters.nir_import import load_nir
    from ..exporters.nir_judges import judge

    T = _T(ctx)
    exp = export_nir(ctx.graph, T)
    if ctx.options.get("strict") and exp.skipped:
        ops: dict[str, list[str]] = {}
        for s in exp.skipped:
            ops.setdefault(s.op, []).append(s.name)
        what = ", ".join(f"{len(v)} {op} (e.g. {v[0]})" for op, v in sorted(ops.items()))
        raise ExportError(f"--strict: NIR cannot represent {len(exp.skipped)} node(s): {what}; "
                          "drop --strict to export the rest with nir-report.md listing them")
    path = ctx.tmpdir / "model.nir"
    nir.write(path, exp.graph)
    back = load_nir(path)
    a, b = ctx.graph.to_files(), back.to_files()
    same = a[0] == b[0] and a[1].keys() == b[1].keys() and all(
        (a[1][k] == b[1][k]).all() and a[1][k].dtype == b[1][k].dtype for k in a[1])
    if not same:
        raise ExportError("model.nir does not read back to the same integer graph; this is an exporter bug")
    if ctx.progress:
        ctx.progress("nir", 1, 2)
    spikes = {k: v.numpy() for k, v in ctx.golden.values.items() if ctx.graph.types[k].kind == "spike"}
    rows = judge(ctx.graph, spikes, T)
    if ctx.progress:
        ctx.progress("nir", 2, 2)
    info = exp.info()
    summary: dict = {}
    for r in rows:
        s = summary.setdefault(r["importer"], {"segments": 0, "equal": 0, "values": 0, "mismatches": 0,
                                               "other": 0})
        s["segments"] += 1
        if r["status"] == "equal" or r["status"] == "differs":
            s["values"] += r["values"]
            s["mismatches"] += r["mismatches"]
            s["equal"] += r["status"] == "equal"
        else:
            s["other"] += 1
    _write_report(ctx.tmpdir / "nir-report.md", exp, info, rows, summary, T, ctx.graph)
    ctx.log(f"nir: model.nir with {info['nir_nodes']} NIR nodes; {len(exp.skipped)} node(s) not exported "
            "(see nir-report.md)")
    return {"nir": {"file": "model.nir", "report": "nir-report.md", "nir_version": nir.__version__
                    if hasattr(nir, "__version__") else "1.0", "dt": DT, "T": T,
                    "round_trip": "same integer graph", "nodes": info["nir_nodes"],
                    "edges": info["nir_edges"], "not_exported": info["skipped"],
                    "inexact": info["inexact"], "boundary_inputs": info["boundary_inputs"],
                    "boundary_outputs": info["boundary_outputs"], "judges": summary,
                    "judge_rows": rows}}


def _write_report(path, exp, info, rows, summary, T, graph) -> None:
    from ..compiler import ir

    n_cmp = len({r["output"] for r in rows})
    n_bin = sum(isinstance(n, ir.IntLIF) and n.levels == 1 for n in graph.nodes)
    L = ["# NIR export", "",
         f"`model.nir`: NIR 1.0 graph, {info['nir_nodes']} nodes, {info['nir_edges']} edges, every LIF "
         f"with `dt = {DT}` (in its metadata) and `tau = 2 dt`, `r = 1`, `v_leak = 0`, `v_reset = 0`.",
         "",
         "## Conventions",
         "- Units: conv/linear outputs in integer accumulator units (NIR weights = integer weights); "
         "each neuron's membrane divided by its integer threshold `theta_c`, with the input gain "
         "`polarity * 2**F / theta_c` folded into a per-neuron copy `<conv>@<lif>` of each writing conv "
         "(residual adds are NIR's summed edges) or a `Scale` node `scale@<lif>`.",
         "- Euler: `v[t] = v[t-1] + dt/tau (v_leak - v[t-1] + r I[t])`, fire `v > v_threshold`, reset to "
         "`v_reset`. With `tau = 2 dt` this is `H = V + (X - V)/2`; our integer neuron floors that halving, "
         "and for tau = 2 the floor never changes a spike (proof in `svf_deploy/exporters/nir_export.py`).",
         f"- Threshold `1 - 2**-(T+1) / max(theta)` (T = {T}): strictly between the largest non-firing "
         "membrane and 1, so both `>` (NIR, snnTorch, Norse) and `>=` (SpikingJelly) give our spikes "
         f"for clips of up to {T} steps.",
         "- Input: the NIR `input` takes the integer codes `clamp(round(x / scale), 0, 2**bits - 1)`; "
         "the rounding is not in NIR (scale and bits are in its metadata).",
         "- Soft-reset neurons are exported with `metadata.reset = \"soft\"` and listed as inexact "
         "(NIR neurons reset hard).", ""]
    L += ["## Nodes not exported", ""]
    if exp.skipped:
        L += _table(exp.skipped, [("node", lambda s: f"`{s.name}`"), ("op", lambda s: s.op),
                                  ("why", lambda s: s.reason)])
        L += ["", "Their tensors cross the NIR graph's boundary: `in:<node>` inputs (the integer "
              "values the caller supplies) and `out:<tensor>` outputs."]
    else:
        L.append("None: the whole graph is in `model.nir`.")
    L += ["", "## Exported but not bit-exact", ""]
    L += (_table(exp.inexact, [("node", lambda s: f"`{s.name}`"), ("why", lambda s: s.reason)])
          if exp.inexact else ["None."])
    L += ["", "## Third-party simulators on the golden clip", "",
          "Each runnable segment (convs, residual adds and exact neurons from a recorded spike tensor) "
          "is imported by each simulator and fed the golden spikes; its output neuron's spikes are "
          "compared with the golden ones at every step. Every runnable neuron is the output of one "
          f"segment: {n_cmp} of {n_bin} binary neurons. The others read a tensor NIR cannot carry "
          "(a requant or attention output), so no simulator can compute their input.", ""]
    L += _table(sorted(summary.items()), [("simulator", lambda kv: kv[0]),
                                         ("segments", lambda kv: kv[1]["segments"]),
                                         ("equal", lambda kv: kv[1]["equal"]),
                                         ("spike values compared", lambda kv: kv[1]["values"]),
                                         ("mismatches", lambda kv: kv[1]["mismatches"]),
                                         ("not run / failed", lambda kv: kv[1]["other"])])
    L += ["", "<details><summary>per segment</summary>", ""]
    L += _table(rows, [("simulator", lambda r: r["importer"]), ("from", lambda r: f"`{r['start']}`"),
                       ("to", lambda r: f"`{r['output']}`"), ("neurons", lambda r: r["neurons"]),
                       ("golden spikes", lambda r: r["golden_spikes"]), ("result", lambda r: r["status"]),
                       ("mismatches", lambda r: r.get("mismatches", "-"))])
    L += ["", "</details>", "",
          "Importer conventions: SpikingJelly 2.0 runs with `dtype=float64`; snnTorch 1.0 fixes "
          "`dt = 1e-4`, moves `r dt/tau = 1/2` into its threshold (an exact factor 2) and computes "
          "spikes in float32 (our exactness margin `2**-(T+1)/max(theta)` is then not guaranteed for "
          "large thresholds; the table says what it did); Norse 1.1 runs in float64 through nirtorch's "
          "legacy GraphExecutor, which returns the last node of its execution order rather than the "
          "graph's Output node: on segments with a fan-in (residual add) that is another tensor. A row "
          "that is not `equal` is reported as the simulator ran it, never adjusted.", ""]
    path.write_text("\n".join(L))
