"""svf-verify against tampering: every change to a compiled OUTDIR must fail, with the exit
code of its kind (20: corrupt/tampered file, 21: values differ), and say where."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from svf_deploy.api import CompileJob, _spike_dtype, compile_checkpoint
from svf_deploy.cli import verify_main
from svf_deploy.models.errors import IntegrityError, VerifyMismatchError

BIN = Path(sys.executable).parent
TAMPERED, DIFFER = IntegrityError.exit_code, VerifyMismatchError.exit_code


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "out"
    compile_checkpoint(CompileJob(outdir=out, clips=4))  # the bundled trained model: it spikes
    with np.load(out / "golden.npz") as z:
        assert all(z[k].any() for k in z.files if k.startswith("spikes/"))  # a test that can fail
    return out


@pytest.fixture
def outdir(compiled, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(compiled, dst)
    return dst


def rehash(out: Path) -> None:
    """What a careful tamperer does: recompute every manifest hash."""
    m = json.loads((out / "manifest.json").read_text())
    m["files"] = {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in m["files"]}
    (out / "manifest.json").write_text(json.dumps(m))


def edit_npz(path: Path, fn) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays = fn(arrays)
    np.savez_compressed(path, **arrays)


def edit_graph(out: Path, fn) -> None:
    doc = json.loads((out / "graph.json").read_text())
    fn(doc)
    (out / "graph.json").write_text(json.dumps(doc))


def first(doc, op):
    return next(n for n in doc["nodes"] if n["op"] == op)


def verify(out, capsys):
    code = verify_main([str(out)])
    return code, capsys.readouterr().err.strip()


def test_untouched_outdir_verifies_from_the_command_line(compiled):
    r = subprocess.run([str(BIN / "svf-verify"), str(compiled), "--json"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["verified"] and s["T"] == 4 and s["files"] >= 6 and s["widths_checked"] > 30
    assert s["tensors"] == 1 + 35  # the output and every spike tensor (35 IntLIF nodes)
    assert s["values"] > 10_000


def test_threshold_plus_one_is_caught_by_its_hash(outdir, capsys):
    def bump(a):
        key = next(k for k in a if k.endswith("/theta"))
        a[key] = a[key] + 1
        return a
    edit_npz(outdir / "weights.npz", bump)
    code, err = verify(outdir, capsys)
    assert code == TAMPERED and "weights.npz: sha256" in err and "changed after svf-compile" in err


def test_threshold_change_with_rehash_is_caught_by_the_values(outdir, capsys):
    def lower(a):  # the first neuron fires at the lowest membrane: values must change
        key = next(k for k in a if k.endswith("/theta"))
        a[key] = np.ones_like(a[key])
        return a
    edit_npz(outdir / "weights.npz", lower)
    rehash(outdir)
    code, err = verify(outdir, capsys)
    assert code == DIFFER and "stored values differ; first: spikes/" in err, err


def test_head_weight_plus_50_is_caught_with_or_without_rehash(outdir, capsys):
    edit_npz(outdir / "weights.npz", lambda a: {**a, "head/weight": a["head/weight"] + 50})
    code, err = verify(outdir, capsys)
    assert code == TAMPERED and "weights.npz: sha256" in err
    rehash(outdir)  # matching hashes: the re-computed outputs tell
    code, err = verify(outdir, capsys)
    assert code == DIFFER and "10 of " in err and "first: out/time_mean[0, 0] = " in err, err


def test_weight_sign_flip_with_rehash_differs_in_the_spikes(outdir, capsys):
    def flip(a):  # same |W|, so the same proved widths: only the values can tell
        key = "downsample1_1.encode_conv/weight"
        w = a[key].copy()
        w[0] *= -1
        return {**a, key: w}
    edit_npz(outdir / "weights.npz", flip)
    rehash(outdir)
    code, err = verify(outdir, capsys)
    assert code == DIFFER and "stored values differ; first: spikes/" in err, err


def test_widths_set_to_63_are_checked_against_the_proof(outdir, capsys):
    def wide(doc):
        for n in doc["nodes"]:
            for f in ("acc_bits", "mem_bits"):
                if f in n["attrs"]:
                    n["attrs"][f] = 63
    edit_graph(outdir, wide)
    rehash(outdir)
    code, err = verify(outdir, capsys)
    assert code == TAMPERED and "=63 differs from the" in err and "proved for T=4" in err, err


def test_fraction_bits_below_the_exactness_bound_are_caught(outdir, capsys):
    def low(doc):
        n = first(doc, "IntLIF")
        n["attrs"]["frac_bits"] = 1
    edit_graph(outdir, low)
    rehash(outdir)
    code, err = verify(outdir, capsys)
    assert code == TAMPERED and "frac_bits=1 is below min(T*k, 20) = 4" in err, err


def test_meta_edit_is_caught(outdir, capsys):
    edit_graph(outdir, lambda doc: doc["meta"].update(T=8))
    code, err = verify(outdir, capsys)
    assert code == TAMPERED and "graph.json: sha256" in err
    rehash(outdir)  # even with matching hashes: F and the widths were proved for T=4
    code, err = verify(outdir, capsys)
    assert code == TAMPERED and "the exactness bound for T=8" in err, err


def test_golden_cut_down_to_frames_is_refused(outdir, capsys):
    edit_npz(outdir / "golden.npz", lambda a: {"frames": a["frames"]})
    rehash(outdir)
    code, err = verify(outdir, capsys)
    assert code == TAMPERED and "golden.npz is incomplete: it lacks 36 of 37" in err, err


def test_golden_spike_flip_is_located(outdir, capsys):
    def flip(a):
        key = "spikes/block3.0.attn.q_lif"
        s = a[key].copy()
        s.flat[5] = 1 - s.flat[5]  # [t=0, b=0, c=1, y=0, x=1]
        return {**a, key: s}
    edit_npz(outdir / "golden.npz", flip)
    rehash(outdir)
    code, err = verify(outdir, capsys)
    assert code == DIFFER and "1 of " in err and "first: spikes/block3.0.attn.q_lif[0, 0, 1, 0, 1] = " in err, err


def test_zeroed_hash_replaced_report_and_extra_files_are_caught(outdir, capsys):
    m = json.loads((outdir / "manifest.json").read_text())
    m["files"]["golden.npz"] = "0" * 64
    (outdir / "manifest.json").write_text(json.dumps(m))
    code, err = verify(outdir, capsys)
    assert code == TAMPERED and "golden.npz: sha256" in err
    rehash(outdir)
    (outdir / "report.md").write_text("# a better report\n")
    code, err = verify(outdir, capsys)
    assert code == TAMPERED and "report.md: sha256" in err
    rehash(outdir)
    (outdir / "extra.bin").write_bytes(b"x")
    code, err = verify(outdir, capsys)
    assert code == TAMPERED and "extra.bin" in err and "not listed" in err
    (outdir / "extra.bin").unlink()
    (outdir / "manifest.json").unlink()
    code, err = verify(outdir, capsys)
    assert code == TAMPERED and "manifest.json is missing" in err


def test_golden_spikes_hold_ilif_levels():
    assert _spike_dtype(1) == np.uint8 and _spike_dtype(255) == np.uint8
    assert _spike_dtype(300) == np.uint16 and _spike_dtype(70000) == np.uint32


def test_segmentation_model_compiles_and_verifies_from_the_command_line(tmp_path):
    """The segmentation head (I-LIF levels, memory read, FPN) end to end: svf-compile, then
    svf-verify re-runs the golden record, whose I-LIF spike counts keep their levels."""
    import torch

    from svf_deploy.models import build_model
    from svf_deploy.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ck = save_checkpoint(build_model("svf-tiny-seg"), tmp_path / "seg.pt")
    out = tmp_path / "out"
    r = subprocess.run([str(BIN / "svf-compile"), str(ck), "-o", str(out), "--clips", "2", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["T"] == 4 and "memory.attn_lif" in s["inexact_neurons"]  # attn_bn's bias, stated
    g = json.loads((out / "graph.json").read_text())
    assert g["outputs"] == ["fpn.cls"] and g["meta"]["T"] == 4
    with np.load(out / "golden.npz") as z:
        assert z["spikes/fpn.cls_lif"].dtype == np.uint8 and z["out/fpn.cls"].shape == (1, 1, 5, 8, 8)
    assert verify_main([str(out)]) == 0


def test_outdir_permissions_follow_the_umask_and_report_states_exactness(compiled):
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert compiled.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    md = (compiled / "report.md").read_text()
    assert "## Exactness and precision warnings" in md and "T = 4" in md
    m = json.loads((compiled / "manifest.json").read_text())
    assert m["T"] == 4 and m["precision_warnings"] == []  # the first layer's is stale: dropped
    assert m["exactness"]["inexact_neurons"] == ["block3.0.attn.attn_lif", "block4.0.attn.attn_lif"]
    assert "inexact neuron | block3.0.attn.attn_lif" in md
