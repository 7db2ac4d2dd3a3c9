"""Energy / SOP counter (Appendix E convention)."""

import pytest
import torch

from svf_deploy.models import build_model
from svf_deploy.models.energy import E_AC_PJ, E_MAC_PJ, measure_energy


@pytest.fixture(scope="module")
def report():
    torch.manual_seed(0)
    m = build_model("svf-tiny").eval()
    return m, measure_energy(m, torch.rand(4, 2, 1, 32, 32) * 4)


def test_first_layer_is_mac(report):
    m, r = report
    first = r.layers[0]
    assert first.name == "downsample1_1.encode_conv" and first.is_mac
    # 4 steps x 2 clips x 8 stem channels x 16 x 16 outputs x (1 x 7 x 7) taps
    assert first.flops == 4 * 2 * 8 * 16 * 16 * 49
    assert first.energy_pj == pytest.approx(first.flops * E_MAC_PJ)


def test_accumulate_layers_use_input_firing_rate(report):
    m, _ = report
    x = torch.rand(4, 2, 1, 32, 32) * 4
    seen = {}

    def grab(mod, inp, out):
        seen["rate"] = float(inp[0].mean())

    h = m.ConvBlock1_1[0].conv1.register_forward_hook(grab)
    r = measure_energy(m, x)
    h.remove()
    lay = next(l for l in r.layers if l.name == "ConvBlock1_1.0.conv1")
    assert not lay.is_mac
    assert lay.firing_rate == pytest.approx(seen["rate"])
    assert lay.firing_rate > 0
    assert lay.energy_pj == pytest.approx(lay.firing_rate * lay.flops * E_AC_PJ)


def test_totals_and_ann_bound(report):
    _, r = report
    assert r.snn_mj == pytest.approx(sum(l.energy_pj for l in r.layers) / 2 * 1e-9)
    assert 0 < r.snn_mj < r.ann_mj
    kinds = {l.kind for l in r.layers}
    assert {"Conv2d", "Conv1d", "Linear", "attention"} <= kinds
