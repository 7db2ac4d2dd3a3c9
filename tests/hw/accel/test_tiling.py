"""The DDR-resident plan's tiling (hw/accel/tiling.py): bands, groups and chunks cover the
conv exactly, checked by executing the emitted descriptors' data movement and CONV
arithmetic in numpy (the engine's address and padding rules) against the golden
reference; real-size zoo models emit on the production configuration."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from svf_deploy.compiler import ir, reference
from svf_deploy.hw.accel import CI, PRODUCTION, AccelConfig, isa
from svf_deploy.hw.accel.program import emit
from svf_deploy.hw.accel.tiling import band_rows, bands
from svf_deploy.models.errors import HardwareError



def _lif_bundles(x, par, frac, leak, flags):
    """IntLIF over the last axis of ``x`` (``T`` steps; ``par[c] = theta, bias, polarity`` of
    the first axis' channels; flags bit 0 decay_input, bit 1 soft reset): T-bundles."""
    theta, bias, pol = (par[:, j].reshape((-1,) + (1,) * (x.ndim - 2)) for j in range(3))
    v = np.zeros(x.shape[:-1], np.int64)
    out = np.zeros(x.shape[:-1], np.int64)
    for t in range(x.shape[-1]):
        X = pol * (x[..., t] << frac) + bias
        hm = v + ((X - v) >> leak) if flags & 1 else v - (v >> leak) + X
        sp = hm >= theta
        out |= sp.astype(np.int64) << t
        v = np.where(sp, hm - theta, hm) if flags & 2 else np.where(sp, 0, hm)
    return out

def _acc_loads(prog, node: str) -> int:
    """Accumulating LOADs (isa version 7) of ``node``."""
    return sum(1 for op, f, nd in prog.descriptors
               if op == isa.OP_LOAD and nd == node and f.get("mode", 0) & isa.LOAD_ACC)


def run_node(prog, ddr: np.ndarray, node) -> np.ndarray:
    """Execute the LOAD / LOADW / STORE / CONV (with or without the IntLIF on its write-back)
    / EW / LIF / SDHA descriptors of ``node`` (a name,
    or a set of names run in program order: a conv and the nodes fused into it) on ``ddr``
    (``uint8``, modified in place) with the engine's rules: a CONV output row ``oy`` reads
    band row ``oy*stride - pad_y + ky``, column ``ox*stride - pad + kx`` (outside the band:
    zero), input channel ``ci`` uses weight channel ``ci >> plog2`` shifted by ``ci & mask``."""
    cfg = prog.cfg
    P = cfg.p_o
    act = np.zeros(cfg.act_depth, np.int64)        # words as signed ints
    wbuf = np.zeros((cfg.wbuf_depth, P), np.int64)
    names = {node} if isinstance(node, str) else set(node)
    for op, f, nd in prog.descriptors:
        if nd not in names:
            continue
        if op == isa.OP_LOAD:                         # rows runs, strided (isa version 5)
            for r in range(max(1, f.get("rows", 1))):
                d, a = f["ddr"] + r * f.get("ddr_stride", 0), f["addr"] + r * f.get("addr_stride", 0)
                v = ddr[d: d + 4 * f["count"]].view("<i4").astype(np.int64)
                if f.get("mode", 0) & isa.LOAD_ACC:   # accumulating LOAD (isa version 7)
                    v = act[a: a + f["count"]] + v
                act[a: a + f["count"]] = v
        elif op == isa.OP_LOADW:
            raw = ddr[f["ddr"]: f["ddr"] + P * f["count"]].view(np.int8).astype(np.int64)
            wbuf[f["addr"]: f["addr"] + f["count"]] = raw.reshape(-1, P)
        elif op == isa.OP_STORE:
            for r in range(max(1, f.get("rows", 1))):
                d, a = f["ddr"] + r * f.get("ddr_stride", 0), f["addr"] + r * f.get("addr_stride", 0)
                ddr[d: d + 4 * f["count"]] = act[a: a + f["count"]].astype("<i4").view(np.uint8)
        elif op == isa.OP_EW:
            a, b, n = f["a"], f["b"], f["n"]
            if f["mode"] == 0:
                act[f["outb"]: f["outb"] + n] = act[a: a + n] + act[b: b + n]
            else:                                     # requant: s = mem[b + i // per]
                sh = act[b + np.arange(n) // f["per"]]
                act[f["outb"]: f["outb"] + n] = (act[a: a + n] + ((1 << sh) >> 1)) >> sh
        elif op == isa.OP_LIF:                        # binary LIF: ints [c][hw][t] -> bundles [c][hw]
            c, hw, T = f["c"], f["hw"], f["t"]
            x = act[f["inb"]: f["inb"] + c * hw * T].reshape(c, hw, T)
            par = act[f["pb"]: f["pb"] + 3 * c].reshape(c, 3)
            out = _lif_bundles(x, par, f["frac"], f["leak"], f["flags"])
            act[f["outb"]: f["outb"] + c * hw] = out.ravel()
        elif op == isa.OP_CONV:
            cin, h, w, k, s, pad, pad_y = (f[x] for x in ("cin", "h", "w", "k", "stride", "pad", "pad_y"))
            hout, wout, T, plog2 = f["hout"], f["wout"], f["t"], f["plog2"]
            band = np.zeros((cin, max(pad_y + h, s * (hout - 1) + k), max(pad + w, s * (wout - 1) + k)), np.int64)
            # channel ci, row r, column x at inb + ci*hw + r*w + x (hw: the loaded slab's channel stride)
            rows = f["inb"] + np.arange(cin)[:, None, None] * f["hw"] + np.arange(h)[None, :, None] * w
            band[:, pad_y: pad_y + h, pad: pad + w] = act[rows + np.arange(w)[None, None]]
            bits = (band[..., None] >> np.arange(T)) & 1                         # [cin, rows, cols, T]
            for tile, oc0 in enumerate(range(f["oc_start"], f["oc_end"], P)):
                lanes = min(P, f["cout"] - oc0)
                wt = wbuf[f["wb"] + tile * f["wtile"]: f["wb"] + (tile + 1) * f["wtile"], :lanes]
                wt = wt.reshape(cin >> plog2, k, k, lanes)
                acc = np.tile(act[f["biasb"] + oc0: f["biasb"] + oc0 + lanes][:, None, None, None],
                              (1, hout, wout, T))
                for ci in range(cin):
                    wsh = wt[ci >> plog2] << (ci & ((1 << plog2) - 1))            # [k, k, lanes]
                    for ky in range(k):
                        for kx in range(k):
                            tap = bits[ci, ky: ky + s * (hout - 1) + 1: s, kx: kx + s * (wout - 1) + 1: s]
                            acc += wsh[ky, kx][:, None, None, None] * tap[None]
                base = f["outb"] + tile * f["otile"]
                if f.get("lflags", 0) & isa.LFLAG_WB:     # the IntLIF on the write-back (isa 6)
                    acc = ((acc + 2**31) % 2**32) - 2**31  # the 32-bit x_t = sum + bias
                    par = act[f["lifpb"] + 3 * oc0: f["lifpb"] + 3 * (oc0 + lanes)].reshape(lanes, 3)
                    out = _lif_bundles(acc, par, f["frac"], f["leak"], f["lflags"])
                    for o in range(lanes):   # bundle (o, oy, ox) at outb + o*hwout_t + oy*wout + ox
                        act[base + o * f["hwout_t"]: base + o * f["hwout_t"] + hout * wout] = out[o].ravel()
                    continue
                for o in range(lanes):
                    act[base + o * f["hwout_t"]: base + o * f["hwout_t"] + hout * wout * T] = acc[o].ravel()
        elif op == isa.OP_SDHA:
            # isa: K/V channel a, token n at k/v + h*hwd + a*hw + n; Q at q + h*hwd + a*qs + j
            # (j < ntok); y[b, j, t] at outb + h*hwdt + b*hwt + j*T + t; mode bit0 keeps kv
            d, hw, T, nt = f["d"], f["hw"], f["t"], f["ntok"]
            bits = (np.arange(T)[:, None, None])

            def spikes(base, stride, n):
                w = act[base + np.arange(d)[:, None] * stride + np.arange(n)[None]]
                return (w[None] >> bits) & 1                                        # [T, d, n]
            for h in range(f["heads"]):
                if not f["mode"] & 1:
                    kv = np.einsum("tan,tbn->ab", 2 * spikes(f["k"] + h * f["hwd"], hw, hw) - 1,
                                   spikes(f["v"] + h * f["hwd"], hw, hw))
                if not f["mode"] & 2:
                    y = np.einsum("tan,ab->bnt", 2 * spikes(f["q"] + h * f["hwd"], f["qs"], nt) - 1, kv)
                    addr = (f["outb"] + h * f["hwdt"] + np.arange(d)[:, None, None] * f["hwt"]
                            + np.arange(nt)[None, :, None] * T + np.arange(T)[None, None])
                    act[addr] = y
    return ddr


def _graph(cin, H, W, c1, k, s, pad, T, rng):
    x = ir.Input("input", (), shape=(1, H, W))
    c0 = ir.Conv("c0", ("input",), weight=rng.integers(-3, 4, (cin, 1, 1, 1)), out_scale=np.ones(cin))
    l0 = ir.IntLIF("l0", ("c0",), theta=np.full(cin, 200), bias=np.zeros(cin, np.int64),
                   polarity=np.ones(cin, np.int64))
    conv = ir.Conv("c1", ("l0",), weight=rng.integers(-127, 128, (c1, cin, k, k)),
                   bias=rng.integers(-50, 50, c1), stride=s, padding=pad, out_scale=np.ones(c1))
    return ir.Graph((x, c0, l0, conv), ("c1",), "integer", {"T": T})


def check_conv_tiling(graph, prog, T, seed=0):
    frames = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (T, 1) + graph.input.shape) / 255.0)
    golden = reference.run(graph, frames.float(), record=True)
    ddr = prog.ddr_image()
    for name in ("l0",):                             # the conv's input as the engine stored it
        v = golden.values[name][:, 0].numpy().astype(np.int64)
        b = sum(v[t].astype(np.uint32) << t for t in range(T)).ravel().astype(np.uint32)
        ddr[prog.tensors[name].ddr: prog.tensors[name].ddr + 4 * b.size] = b.view(np.uint8)
    run_node(prog, ddr, "c1")
    got = prog.read_tensor(ddr, "c1")
    want = golden.values["c1"][:, 0].numpy()
    assert np.array_equal(got, want)
    return got


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.integers(1, 12), H=st.integers(1, 13), W=st.integers(1, 9), c1=st.integers(1, 40),
       k=st.sampled_from([1, 3, 5, 7]), s=st.integers(1, 2), pad=st.integers(0, 3),
       act=st.integers(300, 3000), wbuf=st.integers(49, 400), seed=st.integers(0, 99))
@example(cin=4, H=8, W=3, c1=1, k=1, s=1, pad=0, act=300, wbuf=49, seed=0)   # a band height with no slab
def test_bands_groups_and_chunks_compute_the_whole_conv(cin, H, W, c1, k, s, pad, act, wbuf, seed):
    pad = min(pad, k // 2)
    if H + 2 * pad < k or W + 2 * pad < k:
        return
    T = 4
    g = _graph(cin, H, W, c1, k, s, pad, T, np.random.default_rng(seed))
    try:
        prog = emit(g, CI, plan="ddr", act_words=act, wbuf_words=wbuf)
    except HardwareError as e:                        # too small a budget: refused by name
        assert "c1" in str(e) or "c0" in str(e) or "l0" in str(e)
        assert "act_depth" in str(e) or "wbuf_depth" in str(e)
        return
    convs = [(f, prog.windows[i]) for i, (op, f, nd) in enumerate(prog.descriptors) if op == isa.OP_CONV and nd == "c1"]
    # per input-channel group, the tiles cover every output element exactly once
    _, ho, wo = g.types["c1"].shape
    cover = {}
    for f, (ch0, r0, Hf, x0, Wf) in convs:
        assert (Hf, Wf) == (H, W) and 0 <= r0 and r0 + f["h"] <= H and 0 <= x0 and x0 + f["w"] <= W
        assert f["pad_y"] <= pad and f["pad"] <= pad
        y0, c0 = (r0 - f["pad_y"] + pad) // s, (x0 - f["pad"] + pad) // s    # the tile's output origin
        cv = cover.setdefault(ch0, np.zeros((c1, ho, wo), np.int64))
        cv[f["oc_start"]: f["oc_end"], y0: y0 + f["hout"], c0: c0 + f["wout"]] += 1
    assert all((cv == 1).all() for cv in cover.values())
    assert prog.act_peak <= act
    check_conv_tiling(g, prog, T, seed)


def test_band_arithmetic():
    # 3x3 stride 2 pad 1 over 9 rows (5 output rows) in bands of 2
    assert bands(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert [band_rows(y0, y1, 9, 3, 2, 1) for y0, y1 in bands(5, 2)] == [(0, 4, 1), (3, 5, 0), (7, 2, 0)]
    # a band needing rows past the frame's bottom clips them (they are padding)
    assert band_rows(4, 5, 9, 3, 2, 1) == (7, 2, 0)


def test_ddr_plan_of_a_multi_group_conv_matches_the_reference():
    g = _graph(12, 11, 7, 40, 3, 1, 1, 4, np.random.default_rng(3))
    prog = emit(g, CI, plan="ddr", act_words=1400, wbuf_words=45)    # 5 channels per group
    convs = [f for op, f, nd in prog.descriptors if op == isa.OP_CONV and nd == "c1"]
    assert len({f["cin"] for f in convs}) >= 1 and len(convs) > 6
    # partial sums added by accumulating LOADs onto the tile (isa 7), no EW pass
    assert _acc_loads(prog, "c1") > 0
    assert not any(op == isa.OP_EW and nd == "c1" for op, f, nd in prog.descriptors)
    assert len({f["pad_y"] for f in convs}) == 2                      # top band padded, others not
    check_conv_tiling(g, prog, 4)
    # one flipped weight bit of the DDR image is seen
    ld = next(f for op, f, nd in prog.descriptors if op == isa.OP_LOADW and nd == "c1")
    prog.image[ld["ddr"]] ^= 0x40
    with pytest.raises(AssertionError):
        check_conv_tiling(g, prog, 4)


@pytest.mark.parametrize("s", [1, 2])
def test_column_tiles_when_one_row_does_not_fit(s):
    g = _graph(3, 6, 21, 16, 3, s, 1, 4, np.random.default_rng(5))
    prog = emit(g, CI, plan="ddr", act_words=420)
    convs = [f for op, f, nd in prog.descriptors if op == isa.OP_CONV and nd == "c1"]
    assert len({f["pad"] for f in convs}) == 2 and max(f["wout"] for f in convs) < g.types["c1"].shape[2]
    check_conv_tiling(g, prog, 4)


def test_refuses_a_layer_that_cannot_fit_with_the_words_needed():
    g = _graph(4, 9, 9, 8, 3, 1, 1, 4, np.random.default_rng(0))
    with pytest.raises(HardwareError, match=r"Conv 'c[01]': needs \d+ activation words .*holds 60.*larger act_depth"):
        emit(g, CI, plan="ddr", act_words=60)
    with pytest.raises(HardwareError, match="unknown memory plan"):
        emit(g, CI, plan="disk")


@pytest.fixture(scope="module")
def tiny64():
    """svf-tiny at 64x64, T=4 (random weights): its live set does not fit the CI buffer."""
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model
    from svf_deploy.models.svf import build_model

    torch.manual_seed(0)
    m = build_model("svf-tiny", img_size=64, T=4).eval()
    g, _ = compile_model(m, CompileOptions(), frame_shape=(m.cfg.in_channels, 64, 64))
    frames = torch.rand(4, 1, m.cfg.in_channels, 64, 64)
    return g, frames


@pytest.mark.parametrize("budget", [{}, {"act_words": 6000, "wbuf_words": 512}], ids=["ci", "ci-6000-words"])
def test_zoo_model_needs_and_gets_the_ddr_plan_every_conv_exact(tiny64, budget):
    g, frames = tiny64
    with pytest.raises(HardwareError, match="activation buffer holds 131072"):
        emit(g, CI, plan="chip")
    prog = emit(g, CI, store_ints=True, **budget)
    assert prog.plan == "ddr" and prog.manifest()["plan"] == "ddr"
    assert prog.act_peak <= budget.get("act_words", CI.act_depth)
    assert emit(g, PRODUCTION).plan == "ddr"
    if budget:                                        # row bands and column tiles in play
        cf = [f for op, f, _ in prog.descriptors if op == isa.OP_CONV]
        assert any(f["pad_y"] != f["pad"] for f in cf) and any(f["h"] < 64 and f["hout"] > 1 for f in cf)
    golden = reference.run(g, frames, record=True)
    codes = golden.values[g.input.name][:, 0].numpy()
    ddr = prog.ddr_image(codes)
    T = prog.T
    for name in prog.stored:                          # every spike map as the engine stores it
        if prog.tensors[name].layout == "bundles":
            v = golden.values[name][:, 0].numpy().astype(np.int64)
            b = sum(v[t].astype(np.uint32) << t for t in range(T)).ravel().astype(np.uint32)
            ddr[prog.tensors[name].ddr: prog.tensors[name].ddr + 4 * b.size] = b.view(np.uint8)
    convs = [n.name for n in g.nodes if isinstance(n, (ir.Conv, ir.Linear))]
    for name in convs:                                # each conv's tiles rebuild its whole output
        run_node(prog, ddr, name)
        assert np.array_equal(prog.read_tensor(ddr, name), golden.values[name][:, 0].numpy().reshape(
            (T,) + prog.tensors[name].shape)), name


@pytest.mark.parametrize("tokens", [None, 5, 3], ids=["whole-heads", "ranges-4", "ranges-3-and-1"])
def test_sdha_token_ranges_rebuild_the_attention(tiny64, tokens):
    """Per head one SDHA builds kv from K and V (mode 2), SDHAs over token ranges reuse it
    (mode 1) with each Q channel's range loaded and each output channel's range stored on
    its own: executed in numpy by the isa's address rules, every attention output equals
    the reference, for balanced ranges (16 tokens: 4 x 4) and a short last one (5 x 3 + 1)."""
    g, frames = tiny64
    prog = emit(g, CI, plan="ddr", store_ints=True, sdha_tokens=tokens)
    atts = [n for n in g.nodes if isinstance(n, ir.Attention)]
    golden = reference.run(g, frames, record=True)
    ddr = prog.ddr_image(golden.values[g.input.name][:, 0].numpy())
    T = prog.T
    for att in atts:
        for name in att.inputs:                       # q, k, v spike maps as the engine stored them
            v = golden.values[name][:, 0].numpy().astype(np.int64)
            b = sum(v[t].astype(np.uint32) << t for t in range(T)).ravel().astype(np.uint32)
            ddr[prog.tensors[name].ddr: prog.tensors[name].ddr + 4 * b.size] = b.view(np.uint8)
        sd = [f for op, f, nd in prog.descriptors if op == isa.OP_SDHA and nd == att.name]
        want = {None: [(0, 16)], 5: [(2, 0)] + 4 * [(1, 4)], 3: [(2, 0)] + 5 * [(1, 3)] + [(1, 1)]}[tokens]
        assert [(f["mode"], f["ntok"]) for f in sd] == (want if tokens is None else att.heads * want)
        run_node(prog, ddr, att.name)
        assert np.array_equal(prog.read_tensor(ddr, att.name), golden.values[att.name][:, 0].numpy().reshape(
            (T,) + prog.tensors[att.name].shape)), att.name
    with pytest.raises(HardwareError, match="sdha_tokens must be a positive number"):
        emit(g, CI, plan="ddr", sdha_tokens=0)


@pytest.mark.parametrize("tokens", [None, 5, 3], ids=["whole-heads", "ranges-4", "ranges-2"])
def test_sdha_output_tiles_run_their_lif_in_the_buffer(tiny64, tokens):
    """SDHA -> attn_lif (the SDHA's only reader) in the DDR plan: the LIF runs on each SDHA
    output tile in the buffer and only its spikes are stored (no integer output, no reload);
    token ranges are a multiple of the beat's words so that each channel's spike store
    starts on a beat. Executed in numpy by the isa's rules on random q/k/v spike maps, every
    attn_lif spike map equals numpy's attention and LIF; a flipped LIF threshold bit is seen."""
    import dataclasses

    g, _ = tiny64
    atts = [n for n in g.nodes if isinstance(n, ir.Attention)]
    lifs = {a.name: next(n for n in g.nodes if n.inputs == (a.name,)) for a in atts}
    # thresholds of a few units, so that the LIFs fire on random attention outputs
    g = dataclasses.replace(g, nodes=tuple(dataclasses.replace(n, theta=np.full_like(n.theta, 3 << n.frac_bits))
                                           if n in lifs.values() else n for n in g.nodes))
    lifs = {a: g.node(x.name) for a, x in lifs.items()}
    prog = emit(g, CI, plan="ddr", sdha_tokens=tokens)
    T = prog.T
    assert atts and {x.name for x in lifs.values()} <= set(prog.fused)
    for a in atts:
        assert not any(op == isa.OP_STORE and nd == a.name for op, f, nd in prog.descriptors)
        sd = [f for op, f, nd in prog.descriptors if op == isa.OP_SDHA and nd == a.name and f["mode"] != 2]
        assert all(f["ntok"] % CI.units_per_beat == 0 for f in sd)
        assert len(sd) == {None: 1, 5: 4 * a.heads, 3: 8 * a.heads}[tokens]
    rng = np.random.default_rng(3)
    qkv = {x: rng.integers(0, 2**T, prog.tensors[x].words, dtype=np.int64) for a in atts for x in a.inputs}

    def run(ddr):
        for att in atts:
            for name in att.inputs:
                ddr[prog.tensors[name].ddr: prog.tensors[name].ddr + 4 * qkv[name].size] = \
                    qkv[name].astype(np.uint32).view(np.uint8)
            run_node(prog, ddr, {att.name, lifs[att.name].name})
        return ddr

    def words(ddr, name):
        t_ = prog.tensors[name]
        return ddr[t_.ddr: t_.ddr + 4 * t_.words].view("<u4").astype(np.int64)

    ddr = run(prog.ddr_image())
    for att in atts:
        lif = lifs[att.name]
        c, h, w = g.types[att.name].shape
        d, hw = c // att.heads, h * w
        q, k, v = (((qkv[x].reshape(c, hw)[None] >> np.arange(T)[:, None, None]) & 1) for x in att.inputs)
        y = np.zeros((c, hw, T), np.int64)
        for hd in range(att.heads):
            sl = slice(hd * d, (hd + 1) * d)
            kv = np.einsum("tan,tbn->ab", 2 * k[:, sl] - 1, v[:, sl])
            y[sl] = np.einsum("tan,ab->bnt", 2 * q[:, sl] - 1, kv)
        par = np.stack([lif.theta, lif.bias, lif.polarity], 1).astype(np.int64)
        flags = int(lif.decay_input) | (2 if lif.reset == "soft" else 0)
        want = _lif_bundles(y, par, lif.frac_bits, lif.leak_shift, flags).ravel()
        assert 0.05 < np.mean(want != 0) < 0.95, lif.name               # some fire, not all
        assert np.array_equal(words(ddr, lif.name), want), lif.name
    lif = next(iter(lifs.values()))
    ld = next(f for op, f, nd in prog.descriptors if op == isa.OP_LOAD and nd == lif.name)   # its parameters
    bad = prog.ddr_image()
    bad[ld["ddr"] + 1] ^= 1                           # theta of channel 0, bit 8
    assert not np.array_equal(words(run(bad), lif.name), words(ddr, lif.name))


def _chain_graph(c, H, W, k, T, rng, requant=True, lif=False):
    """input -> c0 (int, two readers) -> l0 -> c1 -> [r1 requant] -> a1 = c0 + (r1 | c1)
    [-> l1 LIF]: the output is a1, or l1."""
    x = ir.Input("input", (), shape=(1, H, W))
    c0 = ir.Conv("c0", ("input",), weight=rng.integers(-3, 4, (c, 1, 1, 1)), out_scale=np.ones(c))
    l0 = ir.IntLIF("l0", ("c0",), theta=np.full(c, 200), bias=np.zeros(c, np.int64), polarity=np.ones(c, np.int64))
    shift = rng.integers(0, 4, c) if requant else np.zeros(c, np.int64)
    c1 = ir.Conv("c1", ("l0",), weight=rng.integers(-127, 128, (c, c, k, k)), bias=rng.integers(-50, 50, c),
                 padding=k // 2, out_scale=2.0 ** -shift)     # the requant lands it on c0's scale
    nodes = [x, c0, l0, c1]
    if requant:
        nodes.append(ir.Requant("r1", ("c1",), shift=shift))
    nodes.append(ir.Add("a1", ("c0", "r1" if requant else "c1")))
    if lif:
        nodes.append(ir.IntLIF("l1", ("a1",), theta=rng.integers(50, 400, c), bias=rng.integers(-20, 20, c),
                               polarity=np.ones(c, np.int64)))
    return ir.Graph(tuple(nodes), ("l1" if lif else "a1",), "integer", {"T": T})


SMALL = {"act_words": 900, "wbuf_words": 30}


@pytest.mark.parametrize("requant,lif,budget,T", [(True, False, {}, 4), (True, False, SMALL, 4),
                                                  (False, False, SMALL, 4), (True, True, {}, 4),
                                                  (False, True, SMALL, 4), (True, False, {}, 2)],
                         ids=["requant-add", "requant-add-groups-bands", "add-groups-bands",
                              "requant-add-lif", "add-lif-groups-bands", "requant-add-T2-ew"])
def test_requant_add_and_lif_run_on_the_conv_tile(requant, lif, budget, T):
    """conv -> Requant -> Add(earlier map) [-> IntLIF]: the shift (EW mode 1), the residual
    add (accumulating LOADs of the other operand onto the tile; with ``T`` not a multiple of
    the beat's words, whose runs then do not start on beats, the operand's tile loaded beside
    it and an EW mode 0) and the LIF run on each conv tile in the buffer; only the chain's
    last map (or, with the LIF as its only reader, just the spikes) is stored: equal to the
    reference, with input-channel groups and bands too. The requant's map is never stored,
    the conv's only as partial sums. A flipped requant shift is seen."""
    g = _chain_graph(6, 9, 8, 3, T, np.random.default_rng(4), requant, lif)
    prog = emit(g, CI, plan="ddr", **budget)
    chain = {"c1", "a1"} | ({"r1"} if requant else set()) | ({"l1"} if lif else set())
    assert chain - {"c1"} <= set(prog.fused)
    groups = _acc_loads(prog, "c1") > 0                               # partial sums
    stores = {nd for op, f, nd in prog.descriptors if op == isa.OP_STORE}
    assert stores == {"c0", "l0", "l1" if lif else "a1"} | ({"c1"} if groups else set())
    ops = {f["mode"] for op, f, nd in prog.descriptors if op == isa.OP_EW and nd in chain - {"c1"}}
    if T % CI.units_per_beat == 0:                    # the add: accumulating LOADs, no EW add
        assert ops == ({1} if requant else set()) and _acc_loads(prog, "a1") > 0
    else:
        assert ops == ({0, 1} if requant else {0}) and _acc_loads(prog, "a1") == 0
    if budget:                                        # row bands and input-channel groups in play
        cf = [f for op, f, nd in prog.descriptors if op == isa.OP_CONV and nd == "c1"]
        assert len({f["pad_y"] for f in cf}) > 1 and groups
    frames = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (T, 1) + g.input.shape) / 255.0)
    golden = reference.run(g, frames.float(), record=True)
    out = "l1" if lif else "a1"
    want = golden.values[out][:, 0].numpy()
    if lif:
        assert 0 < want.mean() < 1                    # some spikes, not all
    v = golden.values["l0"][:, 0].numpy().astype(np.int64)
    spikes = sum(v[t].astype(np.uint32) << t for t in range(T)).ravel().astype(np.uint32).view(np.uint8)

    def run(image):
        ddr = prog.ddr_image(golden.values["input"][:, 0].numpy()) if image is None else image
        ddr[prog.tensors["l0"].ddr: prog.tensors["l0"].ddr + spikes.size] = spikes
        run_node(prog, ddr, "c0")                     # the residual, in DDR scratch
        run_node(prog, ddr, chain)
        return prog.read_tensor(ddr, out)

    assert np.array_equal(run(None), want)
    # c0 has two readers (l0, a1): l0 runs on c0's tiles, which are stored for a1 as well
    # (run(None) above reads them back for the add)
    assert "l0" in prog.fused and any(op == isa.OP_LIF and nd == "l0" for op, f, nd in prog.descriptors)
    assert not [f for op, f, nd in prog.descriptors if op == isa.OP_LOAD and nd == "l0"
                and f["ddr"] >= prog.regions["outputs"][0]]            # only its parameters are loaded
    ddr0 = prog.ddr_image(golden.values["input"][:, 0].numpy())
    run_node(prog, ddr0, {"c0", "l0"})
    assert np.array_equal(prog.read_tensor(ddr0, "l0"), golden.values["l0"][:, 0].numpy().reshape(
        (T,) + prog.tensors["l0"].shape))
    if requant:                                       # mutation: one flipped requant shift bit
        ddr = prog.ddr_image(golden.values["input"][:, 0].numpy())
        ld = next(f for op, f, nd in prog.descriptors if op == isa.OP_LOAD and nd == "r1")
        ddr[ld["ddr"]] ^= 1
        assert not np.array_equal(run(ddr), want)


@pytest.mark.parametrize("shape,budget,order", [((4, 12, 8, 40, 7, 1, 3), (1500, 200), "weights"),
                                                ((8, 16, 8, 64, 3, 1, 1), (3000, 80), "input")],
                         ids=["7x7-weights-stationary", "3x3-input-stationary"])
def test_slabs_load_the_input_once_for_several_output_tiles(shape, budget, order):
    """An input slab loaded once serves several sub-band CONVs (``inb`` at the sub-band's
    first row, channel stride ``hw`` = the slab's rows x width, more than ``h*w``); with
    the input-stationary order every output chunk runs on the loaded slab (a LOADW per
    chunk and slab) and each input row is read about once. Exact against the reference."""
    cin, H, W, c1, k, s, pad = shape
    g = _graph(cin, H, W, c1, k, s, pad, 4, np.random.default_rng(2))
    prog = emit(g, CI, plan="ddr", act_words=budget[0], wbuf_words=budget[1])
    cf = [f for op, f, nd in prog.descriptors if op == isa.OP_CONV and nd == "c1"]
    assert sum(f["hw"] > f["h"] * f["w"] for f in cf) >= 2
    chunks = len({f["oc_start"] for f in cf})
    loadw = sum(1 for op, f, nd in prog.descriptors if op == isa.OP_LOADW and nd == "c1")
    units = sum(f["count"] for op, f, nd in prog.descriptors if op == isa.OP_LOAD and nd == "c1")
    if order == "input":
        assert loadw > chunks and units < 1.5 * cin * H * W
    else:
        assert loadw == chunks and units < chunks * 2.5 * cin * H * W     # per chunk, rows read ~2x (not 7x)
    check_conv_tiling(g, prog, 4)


@pytest.mark.parametrize("T,budget", [(4, SMALL | {"act_words": 600}), (4, {}), (8, {})],
                         ids=["T4-bands", "T4-whole", "T8-old-path"])
def test_conv_lif_on_the_write_back_in_the_ddr_plan(T, budget):
    """conv -> IntLIF (its only reader) with one input-channel group and ``T <= P_t``: one
    CONV with ``LFLAG_WB`` writes the spike tile, no ``LIF`` descriptor, no integer tile
    (the numpy engine rules give the reference's spikes). ``T > P_t`` keeps the LIF
    descriptor on the integer tile. A flipped theta bit of a firing channel is seen."""
    rng = np.random.default_rng(7)
    cin, c = 3, 20
    x = ir.Input("input", (), shape=(1, 9, 8))
    c0 = ir.Conv("c0", ("input",), weight=rng.integers(-3, 4, (cin, 1, 1, 1)), out_scale=np.ones(cin))
    l0 = ir.IntLIF("l0", ("c0",), theta=np.full(cin, 200), bias=np.zeros(cin, np.int64),
                   polarity=np.ones(cin, np.int64))
    c1 = ir.Conv("c1", ("l0",), weight=rng.integers(-127, 128, (c, cin, 3, 3)), bias=rng.integers(-50, 50, c),
                 padding=1, out_scale=np.ones(c))
    l1 = ir.IntLIF("l1", ("c1",), theta=rng.integers(50, 400, c), bias=rng.integers(-20, 20, c),
                   polarity=np.where(np.arange(c) % 3 == 0, -1, 1), decay_input=True, reset="soft", leak_shift=1)
    g = ir.Graph((x, c0, l0, c1, l1), ("l1",), "integer", {"T": T})
    prog = emit(g, CI, plan="ddr", **budget)
    cf = [f for op, f, nd in prog.descriptors if op == isa.OP_CONV and nd == "c1"]
    lifs = [f for op, f, nd in prog.descriptors if op == isa.OP_LIF and nd == "l1"]
    assert "l1" in prog.fused
    if T <= CI.p_t:
        assert lifs == [] and all(f["lflags"] == 3 | isa.LFLAG_WB for f in cf)
        assert all(f["hwout_t"] == f["hout"] * f["wout"] for f in cf)
        if budget:
            assert len(cf) > 2 and prog.act_peak <= 600            # row bands of spike tiles
    else:
        assert lifs and not any(f.get("lflags", 0) for f in cf)
    frames = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (T, 1) + g.input.shape) / 255.0)
    golden = reference.run(g, frames.float(), record=True)
    want = golden.values["l1"][:, 0].numpy()
    assert 0.05 < want.mean() < 0.95
    v = golden.values["l0"][:, 0].numpy().astype(np.int64)
    spikes = sum(v[t].astype(np.uint32) << t for t in range(T)).ravel().astype(np.uint32).view(np.uint8)

    def run(flip=None):
        ddr = prog.ddr_image()
        ddr[prog.tensors["l0"].ddr: prog.tensors["l0"].ddr + spikes.size] = spikes
        if flip is not None:                                        # theta of channel flip, bit 12
            ld = next(f for op, f, nd in prog.descriptors if op == isa.OP_LOAD and nd == "l1")
            ddr[ld["ddr"] + 4 * 3 * flip + 1] ^= 0x10
        run_node(prog, ddr, {"c1", "l1"})
        return prog.read_tensor(ddr, "l1")

    assert np.array_equal(run(), want)
    fire = int(np.flatnonzero(want.sum((0, 2, 3)))[0])
    assert not np.array_equal(run(fire), want)
