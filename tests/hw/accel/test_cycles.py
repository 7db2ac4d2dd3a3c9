"""The cycle model: structure of the formulas and agreement between its two levels."""

import pytest

from svf_deploy.hw.accel import CI, PRODUCTION, AccelConfig
from svf_deploy.hw.accel.cycles import (conv_cycles, dma_read, dma_write, layers_from_graph,
                                        predict, program_cycles)
from svf_deploy.hw.accel.program import emit


def test_dma_costs():
    c = AccelConfig(name="c", axi_data_width=64, burst=16)
    assert dma_read(32, c) == 2 * 15 + 2 + 4          # one 16-beat burst
    assert dma_read(33, c) == dma_read(32, c) + 1 + 4  # a second burst with one unit
    assert dma_write(4, c) == 3 + 2 * (2 + 2)


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
