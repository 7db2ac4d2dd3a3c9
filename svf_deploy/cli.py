"""Command-line tools: ``svf-compile``, ``svf-train``, ``svf-zoo``.

Every failure the user can fix ends in one line on stderr (``svf-compile: error: ...``)
and the exit code of its error class (see ``svf_deploy.models.errors``); argparse usage
errors exit 2; running out of memory exits 71 (one line naming the knobs); an unexpected internal
error exits 70 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__

INTERNAL_ERROR = 70
OUT_OF_MEMORY = 71

COMPILE_EXAMPLES = """\
examples:
  svf-compile --target reference -o out            # the bundled trained model
  svf-compile run/checkpoint-best.pth -o out       # a published training checkpoint
  svf-compile model.pt -o out --weight-bits 6 --clips 500 --force
  svf-compile ckpt.pth -o out --num-heads 8 --img-size 224 --T 8   # facts shapes can't tell
  svf-compile ckpt.pth -o out --attention 3D_dot --normalize imagenet --data videos/
  svf-compile ckpt.pth -o out --data val_clips.npz --clips 200      # clips [N,T,C,H,W] + labels

outputs (written atomically: nothing appears unless everything succeeded):
  OUTDIR/graph.json + weights.npz   the integer spike graph (schema-versioned)
  OUTDIR/golden.npz                 the reference's spikes and outputs on one clip
  OUTDIR/report.md, report.html     fidelity, firing rates, energy, bit-widths, plots
  OUTDIR/manifest.json              versions, options, hashes, figures
"""


def _fail(prog: str, err: BaseException, code: int) -> int:
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return code


def _run_guarded(prog: str, debug: bool, fn) -> int:
    from .models.errors import SVFError

    try:
        fn()
        return 0
    except SVFError as e:
        if debug:
            raise
        return _fail(prog, e, e.exit_code)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except MemoryError as e:
        if debug:
            raise
        return _fail(prog, RuntimeError(f"out of memory ({e or 'MemoryError'}): the model at this frame size, T "
                                        "and clip count needs more than this machine has; lower --img-size, --T "
                                        "or --clips"), OUT_OF_MEMORY)
    except Exception as e:  # noqa: BLE001 - last-resort guard, reported as internal
        if debug:
            raise
        return _fail(prog, RuntimeError(f"internal error ({type(e).__name__}: {e}); re-run with --debug and report it"),
                     INTERNAL_ERROR)


class _Progress:
    """rich progress bars keyed by step name; silent when quiet."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bars: dict[str, int] = {}
        self.progress = None
        if not quiet:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn)
            # progress and logs go to stderr: stdout carries results (--json) only
            self.progress = Progress(TextColumn("{task.description:<10}"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(), transient=False,
                                     console=Console(stderr=True))

    def __enter__(self):
        if self.progress:
            self.progress.__enter__()
        return self

    def __exit__(self, *a):
        if self.progress:
            self.progress.__exit__(*a)

    def __call__(self, step: str, done: int, total: int) -> None:
        if not self.progress:
            return
        if step not in self.bars:
            self.bars[step] = self.progress.add_task(step, total=total)
        self.progress.update(self.bars[step], completed=done, total=total)

    def log(self, msg: str) -> None:
        if self.progress:
            self.progress.console.print(msg)


def compile_main(argv: list[str] | None = None) -> int:
    from .api import TARGETS

    p = argparse.ArgumentParser(
        prog="svf-compile", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compile a trained spike-driven video transformer to a bit-exact integer "
                    "spike graph and run the golden reference on validation clips.",
        epilog=COMPILE_EXAMPLES)
    p.add_argument("model", nargs="?", type=Path,
                   help="checkpoint (.pt/.pth): ours, or a SpikeVideoFormer / Meta-SpikeFormer "
                        "training checkpoint, or a model.nir written by --target nir; default: the "
                        "bundled trained model")
    p.add_argument("--target", choices=TARGETS, default="reference", help="what to build (default: reference)")
    p.add_argument("-o", "--outdir", type=Path, default=Path("svf-out"), help="output directory (default: svf-out)")
    p.add_argument("--force", action="store_true", help="replace OUTDIR if it exists")
    p.add_argument("--weight-bits", type=int, default=8, help="weight bit-width (default 8)")
    p.add_argument("--factor-depthwise", choices=("never", "auto"), default="never",
                   help="SepConv form: 'never' fuses each depthwise 7x7 + pointwise into one dense conv "
                        "on spikes (default; the form the ZCU104 engine v1 and the other targets were "
                        "validated on); 'auto' (opt-in) keeps the pair where the cost model counts fewer "
                        "additions per step (depthwise on spikes, then a bit-serial pointwise conv)")
    p.add_argument("--clips", type=int, default=None,
                   help="validation clips for the fidelity report (default: all of --data; 1000 of the "
                        "checkpoint's data recipe; else 8 synthetic noise clips, labelled as such)")
    p.add_argument("--data", type=Path, default=None, metavar="PATH",
                   help="validation data: a folder of videos (decoded with PyAV, T frames sampled "
                        "uniformly, resized; labels from integer class sub-folders or labels.csv), or "
                        "an .npz/.pt with 'clips' [N, T, C, H, W] (uint8 or [0, 1]) and optional 'labels'")
    p.add_argument("--attention", default=None, metavar="MODE",
                   help="attention mode when the checkpoint does not record it: 2D (per-frame "
                        "dot product), 3D_dot (joint space-time dot product), 3D_ham (joint Hamming); "
                        "2D and 3D_dot checkpoints have identical keys")
    p.add_argument("--normalize", choices=("none", "imagenet"), default=None,
                   help="input normalisation the model was trained with, (x/255 - mean)/std, folded "
                        "exactly into the first layer (default: the checkpoint's record; published "
                        "training checkpoints without one: imagenet, announced)")
    p.add_argument("--mean", default=None, metavar="M1,M2,M3", help="custom normalisation mean per channel (frames in [0, 1])")
    p.add_argument("--std", default=None, metavar="S1,S2,S3", help="custom normalisation std per channel")
    p.add_argument("--calibrate", type=int, default=0, metavar="N",
                   help="choose the input scale from N validation clips: exact 8-bit codes when the "
                        "pixels lie on a grid (e.g. sixteenths -> 1/240), else max/255 "
                        "(default 0: frames assumed in [0, 1], scale 1/255)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow arbitrary unpickling of MODEL (only for checkpoints you trust)")
    p.add_argument("--T", type=int, dest="T", help="time steps: for checkpoints that do not record T, or to re-prove the widths for another T")
    p.add_argument("--num-heads", type=int, help="attention heads (not inferable from shapes)")
    p.add_argument("--img-size", type=int, help="frame size (for checkpoints that do not record it)")
    p.add_argument("--verify", choices=("rtl",), default=None,
                   help="zcu104: simulate the generated RTL under Verilator and compare it with the golden reference")
    p.add_argument("--strict", action="store_true",
                   help="nir: fail instead of reporting nodes NIR cannot represent")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summary")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary (outdir, accuracy, agreement, T, warnings, files) on "
                        "stdout instead of the table; progress and logs stay on stderr")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"svf-deploy {__version__}")
    a = p.parse_args(argv)

    def job():
        from .api import CompileJob, compile_checkpoint

        overrides = {k: v for k, v in (("T", a.T), ("num_heads", a.num_heads), ("img_size", a.img_size),
                                       ("attention", a.attention)) if v is not None}
        overrides.update(_normalization_overrides(a))
        j = CompileJob(outdir=a.outdir, model=a.model, target=a.target, weight_bits=a.weight_bits,
                       factor_depthwise=a.factor_depthwise,
                       clips=a.clips, data=a.data, calibrate=a.calibrate, allow_pickle=a.allow_pickle,
                       force=a.force, overrides=overrides,
                       target_options={"verify": a.verify, "strict": a.strict})
        with _Progress(a.quiet) as prog:
            m = compile_checkpoint(j, progress=prog, log=prog.log,
                                   warn=lambda msg: print(f"svf-compile: warning: {msg}", file=sys.stderr))
        if a.json:
            print(json.dumps(_json_summary(m, a.outdir), indent=1))
        elif not a.quiet:
            _print_summary(m, a.outdir)

    return _run_guarded("svf-compile", a.debug, job)


def _json_summary(m: dict, outdir: Path) -> dict:
    """The figures a script needs from a compile, as JSON."""
    f = m["fidelity"]
    return {"outdir": str(outdir), "model": m["model"]["source"], "target": m["target"],
            "T": m.get("T"), "weight_bits": m["options"]["weight_bits"],
            "float_accuracy": f["float_accuracy"], "int_accuracy": f["int_accuracy"],
            "prediction_agreement": f["prediction_agreement"],
            "mean_spike_agreement": f["mean_spike_agreement"], "n_clips": f["n_clips"],
            "precision_warnings": m.get("precision_warnings", []),
            "inexact_neurons": m.get("exactness", {}).get("inexact_neurons", []),
            "files": sorted(m["files"]), "seconds": m["seconds"]}


def _floats(text: str, what: str) -> tuple[float, ...]:
    from .models.errors import ConfigError

    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, e.g. 0.485,0.456,0.406; got {text!r}") from None


def _normalization_overrides(a) -> dict:
    """``--normalize`` / ``--mean`` + ``--std`` as model-config overrides (none given: {})."""
    from .models.config import NORMALIZATIONS
    from .models.errors import ConfigError

    if (a.mean is None) != (a.std is None):
        raise ConfigError("give --mean and --std together")
    if a.mean is not None:
        if a.normalize is not None:
            raise ConfigError("give either --normalize or --mean/--std, not both")
        return {"input_mean": _floats(a.mean, "--mean"), "input_std": _floats(a.std, "--std")}
    if a.normalize is None:
        return {}
    norm = NORMALIZATIONS[a.normalize]
    return {"input_mean": None if norm is None else norm[0], "input_std": None if norm is None else norm[1]}


def _print_summary(m: dict, outdir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    f = m["fidelity"]
    t = Table(title=f"svf-compile -> {outdir}", show_header=False)

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.2f} %"

    t.add_row("model", f"{m['model']['config']['name']} ({Path(m['model']['source']).name})")
    t.add_row("target", m["target"])
    t.add_row("attention / input", f"{m['model']['attention']} / normalisation {m['model']['input_normalization']}")
    t.add_row("validation clips", f"{f['n_clips']} ({m['validation']['source']})")
    if m.get("warnings"):
        t.add_row("warnings", "\n".join(m["warnings"]))
    t.add_row("float accuracy", pct(f["float_accuracy"]))
    t.add_row("integer accuracy", pct(f["int_accuracy"]))
    t.add_row("mean spike agreement", pct(f["mean_spike_agreement"]))
    t.add_row("energy / clip", f"{m['energy']['snn_mJ_per_clip'] * 1e3:.3f} µJ (ANN {m['energy']['ann_mJ_per_clip'] * 1e3:.3f} µJ)")
    t.add_row("files", ", ".join(m["files"]) + ", manifest.json")
    t.add_row("time", f"{m['seconds']:.1f} s")
    Console().print(t)


def verify_main(argv: list[str] | None = None) -> int:
    from .models.errors import IntegrityError, VerifyMismatchError

    p = argparse.ArgumentParser(
        prog="svf-verify", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check a compiled OUTDIR bit for bit: every file against its manifest sha256, "
        "every declared width against the proof, then re-run the golden reference on the stored "
        "clip and compare every stored spike and output.",
        epilog=f"exit codes: 0 verified; {IntegrityError.exit_code} a corrupt or tampered file "
               f"(hash, width, incomplete golden record); {VerifyMismatchError.exit_code} "
               "re-computed values differ from the stored ones; others as svf-compile")
    p.add_argument("outdir", type=Path, help="a directory written by svf-compile")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    a = p.parse_args(argv)

    def job():
        from .api import verify_outdir

        r = verify_outdir(a.outdir)
        if a.json:
            print(json.dumps({**r, "verified": True}, indent=1))
        else:
            print(f"svf-verify: {a.outdir}: {r['files']} file hashes, {r['widths_checked']} widths "
                  f"(T={r['T']}), {r['tensors']} stored tensors ({r['values']:,} values) reproduced "
                  "bit for bit")

    return _run_guarded("svf-verify", a.debug, job)


def train_main(argv: list[str] | None = None) -> int:
    from .models import train

    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    argv = [x for x in (sys.argv[1:] if argv is None else argv) if x != "--debug"]
    return _run_guarded("svf-train", debug, lambda: train.main(argv))


def zoo_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="svf-zoo", description="List the model zoo with parameter counts.")
    p.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    from .models import ZOO, build_model

    t = Table(title="svf-deploy model zoo")
    for col in ("name", "attention", "head", "embed_dim", "depths", "params"):
        t.add_column(col)
    for name, cfg in ZOO.items():
        n = sum(p.numel() for p in build_model(cfg).parameters())
        t.add_row(name, cfg.attention, cfg.head, str(cfg.embed_dim), str(cfg.depths), f"{n / 1e6:.2f} M")
    Console().print(t)
    return 0


def _entry(fn) -> None:
    sys.exit(fn())


if __name__ == "__main__":  # pragma: no cover
    _entry(compile_main)
