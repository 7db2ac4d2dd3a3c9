"""Frontend: torch SpikeVideoFormer -> float IR graph (structure, names, errors, exactness)."""

from __future__ import annotations

from collections import Counter

import numpy as np

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
    assert g.node("block3.0.attn.attn_lif").v_threshold == 1.0  # published Hamming threshold
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


@pytest.mark.parametrize("attention", ["sdha_hierarchical", "sdha_factorized"])
def test_hierarchical_and_factorized_attention_translate_exactly(attention):
    m = tiny(attention=attention)
    g = frontend.from_torch(m)
    ops = Counter(n.op for n in g.nodes)
    if attention == "sdha_hierarchical":  # two SDHAs per block: spatial, then temporal tokens
        assert [g.node(f"block3.0.attn.{p}").tokens for p in ("spatial", "temporal")] == ["spatial", "temporal"]
        assert ops["Attention"] == 4 and ops["Slice"] == 0
    else:  # shared Q, channel halves: 6 Slices and 1 Concat per block
        assert ops["Slice"] == 12 and ops["Concat"] == 2 and ops["Attention"] == 4
        assert g.node("block3.0.attn.temporal").heads == m.block3[0].attn.num_heads // 2
    x = torch.round(torch.rand(4, 2, 1, 32, 32, dtype=torch.float64) * 255) / 255
    want = m(x)
    got = reference.run(g, x).outputs["time_mean"]
    assert torch.equal(got, want)  # float64, same operation order: identical


def test_segmentation_head_translates_exactly():
    """Memory read (last step queries the earlier ones, I-LIF counts), FPN with nearest
    upsampling: the float graph's logits equal the torch FPN output (before the bilinear x4
    readout, which stays outside the integer graph)."""
    m = tiny("svf-tiny-seg")
    g = frontend.from_torch(m)
    ops = Counter(n.op for n in g.nodes)
    assert g.outputs == ("fpn.cls",) and ops["TimeSlice"] == 6 and ops["Upsample"] == 2
    assert g.node("memory.attn").tokens == "joint" and g.types["memory.q_out"].levels == 4
    x = torch.round(torch.rand(4, 2, 1, 32, 32, dtype=torch.float64) * 255) / 255
    cap = {}
    hook = m.fpn.register_forward_hook(lambda mod, i, o: cap.__setitem__("fpn", o))
    m(x)
    hook.remove()
    got = reference.run(g, x).outputs["fpn.cls"]
    assert got.shape == (1, 2, 5, 8, 8) and torch.equal(got, cap["fpn"])


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


# ----------------------------------------------------------------------------- published modes


IMAGENET3 = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.mark.parametrize("att_mode,tokens,kind,th", [("2D", "spatial", "sdsa", 0.5),
                                                     ("3D_dot", "joint", "sdsa", 0.5),
                                                     ("3D_ham", "joint", "sdha", 1.0)])
def test_published_modes_with_kd_and_normalisation_translate_exactly(att_mode, tokens, kind, th):
    m = tiny(attention=att_mode, kd=True, in_channels=3, input_mean=IMAGENET3[0],
             input_std=IMAGENET3[1], seed=1)
    g = frontend.from_torch(m)
    a = g.node("block3.0.attn")
    assert (a.kind, a.tokens) == (kind, tokens)
    assert g.node("block3.0.attn.attn_lif").v_threshold == th
    assert g.meta["kd_folded"] and g.meta["input_normalization"] == "imagenet"
    assert not any(n.name == "head_kd" for n in g.nodes)  # one folded Linear
    assert_float_graph_matches(m, g, clip((3, 32, 32), B=2, seed=2))


def test_kd_fold_is_one_exact_linear_float32_error_reported():
    """``(W1 z + b1 + W2 z + b2) / 2 == ((W1+W2)/2) z + (b1+b2)/2``: exact in real
    arithmetic; the float32 model and the float64 fold differ by rounding only (< 1e-6)."""
    torch.manual_seed(0)
    m = randomize_bn(build_model("svf-tiny", kd=True), 0).eval()
    with torch.no_grad():
        m.head_kd.weight.add_(torch.randn_like(m.head_kd.weight))
        m.head_kd.bias.add_(torch.randn_like(m.head_kd.bias))
    g = frontend.from_torch(m)
    h = g.node("head")
    w1, w2 = (t.detach().double().numpy() for t in (m.head.weight, m.head_kd.weight))
    np.testing.assert_array_equal(h.weight, (w1 + w2) / 2)
    x = clip(B=3, seed=4)
    with torch.no_grad():
        y32 = m(x.float())
    y = reference.run(g, x.float()).outputs["time_mean"]
    err = float((y - y32.double()).abs().max())
    assert err < 1e-6, err


def _first_layer(model, x):
    """The torch model's first-layer output (conv + BN on the normalised frame), via a hook."""
    out = {}
    h = model.downsample1_1.register_forward_hook(lambda mod, i, o: out.__setitem__("y", o))
    with torch.no_grad():
        model(x)
    h.remove()
    return out["y"]


def test_normalisation_fold_is_exact_on_the_zero_padded_border():
    mean, std = (0.3, 0.7, 0.5), (0.2, 0.25, 0.5)
    m = tiny(in_channels=3, input_mean=mean, input_std=std, seed=3)
    g = frontend.from_torch(m)
    conv = g.node("downsample1_1.encode_conv")
    assert conv.bias_map and conv.bias.shape == (8, 16, 16)  # stem 8 ch at H/2
    x = clip((3, 32, 32), B=2, seed=5)
    want = _first_layer(m, x)
    got = reference.run(g, x, record=True).values["downsample1_1.encode_bn"]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    border = torch.zeros(16, 16, dtype=torch.bool)
    border[:2], border[-2:], border[:, :2], border[:, -2:] = True, True, True, True
    # a per-channel bias (the interior value of the map) would be wrong exactly there
    flat = conv.replace(bias=np.ascontiguousarray(conv.bias[:, 8, 8]))
    g2 = g.replace(nodes=[flat if n.name == conv.name else n for n in g.nodes])
    naive = reference.run(g2, x, record=True).values["downsample1_1.encode_bn"]
    d = (naive - want).abs()
    assert float(d[..., ~border].max()) < 1e-12 and float(d[..., border].max()) > 1e-2


def test_normalised_model_compiles_to_integers_and_matches_at_high_precision():
    from svf_deploy.compiler.fidelity import measure_fidelity
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model

    m = tiny(in_channels=3, input_mean=IMAGENET3[0], input_std=IMAGENET3[1], seed=6).float()
    x = (torch.randint(0, 256, (3, 4, 3, 32, 32), generator=torch.Generator().manual_seed(1)) / 255.0)
    g, _ = compile_model(m, CompileOptions(weight_bits=16, min_theta_bits=16))
    first = g.node("downsample1_1.encode_conv")
    assert first.bias_map and first.bias.dtype == np.int64
    f = measure_fidelity(m, g, x)
    assert f.mean_agreement > 0.995, f.mean_agreement
