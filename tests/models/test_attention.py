"""Hamming identity, binary JL approximation, and attention cost linear in T."""

import math

import pytest
import torch

from svf_deploy.models.attention import SDHA, SDSA, SSSA, hamming_core, hamming_similarity
from svf_deploy.models.neurons import NeuronConfig


def test_hamming_identity_equals_direct_count():
    g = torch.Generator().manual_seed(1)
    for d in (1, 7, 64):
        q = torch.randint(0, 2, (5, d), generator=g).double()
        k = torch.randint(0, 2, (6, d), generator=g).double()
        agree = torch.tensor([[float((qi == kj).sum()) for kj in k] for qi in q],
                             dtype=torch.float64)
        # exact integer form: (2q-1).(2k-1) = agreements - disagreements
        assert torch.equal((2 * q - 1) @ (2 * k - 1).T, 2 * agree - d)
        assert torch.allclose(hamming_similarity(q, k), agree / d, rtol=0, atol=1e-14)


def test_hamming_core_is_hamming_kernel_attention():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randint(0, 2, (10, 8), generator=g).double() for _ in range(3))
    y, ops = hamming_core(q, k, v)
    # (2q-1).(2k-1) = 2 D f_H - D
    kern = 2 * 8 * hamming_similarity(q, k) - 8
    assert torch.equal(y, kern @ v)
    assert ops == 2 * 10 * 8 * 8


def _jl_error(d_bits: int, trials: int = 400, dim: int = 32) -> float:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(trials, dim, generator=g, dtype=torch.float64)
    y = x + 0.8 * torch.randn(trials, dim, generator=g, dtype=torch.float64)
    r = torch.randn(dim, d_bits, generator=g, dtype=torch.float64)  # random hyperplanes
    q, k = (x @ r > 0).double(), (y @ r > 0).double()
    f_h = (q == k).double().mean(1)
    cos = torch.nn.functional.cosine_similarity(x, y, dim=1)
    g_fc = 1 - torch.arccos(cos.clamp(-1, 1)) / math.pi
    return float((f_h - g_fc).abs().mean())


def test_binary_jl_error_falls_with_D():
    errs = [_jl_error(d) for d in (16, 64, 256, 1024)]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.02 and errs[0] > 2 * errs[-1]


@pytest.mark.parametrize("cls,kw", [(SDHA, {"mode": "joint"}), (SDHA, {"mode": "spatial"}),
                                    (SDSA, {}), (SSSA, {})])
def test_attention_cost_linear_in_T(cls, kw):
    torch.manual_seed(0)
    att = cls(16, 2, NeuronConfig(), **kw).eval()
    ops = []
    for t in (2, 4, 8):
        with torch.no_grad():
            att(torch.randn(t, 1, 16, 4, 4) * 2)
        ops.append(att.last_ops)
    assert ops[1] == 2 * ops[0] and ops[2] == 2 * ops[1], ops


def test_joint_sdha_mixes_time_spatial_does_not():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 16, 2, 2) * 2
    for mode, mixes in (("joint", True), ("spatial", False)):
        att = SDHA(16, 2, NeuronConfig(), mode=mode).eval()
        q, k, v = (torch.randint(0, 2, (4, 1, 16, 4)).float() for _ in range(3))
        y = att.core(q, k, v)
        v2 = v.clone()
        v2[3] = 1 - v2[3]  # change only the last step's values
        y2 = att.core(q, k, v2)
        assert bool((y[0] != y2[0]).any()) is mixes
    del x
