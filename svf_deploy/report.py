"""Human-readable compile report: Markdown + a self-contained HTML page with plots."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["write_report"]


def _short(name: str, width: int = 34) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]


def _plot_layers(fid, energy) -> bytes:
    names = [_short(x.name, 28) for x in fid.layers]
    fig, axes = plt.subplots(3, 1, figsize=(11, 10.5), constrained_layout=True)
    ax = axes[0]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [l.float_rate for l in fid.layers], 0.4, label="float model")
    ax.bar([x + 0.2 for x in xs], [l.int_rate for l in fid.layers], 0.4, label="integer graph")
    ax.set_ylabel("firing rate")
    ax.set_title("Per-layer firing rate (mean spike value)")
    ax.set_xticks(list(xs), names, rotation=90, fontsize=6)
    ax.legend()
    ax = axes[1]
    ax.bar(list(xs), [100 * (1 - l.agreement) for l in fid.layers], color="tab:red")
    ax.set_ylabel("spike disagreement (%)")
    ax.set_title("Where integer and float spikes differ")
    ax.set_xticks(list(xs), names, rotation=90, fontsize=6)
    ax = axes[2]
    en = [l for l in energy.layers]
    ax.bar(range(len(en)), [l.energy_pj / energy.batch * 1e-6 for l in en], color="tab:green")
    ax.set_ylabel("energy per clip (µJ)")
    ax.set_yscale("log")
    ax.set_title("Per-layer energy (Appendix E model: first layer MAC, others AC x firing rate)")
    ax.set_xticks(range(len(en)), [_short(l.name, 28) for l in en], rotation=90, fontsize=5)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _html_table(header: list[str], rows: list[list]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                  for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _exact_rows(manifest: dict) -> list[list]:
    rows = [["precision", w] for w in manifest.get("precision_warnings", [])]
    rows += [["inexact neuron", n] for n in manifest.get("exactness", {}).get("inexact_neurons", [])]
    return rows or [["none", "every neuron exact given exact weights and input codes"]]


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def write_report(outdir: Path, manifest: dict, fid, energy, graph, passes) -> list[str]:
    """Write ``report.md``, ``report.html`` and ``layers.png``; return the file names."""
    png = _plot_layers(fid, energy)
    (outdir / "layers.png").write_bytes(png)

    summary = [
        ["model", manifest["model"]["source"]],
        ["architecture", manifest["model"]["config"].get("name", "?")],
        ["target", manifest["target"]],
        ["graph nodes", len(graph.nodes)],
        ["validation clips", fid.n_clips],
        ["validation data", manifest.get("validation", {}).get("source", "?")],
        ["attention", manifest["model"].get("attention", manifest["model"]["config"].get("attention"))],
        ["input normalisation", manifest["model"].get("input_normalization", "none")
         + (" (folded into the first layer)" if manifest["model"].get("input_normalization", "none") != "none" else "")],
        *[["WARNING", w] for w in manifest.get("warnings", [])],
        ["float accuracy", _pct(fid.float_accuracy)],
        ["integer accuracy", _pct(fid.int_accuracy)],
        ["prediction agreement", _pct(fid.prediction_agreement)],
        ["mean spike agreement", _pct(fid.mean_agreement)],
        ["SNN energy per clip", f"{energy.snn_mj * 1e3:.3f} µJ"],
        ["same network as ANN", f"{energy.ann_mj * 1e3:.3f} µJ"],
        ["synaptic ops per clip", f"{energy.total_sops:,.0f}"],
    ]
    fid_rows = [[l.name, f"{100 * l.agreement:.3f}", f"{l.float_rate:.4f}", f"{l.int_rate:.4f}",
                 "← first" if l.first_divergence else ""] for l in fid.layers]
    fid_head = ["neuron layer", "spike agreement (%)", "float rate", "integer rate", "divergence"]
    en_rows = [[l.name, l.kind, "MAC" if l.is_mac else "AC", f"{l.flops / energy.batch:,.0f}",
                f"{l.firing_rate:.4f}", f"{l.energy_pj / energy.batch * 1e-6:.4f}"]
               for l in energy.layers]
    en_head = ["layer", "kind", "op", "FLOPs / clip", "input firing rate", "energy (µJ)"]
    bits_rows = []
    for n in graph.nodes:
        w = getattr(n, "acc_bits", 0) or getattr(n, "mem_bits", 0)
        if w:
            bits_rows.append([n.name, n.op, w, graph.types[n.name].shape])
    bits_head = ["node", "op", "signed bits", "shape"]
    pass_rows = [[p["name"], p["nodes"], f"{p['seconds']:.3f}"] for p in passes]
    pass_head = ["pass", "nodes after", "seconds"]

    md = ["# svf-deploy compile report\n",
          _md_table(["summary", ""], summary), "",
          "![per-layer plots](layers.png)", "",
          "## Float vs integer fidelity, per neuron layer",
          "Agreement is the fraction of spike positions (all steps, clips, channels, pixels) "
          "where the integer golden reference equals the float model.", "",
          _md_table(fid_head, fid_rows), "",
          "## Energy (SpikeVideoFormer Appendix E: E_MAC 4.6 pJ, E_AC 0.9 pJ)", "",
          _md_table(en_head, en_rows), "",
          "## Exactness and precision warnings", "",
          manifest.get("exactness", {}).get("condition", ""), "",
          f"Clip length the widths and fraction bits are proved for: T = {graph.meta.get('T')}.", "",
          _md_table(["kind", "detail"], _exact_rows(manifest)), "",
          "## Derived bit-widths (overflow impossible by the proved bounds)", "",
          _md_table(bits_head, bits_rows), "",
          "## Compiler passes", "", _md_table(pass_head, pass_rows), ""]
    (outdir / "report.md").write_text("\n".join(md))

    img = base64.b64encode(png).decode()
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>svf-deploy report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}
table{{border-collapse:collapse;margin:1em 0;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 8px}}
th{{background:#eee}}img{{max-width:100%}}</style></head><body>
<h1>svf-deploy compile report</h1>{_html_table(["summary", ""], summary)}
<img alt="per-layer plots" src="data:image/png;base64,{img}">
<h2>Float vs integer fidelity, per neuron layer</h2>{_html_table(fid_head, fid_rows)}
<h2>Energy (Appendix E model)</h2>{_html_table(en_head, en_rows)}
<h2>Exactness and precision warnings</h2><p>{html.escape(manifest.get("exactness", {}).get("condition", ""))}
 (T = {graph.meta.get("T")})</p>{_html_table(["kind", "detail"], _exact_rows(manifest))}
<h2>Derived bit-widths</h2>{_html_table(bits_head, bits_rows)}
<h2>Compiler passes</h2>{_html_table(pass_head, pass_rows)}
</body></html>"""
    (outdir / "report.html").write_text(page)
    return ["report.md", "report.html", "layers.png"]
