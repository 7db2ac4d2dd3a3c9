"""Asynchronous STOREs: which ``STORE`` may run beside the descriptors after it.

An asynchronous ``STORE`` (``mode & STORE_ASYNC``, :mod:`.isa` version 7) runs on the
engine's STORE machine while the sequencer fetches the next descriptors and runs the plain
``LOAD``/``LOADW`` descriptors among them; the first other descriptor waits until the STORE is done
(:mod:`.engine`, :func:`.cycles._costs`). That is exact iff none of those ``LOAD``/``LOADW`` descriptors

* writes an activation-buffer word the STORE reads (a LOADW writes the weight buffer only), or
* reads a DDR byte the STORE writes

(the STORE's own reads and writes are not ordered against theirs). :func:`mark_async_stores`
sets the bit on every STORE for which both hold, by interval tests on the transfers' runs
(a 2-D transfer's ``rows`` runs), and leaves the others synchronous.
"""

from __future__ import annotations

import bisect
import dataclasses

from . import isa
from .cycles import _runs as _ddr_starts
from .cycles import beside_store

__all__ = ["mark_async_stores", "store_conflicts"]


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


class _Footprint:
    """What a STORE reads (buffer words) and writes (DDR bytes)."""

    def __init__(self, store: dict):
        self.buf = _Intervals(_runs(store, True))
        self.ddr = _Intervals(_runs(store, False))

    def conflicts(self, op: int, f: dict, p_o: int) -> bool:
        if op == isa.OP_LOADW:
            d = int(f["ddr"])
            return self.ddr.hits(d, d + p_o * int(f["count"]))
        return any(self.buf.hits(lo, hi) for lo, hi in _runs(f, True)) or \
            any(self.ddr.hits(lo, hi) for lo, hi in _runs(f, False))


def store_conflicts(store: dict, op: int, f: dict, p_o: int) -> bool:
    """Whether descriptor ``(op, f)`` (a plain LOAD or a LOADW) running beside the STORE
    ``store`` could see or change what the STORE moves (module docstring)."""
    return _Footprint(store).conflicts(op, f, p_o)


def mark_async_stores(prog):
    """``prog`` with ``mode |= STORE_ASYNC`` on every STORE that no plain LOAD/LOADW before
    the next other descriptor conflicts with (:func:`store_conflicts`); the others keep
    their mode. Pure: a new :class:`~.program.Program` with new descriptor dicts and the
    changed ``mode`` words patched in a copy of the image (it starts with the descriptors)."""
    descs = prog.descriptors
    out = []
    image = prog.image.copy()
    words = image.view("<u4")
    for i, (op, f, node) in enumerate(descs):
        if op == isa.OP_STORE:
            fp = _Footprint(f)
            ok = True
            for op2, f2, _ in descs[i + 1:]:
                if not beside_store(op2, f2):
                    break
                if fp.conflicts(op2, f2, prog.cfg.p_o):
                    ok = False
                    break
            if ok:
                f = dict(f, mode=int(f.get("mode", 0)) | isa.STORE_ASYNC)
                words[i * isa.DESC_WORDS + isa.field_index(op, "mode")] = f["mode"]
        out.append((op, f, node))
    return dataclasses.replace(prog, descriptors=out, image=image)
