"""SSSA (saccadic attention, SNN-ViT): refused by the hardware generator, with the reason.

The integer :class:`~compiler.ir.SSSA` node computes per step ``t`` and head ``h`` the
salience ``sal[n] = Qc[n] * alpha`` (``Qc`` a per-token count of Q spikes, ``alpha`` the
count of all K spikes of the step: a product of two run-time variables) and feeds
``gain[t] * sal`` to the saccade neuron. Both products have exact addition-only forms
(``alpha`` added once per active Q spike; ``gain[t]`` as a shift-add of its binary
digits), but no core here implements them yet, and the order they need (all ``N`` tokens
of a step counted into ``alpha`` before any saccade neuron of that step charges, with the
neuron's ``T`` steps back to back) is not the order of the other lanes. Rather than hide a
multiplier, :func:`refuse_sssa` stops hardware generation with that explanation.
"""

from __future__ import annotations

from ...models.errors import HardwareError

__all__ = ["refuse_sssa"]


def refuse_sssa(node) -> None:
    """Raise :class:`HardwareError` for an SSSA node (always)."""
    raise HardwareError(
        f"SSSA {node.name!r}: no addition-only hardware core yet; its salience Qc*alpha multiplies "
        "two run-time spike counts and gain[t] is a per-step constant multiply (both have exact "
        "shift-add forms, not built): deploy this model to the reference/ONNX/NIR targets, or use "
        "SDHA/SDSA attention for the FPGA target")
