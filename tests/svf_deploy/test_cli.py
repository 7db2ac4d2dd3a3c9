"""svf-compile / svf-verify as a user runs them: subprocesses, exit codes, atomic output."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from svf_deploy.models import build_model
from svf_deploy.models.checkpoint import save_checkpoint
from svf_deploy.models.data import MovingDigitsConfig

BIN = Path(sys.executable).parent


def run(prog, *args, cwd=None):
    return subprocess.run([str(BIN / prog), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def one_line_error(r, code):
    """The failure is one ``error:`` line, the last on stderr (progress and logs may precede
    it there: stdout is kept for results), with no traceback and nothing on stdout."""
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    errors = [l for l in lines if ": error: " in l]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr
    assert "Traceback" not in r.stderr and not r.stdout.strip()
    return errors[0]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    torch.manual_seed(0)
    m = build_model("svf-tiny", num_classes=20)
    dcfg = MovingDigitsConfig(n_train=40, n_val=40)
    return save_checkpoint(m, d / "tiny.pt", data=dcfg.to_dict(), val_accuracy=0.05)


def test_help_has_examples_and_only_existing_targets():
    r = run("svf-compile", "--help")
    assert r.returncode == 0
    assert "examples:" in r.stdout and "svf-compile --target reference -o out" in r.stdout
    from svf_deploy.targets import KNOWN_TARGETS, available

    offered = available()  # targets that do not exist yet are not offered
    assert "{" + ",".join(offered) + "}" in r.stdout
    assert {"reference", "nir", "onnx"} <= set(offered) <= set(KNOWN_TARGETS)


def test_compile_writes_everything_atomically(tiny_ckpt, tmp_path):
    out = tmp_path / "out"
    r = run("svf-compile", tiny_ckpt, "-o", out, "--clips", "8", "--quiet")
    assert r.returncode == 0, r.stderr
    files = {p.name for p in out.iterdir()}
    assert {"graph.json", "weights.npz", "golden.npz", "report.md", "report.html",
            "layers.png", "manifest.json"} <= files
    m = json.loads((out / "manifest.json").read_text())
    import hashlib
    for name, digest in m["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert m["versions"]["torch"] == torch.__version__
    assert m["fidelity"]["n_clips"] == 8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    # the graph reloads and reproduces the recorded golden values
    v = run("svf-verify", out)
    assert v.returncode == 0 and "bit for bit" in v.stdout
    # existing OUTDIR is not clobbered without --force
    line = one_line_error(run("svf-compile", tiny_ckpt, "-o", out, "--quiet"), 7)
    assert "--force" in line
    assert run("svf-compile", tiny_ckpt, "-o", out, "--quiet", "--clips", "4", "--force").returncode == 0


def test_missing_file(tmp_path):
    line = one_line_error(run("svf-compile", tmp_path / "nope.pt", "-o", tmp_path / "o"), 9)
    assert "not found" in line
    assert not (tmp_path / "o").exists()


def test_corrupted_checkpoint(tiny_ckpt, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(tiny_ckpt.read_bytes()[:3000])
    one_line_error(run("svf-compile", bad, "-o", tmp_path / "o"), 3)
    assert not (tmp_path / "o").exists()


def test_foreign_checkpoint(tmp_path):
    p = tmp_path / "lin.pt"
    torch.save({"model": torch.nn.Linear(4, 2).state_dict()}, p)
    line = one_line_error(run("svf-compile", p, "-o", tmp_path / "o"), 3)
    assert "not a SpikeVideoFormer" in line


def test_arbitrary_pickle_refused(tmp_path):
    p = tmp_path / "evil.pt"
    p.write_bytes(b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06getcwd\x94\x93\x94)R\x94.")
    line = one_line_error(run("svf-compile", p, "-o", tmp_path / "o"), 4)
    assert "--allow-pickle" in line and "os.getcwd" in line
    assert not (tmp_path / "o").exists()


def test_shapes_do_not_fit(tiny_ckpt, tmp_path):
    ck = torch.load(tiny_ckpt, weights_only=True)
    ck["model"]["head.weight"] = torch.zeros(20, 32)
    p = tmp_path / "s.pt"
    torch.save(ck, p)
    line = one_line_error(run("svf-compile", p, "-o", tmp_path / "o"), 10)
    assert "head.weight" in line and "(20, 32)" in line and "(20, 64)" in line


def test_unsupported_layer(tmp_path):
    m = build_model("svf-tiny", neuron={"v_reset": 0.5})
    p = save_checkpoint(m, tmp_path / "h.pt")
    line = one_line_error(run("svf-compile", p, "-o", tmp_path / "o", "--clips", "2"), 5)
    assert "v_reset=0.5" in line
    assert not (tmp_path / "o").exists()


def test_missing_bn_statistics(tiny_ckpt, tmp_path):
    ck = torch.load(tiny_ckpt, weights_only=True)
    for k in ("running_mean", "running_var", "num_batches_tracked"):
        del ck["model"][f"block3.0.attn.attn_bn.{k}"]
    p = tmp_path / "nostats.pt"
    torch.save(ck, p)
    line = one_line_error(run("svf-compile", p, "-o", tmp_path / "o", "--clips", "2"), 12)
    assert "block3.0.attn.attn_bn" in line


def test_non_power_of_two_leak(tmp_path):
    m = build_model("svf-tiny", neuron={"tau": 3.0})
    p = save_checkpoint(m, tmp_path / "tau3.pt")
    line = one_line_error(run("svf-compile", p, "-o", tmp_path / "o", "--clips", "2"), 13)
    assert "power of two" in line


def test_unwritable_outdir(tiny_ckpt, tmp_path):
    line = one_line_error(run("svf-compile", tiny_ckpt, "-o", "/proc/svf-out"), 7)
    assert "/proc" in line
    line = one_line_error(run("svf-compile", tiny_ckpt, "-o", tmp_path / "no" / "such" / "dir"), 7)


def test_corrupted_graph_file(tiny_ckpt, tmp_path):
    out = tmp_path / "out"
    assert run("svf-compile", tiny_ckpt, "-o", out, "--clips", "2", "--quiet").returncode == 0
    g = out / "graph.json"
    g.write_text(g.read_text()[:500])
    line = one_line_error(run("svf-verify", out), 20)  # IntegrityError: hash first
    assert "graph.json: sha256" in line


def test_bad_option_values(tiny_ckpt, tmp_path):
    one_line_error(run("svf-compile", tiny_ckpt, "-o", tmp_path / "o", "--weight-bits", "1"), 8)
    r = run("svf-compile", "--target", "vhdl-for-a-toaster", "-o", tmp_path / "t")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_published_v2_training_checkpoint_compiles(tmp_path):
    """A Spike-Driven Transformer V2 / SpikeVideoFormer training checkpoint: pickled args,
    optimizer state, no config; the architecture is inferred from the shapes."""
    import argparse

    torch.manual_seed(1)
    m = build_model("svf-tiny", num_classes=7)
    p = tmp_path / "checkpoint-best.pth"
    torch.save({"model": m.state_dict(), "optimizer": {"state": {}, "param_groups": []},
                "epoch": 199, "scaler": {"scale": 1024.0},
                "args": argparse.Namespace(time_steps=4, model="sdt_v2", lr=6e-4)}, p)
    out = tmp_path / "out"
    r = run("svf-compile", p, "-o", out, "--num-heads", "2", "--img-size", "32", "--clips", "4", "--quiet")
    assert r.returncode == 0, r.stderr
    m2 = json.loads((out / "manifest.json").read_text())
    cfg = m2["model"]["config"]
    assert cfg["name"] == "inferred" and cfg["embed_dim"] == [16, 32, 64, 64]
    assert cfg["num_classes"] == 7 and cfg["in_channels"] == 1 and cfg["T"] == 4
    assert m2["validation"]["kind"] == "synthetic" and m2["validation"]["source"].startswith("SYNTHETIC")
    assert m2["fidelity"]["float_accuracy"] is None  # no labels without a data recipe


def test_bundled_model_recompiled_for_another_T(tmp_path):
    """--T re-proves the widths for that T, and the data recipe generates clips of that
    length (the bundled model was trained at T=4)."""
    out = tmp_path / "t5"
    r = run("svf-compile", "--T", "5", "-o", out, "--clips", "4", "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "graph.json").read_text())["meta"]["T"] == 5
    m = json.loads((out / "manifest.json").read_text())
    assert "T=5 instead of the recipe's 4" in m["validation"]["source"]
    v = run("svf-verify", out)
    assert v.returncode == 0 and "(T=5)" in v.stdout


def test_recipe_clips_too_big_for_memory(tiny_ckpt, tmp_path):
    # the recipe's 40 clips of 4 x 16384 x 16384 floats (160 GiB): refused before anything is rendered
    out = tmp_path / "out"
    r = run("svf-compile", tiny_ckpt, "-o", out, "--img-size", "16384", "--quiet")
    line = one_line_error(r, 16)
    assert "40 validation clips of 4x16384x16384" in line and "--clips" in line and "--data" in line
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_out_of_memory_is_one_line_with_its_own_code(capsys):
    from svf_deploy.cli import OUT_OF_MEMORY, _run_guarded

    def boom():
        raise MemoryError("Unable to allocate 62.5 GiB")

    assert _run_guarded("svf-compile", False, boom) == OUT_OF_MEMORY == 71
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("svf-compile: error: out of memory (Unable to allocate")
    assert "--img-size" in err[0] and "--clips" in err[0]


def test_recipe_that_cannot_make_the_asked_clips(tiny_ckpt, tmp_path):
    # the recipe's 32 px frames cannot hold a digit moving for 16 steps
    out = tmp_path / "out"
    line = one_line_error(run("svf-compile", tiny_ckpt, "-o", out, "--T", "16", "--quiet"), 16)
    assert "cannot make validation clips for --T 16" in line and "--data" in line and "--img-size" in line
    assert not out.exists()
