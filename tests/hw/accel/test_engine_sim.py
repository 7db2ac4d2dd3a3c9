"""The whole engine under cocotb + Verilator on the bundled model (CI configuration).

One Verilator build (cached by the Verilog's hash), then runs of the golden clip: every
spike map and the output must equal the golden reference, the engine's CYCLES register
must equal the analytic cycle model, and a single flipped weight bit must be caught.
"""

import numpy as np
import pytest

from svf_deploy.compiler import ir
from svf_deploy.hw.accel import CI, PRODUCTION, isa
from svf_deploy.hw.accel.cycles import conv_inputs, program_cycles
from svf_deploy.hw.accel.program import emit
from svf_deploy.models.errors import HardwareError
from svf_deploy.targets.zcu104 import verify_rtl


def test_bundled_model_bit_exact_and_cycle_model_exact(bundled):
    graph, golden, frames = bundled
    r = verify_rtl(graph, frames, CI)
    spikes = sum(1 for n in graph.nodes if graph.types[n.name].kind == "spike")
    assert r["compared"] == spikes + 1 and r["mismatches"] == 0 and r["first_mismatch"] is None
    assert r["values"] > 160_000
    assert r["cycles"] == r["predicted_cycles"]        # the model is exact, well within 5 %
    # zero-bundle skipping: below the dense bound by exactly what the model predicts (> 10 %)
    prog = emit(graph, CI)
    src = {graph.node(nd).inputs[0] for op, _, nd in prog.descriptors if op == isa.OP_CONV}
    modelled, _ = program_cycles(prog, inputs=conv_inputs(prog, graph, {k: golden.values[k].numpy() for k in src}))
    dense, _ = program_cycles(prog)
    assert r["dense_bound_cycles"] == dense and dense - r["cycles"] == dense - modelled > 0.1 * dense
    assert r["verilator_cycles_per_s"] > 0


def test_one_flipped_weight_bit_is_caught(bundled):
    graph, golden, frames = bundled
    conv = next(n for n in graph.nodes if isinstance(n, ir.Conv))

    def flip(prog, image):
        ld = next(f for op, f, node in prog.descriptors if op == isa.OP_LOADW and node == conv.name)
        img = image.copy()
        o, i, k, _ = conv.weight.shape
        c = k // 2
        byte = ld["ddr"] + ((0 * k + c) * k + c) * CI.p_o + 0   # W[0, 0, c, c], lane 0 of tile 0
        assert np.int8(img[byte]) == conv.weight[0, 0, c, c]
        img[byte] ^= 0x80
        return img

    with pytest.raises(HardwareError, match=r"RTL verification failed: \d+ of \d+ tensors differ.*engine"):
        verify_rtl(graph, frames, CI, image_hook=flip)


#: the ddr plan on the CI engine, tiles limited to 8192 activation words and 1024 weight
#: words: several row bands, output-channel chunks and input-channel groups per layer
DDR_BUDGET = {"plan": "ddr", "act_words": 8192, "wbuf_words": 1024}


def test_ddr_plan_bit_exact_and_cycle_model_exact(bundled):
    graph, golden, frames = bundled
    prog = emit(graph, CI, **DDR_BUDGET)
    convs = [(f, nd) for op, f, nd in prog.descriptors if op == isa.OP_CONV]
    per_node = {}
    for f, nd in convs:
        per_node.setdefault(nd, []).append(f)
    assert prog.plan == "ddr" and prog.act_peak <= 8192
    assert sum(1 for fs in per_node.values() if len({f["pad_y"] for f in fs}) > 1) >= 3      # row bands
    assert sum(1 for fs in per_node.values() if len({f["oc_start"] for f in fs}) > 1) >= 10  # channel chunks
    assert any(op == isa.OP_EW and graph.node(nd).op == "Conv" for op, _, nd in prog.descriptors)  # groups
    assert len(prog.fused) >= 10                      # conv -> LIF on the tile, spikes only to DDR
    r = verify_rtl(graph, frames, CI, **DDR_BUDGET)
    spikes = sum(1 for n in graph.nodes if graph.types[n.name].kind == "spike")
    assert r["plan"] == "ddr" and r["compared"] == spikes + 1 and r["mismatches"] == 0
    assert r["values"] > 160_000
    assert r["cycles"] == r["predicted_cycles"] < r["dense_bound_cycles"]


def test_ddr_plan_one_flipped_weight_bit_is_caught(bundled):
    graph, golden, frames = bundled
    conv = next(n for n in graph.nodes if isinstance(n, ir.Conv))

    def flip(prog, image):
        ld = next(f for op, f, node in prog.descriptors if op == isa.OP_LOADW and node == conv.name)
        img = image.copy()
        k = conv.weight.shape[2]
        c = k // 2
        byte = ld["ddr"] + (c * k + c) * CI.p_o     # W[0, 0, c, c], lane 0 of tile 0, group 0
        assert np.int8(img[byte]) == conv.weight[0, 0, c, c]
        img[byte] ^= 0x80
        return img

    with pytest.raises(HardwareError, match=r"RTL verification failed: \d+ of \d+ tensors differ.*engine"):
        verify_rtl(graph, frames, CI, image_hook=flip, **DDR_BUDGET)


@pytest.mark.slow
def test_production_configuration_bit_exact(bundled):
    graph, golden, frames = bundled
    r = verify_rtl(graph, frames, PRODUCTION)
    assert r["mismatches"] == 0 and r["cycles"] == r["predicted_cycles"]
