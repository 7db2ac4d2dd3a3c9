"""Test vectors for every core: beats in, reference beats out, with coordinates.

Each ``*_case`` function returns a :class:`Case` for a given core instance: the packed
input beats per input stream, the reference output beats (decoded dicts, from
:mod:`compiler.reference`'s hardware core references) and a coordinate label per output
beat. The same case runs in ``amaranth.sim`` (:func:`.pysim.run_streams`) and under
cocotb + Verilator (:class:`.verilator.VerilatorBuild`), and :func:`run_case` checks it.
Modes: ``random`` plus edges ``max`` / ``min`` (extreme weights or inputs, sums reaching
the bound exactly), ``zeros`` / ``ones`` (all-zero and all-one spike maps), ``boundary``
(membranes exactly on the threshold and on the I-LIF half-way points).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..compiler.reference import (ref_add, ref_attention_head, ref_gated_accumulate,
                                  ref_intlif_lane, ref_requant, ref_signed_bitplane_accumulate,
                                  ref_sum_pool)
from .check import compare
from .payload import pack

__all__ = ["Case", "run_case", "concat", "rename", "pe_case", "bitplane_case", "pointwise_case", "lif_case", "requant_case",
           "add_case", "pool_case", "attention_case", "sssa_case", "MODES", "mutate"]

MODES = ("random", "max", "min", "zeros", "ones")


@dataclass
class Case:
    name: str
    inputs: dict[str, list[int]]
    expected: dict[str, list]
    coords: dict[str, list[str]]
    meta: dict = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.expected.items()}


def run_case(dut, case: Case, runner, **kw) -> None:
    """Run ``case`` with ``runner(dut_inputs, counts, **kw)`` and compare every output beat."""
    got = runner(case.inputs, case.counts, **kw)
    for k, exp in case.expected.items():
        layout = dut.signature.members[k].signature.members["payload"].shape
        compare(layout, got[k], exp, case.coords[k], who=f"{type(dut).__name__}[{case.name}]")


def rename(case: Case, ports: dict[str, str]) -> Case:
    """``case`` with its stream names mapped through ``ports`` (to drive a core inside a
    wrapper whose ports are named differently)."""
    return Case(case.name, {ports[k]: v for k, v in case.inputs.items()},
                {ports[k]: v for k, v in case.expected.items()},
                {ports[k]: v for k, v in case.coords.items()}, case.meta)


def concat(cases: list[Case]) -> Case:
    """One case running ``cases`` back to back (one simulator launch for many vectors);
    coordinates keep the name of the case each beat came from."""
    ins: dict[str, list[int]] = {}
    exp: dict[str, list] = {}
    crd: dict[str, list[str]] = {}
    for c in cases:
        for k, v in c.inputs.items():
            ins.setdefault(k, []).extend(v)
        for k, v in c.expected.items():
            exp.setdefault(k, []).extend(v)
            crd.setdefault(k, []).extend(f"{c.name}: {x}" for x in c.coords[k])
    return Case("+".join(c.name for c in cases), ins, exp, crd)


def mutate(case: Case, stream: str, beat: int, bit: int) -> Case:
    """A copy of ``case`` with one bit of one driven input beat flipped (the DUT's image
    differs from what the reference saw)."""
    ins = {k: list(v) for k, v in case.inputs.items()}
    ins[stream][beat] ^= 1 << bit
    return Case(case.name + f"-mut{beat}.{bit}", ins, case.expected, case.coords, case.meta)


def _bits(v) -> int:
    return int(sum(int(b) << j for j, b in enumerate(np.asarray(v).ravel())))


def _spikes(rng, shape, mode, p=0.3):
    if mode == "zeros":
        return np.zeros(shape, np.int64)
    if mode in ("ones", "max", "min"):
        return np.ones(shape, np.int64)
    return (rng.random(shape) < p).astype(np.int64)


def _weights(rng, shape, w_bits, mode, w_abs=None):
    hi = (1 << (w_bits - 1)) - 1 if w_abs is None else min(w_abs, (1 << (w_bits - 1)) - 1)
    lo = -(1 << (w_bits - 1)) if w_abs is None else -w_abs
    if mode == "max":
        return np.full(shape, hi, np.int64)
    if mode == "min":
        return np.full(shape, lo, np.int64)
    return rng.integers(lo, hi + 1, shape)


def pe_case(dut, rng, mode="random", outputs=6, max_beats=4) -> Case:
    """``GatedAccumulator``: runs of beats ``first ... last``; planes random when ``planes > 1``.

    ``max``/``min`` with all spikes on and the widest run make the sum reach
    ``beats * terms * w`` exactly; the bias is chosen so the total stays inside
    ``acc_bits`` (the compiler's proved bound does the same for real layers).
    """
    L, N, W, A = dut.lanes, dut.terms, dut.w_bits, dut.acc_bits
    w_abs = getattr(dut, "w_abs_max", None)
    beats, exp, coords = [], [], []
    lim = (1 << (A - 1)) - 1
    for o in range(outputs):
        nb = max_beats if mode in ("max", "min") else int(rng.integers(1, max_beats + 1))
        s = _spikes(rng, (nb, N), mode)
        w = _weights(rng, (nb, N, L), W, mode, w_abs)
        pl = np.zeros(nb, np.int64) if dut.planes == 1 else (
            np.full(nb, dut.planes - 1) if mode in ("max", "min") else rng.integers(0, dut.planes, nb))
        part = sum(ref_gated_accumulate(s[k], w[k].T) << int(pl[k]) for k in range(nb))
        room = lim - int(np.abs(part).max())
        if room < 0:
            raise ValueError(f"pe_case: acc_bits={A} too narrow for {nb} beats of {N} terms")
        bias = rng.integers(-room, room + 1, L) if mode == "random" else np.zeros(L, np.int64)
        y = part + bias
        for k in range(nb):
            f = dict(spikes=_bits(s[k]), weights=w[k].tolist(), bias=bias.tolist(),
                     first=int(k == 0), last=int(k == nb - 1))
            if dut.planes > 1:
                f["plane"] = int(pl[k])
            beats.append(pack(dut.in_layout, f))
        exp.append({"acc": y.tolist()})
        coords.append(f"output {o}")
    return Case(f"pe-{mode}", {"i": beats}, {"o": exp}, {"o": coords})


def bitplane_case(dut, rng, mode="random", outputs=4, max_beats=3) -> Case:
    """``BitPlaneAccumulator``: multi-bit inputs (``max``: every code ``2**in_bits - 1``)."""
    L, N, B = dut.lanes, dut.terms, dut.in_bits
    W, A = dut.pe.w_bits, dut.pe.acc_bits
    beats, exp, coords = [], [], []
    top = (1 << B) - 1
    for o in range(outputs):
        nb = max_beats if mode in ("max", "min") else int(rng.integers(1, max_beats + 1))
        if mode == "zeros":
            x = np.zeros((nb, N), np.int64)
        elif mode in ("ones", "max", "min"):
            x = np.full((nb, N), top, np.int64)
        else:
            x = rng.integers(0, top + 1, (nb, N))
        w = _weights(rng, (nb, N, L), W, mode)
        bias = np.zeros(L, np.int64) if mode != "random" else rng.integers(-1000, 1000, L)
        y = ref_gated_accumulate(x.reshape(-1), w.reshape(-1, L).T, bias, bits=B)
        assert np.abs(y).max() < 1 << (A - 1)
        for k in range(nb):
            beats.append(pack(dut.in_layout, dict(x=x[k].tolist(), weights=w[k].tolist(),
                                                  bias=bias.tolist(), first=int(k == 0),
                                                  last=int(k == nb - 1))))
        exp.append({"acc": y.tolist()})
        coords.append(f"output {o}")
    return Case(f"bitplane-{mode}", {"i": beats}, {"o": exp}, {"o": coords})


def pointwise_case(dut, rng, mode="random", outputs=4, max_beats=3, x=None, weights=None,
                   bias=None, names=None) -> Case:
    """``SignedBitPlaneAccumulator``: signed ``in_bits``-bit inputs, runs of beats; the
    ``bias`` field carries :func:`~svf_deploy.hw.cores.pointwise.offset_bias` of the bias.

    Edges: ``max`` / ``min`` put the most negative input ``-2**(in_bits-1)`` on every term
    with the most negative / largest weight, and a bias that lands ``y`` exactly on the
    register's top ``2**(acc_bits-1)-1`` / bottom ``-2**(acc_bits-1)`` (partial sums wrap on
    the way); ``ones`` all inputs ``-1`` (every plane on); ``zeros`` all inputs 0. Explicit
    ``x [outputs, beats, terms]``, ``weights [outputs, beats, terms, lanes]``, ``bias
    [outputs, lanes]`` (a real layer) override the generator.
    """
    from ..hw.cores.pointwise import offset_bias

    L, N, B, A = dut.lanes, dut.terms, dut.in_bits, dut.acc_bits
    lo, hi = -(1 << (B - 1)), (1 << (B - 1)) - 1
    top = (1 << (A - 1)) - 1
    beats, exp, coords = [], [], []
    n_out = outputs if x is None else len(x)
    for o in range(n_out):
        if x is not None:
            xo, wo, bo = np.asarray(x[o]), np.asarray(weights[o]), np.asarray(bias[o])
        else:
            nb = max_beats if mode in ("max", "min") else int(rng.integers(1, max_beats + 1))
            xo = {"zeros": np.zeros((nb, N), np.int64), "ones": np.full((nb, N), -1),
                  "max": np.full((nb, N), lo), "min": np.full((nb, N), lo)}.get(mode)
            if xo is None:
                xo = rng.integers(lo, hi + 1, (nb, N))
            wo = _weights(rng, (nb, N, L), dut.w_bits, {"max": "min", "min": "max"}.get(mode, mode))
            part = ref_signed_bitplane_accumulate(xo.reshape(-1), wo.reshape(-1, L).T, bits=B)
            if mode in ("max", "min"):
                bo = (top if mode == "max" else -top - 1) - part
            else:
                room = top - int(np.abs(part).max())
                bo = rng.integers(-room, room + 1, L) if mode == "random" else np.zeros(L, np.int64)
        y = ref_signed_bitplane_accumulate(xo.reshape(-1), wo.reshape(-1, L).T, bo, bits=B)
        if int(np.abs(y).max()) > top + 1 or int(np.abs(bo).max()) > top + 1:
            raise ValueError(f"pointwise_case: acc_bits={A} too narrow for output {o}")
        bq = offset_bias(wo.reshape(-1, L).T, bo, B, A)  # the core takes the folded bias'
        for k in range(len(xo)):
            beats.append(pack(dut.in_layout, dict(x=xo[k].tolist(), weights=wo[k].tolist(),
                                                  bias=bq.tolist(), first=int(k == 0),
                                                  last=int(k == len(xo) - 1))))
        exp.append({"acc": y.tolist()})
        coords.append(names[o] if names else f"output {o}")
    return Case(f"pointwise-{mode}", {"i": beats}, {"o": exp}, {"o": coords})


def lif_case(dut, rng, mode="random", neurons=24, T=4, x=None, theta=None, bias=None,
             polarity=None, names=None) -> Case:
    """``IntLIFLane``: ``neurons`` neurons x ``T`` steps, each neuron's steps back to back.

    ``boundary`` picks inputs that put ``H`` exactly on ``theta`` (binary) or on the I-LIF
    half-way points ``(k - 1/2) theta``; ``max``/``min`` drive the input at its extreme.
    Explicit ``x [T, neurons]`` and parameters (a real layer) override the generator.
    """
    F, k = dut.frac_bits, dut.leak_shift
    xmax = (1 << (dut.in_bits - 1)) - 1
    tmax = (1 << dut.theta_bits) - 1
    bmax = (1 << (dut.bias_bits - 1)) - 1
    if x is None:
        theta = rng.integers(1, tmax + 1, neurons)
        bias = rng.integers(-bmax, bmax + 1, neurons)
        polarity = rng.choice([-1, 1], neurons)
        if mode == "max":
            x = np.full((T, neurons), xmax)
        elif mode == "min":
            x = np.full((T, neurons), -xmax)
        elif mode == "zeros":
            x = np.zeros((T, neurons), np.int64)
        elif mode == "boundary":
            # step 0 from V = 0: H = X >> k (decay) or X; aim X so that H hits theta exactly
            bias = np.zeros(neurons, np.int64)
            polarity = np.ones(neurons, np.int64)
            x = np.zeros((T, neurons), np.int64)
            for n in range(neurons):
                mult = (n % (2 * dut.levels + 1)) if dut.levels > 1 else 1
                target = theta[n] * mult // (2 if dut.levels > 1 else 1)  # k/2 theta: half-way points
                X = target << k if dut.decay_input else target
                if X % (1 << F) or (X >> F) > xmax:  # not reachable through x << F: use the bias
                    bias[n] = X
                else:
                    x[0, n] = X >> F
            x[1:] = rng.integers(-3, 4, (T - 1, neurons))
            bias = np.clip(bias, -bmax, bmax)
            theta = np.where(theta % 2 == 0, theta, np.minimum(theta + 1, tmax - tmax % 2))
        else:
            x = rng.integers(-xmax, xmax + 1, (T, neurons))
    S, H = ref_intlif_lane(x, theta, bias, polarity, frac_bits=F, leak_shift=k,
                           decay_input=dut.decay_input, reset=dut.reset, levels=dut.levels)
    beats, exp, coords = [], [], []
    for n in range(x.shape[1]):
        for t in range(x.shape[0]):
            beats.append(pack(dut.in_layout, dict(x=int(x[t, n]), theta=int(theta[n]),
                                                  bias=int(bias[n]), neg=int(polarity[n] < 0),
                                                  first=int(t == 0))))
            exp.append({"s": int(S[t, n]), "h": int(H[t, n])})
            coords.append(f"{names[n] if names else f'neuron {n}'} t={t}")
    hmax = int(np.abs(H).max()) if H.size else 0
    if hmax >= 1 << (dut.mem_bits - 1):
        raise ValueError(f"lif_case: |H| = {hmax} exceeds mem_bits={dut.mem_bits}")
    return Case(f"lif-{mode}", {"i": beats}, {"o": exp}, {"o": coords}, {"S": S, "H": H})


def requant_case(dut, rng, mode="random", n=64) -> Case:
    lo, hi = -(1 << (dut.in_bits - 1)), (1 << (dut.in_bits - 1)) - 1
    shift = rng.integers(0, dut.max_shift + 1, n)
    if mode == "max":
        x = np.full(n, hi)
    elif mode == "min":
        x = np.full(n, lo)
    elif mode == "boundary":  # exact halves: x = (2m + 1) 2**(s-1), rounding decides
        shift = rng.integers(1, dut.max_shift + 1, n)
        m = rng.integers(-(hi >> (shift + 1)), (hi >> (shift + 1)))
        x = (2 * m + 1) << (shift - 1)
    else:
        x = rng.integers(lo, hi + 1, n)
    y = ref_requant(x, shift)
    beats = [pack(dut.in_layout, dict(x=int(a), shift=int(s))) for a, s in zip(x, shift)]
    return Case(f"requant-{mode}", {"i": beats}, {"o": [{"y": int(v)} for v in y]},
                {"o": [f"x={int(a)} s={int(s)}" for a, s in zip(x, shift)]})


def add_case(dut, rng, mode="random", n=40) -> Case:
    def rand(bits):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if mode == "max":
            return np.full((n, dut.lanes), hi)
        if mode == "min":
            return np.full((n, dut.lanes), lo)
        return rng.integers(lo, hi + 1, (n, dut.lanes))
    a, b = rand(dut.a_bits), rand(dut.b_bits)
    y = ref_add(a, b)
    return Case(f"add-{mode}",
                {"a": [pack(dut.a_layout, {"v": r.tolist()}) for r in a],
                 "b": [pack(dut.b_layout, {"v": r.tolist()}) for r in b]},
                {"o": [{"v": r.tolist()} for r in y]}, {"o": [f"beat {i}" for i in range(n)]})


def pool_case(dut, rng, mode="random", groups=5, max_len=9) -> Case:
    lo, hi = -(1 << (dut.in_bits - 1)), (1 << (dut.in_bits - 1)) - 1
    beats, exp, coords = [], [], []
    for g in range(groups):
        ln = max_len if mode in ("max", "min") else int(rng.integers(1, max_len + 1))
        x = np.full((ln, dut.lanes), hi if mode == "max" else lo) if mode in ("max", "min") \
            else rng.integers(lo, hi + 1, (ln, dut.lanes))
        y = ref_sum_pool(x, 0)
        for k in range(ln):
            beats.append(pack(dut.in_layout, dict(x=x[k].tolist(), first=int(k == 0), last=int(k == ln - 1))))
        exp.append({"sum": y.tolist()})
        coords.append(f"group {g}")
    return Case(f"pool-{mode}", {"i": beats}, {"o": exp}, {"o": coords})


def attention_case(dut, rng, mode="random", tokens=10, sets=2, q=None, k=None, v=None) -> Case:
    """``AttentionUnit``: ``sets`` token sets (clear between them); explicit ``q, k, v``
    ``[sets, N, d]`` (a real layer's heads) override the generator."""
    from .. hw.cores.sdha import OP_KV, OP_QUERY

    d = dut.d
    beats, exp, coords = [], [], []
    if q is None:
        shape = (sets, tokens, d)
        q, k, v = (_spikes(rng, shape, mode, p=0.4) for _ in range(3))
        if mode == "min":  # K all zero: every counter counts down
            k = np.zeros(shape, np.int64)
    for s in range(q.shape[0]):
        y, _ = ref_attention_head(q[s], k[s], v[s], dut.kind)
        for n in range(q.shape[1]):
            beats.append(pack(dut.in_layout, dict(op=OP_KV, clear=int(n == 0), kq=_bits(k[s, n]), v=_bits(v[s, n]))))
        for n in range(q.shape[1]):
            beats.append(pack(dut.in_layout, dict(op=OP_QUERY, clear=0, kq=_bits(q[s, n]), v=0)))
            exp.append({"y": y[n].tolist()})
            coords.append(f"set {s} token {n}")
    return Case(f"attention-{mode}", {"i": beats}, {"o": exp}, {"o": coords})


def sssa_case(dut, rng, mode="random", q=None, k=None, v=None) -> Case:
    """``SaccadeUnit``: K counts of every step, then each token's ``T`` steps back to back.
    Explicit binary ``q, k, v`` ``[T, N, d]`` (a real head) override the generator."""
    from ..compiler.reference import ref_sssa_head
    from ..hw.cores.sssa import OP_ALPHA, OP_TOKEN

    T, N, d = dut.T, dut.tokens, dut.d
    if q is None:
        q, k, v = (_spikes(rng, (T, N, d), mode, p=0.4) for _ in range(3))
    y, S, H = ref_sssa_head(q, k, v, dut.gains, theta=dut.theta, frac_bits=dut.frac_bits,
                            leak_shift=dut.leak_shift, decay_input=dut.decay_input, reset=dut.reset)
    if np.abs(H).max() >= 1 << (dut.mem_bits - 1):
        raise ValueError(f"sssa_case: |H| exceeds mem_bits={dut.mem_bits}")
    beats, exp, coords = [], [], []
    for t in range(T):
        for n in range(N):
            beats.append(pack(dut.in_layout, dict(op=OP_ALPHA, t=t, first=int(n == 0), kq=_bits(k[t, n]), v=0)))
    for n in range(N):
        for t in range(T):
            beats.append(pack(dut.in_layout, dict(op=OP_TOKEN, t=t, first=int(t == 0),
                                                  kq=_bits(q[t, n]), v=_bits(v[t, n]))))
            exp.append({"s": int(S[t, n]), "h": int(H[t, n]), "y": _bits(y[t, n])})
            coords.append(f"token {n} t={t}")
    return Case(f"sssa-{mode}", {"i": beats}, {"o": exp}, {"o": coords}, {"S": S, "H": H})
