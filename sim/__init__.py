"""Simulation harness: cocotb + Verilator runs of the hardware against the golden reference."""
