"""The layer-sequential engine: a micro-coded accelerator that runs a compiled spike graph.

A sequencer fetches descriptors (:mod:`.isa`) from DDR and runs one unit at a time:

* **DMA** (AXI4 master, INCR bursts of at most ``cfg.burst`` beats, cut so that no burst
  crosses a 4 KB address boundary, AXI4 A3.4.1: a burst from byte ``a`` has at most
  ``(4096 - a % 4096) / beat_bytes`` beats): ``LOAD`` DDR -> activation buffer, ``LOADW`` DDR ->
  weight buffer, ``STORE`` activation buffer -> DDR; descriptors are fetched the same way.
  Up to ``cfg.outstanding`` bursts in flight per direction, so a DDR's per-burst latency is
  paid once per transfer when the bursts in flight cover it: an *issuer* walks the
  transfer's runs (a 2-D ``LOAD``/``STORE``'s runs, a ``LOADW``'s words, a descriptor)
  presenting the next burst on AR (AW) while fewer than ``outstanding`` are unfinished (a
  read until its last beat, a write until its response; the burst stays valid until its
  handshake, which steps the issuer to the next burst or the next run's first). The data
  side keeps its own place (buffer word, units left in the run, runs left): R takes a
  beat every cycle one comes (``RREADY`` high) and ends the transfer with the last run's
  last beat; W streams the beats, ``WLAST`` where the issuer cut (``burst`` beats, a
  page's last beat, a run's last beat), and the transfer ends with the last response.
  One beat per cycle both ways: the activation buffer has one 32-bit bank per beat unit
  (:mod:`.actbuf`), so a beat's ``u`` words go in (or come out) together at any word
  alignment of the buffer address; a partial last beat of a run is masked (``WSTRB`` on a
  store). A weight word is ``P_o*8 / axi_data_width`` beats. An accumulating ``LOAD``
  (``mode & LOAD_ACC``, :mod:`.isa` version 7) reads the buffer run a beat lands on (port 0)
  in the cycle the beat comes and writes ``beat + run`` (``u`` 32-bit adds, wrapping) the
  next cycle: the same cycles as a ``LOAD`` (the last write falls in ``NEXT``), and a
  residual or partial-sum add costs no ``EW`` pass. A ``STORE`` runs on its own *STORE
  machine* (AW issuer, W side, B count, its fields latched, and the activation buffer's
  read port 2, a third copy of the words that only it reads): the sequencer waits for it
  in ``WR``, or with ``mode & STORE_ASYNC`` (:mod:`.isa` version 8) goes on, fetching and
  running the next descriptors beside it, loads and compute units alike; the next
  ``STORE``, ``END`` or fenced descriptor (word 0 bit 31, version 9) waits in ``DECODE``
  until the machine is idle. The emitter fences the first descriptor that writes the
  STORE's buffer words or reads its DDR bytes (:mod:`.overlap`).
* **CONV**: output-stationary array of ``P_o/2 x P_t x P_pix`` DSP48E2 two-lane SIMD
  accumulators (:class:`.simd.SimdAcc`, ``USE_MULT="NONE"``; a behavioural twin in
  simulation, ``dsp_instance=True`` for synthesis). For a *group* of ``g`` consecutive
  output pixels of a row, ``g = min(P_pix, (u-1)//stride + 1, wout - ox)`` (``u`` words
  per read-port run; the row's last group may be partial), and a tile of ``P_o`` output
  channels, the group's terms ``(i, ky, kx)`` (in that order) are cut into blocks of
  ``S = cfg.scan``. A *scan* stage, one block ahead, reads per cycle the occupancy flags
  (:mod:`.actbuf`, ``word != 0``) of a block's ``S`` terms (``S`` flag ports, the run of
  ``u`` flags at each tap, pixel ``p``'s at word ``p*stride``, masked by its in-frame test
  and ``p < g``) and latches their addresses; a term is *live* when a flag survives. The
  *issue* stage sends the block's live terms, lowest first, two per cycle, as a pair
  ``(i, ky, kx)``, ``(i', ky', kx')``: the runs of ``u`` words at the two taps' addresses
  (two activation ports; pixel ``p`` of the group takes word ``p*stride`` of each run, its
  own padding test) and the two weight vectors (two weight ports, shared by the ``g``
  pixels and ``P_t`` steps, so no weight-bank conflict): ``max(1, ceil(live/2))`` cycles a
  block (an empty block passes in one cycle with an empty pair). Skipping is exact: a
  skipped term's bundle words are zero for every pixel of the group, its gated additions
  were 0 (a word non-zero only in another ``P_t`` chunk is issued, still exact). The
  accumulator of (pixel ``p``, step ``t``, channels ``o, o+1``) does
  ``P <= (clr ? 0 : P) + (b0[p,t] ? W0[o,o+1] : 0) + (b1[p,t] ? W1[o,o+1] : 0)`` per
  24-bit lane, ``W = w << j`` sign-extended (``j`` = bit-plane of an analog input, else 0),
  ``b[p,t]`` the pixel's bundle bit ``t`` (0 for a padding tap or an empty slot); ``clr``
  on the group's first issued pair, even an empty one. A group takes
  ``3 + sum_blocks max(1, ceil(live_b/2))`` cycles (:func:`.cycles.conv_busy`; all terms
  live: ``ceil(cin*K*K/2) + 3``, ``S = 2`` is the dense engine). No lane wraps: the
  emitter proves ``max_o sum |w| << j < 2**23`` (:func:`.program.lane_bound`). No
  multiplier anywhere. The sums go to shadow
  registers; the write-back adds ``bias[o]`` (32-bit) and writes ``[o][pixel][t]``, per
  (channel, pixel) its ``t_n`` steps as runs of up to ``u`` words per cycle (the write
  port's mask), while the next group accumulates.
  With ``lflags & LFLAG_WB`` (:mod:`.isa` version 6, ``T <= P_t``) the write-back applies
  the IntLIF the conv feeds instead: one channel per cycle (``lanes`` cycles a group) goes
  into a ``P_t``-stage pipeline, stage ``s`` running step ``s`` of the group's ``g``
  pixels with the LIF unit's arithmetic (``x_t = acc + bias[o]``, ``X = pol*(x<<F) + b``,
  ``H``, ``S = H >= theta``, reset, ``V0 = 0``; steps ``>= T`` fire nothing) in three
  registered sub-stages (no sub-stage holds two carry chains in series: ``S`` is the sign
  of ``H - theta``, summed beside ``H``), and the last stage writes the ``g`` T-bundles
  (consecutive words) as one masked run, ``3*P_t + 1`` cycles after the issue. The
  tile's ``3*P_o`` LIF parameters are read after its biases
  (state ``C_LPAR``, runs of ``u`` words on both ports, ``ceil(3*P_o/2u) + 1`` cycles)
  into fixed registers, copied at each hand-off into a chain that shifts with the
  shadows' channel rows (no ``P_o``-way multiplexer). The next tile (and ``NEXT``) waits
  until the pipeline is empty.
* **LIF**: ``L = 2u`` integer-LIF lanes (:func:`~.config.lif_lanes`) over a group of
  ``L`` consecutive neurons of a channel, each neuron's ``T`` steps back to back, one per
  cycle, its membrane in a register, never stored (``X = pol*(x<<F) + b``,
  ``H = V + ((X - V) >> k)`` or ``H = V - (V >> k) + X``, ``S = H >= theta``, hard/soft
  reset; ``X`` is registered a cycle ahead and ``S`` is the sign of ``H - theta``, summed
  beside ``H``, so the membrane loop holds two carry chains, not four). A neuron's steps are consecutive words, so a read port's run of ``u`` words
  feeds a lane for ``u`` cycles: lane pair ``j`` (neurons ``2j``, ``2j+1``, one per read
  port) reads its runs at cycles ``j, u + j, 2u + j, ...`` of the group and buffers them
  (staggered, the two ports serve all ``2u`` lanes). Groups start ``u*ceil(T/u)``
  cycles apart; the ``L`` finished bundles (consecutive words) are written as two masked
  runs of ``u`` words while the next group runs. A channel's parameters (theta, bias,
  polarity) are read as runs between its groups and travel with each group to its lanes,
  so channels follow each other without draining the lanes.
* **EW**: residual add ``a + b`` or per-channel rounding shift ``(a + (2**s >> 1)) >> s``,
  a run of up to ``u`` consecutive elements per cycle (read port 0's run of ``a``, port
  1's of ``b``, one masked write); in shift mode a run stays inside one channel, whose
  shift is word 0 of port 1.
* **REDUCE**: strided sums (global pooling, time sum).
* **SDHA**: joint spike-driven attention per head, using the weight buffer as scratch
  (``w = P_o/4`` 32-bit lanes per word, :mod:`.isa`). Phase 0 copies V transposed into it
  (one bundle per cycle), so that a word holds ``V[n, b]`` for ``w`` channels ``b``.
  Phase 1: ``kv[a,b] = sum_n (2K[n,a]-1) V[n,b]`` summed over the ``T`` steps,
  ``2*popcount(K&V) - popcount(V)`` per bundle pair, for the ``w`` channels of a word at
  once (one ``K[n,a]`` read, one word read per cycle); each finished ``kv[a, word]`` is
  one weight-buffer write. Phase 2 over T-bundles in chunks of ``P_t`` steps (chunk
  ``c``: steps ``c*P_t ..``), ``w`` outputs at once (every lane of a kv word): for outputs
  ``(n, b..b+w-1)`` one term ``a`` per cycle reads the bundle ``Q[n,a]`` and the word
  holding ``kv[a, b..b+w-1]`` and updates all ``w x P_t`` accumulators at once,
  ``acc[j][s] += Q bit c*P_t+s ? kv[a,b+j] : -kv[a,b+j]`` (selection and addition, no
  multiplier), so ``y[n,b+j,t] = sum_a (2Q[n,a,t]-1) kv[a,b+j]``. The sums go to shadow
  registers and are written as runs of up to ``u`` words (an output's consecutive
  steps), one run per cycle, while the next outputs accumulate; groups of ``l`` outputs
  start ``max(d, l*ceil(steps/u))`` cycles apart (:func:`.cycles.sdha_cycles`).
  Phase 2 runs over the ``ntok`` tokens of a range (Q channels ``qs`` apart, output
  channels ``hwt`` apart); descriptor ``mode`` skips phases 0/1 (kv kept in the weight
  buffer from an earlier SDHA of the head) or phase 2, so a head too big for the
  activation buffer runs as one kv build and several token ranges (:mod:`.isa`).

Every unit is a 1-result-per-cycle pipeline over synchronous 1-cycle-latency memory
ports: stage A issues addresses, stage B consumes the data. The cycle counts are exact
functions of the descriptors (:mod:`.cycles`). All arithmetic is exact for values within
the bounds the program emitter checks (32-bit stored values, 48-bit membranes: the
compiler's widest register, :data:`MEM_BITS`).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .actbuf import ActBuffer
from .config import MEM_BITS, AccelConfig, lif_lanes
from .simd import LANE_BITS, SimdAcc

__all__ = ["Engine", "axi_signature", "MEM_BITS"]

#: no AXI4 burst crosses a boundary of this many bytes (A3.4.1: 4 KB)
PAGE_BYTES = 4096


def axi_signature(cfg: AccelConfig) -> dict:
    """Flat AXI4 master (``m_axi_*``), AXI4-Lite slave (``s_axil_*``) and ``irq`` ports."""
    dw = cfg.axi_data_width
    return {
        "m_axi_awaddr": Out(32), "m_axi_awlen": Out(8), "m_axi_awsize": Out(3), "m_axi_awburst": Out(2),
        "m_axi_awvalid": Out(1), "m_axi_awready": In(1),
        "m_axi_wdata": Out(dw), "m_axi_wstrb": Out(dw // 8), "m_axi_wlast": Out(1),
        "m_axi_wvalid": Out(1), "m_axi_wready": In(1),
        "m_axi_bresp": In(2), "m_axi_bvalid": In(1), "m_axi_bready": Out(1),
        "m_axi_araddr": Out(32), "m_axi_arlen": Out(8), "m_axi_arsize": Out(3), "m_axi_arburst": Out(2),
        "m_axi_arvalid": Out(1), "m_axi_arready": In(1),
        "m_axi_rdata": In(dw), "m_axi_rresp": In(2), "m_axi_rlast": In(1), "m_axi_rvalid": In(1),
        "m_axi_rready": Out(1),
        "s_axil_awaddr": In(8), "s_axil_awvalid": In(1), "s_axil_awready": Out(1),
        "s_axil_wdata": In(32), "s_axil_wstrb": In(4), "s_axil_wvalid": In(1), "s_axil_wready": Out(1),
        "s_axil_bresp": Out(2), "s_axil_bvalid": Out(1), "s_axil_bready": In(1),
        "s_axil_araddr": In(8), "s_axil_arvalid": In(1), "s_axil_arready": Out(1),
        "s_axil_rdata": Out(32), "s_axil_rresp": Out(2), "s_axil_rvalid": Out(1), "s_axil_rready": In(1),
        "irq": Out(1),
        "status": Out(4),
    }


def _popcount(v):
    """Number of set bits of ``v`` as a balanced adder tree (operand widths grow by one
    bit per level, not per bit as a linear chain of sums would)."""
    xs = [v[i].as_unsigned() for i in range(len(v))]
    while len(xs) > 1:
        xs = [xs[i] + xs[i + 1] if i + 1 < len(xs) else xs[i] for i in range(0, len(xs), 2)]
    return xs[0]


def _times(n, x):
    """``n * x`` for a narrow unsigned ``n`` as a sum of shifted copies of ``x`` (no multiplier)."""
    return sum(Mux(n[i], x << i, 0) for i in range(len(n)))


def _log2(n: int) -> int:
    return max(1, (n - 1).bit_length())


class Engine(wiring.Component):
    """The accelerator top (see the module docstring).

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    m_axi_* : AXI4 master to DDR (32-bit addresses, ``cfg.axi_data_width`` data).
    s_axil_* : AXI4-Lite control/status slave (:mod:`.isa` register map).
    irq : level interrupt, ``done & IRQ_EN``.
    status : ``busy, done, error, interrupt pending`` (the board's user LEDs).
    """

    def __init__(self, cfg: AccelConfig, dsp_instance: bool = False):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self.dsp_instance = bool(dsp_instance)
        super().__init__(axi_signature(cfg))

    def elaborate(self, platform):  # noqa: C901 - one sequencer, one FSM
        cfg = self.cfg
        m = Module()
        PO, PT, UPB = cfg.p_o, cfg.p_t, cfg.units_per_beat
        PPIX = cfg.p_pix
        LU = UPB.bit_length() - 1
        MB = MEM_BITS
        DW = cfg.axi_data_width
        WBW = PO * 8
        AW = _log2(cfg.act_depth)
        WAW = _log2(cfg.wbuf_depth)
        beat_bytes = DW // 8

        # ------------------------------------------------------------------ memories
        # activation buffer: UPB banks, a whole AXI beat per cycle (DMA), single words for the units
        SC = cfg.scan
        m.submodules.act = act = ActBuffer(cfg.act_depth, UPB, cfg.act_ram_style, flags=SC,
                                                   store_style=cfg.store_ram_style)
        r0 = SimpleNamespace(addr=act.r0_addr, data=act.r0_data)
        r2 = SimpleNamespace(addr=act.r2_addr, data=act.r2_data)    # the STORE machine's
        r1 = SimpleNamespace(addr=act.r1_addr, data=act.r1_data)
        wp = SimpleNamespace(addr=act.w_addr, data=act.w_data, en=act.w_en)
        m.submodules.wbuf = wbuf = memory.Memory(shape=unsigned(WBW), depth=cfg.wbuf_depth, init=[],
                                                 attrs={"ram_style": cfg.wbuf_ram_style})
        wr = wbuf.read_port()
        wr1 = wbuf.read_port()   # CONV: weight of the second term of a pair
        ww = wbuf.write_port()

        # ------------------------------------------------------------------ control registers
        busy = Signal()
        done = Signal()
        error = Signal()
        start = Signal()
        prog = Signal(32)
        irq_en = Signal()
        irq_pend = Signal()
        cycles = Signal(32)
        pc = Signal(32)
        m.d.comb += [self.irq.eq(irq_pend & irq_en), self.status.eq(Cat(busy, done, error, irq_pend))]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)

        # AXI4-Lite slave: one write and one read at a time
        aw_addr = Signal(8)
        aw_got = Signal()
        w_data = Signal(32)
        w_got = Signal()
        m.d.comb += [self.s_axil_awready.eq(~aw_got & ~self.s_axil_bvalid),
                     self.s_axil_wready.eq(~w_got & ~self.s_axil_bvalid),
                     self.s_axil_bresp.eq(0), self.s_axil_rresp.eq(0)]
        with m.If(self.s_axil_awvalid & self.s_axil_awready):
            m.d.sync += [aw_addr.eq(self.s_axil_awaddr), aw_got.eq(1)]
        with m.If(self.s_axil_wvalid & self.s_axil_wready):
            m.d.sync += [w_data.eq(self.s_axil_wdata), w_got.eq(1)]
        m.d.comb += start.eq(0)
        with m.If(aw_got & w_got):
            m.d.sync += [aw_got.eq(0), w_got.eq(0), self.s_axil_bvalid.eq(1)]
            with m.Switch(aw_addr):
                with m.Case(isa.REG_CTRL):
                    m.d.comb += start.eq(w_data[0] & ~busy)
                with m.Case(isa.REG_PROG):
                    m.d.sync += prog.eq(w_data)
                with m.Case(isa.REG_IRQ_EN):
                    m.d.sync += irq_en.eq(w_data[0])
                with m.Case(isa.REG_IRQ_STAT):
                    with m.If(w_data[0]):
                        m.d.sync += irq_pend.eq(0)
        with m.If(self.s_axil_bvalid & self.s_axil_bready):
            m.d.sync += self.s_axil_bvalid.eq(0)
        m.d.comb += self.s_axil_arready.eq(~self.s_axil_rvalid)
        with m.If(self.s_axil_arvalid & self.s_axil_arready):
            m.d.sync += self.s_axil_rvalid.eq(1)
            with m.Switch(self.s_axil_araddr):
                with m.Case(isa.REG_STATUS):
                    m.d.sync += self.s_axil_rdata.eq(Cat(busy, done, error))
                with m.Case(isa.REG_PROG):
                    m.d.sync += self.s_axil_rdata.eq(prog)
                with m.Case(isa.REG_IRQ_EN):
                    m.d.sync += self.s_axil_rdata.eq(irq_en)
                with m.Case(isa.REG_IRQ_STAT):
                    m.d.sync += self.s_axil_rdata.eq(irq_pend)
                with m.Case(isa.REG_CYCLES):
                    m.d.sync += self.s_axil_rdata.eq(cycles)
                with m.Case(isa.REG_PC):
                    m.d.sync += self.s_axil_rdata.eq(pc)
                with m.Case(isa.REG_ID):
                    m.d.sync += self.s_axil_rdata.eq(isa.MAGIC)
                with m.Case(isa.REG_CONFIG):
                    m.d.sync += self.s_axil_rdata.eq(PO | (PT << 16))
                with m.Case(isa.REG_VERSION):
                    m.d.sync += self.s_axil_rdata.eq(isa.VERSION)
                with m.Default():
                    m.d.sync += self.s_axil_rdata.eq(0)
        with m.If(self.s_axil_rvalid & self.s_axil_rready):
            m.d.sync += self.s_axil_rvalid.eq(0)

        # ------------------------------------------------------------------ descriptor
        desc = Array(Signal(32, name=f"desc{i}") for i in range(isa.DESC_WORDS))

        def f(op, name):
            return desc[isa.field_index(op, name)]

        opcode = Signal(8)
        m.d.comb += opcode.eq(desc[0][:8])

        # default memory port values
        m.d.comb += [wp.en.eq(0), ww.en.eq(0)]

        # ------------------------------------------------------------------ DMA state
        # issuer (AR or AW side): walks the transfer's runs issuing bursts while fewer than
        # cfg.outstanding are unfinished; the data side (R or W) keeps its own place
        OUTS = cfg.outstanding
        iss_addr = Signal(32)         # DDR byte address of the next burst
        iss_beats = Signal(32)        # beats of the current run not yet requested
        iss_rows = Signal(32)         # runs left, the current one included (0 or 1: the last)
        iss_row = Signal(32)          # DDR byte address of the issuer's current run
        in_flight = Signal(range(OUTS + 1))   # bursts issued and not finished (R: last beat, W: B)
        dma_left = Signal(32)         # data side: 32-bit units of the current run still to move
        dma_dst = Signal(32)          # buffer word of the current beat (LOADW: weight word)
        dma_kind = Signal(2)          # 0 act, 1 wbuf, 2 descriptor, 3 act accumulate (LOAD_ACC)
        # accumulating LOAD: a beat reads the buffer run it lands on (port 0) when it comes,
        # and the next cycle writes beat + run (u 32-bit adds); held here in between
        acc_v = Signal()
        acc_dst = Signal(32)
        acc_beat = Signal(DW)
        acc_mask = Signal(UPB)
        m.d.sync += acc_v.eq(0)      # (before the sequencer: a beat's RD sets it)
        dma_rows = Signal(32)         # data side: runs left, this one included
        row_dst = Signal(32)          # data side: buffer word of the current run
        # the STORE machine (AW issuer, W data side, B count): its own registers, so that a
        # STORE with mode & STORE_ASYNC runs beside the next LOADs and descriptor fetches
        w_busy = Signal()             # a STORE is in flight
        wiss_addr = Signal(32)        # AW issuer: DDR byte address of the next burst
        wiss_beats = Signal(32)
        wiss_rows = Signal(32)
        wiss_row = Signal(32)
        w_in_flight = Signal(range(OUTS + 1))  # write bursts issued and not answered (B)
        wd_left = Signal(32)          # W side: units of the current run still to send
        wd_dst = Signal(32)           # W side: buffer word of the current beat
        wd_rows = Signal(32)          # W side: runs left, this one included
        wrow_dst = Signal(32)         # W side: buffer word of the current run
        row_ddr = Signal(32)          # W side: DDR byte address of the current beat's run
        w_addr = Signal(32)           # W side: DDR byte address of the current beat
        w_cnt = Signal(range(cfg.burst + 1))  # W side: beats of the current burst already sent
        w_done = Signal()             # W side: the transfer's last beat has been sent
        w_count = Signal(32)          # the STORE's fields, latched (the next fetch overwrites desc)
        w_dstride = Signal(32)
        w_astride = Signal(32)
        w_finish = Signal()           # the STORE machine's last cycle (last beat sent, last B)
        BPW = WBW // DW               # beats per weight-buffer word (AccelConfig checks DW | WBW)
        wasm = Signal(WBW)            # weight word assembly
        wasm_n = Signal(range(max(BPW, 2)))
        burst_len = Signal(9)
        BSH = beat_bytes.bit_length() - 1
        pb_bits = PAGE_BYTES.bit_length() - 1

        def cut_burst(addr, beats, blen, pbeats):
            """``blen`` = the issuer's next burst: at most ``cfg.burst`` beats and, AXI4
            bursts never crossing a 4 KB boundary, at most ``pbeats``, the beats left in
            the page of ``addr``."""
            m.d.comb += pbeats.eq((Const(PAGE_BYTES, pb_bits + 1) - addr[:pb_bits]) >> BSH)
            cap = Mux(pbeats < cfg.burst, pbeats, cfg.burst)
            m.d.comb += blen.eq(Mux(beats > cap, cap, beats))

        def step_issuer(addr, beats, rows, row, blen, stride, run_beats):
            """On an issued burst: the next burst of the run, or the next run's first."""
            with m.If((beats == blen) & (rows > 1)):
                m.d.sync += [rows.eq(rows - 1), row.eq(row + stride), addr.eq(row + stride),
                             beats.eq(run_beats)]
            with m.Else():
                m.d.sync += [beats.eq(beats - blen), addr.eq(addr + (blen << BSH))]

        page_beats = Signal(range(PAGE_BYTES // beat_bytes + 1))
        cut_burst(iss_addr, iss_beats, burst_len, page_beats)
        # the issuer may present a burst: the same one stays valid until its handshake
        # (iss_* change only then, in_flight can only fall meanwhile)
        iss_ok = (iss_beats != 0) & (in_flight < OUTS)
        # the same for the AW issuer of the STORE machine
        wburst_len = Signal(9)
        wpage_beats = Signal(range(PAGE_BYTES // beat_bytes + 1))
        cut_burst(wiss_addr, wiss_beats, wburst_len, wpage_beats)
        wiss_ok = w_busy & (wiss_beats != 0) & (w_in_flight < OUTS)

        def dma_misaligned(two_d):
            """A DMA descriptor whose DDR address (or 2-D run stride) is off the beat: STATUS.error."""
            sh = BSH
            return ((desc[isa.field_index(isa.OP_LOAD, "ddr")][:sh] != 0)
                    | (two_d & (desc[isa.field_index(isa.OP_LOAD, "rows")] > 1)
                       & (desc[isa.field_index(isa.OP_LOAD, "ddr_stride")][:sh] != 0)))
        # units i of the current beat that belong to the transfer (a partial last beat)
        beat_ok = [dma_left > i for i in range(UPB)]
        run_end = dma_left <= UPB     # the data side's current beat is its run's last
        w_beat_ok = [wd_left > i for i in range(UPB)]
        w_run_end = wd_left <= UPB
        # W side: the current beat ends its burst (the issuer's cut: B beats, the page's last
        # beat, the run's last beat)
        w_page_end = w_addr[BSH:pb_bits] == (1 << (pb_bits - BSH)) - 1
        w_last = (w_cnt == cfg.burst - 1) | w_page_end | w_run_end

        m.d.comb += [self.m_axi_arsize.eq((beat_bytes - 1).bit_length()), self.m_axi_arburst.eq(1),
                     self.m_axi_awsize.eq((beat_bytes - 1).bit_length()), self.m_axi_awburst.eq(1),
                     self.m_axi_araddr.eq(iss_addr), self.m_axi_awaddr.eq(wiss_addr),
                     self.m_axi_arlen.eq(burst_len - 1), self.m_axi_awlen.eq(wburst_len - 1),
                     # STORE: the run of UPB words at wd_dst read last cycle, as one beat
                     self.m_axi_wdata.eq(Cat(*(Mux(w_beat_ok[i], act.r2_beat[32 * i: 32 * i + 32], 0)
                                               for i in range(UPB)))),
                     self.m_axi_wstrb.eq(Cat(*(Mux(w_beat_ok[i], 0xF, 0) for i in range(UPB)))),
                     self.m_axi_wlast.eq(w_last)]

        # ------------------------------------------------------------------ CONV state
        oc0 = Signal(32)
        wtile = Signal(32)
        oy = Signal(16)
        ox = Signal(16)
        iy0 = Signal(signed(18))
        ix0 = Signal(signed(18))
        # the group's tap origin in the buffer, inb + (oy*stride - pad_y)*w + ox*stride - pad,
        # and its row's, inb + (oy*stride - pad_y)*w, kept as registers (modulo the buffer's
        # address width, as every address) so that the scan's term addresses add no origin
        g_org = Signal(AW)
        r_org = Signal(AW)
        outp = Signal(32)
        obase = Signal(32)
        tsh = Signal(8)
        tci = Signal(8)
        ci = Signal(16)
        ky = Signal(8)
        kx = Signal(8)
        tap_row = Signal(AW)     # the scan's address terms: buffer/weight addresses wrap at AW/WAW bits
        ch_off = Signal(AW)
        w_ch = Signal(WAW)
        w_tap = Signal(16)
        b_vld = Signal()
        b_first = Signal()  # the pair is the group's first: the accumulators restart (clr)
        b_inb = Signal(PPIX)     # per pixel: term 0's tap inside the frame
        b_shift = Signal(3)
        b_v1 = Signal()     # the pair's second term exists
        b_inb1 = Signal(PPIX)
        b_shift1 = Signal(3)
        gn = Signal(range(PPIX + 1))   # pixels in the current group
        gfirst = Signal()   # the next issued pair is the group's first
        biasreg = Array(Signal(signed(32), name=f"bias{o}") for o in range(PO))
        bi = Signal(range(PO + 2))
        # SIMD accumulators: pixel p, step t, channel pair (2j, 2j+1)
        sacc = [[[SimdAcc(self.dsp_instance) for j in range(PO // 2)] for t in range(PT)]
                for p in range(PPIX)]
        for p in range(PPIX):
            for t in range(PT):
                for j in range(PO // 2):
                    m.submodules[f"dsp_p{p}_t{t}_o{2 * j}"] = sacc[p][t][j]
        wb_o = Signal(range(PO + 1))
        wb_p = Signal(range(PPIX + 1))
        wb_g = Signal(range(PPIX + 1))
        wb_tw = Signal(8)   # first step of the words written this cycle
        wb_addr = Signal(32)
        wb_base = Signal(32)     # (o, pixel 0) of the group, this chunk
        wb_pbase = Signal(32)    # (o, pixel p)
        wb_tn = Signal(8)
        wb_on = Signal(range(PO + 1))
        wbb = Signal()      # write-back engine busy
        shd = [[[Signal(LANE_BITS, name=f"shd_o{o}_p{p}_t{t}") for t in range(PT)] for p in range(PPIX)]
               for o in range(PO)]
        # LIF on the write-back (lflags & LFLAG_WB): the tile's per-channel parameters (C_LPAR),
        # a copy of them that shifts with the shadows' channel rows, and the step pipeline
        lifwb = Signal()
        m.d.comb += lifwb.eq((f(isa.OP_CONV, "lflags") & isa.LFLAG_WB) != 0)
        NPS = -(-3 * PO // (2 * UPB))     # C_LPAR read cycles: 3*P_o words, 2u per cycle
        pj = Signal(range(NPS + 2))
        cth_r = [Signal(signed(32), name=f"cth_r{o}") for o in range(PO)]
        cbi_r = [Signal(signed(32), name=f"cbi_r{o}") for o in range(PO)]
        cng_r = [Signal(name=f"cng_r{o}") for o in range(PO)]
        cth = [Signal(signed(32), name=f"cth{o}") for o in range(PO)]
        cbi = [Signal(signed(32), name=f"cbi{o}") for o in range(PO)]
        cng = [Signal(name=f"cng{o}") for o in range(PO)]
        # stage s (0..P_t): inputs of step s of one channel's g pixels; stage P_t: the bundles
        lv = [Signal(name=f"lwv{s_}") for s_ in range(PT + 1)]
        la_ = [Signal(AW, name=f"lwa{s_}") for s_ in range(PT + 1)]
        lm = [Signal(PPIX, name=f"lwm{s_}") for s_ in range(PT + 1)]
        lth_ = [Signal(signed(32), name=f"lwth{s_}") for s_ in range(PT)]
        lbi_ = [Signal(signed(32), name=f"lwbi{s_}") for s_ in range(PT)]
        lng_ = [Signal(name=f"lwng{s_}") for s_ in range(PT)]
        lx = [[[Signal(signed(32), name=f"lwx{s_}_p{p}_t{t}") if t >= s_ else None for t in range(PT)]
               for p in range(PPIX)] for s_ in range(PT)]
        lV = [[Signal(signed(MB), name=f"lwV{s_}_p{p}") for p in range(PPIX)] for s_ in range(PT)]
        lb = [[Signal(PT, name=f"lwb{s_}_p{p}") for p in range(PPIX)] for s_ in range(PT + 1)]
        lbusy = Signal()     # a channel in the step pipeline (any stage or sub-stage)
        lsub = []           # the sub-stages' valid bits

        K = f(isa.OP_CONV, "k")
        stride = f(isa.OP_CONV, "stride")
        pmask = Signal(8)
        m.d.comb += pmask.eq((Const(1, 8) << f(isa.OP_CONV, "plog2")[:3]) - 1)
        # pixel p of a group: column offset p*stride (a running sum, no multiplier), its word
        # of a run of u; the group holds gmax = min(P_pix, (u-1)//stride + 1) pixels
        pstep = [Const(0, 16)]
        for p_ in range(1, PPIX):
            ps = Signal(16, name=f"pstep{p_}")
            m.d.comb += ps.eq(pstep[-1] + stride[:8])
            pstep.append(ps)
        pword = [Signal(range(UPB), name=f"pword{p_}") for p_ in range(PPIX)]
        m.d.comb += [pw.eq(ps[:max(LU, 1)]) for pw, ps in zip(pword, pstep) if UPB > 1]
        gmax = Signal(range(PPIX + 1))
        gsel = Const(1, len(gmax))
        for gg in range(2, PPIX + 1):
            gsel = Mux(stride <= (UPB - 1) // (gg - 1), gg, gsel)
        m.d.comb += gmax.eq(gsel)
        gnc = Signal(range(PPIX + 1))   # pixels of the group at ox: min(gmax, wout - ox)
        rest_px = Signal(16)
        m.d.comb += [rest_px.eq(f(isa.OP_CONV, "wout")[:16] - ox), gnc.eq(Mux(rest_px < gmax, rest_px, gmax))]

        # ------------------------------------------------------------------ CONV scan stage
        # the term sequence (ci, ky, kx) of a group in blocks of SC terms: the scan presents
        # one block per cycle to the SC flag ports (term i: the run of u flags at its tap,
        # pixel p's at word p*stride) and latches the block's addresses, in-frame masks and
        # bit-plane shifts into q_* when the issue stage takes it (scan_load); its counters
        # (ci, ky, kx, ...) hold the next block's first term. C_PIX scans block 0 from the
        # reset counters (scan_start).
        def adv(s, tag):
            lk, lky = s["kx"] == K - 1, s["ky"] == K - 1
            wrap = lk & lky
            n = {k: Signal(len(v), name=f"{k}_{tag}") for k, v in s.items()}
            m.d.comb += [n["kx"].eq(Mux(lk, 0, s["kx"] + 1)),
                         n["ky"].eq(Mux(lk, Mux(lky, 0, s["ky"] + 1), s["ky"])),
                         n["tap_row"].eq(Mux(lk, Mux(lky, 0, s["tap_row"] + f(isa.OP_CONV, "w")),
                                             s["tap_row"])),
                         n["w_tap"].eq(Mux(wrap, 0, s["w_tap"] + 1)),
                         n["ci"].eq(Mux(wrap, s["ci"] + 1, s["ci"])),
                         n["ch_off"].eq(Mux(wrap, s["ch_off"] + f(isa.OP_CONV, "hw"), s["ch_off"])),
                         n["w_ch"].eq(Mux(wrap & (((s["ci"] + 1) & pmask) == 0),
                                          s["w_ch"] + f(isa.OP_CONV, "kk"), s["w_ch"]))]
            last = wrap & (s["ci"] == f(isa.OP_CONV, "cin") - 1)
            return n, last

        scan_start = Signal()    # C_PIX: scan block 0 (counters at their reset values)
        scan_load = Signal()     # the issue stage takes the scanned block (q_* <= it)
        regs = {"kx": kx, "ky": ky, "tap_row": tap_row, "w_tap": w_tap, "ci": ci, "ch_off": ch_off,
                "w_ch": w_ch}
        sin = {}
        for k_, v_ in regs.items():
            sv = Signal(len(v_), name=f"{k_}_s0")
            m.d.comb += sv.eq(Mux(scan_start, wtile if k_ == "w_ch" else 0, v_))
            sin[k_] = sv
        hh, ww_ = f(isa.OP_CONV, "h")[:16], f(isa.OP_CONV, "w")[:16]
        q_aaddr = [Signal(AW, name=f"q_aaddr{i}") for i in range(SC)]
        q_waddr = [Signal(WAW, name=f"q_waddr{i}") for i in range(SC)]
        q_inb = [Signal(PPIX, name=f"q_inb{i}") for i in range(SC)]
        q_shift = [Signal(3, name=f"q_shift{i}") for i in range(SC)]
        q_val = Signal(SC)       # term i exists (the group's last block may be partial)
        q_last = Signal()        # the block holds the group's last term
        st, vld, blast = sin, Const(1, 1), Const(0, 1)
        for i in range(SC):
            aa = Signal(AW, name=f"s_aaddr{i}")
            wa = Signal(WAW, name=f"s_waddr{i}")
            iyi = Signal(signed(18), name=f"s_iy{i}")
            m.d.comb += [aa.eq((g_org + st["ch_off"])[:AW] + (st["tap_row"] + st["kx"])[:AW]),
                         wa.eq(st["w_ch"] + st["w_tap"]), iyi.eq(iy0 + st["ky"])]
            roww = (iyi >= 0) & (iyi < hh)
            inbs = []
            for p_ in range(PPIX):
                xp = Signal(signed(20), name=f"s_ix{i}_p{p_}")
                m.d.comb += xp.eq(ix0 + st["kx"] + pstep[p_])
                inbs.append(roww & (xp >= 0) & (xp < ww_) & (gnc > p_))
            fa, _ = act.flag_port(i)
            m.d.comb += fa.eq(aa)
            nxt, lst = adv(st, f"s{i + 1}")
            with m.If(scan_load):
                m.d.sync += [q_aaddr[i].eq(aa), q_waddr[i].eq(wa), q_inb[i].eq(Cat(*inbs)),
                             q_shift[i].eq((st["ci"] & pmask)[:3]), q_val[i].eq(vld)]
            blast = blast | (vld & lst)
            vld = vld & ~lst
            st = nxt
        with m.If(scan_load):
            m.d.sync += q_last.eq(blast)
            m.d.sync += [v_.eq(st[k_]) for k_, v_ in regs.items()]

        # ------------------------------------------------------------------ CONV issue stage
        # the current block's live terms (flag run of term i, one cycle after its scan: any
        # in-frame pixel p < g with a non-zero bundle word), two per cycle, lowest first:
        # term 0 of the pair on read port 0 / weight port 0, term 1 on port 1 / weight port 1
        blk_first = Signal()     # first cycle of the block: its live mask is the flag ports'
        rem = Signal(SC)         # live terms of the block not issued yet
        live = Signal(SC)
        for i in range(SC):
            _, frun = act.flag_port(i)
            m.d.comb += live[i].eq(q_val[i] & Cat(*[q_inb[i][p_] & (frun.bit_select(pword[p_], 1) if UPB > 1
                                                                      else frun[0])
                                                    for p_ in range(PPIX)]).any())
        cur = Signal(SC)
        m.d.comb += cur.eq(Mux(blk_first, live, rem))

        def lowest(v, tag):
            """One-hot lowest set bit of ``v`` (a priority chain)."""
            o = Signal(len(v), name=f"sel_{tag}")
            seen = Const(0, 1)
            for i in range(len(v)):
                m.d.comb += o[i].eq(v[i] & ~seen)
                seen = seen | v[i]
            return o

        sel0 = lowest(cur, "0")
        cur1 = Signal(SC)
        m.d.comb += cur1.eq(cur & ~sel0)
        sel1 = lowest(cur1, "1")
        rest_live = Signal(SC)
        m.d.comb += rest_live.eq(cur1 & ~sel1)

        def pick(sel, vals):
            return Cat(*[Cat(*[sel[i] & v_[b] for i, v_ in enumerate(vals)]).any() for b in range(len(vals[0]))])

        # ------------------------------------------------------------------ shared pipeline counters
        cnt = Signal(32)     # element counter (LIF/EW/REDUCE)
        cnt2 = Signal(32)
        cnt3 = Signal(32)
        ch = Signal(32)      # channel counter
        addr_a = Signal(32)
        addr_b = Signal(32)
        addr_o = Signal(32)
        addr_c = Signal(32)
        p_vld = Signal()     # stage B valid
        p_first = Signal()
        p_last = Signal()
        p_ch_last = Signal()
        p_n = Signal(range(UPB + 1))   # EW: elements of the run in stage B

        # LIF state: LL = 2u lanes, lane l = 2j + p (pair j, read port p) runs neuron l of a group
        LL = lif_lanes(cfg)
        PS = -(-3 // (2 * UPB))   # parameter read slots per channel (theta, bias, polarity)
        vmem = [Signal(signed(MB), name=f"vmem{l}") for l in range(LL)]
        bund = [Signal(32, name=f"bund{l}") for l in range(LL)]
        lbuf = [Signal(32 * UPB, name=f"lbuf{l}") for l in range(LL)]   # the lane's run of u steps
        obund = [Signal(32, name=f"obund{l}") for l in range(LL)]      # finished bundles
        ovld = [Signal(name=f"ovld{l}") for l in range(LL)]
        lact = [Signal(name=f"lact{j}") for j in range(UPB)]           # pair j steps this cycle
        lt = [Signal(6, name=f"lt{j}") for j in range(UPB)]            # pair j's step
        lgv = [Signal(2, name=f"lgv{j}") for j in range(UPB)]          # pair j's lanes hold neurons
        lth = [Signal(signed(32), name=f"lth{j}") for j in range(UPB)]  # pair j's channel: theta,
        lbi = [Signal(signed(32), name=f"lbi{j}") for j in range(UPB)]  # bias,
        lng = [Signal(name=f"lng{j}") for j in range(UPB)]              # polarity < 0
        ipar = [Signal(32, name=f"ipar{w}") for w in range(3)]         # issued channel's parameters
        lpar = Signal()      # issue: parameter slots of channel ch
        lpi = Signal(range(PS + 1))
        pd_vld = Signal()    # parameter run read last cycle
        pd_i = Signal(range(PS + 1))
        lj = Signal(range(UPB + 1))    # issue: pair
        lks = Signal(8)      # issue: first step of the run (k*u)
        la = Signal(32)      # issue: pair lj's lane-0 input word of the run
        lrow = Signal(32)    # issue: group input base + k*u
        lpad = Signal()      # issue: the idle cycle of a group at u = 1, T = 1
        ld_vld = Signal()    # a run read last cycle (load it into pair ld_j's buffers)
        ld_j = Signal(range(UPB + 1))
        ld_k0 = Signal()
        ld_v = Signal(2)
        ld_ob = Signal(32)
        wjl = [max((w + 1) * UPB // 2 - 1, 0) for w in range(2)]        # last pair of write run w
        wob = [Signal(32, name=f"wob{w}") for w in range(2)]           # run w's output word (group)
        wadr = [Signal(32, name=f"wadr{w}") for w in range(2)]         # ... latched at its last step
        wpend = [Signal(name=f"wpend{w}") for w in range(2)]

        # REDUCE accumulator, SDHA counters
        racc = Signal(signed(32))
        hb = Signal(32)      # head base word (head * d * HW)
        ai = Signal(16)
        bj = Signal(16)
        pp = Signal(32)
        # SDHA scratch in the weight buffer (NW 32-bit lanes per word): V transposed, then kv
        NW = PO // 4
        vsh = Signal(WBW)    # word assembly (phase 0)
        rowg = Signal(32)
        rowl = Signal(32)
        b0 = Signal(16)      # first channel of the group
        gi = Signal(16)
        wq = Signal(32)      # weight-buffer address (phase 0 writes, phase 1 reads)
        kw = Signal(32)      # kv word address
        lane_ok = Signal()
        kacc = [Signal(signed(32), name=f"kacc{l}") for l in range(NW)]
        # SDHA phase 2: NB = NW outputs b (every lane of one kv word) x ST = P_t steps (the
        # T-bundle's steps in chunks of ST, chunk by chunk)
        ST = PT
        NB = NW
        YR = -(-ST // UPB)   # write runs of u words per output
        yacc = [[Signal(signed(32), name=f"yacc{j}_{t}") for t in range(ST)] for j in range(NB)]
        yshd = [[Signal(signed(32), name=f"yshd{j}_{t}") for t in range(ST)] for j in range(NB)]
        ycool = Signal(16)   # cycles until the write-back frees the shadow for the next outputs
        yaddr = Signal(32)   # lane 0's output word of the current (b group, n), at the chunk's step
        ygrp = Signal(32)    # lane 0's first output word of the current b group
        ytsh = Signal(6)     # first step of the current chunk
        ywb = Signal()       # phase-2 write-back busy
        ywi = Signal(range(ST + UPB + 1))   # step of the run
        ywr = Signal(range(YR + 1))         # run
        ywn = Signal(range(ST + 1))         # steps of the chunk
        ywj = Signal(range(NB + 1))   # lane
        ywl = Signal(range(NB + 1))   # lanes
        yw_addr = Signal(32)
        yw_row = Signal(32)
        p_wn = Signal(range(NB + 1))
        p_eg = Signal()      # the output is the last token of its b group
        kvrow = Signal(32)

        # ------------------------------------------------------------------ SDHA write-back
        # writes the chunk's sums of the previous outputs (n, b..b+NB-1) while the next ones
        # accumulate: per output its ywn steps as runs of up to u words (one masked run per
        # cycle); before the sequencer, whose hand-off (new outputs) overrides the last write's
        # update
        yrun = Array(Array(Cat(*[yshd[j][r * UPB + i] if r * UPB + i < ST else Const(0, 32) for i in range(UPB)])
                           for r in range(YR)) for j in range(NB))
        with m.If(ywb):
            m.d.comb += [wp.addr.eq(yw_addr), wp.data.eq(yrun[ywj][ywr]),
                         act.w_mask.eq(Cat(*[ywi + i < ywn for i in range(UPB)]))]
            with m.If(ywi + UPB >= ywn):
                # next lane: output channel b+1, hwt words on
                m.d.sync += [ywi.eq(0), ywr.eq(0), ywj.eq(ywj + 1), yw_row.eq(yw_row + f(isa.OP_SDHA, "hwt")),
                             yw_addr.eq(yw_row + f(isa.OP_SDHA, "hwt"))]
                with m.If(ywj == ywl - 1):
                    m.d.sync += ywb.eq(0)
            with m.Else():
                m.d.sync += [ywi.eq(ywi + UPB), ywr.eq(ywr + 1), yw_addr.eq(yw_addr + UPB)]

        # ------------------------------------------------------------------ sequencer
        with m.FSM(name="seq"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [busy.eq(1), done.eq(0), error.eq(0), pc.eq(0), cycles.eq(0)]
                    m.next = "FETCH"

            # ---------------------------------------------------------- fetch a descriptor
            with m.State("FETCH"):
                m.d.sync += [iss_addr.eq(prog + (pc << 7)), iss_rows.eq(0), dma_rows.eq(0), dma_kind.eq(2),
                             dma_dst.eq(0), dma_left.eq(isa.DESC_WORDS),
                             iss_beats.eq((isa.DESC_WORDS + UPB - 1) // UPB)]
                for i in range(isa.DESC_WORDS):
                    m.d.sync += desc[i].eq(0)
                m.next = "RD"

            with m.State("DECODE"):
                # a STORE, END or fenced descriptor waits for an asynchronous STORE; the rest
                # run beside it
                unordered = (opcode != isa.OP_STORE) & (opcode != isa.OP_END) & ~desc[0][31]
                with m.If(~w_busy | unordered):
                    with m.Switch(opcode):
                        with m.Case(isa.OP_END):
                            m.d.sync += [busy.eq(0), done.eq(1), irq_pend.eq(1)]
                            m.next = "IDLE"
                        with m.Case(isa.OP_HEADER):
                            with m.If((f(isa.OP_HEADER, "magic") == isa.MAGIC)
                                      & (f(isa.OP_HEADER, "version") == isa.VERSION)):
                                m.next = "NEXT"
                            with m.Else():
                                m.next = "ERROR"
                        with m.Case(isa.OP_LOAD, isa.OP_LOADW):
                            cntw = f(isa.OP_LOAD, "count")
                            units = Mux(opcode == isa.OP_LOADW, cntw << (PO // 4 - 1).bit_length(), cntw)
                            rows = Mux(opcode == isa.OP_LOADW, 0, f(isa.OP_LOAD, "rows"))
                            m.d.sync += [iss_addr.eq(f(isa.OP_LOAD, "ddr")), iss_row.eq(f(isa.OP_LOAD, "ddr")),
                                         iss_rows.eq(rows), iss_beats.eq((units + UPB - 1) >> LU),
                                         dma_dst.eq(f(isa.OP_LOAD, "addr")), row_dst.eq(f(isa.OP_LOAD, "addr")),
                                         dma_rows.eq(rows),
                                         dma_kind.eq(Mux(opcode == isa.OP_LOADW, 1,
                                                         Mux(f(isa.OP_LOAD, "mode")[0], 3, 0))),
                                         dma_left.eq(units), wasm_n.eq(0)]
                            m.next = "RD"
                            with m.If(dma_misaligned(opcode != isa.OP_LOADW)):
                                m.next = "ERROR"
                        with m.Case(isa.OP_STORE):
                            cntw = f(isa.OP_STORE, "count")
                            with m.If(dma_misaligned(1)):
                                m.next = "ERROR"
                            with m.Else():
                                # the STORE machine takes it (its fields latched); a synchronous
                                # STORE waits in WR until it is done, an asynchronous one goes on
                                m.d.sync += [w_busy.eq(1), wiss_addr.eq(f(isa.OP_STORE, "ddr")),
                                             wiss_row.eq(f(isa.OP_STORE, "ddr")),
                                             wiss_rows.eq(f(isa.OP_STORE, "rows")),
                                             wiss_beats.eq((cntw + UPB - 1) >> LU),
                                             w_addr.eq(f(isa.OP_STORE, "ddr")), row_ddr.eq(f(isa.OP_STORE, "ddr")),
                                             wd_dst.eq(f(isa.OP_STORE, "addr")), wrow_dst.eq(f(isa.OP_STORE, "addr")),
                                             wd_rows.eq(f(isa.OP_STORE, "rows")), wd_left.eq(cntw),
                                             w_count.eq(cntw), w_dstride.eq(f(isa.OP_STORE, "ddr_stride")),
                                             w_astride.eq(f(isa.OP_STORE, "addr_stride")),
                                             w_cnt.eq(0), w_done.eq(0)]
                                # read port 2 fetches the first beat's words a cycle ahead
                                m.d.comb += r2.addr.eq(f(isa.OP_STORE, "addr"))
                                m.next = "WR"
                                with m.If(f(isa.OP_STORE, "mode")[0]):
                                    m.next = "NEXT"
                        with m.Case(isa.OP_CONV):
                            m.d.sync += [oc0.eq(f(isa.OP_CONV, "oc_start")), wtile.eq(f(isa.OP_CONV, "wb")),
                                         obase.eq(f(isa.OP_CONV, "outb"))]
                            m.next = "C_TILE"
                        with m.Case(isa.OP_LIF):
                            m.d.sync += [ch.eq(0), cnt.eq(0), addr_a.eq(f(isa.OP_LIF, "inb")),
                                         addr_o.eq(f(isa.OP_LIF, "outb")), addr_c.eq(f(isa.OP_LIF, "pb")),
                                         lpar.eq(1), lpi.eq(0), pd_vld.eq(0), lj.eq(0), lks.eq(0), lpad.eq(0),
                                         la.eq(f(isa.OP_LIF, "inb")), lrow.eq(f(isa.OP_LIF, "inb")),
                                         ld_vld.eq(0)]
                            m.next = "L_RUN"
                        with m.Case(isa.OP_EW):
                            m.d.sync += [cnt.eq(0), cnt2.eq(0), ch.eq(0), p_vld.eq(0)]
                            m.next = "E_RUN"
                        with m.Case(isa.OP_REDUCE):
                            m.d.sync += [cnt.eq(0), cnt2.eq(0), cnt3.eq(0), addr_a.eq(f(isa.OP_REDUCE, "inb")),
                                         addr_b.eq(f(isa.OP_REDUCE, "inb")), addr_c.eq(f(isa.OP_REDUCE, "inb")),
                                         addr_o.eq(f(isa.OP_REDUCE, "outb")), p_vld.eq(0)]
                            m.next = "R_RUN"
                        with m.Case(isa.OP_SDHA):
                            m.d.sync += [hb.eq(0), ch.eq(0), cnt3.eq(0)]
                            m.next = "S_HEAD"
                        with m.Default():
                            m.next = "ERROR"

            with m.State("NEXT"):
                m.d.sync += pc.eq(pc + 1)
                m.next = "FETCH"

            with m.State("ERROR"):
                m.d.sync += [busy.eq(0), done.eq(1), error.eq(1), irq_pend.eq(1)]
                m.next = "IDLE"

            # ---------------------------------------------------------- DMA
            # 2-D LOAD/STORE: after a run, the next one starts at the strided DDR address and
            # buffer word (LOAD and STORE share field indices); the issuer and the data side
            # each step to it on their own
            ddr_stride = f(isa.OP_LOAD, "ddr_stride")
            dst_stride = f(isa.OP_LOAD, "addr_stride")
            run_beats = (f(isa.OP_LOAD, "count") + UPB - 1) >> LU

            def issuer(valid, ready):
                """AR/AW: present the next burst while fewer than ``OUTS`` are unfinished; on
                the handshake step to the next burst, or to the next run's first."""
                m.d.comb += valid.eq(iss_ok)
                with m.If(iss_ok & ready):
                    step_issuer(iss_addr, iss_beats, iss_rows, iss_row, burst_len, ddr_stride, run_beats)

            # reads: the AR issuer runs ahead; the R side takes a beat every cycle one comes
            # (RREADY stays high): LOAD writes its UPB units to the banks at once (any buffer
            # alignment, a run's last beat partial), LOADW assembles a weight word from BPW
            # beats, a descriptor shifts in UPB words per beat. The transfer ends with the
            # last run's last beat (every burst issued and finished by then).
            with m.State("RD"):
                issuer(self.m_axi_arvalid, self.m_axi_arready)
                m.d.comb += self.m_axi_rready.eq(1)
                done_burst = self.m_axi_rvalid & self.m_axi_rlast
                issued = iss_ok & self.m_axi_arready
                m.d.sync += in_flight.eq(in_flight + issued - done_burst)
                rbeat = self.m_axi_rdata
                with m.If(self.m_axi_rvalid):
                    m.d.sync += dma_left.eq(Mux(dma_left > UPB, dma_left - UPB, 0))
                    with m.Switch(dma_kind):
                        with m.Case(0):
                            m.d.comb += [act.w_addr.eq(dma_dst), act.w_data.eq(rbeat),
                                         act.w_mask.eq(Cat(*beat_ok))]
                            m.d.sync += dma_dst.eq(dma_dst + UPB)
                        with m.Case(3):
                            m.d.comb += r0.addr.eq(dma_dst)
                            m.d.sync += [acc_v.eq(1), acc_dst.eq(dma_dst), acc_beat.eq(rbeat),
                                         acc_mask.eq(Cat(*beat_ok)), dma_dst.eq(dma_dst + UPB)]
                        with m.Case(1):
                            nw = Cat(wasm[DW:], rbeat) if BPW > 1 else rbeat
                            with m.If(wasm_n == BPW - 1):
                                m.d.comb += [ww.addr.eq(dma_dst), ww.data.eq(nw), ww.en.eq(1)]
                                m.d.sync += [dma_dst.eq(dma_dst + 1), wasm_n.eq(0)]
                            with m.Else():
                                m.d.sync += [wasm.eq(nw), wasm_n.eq(wasm_n + 1)]
                        with m.Case(2):
                            words = [desc[i] for i in range(UPB, isa.DESC_WORDS)] + \
                                    [rbeat[32 * j: 32 * j + 32] for j in range(UPB)]
                            m.d.sync += [desc[i].eq(words[i]) for i in range(isa.DESC_WORDS)]
                    with m.If(run_end):
                        with m.If(dma_rows > 1):
                            m.d.sync += [dma_rows.eq(dma_rows - 1), row_dst.eq(row_dst + dst_stride),
                                         dma_dst.eq(row_dst + dst_stride), dma_left.eq(f(isa.OP_LOAD, "count"))]
                        with m.Elif(dma_kind == 2):
                            m.next = "DECODE"
                        with m.Else():
                            m.next = "NEXT"

            # writes: the AW issuer runs ahead; the W side streams beats (read port 0 reads the
            # run of UPB words of the next beat, any alignment, one cycle ahead; it holds while
            # WREADY is low), WLAST where the issuer cut the burst; the transfer ends with the
            # last burst's response
            with m.State("WR"):
                with m.If(w_finish):
                    m.next = "NEXT"

            # ---------------------------------------------------------- CONV
            with m.State("C_TILE"):
                with m.If(wbb | lbusy):
                    pass  # the previous tile's last pixel is still being written back (or its spikes)
                with m.Elif(oc0 >= f(isa.OP_CONV, "oc_end")):
                    m.next = "NEXT"
                with m.Else():
                    m.d.sync += bi.eq(0)
                    m.next = "C_BIAS"
            with m.State("C_BIAS"):
                # read p_o biases: issue bi, capture bi-1
                m.d.comb += r1.addr.eq(f(isa.OP_CONV, "biasb") + oc0 + bi)
                m.d.sync += bi.eq(bi + 1)
                with m.If(bi != 0):
                    m.d.sync += biasreg[bi - 1].eq(r1.data.as_signed())
                with m.If(bi == PO):
                    # row origin: the band's top padding; column origin: the left padding
                    m.d.sync += [oy.eq(0), ox.eq(0), iy0.eq(-f(isa.OP_CONV, "pad_y")[:8]),
                                 ix0.eq(-f(isa.OP_CONV, "pad")[:8]),
                                 r_org.eq(f(isa.OP_CONV, "inb") - f(isa.OP_CONV, "pad_w")[:24]),
                                 g_org.eq(f(isa.OP_CONV, "inb") - f(isa.OP_CONV, "pad_w")[:24]
                                          - f(isa.OP_CONV, "pad")[:8]), outp.eq(obase), tsh.eq(0),
                                 tci.eq(0), pj.eq(0)]
                    with m.If(lifwb):
                        m.next = "C_LPAR"
                    with m.Else():
                        m.next = "C_PIX"
            with m.State("C_LPAR"):
                # the tile's LIF parameters, 3*P_o words at lifpb + 3*oc0 (theta, bias, polarity
                # of channel o at 3o), read as runs of u words on both ports: cycle pj issues
                # words 2u*pj .. 2u*pj + 2u - 1, the next captures them; word w goes to a fixed
                # register (its slot w // 2u, port (w//u) % 2, lane w % u), no multiplexer
                pa0 = f(isa.OP_CONV, "lifpb") + oc0 + (oc0 << 1) + (pj << (LU + 1))
                m.d.comb += [r0.addr.eq(pa0), r1.addr.eq(pa0 + UPB)]
                m.d.sync += pj.eq(pj + 1)
                for w in range(3 * PO):
                    beat = (act.r0_beat, act.r1_beat)[(w // UPB) % 2]
                    word = beat[32 * (w % UPB): 32 * (w % UPB) + 32]
                    with m.If(pj == w // (2 * UPB) + 1):
                        o_, kind = divmod(w, 3)
                        if kind == 0:
                            m.d.sync += cth_r[o_].eq(word.as_signed())
                        elif kind == 1:
                            m.d.sync += cbi_r[o_].eq(word.as_signed())
                        else:
                            m.d.sync += cng_r[o_].eq(word[31])
                with m.If(pj == NPS):
                    m.next = "C_PIX"
            with m.State("C_PIX"):
                # a group of g = min(gmax, wout - ox) pixels: scan its block 0 (the accumulators
                # restart on the group's first issued pair, clr)
                m.d.comb += [scan_start.eq(1), scan_load.eq(1)]
                m.d.sync += [b_vld.eq(0), gn.eq(gnc), blk_first.eq(1), gfirst.eq(1)]
                m.next = "C_TERM"
            with m.State("C_TERM"):
                # issue stage: a pair of the block's live terms per cycle (an empty pair when
                # none is left: a block without live terms costs one cycle, and the group's
                # first pair clears the accumulators even if empty); the block's last pair
                # takes the next scanned block
                done_blk = rest_live == 0
                m.d.comb += [r0.addr.eq(pick(sel0, q_aaddr)), wr.addr.eq(pick(sel0, q_waddr)),
                             r1.addr.eq(pick(sel1, q_aaddr)), wr1.addr.eq(pick(sel1, q_waddr))]
                m.d.sync += [b_vld.eq(1), b_first.eq(gfirst), gfirst.eq(0),
                             b_inb.eq(pick(sel0, q_inb)), b_shift.eq(pick(sel0, q_shift)),
                             b_v1.eq(cur1.any()), b_inb1.eq(pick(sel1, q_inb)), b_shift1.eq(pick(sel1, q_shift)),
                             rem.eq(rest_live), blk_first.eq(done_blk)]
                with m.If(done_blk):
                    with m.If(q_last):
                        m.next = "C_DRAIN"
                    with m.Else():
                        m.d.comb += scan_load.eq(1)
            with m.State("C_DRAIN"):
                m.d.sync += b_vld.eq(0)     # stage B adds the last pair
                m.next = "C_ADV"
            with m.State("C_ADV"):
                # hand the sums to the write-back engine (waits while it is busy), go on
                tl = f(isa.OP_CONV, "t") - tsh
                lanes = f(isa.OP_CONV, "cout") - oc0
                with m.If(~wbb):
                    for p_ in range(PPIX):
                        for t in range(PT):
                            for j in range(PO // 2):
                                pv = sacc[p_][t][j].p
                                m.d.sync += [shd[2 * j][p_][t].eq(pv[:LANE_BITS]),
                                             shd[2 * j + 1][p_][t].eq(pv[LANE_BITS:])]
                    m.d.sync += [cth[o].eq(cth_r[o]) for o in range(PO)]
                    m.d.sync += [cbi[o].eq(cbi_r[o]) for o in range(PO)]
                    m.d.sync += [cng[o].eq(cng_r[o]) for o in range(PO)]
                    m.d.sync += [wbb.eq(1), wb_o.eq(0), wb_p.eq(0), wb_tw.eq(0), wb_g.eq(gn),
                                 wb_base.eq(outp + tsh), wb_pbase.eq(outp + tsh),
                                 wb_addr.eq(outp + tsh), wb_tn.eq(Mux(tl > PT, PT, tl)),
                                 wb_on.eq(Mux(lanes > PO, PO, lanes))]
                    m.next = "C_PIX"
                with m.If(wbb):
                    pass
                with m.Elif(tci + 1 < f(isa.OP_CONV, "tchunks")):
                    m.d.sync += [tci.eq(tci + 1), tsh.eq(tsh + PT)]
                with m.Else():
                    m.d.sync += [tci.eq(0), tsh.eq(0),
                                 outp.eq(outp + Mux(lifwb, gn, _times(gn, f(isa.OP_CONV, "t"))))]
                    with m.If(ox + gn == f(isa.OP_CONV, "wout")):
                        m.d.sync += [ox.eq(0), ix0.eq(-f(isa.OP_CONV, "pad")[:8])]
                        nrow = (r_org + f(isa.OP_CONV, "stride_w"))[:AW]
                        with m.If(oy == f(isa.OP_CONV, "hout") - 1):
                            m.d.sync += [oc0.eq(oc0 + PO), wtile.eq(wtile + f(isa.OP_CONV, "wtile")),
                                         obase.eq(obase + f(isa.OP_CONV, "otile"))]
                            m.next = "C_TILE"
                        with m.Else():
                            m.d.sync += [oy.eq(oy + 1), iy0.eq(iy0 + stride[:8]), r_org.eq(nrow),
                                         g_org.eq(nrow - f(isa.OP_CONV, "pad")[:8])]
                    with m.Else():
                        step = _times(gn, stride[:8])
                        m.d.sync += [ox.eq(ox + gn), ix0.eq(ix0 + step), g_org.eq(g_org + step)]

            # ---------------------------------------------------------- LIF
            with m.State("L_RUN"):
                # LL = 2u lanes over a group of LL consecutive neurons of a channel; channels
                # follow each other without a drain. Issue, per channel: PS cycles read its
                # theta, bias, polarity (runs of both ports at pb + 3ch), then its groups: cycle
                # k*u + j of a group reads run k (steps k*u .. k*u+u-1) of neurons 2j (port 0)
                # and 2j+1 (port 1); the next cycle loads it into pair j's buffers (run 0 also
                # the channel's parameters), which step one per cycle: pair j runs step t at
                # cycle j + 2 + t, the next run arriving just as the last one is used. Groups
                # start P = u*ceil(T/u) cycles apart (2 at u = 1, T = 1). A finished lane's
                # bundle goes to obund; the group's LL bundles are two masked runs of u words,
                # each written the cycle after its last pair (wjl) finishes.
                T_ = f(isa.OP_LIF, "t")
                hw_ = f(isa.OP_LIF, "hw")
                LLOG = LL.bit_length() - 1
                nleft = Signal(32)
                in_run = Signal()
                issue = Signal()
                m.d.comb += [nleft.eq(hw_ - cnt), in_run.eq(cnt < hw_),
                             issue.eq(in_run & ~lpad & ~lpar),
                             r0.addr.eq(Mux(lpar, addr_c + (lpi << LLOG), la)),
                             r1.addr.eq(Mux(lpar, addr_c + (lpi << LLOG) + UPB, la + T_))]
                m.d.sync += [ld_vld.eq(issue), ld_j.eq(lj), ld_k0.eq(lks == 0), ld_ob.eq(addr_o),
                             ld_v.eq(Cat((lj << 1) < nleft, (lj << 1) + 1 < nleft)),
                             pd_vld.eq(lpar & ~lpad), pd_i.eq(lpi)]
                with m.If(lpad):
                    m.d.sync += lpad.eq(0)
                with m.Elif(lpar):
                    with m.If(lpi == PS - 1):
                        m.d.sync += [lpar.eq(0), lpi.eq(0), addr_c.eq(addr_c + 3)]
                    with m.Else():
                        m.d.sync += lpi.eq(lpi + 1)
                with m.Elif(issue):
                    with m.If(lj != UPB - 1):
                        m.d.sync += [lj.eq(lj + 1), la.eq(la + (T_ << 1))]
                    with m.Elif(lks + UPB < T_):
                        m.d.sync += [lj.eq(0), lks.eq(lks + UPB), lrow.eq(lrow + UPB), la.eq(lrow + UPB)]
                    with m.Else():
                        # group done: input base += n*T, output += n (n = min(LL, nleft)); the
                        # next channel's words follow the last group's
                        full = nleft >= LL
                        ngrp = Mux(full, LL, nleft[:LLOG])
                        nT = Mux(full, T_ << LLOG, sum(Mux(nleft[i], T_ << i, 0) for i in range(LLOG)))
                        m.d.sync += [lj.eq(0), lks.eq(0), cnt.eq(cnt + LL), addr_a.eq(addr_a + nT),
                                     lrow.eq(addr_a + nT), la.eq(addr_a + nT), addr_o.eq(addr_o + ngrp)]
                        if UPB == 1:
                            m.d.sync += lpad.eq(T_ == 1)
                        with m.If(~full | (nleft == LL)):
                            with m.If(ch != f(isa.OP_LIF, "c") - 1):
                                m.d.sync += [cnt.eq(0), ch.eq(ch + 1), lpar.eq(1)]
                # the parameter run read last cycle: word w of (theta, bias, polarity) is word
                # w % u of port (w // u) % 2 in slot w // 2u
                for w in range(3):
                    beat = (act.r0_beat, act.r1_beat)[(w // UPB) % 2]
                    with m.If(pd_vld & (pd_i == w // (2 * UPB))):
                        m.d.sync += ipar[w].eq(beat[32 * (w % UPB): 32 * (w % UPB) + 32])
                # write: run w = lanes w*u .. w*u+u-1 (neurons of the group), masked
                with m.If(wpend[0]):
                    m.d.comb += [wp.addr.eq(wadr[0]), wp.data.eq(Cat(*obund[:UPB])),
                                 act.w_mask.eq(Cat(*ovld[:UPB]))]
                    m.d.sync += wpend[0].eq(0)
                with m.Elif(wpend[1]):
                    m.d.comb += [wp.addr.eq(wadr[1]), wp.data.eq(Cat(*obund[UPB:])),
                                 act.w_mask.eq(Cat(*ovld[UPB:]))]
                    m.d.sync += wpend[1].eq(0)
                # the lanes: X = pol*(x<<F) + b, leak, fire, reset
                F_ = f(isa.OP_LIF, "frac")[:6]
                k_ = f(isa.OP_LIF, "leak")[:6]
                for j in range(UPB):
                    tj = lt[j]
                    last = Signal(name=f"llast{j}")
                    m.d.comb += last.eq(tj == T_ - 1)
                    with m.If(lact[j]):
                        m.d.sync += lt[j].eq(tj + 1)
                        with m.If(last):
                            m.d.sync += lact[j].eq(0)
                            for w in range(2):
                                if wjl[w] == j:
                                    m.d.sync += [wpend[w].eq(1), wadr[w].eq(wob[w])]
                    for p_ in range(2):
                        i = 2 * j + p_
                        # X of the step in lbuf word 0, registered a cycle ahead from the word
                        # and parameters the lane holds next (a load overrides the shift, as
                        # below), so the membrane loop starts at X - V
                        ld_here = Signal(name=f"l{i}_ld")
                        m.d.comb += ld_here.eq(ld_vld & (ld_j == j))
                        beat = (act.r0_beat, act.r1_beat)[p_]
                        xn = Signal(signed(32), name=f"l{i}_xn")
                        m.d.comb += xn.eq(Mux(ld_here, beat[:32], Mux(lact[j], (lbuf[i] >> 32)[:32], lbuf[i][:32])))
                        ngn = Mux(ld_here & ld_k0, ipar[2][31], lng[j])
                        bin_ = Mux(ld_here & ld_k0, ipar[1].as_signed(), lbi[j])
                        xs = Signal(signed(MB), name=f"l{i}_xs")
                        m.d.comb += xs.eq(xn << F_)
                        X = Signal(signed(MB), name=f"l{i}_X")
                        m.d.sync += X.eq(Mux(ngn, -xs, xs) + bin_)
                        V = Signal(signed(MB), name=f"l{i}_V")
                        m.d.comb += V.eq(Mux(tj == 0, 0, vmem[i]))
                        # H = q + h with (decay_input) q = V, h = (X - V) >> k, or q = V - (V >> k),
                        # h = X; S is the sign of H - theta = qt + ht, summed beside H
                        # ((V - theta) + h, or q + (X - theta)): no compare chain after H
                        dec = f(isa.OP_LIF, "flags")[0]
                        q = Signal(signed(MB), name=f"l{i}_q")
                        h = Signal(signed(MB), name=f"l{i}_h")
                        m.d.comb += [q.eq(Mux(dec, V, V - (V >> k_))), h.eq(Mux(dec, (X - V) >> k_, X))]
                        qt = Signal(signed(MB + 1), name=f"l{i}_qt")
                        ht = Signal(signed(MB + 1), name=f"l{i}_ht")
                        m.d.comb += [qt.eq(Mux(dec, V - lth[j], q)), ht.eq(Mux(dec, h, X - lth[j]))]
                        H = Signal(signed(MB), name=f"l{i}_H")
                        Ht = Signal(signed(MB + 1), name=f"l{i}_Ht")
                        m.d.comb += [H.eq(q + h), Ht.eq(qt + ht)]
                        S = Signal(name=f"l{i}_S")
                        m.d.comb += S.eq(~Ht[-1])
                        Vn = Signal(signed(MB), name=f"l{i}_Vn")
                        m.d.comb += Vn.eq(Mux(S, Mux(f(isa.OP_LIF, "flags")[1], Ht[:MB].as_signed(), 0), H))
                        nb = Signal(32, name=f"l{i}_nb")
                        m.d.comb += nb.eq(Mux(tj == 0, 0, bund[i]) | (S.as_unsigned() << tj[:5]))
                        with m.If(lact[j]):
                            m.d.sync += [vmem[i].eq(Vn), bund[i].eq(nb), lbuf[i].eq(lbuf[i] >> 32)]
                            with m.If(last):
                                m.d.sync += [obund[i].eq(nb), ovld[i].eq(lgv[j][p_])]
                    # load pair j's run (read last cycle); run 0 starts the pair on a new group
                    with m.If(ld_vld & (ld_j == j)):
                        m.d.sync += [lbuf[2 * j].eq(act.r0_beat), lbuf[2 * j + 1].eq(act.r1_beat)]
                        with m.If(ld_k0):
                            m.d.sync += [lact[j].eq(1), lt[j].eq(0), lgv[j].eq(ld_v),
                                         lth[j].eq(ipar[0].as_signed()), lbi[j].eq(ipar[1].as_signed()),
                                         lng[j].eq(ipar[2][31])]
                            for w in range(2):
                                if wjl[w] == j:
                                    m.d.sync += wob[w].eq(ld_ob + w * UPB)
                with m.If(~in_run & ~lpad & ~lpar & ~ld_vld & ~Cat(*lact).any() & ~wpend[0] & ~wpend[1]):
                    m.next = "NEXT"

            # ---------------------------------------------------------- EW
            with m.State("E_RUN"):
                # a run of up to UPB consecutive elements per cycle: a on read port 0's beat,
                # b on port 1's (mode 0), results as one masked write; in mode 1 a run stays
                # inside its channel, whose shift is word 0 of port 1 (read at b + ch)
                n_ = f(isa.OP_EW, "n")
                per_ = f(isa.OP_EW, "per")
                mode = f(isa.OP_EW, "mode")[0]
                nleft = Signal(32)
                cleft = Signal(32)
                lim = Signal(32)
                run = Signal(range(UPB + 1))
                issue = Signal()
                m.d.comb += [nleft.eq(n_ - cnt), cleft.eq(per_ - cnt2),
                             lim.eq(Mux(mode & (cleft < nleft), cleft, nleft)),
                             run.eq(Mux(lim >= UPB, UPB, lim)), issue.eq(cnt < n_),
                             r0.addr.eq(f(isa.OP_EW, "a") + cnt),
                             r1.addr.eq(Mux(mode, f(isa.OP_EW, "b") + ch, f(isa.OP_EW, "b") + cnt))]
                m.d.sync += [p_vld.eq(issue), p_n.eq(run), addr_o.eq(f(isa.OP_EW, "outb") + cnt)]
                with m.If(issue):
                    m.d.sync += cnt.eq(cnt + run)
                    with m.If(run == cleft):
                        m.d.sync += [cnt2.eq(0), ch.eq(ch + 1)]
                    with m.Else():
                        m.d.sync += cnt2.eq(cnt2 + run)
                s_ = r1.data[:5]
                half = Signal(33)
                m.d.comb += half.eq((Const(1, 33) << s_) >> 1)
                res = []
                for i in range(UPB):
                    a_ = act.r0_beat[32 * i: 32 * i + 32].as_signed()
                    rq = Signal(signed(34), name=f"ew_rq{i}")
                    m.d.comb += rq.eq((a_ + half) >> s_)
                    res.append(Mux(mode, rq[:32], (a_ + act.r1_beat[32 * i: 32 * i + 32].as_signed())[:32]))
                with m.If(p_vld):
                    m.d.comb += [wp.addr.eq(addr_o), wp.data.eq(Cat(*res)),
                                 act.w_mask.eq(Cat(*(p_n > i for i in range(UPB))))]
                with m.If(~issue & ~p_vld):
                    m.next = "NEXT"

            # ---------------------------------------------------------- REDUCE
            with m.State("R_RUN"):
                # counters: cnt = i0, cnt2 = i1, cnt3 = i2; addr_a = in + i0*s0, addr_b = + i1*s1,
                # addr_c = + i2*s2
                n0, s0 = f(isa.OP_REDUCE, "n0"), f(isa.OP_REDUCE, "s0")
                n1, s1 = f(isa.OP_REDUCE, "n1"), f(isa.OP_REDUCE, "s1")
                n2, s2 = f(isa.OP_REDUCE, "n2"), f(isa.OP_REDUCE, "s2")
                issue = Signal()
                m.d.comb += [issue.eq(cnt < n0), r0.addr.eq(addr_c)]
                m.d.sync += [p_vld.eq(issue), p_first.eq(cnt3 == 0), p_last.eq(cnt3 == n2 - 1)]
                with m.If(issue):
                    with m.If(cnt3 != n2 - 1):
                        m.d.sync += [cnt3.eq(cnt3 + 1), addr_c.eq(addr_c + s2)]
                    with m.Elif(cnt2 != n1 - 1):
                        m.d.sync += [cnt3.eq(0), cnt2.eq(cnt2 + 1), addr_b.eq(addr_b + s1),
                                     addr_c.eq(addr_b + s1)]
                    with m.Else():
                        m.d.sync += [cnt3.eq(0), cnt2.eq(0), cnt.eq(cnt + 1), addr_a.eq(addr_a + s0),
                                     addr_b.eq(addr_a + s0), addr_c.eq(addr_a + s0)]
                nacc = Signal(signed(32))
                m.d.comb += nacc.eq(Mux(p_first, 0, racc) + r0.data.as_signed())
                with m.If(p_vld):
                    m.d.sync += racc.eq(nacc)
                    with m.If(p_last):
                        m.d.comb += [wp.addr.eq(addr_o), wp.data.eq(nacc), wp.en.eq(1)]
                        m.d.sync += addr_o.eq(addr_o + 1)
                with m.If(~issue & ~p_vld):
                    m.next = "NEXT"

            # ---------------------------------------------------------- SDHA
            HWs = f(isa.OP_SDHA, "hw")
            dd = f(isa.OP_SDHA, "d")
            smode = f(isa.OP_SDHA, "mode")
            NT = f(isa.OP_SDHA, "ntok")
            QS = f(isa.OP_SDHA, "qs")

            def y_init(tsh=0):
                # phase 2, the chunk of steps tsh .. tsh+ST-1: for b, n: y[t] = sum_a (Q bit t ?
                # kv[a,b] : -kv[a,b]), the chunk's steps at once
                return [bj.eq(0), pp.eq(0), ai.eq(0), ycool.eq(0), p_vld.eq(0), ytsh.eq(tsh),
                        addr_a.eq(f(isa.OP_SDHA, "q") + hb), addr_b.eq(f(isa.OP_SDHA, "kvw")),
                        kvrow.eq(f(isa.OP_SDHA, "kvw")), yaddr.eq(f(isa.OP_SDHA, "outb") + cnt3 + tsh),
                        ygrp.eq(f(isa.OP_SDHA, "outb") + cnt3 + tsh)]

            with m.State("S_HEAD"):
                with m.If(ch == f(isa.OP_SDHA, "heads")):
                    m.next = "NEXT"
                with m.Elif(smode[0]):
                    # kv of this head already in the weight buffer: phase 2 only
                    m.d.sync += y_init()
                    m.next = "S_Y"
                with m.Else():
                    # phase 0 counters: b0 (group's first V channel), pp (pixel), ai (lane)
                    m.d.sync += [ai.eq(0), b0.eq(0), pp.eq(0), p_vld.eq(0), wq.eq(0),
                                 rowg.eq(f(isa.OP_SDHA, "v") + hb), rowl.eq(f(isa.OP_SDHA, "v") + hb)]
                    m.next = "S_VT"
            with m.State("S_VT"):
                # phase 0: weight-buffer word g*HW + n, lane l = V bundle of channel g*NW + l at
                # token n (zero past d); one lane per cycle
                issue = Signal()
                m.d.comb += [issue.eq(b0 < dd), r0.addr.eq(rowl + pp)]
                m.d.sync += [p_vld.eq(issue), p_last.eq(ai == NW - 1), lane_ok.eq(b0 + ai < dd)]
                with m.If(issue):
                    with m.If(ai != NW - 1):
                        m.d.sync += [ai.eq(ai + 1), rowl.eq(rowl + HWs)]
                    with m.Else():
                        m.d.sync += ai.eq(0)
                        with m.If(pp != HWs - 1):
                            m.d.sync += [pp.eq(pp + 1), rowl.eq(rowg)]
                        with m.Else():
                            m.d.sync += [pp.eq(0), b0.eq(b0 + NW), rowg.eq(rowl + HWs), rowl.eq(rowl + HWs)]
                lane = Mux(lane_ok, r0.data, 0)
                nvw = Cat(vsh[32:], lane) if NW > 1 else lane
                with m.If(p_vld):
                    m.d.sync += vsh.eq(nvw)
                    with m.If(p_last):
                        m.d.comb += [ww.addr.eq(wq), ww.data.eq(nvw), ww.en.eq(1)]
                        m.d.sync += wq.eq(wq + 1)
                with m.If(~issue & ~p_vld):
                    # phase 1 counters: ai (K channel a), gi (V group), pp (token)
                    m.d.sync += [ai.eq(0), gi.eq(0), pp.eq(0), wq.eq(0), kw.eq(f(isa.OP_SDHA, "kvw")),
                                 addr_a.eq(f(isa.OP_SDHA, "k") + hb)]
                    m.next = "S_KV"
            with m.State("S_KV"):
                # phase 1: kv[a, g*NW + l] for the NW lanes of a weight-buffer word at once
                issue = Signal()
                m.d.comb += [issue.eq(ai < dd), r0.addr.eq(addr_a + pp), wr.addr.eq(wq)]
                m.d.sync += [p_vld.eq(issue), p_first.eq(pp == 0), p_last.eq(pp == HWs - 1)]
                with m.If(issue):
                    m.d.sync += wq.eq(wq + 1)
                    with m.If(pp != HWs - 1):
                        m.d.sync += pp.eq(pp + 1)
                    with m.Elif(gi != f(isa.OP_SDHA, "g") - 1):
                        m.d.sync += [pp.eq(0), gi.eq(gi + 1)]
                    with m.Else():
                        m.d.sync += [pp.eq(0), gi.eq(0), ai.eq(ai + 1), addr_a.eq(addr_a + HWs), wq.eq(0)]
                kk_ = r0.data
                knext = []
                for l in range(NW):
                    vv_ = wr.data[32 * l: 32 * l + 32]
                    pc_kv = _popcount(kk_ & vv_)
                    pc_v = _popcount(vv_)
                    nacc = Signal(signed(32), name=f"kvn{l}")
                    m.d.comb += nacc.eq(Mux(p_first, 0, kacc[l]) + (pc_kv << 1) - pc_v)
                    knext.append(nacc)
                with m.If(p_vld):
                    m.d.sync += [kacc[l].eq(knext[l]) for l in range(NW)]
                    with m.If(p_last):
                        m.d.comb += [ww.addr.eq(kw), ww.data.eq(Cat(*knext)), ww.en.eq(1)]
                        m.d.sync += kw.eq(kw + 1)
                with m.If(~issue & ~p_vld):
                    with m.If(smode[1]):
                        m.next = "S_NEXTH"       # phases 0/1 only: kv stays for later ranges
                    with m.Else():
                        m.d.sync += y_init()
                        m.next = "S_Y"
            with m.State("S_Y"):
                # stage A: one term a per cycle (Q[n, a] bundle, kv word [a, b group]) for the
                # NB outputs (n, b..b+NB-1), tokens n of the range (NT of them, Q channels QS
                # apart); the next group of outputs starts only when the write-back of this one
                # ends by its hand-off: max(d, lanes*ceil(steps/u)) cycles apart; then the next
                # chunk of steps
                Ts = f(isa.OP_SDHA, "t")
                left = Signal(16)
                wn = Signal(range(NB + 1))
                m.d.comb += [left.eq(dd - bj), wn.eq(Mux(left >= NB, NB, left))]
                sc = Signal(range(ST + 1))      # steps of this chunk
                scr = Signal(range(YR + 1))     # ... write runs per output
                m.d.comb += [sc.eq(Mux(Ts[:7] - ytsh >= ST, ST, Ts[:7] - ytsh)),
                             scr.eq((sc + UPB - 1) >> LU)]
                wnT = Signal(16)
                m.d.comb += wnT.eq(_times(scr, wn))
                issue = Signal()
                m.d.comb += [issue.eq((bj < dd) & ((ai != 0) | (ycool <= 1))),
                             r0.addr.eq(addr_a + pp), wr.addr.eq(addr_b)]
                m.d.sync += [p_vld.eq(issue), p_first.eq(ai == 0), p_last.eq(ai == dd - 1)]
                with m.If(issue & (ai == 0)):
                    m.d.sync += ycool.eq(wnT)
                with m.Elif(ycool != 0):
                    m.d.sync += ycool.eq(ycool - 1)
                with m.If(issue):
                    m.d.sync += [p_wn.eq(wn), p_eg.eq(pp == NT - 1)]
                    with m.If(ai != dd - 1):
                        m.d.sync += [ai.eq(ai + 1), addr_a.eq(addr_a + QS),
                                     addr_b.eq(addr_b + f(isa.OP_SDHA, "g"))]
                    with m.Else():
                        m.d.sync += [ai.eq(0), addr_a.eq(f(isa.OP_SDHA, "q") + hb), addr_b.eq(kvrow)]
                        with m.If(pp != NT - 1):
                            m.d.sync += pp.eq(pp + 1)
                        with m.Else():
                            m.d.sync += [pp.eq(0), bj.eq(bj + NB), kvrow.eq(kvrow + 1), addr_b.eq(kvrow + 1)]
                # stage B: acc[j][s] +/- kv[a, b+j] by bundle bit ytsh+s (selection and addition only)
                qb = Signal(ST)
                m.d.comb += qb.eq((r0.data >> ytsh)[:ST])
                ynacc = [[Signal(signed(32), name=f"ynacc{j}_{t}") for t in range(ST)] for j in range(NB)]
                for j in range(NB):
                    kv = wr.data[32 * j: 32 * j + 32].as_signed()
                    nkv = Signal(signed(32), name=f"nkv{j}")
                    m.d.comb += nkv.eq(-kv)
                    for t in range(ST):
                        m.d.comb += ynacc[j][t].eq(Mux(p_first, 0, yacc[j][t]) + Mux(qb[t], kv, nkv))
                with m.If(p_vld):
                    m.d.sync += [yacc[j][t].eq(ynacc[j][t]) for j in range(NB) for t in range(ST)]
                    with m.If(p_last):
                        # hand the lanes x ST sums to the write-back (free by now, see ycool)
                        m.d.sync += [yshd[j][t].eq(ynacc[j][t]) for j in range(NB) for t in range(ST)]
                        m.d.sync += [ywb.eq(1), ywi.eq(0), ywr.eq(0), ywj.eq(0), ywn.eq(sc), ywl.eq(p_wn),
                                     yw_addr.eq(yaddr), yw_row.eq(yaddr)]
                        with m.If(p_eg):
                            nxt = ygrp + sum(f(isa.OP_SDHA, "hwt") << i for i in range(NB.bit_length())
                                             if NB >> i & 1)          # NB output channels on
                            m.d.sync += [ygrp.eq(nxt), yaddr.eq(nxt)]
                        with m.Else():
                            m.d.sync += yaddr.eq(yaddr + Ts)
                with m.If(~issue & ~p_vld & ~ywb & (bj >= dd)):
                    with m.If(ytsh + ST < Ts[:7]):
                        m.d.sync += y_init(ytsh + ST)
                    with m.Else():
                        m.next = "S_NEXTH"
            with m.State("S_NEXTH"):
                # next head: channel base += d (K/V/Q rows += d*HW), output base += d*HW*T
                m.d.sync += [hb.eq(hb + f(isa.OP_SDHA, "hwd")), cnt3.eq(cnt3 + f(isa.OP_SDHA, "hwdt")),
                             ch.eq(ch + 1)]
                m.next = "S_HEAD"

        # ------------------------------------------------------------------ the STORE machine
        # AW issuer, W side and B count of a STORE, independent of the sequencer (which waits
        # in WR for a synchronous STORE and goes on after an asynchronous one): the same
        # walk as the read side's, on its own registers and latched fields
        m.d.comb += [self.m_axi_bready.eq(1), self.m_axi_awvalid.eq(wiss_ok),
                     w_finish.eq(w_busy & w_done & (wiss_beats == 0)
                                 & ((w_in_flight == 0) | ((w_in_flight == 1) & self.m_axi_bvalid)))]
        w_issued = wiss_ok & self.m_axi_awready
        with m.If(w_issued):
            step_issuer(wiss_addr, wiss_beats, wiss_rows, wiss_row, wburst_len, w_dstride, (w_count + UPB - 1) >> LU)
        m.d.sync += w_in_flight.eq(w_in_flight + w_issued - self.m_axi_bvalid)
        with m.If(w_busy):
            # W: read port 0 reads the run of UPB words of the next beat one cycle ahead (held
            # while WREADY is low); WLAST where the issuer cut the burst
            w_nxt_row = wrow_dst + w_astride
            m.d.comb += [self.m_axi_wvalid.eq(~w_done), act.r2_en.eq(self.m_axi_wready & ~w_done),
                         r2.addr.eq(Mux(w_run_end, w_nxt_row, wd_dst + UPB))]
            with m.If(self.m_axi_wready & ~w_done):
                m.d.sync += [w_cnt.eq(Mux(w_last, 0, w_cnt + 1)), w_addr.eq(w_addr + beat_bytes),
                             wd_dst.eq(wd_dst + UPB), wd_left.eq(Mux(wd_left > UPB, wd_left - UPB, 0))]
                with m.If(w_run_end):
                    with m.If(wd_rows > 1):
                        m.d.sync += [wd_rows.eq(wd_rows - 1), wrow_dst.eq(w_nxt_row), wd_dst.eq(w_nxt_row),
                                     row_ddr.eq(row_ddr + w_dstride), w_addr.eq(row_ddr + w_dstride),
                                     wd_left.eq(w_count)]
                    with m.Else():
                        m.d.sync += w_done.eq(1)
            with m.If(w_finish):
                m.d.sync += w_busy.eq(0)

        # ------------------------------------------------------------------ accumulating LOAD
        # stage 2 of a LOAD_ACC beat (the cycle after it came, RD or the NEXT after the last
        # beat; no other unit writes then): buffer words A..A+u-1 += the beat's, masked
        with m.If(acc_v):
            m.d.comb += [act.w_addr.eq(acc_dst), act.w_mask.eq(acc_mask),
                         act.w_data.eq(Cat(*[(acc_beat[32 * i: 32 * i + 32] + act.r0_beat[32 * i: 32 * i + 32])[:32]
                                             for i in range(UPB)]))]

        # ------------------------------------------------------------------ CONV write-back engine
        # writes the previous group's sums + bias while the next group accumulates: per
        # channel o and pixel p the run of t_n steps at outp + o*hwout_t + p*T + tsh, up to
        # u words per cycle (the buffer's write port takes any alignment). The shadows are a
        # shift chain over o: the engine always reads channel row 0, and when a channel's
        # last run is written every row moves up one (row o <- row o+1), so the read-out is
        # a P_pix x ceil(P_t/u) multiplexer, not one over all P_o*P_pix*P_t shadows.
        NCH = -(-PT // UPB)
        zero = Const(0, LANE_BITS)

        def chunk(o, p, c):
            return Cat(*[shd[o][p][t] if t < PT else zero for t in range(c * UPB, (c + 1) * UPB)])

        shds = Array(Array(chunk(0, p, c) for c in range(NCH)) for p in range(PPIX))
        wb_c = Signal(range(NCH + 1))
        m.d.comb += wb_c.eq(wb_tw >> LU)
        m.d.sync += lv[0].eq(wbb & lifwb)
        # a channel's last run is out: every shadow row moves up one (one statement for both
        # modes, so synthesis builds one shift multiplexer per shadow bit, not two)
        wb_shift = Signal()
        with m.If(wb_shift):
            m.d.sync += [shd[o][p_][t].eq(shd[o + 1][p_][t]) for o in range(PO - 1)
                         for p_ in range(PPIX) for t in range(PT)]
        bo = biasreg[wb_o]
        with m.If(wbb & lifwb):
            # LIF mode: one channel per cycle into the step pipeline, x_t = sum + bias[o]
            for p_ in range(PPIX):
                for t in range(PT):
                    m.d.sync += lx[0][p_][t].eq((shd[0][p_][t].as_signed() + bo)[:32])
            m.d.sync += [la_[0].eq(wb_base), lm[0].eq(Cat(*[wb_g > p_ for p_ in range(PPIX)])),
                         lth_[0].eq(cth[0]), lbi_[0].eq(cbi[0]), lng_[0].eq(cng[0])]
            m.d.comb += wb_shift.eq(1)
            m.d.sync += [x_.eq(y_) for xs_, ys_ in ((cth, cth), (cbi, cbi), (cng, cng))
                         for x_, y_ in zip(xs_[:-1], ys_[1:])]
            nb = wb_base + f(isa.OP_CONV, "hwout_t")
            m.d.sync += [wb_o.eq(wb_o + 1), wb_base.eq(nb)]
            with m.If(wb_o == wb_on - 1):
                m.d.sync += wbb.eq(0)
        with m.Elif(wbb):
            run = shds[wb_p][wb_c]
            words = []
            for i in range(UPB):
                v = Signal(signed(32), name=f"wbw{i}")
                m.d.comb += v.eq(run[LANE_BITS * i: LANE_BITS * (i + 1)].as_signed() + bo)
                words.append(v)
            m.d.comb += [wp.addr.eq(wb_addr), wp.data.eq(Cat(*words)),
                         act.w_mask.eq(Cat(*[wb_tw + i < wb_tn for i in range(UPB)]))]
            with m.If(wb_tw + UPB >= wb_tn):
                m.d.sync += wb_tw.eq(0)
                with m.If(wb_p == wb_g - 1):
                    nb = wb_base + f(isa.OP_CONV, "hwout_t")
                    m.d.sync += [wb_p.eq(0), wb_o.eq(wb_o + 1), wb_base.eq(nb), wb_pbase.eq(nb),
                                 wb_addr.eq(nb)]
                    m.d.comb += wb_shift.eq(1)
                    with m.If(wb_o == wb_on - 1):
                        m.d.sync += wbb.eq(0)
                with m.Else():
                    np_ = wb_pbase + f(isa.OP_CONV, "t")
                    m.d.sync += [wb_p.eq(wb_p + 1), wb_pbase.eq(np_), wb_addr.eq(np_)]
            with m.Else():
                m.d.sync += [wb_tw.eq(wb_tw + UPB), wb_addr.eq(wb_addr + UPB)]

        # ------------------------------------------------------------------ LIF on the write-back
        # step s of the channel's g pixels runs in three sub-stages (the LIF unit's arithmetic,
        # L_RUN, rearranged so that no sub-stage chains two carry chains), V0 = 0:
        #   a: X = pol*(x<<F) + b;  q = V (decay_input) or V - (V >> k)
        #   b: r = X - V (decay_input) or X;  q, and q - theta (one bit wider)
        #   c: h = r >> k (decay_input) or r;  H = q + h,  H - theta = (q - theta) + h  (parallel)
        #      S = (H - theta >= 0) & (s < T);  V' = S ? (soft: H - theta, hard: 0) : H
        # Stage P_t writes the g bundles (consecutive words) as one masked run: 3*P_t + 1
        # cycles after the issue. H - theta cannot wrap: |H| < 2**(MB-1) and |theta| < 2**31.
        LF = f(isa.OP_CONV, "lflags")
        FF_ = f(isa.OP_CONV, "frac")[:6]
        KK_ = f(isa.OP_CONV, "leak")[:6]
        Tc = f(isa.OP_CONV, "t")
        for s_ in range(PT):
            def sub(tag, width, signed_=True):
                return [Signal(signed(width) if signed_ else unsigned(width), name=f"lw{tag}{s_}_p{p_}")
                        for p_ in range(PPIX)]
            # pass-through of the stage's control and the later steps' inputs: a -> b -> c
            ctl = [lv[s_], la_[s_], lm[s_], lth_[s_], lbi_[s_], lng_[s_]]
            ctl_b = [Signal.like(c_, name=f"{c_.name}b") for c_ in ctl]
            ctl_c = [Signal.like(c_, name=f"{c_.name}c") for c_ in ctl]
            m.d.sync += [d_.eq(s0) for d_, s0 in zip(ctl_b, ctl)]
            m.d.sync += [d_.eq(s0) for d_, s0 in zip(ctl_c, ctl_b)]
            vb, _, _, thb, _, _ = ctl_b
            vc, ac, mc, thc, bic, ngc = ctl_c
            later = [(p_, t) for p_ in range(PPIX) for t in range(s_ + 1, PT)]
            lxb = {k: Signal(signed(32), name=f"lwxb{s_}_p{k[0]}_t{k[1]}") for k in later}
            lxc = {k: Signal(signed(32), name=f"lwxc{s_}_p{k[0]}_t{k[1]}") for k in later}
            m.d.sync += [lxb[k].eq(lx[s_][k[0]][k[1]]) for k in later]
            m.d.sync += [lxc[k].eq(lxb[k]) for k in later]
            bb, bc = sub("bb", PT, False), sub("bc", PT, False)
            Xb, Vb, qb = sub("Xb", MB), sub("Vb", MB), sub("qb", MB)
            rc, qc, qtc = sub("rc", MB), sub("qc", MB), sub("qtc", MB + 1)
            act_c = Signal(name=f"lwact{s_}")
            m.d.comb += act_c.eq(Tc > s_)
            m.d.sync += [lv[s_ + 1].eq(vc), la_[s_ + 1].eq(ac), lm[s_ + 1].eq(mc)]
            if s_ + 1 < PT:
                m.d.sync += [lth_[s_ + 1].eq(thc), lbi_[s_ + 1].eq(bic), lng_[s_ + 1].eq(ngc)]
            for p_ in range(PPIX):
                # a
                V = lV[s_][p_] if s_ else Const(0, signed(MB))
                xs = Signal(signed(MB), name=f"lw{s_}_{p_}_xs")
                m.d.comb += xs.eq(lx[s_][p_][s_] << FF_)
                m.d.sync += [Xb[p_].eq(Mux(lng_[s_], -xs, xs) + lbi_[s_]), Vb[p_].eq(V),
                             qb[p_].eq(Mux(LF[0], V, V - (V >> KK_))),
                             bb[p_].eq(lb[s_][p_] if s_ else 0)]
                # b
                m.d.sync += [rc[p_].eq(Mux(LF[0], Xb[p_] - Vb[p_], Xb[p_])), qc[p_].eq(qb[p_]),
                             qtc[p_].eq(qb[p_] - thb), bc[p_].eq(bb[p_])]
                # c
                h = Signal(signed(MB), name=f"lw{s_}_{p_}_h")
                m.d.comb += h.eq(Mux(LF[0], rc[p_] >> KK_, rc[p_]))
                H = Signal(signed(MB), name=f"lw{s_}_{p_}_H")
                Ht = Signal(signed(MB + 1), name=f"lw{s_}_{p_}_Ht")
                m.d.comb += [H.eq(qc[p_] + h), Ht.eq(qtc[p_] + h)]
                S = Signal(name=f"lw{s_}_{p_}_S")
                m.d.comb += S.eq(~Ht[-1] & act_c)
                Vn = Signal(signed(MB), name=f"lw{s_}_{p_}_Vn")
                m.d.comb += Vn.eq(Mux(S, Mux(LF[1], Ht[:MB].as_signed(), 0), H))
                m.d.sync += lb[s_ + 1][p_].eq(bc[p_] | (S.as_unsigned() << s_))
                if s_ + 1 < PT:
                    m.d.sync += lV[s_ + 1][p_].eq(Vn)
                    m.d.sync += [lx[s_ + 1][p_][t].eq(lxc[(p_, t)]) for t in range(s_ + 1, PT)]
            lsub.extend([vb, vc])
        m.d.comb += lbusy.eq(Cat(*lv, *lsub).any())
        with m.If(lv[PT]):
            m.d.comb += [wp.addr.eq(la_[PT]),
                         wp.data.eq(Cat(*[lb[PT][p_].as_unsigned() if p_ < PPIX else Const(0, 32)
                                          for p_ in range(UPB)] if PT == 32 else
                                        [Cat(lb[PT][p_], Const(0, 32 - PT)) if p_ < PPIX else Const(0, 32)
                                         for p_ in range(UPB)])),
                         act.w_mask.eq(Cat(lm[PT], Const(0, UPB - PPIX)) if UPB > PPIX else lm[PT])]

        # ------------------------------------------------------------------ CONV stage B (SIMD adds)
        # one pair of terms per cycle into every accumulator: term 0 on AB, term 1 on C, each
        # the two channels' weights w << plane sign-extended to 24-bit lanes, gated by the
        # pixel's bundle bit t (zero for a padding tap); the group's first pair restarts (clr)
        def lanes24(word, sh, tag):
            out = []
            for o in range(PO):
                v = Signal(signed(LANE_BITS), name=f"w{tag}_o{o}")
                m.d.comb += v.eq(word[8 * o: 8 * o + 8].as_signed() << sh)
                out.append(v)
            return out

        wv0 = lanes24(wr.data, b_shift, "a")
        wv1 = lanes24(wr1.data, b_shift1, "c")
        beat0 = Array(act.r0_beat[32 * i: 32 * i + 32] for i in range(UPB))
        beat1 = Array(act.r1_beat[32 * i: 32 * i + 32] for i in range(UPB))
        for p in range(PPIX):
            w0 = beat0[pword[p]] if UPB > 1 else r0.data
            w1 = beat1[pword[p]] if UPB > 1 else r1.data
            bund0 = Signal(PT, name=f"bund0_p{p}")
            bund1 = Signal(PT, name=f"bund1_p{p}")
            m.d.comb += [bund0.eq(Mux(b_vld & b_inb[p], (w0 >> tsh[:5])[:PT], 0)),
                         bund1.eq(Mux(b_vld & b_inb1[p] & b_v1, (w1 >> tsh[:5])[:PT], 0))]
            for t in range(PT):
                for j in range(PO // 2):
                    a = sacc[p][t][j]
                    m.d.comb += [a.clr.eq(b_vld & b_first), a.g0.eq(bund0[t]), a.g1.eq(bund1[t]),
                                 a.ab.eq(Cat(wv0[2 * j], wv0[2 * j + 1])),
                                 a.c.eq(Cat(wv1[2 * j], wv1[2 * j + 1]))]
        return m
