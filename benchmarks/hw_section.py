"""The ``hardware`` section of ``benchmarks/run.py``.

* Verilator simulation speed per core (the catalogue of ``svf_deploy.sim.catalogue``, one
  cached build for all) and for the whole bundled model on the CI engine.
* The cycle model's latency and adder utilisation for svf-small / svf-large at 224 and 256,
  T = 8 and 32, beside the ideal bound and the paper's A6000 GPU figures.
* Yosys resources: per core at production parameters (``hw_resources.py``, cached) and, with
  ``--synth``, the production engine against the XCZU7EV.

The accelerator figures come from ``accel_latency.py --json`` run as a subprocess (its own
progress goes to stderr), so this page and that script always agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def core_speeds(repeats: int, beats_per_core: int = 4000) -> list[list[str]]:
    """Input beats per second (free-flowing: one beat per cycle) per core under Verilator,
    cocotb launch included; ``repeats`` runs each."""
    from svf_deploy.sim import cases as C
    from svf_deploy.sim.bundle import Bundle
    from svf_deploy.sim.catalogue import CORES
    from svf_deploy.sim.verilator import build

    b = Bundle({name: spec[0]() for name, spec in CORES.items()})
    vb = build(b, "cores")
    rows = []
    for name, (_, fn, modes, _) in CORES.items():
        rng = np.random.default_rng(0)
        parts, beats = [], 0
        while beats < beats_per_core:
            c = fn(b.cores[name], rng, modes[len(parts) % len(modes)])
            parts.append(c)
            beats += sum(len(v) for v in c.inputs.values())
        case = b.case(name, C.concat(parts))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            C.run_case(b, case, vb.run)
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        rows.append([name, f"{beats:,}", f"{min(times):.2f} / {med:.2f} / {max(times):.2f}",
                     f"{beats / med:,.0f}"])
    return rows


def section(ctx, Section, Stat, *, quick: bool, a6000_ms: dict) -> "Section":
    sec = Section("Hardware", "Verilator simulation speed, the cycle model's latency against the "
                  "ideal bound and the paper's A6000 GPU, and Yosys resources against the XCZU7EV.")
    rows = core_speeds(1 if quick else ctx.repeats, 1000 if quick else 4000)
    sec.tables.append((["core (sim/catalogue)", "input beats", "s (min/med/max)", "beats/s"], rows))
    sec.notes.append("per-core runs go through cocotb's Python testbench beat by beat; launch included")

    with tempfile.TemporaryDirectory() as d:
        js = Path(d) / "accel.json"
        cmd = [sys.executable, str(HERE / "accel_latency.py"), "--json", str(js)]
        if quick:
            cmd.append("--quick")
        if ctx.synth:
            cmd.append("--synth")
        ctx.log("hardware: " + " ".join(Path(c).name for c in cmd[1:]))
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        acc = json.loads(js.read_text())

    v = acc.get("verilator")
    if v:
        sec.tables.append((["bundled model on the CI engine", "cycles (Verilator)", "cycle model",
                            "model error", "Verilator cycles/s", "compared", "mismatches"],
                           [["svf-tiny-digits, T=4, 32x32", f"{v['cycles']:,}", f"{v['predicted_cycles']:,}",
                             f"{100 * v['cycle_model_error']:+.3f} %", f"{v['verilator_cycles_per_s']:,}",
                             f"{v.get('compared', 'n/a')}", f"{v.get('mismatches', 'n/a')}"]]))
    rows = []
    for p in acc.get("predictions", []):
        gpu = a6000_ms.get(p["T"]) if (p["model"], p["size"]) == ("svf-large", 256) else None
        rows.append([p["model"], str(p["size"]), str(p["T"]), p["engine"], f"{p['adds'] / 1e9:.1f}",
                     f"{p['ms']:,.1f}", f"{p['ideal_ms']:,.1f}", f"{100 * p['utilisation']:.1f} %",
                     f"{gpu:,.0f} ms (engine {p['ms'] / gpu:.3g}x its latency)" if gpu else ""])
    sec.tables.append((["model", "size", "T", "engine", "G adds/clip", "ms/clip", "ideal ms",
                        "adder utilisation", "A6000 (paper, svf-large pose clip)"], rows))
    sec.notes.append("goal (issue 10): svf-large, T=8, 256x256 under 100 ms per clip, utilisation above 70 %")
    sec.notes.append("synthetic-spike rows: every spike map's T-bundles zero independently at the bundled "
                     "model's rate (the analog stem's bit-planes non-zero); their ideal ms and utilisation "
                     "count the dense additions (skipped ones as done)")
    skip = acc.get("bundled_bundle_sparsity_mean")
    if skip is not None:
        sec.notes.append(f"all-zero T-bundles in the bundled model's spike maps: {100 * skip:.1f} % (mean over layers)")
    r = acc.get("resources")
    if r:
        from svf_deploy.hw.accel import XCZU7EV

        sec.tables.append((["production engine (Yosys)", "used", "XCZU7EV", "utilisation"],
                           [[k, f"{r[k]:,.0f}", f"{cap:,}", f"{100 * r[k] / cap:.1f} %"]
                            for k, cap in XCZU7EV.items() if k in r]
                           + [["multiplier cells", str(r.get("multipliers")), "0 required", ""]]))
        from svf_deploy.hw.accel import PRODUCTION as ENGINE
        from svf_deploy.targets.zcu104 import logic_depth_line

        sec.notes.append(f"clock: the ms figures take the configuration's {ENGINE.clock_mhz:g} MHz target; "
                         f"Yosys does no timing, and {logic_depth_line(r)}")
    if not quick:
        md = HERE.parent / "build" / "hw_resources.md"
        md.parent.mkdir(exist_ok=True)
        subprocess.run([sys.executable, str(HERE / "hw_resources.py"), "--markdown", str(md)], check=True,
                       stdout=subprocess.DEVNULL)
        lines = md.read_text().strip().splitlines()
        head = [c.strip() for c in lines[0].strip("|").split("|")]
        body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
        sec.tables.append((head, body))
    return sec
