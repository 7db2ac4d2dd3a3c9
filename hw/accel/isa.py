"""The engine's instruction set, program format and register map (shared by the RTL,
the program emitter, the host driver and the simulation).

Program
-------
A program is a sequence of fixed-size descriptors of :data:`DESC_WORDS` little-endian
32-bit words (:data:`DESC_BYTES` bytes) in DDR, starting at the address written to
``PROG_ADDR``. Word 0 holds the opcode; the other words are the operands listed in
:data:`FIELDS` (unused words are zero). The first descriptor is a ``HEADER`` carrying
:data:`MAGIC` and :data:`VERSION`: the engine stops with ``STATUS.error`` set if they do
not match what it was built for. ``END`` stops the engine and raises the interrupt.

Tensor layouts in the on-chip activation buffer and in DDR (32-bit words)
-------------------------------------------------------------------------
The same layouts hold in DDR (byte offset ``4 * word``). DMA addresses in DDR must be
aligned to the AXI beat (``axi_data_width / 8`` bytes; else the engine stops with
``STATUS.error`` at that descriptor); the buffer side is word-granular. The engine cuts
bursts at 4 KB boundaries (AXI4), so images are placed at a 4 KB-aligned base.
A 2-D ``LOAD``/``STORE`` (version 5) is the same as its ``rows`` runs issued one by one in
order (each run's DDR address aligned, so ``ddr_stride`` is a multiple of the beat), without
a descriptor fetch per run.
An accumulating ``LOAD`` (``mode & LOAD_ACC``, version 7) adds each word to the buffer word
it lands on: a residual add or a partial-sum add in one pass over DDR, no ``EW`` and no
second buffer region (the emitters use it only for runs that start on a beat, so no leading
word lands outside the target).
An asynchronous ``STORE`` (``mode & STORE_ASYNC``, version 7; version 8: beside every
unit) runs on the engine's STORE machine (the AXI write channels and the activation
buffer's read port 2, a copy of the words of its own) while the sequencer goes on: the
next descriptors are fetched and run beside it, loads and compute units alike; the next
``STORE`` or ``END``, and a descriptor with :data:`FENCE` in word 0 (version 9), waits in
decode until it is done. The program must not let the descriptors before that write the
STORE's buffer words or read its DDR bytes (:func:`.overlap.mark_async_stores` proves it,
and fences the first one that would).
A ``CONV`` with ``lflags & LFLAG_WB`` (version 6) writes the spike map of the IntLIF it
feeds instead of its integer map: the bundle of ``(o, oy, ox)`` at ``outb + o*hwout_t +
oy*wout + ox`` (``o`` counted from ``oc_start``, ``hwout_t`` the spike channel stride).
Row bands (the DDR-resident plan): a band of rows ``lo..lo+h-1`` of every channel of a
spike map is loaded channel by channel to ``inb + c*h*W``; a conv's integer output band of
rows ``y0..y0+hb-1`` sits at ``outb + c*hb*Wout*T`` and is stored channel by channel.
* spike map ``(C, H, W)``: one *T-bundle* word per ``(c, y, x)`` at ``base + (c*H + y)*W + x``;
  bit ``t`` is the spike of step ``t`` (the bundle is all-zero iff the neuron never fires).
* integer map ``(C, H, W)`` over ``T`` steps: ``base + ((c*H + y)*W + x)*T + t``,
  two's complement (every stored value's proved bound fits 32 bits).
* analog input: bit-planes; virtual channel ``c*8 + j`` is the spike map of bit ``j`` of
  the 8-bit codes, so the first convolution is ``sum_j 2**j * conv(plane_j)``.
* weight buffer word (``P_o`` lanes x 8 bits): lane ``o`` of word
  ``w_base + tile*cin*K*K + i*K*K + ky*K + kx`` is ``W[tile*P_o + o, i, ky, kx]``.
* SDHA scratch (version 2): an ``SDHA`` reuses the weight buffer as ``P_o/4`` 32-bit lanes
  per word, ``g = ceil(d / (P_o/4))``: per head, word ``j*hw + n`` lane ``l`` holds the V
  bundle of channel ``j*P_o/4 + l`` at token ``n`` (zero past ``d``), word
  ``kvw + a*g + j`` lane ``l`` holds ``kv[a, j*P_o/4 + l]``. It overwrites the weights:
  every ``CONV`` must be preceded by its ``LOADW``.
* SDHA token ranges (version 4): head ``h`` reads K and V channel ``a`` of token ``n`` at
  ``k/v + h*hwd + a*hw + n`` (``hw`` tokens, phases 0/1) and Q at
  ``q + h*hwd + a*qs + j`` for the ``ntok`` tokens ``j`` of its range (phase 2); it writes
  ``y[b, j, t]`` at ``outb + h*hwdt + b*hwt + j*T + t``. A whole head is ``ntok = qs = hw``,
  ``hwt = hw*T`` (the integer map above). A range ``[n0, n1)`` of the whole-map layout is
  ``q + n0`` / ``outb + n0*T`` with the whole head's strides; the DDR-resident plan instead
  loads each Q channel's range to ``q + a*(n1-n0)`` (``qs = n1 - n0``, one ``LOAD`` per
  channel) and writes ``hwt = (n1-n0)*T`` (one ``STORE`` per output channel). ``mode``
  bit 0: skip phases 0/1 (the head's kv is already in the weight buffer from an earlier
  ``SDHA`` with no ``LOADW`` between); bit 1: skip phase 2 (build kv only; Q and the
  output are not touched). ``mode != 0`` needs ``heads = 1`` (the scratch holds one kv).
"""

from __future__ import annotations

MAGIC = 0x41465653  # "SVFA" little-endian
VERSION = 9  # 2: CONV ``pad_y`` (row bands of the DDR-resident plan); 3: SDHA scratch in the weight buffer;
             # 4: SDHA token ranges (ntok, qs, mode); 5: 2-D LOAD/STORE (rows, ddr_stride, addr_stride);
             # 6: CONV with the IntLIF on its write-back (lifpb, frac, leak, lflags);
             # 7: accumulating LOAD (``mode & LOAD_ACC``: buffer words += DDR words), asynchronous
             # STORE (``mode & STORE_ASYNC``); 8: an asynchronous STORE runs beside every unit
             # (read port 2); 9: word 0 bit 31 (FENCE): the descriptor waits for an asynchronous STORE
DESC_WORDS = 32
DESC_BYTES = DESC_WORDS * 4

# opcodes
OP_END, OP_LOAD, OP_LOADW, OP_STORE, OP_CONV, OP_LIF, OP_EW, OP_REDUCE, OP_SDHA, OP_HEADER = range(10)
OPNAMES = {OP_END: "END", OP_LOAD: "LOAD", OP_LOADW: "LOADW", OP_STORE: "STORE", OP_CONV: "CONV",
           OP_LIF: "LIF", OP_EW: "EW", OP_REDUCE: "REDUCE", OP_SDHA: "SDHA", OP_HEADER: "HEADER"}

#: operand word index per opcode (word 0 is the opcode)
FIELDS: dict[int, tuple[str, ...]] = {
    OP_END: (),
    OP_HEADER: ("magic", "version", "n_desc"),
    # DMA: count in 32-bit units (LOAD/STORE) or weight-buffer words (LOADW). LOAD/STORE
    # move ``max(rows, 1)`` runs of ``count`` units: run ``r`` between DDR byte
    # ``ddr + r*ddr_stride`` and buffer word ``addr + r*addr_stride`` (strides two's
    # complement 32-bit, so runs may go down; ``rows`` 0 or 1: one run, strides unused).
    # LOAD ``mode & LOAD_ACC`` (version 7): each moved word is added to the buffer word it
    # lands on (32-bit two's complement, ``buf[a] = buf[a] + ddr[d]``) instead of replacing it
    OP_LOAD: ("ddr", "addr", "count", "rows", "ddr_stride", "addr_stride", "mode"),
    OP_LOADW: ("ddr", "addr", "count"),
    # STORE ``mode & STORE_ASYNC`` (version 7/8): the sequencer goes on while it runs (above)
    OP_STORE: ("ddr", "addr", "count", "rows", "ddr_stride", "addr_stride", "mode"),
    # CONV over output channels [oc_start, oc_end) (tiles of P_o), all T steps, on a band of
    # ``h`` loaded input rows: output row ``oy`` reads rows ``oy*stride - pad_y + ky`` of the
    # band (outside ``0..h-1``: zero padding); columns ``ox*stride - pad + kx`` (``pad`` is
    # the left/right padding, ``pad_y`` the band's top padding, ``pad_w = pad_y * w``).
    # A whole-frame conv has ``h = H``, ``pad_y = pad``; ``hw = h*w`` is the channel stride.
    # ``lflags & LFLAG_WB`` (version 6, needs ``tchunks = 1``): the IntLIF of params
    # ``lifpb + 3o`` (theta, bias, polarity; ``frac``, ``leak``, ``lflags`` bits 0/1 as the
    # LIF's ``flags``) runs on the write-back and only spike bundles are written: bundle
    # ``(o, oy, ox)`` at ``outb + (o - oc_start)*hwout_t + oy*wout + ox`` (per tile
    # ``outb += otile``), i.e. ``hwout_t`` is then the spike map's channel stride.
    OP_CONV: ("inb", "outb", "biasb", "wb", "cin", "h", "w", "hw", "hout", "wout", "k", "stride",
              "pad", "plog2", "cout", "oc_start", "oc_end", "t", "kk", "stride_w", "hwout_t",
              "wtile", "tchunks", "pad_w", "otile", "pad_y", "lifpb", "frac", "leak", "lflags"),
    # LIF: params at pb + 3c: theta, bias, polarity (+1/-1); flags bit0 decay_input, bit1 soft
    OP_LIF: ("inb", "outb", "pb", "c", "hw", "t", "frac", "leak", "flags"),
    # EW: mode 0: out = a + b; mode 1: out = (a + (2**s >> 1)) >> s, s = mem[b + c], per = HW*T
    OP_EW: ("a", "b", "outb", "n", "mode", "per"),
    # REDUCE: out[i0*n1 + i1] = sum_i2 in[i0*s0 + i1*s1 + i2*s2]
    OP_REDUCE: ("inb", "outb", "n0", "s0", "n1", "s1", "n2", "s2"),
    # SDHA (joint tokens): scratch in the weight buffer, g = ceil(d / (P_o/4)) words per
    # token (V transposed, words 0 .. g*hw-1) and per kv row (words kvw .. kvw + d*g - 1);
    # phase 2 over ``ntok`` tokens, Q channels ``qs`` apart, output channels ``hwt`` apart;
    # mode bit0: kv already built (phase 2 only), bit1: phases 0/1 only
    OP_SDHA: ("q", "k", "v", "outb", "kvw", "heads", "d", "hw", "t", "hwd", "hwdt", "g", "hwt",
              "ntok", "qs", "mode"),
}


#: CONV ``lflags`` bit: apply the IntLIF in the write-back, write T-bundles (version 6)
LFLAG_WB = 4

#: LOAD ``mode`` bit: add the loaded words to the buffer's (version 7)
LOAD_ACC = 1

#: STORE ``mode`` bit: asynchronous, the descriptors up to the next STORE/END run beside it (version 8)
STORE_ASYNC = 1

#: word-0 bit of any descriptor (version 9; the ``fence`` key of its fields): it waits in
#: decode for an asynchronous STORE to finish, like a STORE or END
FENCE = 1 << 31


def field_index(op: int, name: str) -> int:
    return 1 + FIELDS[op].index(name)


def word0(op: int, f: dict) -> int:
    """Word 0 of a descriptor: the opcode, and :data:`FENCE` when ``f`` has ``fence``."""
    return op | (FENCE if f.get("fence") else 0)


def decode_word0(w: int) -> tuple[int, dict]:
    """``(opcode, {"fence": 1} or {})`` of a descriptor's word 0."""
    return int(w) & 0xFF, ({"fence": 1} if int(w) & FENCE else {})


# AXI4-Lite register map (byte offsets)
REG_CTRL = 0x00       # W: bit0 start (self-clearing)
REG_STATUS = 0x04     # R: bit0 busy, bit1 done, bit2 error
REG_PROG = 0x08       # RW: program base address in DDR
REG_IRQ_EN = 0x0C     # RW: bit0 interrupt enable (done)
REG_IRQ_STAT = 0x10   # R: bit0 pending; W1C
REG_CYCLES = 0x14     # R: clock cycles of the last run
REG_PC = 0x18         # R: descriptor index being executed
REG_ID = 0x1C         # R: MAGIC
REG_CONFIG = 0x20     # R: P_o | P_t << 16
REG_VERSION = 0x24    # R: VERSION

STATUS_BUSY, STATUS_DONE, STATUS_ERROR = 1, 2, 4
