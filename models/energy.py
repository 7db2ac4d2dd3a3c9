"""Energy and synaptic-operation counter, the field's convention (SpikeVideoFormer App. E).

For each synaptic layer ``l`` (Conv1d/Conv2d/Linear) with ``FLOPs_l`` multiply-accumulates
of its dense counterpart and input firing rate ``fr_l`` (mean of its input spike tensor):

* ANN energy: ``E_ANN = sum_l FLOPs_l * E_MAC``
* SNN energy: ``E_SNN = FLOPs_first * E_MAC + sum_{l > first} fr_l * FLOPs_l * E_AC``

with 45 nm figures ``E_MAC = 4.6 pJ`` and ``E_AC = 0.9 pJ``. The first (analog-input)
layer is counted as MAC. Layers whose input is not a spike tensor (the 1x1 after a
depthwise conv, the inner convs of RepConv) take the firing rate of the nearest spike
tensor upstream: after compilation they are one gated-add conv on those spikes.
Attention cores count ``SOPs = ops * fr(V)`` additions, ``ops`` being the dense count
the attention module reports in ``last_ops``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .neurons import SpikingNeuron

__all__ = ["E_MAC_PJ", "E_AC_PJ", "LayerEnergy", "EnergyReport", "EnergyMeter", "measure_energy"]

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


@dataclass(frozen=True)
class LayerEnergy:
    """One synaptic layer: ``sops = fr * flops`` (or ``flops`` for a MAC layer)."""

    name: str
    kind: str
    flops: float
    firing_rate: float
    is_mac: bool
    energy_pj: float

    @property
    def sops(self) -> float:
        return self.flops if self.is_mac else self.firing_rate * self.flops


@dataclass(frozen=True)
class EnergyReport:
    """Per-layer figures for one forward pass (all samples of the batch together)."""

    layers: tuple[LayerEnergy, ...]
    batch: int

    @property
    def snn_mj(self) -> float:
        """SNN energy per sample in millijoules."""
        return sum(lay.energy_pj for lay in self.layers) / self.batch * 1e-9

    @property
    def ann_mj(self) -> float:
        """Energy of the same network as an ANN (all MACs), per sample, in mJ."""
        return sum(lay.flops for lay in self.layers) * E_MAC_PJ / self.batch * 1e-9

    @property
    def total_sops(self) -> float:
        return sum(lay.sops for lay in self.layers) / self.batch

    def table(self) -> list[dict]:
        return [dict(layer=lay.name, kind=lay.kind, flops=lay.flops / self.batch,
                     firing_rate=lay.firing_rate, sops=lay.sops / self.batch,
                     energy_uJ=lay.energy_pj / self.batch * 1e-6) for lay in self.layers]


def _flops(mod: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> float:
    if isinstance(mod, nn.Linear):
        return float(out.numel() * mod.in_features)
    k = 1
    for s in mod.kernel_size:
        k *= s
    return float(out.numel() * (mod.in_channels // mod.groups) * k)


def _is_spikes(x: torch.Tensor) -> bool:
    return bool(torch.all(x >= 0) and torch.all(x == torch.round(x)))


class EnergyMeter:
    """Context manager: hooks on ``model`` that count one forward pass's energy.

    ``with EnergyMeter(model) as m: model(x)`` then ``m.report(batch)``; the forward can be
    one that is run anyway (fidelity's first batch), so no extra pass is needed.
    """

    def __init__(self, model: nn.Module, e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ):
        self.model, self.e_mac, self.e_ac = model, e_mac, e_ac
        self.records: list[LayerEnergy] = []
        self.hooks: list = []

    def __enter__(self) -> "EnergyMeter":
        model, e_mac, e_ac = self.model, self.e_mac, self.e_ac
        names = {m: n for n, m in model.named_modules()}
        records = self.records
        state = {"rate": None, "first": True}
        hooks = self.hooks

        def neuron_hook(mod, inp, out):
            state["rate"] = float(out.float().mean())

        def syn_hook(mod, inp, out):
            xin = inp[0]
            if state["first"]:
                state["first"] = False
                fl = _flops(mod, xin, out)
                records.append(LayerEnergy(names[mod], type(mod).__name__, fl, 1.0, True, fl * e_mac))
                return
            rate = float(xin.float().mean()) if _is_spikes(xin) else (state["rate"] or 0.0)
            fl = _flops(mod, xin, out)
            records.append(LayerEnergy(names[mod], type(mod).__name__, fl, rate, False, rate * fl * e_ac))

        def attn_hook(mod, inp, out):
            ops = float(getattr(mod, "last_ops", 0) or 0)
            if ops:
                rate = state.get("v_rate", 1.0)
                records.append(LayerEnergy(names[mod] + ".core", "attention", ops, rate, False, rate * ops * e_ac))

        def v_hook(mod, inp, out):
            state["v_rate"] = float(out.float().mean())

        for m in model.modules():
            if isinstance(m, SpikingNeuron):
                hooks.append(m.register_forward_hook(neuron_hook))
            elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                hooks.append(m.register_forward_hook(syn_hook))
            if hasattr(m, "last_ops") and hasattr(m, "v_lif"):
                hooks.append(m.v_lif.register_forward_hook(v_hook))
                hooks.append(m.register_forward_hook(attn_hook))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks.clear()

    def report(self, batch: int) -> EnergyReport:
        """The counted pass as per-sample figures (``batch`` samples in it)."""
        return EnergyReport(tuple(self.records), batch)


@torch.no_grad()
def measure_energy(model: nn.Module, x: torch.Tensor, e_mac: float = E_MAC_PJ,
                   e_ac: float = E_AC_PJ) -> EnergyReport:
    """Run ``model(x)`` once with hooks and return the per-layer energy report.

    The first synaptic layer to run is the analog one (MAC); every other layer is an
    accumulate layer weighted by its input firing rate (see the module docstring).
    """
    was = model.training
    model.eval()
    try:
        with EnergyMeter(model, e_mac, e_ac) as meter:
            model(x)
    finally:
        model.train(was)
    batch = x.shape[1] if x.dim() == 5 else x.shape[0]
    return meter.report(batch)
