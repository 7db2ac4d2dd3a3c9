"""The compile job behind ``svf-compile``, usable from Python.

``compile_checkpoint`` loads a checkpoint (ours or a published training checkpoint),
compiles it to the integer spike graph, runs the golden reference on validation clips,
measures fidelity and energy, and writes everything *atomically*: into a temporary
directory next to ``outdir`` that is renamed into place only when complete.
"""

from __future__ import annotations

import dataclasses
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
from .models.attention import published_att_mode
from .models.checkpoint import ASSUMPTIONS_KEY, load_checkpoint
from .models.energy import EnergyMeter
from .models.errors import ConfigError, DataError, GraphError, OutputError
from .compiler import reference
from .compiler.fidelity import default_batch, measure_fidelity
from . import clips as clipsrc
from .compiler.pipeline import PASSES, CompileOptions, check_weight_bits, compile_model
from .compiler.passes.absorb_thresholds import MAX_LEAK_BITS

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
    #: ``--factor-depthwise``: "never" (fused SepConvs) or "auto" (see CompileOptions)
    factor_depthwise: str = "never"
    #: validation clips; None: all of --data, 1000 of a data recipe, else
    #: ``clips.SYNTHETIC_DEFAULT`` synthetic ones
    clips: int | None = None
    #: ``--data``: a folder of videos, an .npz or a .pt of clips (see :mod:`svf_deploy.clips`)
    data: Path | None = None
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
        check_weight_bits(self.weight_bits)  # the one range check (compiler.passes.quantize)
        if self.clips is not None and self.clips < 1:
            raise ConfigError(f"--clips must be >= 1, got {self.clips}")
        if self.calibrate < 0:
            raise ConfigError(f"--calibrate must be >= 0, got {self.calibrate}")


def _spike_dtype(levels: int) -> np.dtype:
    """The narrowest unsigned dtype holding spikes ``0..levels`` (I-LIF levels may pass 255)."""
    return np.min_scalar_type(int(levels))


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
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{outdir.name}.tmp-"))
    except OSError as e:
        raise OutputError(f"cannot write into {parent}: {e.strerror}; choose a writable -o") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would outlive the rename: follow the umask
    return tmp


def _commit(tmp: Path, outdir: Path) -> None:
    old = None
    if outdir.exists():
        old = outdir.with_name(f".{outdir.name}.old-{os.getpid()}")
        os.replace(outdir, old)
    os.replace(tmp, outdir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _available_memory() -> int | None:
    """Bytes the kernel reports available (``MemAvailable`` of /proc/meminfo), or None
    where that is not known (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _validation_clips(job: "CompileJob", ckpt: dict, cfg) -> clipsrc.ClipSet:
    """The validation clips: ``--data``, else the checkpoint's data recipe (its validation
    split), else a few synthetic uniform-noise clips (no labels), generated one at a time."""
    shape = (cfg.in_channels, cfg.img_size, cfg.img_size)
    if job.data is not None:
        return clipsrc.load_clips(job.data, cfg.T, shape, cfg.num_classes if cfg.head == "classification"
                                  else None, limit=job.clips)
    recipe = ckpt.get("data")
    if isinstance(recipe, dict):
        dcfg = mdata.MovingDigitsConfig.from_dict(recipe)
        # --T / --img-size: the recipe generates clips of the length and size asked for
        changed = {k: v for k, v in (("T", cfg.T), ("frame_size", cfg.img_size)) if getattr(dcfg, k) != v}
        if changed:
            try:
                dcfg = dataclasses.replace(dcfg, **changed)
            except ConfigError as e:  # e.g. T=16 moves the digit out of a 32px frame
                asked = ", ".join(f"--{'img-size' if k == 'frame_size' else k} {v}" for k, v in changed.items())
                raise DataError(f"the checkpoint's data recipe cannot make validation clips for {asked} ({e}); "
                                "pass your own clips with --data, or a larger --img-size the recipe allows") from None
        n = job.clips or 1000
        need, avail = mdata.split_bytes(dcfg, "val", n), _available_memory()
        if avail is not None and need > avail // 2:
            k = mdata.split_size(dcfg, "val", n)
            raise DataError(
                f"the checkpoint's data recipe would render {k} validation clips of "
                f"{dcfg.T}x{dcfg.frame_size}x{dcfg.frame_size} ({need / 2**30:.1f} GiB), more than half of "
                f"the {avail / 2**30:.1f} GiB this machine has available; pass fewer clips (--clips "
                f"{max(1, k * (avail // 2) // need)}) or your own with --data")
        clips, labels = mdata.make_split(dcfg, "val", n)
        note = "".join(f", {k}={v} instead of the recipe's {recipe.get(k)}" for k, v in changed.items())
        return clipsrc.tensor_clips(clips, labels, "recipe",
                                    f"{recipe.get('name', 'moving-digits')} validation split "
                                    f"(checkpoint's data recipe{note})")
    return clipsrc.synthetic_clips(job.clips or clipsrc.SYNTHETIC_DEFAULT, cfg.T, shape, job.seed)


def _input_range(clips: clipsrc.ClipSet, scale: float, bits: int) -> dict:
    """Count pixels whose input code ``round(x / scale)`` leaves ``0..2**bits - 1`` (the
    Input node clamps them): reported, never silent."""
    top = 2 ** bits - 1
    bad = total = bad_clips = 0
    step = default_batch(tuple(clips.shape[1:]))
    for a in range(0, len(clips), step):
        x = clips[a:a + step].double() / scale
        out = (x < -0.5) | (x >= top + 0.5)
        bad += int(out.sum())
        bad_clips += int(out.flatten(1).any(1).sum())
        total += x.numel()
    return {"input_scale": scale, "code_range": [0, top], "clamped_pixels": bad,
            "clamped_clips": bad_clips, "pixels": total}


def compile_checkpoint(job: CompileJob, progress: Callable[[str, int, int], None] | None = None,
                       log: Callable[[str], None] = lambda s: None,
                       warn: Callable[[str], None] | None = None) -> dict:
    """Run the whole compile job; returns the manifest written to ``manifest.json``.

    ``warn`` receives every assumption and warning (assumed attention mode or input
    normalisation, synthetic clips, clamped input codes), one line each (default: ``log``);
    they are also recorded in the manifest (``warnings``) and the report.
    """
    warn = warn or log
    warnings_: list[str] = []

    def warning(msg: str) -> None:
        warnings_.append(msg)
        warn(msg)

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
        for note in ckpt.get(ASSUMPTIONS_KEY, []):
            warning(note)
        clips = _validation_clips(job, ckpt, cfg)
        labels, clip_source = clips.labels, clips.source
        if clips.kind == "synthetic":
            warning(clip_source)
        else:
            log(f"validation data: {clip_source}")
        calib = None
        if job.calibrate:
            calib = clips[: job.calibrate].transpose(0, 1).contiguous()
        options = CompileOptions(weight_bits=job.weight_bits, calibration=calib,
                                 factor_depthwise=job.factor_depthwise)
        frame_shape = tuple(clips.shape[2:])
        n_passes = len(PASSES)
        done = iter(range(1, n_passes + 1))
        cb = (lambda rec: progress("compile", next(done), n_passes)) if progress else None
        graph, records = compile_model(model, options, frame_shape=frame_shape, progress=cb)
        for msg in graph.meta.get("precision_warnings", []):
            warning(f"precision: {msg}")
        inexact = graph.meta.get("exactness", {}).get("inexact_neurons", [])
        if inexact:
            warning(f"exactness: {len(inexact)} neuron(s) round a bias or threshold that is not a "
                    f"dyadic multiple of its input unit ({', '.join(inexact[:3])}"
                    f"{', ...' if len(inexact) > 3 else ''}); see the report")

        in_node = graph.input
        in_range = _input_range(clips, float(in_node.scale), int(in_node.bits))
        if in_range["clamped_pixels"]:
            warning(f"{in_range['clamped_pixels']} input pixels in {in_range['clamped_clips']} clips lie outside "
                    f"the input codes 0..{in_range['code_range'][1]} (scale {in_node.scale:.6g}) and are "
                    "clamped by the Input node; calibrate on more clips (--calibrate) or check the data range")
        golden_in = clips[:1].transpose(0, 1).contiguous()
        # Fidelity's first batch starts with the golden clip: its float forward is also the
        # energy count, its reference run also the golden record (spikes only, narrowed as
        # they are computed: record=True would hold every int64 accumulator and membrane).
        golden_spikes: dict[str, torch.Tensor] = {}
        golden_out: dict[str, torch.Tensor] = {}

        def keep_golden(name, value, outputs) -> None:
            if outputs is not None:
                golden_out.update({k: (v[:1] if graph.node(k).op == "TimeMean" else v[:, :1]).clone()
                                   for k, v in outputs.items()})
                return
            t = graph.types[name]
            if t.kind == "spike":
                golden_spikes[name] = torch.from_numpy(value[:, :1].numpy().astype(_spike_dtype(t.levels)))

        n_energy = min(default_batch(tuple(clips.shape[1:])), len(clips))  # the first batch
        meter = EnergyMeter(model)
        cbf = (lambda done, total: progress("fidelity", done, total)) if progress else None
        fid = measure_fidelity(model, graph, clips, labels, batch=n_energy, progress=cbf,
                               first_forward=lambda: meter, first_observe=keep_golden)
        energy = meter.report(n_energy)
        res = reference.Result(outputs=golden_out, values=golden_spikes)
        np.savez_compressed(tmp / "golden.npz", frames=golden_in.numpy(),
                            **{f"out/{k}": v.numpy() for k, v in res.outputs.items()},
                            **{f"spikes/{k}": v.numpy() for k, v in res.values.items()})

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
                        "data": None if job.data is None else str(job.data),
                        "calibrate": job.calibrate, "seed": job.seed,
                        "overrides": job.overrides, "compile": options.describe()},
            "model": {"source": str(model_path), "sha256": _sha256(model_path),
                      "config": cfg.to_dict(),
                      "attention": (published_att_mode(cfg.attention) or cfg.attention) + (
                          "" if cfg.attn_threshold is None else f" (attn_lif threshold {cfg.attn_threshold:g}, "
                          "not the published one)"),
                      "input_normalization": cfg.normalization, "kd_head_folded": bool(cfg.kd),
                      "recorded_float_accuracy": ckpt.get("val_accuracy")},
            "validation": {**clips.describe(), "clips": len(clips), "input_range": in_range,
                           "energy_clips": n_energy},
            "warnings": warnings_,
            "fidelity": fid.to_dict(),
            "energy": {"snn_mJ_per_clip": energy.snn_mj, "ann_mJ_per_clip": energy.ann_mj,
                       "sops_per_clip": energy.total_sops, "layers": energy.table()},
            "passes": pass_recs,
            "T": int(graph.meta["T"]),
            "precision_warnings": list(graph.meta.get("precision_warnings", [])),
            "exactness": graph.meta.get("exactness", {}),
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


def _first_difference(got: np.ndarray, want: np.ndarray) -> tuple[int, tuple, object, object]:
    """``(count, index, got, want)`` of the values that differ (count 0: none)."""
    diff = got != want
    n = int(diff.sum())
    if not n:
        return 0, (), None, None
    idx = tuple(int(i) for i in np.argwhere(diff)[0])
    return n, idx, got[idx].item(), want[idx].item()


def frac_bits_ok(graph, n, T: int, proof: dict) -> bool:
    """Whether IntLIF ``n`` keeps the exactness bound ``frac_bits >= min(T k, MAX_LEAK_BITS)``,
    or sits below it only where the compiler had to cap it (``absorb_thresholds``): listed in
    ``meta["inexact_neurons"]`` with a membrane proved (``proof``, :func:`reference.register_bounds`)
    within one bit of the 48-bit registers, so one more fraction bit would not fit."""
    from .compiler.passes.bitwidths import MAX_BITS, signed_bits

    if n.frac_bits >= min(T * n.leak_shift, MAX_LEAK_BITS):
        return True
    capped = {d["node"] for d in graph.meta.get("inexact_neurons", [])}
    return n.name in capped and signed_bits(proof[n.name]) >= MAX_BITS - 1


def verify_outdir(outdir: Path) -> dict:
    """Check a compiled OUTDIR bit for bit; returns a summary dict.

    In order: (1) every file the manifest lists has its recorded sha256, none is missing
    and no unlisted file sits beside them; (2) the graph loads, every neuron keeps the
    exactness bound ``frac_bits >= min(T k, MAX_LEAK_BITS)`` (or is listed inexact with a membrane
    proved within a bit of the 48-bit registers, where the compiler had to cap it) and every declared width (``acc_bits`` /
    ``mem_bits``) equals the one proved from the graph's own bounds for its ``meta["T"]``; (3) ``golden.npz`` holds the clip and *every* graph output and spike
    tensor (an empty or cut-down record is refused); (4) the golden reference, re-run on
    the stored clip, reproduces every stored value.

    Raises
    ------
    OutputError
        ``outdir`` is not a directory.
    IntegrityError
        (1)-(3) fail: a corrupt or tampered file (exit code 20).
    VerifyMismatchError
        (4) fails: the message says how many values differ and where the first is (21).
    """
    from .compiler import ir
    from .compiler.ir import Graph
    from .compiler.passes.bitwidths import ACC_OPS, MEM_OPS, signed_bits
    from .models.errors import IntegrityError, VerifyMismatchError

    outdir = Path(outdir)
    if not outdir.is_dir():
        raise OutputError(f"{outdir} is not a directory written by svf-compile")
    try:
        manifest = json.loads((outdir / "manifest.json").read_text())
        files = manifest["files"]
        if not isinstance(files, dict) or not files:
            raise KeyError("files")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"{outdir / 'manifest.json'} is missing or unreadable ({type(e).__name__}); "
                             "re-run svf-compile") from None
    for name, digest in files.items():
        p = outdir / name
        if Path(name).name != name or not p.is_file():
            raise IntegrityError(f"{name}, listed in the manifest, is missing from {outdir}")
        got = _sha256(p)
        if got != digest:
            raise IntegrityError(f"{name}: sha256 {got[:16]}... differs from the manifest's "
                                 f"{str(digest)[:16]}...; the file changed after svf-compile")
    extra = sorted(p.name for p in outdir.iterdir()
                   if p.is_file() and p.name != "manifest.json" and p.name not in files)
    if extra:
        raise IntegrityError(f"{extra[0]} in {outdir} is not listed in the manifest")

    graph = Graph.load(outdir)
    T = graph.meta.get("T")
    if not isinstance(T, int) or T < 1:
        raise IntegrityError("graph.json's meta records no clip length T its widths were proved for")
    proof = reference.register_bounds(graph, T)
    for n in graph.nodes:
        if isinstance(n, ir.IntLIF) and not frac_bits_ok(graph, n, T, proof):
            raise IntegrityError(f"IntLIF {n.name!r}: frac_bits={n.frac_bits} is below min(T*k, "
                                 f"{MAX_LEAK_BITS}) = {min(T * n.leak_shift, MAX_LEAK_BITS)}, the "
                                 f"exactness bound for T={T}")
        if isinstance(n, ACC_OPS + MEM_OPS):
            field_ = "acc_bits" if isinstance(n, ACC_OPS) else "mem_bits"
            want = signed_bits(proof[n.name])
            if getattr(n, field_) != want:
                raise IntegrityError(f"{n.op} {n.name!r}: {field_}={getattr(n, field_)} differs from "
                                     f"the {want} bits proved for T={T}")
    try:
        with np.load(outdir / "golden.npz", allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise IntegrityError(f"cannot read {outdir / 'golden.npz'}: {e}") from None
    need = {f"out/{o}" for o in graph.outputs} | {
        f"spikes/{n.name}" for n in graph.nodes if graph.types[n.name].kind == "spike"}
    missing = sorted(need - set(stored))
    if "frames" not in stored or missing:
        raise IntegrityError(f"golden.npz is incomplete: it lacks {len(missing) + ('frames' not in stored)} "
                             f"of {len(need) + 1} recorded tensors (first: "
                             f"{'frames' if 'frames' not in stored else missing[0]}); re-run svf-compile")
    unknown = sorted(set(stored) - need - {"frames"})
    if unknown:
        raise IntegrityError(f"golden.npz holds {unknown[0]!r}, which the graph does not produce")
    frames = stored["frames"]
    if frames.ndim != 5 or frames.shape[0] != T:
        raise IntegrityError(f"golden.npz's clip has shape {frames.shape}; the graph was proved for "
                             f"T={T} steps")
    res = reference.run(graph, torch.from_numpy(frames), record=True)
    n_diff = n_values = 0
    first = None
    order = [f"spikes/{n.name}" for n in graph.nodes if f"spikes/{n.name}" in need]
    for key in order + [f"out/{o}" for o in graph.outputs]:  # graph order: the first is the source
        kind, _, name = key.partition("/")
        want = stored[key]
        if kind == "out":
            got = res.outputs[name].numpy()
        else:
            levels = graph.types[name].levels
            if not np.can_cast(_spike_dtype(levels), want.dtype):
                raise IntegrityError(f"golden.npz stores {key} as {want.dtype}, which cannot hold "
                                     f"spike levels 0..{levels}")
            got, want = res.values[name].numpy(), want.astype(np.int64)
        if got.shape != want.shape:
            raise IntegrityError(f"golden.npz's {key} has shape {want.shape}, the graph produces {got.shape}")
        n, idx, g, w = _first_difference(got, want)
        n_values += want.size
        if n:
            n_diff += n
            first = first or (key, idx, g, w)
    if n_diff:
        key, idx, g, w = first
        raise VerifyMismatchError(f"{n_diff} of {n_values} stored values differ; first: {key}"
                                  f"[{', '.join(map(str, idx))}] = {g!r}, stored {w!r}")
    return {"outdir": str(outdir), "files": len(files), "tensors": len(need), "values": n_values,
            "T": T, "widths_checked": sum(isinstance(n, ACC_OPS + MEM_OPS) for n in graph.nodes)}
