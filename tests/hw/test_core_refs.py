"""The hardware core references (compiler.reference, section "hardware core references")
agree with the executor's own kernels, so holding the RTL to them holds it to the model."""

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from svf_deploy.compiler import reference as R
from svf_deploy.compiler.bounds import _affine_bound as affine_bound


def test_gated_accumulate_equals_int_linear_and_conv():
    rng = np.random.default_rng(0)
    for bits in (1, 2, 8):
        x = rng.integers(0, 2 ** bits, (5, 37))
        w = rng.integers(-127, 128, (9, 37))
        b = rng.integers(-500, 500, 9)
        bound = affine_bound(w, b, 2 ** bits - 1)
        want = R.int_linear(torch.tensor(x), w, b, bound=bound).numpy()
        assert np.array_equal(R.ref_gated_accumulate(x, w, b, bits=bits), want)
    # a 3x3 conv as gated accumulation over im2col patches (the PE's term order)
    xs = rng.integers(0, 2, (2, 4, 6, 6))
    wc = rng.integers(-127, 128, (5, 4, 3, 3))
    want = R.int_conv2d(torch.tensor(xs), wc, None, padding=1, bound=affine_bound(wc, None, 1)).numpy()
    patches = F.unfold(torch.tensor(xs, dtype=torch.float64), 3, padding=1).numpy().astype(np.int64)
    got = R.ref_gated_accumulate(patches.transpose(0, 2, 1), wc.reshape(5, -1))  # [N, L, O]
    assert np.array_equal(got.transpose(0, 2, 1).reshape(want.shape), want)


def test_bitplanes_rebuild_the_value_and_refuse_out_of_range():
    x = np.arange(256)
    p = R.ref_bitplanes(x, 8)
    assert np.array_equal(sum(p[k] << k for k in range(8)), x)
    with pytest.raises(R.GraphError, match="0..255"):
        R.ref_bitplanes(np.array([256]), 8)


@pytest.mark.parametrize("decay", [True, False])
@pytest.mark.parametrize("reset, levels", [("hard", 1), ("soft", 1), ("soft", 2), ("soft", 4)])
def test_intlif_lane_equals_executor(decay, reset, levels):
    rng = np.random.default_rng(levels + 2 * decay)
    T, n = 6, 400
    F_, k = 3, 2
    theta = rng.integers(1, 300, n)
    if levels > 1:  # make exact ties (H = (j + 1/2) theta) frequent
        theta = 2 * (theta // 2 + 1)
    x = rng.integers(-120, 120, (T, n))
    bias = rng.integers(-200, 200, n)
    pol = rng.choice([-1, 1], n)
    S, H = R.ref_intlif_lane(x, theta, bias, pol, frac_bits=F_, leak_shift=k, decay_input=decay,
                             reset=reset, levels=levels)
    gain = torch.tensor(pol * 2 ** F_)
    s2, h2 = R._lif_int(torch.tensor(x), gain, torch.tensor(bias), torch.tensor(theta), k, decay,
                        reset, levels, 2 ** 40, 0, "test", True, False)
    assert np.array_equal(S, s2.numpy()) and np.array_equal(H, h2.numpy())


def test_ilif_rounds_half_to_even():
    theta = np.array([10])
    for h, s in ((5, 0), (15, 2), (25, 2), (35, 3), (14, 1), (16, 2), (-5, 0), (1000, 3)):
        S, _ = R.ref_intlif_lane(np.array([[h]]), theta, np.array([0]), np.array([1]), frac_bits=0,
                                 leak_shift=30, decay_input=False, reset="soft", levels=3)
        assert int(S[0, 0]) == s, (h, s)


def test_requant_rounds_half_up_exactly():
    rng = np.random.default_rng(1)
    x = rng.integers(-(2 ** 20), 2 ** 20, 2000)
    s = rng.integers(0, 12, 2000)
    y = R.ref_requant(x, s)
    for a, k, b in zip(x.tolist(), s.tolist(), y.tolist()):
        q = Fraction(a, 2 ** k) + Fraction(1, 2) if k else Fraction(a)
        assert b == q.numerator // q.denominator


@pytest.mark.parametrize("kind", ["sdha", "sdsa"])
@pytest.mark.parametrize("joint", [True, False])
def test_attention_head_equals_executor(kind, joint):
    rng = np.random.default_rng(int(joint) + 2 * (kind == "sdha"))
    T, B, C, Hh, W, heads = 3, 1, 8, 2, 3, 2
    q, k, v = (torch.tensor((rng.random((T, B, C, Hh, W)) < 0.4).astype(np.int64)) for _ in range(3))
    want = R._attention_core(q, k, v, kind, heads, joint).numpy()  # [T, B, C, H, W]
    d = C // heads

    def tok(z, h, t=None):  # [N, d] tokens of head h (all steps, or step t)
        a = z.numpy()[:, 0, h * d:(h + 1) * d].reshape(T, d, -1).transpose(0, 2, 1)  # [T, HW, d]
        return a.reshape(-1, d) if t is None else a[t]

    for h in range(heads):
        for t in ([None] if joint else range(T)):
            y, kv = R.ref_attention_head(tok(q, h, t), tok(k, h, t), tok(v, h, t), kind)
            w = want[:, 0, h * d:(h + 1) * d].reshape(T, d, -1).transpose(0, 2, 1)
            w = w.reshape(-1, d) if t is None else w[t]
            assert np.array_equal(y, w)


def test_signed_bitplane_accumulate_equals_the_factored_pointwise_conv():
    """The pointwise half of a factored SepConv (``factor_depthwise="auto"``) reads the
    depthwise's signed int output; the two's-complement plane sum equals the executor's."""
    from svf_deploy.compiler import ir, pipeline

    rng = np.random.default_rng(0)
    C, O, k = 4, 6, 7
    g = ir.Graph((ir.Input("x", (), shape=(1, 5, 5)),
                  ir.Conv("c0", ("x",), weight=rng.normal(size=(C, 1, 3, 3)), padding=1),
                  ir.LIF("l0", ("c0",)),
                  ir.Conv("dw", ("l0",), weight=rng.normal(size=(C, 1, k, k)), padding=k // 2, groups=C),
                  ir.Conv("pw", ("dw",), weight=rng.normal(size=(O, C, 1, 1)), bias=rng.normal(size=O))),
                 ("pw",))
    gi, _ = pipeline.compile_graph(g, pipeline.CompileOptions(factor_depthwise="auto", T=4))
    assert gi.meta["sepconv_forms"]["pw"]["form"] == "factored" and gi.types["dw"].kind == "int"
    x = torch.rand(4, 3, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    res = R.run(gi, x, record=True)
    dw, pw = gi.node("dw"), gi.node("pw")
    xi = res.values["dw"].numpy().transpose(0, 1, 3, 4, 2)  # [T, B, H, W, C]
    assert xi.min() < 0 < xi.max() and dw.acc_bits >= 2
    got = R.ref_signed_bitplane_accumulate(xi, pw.weight[:, :, 0, 0], np.asarray(pw.bias).reshape(O),
                                           bits=dw.acc_bits)
    assert np.array_equal(got.transpose(0, 1, 4, 2, 3), res.values["pw"].numpy())
    # and on random signed vectors at the range's ends, against int_linear
    for bits in (2, 5, 13):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        xs = np.concatenate([rng.integers(lo, hi + 1, (6, 11)), np.full((1, 11), lo), np.full((1, 11), -1)])
        w = rng.integers(-128, 128, (5, 11))
        b = rng.integers(-999, 999, 5)
        want = R.int_linear(torch.tensor(xs), w, b, bound=affine_bound(w, b, 1 << (bits - 1))).numpy()
        assert np.array_equal(R.ref_signed_bitplane_accumulate(xs, w, b, bits=bits), want)
    with pytest.raises(R.GraphError, match=r"-16..15, got -17..0"):
        R.ref_signed_bitplane_accumulate(np.array([[-17, 0]]), np.ones((1, 2)), bits=5)
