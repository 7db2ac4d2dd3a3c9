"""Asynchronous STOREs: the emitter's hazard rule (:mod:`svf_deploy.hw.accel.overlap`) and the
cycle model's schedule (:func:`svf_deploy.hw.accel.cycles._costs`); the engine's side is
``test_engine_sim.py::test_async_stores_run_beside_loads_exactly``."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from svf_deploy.hw.accel import CI, isa
from svf_deploy.hw.accel.cycles import FETCH_OVERHEAD, descriptor_cycles, dma_read, program_cycles
from svf_deploy.hw.accel.overlap import mark_async_stores, store_conflicts
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
    assert not store_conflicts(s, isa.OP_LOAD, _load(0, 110, 10)[1], CI.p_o)          # the gap between runs
    assert store_conflicts(s, isa.OP_LOAD, _load(0, 129, 1)[1], CI.p_o)                # last word of run 1
    assert store_conflicts(s, isa.OP_LOAD, _load(4196, 500, 1)[1], CI.p_o)             # DDR byte 4199 of run 1
    assert not store_conflicts(s, isa.OP_LOAD, _load(4136, 500, 6)[1], CI.p_o)         # DDR 4136..4159: between
    w = (isa.OP_LOADW, {"ddr": 4160 - CI.p_o, "addr": 0, "count": 1}, "w")
    assert not store_conflicts(s, *w[:2], CI.p_o)                                      # ends at 4160
    assert store_conflicts(s, isa.OP_LOADW, dict(w[1], count=2), CI.p_o)


def test_a_store_stays_synchronous_when_a_load_before_the_next_barrier_conflicts():
    descs = [_store(0, 0, 8), _load(1000, 64, 8), _load(2000, 4, 1),                  # writes word 4: conflict
             _store(64, 512, 8), _load(3000, 200, 8), (isa.OP_EW, {}, "e"), _load(0, 64, 8),   # after the barrier
             _store(200, 1024, 8), (isa.OP_END, {}, "")]
    modes = [f.get("mode", 0) for op, f, _ in mark_async_stores(_prog(descs)).descriptors if op == isa.OP_STORE]
    assert modes == [0, isa.STORE_ASYNC, isa.STORE_ASYNC]
    assert all("mode" not in f for op, f, _ in descs if op == isa.OP_STORE)      # pure: the input unchanged


run = st.tuples(st.integers(0, 300), st.integers(1, 40), st.integers(1, 3), st.integers(-60, 60))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("SLAE"), run, run), min_size=1, max_size=8))
def test_marked_stores_have_no_hazard_before_their_barrier(items):
    """Brute force over word sets: a STORE is marked asynchronous iff no plain LOAD before
    the next other descriptor writes one of its buffer words or reads one of its DDR words."""
    descs = []
    for kind, (a, n, rows, st_), (d, _, _, _) in items:
        dst = 4 * st_
        if kind == "S":
            descs.append(_store(a, 4 * (d + 100), n, rows, st_, dst))
        elif kind in "LA":
            descs.append(_load(4 * (d + 100), a, n, rows, dst, st_, isa.LOAD_ACC if kind == "A" else 0))
        else:
            descs.append((isa.OP_EW, {}, "e"))
    out = mark_async_stores(_prog(descs)).descriptors
    for i, (op, f, _) in enumerate(descs):
        if op != isa.OP_STORE:
            continue
        buf = _words(f["addr"], f["count"], f["rows"], f["addr_stride"])
        ddr = _words(f["ddr"] // 4, f["count"], f["rows"], f["ddr_stride"] // 4)
        hazard = False
        for op2, f2, _ in descs[i + 1:]:
            if op2 != isa.OP_LOAD or f2["mode"]:
                break
            hazard |= bool(buf & _words(f2["addr"], f2["count"], f2["rows"], f2["addr_stride"]))
            hazard |= bool(ddr & _words(f2["ddr"] // 4, f2["count"], f2["rows"], f2["ddr_stride"] // 4))
        assert bool(out[i][1].get("mode", 0) & isa.STORE_ASYNC) == (not hazard)


def test_schedule_of_an_async_store():
    """The model's rule: an async STORE costs its fetch; the next descriptor that is not a
    plain LOAD/LOADW decodes no earlier than the cycle the STORE machine is idle."""
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
