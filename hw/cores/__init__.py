"""Addition-only hardware cores (Amaranth 0.5 ``wiring.Component``\\ s with stream ports).

No core multiplies: spikes gate weights into adders, multi-bit values enter as shifted
bit-planes, leaks are arithmetic shifts, I-LIF levels a compare chain. Every core is
held bit for bit to a reference function in :mod:`compiler.reference` (section
"hardware core references"), in ``amaranth.sim`` and under cocotb + Verilator
(``tests/hw``, ``tests/sim``).

Common contract (:mod:`._common`): streams are :class:`amaranth.lib.stream.Signature`
with a ``StructLayout`` payload; a beat moves on ``valid & ready``; producers hold the
payload while ``valid & ~ready``. Unless stated, a core has one output register
(latency 1), takes one beat per cycle and ``i.ready = ~o.valid | o.ready``. Verilog
ports are ``<port>__payload`` / ``__valid`` / ``__ready``, ``clk``, ``rst``.

=========================== ================================================ ==========================
core                        ports (payload fields)                           reference
=========================== ================================================ ==========================
:class:`GatedAccumulator`   ``i``: spikes[terms], weights[terms][lanes],     ``ref_gated_accumulate``
(:mod:`.pe`)                bias[lanes], plane (planes>1), first, last;
                            ``o``: acc[lanes]. Forms ``lut`` (adder tree)
                            and ``dsp`` (DSP48E2 FOUR12 chain, USE_MULT
                            NONE; behavioural twin in simulation)
:class:`DSPAdderChain`      ``spikes``, ``weights`` in; ``lanes`` out        (inside the above)
(:mod:`.pe`)                (combinational, 4 x 12-bit SIMD lanes)
:class:`BitPlaneAccumulator` ``i``: x[terms] (in_bits), weights, bias,       ``ref_gated_accumulate``
(:mod:`.bitplane`)          first, last; ``o``: acc. One beat per in_bits    (``bits=in_bits``)
                            cycles
:class:`SignedBitPlaneAccumulator` ``i``: x[terms] signed(in_bits), weights,  ``ref_signed_bitplane_``
(:mod:`.pointwise`)         bias' (``offset_bias``), first, last; ``o``:     ``accumulate``
                            acc. Planes of u = x + 2**(in_bits-1) (sign bit
                            inverted), offset folded into the bias (factored
                            SepConv's pointwise on int); in_bits cycles/beat
:class:`IntLIFLane`         ``i``: x, theta, bias, neg, first;               ``ref_intlif_lane``
(:mod:`.lif`)               ``o``: s, h (pre-reset membrane)
:class:`Requant`            ``i``: x, shift; ``o``: y                        ``ref_requant``
(:mod:`.requant`)
:class:`StreamAdd`          ``a``: v[lanes], ``b``: v[lanes] (joined);       ``ref_add``
(:mod:`.add`)               ``o``: v[lanes]
:class:`SumPool`            ``i``: x[lanes], first, last; ``o``: sum[lanes]  ``ref_sum_pool``
(:mod:`.pool`)              (GlobalPool over H*W, TimeMean over T)
:class:`AttentionUnit`      ``i``: op (KV / QUERY), clear, kq[d], v[d];      ``ref_attention_head``
(:mod:`.sdha`)              ``o``: y[d] per query. SDHA and SDSA, joint or
                            spatial token sets; d cycles per active token
:class:`SaccadeUnit`        ``i``: op (ALPHA / TOKEN), t, first, kq[d], v[d]; ``ref_sssa_head``
(:mod:`.sssa`)              ``o``: s, h, y[d] = s ? v : 0 per token. SSSA:
                            Qc*alpha as alpha gated by each Q spike, gain[t]
                            as a constant shift-add
=========================== ================================================ ==========================

:func:`core_for` (:mod:`.select`) configures the core for an IR node from its proved
widths and refuses, as :class:`~models.errors.HardwareError`, what no core implements
(widths not derived, weights beyond int8, integer inputs beyond 16 bits, an SSSA whose
gain or leak the saccade unit cannot take, ops without a core).
"""

from .add import StreamAdd
from .bitplane import BitPlaneAccumulator
from .lif import MAX_LEVELS, IntLIFLane
from .pe import DSP_LANE_BITS, DSP_LANES, DSPAdderChain, GatedAccumulator
from .pointwise import SignedBitPlaneAccumulator, offset_bias
from .pool import SumPool
from .requant import Requant
from .sdha import OP_KV, OP_QUERY, AttentionUnit
from .select import W_BITS, core_for
from .sssa import OP_ALPHA, OP_TOKEN, SaccadeUnit, refuse_sssa

__all__ = ["GatedAccumulator", "DSPAdderChain", "BitPlaneAccumulator", "SignedBitPlaneAccumulator",
           "offset_bias", "IntLIFLane", "Requant",
           "StreamAdd", "SumPool", "AttentionUnit", "SaccadeUnit", "core_for", "refuse_sssa", "OP_KV",
           "OP_QUERY", "OP_ALPHA", "OP_TOKEN",
           "MAX_LEVELS", "DSP_LANES", "DSP_LANE_BITS", "W_BITS"]
