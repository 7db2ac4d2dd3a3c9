"""Drive a stream core in ``amaranth.sim`` with packed beats, under optional back-pressure.

:func:`run_streams` is the pure-Python twin of the cocotb testbench
(:mod:`svf_deploy.sim.tb_stream`): the same beats, the same valid/ready patterns (from
:func:`handshake_pattern`), the received beats returned in order.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Value
from amaranth.sim import Simulator

__all__ = ["run_streams", "handshake_pattern", "stream_ports"]


def stream_ports(dut) -> tuple[list[str], list[str]]:
    """Names of the input and output stream members of a core's signature."""
    from amaranth.lib import stream, wiring

    ins, outs = [], []
    for name, member in dut.signature.members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            (ins if member.flow == wiring.In else outs).append(name)
    return ins, outs


def handshake_pattern(cycles: int, p_valid: float, p_ready: float, seed: int) -> dict:
    """Per-cycle coin flips: whether a source offers a new beat, whether a sink is ready."""
    rng = np.random.default_rng(seed)
    return {"offer": rng.random(cycles) < p_valid, "ready": rng.random(cycles) < p_ready}


def run_streams(dut, inputs: dict[str, list[int]], expect: dict[str, int], *,
                p_valid: float = 1.0, p_ready: float = 1.0, seed: int = 0,
                max_cycles: int | None = None, vcd: str | None = None) -> dict[str, list[int]]:
    """Send packed beats into the input streams and collect ``expect[name]`` beats per output.

    A source that offers a beat holds it (valid and payload) until it transfers, as the
    stream contract requires. Raises ``TimeoutError`` (a watchdog) if the outputs do not
    all arrive within ``max_cycles``.
    """
    total = sum(len(v) for v in inputs.values()) + sum(expect.values())
    max_cycles = max_cycles or 20 * total + 200
    pat = handshake_pattern(max_cycles, p_valid, p_ready, seed)
    got: dict[str, list[int]] = {k: [] for k in expect}
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        idx = {k: 0 for k in inputs}
        holding = {k: False for k in inputs}
        for cyc in range(max_cycles):
            for k, beats in inputs.items():
                port = getattr(dut, k)
                if not holding[k] and idx[k] < len(beats) and pat["offer"][cyc]:
                    holding[k] = True
                    ctx.set(Value.cast(port.payload), beats[idx[k]])
                ctx.set(port.valid, holding[k])
            for k in expect:
                ctx.set(getattr(dut, k).ready, bool(pat["ready"][cyc]))
            for k in inputs:
                port = getattr(dut, k)
                if holding[k] and ctx.get(port.ready):
                    holding[k] = False
                    idx[k] += 1
            for k in expect:
                port = getattr(dut, k)
                if ctx.get(port.valid) and ctx.get(port.ready):
                    got[k].append(ctx.get(Value.cast(port.payload)))
            await ctx.tick()
            if all(len(got[k]) >= n for k, n in expect.items()) and \
                    all(idx[k] == len(v) for k, v in inputs.items()):
                return
        raise TimeoutError(f"watchdog: after {max_cycles} cycles got "
                           f"{ {k: len(v) for k, v in got.items()} } of {expect} output beats")

    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return got
