"""Float parity with the published SpikeVideoFormer / Meta-SpikeFormer code, per attention mode.

The reference below is written from the facts of the published model code (issue 7), not
from ``svf_deploy.models``: spikingjelly's LIF charge ``v = v + (x - v) / tau`` in that
order; Hamming attention ``x = (2k-1)^T v``, ``x = (2q-1) x``, ``x / (2*C)`` (C the full
width), ``attn_bn`` (BatchNorm2d over C), ``attn_lif`` threshold **1.0**; dot-product modes
``(q (k^T v)) * 0.125``, threshold 0.5, no BN; ``2D`` per-frame tokens, ``3D_*`` joint
``T*H*W`` tokens; ``kd``: ``(head(z).mean(0) + head_kd(z).mean(0)) / 2``; inputs
normalised ``(x - mean) / std``. Only the weight containers (convs, BNs, linears) are
shared with our model, every computation is re-done here, in float32 as published.
"""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F

from svf_deploy.models import build_model
from svf_deploy.models.checkpoint import ASSUMPTIONS_KEY, load_checkpoint
from svf_deploy.models.errors import CheckpointMismatchError
from svf_deploy.models.neurons import LIF

MODES = ("2D", "3D_dot", "3D_ham")
GAIN = 3.0  # BN gains: keep every layer firing through the random network
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def sj_lif(x: torch.Tensor, v_th: float = 1.0, tau: float = 2.0) -> torch.Tensor:
    """spikingjelly MultiStepLIFNode (decay_input, v_reset 0, hard reset), torch backend."""
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        v = v + (x[t] - (v - 0.0)) / tau
        s = (v - v_th >= 0).to(x.dtype)
        v = v * (1.0 - s) + 0.0 * s
        out.append(s)
    return torch.stack(out)


class _PublishedLIF:
    """Swap every LIF's forward for :func:`sj_lif` with the module's own threshold."""

    def __enter__(self):
        self.orig = LIF.forward
        LIF.forward = lambda mod, x: sj_lif(x, mod.cfg.v_threshold, mod.cfg.tau)

    def __exit__(self, *a):
        LIF.forward = self.orig


def _tb(seq, x):
    t, b = x.shape[:2]
    y = seq(x.flatten(0, 1))
    return y.reshape(t, b, *y.shape[1:])


def published_attention(attn, x: torch.Tensor, att_mode: str, ham_th: float = 1.0) -> torch.Tensor:
    """``MS_Attention_3D_RepConv`` / V2's ``MS_Attention_RepConv_qkv_id`` from the facts."""
    T, B, C, H, W = x.shape
    heads, d, N = attn.num_heads, C // attn.num_heads, H * W
    x = sj_lif(x)  # head_lif
    q, k, v = (sj_lif(_tb(getattr(attn, f"{z}_conv"), x)) for z in "qkv")

    def tok(z):  # [T, B, C, H, W] -> [B, heads, T, N, d] -> joint: [B, heads, T*N, d]
        z = z.flatten(3).transpose(-1, -2).reshape(T, B, N, heads, d).permute(1, 3, 0, 2, 4)
        return z if att_mode == "2D" else z.reshape(B, heads, T * N, d)

    q, k, v = tok(q), tok(k), tok(v)
    if att_mode == "3D_ham":
        y = (2 * k - 1).transpose(-2, -1) @ v
        y = (2 * q - 1) @ y
        y = y / (2 * C)
    else:
        y = k.transpose(-2, -1) @ v
        y = (q @ y) * 0.125
    y = y.reshape(B, heads, T, N, d).permute(2, 0, 3, 1, 4).reshape(T, B, N, C)
    y = y.transpose(-1, -2).reshape(T, B, C, H, W)
    if att_mode == "3D_ham":
        bn = attn.attn_bn  # BatchNorm2d over C, eval statistics
        y = F.batch_norm(y.flatten(0, 1), bn.running_mean, bn.running_var, bn.weight, bn.bias,
                         False, 0.0, bn.eps).reshape(T, B, C, H, W)
        y = sj_lif(y, ham_th)
    else:
        y = sj_lif(y, 0.5)
    return _tb(attn.proj_conv, y)


@torch.no_grad()
def published_forward(model, x: torch.Tensor, att_mode: str, kd: bool, norm=None,
                      ham_th: float = 1.0) -> torch.Tensor:
    if norm is not None:
        mean, std = (torch.tensor(v).view(1, 1, -1, 1, 1) for v in norm)
        x = (x - mean) / std
    with _PublishedLIF():  # CNN stages and MLPs with spikingjelly's LIF
        x = model.downsample1_1(x)
        for blk in (*model.ConvBlock1_1,):
            x = blk(x)
        x = model.downsample1_2(x)
        for blk in model.ConvBlock1_2:
            x = blk(x)
        x = model.downsample2(x)
        for blk in (*model.ConvBlock2_1, *model.ConvBlock2_2):
            x = blk(x)
        for down, stage in ((model.downsample3, model.block3), (model.downsample4, model.block4)):
            x = down(x)
            for blk in stage:
                x = x + published_attention(blk.attn, x, att_mode, ham_th)
                x = x + blk.mlp(x)
    z = sj_lif(x.flatten(3).mean(3))
    y = F.linear(z, model.head.weight, model.head.bias).mean(0)
    if kd:
        y_kd = F.linear(z, model.head_kd.weight, model.head_kd.bias).mean(0)
        y = (y + y_kd) / 2
    return y


def _randomize(model, seed: int):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                fan = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan) ** 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 + 0.3)
            else:
                p.copy_(GAIN + 0.5 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def _model(att_mode: str, kd: bool, norm=None, seed: int = 0, in_ch: int = 3):
    kw = {} if norm is None else {"input_mean": norm[0], "input_std": norm[1]}
    m = build_model("svf-tiny", attention=att_mode, kd=kd, in_channels=in_ch, num_classes=7,
                    img_size=64, **kw)
    return _randomize(m, seed).eval()


@pytest.mark.parametrize("att_mode", MODES)
def test_logits_match_published_reference(att_mode):
    kd = att_mode != "3D_dot"  # kd with 2D (the V2 recipe) and 3D_ham; plain head with 3D_dot
    m = _model(att_mode, kd, IMAGENET, seed=MODES.index(att_mode))
    x = torch.rand(4, 2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        got = m(x)
    want = published_forward(m, x, att_mode, kd, IMAGENET)
    # the test is informative: the attention LIF fires and the logits are not constant
    assert want.abs().max() > 1e-3 and (want[0] - want[1]).abs().max() > 1e-4
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_the_reference_tells_modes_thresholds_and_normalisation_apart():
    """What the parity test would catch: 2D vs 3D_dot tokens, the Hamming threshold 0.5 vs
    1.0, a missing input normalisation, each changes the logits by far more than 1e-5."""
    x = torch.rand(4, 2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    m = _model("3D_dot", False, IMAGENET)
    a = published_forward(m, x, "3D_dot", False, IMAGENET)
    assert (a - published_forward(m, x, "2D", False, IMAGENET)).abs().max() > 1e-3
    assert (a - published_forward(m, x, "3D_dot", False, None)).abs().max() > 1e-3
    m = _model("3D_ham", False, IMAGENET)
    a = published_forward(m, x, "3D_ham", False, IMAGENET)
    assert (a - published_forward(m, x, "3D_ham", False, IMAGENET, ham_th=0.5)).abs().max() > 1e-3


def test_hamming_threshold_is_one_and_dot_product_half():
    for mode, th in (("3D_ham", 1.0), ("2D", 0.5), ("3D_dot", 0.5)):
        m = build_model("svf-tiny", attention=mode)
        assert m.block3[0].attn.attn_lif.cfg.v_threshold == th
    m = build_model("svf-tiny", attention="3D_ham", attn_threshold=0.5)  # a model trained so
    assert m.block3[0].attn.attn_lif.cfg.v_threshold == 0.5


def test_kd_training_returns_both_heads_eval_their_average():
    m = _model("2D", True, None, in_ch=1)
    x = torch.rand(4, 2, 1, 64, 64)
    m.train()
    for mod in m.modules():  # BNs keep their running statistics: only the head's mode differs
        if mod is not m:
            mod.training = False
    with torch.no_grad():
        y, y_kd = m(x)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(x), (y + y_kd) / 2, rtol=0, atol=0)


def _published_ckpt(path, model, **args):
    torch.save({"model": model.state_dict(), "optimizer": {}, "epoch": 3, "scaler": {},
                "args": argparse.Namespace(time_steps=4, **args)}, path)
    return path


def test_kd_checkpoint_loads_strictly(tmp_path):
    src = _model("2D", True, None, in_ch=1)
    p = _published_ckpt(tmp_path / "kd.pth", src, att_mode="2D")
    m, ck = load_checkpoint(p, num_heads=2, img_size=64)
    assert m.cfg.kd and m.cfg.attention == "sdsa" and ck[ASSUMPTIONS_KEY] == []
    x = torch.rand(4, 1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), src(x))


@pytest.mark.parametrize("att_mode,kind", [("2D", "sdsa"), ("3D_dot", "sdsa_joint"), ("3D_ham", "sdha")])
def test_att_mode_from_args_decides(tmp_path, att_mode, kind):
    src = _model(att_mode, False, None, in_ch=1)
    m, ck = load_checkpoint(_published_ckpt(tmp_path / "c.pth", src, att_mode=att_mode),
                            num_heads=2, img_size=64)
    assert m.cfg.attention == kind and ck[ASSUMPTIONS_KEY] == []
    x = torch.rand(4, 1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), src(x))


def test_2d_3d_dot_ambiguity_is_announced_and_resolvable(tmp_path):
    src = _model("3D_dot", False, None, in_ch=1)
    p = _published_ckpt(tmp_path / "dot.pth", src)  # no att_mode recorded
    m, ck = load_checkpoint(p, num_heads=2, img_size=64)
    assert m.cfg.attention == "sdsa"
    (note,) = ck[ASSUMPTIONS_KEY]
    assert "ASSUMED 2D" in note and "--attention 3D_dot" in note
    m2, ck2 = load_checkpoint(p, num_heads=2, img_size=64, attention="3D_dot")
    assert m2.cfg.attention == "sdsa_joint" and ck2[ASSUMPTIONS_KEY] == []
    x = torch.rand(4, 1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(m2(x), src(x))


def test_attention_choice_contradicting_keys_is_refused(tmp_path):
    ham = _published_ckpt(tmp_path / "ham.pth", _model("3D_ham", False, None, in_ch=1))
    with pytest.raises(CheckpointMismatchError, match="attn_bn"):
        load_checkpoint(ham, num_heads=2, img_size=64, attention="3D_dot")
    dot = _published_ckpt(tmp_path / "dot.pth", _model("2D", False, None, in_ch=1), att_mode="3D_ham")
    with pytest.raises(CheckpointMismatchError, match="args.att_mode"):
        load_checkpoint(dot, num_heads=2, img_size=64)


def test_normalisation_from_args_or_assumed_imagenet(tmp_path):
    src = _model("3D_ham", False, None)
    p = _published_ckpt(tmp_path / "a.pth", src, att_mode="3D_ham", mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    m, ck = load_checkpoint(p, num_heads=2, img_size=64)
    assert m.cfg.input_mean == (0.5,) * 3 and m.cfg.input_std == (0.25,) * 3 and ck[ASSUMPTIONS_KEY] == []
    p = _published_ckpt(tmp_path / "b.pth", src, att_mode="3D_ham")
    m, ck = load_checkpoint(p, num_heads=2, img_size=64)
    assert (m.cfg.input_mean, m.cfg.input_std) == IMAGENET and m.cfg.normalization == "imagenet"
    assert any("normalisation ASSUMED imagenet" in n for n in ck[ASSUMPTIONS_KEY])
    m, ck = load_checkpoint(p, num_heads=2, img_size=64, input_mean=None, input_std=None)
    assert m.cfg.normalization == "none" and ck[ASSUMPTIONS_KEY] == []
