"""The IR: validation on construction and a lossless JSON + npz round trip."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svf_deploy.compiler import frontend, ir
from svf_deploy.compiler.pipeline import compile_graph
from svf_deploy.models import build_model
from svf_deploy.models.errors import GraphError

from _helpers import randomize_bn


@pytest.fixture(scope="module")
def compiled():
    import torch

    torch.manual_seed(0)
    return compile_graph(frontend.from_torch(randomize_bn(build_model("svf-tiny")).eval()))[0]


def _same(a: ir.Graph, b: ir.Graph) -> None:
    assert (a.stage, a.outputs, a.meta) == (b.stage, b.outputs, json.loads(json.dumps(b.meta)))
    for x, y in zip(a.nodes, b.nodes, strict=True):
        assert (type(x), x.name, x.inputs, x.attrs()) == (type(y), y.name, y.inputs, y.attrs())
        xa, ya = x.arrays(), y.arrays()
        assert xa.keys() == ya.keys()
        for k in xa:
            assert xa[k].dtype == ya[k].dtype and np.array_equal(xa[k], ya[k]), (x.name, k)
    assert a.types == b.types


def test_round_trip_is_lossless(compiled, tmp_path):
    compiled.save(tmp_path)
    back = ir.Graph.load(tmp_path)
    _same(compiled, back)
    assert json.loads((tmp_path / "graph.json").read_text())["schema"] == ir.SCHEMA_VERSION


def test_float_graph_round_trip_is_lossless(tmp_path):
    g = frontend.from_torch(build_model("svf-tiny", attention="sdsa").eval())
    g.save(tmp_path)
    back = ir.Graph.load(tmp_path)
    assert [n.op for n in back.nodes] == [n.op for n in g.nodes]
    for x, y in zip(g.nodes, back.nodes):
        for k, v in x.arrays().items():
            assert np.array_equal(v, y.arrays()[k])


@given(c=st.integers(1, 4), o=st.integers(1, 4), k=st.sampled_from([1, 3]), stride=st.integers(1, 2),
       seed=st.integers(0, 10**6))
@settings(max_examples=30, deadline=None)
def test_random_integer_graphs_round_trip(c, o, k, stride, seed):
    rng = np.random.default_rng(seed)
    nodes = (ir.Input("x", (), shape=(c, 8, 8)),
             ir.Conv("conv", ("x",), weight=rng.integers(-127, 128, size=(o, c, k, k)),
                     bias=rng.integers(-1000, 1000, size=o), stride=stride, padding=k // 2,
                     out_scale=rng.uniform(1e-4, 1, size=o)),
             ir.IntLIF("lif", ("conv",), theta=rng.integers(1, 5000, size=o),
                       bias=rng.integers(-50, 50, size=o), polarity=rng.choice([-1, 1], size=o),
                       frac_bits=int(rng.integers(0, 8))),
             ir.Requant("rq", ("conv",), shift=rng.integers(0, 4, size=o)))
    g = ir.Graph(nodes, ("lif", "rq"), stage="integer", meta={"seed": seed})
    text, arrays = g.to_files()
    _same(g, ir.Graph.from_files(text, arrays))


def test_validation_rejects_malformed_graphs():
    x = ir.Input("x", (), shape=(2, 4, 4))
    w = np.ones((3, 2, 3, 3))
    with pytest.raises(GraphError, match="not an earlier node"):
        ir.Graph((x, ir.Conv("c", ("nope",), weight=w)), ("c",))
    with pytest.raises(GraphError, match="duplicate"):
        ir.Graph((x, ir.Conv("x", ("x",), weight=w)), ("x",))
    with pytest.raises(GraphError, match="input has 2 channels"):
        ir.Graph((x, ir.Conv("c", ("x",), weight=np.ones((3, 5, 3, 3)))), ("c",))
    with pytest.raises(GraphError, match="cannot appear in a integer graph"):
        ir.Graph((x, ir.LIF("l", ("x",))), ("l",), stage="integer")
    with pytest.raises(GraphError, match="integer weight"):
        ir.Graph((x, ir.Conv("c", ("x",), weight=w, out_scale=np.ones(3))), ("c",), stage="integer")
    with pytest.raises(GraphError, match="positive"):
        ir.IntLIF("l", ("x",), theta=np.array([0]), bias=np.array([0]), polarity=np.array([1]))
    with pytest.raises(GraphError, match="polarity"):
        ir.IntLIF("l", ("x",), theta=np.array([4]), bias=np.array([0]), polarity=np.array([2]))
    with pytest.raises(GraphError, match="different scales"):
        c1 = ir.Conv("a", ("x",), weight=np.ones((2, 2, 1, 1), np.int64), out_scale=np.ones(2))
        c2 = ir.Conv("b", ("x",), weight=np.ones((2, 2, 1, 1), np.int64), out_scale=np.full(2, 0.5))
        ir.Graph((x, c1, c2, ir.Add("s", ("a", "b"))), ("s",), stage="integer")
    with pytest.raises(GraphError, match="no outputs"):
        ir.Graph((x,), ())


def test_corrupted_files_give_clear_errors(compiled, tmp_path):
    compiled.save(tmp_path)
    text = (tmp_path / "graph.json").read_text()
    _, arrays = compiled.to_files()
    with pytest.raises(GraphError, match="not valid JSON"):
        ir.Graph.from_files(text[:100], arrays)
    doc = json.loads(text)
    with pytest.raises(GraphError, match="schema"):
        ir.Graph.from_files(json.dumps({**doc, "schema": 99}), arrays)
    with pytest.raises(GraphError, match="not an svf-deploy spike graph"):
        ir.Graph.from_files(json.dumps({"nodes": []}), arrays)
    doc["nodes"][1]["op"] = "Teleport"
    with pytest.raises(GraphError, match="unknown node op 'Teleport'"):
        ir.Graph.from_files(json.dumps(doc), arrays)
    missing = dict(arrays)
    missing.pop(next(iter(missing)))
    with pytest.raises(GraphError, match="weights.npz lacks"):
        ir.Graph.from_files(text, missing)
    (tmp_path / "weights.npz").write_bytes(b"not a zip")
    with pytest.raises(GraphError, match="cannot read"):
        ir.Graph.load(tmp_path)
