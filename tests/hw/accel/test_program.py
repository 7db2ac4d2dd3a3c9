"""The program emitter: layouts the hardware reads, versioning, relocation, clear refusals."""

import numpy as np
import pytest

from svf_deploy.compiler import ir
from svf_deploy.hw.accel import CI, PRODUCTION, AccelConfig, isa
from svf_deploy.hw.accel.program import _weight_words, emit
from svf_deploy.models.errors import HardwareError


def test_header_version_and_relocation(bundled):
    graph, _, _ = bundled
    prog = emit(graph, CI)
    w = prog.words()
    assert w[0, 0] == isa.OP_HEADER and w[0, 1] == isa.MAGIC and w[0, 2] == isa.VERSION
    assert w[0, 3] == len(prog.descriptors) and w[-1, 0] == isa.OP_END
    base = 0x4000_0000
    wr = prog.words(base)
    moved = {(i, j) for i, j in prog.relocs}
    for i, j in moved:  # every DDR address moves by the base, nothing else does
        assert int(wr[i, j]) == int(w[i, j]) + base
    mask = np.ones_like(w, bool)
    for i, j in moved:
        mask[i, j] = False
    assert np.array_equal(w[mask], wr[mask])
    # the image starts with the descriptors and holds them 128-byte aligned
    assert np.array_equal(prog.image[: w.size * 4].view("<u4").reshape(w.shape), w)
    assert prog.manifest()["isa_version"] == isa.VERSION
    # bursts are cut at the image's own 4 KB boundaries: any other base is refused by name
    with pytest.raises(HardwareError, match="4 KB aligned"):
        prog.ddr_image(base=base + 0x80)


def test_weight_image_is_tile_major_lanes(bundled):
    graph, _, _ = bundled
    prog = emit(graph, CI)
    conv = next(n for n in graph.nodes if isinstance(n, ir.Conv) and n.weight.shape[0] > CI.p_o)
    ld = next(f for op, f, node in prog.descriptors if op == isa.OP_LOADW and node == conv.name)
    P = CI.p_o
    words = prog.image[ld["ddr"]: ld["ddr"] + ld["count"] * P].view(np.int8).reshape(-1, P)
    o, i, k, _ = conv.weight.shape
    for oc in (0, P - 1, P, o - 1):          # lane oc % P of tile oc // P
        for ii, ky, kx in ((0, 0, 0), (i - 1, k - 1, k - 1), (i // 2, k // 2, 0)):
            word = (oc // P) * i * k * k + (ii * k + ky) * k + kx
            assert words[word, oc % P] == conv.weight[oc, ii, ky, kx]
    # padding lanes of a partial tile are zero
    ww = _weight_words(np.ones((5, 2, 1, 1), np.int64), 4)
    assert ww.shape == (4, 4) and ww[2:, 1:].sum() == 0 and ww[:2].sum() == 8


def test_input_planes_and_tensor_decoding(bundled):
    graph, golden, _ = bundled
    prog = emit(graph, CI)
    codes = golden.values[graph.input.name][:, 0].numpy()
    planes = prog.input_planes(codes).reshape(codes.shape[1], 8, *codes.shape[2:])
    rebuilt = sum(((planes[:, j][None] >> np.arange(prog.T)[:, None, None, None]) & 1) << j for j in range(8))
    assert np.array_equal(rebuilt, codes)
    # a spike map written in the bundle layout decodes back to [T, C, H, W]
    name = next(n for n in prog.stored if prog.tensors[n].layout == "bundles")
    want = golden.values[name][:, 0].numpy()
    ddr = np.zeros(prog.image.size, np.uint8)
    bundles = sum(want[t].astype(np.uint32) << t for t in range(prog.T)).ravel()
    off = prog.tensors[name].ddr
    ddr[off: off + 4 * bundles.size] = bundles.view(np.uint8)
    assert np.array_equal(prog.read_tensor(ddr, name), want)
    with pytest.raises(HardwareError, match="input codes have shape"):
        prog.input_planes(codes[:, :, :3])


def test_every_spike_map_and_the_output_are_stored(bundled):
    graph, _, _ = bundled
    prog = emit(graph, PRODUCTION)
    spikes = [n.name for n in graph.nodes if graph.types[n.name].kind == "spike"]
    assert set(prog.stored) == set(spikes) | set(graph.outputs)
    assert prog.act_peak <= PRODUCTION.act_depth


def _swap(graph, name, **kw):
    nodes = [n.replace(**kw) if n.name == name else n for n in graph.nodes]
    return graph.replace(nodes=nodes)


def test_refuses_what_it_cannot_run_exactly(bundled):
    graph, _, _ = bundled
    lif = next(n for n in graph.nodes if isinstance(n, ir.IntLIF))
    with pytest.raises(HardwareError, match=rf"IntLIF '{lif.name}'.*levels=2"):
        emit(_swap(graph, lif.name, levels=2, reset="soft"), CI)
    att = next(n for n in graph.nodes if isinstance(n, ir.Attention))
    with pytest.raises(HardwareError, match="joint SDHA only"):
        emit(_swap(graph, att.name, kind="sdsa"), CI)
    with pytest.raises(HardwareError, match="activation buffer holds 16384 words"):
        emit(graph, AccelConfig(name="tiny", act_depth=16384), plan="chip")
    with pytest.raises(HardwareError, match="parameter words exceed"):
        emit(graph, AccelConfig(name="tiny", act_depth=4096), plan="chip")
    with pytest.raises(HardwareError, match="weight buffer holds 64"):
        emit(graph, AccelConfig(name="tiny", wbuf_depth=64), plan="chip")
    # the LIF datapaths are MEM_BITS = 48 wide, the compiler's widest register: one bit more is refused
    with pytest.raises(HardwareError, match=rf"IntLIF '{lif.name}'.*membrane needs 49 bits.*LIF lane has 48"):
        emit(_swap(graph, lif.name, mem_bits=49), CI)
    assert emit(_swap(graph, lif.name, mem_bits=48), CI).plan == "chip"
    from svf_deploy.compiler.passes.bitwidths import MAX_BITS
    from svf_deploy.hw.accel import engine, program
    assert engine.MEM_BITS == program.MEM_BITS == MAX_BITS == 48
    # plan auto: what does not fit on chip runs DDR-resident; what cannot tile is refused
    assert emit(graph, AccelConfig(name="tiny", act_depth=16384)).plan == "ddr"
    with pytest.raises(HardwareError, match=r"needs \d+ activation words .*holds 1024.*larger act_depth"):
        emit(graph, AccelConfig(name="tiny", act_depth=1024))
    with pytest.raises(HardwareError, match="p_o must be a multiple of 4"):
        AccelConfig(name="bad", p_o=6)


def test_sdha_scratch_fits_the_weight_buffer(bundled):
    from svf_deploy.hw.accel.program import sdha_scratch_words

    graph, _, _ = bundled
    att = next(n for n in graph.nodes if isinstance(n, ir.Attention))
    c, h, w = graph.types[att.name].shape
    d = c // att.heads
    g = -(-d // (CI.p_o // 4))                       # 4 lanes per CI weight word
    assert sdha_scratch_words(CI, (c, h, w), att.heads) == g * h * w + d * g
    f = next(f for op, f, nd in emit(graph, CI).descriptors if nd == att.name and "kvw" in f)
    assert (f["g"], f["kvw"]) == (g, g * h * w)      # kv rows follow the transposed V
    assert sdha_scratch_words(PRODUCTION, (640, 16, 16), 8) == 3 * 256 + 80 * 3   # svf-large block 4


def test_sdha_scratch_that_does_not_fit_the_weight_buffer_is_refused(bundled):
    from svf_deploy.hw.accel.program import sdha_scratch, sdha_scratch_words

    graph = bundled[0]
    att = next(n for n in graph.nodes if isinstance(n, ir.Attention))
    shape = graph.types[att.name].shape
    words = sdha_scratch_words(CI, shape, att.heads)
    assert sdha_scratch(att, CI, shape, words) == -(-(shape[0] // att.heads) // (CI.p_o // 4))
    with pytest.raises(HardwareError, match=f"{att.name}.*weight-buffer scratch.*needs {words} words.*"
                                            f"holds {words - 1}"):
        sdha_scratch(att, CI, shape, words - 1)


def test_dsp_lane_bound_is_proved_for_every_conv(bundled, monkeypatch):
    """``max_o sum |w| << plane`` (bias excluded) must stay below 2**23 (24-bit SIMD lanes);
    the bundled model passes with margin, a layer over the limit is refused by name."""
    import re
    from types import SimpleNamespace

    from svf_deploy.hw.accel import program

    w = np.zeros((2, 3, 1, 1), np.int64)
    w[0] = [[[5]], [[-7]], [[1]]]          # channel 0: 13
    w[1] = [[[-128]], [[0]], [[2]]]        # channel 1: 130
    node = SimpleNamespace(weight=w)
    assert program.lane_bound(node, analog=False) == 130
    assert program.lane_bound(node, analog=True) == 130 * 255     # planes j = 0..7: sum 2**j
    graph, _, _ = bundled
    convs = [n for n in graph.nodes if isinstance(n, (ir.Conv, ir.Linear))]
    bounds = {n.name: program.lane_bound(n, graph.types[n.inputs[0]].kind == "analog") for n in convs}
    worst = max(bounds, key=bounds.get)
    assert 0 < bounds[worst] < program.LANE_LIMIT
    emit(graph, CI)
    monkeypatch.setattr(program, "LANE_LIMIT", bounds[worst])
    with pytest.raises(HardwareError, match=rf"'{re.escape(worst)}': a DSP accumulator lane can reach {bounds[worst]}"):
        emit(graph, CI)


def test_conv_lif_pairs_run_on_the_conv_write_back(bundled):
    """Chip plan, T <= P_t: a conv read only by an IntLIF writes that LIF's spike map (CONV
    ``lflags & LFLAG_WB``, the LIF's parameters and a spike channel stride) and the LIF has
    no descriptor; with T > P_t, or the conv's integer map stored, the LIF descriptor stays."""
    graph, _, _ = bundled
    cons = {}
    for n in graph.nodes:
        for s in n.inputs:
            cons.setdefault(s, []).append(n)
    pairs = {n.name: cons[n.name][0] for n in graph.nodes if isinstance(n, (ir.Conv, ir.Linear))
             and len(cons.get(n.name, [])) == 1 and isinstance(cons[n.name][0], ir.IntLIF)}
    assert len(pairs) >= 10
    prog = emit(graph, CI)
    assert prog.T <= CI.p_t and set(prog.fused) == {lif.name for lif in pairs.values()}
    lif_nodes = {nd for op, _, nd in prog.descriptors if op == isa.OP_LIF}
    assert not lif_nodes & set(prog.fused) and lif_nodes
    P = CI.p_o
    for op, f, nd in prog.descriptors:
        if op != isa.OP_CONV:
            continue
        if nd not in pairs:
            assert not f.get("lflags", 0)
            continue
        lif, (c, h, w) = pairs[nd], (graph.types[nd].shape + (1, 1))[:3]
        assert f["lflags"] == isa.LFLAG_WB | int(lif.decay_input) | (2 if lif.reset == "soft" else 0)
        assert (f["frac"], f["leak"]) == (lif.frac_bits, lif.leak_shift) and f["hwout_t"] == h * w
        assert f["outb"] == prog.tensors[lif.name].act + f["oc_start"] * h * w and f["otile"] == P * h * w
        # the parameter block holds (theta, bias, polarity) of channel o at lifpb + 3o
        po = prog.regions["params"][0] + 4 * f["lifpb"]
        par = prog.image[po: po + 12 * c].view("<i4").reshape(c, 3)
        assert np.array_equal(par, np.stack([lif.theta, lif.bias, lif.polarity], 1))
    for kw in ({"T": 2 * CI.p_t}, {"store_ints": True}):
        old = emit(graph, CI, **kw)
        assert {nd for op, _, nd in old.descriptors if op == isa.OP_LIF} >= {lif.name for lif in pairs.values()}
        assert not any(f.get("lflags", 0) for op, f, _ in old.descriptors if op == isa.OP_CONV)
