"""The cycle model: structure of the formulas and agreement between its two levels."""

import numpy as np
import pytest

from svf_deploy.hw.accel import CI, PRODUCTION, AccelConfig
from svf_deploy.hw.accel.cycles import (conv_busy, conv_cycles, conv_groups, conv_inputs, dma_read, dma_write,
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


def test_conv_busy_does_not_depend_on_the_spikes():
    c = AccelConfig(name="c", p_o=16, p_t=4, p_pix=2, axi_data_width=64)
    f = {"cin": 1, "h": 3, "w": 3, "k": 3, "stride": 1, "pad": 1, "hout": 3, "wout": 3, "t": 8}
    rng = np.random.default_rng(0)
    zero = conv_busy(np.zeros(9, np.uint32), c, f)
    busy = conv_busy(rng.integers(0, 2 ** 8, 9).astype(np.uint32), c, f)
    # 3 rows of groups 2 + 1, two P_t chunks; 9 terms -> 5 pairs + 3 = 8 cycles each
    assert zero.shape == (6, 2) and (zero == 8).all() and np.array_equal(zero, busy)
    dense = conv_cycles(c, terms=9, hout=3, wout=3, T=8, cout=16)
    assert conv_cycles(c, terms=9, hout=3, wout=3, T=8, cout=16, busy=busy) == dense
    assert conv_cycles(c, terms=9, hout=3, wout=3, T=8, cout=16, busy=np.full((6, 2), 40)) > dense
    with pytest.raises(ValueError, match="input words"):
        conv_busy(np.zeros(8, np.uint32), c, f)


def test_clip_bundles_change_no_cycle_count(bundled):
    graph, golden, frames = bundled
    prog = emit(graph, CI)
    vals = {k: v.numpy() for k, v in golden.values.items()}
    exact, layers = program_cycles(prog, inputs=conv_inputs(prog, graph, vals))
    dense, dlayers = program_cycles(prog)
    assert exact == dense and [(l.name, l.cycles) for l in layers] == [(d.name, d.cycles) for d in dlayers]


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
    assert cycles_by_opcode(prog, inputs=inputs)["CONV"] == cycles_by_opcode(prog)["CONV"]
