"""The banked activation buffer: ``u`` banks of 32-bit words, a whole AXI beat per cycle.

Word ``a`` of the buffer lives in bank ``a % u`` at row ``a // u`` (``u`` = 32-bit units
per AXI beat, a power of two). A *run* of ``u`` consecutive words starting at any word
address ``A`` (``s = A % u``) touches every bank exactly once: word ``A + i`` is in bank
``(s + i) % u``, and bank ``b`` holds the run's word at row ``A // u + (b < s)``. So

* the write port writes up to ``u`` consecutive words per cycle (a DMA beat, rotated onto
  the banks, per-word enables ``mask``); a single-word write (``en``) is the run's word 0;
* each read port reads the run at its ``addr`` (``beat``, word ``i`` = ``A + i``) and its
  word 0 (``data``).

Reads have one cycle of latency (the registered ``A % u`` selects the banks' outputs), as
a single memory's synchronous read port: a single-word access behaves exactly like the
unbanked buffer (same latency, old data on a read of a word written in the same cycle),
so the units that use it see no change. ``r0_en = 0`` holds port 0's outputs. No
arithmetic beyond the row increment: rotations are multiplexers.

**Store port** (``store_style`` given): read port 2 (``r2_*``, as port 0, ``r2_en = 0``
holds its outputs while the STORE waits on ``WREADY``) reads a third copy of the words,
one memory per bank of ``ram_style = store_style``, written by the same write port with
the same address, data and enable, so it always equals the banks. The engine's STORE
machine reads it, so that a STORE runs beside the units that use ports 0 and 1 (a
dual-ported RAM gives one write and one read per copy: the banks' two read ports already
take two copies, and Vivado/Yosys build the third from ``store_style``, block RAM in the
production engine where the URAMs are spent).

**Occupancy flags** (``flags = F > 0``): beside each bank a 1-bit memory of the same rows
holds ``word != 0`` for every word. It is written by the one write port with the bank's
own address and enable, so it is consistent with the words whatever unit writes (DMA
``LOAD``, LIF, EW, REDUCE, SDHA, the CONV write-back) and all-zero at power-up, as the
words. ``F`` flag read ports ``f{k}`` each read the run of ``u`` flags at any word address
(flag ``i`` = word ``A + i`` non-zero) with port 1's latency and rotation; the CONV unit
uses them to skip all-zero T-bundles (:mod:`.engine`).
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ActBuffer"]


class ActBuffer(wiring.Component):
    """``depth`` 32-bit words in ``units`` banks (see the module docstring).

    Members
    -------
    r0_addr, r0_en, r0_data, r0_beat : read port 0 (word address, enable, word ``A``, the
        run ``A .. A+u-1`` with word ``i`` at bits ``32*i``).
    r1_addr, r1_data, r1_beat : read port 1 (as port 0, always enabled).
    w_addr, w_data, w_en, w_mask : write port: words ``A + i`` for the set bits ``i`` of
        ``w_mask | w_en`` (``w_en`` writes word 0 only), data word ``i`` at bits ``32*i``.
    f{k}_addr, f{k}_run : flag read port ``k < flags``: bit ``i`` of ``f{k}_run`` is
        ``word(A + i) != 0`` for the address ``A`` of the previous cycle (always enabled).
    """

    def __init__(self, depth: int, units: int, ram_style: str = "block", flags: int = 0,
                 store_style: str | None = None):
        if units < 1 or units & (units - 1):
            raise ValueError(f"units must be a power of two, not {units}")
        if depth % units:
            raise ValueError(f"depth {depth} must be a multiple of the {units} banks")
        if not isinstance(flags, int) or flags < 0:
            raise ValueError(f"flags must be a non-negative int, not {flags!r}")
        self.depth, self.units, self.ram_style, self.flags = depth, units, ram_style, flags
        self.store_style = store_style
        aw = max(1, (depth - 1).bit_length())
        self.aw = aw
        sig = {
            "r0_addr": In(aw), "r0_en": In(1, init=1), "r0_data": Out(32), "r0_beat": Out(32 * units),
            "r1_addr": In(aw), "r1_data": Out(32), "r1_beat": Out(32 * units),
            "w_addr": In(aw), "w_data": In(32 * units), "w_en": In(1), "w_mask": In(units),
        }
        if store_style is not None:
            sig |= {"r2_addr": In(aw), "r2_en": In(1, init=1), "r2_data": Out(32), "r2_beat": Out(32 * units)}
        for k in range(flags):
            sig[f"f{k}_addr"] = In(aw)
            sig[f"f{k}_run"] = Out(units)
        super().__init__(sig)

    @staticmethod
    def flag_of(word):
        """The occupancy flag stored beside ``word``: ``word != 0``."""
        return word != 0

    def flag_port(self, k: int):
        """``(addr, run)`` of flag read port ``k``."""
        return getattr(self, f"f{k}_addr"), getattr(self, f"f{k}_run")

    def elaborate(self, platform):
        m = Module()
        u = self.units
        lu = u.bit_length() - 1
        rows = self.depth // u
        banks = []
        fbanks = []     # per bank: (flag write port, [flag read port k])
        sbanks = []     # per bank: (store copy's write port, its read port)
        for b in range(u):
            mem = memory.Memory(shape=unsigned(32), depth=rows, init=[], attrs={"ram_style": self.ram_style})
            m.submodules[f"bank{b}"] = mem
            banks.append((mem.read_port(), mem.read_port(), mem.write_port()))
            if self.store_style is not None:
                sm = memory.Memory(shape=unsigned(32), depth=rows, init=[], attrs={"ram_style": self.store_style})
                m.submodules[f"store{b}"] = sm
                sbanks.append((sm.write_port(), sm.read_port()))
            if self.flags:
                fm = memory.Memory(shape=unsigned(1), depth=rows, init=[])
                m.submodules[f"flag{b}"] = fm
                fbanks.append((fm.write_port(), [fm.read_port() for _ in range(self.flags)]))
        # every flag write mirrors its bank's write: same row, same enable, flag = word != 0
        for (_, _, wpb), (fw, _) in zip(banks, fbanks):
            m.d.comb += [fw.addr.eq(wpb.addr), fw.en.eq(wpb.en), fw.data.eq(self.flag_of(wpb.data))]
        # ... and every store-copy write (same row, enable and data)
        for (_, _, wpb), (sw, _) in zip(banks, sbanks):
            m.d.comb += [sw.addr.eq(wpb.addr), sw.en.eq(wpb.en), sw.data.eq(wpb.data)]
        if u == 1:
            r0, r1, wp = banks[0]
            m.d.comb += [r0.addr.eq(self.r0_addr), r0.en.eq(self.r0_en), self.r0_data.eq(r0.data),
                         self.r0_beat.eq(r0.data), r1.addr.eq(self.r1_addr), self.r1_data.eq(r1.data),
                         self.r1_beat.eq(r1.data),
                         wp.addr.eq(self.w_addr), wp.data.eq(self.w_data[:32]),
                         wp.en.eq(self.w_mask[0] | self.w_en)]
            for k in range(self.flags):
                fa, frun = self.flag_port(k)
                fr = fbanks[0][1][k]
                m.d.comb += [fr.addr.eq(fa), frun.eq(fr.data)]
            if sbanks:
                r2 = sbanks[0][1]
                m.d.comb += [r2.addr.eq(self.r2_addr), r2.en.eq(self.r2_en), self.r2_data.eq(r2.data),
                             self.r2_beat.eq(r2.data)]
            return m

        def run_row(addr, b):
            """Row of bank ``b`` in the run of ``u`` words starting at ``addr``."""
            return addr[lu:] + (addr[:lu] > b)

        # write: word i of the run -> bank (s + i) % u
        ws = self.w_addr[:lu]
        wmask = Signal(u)
        m.d.comb += wmask.eq(self.w_mask | self.w_en)
        wwords = Array(self.w_data[32 * i: 32 * i + 32] for i in range(u))
        wbits = Array(wmask[i] for i in range(u))
        for b, (_, _, wp) in enumerate(banks):
            i = Signal(lu, name=f"wi{b}")
            m.d.comb += [i.eq(b - ws), wp.addr.eq(run_row(self.w_addr, b)), wp.data.eq(wwords[i]),
                         wp.en.eq(wbits[i])]

        def enabled_port(ports, addr, en, data, beat, tag):
            """A read port over ``ports`` (one per bank) with an enable: the run at ``addr``,
            output word i <- bank (s + i) % u."""
            s_ = Signal(lu, name=f"s{tag}")
            with m.If(en):
                m.d.sync += s_.eq(addr[:lu])
            d_ = Array(p.data for p in ports)
            outs = []
            for b, p in enumerate(ports):
                m.d.comb += [p.addr.eq(run_row(addr, b)), p.en.eq(en)]
                j = Signal(lu, name=f"r{tag}i{b}")
                m.d.comb += j.eq(s_ + b)
                outs.append(d_[j])
            m.d.comb += [beat.eq(Cat(*outs)), data.eq(d_[s_])]

        # read port 0: the run at r0_addr
        enabled_port([p0 for p0, _, _ in banks], self.r0_addr, self.r0_en, self.r0_data, self.r0_beat, "0")
        # read port 2 (the store copy): as port 0
        if sbanks:
            enabled_port([sr for _, sr in sbanks], self.r2_addr, self.r2_en, self.r2_data, self.r2_beat, "2")

        # read port 1: the run at r1_addr, as port 0 (always enabled)
        s1 = Signal(lu)
        m.d.sync += s1.eq(self.r1_addr[:lu])
        d1 = Array(p1.data for _, p1, _ in banks)
        outs1 = []
        for b, (_, p1, _) in enumerate(banks):
            m.d.comb += p1.addr.eq(run_row(self.r1_addr, b))
            j = Signal(lu, name=f"r1i{b}")
            m.d.comb += j.eq(s1 + b)
            outs1.append(d1[j])
        m.d.comb += [self.r1_beat.eq(Cat(*outs1)), self.r1_data.eq(d1[s1])]

        # flag read ports: the run of u flags at f{k}_addr, rotated as port 1
        for k in range(self.flags):
            fa, frun = self.flag_port(k)
            sk = Signal(lu, name=f"fs{k}")
            m.d.sync += sk.eq(fa[:lu])
            dk = Array(fr[k].data for _, fr in fbanks)
            fouts = []
            for b, (_, fr) in enumerate(fbanks):
                m.d.comb += fr[k].addr.eq(run_row(fa, b))
                j = Signal(lu, name=f"f{k}i{b}")
                m.d.comb += j.eq(sk + b)
                fouts.append(dk[j])
            m.d.comb += frun.eq(Cat(*fouts))
        return m
