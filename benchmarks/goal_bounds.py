"""Lower bounds behind issue 10's goal: what limits svf-large, T=8, 256x256 on the XCZU7EV.

Run::

    .venv/bin/python benchmarks/goal_bounds.py                         # svf-large 256 + bundled model
    .venv/bin/python benchmarks/goal_bounds.py --model svf-small --size 224

Every figure is a *lower bound* computed from the emitted program (production engine, plan
auto) and the exact CONV issue rule of :func:`~svf_deploy.hw.accel.cycles.conv_busy`; nothing
is simulated and nothing asserted. Per CONV descriptor, pixel group and ``P_o`` tile the
array issues term pairs; the bounds count those issue cycles (``busy - 3``, no write-back,
bias, drain or DMA) under four skip rules, at the configuration's clock:

* **dense**: every term, ``ceil(terms/2)`` a group;
* **this engine**: a term is issued when some pixel of the group (``g <= P_pix``) has a
  non-zero T-bundle at its tap, blocks of ``scan`` terms, ``max(1, ceil(live/2))`` a block;
* **no blocks**: the same union rule without the block granularity (``scan`` as large as the
  group's terms): what a better scan could reach;
* **per pixel**: each pixel issues only its own live terms (groups of one pixel), the
  ``P_pix`` columns running independently (the sum divided by ``P_pix``; their imbalance
  ignored): what needs a weight read per pixel column, ``P_pix`` times the weight ports.

Beside them: the DDR traffic of the program over one 128-bit port at the clock (the
engine's AXI master) and over the ZCU104's PS DDR4 at its 19.2 GB/s peak (64 bits at
2,400 MT/s, every HP port together), and the dense additions of the compiled graph against
the array's adders. Inputs: the bundled model's own spikes (golden clip, real spatial
correlation) and, for the zoo model, synthetic bundles zero independently at the bundled
model's measured all-zero rate (independent, so the union of a group's pixels is as large
as it can be: pessimistic for the union rules, neutral for per pixel).

A second table gives the exact program latency (:func:`~svf_deploy.hw.accel.cycles.program_cycles`)
of the same programs on the engine with a wider scan (``AccelConfig.scan``, a parameter the
RTL has; only the production value is synthesised): an empty block of ``scan`` terms still
costs a cycle, so sparse maps are scan-bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: the ZCU104's PS DDR4: 64 bits at 2,400 MT/s (all S_AXI_HP ports share it)
PS_DDR_PEAK_BYTES_S = 19.2e9


def issue_cycles(prog, inputs: dict | None) -> dict[str, int]:
    """Sum over CONV descriptors, pixel groups, ``P_t`` chunks and ``P_o`` tiles of the
    issue cycles under each rule of the module docstring (``inputs``: per conv node its
    input T-bundle words, :func:`~svf_deploy.hw.accel.cycles.conv_inputs`; ``None``: dense)."""
    from svf_deploy.hw.accel import isa
    from svf_deploy.hw.accel.cycles import conv_busy, conv_window

    cfg = prog.cfg
    out = {"dense": 0, "engine": 0, "no_blocks": 0, "per_pixel": 0}
    for i, (op, f, node) in enumerate(prog.descriptors):
        if op != isa.OP_CONV:
            continue
        tiles = -(-(int(f["oc_end"]) - int(f["oc_start"])) // cfg.p_o)
        words = None if inputs is None else conv_window(prog, i, inputs[node])
        big = 2 * (int(f["cin"]) * int(f["kk"]) + 2)  # a scan longer than any group's terms
        rules = {"dense": (None, cfg), "engine": (words, cfg),
                 "no_blocks": (words, dataclasses.replace(cfg, scan=big)),
                 "per_pixel": (words, dataclasses.replace(cfg, scan=big, p_pix=1))}
        for k, (wd, c) in rules.items():
            cyc = int((conv_busy(wd, c, f) - 3).sum()) * tiles
            out[k] += -(-cyc // cfg.p_pix) if k == "per_pixel" else cyc
    return out


def ddr_bytes(prog) -> int:
    """Bytes the program's DMA descriptors move (:func:`ddr_traffic.dma_bytes`)."""
    from ddr_traffic import dma_bytes

    return sum(dma_bytes(op, f, prog.cfg) for op, f, _ in prog.descriptors)


def main(argv=None) -> int:
    from rich.console import Console
    from rich.table import Table

    from accel_latency import bundled, synthetic_inputs, zoo_graph
    from svf_deploy.compiler import reference
    from svf_deploy.hw.accel import PRODUCTION as cfg, isa
    from svf_deploy.hw.accel.cycles import bundle_sparsity, conv_inputs, program_cycles
    from svf_deploy.hw.accel.program import emit
    from svf_deploy.targets.zcu104 import golden_values

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="svf-large", help="zoo model (default svf-large)")
    ap.add_argument("--size", type=int, default=256, help="frame size (default 256)")
    a = ap.parse_args(argv)
    con = Console(width=150)
    clock = cfg.clock_mhz * 1e6

    graph, clips = bundled()
    frames = clips[:8].transpose(0, 1).contiguous()
    vals: dict = {}
    reference.run(graph, frames, observe=lambda n, v: vals.__setitem__(n, v.numpy())
                  if graph.types[n].kind == "spike" else None)
    zero_rate = float(np.mean(list(bundle_sparsity(vals, graph).values())))

    rows = []
    prog = emit(graph, cfg)
    clip0 = clips[:1].transpose(0, 1).contiguous()
    src = [graph.node(nd).inputs[0] for op, _, nd in prog.descriptors if op == isa.OP_CONV]
    real = conv_inputs(prog, graph, golden_values(graph, clip0, src))
    rows.append(("bundled svf-tiny-digits, T=4 32x32, its golden clip", graph, prog, real,
                 program_cycles(prog, inputs=real)[0]))
    t0 = time.time()
    g = zoo_graph(a.model, a.size)
    p = emit(g, cfg)
    syn = synthetic_inputs(p, g, zero_rate, np.random.default_rng(0))
    con.print(f"{a.model} {a.size}: compiled and emitted in {time.time() - t0:.0f} s ({len(p.descriptors):,} descriptors)")
    rows.append((f"{a.model}, T=8 {a.size}x{a.size}, synthetic bundles {100 * zero_rate:.0f} % zero",
                 g, p, syn, program_cycles(p, inputs=syn)[0]))

    def ms(c: float) -> str:
        v = 1e3 * c / clock
        return f"{v:,.1f}" if v >= 10 else f"{v:.3f}"
    t = Table(title=f"lower bounds, production engine ({cfg.adders:,} adds/cycle, P_pix={cfg.p_pix}, "
                    f"scan={cfg.scan}, {cfg.clock_mhz:g} MHz), ms per clip")
    for c in ("workload", "program (exact)", "CONV dense", "CONV this engine", "CONV no blocks",
              "CONV per pixel", "DDR MB", "DDR 1 port", "DDR PS peak"):
        t.add_column(c, justify="right")
    for label, gr, pr, inp, exact in rows:
        ic = issue_cycles(pr, inp)
        b = ddr_bytes(pr)
        port = cfg.axi_data_width // 8 * clock
        t.add_row(label, ms(exact), ms(ic["dense"]), ms(ic["engine"]), ms(ic["no_blocks"]), ms(ic["per_pixel"]),
                  f"{b / 1e6:,.1f}", ms(b / port * clock), ms(b / PS_DDR_PEAK_BYTES_S * clock))
    con.print(t)
    t = Table(title="exact program latency (ms per clip) against the scan width: the engine is "
                    "parameterised by it (CI 4, production 8); its flag ports and scan logic grow with it")
    t.add_column("workload", justify="right")
    scans = (cfg.scan, 2 * cfg.scan, 4 * cfg.scan)
    for sc in scans:
        t.add_column(f"scan {sc}" + (" (built)" if sc == cfg.scan else ""), justify="right")
    for label, gr, pr, inp, exact in rows:
        cells = [ms(exact)]
        for sc in scans[1:]:
            wide = dataclasses.replace(pr, cfg=dataclasses.replace(cfg, scan=sc))
            cells.append(ms(program_cycles(wide, inputs=inp)[0]))
        t.add_row(label, *cells)
    con.print(t)
    con.print(f"- all-zero T-bundles, mean over the bundled model's spike maps (8 clips): {100 * zero_rate:.1f} %")
    con.print(f"- one port: {cfg.axi_data_width}-bit AXI at {cfg.clock_mhz:g} MHz = "
              f"{cfg.axi_data_width // 8 * clock / 1e9:.1f} GB/s; PS DDR4 peak {PS_DDR_PEAK_BYTES_S / 1e9:.1f} GB/s")
    con.print("- goal (issue 10): svf-large, T=8, 256x256 under 100 ms per clip; a bound above it rules "
              "out the design it describes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
