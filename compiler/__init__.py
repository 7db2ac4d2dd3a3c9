"""Compiler: trained torch model -> integer spike graph, and the golden reference executor."""
