"""``svf-compile model.nir ...``: compile from a NIR file instead of a torch checkpoint.

A ``model.nir`` written by ``svf-compile --target nir`` holds the whole integer graph
(:mod:`.nir_import` rebuilds it and checks every NIR parameter), so the job skips the
torch-only steps and says so in the manifest: no compiler passes, no fidelity against a
float model, no energy estimate, no ``model-float.onnx``. The golden clip is uniform noise
in ``[0, 1)`` (seeded by ``--seed``) of the graph's ``T`` steps, since a NIR file carries no
data set. Everything else (``graph.json``, ``weights.npz``, ``golden.npz``, the target's
files, ``manifest.json``) is written as for a checkpoint.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from ..api import _sha256  # api imports this module lazily, so no cycle
from ..models.errors import ConfigError

__all__ = ["compile_nir"]


def compile_nir(job, model_path: Path, tmp: Path, progress=None, log=lambda s: None) -> dict:
    """Fill ``tmp`` for ``job`` from ``model_path`` (a ``.nir`` file); returns the manifest.

    Raises :class:`ConfigError` for options that need a torch model (``--calibrate``,
    architecture overrides) and :class:`GraphError` for a NIR file that is not ours.
    """
    import torch

    from .. import __version__
    from .. import targets as _targets
    from ..compiler import reference
    from .nir_import import load_nir

    t0 = time.perf_counter()
    if job.calibrate:
        raise ConfigError("--calibrate needs a torch checkpoint; a .nir MODEL is already quantised")
    if job.overrides:
        raise ConfigError(f"{', '.join('--' + k.replace('_', '-') for k in job.overrides)} only apply to "
                          "torch checkpoints; a .nir MODEL fixes the architecture")
    graph = load_nir(model_path)
    mc = graph.meta.get("model_config")
    T = int(graph.meta.get("T") or (mc.get("T", 0) if isinstance(mc, dict) else 0))
    if T < 1:
        raise ConfigError(f"{model_path.name}: the graph does not record its clip length T")
    log(f"loaded {model_path.name}: NIR, {len(graph.nodes)} integer nodes, T={T} (no float model)")
    g = torch.Generator().manual_seed(job.seed)
    golden_in = torch.rand((T, 1, *graph.input.shape), generator=g)
    res = reference.run(graph, golden_in, record=True)
    np.savez_compressed(tmp / "golden.npz", frames=golden_in.numpy(),
                        **{f"out/{k}": v.numpy() for k, v in res.outputs.items()},
                        **{f"spikes/{k}": v.numpy().astype(np.uint8 if graph.types[k].levels <= 255 else np.int64)
                           for k, v in res.values.items() if graph.types[k].kind == "spike"})
    graph.save(tmp)
    entries = _targets.build(job.target, _targets.TargetContext(
        tmpdir=tmp, graph=graph, model=None, golden_frames=golden_in, golden=res,
        options=dict(job.target_options), progress=progress, log=log))
    manifest = {
        "svf_deploy": __version__, "created_unix": int(time.time()),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "target": job.target, "command": " ".join(sys.argv),
        "model": {"source": str(model_path), "sha256": _sha256(model_path), "format": "nir"},
        "golden_clip": f"uniform noise in [0, 1), seed {job.seed} (a NIR file carries no data)",
        "not_measured": "fidelity, energy and the float model need a torch checkpoint",
        **entries,
    }
    (tmp / "report.md").write_text(
        f"# svf-compile report\n\nCompiled from the NIR file `{model_path.name}` "
        f"({len(graph.nodes)} integer nodes, T = {T}). Fidelity against a float model and the energy "
        "estimate need a torch checkpoint and are not measured here.\n")
    manifest["seconds"] = round(time.perf_counter() - t0, 3)
    manifest["files"] = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    return manifest
