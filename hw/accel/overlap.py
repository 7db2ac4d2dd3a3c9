"""Asynchronous STOREs: which ``STORE`` may run beside the descriptors after it.

An asynchronous ``STORE`` (``mode & STORE_ASYNC``, :mod:`.isa` version 8) runs on the
engine's STORE machine (the AXI write channels and the activation buffer's read port 2)
while the sequencer goes on with every descriptor up to the next ``STORE``, ``END`` or
fenced descriptor, which waits until it is done (:mod:`.engine`, :func:`.cycles._costs`). That is exact iff
none of those descriptors

* writes an activation-buffer word the STORE reads (:func:`buffer_writes`: a LOAD's runs,
  a compute unit's output), or
* reads a DDR byte the STORE writes (a LOAD's or LOADW's source)

(reads of the STORE's words and writes elsewhere are not ordered against it).
:func:`mark_async_stores` makes every STORE asynchronous and *fences* (:data:`.isa.FENCE`,
version 9) the first descriptor for which one fails, so that it waits for the STORE; the
tests are on intervals (a 2-D transfer's ``rows`` runs; buffer addresses modulo the
buffer's ``2**aw`` words, as the engine's address ports take them).
"""

from __future__ import annotations

import bisect
import dataclasses

from . import isa
from .cycles import _runs as _ddr_starts
from .cycles import beside_store

__all__ = ["buffer_writes", "mark_async_stores", "store_conflicts"]


def _runs(f: dict, buffer: bool) -> list[tuple[int, int]]:
    """``[lo, hi)`` of each run of a LOAD/STORE: buffer words, or DDR bytes."""
    n = int(f["count"])
    if buffer:
        a, st = int(f["addr"]), int(f.get("addr_stride", 0))
        return [(a + r * st, a + r * st + n) for r in range(max(1, int(f.get("rows", 1) or 1)))]
    return [(d, d + 4 * n) for d in _ddr_starts(f)]


class _Intervals:
    """A union of half-open intervals with an overlap test."""

    def __init__(self, runs):
        merged: list[list[int]] = []
        for lo, hi in sorted(r for r in runs if r[1] > r[0]):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.lo = [m[0] for m in merged]
        self.hi = [m[1] for m in merged]

    def hits(self, lo: int, hi: int) -> bool:
        i = bisect.bisect_right(self.lo, hi - 1) - 1
        return hi > lo and i >= 0 and self.hi[i] > lo


def _wrap(runs, cfg) -> list[tuple[int, int]]:
    """``[lo, hi)`` buffer intervals modulo the address space (``2**aw`` words) of the
    activation buffer, split where they wrap; one longer than the space is all of it."""
    space = 1 << max(1, (cfg.act_depth - 1).bit_length())
    out = []
    for lo, hi in runs:
        if hi <= lo:
            continue
        if hi - lo >= space:
            return [(0, space)]
        lo2, hi2 = lo % space, (lo % space) + (hi - lo)
        out += [(lo2, hi2)] if hi2 <= space else [(lo2, space), (0, hi2 - space)]
    return out


def buffer_writes(op: int, f: dict, cfg) -> list[tuple[int, int]]:
    """The activation-buffer words descriptor ``(op, f)`` may write, as ``[lo, hi)``
    intervals (a superset, exact for the transfers):

    * ``LOAD`` (plain or accumulating): its runs;
    * ``CONV``: per ``P_o`` tile ``k`` of ``oc_start..oc_end`` (``lanes`` channels) the hull
      ``outb + k*otile + [0, (lanes-1)*hwout_t + hout*wout*t)`` of its integer map, or
      ``... + hout*wout)`` of its spike bundles with ``lflags & LFLAG_WB``;
    * ``LIF``: ``outb + [0, c*hw)``; ``EW``: ``outb + [0, n)``; ``REDUCE``:
      ``outb + [0, n0*n1)``;
    * ``SDHA``: per head ``h`` the hull ``outb + h*hwdt + [0, (d-1)*hwt + ntok*t)``;
    * ``LOADW``, ``STORE``, ``HEADER``, ``END``: none (a LOADW and the SDHA scratch write
      the weight buffer)."""
    g = lambda k: int(f.get(k, 0))        # noqa: E731
    if op == isa.OP_LOAD:
        runs = _runs(f, True)
    elif op == isa.OP_CONV:
        lanes_all = g("oc_end") - g("oc_start")
        npix, per = g("hout") * g("wout"), (1 if g("lflags") & isa.LFLAG_WB else max(1, g("t")))
        runs = []
        for k in range(-(-lanes_all // cfg.p_o)):
            lanes = min(cfg.p_o, lanes_all - k * cfg.p_o)
            base = g("outb") + k * g("otile")
            runs.append((base, base + (lanes - 1) * g("hwout_t") + npix * per))
    elif op == isa.OP_LIF:
        runs = [(g("outb"), g("outb") + g("c") * g("hw"))]
    elif op == isa.OP_EW:
        runs = [(g("outb"), g("outb") + g("n"))]
    elif op == isa.OP_REDUCE:
        runs = [(g("outb"), g("outb") + g("n0") * g("n1"))]
    elif op == isa.OP_SDHA:
        span = (g("d") - 1) * g("hwt") + g("ntok") * g("t")
        runs = [(g("outb") + h * g("hwdt"), g("outb") + h * g("hwdt") + span) for h in range(g("heads"))]
    elif op in (isa.OP_LOADW, isa.OP_STORE, isa.OP_HEADER, isa.OP_END):
        runs = []
    else:
        raise ValueError(f"buffer_writes: unknown opcode {op}")
    return _wrap(runs, cfg)


def _ddr_reads(op: int, f: dict, cfg) -> list[tuple[int, int]]:
    """DDR bytes a LOAD/LOADW reads (none for the others)."""
    if op == isa.OP_LOADW:
        d = int(f["ddr"])
        return [(d, d + cfg.p_o * int(f["count"]))]
    return _runs(f, False) if op == isa.OP_LOAD else []


class _Footprint:
    """What a STORE reads (buffer words) and writes (DDR bytes)."""

    def __init__(self, store: dict, cfg):
        self.cfg = cfg
        self.buf = _Intervals(_wrap(_runs(store, True), cfg))
        self.ddr = _Intervals(_runs(store, False))

    def conflicts(self, op: int, f: dict) -> bool:
        return any(self.buf.hits(lo, hi) for lo, hi in buffer_writes(op, f, self.cfg)) or \
            any(self.ddr.hits(lo, hi) for lo, hi in _ddr_reads(op, f, self.cfg))


def store_conflicts(store: dict, op: int, f: dict, cfg) -> bool:
    """Whether descriptor ``(op, f)`` running beside the STORE ``store`` could change what
    the STORE moves (module docstring); ``cfg`` the engine's :class:`~.config.AccelConfig`."""
    return _Footprint(store, cfg).conflicts(op, f)


def mark_async_stores(prog):
    """``prog`` with ``mode |= STORE_ASYNC`` on every STORE, and ``fence`` (:data:`.isa.FENCE`,
    word 0 bit 31) on the first descriptor before the next ``STORE``/``END`` that conflicts
    with it (:func:`store_conflicts`), so that it waits for the STORE machine: the STORE
    runs beside every descriptor before that one. A STORE whose very next descriptor
    conflicts stays synchronous (a fence there would wait as long). Pure: a new
    :class:`~.program.Program` with new descriptor dicts and the changed words patched in a
    copy of the image (it starts with the descriptors)."""
    descs = [(op, dict(f), node) for op, f, node in prog.descriptors]
    image = prog.image.copy()
    words = image.view("<u4")
    for i, (op, f, node) in enumerate(descs):
        if op != isa.OP_STORE:
            continue
        fp = _Footprint(f, prog.cfg)
        hit = None
        for j in range(i + 1, len(descs)):
            op2, f2, _ = descs[j]
            if not beside_store(op2, f2):
                break
            if fp.conflicts(op2, f2):
                hit = j
                break
        if hit == i + 1:
            continue
        f["mode"] = int(f.get("mode", 0)) | isa.STORE_ASYNC
        words[i * isa.DESC_WORDS + isa.field_index(op, "mode")] = f["mode"]
        if hit is not None:
            op2, f2, _ = descs[hit]
            f2["fence"] = 1
            words[hit * isa.DESC_WORDS] = isa.word0(op2, f2)
    return dataclasses.replace(prog, descriptors=descs, image=image)
