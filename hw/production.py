"""Production parameter sets of the cores (ZCU104 overlay sizing, hw-design.md C2-C4).

Widths are the largest the compiler proves for svf-small / svf-large at 224x224 and T=8
(``acc_bits`` 13-23, ``mem_bits`` up to 29; joint SDHA over 8 x 14 x 14 tokens, d = 64):
synthesising these shows the resources of one PE tile, one neuron lane, one attention
unit, ... at the sizes the accelerator instantiates them, and that none needs a
multiplier.
"""

from __future__ import annotations

from amaranth.utils import bits_for

from .cores import (AttentionUnit, BitPlaneAccumulator, GatedAccumulator, IntLIFLane, Requant,
                    SaccadeUnit, SignedBitPlaneAccumulator, StreamAdd, SumPool)

__all__ = ["PRODUCTION", "SMALL"]

_TOKENS = 8 * 14 * 14  # joint attention at T=8, 224x224 / 16
_D = 64

#: name -> (description, factory)
PRODUCTION = {
    "pe-dsp (64 lanes x 16 terms)": (
        "spike-gated accumulator, DSP48E2 FOUR12 adder chains (USE_MULT=NONE), acc 23 b",
        lambda: GatedAccumulator(64, 16, 8, 23, form="dsp", dsp_instance=True, w_abs_max=127)),
    "pe-lut (64 lanes x 16 terms)": (
        "spike-gated accumulator, LUT adder trees, acc 23 b",
        lambda: GatedAccumulator(64, 16, 8, 23, form="lut")),
    "bitplane-dsp (64 x 16, 8-bit codes)": (
        "analog first layer: 8 bit-planes shifted into the accumulator, DSP adders",
        lambda: BitPlaneAccumulator(64, 16, 8, 8, 23, form="dsp", dsp_instance=True, w_abs_max=127)),
    "pointwise-dsp (64 x 16, 13-bit int in)": (
        "factored SepConv's pointwise on the depthwise's signed 13-bit output: planes of "
        "x + 2**12, offset folded into the bias, DSP adders, acc 24 b",
        lambda: SignedBitPlaneAccumulator(64, 16, 13, 8, 24, form="dsp", dsp_instance=True,
                                          w_abs_max=127)),
    "intlif lane (binary, 30 b)": (
        "IntLIF lane: polarity, bias, shift leak, hard reset; membrane 30 b",
        lambda: IntLIFLane(in_bits=24, mem_bits=30, theta_bits=29, bias_bits=29, frac_bits=4,
                           leak_shift=1, decay_input=True, reset="hard", levels=1)),
    "intlif lane (I-LIF D=4, 30 b)": (
        "I-LIF lane: round-half-even compare chain of 4 levels, soft reset",
        lambda: IntLIFLane(in_bits=24, mem_bits=30, theta_bits=29, bias_bits=29, frac_bits=4,
                           leak_shift=1, decay_input=True, reset="soft", levels=4)),
    "requant": ("rounding shift, 24 b in, shift 0..30",
                lambda: Requant(in_bits=24, out_bits=24, max_shift=30)),
    "add (64 lanes, 24 b)": ("residual stream add",
                             lambda: StreamAdd(a_bits=23, b_bits=23, out_bits=24, lanes=64)),
    "sum pool (64 lanes)": ("GlobalPool / TimeMean sums",
                            lambda: SumPool(in_bits=24, out_bits=32, lanes=64)),
    "sdha unit (d=64, joint T=8 224)": (
        "SDHA head: up/down counters kv (64 x 64), signed row additions",
        lambda: AttentionUnit(d=_D, kv_bits=bits_for(_TOKENS, True),
                              y_bits=bits_for(_D * _TOKENS, True), kind="sdha")),
    "sssa unit (d=64, 196 tokens, T=8)": (
        "SSSA head: alpha gated by Q spikes, per-step constant shift-add gains, saccade neuron",
        lambda: SaccadeUnit(d=_D, tokens=196, gains=(37, 41, 45, 49, 53, 57, 61, 65), theta=1 << 20,
                            mem_bits=30, frac_bits=4, leak_shift=1, decay_input=True, reset="hard")),
}

#: small parameter sets for the fast synthesis test in ``make test``
SMALL = {
    "pe-dsp small": lambda: GatedAccumulator(8, 4, 8, 14, form="dsp", dsp_instance=True),
    "pe-lut small": lambda: GatedAccumulator(4, 4, 8, 14, form="lut"),
    "pointwise small": lambda: SignedBitPlaneAccumulator(2, 2, 4, 8, 12, form="lut"),
    "intlif small": lambda: IntLIFLane(in_bits=8, mem_bits=12, theta_bits=8, bias_bits=8,
                                       frac_bits=1, levels=2, reset="soft"),
}
