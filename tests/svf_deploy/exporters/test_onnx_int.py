"""model-int.onnx under onnxruntime == the golden reference, bit for bit; model-float.onnx."""

import json

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from svf_deploy.compiler import ir, reference
from svf_deploy.exporters.onnx_int import OPSET, export_int_onnx, run_int_onnx
from svf_deploy.models.errors import ExportError


def golden(out):
    with np.load(out / "golden.npz") as z:
        return {k: z[k] for k in z.files}


def diff_count(outs, gold) -> tuple[int, int]:
    """(values compared, values differing) over every stored spike tensor and output."""
    n = bad = 0
    for k, want in gold.items():
        if k == "frames":
            continue
        got = outs[k]
        assert got.shape == want.shape, k
        n += want.size
        bad += int((got.astype(want.dtype) != want).sum())
    return n, bad


def test_cli_onnx_int_equals_golden(onnx_dir):
    """Re-run the written model-int.onnx here, independently of the target's own check."""
    gold = golden(onnx_dir)
    outs = run_int_onnx(onnx_dir / "model-int.onnx", gold["frames"])
    n, bad = diff_count(outs, gold)
    assert bad == 0 and n > 100_000  # 167,178 values (35 spike tensors + the output)
    assert sum(k.startswith("spikes/") for k in gold) == sum(k.startswith("spikes/") for k in outs)
    m = json.loads((onnx_dir / "manifest.json").read_text())["onnx"]
    assert m["int"]["opset"] == OPSET and m["int"]["golden_check"]["spike_values_differing"] == 0
    assert set(m["int"]["conv_paths"].values()) == {"ConvInteger u8xu8"}
    model = onnx.load(str(onnx_dir / "model-int.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain for o in model.opset_import} == {""}
    rep = (onnx_dir / "onnx-report.md").read_text()
    assert "| opset | 17" in rep and "as golden.npz stores them" in rep and "| nodes it could not express | none |" in rep


def test_cli_onnx_float_matches_torch(onnx_dir):
    m = json.loads((onnx_dir / "manifest.json").read_text())["onnx"]["float"]
    assert m["file"] == "model-float.onnx" and m["max_abs_diff"] <= 1e-4
    onnx.checker.check_model(onnx.load(str(onnx_dir / "model-float.onnx")), full_check=True)
    # the reference outputs, the graph and golden.npz are there too
    assert {"graph.json", "weights.npz", "golden.npz", "report.md"} <= {p.name for p in onnx_dir.iterdir()}


@pytest.fixture(scope="module")
def bundled(onnx_dir):
    return ir.Graph.load(onnx_dir), golden(onnx_dir)


def test_im2col_path_equals_golden(bundled):
    g, gold = bundled
    exp = export_int_onnx(g, gold["frames"].shape[0], conv_path="im2col")
    assert set(exp.conv_paths.values()) == {"im2col int64 MatMul"}
    n, bad = diff_count(run_int_onnx(exp.model, gold["frames"]), gold)
    assert bad == 0 and n > 100_000


def test_other_batches_equal_reference(bundled):
    g, gold = bundled
    frames = torch.rand((gold["frames"].shape[0], 3, *g.input.shape), generator=torch.Generator().manual_seed(3))
    res = reference.run(g, frames, record=True)
    outs = run_int_onnx(export_int_onnx(g, frames.shape[0]).model, frames.numpy())
    for k, v in res.values.items():
        if g.types[k].kind == "spike":
            assert np.array_equal(outs[f"spikes/{k}"], v.numpy()), k
    for k, v in res.outputs.items():
        assert np.array_equal(outs[f"out/{k}"], v.numpy()), k


def test_mutation_one_weight_bit_is_caught(bundled):
    """Flip one bit of one weight: onnxruntime's spikes no longer equal the golden ones."""
    g, gold = bundled
    conv = next(n for n in g.nodes if isinstance(n, ir.Conv))
    w = np.array(conv.weight)
    w.flat[int(np.argmax(np.abs(w)))] ^= 1 << 5
    bad_g = g.replace(nodes=[conv.replace(weight=w) if n is conv else n for n in g.nodes])
    _, bad = diff_count(run_int_onnx(export_int_onnx(bad_g, gold["frames"].shape[0]).model, gold["frames"]), gold)
    assert bad > 0


# ----------------------------------------------------------------------------- semantics beyond the bundled model


def _lif(name, src, c, rng, **kw):
    return ir.IntLIF(name=name, inputs=(src,), theta=rng.integers(20, 300, c),
                     bias=kw.pop("bias", np.zeros(c, np.int64)), polarity=kw.pop("polarity", np.ones(c, np.int64)),
                     **kw)


def _conv(name, src, o, i, rng, k=3, **kw):
    return ir.Conv(name=name, inputs=(src,), weight=rng.integers(-60, 61, (o, i // kw.get("groups", 1), k, k)),
                   bias=rng.integers(-200, 200, o), out_scale=np.full(o, 0.01), padding=k // 2, **kw)


def small_graph(case: str) -> ir.Graph:
    """Tiny integer graphs exercising what the bundled model does not: soft reset, I-LIF,
    decay_input False, tau 4, negative polarity, neuron bias, grouped/strided convs, weights
    outside int8, Requant, both attentions, SSSA and a Linear head."""
    rng = np.random.default_rng(len(case))
    c = 4
    nodes = [ir.Input(name="in", inputs=(), shape=(2, 8, 8), scale=1 / 255, bits=8),
             _conv("c0", "in", c, 2, rng)]
    if case == "neurons":
        nodes += [ir.Requant(name="rq", inputs=("c0",), shift=np.array([0, 1, 2, 3])),
                  _lif("soft", "rq", c, rng, reset="soft", polarity=np.array([1, -1, 1, -1]),
                       bias=rng.integers(-50, 50, c), frac_bits=2),
                  _conv("c1", "soft", 8, c, rng, stride=2, groups=2),
                  _lif("ilif", "c1", 8, rng, reset="soft", levels=3, frac_bits=1),
                  _conv("c2", "ilif", c, 8, rng, k=1),
                  _lif("nodecay", "c2", c, rng, decay_input=False, leak_shift=2, frac_bits=3),
                  ir.Add(name="add", inputs=("c2", "c2")),
                  _lif("hard4", "add", c, rng, leak_shift=2),
                  ir.Conv(name="wide", inputs=("nodecay",), weight=rng.integers(-900, 900, (c, c, 3, 3)),
                          bias=None, padding=1, out_scale=np.full(c, 0.01)),
                  ir.Add(name="add2", inputs=("wide", "add")),
                  ir.GlobalPool(name="pool", inputs=("add2",)),
                  _lif("plif", "pool", c, rng),
                  ir.Linear(name="head", inputs=("plif",), weight=rng.integers(-99, 99, (3, c)),
                            bias=rng.integers(-9, 9, 3), out_scale=np.full(3, 0.5)),
                  ir.TimeMean(name="tm", inputs=("head",))]
        return ir.Graph(tuple(nodes), ("tm", "hard4"), "integer", {})
    nodes += [_lif("s", "c0", c, rng)]
    for q in "qkv":
        nodes += [_conv(f"{q}c", "s", c, c, rng), _lif(q, f"{q}c", c, rng, frac_bits=1)]
    if case == "sssa":
        nodes += [ir.SSSA(name="att", inputs=("q", "k", "v"), heads=2, gain=np.array([3, 1, 2, 5]),
                          sal_theta=40, sal_frac_bits=2)]
        tail = "att"
    else:
        kind, tokens = case.split("-")
        nodes += [ir.Attention(name="att", inputs=("q", "k", "v"), kind=kind, heads=2, tokens=tokens,
                               factor=0.125),
                  _lif("a", "att", c, rng, frac_bits=3)]
        tail = "a"
    nodes += [_conv("p", tail, c, c, rng), _lif("out", "p", c, rng)]
    return ir.Graph(tuple(nodes), ("out",), "integer", {})


@pytest.mark.parametrize("case", ["neurons", "sdha-joint", "sdsa-spatial", "sssa"])
@pytest.mark.parametrize("conv_path", ["auto", "im2col"])
def test_small_graphs_equal_reference(case, conv_path):
    g = small_graph(case)
    frames = torch.rand((4, 2, *g.input.shape), generator=torch.Generator().manual_seed(1)) * 1.2 - 0.1
    res = reference.run(g, frames, record=True)
    exp = export_int_onnx(g, 4, conv_path=conv_path)
    outs = run_int_onnx(exp.model, frames.numpy())
    spikes = 0
    for k, v in res.values.items():
        if g.types[k].kind == "spike":
            assert np.array_equal(outs[f"spikes/{k}"].astype(np.int64), v.numpy()), k
            spikes += int(v.sum())
    for k, v in res.outputs.items():
        assert np.array_equal(outs[f"out/{k}"], v.numpy()), k
    assert spikes > 0
    if case == "neurons" and conv_path == "auto":  # |w| > 127 and int inputs take im2col
        assert exp.conv_paths["wide"] == "im2col int64 MatMul" and exp.conv_paths["c1"] == "ConvInteger u8xu8"


def test_ilif_ties_round_half_even():
    """H exactly half-way between two multiples of theta: the reference rounds to even
    (issue 8); the ONNX compare-and-correct must agree on every tie."""
    theta = 4
    nodes = [ir.Input(name="in", inputs=(), shape=(1, 1, 8), scale=1 / 255, bits=8),
             ir.Conv(name="id", inputs=("in",), weight=np.ones((1, 1, 1, 1), np.int64), bias=None,
                     out_scale=np.ones(1) / 255),
             ir.IntLIF(name="ilif", inputs=("id",), theta=np.array([theta]), bias=np.zeros(1, np.int64),
                       polarity=np.ones(1, np.int64), reset="soft", levels=4)]
    g = ir.Graph(tuple(nodes), ("ilif",), "integer", {})
    codes = np.array([4, 12, 20, 28, 5, 13, 36, 44], np.float32)  # first step H = code // 2: 2, 6, 10, 14 tie
    frames = torch.from_numpy(np.tile(codes / 255, (3, 1, 1, 1, 1)).astype(np.float32))
    res = reference.run(g, frames, record=True)
    assert res.values["ilif"][0, 0, 0, 0, :4].tolist() == [0, 2, 2, 4]  # 0.5->0, 1.5->2, 2.5->2, 3.5->4
    outs = run_int_onnx(export_int_onnx(g, 3).model, frames.numpy())
    assert np.array_equal(outs["spikes/ilif"].astype(np.int64), res.values["ilif"].numpy())


def test_refuses_temporal_tokens_by_name():
    """Temporal-token attention (hierarchical SDHA) has no ONNX form yet: refused, never
    exported as the spatial form."""
    with pytest.raises(ExportError, match="tokens='temporal' has no integer ONNX form"):
        export_int_onnx(small_graph("sdha-temporal"), 4)


def test_refuses_non_integer_graph():
    g = small_graph("sdha-joint")
    with pytest.raises(ExportError, match="needs an integer graph"):
        export_int_onnx(ir.Graph(g.nodes[:1], ("in",), "float", {}), 4)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 6), st.integers(1, 3), st.booleans(), st.sampled_from(["hard", "soft"]),
       st.integers(1, 4), st.integers(1, 400), st.integers(0, 2 ** 16))
def test_random_neurons_equal_reference(frac, k, decay, reset, levels, theta_hi, seed):
    """Any IntLIF parameters (fraction bits, leak, decay_input, reset, levels, polarity,
    bias): onnxruntime's spikes equal the reference's."""
    rng = np.random.default_rng(seed)
    if levels > 1:
        reset = "soft"
    c = 3
    nodes = [ir.Input(name="in", inputs=(), shape=(1, 5, 5)),
             ir.Conv(name="c", inputs=("in",), weight=rng.integers(-127, 128, (c, 1, 3, 3)),
                     bias=rng.integers(-500, 500, c), padding=1, out_scale=np.full(c, 0.01)),
             ir.IntLIF(name="n", inputs=("c",), theta=rng.integers(1, theta_hi + 1, c) * 2 ** frac,
                       bias=rng.integers(-300, 300, c), polarity=rng.choice([-1, 1], c), frac_bits=frac,
                       leak_shift=k, decay_input=decay, reset=reset, levels=levels)]
    g = ir.Graph(tuple(nodes), ("n",), "integer", {})
    frames = torch.from_numpy(rng.random((5, 2, 1, 5, 5)).astype(np.float32))
    want = reference.run(g, frames, record=True).values["n"].numpy()
    got = run_int_onnx(export_int_onnx(g, 5).model, frames.numpy())["spikes/n"]
    assert np.array_equal(got.astype(np.int64), want)


@pytest.mark.slow
def test_float_export_of_a_pose_head(tmp_path):
    """Dict outputs (pose head) become one ONNX output per key, each equal to torch's."""
    from svf_deploy.exporters.onnx_float import export_float_onnx
    from svf_deploy.models import build_model

    torch.manual_seed(0)
    info = export_float_onnx(build_model("svf-tiny-pose").eval(), torch.rand(4, 1, 1, 32, 32), tmp_path / "p.onnx")
    assert set(info["outputs"]) == {"pose", "shape", "trans"} and info["max_abs_diff"] <= 1e-4


def test_normalised_first_layer_bias_map_equals_reference():
    """Input normalisation folds into the analog conv as a per-position bias map (exact on the
    zero-padded border); the integer ONNX graph adds that map, not a per-channel vector."""
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model
    from svf_deploy.exporters.nir_export import _skip_reason
    from svf_deploy.models import build_model

    torch.manual_seed(3)
    m = build_model("svf-tiny", in_channels=3, input_mean=(0.485, 0.456, 0.406),
                    input_std=(0.229, 0.224, 0.225)).eval()
    g, _ = compile_model(m, CompileOptions())
    first = g.node("downsample1_1.encode_conv")
    assert first.bias is not None and first.bias.ndim == 3
    frames = (torch.randint(0, 256, (4, 2, 3, 32, 32), generator=torch.Generator().manual_seed(0)) / 255).float()
    res = reference.run(g, frames, record=True)
    outs = run_int_onnx(export_int_onnx(g, 4).model, frames.numpy())
    for k, v in res.values.items():
        if g.types[k].kind == "spike":
            assert np.array_equal(outs[f"spikes/{k}"].astype(np.int64), v.numpy()), k
    for k, v in res.outputs.items():
        assert np.array_equal(outs[f"out/{k}"], v.numpy()), k
    assert "bias map" in _skip_reason(first)  # NIR lists it as not exported, with the reason
