"""The compile job behind ``svf-compile``, usable from Python.

``compile_checkpoint`` loads a checkpoint (ours or a published training checkpoint),
compiles it to the integer spike graph, runs the golden reference on validation clips,
measures fidelity and energy, and writes everything *atomically*: into a temporary
directory next to ``outdir`` that is renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__
from .models import data as mdata
from .models.checkpoint import load_checkpoint
from .models.energy import measure_energy
from .models.errors import ConfigError, GraphError, OutputError
from .compiler import reference
from .compiler.fidelity import measure_fidelity
from .compiler.pipeline import PASSES, CompileOptions, compile_model

__all__ = ["TARGETS", "BUNDLED_MODEL", "CompileJob", "compile_checkpoint", "verify_outdir"]

from . import targets as _targets

#: targets whose implementation is installed (see :mod:`svf_deploy.targets`)
TARGETS = _targets.available()
BUNDLED_MODEL = Path(mdata.__file__).resolve().parent / "pretrained" / "svf-tiny-digits.pt"


@dataclass(frozen=True)
class CompileJob:
    """Options of one ``svf-compile`` run (see ``svf-compile --help``)."""

    outdir: Path
    model: Path | None = None
    target: str = "reference"
    weight_bits: int = 8
    clips: int = 1000
    calibrate: int = 0
    allow_pickle: bool = False
    force: bool = False
    seed: int = 0
    overrides: dict = field(default_factory=dict)
    #: target options (``verify``: e.g. "rtl"; ``strict``: bool), passed to the target
    target_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"unknown target {self.target!r}; available: {', '.join(TARGETS)}")
        if not 2 <= self.weight_bits <= 16:
            raise ConfigError(f"--weight-bits must be in 2..16, got {self.weight_bits}")
        if self.clips < 1:
            raise ConfigError(f"--clips must be >= 1, got {self.clips}")
        if self.calibrate < 0:
            raise ConfigError(f"--calibrate must be >= 0, got {self.calibrate}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _prepare_outdir(outdir: Path, force: bool) -> Path:
    outdir = Path(outdir)
    if outdir.exists() and not force:
        raise OutputError(f"output directory {outdir} already exists; choose another -o or pass --force to replace it")
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"output path {outdir} exists and is not a directory")
    parent = outdir.resolve().parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {outdir}: parent directory {parent} does not exist")
    try:
        return Path(tempfile.mkdtemp(dir=parent, prefix=f".{outdir.name}.tmp-"))
    except OSError as e:
        raise OutputError(f"cannot write into {parent}: {e.strerror}; choose a writable -o") from None


def _commit(tmp: Path, outdir: Path) -> None:
    old = None
    if outdir.exists():
        old = outdir.with_name(f".{outdir.name}.old-{os.getpid()}")
        os.replace(outdir, old)
    os.replace(tmp, outdir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _validation_clips(ckpt: dict, cfg, n: int, seed: int):
    """Clips ``[N, T, C, H, W]`` and labels from the checkpoint's data recipe, or synthetic
    uniform-noise clips (no labels) when the checkpoint carries none."""
    recipe = ckpt.get("data")
    if isinstance(recipe, dict):
        dcfg = mdata.MovingDigitsConfig.from_dict(recipe)
        clips, labels = mdata.make_split(dcfg, "val")
        return clips[:n], labels[:n], f"{recipe.get('name', 'moving-digits')} validation split"
    g = torch.Generator().manual_seed(seed)
    clips = torch.rand(n, cfg.T, cfg.in_channels, cfg.img_size, cfg.img_size, generator=g)
    return clips, None, "synthetic uniform-noise clips (checkpoint has no data recipe)"


def compile_checkpoint(job: CompileJob, progress: Callable[[str, int, int], None] | None = None,
                       log: Callable[[str], None] = lambda s: None) -> dict:
    """Run the whole compile job; returns the manifest written to ``manifest.json``."""
    t0 = time.perf_counter()
    model_path = Path(job.model) if job.model is not None else BUNDLED_MODEL
    tmp = _prepare_outdir(job.outdir, job.force)
    try:
        if model_path.suffix.lower() == ".nir":  # an integer graph written by --target nir
            from .exporters.nir_model import compile_nir

            manifest = compile_nir(job, model_path, tmp, progress, log)
            _commit(tmp, Path(job.outdir))
            return manifest
        model, ckpt = load_checkpoint(model_path, allow_pickle=job.allow_pickle, **job.overrides)
        cfg = model.cfg
        log(f"loaded {model_path.name}: {cfg.name}, {sum(p.numel() for p in model.parameters()):,} parameters")
        clips, labels, clip_source = _validation_clips(ckpt, cfg, job.clips, job.seed)
        calib = None
        if job.calibrate:
            calib = clips[: job.calibrate].transpose(0, 1).contiguous()
        options = CompileOptions(weight_bits=job.weight_bits, calibration=calib)
        frame_shape = tuple(clips.shape[2:])
        n_passes = len(PASSES)
        done = iter(range(1, n_passes + 1))
        cb = (lambda rec: progress("compile", next(done), n_passes)) if progress else None
        graph, records = compile_model(model, options, frame_shape=frame_shape, progress=cb)

        golden_in = clips[:1].transpose(0, 1).contiguous()
        res = reference.run(graph, golden_in, record=True)
        np.savez_compressed(tmp / "golden.npz", frames=golden_in.numpy(),
                            **{f"out/{k}": v.numpy() for k, v in res.outputs.items()},
                            **{f"spikes/{k}": v.numpy().astype(np.uint8) for k, v in res.values.items()
                               if graph.types[k].kind == "spike"})
        cbf = (lambda done, total: progress("fidelity", done, total)) if progress else None
        fid = measure_fidelity(model, graph, clips, labels, progress=cbf)
        energy = measure_energy(model, clips[: min(32, len(clips))].transpose(0, 1).contiguous())

        graph.save(tmp)
        target_entries = _targets.build(job.target, _targets.TargetContext(
            tmpdir=tmp, graph=graph, model=model, golden_frames=golden_in, golden=res,
            options=dict(job.target_options), progress=progress, log=log))
        pass_recs = [{"name": r.name, "nodes": r.nodes_after, "stage": r.stage,
                      "seconds": r.seconds, "ops": r.ops_after} for r in records]
        manifest = {
            "svf_deploy": __version__,
            "created_unix": int(time.time()),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "numpy": np.__version__},
            "target": job.target,
            "command": " ".join(sys.argv),
            "options": {"weight_bits": job.weight_bits, "clips": job.clips,
                        "calibrate": job.calibrate, "seed": job.seed,
                        "overrides": job.overrides, "compile": options.describe()},
            "model": {"source": str(model_path), "sha256": _sha256(model_path),
                      "config": cfg.to_dict(),
                      "recorded_float_accuracy": ckpt.get("val_accuracy")},
            "validation": {"clips": int(clips.shape[0]), "source": clip_source},
            "fidelity": fid.to_dict(),
            "energy": {"snn_mJ_per_clip": energy.snn_mj, "ann_mJ_per_clip": energy.ann_mj,
                       "sops_per_clip": energy.total_sops, "layers": energy.table()},
            "passes": pass_recs,
            **target_entries,
        }
        from .report import write_report

        write_report(tmp, manifest, fid, energy, graph, pass_recs)
        manifest["seconds"] = round(time.perf_counter() - t0, 3)
        manifest["files"] = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        _commit(tmp, Path(job.outdir))
        return manifest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def verify_outdir(outdir: Path) -> int:
    """Re-run the reference on ``golden.npz``'s clip; raise GraphError on any difference.

    Returns the number of tensors compared.
    """
    from .compiler.ir import Graph

    outdir = Path(outdir)
    if not outdir.is_dir():
        raise OutputError(f"{outdir} is not a directory written by svf-compile")
    graph = Graph.load(outdir)
    try:
        with np.load(outdir / "golden.npz", allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise GraphError(f"cannot read {outdir / 'golden.npz'}: {e}") from None
    if "frames" not in stored:
        raise GraphError("golden.npz lacks the recorded input clip 'frames'")
    res = reference.run(graph, torch.from_numpy(stored["frames"]), record=True)
    n = 0
    for key, want in stored.items():
        kind, _, name = key.partition("/")
        if kind == "out":
            got = res.outputs.get(name)
        elif kind == "spikes":
            got = res.values.get(name)
        else:
            continue
        if got is None:
            raise GraphError(f"golden.npz names {name!r}, which the graph does not produce")
        if not np.array_equal(got.numpy().astype(want.dtype), want):
            raise GraphError(f"{key} differs from the recorded golden values")
        n += 1
    return n
