"""Asynchronous STOREs: the emitter's hazard rule (:mod:`svf_deploy.hw.accel.overlap`) and the
cycle model's schedule (:func:`svf_deploy.hw.accel.cycles._costs`); the engine's side is
``test_engine_sim.py::test_async_stores_run_beside_loads_and_compute_exactly``."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from svf_deploy.hw.accel import CI, isa
from svf_deploy.hw.accel.cycles import FETCH_OVERHEAD, descriptor_cycles, dma_read, program_cycles
from svf_deploy.hw.accel.overlap import buffer_writes, mark_async_stores, store_conflicts
from svf_deploy.hw.accel.program import Program


def _prog(descs):
    return Program(cfg=CI, T=4, descriptors=descs, image=np.zeros(isa.DESC_BYTES * len(descs), np.uint8),
                   regions={}, tensors={}, relocs=[], input_name="input", output_names=())


def _store(addr, ddr, count, rows=1, ast=0, dst=0):
    return (isa.OP_STORE, {"ddr": ddr, "addr": addr, "count": count, "rows": rows, "ddr_stride": dst,
                           "addr_stride": ast}, "s")


def _load(ddr, addr, count, rows=1, dst=0, ast=0, mode=0):
    return (isa.OP_LOAD, {"ddr": ddr, "addr": addr, "count": count, "rows": rows, "ddr_stride": dst,
                          "addr_stride": ast, "mode": mode}, "l")


def _words(lo, n, rows, st_):
    return {lo + r * st_ + i for r in range(rows) for i in range(n)}


def test_conflicts_by_buffer_words_and_ddr_bytes():
    s = _store(100, 4096, 10, rows=2, ast=20, dst=64)[1]       # buffer 100..109, 120..129; DDR 4096.., 4160..
    assert not store_conflicts(s, isa.OP_LOAD, _load(0, 110, 10)[1], CI)          # the gap between runs
    assert store_conflicts(s, isa.OP_LOAD, _load(0, 129, 1)[1], CI)                # last word of run 1
    assert store_conflicts(s, isa.OP_LOAD, _load(4196, 500, 1)[1], CI)             # DDR byte 4199 of run 1
    assert not store_conflicts(s, isa.OP_LOAD, _load(4136, 500, 6)[1], CI)         # DDR 4136..4159: between
    w = (isa.OP_LOADW, {"ddr": 4160 - CI.p_o, "addr": 0, "count": 1}, "w")
    assert not store_conflicts(s, *w[:2], CI)                                      # ends at 4160
    assert store_conflicts(s, isa.OP_LOADW, dict(w[1], count=2), CI)


def test_the_first_conflicting_descriptor_is_fenced():
    descs = [_store(0, 0, 8), _load(1000, 64, 8), (isa.OP_EW, {"outb": 300, "n": 10}, "e"),
             _load(2000, 4, 1),                                                  # writes word 4: fenced
             _load(2100, 6, 1),                                                  # after the fence: free
             _store(64, 512, 8), _load(3000, 200, 8), (isa.OP_EW, {"outb": 0, "n": 64}, "e"),  # ends at 63
             _store(200, 1024, 8), (isa.OP_EW, {"outb": 207, "n": 1}, "e"),      # the very next: sync
             _store(200, 1024, 8), (isa.OP_END, {}, ""), _load(0, 200, 8)]            # after END
    out = mark_async_stores(_prog(descs))
    modes = [f.get("mode", 0) for op, f, _ in out.descriptors if op == isa.OP_STORE]
    assert modes == [isa.STORE_ASYNC, isa.STORE_ASYNC, 0, isa.STORE_ASYNC]
    assert [i for i, (op, f, _) in enumerate(out.descriptors) if f.get("fence")] == [3]
    w = out.image.view("<u4")
    assert w[3 * isa.DESC_WORDS] == isa.OP_LOAD | isa.FENCE and w[4 * isa.DESC_WORDS] == 0   # patched
    assert isa.decode_word0(isa.OP_LOAD | isa.FENCE) == (isa.OP_LOAD, {"fence": 1})
    assert all("fence" not in f and (op != isa.OP_STORE or "mode" not in f) for op, f, _ in descs)   # pure


def test_compute_writes_are_the_units_outputs():
    """The write footprints the hazard rule uses, against the layouts of :mod:`.isa`."""
    D = CI.act_depth
    assert buffer_writes(isa.OP_LIF, {"outb": 10, "c": 3, "hw": 7}, CI) == [(10, 31)]
    assert buffer_writes(isa.OP_REDUCE, {"outb": 5, "n0": 2, "n1": 3}, CI) == [(5, 11)]
    assert buffer_writes(isa.OP_EW, {"outb": D - 2, "n": 5}, CI) == [(D - 2, D), (0, 3)]   # wraps
    # CONV, integer map: 2 tiles of P_o=16 of 20 channels, hout*wout = 6, T = 4
    f = {"outb": 100, "oc_start": 0, "oc_end": 20, "hout": 2, "wout": 3, "t": 4, "hwout_t": 24, "otile": 16 * 24}
    assert buffer_writes(isa.OP_CONV, f, CI) == [(100, 100 + 15 * 24 + 24), (484, 484 + 3 * 24 + 24)]
    # ... spike bundles on the write-back: hwout_t is the spike map's channel stride
    f = dict(f, lflags=isa.LFLAG_WB, hwout_t=6, otile=16 * 6)
    assert buffer_writes(isa.OP_CONV, f, CI) == [(100, 100 + 15 * 6 + 6), (196, 196 + 3 * 6 + 6)]
    f = {"outb": 1000, "heads": 2, "hwdt": 500, "d": 4, "hwt": 40, "ntok": 10, "t": 4}
    assert buffer_writes(isa.OP_SDHA, f, CI) == [(1000, 1000 + 3 * 40 + 40), (1500, 1500 + 160)]
    assert buffer_writes(isa.OP_LOADW, {"ddr": 0, "addr": 0, "count": 9}, CI) == []


run = st.tuples(st.integers(0, 300), st.integers(1, 40), st.integers(1, 3), st.integers(-60, 60))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("SLAEX"), run, run), min_size=1, max_size=8))
def test_marked_stores_have_no_hazard_before_their_fence(items):
    """Brute force over word sets: every STORE is asynchronous and the first descriptor
    before the next STORE/END that writes one of its buffer words or reads one of its DDR
    words (EW writes ``outb .. outb+n-1``) is fenced, unless it is the STORE's very next
    (then the STORE stays synchronous and nothing is fenced); no other descriptor is."""
    descs = []
    for kind, (a, n, rows, st_), (d, _, _, _) in items:
        dst = 4 * st_
        if kind == "S":
            descs.append(_store(a, 4 * (d + 100), n, rows, st_, dst))
        elif kind in "LA":
            descs.append(_load(4 * (d + 100), a, n, rows, dst, st_, isa.LOAD_ACC if kind == "A" else 0))
        elif kind == "E":
            descs.append((isa.OP_EW, {"outb": a, "n": n}, "e"))
        else:
            descs.append((isa.OP_END, {}, ""))
    out = mark_async_stores(_prog(descs)).descriptors
    fences = set()
    for i, (op, f, _) in enumerate(descs):
        if op != isa.OP_STORE:
            continue
        buf = _words(f["addr"], f["count"], f["rows"], f["addr_stride"])
        ddr = _words(f["ddr"] // 4, f["count"], f["rows"], f["ddr_stride"] // 4)
        first = None
        for j in range(i + 1, len(descs)):
            op2, f2, _ = descs[j]
            if op2 in (isa.OP_STORE, isa.OP_END):
                break
            if op2 == isa.OP_EW:
                hazard = bool(buf & set(range(f2["outb"], f2["outb"] + f2["n"])))
            else:
                hazard = bool(buf & _words(f2["addr"], f2["count"], f2["rows"], f2["addr_stride"])) or \
                    bool(ddr & _words(f2["ddr"] // 4, f2["count"], f2["rows"], f2["ddr_stride"] // 4))
            if hazard:
                first = j
                break
        assert bool(out[i][1].get("mode", 0) & isa.STORE_ASYNC) == (first != i + 1)
        if first is not None and first != i + 1:
            fences.add(first)
    assert {j for j, (_, f, _) in enumerate(out) if f.get("fence")} == fences


def test_schedule_of_an_async_store():
    """The model's rule: an async STORE costs its fetch; the next STORE or END decodes no
    earlier than the cycle the STORE machine is idle, the rest run beside it."""
    F = FETCH_OVERHEAD + dma_read(isa.DESC_WORDS, CI)
    st_ = _store(0, 0, 400)
    ld = _load(8192, 1000, 40)
    end = (isa.OP_END, {}, "")
    c_st = descriptor_cycles(isa.OP_STORE, st_[1], CI)
    c_ld = descriptor_cycles(isa.OP_LOAD, ld[1], CI)
    sync = program_cycles(_prog([st_, ld, end]))[0]
    asy = [(op, dict(f, mode=isa.STORE_ASYNC) if op == isa.OP_STORE else f, n) for op, f, n in (st_, ld, end)]
    assert sync == c_st + c_ld + F - 1
    # the STORE machine is idle at c_st; the load ends at F + c_ld; END decodes at max(., c_st)
    assert program_cycles(_prog(asy))[0] == max(F + c_ld + F - 1, c_st)
    assert program_cycles(_prog(asy))[0] < sync
    by_node = {lc.name: lc.cycles for lc in program_cycles(_prog(asy))[1]}
    assert by_node["s"] == F + max(0, c_st - (F + c_ld + F - 1))     # the wait is the STORE's


def test_compute_runs_beside_an_async_store():
    """Version 8: an EW (any compute unit) decodes while the STORE machine runs; only END waits."""
    F = FETCH_OVERHEAD + dma_read(isa.DESC_WORDS, CI)
    st_ = (isa.OP_STORE, dict(_store(0, 0, 400)[1], mode=isa.STORE_ASYNC), "s")
    ew = (isa.OP_EW, {"a": 1000, "b": 2000, "outb": 3000, "n": 64, "mode": 0, "per": 1}, "e")
    end = (isa.OP_END, {}, "")
    c_st = descriptor_cycles(isa.OP_STORE, st_[1], CI)
    c_ew = descriptor_cycles(isa.OP_EW, ew[1], CI)
    assert program_cycles(_prog([st_, ew, end]))[0] == max(F + c_ew + F - 1, c_st)
    assert program_cycles(_prog([st_, ew, ew, end]))[0] == max(F + 2 * c_ew + F - 1, c_st)
    # a fenced EW decodes when the STORE machine is idle (as END would), the rest after it
    fenced = (isa.OP_EW, dict(ew[1], fence=1), "e")
    assert program_cycles(_prog([st_, ew, fenced, ew, end]))[0] == max(F + c_ew + F - 1, c_st) + 2 * c_ew
