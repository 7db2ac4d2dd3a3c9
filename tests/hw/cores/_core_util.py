"""Shared pieces of the core tests: the two handshake patterns and an amaranth.sim runner."""

from functools import partial

from svf_deploy.sim.pysim import run_streams

#: (p_valid, p_ready): free-flowing, and random idle sources with random back-pressure
PATTERNS = [(1.0, 1.0), (0.6, 0.5)]
PATTERN_IDS = ["flow", "backpressure"]


def pysim(dut, p_valid=1.0, p_ready=1.0, seed=0):
    return partial(run_streams, dut, p_valid=p_valid, p_ready=p_ready, seed=seed)
