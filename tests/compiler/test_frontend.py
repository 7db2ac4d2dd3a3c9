"""Frontend: torch SpikeVideoFormer -> float IR graph (structure, names, errors, exactness)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

from svf_deploy.compiler import frontend, ir, reference
from svf_deploy.models import build_model
from svf_deploy.models.errors import UnsupportedModelError
from svf_deploy.models.neurons import SpikingNeuron

NON_MODULE = {"input", "pool", "time_mean"}
from _helpers import randomize_bn  # noqa: E402  (tests/compiler/_helpers.py)


def tiny(name: str = "svf-tiny", seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_bn(build_model(name, **kw), seed).eval().double()


def torch_spikes(model: nn.Module, x: torch.Tensor):
    """Model output and every neuron's output spikes and membranes, via hooks."""
    spikes: dict[str, torch.Tensor] = {}
    hooks = []
    names = {}
    for name, m in model.named_modules():
        if isinstance(m, SpikingNeuron):
            m.record = True
            names[m] = name
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out: spikes.__setitem__(names[mod], out.detach())))
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    membranes = {names[m]: m.last_h for m in names}
    return y, spikes, membranes


def assert_float_graph_matches(model: nn.Module, graph: ir.Graph, x: torch.Tensor) -> None:
    y, spikes, membranes = torch_spikes(model, x)
    r = reference.run(graph, x, record=True)
    outs = y if isinstance(y, dict) else {"time_mean": y}
    if isinstance(y, dict):
        outs = {f"head_{k}": v for k, v in y.items()}
    assert set(outs) == set(graph.outputs)
    for k, v in outs.items():
        assert r.outputs[k].shape == v.shape
        torch.testing.assert_close(r.outputs[k], v, rtol=0, atol=1e-9)
    neurons = [n.name for n in graph.nodes if isinstance(n, ir.LIF)]
    assert set(neurons) == {n for n in spikes if not n.endswith("sal_lif")}
    for n in neurons:
        ir_s = r.values[n]
        assert torch.equal(ir_s, spikes[n].reshape(ir_s.shape)), n
        torch.testing.assert_close(r.membranes[n], membranes[n].reshape(ir_s.shape), rtol=0, atol=1e-9)
    for n in graph.nodes:
        if isinstance(n, ir.SSSA):  # the saccade neuron's membrane
            torch.testing.assert_close(r.membranes[n.name], membranes[f"{n.name}.sal_lif"],
                                       rtol=0, atol=1e-9)


def clip(shape=(1, 32, 32), T=4, B=2, seed=0) -> torch.Tensor:
    return torch.rand(T, B, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- structure


def test_svf_tiny_node_counts_follow_the_architecture():
    m = tiny()
    g = frontend.from_torch(m)
    cnn, tf, down = 4, sum(m.cfg.depths), 5  # CNN blocks, transformer blocks, downsamples
    expect = {
        "Input": 1,
        # 4 downsample neurons, 4 per CNN block, 7 per transformer block, 1 head
        "LIF": (down - 1) + 4 * cnn + 7 * tf + 1,
        # downsample convs, 5 per CNN block (pw1, dw, pw2, conv1, conv2), 2 MLP convs
        "Conv": down + 5 * cnn + 2 * tf,
        "BatchNorm": down + 4 * cnn + (4 + 1 + 2) * tf,  # q/k/v/proj BN, attn_bn, MLP BNs
        "RepConv": 4 * tf,
        "Add": 2 * (cnn + tf),
        "Attention": tf, "GlobalPool": 1, "Linear": 1, "TimeMean": 1,
    }
    assert dict(Counter(n.op for n in g.nodes)) == expect
    assert len(g.nodes) == 125
    assert g.stage == "float" and g.outputs == ("time_mean",)
    assert g.meta["model_config"] == m.cfg.to_dict()
    assert g.input.shape == (1, 32, 32)
    a = g.node("block3.0.attn")
    assert (a.kind, a.tokens, a.heads, a.factor) == ("sdha", "joint", 2, 1 / (2 * 64))
    assert g.node("block3.0.attn.attn_lif").v_threshold == 0.5
    dw = g.node("ConvBlock1_1.0.Conv.dwconv")
    assert dw.groups == 16 and dw.weight.shape == (16, 1, 7, 7)
    assert g.types["ConvBlock1_1.0.Conv.dwconv"].kind == "float"  # not a neuron input
    assert g.node("ConvBlock1_1.0.Conv.pwconv2").inputs == ("ConvBlock1_1.0.Conv.dwconv",)
    assert g.node("block3.0.mlp.fc1_conv").weight.shape == (256, 64, 1, 1)
    assert g.node("ConvBlock1_1.0.add1").inputs == ("downsample1_1.encode_bn", "ConvBlock1_1.0.Conv.bn2")


def test_node_names_map_back_to_torch_modules():
    m = tiny()
    g = frontend.from_torch(m)
    kinds = {ir.LIF: SpikingNeuron, ir.Conv: (nn.Conv2d, nn.Conv1d),
             ir.BatchNorm: nn.modules.batchnorm._BatchNorm, ir.Linear: nn.Linear,
             ir.RepConv: nn.Sequential}
    for n in g.nodes:
        if n.name in NON_MODULE or n.name.rsplit(".", 1)[-1] in ("add1", "add2"):
            continue
        mod = m.get_submodule(n.name)
        if type(n) in kinds:
            assert isinstance(mod, kinds[type(n)]), (n.name, type(mod))
        if isinstance(n, ir.Conv):
            assert tuple(n.weight.shape[:2]) == tuple(mod.weight.shape[:2])
            torch.testing.assert_close(torch.from_numpy(n.weight.copy()).reshape(mod.weight.shape),
                                       mod.weight.detach(), rtol=0, atol=0)


def test_float_graph_equals_torch_model_in_float64():
    m = tiny()
    assert_float_graph_matches(m, frontend.from_torch(m), clip())


@pytest.mark.parametrize("kw", [dict(attention="sdha_spatial"), dict(attention="sdsa"),
                                dict(attention="sssa"), dict(name="svf-tiny-pose"),
                                dict(neuron={"tau": 4.0, "decay_input": False, "reset": "soft"})])
def test_variants_translate_exactly(kw):
    kw = dict(kw)
    m = tiny(kw.pop("name", "svf-tiny"), seed=1, **kw)
    g = frontend.from_torch(m)
    assert_float_graph_matches(m, g, clip(seed=1))


def test_sssa_gain_is_normalised_and_sdsa_factor():
    m = tiny(attention="sssa")
    with torch.no_grad():
        m.block3[0].attn.saccade_gain.copy_(torch.linspace(0.5, 2.0, m.cfg.max_T))
    g = frontend.from_torch(m)
    s = g.node("block3.0.attn")
    d, n = 64 // 2, 2 * 2
    assert isinstance(s, ir.SSSA) and s.gain.shape == (16,)
    torch.testing.assert_close(torch.from_numpy(s.gain.copy()), torch.linspace(0.5, 2.0, 16).double() / (d * d * n))
    assert_float_graph_matches(m, g, clip(seed=2))
    g2 = frontend.from_torch(tiny(attention="sdsa"))
    a = g2.node("block4.0.attn")
    assert (a.kind, a.tokens, a.factor) == ("sdsa", "spatial", 0.125)
    assert not any(n.name.endswith("attn_bn") for n in g2.nodes)


def test_custom_frame_shape():
    m = tiny()
    g = frontend.from_torch(m, frame_shape=(1, 48, 64))
    assert g.types["block3.0.attn"].shape == (64, 3, 4)
    assert_float_graph_matches(m, g, clip((1, 48, 64), T=2, B=1))
    with pytest.raises(UnsupportedModelError, match="multiples of 16"):
        frontend.from_torch(m, frame_shape=(1, 40, 32))
    with pytest.raises(UnsupportedModelError, match="C=1"):
        frontend.from_torch(m, frame_shape=(3, 32, 32))


def test_pose_head_has_three_per_step_outputs():
    g = frontend.from_torch(tiny("svf-tiny-pose"))
    assert g.outputs == ("head_shape", "head_pose", "head_trans")
    assert [g.types[o].shape for o in g.outputs] == [(10,), (144,), (3,)]
    assert not any(isinstance(n, ir.TimeMean) for n in g.nodes)


# ----------------------------------------------------------------------------- errors


def test_unsupported_module_is_named():
    m = tiny()
    m.ConvBlock1_1[0].Conv.lif1 = nn.ReLU()
    with pytest.raises(UnsupportedModelError, match=r"'ConvBlock1_1\.0\.Conv\.lif1' of type ReLU") as e:
        frontend.from_torch(m)
    assert "Supported:" in str(e.value)
    m = tiny()
    m.block3[0].mlp.extra = nn.Dropout()
    with pytest.raises(UnsupportedModelError, match=r"'block3\.0\.mlp\.extra' of type Dropout"):
        frontend.from_torch(m)
    m = tiny()
    m.downsample2.encode_conv = nn.Conv2d(16, 32, 3, stride=2, padding=1, dilation=2)
    with pytest.raises(UnsupportedModelError, match=r"downsample2\.encode_conv.*dilation"):
        frontend.from_torch(m)


@pytest.mark.parametrize("attention,cls", [("sdha_hierarchical", "HierarchicalSDHA"),
                                           ("sdha_factorized", "FactorizedSDHA")])
def test_hierarchical_and_factorized_attention_rejected_loudly(attention, cls):
    with pytest.raises(UnsupportedModelError, match=rf"'block3\.0\.attn' of type {cls}.*no exact integer"):
        frontend.from_torch(build_model("svf-tiny", attention=attention))


def test_segmentation_head_rejected():
    with pytest.raises(UnsupportedModelError, match=r"'memory' of type MemoryRead.*segmentation head"):
        frontend.from_torch(build_model("svf-tiny-seg"))


def test_non_spiking_model_rejected():
    with pytest.raises(UnsupportedModelError, match="not a spiking model"):
        frontend.from_torch(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()))


def test_spiking_but_foreign_model_rejected():
    from svf_deploy.models.neurons import LIF
    with pytest.raises(UnsupportedModelError, match="of type Sequential"):
        frontend.from_torch(nn.Sequential(nn.Conv2d(1, 4, 3), LIF()))


def test_batchnorm_without_running_stats_rejected():
    m = tiny()
    m.downsample1_1.encode_bn = nn.BatchNorm2d(8, track_running_stats=False)
    with pytest.raises(UnsupportedModelError,
                       match=r"BatchNorm downsample1_1\.encode_bn has no running statistics .*cannot fold"):
        frontend.from_torch(m)


def test_nonzero_hard_reset_rejected():
    m = tiny()
    m.lif.cfg = m.lif.cfg.replace(v_reset=-0.5)
    with pytest.raises(UnsupportedModelError, match=r"'lif' of type LIF: hard reset to v_reset=-0\.5"):
        frontend.from_torch(m)
