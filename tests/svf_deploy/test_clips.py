"""--data: video folders written here with PyAV, .npz/.pt clip files, and every bad-data error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from svf_deploy.api import CompileJob, compile_checkpoint
from svf_deploy.clips import load_clips, sample_indices, synthetic_clips
from svf_deploy.models import build_model
from svf_deploy.models.checkpoint import save_checkpoint
from svf_deploy.models.errors import DataError

BIN = Path(sys.executable).parent


def write_video(path: Path, frames: np.ndarray, codec: str = "mpeg4") -> Path:
    """``frames`` ``[n, h, w, 3]`` uint8 -> a video file (PyAV / FFmpeg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def ramp(n: int, h: int = 40, w: int = 48, step: int = 20, base: int = 0) -> np.ndarray:
    """Flat grey frames whose level rises ``step`` per frame: frame ``i`` is ``base + step i``."""
    return np.stack([np.full((h, w, 3), base + step * i, np.uint8) for i in range(n)])


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("videos")
    write_video(d / "0" / "a.mp4", ramp(10))
    write_video(d / "1" / "b.avi", ramp(12, base=30, step=15))
    write_video(d / "1" / "c.mkv", ramp(9, step=25), codec="libx264")
    return d


def test_sample_indices_are_segment_centres():
    assert sample_indices(8, 4).tolist() == [1, 3, 5, 7]
    assert sample_indices(4, 4).tolist() == [0, 1, 2, 3]
    for n in range(4, 40):
        idx = sample_indices(n, 4)
        assert idx.min() >= 0 and idx.max() < n and np.all(np.diff(idx) > 0)


def test_video_folder_decoded_sampled_resized_labelled(videos):
    cs = load_clips(videos, T=4, shape=(3, 32, 32), num_classes=2)
    assert len(cs) == 3 and cs.shape == (3, 4, 3, 32, 32) and cs.kind == "data"
    assert cs.labels.tolist() == [0, 1, 1]  # sorted: 0/a.mp4, 1/b.avi, 1/c.mkv
    x = cs[0:3]
    assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # a.mp4: 10 frames, level 20 i; frames 1, 3, 6, 8 are sampled -> 20, 60, 120, 160 (lossy codec)
    levels = (x[0].mean(dim=(1, 2, 3)) * 255).tolist()
    want = [20.0 * i for i in sample_indices(10, 4)]
    assert np.allclose(levels, want, atol=4), (levels, want)
    gray = load_clips(videos, T=4, shape=(1, 16, 16), num_classes=2)
    assert gray.shape == (3, 4, 1, 16, 16)
    assert torch.allclose(gray[0].mean(dim=(1, 2, 3)), x[0].mean(dim=(1, 2, 3)), atol=3 / 255)


def test_labels_csv(tmp_path):
    write_video(tmp_path / "x.mp4", ramp(5))
    write_video(tmp_path / "y.mp4", ramp(5))
    (tmp_path / "labels.csv").write_text("x.mp4,3\ny.mp4,1\n")
    assert load_clips(tmp_path, 4, (3, 16, 16), num_classes=5).labels.tolist() == [3, 1]
    (tmp_path / "labels.csv").write_text("x.mp4,3\n")
    with pytest.raises(DataError, match=r"labels.csv: no label for y.mp4"):
        load_clips(tmp_path, 4, (3, 16, 16), num_classes=5)
    (tmp_path / "labels.csv").write_text("x.mp4,3\ny.mp4,9\n")
    with pytest.raises(DataError, match="5 classes"):
        load_clips(tmp_path, 4, (3, 16, 16), num_classes=5)


def test_bad_videos_are_named(tmp_path):
    write_video(tmp_path / "ok.mp4", ramp(6))
    short = write_video(tmp_path / "short.mp4", ramp(3))
    with pytest.raises(DataError, match=r"short\.mp4: video has 3 frames, the model needs T=4"):
        load_clips(tmp_path, 4, (3, 16, 16))
    short.unlink()
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"broken\.mp4: cannot decode video"):
        load_clips(tmp_path, 4, (3, 16, 16))
    with pytest.raises(DataError, match="no such file"):
        load_clips(tmp_path / "nope", 4, (3, 16, 16))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no video files"):
        load_clips(empty, 4, (3, 16, 16))


def test_npz_and_pt_clip_files(tmp_path):
    g = np.random.default_rng(0)
    u8 = g.integers(0, 256, (5, 6, 1, 32, 32), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", clips=u8, labels=np.arange(5) % 3)
    cs = load_clips(tmp_path / "c.npz", T=4, shape=(1, 32, 32), num_classes=3)
    assert cs.shape == (5, 4, 1, 32, 32) and cs.labels.tolist() == [0, 1, 2, 0, 1]
    idx = sample_indices(6, 4)
    assert torch.equal(cs[2], torch.from_numpy(u8[2, idx]).float() / 255)  # same size: exact codes
    f = torch.rand(3, 4, 1, 32, 32, dtype=torch.float64) / 2
    torch.save({"clips": f, "labels": torch.tensor([1, 0, 1])}, tmp_path / "c.pt")
    cs = load_clips(tmp_path / "c.pt", T=4, shape=(1, 32, 32), num_classes=2)
    assert torch.equal(cs[0:3], f.float())  # floats are kept, not re-quantised
    resized = load_clips(tmp_path / "c.pt", T=4, shape=(1, 16, 16))
    assert resized.shape == (3, 4, 1, 16, 16) and "resized to 16x16" in resized.source


@pytest.mark.parametrize("clips,labels,msg", [
    (np.zeros((3, 4, 1, 16, 16), np.uint8), np.array([0, 1]), r"\(2,\) labels for 3 clips"),
    (np.zeros((3, 2, 1, 16, 16), np.uint8), None, "clips have 2 frames, the model needs T=4"),
    (np.full((3, 4, 1, 16, 16), 1.5, np.float32), None, r"span \[1.5, 1.5\], expected raw frames in \[0, 1\]"),
    (np.zeros((3, 4, 3, 16, 16), np.uint8), None, "clips have 3 channels, the model takes 1"),
    (np.zeros((3, 4, 1, 16, 16), np.uint8), np.array([0.5, 1, 0]), "labels must be integer"),
])
def test_bad_clip_files_are_named(tmp_path, clips, labels, msg):
    p = tmp_path / "bad.npz"
    np.savez(p, clips=clips, **({} if labels is None else {"labels": labels}))
    with pytest.raises(DataError, match=msg) as e:
        load_clips(p, 4, (1, 16, 16), num_classes=2)
    assert str(p) in str(e.value)


def test_synthetic_clips_are_lazy_deterministic_and_labelled_as_such():
    cs = synthetic_clips(8, 4, (3, 224, 224), seed=1)
    assert cs.kind == "synthetic" and cs.labels is None and cs.source.startswith("SYNTHETIC")
    assert torch.equal(cs[3], synthetic_clips(8, 4, (3, 224, 224), seed=1)[3])
    assert not torch.equal(cs[3], cs[4])


def test_video_folder_compiles_with_accuracy(videos, tmp_path):
    torch.manual_seed(0)
    m = build_model("svf-tiny", in_channels=3, num_classes=2, input_mean=(0.485, 0.456, 0.406),
                    input_std=(0.229, 0.224, 0.225))
    ck = save_checkpoint(m, tmp_path / "m.pt")
    warnings = []
    man = compile_checkpoint(CompileJob(outdir=tmp_path / "out", model=ck, data=videos),
                             warn=warnings.append)
    v = man["validation"]
    assert v["kind"] == "data" and v["clips"] == 3 and v["labelled"] and "3 videos" in v["source"]
    f = man["fidelity"]
    assert f["n_clips"] == 3 and f["float_accuracy"] is not None and f["int_accuracy"] is not None
    assert man["model"]["input_normalization"] == "imagenet"
    assert not [w for w in warnings if "ASSUMED" in w or "SYNTHETIC" in w or "clamped" in w], warnings
    assert v["input_range"]["clamped_pixels"] == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "3 videos from" in md and "imagenet" in md


def test_cli_bad_data_one_line_nothing_written(tmp_path):
    torch.manual_seed(0)
    ck = save_checkpoint(build_model("svf-tiny"), tmp_path / "m.pt")
    np.savez(tmp_path / "bad.npz", clips=np.zeros((2, 4, 1, 32, 32), np.uint8), labels=np.array([1]))
    r = subprocess.run([str(BIN / "svf-compile"), str(ck), "-o", str(tmp_path / "o"), "--data",
                        str(tmp_path / "bad.npz"), "--quiet"], capture_output=True, text=True, timeout=300)
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert r.returncode == DataError.exit_code and len(errors) == 1, r.stderr
    assert "bad.npz" in errors[0] and "labels for 2 clips" in errors[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()
    assert not any(p.name.startswith(".o.tmp") for p in tmp_path.iterdir())


def test_cli_announces_assumptions_and_synthetic_clips(tmp_path):
    """A published dot-product checkpoint without att_mode: the CLI says what it assumed
    (stderr) and the manifest and report record it; --attention is passed to the loader."""
    import argparse

    torch.manual_seed(0)
    m = build_model("svf-tiny", attention="2D", in_channels=3, num_classes=4)
    p = tmp_path / "ck.pth"
    torch.save({"model": m.state_dict(), "args": argparse.Namespace(time_steps=4)}, p)
    base = [str(BIN / "svf-compile"), str(p), "--num-heads", "2", "--img-size", "32", "--clips", "2", "--quiet"]
    r = subprocess.run(base + ["-o", str(tmp_path / "a")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    warn = [line for line in r.stderr.splitlines() if line.startswith("svf-compile: warning:")]
    assert any("ASSUMED 2D" in w for w in warn) and any("ASSUMED imagenet" in w for w in warn)
    assert any("SYNTHETIC: 2 uniform-noise clips" in w for w in warn)
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert man["model"]["attention"] == "2D" and any("ASSUMED 2D" in w for w in man["warnings"])
    assert "ASSUMED 2D" in (tmp_path / "a" / "report.md").read_text()
    # --attention reaches the loader (resolution itself: tests/models/test_published_parity.py)
    r = subprocess.run(base + ["-o", str(tmp_path / "b"), "--attention", "3D_xyz"],
                       capture_output=True, text=True, timeout=300)
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert r.returncode == 8 and len(errors) == 1 and "3D_dot" in errors[0], r.stderr
    assert not (tmp_path / "b").exists()


def test_out_of_range_input_codes_are_counted_not_silent():
    """Pixels beyond the Input node's codes would be clamped: the compile job counts them
    (manifest ``validation.input_range``) and warns; here codes of 1/510 cover [0, 0.5]."""
    from svf_deploy.api import _input_range
    from svf_deploy.clips import tensor_clips

    x = torch.zeros(3, 4, 1, 16, 16)
    x[1, 0, 0, 0, :5] = 0.9  # 5 pixels of clip 1 beyond 255/510
    x[2, 3, 0, 2, 2] = 0.5  # exactly the top code: fine
    r = _input_range(tensor_clips(x, None, "data", "t"), 1 / 510, 8)
    assert (r["clamped_pixels"], r["clamped_clips"], r["pixels"]) == (5, 1, x.numel())
    assert _input_range(tensor_clips(x, None, "data", "t"), 1 / 255, 8)["clamped_pixels"] == 0
