"""core_for: each integer IR node gets its core, and what no core implements is refused by name."""

import numpy as np
import pytest

from svf_deploy.compiler import ir
from svf_deploy.hw.cores import (AttentionUnit, BitPlaneAccumulator, GatedAccumulator, IntLIFLane,
                                 SaccadeUnit, SignedBitPlaneAccumulator, core_for)
from svf_deploy.models.errors import HardwareError

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _graph(conv_w=None, acc_bits=12, mem_bits=16, levels=1, extra=()):
    w = np.ones((4, 2, 1, 1), np.int64) if conv_w is None else conv_w
    nodes = [
        ir.Input("x", (), shape=(2, 2, 2), bits=8),
        ir.Conv("c0", ("x",), weight=np.ones((2, 2, 1, 1), np.int64), out_scale=np.ones(2), acc_bits=12),
        ir.IntLIF("l0", ("c0",), theta=np.full(2, 3), bias=np.zeros(2, np.int64),
                  polarity=np.ones(2, np.int64), mem_bits=mem_bits, levels=levels,
                  reset="soft" if levels > 1 else "hard"),
        ir.Conv("c1", ("l0",), weight=w, out_scale=np.ones(w.shape[0]), acc_bits=acc_bits),
        *extra,
    ]
    return ir.Graph(tuple(nodes), (nodes[-1].name,), "integer", {"T": 2})


def _bounds(g):
    from svf_deploy.compiler.reference import bounds
    return bounds(g, 2)


def test_cores_for_nodes():
    g = _graph()
    b = _bounds(g)
    assert isinstance(core_for(g.node("c0"), g, b), BitPlaneAccumulator)  # analog codes: 8 planes
    assert isinstance(core_for(g.node("c1"), g, b, form="dsp", lanes=4), GatedAccumulator)
    lane = core_for(g.node("l0"), g, b)
    assert isinstance(lane, IntLIFLane) and lane.mem_bits == 16
    g2 = _graph(levels=3)
    assert isinstance(core_for(g2.node("c1"), g2, _bounds(g2)), BitPlaneAccumulator)  # I-LIF 0..3


def test_conv_on_an_int_tensor_gets_signed_planes_or_a_named_refusal():
    """A Conv reading an ``int`` tensor (the factored SepConv's pointwise half) gets the
    two's-complement bit-plane core, ``in_bits`` from the input's proved bound."""
    pw = ir.Conv("p", ("c0",), weight=np.full((4, 2, 1, 1), -3, np.int64), out_scale=np.ones(4),
                 acc_bits=14)
    g = _graph(extra=(pw,))
    b = _bounds(g)
    assert b["c0"] == 2 * 255  # 2 analog codes x weight 1 -> signed 10 bits
    core = core_for(pw, g, b, lanes=4, terms=2, form="dsp")
    assert isinstance(core, SignedBitPlaneAccumulator)
    assert (core.in_bits, core.acc_bits, core.pe.w_abs_max, core.pe.form) == (10, 14, 3, "dsp")
    with pytest.raises(HardwareError, match=r"in_bits must be in 2\.\.16, not 42"):
        core_for(pw, g, {**b, "c0": 1 << 40})


def test_attention_core_from_node():
    att = ir.Attention("a", ("l0", "l0", "l0"), heads=1, tokens="joint", factor=0.25, acc_bits=7)
    g = _graph(extra=(att,))
    u = core_for(att, g, _bounds(g))
    assert isinstance(u, AttentionUnit) and u.d == 2 and u.y_bits == 7
    assert u.kv_bits == 5  # 2 steps x 4 tokens = 8 -> signed 5 bits


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("make, msg", [
    (lambda: _graph(acc_bits=0), r"Conv 'c1'.*acc_bits is 0 \(not derived\)"),
    (lambda: _graph(mem_bits=0), r"IntLIF 'l0'.*mem_bits is 0"),
    (lambda: _graph(conv_w=np.full((4, 2, 1, 1), 300, np.int64), acc_bits=14), r"Conv 'c1'.*weights reach \|300\|"),
])
def test_refusals_name_the_node(make, msg):
    g = make()
    node = g.nodes[3] if "c1" in msg else g.node("l0")
    with pytest.raises(HardwareError, match=msg):
        core_for(node, g, _bounds(g))


def test_attention_token_sets_and_multilevel_refusal():
    for tokens, n in (("spatial", 4), ("temporal", 2)):
        att = ir.Attention("a", ("l0", "l0", "l0"), heads=1, tokens=tokens, factor=0.25, acc_bits=7)
        g = _graph(extra=(att,))
        assert core_for(att, g, _bounds(g)).kv_bits == (n).bit_length() + 1
    att = ir.Attention("a", ("l0", "l0", "l0"), heads=1, tokens="joint", factor=0.25, acc_bits=9)
    g = _graph(levels=3, extra=(att,))
    with pytest.raises(HardwareError, match=r"Attention 'a': the attention unit counts binary spikes"):
        core_for(att, g, _bounds(g))


def test_sssa_gets_the_saccade_unit_or_a_named_refusal():
    s = ir.SSSA("s", ("l0", "l0", "l0"), heads=1, gain=np.array([3, -1], np.int64), sal_theta=4,
                mem_bits=18)
    g = _graph(extra=(s,))
    u = core_for(s, g, {})
    assert isinstance(u, SaccadeUnit) and u.gains == (3, -1) and u.d == 2
    short = ir.SSSA("s", ("l0", "l0", "l0"), heads=1, gain=np.array([3], np.int64), sal_theta=4,
                    mem_bits=18)
    g1 = _graph(extra=(short,))
    with pytest.raises(HardwareError, match=r"SSSA 's': gain has 1 steps, the bounds were proved for T=2"):
        core_for(short, g1, {})


def test_hardware_error_exit_code():
    assert HardwareError.exit_code == 14
