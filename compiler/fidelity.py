"""Fidelity of the integer graph against the float torch model.

For every neuron of the model (IR neuron nodes carry the torch module path as their
name) the *spike agreement* is the fraction of positions ``[T, B, ...]`` where the
integer reference emits the same spike value as the float model on the same clips.
Disagreement starts where a quantised membrane lands on the other side of a threshold
and then propagates; the per-layer table shows where it arises. With labels, the
classification accuracy of both is reported too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..models.neurons import SpikingNeuron
from . import ir, reference

__all__ = ["LayerFidelity", "FidelityReport", "measure_fidelity", "default_batch"]


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

#: default batch: about this many frame pixels (T * H * W * clips) per step
_BATCH_PIXELS = 32 * 4 * 32 * 32


def default_batch(clip_shape: tuple[int, ...]) -> int:
    """Clips per step for clips ``[T, C, H, W]``: 32 tiny clips, one real-size clip."""
    t, _, h, w = clip_shape
    return max(1, min(32, _BATCH_PIXELS // (t * h * w)))


@torch.no_grad()
def measure_fidelity(model: torch.nn.Module, graph: ir.Graph, clips, labels: torch.Tensor | None = None,
                     batch: int | None = None, progress=None, first_forward=None,
                     first_observe=None) -> FidelityReport:
    """Compare ``model`` (float) and ``graph`` (integer) on ``clips`` ``[N, T, C, H, W]``.

    ``clips``: a tensor, or anything with ``len()`` whose slices are such tensors (a
    :class:`svf_deploy.clips.ClipSet`, which materialises only the slice asked for).
    Memory is bounded by one batch (``batch`` clips; default :func:`default_batch`: one
    clip at real frame sizes): the float model's spikes are captured as ``uint8`` by hooks;
    the reference then runs without ``record`` and each of its neuron outputs is compared
    (``reference.run(observe=...)``) the moment it is computed, after which both copies are
    dropped, as is every other tensor after its last reader.
    ``progress``: optional callable ``(done, total)`` for progress bars.

    Work done anyway, shared instead of repeated at real sizes: ``first_forward``, a
    context manager put around the float model's first forward (e.g. an energy meter), and
    ``first_observe(name, value, outputs)``, called for every node of the reference's first
    batch as it is computed (the golden record; integer results do not depend on the batch,
    so ``value[:, :1]`` is exactly the first clip's run alone); ``outputs`` is None until the
    last call, ``(None, None, outputs)``, which passes the run's outputs.
    """
    neuron_nodes = [n.name for n in graph.nodes if n.op in _NEURON_OPS]
    wanted = set(neuron_nodes)
    modules = dict(model.named_modules())
    missing = [n for n in neuron_nodes if not isinstance(modules.get(n), SpikingNeuron)]
    if missing:
        raise ValueError(f"graph neuron {missing[0]!r} has no matching neuron module in the model")
    agree = {n: 0 for n in neuron_nodes}
    f_sum = {n: 0 for n in neuron_nodes}
    i_sum = {n: 0 for n in neuron_nodes}
    count = {n: 0 for n in neuron_nodes}
    captured: dict[str, torch.Tensor] = {}

    def capture(name: str, out: torch.Tensor) -> None:
        captured[name] = out.detach().to(torch.uint8)

    def compare(name: str, value: torch.Tensor) -> None:
        if name not in wanted:
            return
        fs = captured.pop(name)
        is_ = value.reshape(fs.shape)
        agree[name] += int((fs == is_).sum())
        f_sum[name] += int(fs.sum(dtype=torch.int64))
        i_sum[name] += int(is_.sum(dtype=torch.int64))
        count[name] += fs.numel()

    hooks = [modules[n].register_forward_hook(
        lambda mod, inp, out, name=n: capture(name, out)) for n in neuron_nodes]
    f_correct = i_correct = same_pred = 0
    out_name = graph.outputs[0]
    n_total = len(clips)
    batch = batch or (default_batch(tuple(clips.shape[1:])) if n_total else 1)
    try:
        was = model.training
        model.eval()
        for start in range(0, n_total, batch):
            x = clips[start:start + batch].transpose(0, 1).contiguous()  # [T, B, C, H, W]
            captured.clear()
            first = start == 0
            with (first_forward() if first and first_forward is not None else contextlib.nullcontext()):
                y_float = model(x)
            if first and first_observe is not None:
                def obs(name, value):
                    first_observe(name, value, None)
                    compare(name, value)
            else:
                obs = compare
            res = reference.run(graph, x, observe=obs)
            if first and first_observe is not None:
                first_observe(None, None, res.outputs)
            if captured:
                raise ValueError(f"the integer graph produced no value for neuron {next(iter(captured))!r}")
            if labels is not None and isinstance(y_float, torch.Tensor):
                y_int = res.outputs[out_name]
                lab = labels[start:start + batch]
                pf, pi = y_float.argmax(-1), y_int.argmax(-1)
                f_correct += int((pf == lab).sum())
                i_correct += int((pi == lab).sum())
                same_pred += int((pf == pi).sum())
            del x, y_float, res
            if progress is not None:
                progress(min(start + batch, n_total), n_total)
        model.train(was)
    finally:
        for h in hooks:
            h.remove()
        captured.clear()
    layers = []
    seen_div = False
    for n in neuron_nodes:
        a = agree[n] / count[n]
        first = (not seen_div) and a < 1.0
        seen_div = seen_div or a < 1.0
        layers.append(LayerFidelity(n, a, f_sum[n] / count[n], i_sum[n] / count[n], first))
    n = n_total
    acc = (lambda k: k / n) if labels is not None else (lambda k: None)
    return FidelityReport(tuple(layers), n, acc(f_correct), acc(i_correct),
                          acc(same_pred) if labels is not None else None)
