"""Peak memory and time of ``svf-compile`` with default options on real-size models.

For svf-small (15.1M) and svf-large (55.4M), 224x224, T = 8, joint Hamming attention
(published ``att_mode="3D_ham"``), ImageNet normalisation, 1000 classes: a checkpoint in
the published training layout (``{"model", "optimizer", "epoch", "scaler", "args"}``,
random weights with BN statistics) is written, then ``svf-compile CKPT -o OUT`` runs with
default options in a fresh subprocess whose peak RSS (``ru_maxrss`` of the child) and
wall and CPU time are measured (the machine's load average is printed: on a shared machine
the wall time exceeds CPU time / cores). Goals (issue 7): svf-small < 4 GB and < 5 min on 2 cores,
svf-large < 10 GB. Then, on the same svf-small clip, one float torch forward against one
integer golden-reference run (``reference.run``), each in its own subprocess, timed and
memory-measured: goal reference >= 0.5x the float model's speed.

Run: ``.venv/bin/python benchmarks/real_size_memory.py [--models svf-small svf-large]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
GOALS_GB = {"svf-small": 4.0, "svf-large": 10.0}


def make_checkpoint(name: str, path: Path) -> None:
    """A published-layout training checkpoint of ``name`` at 224x224, T=8 (random weights)."""
    import argparse as ap

    import torch

    from svf_deploy.models import build_model

    torch.manual_seed(0)
    m = build_model(name, T=8, attention="3D_ham")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                c = mod.num_features
                mod.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.5)
                mod.weight.copy_(torch.rand(c, generator=g) + 1.0)
                mod.bias.copy_(torch.randn(c, generator=g) * 0.2 + 0.2)
    torch.save({"model": m.state_dict(), "optimizer": {}, "epoch": 0, "scaler": {},
                "args": ap.Namespace(att_mode="3D_ham", time_steps=8, input_size=224, num_heads=8,
                                     mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])}, path)


def speed_probe(ckpt: str, what: str) -> None:
    """Child mode: one float forward or one reference run on one 224x224 T=8 clip."""
    import torch

    from svf_deploy.compiler import reference
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model
    from svf_deploy.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt)
    x = torch.rand(8, 1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    if what == "reference":
        graph, _ = compile_model(model, CompileOptions())
        del model
    t0 = time.perf_counter()
    with torch.no_grad():
        if what == "float":
            model(x)
        else:
            reference.run(graph, x)
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def run_probe(ckpt: Path, what: str) -> tuple[float, float]:
    """Peak RSS via a wrapper so each probe is measured alone: returns (seconds, GB)."""
    code = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
            "print(r.stdout.strip());print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
            "sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", code, sys.executable, __file__, "--probe", what, str(ckpt)],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{what} probe failed:\n{r.stderr}")
    out, kib = r.stdout.strip().splitlines()[-2:]
    return json.loads(out)["seconds"], int(kib) / 2 ** 20


def measured_compile(ckpt: Path, out: Path) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """``svf-compile CKPT -o OUT`` (default options) in a wrapper process that reports the
    child's wall seconds, CPU seconds (user + system) and peak RSS (GiB)."""
    code = ("import resource,subprocess,sys,time;t=time.perf_counter();"
            "r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
            "sys.stderr.write(r.stderr[-3000:]);"
            "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
            "print(time.perf_counter()-t);print(u.ru_utime+u.ru_stime);print(u.ru_maxrss);"
            "sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", code, str(BIN / "svf-compile"), str(ckpt), "-o", str(out),
                        "--quiet"], capture_output=True, text=True)
    lines = r.stdout.strip().splitlines()
    return float(lines[-3]), float(lines[-2]), int(lines[-1]) / 2 ** 20, r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["svf-small", "svf-large"])
    p.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.probe:
        return speed_probe(a.probe[1], a.probe[0])
    from rich.console import Console
    from rich.table import Table

    import torch

    cores = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for name in a.models:
            ck = d / f"{name}.pth"
            make_checkpoint(name, ck)
            secs, cpu, gb, r = measured_compile(ck, d / f"out-{name}")
            if r.returncode:
                raise SystemExit(f"svf-compile {name} failed ({r.returncode}):\n{r.stderr}")
            man = json.loads((d / f"out-{name}" / "manifest.json").read_text())
            rows.append((name, f"{secs:.0f} s", f"{cpu:.0f} s", f"{gb:.2f} GB", f"< {GOALS_GB[name]:.0f} GB",
                         "yes" if gb < GOALS_GB[name] else "NO", str(man["validation"]["clips"])))
            print(json.dumps({"model": name, "seconds": round(secs, 1), "cpu_seconds": round(cpu, 1),
                              "peak_rss_gb": round(gb, 3), "clips": man["validation"]["clips"],
                              "load_avg_1min": os.getloadavg()[0]}), flush=True)
        t = Table(title=f"svf-compile, default options, 224x224, T=8 ({cores} threads)")
        for c in ("model", "wall time", "CPU time", "peak RSS", "goal", "met", "validation clips"):
            t.add_column(c)
        for row in rows:
            t.add_row(*row)
        Console().print(t)
        if "svf-small" in a.models:
            ck = d / "svf-small.pth"
            tf, gf = run_probe(ck, "float")
            tr, gr = run_probe(ck, "reference")
            t = Table(title="one svf-small 224x224 T=8 clip")
            for c in ("executor", "seconds", "peak RSS (incl. loading, compile)"):
                t.add_column(c)
            t.add_row("float torch model", f"{tf:.2f}", f"{gf:.2f} GB")
            t.add_row("integer golden reference", f"{tr:.2f}", f"{gr:.2f} GB")
            Console().print(t)
            print(json.dumps({"float_s": round(tf, 2), "reference_s": round(tr, 2),
                              "reference_speed_vs_float": round(tf / tr, 3)}))
            print(f"reference speed = {tf / tr:.2f}x the float model's (goal >= 0.5x)")


if __name__ == "__main__":
    main()
