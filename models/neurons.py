"""Multi-step spiking neurons over a leading time axis ``[T, B, ...]``.

LIF (as the published SpikeVideoFormer / Meta-SpikeFormer code trains it, spikingjelly's
``MultiStepLIFNode``), per step ``t`` with membrane ``V[-1] = v_reset`` (or 0):

* charge, ``decay_input=True``:  ``H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau``
* charge, ``decay_input=False``: ``H[t] = V[t-1] - (V[t-1] - v_reset) / tau + X[t]``
  (this is the paper's ``H = beta U + X`` with ``beta = 1 - 1/tau``)
* fire: ``S[t] = H[t] >= v_threshold`` (Heaviside; the surrogate gradient is
  ``alpha * sigmoid'(alpha * (H - v_threshold))`` with ``alpha = 4``)
* reset, hard: ``V[t] = S ? v_reset : H``; soft: ``V[t] = H - S * v_threshold``.

I-LIF (integer LIF, SpikeYOLO style): emits integer spike counts
``S = clamp(round(H / v_threshold), 0, D)`` and soft-resets by ``S * v_threshold``.
At inference an integer spike ``k`` equals ``k`` binary spikes over ``D`` sub-steps.

Neurons hold no state between calls (each forward starts from rest) and no
parameters, so they add no ``state_dict`` entries, as spikingjelly's do not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .errors import ConfigError
from .leak import leak_shift  # torch-free home, re-exported here

__all__ = ["NeuronConfig", "LIF", "ILIF", "SigmoidSurrogate", "make_neuron", "SpikingNeuron"]


class SigmoidSurrogate(torch.autograd.Function):
    """Heaviside forward, ``alpha * s * (1 - s)`` with ``s = sigmoid(alpha x)`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.alpha * x)
        return grad * ctx.alpha * s * (1.0 - s), None


class _RoundClampSTE(torch.autograd.Function):
    """``clamp(round(x), 0, D)`` with a straight-through gradient inside ``[0, D]``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, levels: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.levels = levels
        return torch.clamp(torch.round(x), 0, levels)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        inside = (x >= -0.5) & (x <= ctx.levels + 0.5)
        return grad * inside.to(grad.dtype), None


@dataclass(frozen=True)
class NeuronConfig:
    """Neuron hyper-parameters. Defaults are those of the published code.

    Parameters
    ----------
    tau : membrane time constant (> 1). 2.0 in the published models.
    decay_input : if True the input is scaled by ``1/tau`` too (spikingjelly default).
    v_threshold : firing threshold (> 0).
    reset : ``"hard"`` (to ``v_reset``) or ``"soft"`` (subtract the threshold).
    v_reset : hard-reset potential; only 0.0 is supported by the integer compiler.
    alpha : sigmoid surrogate sharpness.
    levels : 1 for binary LIF; ``D > 1`` makes the neuron an I-LIF emitting 0..D.
    """

    tau: float = 2.0
    decay_input: bool = True
    v_threshold: float = 1.0
    reset: str = "hard"
    v_reset: float = 0.0
    alpha: float = 4.0
    levels: int = 1

    def __post_init__(self) -> None:
        if not self.tau > 1.0:
            raise ConfigError(f"neuron tau must be > 1, got {self.tau!r}; use e.g. tau=2.0")
        if not self.v_threshold > 0:
            raise ConfigError(f"neuron v_threshold must be > 0, got {self.v_threshold!r}")
        if self.reset not in ("hard", "soft"):
            raise ConfigError(f"neuron reset must be 'hard' or 'soft', got {self.reset!r}")
        if not (isinstance(self.levels, int) and self.levels >= 1):
            raise ConfigError(f"neuron levels must be an int >= 1, got {self.levels!r}")

    def replace(self, **kw) -> "NeuronConfig":
        d = asdict(self)
        d.update(kw)
        return NeuronConfig(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NeuronConfig":
        return cls(**d)


class SpikingNeuron(nn.Module):
    """Base of every neuron: a leaf for the compiler and the energy counter.

    ``record`` turns on keeping the last call's membrane trace ``last_h`` (pre-reset
    ``H``, shape ``[T, ...]``) for fidelity comparisons with the integer reference.
    """

    def __init__(self, cfg: NeuronConfig):
        super().__init__()
        self.cfg = cfg
        self.record = False
        self.last_h: torch.Tensor | None = None

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"tau={c.tau}, decay_input={c.decay_input}, v_th={c.v_threshold}, "
                f"reset={c.reset}, levels={c.levels}")

    def _charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        vr = c.v_reset if c.reset == "hard" else 0.0
        if c.decay_input:
            return v + (x - (v - vr)) / c.tau
        return v - (v - vr) / c.tau + x


class _MultiStepLIF(torch.autograd.Function):
    """Fused multi-step LIF with hand-written BPTT (same math as the step loop).

    The forward charges in spikingjelly's order, ``H = V + (X - (V - v_reset)) / tau``
    (``decay_input``) or ``H = V - (V - v_reset) / tau + X``: the algebraically equal
    ``0.5 V + 0.5 X`` differs by one ulp in ~7 % of float32 membranes and flips spikes.

    With ``detach_reset`` (as published) the reset does not carry gradient, so per step
    ``dL/dH[t] = dL/dS[t] * sg'(H[t] - V_th) + dL/dV[t] * dV/dH``, where ``dV/dH`` is
    ``1 - S[t]`` (hard) or 1 (soft); ``dL/dV[t-1] = dL/dH[t] * dH/dV`` and
    ``dL/dX[t] = dL/dH[t] * dH/dX`` (``1 - 1/tau`` and ``1/tau`` with decay_input,
    ``1 - 1/tau`` and 1 without).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, tau: float, decay_input: bool, v_th: float, hard: bool,
                v_reset: float, alpha: float):  # type: ignore[override]
        k_v = 1.0 - 1.0 / tau
        k_x = 1.0 / tau if decay_input else 1.0
        v = torch.full_like(x[0], v_reset if hard else 0.0)
        vr = v_reset if hard else 0.0
        hs = torch.empty_like(x)
        ss = torch.empty_like(x)
        for t in range(x.shape[0]):
            # spikingjelly's operation order, bit for bit (0.5 v + 0.5 x rounds differently)
            h = v + (x[t] - (v - vr)) / tau if decay_input else v - (v - vr) / tau + x[t]
            s = (h >= v_th).to(x.dtype)
            hs[t] = h
            ss[t] = s
            v = h * (1.0 - s) + v_reset * s if hard else h - s * v_th
        ctx.save_for_backward(hs, ss)
        ctx.cfg = (k_v, k_x, v_th, hard, alpha)
        return ss, hs

    @staticmethod
    def backward(ctx, g_s: torch.Tensor, g_h_out: torch.Tensor):  # type: ignore[override]
        hs, ss = ctx.saved_tensors
        k_v, k_x, v_th, hard, alpha = ctx.cfg
        sig = torch.sigmoid(alpha * (hs - v_th))
        sg = alpha * sig * (1.0 - sig)
        gx = torch.empty_like(hs)
        g_v = torch.zeros_like(hs[0])
        for t in range(hs.shape[0] - 1, -1, -1):
            dv_dh = (1.0 - ss[t]) if hard else 1.0
            g_h = g_s[t] * sg[t] + g_v * dv_dh
            if g_h_out is not None:
                g_h = g_h + g_h_out[t]
            gx[t] = g_h * k_x
            g_v = g_h * k_v
        return gx, None, None, None, None, None, None


def _lif_inference(x: torch.Tensor, tau: float, decay_input: bool, v_th: float, hard: bool,
                   v_reset: float, keep_h: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The forward of :class:`_MultiStepLIF` without autograd bookkeeping (no grad needed):
    the same values bit for bit, in-place, ``H`` kept only when asked for.

    ``v + (x - (v - v_reset)) / tau``: with ``v_reset = 0`` the ``v - 0`` is ``v`` exactly,
    and IEEE addition is commutative, so ``((x - v) / tau) + v`` is the same number. The
    hard reset ``v (1 - s) + v_reset s`` equals ``masked_fill(s, v_reset)`` (up to the sign
    of a zero, which no later operation can observe).
    """
    vr = v_reset if hard else 0.0
    v = torch.full_like(x[0], vr)
    out = torch.empty_like(x)
    hs = torch.empty_like(x) if keep_h else None
    for t in range(x.shape[0]):
        if decay_input:
            h = torch.sub(x[t], v if vr == 0.0 else v - vr)
            h.div_(tau).add_(v)
        else:
            h = torch.sub(v, (v if vr == 0.0 else v - vr) / tau).add_(x[t])
        fired = h >= v_th
        out[t] = fired
        if keep_h:
            hs[t] = h
        v = h.masked_fill_(fired, v_reset) if hard else h.sub_(fired.to(h.dtype) * v_th)
    return out, hs


class LIF(SpikingNeuron):
    """Binary multi-step LIF neuron; see the module docstring for the dynamics.

    Input ``x`` of shape ``[T, ...]``; output spikes of the same shape in {0, 1}.
    """

    def __init__(self, cfg: NeuronConfig | None = None, **kw):
        cfg = (cfg or NeuronConfig()).replace(**kw) if kw else (cfg or NeuronConfig())
        if cfg.levels != 1:
            raise ConfigError(f"LIF is binary (levels=1); got levels={cfg.levels}: use ILIF")
        super().__init__(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        if not (torch.is_grad_enabled() and x.requires_grad):  # inference: same values, less work
            s, h = _lif_inference(x, c.tau, c.decay_input, c.v_threshold, c.reset == "hard",
                                  c.v_reset, self.record)
            if self.record:
                self.last_h = h
            return s
        s, h = _MultiStepLIF.apply(x, c.tau, c.decay_input, c.v_threshold, c.reset == "hard",
                                   c.v_reset, c.alpha)
        if self.record:
            self.last_h = h.detach()
        return s


class ILIF(SpikingNeuron):
    """Integer LIF: emits ``clamp(round(H / v_th), 0, D)`` and soft-resets by that many thresholds."""

    def __init__(self, cfg: NeuronConfig | None = None, **kw):
        cfg = (cfg or NeuronConfig(reset="soft", levels=4))
        if kw:
            cfg = cfg.replace(**kw)
        if cfg.levels < 1:
            raise ConfigError(f"ILIF needs levels D >= 1, got {cfg.levels}")
        if cfg.reset != "soft":
            raise ConfigError("ILIF resets by subtraction: use reset='soft'")
        super().__init__(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        v = torch.zeros_like(x[0])
        out, hs = [], []
        for t in range(x.shape[0]):
            h = self._charge(v, x[t])
            s = _RoundClampSTE.apply(h / c.v_threshold, c.levels)
            v = h - s.detach() * c.v_threshold
            out.append(s)
            if self.record:
                hs.append(h.detach())
        if self.record:
            self.last_h = torch.stack(hs)
        return torch.stack(out)


def make_neuron(cfg: NeuronConfig, **overrides) -> SpikingNeuron:
    """Build an LIF (levels 1) or ILIF (levels > 1) from a config plus overrides."""
    cfg = cfg.replace(**overrides) if overrides else cfg
    return LIF(cfg) if cfg.levels == 1 else ILIF(cfg)

