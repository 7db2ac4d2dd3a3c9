"""Latency of the ZCU104 engine: measured (Verilator) and predicted (cycle model).

Run::

    .venv/bin/python benchmarks/accel_latency.py            # bundled model + svf-small/large
    .venv/bin/python benchmarks/accel_latency.py --quick    # bundled model + svf-small 224 only
    .venv/bin/python benchmarks/accel_latency.py --synth    # also Yosys on the production engine
    .venv/bin/python benchmarks/accel_latency.py --synth --record   # ... kept in hw/synth_record.json

Prints:

1. The bundled model on the CI engine under cocotb + Verilator: measured cycles (the engine's
   CYCLES register), the exact cycle model's prediction, simulation speed (cycles/s).
2. The bundled model's exact latency on the production configuration at its clock.
3. svf-small / svf-large at 224x224 and 256x256, T = 8 (random weights, compiled by the
   real pipeline): the program ``emit`` produces for the production engine (plan auto:
   on chip when it fits, else DDR-resident tiles), its emit time, descriptors and DDR
   image size, and its exact cycle count (:func:`program_cycles`): the dense bound (every
   T-bundle non-zero) and, for synthetic inputs whose bundles are zero at the bundled
   model's measured rate (independently; the analog stem's bit-planes non-zero), the exact
   count for them (the CONV array skips terms whose bundles are all zero). The ideal
   bound ``conv adds / adders / clock`` and the adder utilisation are beside them. Where
   the production buffer refuses a layer, the refusal is printed (named). T = 32 rows compile the model for 32 steps and emit its
   program (dense bound, exact); where that is refused or too large (``--max-descriptors``)
   they fall back to :func:`predict`, the layer-list approximation that assumes every
   tensor on chip (no tiling traffic): optimistic, and labelled so.
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


#: DDR latency per burst (cycles beyond the simulated RAM's) priced beside the dense bound:
#: the engine keeps cfg.outstanding bursts in flight, which hide it mostly (+DDR_LATENCY in the sim)
DDR_LAT = 32


def bundled():
    from svf_deploy.api import BUNDLED_MODEL
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model
    from svf_deploy.models import data as mdata
    from svf_deploy.models.checkpoint import load_checkpoint

    model, ck = load_checkpoint(BUNDLED_MODEL)
    clips, _ = mdata.make_split(mdata.MovingDigitsConfig.from_dict(ck["data"]), "val")
    graph, _ = compile_model(model, CompileOptions(), frame_shape=tuple(clips.shape[2:]))
    return graph, clips


def zoo_graph(name: str, size: int, T: int = 8):
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model
    from svf_deploy.models.svf import build_model

    torch.manual_seed(0)
    model = build_model(name, img_size=size, T=T, max_T=max(16, T)).eval()
    g, _ = compile_model(model, CompileOptions(), frame_shape=(3, size, size))
    return g


def synthetic_inputs(prog, graph, zero_rate: float, rng: np.random.Generator) -> dict:
    """Per conv node of ``prog`` (in name order), input T-bundle words that are zero
    independently with probability ``zero_rate`` (else ``0xFF``); the analog stem's
    bit-plane words all non-zero. For :func:`~svf_deploy.hw.accel.cycles.program_cycles`."""
    from svf_deploy.hw.accel import isa

    out = {}
    for nd in sorted({nd for op, _, nd in prog.descriptors if op == isa.OP_CONV}):
        ty = graph.types[graph.node(nd).inputs[0]]
        n = int(np.prod(ty.shape)) * (8 if ty.kind == "analog" else 1)
        p0 = 0.0 if ty.kind == "analog" else zero_rate
        out[nd] = np.where(rng.random(n) < p0, 0, 0xFF).astype(np.uint32)
    return out


def main(argv=None) -> int:
    from rich.console import Console
    from rich.table import Table

    from svf_deploy.hw.accel import CI, PRODUCTION, isa
    from svf_deploy.models.errors import HardwareError

    from svf_deploy.hw.accel.cycles import bundle_sparsity, conv_inputs, layers_from_graph, predict, program_cycles
    from svf_deploy.hw.accel.program import emit
    from svf_deploy.targets.zcu104 import golden_values, verify_rtl

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="svf-small at 224 only")
    ap.add_argument("--no-sim", action="store_true", help="skip the Verilator run")
    ap.add_argument("--synth", action="store_true", help="Yosys resources of the production engine")
    ap.add_argument("--record", action="store_true",
                    help="with --synth: keep the result in hw/synth_record.json (commit it with the RTL)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--max-descriptors", type=int, default=12_000_000,
                    help="T=32 programs with more descriptors fall back to predict() (memory)")
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

    t = Table(title=f"latency of the emitted programs, production engine ({PRODUCTION.dsps} DSP48E2 = "
                    f"{PRODUCTION.p_o}/2 x {PRODUCTION.p_t} x {PRODUCTION.p_pix} pixels, {PRODUCTION.adders} adds/cycle, "
                    f"{PRODUCTION.clock_mhz:g} MHz), T = 8")
    for c in ("model", "size", "config / plan", "emit s", "descriptors", "DDR image MB", "G adds/clip",
              "M cycles (dense)", "ms/clip", "ideal ms", "utilisation", "ms @ bundled skip",
              f"dense ms, DDR +{DDR_LAT} cyc/burst", "goal"):
        t.add_column(c, justify="right")
    runs = [("svf-small", 224)] if a.quick else [("svf-small", 224), ("svf-small", 256),
                                                 ("svf-large", 224), ("svf-large", 256)]
    preds, programs = [], []
    rng = np.random.default_rng(0)
    last = None
    for name, size in runs:
        t0 = time.time()
        g = zoo_graph(name, size)
        con.print(f"compiled {name} {size}x{size} in {time.time() - t0:.0f} s ({len(g.nodes)} nodes)")
        for cfg in (PRODUCTION,):
            t0 = time.time()
            try:
                prog = emit(g, cfg)
            except HardwareError as e:
                programs.append({"model": name, "size": size, "T": 8, "config": cfg.name, "refused": str(e)})
                t.add_row(name, str(size), cfg.name, f"{time.time() - t0:.1f}", "refused (below)", *[""] * 9)
                continue
            emit_s = time.time() - t0
            t0 = time.time()
            dense, per = program_cycles(prog)
            # the bundled model's all-zero bundle rate applied to synthetic spike inputs
            # (independent bundles: zero with probability `skip`; the analog stem's bit-planes
            # all non-zero), exact cycles for those inputs (the CONV skips empty bundles)
            synth = synthetic_inputs(prog, g, skip, rng)
            skipped, _ = program_cycles(prog, inputs=synth)
            slow, _ = program_cycles(prog, ddr_latency=DDR_LAT)     # cfg.outstanding bursts in flight
            model_s = time.time() - t0
            adds = sum(st.dense_adds for st in prog.stats if st.unit in ("CONV", "SDHA"))
            ideal = -(-sum(st.dense_adds for st in prog.stats if st.unit == "CONV") // cfg.adders)
            ms = dense / (cfg.clock_mhz * 1e3)
            rec = {"model": name, "size": size, "T": 8, "config": cfg.name, "plan": prog.plan,
                   "emit_seconds": round(emit_s, 2), "cycle_model_seconds": round(model_s, 2),
                   "descriptors": len(prog.descriptors), "ddr_image_bytes": int(prog.image.size),
                   "act_peak_words": prog.act_peak, "adds": adds, "dense_cycles": dense, "ms": round(ms, 3),
                   "ideal_cycles": ideal, "ideal_ms": round(ideal / (cfg.clock_mhz * 1e3), 3),
                   "utilisation": round(ideal / dense, 4), "skip_cycles": skipped,
                   "skip_ms": round(skipped / (cfg.clock_mhz * 1e3), 3),
                   "skip_utilisation": round(ideal / skipped, 4), "ddr_latency": DDR_LAT,
                   "ddr_latency_ms": round(slow / (cfg.clock_mhz * 1e3), 3)}
            programs.append(rec)
            for label, cyc in ((f"program ({cfg.name}, {prog.plan}), dense bound", dense),
                               (f"program ({cfg.name}, {prog.plan}), dense bound, DDR answering each "
                                f"burst {DDR_LAT} cycles later ({cfg.outstanding} bursts in flight)", slow),
                               (f"program ({cfg.name}, {prog.plan}), synthetic spikes at the bundled "
                                f"model's {100 * skip:.0f} % all-zero bundles", skipped)):
                preds.append({"model": name, "size": size, "T": 8, "engine": label, "adds": adds,
                              "ms": round(cyc / (cfg.clock_mhz * 1e3), 3), "ideal_ms": rec["ideal_ms"],
                              "utilisation": round(ideal / cyc, 4), "cycles": cyc})
            goal = "< 100 ms" if (name, size) == ("svf-large", 256) else ""
            t.add_row(name, str(size), f"{cfg.name} / {prog.plan}", f"{emit_s:.1f}", f"{len(prog.descriptors):,}",
                      f"{prog.image.size / 2**20:,.0f}", f"{adds / 1e9:.1f}", f"{dense / 1e6:,.1f}", f"{ms:,.1f}",
                      f"{rec['ideal_ms']:,.1f}", f"{100 * rec['utilisation']:.1f} %",
                      f"{rec['skip_ms']:,.1f}", f"{rec['ddr_latency_ms']:,.1f}", goal)
            last = (name, size, cfg, per)
        # T = 32: the model compiled for 32 steps (its neurons' fraction bits and widths are
        # proved for T=32) and emitted: the exact dense bound. Where emission is refused or
        # the descriptor list outgrows --max-descriptors, the layer-list approximation
        # predict(), which assumes every tensor on chip (no tiling traffic): optimistic.
        del g
        t0 = time.time()
        g32 = zoo_graph(name, size, T=32)
        con.print(f"compiled {name} {size}x{size} for T=32 in {time.time() - t0:.0f} s")
        t0 = time.time()
        try:
            prog = emit(g32, PRODUCTION)
            if len(prog.descriptors) > a.max_descriptors:
                raise HardwareError(f"{len(prog.descriptors):,} descriptors > --max-descriptors")
        except HardwareError as e:
            p = predict(layers_from_graph(g32), PRODUCTION, model=name, T=32, size=size)
            preds.append(p.as_dict() | {"engine": f"predict() approximation, on-chip (optimistic): {e}"})
            t.add_row(name, str(size), "T=32: predict() (approx.)", "", "", "", f"{p.adds / 1e9:.1f}",
                      f"{p.cycles / 1e6:,.1f}", f"{p.ms:,.1f}", f"{p.ideal_ms:,.1f}",
                      f"{100 * p.utilisation:.1f} %", "", "", "")
        else:
            emit_s = time.time() - t0
            dense, _ = program_cycles(prog)
            adds = sum(st.dense_adds for st in prog.stats if st.unit in ("CONV", "SDHA"))
            ideal = -(-sum(st.dense_adds for st in prog.stats if st.unit == "CONV") // PRODUCTION.adders)
            ms = dense / (PRODUCTION.clock_mhz * 1e3)
            rec = {"model": name, "size": size, "T": 32, "config": PRODUCTION.name, "plan": prog.plan,
                   "descriptors": len(prog.descriptors), "adds": adds, "dense_cycles": dense,
                   "ms": round(ms, 3), "ideal_cycles": ideal,
                   "ideal_ms": round(ideal / (PRODUCTION.clock_mhz * 1e3), 3),
                   "utilisation": round(ideal / dense, 4)}
            programs.append(rec)
            preds.append({"model": name, "size": size, "T": 32,
                          "engine": f"program ({PRODUCTION.name}, {prog.plan}), dense bound", "adds": adds,
                          "ms": rec["ms"], "ideal_ms": rec["ideal_ms"], "utilisation": rec["utilisation"],
                          "cycles": dense})
            t.add_row(name, str(size), f"T=32: {PRODUCTION.name} / {prog.plan}", f"{emit_s:.0f}",
                      f"{len(prog.descriptors):,}", "", f"{adds / 1e9:.1f}", f"{dense / 1e6:,.1f}", f"{ms:,.1f}",
                      f"{rec['ideal_ms']:,.1f}", f"{100 * rec['utilisation']:.1f} %", "", "", "")
            del prog
        del g32
    out["predictions"] = preds
    out["programs"] = programs
    con.print(t)
    for rec in programs:
        if "refused" in rec:
            con.print(f"{rec['model']} {rec['size']}x{rec['size']} on {rec['config']}: refused: {rec['refused']}")
    if last is not None:
        name, size, cfg, per = last
        share: dict[str, int] = {}
        for lc in per:
            share[lc.unit] = share.get(lc.unit, 0) + lc.cycles
        share_dma = sum(lc.dma for lc in per)
        tot = sum(share.values())
        out["unit_share"] = {"model": name, "size": size, "T": 8, "config": cfg.name,
                             **{k: round(v / tot, 4) for k, v in share.items()}, "dma": round(share_dma / tot, 4)}
        con.print(f"{name} {size}x{size} T=8 ({cfg.name}) program cycles by unit (DMA included): "
                  + ", ".join(f"{k} {100 * v / tot:.1f} %" for k, v in sorted(share.items(), key=lambda kv: -kv[1]))
                  + f"; DMA overall {100 * share_dma / tot:.1f} %")

    if a.synth:
        from svf_deploy.hw.accel.engine import Engine
        from svf_deploy.hw.accel.verilog import skip_zero_meminit
        from svf_deploy.hw.synth import synthesize
        from svf_deploy.hw.accel import XCZU7EV

        t0 = time.time()
        with skip_zero_meminit():
            r = synthesize(Engine(PRODUCTION, dsp_instance=True), f"accel-{PRODUCTION.name}", timeout=10800,
                           keep=a.record)
        out["resources"] = r.as_dict()
        t = Table(title=f"Yosys synth_xilinx -family xcup, production engine ({time.time() - t0:.0f} s)")
        for c in ("resource", "used", "XCZU7EV", "utilisation"):
            t.add_column(c, justify="right")
        for k, cap in XCZU7EV.items():
            v = getattr(r, k)
            t.add_row(k, f"{v:,.0f}", f"{cap:,}", f"{100 * v / cap:.1f} %")
        t.add_row("multiplier cells", str(r.multipliers), "0 required", "")
        con.print(t)
        from svf_deploy.targets.zcu104 import logic_depth_line

        con.print(f"clock {PRODUCTION.clock_mhz:g} MHz is a target (Yosys does no timing): {logic_depth_line(r.as_dict())}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
