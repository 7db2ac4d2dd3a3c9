"""The cycle model: structure of the formulas and agreement between its two levels."""

import numpy as np
import pytest

from svf_deploy.hw.accel import CI, PRODUCTION, AccelConfig, isa
from hypothesis import given, settings
from hypothesis import strategies as st

from svf_deploy.hw.accel.cycles import (burst_count, conv_block_cycles, conv_busy, conv_cycles, conv_groups,
                                        conv_inputs, descriptor_cycles, dma_read, dma_write, layers_from_graph,
                                        predict, program_cycles)
from svf_deploy.hw.accel.program import emit
from svf_deploy.models.errors import HardwareError


def test_dma_costs_one_burst_in_flight():
    """``outstanding = 1``: every burst pays its handshake and the DDR latency."""
    c = AccelConfig(name="c", axi_data_width=64, burst=16, outstanding=1)
    assert dma_read(32, c) == 16 + 2                   # one 16-beat burst, a beat per cycle
    assert dma_read(33, c) == dma_read(32, c) + 1 + 2  # a second burst with one (partial) beat
    assert dma_read(31, c) == dma_read(32, c)          # a partial last beat costs a whole one
    assert dma_write(4, c) == 2 + 3
    assert dma_write(33, c) == 16 + 3 + 1 + 3
    wide = AccelConfig(name="w", p_o=16, axi_data_width=128, burst=8, outstanding=1)
    assert dma_read(64, wide) == 2 * (8 + 2) and dma_write(5, wide) == 2 + 3
    # 4 KB pages: 16 beats (8-beat bursts) from 64 bytes below a boundary: 4 | 8 + 4 beats
    assert dma_read(64, wide, 0, 4096 - 64) == 16 + 3 * 2 and dma_read(64, wide, 0, 4096) == 16 + 2 * 2
    assert dma_read(64, wide, 0, 4096 - 128) == 16 + 2 * 2 and dma_read(64, wide, 0, 4096 - 256) == 16 + 2 * 2
    assert dma_write(64, wide, 3, 8192 - 48) == 16 + 3 * (3 + 3)      # 3 | 8 + 5 beats, latency 3


def test_dma_costs_bursts_in_flight_hide_the_latency():
    """``outstanding = 8``: the beats stream back to back, the transfer pays one handshake
    and one latency, as long as 7 bursts cover ``2 + L`` (read) / ``3 + L`` (write) beats;
    beyond that the transfer is bound by ``O`` bursts per ``L`` round trip."""
    c = AccelConfig(name="c", axi_data_width=64, burst=16, outstanding=8)
    assert c.outstanding == 8 == CI.outstanding == PRODUCTION.outstanding
    assert dma_read(33, c) == 17 + 2 and dma_write(33, c) == 17 + 3
    assert dma_read(1024, c, 40) == 512 + 2 + 40 and dma_write(1024, c, 40) == 512 + 3 + 40
    # 2-D: 20 runs of one beat each, 20 bursts: latency 40 is not covered by 7 one-beat
    # bursts; 8 bursts per round trip of 2 + 40 + 1 cycles (the slot frees after the last beat)
    assert dma_read(2, c, 40, [4096 * r for r in range(20)]) == 2 * (2 + 40 + 1) + 4 + 2 + 40
    assert dma_read(2, c, 0, [4096 * r for r in range(20)]) == 20 + 2   # latency 0: back to back
    assert dma_read(2, c, 5, [4096 * r for r in range(20)]) == 20 + 2 + 5  # 7 >= 2 + 5
    assert dma_write(2, c, 5, [4096 * r for r in range(20)]) > 20 + 3 + 5  # 7 < 3 + 5
    with pytest.raises(HardwareError, match="outstanding"):
        AccelConfig(name="c", outstanding=17)
    with pytest.raises(HardwareError, match="outstanding"):
        AccelConfig(name="c", outstanding=0)


def _dma_stepped(bursts, O, L, write):
    """The engine/RAM timing cycle by cycle (independent of :func:`cycles._dma`'s recurrence
    and shortcuts): the issuer presents a burst while fewer than ``O`` are unfinished (a
    slot frees the cycle after a read's last beat / a write's response); a read burst's
    beats from 2 + L cycles after its AR, a write burst's from the cycle after its AW, one
    beat per cycle in order; a write's response 2 + L after its last beat, one per cycle."""
    n, ar, free = len(bursts), [], []
    k = i = nfree = 0
    resp, cyc = -1, 0
    while True:
        while nfree < len(free) and free[nfree] <= cyc:
            nfree += 1
        if len(ar) < n and len(ar) - nfree < O:
            ar.append(cyc)
        if k < len(ar) and cyc >= ar[k] + (1 if write else 2 + L):
            i += 1
            if i == bursts[k]:
                if write:
                    resp = max(cyc + 2 + L, resp + 1)
                    free.append(resp + 1)
                else:
                    free.append(cyc + 1)
                k, i = k + 1, 0
        if len(free) == n:
            return free[-1]
        cyc += 1


@settings(max_examples=200, deadline=None)
@given(runs=st.lists(st.tuples(st.integers(0, 600), st.integers(1, 12)), min_size=1, max_size=6),
       count=st.integers(1, 300), O=st.integers(1, 9), L=st.integers(0, 50), write=st.booleans())
def test_dma_model_equals_a_cycle_stepped_model(runs, count, O, L, write):
    """:func:`dma_read`/:func:`dma_write` (closed forms and recurrence) equal a cycle-by-cycle
    model of the engine's issuer and the RAM's queues for random runs, ``O``, ``L``."""
    from svf_deploy.hw.accel.cycles import _burst_lengths

    c = AccelConfig(name="c", axi_data_width=64, burst=16, outstanding=O)
    addrs = [8 * a + 4096 * p for a, p in runs]
    bursts = [b for a in addrs for b in _burst_lengths(-(-count // 2), c, a)]
    f = dma_write if write else dma_read
    assert f(count, c, L, addrs) == _dma_stepped(bursts, O, L, write)


def _walk(beats, bb, burst, ddr):
    """Beat-by-beat reference: the page of every beat of the run, page segments as maximal
    stretches of one page, bursts cut greedily at ``burst`` beats and at every page change."""
    pages = [(ddr // bb + j) * bb // 4096 for j in range(beats)]
    segs, bursts = [], []
    for j, p in enumerate(pages):
        if j and p == pages[j - 1]:
            segs[-1] += 1
        else:
            segs.append(1)
        if j and p == pages[j - 1] and bursts[-1] < burst:
            bursts[-1] += 1
        else:
            bursts.append(1)
    return segs, bursts


@settings(max_examples=300, deadline=None)
@given(width=st.sampled_from([32, 64, 128, 256]), burst=st.integers(1, 16), beats=st.integers(1, 5000),
       beat_addr=st.integers(0, 3 * 4096))
def test_page_segments_and_bursts_match_a_beat_walk(width, burst, beats, beat_addr):
    """:func:`_page_segments` and the three helpers derived from it (:func:`burst_count`,
    ``_run_shape``, ``_burst_lengths``) agree with a brute-force walk over the run's beats
    for any beat-aligned DDR address (several pages in), every burst length and AXI width
    (``AccelConfig`` admits 32/64/128-bit ports; the helpers read only ``axi_data_width`` and
    ``burst``, so a 256-bit port's page arithmetic is checked on a stand-in)."""
    from types import SimpleNamespace

    from svf_deploy.hw.accel.cycles import _burst_lengths, _page_segments, _run_shape

    c = (SimpleNamespace(axi_data_width=width, burst=burst) if width > 128 else
         AccelConfig(name="c", p_o=16, p_pix=1, axi_data_width=width, burst=burst))
    ddr = beat_addr * (width // 8)
    segs, bursts = _walk(beats, width // 8, burst, ddr)
    assert _page_segments(beats, c, ddr) == segs
    assert _burst_lengths(beats, c, ddr) == bursts
    assert burst_count(beats, c, ddr) == len(bursts)
    assert _run_shape(beats, c, ddr) == (len(bursts), min(bursts))
    assert _page_segments(0, c, ddr) == [] and burst_count(0, c, ddr) == 0


def test_conv_write_back_hides_behind_long_terms():
    c = AccelConfig(name="c", p_o=16, p_t=4, p_pix=2, axi_data_width=64)   # u = 2 words per run
    # one row of 10 pixels: 5 groups of 2; busy = ceil(terms/2) + 3; write-back of a group
    # 16 lanes x 2 pixels x ceil(4/2) runs = 64
    long = conv_cycles(c, terms=200, hout=1, wout=10, T=4, cout=16)
    assert long == 1 + 17 + 5 * 103 + 1 + 64           # every group: pairs + 3
    short = conv_cycles(c, terms=8, hout=1, wout=10, T=4, cout=16)
    assert short == 1 + 17 + 7 + 4 * 65 + 1 + 64       # write-back (64) dominates
    # a row of 5: groups 2, 2, 1 (the last partial: 32-cycle write-back)
    assert conv_cycles(c, terms=8, hout=1, wout=5, T=4, cout=16) == 1 + 17 + 7 + 65 + 65 + 1 + 32
    # stride 2: (u-1)//2 + 1 = 1 pixel per group
    assert conv_cycles(c, terms=200, hout=1, wout=10, T=4, cout=16, stride=2) == 1 + 17 + 10 * 103 + 1 + 32
    assert conv_cycles(c, terms=8, hout=1, wout=10, T=4, cout=4) < short  # only valid lanes written


@pytest.mark.parametrize("cfg", [CI, PRODUCTION], ids=lambda c: c.name)
def test_layer_prediction_tracks_the_exact_program_model(bundled, cfg):
    graph, _, _ = bundled
    exact, layers = program_cycles(emit(graph, cfg))
    assert sum(l.cycles for l in layers) == exact
    p = predict(layers_from_graph(graph), cfg, model="svf-tiny", T=4, size=32)
    assert abs(p.cycles / exact - 1) < 0.05
    assert 0 < p.utilisation <= 1 and p.ideal_cycles < p.cycles
    # modelled improvements only ever help
    assert predict(layers_from_graph(graph), cfg, model="x", T=4, size=32, skip=0.5,
                   stream_weights=True).cycles < p.cycles


def _busy_by_hand(nz, cfg, f):
    """The block rule, term by term: per group, the terms ``(i, ky, kx)`` in order, live when
    a pixel of the group has an in-frame non-zero bundle there; ``max(1, ceil(l/2))`` per
    block of ``scan`` terms, plus 3."""
    cin, h, w, k, s = (f[x] for x in ("cin", "h", "w", "k", "stride"))
    out = []
    for oy in range(f["hout"]):
        ox = 0
        for g in conv_groups(cfg, f["wout"], s):
            live = []
            for i in range(cin):
                for ky in range(k):
                    for kx in range(k):
                        iy = oy * s - f["pad_y"] + ky
                        live.append(any(0 <= iy < h and 0 <= (ox + p) * s - f["pad"] + kx < w
                                        and nz[i][iy][(ox + p) * s - f["pad"] + kx] for p in range(g)))
            busy = 3
            for b in range(0, len(live), cfg.scan):
                n = sum(live[b: b + cfg.scan])
                busy += max(1, (n + 1) // 2)
            out.append([busy] * -(-f["t"] // cfg.p_t))
            ox += g
    return out


def _conv_fields(cin, h, w, k, stride, pad, pad_y, t):
    return {"cin": cin, "h": h, "w": w, "k": k, "stride": stride, "pad": pad, "pad_y": pad_y, "t": t,
            "hout": (h + 2 * pad_y - k) // stride + 1, "wout": (w + 2 * pad - k) // stride + 1}


def test_conv_busy_dense_zero_and_a_hand_count():
    c = AccelConfig(name="c", p_o=16, p_t=4, p_pix=2, scan=4, axi_data_width=64)
    f = _conv_fields(cin=2, h=3, w=3, k=3, stride=1, pad=1, pad_y=1, t=8)
    # 18 terms: dense ceil(18/2) + 3 = 12 per group; 3 rows of groups 2 + 1, two P_t chunks
    dense = conv_busy(None, c, f)
    assert dense.shape == (6, 2) and (dense == 12).all()
    # all zero: one cycle per block of 4 terms (5 blocks) + 3
    assert (conv_busy(np.zeros(18, np.uint32), c, f) == 5 + 3).all()
    # every word non-zero, no padding: every term live, the dense bound (odd terms: 2x3x3)
    f0 = _conv_fields(cin=2, h=3, w=5, k=3, stride=1, pad=0, pad_y=0, t=4)
    assert np.array_equal(conv_busy(np.ones(30, np.uint32), c, f0), conv_busy(None, c, f0))
    # one non-zero word, channel 1 centre (1, 1, 1): the taps that reach it are live
    words = np.zeros((2, 3, 3), np.uint32)
    words[1, 1, 1] = 0x80                            # step 7 only: the second P_t chunk's
    busy = conv_busy(words, c, f)
    # group (oy=0, ox=0,1): pixel 0 reads (1,1) at tap ky=1,kx=1 (term 9+4=13), pixel 1 at
    # ky=1,kx=0 (term 12): block 3 (terms 12..15) has 2 live -> 1 cycle; every block 1
    assert busy[0].tolist() == [8, 8]
    assert np.array_equal(busy, np.asarray(_busy_by_hand(words != 0, c, f)))
    dense_cycles = conv_cycles(c, terms=18, hout=3, wout=3, T=8, cout=16)
    assert conv_cycles(c, terms=18, hout=3, wout=3, T=8, cout=16, busy=busy) < dense_cycles
    assert conv_cycles(c, terms=18, hout=3, wout=3, T=8, cout=16, busy=dense) == dense_cycles
    with pytest.raises(ValueError, match="input words"):
        conv_busy(np.zeros(8, np.uint32), c, f)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_conv_busy_equals_the_block_rule_term_by_term(data):
    """Random convs (kernel, stride, padding, row-band top padding, pixel groups, T
    chunks, scan widths) and random sparse bundles: :func:`conv_busy` equals the
    term-by-term block rule; it never exceeds the dense bound, equals it at ``scan = 2``
    and, with all-zero input, is ``ceil(terms/scan) + 3``."""
    u = data.draw(st.sampled_from([1, 2, 4]))
    cfg = AccelConfig(name="h", p_o=4 * u, p_t=data.draw(st.integers(1, 4)), p_pix=data.draw(st.integers(1, u)),
                      scan=data.draw(st.sampled_from([2, 4, 6, 8])), axi_data_width=32 * u)
    k = data.draw(st.integers(1, 3))
    stride = data.draw(st.integers(1, 3))
    pad, pad_y = data.draw(st.integers(0, k - 1)), data.draw(st.integers(0, k - 1))
    h, w = data.draw(st.integers(max(1, k - 2 * pad_y), 6)), data.draw(st.integers(max(1, k - 2 * pad), 7))
    f = _conv_fields(data.draw(st.integers(1, 3)), h, w, k, stride, pad, pad_y, data.draw(st.integers(1, 9)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    words = (rng.random((f["cin"], h, w)) < data.draw(st.sampled_from([0.0, 0.1, 0.3, 1.0]))).astype(np.uint32)
    busy = conv_busy(words, cfg, f)
    assert busy.tolist() == _busy_by_hand(words != 0, cfg, f)
    dense = conv_busy(None, cfg, f)
    assert busy.shape == dense.shape and (busy <= dense).all()
    if cfg.scan == 2:
        assert np.array_equal(busy, dense)
    if not words.any():
        assert (busy == -(-(f["cin"] * k * k) // cfg.scan) + 3).all()


def test_conv_block_cycles():
    live = np.array([[1, 1, 1, 0, 0, 0, 0, 0, 1], [0] * 9, [1] * 9], bool)
    # scan 4: blocks [1110] [0000] [1]: 2 + 1 + 1; all zero: 3; all live: 2 + 2 + 1
    assert conv_block_cycles(live, 4).tolist() == [4, 3, 5]
    assert conv_block_cycles(live, 2).tolist() == [5, 5, 5]       # scan 2: one cycle a block
    assert conv_block_cycles(live, 8).tolist() == [3, 2, 5]


def test_clip_bundles_skip_cycles_exactly_where_flags_allow(bundled):
    """On the bundled clip the CI engine (scan 4) needs fewer CONV cycles than the dense
    bound, every other opcode's the same; a scan-2 engine is the dense one whatever the
    spikes; per layer the clip never exceeds the bound."""
    import dataclasses

    from svf_deploy.hw.accel.cycles import cycles_by_opcode

    graph, golden, frames = bundled
    vals = {k: v.numpy() for k, v in golden.values.items()}
    prog = emit(graph, CI)
    inputs = conv_inputs(prog, graph, vals)
    exact, layers = program_cycles(prog, inputs=inputs)
    dense, dlayers = program_cycles(prog)
    assert exact < 0.85 * dense
    assert [l.name for l in layers] == [d.name for d in dlayers]
    assert all(l.cycles <= d.cycles for l, d in zip(layers, dlayers))
    by, dby = cycles_by_opcode(prog, inputs=inputs), cycles_by_opcode(prog)
    assert dense - exact == dby["CONV"] - by["CONV"] > 0
    assert {k: v for k, v in by.items() if k != "CONV"} == {k: v for k, v in dby.items() if k != "CONV"}
    p2 = emit(graph, dataclasses.replace(CI, scan=2))
    assert program_cycles(p2, inputs=conv_inputs(p2, graph, vals))[0] == program_cycles(p2)[0] == dense
    p8 = emit(graph, dataclasses.replace(CI, scan=8))
    assert program_cycles(p8, inputs=conv_inputs(p8, graph, vals))[0] < exact


@pytest.mark.parametrize("u,p_pix", [(2, 2), (4, 3), (4, 4), (4, 1)])
@pytest.mark.parametrize("stride", [1, 2, 3, 5])
@pytest.mark.parametrize("wout", [1, 4, 7, 16])
def test_conv_groups_partition_each_row_within_a_run(u, p_pix, stride, wout):
    """Groups cover a row in order; pixel p of a group reads word p*stride < u of the run."""
    c = AccelConfig(name="c", p_o=4 * u, p_t=4, p_pix=p_pix, axi_data_width=32 * u)
    g = conv_groups(c, wout, stride)
    assert sum(g) == wout and all(1 <= x <= p_pix and (x - 1) * stride <= u - 1 for x in g)
    full = min(p_pix, (u - 1) // stride + 1)
    assert g[:-1] == [full] * (len(g) - 1) and 1 <= g[-1] <= full


def test_lif_and_sdha_formulas():
    from svf_deploy.hw.accel.cycles import lif_cycles, sdha_cycles

    # 2u lanes, c*(S + G*P) - P + T + 3 + max(u, 2). u = 2: 5 neurons -> G = 2 groups of 4,
    # T = 4 -> P = 4 apart, S = 1 parameter read per channel
    c2 = AccelConfig(name="c2", axi_data_width=64)
    assert lif_cycles(1, 5, 4, c2) == (1 + 2 * 4) - 4 + 4 + 3 + 2
    assert lif_cycles(2, 4, 1, c2) == 2 * (1 + 1 * 2) - 2 + 1 + 3 + 2    # T = 1: groups 2 apart
    c1 = AccelConfig(name="c1", axi_data_width=32)        # u = 1: 2 lanes, S = 2, P >= 2
    assert lif_cycles(1, 5, 1, c1) == (2 + 3 * 2) - 2 + 1 + 3 + 2
    c4 = AccelConfig(name="c4", p_o=16, axi_data_width=128)
    # u = 4, T = 8: a group of 8 neurons every 8 cycles, one neuron per cycle plus a cycle
    # per channel
    assert lif_cycles(64, 16, 8, c4) == 64 * (1 + 2 * 8) - 8 + 8 + 3 + 4 < 64 * 17 + 8
    assert lif_cycles(1, 16, 5, c4) == lif_cycles(1, 16, 8, c4) - 3   # T = 5 still takes 2 runs
    # P_o = 16: 4 lanes per weight-buffer word, 4 outputs x P_t = 4 steps at once, written
    # as runs of u = 2 words (r = 2 runs per output); d = 8: g = 2 words per token / kv row,
    # 2 groups of 4 outputs
    c = AccelConfig(name="c", p_o=16, p_t=4)
    d, hw, T = 8, 4, 4
    phase0, phase1 = 2 * hw * 4 + 2, d * 2 * hw + 2
    phase2 = (2 * hw - 1) * max(d, 4 * 2) + d + 4 * 2 + 2      # 4 outputs' writes = d terms
    assert sdha_cycles(1, d, hw, T, c) == phase0 + phase1 + phase2 + 2 + 1
    # d = 6: groups of 4 and 2 outputs; T = 1: compute-bound, outputs d apart
    assert sdha_cycles(1, 6, 3, 1, c) == (2 * 3 * 4 + 2) + (6 * 2 * 3 + 2) + (2 * 3 - 1) * 6 + 6 + 2 * 1 + 2 + 2 + 1
    old = 2 * (d * d * hw * (T + 1) + 6) + 1                 # one (a, b, n) / one time step per cycle
    assert sdha_cycles(2, d, hw, T, c) < 0.4 * old
    # T = 6 > P_t: phase 2 in chunks of 4 steps (r = 2) and 2 steps (r = 1); d = 4, w = 8
    # (P_o = 32): one group of 4 outputs, write-bound in the first chunk (4*2 > 4)
    c32 = AccelConfig(name="c32", p_o=32, p_t=4)
    assert sdha_cycles(1, 4, 3, 6, c32) == ((3 * 8 + 2) + (4 * 3 + 2) + (3 - 1) * 8 + 4 + 8 + 2
                                           + (3 - 1) * 4 + 4 + 4 + 2 + 2 + 1)
    # token ranges: kv alone (mode 2), then phase 2 over 3 + 1 tokens (mode 1), each with
    # its head control and exit; the whole head's phase 2 is the ranges' plus the overlap
    assert sdha_cycles(1, d, hw, T, c, mode=2) == phase0 + phase1 + 2 + 1
    p2 = [(2 * r - 1) * max(d, 4 * 2) + d + 4 * 2 + 2 for r in (3, 1)]
    assert [sdha_cycles(1, d, hw, T, c, ntok=r, mode=1) for r in (3, 1)] == [x + 2 + 1 for x in p2]
    assert sdha_cycles(1, d, hw, T, c, ntok=hw, mode=0) == sdha_cycles(1, d, hw, T, c)


@pytest.mark.parametrize("plan", ["chip", "ddr"])
def test_cycles_by_opcode_sum_to_the_program_cycles(bundled, plan):
    """Per-opcode cycles add up to the program's total, dense and with the golden clip's
    bundles (a ddr-plan CONV reads its tile's window of the input)."""
    from svf_deploy.hw.accel.cycles import cycles_by_opcode

    graph, golden, _ = bundled
    kw = {"act_words": 8192, "wbuf_words": 1024} if plan == "ddr" else {}
    prog = emit(graph, CI, plan=plan, **kw)
    assert prog.plan == plan
    inputs = conv_inputs(prog, graph, {k: v.numpy() for k, v in golden.values.items()})
    for inp in (None, inputs):
        by = cycles_by_opcode(prog, inputs=inp)
        total, _ = program_cycles(prog, inputs=inp)
        assert sum(by.values()) == total and by["CONV"] > 0 and by["LOAD"] > 0
    assert cycles_by_opcode(prog, inputs=inputs)["CONV"] < cycles_by_opcode(prog)["CONV"]   # skipped terms


def test_conv_with_the_lif_on_the_write_back_hand_count():
    """CI engine (u = 2, P_o = 16, P_t = 4), 18 terms (busy 12), one row of 4 pixels in two
    groups of 2, 16 channels. Integer write-back: L = 16 * 2 * ceil(4/2) = 64 per group,
    18 + 12 + max(12, 65) + 1 + 64 = 160. LIF write-back: L = 16 (a channel a cycle), the
    tile's parameters ceil(48/4) + 1 = 13, the pipeline's 3*P_t + 1 = 13 after the last issue
    (three sub-stages a step): 18 + 13 + 12 + max(12, 17) + 1 + 16 + 13 = 90. Two tiles: the
    first tile's drain (16 + 13 = 29) before the second's bias loading."""
    kw = dict(terms=18, hout=1, wout=4, T=4, stride=1)
    assert conv_cycles(CI, cout=16, **kw) == 160
    assert conv_cycles(CI, cout=16, lif=True, **kw) == 90
    assert conv_cycles(CI, cout=32, lif=True, **kw) == 90 + (1 + 29 + 17 + 13 + 12 + 17)
    f = dict(cin=2, kk=9, hout=1, wout=4, t=4, cout=16, stride=1, oc_start=0, oc_end=16)
    fetch = descriptor_cycles(isa.OP_CONV, f, CI) - 160
    assert descriptor_cycles(isa.OP_CONV, f | {"lflags": isa.LFLAG_WB | 3}, CI) == fetch + 90
    with pytest.raises(ValueError, match="T <= P_t"):
        conv_cycles(CI, cout=16, lif=True, terms=18, hout=1, wout=4, T=8)
