"""One command for every benchmark: writes ``BENCHMARKS.md`` (tables + plots).

Run::

    .venv/bin/python benchmarks/run.py              # everything (about 20-40 min on 2 cores)
    .venv/bin/python benchmarks/run.py --quick      # a small subset (what `make test` runs)
    .venv/bin/python benchmarks/run.py --only executors scaling

Every figure is measured here, in this run, and printed as min / median / max over
``--repeats`` repetitions; ratios are taken between executors measured in the same run on
the same clip. Nothing is asserted: goals are printed beside the figures.

Sections (each a function ``section_<name>(ctx) -> Section``):

* ``executors``: float torch model vs the golden integer reference vs onnxruntime on the
  integer ONNX graph, same clip (bundled svf-tiny; svf-small / svf-large at 224x224, T=8).
* ``compile``: compile time and peak RSS (a fresh subprocess per model) at 224x224, T=8.
* ``scaling``: reference and float cost vs T (2..32) and frame size, with the fitted
  exponent ``cost ~ T^p`` (must be ~1: joint attention is linear in T).
* ``accuracy``: bundled model accuracy vs weight bits and the per-layer spike agreement
  curve (plots).
* ``hardware``: Verilator simulation speed, cycle-model latency and utilisation for
  svf-small / svf-large, Yosys resources against the XCZU7EV (when the hardware package is
  installed).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: the paper's A6000 GPU latency for the svf-large pose clip (batch 1)
A6000_MS = {8: 235.0, 32: 1087.0}


@dataclass
class Stat:
    """Repeated measurements of one figure."""

    samples: list[float]

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def fmt(self, digits: int = 3) -> str:
        if len(self.samples) == 1:
            return f"{self.samples[0]:.{digits}g}"
        return f"{self.min:.{digits}g} / {self.median:.{digits}g} / {self.max:.{digits}g}"


@dataclass
class Section:
    title: str
    intro: str = ""
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def markdown(self) -> str:
        out = [f"## {self.title}", ""]
        if self.intro:
            out += [self.intro, ""]
        for head, rows in self.tables:
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "|".join("---" for _ in head) + "|")
            out += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("")
        out += [f"- {n}" for n in self.notes]
        if self.notes:
            out.append("")
        out += [f"![{p}]({p})" for p in self.plots]
        if self.plots:
            out.append("")
        return "\n".join(out)


@dataclass
class Ctx:
    quick: bool
    repeats: int
    synth: bool
    outdir: Path
    log: Callable[[str], None]


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> Stat:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return Stat(out)


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``log y`` on ``log x``: ``y ~ x^p``."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0])


def _zoo_model(name: str, T: int, frame: int):
    """A zoo model with random weights and randomised BN statistics (eval mode)."""
    import torch

    from compile_time import randomise_bn
    from svf_deploy.models import build_model

    torch.manual_seed(0)
    m = build_model(name, T=T, img_size=frame, max_T=max(16, T)).eval()
    randomise_bn(m)
    return m


def _bundled():
    from svf_deploy.api import BUNDLED_MODEL
    from svf_deploy.models.checkpoint import load_checkpoint

    model, ck = load_checkpoint(BUNDLED_MODEL)
    return model.eval(), ck


def _clip(model, frame: int | None = None, seed: int = 0):
    import torch

    cfg = model.cfg
    s = frame or cfg.img_size
    g = torch.Generator().manual_seed(seed)
    # frames on the 1/255 grid, as decoded video gives them
    return torch.randint(0, 256, (cfg.T, 1, cfg.in_channels, s, s), generator=g).double().float() / 255


# ----------------------------------------------------------------------------- sections


def section_executors(ctx: Ctx) -> Section:
    import torch

    from svf_deploy.compiler import reference
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model

    sec = Section("Executors side by side",
                  "Seconds per clip (batch 1) on the same clip, min / median / max; speed is "
                  "relative to the float torch model measured in the same run.")
    cases = [("svf-tiny (bundled)", None, None)]
    if not ctx.quick:
        cases += [("svf-small", "svf-small", 224), ("svf-large", "svf-large", 224)]
    rows = []
    onnx_note = None
    for label, zoo, frame in cases:
        if zoo is None:
            model, _ = _bundled()
        else:
            model = _zoo_model(zoo, 8, frame)
        x = _clip(model, frame)
        graph, _ = compile_model(model, CompileOptions(), frame_shape=tuple(x.shape[2:]))
        reps = 1 if zoo == "svf-large" else ctx.repeats
        with torch.no_grad():
            t_float = timed(lambda: model(x), reps)
        t_ref = timed(lambda: reference.run(graph, x), reps)
        t_ort = None
        try:
            t_ort, onnx_note = _onnx_int_timing(graph, x, reps, ctx)
        except ImportError as e:
            onnx_note = f"onnxruntime integer executor not available ({e})"
        ratio = t_float.median / t_ref.median
        rows.append([label, f"T={model.cfg.T}, {x.shape[-1]}x{x.shape[-1]}", t_float.fmt(), t_ref.fmt(),
                     f"{ratio:.2f}x", t_ort.fmt() if t_ort else "n/a",
                     f"{t_float.median / t_ort.median:.2f}x" if t_ort else "n/a"])
        ctx.log(f"executors: {label} float {t_float.median:.3f}s ref {t_ref.median:.3f}s")
        del graph, model
    sec.tables.append((["model", "clip", "float torch s", "golden reference s", "ref speed vs float",
                        "onnxruntime int s", "ort speed vs float"], rows))
    sec.notes.append("goal: golden reference >= 0.5x the float model's speed")
    if onnx_note:
        sec.notes.append(onnx_note)
    return sec


def _onnx_int_timing(graph, x, reps: int, ctx: Ctx):
    """Time onnxruntime on the integer ONNX graph (session built once, outside the timing;
    same thread count as torch). Raises ImportError when the exporter is not installed."""
    import onnxruntime as ort
    import torch

    from svf_deploy.exporters.onnx_int import export_int_onnx

    exp = export_int_onnx(graph, int(x.shape[0]))
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.log_severity_level = 3
    sess = ort.InferenceSession(exp.model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    feed = {"frames": np.ascontiguousarray(x.numpy(), dtype=np.float32)}
    paths = sorted(set(exp.conv_paths.values()))
    return timed(lambda: sess.run(names, feed), reps), f"onnxruntime conv paths: {', '.join(paths)}"


def _child_compile(name: str, frame: int, T: int) -> dict:
    """Run one compile in a fresh interpreter; returns seconds and peak RSS (MiB)."""
    code = (
        "import sys, time, resource, json; sys.path.insert(0, %r)\n"
        "from run import _zoo_model\n"
        "from svf_deploy.compiler.pipeline import CompileOptions, compile_model\n"
        "m = _zoo_model(%r, %d, %d)\n"
        "t0 = time.perf_counter()\n"
        "g, _ = compile_model(m, CompileOptions(), frame_shape=(m.cfg.in_channels, %d, %d))\n"
        "dt = time.perf_counter() - t0\n"
        # VmHWM: this process's own peak (ru_maxrss would carry the parent's peak over exec)
        "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "print(json.dumps({'seconds': dt, 'rss_mib': hwm / 1024, 'nodes': len(g.nodes)}))\n"
    ) % (str(HERE), name, T, frame, frame, frame)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def section_compile(ctx: Ctx) -> Section:
    sec = Section("Compile time and peak memory",
                  "Each compile runs in a fresh subprocess; peak RSS is that process's VmHWM "
                  "(model construction included).")
    cases = [("svf-tiny", 32, 4)] if ctx.quick else [("svf-small", 224, 8), ("svf-large", 224, 8)]
    rows = []
    for name, frame, T in cases:
        runs = [_child_compile(name, frame, T) for _ in range(1 if ctx.quick or name == "svf-large" else ctx.repeats)]
        s = Stat([r["seconds"] for r in runs])
        m = Stat([r["rss_mib"] for r in runs])
        rows.append([name, f"{frame}x{frame}, T={T}", str(runs[0]["nodes"]), s.fmt(), m.fmt(4)])
        ctx.log(f"compile: {name} {s.median:.1f}s {m.median:.0f} MiB")
    sec.tables.append((["model", "clip", "nodes", "compile s (min/med/max)", "peak RSS MiB"], rows))
    sec.notes.append("goals (issue 7): svf-small < 4 GB, svf-large < 10 GB peak RSS")
    return sec


def _sweep(name: str, points: list[tuple[int, int]], reps: int) -> tuple[list[Stat], list[Stat]]:
    """Float and reference seconds per clip at each ``(T, frame)`` point (fresh model each)."""
    import torch

    from svf_deploy.compiler import reference
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model

    fl, rf = [], []
    for T, frame in points:
        model = _zoo_model(name, T, frame)
        x = _clip(model, frame)
        graph, _ = compile_model(model, CompileOptions(), frame_shape=tuple(x.shape[2:]))
        with torch.no_grad():
            fl.append(timed(lambda: model(x), reps))
        rf.append(timed(lambda: reference.run(graph, x), reps))
    return fl, rf


def section_scaling(ctx: Ctx) -> Section:
    sec = Section("Scaling with T and frame size",
                  "Seconds per clip; `p` is the least-squares exponent of the median cost ~ x^p "
                  "(linear in T means p ~ 1).")
    name, frame = ("svf-tiny", 32) if ctx.quick else ("svf-small", 64)
    reps = 1 if ctx.quick else ctx.repeats
    sweeps = [("T", [2, 4, 8] if ctx.quick else [2, 4, 8, 16, 32], lambda v: (v, frame), lambda v: v,
               f"T ({name}, {frame}x{frame})"),
              ("pixels", [16, 32] if ctx.quick else [32, 64, 128], lambda v: (4, v), lambda v: v * v,
               f"frame ({name}, T=4)")]
    for axis, values, point, x_of, label in sweeps:
        fl, rf = _sweep(name, [point(v) for v in values], reps)
        xs = [x_of(v) for v in values]
        pf = fit_exponent(xs, [f.median for f in fl])
        pr = fit_exponent(xs, [r.median for r in rf])
        rows = [[str(v) if axis == "T" else f"{v}x{v}", f.fmt(), r.fmt()] for v, f, r in zip(values, fl, rf)]
        rows.append([f"exponent p (in {axis})", f"{pf:.2f}", f"{pr:.2f}"])
        sec.tables.append(([label, "float s", "reference s"], rows))
        sec.data[f"{axis}_exponent"] = {"float": pf, "reference": pr}
        ctx.log(f"scaling: exponent in {axis}: float {pf:.2f}, reference {pr:.2f}")
    sec.notes.append("joint attention is O(T N D^2): cost in pixels grows with N, so p ~ 1 there too; "
                     "tiny models (--quick) are dominated by per-call overhead, so p is well below 1")
    return sec


def section_accuracy(ctx: Ctx) -> Section:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from svf_deploy.compiler.fidelity import measure_fidelity
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model
    from svf_deploy.models import data as mdata

    model, ck = _bundled()
    x, y = mdata.make_split(mdata.MovingDigitsConfig.from_dict(ck["data"]), "val")
    n = 50 if ctx.quick else 500
    x, y = x[:n], y[:n]
    bits = [4, 8] if ctx.quick else [4, 5, 6, 8, 10, 12, 16]
    sec = Section("Accuracy vs weight bits (bundled model)",
                  f"{n} validation clips of the bundled task; float accuracy measured alongside.")
    rows, accs, per_layer = [], [], {}
    for b in bits:
        graph, _ = compile_model(model, CompileOptions(weight_bits=b, calibration=x[:8].transpose(0, 1)))
        f = measure_fidelity(model, graph, x, y)
        accs.append(f.int_accuracy)
        per_layer[b] = [(L.name, L.agreement) for L in f.layers]
        rows.append([str(b), f"{100 * f.float_accuracy:.1f} %", f"{100 * f.int_accuracy:.1f} %",
                     f"{100 * f.prediction_agreement:.1f} %", f"{100 * f.mean_agreement:.2f} %"])
        ctx.log(f"accuracy: {b} bits -> {100 * f.int_accuracy:.1f} %")
    sec.tables.append((["weight bits", "float acc", "integer acc", "same prediction", "mean spike agreement"], rows))
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
    ax[0].plot(bits, [100 * a for a in accs], "o-", label="integer")
    ax[0].axhline(100 * f.float_accuracy, color="gray", ls="--", label="float")
    ax[0].set_xlabel("weight bits")
    ax[0].set_ylabel("accuracy %")
    ax[0].legend()
    for b, layers in per_layer.items():
        ax[1].plot(range(len(layers)), [100 * a for _, a in layers], ".-", label=f"{b} b")
    ax[1].set_xlabel("neuron layer (input -> output)")
    ax[1].set_ylabel("spike agreement %")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    name = "bench-accuracy.png"
    fig.savefig(ctx.outdir / name, dpi=110)
    plt.close(fig)
    sec.plots.append(name)
    return sec


def section_hardware(ctx: Ctx) -> Section:
    sec = Section("Hardware", "Verilator simulation speed, cycle model and Yosys resources.")
    try:
        import hw_section  # benchmarks/hw_section.py: needs svf_deploy.hw and the simulators
    except ImportError as e:
        sec.notes.append(f"hardware benchmarks not available in this install ({e})")
        return sec
    return hw_section.section(ctx, Section, Stat, quick=ctx.quick, a6000_ms=A6000_MS)


SECTIONS = {"executors": section_executors, "compile": section_compile, "scaling": section_scaling,
            "accuracy": section_accuracy, "hardware": section_hardware}


def machine() -> list[tuple[str, str]]:
    import torch

    vers = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("onnxruntime", "amaranth", "cocotb", "verilator", "nir"):
        try:
            m = __import__(mod)
            vers[mod] = getattr(m, "__version__", "?")
        except ImportError:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [("date (UTC)", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")),
            ("machine", f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"),
            ("versions", ", ".join(f"{k} {v}" for k, v in vers.items()))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small subset, small sizes, one repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--synth", action="store_true",
                    help="also synthesise the whole production engine with Yosys (up to an hour; cached)")
    ap.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="run only these sections")
    ap.add_argument("-o", "--out", type=Path, default=HERE.parent / "BENCHMARKS.md")
    a = ap.parse_args(argv)
    out = a.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(quick=a.quick, repeats=1 if a.quick else max(1, a.repeats), synth=a.synth, outdir=out.parent,
              log=lambda s: print(s, file=sys.stderr, flush=True))
    names = a.only or list(SECTIONS)
    secs = []
    t0 = time.perf_counter()
    for name in names:
        ctx.log(f"== {name}")
        secs.append(SECTIONS[name](ctx))
    md = ["# svf-deploy benchmarks", "",
          f"Generated by `benchmarks/run.py{' ' + ' '.join(argv if argv is not None else sys.argv[1:]) if (argv or sys.argv[1:]) else ''}` "
          f"in {time.perf_counter() - t0:.0f} s (sections: {', '.join(names)}). "
          "Figures are min / median / max over repeats (one value: one run).", "",
          "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in machine()], ""]
    md += [s.markdown() for s in secs]
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(md) + "\n")
    os.replace(tmp, out)
    print("\n".join(md))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
