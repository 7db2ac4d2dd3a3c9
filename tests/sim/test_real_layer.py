"""Cores driven by a real layer of the bundled model: vectors from
``compiler.reference.run(graph, clip, record=True)``, every output and membrane compared.

The spike-gated accumulator computes a conv on spikes (im2col terms, 16 per beat, 8 output
channels per run), the IntLIF lane the neuron behind it (all T steps of each neuron back
to back; spikes and pre-reset membranes), the attention unit one joint SDHA layer per
head. The PE and the LIF lane, configured by ``core_for`` from the nodes, share one
Verilator build (a :class:`~svf_deploy.sim.bundle.Bundle`); the PE and the attention unit
also run in amaranth.sim.
"""

import numpy as np
import pytest
import torch

from svf_deploy.compiler import reference
from svf_deploy.hw.cores import GatedAccumulator, OP_KV, OP_QUERY, core_for
from svf_deploy.sim.cases import Case, lif_case, mutate, run_case
from svf_deploy.sim.check import Mismatch
from svf_deploy.sim.payload import pack
from svf_deploy.sim.pysim import run_streams
from svf_deploy.sim.bundle import Bundle
from svf_deploy.sim.verilator import build

LANES, TERMS = 8, 16


@pytest.fixture(scope="module")
def layer():
    from svf_deploy.api import BUNDLED_MODEL
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model
    from svf_deploy.models.checkpoint import load_checkpoint

    torch.manual_seed(0)
    model, _ = load_checkpoint(BUNDLED_MODEL)
    cfg = model.cfg
    graph, _ = compile_model(model, CompileOptions(),
                             frame_shape=(cfg.in_channels, cfg.img_size, cfg.img_size))
    T = int(graph.meta.get("T", cfg.T))
    clip = torch.rand(T, 1, cfg.in_channels, cfg.img_size, cfg.img_size,
                      generator=torch.Generator().manual_seed(1))
    res = reference.run(graph, clip, record=True)
    bounds = reference.bounds(graph, T)
    # a conv on binary spikes that feeds an IntLIF, with channels in whole PE groups;
    # acc_bits 16 preferred: its Verilog equals the core suite's "pe-dsp" (one cached build)
    found = []
    for n in graph.nodes:
        if n.op != "Conv" or n.groups != 1:
            continue
        src = graph.types[n.inputs[0]]
        lifs = [c for c in graph.consumers(n.name) if c.op == "IntLIF"]
        if src.kind == "spike" and src.levels == 1 and lifs and n.out_channels % LANES == 0:
            found.append((n.acc_bits != 16, len(found), n, lifs[0]))
    if not found:
        pytest.fail("the bundled model has no conv on spikes feeding an IntLIF")
    _, _, conv, lif = min(found, key=lambda f: f[:2])
    pe = core_for(conv, graph, bounds, lanes=LANES, terms=TERMS, form="dsp")
    lane = core_for(lif, graph, bounds)
    bundle = Bundle({"pe": pe, "lif": lane})
    return dict(graph=graph, res=res, bounds=bounds, conv=conv, lif=lif, T=T, pe=pe, lane=lane,
                bundle=bundle, vb=build(bundle, "real-layer"))


def conv_case(core, conv, x, y_ref, limit=None) -> Case:
    """im2col beats of ``conv`` on spikes ``x [T, C, H, W]``: per (t, oy, ox, channel group)
    a run of ceil(C*kh*kw / TERMS) beats, expected ``y_ref [T, O, OH, OW]``."""
    w = np.asarray(conv.weight, dtype=np.int64)
    O, C, kh, kw = w.shape
    p, s = conv.padding, conv.stride
    T, _, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    OH, OW = y_ref.shape[2:]
    wf = w.reshape(O, -1)  # term order (c, ky, kx)
    bias = np.zeros(O, np.int64) if conv.bias is None else np.asarray(conv.bias, np.int64)
    nt = wf.shape[1]
    beats, exp, coords = [], [], []
    for t in range(T):
        for oy in range(OH):
            for ox in range(OW):
                patch = xp[t, :, oy * s:oy * s + kh, ox * s:ox * s + kw].reshape(-1)
                for g in range(O // LANES):
                    oc = slice(g * LANES, (g + 1) * LANES)
                    starts = range(0, nt, TERMS)
                    for k, j0 in enumerate(starts):
                        sp = np.zeros(TERMS, np.int64)
                        ww = np.zeros((TERMS, LANES), np.int64)
                        seg = slice(j0, min(j0 + TERMS, nt))
                        sp[:seg.stop - j0] = patch[seg]
                        ww[:seg.stop - j0] = wf[oc, seg].T
                        beats.append(pack(core.in_layout, dict(
                            spikes=int(sum(int(b) << j for j, b in enumerate(sp))),
                            weights=ww.tolist(), bias=bias[oc].tolist(),
                            first=int(k == 0), last=int(k == len(starts) - 1))))
                    exp.append({"acc": y_ref[t, oc, oy, ox].tolist()})
                    coords.append(f"t={t} y={oy} x={ox} channels {g * LANES}..{(g + 1) * LANES - 1}")
                    if limit and len(exp) >= limit:
                        return Case(conv.name, {"i": beats}, {"o": exp}, {"o": coords})
    return Case(conv.name, {"i": beats}, {"o": exp}, {"o": coords})


def _pe(layer):
    conv = layer["conv"]
    core = layer["pe"]
    assert isinstance(core, GatedAccumulator) and core.acc_bits == conv.acc_bits
    x = layer["res"].values[conv.inputs[0]][:, 0].numpy()
    y = layer["res"].values[conv.name][:, 0].numpy()
    return core, x, y


def test_real_conv_on_verilator_and_pysim(layer):
    core, x, y = _pe(layer)
    case = conv_case(core, layer["conv"], x, y)
    assert len(case.expected["o"]) >= 16 and np.abs(y).max() > 0
    b, vb = layer["bundle"], layer["vb"]
    run_case(b, b.case("pe", case), lambda i, e: vb.run(i, e, p_valid=0.8, p_ready=0.7, seed=3))
    small = conv_case(core, layer["conv"], x, y, limit=8)
    run_case(core, small, lambda i, e: run_streams(core, i, e, p_valid=0.7, p_ready=0.6))
    # mutation: one weight bit in the DUT's image -> reported with its coordinates
    # (a weight gated by a zero spike cannot matter: pick a beat whose term 0 is active)
    beat = next(b for b, word in enumerate(case.inputs["i"])
                if (word >> core.in_layout["spikes"].offset) & 1 and b > len(case.inputs["i"]) // 2)
    bad = mutate(case, "i", beat=beat, bit=core.in_layout["weights"].offset + 8 * 3 + 6)
    with pytest.raises(Mismatch, match=r"t=\d y=\d x=\d channels"):
        run_case(b, b.case("pe", bad), vb.run)


def test_real_intlif_on_verilator(layer):
    lif, core = layer["lif"], layer["lane"]
    x = layer["res"].values[lif.inputs[0]][:, 0].numpy()  # [T, C, H, W]
    T, C = x.shape[:2]
    xs = x.reshape(T, C, -1)
    n_pix = xs.shape[2]
    xx = xs.transpose(0, 2, 1).reshape(T, -1)  # neurons ordered (pixel, channel)
    rep = lambda a: np.tile(np.asarray(a), n_pix)  # noqa: E731
    names = [f"c={c} pixel={p}" for p in range(n_pix) for c in range(C)]
    case = lif_case(core, None, x=xx, theta=rep(lif.theta), bias=rep(lif.bias),
                    polarity=rep(lif.polarity), names=names)
    S = layer["res"].values[lif.name][:, 0].numpy().reshape(T, C, -1).transpose(0, 2, 1).reshape(T, -1)
    H = layer["res"].membranes[lif.name][:, 0].numpy().reshape(T, C, -1).transpose(0, 2, 1).reshape(T, -1)
    assert np.array_equal(case.meta["S"], S) and np.array_equal(case.meta["H"], H)
    assert S.sum() > 0
    b, vb = layer["bundle"], layer["vb"]
    run_case(b, b.case("lif", case), lambda i, e: vb.run(i, e, p_valid=0.8, p_ready=0.7, seed=4))


def test_real_attention_in_pysim(layer):
    g, res = layer["graph"], layer["res"]
    att = next((n for n in g.nodes if n.op == "Attention"), None)
    if att is None:
        pytest.skip("the bundled model has no attention layer")
    core = core_for(att, g, layer["bounds"])
    q, k, v = (res.values[i][:, 0].numpy() for i in att.inputs)  # [T, C, H, W]
    T, C = q.shape[:2]
    d = C // att.heads
    want = res.values[att.name][:, 0].numpy()
    for h in range(min(att.heads, 2)):
        def tok(z):
            a = z[:, h * d:(h + 1) * d].reshape(T, d, -1).transpose(0, 2, 1)  # [T, HW, d]
            return a.reshape(-1, d) if att.tokens == "joint" else a[0]
        bits = lambda r: int(sum(int(b) << j for j, b in enumerate(r)))  # noqa: E731
        Q, K, V = tok(q), tok(k), tok(v)
        beats = [pack(core.in_layout, dict(op=OP_KV, clear=int(n == 0), kq=bits(K[n]), v=bits(V[n])))
                 for n in range(len(K))]
        beats += [pack(core.in_layout, dict(op=OP_QUERY, clear=0, kq=bits(Q[n]), v=0)) for n in range(len(Q))]
        y = tok(want)
        case = Case(att.name, {"i": beats}, {"o": [{"y": r.tolist()} for r in y]},
                    {"o": [f"head {h} token {n}" for n in range(len(y))]})
        run_case(core, case, lambda i, e: run_streams(core, i, e, p_valid=0.8, p_ready=0.6))


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_every_node_of_the_bundled_model_has_a_core(layer):
    """core_for configures a core for every node of the compiled bundled model (widths from
    its proved bounds); the analog stem becomes a bit-plane accumulator."""
    g, b = layer["graph"], layer["bounds"]
    kinds = {}
    for n in g.nodes[1:]:
        kinds.setdefault(type(core_for(n, g, b)).__name__, []).append(n.op)
    assert set(kinds) >= {"GatedAccumulator", "BitPlaneAccumulator", "IntLIFLane", "StreamAdd"}
    assert sum(len(v) for v in kinds.values()) == len(g.nodes) - 1
