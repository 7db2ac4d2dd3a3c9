"""The bundled trained model and the trainer that reproduces it."""

import json

import torch

from svf_deploy.api import BUNDLED_MODEL
from svf_deploy.models import data as mdata
from svf_deploy.models.checkpoint import load_checkpoint
from svf_deploy.models.train import TrainConfig, evaluate, train


def test_bundled_checkpoint_is_small_and_self_describing():
    assert BUNDLED_MODEL.exists(), "the trained model must ship inside the package"
    assert BUNDLED_MODEL.stat().st_size < 5 * 2**20
    raw = torch.load(BUNDLED_MODEL, weights_only=True)
    assert {"config", "model", "data", "val_accuracy", "recipe"} <= set(raw)
    side = json.loads(BUNDLED_MODEL.with_suffix(".json").read_text())
    assert side["val_accuracy"] == raw["val_accuracy"] >= 0.95
    assert side["data"] == raw["data"]


def test_bundled_model_scores_at_least_95_percent():
    model, ck = load_checkpoint(BUNDLED_MODEL)
    cfg = mdata.MovingDigitsConfig.from_dict(ck["data"])
    x, y = mdata.make_split(cfg, "val")
    torch.set_num_threads(2)
    acc = evaluate(model, x[:400], y[:400])
    assert acc >= 0.95, acc
    # it uses the same code path as svf-small: joint SDHA, published LIF, every block type
    assert model.cfg.attention == "sdha" and model.cfg.neuron.tau == 2.0
    assert model.cfg.neuron.reset == "hard" and model.cfg.depths[0] >= 1 and model.cfg.depths[1] >= 1


def test_a_few_training_steps_lower_the_loss():
    dcfg = mdata.MovingDigitsConfig(n_train=256, n_val=40, seed=1)
    tcfg = TrainConfig(epochs=8, batch_size=32, lr=3e-3, warmup_steps=1, max_steps=40, seed=1)
    _, hist = train(tcfg, dcfg, progress=False, log=lambda s: None)
    loss = hist["loss"]
    assert len(loss) == 40
    first, last = sum(loss[:8]) / 8, sum(loss[-8:]) / 8
    assert last < first - 0.05, (first, last)


def test_training_is_deterministic():
    dcfg = mdata.MovingDigitsConfig(n_train=64, n_val=20, seed=2)
    tcfg = TrainConfig(epochs=1, batch_size=32, max_steps=2, seed=2)
    m1, h1 = train(tcfg, dcfg, progress=False, log=lambda s: None)
    m2, h2 = train(tcfg, dcfg, progress=False, log=lambda s: None)
    assert h1["loss"] == h2["loss"]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
