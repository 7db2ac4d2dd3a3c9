"""The cycle model: structure of the formulas and agreement between its two levels."""

import numpy as np
import pytest

from svf_deploy.hw.accel import CI, PRODUCTION, AccelConfig
from svf_deploy.hw.accel.cycles import (conv_busy, conv_cycles, conv_inputs, dma_read, dma_write,
                                        layers_from_graph, predict, program_cycles)
from svf_deploy.hw.accel.program import emit


def test_dma_costs():
    c = AccelConfig(name="c", axi_data_width=64, burst=16)
    assert dma_read(32, c) == 16 + 2                   # one 16-beat burst, a beat per cycle
    assert dma_read(33, c) == dma_read(32, c) + 1 + 2  # a second burst with one (partial) beat
    assert dma_read(31, c) == dma_read(32, c)          # a partial last beat costs a whole one
    assert dma_write(4, c) == 2 + 3
    assert dma_write(33, c) == 16 + 3 + 1 + 3
    wide = AccelConfig(name="w", p_o=16, axi_data_width=128, burst=8)
    assert dma_read(64, wide) == 2 * (8 + 2) and dma_write(5, wide) == 2 + 3


def test_conv_write_back_hides_behind_long_terms():
    c = AccelConfig(name="c", p_o=16, p_t=4)
    long = conv_cycles(c, terms=200, hw=10, T=4, cout=16)
    assert long == 1 + 17 + 10 * 203 + 1 + 64           # every pixel: terms + 3
    short = conv_cycles(c, terms=8, hw=10, T=4, cout=16)
    assert short == 1 + 17 + 11 + 9 * 65 + 1 + 64       # write-back (64) dominates
    assert conv_cycles(c, terms=8, hw=10, T=4, cout=4) < short  # only valid lanes written


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


def test_conv_busy_pairs_terms_and_skips_zero_bundles():
    c = AccelConfig(name="c", p_o=16, p_t=4)
    # 1 channel, 3x3 frame, 3x3 kernel, pad 1, T = 8 (two P_t chunks): centre pixel only set
    words = np.zeros((1, 3, 3), np.uint32)
    words[0, 1, 1] = 0b0001_0000      # step 4: chunk 1 only
    words[0, 0, 1] = 0b0000_0001      # step 0: chunk 0
    f = {"cin": 1, "h": 3, "w": 3, "k": 3, "stride": 1, "pad": 1, "hout": 3, "wout": 3, "t": 8}
    b = conv_busy(words.ravel(), c, f)
    assert b.shape == (9, 2)
    # 9 terms -> 5 pairs + 3 = 8; output (1, 1): tap (0,1) = term 1 (chunk 0), tap (1,1) =
    # term 4 (chunk 1): at most one non-zero term per pair
    assert (b == 8).all()
    words[0, 0, 0] = 1                # tap (0,0) = term 0 of output (1, 1): pair (0, 1) full
    assert conv_busy(words.ravel(), c, f)[4, 0] == 9
    dense = conv_cycles(c, terms=9, hw=9, T=8, cout=16)
    assert conv_cycles(c, terms=9, hw=9, T=8, cout=16, busy=np.full((9, 2), 12)) == dense
    assert conv_cycles(c, terms=9, hw=9, T=8, cout=16, busy=conv_busy(words.ravel(), c, f)) <= dense


def test_skipping_cuts_the_bundled_clip_by_the_modelled_amount(bundled):
    graph, golden, frames = bundled
    prog = emit(graph, CI)
    vals = {k: v.numpy() for k, v in golden.values.items()}
    exact, layers = program_cycles(prog, inputs=conv_inputs(prog, graph, vals))
    dense, dlayers = program_cycles(prog)
    assert sum(l.cycles for l in layers) == exact
    assert exact < 0.9 * dense                 # >10 % of the clip's cycles are zero-bundle terms
    for l, d in zip(layers, dlayers):           # only CONV layers change, none gets slower
        assert l.name == d.name and (0 <= d.cycles - l.cycles if l.unit == "CONV" else d.cycles == l.cycles)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_busy_of_a_tile_equals_the_whole_frame_rows(stride):
    """A band/column tile (pad_y, h, pad, w of the DDR-resident plan) costs exactly what its
    output pixels cost in the whole-frame conv: the cycle model follows the tile's padding."""
    from svf_deploy.hw.accel.tiling import band_rows

    c = AccelConfig(name="c", p_o=16, p_t=4)
    rng = np.random.default_rng(stride)
    cin, H, W, k, pad, T = 3, 11, 9, 3, 1, 8
    words = np.where(rng.random((cin, H, W)) < 0.5, 0, rng.integers(1, 256, (cin, H, W))).astype(np.uint32)
    hout, wout = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    f = {"cin": cin, "h": H, "w": W, "k": k, "stride": stride, "pad": pad, "pad_y": pad, "hout": hout,
         "wout": wout, "t": T}
    whole = conv_busy(words.ravel(), c, f).reshape(hout, wout, -1)
    for (y0, y1), (x0, x1) in (((0, 2), (0, wout)), ((1, hout), (0, 2)), ((2, 3), (1, wout))):
        lo, h, pad_y = band_rows(y0, y1, H, k, stride, pad)
        clo, w, pad_x = band_rows(x0, x1, W, k, stride, pad)
        ft = f | {"h": h, "w": w, "pad": pad_x, "pad_y": pad_y, "hout": y1 - y0, "wout": x1 - x0}
        tile = conv_busy(words[:, lo:lo + h, clo:clo + w].ravel(), c, ft).reshape(y1 - y0, x1 - x0, -1)
        assert np.array_equal(tile, whole[y0:y1, x0:x1])


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
    # P_o = 16: 4 lanes per weight-buffer word, 4 outputs at once; d = 8: g = 2 words per
    # token / kv row, 2 groups of 4 outputs
    c = AccelConfig(name="c", p_o=16, p_t=4)
    d, hw, T = 8, 4, 4
    phase0, phase1 = 2 * hw * 4 + 2, d * 2 * hw + 2
    phase2 = (2 * hw - 1) * max(d, 4 * T) + d + 4 * T + 2      # write-bound: 4*T > d
    assert sdha_cycles(1, d, hw, T, c) == phase0 + phase1 + phase2 + 2 + 1
    # d = 6: groups of 4 and 2 outputs; T = 1: compute-bound, outputs d apart
    assert sdha_cycles(1, 6, 3, 1, c) == (2 * 3 * 4 + 2) + (6 * 2 * 3 + 2) + (2 * 3 - 1) * 6 + 6 + 2 * 1 + 2 + 2 + 1
    old = 2 * (d * d * hw * (T + 1) + 6) + 1                 # one (a, b, n) / one time step per cycle
    assert sdha_cycles(2, d, hw, T, c) < 0.4 * old
    # token ranges: kv alone (mode 2), then phase 2 over 3 + 1 tokens (mode 1), each with
    # its head control and exit; the whole head's phase 2 is the ranges' plus the overlap
    assert sdha_cycles(1, d, hw, T, c, mode=2) == phase0 + phase1 + 2 + 1
    p2 = [(2 * r - 1) * max(d, 4 * T) + d + 4 * T + 2 for r in (3, 1)]
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
    assert cycles_by_opcode(prog, inputs=inputs)["CONV"] < cycles_by_opcode(prog)["CONV"]
