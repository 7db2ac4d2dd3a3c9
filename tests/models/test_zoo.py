"""Every config and head builds, runs, has the right shapes and parameter counts."""

import pytest
import torch

from svf_deploy.models import build_model, get_config
from svf_deploy.models.attention import ATTENTION_KINDS
from svf_deploy.models.errors import ConfigError


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name,target", [("svf-small", 15.1e6), ("svf-large", 55.4e6)])
def test_parameter_counts_match_paper(name, target):
    n = n_params(build_model(name))
    assert abs(n - target) / target < 0.01, n


def test_stage4_width_choice_matters():
    # the paper table's 10C = 320 would miss 15.1M by more than 1 %
    n = n_params(build_model("svf-small", embed_dim=(64, 128, 256, 320)))
    assert abs(n - 15.1e6) / 15.1e6 > 0.05


@pytest.mark.parametrize("attention", ATTENTION_KINDS)
def test_tiny_classification_every_attention(attention):
    m = build_model("svf-tiny", attention=attention).eval()
    y = m(torch.rand(4, 2, 1, 32, 32))
    assert y.shape == (2, 10) and torch.isfinite(y).all()


def test_pose_head_per_step_outputs():
    m = build_model("svf-tiny-pose").eval()
    y = m(torch.rand(4, 3, 1, 32, 32))
    assert y["shape"].shape == (4, 3, 10)
    assert y["pose"].shape == (4, 3, 24 * 6)
    assert y["trans"].shape == (4, 3, 3)


def test_segmentation_head_full_resolution_and_ilif():
    m = build_model("svf-tiny-seg").eval()
    y = m(torch.rand(4, 2, 1, 32, 32))
    assert y.shape == (2, 5, 32, 32)
    levels = {mod.cfg.levels for mod in m.fpn.modules() if hasattr(mod, "cfg")}
    assert levels == {4}


def test_svf_small_stage_shapes():
    m = build_model("svf-small", T=1).eval()
    with torch.no_grad():
        s1, s2, s3, s4 = m.forward_stages(torch.rand(1, 1, 3, 64, 64))
    assert s1.shape == (1, 1, 64, 16, 16)
    assert s2.shape == (1, 1, 128, 8, 8)
    assert s3.shape == (1, 1, 256, 4, 4)
    assert s4.shape == (1, 1, 360, 4, 4)  # stage 4 keeps the resolution (stride 1)


def test_static_image_is_repeated_over_T():
    m = build_model("svf-tiny").eval()
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(m(x), m(x.unsqueeze(0).repeat(4, 1, 1, 1, 1)))


def test_bad_inputs_and_configs():
    m = build_model("svf-tiny")
    with pytest.raises(ConfigError, match="channels"):
        m(torch.rand(4, 1, 3, 32, 32))
    with pytest.raises(ConfigError, match="multiple of 16"):
        m(torch.rand(4, 1, 1, 30, 30))
    with pytest.raises(ConfigError, match="unknown model config"):
        get_config("svf-huge")
    with pytest.raises(ConfigError, match="divisible"):
        build_model("svf-tiny", num_heads=3)


def test_gradients_flow_through_surrogate():
    torch.manual_seed(0)
    m = build_model("svf-tiny").train()
    x = torch.rand(4, 8, 1, 32, 32) * 3
    loss = torch.nn.functional.cross_entropy(m(x), torch.randint(0, 10, (8,)))
    loss.backward()
    convs = [(n, p) for n, p in m.named_parameters() if p.dim() == 4]
    with_grad = [n for n, p in convs if p.grad is not None and p.grad.abs().sum() > 0]
    # every conv weight, from the first layer to the last block, receives gradient
    assert "downsample1_1.encode_conv.weight" in with_grad
    assert len(with_grad) == len(convs), set(n for n, _ in convs) - set(with_grad)


def test_config_round_trip():
    cfg = get_config("svf-tiny-seg")
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
