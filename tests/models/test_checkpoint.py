"""Checkpoint save/load: ours, V2-style published dicts, and every bad-checkpoint error."""

import argparse

import pytest
import torch

from svf_deploy.models import build_model
from svf_deploy.models.checkpoint import (infer_config, load_checkpoint, read_checkpoint,
                                          save_checkpoint)
from svf_deploy.models.errors import CheckpointError, UnsafeCheckpointError


class Foreign:  # an arbitrary class: its pickle must be refused by default
    pass


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("svf-tiny").eval()


def test_round_trip_with_config_inside_weights_only(tiny, tmp_path):
    p = save_checkpoint(tiny, tmp_path / "m.pt", val_accuracy=0.9)
    raw = torch.load(p, weights_only=True)  # plain torch, no allow-list needed
    assert raw["config"]["name"] == "svf-tiny" and raw["val_accuracy"] == 0.9
    m, ck = load_checkpoint(p)
    x = torch.rand(4, 2, 1, 32, 32)
    assert torch.equal(m(x), tiny(x))


def test_v2_style_training_checkpoint_loads_strict(tiny, tmp_path):
    p = tmp_path / "checkpoint-99.pth"
    torch.save({"model": tiny.state_dict(), "optimizer": {"state": {}}, "epoch": 99,
                "scaler": {}, "args": argparse.Namespace(time_steps=4, lr=1e-3, model="x")}, p)
    m, ck = load_checkpoint(p, num_heads=2, img_size=32)
    assert ck["epoch"] == 99 and m.cfg.T == 4
    assert m.cfg.embed_dim == tiny.cfg.embed_dim and m.cfg.attention == "sdha"
    x = torch.rand(4, 1, 1, 32, 32)
    assert torch.equal(m(x), tiny(x))


def test_published_key_names():
    keys = set(build_model("svf-tiny").state_dict())
    for k in ("downsample1_1.encode_conv.weight", "ConvBlock1_1.0.Conv.pwconv1.weight",
              "ConvBlock1_1.0.Conv.dwconv.weight", "ConvBlock2_2.0.conv2.weight",
              "block3.0.attn.q_conv.0.body.1.bn.running_var", "block3.0.attn.q_conv.1.weight",
              "block3.0.attn.attn_bn.weight", "block3.0.attn.proj_conv.0.body.2.1.weight",
              "block4.0.mlp.fc1_conv.bias", "block4.0.mlp.fc2_bn.running_mean", "head.weight"):
        assert k in keys, k


def test_infer_config_from_shapes():
    sd = build_model("svf-small").state_dict()
    cfg = infer_config(sd)
    assert cfg.embed_dim == (64, 128, 256, 360) and cfg.depths == (6, 2)
    assert cfg.num_classes == 1000 and cfg.attention == "sdha" and cfg.in_channels == 3
    cfg = infer_config(build_model("svf-tiny", attention="sdsa").state_dict())
    assert cfg.attention == "sdsa"


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_corrupted_file(tiny, tmp_path):
    p = save_checkpoint(tiny, tmp_path / "m.pt")
    data = p.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04junk" * 7)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")


def test_arbitrary_pickle_refused_unless_opted_in(tiny, tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"model": tiny.state_dict(), "hook": Foreign()}, p)
    with pytest.raises(UnsafeCheckpointError, match="--allow-pickle"):
        read_checkpoint(p)
    obj = read_checkpoint(p, allow_pickle=True)
    assert isinstance(obj["hook"], Foreign)


def test_wrong_shape_names_key_and_shapes(tiny, tmp_path):
    sd = dict(tiny.state_dict())
    sd["block3.0.mlp.fc1_conv.weight"] = torch.zeros(7, 64, 1)
    torch.save({"model": sd, "config": tiny.cfg.to_dict()}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match=r"block3\.0\.mlp\.fc1_conv\.weight.*\(7, 64, 1\).*\(256, 64, 1\)"):
        load_checkpoint(tmp_path / "s.pt")


def test_missing_and_unexpected_keys(tiny, tmp_path):
    sd = dict(tiny.state_dict())
    del sd["head.bias"]
    torch.save({"model": sd, "config": tiny.cfg.to_dict()}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"missing key 'head.bias'"):
        load_checkpoint(tmp_path / "a.pt")
    sd = dict(tiny.state_dict(), extra_thing=torch.zeros(3))
    torch.save({"model": sd, "config": tiny.cfg.to_dict()}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="unexpected key 'extra_thing'"):
        load_checkpoint(tmp_path / "b.pt")


def test_foreign_checkpoint(tmp_path):
    torch.save({"model": torch.nn.Linear(3, 4).state_dict()}, tmp_path / "lin.pt")
    with pytest.raises(CheckpointError, match="not a SpikeVideoFormer"):
        load_checkpoint(tmp_path / "lin.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint dict"):
        load_checkpoint(tmp_path / "list.pt")
