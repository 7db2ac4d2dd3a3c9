"""Latency of the ZCU104 engine: measured (Verilator) and predicted (cycle model).

Run::

    .venv/bin/python benchmarks/accel_latency.py            # bundled model + svf-small/large
    .venv/bin/python benchmarks/accel_latency.py --quick    # bundled model + svf-small 224 only
    .venv/bin/python benchmarks/accel_latency.py --synth    # also Yosys on the production engine

Prints:

1. The bundled model on the CI engine under cocotb + Verilator: measured cycles (the engine's
   CYCLES register), the exact cycle model's prediction, simulation speed (cycles/s).
2. The bundled model's exact latency on the production configuration at its clock.
3. svf-small / svf-large at 224x224 and 256x256, T = 8 and 32 (random weights, compiled by
   the real pipeline; latency does not depend on weight values for the dense v1 engine),
   with the ideal bound ``adds / adders / clock`` beside it and the adder utilisation.
   The engine skips all-zero T-bundles (terms go in pairs, one cycle unless both are
   non-zero): the dense bound (every bundle non-zero) and the RTL at the bundled model's
   measured all-zero rate (independent bundles assumed) are shown; rows marked *planned*
   add an engine change not in the RTL (weights streamed a full beat per cycle into a
   double buffer).
4. With ``--synth``: Yosys ``synth_xilinx`` totals for the production engine vs the XCZU7EV
   (minutes to an hour on 2 cores; cached by the Verilog's hash).

Goals (issue 10): svf-large, T=8, 256x256 under 100 ms per clip; utilisation above 70 %.
Nothing is asserted here; figures are printed beside the goals.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def bundled():
    from svf_deploy.api import BUNDLED_MODEL
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model
    from svf_deploy.models import data as mdata
    from svf_deploy.models.checkpoint import load_checkpoint

    model, ck = load_checkpoint(BUNDLED_MODEL)
    clips, _ = mdata.make_split(mdata.MovingDigitsConfig.from_dict(ck["data"]), "val")
    graph, _ = compile_model(model, CompileOptions(), frame_shape=tuple(clips.shape[2:]))
    return graph, clips


def zoo_graph(name: str, size: int):
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model
    from svf_deploy.models.svf import build_model

    torch.manual_seed(0)
    model = build_model(name, img_size=size, T=8).eval()
    g, _ = compile_model(model, CompileOptions(), frame_shape=(3, size, size))
    return g


def main(argv=None) -> int:
    from rich.console import Console
    from rich.table import Table

    from svf_deploy.hw.accel import CI, PRODUCTION, isa
    from svf_deploy.hw.accel.cycles import bundle_sparsity, conv_inputs, layers_from_graph, predict, program_cycles
    from svf_deploy.hw.accel.program import emit
    from svf_deploy.targets.zcu104 import golden_values, verify_rtl

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="svf-small at 224 only")
    ap.add_argument("--no-sim", action="store_true", help="skip the Verilator run")
    ap.add_argument("--synth", action="store_true", help="Yosys resources of the production engine")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    a = ap.parse_args(argv)
    con = Console(width=150)
    out: dict = {}

    graph, clips = bundled()
    frames = clips[:8].transpose(0, 1).contiguous()
    vals: dict = {}

    def keep(name, v):
        if graph.types[name].kind == "spike":
            vals[name] = v.numpy()

    from svf_deploy.compiler import reference

    reference.run(graph, frames, observe=keep)
    sp = bundle_sparsity(vals, graph)
    skip = float(np.mean(list(sp.values())))
    out["bundled_bundle_sparsity_mean"] = skip

    t = Table(title="bundled svf-tiny-digits (T=4, 32x32) on the engine")
    for c in ("configuration", "cycles", "model", "model error", "ms @ clock", "Verilator cycles/s"):
        t.add_column(c, justify="right")
    if not a.no_sim:
        t0 = time.time()
        r = verify_rtl(graph, clips[:1].transpose(0, 1).contiguous(), CI)
        out["verilator"] = r | {"wall_seconds": round(time.time() - t0, 1)}
        t.add_row(f"CI (P_o={CI.p_o}, P_t={CI.p_t}) Verilator", f"{r['cycles']:,}", f"{r['predicted_cycles']:,}",
                  f"{100 * r['cycle_model_error']:+.3f} %", f"{r['cycles'] / (CI.clock_mhz * 1e3):.2f}",
                  f"{r['verilator_cycles_per_s']:,}")
    clip0 = clips[:1].transpose(0, 1).contiguous()
    for cfg in (CI, PRODUCTION):
        prog = emit(graph, cfg)
        conv_src = [graph.node(nd).inputs[0] for op, _, nd in prog.descriptors if op == isa.OP_CONV]
        tot, _ = program_cycles(prog, inputs=conv_inputs(prog, graph, golden_values(graph, clip0, conv_src)))
        dense, _ = program_cycles(prog)
        out[f"bundled_{cfg.name}_cycles"] = tot
        out[f"bundled_{cfg.name}_dense_bound_cycles"] = dense
        t.add_row(f"{cfg.name} (P_o={cfg.p_o}, P_t={cfg.p_t}, {cfg.clock_mhz:g} MHz) model", f"{tot:,}", "exact",
                  f"dense bound {dense:,}", f"{tot / (cfg.clock_mhz * 1e3):.3f}", "")
    con.print(t)
    con.print(f"all-zero T-bundles, mean over the bundled model's spike maps (8 clips): {100 * skip:.1f} %")

    t = Table(title=f"predicted latency, production engine ({PRODUCTION.p_o}x{PRODUCTION.p_t} = "
                    f"{PRODUCTION.adders} gated adders, {PRODUCTION.clock_mhz:g} MHz)")
    for c in ("model", "size", "T", "engine", "G adds/clip", "ms/clip", "ideal ms", "utilisation", "goal"):
        t.add_column(c, justify="right")
    runs = [("svf-small", 224)] if a.quick else [("svf-small", 224), ("svf-small", 256),
                                                 ("svf-large", 224), ("svf-large", 256)]
    preds = []
    for name, size in runs:
        t0 = time.time()
        g = zoo_graph(name, size)
        layers = layers_from_graph(g)
        con.print(f"compiled {name} {size}x{size} in {time.time() - t0:.0f} s ({len(g.nodes)} nodes)")
        for T in (8, 32):
            for label, kw in (("RTL, dense bound", {}), ("RTL, bundle skip", {"skip": skip}),
                              ("planned: stream + skip", {"stream_weights": True, "skip": skip})):
                p = predict(layers, PRODUCTION, model=name, T=T, size=size, **kw)
                d = p.as_dict() | {"engine": label}
                preds.append(d)
                goal = "< 100 ms" if (name, size, T) == ("svf-large", 256, 8) else ""
                t.add_row(name, str(size), str(T), label, f"{p.adds / 1e9:.1f}", f"{p.ms:,.1f}",
                          f"{p.ideal_ms:,.1f}", f"{100 * p.utilisation:.1f} %", goal)
    out["predictions"] = preds
    con.print(t)
    # where the cycles of the last model go (v1 RTL, T=8): one row per unit
    share: dict[str, int] = {}
    for L in layers:
        share[L["op"]] = share.get(L["op"], 0) + predict([L], PRODUCTION, model=name, T=8, size=size).cycles
    tot = sum(share.values())
    out["unit_share"] = {"model": name, "size": size, "T": 8, **{k: round(v / tot, 4) for k, v in share.items()}}
    con.print(f"{name} {size}x{size} T=8, v1 RTL cycles by unit: "
              + ", ".join(f"{k} {100 * v / tot:.1f} %" for k, v in sorted(share.items(), key=lambda kv: -kv[1])))

    if a.synth:
        from svf_deploy.hw.accel.engine import Engine
        from svf_deploy.hw.accel.verilog import skip_zero_meminit
        from svf_deploy.hw.synth import synthesize
        from svf_deploy.hw.accel import XCZU7EV

        t0 = time.time()
        with skip_zero_meminit():
            r = synthesize(Engine(PRODUCTION), f"accel-{PRODUCTION.name}", timeout=7200)
        out["resources"] = r.as_dict()
        t = Table(title=f"Yosys synth_xilinx -family xcup, production engine ({time.time() - t0:.0f} s)")
        for c in ("resource", "used", "XCZU7EV", "utilisation"):
            t.add_column(c, justify="right")
        for k, cap in XCZU7EV.items():
            v = getattr(r, k)
            t.add_row(k, f"{v:,.0f}", f"{cap:,}", f"{100 * v / cap:.1f} %")
        t.add_row("multiplier cells", str(r.multipliers), "0 required", "")
        con.print(t)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
