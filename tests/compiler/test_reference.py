"""The golden reference executor against torch (float stage) and hand-written scalar /
numpy models (integer stage)."""

import itertools

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svf_deploy.compiler import bounds as static_bounds
from svf_deploy.compiler import ir
from svf_deploy.compiler import reference as ref
from svf_deploy.models.attention import SDHA, SDSA, SSSA
from svf_deploy.models.blocks import RepConv, bn_affine
from svf_deploy.models.errors import GraphError
from svf_deploy.models.neurons import ILIF, LIF, NeuronConfig

I64 = np.int64


def ints(*a):
    return np.array(a, dtype=I64)


def graph(stage, *nodes, outputs=None):
    return ir.Graph(tuple(nodes), tuple(outputs or (nodes[-1].name,)), stage)


def int_input(shape, bits=8, scale=1.0):
    return ir.Input("x", (), shape=shape, scale=scale, bits=bits)


def identity_conv(name, src, c, offset=0, scale=1.0):
    """Depthwise 1x1 conv with weight 1 and bias ``-offset``: passes codes through as ints."""
    return ir.Conv(name, (src,), weight=np.ones((c, 1, 1, 1), I64), bias=np.full(c, -offset, I64),
                   groups=c, out_scale=np.full(c, scale))


def int_lif(name, src, theta, **kw):
    c = len(theta)
    kw.setdefault("bias", np.zeros(c, I64))
    kw.setdefault("polarity", np.ones(c, I64))
    return ir.IntLIF(name, (src,), theta=np.asarray(theta, I64), **kw)


# ============================================================================ float stage


@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_float_conv_bn_lif_equals_torch(decay_input, reset):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 3, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    a = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    bb = torch.randn(6, generator=g, dtype=torch.float64)
    gr = graph("float", ir.Input("x", (), shape=(3, 9, 9)),
               ir.Conv("c", ("x",), weight=w.numpy(), bias=b.numpy(), stride=2, padding=1),
               ir.BatchNorm("bn", ("c",), a=a.numpy(), b=bb.numpy()),
               ir.LIF("n", ("bn",), tau=2.0, decay_input=decay_input, v_threshold=0.7, reset=reset))
    x = torch.rand(5, 2, 3, 9, 9, generator=g, dtype=torch.float64)
    res = ref.run(gr, x, record=True)

    y = F.conv2d(x.flatten(0, 1), w, b, 2, 1).reshape(5, 2, 6, 5, 5)
    y = y * a.view(6, 1, 1) + bb.view(6, 1, 1)
    lif = LIF(NeuronConfig(tau=2.0, decay_input=decay_input, v_threshold=0.7, reset=reset))
    lif.record = True
    s = lif(y)
    assert torch.equal(res.values["bn"], y)
    assert torch.equal(res.outputs["n"], s)
    assert torch.equal(res.membranes["n"], lif.last_h)
    assert 0 < s.mean() < 1  # both firing and silent neurons are exercised


@pytest.mark.parametrize("decay_input", [True, False])
def test_float_ilif_equals_torch(decay_input):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 3, 4, 2, 2, generator=g, dtype=torch.float64) * 3
    gr = graph("float", ir.Input("x", (), shape=(4, 2, 2)),
               ir.LIF("n", ("x",), tau=4.0, decay_input=decay_input, v_threshold=0.5,
                      reset="soft", levels=4))
    res = ref.run(gr, x, record=True)
    n = ILIF(NeuronConfig(tau=4.0, decay_input=decay_input, v_threshold=0.5, reset="soft", levels=4))
    n.record = True
    s = n(x)
    assert torch.equal(res.outputs["n"], s)
    assert torch.equal(res.membranes["n"], n.last_h)
    assert s.max() == 4 and (s > 1).any()


def test_float_ilif_hard_reset_is_refused():
    gr = graph("float", ir.Input("x", (), shape=(1, 1, 1)),
               ir.LIF("n", ("x",), reset="hard", levels=3))
    with pytest.raises(GraphError, match="resets softly"):
        ref.run(gr, torch.zeros(1, 1, 1, 1, 1))


def test_float_repconv_equals_torch_module():
    torch.manual_seed(3)
    m = RepConv(4, 6).double().eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1)
            mod.running_var.uniform_(0.3, 2)
            mod.weight.data.uniform_(-1.5, 1.5)  # negative gains too
            mod.bias.data.uniform_(-1, 1)
    conv1, bnpad, (dw, pw, bn2) = m.body
    a1, b1 = bn_affine(bnpad.bn)
    a2, b2 = bn_affine(bn2)
    node = ir.RepConv("r", ("x",), w1=conv1.weight.detach().numpy(), a1=a1.detach().numpy(),
                      b1=b1.detach().numpy(), wdw=dw.weight.detach().numpy(),
                      w2=pw.weight.detach().numpy(), a2=a2.detach().numpy(), b2=b2.detach().numpy())
    gr = graph("float", ir.Input("x", (), shape=(4, 6, 5)), node)
    x = (torch.rand(3, 2, 4, 6, 5, dtype=torch.float64) < 0.4).double()
    with torch.no_grad():
        want = m(x.flatten(0, 1)).reshape(3, 2, 6, 6, 5)
    got = ref.run(gr, x).outputs["r"]
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=0, atol=1e-10)


def _spike_qkv_float(c, h, w, heads, **attn):
    """Float graph: three LIFs with different thresholds give binary Q, K, V."""
    return graph("float", ir.Input("x", (), shape=(c, h, w)),
                 ir.LIF("q", ("x",), v_threshold=0.3), ir.LIF("k", ("x",), v_threshold=0.5),
                 ir.LIF("v", ("x",), v_threshold=0.2),
                 ir.Attention("a", ("q", "k", "v"), heads=heads, **attn))


@pytest.mark.parametrize("mode", ["joint", "spatial"])
@pytest.mark.parametrize("heads", [1, 3])
def test_float_sdha_equals_model(mode, heads):
    c = 6
    gr = _spike_qkv_float(c, 3, 4, heads, kind="sdha", tokens=mode, factor=1 / (2 * c))
    x = torch.rand(4, 2, c, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    res = ref.run(gr, x, record=True)
    q, k, v = (res.values[n].flatten(3) for n in "qkv")
    model = SDHA(c, heads, NeuronConfig(), mode=mode)
    want = model.core(q, k, v).reshape(4, 2, c, 3, 4)
    assert torch.equal(res.outputs["a"], want)  # same integers, same division by 2C


@pytest.mark.parametrize("heads", [1, 2])
def test_float_sdsa_equals_model(heads):
    gr = _spike_qkv_float(4, 2, 3, heads, kind="sdsa", tokens="spatial", factor=0.125)
    x = torch.rand(3, 2, 4, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    res = ref.run(gr, x, record=True)
    q, k, v = (res.values[n].flatten(3) for n in "qkv")
    want = SDSA(4, heads, NeuronConfig()).core(q, k, v).reshape(3, 2, 4, 2, 3)
    assert torch.equal(res.outputs["a"], want)


def test_float_sssa_equals_model():
    torch.manual_seed(6)
    c, h, w, heads, t = 4, 2, 3, 2, 5
    model = SSSA(c, heads, NeuronConfig(), max_T=8).double()
    with torch.no_grad():
        model.saccade_gain.uniform_(0.5, 3)
    d, n = c // heads, h * w
    gain = model.saccade_gain.detach().numpy() / float(d * d * n)
    gr = graph("float", ir.Input("x", (), shape=(c, h, w)),
               ir.LIF("q", ("x",), v_threshold=0.3), ir.LIF("k", ("x",), v_threshold=0.5),
               ir.LIF("v", ("x",), v_threshold=0.2),
               ir.SSSA("s", ("q", "k", "v"), heads=heads, gain=gain))
    x = torch.rand(t, 2, c, h, w, dtype=torch.float64)
    res = ref.run(gr, x, record=True)
    q, k, v = (res.values[z].flatten(3) for z in "qkv")
    model.sal_lif.record = True
    with torch.no_grad():
        want = model.core(q, k, v).reshape(t, 2, c, h, w)
    assert torch.equal(res.outputs["s"], want)
    assert torch.equal(res.membranes["s"], model.sal_lif.last_h)


def test_float_pool_linear_timemean():
    g = torch.Generator().manual_seed(7)
    wl = torch.randn(5, 3, generator=g, dtype=torch.float64)
    bl = torch.randn(5, generator=g, dtype=torch.float64)
    gr = graph("float", ir.Input("x", (), shape=(3, 4, 4)),
               ir.Add("s", ("x", "x")), ir.GlobalPool("p", ("s",)),
               ir.Linear("l", ("p",), weight=wl.numpy(), bias=bl.numpy()), ir.TimeMean("m", ("l",)),
               outputs=("l", "m"))
    x = torch.randn(3, 2, 3, 4, 4, generator=g, dtype=torch.float64)
    out = ref.run(gr, x).outputs
    want_l = F.linear((2 * x).flatten(3).mean(3), wl, bl)
    assert torch.allclose(out["l"], want_l, rtol=0, atol=1e-14)
    assert out["m"].shape == (2, 5)
    assert torch.allclose(out["m"], want_l.mean(0), rtol=0, atol=1e-14)


# ============================================================================ integer stage: neurons


def test_shift_is_arithmetic_floor():
    x = torch.arange(-1000, 1000, dtype=torch.int64)
    for k in (1, 2, 3, 7):
        assert torch.equal(x >> k, torch.div(x, 2 ** k, rounding_mode="floor"))
    assert (torch.tensor([-5, -1, 5, -4]) >> 1).tolist() == [-3, -1, 2, -2]


def scalar_intlif(xs, theta, bias=0, polarity=1, frac_bits=0, k=1, decay_input=True,
                  reset="hard", levels=1):
    """Plain-Python integer LIF (Python ints, floor shift), one channel."""
    v, out, hs = 0, [], []
    scalar_intlif.inter = []  # magnitudes of the intermediates the hardware computes
    for x in xs:
        X = polarity * (x * 2 ** frac_bits) + bias
        h = v + ((X - v) >> k) if decay_input else v - (v >> k) + X
        scalar_intlif.inter += [abs(X), abs(X - v), abs(v - (v >> k)), abs(h)]
        if reset == "soft" or levels > 1:
            scalar_intlif.inter += [abs(h - theta)]
        if levels > 1:
            scalar_intlif.inter += [abs(2 * h + theta), (2 * levels - 1) * theta, levels * theta]
        if levels == 1:
            s = int(h >= theta)
            v = (0 if s else h) if reset == "hard" else h - s * theta
        else:  # the hardware's compare chain (ir.IntLIF), checked against Python's round
            s = sum(1 for j in range(1, levels + 1)
                    if 2 * h > (2 * j - 1) * theta or (2 * h == (2 * j - 1) * theta and j % 2 == 0))
            assert s == min(max(round(Fraction(h, theta)), 0), levels)  # half to even
            v = h - s * theta
        out.append(s)
        hs.append(h)
    return out, hs


def run_intlif(xs, offset=300, bits=10, **lif):
    """Run one IntLIF per channel on int sequences ``xs[c][t]`` through the reference."""
    xs = np.asarray(xs, I64)  # [C, T]
    c, t = xs.shape
    frames = torch.tensor((xs + offset).T, dtype=torch.float64).reshape(t, 1, c, 1, 1)
    gr = graph("integer", int_input((c, 1, 1), bits=bits), identity_conv("c", "x", c, offset),
               int_lif("n", "c", **lif))
    res = ref.run(gr, frames, record=True)
    assert torch.equal(res.values["c"].reshape(t, c).T, torch.tensor(xs))
    s = res.values["n"].reshape(t, c).T.tolist()
    h = res.membranes["n"].reshape(t, c).T.tolist()
    run_intlif.register = ref.register_bounds(gr, t)["n"]
    return s, h, ref.bounds(gr, t)["n"]


def test_intlif_hand_examples():
    # decay_input, hard reset, theta 4, k 1: H = V + floor((x - V) / 2)
    s, h, _ = run_intlif([[8, 3, 3, -5, 7]], theta=[4])
    assert h == [[4, 1, 2, -2, 2]] and s == [[1, 0, 0, 0, 0]]
    # soft reset keeps the excess; negative membrane floors towards -inf
    s, h, _ = run_intlif([[9, -7, 0]], theta=[4], reset="soft")
    assert h == [[4, -4, -2]] and s == [[1, 0, 0]]
    # no decay_input, k 2: H = V - floor(V / 4) + x
    s, h, _ = run_intlif([[3, 3, -9, 0]], theta=[5], decay_input=False, leak_shift=2, reset="soft")
    assert h == [[3, 6, -8, -6]] and s == [[0, 1, 0, 0]]
    # polarity -1, bias, frac bits 2: X = -(x << 2) + 3
    s, h, _ = run_intlif([[-2, 1]], theta=[6], polarity=ints(-1), bias=ints(3), frac_bits=2)
    assert h == [[5, 2]] and s == [[0, 0]]
    # I-LIF, D 3, theta 4: S = clamp(round_half_even(H / 4), 0, 3)
    # (clamped at D: 20 leaves 8; -23 >> 3 = -3)
    s, h, _ = run_intlif([[12, 20, -30, 0]], theta=[4], decay_input=False, reset="soft",
                         levels=3, leak_shift=3)
    assert h == [[12, 20, -23, -20]] and s == [[3, 3, 0, 0]]
    s, h, _ = run_intlif([[6, 2]], theta=[4], decay_input=False, reset="soft", levels=3)
    assert h == [[6, 1]] and s == [[2, 0]]  # 6/4 = 1.5 rounds to even 2, leaving -2
    # ties go to the even count, as torch.round: 2/4 -> 0, 10/4 -> 2, 14/4 -> 4 (clamped to D)
    s, h, _ = run_intlif([[2], [10], [14], [18]], theta=[4] * 4, decay_input=False,
                         reset="soft", levels=4, leak_shift=3)
    assert [x[0] for x in h] == [2, 10, 14, 18] and [x[0] for x in s] == [0, 2, 4, 4]
    assert torch.round(torch.tensor([0.5, 2.5, 3.5, 4.5])).tolist() == [0, 2, 4, 4]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), c=st.integers(1, 3), t=st.integers(1, 12),
       frac_bits=st.integers(0, 4), k=st.integers(1, 3), decay_input=st.booleans(),
       mode=st.sampled_from(["hard", "soft", "ilif"]))
def test_intlif_matches_scalar_model(data, c, t, frac_bits, k, decay_input, mode):
    xs = data.draw(st.lists(st.lists(st.integers(-300, 300), min_size=t, max_size=t),
                            min_size=c, max_size=c))
    theta = data.draw(st.lists(st.integers(1, 2000), min_size=c, max_size=c))
    bias = data.draw(st.lists(st.integers(-500, 500), min_size=c, max_size=c))
    pol = data.draw(st.lists(st.sampled_from([-1, 1]), min_size=c, max_size=c))
    levels = data.draw(st.integers(2, 5)) if mode == "ilif" else 1
    reset = "soft" if mode == "ilif" else mode
    kw = dict(frac_bits=frac_bits, leak_shift=k, decay_input=decay_input, reset=reset, levels=levels)
    s, h, bound = run_intlif(xs, theta=theta, bias=np.asarray(bias, I64),
                             polarity=np.asarray(pol, I64), **kw)
    for j in range(c):
        ws, wh = scalar_intlif(xs[j], theta[j], bias[j], pol[j], frac_bits, k, decay_input,
                               reset, levels)
        assert s[j] == ws and h[j] == wh
        assert max(abs(v) for v in wh) <= bound  # the proved membrane bound holds
        # the width covers every intermediate (X - V, 2H + theta, compare operands, ...)
        assert max(scalar_intlif.inter) <= run_intlif.register


def test_intlif_membrane_bound_formula():
    gr = graph("integer", int_input((2, 1, 1), bits=4), identity_conv("c", "x", 2, 0),
               int_lif("a", "c", [10, 3], bias=ints(5, -7), frac_bits=2),
               int_lif("b", "c", [10, 3], bias=ints(5, -7), frac_bits=2, leak_shift=3,
                       decay_input=False, reset="soft"))
    b = ref.bounds(gr, 4)
    assert b["x"] == 15 and b["c"] == 15
    assert b["a"] == max(15 * 4 + 5, 10, 15 * 4 + 7, 3) + 1 == 68
    assert b["b"] == 8 * max(15 * 4 + 5 + 10, 15 * 4 + 7 + 3) == 600


def test_membrane_check_catches_small_mem_bits():
    gr = graph("integer", int_input((1, 1, 1), bits=8), identity_conv("c", "x", 1),
               int_lif("n", "c", [1000], mem_bits=6))
    frames = torch.full((3, 1, 1, 1, 1), 200.0)
    with pytest.raises(GraphError, match="membrane range"):
        ref.run(gr, frames)
    ref.run(gr, frames, check_bounds=False)  # the check is what raises


# ============================================================================ integer stage: conv


def np_conv(x, w, stride, padding, groups):
    """Direct int64 convolution, zero padding: x [N, C, H, W], w [O, C/g, kh, kw]."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, oh, ow), I64)
    og = o // groups
    for oc, i, j in itertools.product(range(o), range(oh), range(ow)):
        g = oc // og
        patch = xp[:, g * cg:(g + 1) * cg, i * stride:i * stride + kh, j * stride:j * stride + kw]
        y[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3))
    return y


@pytest.mark.parametrize("k,stride,padding,groups", [
    (3, 1, 1, 1), (3, 2, 1, 2), (1, 1, 0, 4), (5, 2, 2, 1), (2, 3, 0, 2), (7, 2, 3, 4)])
def test_int_conv_equals_numpy(k, stride, padding, groups):
    rng = np.random.default_rng(k * 100 + stride * 10 + groups)
    c, o = 4, 8
    w = rng.integers(-50, 51, (o, c // groups, k, k)).astype(I64)
    b = rng.integers(-1000, 1001, o).astype(I64)
    gr = graph("integer", int_input((c, 11, 9), bits=8, scale=1 / 255),
               ir.Conv("c", ("x",), weight=w, bias=b, stride=stride, padding=padding,
                       groups=groups, out_scale=np.full(o, 0.01)))
    frames = torch.tensor(rng.integers(0, 256, (3, 2, c, 11, 9)) / 255.0)
    res = ref.run(gr, frames, record=True)
    codes = res.values["x"].numpy()
    assert np.array_equal(codes, np.round(frames.numpy() * 255))
    want = np_conv(codes.reshape(6, c, 11, 9), w, stride, padding, groups) + b[:, None, None]
    got = res.values["c"]
    assert got.dtype == torch.int64
    assert np.array_equal(got.numpy().reshape(want.shape), want)
    assert torch.allclose(res.outputs["c"], got.double() * 0.01, rtol=1e-15, atol=0)


def test_float32_path_exact_at_bound_limit():
    # in_bound 2**12 - 1, sum |w| = 2**12 + 1: bound = 2**24 - 1, the largest float32 case
    rng = np.random.default_rng(8)
    in_b = 2 ** 12 - 1
    o, c = 6, 8
    w = np.zeros((o, c, 3, 3), I64)
    for oc in range(o):
        parts = rng.multinomial(2 ** 12 + 1, np.ones(c * 9) / (c * 9))
        w[oc] = (parts * rng.choice([-1, 1], c * 9)).reshape(c, 3, 3)
    w[0] = np.abs(w[0])  # one output reaches exactly the bound on an all-max input
    bound = static_bounds._affine_bound(w, None, in_b)
    assert bound == 2 ** 24 - 1 and ref.kernel_dtype(bound) == torch.float32
    assert ref.kernel_dtype(2 ** 24) == torch.float64
    x = torch.tensor(rng.integers(in_b - 3, in_b + 1, (4, c, 6, 6)))
    x[0] = in_b
    y32 = ref.int_conv2d(x, w, padding=1, bound=bound, dtype=torch.float32)
    y64 = ref.int_conv2d(x, w, padding=1, bound=bound, dtype=torch.float64)
    assert torch.equal(y32, y64)
    assert int(y32.abs().max()) == 2 ** 24 - 1
    assert np.array_equal(y32.numpy(), np_conv(x.numpy(), w, 1, 1, 1))
    # why the rule exists: one step past the limit float32 rounds
    xs = torch.tensor([[[[2 ** 24]], [[1]]]])
    wt = np.ones((1, 2, 1, 1), I64)
    assert ref.int_conv2d(xs, wt, bound=2 ** 25, dtype=torch.float64).item() == 2 ** 24 + 1
    assert F.conv2d(xs.float(), torch.ones(1, 2, 1, 1)).item() != 2 ** 24 + 1


def test_graph_at_float32_limit_equals_numpy():
    w = np.full((2, 1, 1, 1), 2 ** 12 + 1, I64)
    w[1] *= -1
    gr = graph("integer", int_input((1, 2, 2), bits=12), ir.Conv("c", ("x",), weight=w, out_scale=np.ones(2)))
    assert ref.bounds(gr, 1)["c"] == 2 ** 24 - 1
    frames = torch.full((1, 1, 1, 2, 2), float(2 ** 12 - 1))
    y = ref.run(gr, frames, record=True).values["c"]
    assert y[0, 0, :, 0, 0].tolist() == [2 ** 24 - 1, -(2 ** 24 - 1)]


def test_bound_beyond_float64_raises():
    w = np.array([[[[2 ** 46]], [[1]]]], I64)
    gr = graph("integer", int_input((2, 1, 1), bits=8), ir.Conv("c", ("x",), weight=w, out_scale=np.ones(1)))
    assert ref.bounds(gr, 1)["c"] == (2 ** 46 + 1) * 255 > 2 ** 53
    with pytest.raises(GraphError, match="2\\*\\*53"):
        ref.run(gr, torch.zeros(1, 1, 2, 1, 1))
    with pytest.raises(GraphError):
        ref.kernel_dtype(2 ** 53)


def test_observed_value_beyond_bound_is_a_compiler_bug():
    # acc_bits declares an 8-bit accumulator, the data needs more
    gr = graph("integer", int_input((1, 1, 1), bits=8),
               ir.Conv("c", ("x",), weight=np.array([[[[3]]]], I64), out_scale=np.ones(1), acc_bits=8))
    with pytest.raises(GraphError, match="compiler bug"):
        ref.run(gr, torch.full((1, 1, 1, 1, 1), 100.0))
    assert ref.run(gr, torch.full((1, 1, 1, 1, 1), 40.0)).outputs["c"].item() == 120


def test_input_quantisation_rounds_half_to_even_and_clamps():
    gr = graph("integer", int_input((1, 1, 8), bits=2, scale=0.5),
               identity_conv("c", "x", 1, scale=0.5))
    x = torch.tensor([0.25, 0.75, 1.25, -3.0, 0.1, 1.0, 7.0, 0.74]).reshape(1, 1, 1, 1, 8)
    res = ref.run(gr, x, record=True)
    assert res.values["x"].flatten().tolist() == [0, 2, 2, 0, 0, 2, 3, 1]
    assert res.outputs["c"].flatten().tolist() == [0, 1, 1, 0, 0, 1, 1.5, 0.5]


# ============================================================================ integer stage: rest


def _int_qkv_graph(c, h, w, **attn):
    """Integer graph whose three IntLIFs give binary Q, K, V from 2-bit codes."""
    return graph("integer", int_input((c, h, w), bits=2), identity_conv("c", "x", c),
                 int_lif("q", "c", [2] * c, reset="soft"), int_lif("k", "c", [1] * c),
                 int_lif("v", "c", [3] * c, decay_input=False, reset="soft"),
                 ir.Attention("a", ("q", "k", "v"), **attn))


def brute_attention(q, k, v, kind, heads, joint):
    """Per output element loops over Python ints; q, k, v int [T, B, C, N]."""
    t, b, c, n = q.shape
    d = c // heads
    y = np.zeros(q.shape, I64)
    for bi, hd, ti, i, j in itertools.product(range(b), range(heads), range(t), range(n), range(d)):
        toks = [(tt, m) for tt in (range(t) if joint else [ti]) for m in range(n)]
        acc = 0
        for a in range(d):
            ca, cj = hd * d + a, hd * d + j
            if kind == "sdha":
                kv = sum((2 * int(k[tt, bi, ca, m]) - 1) * int(v[tt, bi, cj, m]) for tt, m in toks)
                acc += (2 * int(q[ti, bi, ca, i]) - 1) * kv
            else:
                kv = sum(int(k[tt, bi, ca, m]) * int(v[tt, bi, cj, m]) for tt, m in toks)
                acc += int(q[ti, bi, ca, i]) * kv
        y[ti, bi, hd * d + j, i] = acc
    return y


@pytest.mark.parametrize("kind,tokens,heads", [
    ("sdha", "joint", 1), ("sdha", "joint", 2), ("sdha", "spatial", 2),
    ("sdsa", "spatial", 1), ("sdsa", "joint", 2)])
def test_int_attention_equals_brute_force(kind, tokens, heads):
    c, h, w, t = 4, 2, 3, 3
    gr = _int_qkv_graph(c, h, w, kind=kind, heads=heads, tokens=tokens, factor=1 / 8)
    frames = torch.randint(0, 4, (t, 2, c, h, w)).double()
    res = ref.run(gr, frames, record=True)
    q, k, v = (res.values[z].reshape(t, 2, c, h * w).numpy() for z in "qkv")
    assert 0 < q.mean() < 1 and 0 < k.mean() < 1 and 0 < v.mean() < 1
    want = brute_attention(q, k, v, kind, heads, tokens == "joint")
    got = res.values["a"]
    assert got.dtype == torch.int64
    assert np.array_equal(got.reshape(t, 2, c, h * w).numpy(), want)
    assert torch.equal(res.outputs["a"], got.double() / 8)
    assert ref.bounds(gr, t)["a"] == (c // heads) * h * w * (t if tokens == "joint" else 1)


def test_int_sssa_equals_scalar_model():
    c, h, w, t, heads = 4, 1, 3, 5, 2
    base = _int_qkv_graph(c, h, w, kind="sdha", factor=1.0)
    gain = ints(3, 1, 2, 5, 4, 9)
    node = ir.SSSA("s", ("q", "k", "v"), heads=heads, gain=gain, sal_theta=11, sal_frac_bits=1,
                   sal_reset="soft")
    gr = graph("integer", *base.nodes[:-1], node)
    frames = torch.randint(0, 4, (t, 2, c, h, w), generator=torch.Generator().manual_seed(9)).double()
    res = ref.run(gr, frames, record=True)
    q, k, v = (res.values[z].reshape(t, 2, c, h * w).numpy() for z in "qkv")
    d, n = c // heads, h * w
    out = np.zeros_like(v)
    for b, hd, i in itertools.product(range(2), range(heads), range(n)):
        xs = []
        for tt in range(t):
            qc = sum(int(q[tt, b, hd * d + a, i]) for a in range(d))
            alpha = sum(int(k[tt, b, hd * d + a, m]) for a in range(d) for m in range(n))
            xs.append(int(gain[tt]) * qc * alpha)
        s, hs = scalar_intlif(xs, 11, frac_bits=1, k=1, reset="soft")
        assert res.membranes["s"][:, b, hd, i].tolist() == hs
        for tt in range(t):
            out[tt, b, hd * d:(hd + 1) * d, i] = s[tt] * v[tt, b, hd * d:(hd + 1) * d, i]
    assert np.array_equal(res.values["s"].reshape(t, 2, c, n).numpy(), out)
    assert res.values["s"].sum() > 0


def test_int_add_pool_linear_timemean_dequantise():
    rng = np.random.default_rng(10)
    c, h, w, t, b = 3, 4, 2, 3, 2
    s = np.array([0.5, 0.25, 2.0])
    w1 = rng.integers(-5, 6, (c, c, 1, 1)).astype(I64)
    w2 = rng.integers(-5, 6, (c, c, 3, 3)).astype(I64)
    wl, bl = rng.integers(-4, 5, (5, c)).astype(I64), rng.integers(-50, 50, 5).astype(I64)
    ls = np.full(5, 0.125)
    gr = graph("integer", int_input((c, h, w), bits=4),
               ir.Conv("c1", ("x",), weight=w1, bias=ints(1, 2, 3), out_scale=s),
               ir.Conv("c2", ("x",), weight=w2, padding=1, out_scale=s),
               ir.Add("add", ("c1", "c2")), ir.GlobalPool("p", ("add",)),
               ir.Linear("l", ("p",), weight=wl, bias=bl, out_scale=ls), ir.TimeMean("m", ("l",)),
               outputs=("add", "p", "l", "m"))
    frames = torch.tensor(rng.integers(0, 16, (t, b, c, h, w))).double()
    res = ref.run(gr, frames, record=True)
    x = frames.numpy().astype(I64).reshape(t * b, c, h, w)
    add = np_conv(x, w1, 1, 0, 1) + ints(1, 2, 3)[:, None, None] + np_conv(x, w2, 1, 1, 1)
    add = add.reshape(t, b, c, h, w)
    pool = add.sum(axis=(3, 4))
    lin = pool @ wl.T + bl
    assert np.array_equal(res.values["add"].numpy(), add)
    assert np.array_equal(res.values["p"].numpy(), pool)
    assert np.array_equal(res.values["l"].numpy(), lin)
    assert np.array_equal(res.values["m"].numpy(), lin.sum(0, keepdims=True))
    out = res.outputs
    assert np.allclose(out["add"].numpy(), add * s[:, None, None], rtol=1e-15, atol=0)
    assert np.allclose(out["p"].numpy(), add.mean(axis=(3, 4)) * s, rtol=1e-15, atol=0)
    assert np.allclose(out["l"].numpy(), lin * 0.125, rtol=1e-15, atol=0)
    assert out["m"].shape == (b, 5)
    assert np.allclose(out["m"].numpy(), lin.mean(0) * 0.125, rtol=1e-15, atol=0)
    bd = ref.bounds(gr, t)
    assert bd["add"] == bd["c1"] + bd["c2"] and bd["p"] == h * w * bd["add"] and bd["m"] == t * bd["l"]
    # without record only the outputs survive
    lean = ref.run(gr, frames)
    assert lean.values == {} and lean.membranes == {}
    assert all(torch.equal(lean.outputs[k], out[k]) for k in out)


def test_run_rejects_bad_frames_and_stages():
    gr = graph("integer", int_input((1, 2, 2)), identity_conv("c", "x", 1))
    with pytest.raises(GraphError, match="do not fit"):
        ref.run(gr, torch.zeros(1, 1, 1, 3, 3))
    with pytest.raises(GraphError, match="NaN"):
        ref.run(gr, torch.full((1, 1, 1, 2, 2), float("nan")))
    q = ir.Graph(gr.nodes, gr.outputs, "quantized")
    with pytest.raises(GraphError, match="float or integer"):
        ref.run(q, torch.zeros(1, 1, 1, 2, 2))
    with pytest.raises(GraphError, match="integer graph"):
        ref.bounds(graph("float", ir.Input("x", (), shape=(1, 1, 1))), 1)


def test_float32_kernels_only_in_ieee_mode():
    assert ref.kernel_dtype(2 ** 24 - 1) == torch.float32
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # would allow bf16/tf32 kernels
    try:
        assert ref.kernel_dtype(5) == torch.float64
    finally:
        torch.set_float32_matmul_precision(old)


def test_integer_nodes_after_timemean_and_short_gain_are_refused():
    base = (int_input((1, 1, 1)), identity_conv("c", "x", 1), ir.TimeMean("m", ("c",)))
    gr = graph("integer", *base, identity_conv("after", "m", 1))
    with pytest.raises(GraphError, match="reads a TimeMean"):
        ref.run(gr, torch.zeros(2, 1, 1, 1, 1))
    qkv = _int_qkv_graph(2, 1, 1, kind="sdha").nodes[:-1]
    gr = graph("integer", *qkv, ir.SSSA("s", ("q", "k", "v"), gain=ints(1, 1), sal_theta=3))
    with pytest.raises(GraphError, match="gain has 2 steps"):
        ref.run(gr, torch.zeros(3, 1, 2, 1, 1))
