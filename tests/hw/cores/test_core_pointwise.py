"""SignedBitPlaneAccumulator (pointwise conv on signed integers, two's-complement planes) in
amaranth.sim: random and edge vectors, a tight register whose partial sums wrap, a real
factored pointwise layer of the bundled model, mutations, refusals, 0 multipliers."""

import re

import numpy as np
import pytest
import torch
from _core_util import PATTERN_IDS, PATTERNS, pysim

from svf_deploy.hw.cores import SignedBitPlaneAccumulator, core_for
from svf_deploy.models.errors import HardwareError
from svf_deploy.sim.cases import MODES, concat, mutate, pointwise_case, run_case
from svf_deploy.sim.check import Mismatch


@pytest.mark.parametrize("in_bits, form, acc", [(13, "lut", 26), (2, "dsp", 12)])
@pytest.mark.parametrize("pat", PATTERNS, ids=PATTERN_IDS)
def test_pointwise_matches_reference(in_bits, form, acc, pat):
    """All modes back to back; max/min land y exactly on the register's top/bottom."""
    dut = SignedBitPlaneAccumulator(4, 3, in_bits, 8, acc, form=form)
    rng = np.random.default_rng(in_bits)
    case = concat([pointwise_case(dut, rng, m) for m in MODES])
    ys = np.array([e["acc"] for e in case.expected["o"]])
    assert ys.max() == (1 << (acc - 1)) - 1 and ys.min() == -(1 << (acc - 1))  # bounds reached
    run_case(dut, case, pysim(dut, *pat, seed=4))


def test_partial_sums_wrap_harmlessly():
    """x = -1 everywhere: u = 4095, so the planes add 4095 * sum(w) (far beyond 12 bits) to
    bias' = bias - 4096 * sum(w) (wrapped to 12 bits); the 12-bit register still ends on y."""
    dut = SignedBitPlaneAccumulator(2, 3, 13, 8, 12)
    x = np.full((2, 2, 3), -1)
    w = np.full((2, 2, 3, 2), 127)
    w[1, :, :, 1] = -128
    bias = np.array([[1285, -1], [0, 2047 - 768]])  # -6 * 127 = -762, -6 * -128 = 768
    case = pointwise_case(dut, None, x=x, weights=w, bias=bias)
    assert [e["acc"] for e in case.expected["o"]] == [[523, -763], [-762, 2047]]
    run_case(dut, case, pysim(dut))


def test_pointwise_mutation_is_caught():
    dut = SignedBitPlaneAccumulator(4, 3, 13, 8, 26)
    case = pointwise_case(dut, np.random.default_rng(2), "random")
    bad = mutate(case, "i", beat=0, bit=dut.in_layout["weights"].offset + 7)  # w[0][0] sign bit
    with pytest.raises(Mismatch, match=r"output 0"):
        run_case(dut, bad, pysim(dut))


def test_refusals_by_name():
    with pytest.raises(HardwareError, match=r"SignedBitPlaneAccumulator: in_bits must be in 2\.\.16"):
        SignedBitPlaneAccumulator(4, 3, 1, 8, 16)
    with pytest.raises(HardwareError, match=r"GatedAccumulator: acc_bits is 0 \(not derived\)"):
        SignedBitPlaneAccumulator(4, 3, 8, 8, 0)


def test_pointwise_has_no_multiplier():
    from svf_deploy.hw.production import SMALL
    from svf_deploy.hw.synth import synthesize

    r = synthesize(SMALL["pointwise small"](), "test-pointwise-small")
    assert r.multipliers == 0 and r.mul_cells == 0 and r.dsp == 0
    assert r.lut > 0 and r.carry > 0 and r.ff >= 2 * 2 * 12  # accumulator + output register


# --- a real layer: the bundled model's smallest factored pointwise conv ---------------------

@pytest.fixture(scope="module")
def pw_layer():
    from svf_deploy.api import BUNDLED_MODEL
    from svf_deploy.compiler import reference
    from svf_deploy.compiler.pipeline import CompileOptions, compile_model
    from svf_deploy.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(BUNDLED_MODEL)
    cfg = model.cfg
    g, _ = compile_model(model, CompileOptions(factor_depthwise="auto"),
                         frame_shape=(cfg.in_channels, cfg.img_size, cfg.img_size))
    T = int(g.meta["T"])
    clip = torch.rand(T, 1, cfg.in_channels, cfg.img_size, cfg.img_size,
                      generator=torch.Generator().manual_seed(1))
    res = reference.run(g, clip, record=True)
    bounds = reference.bounds(g, T)
    pws = [c for f in g.meta["sepconv_forms"].values() for c in g.consumers(f["dw"])]
    pw = min(pws, key=lambda n: np.prod(g.types[n.name].shape))
    return g, bounds, pw, res.values[pw.inputs[0]].numpy(), res.values[pw.name].numpy()


def _layer_case(dut, pw, x, y, first=0, outputs=None):
    """Per pixel (t, b, h, w) and lane group: the input channels in beats of ``terms``."""
    L, N = dut.lanes, dut.terms
    O, C = pw.weight.shape[:2]
    assert O % L == 0 and C % N == 0 and pw.weight.shape[2:] == (1, 1)
    W = np.asarray(pw.weight, np.int64)[:, :, 0, 0]
    b = np.zeros(O, np.int64) if pw.bias is None else np.asarray(pw.bias, np.int64).reshape(O)
    xs, ws, bs, names, want = [], [], [], [], []
    for idx in np.ndindex(x.shape[0], x.shape[1], *x.shape[3:]):
        t, n, h, w_ = idx
        px = x[t, n, :, h, w_]
        for g in range(O // L):
            xs.append(px.reshape(C // N, N))
            ws.append(W[g * L:(g + 1) * L].T.reshape(C // N, N, L))
            bs.append(b[g * L:(g + 1) * L])
            names.append(f"t={t} b={n} h={h} w={w_} o={g * L}..{g * L + L - 1}")
            want.append(y[t, n, g * L:(g + 1) * L, h, w_])
    if first < 0:  # the first run whose first input value is non-zero
        first = next(k for k, v in enumerate(xs) if v[0, 0] != 0)
    k = slice(first, first + outputs if outputs else None)
    case = pointwise_case(dut, None, x=xs[k], weights=ws[k], bias=bs[k], names=names[k])
    return case, np.array(want[k])


def test_real_factored_pointwise_layer(pw_layer):
    """Every output of one factored pointwise conv (recorded by the executor) from the core
    core_for configures for the node, fed the recorded signed input."""
    g, bounds, pw, x, y = pw_layer
    dut = core_for(pw, g, bounds, lanes=8, terms=16)
    assert isinstance(dut, SignedBitPlaneAccumulator)
    assert dut.in_bits == g.node(pw.inputs[0]).acc_bits and dut.acc_bits == pw.acc_bits
    assert int(np.abs(x).max()) > 1 << (dut.in_bits - 5) and x.min() < 0  # many planes, signed
    case, want = _layer_case(dut, pw, x, y)
    assert np.array_equal(np.array([e["acc"] for e in case.expected["o"]]), want)  # ref == executor
    assert len(want) * 8 == y.size
    run_case(dut, case, pysim(dut, 0.8, 0.7, seed=3))
    small, _ = _layer_case(dut, pw, x, y, first=-1, outputs=3)  # x[0] != 0 in beat 0
    bad = mutate(small, "i", beat=0, bit=dut.in_layout["weights"].offset + 3)  # w[0][0] bit 3
    with pytest.raises(Mismatch, match=r"beat 0 \(" + re.escape(small.coords["o"][0])):
        run_case(dut, bad, pysim(dut))
