"""Per-core FPGA resources at production parameters (Yosys synth_xilinx -family xcup).

Run: .venv/bin/python benchmarks/hw_resources.py [--only NAME] [--markdown FILE]

For every core of svf_deploy.hw.cores at the sizes of svf_deploy.hw.production: LUT, FF,
CARRY4, BRAM36, URAM, DSP48E2 (used as SIMD adders, USE_MULT=NONE), LUTRAM, the logic depth
(a timing proxy, Yosys does no timing: ltp = cells on the longest combinational path between
registers, RAMs, DSPs and ports, ltp_carry = the CARRY4 cells among them; see
svf_deploy.hw.synth.logic_depth) and multiplier cells (pre-mapping
$mul/$macc/$div/$mod/$pow plus DSPs with USE_MULT != NONE), which must be 0. Results are
cached per Verilog hash under build/synth/. Exits non-zero if any core has a multiplier.
"""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from svf_deploy.hw.production import PRODUCTION
from svf_deploy.hw.synth import synthesize

COLS = ("lut", "ff", "carry", "bram36", "uram", "dsp", "lutram", "ltp", "ltp_carry", "multipliers", "seconds")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="substring of the core names to synthesise")
    ap.add_argument("--markdown", help="also write the table as Markdown to this file")
    a = ap.parse_args()
    todo = {k: v for k, v in PRODUCTION.items() if not a.only or a.only in k}
    rows = []
    t0 = time.perf_counter()
    with Progress(console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task("synthesising", total=len(todo))
        for name, (desc, make) in todo.items():
            prog.update(task, description=f"synth {name}")
            r = synthesize(make(), name.split(" ")[0] + "-prod")
            rows.append((name, desc, r.as_dict()))
            prog.advance(task)
    table = Table(title="Per-core resources, Yosys synth_xilinx -family xcup (ZCU104 xczu7ev)")
    table.add_column("core")
    for c in COLS:
        table.add_column(c, justify="right")
    for name, _, d in rows:
        table.add_row(name, *(f"{d[c]:g}" if isinstance(d[c], float) else str(d[c]) for c in COLS))
    Console().print(table)
    print(f"total {time.perf_counter() - t0:.1f} s (cached results reused)")
    if a.markdown:
        lines = ["| core | " + " | ".join(COLS) + " |", "|---" * (len(COLS) + 1) + "|"]
        lines += ["| " + name + " | " + " | ".join(str(d[c]) for c in COLS) + " |" for name, _, d in rows]
        with open(a.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    bad = [name for name, _, d in rows if d["multipliers"]]
    if bad:
        print(f"MULTIPLIERS FOUND in: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
