"""Additions per time step of svf-small / svf-large at 224x224: compiled vs factored SepConvs.

Run: .venv/bin/python benchmarks/adds_per_step.py [--frame 224] [--models svf-small svf-large]

Compiles each model twice (random weights with randomised BN statistics; the counts depend
only on shapes and weight widths), with ``factor_depthwise="never"`` (every depthwise 7x7
fused into a dense 7x7, the default) and ``"auto"`` (the compiler keeps each SepConv
factored where its cost model says it is cheaper: depthwise on spikes + bit-serial
pointwise), and prints, from svf_deploy.hw.costmodel, the dense additions per time step of
both compiled graphs, the cost model's estimate for the fused graph factored, and the five
layers of the fused graph that gain most.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from compile_time import randomise_bn  # noqa: E402

from svf_deploy.compiler.pipeline import CompileOptions, compile_model  # noqa: E402
from svf_deploy.hw.costmodel import adds_per_step  # noqa: E402
from svf_deploy.models import build_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frame", type=int, default=224)
    ap.add_argument("--models", nargs="+", default=["svf-small", "svf-large"])
    a = ap.parse_args()
    con = Console()
    summary = Table(title=f"Dense additions per time step at {a.frame}x{a.frame}")
    for col in ("model", "compiled never (fused)", "estimate factored", "compiled auto", "saving",
                "factored SepConvs", "compile s"):
        summary.add_column(col, justify="right")
    for name in a.models:
        model = build_model(name, T=4).eval()
        randomise_bn(model)
        t0 = time.perf_counter()
        graph, _ = compile_model(model, CompileOptions(), frame_shape=(3, a.frame, a.frame))
        auto, _ = compile_model(model, CompileOptions(factor_depthwise="auto"), frame_shape=(3, a.frame, a.frame))
        dt = time.perf_counter() - t0
        costs = adds_per_step(graph)
        fused = sum(c.fused for c in costs)
        fact = sum(c.factored for c in costs)
        compiled_auto = sum(c.fused for c in adds_per_step(auto))
        forms = [f["form"] for f in auto.meta["sepconv_forms"].values()]
        summary.add_row(name, f"{fused / 1e9:.2f} G", f"{fact / 1e9:.2f} G", f"{compiled_auto / 1e9:.2f} G",
                        f"{1 - compiled_auto / fused:.0%}", f"{forms.count('factored')}/{len(forms)}",
                        f"{dt:.1f}")
        top = sorted(costs, key=lambda c: c.fused - c.factored, reverse=True)[:5]
        t = Table(title=f"{name}: layers with the largest saving")
        for col in ("layer", "fused G", "factored G", "form"):
            t.add_column(col)
        for c in top:
            t.add_row(c.name, f"{c.fused / 1e9:.3f}", f"{c.factored / 1e9:.3f}", c.form)
        con.print(t)
    con.print(summary)


if __name__ == "__main__":
    main()
