"""``svf-compile --target zcu104``: the compiled model on the ZCU104's layer-sequential engine.

Writes, next to the reference outputs (all inside the atomic temporary directory):

* ``rtl/svf_accel.v`` - the engine's Verilog (production configuration), and
  ``rtl/accel_config.json``;
* ``program/`` - descriptors (``program.bin``, ``program.lst``), the DDR image with weights
  and parameters (``ddr_image.bin``) and the memory map (``program.json``), versioned;
* ``vivado/`` - ``build.tcl`` (block design: Zynq US+ PS, DDR via HP0, PL clock, the engine),
  ``svf_accel.xdc``, the RTL; ``vivado -mode batch -source build.tcl``;
* ``driver/`` - the PYNQ-style host driver and its register map;
* ``zcu104.md`` / ``zcu104.html`` / ``zcu104_layers.png`` - per-layer adds, cycles, DDR
  traffic, on-chip memory, T-bundle sparsity, predicted latency and resources vs the device.

With ``--verify rtl`` the engine (small CI configuration) runs the golden clip under cocotb +
Verilator and every stored tensor (each spike map and the output) is compared with the
golden reference; any difference fails the command naming ``(layer, t, c, y, x)``.

Manifest entries: ``zcu104`` (configuration, program), ``latency``, ``resources`` and, when
verified, ``rtl_verification: {"compared": N, "mismatches": 0, ...}``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
from pathlib import Path

import numpy as np

from ..hw.accel import CI, PRODUCTION, XCZU7EV, AccelConfig, isa
from ..hw.accel.cycles import bundle_sparsity, conv_inputs, cycles_by_opcode, program_cycles
from ..hw.accel.engine import Engine
from ..hw.accel.program import emit
from ..models.errors import HardwareError

__all__ = ["build", "estimate_resources", "RTL_NAME"]

RTL_NAME = "svf_accel"
#: Verilator speed of the CI engine (cycles per second of wall time, 2-core machine): the v2
#: engine (DSP CONV array, 2u LIF lanes) measured 38,644 under `make demo` on a loaded machine
VERILATOR_CYCLES_PER_S = 40_000
#: ``--verify rtl`` refuses programs whose modelled run exceeds this (simulated minutes)
MAX_VERIFY_MINUTES = 10.0


# ----------------------------------------------------------------------------- resources


#: DDR latencies (cycles from a burst's command to its data, beyond the simulated RAM's) the report prices
DDR_LATENCIES = (0, 16, 32)


def estimate_resources(cfg: AccelConfig) -> dict:
    """Analytic resource estimate (used when no Yosys result is cached for this RTL).

    Memories by bits, packed as Yosys packs them (URAM288 288 Kib, RAMB36E2 36 Kib) and
    built twice for their two read ports: the activation buffer's ``axi_data_width/32`` banks
    (URAM or BRAM by ``act_ram_style``) and the weight buffer (``P_o*8 x wbuf_depth``, by
    ``wbuf_ram_style``).
    The CONV accumulators are ``cfg.dsps = P_o/2 * P_t * P_pix`` DSP48E2 slices (SIMD adders,
    ``USE_MULT="NONE"``, :mod:`~svf_deploy.hw.accel.simd`), so no LUTs are charged for
    adders. Logic per DSP: its two 24-bit write-back shadows in the shift chain (48 FF, one
    LUT each for the load/shift choice). The CONV scan stage: occupancy flags (1 bit per
    activation word beside each bank, ``cfg.scan`` read ports, one RAMB36E2 per port and
    32 Ki flags) and 600 LUT, 150 FF per scanned term. The rest is a fixed block (control,
    DMA and bank rotation, per-pixel bundle selection, bias adders, LIF lanes, SDHA: 58,000
    LUT, 27,500 FF), calibrated on the Yosys ``synth_xilinx -family xcup`` run of the
    production engine recorded in ``hw/synth_record.json`` (136,544 LUT, 102,433 FF, 1,536
    DSP48E2, 32 RAMB36E2, 90 URAM288): for other configurations an estimate, not a
    measurement (``benchmarks/accel_latency.py --synth``).
    """
    def copies(bits: int, per: int) -> int:
        return 2 * -(-bits // per)

    nb = cfg.units_per_beat   # activation banks (hw/accel/actbuf.py), act_depth / nb words each
    bank_bits = cfg.act_depth // nb * 32
    act_u = nb * copies(bank_bits, 288 * 1024) if cfg.act_ram_style == "ultra" else 0
    act_b = nb * copies(bank_bits, 36 * 1024) if cfg.act_ram_style != "ultra" else 0
    wb_bits = cfg.p_o * 8 * cfg.wbuf_depth
    wb_u = copies(wb_bits, 288 * 1024) if cfg.wbuf_ram_style == "ultra" else 0
    wb_b = copies(wb_bits, 36 * 1024) if cfg.wbuf_ram_style != "ultra" else 0
    dsp = cfg.dsps
    flag_b = nb * cfg.scan * -(-(cfg.act_depth // nb) // (32 * 1024))
    lut = dsp * 48 + 58_000 + 600 * cfg.scan
    ff = dsp * 48 + 27_500 + 150 * cfg.scan
    return {"source": "estimate", "lut": lut, "ff": ff, "dsp": dsp, "bram36": act_b + wb_b + flag_b,
            "uram": act_u + wb_u, "multipliers": 0}


def _cached_yosys(cfg: AccelConfig, verilog_top: str) -> dict | None:
    """A Yosys result for exactly this RTL (:func:`~..hw.synth.lookup`: this clone's synthesis
    cache, filled by ``benchmarks/accel_latency.py --synth`` or the slow test, else the
    entry recorded with the source for the same hash), with its multiplier total."""
    from ..hw.synth import lookup

    r = lookup(f"accel-{cfg.name}", verilog_top)
    if r is not None:
        r["multipliers"] = r.get("mul_cells", 0) + r.get("dsp_mult", 0)
    return r


def synth_text(verilog: str) -> str:
    """The text ``hw.synth.synthesize`` hashes for the same engine: every module named under
    ``top`` instead of :data:`RTL_NAME` (Amaranth prefixes the submodules with the top's name)."""
    return verilog.replace(RTL_NAME, "top")


def logic_depth_line(res: dict) -> str:
    """One line on the engine's logic depth from a Yosys result (:class:`~hw.synth.Resources`
    fields ``ltp``, ``ltp_carry``, ``ltp_from``, ``deep_bits``), or why there is none."""
    from ..hw.synth import DEEP_CELLS

    if int(res.get("ltp", -1)) < 0:
        return "no logic-depth measure (no Yosys run for this RTL, or its depth pass failed)"
    deep = int(res.get("deep_bits", -1))
    return (f"Yosys' longest combinational path is {res['ltp']} cells ({res.get('ltp_carry', '?')} of them "
            f"CARRY4), from {res.get('ltp_from') or '?'}"
            + (f"; {deep:,} register/RAM/DSP input bits lie behind more than {DEEP_CELLS} cells" if deep >= 0 else ""))


def _deep_groups(res: dict) -> str:
    return ", ".join(f"{g} {d} ({n:,})" for g, d, n in res["deep_groups"])


def resources(cfg: AccelConfig) -> tuple[dict, str]:
    """``(resources, verilog)`` of the engine under ``cfg`` (Yosys if cached, else estimate)."""
    from ..hw.accel.verilog import to_verilog

    verilog = to_verilog(Engine(cfg, dsp_instance=True), RTL_NAME)   # DSP48E2 primitives for Vivado
    r = _cached_yosys(cfg, synth_text(verilog)) or estimate_resources(cfg)
    r["device"] = "xczu7ev-ffvc1156-2-e"
    r["capacity"] = dict(XCZU7EV)
    r["utilisation"] = {k: round(float(r.get(k, 0)) / v, 4) for k, v in XCZU7EV.items()}
    return r, verilog


def check_fits(r: dict) -> None:
    over = [f"{k} {r.get(k, 0):,.0f} > {v:,}" for k, v in XCZU7EV.items() if float(r.get(k, 0)) > v]
    if over:
        raise HardwareError("the engine configuration does not fit the XCZU7EV (" + ", ".join(over)
                            + "): lower p_o/p_t or the buffer depths")


# ----------------------------------------------------------------------------- report


def _plot(rows: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["layer"] for r in rows]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(8, 0.22 * len(names)), 7), sharex=True)
    x = np.arange(len(names))
    a1.bar(x, [r["cycles"] for r in rows], color="#3b6ea5", label="cycles (production, dense bound)")
    a1.plot(x, [r["clip_cycles"] for r in rows], "k_", markersize=7, label="cycles (golden clip)")
    a1.bar(x, [r["ideal"] for r in rows], color="#e39b3b", width=0.4, label="ideal adds/adders")
    a1.set_yscale("log")
    a1.set_ylabel("cycles")
    a1.legend(fontsize=8)
    a2.bar(x, [100 * r["skip"] if r["skip"] is not None else 0 for r in rows], color="#5a9e5a")
    a2.set_ylabel("all-zero T-bundles (%)")
    a2.set_xticks(x, names, rotation=90, fontsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _table_md(head, rows) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _table_html(head, rows) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def write_report(d: Path, summary: list, layer_rows: list[dict], res: dict, png: bytes,
                 by_op: dict[str, int], clock_mhz: float) -> None:
    from ..hw.synth import DEEP_CELLS

    lhead = ["layer", "unit", "dense adds", "cycles (dense bound)", "cycles (golden clip)", "ideal cycles",
             "DDR bytes", "on-chip words", "zero bundles"]
    lrows = [[r["layer"], r["unit"], f"{r['adds']:,}", f"{r['cycles']:,}", f"{r['clip_cycles']:,}", f"{r['ideal']:,}",
              f"{r['ddr']:,}", f"{r['words']:,}", "" if r["skip"] is None else f"{100 * r['skip']:.1f} %"]
             for r in layer_rows]
    rhead = ["resource", "used", "XCZU7EV", "utilisation"]
    rrows = [[k, f"{float(res.get(k, 0)):,.0f}", f"{v:,}", f"{100 * res['utilisation'][k]:.1f} %"]
             for k, v in XCZU7EV.items()]
    tot = sum(by_op.values()) or 1
    uhead = ["unit", "cycles (dense bound)", "ms", "share"]
    urows = [[k, f"{v:,}", f"{v / (clock_mhz * 1e3):.3f}", f"{100 * v / tot:.1f} %"]
             for k, v in sorted(by_op.items(), key=lambda kv: -kv[1]) if v]
    md = ["# ZCU104 deployment", "", *_table_md(["", ""], summary), "",
          "## Cycles by unit (descriptor fetch included)", "", *_table_md(uhead, urows), "",
          f"## Resources ({res['source']})", "", *_table_md(rhead, rrows), "",
          f"Multiplier cells: {res.get('multipliers', 0)}", "", f"Logic depth: {logic_depth_line(res)}.",
          "", *([f"Deepest endpoint groups (register name, cells on its longest path, bits behind more "
                  f"than {DEEP_CELLS}): {_deep_groups(res)}.", ""] if res.get("deep_groups") else []),
          "## Per layer (production configuration)", "", "![layers](zcu104_layers.png)", "",
          *_table_md(lhead, lrows), ""]
    (d / "zcu104.md").write_text("\n".join(md))
    img = base64.b64encode(png).decode()
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>ZCU104 deployment</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}</style></head><body>"
            f"<h1>ZCU104 deployment</h1>{_table_html(['', ''], summary)}"
            f"<h2>Cycles by unit</h2>{_table_html(uhead, urows)}"
            f"<h2>Resources ({html.escape(res['source'])})</h2>{_table_html(rhead, rrows)}"
            f"<p>Logic depth: {html.escape(logic_depth_line(res))}.</p>"
            + (f"<p>Deepest endpoint groups: {html.escape(_deep_groups(res))}.</p>" if res.get("deep_groups") else "")
            +
            f"<h2>Per layer</h2><img src='data:image/png;base64,{img}'>{_table_html(lhead, lrows)}"
            "</body></html>")
    (d / "zcu104.html").write_text(page)
    (d / "zcu104_layers.png").write_bytes(png)


# ----------------------------------------------------------------------------- build


def golden_values(graph, frames, names) -> dict[str, np.ndarray]:
    """Raw integer values ``[T, 1, *shape]`` of ``names`` (plus the input codes) from the
    golden reference on ``frames`` (its ``observe`` hook: nothing else is kept)."""
    from ..compiler import reference

    keep = set(names) | {graph.input.name}
    out: dict[str, np.ndarray] = {}

    def observe(name, value):
        if name in keep:
            out[name] = value.numpy().copy()

    reference.run(graph, frames, observe=observe)
    return out


def verify_rtl(graph, frames, cfg: AccelConfig = CI, progress=None, log=lambda s: None,
               image_hook=None, *, plan: str = "auto", act_words: int | None = None,
               wbuf_words: int | None = None) -> dict:
    """Run the clip ``frames`` ``[T, 1, C, H, W]`` on the engine under Verilator and compare
    every stored tensor (each spike map and the output) with the golden reference.

    ``plan`` / ``act_words`` / ``wbuf_words``: as :func:`~hw.accel.program.emit`.
    ``image_hook(program, image) -> image`` may alter the DDR image (mutation tests).
    Raises :class:`HardwareError` on any mismatch, naming the first one.
    """
    from ..sim import accel as simaccel

    prog = emit(graph, cfg, plan=plan, act_words=act_words, wbuf_words=wbuf_words)
    conv_src = [graph.node(nd).inputs[0] for op, _, nd in prog.descriptors if op == isa.OP_CONV]
    values = golden_values(graph, frames, list(prog.stored) + conv_src)
    codes = values[graph.input.name][:, 0]
    if progress:
        progress("verilator", 0, 2)
    sb = simaccel.build(cfg, log=log)
    if progress:
        progress("verilator", 1, 2)
    image = prog.ddr_image(codes)
    if image_hook is not None:
        image = image_hook(prog, image)
    run = simaccel.run(prog, codes, sb, image=image)
    if progress:
        progress("verilator", 2, 2)
    cmp = simaccel.compare(prog, run.tensors, values)
    predicted, _ = program_cycles(prog, inputs=conv_inputs(prog, graph, values))
    dense, _ = program_cycles(prog)
    out = cmp.as_dict() | {"config": cfg.name, "plan": prog.plan, "cycles": run.cycles, "predicted_cycles": predicted,
                           "dense_bound_cycles": dense,
                           "cycle_model_error": round(predicted / run.cycles - 1, 6) if run.cycles else None,
                           "verilator_cycles_per_s": round(run.cycles_per_second),
                           "build_cached": sb.cached, "build_seconds": round(sb.seconds, 1),
                           "run_seconds": round(run.wall_seconds, 2)}
    if cmp.mismatches:
        raise HardwareError(f"RTL verification failed: {cmp.mismatches} of {cmp.compared} tensors differ "
                            f"from the golden reference; first {cmp.first}")
    return out


def check_verify_time(graph, T: int) -> int:
    """Refuse ``--verify rtl`` up front when the CI engine's program would keep Verilator
    busy longer than :data:`MAX_VERIFY_MINUTES` (dense cycle bound at
    :data:`VERILATOR_CYCLES_PER_S`), or whose DDR image exceeds the simulated DDR; returns
    the bound."""
    from ..sim.accel import DDR_BYTES

    prog = emit(graph, CI, T)
    cycles, _ = program_cycles(prog)
    minutes = cycles / VERILATOR_CYCLES_PER_S / 60
    if minutes > MAX_VERIFY_MINUTES:
        raise HardwareError(f"--verify rtl: the {CI.name} engine would run up to {cycles:,} cycles, about "
                            f"{minutes:,.0f} simulated minutes under Verilator (~{VERILATOR_CYCLES_PER_S:,} "
                            f"cycles/s; limit {MAX_VERIFY_MINUTES:g}): drop --verify rtl or use a smaller model")
    if prog.image.size > DDR_BYTES:
        raise HardwareError(f"--verify rtl: the {CI.name} engine's DDR image is {prog.image.size:,} bytes, the "
                            f"simulated DDR holds {DDR_BYTES:,}: drop --verify rtl or use a smaller model")
    return cycles


def build(ctx) -> dict:
    cfg = PRODUCTION
    graph = ctx.graph
    T = int(graph.meta.get("T", ctx.golden_frames.shape[0]))
    progress = ctx.progress or (lambda *a: None)
    progress("rtl", 0, 3)
    prog = emit(graph, cfg, T)          # rejects unsupported nodes before anything is written
    if ctx.options.get("verify") == "rtl":
        check_verify_time(graph, T)
    res, verilog = resources(cfg)
    check_fits(res)
    progress("rtl", 1, 3)

    d = Path(ctx.tmpdir)
    (d / "rtl").mkdir()
    (d / "rtl" / f"{RTL_NAME}.v").write_text(verilog)
    (d / "rtl" / "accel_config.json").write_text(json.dumps(cfg.as_dict(), indent=1))
    (d / "program").mkdir()
    prog.save(d / "program")
    from ..hw.board import write_project

    write_project(d / "vivado", cfg, verilog)
    drv = d / "driver"
    drv.mkdir()
    from ..hw import driver as _drv
    from ..hw.accel import isa as _isa

    shutil.copy(_drv.__file__, drv / "driver.py")
    shutil.copy(_isa.__file__, drv / "isa.py")
    progress("rtl", 2, 3)

    total, per = program_cycles(prog)   # dense upper bound: every T-bundle non-zero
    by_op = cycles_by_opcode(prog)
    # the golden clip's exact cycles: its spike maps are in the golden record; only the input
    # codes are recomputed (no second reference run)
    from ..compiler import reference

    codes = reference.input_codes(graph.input, ctx.golden_frames).numpy()
    clip0, per_clip = program_cycles(prog, inputs=conv_inputs(prog, graph, dict(ctx.golden.values),
                                                              codes=codes[:, 0]))
    clip_cycles = {lc.name: lc.cycles for lc in per_clip}
    sparsity = bundle_sparsity({k: v.numpy() for k, v in ctx.golden.values.items()
                                if graph.types[k].kind == "spike"}, graph)
    stats = {s.name: s for s in prog.stats}
    rows = []
    for lc in per:
        s = stats.get(lc.name)
        node_in = None
        if s is not None and lc.name in graph.types:
            n = graph.node(lc.name)
            node_in = n.inputs[0] if n.inputs else None
        rows.append({"layer": lc.name, "unit": lc.unit, "adds": s.dense_adds if s else 0,
                     "cycles": lc.cycles, "clip_cycles": clip_cycles[lc.name],
                     "ideal": -(-(s.dense_adds if s else 0) // cfg.adders) if s and s.unit == "CONV" else 0,
                     "ddr": s.ddr_bytes if s else 0, "words": s.act_words if s else 0,
                     "skip": sparsity.get(node_in) if s and s.unit == "CONV" else None})
    ms = total / (cfg.clock_mhz * 1e3)
    conv_adds = sum(s.dense_adds for s in prog.stats if s.unit == "CONV")
    ideal = -(-conv_adds // cfg.adders)
    latency = {"config": cfg.name, "clock_mhz": cfg.clock_mhz, "cycles": total, "ms_per_clip": round(ms, 4),
               "ideal_cycles": ideal, "ideal_ms": round(ideal / (cfg.clock_mhz * 1e3), 4),
               "adder_utilisation": round(ideal / total, 4) if total else 0.0,
               "model": "exact cycle model of the engine (hw/accel/cycles.py), dense upper bound "
                        "(every T-bundle non-zero); DDR at 1 beat/cycle",
               "clock": "the configuration's target clock_mhz; no timing analysis has closed it "
                        "(Yosys logic depth under resources: ltp, ltp_carry, deep_bits)",
               "golden_clip_cycles": clip0, "golden_clip_ms": round(clip0 / (cfg.clock_mhz * 1e3), 4),
               # the engine keeps cfg.outstanding bursts in flight: a DDR latency the bursts in
               # flight do not cover adds to the dense bound (the same exact model; the
               # simulated RAM's +DDR_LATENCY)
               "ddr_latency_ms": {str(lat): round(program_cycles(prog, ddr_latency=lat)[0]
                                                  / (cfg.clock_mhz * 1e3), 4) for lat in DDR_LATENCIES},
               "T": T, "cycles_by_unit": by_op}
    traffic = int(sum(s.ddr_bytes for s in prog.stats))
    entries = {
        "zcu104": {"config": cfg.as_dict(), "isa_version": prog.manifest()["isa_version"], "plan": prog.plan,
                   "descriptors": len(prog.descriptors), "ddr_image_bytes": int(prog.image.size),
                   "act_peak_words": prog.act_peak, "ddr_traffic_bytes": traffic,
                   "bundle_sparsity": {k: round(v, 4) for k, v in sparsity.items()},
                   "files": ["rtl/", "program/", "vivado/", "driver/", "zcu104.md", "zcu104.html"]},
        "latency": latency,
        "resources": {k: v for k, v in res.items()},
    }
    if ctx.options.get("verify") == "rtl":
        ctx.log(f"verifying the RTL under Verilator ({CI.name} configuration)")
        entries["rtl_verification"] = verify_rtl(graph, ctx.golden_frames, CI, progress, ctx.log)
    summary = [["configuration", f"{cfg.name}: P_o={cfg.p_o}, P_t={cfg.p_t}, P_pix={cfg.p_pix}, {cfg.clock_mhz:g} MHz"],
               ["CONV adds per cycle", f"{cfg.adders:,} ({cfg.dsps:,} DSP48E2 x 2 lanes x 2 terms)"],
               ["memory plan", {"chip": "on chip (every live tensor in the activation buffer)",
                                "ddr": "DDR-resident (tensors in DDR, tiles through the buffer)"}[prog.plan]],
               ["descriptors", f"{len(prog.descriptors):,}"],
               ["DDR image", f"{prog.image.size:,} bytes"],
               ["DDR traffic per clip", f"{traffic:,} bytes"],
               ["on-chip activation peak", f"{prog.act_peak:,} of {cfg.act_depth:,} words"],
               ["predicted latency (dense bound)", f"{ms:.3f} ms per clip ({total:,} cycles)"],
               ["golden clip (exact; CONV skips all-zero T-bundles)",
                f"{latency['golden_clip_ms']:.3f} ms ({clip0:,} cycles)"],
               [f"dense bound if DDR answers each burst later ({cfg.outstanding} bursts in flight)",
                ", ".join(f"{k} cycles: {v:.3f} ms" for k, v in latency["ddr_latency_ms"].items())],
               ["ideal bound (adds/adders)", f"{latency['ideal_ms']:.3f} ms ({ideal:,} cycles)"],
               ["adder utilisation", f"{100 * latency['adder_utilisation']:.1f} %"],
               ["clock", f"{cfg.clock_mhz:g} MHz is the configuration's target, not a timing result "
                         "(no timing analysis here; Yosys' logic depth under Resources)"],
               ["all-zero T-bundles (mean over spike maps)",
                f"{100 * float(np.mean(list(sparsity.values()))):.1f} %" if sparsity else "-"]]
    if "rtl_verification" in entries:
        v = entries["rtl_verification"]
        summary.append(["RTL verification (Verilator, CI config)",
                        f"{v['compared']} tensors, {v['mismatches']} mismatches, {v['cycles']:,} cycles "
                        f"(model {v['predicted_cycles']:,})"])
    progress("rtl", 3, 3)
    write_report(d, summary, rows, res, _plot(rows), by_op, cfg.clock_mhz)
    return entries
