"""DDR traffic and descriptor count of the DDR-resident plan (hw/accel/tiling.py).

Run::

    .venv/bin/python benchmarks/ddr_traffic.py                      # svf-small/large at 224, 256
    .venv/bin/python benchmarks/ddr_traffic.py --model svf-large --size 256 --top 12

For each real-size model (random weights, compiled by the real pipeline, T = 8) on the
production engine: the program ``emit`` produces (plan auto), and per DMA opcode its
descriptors, the bytes it moves (``LOAD``/``STORE``: ``4 * count * rows``; ``LOADW``:
``P_o`` bytes per weight word), the cycles its machine is busy and the cycles it adds to the
program in the exact dense cycle model (asynchronous STOREs run beside other descriptors),
then the whole program's dense cycles and latency at the configuration's clock, and the
traffic's floor: its bytes at one AXI beat per cycle. ``--top N`` lists the N nodes with the
most DMA cycles on the program's timeline (where the traffic costs time).

Goal (issue 10, hw-design C1/C5): about 500 MB of DDR traffic per svf-large 256 clip.
Nothing is asserted here; figures are printed beside the goal.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path


def dma_bytes(op: int, f: dict, cfg) -> int:
    """Bytes a DMA descriptor moves: ``LOAD``/``STORE`` ``4 * count * rows`` (every run),
    ``LOADW`` ``P_o`` bytes per weight word; 0 for any other opcode."""
    from svf_deploy.hw.accel import isa

    if op == isa.OP_LOADW:
        return int(f["count"]) * cfg.p_o
    if op in (isa.OP_LOAD, isa.OP_STORE):
        return 4 * int(f["count"]) * max(1, int(f.get("rows", 1)))
    return 0


def breakdown(prog):
    """``(per opcode {name: [descriptors, bytes, busy cycles, timeline cycles]}, per node
    {name: [DMA timeline cycles, bytes]}, total cycles)`` of an emitted program, dense (every
    T-bundle non-zero). *Busy*: the cycles the DMA machine moves data
    (:func:`~svf_deploy.hw.accel.cycles.descriptor_cycles`, fetch included); *timeline*: the
    cycles the opcode adds to the program (:func:`~svf_deploy.hw.accel.cycles.cycles_by_opcode`:
    an asynchronous STORE costs its fetch plus any wait for it, the rest runs beside
    other descriptors). ``total`` is :func:`~svf_deploy.hw.accel.cycles.program_cycles`."""
    from svf_deploy.hw.accel import isa
    from svf_deploy.hw.accel.cycles import cycles_by_opcode, descriptor_cycles, program_cycles

    cfg = prog.cfg
    per_op: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    per_node: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for op, f, node in prog.descriptors:
        if op in (isa.OP_LOAD, isa.OP_STORE, isa.OP_LOADW):
            b = dma_bytes(op, f, cfg)
            r = per_op[isa.OPNAMES[op]]
            r[0] += 1
            r[1] += b
            r[2] += descriptor_cycles(op, f, cfg)
            per_node[node][1] += b
    for k, c in cycles_by_opcode(prog).items():
        if k in per_op:
            per_op[k][3] = c
    total, layers = program_cycles(prog)
    for lc in layers:
        if lc.name in per_node:
            per_node[lc.name][0] = lc.dma
    return per_op, per_node, total


def main(argv=None) -> int:
    from rich.console import Console
    from rich.table import Table

    sys.path.insert(0, str(Path(__file__).parent))
    from accel_latency import zoo_graph

    from svf_deploy.hw.accel import PRODUCTION
    from svf_deploy.hw.accel.program import emit

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="svf-small / svf-large (default both)")
    ap.add_argument("--size", type=int, action="append", help="224 / 256 (default both)")
    ap.add_argument("--top", type=int, default=0, help="list the N nodes with the most DMA cycles")
    a = ap.parse_args(argv)
    con = Console()
    cfg = PRODUCTION
    for name in a.model or ["svf-small", "svf-large"]:
        for size in a.size or [224, 256]:
            with con.status(f"compiling {name} {size}"):
                g = zoo_graph(name, size)
            t0 = time.time()
            with con.status(f"emitting {name} {size}"):
                prog = emit(g, cfg)
            dt = time.time() - t0
            per_op, per_node, total = breakdown(prog)
            t = Table(title=f"{name} {size}x{size} T={prog.T} on {cfg.name}: plan {prog.plan}, "
                            f"{len(prog.descriptors):,} descriptors, emit {dt:.0f} s")
            for col in ("DMA", "descriptors", "MB moved", "busy cycles", "program cycles", "share of program"):
                t.add_column(col, justify="right")
            for k in ("LOAD", "STORE", "LOADW"):
                d, b, busy, c = per_op.get(k, [0, 0, 0, 0])
                t.add_row(k, f"{d:,}", f"{b / 1e6:,.1f}", f"{busy:,}", f"{c:,}", f"{100 * c / total:.1f} %")
            mb = sum(v[1] for v in per_op.values()) / 1e6
            t.add_row("all DMA", f"{sum(v[0] for v in per_op.values()):,}", f"{mb:,.1f}",
                      f"{sum(v[2] for v in per_op.values()):,}", f"{sum(v[3] for v in per_op.values()):,}", "")
            con.print(t)
            floor = mb * 1e6 / (cfg.axi_data_width // 8) / (cfg.clock_mhz * 1e3)
            con.print(f"  whole program: {total:,} cycles dense = {total / (cfg.clock_mhz * 1e3):,.1f} ms at "
                      f"{cfg.clock_mhz:.0f} MHz; DDR traffic {mb:,.0f} MB per clip (goal for svf-large 256: ~500 MB), "
                      f"{floor:,.1f} ms at one {cfg.axi_data_width}-bit beat per cycle even if every transfer "
                      "ran beside compute")
            if a.top:
                tt = Table(title=f"top {a.top} nodes by DMA cycles on the program's timeline")
                for col in ("node", "op", "DMA cycles", "MB"):
                    tt.add_column(col, justify="right" if col != "node" else "left")
                for node, (c, b) in sorted(per_node.items(), key=lambda kv: -kv[1][0])[: a.top]:
                    op = g.node(node).op if node in g.types else ""
                    tt.add_row(node, op, f"{c:,}", f"{b / 1e6:,.1f}")
                con.print(tt)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
