"""Fidelity of the integer graph against the float torch model.

For every neuron of the model (IR neuron nodes carry the torch module path as their
name) the *spike agreement* is the fraction of positions ``[T, B, ...]`` where the
integer reference emits the same spike value as the float model on the same clips.
Disagreement starts where a quantised membrane lands on the other side of a threshold
and then propagates; the per-layer table shows where it arises. With labels, the
classification accuracy of both is reported too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.neurons import SpikingNeuron
from . import ir, reference

__all__ = ["LayerFidelity", "FidelityReport", "measure_fidelity"]


@dataclass(frozen=True)
class LayerFidelity:
    """One neuron layer: ``agreement`` in [0, 1], firing rates of both models."""

    name: str
    agreement: float
    float_rate: float
    int_rate: float
    first_divergence: bool = False


@dataclass(frozen=True)
class FidelityReport:
    layers: tuple[LayerFidelity, ...]
    n_clips: int
    float_accuracy: float | None
    int_accuracy: float | None
    prediction_agreement: float | None

    @property
    def mean_agreement(self) -> float:
        return sum(x.agreement for x in self.layers) / max(1, len(self.layers))

    @property
    def accuracy_drop(self) -> float | None:
        if self.float_accuracy is None or self.int_accuracy is None:
            return None
        return self.float_accuracy - self.int_accuracy

    def to_dict(self) -> dict:
        return {"n_clips": self.n_clips, "float_accuracy": self.float_accuracy,
                "int_accuracy": self.int_accuracy, "accuracy_drop": self.accuracy_drop,
                "prediction_agreement": self.prediction_agreement,
                "mean_spike_agreement": self.mean_agreement,
                "layers": [vars(x) for x in self.layers]}


_NEURON_OPS = ("IntLIF", "LIF")


@torch.no_grad()
def measure_fidelity(model: torch.nn.Module, graph: ir.Graph, clips: torch.Tensor,
                     labels: torch.Tensor | None = None, batch: int = 32,
                     progress=None) -> FidelityReport:
    """Compare ``model`` (float) and ``graph`` (integer) on ``clips`` ``[N, T, C, H, W]``.

    ``progress``: optional callable ``(done, total)`` for progress bars.
    """
    neuron_nodes = [n.name for n in graph.nodes if n.op in _NEURON_OPS]
    modules = dict(model.named_modules())
    missing = [n for n in neuron_nodes if not isinstance(modules.get(n), SpikingNeuron)]
    if missing:
        raise ValueError(f"graph neuron {missing[0]!r} has no matching neuron module in the model")
    agree = {n: 0.0 for n in neuron_nodes}
    f_sum = {n: 0.0 for n in neuron_nodes}
    i_sum = {n: 0.0 for n in neuron_nodes}
    count = {n: 0 for n in neuron_nodes}
    captured: dict[str, torch.Tensor] = {}
    hooks = [modules[n].register_forward_hook(
        lambda mod, inp, out, name=n: captured.__setitem__(name, out.detach()))
        for n in neuron_nodes]
    f_correct = i_correct = same_pred = 0
    out_name = graph.outputs[0]
    try:
        model.eval()
        n_total = clips.shape[0]
        for start in range(0, n_total, batch):
            x = clips[start:start + batch].transpose(0, 1).contiguous()  # [T, B, C, H, W]
            captured.clear()
            y_float = model(x)
            res = reference.run(graph, x, record=True)
            for n in neuron_nodes:
                fs = captured[n].to(torch.int64)
                is_ = res.values[n].reshape(fs.shape)
                agree[n] += float((fs == is_).double().sum())
                f_sum[n] += float(fs.double().sum())
                i_sum[n] += float(is_.double().sum())
                count[n] += fs.numel()
            if labels is not None and isinstance(y_float, torch.Tensor):
                y_int = res.outputs[out_name]
                lab = labels[start:start + batch]
                pf, pi = y_float.argmax(-1), y_int.argmax(-1)
                f_correct += int((pf == lab).sum())
                i_correct += int((pi == lab).sum())
                same_pred += int((pf == pi).sum())
            if progress is not None:
                progress(min(start + batch, n_total), n_total)
    finally:
        for h in hooks:
            h.remove()
    layers = []
    seen_div = False
    for n in neuron_nodes:
        a = agree[n] / count[n]
        first = (not seen_div) and a < 1.0
        seen_div = seen_div or a < 1.0
        layers.append(LayerFidelity(n, a, f_sum[n] / count[n], i_sum[n] / count[n], first))
    n = clips.shape[0]
    acc = (lambda k: k / n) if labels is not None else (lambda k: None)
    return FidelityReport(tuple(layers), n, acc(f_correct), acc(i_correct),
                          acc(same_pred) if labels is not None else None)
