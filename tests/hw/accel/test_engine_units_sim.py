"""The EW and LIF units of the engine under Verilator, on hand-made programs of odd sizes.

One program per configuration: ``LOAD`` random words to the buffer, EW (both modes) and
LIF descriptors over partial runs (element counts, channel lengths and neuron counts that
are not multiples of ``u`` or of the LIF lanes), unaligned bases, in place and not, ``T``
below, equal to and above ``u`` (and ``T = 1``), then ``STORE`` every result. The stored
words must equal a numpy model of the unit's math, ``CYCLES`` must equal
:func:`~svf_deploy.hw.accel.cycles.program_cycles` (that is :func:`ew_cycles` and
:func:`lif_cycles` per descriptor), and one flipped input bit of each unit must change
exactly the outputs the model says.
"""

from __future__ import annotations

import numpy as np
import pytest

from svf_deploy.hw.accel import CI, PRODUCTION, AccelConfig, isa
from svf_deploy.hw.accel.cycles import ew_cycles, lif_cycles, program_cycles
from svf_deploy.hw.accel.program import Program

SRC, DST = 2048, 8192       # DDR word addresses of the source words and of the stores
BUF = DST - SRC             # buffer words the program uses


def _ew(cfg):
    """EW descriptors ``(fields, n)`` on the buffer: odd counts, unaligned, in place."""
    u = cfg.units_per_beat
    return [
        dict(a=1, b=203, outb=1501, n=37, mode=0, per=1),                  # unaligned, partial run
        dict(a=400, b=603, outb=400, n=4 * u + 1, mode=0, per=1),          # in place
        dict(a=701, b=2000, outb=1601, n=3 * 7 + 4, mode=1, per=7),        # 3 channels + a partial one
        dict(a=801, b=2004, outb=801, n=u, mode=1, per=u),                 # one run per channel
        dict(a=901, b=2006, outb=1701, n=3, mode=1, per=1),                # runs of one
        dict(a=1001, b=2010, outb=1801, n=2 * u + 3, mode=1, per=2 * u + 3),  # one channel (a band)
    ]


def _lif(cfg):
    """LIF descriptors: ``T`` = 1, below / equal to / above ``u``; neuron counts that leave
    the last lane group partial; both charge rules and both resets."""
    u = cfg.units_per_beat
    L = 2 * u
    out = []
    for i, (T, hw, flags) in enumerate([(1, L + 1, 0), (max(1, u - 1), 3 * L - 1, 1), (u, 5, 2),
                                        (u + 1, L + 3, 3), (2 * u + 3, 2 * L, 1)]):
        out.append(dict(inb=2200 + 600 * i + i % u, outb=5200 + 100 * i + (i + 1) % u, pb=2050 + 6 * i,
                        c=2, hw=hw, t=T, frac=i % 3, leak=1 + i % 3, flags=flags))
    return out


def _buffer_model(buf: np.ndarray, ews, lifs) -> np.ndarray:
    """The buffer after the EW and LIF descriptors (int64 words, two's complement 32-bit)."""
    b = buf.astype(np.int64).copy()

    def s32(x):
        return ((int(x) + 2**31) % 2**32) - 2**31

    for f in ews:
        a = [s32(b[f["a"] + i]) for i in range(f["n"])]
        if f["mode"] == 0:
            r = [s32(a[i] + s32(b[f["b"] + i])) for i in range(f["n"])]
        else:
            sh = [int(b[f["b"] + i // f["per"]]) & 31 for i in range(f["n"])]
            r = [s32((a[i] + ((1 << sh[i]) >> 1)) >> sh[i]) for i in range(f["n"])]
        b[f["outb"]: f["outb"] + f["n"]] = r
    for f in lifs:
        T, F, k = f["t"], f["frac"], f["leak"]
        for c in range(f["c"]):
            theta, bias, pol = (s32(b[f["pb"] + 3 * c + j]) for j in range(3))
            for n in range(f["hw"]):
                v, word = 0, 0
                for t in range(T):
                    x = s32(b[f["inb"] + (c * f["hw"] + n) * T + t])
                    X = (-(x << F) if pol < 0 else (x << F)) + bias
                    h = v + ((X - v) >> k) if f["flags"] & 1 else v - (v >> k) + X
                    s = h >= theta
                    v = (h - theta if f["flags"] & 2 else 0) if s else h
                    word |= int(s) << t
                b[f["outb"] + c * f["hw"] + n] = word
    return b


def _case(cfg, seed=3):
    """``(program, source words, stores [(buffer word, count)])`` for ``cfg``."""
    rng = np.random.default_rng(seed)
    ews, lifs = _ew(cfg), _lif(cfg)
    buf = rng.integers(-2**31, 2**31, BUF, dtype=np.int64)
    for f in ews:
        if f["mode"] == 1:                                  # shifts 0..31, a few per run
            nch = -(-f["n"] // f["per"])
            buf[f["b"]: f["b"] + nch] = rng.choice([0, 1, 5, 13, 31], nch)
    for f in lifs:                                          # small inputs, sane parameters
        n = f["c"] * f["hw"] * f["t"]
        buf[f["inb"]: f["inb"] + n] = rng.integers(-40, 41, n)
        for c in range(f["c"]):
            buf[f["pb"] + 3 * c: f["pb"] + 3 * c + 3] = [rng.integers(1, 16), rng.integers(-5, 11),
                                                         1 if c == 0 else -1]
    stores = [(f["outb"], f["n"]) for f in ews] + [(f["outb"], f["c"] * f["hw"]) for f in lifs]
    descs = [(isa.OP_HEADER, {"magic": isa.MAGIC, "version": isa.VERSION, "n_desc": 0}, "")]
    descs.append((isa.OP_LOAD, {"ddr": 4 * SRC, "addr": 0, "count": BUF}, "src"))
    descs += [(isa.OP_EW, f, "ew") for f in ews] + [(isa.OP_LIF, f, "lif") for f in lifs]
    at = 0
    for addr, count in stores:
        descs.append((isa.OP_STORE, {"ddr": 4 * (DST + at), "addr": addr, "count": count}, "dst"))
        at += -(-count // cfg.units_per_beat) * cfg.units_per_beat   # beat-aligned in DDR
    descs.append((isa.OP_END, {}, ""))
    descs[0][1]["n_desc"] = len(descs)
    assert len(descs) * isa.DESC_BYTES <= 4 * SRC
    relocs = [(i, isa.field_index(op, "ddr")) for i, (op, _, _) in enumerate(descs)
              if op in (isa.OP_LOAD, isa.OP_STORE)]
    words = np.zeros(DST + at, np.uint32)
    words[SRC: SRC + BUF] = buf.astype(np.uint32)
    prog = Program(cfg=cfg, T=1, descriptors=descs, image=words.view(np.uint8).copy(), regions={},
                   tensors={}, relocs=relocs, input_name="", output_names=())
    return prog, ews, lifs, stores


def _expected(img: np.ndarray, ews, lifs, stores) -> np.ndarray:
    buf = _buffer_model(img.view(np.uint32)[SRC: SRC + BUF].view(np.int32), ews, lifs)
    return np.concatenate([buf[a: a + n] for a, n in stores]).astype(np.uint32)


def _got(ddr: np.ndarray, stores, u) -> np.ndarray:
    w = ddr.view(np.uint32)
    out, at = [], DST
    for _, n in stores:
        out.append(w[at: at + n])
        at += -(-n // u) * u
    return np.concatenate(out)


def test_cycle_formulas():
    """Runs of ``u`` (EW), lane groups of ``2u`` staggered over ``u`` cycles (LIF)."""
    assert ew_cycles(37, 0, 1, CI) == 19 + 2 and ew_cycles(37, 0, 1, PRODUCTION) == 10 + 2
    assert ew_cycles(25, 1, 7, CI) == 3 * 4 + 2 + 2          # per 7 -> runs 2+2+2+1, rest 4 -> 2
    assert ew_cycles(25, 1, 7, PRODUCTION) == 3 * 2 + 1 + 2
    assert ew_cycles(3, 1, 1, PRODUCTION) == 3 + 2
    # LIF, c*(S + G*P) - P + T + 3 + max(u, 2); u = 4, T = 8: groups of 8 neurons every
    # 8 cycles (two runs of 4 steps per lane), one parameter read per channel
    assert lif_cycles(1, 64, 8, PRODUCTION) == (1 + 8 * 8) - 8 + 8 + 3 + 4
    # a partial last group costs a whole one; T not a multiple of u rounds up to runs
    assert lif_cycles(2, 65, 5, PRODUCTION) == 2 * (1 + 9 * 8) - 8 + 5 + 3 + 4
    # u = 2, T = 1: groups of 4 neurons every 2 cycles
    assert lif_cycles(1, 9, 1, CI) == (1 + 3 * 2) - 2 + 1 + 3 + 2


def _run_case(cfg):
    from svf_deploy.sim import accel as simaccel

    u = cfg.units_per_beat
    prog, ews, lifs, stores = _case(cfg)
    img = prog.ddr_image()
    want = _expected(img, ews, lifs, stores)
    sb = simaccel.build(cfg)
    run = simaccel.run(prog, None, sb, image=img)
    got = _got(run.ddr, stores, u)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{bad.size} words differ, first at store word {bad[:1]}"
    assert run.cycles == program_cycles(prog)[0]
    # LIF outputs are not trivial: spiking and silent neurons in every descriptor
    nl = sum(f["c"] * f["hw"] for f in lifs)
    at = want.size - nl
    for f in lifs:
        o = want[at: at + f["c"] * f["hw"]]
        assert (o != 0).any() and (o == 0).any(), f
        at += o.size

    # mutation: one bit of an EW mode-0 input (first descriptor, last element: the partial
    # run), and bit 29 of a LIF input of channel 0 (polarity +1) whose neuron's bundle then
    # changes (the first such step in the model)
    f0, fl = ews[0], lifs[3]
    mimg = img.copy()
    mimg[4 * (SRC + f0["a"] + f0["n"] - 1)] ^= 1 << 3
    for j in range(fl["hw"] * fl["t"]):
        lif_img = mimg.copy()
        lif_img[4 * (SRC + fl["inb"] + j) + 3] ^= 1 << 5
        mwant = _expected(lif_img, ews, lifs, stores)
        if (mwant[-nl:] != want[-nl:]).any():
            break
    diff = np.flatnonzero(mwant != want)
    assert diff.size >= 2 and diff[0] == f0["n"] - 1
    run = simaccel.run(prog, None, sb, image=lif_img)
    got = _got(run.ddr, stores, u)
    assert np.array_equal(got, mwant) and np.array_equal(np.flatnonzero(got != want), diff)


def test_ew_and_lif_units_bit_and_cycle_exact_ci():
    _run_case(CI)


#: u = 1 (32-bit AXI): 2 LIF lanes, groups at least 2 cycles apart (T = 1: an idle cycle),
#: the 3 parameters read in 2 slots; EW one element per cycle
U1 = AccelConfig(name="u1", p_o=16, p_t=4, act_depth=16384, wbuf_depth=1024, axi_data_width=32)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [PRODUCTION, U1], ids=lambda c: c.name)
def test_ew_and_lif_units_bit_and_cycle_exact_other_beats(cfg):
    _run_case(cfg)
