"""The whole engine under cocotb + Verilator on the bundled model (CI configuration).

One Verilator build (cached by the Verilog's hash), then runs of the golden clip: every
spike map and the output must equal the golden reference, the engine's CYCLES register
must equal the analytic cycle model, and a single flipped weight bit must be caught.
"""

import dataclasses

import numpy as np
import pytest

from svf_deploy.compiler import ir
from svf_deploy.hw.accel import CI, PRODUCTION, AccelConfig, isa
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
    assert r["cycles"] == r["predicted_cycles"]        # the model is exact
    # the CONV unit skips the terms whose T-bundles are all zero (CI: scan 4): the clip's
    # count is the model's from its bundles, well below the dense bound (every term issued)
    prog = emit(graph, CI)
    src = {graph.node(nd).inputs[0] for op, _, nd in prog.descriptors if op == isa.OP_CONV}
    modelled, _ = program_cycles(prog, inputs=conv_inputs(prog, graph, {k: golden.values[k].numpy() for k in src}))
    dense, _ = program_cycles(prog)
    assert r["cycles"] == modelled and r["dense_bound_cycles"] == dense
    assert CI.scan == 4 and modelled < 0.85 * dense
    assert r["verilator_cycles_per_s"] > 0
    # conv -> IntLIF pairs ran as CONVs with the LIF on the write-back (isa 6), no LIF descriptor
    wb = {nd for op, f, nd in prog.descriptors if op == isa.OP_CONV and f.get("lflags", 0) & isa.LFLAG_WB}
    assert len(wb) >= 10 and len(prog.fused) == len(wb)
    assert not {nd for op, _, nd in prog.descriptors if op == isa.OP_LIF} & set(prog.fused)


def test_one_flipped_theta_bit_of_a_write_back_lif_is_caught(bundled):
    """Bit 30 of theta of a firing channel of an IntLIF run on its conv's write-back,
    flipped in the parameter image: that channel can no longer fire, the RTL run must
    differ from the golden reference."""
    graph, golden, frames = bundled
    prog = emit(graph, CI)
    f, conv = next((f, nd) for op, f, nd in prog.descriptors
                   if op == isa.OP_CONV and f.get("lflags", 0) & isa.LFLAG_WB)
    lif = next(n for n in graph.nodes if isinstance(n, ir.IntLIF) and n.inputs == (conv,))
    c = int(np.flatnonzero(golden.values[lif.name].numpy()[:, 0].reshape(prog.T, lif.theta.size, -1).sum((0, 2)))[0])

    def flip(prog, image):
        img = image.copy()
        byte = prog.regions["params"][0] + 4 * (f["lifpb"] + 3 * c) + 3
        assert img[byte - 3: byte + 1].view("<i4")[0] == lif.theta[c]
        img[byte] ^= 0x40
        return img

    with pytest.raises(HardwareError, match=r"RTL verification failed: \d+ of \d+ tensors differ.*engine"):
        verify_rtl(graph, frames, CI, image_hook=flip)


#: the ddr plan on the CI engine, tiles limited to 8192 activation words and 1024 weight
#: words: several row bands, output-channel chunks and input-channel groups per layer
#: (the bit-exact run below takes 2048 words: column tiles too)
DDR_BUDGET = {"plan": "ddr", "act_words": 8192, "wbuf_words": 1024}


def test_ddr_plan_bit_exact_and_cycle_model_exact(bundled):
    graph, golden, frames = bundled
    budget = DDR_BUDGET | {"act_words": 1536}        # column tiles too
    prog = emit(graph, CI, **budget)
    convs = [(f, nd) for op, f, nd in prog.descriptors if op == isa.OP_CONV]
    per_node = {}
    for f, nd in convs:
        per_node.setdefault(nd, []).append(f)
    assert prog.plan == "ddr" and prog.act_peak <= 1536
    assert sum(1 for fs in per_node.values() if len({f["pad_y"] for f in fs}) > 1) >= 3      # row bands
    assert sum(1 for nd, fs in per_node.items() if isinstance(graph.node(nd), ir.Conv)
               and min(f["wout"] for f in fs) < graph.types[nd].shape[2]) >= 3             # column tiles
    assert sum(1 for f, _ in convs if f["hw"] > f["h"] * f["w"]) >= 10                     # slabs
    dma = [f for op, f, _ in prog.descriptors if op in (isa.OP_LOAD, isa.OP_STORE)]
    assert any(f.get("rows", 1) > 1 and f["addr_stride"] < 0 for f in dma)                 # 2-D, down
    assert any(f.get("rows", 1) > 1 and f["addr_stride"] > 0 for f in dma)                 # 2-D, up
    assert sum(1 for fs in per_node.values() if len({f["oc_start"] for f in fs}) > 1) >= 10  # channel chunks
    assert any(op == isa.OP_LOAD and f.get("mode", 0) & isa.LOAD_ACC and graph.node(nd).op == "Conv"
               for op, f, nd in prog.descriptors)            # groups: partial sums by accumulating LOADs
    assert any(op == isa.OP_LOAD and f.get("mode", 0) & isa.LOAD_ACC and graph.node(nd).op == "Add"
               for op, f, nd in prog.descriptors)            # residual adds too
    assert len(prog.fused) >= 10                      # conv -> LIF on the tile, spikes only to DDR
    # conv -> Requant -> Add(residual) on the tile too: only the add's map goes to DDR
    assert {graph.node(x).op for x in prog.fused} == {"IntLIF", "Requant", "Add"}
    r = verify_rtl(graph, frames, CI, **budget)
    spikes = sum(1 for n in graph.nodes if graph.types[n.name].kind == "spike")
    assert r["plan"] == "ddr" and r["compared"] == spikes + 1 and r["mismatches"] == 0
    assert r["values"] > 160_000
    assert r["cycles"] == r["predicted_cycles"] < 0.9 * r["dense_bound_cycles"]


def test_ddr_plan_at_a_ddr_latency_bit_exact_and_cycle_model_exact(bundled):
    """The golden clip on the DDR-resident plan (the most DMA: tiles, 2-D runs, LOADW
    chunks, descriptor fetches) with the RAM answering each burst 24 cycles late: every
    stored tensor equals the golden reference and CYCLES equals the model at that latency;
    with 8 bursts in flight the latency adds under a quarter of what it adds with one
    (paid per burst)."""
    from svf_deploy.hw.accel.cycles import conv_inputs
    from svf_deploy.sim import accel as simaccel
    from svf_deploy.targets.zcu104 import golden_values

    graph, golden, frames = bundled
    prog = emit(graph, CI, **(DDR_BUDGET | {"act_words": 2048}))
    conv_src = [graph.node(nd).inputs[0] for op, _, nd in prog.descriptors if op == isa.OP_CONV]
    values = golden_values(graph, frames, list(prog.stored) + conv_src)
    codes = values[graph.input.name][:, 0]
    L = 24
    run = simaccel.run(prog, codes, simaccel.build(CI), ddr_latency=L)
    cmp = simaccel.compare(prog, run.tensors, values)
    assert cmp.compared == len(prog.stored) and cmp.mismatches == 0, cmp.first
    inputs = conv_inputs(prog, graph, values)
    assert run.cycles == program_cycles(prog, ddr_latency=L, inputs=inputs)[0]
    one = dataclasses.replace(prog, cfg=dataclasses.replace(CI, outstanding=1))
    added = run.cycles - program_cycles(prog, inputs=inputs)[0]
    added_one = program_cycles(one, ddr_latency=L, inputs=inputs)[0] - program_cycles(one, inputs=inputs)[0]
    assert 0 < added < 0.25 * added_one


@pytest.mark.parametrize("plan", [{}, DDR_BUDGET], ids=["chip", "ddr"])
def test_one_flipped_weight_bit_is_caught(bundled, plan):
    graph, golden, frames = bundled
    conv = next(n for n in graph.nodes if isinstance(n, ir.Conv))

    def flip(prog, image):
        ld = next(f for op, f, node in prog.descriptors if op == isa.OP_LOADW and node == conv.name)
        img = image.copy()
        k = conv.weight.shape[2]
        c = k // 2
        byte = ld["ddr"] + (c * k + c) * CI.p_o     # W[0, 0, c, c], lane 0 of tile 0 (group 0)
        assert np.int8(img[byte]) == conv.weight[0, 0, c, c]
        img[byte] ^= 0x80
        return img

    with pytest.raises(HardwareError, match=r"RTL verification failed: \d+ of \d+ tensors differ.*engine"):
        verify_rtl(graph, frames, CI, image_hook=flip, **plan)


@pytest.mark.slow
def test_production_configuration_bit_exact(bundled):
    graph, golden, frames = bundled
    r = verify_rtl(graph, frames, PRODUCTION)
    assert r["mismatches"] == 0 and r["cycles"] == r["predicted_cycles"]


@pytest.mark.slow
def test_scan_2_engine_is_the_dense_engine(bundled):
    """``scan = 2`` (one block per pair): every group takes ``ceil(terms/2) + 3`` cycles
    whatever the spikes; the clip runs bit-exact in exactly the dense bound."""
    import dataclasses

    graph, golden, frames = bundled
    r = verify_rtl(graph, frames, dataclasses.replace(CI, scan=2))
    assert r["mismatches"] == 0 and r["cycles"] == r["predicted_cycles"] == r["dense_bound_cycles"]


def _with_word_loaded_before(prog, index, act_addr, word):
    """``prog`` with a 1-word ``LOAD`` (DDR: the program region's slack) inserted before
    descriptor ``index``: it overwrites activation word ``act_addr`` with ``word``."""
    import dataclasses

    descs = [(op, dict(f), node) for op, f, node in prog.descriptors]
    slack = (len(descs) + 1) * isa.DESC_BYTES          # first byte after the new program
    assert slack + 4 <= prog.regions[next(r for r in prog.regions if r != "program")][0]
    descs.insert(index, (isa.OP_LOAD, {"ddr": slack, "addr": act_addr, "count": 1}, "mutation"))
    descs[0][1]["n_desc"] = len(descs)
    relocs = [(i + (i >= index), j) for i, j in prog.relocs] + [(index, isa.field_index(isa.OP_LOAD, "ddr"))]
    new = dataclasses.replace(prog, descriptors=descs, relocs=relocs)
    return new, slack


@pytest.mark.parametrize("p_t,t", [(4, 0), (3, 3)], ids=["ci", "p_t-3-second-chunk"])
def test_one_flipped_q_spike_bit_at_the_sdha_is_caught(bundled, p_t, t):
    """One T-bundle word of the SDHA's Q input is overwritten just before the SDHA
    descriptor: with its own value every tensor matches (and CYCLES equals the model); with
    one spike bit flipped the SDHA output (stored with ``store_ints``) must differ, while
    the Q spike map itself, stored before, still matches. With ``P_t = 3 < T = 4`` phase 2
    runs in chunks of 3 and 1 steps, and the flipped step 3 is the second chunk's."""
    import dataclasses

    from svf_deploy.sim import accel as simaccel

    graph, golden, frames = bundled
    cfg = CI if p_t == CI.p_t else dataclasses.replace(CI, name=f"ci_pt{p_t}", p_t=p_t)
    prog = emit(graph, cfg, store_ints=True)
    index, f, node = next((i, f, nd) for i, (op, f, nd) in enumerate(prog.descriptors) if op == isa.OP_SDHA)
    att = graph.node(node)
    q, k, v = (golden.values[s].numpy()[:, 0] != 0 for s in att.inputs[:3])   # [T, C, H, W]
    T, d = q.shape[0], f["d"]
    # head 0, token n = 0, step t, channel a: a row of kv = sum (2K-1) V that is non-zero,
    # so that the flip must change y[0, b, t] = sum_a (2Q-1) kv[a, b]
    ks = 2 * k[:, :d].reshape(T, d, -1).astype(np.int64) - 1
    kv = np.einsum("tan,tbn->ab", ks, v[:, :d].reshape(T, d, -1).astype(np.int64))
    a = int(np.flatnonzero(np.abs(kv).sum(1))[0])
    word = int(sum(int(q[s_, a].ravel()[0]) << s_ for s_ in range(T)))
    sb = simaccel.build(cfg)
    codes = golden.values[graph.input.name].numpy()[:, 0]
    src = {graph.node(nd).inputs[0] for op, _, nd in prog.descriptors if op == isa.OP_CONV}
    for flip in (0, 1 << t):
        mprog, at = _with_word_loaded_before(prog, index, f["q"] + a * f["hw"], word ^ flip)
        image = mprog.ddr_image(codes)
        image[at: at + 4] = np.frombuffer(np.uint32(word ^ flip).tobytes(), np.uint8)
        run = simaccel.run(mprog, codes, sb, image=image)
        cmp = simaccel.compare(mprog, run.tensors, {n: golden.values[n].numpy() for n in mprog.stored})
        if not flip:
            assert cmp.mismatches == 0, cmp.first
            assert run.cycles == program_cycles(mprog, inputs=conv_inputs(
                mprog, graph, {x: golden.values[x].numpy() for x in src}))[0]
        else:
            assert cmp.mismatches >= 1 and cmp.first.startswith(f"({node}, "), cmp.first
            assert np.array_equal(run.tensors[att.inputs[0]], golden.values[att.inputs[0]].numpy()[:, 0])


def test_sdha_with_a_partial_output_group_is_exact(bundled):
    """32 heads of d = 2 channels: fewer than the CI engine's 4 output lanes, and T = 4 > d
    (phase 2 bound by its write-back): still bit-exact and cycle-exact."""
    graph, golden, frames = bundled
    att = next(n for n in graph.nodes if isinstance(n, ir.Attention))
    g2 = graph.replace(nodes=[n.replace(heads=32) if n.name == att.name else n for n in graph.nodes])
    r = verify_rtl(g2, frames, CI)
    assert r["mismatches"] == 0 and r["cycles"] == r["predicted_cycles"]


#: the ddr plan with every SDHA head split into token ranges of 2 of its 4 tokens (one
#: SDHA builds a head's kv, one per range reuses it); integer maps stored so that the
#: attention outputs themselves are compared
SPLIT = DDR_BUDGET | {"sdha_tokens": 2, "store_ints": True}


def _split_program(graph):
    prog = emit(graph, CI, **SPLIT)
    atts = [n for n in graph.nodes if isinstance(n, ir.Attention)]
    for att in atts:
        sd = [f for op, f, nd in prog.descriptors if op == isa.OP_SDHA and nd == att.name]
        # per head: kv (mode 2), then 2 ranges of 2 tokens with Q / output laid out per range
        assert [(f["mode"], f["ntok"], f["qs"], f["heads"]) for f in sd] == \
            att.heads * [(2, 0, 0, 1), (1, 2, 2, 1), (1, 2, 2, 1)]
        assert all(f["hwt"] == 2 * f["t"] for f in sd if f["mode"] == 1)
    return prog, atts


def _up_to(prog, node):
    """``prog`` cut after ``node``'s last descriptor (then ``END``)."""
    import dataclasses

    cut = max(i for i, (_, _, nd) in enumerate(prog.descriptors) if nd == node) + 1
    descs = [(op, dict(f), nd) for op, f, nd in prog.descriptors[:cut]] + [(isa.OP_END, {}, "")]
    descs[0][1]["n_desc"] = len(descs)
    return dataclasses.replace(prog, descriptors=descs, relocs=[(i, j) for i, j in prog.relocs if i < cut])


def test_ddr_plan_sdha_token_ranges_bit_exact_and_cycle_exact(bundled):
    from svf_deploy.sim import accel as simaccel

    graph, golden, frames = bundled
    prog, atts = _split_program(graph)
    sb = simaccel.build(CI)
    codes = golden.values[graph.input.name].numpy()[:, 0]
    run = simaccel.run(prog, codes, sb)
    cmp = simaccel.compare(prog, run.tensors, {n: golden.values[n].numpy() for n in prog.stored})
    assert all(a.name in prog.stored for a in atts)
    assert cmp.mismatches == 0 and cmp.compared == len(prog.stored) > 40, cmp.first
    src = {graph.node(nd).inputs[0] for op, _, nd in prog.descriptors if op == isa.OP_CONV}
    modelled, _ = program_cycles(prog, inputs=conv_inputs(prog, graph, {k: golden.values[k].numpy() for k in src}))
    assert run.cycles == modelled


def test_ddr_plan_sdha_token_ranges_flipped_spikes_are_caught(bundled):
    """Two spike bits flipped in the buffer, each by a 1-word LOAD inserted before an SDHA:
    a Q bit of head 0's second token range (before the SDHA that reuses head 0's kv) and a
    V bit of head 1 (before the SDHA that builds head 1's kv). The program runs up to the
    attention; its output must differ from the reference by exactly the numpy difference
    of the two flips (non-zero in both heads), its Q spike map (stored before) must not."""
    import dataclasses

    from svf_deploy.sim import accel as simaccel

    graph, golden, frames = bundled
    prog, atts = _split_program(graph)
    att = atts[0]
    q, k, v = ((golden.values[s].numpy()[:, 0] != 0).astype(np.int64) for s in att.inputs[:3])
    T = q.shape[0]
    sd = [(i, f) for i, (op, f, nd) in enumerate(prog.descriptors) if op == isa.OP_SDHA and nd == att.name]
    d, hw = sd[0][1]["d"], sd[0][1]["hw"]
    # per head [t, channel, token]
    qh, kh, vh = ([x[:, h * d:(h + 1) * d].reshape(T, d, hw) for h in range(2)] for x in (q, k, v))
    kv = [np.einsum("tan,tbn->ab", 2 * kh[h] - 1, vh[h]) for h in range(2)]

    def bundle(x, c, n):
        return int(sum(int(x[s_, c, n]) << s_ for s_ in range(T)))

    # head 0: token 3 (token 1 of range [2, 4)), step 0, a channel a with a non-zero kv row
    a, n, t = int(np.flatnonzero(np.abs(kv[0]).sum(1))[0]), 3, 0
    iq, fq = sd[2]
    q2 = qh[0].copy()
    q2[t, a, n] ^= 1
    flips = [(iq, fq["q"] + a * fq["qs"] + (n - 2), bundle(qh[0], a, n) ^ (1 << t))]
    dy0 = np.einsum("tan,ab->tbn", 2 * q2 - 1, kv[0]) - np.einsum("tan,ab->tbn", 2 * qh[0] - 1, kv[0])
    # head 1: V channel 0, token 0, step 0 before its kv is built
    iv, fv = sd[3]
    v2 = vh[1].copy()
    v2[0, 0, 0] ^= 1
    flips.append((iv, fv["v"], bundle(vh[1], 0, 0) ^ 1))
    kv2 = np.einsum("tan,tbn->ab", 2 * kh[1] - 1, v2)
    dy1 = np.einsum("tan,ab->tbn", 2 * qh[1] - 1, kv2 - kv[1])
    assert dy0.any() and dy1.any()                    # both flips change the output

    cut = _up_to(prog, att.name)
    descs = [(op, dict(f), nd) for op, f, nd in cut.descriptors]
    slack = (len(descs) + len(flips)) * isa.DESC_BYTES     # after the new program
    relocs = list(cut.relocs)
    for j, (index, addr, word) in enumerate(sorted(flips, reverse=True)):
        descs.insert(index, (isa.OP_LOAD, {"ddr": slack + 16 * j, "addr": addr, "count": 1}, "mutation"))
        relocs = [(i + (i >= index), w) for i, w in relocs] + [(index, isa.field_index(isa.OP_LOAD, "ddr"))]
    descs[0][1]["n_desc"] = len(descs)
    mprog = dataclasses.replace(cut, descriptors=descs, relocs=relocs)
    codes = golden.values[graph.input.name].numpy()[:, 0]
    image = mprog.ddr_image(codes)
    for j, (_, _, word) in enumerate(sorted(flips, reverse=True)):
        image[slack + 16 * j: slack + 16 * j + 4] = np.frombuffer(np.uint32(word).tobytes(), np.uint8)
    assert slack + 32 <= mprog.regions[next(r for r in mprog.regions if r != "program")][0]
    run = simaccel.run(mprog, codes, simaccel.build(CI), image=image)

    done = {nd.name for nd in graph.nodes[: graph.nodes.index(att) + 1]}
    sub = dataclasses.replace(mprog, tensors={x: p for x, p in mprog.tensors.items() if x in done})
    cmp = simaccel.compare(sub, run.tensors, {x: golden.values[x].numpy() for x in sub.stored})
    assert cmp.mismatches == 1 and cmp.first.startswith(f"({att.name}, "), cmp.first
    got, want = (x.reshape(T, 2, d, hw) for x in (run.tensors[att.name], golden.values[att.name].numpy()[:, 0]))
    assert np.array_equal(got[:, 0] - want[:, 0], dy0) and np.array_equal(got[:, 1] - want[:, 1], dy1)


def _dma_program(prog, loads, stores, src_word, dst_word, n_src, n_dst, fill, acc=()):
    """A program of only ``LOAD`` (``(ddr word, buffer word, count[, rows, ddr word stride,
    buffer word stride])``; those whose index is in ``acc`` accumulating, isa version 7) and
    ``STORE`` (``(buffer word, ddr word, count[, rows, ...])``) descriptors on ``prog``'s
    configuration; source
    words at DDR word ``src_word`` (random), the destination region prefilled with ``fill``."""
    import dataclasses

    items = [("L", s_, a, c, *rest, isa.LOAD_ACC if j in acc else 0)
             for j, (s_, a, c, *rest) in enumerate(loads)] + [("S", *x, 0) for x in stores]
    return _dma_sequence(prog, items, src_word, dst_word, n_src, n_dst, fill)


def _dma_sequence(prog, items, src_word, dst_word, n_src, n_dst, fill):
    """A program of ``LOAD`` (``("L", ddr word, buffer word, count[, rows, ddr word stride,
    buffer word stride], mode)``, DDR words from ``src_word``), ``LOADW`` (``("W", ddr word,
    weight word, count, 0)``), ``STORE`` (``("S", buffer word, ddr word, count[, ...],
    mode)``, DDR words from ``dst_word``) and ``EW`` add (``("E", a, b, out, n, fence)``:
    buffer words ``out + i = a + i`` plus ``b + i``) descriptors in the order given (see
    :func:`_dma_program`)."""
    import dataclasses

    rng = np.random.default_rng(11)
    descs = [(isa.OP_HEADER, {"magic": isa.MAGIC, "version": isa.VERSION, "n_desc": 0}, "")]
    def two_d(rest):                                  # (rows, DDR word stride, buffer word stride)
        return {"rows": rest[0], "ddr_stride": 4 * rest[1], "addr_stride": rest[2]} if rest else {}

    for kind, x, y, count, *rest, mode in items:
        m = {"mode": mode} if mode else {}
        if kind == "L":
            descs.append((isa.OP_LOAD, {"ddr": 4 * (src_word + x), "addr": y, "count": count, **two_d(rest), **m},
                          "dma"))
        elif kind == "W":
            descs.append((isa.OP_LOADW, {"ddr": 4 * (src_word + x), "addr": y, "count": count}, "dma"))
        elif kind == "E":
            descs.append((isa.OP_EW, {"a": x, "b": y, "outb": count, "n": rest[0], "mode": 0, "per": 1,
                                      **({"fence": 1} if mode else {})}, "ew"))
        else:
            descs.append((isa.OP_STORE, {"ddr": 4 * (dst_word + y), "addr": x, "count": count, **two_d(rest), **m},
                          "dma"))
    descs.append((isa.OP_END, {}, ""))
    descs[0][1]["n_desc"] = len(descs)
    assert len(descs) * isa.DESC_BYTES <= 4 * src_word
    words = np.zeros(dst_word + n_dst, np.uint32)
    words[src_word: src_word + n_src] = rng.integers(0, 2**32, n_src, dtype=np.uint64).astype(np.uint32)
    words[dst_word:] = fill
    relocs = [(i, isa.field_index(op, "ddr")) for i, (op, _, _) in enumerate(descs)
              if op in (isa.OP_LOAD, isa.OP_LOADW, isa.OP_STORE)]
    return dataclasses.replace(prog, descriptors=descs, relocs=relocs, image=words.view(np.uint8).copy(),
                               tensors={}, stats=[], windows={}, fused=())


def test_unaligned_load_and_store_move_whole_beats_exactly(bundled):
    """LOAD/STORE runs at buffer words of every offset mod ``u`` (DDR side beat-aligned), odd
    counts, partial last beats and several bursts: the words arrive exactly (a partial beat's
    strobes leave the rest of its DDR beat untouched), CYCLES equals the model, and one
    flipped source bit shows up in every stored copy of its word."""
    from svf_deploy.sim import accel as simaccel

    graph, _, _ = bundled
    u = CI.units_per_beat
    assert u == 2 and CI.burst * u < 70                    # 70 units: three bursts
    src, dst, fill = 1024, 2048, 0xA5A5A5A5
    loads = [(0, 1, 70), (70, 71, 3), (74, 74, 1), (76, 75, 33)]          # buffer words 1..107
    stores = [(1, 0, 70), (2, 72, 3), (7, 76, 1), (40, 78, 33), (1, 112, 107), (74, 220, 34)]
    n_dst = 256
    prog = _dma_program(emit(graph, CI), loads, stores, src, dst, 110, n_dst, fill)
    img = prog.ddr_image()
    ddr = img.view(np.uint32)

    def expected(ddr_words):
        buf = np.zeros(4096, np.uint32)
        for s, a, c in loads:
            buf[a: a + c] = ddr_words[src + s: src + s + c]
        out = np.full(n_dst, fill, np.uint32)
        for a, d, c in stores:
            out[d: d + c] = buf[a: a + c]
        return out

    want = expected(ddr)
    assert {a % u for _, a, _ in loads} == {a % u for a, _, _ in stores} == set(range(u))
    sb = simaccel.build(CI)
    run = simaccel.run(prog, None, sb, image=img)
    got = run.ddr[: img.size].view(np.uint32)[dst: dst + n_dst]
    assert np.array_equal(got, want)
    assert run.cycles == program_cycles(prog)[0]
    # mutation: one bit of source word 5 (loaded to buffer word 6) flipped in DDR
    bad = img.copy()
    bad[4 * (src + 5)] ^= 1
    run = simaccel.run(prog, None, sb, image=bad)
    got = run.ddr[: img.size].view(np.uint32)[dst: dst + n_dst]
    diff = np.flatnonzero(got != want)
    assert list(diff) == [5, 112 + 5] and np.array_equal(got, expected(bad.view(np.uint32)))


def test_async_stores_run_beside_loads_and_compute_exactly(bundled):
    """STORE with ``mode & STORE_ASYNC`` (isa version 8): the next descriptors are fetched
    and run while it writes (LOADs, LOADWs, an accumulating LOAD, an EW reading the words
    it stores); the next STORE, END and a fenced EW (which overwrites words it stores, isa
    version 9) wait for it. The words arrive exactly, CYCLES equals
    the model (fewer cycles than the same program with synchronous STOREs, which also
    matches), the RAM's protocol checker stays quiet. A flipped source bit shows up in its
    stored copy and in the EW sum it feeds only."""
    import dataclasses

    from svf_deploy.sim import accel as simaccel

    graph, _, _ = bundled
    A = isa.STORE_ASYNC
    src, dst, fill = 1024, 2048, 0x3C3C3C3C
    items = [("L", 0, 0, 200, 0),                     # buffer words 0..199
             ("S", 0, 0, 101, A),                     # async, then loads and an EW meanwhile
             ("E", 200, 200, 50, 10, 1),              # zeroes words 50..59 it stores: fenced, waits
             ("L", 200, 300, 77, 0), ("W", 300, 16, 3, 0), ("L", 280, 400, 20, 2, 30, 25, 0),
             ("E", 0, 300, 600, 50, 0),               # reads words the STORE reads, writes 600..649
             ("S", 300, 110, 77, A),                  # waits for the first (a STORE)
             ("L", 300, 10, 5, isa.LOAD_ACC),         # runs beside it (port 0 is not the STORE's)
             ("S", 600, 420, 50, A),                  # the EW's sums
             ("S", 1, 200, 35, 3, 40, 60, A),         # 2-D, async
             ("S", 400, 330, 20, 2, 30, 25, 0),       # sync, waits
             ("S", 9, 400, 7, A)]                     # async, END waits for it
    n_dst = 480
    base = emit(graph, CI)
    prog = _dma_sequence(base, items, src, dst, 400, n_dst, fill)
    img = prog.ddr_image()

    def expected(ddr_words):
        buf = np.zeros(4096, np.uint64)
        out = np.full(n_dst, fill, np.uint32)
        for kind, x, y, c, *rest, mode in items:
            if kind == "E":
                buf[c: c + rest[0]] = (buf[x: x + rest[0]] + buf[y: y + rest[0]]) % 2**32
                continue
            rows, ds, as_ = rest or (1, 0, 0)
            for r in range(rows if kind != "W" else 0):
                if kind == "L":
                    v = ddr_words[src + x + r * ds: src + x + r * ds + c].astype(np.uint64)
                    b = y + r * as_
                    buf[b: b + c] = (buf[b: b + c] + v) % 2**32 if mode else v
                else:
                    out[y + r * ds: y + r * ds + c] = buf[x + r * as_: x + r * as_ + c].astype(np.uint32)
        return out

    want = expected(img.view(np.uint32))
    sb = simaccel.build(CI)
    run = simaccel.run(prog, None, sb, image=img)
    got = run.ddr[: img.size].view(np.uint32)[dst: dst + n_dst]
    assert np.array_equal(got, want)
    sync = dataclasses.replace(prog, descriptors=[(op, {k: v for k, v in f.items() if not (op == isa.OP_STORE
                                                                                          and k == "mode")}, nd)
                                                  for op, f, nd in prog.descriptors])
    slow = simaccel.run(sync, None, sb, image=sync.ddr_image())
    assert np.array_equal(slow.ddr[: img.size].view(np.uint32)[dst: dst + n_dst], want)
    assert (run.cycles, slow.cycles) == (program_cycles(prog)[0], program_cycles(sync)[0])
    assert run.cycles < slow.cycles
    # without its fence the EW overwrites words 50..59 before the STORE machine reads them
    nofence = dataclasses.replace(prog, descriptors=[(op, {k: v for k, v in f.items() if k != "fence"}, nd)
                                                     for op, f, nd in prog.descriptors])
    raced = simaccel.run(nofence, None, sb, image=nofence.ddr_image())
    diff = np.flatnonzero(raced.ddr[: img.size].view(np.uint32)[dst: dst + n_dst] != want)
    assert len(diff) and set(diff) <= set(range(50, 60))
    bad = img.copy()
    bad[4 * (src + 210)] ^= 1                         # loaded to buffer word 310, stored to DDR word 120,
    run = simaccel.run(prog, None, sb, image=bad)     # added into word 610, stored to DDR word 430
    got = run.ddr[: img.size].view(np.uint32)[dst: dst + n_dst]
    assert list(np.flatnonzero(got != want)) == [120, 430]


def test_accumulating_load_adds_onto_the_buffer(bundled):
    """LOAD with ``mode & LOAD_ACC`` (isa version 7): each word is added (32-bit, wrapping)
    to the buffer word it lands on, at buffer words of every offset mod ``u``, partial last
    beats, several bursts, a 2-D transfer, back to back with a plain LOAD; words around the
    runs untouched; CYCLES equals the model (the same as a plain LOAD's). A flipped source
    bit of an added word shows up in its sum only."""
    from svf_deploy.sim import accel as simaccel

    graph, _, _ = bundled
    u = CI.units_per_beat
    src, dst, fill = 1024, 2048, 0x5A5A5A5A
    # plain loads fill buffer words 1..120, accumulating loads add onto parts of them
    loads = [(0, 1, 120), (120, 1, 37), (160, 40, 3), (164, 44, 1), (166, 47, 30, 3, 34, 31), (0, 100, 2)]
    acc = {1, 2, 3, 4}
    stores = [(0, 0, 122)]
    n_dst = 128
    prog = _dma_program(emit(graph, CI), loads, stores, src, dst, 300, n_dst, fill, acc=acc)
    img = prog.ddr_image()

    def expected(ddr_words):
        buf = np.zeros(4096, np.uint64)
        for j, (s, a, c, *rest) in enumerate(loads):
            rows, ds, as_ = rest or (1, 0, 0)
            for r in range(rows):
                v = ddr_words[src + s + r * ds: src + s + r * ds + c].astype(np.uint64)
                b = a + r * as_
                buf[b: b + c] = (buf[b: b + c] + v) % 2**32 if j in acc else v
        out = np.full(n_dst, fill, np.uint32)
        for a, d, c in stores:
            out[d: d + c] = buf[a: a + c].astype(np.uint32)
        return out

    want = expected(img.view(np.uint32))
    assert {a % u for _, a, *_ in loads} == set(range(u))
    sb = simaccel.build(CI)
    run = simaccel.run(prog, None, sb, image=img)
    got = run.ddr[: img.size].view(np.uint32)[dst: dst + n_dst]
    assert np.array_equal(got, want)
    plain = [(op, {k: v for k, v in f.items() if k != "mode"}, nd) for op, f, nd in prog.descriptors]
    assert run.cycles == program_cycles(prog)[0] == program_cycles(
        __import__("dataclasses").replace(prog, descriptors=plain))[0]
    # mutation: one bit of source word 125 (added onto buffer word 6) flipped in DDR
    bad = img.copy()
    bad[4 * (src + 125)] ^= 1
    run = simaccel.run(prog, None, sb, image=bad)
    got = run.ddr[: img.size].view(np.uint32)[dst: dst + n_dst]
    assert list(np.flatnonzero(got != want)) == [6] and np.array_equal(got, expected(bad.view(np.uint32)))


#: u = 4 words per read-port run, P_pix = 3: stride-1 groups of 3, stride-2 groups of 2; 8
#: CONV terms scanned per cycle (partial last blocks: 8*1, 8*9, 12*9 = 108 terms)
PIX3 = AccelConfig(name="pix3", p_o=16, p_t=4, p_pix=3, scan=8, act_depth=16384, wbuf_depth=1024,
                   axi_data_width=128)


def _pix3_graph():
    """Input 1x7x9 -> 1x1 conv (analog, 8 planes) -> LIF -> 3x3 stride-2 conv (rows of 5:
    groups 2, 2, 1) -> LIF -> 3x3 stride-1 conv, 20 channels (rows of 5: groups 3, 2; a
    partial second channel tile), T = 6 (P_t chunks of 4 and 2 steps: a partial u-word run)."""
    rng = np.random.default_rng(7)
    x = ir.Input("input", (), shape=(1, 7, 9))
    c0 = ir.Conv("c0", ("input",), weight=rng.integers(-3, 4, (8, 1, 1, 1)), bias=rng.integers(-99, 99, 8),
                 out_scale=np.ones(8))
    l0 = ir.IntLIF("l0", ("c0",), theta=np.full(8, 150), bias=np.zeros(8, np.int64), polarity=np.ones(8, np.int64))
    c1 = ir.Conv("c1", ("l0",), weight=rng.integers(-127, 128, (12, 8, 3, 3)), bias=rng.integers(-50, 50, 12),
                 stride=2, padding=1, out_scale=np.ones(12))
    l1 = ir.IntLIF("l1", ("c1",), theta=np.full(12, 60), bias=np.zeros(12, np.int64), polarity=np.ones(12, np.int64))
    c2 = ir.Conv("c2", ("l1",), weight=rng.integers(-127, 128, (20, 12, 3, 3)), bias=rng.integers(-50, 50, 20),
                 stride=1, padding=1, out_scale=np.ones(20))
    return ir.Graph((x, c0, l0, c1, l1, c2), ("c2",), "integer", {"T": 6})


def test_pixel_groups_with_stride_2_and_partial_groups_are_exact():
    """P_pix = 3 on a u = 4 engine scanning 8 terms per cycle: stride-2 groups of 2, rows of
    5 pixels (partial last groups), per-pixel padding, a partial channel tile and a partial
    P_t chunk (words non-zero in one chunk only), bit-planes of an analog input: bit-exact,
    CYCLES == model from the clip's bundles, below the dense bound; one flipped weight bit
    of the last conv is caught."""
    import torch

    from svf_deploy.hw.accel.cycles import conv_groups

    graph = _pix3_graph()
    prog = emit(graph, PIX3)
    convs = {nd: f for op, f, nd in prog.descriptors if op == isa.OP_CONV}
    assert conv_groups(PIX3, convs["c1"]["wout"], convs["c1"]["stride"]) == [2, 2, 1]
    assert conv_groups(PIX3, convs["c2"]["wout"], convs["c2"]["stride"]) == [3, 2]
    frames = torch.from_numpy(np.random.default_rng(3).random((6, 1, 1, 7, 9)).astype(np.float32))
    r = verify_rtl(graph, frames, PIX3)
    assert r["mismatches"] == 0 and r["compared"] == 3 and r["cycles"] == r["predicted_cycles"]
    assert r["cycles"] < r["dense_bound_cycles"]
    spikes = sum(int(np.count_nonzero(v)) for k, v in
                 __import__("svf_deploy.targets.zcu104", fromlist=["golden_values"])
                 .golden_values(graph, frames, ["l0", "l1"]).items() if k in ("l0", "l1"))
    assert spikes > 50                               # the convs see real spike patterns

    def flip(prog, image):
        ld = next(f for op, f, node in prog.descriptors if op == isa.OP_LOADW and node == "c2")
        img = image.copy()
        byte = ld["ddr"] + 4 * PIX3.p_o + 3          # W[3, 0, 1, 1]: lane 3 of the centre tap
        assert np.int8(img[byte]) == graph.node("c2").weight[3, 0, 1, 1]
        img[byte] ^= 0x01
        return img

    with pytest.raises(HardwareError, match=r"RTL verification failed: 1 of 3 tensors differ"):
        verify_rtl(graph, frames, PIX3, image_hook=flip)


def test_2d_load_and_store_equal_their_runs_one_by_one(bundled):
    """2-D LOAD/STORE (isa version 5): ``rows`` runs of ``count`` units, DDR and buffer
    strides up or down (two's complement), buffer words of every offset mod ``u``, partial
    beats and several bursts per run: the words arrive exactly as the runs issued one by one
    would move them, CYCLES equals the model (``rows`` x the run's DMA, one fetch), and a
    flipped source bit or a DDR stride one beat off shows up."""
    import dataclasses

    from svf_deploy.sim import accel as simaccel

    graph, _, _ = bundled
    u = CI.units_per_beat
    src, dst, fill = 1024, 2048, 0x5A5A5A5A
    # (ddr word, buffer word, count, rows, ddr stride, buffer stride): a descending 2-D load,
    # an ascending one, 3-burst runs; stores with partial last beats
    loads = [(60, 301, 7, 4, -16, -9), (0, 1, 5, 3, 8, 6), (100, 400, 70, 2, 72, 71)]
    stores = [(1, 0, 5, 3, 6, 6), (265, 40, 7, 4, 8, 9), (400, 80, 70, 2, 72, 71), (301, 240, 9, 1, 0, 0)]
    n_dst = 256
    prog = _dma_program(emit(graph, CI), loads, stores, src, dst, 250, n_dst, fill)
    img = prog.ddr_image()

    def expected(ddr_words):
        buf = np.zeros(4096, np.uint32)
        for s, a, c, rows, ds, da in loads:
            for r in range(rows):
                buf[a + r * da: a + r * da + c] = ddr_words[src + s + r * ds: src + s + r * ds + c]
        out = np.full(n_dst, fill, np.uint32)
        for a, d, c, rows, ds, da in stores:
            for r in range(max(rows, 1)):
                out[d + r * ds: d + r * ds + c] = buf[a + r * da: a + r * da + c]
        return out

    want = expected(img.view(np.uint32))
    assert {a % u for _, a, *_ in loads} == set(range(u)) and all(s % u == 0 for _, s, *_ in stores)
    sb = simaccel.build(CI)
    run = simaccel.run(prog, None, sb, image=img)
    assert np.array_equal(run.ddr[: img.size].view(np.uint32)[dst: dst + n_dst], want)
    assert run.cycles == program_cycles(prog)[0]
    assert program_cycles(prog)[0] < program_cycles(_dma_program(
        emit(graph, CI), [(s + r * ds, a + r * da, c) for s, a, c, rows, ds, da in loads for r in range(rows)],
        [(a + r * da, d + r * ds, c) for a, d, c, rows, ds, da in stores for r in range(max(rows, 1))],
        src, dst, 250, n_dst, fill))[0]             # one fetch per 2-D transfer, not per run
    # mutation: one bit of source word 60 - 16 = 44 (run 1 of the first load) flipped
    bad = img.copy()
    bad[4 * (src + 44)] ^= 1
    run = simaccel.run(prog, None, sb, image=bad)
    got = run.ddr[: img.size].view(np.uint32)[dst: dst + n_dst]
    assert not np.array_equal(got, want) and np.array_equal(got, expected(bad.view(np.uint32)))
    # mutation: the first load's DDR stride one beat off
    descs = [(op, dict(f), nd) for op, f, nd in prog.descriptors]
    descs[1][1]["ddr_stride"] -= 4 * u
    mprog = dataclasses.replace(prog, descriptors=descs)
    run = simaccel.run(mprog, None, sb, image=mprog.ddr_image())
    assert not np.array_equal(run.ddr[: img.size].view(np.uint32)[dst: dst + n_dst], want)


def test_a_dropped_occupancy_flag_is_caught(monkeypatch):
    """Mutation of the skip logic: the activation buffer's flags ignore bit 0 of a word
    (``flag = word >> 1 != 0``), so a bundle that spikes at step 0 only looks empty and its
    term is skipped. The program of the P_pix = 3 test reads such words (asserted from the
    golden spikes and bit-planes); the engine's outputs must then differ from the golden
    reference, and it must run fewer cycles than the exact model of the real flags."""
    import torch

    from svf_deploy.hw.accel.actbuf import ActBuffer
    from svf_deploy.sim import accel as simaccel
    from svf_deploy.targets.zcu104 import golden_values

    graph = _pix3_graph()
    frames = torch.from_numpy(np.random.default_rng(3).random((6, 1, 1, 7, 9)).astype(np.float32))
    prog = emit(graph, PIX3)
    vals = golden_values(graph, frames, list(prog.stored) + ["input", "l0", "l1"])
    ins = conv_inputs(prog, graph, vals)
    assert sum(int(np.count_nonzero(w == 1)) for w in ins.values()) > 5   # step-0-only words
    modelled, _ = program_cycles(prog, inputs=ins)
    monkeypatch.setattr(ActBuffer, "flag_of", staticmethod(lambda word: word[1:] != 0))
    codes = vals[graph.input.name][:, 0]
    run = simaccel.run(prog, codes, simaccel.build(PIX3))
    cmp = simaccel.compare(prog, run.tensors, vals)
    assert cmp.mismatches >= 1, "a skipped live term went unnoticed"
    assert run.cycles < modelled


def _page_program():
    """A LOAD/STORE program on the P_pix = 3 engine (16-byte beats, 256 beats per 4 KB page,
    16-beat bursts) whose DDR runs straddle 4 KB boundaries: source words from DDR word 1016
    (4 KB - 32 bytes: the page ends 2 beats in), destination from word 3068 (12 KB - 16
    bytes), one 2-D load whose first row crosses 8 KB; returns ``(prog, expected destination
    words, destination word, count)``."""
    src, dst, fill, n_dst = 1016, 3068, 0x5A5A5A5A, 400
    loads = [(0, 0, 150), (1028, 160, 6, 5, 64, 8)]    # 2-D: 5 rows, 64 DDR words apart
    stores = [(0, 0, 150), (160, 152, 38), (4, 200, 130)]
    prog = _dma_program(emit(_pix3_graph(), PIX3), loads, stores, src, dst, 1300, n_dst, fill)
    return prog, _dma_expected(prog, loads, stores, src, n_dst, fill), dst, n_dst


def _dma_expected(prog, loads, stores, src, n_dst, fill):
    """The destination words a LOAD/STORE program of :func:`_dma_program` must leave (runs
    ``(ddr, addr, count[, rows, ddr stride, buffer stride])`` as there, strides in words)."""
    def runs(x):
        rows, ds, as_ = x[3:] if len(x) > 3 else (1, 0, 0)
        return [(x[0] + r * ds, x[1] + r * as_, x[2]) for r in range(rows)]

    ddr = prog.ddr_image().view(np.uint32)
    buf = np.zeros(PIX3.act_depth, np.uint32)
    for s, a, c, *rest in loads:
        for s_, a_, c_ in runs((s, a, c, *rest)):
            buf[a_: a_ + c_] = ddr[src + s_: src + s_ + c_]
    want = np.full(n_dst, fill, np.uint32)
    for a, d, c, *rest in stores:                 # (buffer word, DDR word, ...)
        for d_, a_, c_ in runs((d, a, c, *rest)):
            want[d_: d_ + c_] = buf[a_: a_ + c_]
    return want


def test_dma_bursts_stop_at_4kb_boundaries_and_ddr_latency_is_modelled():
    """AXI4 forbids a burst across a 4 KB boundary (A3.4.1). DMA runs that straddle one are
    cut there (the RAM model flags any burst that crosses, and the run raises), the words
    arrive exactly, and CYCLES equals the model with the cut bursts, at DDR latency 0 and 7
    (each burst's first beat and each write response 7 cycles later)."""
    from svf_deploy.hw.accel.cycles import burst_count
    from svf_deploy.sim import accel as simaccel

    prog, want, dst, n = _page_program()
    beats = [(f["ddr"] + r * f.get("ddr_stride", 0), -(-f["count"] // PIX3.units_per_beat))
             for op, f, _ in prog.descriptors if op in (isa.OP_LOAD, isa.OP_STORE)
             for r in range(max(1, f.get("rows", 1)))]
    cut = sum(burst_count(b, PIX3, a) for a, b in beats)
    assert cut > sum(-(-b // PIX3.burst) for _, b in beats)        # the page boundaries add bursts
    sb = simaccel.build(PIX3)
    for lat in (0, 7):
        run = simaccel.run(prog, None, sb, image=prog.ddr_image(), ddr_latency=lat)
        assert np.array_equal(run.ddr[: prog.image.size].view(np.uint32)[dst: dst + n], want)
        assert run.cycles == program_cycles(prog, ddr_latency=lat)[0]
    # PIX3 keeps 8 bursts in flight: latency 7 is paid once per transfer and per descriptor
    # fetch (END too); with one burst in flight it would be paid by every burst
    xfers = sum(op in (isa.OP_LOAD, isa.OP_STORE) for op, _, _ in prog.descriptors)
    assert program_cycles(prog, ddr_latency=7)[0] - program_cycles(prog)[0] == 7 * (xfers + len(prog.descriptors))
    one = dataclasses.replace(prog, cfg=dataclasses.replace(PIX3, outstanding=1))
    assert program_cycles(one, ddr_latency=7)[0] - program_cycles(one)[0] == 7 * (cut + len(prog.descriptors))
    # a DDR address off the 16-byte beat stops the engine with STATUS.error (not a hang)
    bad = _dma_program(prog, [(2, 0, 8)], [], 1016, 3068, 16, 16, 0)
    with pytest.raises(HardwareError, match="STATUS.error at descriptor 1"):
        simaccel.run(bad, None, sb, image=bad.ddr_image())


def _pipelined_program():
    """A multi-burst LOAD / 2-D LOAD / LOADW / STORE program on the P_pix = 3 engine, every
    run at a 4 KB page start: 1,600 words = 400 beats (25 bursts), a 2-D load of 4 runs of
    256 words (4 bursts each), 320 weight words (320 beats, 20 bursts), stores of 1,600 and
    of 4 runs of 256 words; returns ``(prog, expected destination words, dst word, count)``."""
    src, dst, fill, n_dst = 4096, 8192, 0x5A5A5A5A, 3 * 1024 + 1600
    loads = [(0, 0, 1600), (2048, 2048, 256, 4, 1024, 256)]
    stores = [(0, 0, 1600), (2048, 2048, 256, 4, 256, 1024)]
    prog = _dma_program(emit(_pix3_graph(), PIX3), loads, stores, src, dst, 6144, n_dst, fill)
    descs = list(prog.descriptors)
    descs.insert(3, (isa.OP_LOADW, {"ddr": 4 * src, "addr": 0, "count": 320}, "dma"))
    descs[0][1]["n_desc"] = len(descs)
    relocs = [(i, isa.field_index(op, "ddr")) for i, (op, _, _) in enumerate(descs)
              if op in (isa.OP_LOAD, isa.OP_LOADW, isa.OP_STORE)]
    prog = dataclasses.replace(prog, descriptors=descs, relocs=relocs)
    return prog, _dma_expected(prog, loads, stores, src, n_dst, fill), dst, n_dst


def test_bursts_in_flight_hide_a_40_cycle_ddr_latency():
    """8 bursts in flight per direction (PIX3.outstanding): at DDR latency 40 each transfer
    costs its beats + 2 + 40 (read) / + 3 + 40 (write), the latency paid once, not per
    burst; the engine's CYCLES equals the model and the words arrive exactly."""
    from svf_deploy.hw.accel.cycles import FETCH_OVERHEAD, burst_count, descriptor_cycles
    from svf_deploy.sim import accel as simaccel

    prog, want, dst, n = _pipelined_program()
    L, u = 40, PIX3.units_per_beat
    fetch = FETCH_OVERHEAD + isa.DESC_WORDS // u + 2 + L
    bursts = 0
    for op, f, _ in prog.descriptors:
        if op in (isa.OP_LOAD, isa.OP_LOADW, isa.OP_STORE):
            units = f["count"] * (PIX3.p_o // 4 if op == isa.OP_LOADW else 1)
            beats = max(1, f.get("rows", 1)) * units // u
            bursts += max(1, f.get("rows", 1)) * burst_count(units // u, PIX3, f["ddr"])
            over = 3 if op == isa.OP_STORE else 2
            assert descriptor_cycles(op, f, PIX3, L) == fetch + beats + over + L
    assert bursts == 25 + 16 + 20 + 25 + 16
    sb = simaccel.build(PIX3)
    run = simaccel.run(prog, None, sb, image=prog.ddr_image(), ddr_latency=L)
    assert np.array_equal(run.ddr[: prog.image.size].view(np.uint32)[dst: dst + n], want)
    assert run.cycles == program_cycles(prog, ddr_latency=L)[0]
    one = dataclasses.replace(prog, cfg=dataclasses.replace(PIX3, outstanding=1))
    # one burst in flight: every burst but a transfer's first pays its handshake and L again
    assert program_cycles(one, ddr_latency=L)[0] - run.cycles == (24 + 15 + 19) * (2 + L) + (24 + 15) * (3 + L)


def test_a_ram_that_mixes_up_bursts_in_flight_is_caught(monkeypatch, tmp_path):
    """Mutation of the pipelining: a RAM model that serves each read burst from the address
    of the burst queued behind it (when there is one) returns wrong words only when several
    bursts are in flight, and the comparison of the stored words must fail."""
    from svf_deploy.sim import accel as simaccel

    prog, want, dst, n = _pipelined_program()
    text = simaccel.RAM_V.read_text()
    head = "arq_addr[arq_h]"
    assert text.count(head) == 2
    bad = tmp_path / "axi_ram_sim.v"
    bad.write_text(text.replace(head, "arq_addr[arq_n > 1 ? arq_h + 1'b1 : arq_h]"))
    monkeypatch.setattr(simaccel, "RAM_V", bad)
    run = simaccel.run(prog, None, simaccel.build(PIX3, build_root=tmp_path), image=prog.ddr_image())
    got = run.ddr[: prog.image.size].view(np.uint32)[dst: dst + n]
    assert not np.array_equal(got, want)


@pytest.mark.slow
def test_too_many_bursts_outstanding_are_caught(monkeypatch, tmp_path):
    """Mutation of the in-flight limit: against a RAM model that allows only 4 commands
    outstanding, PIX3's 8 bursts in flight are a protocol violation and the run fails (the
    real model allows 16, the engine's ``outstanding`` at most 16)."""
    from svf_deploy.sim import accel as simaccel

    prog, _, _, _ = _pipelined_program()
    text = simaccel.RAM_V.read_text()
    assert text.count("localparam MAX_OUT = 16;") == 1 and PIX3.outstanding == 8
    bad = tmp_path / "axi_ram_sim.v"
    bad.write_text(text.replace("localparam MAX_OUT = 16;", "localparam MAX_OUT = 4;"))
    monkeypatch.setattr(simaccel, "RAM_V", bad)
    with pytest.raises(HardwareError, match="AXI4 protocol.*more than 4 (read|write) bursts outstanding"):
        simaccel.run(prog, None, simaccel.build(PIX3, build_root=tmp_path), image=prog.ddr_image(), ddr_latency=40)


def test_a_burst_across_4kb_is_caught(monkeypatch):
    """Mutation of the burst cut: an engine that only cuts bursts at 64 KB boundaries issues
    bursts across 4 KB on the same program, and the RAM model's protocol check fails the
    run."""
    from svf_deploy.hw.accel import engine as engine_mod
    from svf_deploy.sim import accel as simaccel

    prog, _, _, _ = _page_program()
    monkeypatch.setattr(engine_mod, "PAGE_BYTES", 1 << 16)
    with pytest.raises(HardwareError, match="AXI4 protocol.*crosses|AXI4 protocol.*violation"):
        simaccel.run(prog, None, simaccel.build(PIX3), image=prog.ddr_image())


def _lif_wb_graph(T: int):
    """input -> 1x1 conv -> LIF -> 3x3/2 conv (20 channels: a partial P_o tile) -> LIF (soft
    reset, decay_input, F = 2, k = 1, mixed polarity) -> 3x3 conv on 5x5 (partial pixel
    groups) -> LIF (hard reset, F = 1, k = 2): every conv feeds only its LIF."""
    rng = np.random.default_rng(3)
    x = ir.Input("input", (), shape=(1, 9, 10))
    c0 = ir.Conv("c0", ("input",), weight=rng.integers(-3, 4, (6, 1, 1, 1)), out_scale=np.ones(6))
    l0 = ir.IntLIF("l0", ("c0",), theta=np.full(6, 200), bias=np.zeros(6, np.int64), polarity=np.ones(6, np.int64))
    c1 = ir.Conv("c1", ("l0",), weight=rng.integers(-127, 128, (20, 6, 3, 3)), bias=rng.integers(-50, 50, 20),
                 stride=2, padding=1, out_scale=np.ones(20))
    l1 = ir.IntLIF("l1", ("c1",), theta=rng.integers(100, 900, 20), bias=rng.integers(-40, 40, 20),
                   polarity=np.where(np.arange(20) % 3 == 0, -1, 1), frac_bits=2, leak_shift=1,
                   decay_input=True, reset="soft")
    c2 = ir.Conv("c2", ("l1",), weight=rng.integers(-127, 128, (18, 20, 3, 3)), bias=rng.integers(-50, 50, 18),
                 padding=1, out_scale=np.ones(18))
    l2 = ir.IntLIF("l2", ("c2",), theta=rng.integers(50, 500, 18), bias=rng.integers(-20, 20, 18),
                   polarity=np.ones(18, np.int64), frac_bits=1, leak_shift=2, decay_input=False, reset="hard")
    return ir.Graph((x, c0, l0, c1, l1, c2, l2), ("l2",), "integer", {"T": T})


def test_write_back_lif_flags_partial_tiles_and_steps_bit_and_cycle_exact():
    """T = 3 < P_t (steps >= T must not fire), both charge rules and resets, F and k != 0,
    negative polarity, a partial P_o tile, stride 2 and partial pixel groups: bit-exact and
    CYCLES == model, with every LIF on its conv's write-back."""
    import torch

    from svf_deploy.compiler import reference

    T = 3
    g = _lif_wb_graph(T)
    prog = emit(g, CI)
    assert set(prog.fused) == {"l0", "l1", "l2"} and not any(op == isa.OP_LIF for op, _, _ in prog.descriptors)
    frames = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (T, 1, 1, 9, 10)) / 255.0).float()
    vals = reference.run(g, frames, record=True).values
    for name in ("l1", "l2"):
        assert 0.05 < vals[name].float().mean() < 0.95, name       # some spikes, not all
    r = verify_rtl(g, frames, CI)
    assert r["compared"] == 3 and r["mismatches"] == 0 and r["cycles"] == r["predicted_cycles"]


#: the production engine's geometry (u = 4, P_pix = 3, P_t = 8) at a size Verilator builds quickly
WIDE = AccelConfig(name="wide", p_o=16, p_t=8, p_pix=3, scan=4, act_depth=16384, wbuf_depth=2048,
                   axi_data_width=128)


@pytest.mark.slow
@pytest.mark.parametrize("T", [3, 8])
def test_write_back_lif_on_the_production_geometry(T):
    """As above on u = 4, P_pix = 3 (three-pixel groups, a masked run of 3 of 4 words),
    P_t = 8 (an 8-stage pipeline), T below and equal to P_t."""
    import torch

    g = _lif_wb_graph(T)
    prog = emit(g, WIDE)
    assert set(prog.fused) == {"l0", "l1", "l2"}
    frames = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (T, 1, 1, 9, 10)) / 255.0).float()
    r = verify_rtl(g, frames, WIDE)
    assert r["compared"] == 3 and r["mismatches"] == 0 and r["cycles"] == r["predicted_cycles"]
