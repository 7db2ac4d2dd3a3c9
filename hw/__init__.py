"""Addition-only hardware in Amaranth HDL (no torch: reads the integer IR with numpy).

* :mod:`.cores`: the stream cores (PE array, bit-planes, IntLIF lanes, requant, add, pools,
  SDHA/SDSA, SSSA) and :func:`.cores.core_for`, which maps an IR node to its core or
  refuses it by name (:class:`~models.errors.HardwareError`).
* :mod:`.synth`: Yosys ``synth_xilinx -family xcup`` resource and multiplier counts.
* :mod:`.production`: the cores at production parameters; :mod:`.costmodel`: additions
  per time step, compiled vs factored SepConvs.
"""
