"""Simulation harness: the hardware cores against the golden reference, bit for bit.

* :mod:`.payload`: stream payloads <-> integers (the words both simulators drive).
* :mod:`.pysim`: :func:`~.pysim.run_streams` drives a core in ``amaranth.sim`` with
  valid/ready coin flips (idle sources, back-pressure) and a watchdog.
* :mod:`.verilator` + :mod:`.tb_stream`: the same, under cocotb's runner on Verilator from
  the emitted Verilog; builds cached by ``sha256(Verilog, build args, Verilator version)``
  under ``build/sim``; vectors pass by npz path in the environment.
* :mod:`.cases`: vectors per core (random and edge modes, real layers), reference outputs
  from :mod:`compiler.reference`; :mod:`.check`: the scoreboard that names the first
  mismatching beat by its coordinates.

``sim`` may import torch and the compiler; ``hw`` may not.
"""
