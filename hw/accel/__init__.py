"""The layer-sequential accelerator for the ZCU104: engine RTL, program emitter, cycle model.

* :mod:`.isa` - descriptors, tensor layouts and the register map (RTL, driver, simulation).
* :mod:`.config` - :class:`AccelConfig`: the CI and production parameter sets.
* :mod:`.engine` - the Amaranth engine (AXI4 master, AXI4-Lite slave, units, buffers).
* :mod:`.simd` - :class:`~.simd.SimdAcc`: one DSP48E2 as a two-lane 24-bit SIMD accumulator
  (CONV array; behavioural twin for simulation, the primitive for synthesis).
* :mod:`.program` - integer graph -> program, weight/parameter images, DDR memory map.
* :mod:`.cycles` - analytic cycle model (exact for the RTL, validated against Verilator).
* :mod:`.verilog` - the engine's Verilog without all-zero memory ``init`` (seconds, not minutes).

Board files live in :mod:`svf_deploy.hw.board`, the host driver in :mod:`svf_deploy.hw.driver`,
the whole-engine simulation in :mod:`svf_deploy.sim.accel`, the CLI target in
:mod:`svf_deploy.targets.zcu104`.
"""

from .config import CI, PRODUCTION, AccelConfig, XCZU7EV

__all__ = ["AccelConfig", "CI", "PRODUCTION", "XCZU7EV"]
