"""fuse_depthwise: depthwise + pointwise -> one dense conv on spikes, exactly in float."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from svf_deploy.compiler import frontend, ir, reference
from svf_deploy.compiler.passes import fold_bn, fold_repconv, fuse_depthwise
from svf_deploy.models import build_model

from _helpers import randomize_bn


@given(c=st.integers(2, 6), o=st.integers(1, 5), k=st.sampled_from([1, 3, 5]),
       bias=st.booleans(), seed=st.integers(0, 10**6))
@settings(max_examples=25, deadline=None)
def test_fused_conv_equals_the_pair(c, o, k, bias, seed):
    rng = np.random.default_rng(seed)
    nodes = (ir.Input("x", (), shape=(c, 6, 5)),
             ir.Conv("dw", ("x",), weight=rng.normal(size=(c, 1, k, k)),
                     bias=rng.normal(size=c) if bias else None, padding=k // 2, groups=c),
             ir.Conv("pw", ("dw",), weight=rng.normal(size=(o, c, 1, 1)), bias=rng.normal(size=o)))
    g = ir.Graph(nodes, ("pw",))
    f = fuse_depthwise.run(g)
    assert [n.op for n in f.nodes] == ["Input", "Conv"]
    fused = f.node("pw")
    assert fused.weight.shape == (o, c, k, k) and fused.groups == 1
    assert f.meta["fused_depthwise"] == {"dw": "pw"}
    x = torch.from_numpy(rng.integers(0, 2, size=(2, 3, c, 6, 5)).astype(np.float64))
    a = reference.run(g, x).outputs["pw"]
    b = reference.run(f, x).outputs["pw"]
    assert torch.allclose(a, b, atol=1e-10)


def test_depthwise_with_other_readers_is_kept():
    rng = np.random.default_rng(0)
    nodes = (ir.Input("x", (), shape=(3, 4, 4)),
             ir.Conv("dw", ("x",), weight=rng.normal(size=(3, 1, 3, 3)), padding=1, groups=3),
             ir.Conv("pw", ("dw",), weight=rng.normal(size=(2, 3, 1, 1))))
    g = ir.Graph(nodes, ("pw", "dw"))
    assert fuse_depthwise.run(g).nodes == g.nodes or len(fuse_depthwise.run(g).nodes) == 3


def test_sepconv_fused_in_svf_tiny_keeps_spikes():
    torch.manual_seed(0)
    m = randomize_bn(build_model("svf-tiny"), negative=0.0).eval().double()
    g = fold_repconv.run(frontend.from_torch(m))
    f = fold_bn.run(fuse_depthwise.run(g))
    assert len(f.meta["fused_depthwise"]) == 4  # one per ConvBlock
    assert not any(isinstance(n, ir.Conv) and n.groups > 1 for n in f.nodes)
    x = torch.rand(4, 2, 1, 32, 32, dtype=torch.float64)
    ra, rb = reference.run(g, x, record=True), reference.run(f, x, record=True)
    lifs = [n.name for n in f.nodes if n.op == "LIF"]
    assert sum(float(ra.values[n].sum()) for n in lifs) > 100  # the model is active
    for n in lifs:
        assert torch.equal(ra.values[n], rb.values[n]), n
    assert torch.allclose(ra.outputs[g.outputs[0]], rb.outputs[f.outputs[0]], atol=1e-9)


def test_refuses_quantised_input():
    nodes = (ir.Input("x", (), shape=(2, 4, 4)),
             ir.Conv("dw", ("x",), weight=np.ones((2, 1, 3, 3)), padding=1, groups=2,
                     out_scale=np.ones(2)),
             ir.Conv("pw", ("dw",), weight=np.ones((2, 2, 1, 1))))
    with pytest.raises(Exception, match="already quantised"):
        fuse_depthwise.run(ir.Graph(nodes, ("pw",)))
