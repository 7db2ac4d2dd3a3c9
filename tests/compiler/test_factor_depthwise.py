"""factor_depthwise: SepConvs kept as depthwise-on-spikes + pointwise-on-int where the cost
model says so; the factored graph meets the integer contract and is exact at high
precision on the bundled model; ONNX and core_for handle it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from svf_deploy.api import BUNDLED_MODEL
from svf_deploy.compiler import frontend, ir, pipeline, reference
from svf_deploy.compiler.passes import fuse_depthwise
from svf_deploy.compiler.passes.fuse_depthwise import sepconv_cost
from svf_deploy.models.checkpoint import load_checkpoint
from svf_deploy.models.errors import ConfigError, HardwareError


def _pair(k: int, C: int = 4, O: int = 6, levels: int = 1, seed: int = 0) -> ir.Graph:
    """input -> conv -> LIF (spikes) -> depthwise k x k -> pointwise 1x1."""
    rng = np.random.default_rng(seed)
    nodes = (ir.Input("x", (), shape=(1, 5, 5)),
             ir.Conv("c0", ("x",), weight=rng.normal(size=(C, 1, 3, 3)), padding=1),
             ir.LIF("l0", ("c0",), levels=levels),
             ir.Conv("dw", ("l0",), weight=rng.normal(size=(C, 1, k, k)), padding=k // 2, groups=C),
             ir.Conv("pw", ("dw",), weight=rng.normal(size=(O, C, 1, 1)), bias=rng.normal(size=O)))
    return ir.Graph(nodes, ("pw",))


@pytest.mark.parametrize("mode", ["never", "auto"])
def test_choice_follows_the_cost_model(mode):
    g = _pair(7)
    out = fuse_depthwise.run(g, factor_depthwise=mode, weight_bits=8)
    rec = out.meta["sepconv_forms"]["pw"]
    # 8-bit dw weights on binary spikes: 49 taps of |w| <= 127 -> 6223 -> 13 bits + sign,
    # unless the channel's other taps are smaller (they are: random normal weights)
    assert 2 <= rec["dw_bits"] <= 14
    assert (rec["fused_adds"], rec["factored_adds"]) == sepconv_cost(25, 4, 6, 49, 1, rec["dw_bits"])
    assert rec["fused_adds"] == 25 * 49 * 4 * 6
    assert rec["factored_adds"] == 25 * (49 * 4 + rec["dw_bits"] * 4 * 6) < rec["fused_adds"]
    if mode == "never":
        assert rec["form"] == "fused" and out.meta["fused_depthwise"] == {"dw": "pw"}
        assert [n.name for n in out.nodes] == ["x", "c0", "l0", "pw"]
    else:
        assert rec["form"] == "factored" and out.meta["fused_depthwise"] == {}
        assert [n.name for n in out.nodes] == ["x", "c0", "l0", "dw", "pw"]


def test_a_1x1_depthwise_stays_fused_under_auto():
    """k = 1: fused C*O adds per pixel beat C + b*C*O, so 'auto' fuses it."""
    out = fuse_depthwise.run(_pair(1), factor_depthwise="auto", weight_bits=8)
    rec = out.meta["sepconv_forms"]["pw"]
    assert rec["form"] == "fused" and rec["fused_adds"] < rec["factored_adds"]
    assert "dw" not in {n.name for n in out.nodes}


def test_multi_level_spikes_count_their_planes():
    rec = fuse_depthwise.run(_pair(7, levels=4), factor_depthwise="auto").meta["sepconv_forms"]["pw"]
    assert rec["in_planes"] == 3 and rec["fused_adds"] == 25 * 49 * 4 * 6 * 3


def test_bad_mode_is_refused_once_by_name():
    with pytest.raises(ConfigError, match="factor_depthwise must be one of never, auto"):
        pipeline.CompileOptions(factor_depthwise="always")
    with pytest.raises(ConfigError, match="--factor-depthwise"):
        fuse_depthwise.run(_pair(7), factor_depthwise=True)
    assert pipeline.CompileOptions().factor_depthwise == "never"


@pytest.fixture(scope="module")
def bundled():
    m, _ = load_checkpoint(BUNDLED_MODEL)
    m = m.eval().double()
    return m, frontend.from_torch(m)


def _clip(g: ir.Graph, T: int, B: int = 2, seed: int = 3) -> torch.Tensor:
    x = torch.rand((T, B, *g.input.shape), dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return torch.round(x * 255) / 255  # exact 8-bit input codes


def test_bundled_factored_meets_the_integer_contract_and_is_exact(bundled):
    """20-bit weights (both convs of a pair are quantised, so widths add up: at 22 bits the
    pointwise registers would pass bitwidths' 48-bit limit): the factored integer graph
    equals the float graph spike for spike; the dw widths the pass predicted are the
    ones bitwidths proved."""
    _, g = bundled
    gi, recs = pipeline.compile_graph(g, pipeline.CompileOptions(
        weight_bits=20, min_theta_bits=20, factor_depthwise="auto"))
    forms = gi.meta["sepconv_forms"]
    assert len(forms) == 4 and all(f["form"] == "factored" for f in forms.values())
    assert gi.meta["compile_options"]["factor_depthwise"] == "auto"
    for pw, f in forms.items():
        dw = gi.node(f["dw"])
        assert dw.groups == dw.weight.shape[0] > 1 and gi.types[dw.name].kind == "int"
        assert dw.acc_bits == f["dw_bits"] > 20  # predicted width == proved width
        readers = gi.consumers(dw.name)
        assert len(readers) == 1 and readers[0].op == "Conv" and readers[0].weight.shape[2:] == (1, 1)
        assert readers[0].acc_bits > 0
    x = _clip(g, int(gi.meta["T"]))
    rf, ri = reference.run(g, x, record=True), reference.run(gi, x, record=True)  # widths checked
    spikes = [n.name for n in gi.nodes if gi.types[n.name].kind == "spike"]
    assert [s for s in spikes if not torch.equal(ri.values[s], rf.values[s].to(torch.int64))] == []
    assert 0.01 < float(np.mean([float(rf.values[s].double().mean()) for s in spikes])) < 0.9
    for o in g.outputs:
        torch.testing.assert_close(ri.outputs[o], rf.outputs[o], rtol=0, atol=1e-4)
    # the comparison can fail: one flipped bit in a pointwise weight of a factored pair
    pw = gi.consumers(next(iter(forms.values()))["dw"])[0]
    w = pw.weight.copy()
    w.flat[int(np.argmax(np.abs(w)))] ^= 1 << 18
    bad = gi.replace(nodes=[pw.replace(weight=w) if n.name == pw.name else n for n in gi.nodes])
    rb = reference.run(bad, x, record=True, check_bounds=False)
    assert any(not torch.equal(rb.values[s], ri.values[s]) for s in spikes)


def test_cli_option(capsys):
    from svf_deploy.cli import compile_main

    with pytest.raises(SystemExit) as e:
        compile_main(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--factor-depthwise {never,auto}" in out and "(default;" in out and "ZCU104 engine v1" in out
    with pytest.raises(SystemExit) as e:
        compile_main(["--factor-depthwise", "always"])
    assert e.value.code == 2 and "invalid choice: 'always'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def factored8(bundled):
    _, g = bundled
    gi, _ = pipeline.compile_graph(g, pipeline.CompileOptions(factor_depthwise="auto"))
    return gi


def test_bundled_factored_onnx_equals_reference(factored8):
    from svf_deploy.exporters.onnx_int import export_int_onnx, run_int_onnx

    gi = factored8
    x = _clip(gi, int(gi.meta["T"]), seed=5)
    res = reference.run(gi, x, record=True)
    exp = export_int_onnx(gi, x.shape[0])
    pw_nodes = [c.name for f in gi.meta["sepconv_forms"].values() for c in gi.consumers(f["dw"])]
    assert len(pw_nodes) == 4
    assert all(exp.conv_paths[n] == "im2col int64 MatMul" for n in pw_nodes), exp.conv_paths
    outs = run_int_onnx(exp.model, x.numpy())
    n = 0
    for k, v in res.values.items():
        if gi.types[k].kind == "spike":
            assert np.array_equal(outs[f"spikes/{k}"], v.numpy()), k
            n += v.numel()
    assert n > 10_000
    for o in gi.outputs:
        assert np.array_equal(outs[f"int/{o}"].reshape(res.values[o].shape), res.values[o].numpy()), o
        np.testing.assert_allclose(outs[f"out/{o}"], res.outputs[o].numpy(), rtol=1e-12, atol=0)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # cores built, not elaborated
def test_core_for_maps_the_int_input_pointwise(factored8):
    import gc

    from svf_deploy.hw.cores import GatedAccumulator, SignedBitPlaneAccumulator
    from svf_deploy.hw.cores.select import core_for

    gi = factored8
    bounds = reference.bounds(gi, int(gi.meta["T"]))
    for f in gi.meta["sepconv_forms"].values():
        dw = gi.node(f["dw"])
        pw = gi.consumers(dw.name)[0]
        assert isinstance(core_for(dw, gi, bounds), GatedAccumulator)  # depthwise on spikes
        core = core_for(pw, gi, bounds)  # pointwise on the depthwise's signed output
        assert isinstance(core, SignedBitPlaneAccumulator)
        assert core.in_bits == dw.acc_bits == f["dw_bits"] and core.acc_bits == pw.acc_bits
    bad = gi.replace(nodes=[n.replace(acc_bits=0) if n.name == pw.name else n for n in gi.nodes])
    with pytest.raises(HardwareError, match=f"Conv '{pw.name}'.*acc_bits is 0"):
        core_for(bad.node(pw.name), bad, bounds)
    del core
    gc.collect()  # the unelaborated cores warn when collected: here, under the filter


def test_costmodel_counts_the_compiled_factored_graph(bundled, factored8):
    from svf_deploy.hw.costmodel import adds_per_step

    _, g = bundled
    fused, _ = pipeline.compile_graph(g, pipeline.CompileOptions())
    cf = {c.name: c for c in adds_per_step(fused)}
    ca = {c.name: c for c in adds_per_step(factored8)}
    for pw, f in factored8.meta["sepconv_forms"].items():
        dw = factored8.node(f["dw"])
        reader = factored8.consumers(dw.name)[0].name
        assert ca[reader].fused == f["pixels"] * f["outputs"] * f["channels"] * dw.acc_bits
        assert ca[dw.name].fused + ca[reader].fused == f["factored_adds"]
        assert cf[pw].fused == f["fused_adds"] and cf[pw].factored == f["factored_adds"]
    assert sum(c.fused for c in ca.values()) < sum(c.fused for c in cf.values())
