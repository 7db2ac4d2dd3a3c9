"""Analytic cycle model of the engine, and latency predictions at the target clock.

:func:`program_cycles` counts the cycles of every descriptor of an emitted
:class:`~.program.Program` from the engine's state machine (:mod:`.engine`), with a DDR
that accepts an address in one cycle and returns one beat per cycle (the simulation's RAM
model; a real DDR adds latency per burst, parameter ``ddr_latency``, mostly hidden by the
bursts in flight). It is checked against
the ``CYCLES`` register of the Verilator run (tests/hw/accel).

Per descriptor (``u`` = 32-bit units per AXI beat, ``B`` beats per burst):

* fetch: ``3 + read(32 units)``; one AXI beat (``u`` units) per cycle in both directions
  (the activation buffer has ``u`` banks, :mod:`.actbuf`), ``ceil(N/u)`` beats a run in
  bursts of at most ``B`` beats, each also cut at a 4 KB boundary (:func:`burst_count`),
  up to ``O = cfg.outstanding`` bursts in flight (:func:`_dma`, ``L = ddr_latency``: the
  DDR answers that much later, as the simulated RAM does with ``+DDR_LATENCY``). When the
  bursts in flight cover the latency (``n <= O`` bursts, or every ``O - 1`` consecutive
  bursts hold ``>= 2 + L`` beats; ``3 + L`` for a write) the beats stream back to back:
  ``read = beats + 2 + L``, ``write = beats + 3 + L`` for the whole transfer; otherwise a
  per-burst recurrence (``O = 1``: ``b + 2 + L`` / ``b + 3 + L`` per burst). A 2-D
  ``LOAD``/``STORE`` of ``rows`` runs is one fetch and one transfer over all its runs'
  bursts (each run's bursts from its own DDR address, the issuer stepping from run to run
  without a gap).
* CONV: :func:`conv_cycles`: per group of ``g = min(P_pix, (u-1)//stride + 1)`` output
  pixels of a row (the row's last group may be partial, :func:`conv_groups`) and ``P_t``
  chunk ``max(busy, L + 1)`` with ``L = lanes * g * ceil(t_n/u)`` the overlapped
  write-back of the previous group; per ``P_o`` tile bias loading and a drain. With the
  IntLIF on the write-back (``lflags``, :mod:`.isa` version 6) ``L = lanes`` (one channel
  per cycle), plus the LIF parameters per tile and the step pipeline's ``3*P_t + 1`` drain. The unit
  scans the group's ``terms = cin*K*K`` (bit-planes: ``8*cin*K*K``) in blocks of
  ``scan`` and adds only the *live* ones (a non-zero T-bundle for some in-frame pixel of
  the group, the activation buffer's occupancy flags), a pair per cycle into every DSP48E2
  SIMD accumulator: ``busy = 3 + sum_blocks max(1, ceil(live_b/2))`` (:func:`conv_busy`);
  without the input bundles every term counts as live, the dense bound
  ``ceil(terms/2) + 3``.
* LIF (:func:`lif_cycles`, ``2u`` lanes): ``c*(S + ceil(HW/2u)*P) - P + T + 3 + max(u, 2)``,
  groups ``P = u*ceil(T/u)`` apart, ``S = ceil(3/2u)`` parameter reads per channel; EW (:func:`ew_cycles`): ``ceil(n/u) + 2`` (runs of ``u`` elements),
  per-channel runs in mode 1; REDUCE: ``n0*n1*n2 + 2``;
  SDHA (:func:`sdha_cycles`, ``w = P_o/4`` lanes, ``g = ceil(d/w)``, ``w`` outputs x
  ``P_t`` steps at once, ``r = ceil(P_t/u)``): per head, ``T <= P_t`` and ``w`` dividing
  ``d``, ``g*HW*w + d*g*HW + (d*HW/w - 1)*max(d, w*r) + d + w*r + 8``, then ``+1``; phase 2
  once per chunk of ``P_t`` steps; a token range runs phase 2 over its ``ntok`` tokens
  only, ``mode`` skipping phases 0/1 (kv kept from before) or phase 2.

:func:`program_cycles` holds for both memory plans of :mod:`.program` (a DDR-resident
program is just more ``LOAD``/``STORE`` descriptors and CONV descriptors on row bands, whose
``pad_y``/``h``/``w``/``pad`` the CONV terms above use); it is the latency of real-size
models (svf-small/large at 224/256, ``benchmarks/accel_latency.py``).

:func:`predict` is the older layer-list approximation kept for lengths no program is
emitted for (T = 32): the same per-descriptor costs, but every tensor assumed on chip (no
tiling traffic), so it is optimistic for real sizes; within 5 % of the dense
:func:`program_cycles` on the bundled model's on-chip program. ``skip`` (the all-zero
T-bundle fraction, :func:`bundle_sparsity`) is only recorded: the layer list holds no
spikes, so its CONV counts are the dense bound; ``stream_weights`` models a planned change
the RTL does not have (weight loads, a beat per cycle as now, hidden behind compute by a
double buffer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import isa
from .config import WB_LIF_SUBSTAGES, AccelConfig, lif_lanes

__all__ = ["layers_from_graph", "burst_count", "dma_read", "dma_write", "conv_cycles", "conv_busy", "conv_block_cycles",
           "conv_groups", "conv_inputs", "conv_window",
           "descriptor_cycles", "program_cycles", "lif_cycles", "ew_cycles", "sdha_cycles", "LayerCycles",
           "bundle_sparsity", "predict", "Prediction"]

FETCH_OVERHEAD = 3  # FETCH, DECODE, NEXT


#: AXI4 bursts never cross a 4 KB boundary (A3.4.1); the engine cuts them there
PAGE_BYTES = 4096


def _page_segments(beats: int, cfg: AccelConfig, ddr: int = 0) -> list[int]:
    """Beats of each 4 KB page segment of a run of ``beats`` beats from DDR byte ``ddr``, in
    order: with ``P = 4096 / (axi_data_width/8)`` beats a page and the run's first beat at
    offset ``o = (ddr mod 4096) / (axi_data_width/8)`` in its page, ``min(beats, P - o)``,
    then whole pages of ``P``, then the rest (each ``> 0``; they sum to ``beats``; ``[]``
    for ``beats <= 0``). The engine's bursts never cross a segment (AXI A3.4.1)."""
    if beats <= 0:
        return []
    bb = cfg.axi_data_width // 8
    page = PAGE_BYTES // bb
    first = min(beats, page - (ddr % PAGE_BYTES) // bb)
    full, tail = divmod(beats - first, page)
    return [first] + [page] * full + ([tail] if tail else [])


def burst_count(beats: int, cfg: AccelConfig, ddr: int = 0) -> int:
    """Bursts the engine issues for ``beats`` beats from DDR byte address ``ddr``: greedy
    bursts of at most ``cfg.burst`` beats, each cut at the next 4 KB boundary, so every 4 KB
    page segment of ``s`` beats (:func:`_page_segments`) takes ``ceil(s / burst)`` bursts."""
    return sum(-(-s // cfg.burst) for s in _page_segments(beats, cfg, ddr))


def _run_shape(beats: int, cfg: AccelConfig, ddr: int) -> tuple[int, int]:
    """``(bursts, shortest burst)`` of a run of ``beats`` beats from DDR byte ``ddr``: a page
    segment of ``s`` beats ends with its shortest burst, ``s mod burst`` (or ``burst``);
    ``(0, burst)`` for an empty run."""
    segs = _page_segments(beats, cfg, ddr)
    return (sum(-(-s // cfg.burst) for s in segs),
            min((s % cfg.burst or cfg.burst for s in segs), default=cfg.burst))


def _burst_lengths(beats: int, cfg: AccelConfig, ddr: int) -> list[int]:
    """The engine's bursts of a run, in order: per page segment (:func:`_page_segments`) of
    ``s`` beats, ``s // burst`` bursts of ``cfg.burst`` beats, then ``s mod burst`` if any."""
    out: list[int] = []
    for s in _page_segments(beats, cfg, ddr):
        out += [cfg.burst] * (s // cfg.burst) + ([s % cfg.burst] if s % cfg.burst else [])
    return out


def _dma(units: int, cfg: AccelConfig, ddr_latency: int, ddr, write: bool) -> int:
    """Cycles of a DMA transfer of runs of ``units`` units at the DDR byte addresses ``ddr``
    (an int: one run) with ``O = cfg.outstanding`` bursts in flight (:mod:`.engine`; RAM
    timing of ``sim/hdl/axi_ram_sim.v``, ``L = ddr_latency``).

    Bursts ``k = 0..n-1`` of ``b_k`` beats over all runs, in order, the transfer's first
    cycle 0. Read: AR ``k`` at ``a_k = max(k, e_{k-O} + 1)`` (a free slot the cycle after
    burst ``k-O``'s last beat), first beat at ``f_k = max(a_k + 2 + L, e_{k-1} + 1)``, last
    at ``e_k = f_k + b_k - 1``; the transfer takes ``e_{n-1} + 1``. Write: AW ``k`` at
    ``a_k = max(k, r_{k-O} + 1)``, beats from ``max(a_k + 1, e_{k-1} + 1)`` to ``e_k``,
    response ``r_k = max(e_k + 2 + L, r_{k-1} + 1)``; it takes ``r_{n-1} + 1``.

    Closed forms: with ``O = 1`` every burst costs ``b + 2 + L`` (read) / ``b + 3 + L``
    (write). The beats stream back to back (total ``beats + 2 + L`` / ``beats + 3 + L``)
    when ``n <= O`` or every ``O - 1`` consecutive bursts hold ``>= 2 + L`` (read) /
    ``>= 3 + L`` (write) beats, guaranteed by ``(O - 1) * shortest >= 2 + L`` (``+ 3``);
    otherwise the recurrence runs burst by burst."""
    addrs = [ddr] if isinstance(ddr, int) else list(ddr)
    beats = -(-units // cfg.units_per_beat)
    if beats <= 0 or not addrs:
        return 0
    O, L, over = cfg.outstanding, int(ddr_latency), 3 if write else 2
    shapes = [_run_shape(beats, cfg, a) for a in addrs]
    n = sum(c for c, _ in shapes)
    total = beats * len(addrs)
    if O == 1:
        return total + n * (over + L)
    if n <= O or (O - 1) * min(mb for _, mb in shapes) >= over + L:
        return total + over + L
    e: list[int] = []
    r: list[int] = []
    k = 0
    for a0 in addrs:
        for b in _burst_lengths(beats, cfg, a0):
            if write:
                a = k if k < O else max(k, r[k - O] + 1)
                ek = max(a + 1, e[-1] + 1 if e else 0) + b - 1
                r.append(max(ek + 2 + L, r[-1] + 1 if r else 0))
            else:
                a = k if k < O else max(k, e[k - O] + 1)
                ek = max(a + 2 + L, e[-1] + 1 if e else 0) + b - 1
            e.append(ek)
            k += 1
    return (r[-1] if write else e[-1]) + 1


def dma_read(units: int, cfg: AccelConfig, ddr_latency: int = 0, ddr=0) -> int:
    """Cycles of a DMA read (state ``RD``) of ``units`` 32-bit units from DDR byte ``ddr``
    (or of one run of ``units`` from each address of a sequence: a 2-D LOAD), up to
    ``cfg.outstanding`` bursts in flight (:func:`_dma`): with the latency covered, ``2 + L``
    plus one cycle per beat (the banked activation buffer takes a whole beat per cycle)."""
    return _dma(units, cfg, ddr_latency, ddr, False)


def dma_write(units: int, cfg: AccelConfig, ddr_latency: int = 0, ddr=0) -> int:
    """Cycles of a DMA write (state ``WR``) of ``units`` 32-bit units to DDR byte ``ddr`` (or
    one run per address of a sequence), up to ``cfg.outstanding`` bursts in flight
    (:func:`_dma`): with the latency covered, one cycle per beat (read from the buffer a cycle
    ahead) plus ``3 + L`` for the address handshake and the last response."""
    return _dma(units, cfg, ddr_latency, ddr, True)


def _runs(f: dict):
    """DDR byte address of each run of a (2-D) LOAD/STORE (strides two's complement)."""
    st = int(f.get("ddr_stride", 0)) & 0xFFFFFFFF
    st -= (st >> 31) << 32
    return [int(f["ddr"]) + r * st for r in range(max(1, int(f.get("rows", 1))))]


def descriptor_cycles(op: int, f: dict, cfg: AccelConfig, ddr_latency: int = 0,
                      words: np.ndarray | None = None) -> int:
    """Cycles of one descriptor, fetch included. ``words``: a CONV's input T-bundles
    (:func:`conv_busy`: the exact count of those spikes; ``None``: the dense bound)."""
    fetch = FETCH_OVERHEAD + dma_read(isa.DESC_WORDS, cfg, ddr_latency)
    if op in (isa.OP_END, isa.OP_HEADER):
        return fetch - (1 if op == isa.OP_END else 0)
    if op == isa.OP_LOAD:
        return fetch + dma_read(f["count"], cfg, ddr_latency, _runs(f))
    if op == isa.OP_LOADW:
        return fetch + dma_read(f["count"] * (cfg.p_o // 4), cfg, ddr_latency, int(f["ddr"]))
    if op == isa.OP_STORE:
        return fetch + dma_write(f["count"], cfg, ddr_latency, _runs(f))
    if op == isa.OP_CONV:
        return fetch + conv_cycles(cfg, terms=f["cin"] * f["kk"], hout=f["hout"], wout=f["wout"], T=f["t"],
                                   cout=f["cout"], stride=f["stride"], oc_start=f["oc_start"], oc_end=f["oc_end"],
                                   busy=None if words is None else conv_busy(words, cfg, f),
                                   lif=bool(int(f.get("lflags", 0)) & isa.LFLAG_WB))
    if op == isa.OP_LIF:
        return fetch + lif_cycles(f["c"], f["hw"], f["t"], cfg)
    if op == isa.OP_EW:
        return fetch + ew_cycles(f["n"], int(f["mode"]), f["per"], cfg)
    if op == isa.OP_REDUCE:
        return fetch + f["n0"] * f["n1"] * f["n2"] + 2
    if op == isa.OP_SDHA:
        return fetch + sdha_cycles(f["heads"], f["d"], f["hw"], f["t"], cfg, ntok=f.get("ntok"),
                                   mode=int(f.get("mode", 0)))
    raise ValueError(f"unknown opcode {op}")


def lif_cycles(c: int, hw: int, T: int, cfg: AccelConfig) -> int:
    """Cycles of the LIF unit (no fetch): ``L = 2u`` lanes (:func:`~.config.lif_lanes`) run
    a group of ``L`` consecutive neurons of a channel, one step per cycle each; lane reads
    are staggered (pair ``j`` reads a run of ``u`` steps of its two neurons at cycle
    ``k*u + j``), so groups start ``P = u*ceil(T/u)`` cycles apart (``P = 2`` when
    ``u = 1, T = 1``: a group's two bundle writes share the write port). Channels follow
    each other without draining: per channel ``S = ceil(3/2u)`` cycles read its three
    parameters (both ports), then ``G = ceil(hw/L)`` groups (a partial last group costs a
    whole one). The last group's last pair finishes ``u + T`` cycles after its start, its
    second bundle run is written the cycle after (two after at ``u = 1``), then 1 to
    leave: ``c*(S + G*P) - P + T + 3 + max(u, 2)``."""
    u = cfg.units_per_beat
    L = lif_lanes(cfg)
    P = max(u * -(-T // u), 2)
    S = -(-3 // (2 * u))
    return c * (S + -(-hw // L) * P) - P + T + 3 + max(u, 2)


def ew_cycles(n: int, mode: int, per: int, cfg: AccelConfig) -> int:
    """Cycles of the EW unit (no fetch): one run of up to ``u`` consecutive elements per
    cycle (two read ports, one masked write, :mod:`.actbuf`), then 2 to drain. Mode 0
    (``a + b``): ``ceil(n/u)`` runs. Mode 1 (per-channel shift): a run never crosses a
    channel of ``per`` elements, so ``n // per`` whole channels of ``ceil(per/u)`` runs
    and a last partial one of ``ceil((n % per)/u)``."""
    u = cfg.units_per_beat
    if not mode:
        return -(-n // u) + 2
    return (n // per) * -(-per // u) + -(-(n % per) // u) + 2


def sdha_cycles(heads: int, d: int, hw: int, T: int, cfg: AccelConfig, *, ntok: int | None = None,
                mode: int = 0) -> int:
    """Cycles of the SDHA unit (no fetch), ``w = P_o/4`` 32-bit lanes per weight-buffer
    word, ``g = ceil(d/w)`` words per token, ``m = w`` output lanes (every lane of a kv
    word) x ``P_t`` steps; phases 0/1 over the head's ``hw`` tokens, phase 2 over the
    ``ntok`` tokens of the range (default ``hw``); ``mode`` bit 0 skips phases 0/1, bit 1
    skips phase 2 (:mod:`.isa`). Per head:

    * phase 0 copies V transposed into the weight buffer, one bundle per cycle,
      ``g*hw*w + 2``;
    * phase 1 computes ``kv[a, b]`` for the ``w`` channels ``b`` of a word at once, one
      ``(a, word, n)`` per cycle, ``d*g*hw + 2``;
    * phase 2, per chunk of ``s = min(P_t, T - c*P_t)`` steps (``c = 0, 1, ...``), computes
      the outputs ``(n, b..b+m-1)`` together, one term ``a`` per cycle for the chunk's
      steps: groups of ``l = min(m, d - b)`` outputs start ``max(d, l*r)`` cycles apart
      (``r = ceil(s/u)``: their sums are written back as runs of up to ``u`` words, one run
      per cycle, while the next group accumulates); the chunk's last group's ``d`` terms,
      ``l*r`` writes and 2 to drain;
    * 2 cycles of head control.

    Then 1. With ``l*r >= d`` phase 2 is bound by its output writes. A head split into
    token ranges costs ``2 + 1`` more per extra descriptor (plus its fetch)."""
    w = cfg.p_o // 4
    g = -(-d // w)
    u = cfg.units_per_beat
    nt = hw if ntok is None else int(ntok)
    lanes = [min(w, d - b) for b in range(0, d, w)]
    phase01 = 0 if mode & 1 else (g * hw * w + 2) + (d * g * hw + 2)
    phase2 = 0
    if not mode & 2:
        for c0 in range(0, T, cfg.p_t):
            r = -(-min(cfg.p_t, T - c0) // u)
            phase2 += nt * sum(max(d, n * r) for n in lanes) - max(d, lanes[-1] * r) + d + lanes[-1] * r + 2
    return heads * (phase01 + phase2 + 2) + 1


def conv_groups(cfg: AccelConfig, wout: int, stride: int) -> list[int]:
    """Pixel groups of one output row: ``g = min(P_pix, (u-1)//stride + 1)`` consecutive
    pixels share each weight read (pixel ``p`` reads word ``p*stride`` of a run of ``u``
    words), the row's last group holds the ``wout % g`` left over, if any."""
    g = min(cfg.p_pix, (cfg.units_per_beat - 1) // max(1, int(stride)) + 1)
    return [g] * (wout // g) + ([wout % g] if wout % g else [])


def conv_cycles(cfg: AccelConfig, *, terms: int, hout: int, wout: int, T: int, cout: int, stride: int = 1,
                oc_start: int = 0, oc_end: int | None = None, busy: np.ndarray | None = None,
                lif: bool = False) -> int:
    """Cycles of the CONV unit (no fetch) for output channels ``[oc_start, oc_end)``.

    Per ``P_o`` tile: ``1 + L`` to enter (waiting for the previous tile's last write-back of
    ``L`` cycles; ``L = 0`` for the first), ``P_o + 1`` to load biases, then per pixel group
    (:func:`conv_groups`, rows in order) and ``P_t`` chunk ``max(busy, L_prev + 1)`` (the
    tile's first: ``busy``), where ``busy = ceil(terms/2) + 3``: one pair of terms per cycle
    into every SIMD accumulator, never a stall, plus group start, drain and hand-off. The
    write-back of a group of ``g`` pixels and a chunk of ``t_n`` steps, ``lanes * g *
    ceil(t_n/u)`` cycles (a run of up to ``u`` words per cycle per (channel, pixel)),
    overlaps the next group's terms. Then ``1 + L``. ``busy`` (:func:`conv_busy`, which
    skips the terms without a non-zero T-bundle) may be given per (group, chunk); without
    it every term is issued (the dense bound).

    ``lif`` (``lflags & LFLAG_WB``, ``T <= P_t``): the write-back runs the IntLIF and takes
    one channel per cycle, ``L = lanes`` per group; the channel's spikes are written
    ``3*P_t + 1`` cycles after it (the step pipeline, three sub-stages a step:
    :data:`~.config.WB_LIF_SUBSTAGES`), so a tile's last write-back ends
    ``L + 3*P_t + 1`` cycles after its hand-off; per tile ``S + 1`` more cycles read the
    ``3*P_o`` LIF parameters, ``S = ceil(3*P_o/2u)`` runs of ``u`` words on both ports.
    """
    P, PT, u = cfg.p_o, cfg.p_t, cfg.units_per_beat
    oc_end = cout if oc_end is None else oc_end
    chunks = [min(PT, T - c * PT) for c in range(-(-T // PT))]
    groups = conv_groups(cfg, wout, stride) * hout
    nseq = len(groups) * len(chunks)
    b = (np.full(nseq, -(-terms // 2) + 3, np.int64) if busy is None
         else np.asarray(busy, np.int64).reshape(nseq))
    gc = np.repeat(np.asarray(groups, np.int64), len(chunks)) * np.tile(
        np.asarray([-(-tn // u) for tn in chunks], np.int64), len(groups))  # g * ceil(t_n/u)
    if lif:
        if len(chunks) != 1:
            raise ValueError(f"conv_cycles: the LIF write-back needs T <= P_t = {PT}, not T = {T}")
        gc = np.ones_like(gc)
    total = 0
    last = 0
    for oc0 in range(oc_start, oc_end, P):
        Ls = min(P, cout - oc0) * gc
        total += 1 + last + P + 1 + (-(-3 * P // (2 * u)) + 1 if lif else 0)
        total += int(b[0] + np.maximum(b[1:], Ls[:-1] + 1).sum())
        last = int(Ls[-1]) + (WB_LIF_SUBSTAGES * PT + 1 if lif else 0)
    return total + 1 + last


def conv_block_cycles(live: np.ndarray, scan: int) -> np.ndarray:
    """Issue cycles of term sequences: ``live[..., n]`` (bool) per term in issue order, cut
    into blocks of ``scan`` terms; a block of ``l`` live terms takes ``max(1, ceil(l/2))``
    cycles (two issued per cycle, one cycle to pass an empty block). Sum over the blocks."""
    live = np.asarray(live, bool)
    n = live.shape[-1]
    pad = (-n) % scan
    if pad:
        live = np.concatenate([live, np.zeros(live.shape[:-1] + (pad,), bool)], axis=-1)
    cnt = live.reshape(live.shape[:-1] + (-1, scan)).sum(-1)
    return np.maximum(1, (cnt + 1) // 2).sum(-1)


def conv_busy(words: np.ndarray | None, cfg: AccelConfig, f: dict) -> np.ndarray:
    """Per pixel group (:func:`conv_groups`, rows in order) and ``P_t`` chunk, the CONV unit's
    cycles from the group's start to its hand-off (``[groups, tchunks]``).

    A group's terms ``(i, ky, kx)`` (``cin*K*K``, in that order) are scanned in blocks of
    ``cfg.scan``; a term is *live* when some pixel ``p < g`` of the group has its tap
    ``(i, oy*s - pad_y + ky, (ox + p)*s - pad + kx)`` inside the ``h x w`` frame and that
    T-bundle word non-zero (the activation buffer's occupancy flag; whole words, so every
    ``P_t`` chunk of a group sees the same live terms). Then
    ``busy = 3 + sum_blocks max(1, ceil(live_b/2))`` (group start, the issue cycles, drain
    and hand-off). ``words`` (the ``cin*h*w`` bundle words the descriptor reads, ``[cin, h,
    w]`` order) ``None``: every term live, the dense bound ``ceil(cin*K*K/2) + 3`` (``scan``
    even: whole blocks issue ``scan/2`` pairs). Exact for the RTL (:mod:`.engine`)."""
    cin, h, w, k = (int(f[x]) for x in ("cin", "h", "w", "k"))
    stride, hout, wout = int(f["stride"]), int(f["hout"]), int(f["wout"])
    groups = conv_groups(cfg, wout, stride)
    nch = -(-int(f["t"]) // cfg.p_t)
    terms = cin * k * k
    if words is None:
        return np.full((len(groups) * hout, nch), -(-terms // 2) + 3, np.int64)
    if np.asarray(words).size != cin * h * w:
        raise ValueError(f"conv_busy: {np.asarray(words).size} input words, the descriptor reads {cin * h * w}")
    nz = np.asarray(words).reshape(cin, h, w) != 0
    pad_y, pad_x = int(f.get("pad_y", f["pad"])), int(f["pad"])
    # frame padded with all-zero (never live) words wide enough for every tap
    big = np.zeros((cin, max(h, (hout - 1) * stride + k) + pad_y + k,
                    max(w, (wout - 1) * stride + k) + pad_x + k), bool)
    big[:, pad_y:pad_y + h, pad_x:pad_x + w] = nz
    starts = np.cumsum([0] + groups[:-1])
    taps = np.arange(k)
    cols = (np.arange(wout) * stride)[:, None] + taps[None, :]        # [wout, K] padded column
    out = np.empty((hout, len(groups)), np.int64)
    for oy in range(hout):
        rows = oy * stride + taps                                     # padded rows of the taps
        t = big[:, rows][:, :, cols]                                  # [cin, Ky, wout, Kx]
        g = np.logical_or.reduceat(t, starts, axis=2)                 # [cin, Ky, groups, Kx]
        live = g.transpose(2, 0, 1, 3).reshape(len(groups), terms)
        out[oy] = conv_block_cycles(live, cfg.scan) + 3
    return np.repeat(out.reshape(-1, 1), nch, axis=1)


def conv_inputs(prog, graph, values: dict, codes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per conv node, the T-bundle words its CONV descriptors read, from the golden
    reference's values (``reference.run(record=True).values``, batch 0); ``codes``
    (``[T, C, H, W]``) stand in for the input node's values."""
    from ...compiler import ir

    out = {}
    for node in {nd for op, _, nd in prog.descriptors if op == isa.OP_CONV}:
        n = graph.node(node)
        src = n.inputs[0]
        if graph.types[src].kind == "analog":
            out[node] = prog.input_planes(np.asarray(values[src])[:, 0] if codes is None else codes)
        else:
            v = np.asarray(values[src])[:, 0]
            v = (v.reshape(v.shape[0], -1) != 0).astype(np.int64)
            out[node] = (v << np.arange(v.shape[0], dtype=np.int64)[:, None]).sum(0).astype(np.uint32)
        assert isinstance(n, (ir.Conv, ir.Linear))
    return out


@dataclass(frozen=True)
class LayerCycles:
    name: str
    unit: str
    cycles: int
    compute: int      # cycles in the unit itself (no descriptor fetch / DMA)
    dma: int


def beside_store(op: int, f: dict) -> bool:
    """A descriptor that runs beside an asynchronous STORE: any but a ``STORE``, ``END`` or
    a fenced one (``f["fence"]``, :data:`.isa.FENCE`), which wait in decode for it
    (:mod:`.engine`: the STORE machine has the AXI write channels and the activation
    buffer's read port 2 to itself, so nothing else shares a resource with it)."""
    return op not in (isa.OP_STORE, isa.OP_END) and not f.get("fence")


def conv_window(prog, i: int, words: np.ndarray) -> np.ndarray:
    """The input T-bundle words CONV descriptor ``i`` of ``prog`` reads, from its node's whole
    input ``words``: in a DDR-resident program the window ``prog.windows[i] = (first channel,
    first row, frame height, first column, frame width)`` of ``cin x h x w`` words (a tile's
    channel group, rows and columns); else all of them."""
    win = (getattr(prog, "windows", {}) or {}).get(i)
    if win is None:
        return words
    c0, r0, H, x0, W = win
    f = prog.descriptors[i][1]
    cin, h, w = int(f["cin"]), int(f["h"]), int(f["w"])
    return np.asarray(words).reshape(-1, H, W)[c0:c0 + cin, r0:r0 + h, x0:x0 + w]


def _costs(prog, ddr_latency: int = 0, inputs: dict | None = None):
    """``(op, node, cycles, fetch)`` of every descriptor of ``prog`` in order (``cycles``
    from its start to the next one's, ``fetch`` of them its fetch and decode), plus
    ``(OP_STORE, node, stall, 0)`` where a descriptor waits for an asynchronous STORE of
    ``node``. With ``inputs`` (:func:`conv_inputs`) a CONV reads its window of the node's
    input bundles.

    Asynchronous STOREs (``mode & STORE_ASYNC``): descriptor ``k`` takes cycles
    ``[t_k, t_k + c_k)``, its DECODE at ``t_k + F - 1`` (``F`` the fetch). An asynchronous
    STORE's machine runs the cycles a synchronous one would (idle from ``E = t_k + c_k``)
    while the sequencer goes on at ``t_k + F``. The next ``STORE``, ``END`` or fenced
    descriptor (:func:`beside_store`) decodes at ``max(t_j + F - 1, E)``: it is delayed by
    ``max(0, E - t_j - F + 1)`` cycles. Exact because nothing else shares a resource with
    the STORE machine (its own AXI channels and buffer port) or changes what it moves (the
    emitter's proof, :mod:`.overlap`)."""
    cfg = prog.cfg
    fetch = FETCH_OVERHEAD + dma_read(isa.DESC_WORDS, cfg, ddr_latency)
    t, idle_at, owner = 0, 0, None
    for i, (op, f, node) in enumerate(prog.descriptors):
        words = None if inputs is None or op != isa.OP_CONV else conv_window(prog, i, inputs[node])
        c = descriptor_cycles(op, f, cfg, ddr_latency, words)
        if owner is not None and not beside_store(op, f):
            stall = max(0, idle_at - (t + fetch - 1))
            if stall:
                yield isa.OP_STORE, owner, stall, 0
                t += stall
            owner = None
        fe = fetch - (1 if op == isa.OP_END else 0)
        if op == isa.OP_STORE and int(f.get("mode", 0)) & isa.STORE_ASYNC:
            idle_at, owner, c = t + c, node, fetch
        yield op, node, c, fe
        t += c


def program_cycles(prog, ddr_latency: int = 0, inputs: dict | None = None) -> tuple[int, list[LayerCycles]]:
    """Total cycles of ``prog`` and per-node cycles (descriptors grouped by their node).

    ``inputs`` (:func:`conv_inputs`): each conv's whole input T-bundles; the count is then
    the exact one for those spikes (the CONV unit skips terms whose bundles are all zero,
    :func:`conv_busy`). A CONV of a DDR-resident program
    reads the window ``prog.windows[i] = (first channel, first row, frame height, first
    column, frame width)`` of it.
    Without ``inputs``: the data-independent dense upper bound."""
    per: dict[str, list[int]] = {}
    order: list[str] = []
    total = 0
    for op, node, c, fe in _costs(prog, ddr_latency, inputs):
        total += c
        key = node or isa.OPNAMES[op].lower()
        if key not in per:
            per[key] = [0, 0, 0]
            order.append(key)
        per[key][0] += c
        if op in (isa.OP_LOAD, isa.OP_LOADW, isa.OP_STORE):
            per[key][2] += c - fe
        elif op not in (isa.OP_END, isa.OP_HEADER):
            per[key][1] += c - fe
    units = {s.name: s.unit for s in prog.stats}
    return total, [LayerCycles(k, units.get(k, k.upper()), *per[k]) for k in order]


def cycles_by_opcode(prog, ddr_latency: int = 0, inputs: dict | None = None) -> dict[str, int]:
    """Cycles of ``prog`` per opcode (``CONV``, ``LOAD``, ``STORE``, ...; each descriptor's
    fetch counted with it), in first-seen order; the values sum to :func:`program_cycles`
    with the same arguments."""
    out: dict[str, int] = {}
    for op, _, c, _ in _costs(prog, ddr_latency, inputs):
        out[isa.OPNAMES[op]] = out.get(isa.OPNAMES[op], 0) + c
    return out


# ----------------------------------------------------------------------------- sparsity


def bundle_sparsity(values: dict, graph) -> dict[str, float]:
    """Per spike node: fraction of ``(c, y, x)`` whose T-step bundle is all zero.

    ``values``: ``reference.run(record=True).values`` (``[T, B, *shape]``); averaged over
    the batch. The CONV unit skips a term when every pixel of its group has such a bundle
    there (:func:`conv_busy`).
    """
    out = {}
    for name, v in values.items():
        t = graph.types.get(name)
        if t is None or t.kind != "spike":
            continue
        a = np.asarray(v)
        out[name] = float((a.reshape(a.shape[0], a.shape[1], -1) == 0).all(0).mean())
    return out


# ----------------------------------------------------------------------------- prediction


@dataclass(frozen=True)
class Prediction:
    model: str
    T: int
    size: int
    clock_mhz: float
    adds: int
    cycles: int
    ideal_cycles: int
    weight_bytes: int
    skip: float

    @property
    def ms(self) -> float:
        return self.cycles / (self.clock_mhz * 1e3)

    @property
    def ideal_ms(self) -> float:
        return self.ideal_cycles / (self.clock_mhz * 1e3)

    @property
    def utilisation(self) -> float:
        return self.ideal_cycles / self.cycles if self.cycles else 0.0

    def as_dict(self) -> dict:
        return {"model": self.model, "T": self.T, "size": self.size, "clock_mhz": self.clock_mhz,
                "adds": self.adds, "cycles": self.cycles, "ms": round(self.ms, 3),
                "ideal_cycles": self.ideal_cycles, "ideal_ms": round(self.ideal_ms, 3),
                "utilisation": round(self.utilisation, 4), "weight_bytes": self.weight_bytes,
                "bundle_skip": self.skip}


def layers_from_graph(graph) -> list[dict]:
    """T-independent layer list of an integer graph for :func:`predict` (EW/REDUCE sizes
    are per time step; LIF/SDHA/CONV carry their shapes)."""
    from ...compiler import ir

    out = []
    cons: dict[str, list] = {}
    for n in graph.nodes:
        for s_ in n.inputs:
            cons.setdefault(s_, []).append(n)
    # a conv whose only consumer is an IntLIF: the LIF runs on its write-back (T <= P_t)
    fuse = {n.name for n in graph.nodes if isinstance(n, (ir.Conv, ir.Linear)) and len(cons.get(n.name, [])) == 1
            and isinstance(cons[n.name][0], ir.IntLIF) and n.name not in graph.outputs}
    for n in graph.nodes:
        t = graph.types[n.name]
        shp = tuple(t.shape) if len(t.shape) == 3 else (t.shape[0], 1, 1)
        if isinstance(n, (ir.Conv, ir.Linear)):
            src = graph.types[n.inputs[0]]
            k = int(n.weight.shape[2]) if n.weight.ndim == 4 else 1
            planes = 8 if src.kind == "analog" else 1
            out.append({"op": "conv", "name": n.name, "cin": int(n.weight.shape[1]) * planes, "planes": planes,
                        "kk": k * k, "hout": shp[1], "wout": shp[2], "cout": shp[0],
                        "stride": int(getattr(n, "stride", 1) or 1), "lif": n.name in fuse})
        elif isinstance(n, ir.IntLIF):
            out.append({"op": "lif", "name": n.name, "c": shp[0], "hw": shp[1] * shp[2],
                        "fused": n.inputs[0] in fuse})
        elif isinstance(n, (ir.Add, ir.Requant)):
            out.append({"op": "ew", "name": n.name, "n": shp[0] * shp[1] * shp[2],
                        "mode": int(isinstance(n, ir.Requant)), "hw": shp[1] * shp[2]})
        elif isinstance(n, (ir.GlobalPool, ir.TimeMean)):
            src = graph.types[n.inputs[0]].shape
            out.append({"op": "reduce", "name": n.name, "n": int(np.prod(src))})
        elif isinstance(n, ir.Attention):
            out.append({"op": "sdha", "name": n.name, "heads": n.heads, "d": shp[0] // n.heads,
                        "hw": shp[1] * shp[2]})
    return out


def predict(layers: list[dict], cfg: AccelConfig, *, model: str, T: int, size: int,
            skip: float = 0.0, stream_weights: bool = False) -> Prediction:
    """Latency of a layer list (:func:`layers_from_graph`) on ``cfg``.

    An approximation for graphs no program is emitted for (e.g. T=32 rows of the benchmark):
    per conv, ``LOADW`` chunks (weight buffer permitting) then ``CONV``, descriptors fetched
    from DDR, every spike map stored to DDR, a conv -> IntLIF pair with ``T <= P_t`` as one
    CONV with the LIF on its write-back; the same per-descriptor costs as
    :func:`descriptor_cycles`, but every tensor is assumed on chip: the ddr plan's tile DMA
    (:mod:`.tiling`) is not counted, so it is optimistic for real sizes. Emit the program
    and use :func:`program_cycles` for exact figures.

    ``skip``: the fraction of all-zero input T-bundles (:func:`bundle_sparsity`), recorded
    in the result; the layer list has no spike maps, so the CONV counts stay the dense bound
    (use :func:`program_cycles` with ``inputs`` for a clip's exact count).
    ``stream_weights`` models a *planned* change (not in the RTL): weights arrive a full AXI beat per cycle (as ``LOADW`` does) into a double-buffered
    weight buffer, hidden behind the previous chunk's compute.
    """
    P = cfg.p_o
    fetch = FETCH_OVERHEAD + dma_read(isa.DESC_WORDS, cfg)
    cycles = 4 * fetch
    ideal = adds = wbytes = 0
    for L in layers:
        op = L["op"]
        if op == "conv":
            terms = L["cin"] * L["kk"]
            tiles = -(-L["cout"] // P)
            wtile = L["cin"] // L.get("planes", 1) * L["kk"]
            per_chunk = max(1, cfg.wbuf_depth // wtile)
            hw = L["hout"] * L["wout"]
            for c0 in range(0, tiles, per_chunk):
                c1 = min(tiles, c0 + per_chunk)
                comp = fetch + conv_cycles(cfg, terms=terms, hout=L["hout"], wout=L["wout"], T=T,
                                           cout=L["cout"], stride=L.get("stride", 1), oc_start=c0 * P,
                                           oc_end=min(L["cout"], c1 * P), lif=L.get("lif", False) and T <= cfg.p_t)
                units = (c1 - c0) * wtile * (P // 4)
                load = fetch + (-(-units // cfg.units_per_beat) if stream_weights else dma_read(units, cfg))
                cycles += max(comp, load) if stream_weights else comp + load
            a = L["cout"] * hw * terms * T
            adds += a
            ideal += -(-a // cfg.adders)
            wbytes += tiles * wtile * P
        elif op == "lif" and L.get("fused") and T <= cfg.p_t:     # on its conv's write-back
            cycles += fetch + dma_write(L["c"] * L["hw"], cfg)
        elif op == "lif":
            cycles += 2 * fetch + lif_cycles(L["c"], L["hw"], T, cfg) + dma_write(L["c"] * L["hw"], cfg)
        elif op == "ew":
            cycles += fetch + ew_cycles(L["n"] * T, L.get("mode", 0), L.get("hw", 1) * T, cfg)
        elif op == "reduce":
            cycles += fetch + L["n"] * T + 2
        elif op == "sdha":
            cycles += fetch + sdha_cycles(L["heads"], L["d"], L["hw"], T, cfg)
            adds += 2 * L["heads"] * L["d"] * L["d"] * L["hw"] * T
    return Prediction(model, T, size, cfg.clock_mhz, int(adds), int(cycles), int(ideal), int(wbytes), skip)
