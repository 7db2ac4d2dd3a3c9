"""benchmarks/goal_bounds.py: its issue-cycle bounds obey the skip rules' order and limits."""

import dataclasses

import numpy as np
import pytest


@pytest.fixture(scope="module")
def gb(bench_script):
    return bench_script("goal_bounds")


@pytest.fixture(scope="module")
def bundled_program():
    from accel_latency import bundled
    from svf_deploy.hw.accel import CI
    from svf_deploy.hw.accel.program import emit

    graph, _ = bundled()
    return graph, emit(graph, CI)


def test_bounds_limits_and_order(gb, bundled_program):
    from accel_latency import synthetic_inputs
    from svf_deploy.hw.accel import isa
    from svf_deploy.hw.accel.cycles import conv_groups

    graph, prog = bundled_program
    cfg = prog.cfg
    dense = gb.issue_cycles(prog, None)  # no inputs: every rule issues every term
    assert dense["engine"] == dense["no_blocks"] == dense["dense"] > 0
    full = synthetic_inputs(prog, graph, 0.0, np.random.default_rng(0))  # every bundle non-zero
    r = gb.issue_cycles(prog, full)
    assert dense["dense"] == r["dense"] > r["engine"] > r["no_blocks"]  # only padding taps skipped
    assert not prog.windows
    one = dataclasses.replace(prog, descriptors=[d for d in prog.descriptors  # no padding taps at all
                                                 if d[0] == isa.OP_CONV and int(d[1]["kk"]) == 1])
    assert one.descriptors
    r1 = gb.issue_cycles(one, full)
    assert r1["engine"] == r1["no_blocks"] == r1["dense"] > 0
    # nothing live: one cycle per block of `scan` terms (engine), one per group (no blocks)
    empty = {k: np.zeros_like(v) for k, v in full.items()}
    e = gb.issue_cycles(prog, empty)
    groups = blocks = 0
    for op, f, _ in prog.descriptors:
        if op == isa.OP_CONV:
            n = (-(-(int(f["oc_end"]) - int(f["oc_start"])) // cfg.p_o) * int(f["hout"])
                 * len(conv_groups(cfg, int(f["wout"]), int(f["stride"]))) * -(-int(f["t"]) // cfg.p_t))
            groups += n
            blocks += n * -(-int(f["cin"]) * int(f["kk"]) // cfg.scan)
    assert (e["engine"], e["no_blocks"]) == (blocks, groups)
    for rate in (0.5, 0.9):
        r = gb.issue_cycles(prog, synthetic_inputs(prog, graph, rate, np.random.default_rng(3)))
        assert r["dense"] >= r["engine"] >= r["no_blocks"] >= r["per_pixel"] > 0
    assert r["engine"] < r["dense"]


def test_ddr_bytes_agrees_with_ddr_traffic(gb, bundled_program):
    import ddr_traffic

    _, prog = bundled_program
    per_op, _, _ = ddr_traffic.breakdown(prog)
    assert gb.ddr_bytes(prog) == sum(r[1] for r in per_op.values()) > 0
