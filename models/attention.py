"""Spiking self-attention: SDHA (SpikeVideoFormer), SDSA (Meta-SpikeFormer), SSSA (SNN-ViT).

One interface for all: ``attn(x)`` maps the residual stream ``[T, B, C, H, W]`` to a
branch output of the same shape; the pipeline is

    x -> head_lif -> {q,k,v}_conv (RepConv + BN) -> {q,k,v}_lif  (binary Q, K, V)
      -> core(Q, K, V)  (additions only)  -> [attn_bn] -> attn_lif -> proj_conv (RepConv + BN)

and ``core`` is what distinguishes the variants. Every variant records the number of
accumulate operations its core performed in ``last_ops`` (counted from the tensor
shapes it actually used), which the tests use to show the cost is linear in ``T``.

SDHA core (per head, ``d = C / heads`` channels, ``C`` the full width):

    kv = (2K - 1)^T V            # [d, d], an up/down count over the tokens where V = 1
    y  = (2Q - 1) kv / (2C)      # add/subtract tree; the 1/(2C) folds into a threshold

Since ``(2q-1).(2k-1) = 2 D f_H(q, k) - D`` with the normalised Hamming similarity
``f_H = 1/2 + (2q-1).(2k-1)/(2D)``, this is linear attention with a Hamming kernel.
Token sets: ``joint`` attends over all ``T*N`` tokens of the clip (the paper's choice, not
causal), ``spatial`` over the ``N`` tokens of each frame. ``hierarchical`` runs spatial
then temporal (per-location, over ``T``) attention; ``factorized`` splits the channels
between a spatial and a temporal half sharing one Q.

SDSA core (Meta-SpikeFormer): ``y = Q (K^T V) * 0.125``, no BN; per frame (published
``att_mode="2D"``) or over all ``T*N`` tokens of the clip jointly (``"3D_dot"``).

``attn_lif`` thresholds, as in the published code: **1.0** after the Hamming core and its
``attn_bn`` (every SDHA variant, published ``"3D_ham"``), **0.5** after the dot-product
cores (SDSA, both token sets). ``attn_threshold`` overrides it (a model trained otherwise).

SSSA core (SNN-ViT, saccadic): per head, spike counts ``Q'_i = sum_d Q_i``,
``K'_j = sum_d K_j``; the rank-1 cross-attention salience of token ``i`` is
``Q'_i * alpha`` with ``alpha = sum_j K'_j``. The saccadic temporal mixing is causal: the
salience, scaled by a learnable per-step gain ``w[t]``, charges a LIF (``sal_lif``) whose
binary output ``S[t, i]`` is the saccade mask, and the output is ``S * V``. The LIF's
leaky integration is a lower-triangular mixing over time that needs only the current
step (the paper's inference form), so the cost is linear in ``T``.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import RepConv, _tb
from .errors import ConfigError
from .neurons import NeuronConfig, make_neuron

__all__ = ["SpikingAttention", "SDHA", "HierarchicalSDHA", "FactorizedSDHA", "SDSA", "SSSA",
           "make_attention", "ATTENTION_KINDS", "ATT_MODES", "attention_kind", "published_att_mode",
           "hamming_similarity"]

ATTENTION_KINDS = ("sdha", "sdha_spatial", "sdha_hierarchical", "sdha_factorized", "sdsa",
                   "sdsa_joint", "sssa")

#: the published SpikeVideoFormer ``att_mode`` names and the attention each one builds
ATT_MODES = {"2D": "sdsa", "3D_dot": "sdsa_joint", "3D_ham": "sdha"}


def attention_kind(name: str) -> str:
    """Our attention kind for a published ``att_mode`` (``2D``, ``3D_dot``, ``3D_ham``) or
    one of :data:`ATTENTION_KINDS` (returned as is); ConfigError otherwise."""
    if name in ATTENTION_KINDS:
        return name
    if name in ATT_MODES:
        return ATT_MODES[name]
    raise ConfigError(f"unknown attention {name!r}; choose one of {', '.join(ATT_MODES)} "
                      f"(published att_mode) or {', '.join(ATTENTION_KINDS)}")


def published_att_mode(kind: str) -> str | None:
    """The published ``att_mode`` name of an attention kind, or None."""
    return next((k for k, v in ATT_MODES.items() if v == kind), None)


def hamming_similarity(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Normalised Hamming similarity ``f_H = 1/2 + (2q-1).(2k-1) / (2D)`` of binary vectors.

    ``q``: ``[..., n, D]``, ``k``: ``[..., m, D]`` -> ``[..., n, m]``; equals the fraction
    of the ``D`` positions where the two vectors agree.
    """
    d = q.shape[-1]
    return 0.5 + (2 * q - 1) @ (2 * k - 1).transpose(-1, -2) / (2 * d)


def _qkv_conv(dim: int) -> nn.Sequential:
    return nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[T, B, C, N] -> [T, B, h, N, d]``."""
    t, b, c, n = x.shape
    return x.transpose(-1, -2).reshape(t, b, n, heads, c // heads).permute(0, 1, 3, 2, 4)


def _unheads(y: torch.Tensor) -> torch.Tensor:
    """``[T, B, h, N, d] -> [T, B, C, N]``."""
    t, b, h, n, d = y.shape
    return y.permute(0, 1, 3, 2, 4).reshape(t, b, n, h * d).transpose(-1, -2)


def hamming_core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(2Q-1)((2K-1)^T V)`` over the token axis (-2); returns (y, accumulate ops)."""
    kv = (2 * k - 1).transpose(-1, -2) @ v
    y = (2 * q - 1) @ kv
    n, d = q.shape[-2], q.shape[-1]
    batch = q.numel() // (n * d)
    return y, 2 * batch * n * d * v.shape[-1]


class SpikingAttention(nn.Module):
    """Shared pipeline; subclasses implement ``core(q, k, v) -> y`` on ``[T, B, C, N]`` spikes."""

    kind = "base"
    has_attn_bn = False

    def __init__(self, dim: int, num_heads: int, neuron: NeuronConfig,
                 attn_threshold: float | None = None):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"attention width {dim} is not divisible by num_heads={num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_lif = make_neuron(neuron)
        self.q_conv = _qkv_conv(dim)
        self.k_conv = _qkv_conv(dim)
        self.v_conv = _qkv_conv(dim)
        self.q_lif = make_neuron(neuron)
        self.k_lif = make_neuron(neuron)
        self.v_lif = make_neuron(neuron)
        if self.has_attn_bn:
            self.attn_bn = nn.BatchNorm1d(dim)
        if attn_threshold is None:  # published: 1.0 after Hamming + attn_bn, 0.5 after dot product
            attn_threshold = 1.0 if self.has_attn_bn else 0.5
        self.attn_lif = make_neuron(neuron, v_threshold=float(attn_threshold))
        self.proj_conv = _qkv_conv(dim)
        self.last_ops = 0

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Binary Q, K, V as ``[T, B, C, N]`` from the stream ``[T, B, C, H, W]``."""
        x = self.head_lif(x)
        q = self.q_lif(_tb(self.q_conv, x)).flatten(3)
        k = self.k_lif(_tb(self.k_conv, x)).flatten(3)
        v = self.v_lif(_tb(self.v_conv, x)).flatten(3)
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, c, h, w = x.shape
        q, k, v = self.qkv(x)
        y = self.core(q, k, v)
        if self.has_attn_bn:
            y = _tb(self.attn_bn, y)
        y = self.attn_lif(y).reshape(t, b, c, h, w)
        return _tb(self.proj_conv, y)


class SDHA(SpikingAttention):
    """Spike-driven Hamming attention; ``mode`` is ``"joint"`` (T*N tokens) or ``"spatial"``."""

    kind = "sdha"
    has_attn_bn = True

    def __init__(self, dim: int, num_heads: int, neuron: NeuronConfig, mode: str = "joint",
                 attn_threshold: float | None = None):
        if mode not in ("joint", "spatial"):
            raise ConfigError(f"SDHA mode must be 'joint' or 'spatial', got {mode!r}")
        super().__init__(dim, num_heads, neuron, attn_threshold)
        self.mode = mode

    def core(self, q, k, v):
        t, b, c, n = q.shape
        qh, kh, vh = (_heads(z, self.num_heads) for z in (q, k, v))  # [T,B,h,N,d]
        if self.mode == "joint":
            def tok(z):  # [B, h, T*N, d]
                return z.permute(1, 2, 0, 3, 4).reshape(b, self.num_heads, t * n, -1)
            y, ops = hamming_core(tok(qh), tok(kh), tok(vh))
            y = y.reshape(b, self.num_heads, t, n, -1).permute(2, 0, 1, 3, 4)
        else:
            y, ops = hamming_core(qh, kh, vh)
        self.last_ops = ops
        return _unheads(y) / (2 * self.dim)


class HierarchicalSDHA(nn.Module):
    """Spatial SDHA (per frame) followed by temporal SDHA (per location, over T)."""

    kind = "sdha_hierarchical"

    def __init__(self, dim: int, num_heads: int, neuron: NeuronConfig,
                 attn_threshold: float | None = None):
        super().__init__()
        self.spatial = SDHA(dim, num_heads, neuron, mode="spatial", attn_threshold=attn_threshold)
        self.temporal = SDHA(dim, num_heads, neuron, mode="spatial", attn_threshold=attn_threshold)
        self.last_ops = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self._temporal(self.spatial(x))
        self.last_ops = self.spatial.last_ops + self.temporal.last_ops
        return z

    def _temporal(self, y: torch.Tensor) -> torch.Tensor:
        m = self.temporal
        t, b, c, h, w = y.shape
        q, k, v = m.qkv(y)  # [T, B, C, N]
        qh, kh, vh = (_heads(z, m.num_heads) for z in (q, k, v))  # [T,B,h,N,d]

        def tok(z):  # tokens = T, batch over (B, h, N)
            return z.permute(1, 2, 3, 0, 4)  # [B, h, N, T, d]
        out, ops = hamming_core(tok(qh), tok(kh), tok(vh))
        m.last_ops = ops
        out = out.permute(3, 0, 1, 2, 4)  # [T, B, h, N, d]
        out = _tb(m.attn_bn, _unheads(out) / (2 * m.dim))
        out = m.attn_lif(out).reshape(t, b, c, h, w)
        return _tb(m.proj_conv, out)


class FactorizedSDHA(SpikingAttention):
    """Channel-split SDHA: one shared Q; the first half of the channels attends spatially
    (per frame), the second half temporally (per location, over T)."""

    kind = "sdha_factorized"
    has_attn_bn = True

    def __init__(self, dim: int, num_heads: int, neuron: NeuronConfig,
                 attn_threshold: float | None = None):
        if num_heads % 2 or dim % 2:
            raise ConfigError("factorized SDHA needs an even width and an even number of heads")
        super().__init__(dim, num_heads, neuron, attn_threshold)
        self.kt_conv = _qkv_conv(dim)
        self.vt_conv = _qkv_conv(dim)
        self.kt_lif = make_neuron(neuron)
        self.vt_lif = make_neuron(neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, c, h, w = x.shape
        xs = self.head_lif(x)
        q = self.q_lif(_tb(self.q_conv, xs)).flatten(3)
        ks = self.k_lif(_tb(self.k_conv, xs)).flatten(3)
        vs = self.v_lif(_tb(self.v_conv, xs)).flatten(3)
        kt = self.kt_lif(_tb(self.kt_conv, xs)).flatten(3)
        vt = self.vt_lif(_tb(self.vt_conv, xs)).flatten(3)
        half = c // 2
        hh = self.num_heads // 2
        # spatial half: per frame over N tokens
        qs_, ks_, vs_ = (_heads(z[:, :, :half], hh) for z in (q, ks, vs))
        ys, ops_s = hamming_core(qs_, ks_, vs_)
        # temporal half: per location over T tokens
        qt_, kt_, vt_ = (_heads(z[:, :, half:], hh).permute(1, 2, 3, 0, 4)
                         for z in (q, kt, vt))
        yt, ops_t = hamming_core(qt_, kt_, vt_)
        yt = yt.permute(3, 0, 1, 2, 4)
        self.last_ops = ops_s + ops_t
        y = torch.cat([_unheads(ys), _unheads(yt)], dim=2) / (2 * self.dim)
        y = _tb(self.attn_bn, y)
        y = self.attn_lif(y).reshape(t, b, c, h, w)
        return _tb(self.proj_conv, y)


class SDSA(SpikingAttention):
    """Spike-driven self-attention of Meta-SpikeFormer: ``Q (K^T V) * 0.125``.

    ``mode="spatial"``: per frame (published ``att_mode="2D"``); ``"joint"``: all ``T*N``
    tokens of the clip at once (``"3D_dot"``; the state_dict keys are the same).
    """

    kind = "sdsa"
    scale = 0.125

    def __init__(self, dim: int, num_heads: int, neuron: NeuronConfig, mode: str = "spatial",
                 attn_threshold: float | None = None):
        if mode not in ("joint", "spatial"):
            raise ConfigError(f"SDSA mode must be 'joint' or 'spatial', got {mode!r}")
        super().__init__(dim, num_heads, neuron, attn_threshold)
        self.mode = mode
        if mode == "joint":
            self.kind = "sdsa_joint"

    def core(self, q, k, v):
        t, b, c, n = q.shape
        qh, kh, vh = (_heads(z, self.num_heads) for z in (q, k, v))  # [T,B,h,N,d]
        if self.mode == "joint":
            qh, kh, vh = (z.permute(1, 2, 0, 3, 4).reshape(b, self.num_heads, t * n, -1)
                          for z in (qh, kh, vh))
        kv = kh.transpose(-1, -2) @ vh
        y = qh @ kv
        nt, d = qh.shape[-2], qh.shape[-1]
        self.last_ops = 2 * (qh.numel() // (nt * d)) * nt * d * d
        if self.mode == "joint":
            y = y.reshape(b, self.num_heads, t, n, -1).permute(2, 0, 1, 3, 4)
        return _unheads(y) * self.scale


class SSSA(SpikingAttention):
    """Saccadic spiking self-attention (SNN-ViT); see the module docstring.

    ``saccade_gain`` (length ``max_T``) is the learnable per-step gain of the causal
    temporal mixing; ``sal_lif`` is the saccade neuron.
    """

    kind = "sssa"

    def __init__(self, dim: int, num_heads: int, neuron: NeuronConfig, max_T: int = 16,
                 attn_threshold: float | None = None):
        super().__init__(dim, num_heads, neuron, attn_threshold)
        self.max_T = max_T
        self.saccade_gain = nn.Parameter(torch.ones(max_T))
        self.sal_lif = make_neuron(neuron)

    def salience(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Integer salience ``Q'_i * alpha`` per ``[T, B, h, N]``."""
        qh, kh = _heads(q, self.num_heads), _heads(k, self.num_heads)
        qc = qh.sum(-1)
        alpha = kh.sum(dim=(-1, -2), keepdim=False)
        return qc * alpha.unsqueeze(-1)

    def core(self, q, k, v):
        t, b, c, n = q.shape
        if t > self.max_T:
            raise ConfigError(f"SSSA was built for at most max_T={self.max_T} steps, got T={t}")
        d = c // self.num_heads
        sal = self.salience(q, k)  # [T, B, h, N]
        norm = float(d * d * n)
        x = sal * (self.saccade_gain[:t].view(t, 1, 1, 1) / norm)
        s = self.sal_lif(x)  # [T, B, h, N], causal
        vh = _heads(v, self.num_heads)  # [T, B, h, N, d]
        y = s.unsqueeze(-1) * vh
        # Q', K' sums (2 T N C), alpha (T N h), salience (T N h), gating (T N C)
        self.last_ops = b * t * n * (3 * c + 2 * self.num_heads)
        return _unheads(y)


def make_attention(kind: str, dim: int, num_heads: int, neuron: NeuronConfig,
                   max_T: int = 16, attn_threshold: float | None = None) -> nn.Module:
    """Build an attention by name: one of :data:`ATTENTION_KINDS` or a published
    ``att_mode`` (:data:`ATT_MODES`). ``attn_threshold`` None: the published value."""
    kind = attention_kind(kind) if kind in ATT_MODES else kind
    th = attn_threshold
    if kind == "sdha":
        return SDHA(dim, num_heads, neuron, mode="joint", attn_threshold=th)
    if kind == "sdha_spatial":
        return SDHA(dim, num_heads, neuron, mode="spatial", attn_threshold=th)
    if kind == "sdha_hierarchical":
        return HierarchicalSDHA(dim, num_heads, neuron, attn_threshold=th)
    if kind == "sdha_factorized":
        return FactorizedSDHA(dim, num_heads, neuron, attn_threshold=th)
    if kind == "sdsa":
        return SDSA(dim, num_heads, neuron, mode="spatial", attn_threshold=th)
    if kind == "sdsa_joint":
        return SDSA(dim, num_heads, neuron, mode="joint", attn_threshold=th)
    if kind == "sssa":
        return SSSA(dim, num_heads, neuron, max_T=max_T, attn_threshold=th)
    raise ConfigError(f"unknown attention {kind!r}; choose one of {', '.join(ATTENTION_KINDS)}")
