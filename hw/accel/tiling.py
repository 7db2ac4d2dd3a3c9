"""The DDR-resident memory plan: every tensor in DDR, tiles through the activation buffer.

:func:`emit_ddr` lowers an integer graph whose live tensors do not fit on chip (the
``"chip"`` plan of :mod:`.program`) to a program that keeps every node's output in DDR
and runs each node on tiles that fit ``act_depth``:

* **CONV** (and Linear as a 1x1 conv): input channels in *groups* whose ``P_o``-channel
  weight tile fits the weight buffer; per group, output channels in *chunks* of whole
  ``P_o`` tiles (one ``LOADW`` each); output rows in *slabs* of ``ys`` rows whose input
  rows are loaded once, each run as *sub-bands* of ``hb`` rows (one ``CONV`` and one output
  tile each), so the input halo is re-read per slab, not per output tile (a 7x7 conv with
  1-row output tiles read every input row 7 times). Band ``[y0, y1)`` reads input rows
  ``[lo, hi) = [max(0, y0*s - p), min(H, (y1-1)*s - p + K))``, and runs with ``h = hi - lo``
  and top padding ``pad_y = lo - (y0*s - p)``: output row ``oy`` of the band reads band row
  ``oy*s - pad_y + ky``, i.e. frame row ``(y0 + oy)*s - p + ky`` - the whole conv,
  restricted to rows ``[y0, y1)``; a sub-band's ``CONV`` points ``inb`` at its first row in
  the slab and keeps the slab's channel stride ``hw = h_slab * w``. Loop order per group:
  *weights stationary* (chunk, column tile, slab: each chunk's weights loaded once, the
  input once per chunk) or *input stationary* (column tile, slab, chunk: the input loaded
  once, each chunk's weights once per slab), whichever the cost estimate prefers. Output
  tiles either share one room of the buffer or alternate between two (the planner prices
  both: two rooms make tiles smaller, but let a tile's asynchronous STOREs run beside the
  next tile's CONV, :mod:`.overlap`; with one room they alternate anyway where two fit). The
  tile's integer output is stored channel by channel. When even a 1-row band of the whole width
  does not fit, output columns are tiled the same way (``w`` = loaded columns, ``pad`` =
  the tile's left padding; loads and stores then go row by row). Group ``g > 0`` (zero bias)
  adds the stored partial sums onto its tile with accumulating ``LOAD`` descriptors (:mod:`.isa`
  version 7: one pass over DDR, no ``EW``, no second tile region), exact: every partial sum
  is bounded by the proved bound of the whole sum (interval arithmetic), which fits 32 bits.
* **LIF / EW / REDUCE**: channel ranges (parameters loaded per node, the descriptor's
  parameter base at the range's offset), or pixel ranges of one channel when one channel
  does not fit. **SDHA**: groups of whole heads (a head's q/k/v channels are contiguous);
  when one head does not fit, per head one ``SDHA`` builds kv from its whole K and V
  (``mode`` 2) and then ``SDHA``s over token ranges reuse it (``mode`` 1): each Q channel's
  range is one ``LOAD``, each output channel's range one ``STORE`` (:mod:`.isa`). Refused
  only when a head's K and V, or one token's Q and output, do not fit.
* **Fusion** (``Program.fused``): a conv whose only consumer is an IntLIF (and whose integer
  map is not stored) runs that LIF on each finished integer tile in the buffer and stores
  only the spikes, when every spike store starts on a beat; with one input-channel group
  and ``T <= P_t`` the CONV itself applies the LIF on its write-back (``lflags &
  LFLAG_WB``, :mod:`.isa` version 6) and writes the spike tile: no integer tile in the
  buffer, no ``LIF`` descriptor (the tile-size estimate counts the smaller tile and the
  write-back's cost). A conv whose map has other readers too (a residual ``Add``) runs its
  IntLIF on each finished tile as well, and stores both the map and the spikes (the LIF
  does not reload the map from DDR). An SDHA whose only reader is an IntLIF
  (``attn_lif``) runs it on each output tile (whole heads or a token range, ranges then a
  multiple of the beat's words) and stores only the spikes. Else a conv whose only consumer
  is a Requant and/or an Add with a map computed before the conv runs them as the tile's
  *epilogue*: ``EW`` mode 1 (shift ``s`` of the tile's channels), then the other operand's
  tile is added by accumulating ``LOAD`` descriptors onto it (when its runs start on beats, i.e.
  ``u | T``; else it is loaded beside the tile and added by ``EW`` mode 0); only the
  chain's last map is stored (the residual stream's conv -> requant -> add is one pass
  instead of three over DDR). A standalone ``Add`` loads ``a`` and adds ``b`` the same way.

DMA: consecutive runs of one node in one DDR region fold into one descriptor when that
moves the same words in the same order (:func:`emit_ddr`'s ``merge``): adjacent runs into
a longer one, equal runs one stride apart into a 2-D ``LOAD``/``STORE`` (a band's channels,
a column tile's rows, a tile's output channels: one descriptor instead of one per run).

Invariants: the bands of a chunk partition ``[0, hout)``, the chunks partition
``[0, cout)``, the groups partition ``[0, cin)``, so every output element is written once
per group; DMA stores start on an AXI beat (refused by name otherwise); loads start on the
beat below their DDR address and write the ``< beats`` extra leading words into slack
left before each buffer region (per-channel band loads run in decreasing channel order,
so a load's leading words fall on a slot loaded after it). Tile sizes are chosen among all
that fit by a cycle estimate built from :mod:`.cycles` (the DMA with its bursts in flight,
descriptor fetches, dense ``CONV`` tiles, partial-sum adds, LIFs, epilogues); a layer that
does not fit even with 1-row bands, one ``P_o`` tile and one input channel is refused with
the words needed.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np

from ...compiler import ir
from ...models.errors import HardwareError
from . import isa
from .config import AccelConfig
from .cycles import FETCH_OVERHEAD, conv_cycles, dma_read, dma_write, ew_cycles, lif_cycles
from .program import (PLANES, LayerStats, Program, TensorPlacement, _align, _reject,
                      _weight_words, lif_flags, placements, sdha_scratch)

__all__ = ["emit_ddr", "bands", "band_rows"]

REGIONS = ("program", "weights", "params", "input", "outputs", "scratch")


def band_rows(y0: int, y1: int, H: int, k: int, stride: int, pad: int) -> tuple[int, int, int]:
    """Input rows ``(lo, h, pad_y)`` a conv band of output rows ``[y0, y1)`` reads."""
    first = y0 * stride - pad
    lo = max(0, first)
    hi = min(H, (y1 - 1) * stride - pad + k)
    return lo, max(0, hi - lo), lo - first


def bands(hout: int, hb: int) -> list[tuple[int, int]]:
    """``[y0, y1)`` bands of at most ``hb`` rows covering ``[0, hout)``."""
    return [(y, min(hout, y + hb)) for y in range(0, hout, hb)]


class _Heap:
    """First-fit byte allocator over the DDR scratch region (128-byte granules)."""

    def __init__(self):
        self.free: list[tuple[int, int]] = []
        self.top = 0
        self.size = 0          # high-water mark

    def alloc(self, nbytes: int) -> int:
        n = _align(max(nbytes, 1), 128)
        for i, (a, m) in enumerate(self.free):
            if m >= n:
                self.free[i] = (a + n, m - n)
                if self.free[i][1] == 0:
                    self.free.pop(i)
                return a
        a = self.top
        self.top += n
        self.size = max(self.size, self.top)
        return a

    def release(self, a: int, nbytes: int) -> None:
        self.free.append((a, _align(max(nbytes, 1), 128)))
        self.free.sort()
        merged: list[tuple[int, int]] = []
        for b, m in self.free:
            if merged and merged[-1][0] + merged[-1][1] == b:
                merged[-1] = (merged[-1][0], merged[-1][1] + m)
            else:
                merged.append((b, m))
        if merged and merged[-1][0] + merged[-1][1] == self.top:
            self.top = merged.pop()[0]
        self.free = merged


def _pow2_down(n: int) -> list[int]:
    out = []
    while n >= 1:
        out.append(n)
        n //= 2
    return out


def emit_ddr(graph: ir.Graph, cfg: AccelConfig, T: int, store_ints: bool = False, *,
             act_words: int | None = None, wbuf_words: int | None = None,
             sdha_tokens: int | None = None) -> Program:  # noqa: C901
    """The DDR-resident plan of ``graph`` on ``cfg`` (module docstring); ``check_supported``
    has already passed. ``act_words`` / ``wbuf_words`` restrict the program to the first
    words of the buffers (the same RTL runs it: small tiles without another build);
    ``sdha_tokens`` caps the SDHA token ranges (heads that fit are split too)."""
    if sdha_tokens is not None and int(sdha_tokens) < 1:
        raise HardwareError(f"sdha_tokens must be a positive number of tokens, not {sdha_tokens!r}")
    P, u = cfg.p_o, cfg.units_per_beat
    D = cfg.act_depth if act_words is None else min(int(act_words), cfg.act_depth)
    WB = cfg.wbuf_depth if wbuf_words is None else min(int(wbuf_words), cfg.wbuf_depth)
    S = u                      # slack words before every region a load writes
    beat = 4 * u
    tchunks = -(-T // cfg.p_t)
    F = FETCH_OVERHEAD + dma_read(isa.DESC_WORDS, cfg)

    @lru_cache(maxsize=None)
    def _xfer(units: int, rows: int, write: bool) -> int:
        """The engine's DMA (:func:`~.cycles.dma_read`/``dma_write``, ``cfg.outstanding``
        bursts in flight, the planner's DDR latency 0) of one transfer of ``rows`` runs of
        ``units`` words, the runs back to back in DDR (latency 0 and several bursts in
        flight: the cost does not depend on where the pages fall)."""
        step = -(-units // u) * beat
        return (dma_write if write else dma_read)(units, cfg, 0, [r * step for r in range(rows)])

    def rd(units: int, rows: int = 1) -> int:   # a LOAD of rows x units (a misaligned leading beat a run)
        return F + _xfer(units + (u if u > 1 else 0), rows, False)

    def rdw(units: int) -> int:                 # a LOADW of units (weight chunks start on a beat)
        return F + _xfer(units, 1, False)

    def wr(units: int, rows: int = 1) -> int:   # a STORE of rows x units
        return F + _xfer(units, rows, True)

    descs: list = []
    relocs: list = []
    fix: list[tuple[int, str]] = []       # (descriptor index, DDR region of its "ddr" field)
    windows: dict[int, tuple[int, int, int]] = {}
    traffic: dict[str, int] = {}
    peak = 0

    def add(op, node="", **fields) -> int:
        descs.append((op, fields, node))
        return len(descs) - 1

    def dma(op, node, region, off, addr, count, mode=0):
        traffic[node] = traffic.get(node, 0) + 4 * count * (P // 4 if op == isa.OP_LOADW else 1)
        if op != isa.OP_LOADW and fix and fix[-1] == (len(descs) - 1, region) and descs[-1][0] == op \
                and descs[-1][2] == node and descs[-1][1].get("mode", 0) == mode \
                and merge(descs[-1][1], off, addr, count):
            return
        i = add(op, node, ddr=off, addr=addr, count=count, **({"mode": mode} if mode else {}))
        relocs.append((i, isa.field_index(op, "ddr")))
        fix.append((i, region))

    def merge(f: dict, off: int, addr: int, count: int) -> bool:
        """Folds the run ``(off, addr, count)`` into the LOAD/STORE ``f`` issued just before
        it (same node and region) when the result moves the same words in the same order:
        a run adjacent in DDR and in the buffer lengthens it (above or below), a run of the
        same length one stride on turns it into a 2-D transfer (:mod:`.isa` version 5)."""
        rows, c = f.get("rows", 1), f["count"]
        if rows == 1 and off == f["ddr"] + 4 * c and addr == f["addr"] + c:
            f["count"] = c + count
        elif rows == 1 and off + 4 * count == f["ddr"] and addr + count == f["addr"]:
            f.update(ddr=off, addr=addr, count=c + count)
        elif count != c:
            return False
        elif rows == 1:
            f.update(rows=2, ddr_stride=off - f["ddr"], addr_stride=addr - f["addr"])
        elif off == f["ddr"] + rows * f["ddr_stride"] and addr == f["addr"] + rows * f["addr_stride"]:
            f["rows"] = rows + 1
        else:
            return False
        return True

    def load(node, loc, word_off, addr, count):
        region, base = loc
        off = base + 4 * word_off
        mis = (off % beat) // 4
        if addr - mis < 0:
            raise AssertionError("load slack missing")
        dma(isa.OP_LOAD, node, region, off - 4 * mis, addr - mis, count + mis)

    def on_beat(loc) -> bool:
        """Every run of an integer map at ``loc`` (offsets multiples of ``T`` words) starts on
        a beat: an accumulating LOAD of it writes exactly its own words (no leading slack)."""
        return T % u == 0 and loc[1] % beat == 0

    def load_acc(node, loc, word_off, addr, count):
        """``buf[addr + i] += map[word_off + i]``: an accumulating LOAD (isa version 7)."""
        off = loc[1] + 4 * word_off
        if off % beat:
            raise AssertionError("accumulating load off the beat")
        dma(isa.OP_LOAD, node, loc[0], off, addr, count, mode=isa.LOAD_ACC)

    def store(n: ir.Node, loc, word_off, addr, count):
        region, base = loc
        off = base + 4 * word_off
        if off % beat:
            raise _reject(n, f"a DDR store at byte {off} is not aligned to the {beat}-byte AXI beat",
                          f"use T a multiple of {u} or the on-chip plan")
        dma(isa.OP_STORE, n.name, region, off, addr, count)

    def nofit(n: ir.Node, need: int, what: str) -> HardwareError:
        return _reject(n, f"needs {need} activation words ({what}); the activation buffer holds {D}",
                       "use a configuration with a larger act_depth")

    # ---- parameters: one 128-byte aligned block per node, loaded to buffer address 0
    pblocks: list[np.ndarray] = []
    poff: dict[str, tuple[int, int]] = {}   # node -> (byte offset in params, words)
    ppos = 0
    for n in graph.nodes:
        if isinstance(n, (ir.Conv, ir.Linear)):
            cout = n.weight.shape[0]
            cp = -(-cout // P) * P
            bias = np.zeros(cout, np.int64) if n.bias is None else np.asarray(n.bias, np.int64)
            v = np.concatenate([bias, np.zeros(2 * cp - cout, np.int64)])   # bias | zeros
        elif isinstance(n, ir.IntLIF):
            v = np.stack([n.theta, n.bias, n.polarity], 1).astype(np.int64).ravel()
        elif isinstance(n, ir.Requant):
            v = np.asarray(n.shift, np.int64).ravel()
        else:
            continue
        w = v.astype(np.int32).view(np.uint32)
        if w.size + 2 * S > D:
            raise nofit(n, w.size + 2 * S, "its parameters")
        poff[n.name] = (ppos, w.size)
        pblocks.append(w)
        ppos += _align(4 * w.size, 128)
        pad = _align(4 * w.size, 128) - 4 * w.size
        if pad:
            pblocks.append(np.zeros(pad // 4, np.uint32))

    def pload(n: ir.Node, addr: int = 0) -> int:
        if n.name not in poff:
            return 0
        o, w = poff[n.name]
        dma(isa.OP_LOAD, n.name, "params", o, addr, w)
        return w

    # ---- tensors: DDR homes (stored ones in "outputs", the rest in reused scratch)
    last, tensors, stored = placements(graph, T, store_ints)
    outputs = tuple(graph.outputs)
    out_off: dict[str, int] = {}
    o_acc = 0
    for name in stored:
        out_off[name] = o_acc
        o_acc += _align(4 * tensors[name].words, 128)
    heap = _Heap()
    loc: dict[str, tuple[str, int]] = {graph.input.name: ("input", 0)}

    # ---- weights: per conv and input-channel group, tile-major words
    wimg: list[np.ndarray] = []
    woff: dict[tuple[str, int], int] = {}
    wpos = 0

    def put_weights(name: str, g: int, w: np.ndarray) -> None:
        nonlocal wpos
        words = _weight_words(w, P).view(np.uint8).ravel()
        woff[(name, g)] = wpos
        wimg.append(words)
        size = _align(words.size, 128)
        if size > words.size:
            wimg.append(np.zeros(size - words.size, np.uint8))
        wpos += size

    add(isa.OP_HEADER, magic=isa.MAGIC, version=isa.VERSION, n_desc=0)
    stats: list[LayerStats] = []
    consumers: dict[str, list[ir.Node]] = {}
    for n in graph.nodes:
        for s_ in n.inputs:
            consumers.setdefault(s_, []).append(n)
    fused: set[str] = set()        # LIF nodes run inside their conv's tiles

    def release_inputs(i: int, n: ir.Node) -> None:
        for s_ in set(n.inputs):
            if last.get(s_) == i and loc.get(s_, ("", 0))[0] == "scratch":
                heap.release(loc[s_][1], 4 * tensors[s_].words)

    for i, n in enumerate(graph.nodes):
        t = graph.types[n.name]
        tw = tensors[n.name].words
        if isinstance(n, ir.Input):
            stats.append(LayerStats(n.name, n.op, "DMA", 0, 0, 0, 0))
            continue
        if n.name in fused:
            stats.append(LayerStats(n.name, n.op, n.op, 0, 0, int(traffic.get(n.name, 0)), 0))
            release_inputs(i, n)
            continue
        loc[n.name] = ("outputs", out_off[n.name]) if n.name in out_off else ("scratch", heap.alloc(4 * tw))
        dst = loc[n.name]
        pw = pload(n)
        dense = wbytes = 0
        unit = n.op
        used = pw
        if isinstance(n, (ir.Conv, ir.Linear)):
            unit = "CONV"
            src = graph.types[n.inputs[0]]
            w4 = np.asarray(n.weight if n.weight.ndim == 4 else n.weight.reshape(n.weight.shape + (1, 1)))
            cout, cin, k = int(w4.shape[0]), int(w4.shape[1]), int(w4.shape[2])
            if isinstance(n, ir.Conv):
                H, W = src.shape[1:]
                hout, wout = t.shape[1:]
                s, pad = n.stride, n.padding
            else:
                H = W = hout = wout = s = 1
                pad = 0
            planes = PLANES if src.kind == "analog" else 1
            plog2 = 3 if planes > 1 else 0
            kk = k * k
            tiles = -(-cout // P)
            hwt = wout * T

            # conv -> LIF fusion: the LIF runs on each integer tile in the buffer and only
            # its spikes go to DDR (the conv's integer map never leaves the chip)
            cons = consumers.get(n.name, [])
            lif = cons[0] if (len(cons) == 1 and isinstance(cons[0], ir.IntLIF) and n.name not in out_off
                              and cons[0].name in out_off) else None
            # ... also beside other readers of the map (a residual Add): the LIF runs on each
            # tile and the map is stored as well (keep_int), so the LIF does not reload it
            keep_int = False
            if lif is None and len(cons) > 1 and n.name not in out_off:
                lifs = [x for x in cons if isinstance(x, ir.IntLIF) and x.name in out_off]
                if len(lifs) == 1:
                    lif, keep_int = lifs[0], True
            lpw = poff[lif.name][1] if lif is not None else 0
            # else conv -> [Requant] -> [Add with an earlier map] epilogue on the tile: the
            # requant shift (EW mode 1) and the residual add (EW mode 0, the other operand's
            # tile loaded) run in the buffer and only the chain's last map goes to DDR
            rq = ad = None
            if lif is None and len(cons) == 1 and n.name not in out_off:
                nx = cons[0]
                if isinstance(nx, ir.Requant):
                    rq = nx
                    c2 = consumers.get(rq.name, [])
                    nx = c2[0] if len(c2) == 1 and rq.name not in out_off else None
                if isinstance(nx, ir.Add) and len(set(nx.inputs)) == 2:
                    other = [x for x in nx.inputs if x != (rq or n).name][0]
                    if other in loc and graph.types[other].shape == t.shape:
                        ad, res_loc = nx, loc[other]
            chain = [x for x in (rq, ad) if x is not None]
            lpw += poff[rq.name][1] if rq is not None else 0
            # ... and an IntLIF reading the chain's last map runs on the tile too (its spikes
            # stored; the map itself only when something else reads it)
            elf, keep = None, bool(chain)
            if chain:
                ce = consumers.get(chain[-1].name, [])
                elf = next((x for x in ce if isinstance(x, ir.IntLIF) and x.name in out_off), None)
                keep = chain[-1].name in out_off or len(ce) > (elf is not None)
                lpw += poff[elf.name][1] if elf is not None else 0

            # the stored partial sums (their runs start on beats: they were stored so) and the
            # residual operand, when its runs start on beats, are added by accumulating LOADs
            # onto the tile; else the operand is loaded beside the tile and added by an EW
            acc_ad = ad is not None and on_beat(res_loc)

            def spike_runs(oc_s, och, y0, y1, x0, x1):
                """(word offset in the spike map, offset in the spike tile, words) runs."""
                hbb, wtb = y1 - y0, x1 - x0
                if hbb == hout and wtb == wout:
                    return [(oc_s * hout * wout, 0, och * hout * wout)]
                if wtb == wout:
                    return [(((oc_s + o) * hout + y0) * wout, o * hbb * wout, hbb * wout) for o in range(och)]
                return [(((oc_s + o) * hout + y) * wout + x0, (o * hbb + y - y0) * wtb, wtb)
                        for o, y in cells(och, y0, y1)]

            def cells(och, y0, y1):
                """(channel, row) order of a column tile's runs: the longer one inner, so that
                the runs fold into the fewer 2-D transfers (any order moves the same words;
                loads in this order keep the slack rule as every run starts on a beat when
                ``u`` divides ``T``)."""
                if y1 - y0 < och and T % u == 0:
                    return [(o, y) for y in range(y0, y1) for o in range(och)]
                return [(o, y) for o in range(och) for y in range(y0, y1)]

            def need(gc, nt, hb, ys, G, wt, db=False):
                """Buffer words of a plan: the input slab of ``ys`` output rows, one output
                tile of ``hb`` rows (its partial sums, its spikes; only the spikes when the
                LIF runs on the CONV write-back), or two (``db``: tiles alternate, so that
                one's STOREs run beside the next one's CONV)."""
                rows = min(H, (ys - 1) * s + k)
                cols = min(W, (wt - 1) * s + k)
                o = min(cout, nt * P) * hb * wt * T
                if lif is not None and not keep_int and G == 1 and tchunks == 1 and fusable(nt, hb, ys, wt):
                    return pw + lpw + S + gc * planes * rows * cols + S + o // T + (o // T + S if db else 0)
                spk = (S + o // T) if lif is not None or elf is not None else 0
                res = S + o if ad is not None and not acc_ad else 0     # residual tile beside it
                return pw + lpw + S + gc * planes * rows * cols + S + (o + res + spk) + \
                    (o + res + spk + S if db else 0)

            gmax = min(cin, WB // kk) if planes == 1 else (cin if cin * kk <= WB else 0)
            if gmax == 0:
                raise _reject(n, f"one {P}-channel tile of one input channel needs {kk * (cin if planes > 1 else 1)} "
                                 "weight words", f"the weight buffer holds {WB}: use a larger wbuf_depth")
            # balanced input-channel groups: G groups of ceil(cin / G) channels
            gcs = sorted({-(-cin // -(-cin // g)) for g in _pow2_down(gmax)}, reverse=True)

            def largest(lo_v, hi_v, fits):
                """Largest ``v`` in ``[lo_v, hi_v]`` with ``fits(v)`` (monotone), else ``lo_v - 1``."""
                lo_v -= 1
                while lo_v < hi_v:
                    mid = (lo_v + hi_v + 1) // 2
                    if fits(mid):
                        lo_v = mid
                    else:
                        hi_v = mid - 1
                return lo_v

            @lru_cache(maxsize=None)
            def conv_tile(terms, hbb, wtb, och, wb):
                """Dense cycles of one tile's CONV (:func:`~.cycles.conv_cycles`, no fetch)."""
                return conv_cycles(cfg, terms=terms, hout=hbb, wout=wtb, T=T, cout=och, stride=s,
                                   oc_start=0, oc_end=och, lif=wb)

            def conv_cost(gc, nt, hb, ys, wt, order, db=False):
                """Estimated cycles of a plan, priced by the cycle model (:mod:`.cycles`): its
                DMA (``rd``/``wr``: bursts in flight, a 2-D transfer as one) and descriptor
                fetches, every tile's dense ``CONV``, the partial sums (accumulating
                ``LOAD`` descriptors), the epilogue (requant ``EW``; the residual add as
                accumulating ``LOAD`` descriptors, or a load and an ``EW``) and the tile
                ``LIF``s; tiles and chunks of equal shape priced once (every input-channel
                group as ``gc`` channels). ``db`` (two output tiles alternating): a tile's
                STOREs are priced as hidden behind the next tile's CONV, up to its cycles."""
                G, nch = -(-cin // gc), -(-tiles // nt)
                wbl = lif is not None and not keep_int and G == 1 and tchunks == 1
                colt = [band_rows(x0, x1, W, k, s, pad)[1] for x0, x1 in bands(wout, wt)]
                slabs = [band_rows(y0, y1, H, k, s, pad)[1] for y0, y1 in bands(hout, ys)]
                inc = 0                                  # one group's input, every slab once
                for wl in colt:
                    for h in slabs:
                        if h == H and wl == W:
                            inc += rd(gc * planes * H * W)
                        elif wl == W:
                            inc += rd(h * W, gc * planes)
                        else:
                            inc += gc * planes * rd(wl, h)
                subs = [y1 - y0 for Y0, Y1 in bands(hout, ys) for y0, y1 in bands(Y1 - Y0, hb)]   # sub-band rows
                spikes_ok = (lif is not None or elf is not None) and fusable(nt, hb, ys, wt)
                # an unfused LIF reloads the ints (and the chain's map is stored for it)
                extra = tw // u if (lif is not None or elf is not None) and not spikes_ok else 0

                tshapes: dict[tuple[int, int], int] = {}     # (rows, columns) of the tiles: how many
                for x0, x1 in bands(wout, wt):
                    for hbb in subs:
                        tshapes[(hbb, x1 - x0)] = tshapes.get((hbb, x1 - x0), 0) + 1

                def chunk(nt_, och_):
                    """``(tiles, LOADW)`` cycles of one chunk of ``nt_`` tiles (``och_``
                    channels) over all groups: group 0 stores its partial sums, a middle
                    group adds them onto its tile (accumulating LOADs) and stores, the last one adds and finishes the
                    tile (its store, the LIF, the epilogue): ``(G-1) * middle + finish``."""
                    total = 0
                    for (hbb, wtb), m in tshapes.items():
                        # nd descriptors of rr runs of rw words (2-D transfers)
                        if hbb == hout and wtb == wout:
                            nd, rr, rw = 1, 1, och_ * hbb * wtb * T
                        elif wtb == wout:
                            nd, rr, rw = 1, och_, hbb * wtb * T
                        else:
                            nd, rr, rw = (hbb, och_, wtb * T) if hbb < och_ and T % u == 0 else (och_, hbb, wtb * T)
                        words = och_ * hbb * wtb * T                       # the tile's integers
                        conv = F + conv_tile(gc * planes * kk, hbb, wtb, och_, False)
                        st = nd * wr(rw, rr)
                        acc = nd * rd(rw, rr)                                # accumulating LOADs of a tile
                        ld = acc + F + ew_cycles(words, 0, 1, cfg)           # ... or a load beside it and an EW
                        spk = nd * wr(max(1, rw // T), rr)                   # the spikes' stores
                        lifc = F + lif_cycles(och_, hbb * wtb, T, cfg)       # the LIF on the tile
                        if lif is not None and spikes_ok:
                            # wbl: the LIF on the CONV write-back (its parameters, drain), no LIF
                            fst = spk + (st if keep_int else 0)
                            fin = (F + conv_tile(gc * planes * kk, hbb, wtb, och_, True) + spk if wbl
                                   else conv + spk + lifc + (st if keep_int else 0))
                        elif chain:
                            fst = (st if keep else 0) + (spk if elf is not None else 0)
                            fin = (conv + (st if keep else 0) + ((acc if acc_ad else ld) if ad else 0)
                                   + (F + ew_cycles(words, 1, hbb * wtb * T, cfg) if rq is not None else 0)
                                   + (spk + lifc if elf is not None else 0))
                        else:
                            fst, fin = st, conv + st
                        if db:      # stores beside the next tile's CONV
                            fin -= min(fst, conv)
                        total += m * ((G - 1) * (conv + st + acc - (min(st, conv) if db else 0)) + fin)
                    return total, rdw(nt_ * gc * kk * P // 4)

                # chunks of equal shape priced once: nt tiles each, the last one the rest
                shapes: dict[tuple[int, int], int] = {}
                for c0 in range(0, tiles, nt):
                    c1 = min(tiles, c0 + nt)
                    key = (c1 - c0, min(cout, c1 * P) - c0 * P)
                    shapes[key] = shapes.get(key, 0) + 1
                outs = lws = 0
                for (nt_, och_), m in shapes.items():
                    o_, l_ = chunk(nt_, och_)
                    outs += m * o_
                    lws += m * l_
                loads = nch * inc + lws if order == "w" else inc + len(colt) * len(slabs) * lws
                return G * loads + outs + extra

            def fusable(nt, hb, ys, wt):
                """Every spike store of the plan starts on a beat (offsets are affine in the
                channel and row, so two of each decide)."""
                for c0 in range(0, min(tiles, 2 * nt), nt):
                    och = min(cout, (c0 + nt) * P) - c0 * P
                    for Y0, Y1 in bands(hout, ys):
                        for y0, y1 in bands(Y1 - Y0, hb):
                            for x0, x1 in bands(wout, wt):
                                for d_, _, _ in spike_runs(c0 * P, min(och, 2), Y0 + y0, Y0 + y1, x0, x1):
                                    if d_ % u:
                                        return False
                return True

            best = None
            for db in (False, True):
                wts = [wt for wt in sorted({-(-wout // m) for m in range(1, wout + 1)}, reverse=True)
                       if need(gcs[-1], 1, 1, 1, 2 if cin > 1 else 1, wt, db) <= D][:3]
                for wt in wts:
                    for gc in gcs:
                        G = -(-cin // gc)
                        for nt in _pow2_down(min(tiles, WB // (gc * kk))):
                            hb_max = largest(1, hout, lambda v: need(gc, nt, v, v, G, wt, db) <= D)
                            if hb_max < 1:
                                continue
                            hbs = {hb_max, -(-hout // -(-hout // hb_max))} | {v for v in _pow2_down(hb_max)}
                            for hb in sorted(hbs, reverse=True)[:6]:
                                ys_max = largest(hb, hout, lambda v: need(gc, nt, hb, v, G, wt, db) <= D)
                                if ys_max < hb:     # need() is not monotone in hb (fused tiles): no fit
                                    continue
                                ys = ys_max // hb * hb
                                nsl = -(-hout // ys)
                                ys = -(-(-(-hout // nsl)) // hb) * hb
                                for order in (("w", "i") if tiles > nt else ("w",)):
                                    cost = conv_cost(gc, nt, hb, ys, wt, order, db)
                                    if best is None or cost < best[0]:
                                        best = (cost, gc, nt, hb, ys, wt, order, db)
            if best is None:
                raise nofit(n, need(1, 1, 1, 1, 2 if cin > 1 else 1, 1),
                            f"a 1x1-pixel band, one {P}-channel tile and one input channel")
            _, gc, nt, hb, ys, wt, order, db = best
            G = -(-cin // gc)
            pb_bias, pb_zero = 0, tiles * P
            src_loc = loc[n.inputs[0]]
            # (slab, sub-band) pairs: slabs of ys output rows, each run as sub-bands of hb rows
            subbands = [((Y0, Y1), (Y0 + y0, Y0 + y1)) for Y0, Y1 in bands(hout, ys) for y0, y1 in bands(Y1 - Y0, hb)]

            if not fusable(nt, hb, ys, wt):     # fuse a LIF only where every spike store starts on a beat
                lif, keep_int = None, False
                if elf is not None:
                    elf, keep = None, True
            pb_lif = pw
            if lif is not None:
                fused.add(lif.name)
                pload(lif, pb_lif)
                pw += lpw
                if G == 1 and dst[0] == "scratch" and not keep_int:    # the integer map needs no DDR home
                    heap.release(dst[1], 4 * tw)
                    del loc[n.name]
                lflags = lif_flags(lif)
                ldst = ("outputs", out_off[lif.name])
                loc[lif.name] = ldst
            # the LIF on the CONV write-back (one input-channel group, T <= P_t): no integer tile
            wbl = lif is not None and not keep_int and G == 1 and tchunks == 1
            pb_rq = pw
            if chain:
                fused.update(x.name for x in chain)
                if rq is not None:
                    pw += pload(rq, pb_rq)
                if G == 1 and dst[0] == "scratch":      # the integer map needs no DDR home
                    heap.release(dst[1], 4 * tw)
                    del loc[n.name]
                en = chain[-1]
                if keep:
                    loc[en.name] = (("outputs", out_off[en.name]) if en.name in out_off
                                    else ("scratch", heap.alloc(4 * tensors[en.name].words)))
                    edst = loc[en.name]
                if elf is not None:
                    fused.add(elf.name)
                    pb_elf = pw
                    pw += pload(elf, pb_elf)
                    eflags = lif_flags(elf)
                    loc[elf.name] = edst_s = ("outputs", out_off[elf.name])
            inb = pw + S
            chunks = [(c0, min(tiles, c0 + nt)) for c0 in range(0, tiles, nt)]
            for g in range(G):
                i0, i1 = g * gc, min(cin, (g + 1) * gc)
                put_weights(n.name, g, w4[:, i0:i1])
                gv, i0v = (i1 - i0) * planes, i0 * planes
                wtile = (i1 - i0) * kk

                def loadw(c0, c1):
                    dma(isa.OP_LOADW, n.name, "weights", woff[(n.name, g)] + c0 * wtile * P, 0, (c1 - c0) * wtile)

                def load_slab(Y0, Y1, x0, x1):
                    """Loads input rows of output rows ``[Y0, Y1)``, columns ``[x0, x1)``:
                    channel ``cv`` row ``r`` at ``inb + (cv*h + r)*wl``; returns ``(lo, h, clo, wl)``."""
                    lo, h, _ = band_rows(Y0, Y1, H, k, s, pad)
                    clo, wl, _ = band_rows(x0, x1, W, k, s, pad)
                    if h == H and wl == W:
                        load(n.name, src_loc, i0v * H * W, inb, gv * H * W)
                    elif wl == W and h:
                        for cv in reversed(range(gv)):
                            load(n.name, src_loc, ((i0v + cv) * H + lo) * W, inb + cv * h * W, h * W)
                    elif h and wl:
                        for cv in reversed(range(gv)):
                            for r in reversed(range(h)):
                                load(n.name, src_loc, ((i0v + cv) * H + lo + r) * W + clo,
                                     inb + (cv * h + r) * wl, wl)
                    return lo, h, clo, wl

                # the output tile's room (the largest tile: its map, residual, spikes); two
                # tiles alternate between two rooms where both fit, so that a tile's STOREs run
                # beside the next tile's CONV (asynchronous STOREs, :mod:`.overlap`)
                och_m, tw_m = min(cout, nt * P), hb * wt * T
                room = (och_m * hb * wt if wbl else
                        och_m * tw_m + (S + och_m * tw_m if ad is not None and not acc_ad else 0)
                        + (S + och_m * hb * wt if lif is not None or elf is not None else 0)) + S
                ping = [0]

                def out_tile(c0, c1, slab, y0, y1, x0, x1):
                    """CONV of output rows ``[y0, y1)``, columns ``[x0, x1)``, channels of
                    tiles ``[c0, c1)`` on the loaded slab; partial sums, LIF, stores."""
                    nonlocal used
                    lo_s, h_s, clo, wl = slab
                    lo, h, pad_y = band_rows(y0, y1, H, k, s, pad)
                    _, _, pad_x = band_rows(x0, x1, W, k, s, pad)
                    oc_s, oc_e = c0 * P, min(cout, c1 * P)
                    och = oc_e - oc_s
                    hbb, wtb = y1 - y0, x1 - x0
                    ob = inb + gv * h_s * wl + S
                    if db or ob + 2 * room <= D:
                        ob += ping[0] * room
                        ping[0] ^= 1
                    tw_ = hbb * wtb * T                 # words per output channel of the tile
                    ow = och * tw_
                    # LIF on the write-back: the CONV writes the spike tile at ob
                    cs = hbb * wtb if wbl else tw_
                    lf = dict(lifpb=pb_lif, frac=lif.frac_bits, leak=lif.leak_shift,
                              lflags=lflags | isa.LFLAG_WB) if wbl else {}
                    # rows [lo, lo+h) of the slab, channels h_s*wl apart
                    j = add(isa.OP_CONV, n.name, inb=inb + (lo - lo_s) * wl if h else inb, outb=ob,
                            biasb=pb_bias if g == 0 else pb_zero, wb=0, cin=gv, h=h, w=wl, hw=h_s * wl,
                            hout=hbb, wout=wtb, k=k, stride=s, pad=pad_x, plog2=plog2, cout=cout,
                            oc_start=oc_s, oc_end=oc_e, t=T, kk=kk, stride_w=s * wl, hwout_t=cs, wtile=wtile,
                            tchunks=tchunks, pad_w=pad_y * wl, otile=P * cs, pad_y=pad_y, **lf)
                    windows[j] = (i0v, lo, H, clo, W)
                    used = max(used, ob + och * cs)
                    if wbl:
                        for d_off, b_off, cnt in spike_runs(oc_s, och, y0, y1, x0, x1):
                            store(lif, ldst, d_off, ob + b_off, cnt)
                        return
                    # (channel, row) runs of the tile in the node's DDR map, buffer offsets
                    if hbb == hout and wtb == wout:
                        runs = [(oc_s * hout * hwt, 0, ow)]
                    elif wtb == wout:
                        runs = [(((oc_s + o) * hout + y0) * hwt, o * tw_, tw_) for o in range(och)]
                    else:
                        runs = [((((oc_s + o) * hout + y) * wout + x0) * T, o * tw_ + (y - y0) * wtb * T,
                                 wtb * T) for o, y in cells(och, y0, y1)]
                    top = ob + ow
                    if g > 0:               # add the stored partial sums: LOADs onto the tile
                        for d_off, b_off, cnt in runs:
                            load_acc(n.name, dst, d_off, ob + b_off, cnt)
                    if lif is not None and g == G - 1:
                        if keep_int:        # the map for its other readers (beside the LIF)
                            for d_off, b_off, cnt in runs:
                                store(n, dst, d_off, ob + b_off, cnt)
                        sb = top + S
                        add(isa.OP_LIF, lif.name, inb=ob, outb=sb, pb=pb_lif + 3 * oc_s, c=och,
                            hw=hbb * wtb, t=T, frac=lif.frac_bits, leak=lif.leak_shift, flags=lflags)
                        for d_off, b_off, cnt in spike_runs(oc_s, och, y0, y1, x0, x1):
                            store(lif, ldst, d_off, sb + b_off, cnt)
                        used = max(used, sb + och * hbb * wtb)
                    elif chain and g == G - 1:
                        if rq is not None:          # requant shift per channel: s = mem[pb_rq + oc_s + o]
                            add(isa.OP_EW, rq.name, a=ob, b=pb_rq + oc_s, outb=ob, n=ow, mode=1, per=tw_)
                        if ad is not None and acc_ad:   # + the other operand's tile, LOADs onto it
                            for d_off, b_off, cnt in runs:
                                load_acc(ad.name, res_loc, d_off, ob + b_off, cnt)
                        elif ad is not None:        # ... loaded into the partials' room, one EW
                            rb = ob + ow + S
                            for d_off, b_off, cnt in reversed(runs):
                                load(ad.name, res_loc, d_off, rb + b_off, cnt)
                            add(isa.OP_EW, ad.name, a=ob, b=rb, outb=ob, n=ow, mode=0, per=1)
                            used = max(used, rb + ow)
                        if keep:
                            for d_off, b_off, cnt in runs:
                                store(chain[-1], edst, d_off, ob + b_off, cnt)
                        if elf is not None:         # the LIF on the finished tile, its spikes to DDR
                            sb = ob + ow + S + (ow + S if ad is not None and not acc_ad else 0)
                            add(isa.OP_LIF, elf.name, inb=ob, outb=sb, pb=pb_elf + 3 * oc_s, c=och,
                                hw=hbb * wtb, t=T, frac=elf.frac_bits, leak=elf.leak_shift, flags=eflags)
                            for d_off, b_off, cnt in spike_runs(oc_s, och, y0, y1, x0, x1):
                                store(elf, edst_s, d_off, sb + b_off, cnt)
                            used = max(used, sb + och * hbb * wtb)
                    else:
                        for d_off, b_off, cnt in runs:
                            store(n, dst, d_off, ob + b_off, cnt)

                if order == "w":            # weights stationary: each chunk's weights loaded once
                    for c0, c1 in chunks:
                        loadw(c0, c1)
                        for x0, x1 in bands(wout, wt):
                            slab, cur = None, None
                            for (Y0, Y1), (y0, y1) in subbands:
                                if cur != (Y0, Y1):
                                    slab, cur = load_slab(Y0, Y1, x0, x1), (Y0, Y1)
                                out_tile(c0, c1, slab, y0, y1, x0, x1)
                else:                       # input stationary: every chunk runs on a loaded slab
                    for x0, x1 in bands(wout, wt):
                        for Y0, Y1 in bands(hout, ys):
                            slab = load_slab(Y0, Y1, x0, x1)
                            for c0, c1 in chunks:
                                loadw(c0, c1)
                                for (Z0, Z1), (y0, y1) in subbands:
                                    if (Z0, Z1) == (Y0, Y1):
                                        out_tile(c0, c1, slab, y0, y1, x0, x1)
            dense = cout * hout * wout * cin * planes * kk * T
            wbytes = tiles * cin * kk * P
        elif isinstance(n, ir.IntLIF):
            C = t.shape[0]
            HW = int(np.prod(t.shape[1:])) if len(t.shape) == 3 else 1
            A = pw + S
            room = D - A
            nc_max = room // (HW * T + HW)
            q = u // gcd(HW, u)
            flags = lif_flags(n)
            if nc_max >= C or nc_max >= q:
                nc = C if nc_max >= C else nc_max // q * q
                for c0 in range(0, C, nc):
                    c1 = min(C, c0 + nc)
                    load(n.name, loc[n.inputs[0]], c0 * HW * T, A, (c1 - c0) * HW * T)
                    B = A + (c1 - c0) * HW * T
                    add(isa.OP_LIF, n.name, inb=A, outb=B, pb=3 * c0, c=c1 - c0, hw=HW, t=T,
                        frac=n.frac_bits, leak=n.leak_shift, flags=flags)
                    store(n, dst, c0 * HW, B, (c1 - c0) * HW)
                    used = max(used, B + (c1 - c0) * HW)
            else:
                # flat neuron ranges [a, b) starting on a beat, one LIF per channel segment
                m = room // (T + 1) // u * u
                if m < u:
                    raise nofit(n, A + u * (T + 1), f"{u} neurons")
                for a in range(0, C * HW, m):
                    b = min(C * HW, a + m)
                    load(n.name, loc[n.inputs[0]], a * T, A, (b - a) * T)
                    B = A + (b - a) * T
                    e = a
                    while e < b:
                        c = e // HW
                        f_ = min(b, (c + 1) * HW)
                        add(isa.OP_LIF, n.name, inb=A + (e - a) * T, outb=B + (e - a), pb=3 * c, c=1, hw=f_ - e,
                            t=T, frac=n.frac_bits, leak=n.leak_shift, flags=flags)
                        e = f_
                    store(n, dst, a, B, b - a)
                    used = max(used, B + (b - a))
        elif isinstance(n, ir.Add):
            A = S
            acc = on_beat(loc[n.inputs[1]])    # b added by accumulating LOADs onto a's tile
            room = (D - 2 * S) // u * u if acc else (D - 2 * S - S) // 2 // u * u
            if room < u:
                raise nofit(n, 3 * S + 2 * u, "two operand tiles")
            for e0 in range(0, tw, room):
                e1 = min(tw, e0 + room)
                load(n.name, loc[n.inputs[0]], e0, A, e1 - e0)
                if acc:
                    load_acc(n.name, loc[n.inputs[1]], e0, A, e1 - e0)
                    used = max(used, A + e1 - e0)
                else:
                    B = A + (e1 - e0) + S
                    load(n.name, loc[n.inputs[1]], e0, B, e1 - e0)
                    add(isa.OP_EW, n.name, a=A, b=B, outb=A, n=e1 - e0, mode=0, per=1)
                    used = max(used, B + e1 - e0)
                store(n, dst, e0, A, e1 - e0)
            dense = tw
        elif isinstance(n, ir.Requant):
            C = t.shape[0]
            per = (int(np.prod(t.shape[1:])) if len(t.shape) == 3 else 1) * T
            A = pw + S
            room = D - A
            q = u // gcd(per, u)
            nc_max = room // per
            if nc_max >= C or nc_max >= q:
                nc = C if nc_max >= C else nc_max // q * q
                for c0 in range(0, C, nc):
                    c1 = min(C, c0 + nc)
                    load(n.name, loc[n.inputs[0]], c0 * per, A, (c1 - c0) * per)
                    add(isa.OP_EW, n.name, a=A, b=c0, outb=A, n=(c1 - c0) * per, mode=1, per=per)
                    store(n, dst, c0 * per, A, (c1 - c0) * per)
                    used = max(used, A + (c1 - c0) * per)
            else:
                m = room // u * u
                if per % u:
                    raise nofit(n, A + per, "one channel")
                for c in range(C):
                    for e0 in range(0, per, m):
                        e1 = min(per, e0 + m)
                        load(n.name, loc[n.inputs[0]], c * per + e0, A, e1 - e0)
                        add(isa.OP_EW, n.name, a=A, b=c, outb=A, n=e1 - e0, mode=1, per=e1 - e0)
                        store(n, dst, c * per + e0, A, e1 - e0)
                        used = max(used, A + e1 - e0)
            dense = tw
        elif isinstance(n, (ir.GlobalPool, ir.TimeMean)):
            if isinstance(n, ir.GlobalPool):
                C, h, w = graph.types[n.inputs[0]].shape
                fin, fout = h * w * T, T
            else:
                C = t.shape[0]
                h = w = 1
                fin, fout = T, 1
            A = S
            nc_max = (D - 2 * S) // (fin + fout)
            q = u // gcd(fout, u)
            if not (nc_max >= C or nc_max >= q):
                raise nofit(n, 2 * S + q * (fin + fout), f"{q} channels")
            nc = C if nc_max >= C else nc_max // q * q
            for c0 in range(0, C, nc):
                c1 = min(C, c0 + nc)
                load(n.name, loc[n.inputs[0]], c0 * fin, A, (c1 - c0) * fin)
                B = A + (c1 - c0) * fin
                if isinstance(n, ir.GlobalPool):
                    add(isa.OP_REDUCE, n.name, inb=A, outb=B, n0=c1 - c0, s0=fin, n1=T, s1=1, n2=h * w, s2=T)
                else:
                    add(isa.OP_REDUCE, n.name, inb=A, outb=B, n0=c1 - c0, s0=T, n1=1, s1=0, n2=T, s2=1)
                store(n, dst, c0 * fout, B, (c1 - c0) * fout)
                used = max(used, B + (c1 - c0) * fout)
            dense = C * fin
        elif isinstance(n, ir.Attention):
            c, h, w = t.shape
            d = c // n.heads
            hw = h * w
            g = sdha_scratch(n, cfg, t.shape, WB)
            # SDHA -> IntLIF fusion: the LIF runs on each SDHA output tile in the buffer and
            # only its spikes go to DDR (when every spike store starts on a beat)
            cons = consumers.get(n.name, [])
            alif = cons[0] if (len(cons) == 1 and isinstance(cons[0], ir.IntLIF) and n.name not in out_off
                               and cons[0].name in out_off and hw % u == 0) else None
            base = pw
            if alif is not None:
                fused.add(alif.name)
                base += pload(alif, pw)
                aflags = lif_flags(alif)
                if dst[0] == "scratch":         # the integer map needs no DDR home
                    heap.release(dst[1], 4 * tw)
                    del loc[n.name]
                loc[alif.name] = adst = ("outputs", out_off[alif.name])
            sw = 1 if alif is not None else 0   # spike words per output element of the tile

            def attn_lif(O, ch0, nc, ntok, sb):
                """The fused LIF on output tile ``O`` (``nc`` channels from ``ch0`` of ``ntok``
                tokens, ``ntok*T`` words apart), its spikes at ``sb`` (``ntok`` words apart)."""
                add(isa.OP_LIF, alif.name, inb=O, outb=sb, pb=pw + 3 * ch0, c=nc, hw=ntok, t=T,
                    frac=alif.frac_bits, leak=alif.leak_shift, flags=aflags)

            # per head: q, k, v bundles and the T-step output (and its spikes); kv lives in
            # the weight buffer
            head = 3 * (d * hw + S) + d * hw * T + sw * (d * hw + S)
            nh = min((D - S - base) // head, n.heads)
            if sdha_tokens is not None and int(sdha_tokens) < hw:
                nh = 0
            for h0 in range(0, n.heads, nh) if nh >= 1 else ():
                h1 = min(n.heads, h0 + nh)
                words = (h1 - h0) * d * hw
                Aq = base + S
                Ak = Aq + words + S
                Av = Ak + words + S
                O = Av + words
                for a, s_ in zip((Aq, Ak, Av), n.inputs):
                    load(n.name, loc[s_], h0 * d * hw, a, words)
                add(isa.OP_SDHA, n.name, q=Aq, k=Ak, v=Av, outb=O, kvw=g * hw, heads=h1 - h0, d=d, hw=hw, t=T,
                    hwd=d * hw, hwdt=d * hw * T, g=g, hwt=hw * T, ntok=hw, qs=hw, mode=0)
                if alif is not None:
                    sb = O + words * T + S
                    attn_lif(O, h0 * d, (h1 - h0) * d, hw, sb)
                    store(alif, adst, h0 * d * hw, sb, words)
                    used = max(used, sb + words)
                else:
                    store(n, dst, h0 * d * hw * T, O, words * T)
                used = max(used, O + words * T)
            if nh < 1:
                # one head does not fit: per head, kv from its whole K and V (phases 0/1), then
                # phase 2 over token ranges [n0, n0 + r): Q channel a's range loaded to
                # Aq + a*r, output channel b's range stored from O + b*r*T (or its spikes,
                # ranges of a multiple of u tokens, from the LIF's tile at O + d*r*T + S)
                kvneed = base + S + d * hw + S + d * hw
                if kvneed > D:
                    raise nofit(n, kvneed, "the k and v bundles of one attention head, which build its kv")
                q_ = u // gcd(T, u)            # ranges of q_ tokens keep output stores on a beat
                if alif is not None:
                    q_ = u                     # ... and spike stores
                rmax = (D - S - base - sw * S) // (d * (1 + T + sw)) // q_ * q_
                if rmax < 1:
                    raise nofit(n, base + S + d * (1 + T + sw) * q_ + sw * S, f"the q bundles and output of "
                                f"{q_} token(s) of one attention head")
                if sdha_tokens is not None:
                    rmax = max(q_, min(rmax, int(sdha_tokens) // q_ * q_))
                nr = -(-hw // rmax)
                r = -(-(-(-hw // nr)) // q_) * q_      # balanced ranges, a multiple of q_ tokens
                Ak, Aq = base + S, base + S
                Av = Ak + d * hw + S
                for hd in range(n.heads):
                    load(n.name, loc[n.inputs[1]], hd * d * hw, Ak, d * hw)
                    load(n.name, loc[n.inputs[2]], hd * d * hw, Av, d * hw)
                    add(isa.OP_SDHA, n.name, q=0, k=Ak, v=Av, outb=0, kvw=g * hw, heads=1, d=d, hw=hw, t=T,
                        hwd=d * hw, hwdt=0, g=g, hwt=0, ntok=0, qs=0, mode=2)
                    used = max(used, Av + d * hw)
                    for n0 in range(0, hw, r):
                        rr = min(hw, n0 + r) - n0
                        O = Aq + d * rr
                        for a in reversed(range(d)):
                            load(n.name, loc[n.inputs[0]], (hd * d + a) * hw + n0, Aq + a * rr, rr)
                        add(isa.OP_SDHA, n.name, q=Aq, k=0, v=0, outb=O, kvw=g * hw, heads=1, d=d, hw=hw, t=T,
                            hwd=d * hw, hwdt=d * rr * T, g=g, hwt=rr * T, ntok=rr, qs=rr, mode=1)
                        if alif is not None:
                            sb = O + d * rr * T + S
                            attn_lif(O, hd * d, d, rr, sb)
                            for b in range(d):
                                store(alif, adst, (hd * d + b) * hw + n0, sb + b * rr, rr)
                            used = max(used, sb + d * rr)
                        else:
                            for b in range(d):
                                store(n, dst, ((hd * d + b) * hw + n0) * T, O + b * rr * T, rr * T)
                        used = max(used, O + d * rr * T)
            dense = 2 * n.heads * d * d * hw * T
            unit = "SDHA"
        if used > D:
            raise AssertionError(f"tiling of {n.name} overflows the buffer ({used} > {D})")
        peak = max(peak, used)
        stats.append(LayerStats(n.name, n.op, unit, int(dense), int(wbytes), int(traffic.get(n.name, 0)), int(used)))
        release_inputs(i, n)
    add(isa.OP_END)

    # ---- DDR map: program | weights | params | input | outputs | scratch
    prog_bytes = len(descs) * isa.DESC_BYTES
    sizes = {"program": prog_bytes, "weights": wpos, "params": ppos,
             "input": 4 * tensors[graph.input.name].words, "outputs": o_acc, "scratch": heap.size}
    regions: dict[str, tuple[int, int]] = {}
    cur = 0
    for r in REGIONS:
        regions[r] = (cur, sizes[r])
        cur = _align(cur + max(sizes[r], 1))
    for j, r in fix:
        descs[j][1]["ddr"] += regions[r][0]
    descs[0][1]["n_desc"] = len(descs)
    image = np.zeros(cur, np.uint8)
    if wimg:
        wb = np.concatenate(wimg)
        image[regions["weights"][0]: regions["weights"][0] + wb.size] = wb
    if pblocks:
        pb = np.concatenate(pblocks).view(np.uint8)
        image[regions["params"][0]: regions["params"][0] + pb.size] = pb
    placed = {}
    for name, p in tensors.items():
        ddr = (regions["outputs"][0] + out_off[name] if name in out_off
               else regions["input"][0] if name == graph.input.name else None)
        placed[name] = TensorPlacement(name, p.layout, p.shape, -1, p.words, ddr)
    prog = Program(cfg=cfg, T=T, descriptors=descs, image=image, regions=regions, tensors=placed,
                   relocs=relocs, input_name=graph.input.name, output_names=outputs, stats=stats,
                   act_peak=peak, input_shape=tuple(graph.input.shape), plan="ddr", windows=windows,
                   fused=tuple(n.name for n in graph.nodes if n.name in fused))
    w = prog.words().view(np.uint8).ravel()
    image[: w.size] = w
    return prog
