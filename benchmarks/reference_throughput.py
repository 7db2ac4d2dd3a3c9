"""Golden reference executor throughput vs the float torch model, measured in one run.

Goal: the integer reference runs at least half as fast as the float model on one clip.
Run: .venv/bin/python benchmarks/reference_throughput.py [--model PATH | --config svf-small --frame 64]
"""

import argparse

import torch

from run import timed
from svf_deploy.api import BUNDLED_MODEL
from svf_deploy.compiler import reference
from svf_deploy.compiler.pipeline import CompileOptions, compile_model
from svf_deploy.models.checkpoint import load_checkpoint


def best_of(fn, repeats: int) -> float:
    """Fastest of ``repeats`` calls after one warm-up (``run.timed``'s minimum)."""
    return timed(fn, repeats).min


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(BUNDLED_MODEL))
    ap.add_argument("--config", help="a zoo config (random weights, randomised BN) instead of --model")
    ap.add_argument("--frame", type=int, default=64, help="frame size with --config")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1, help="clips per call (1 = one clip)")
    a = ap.parse_args()
    if a.config:
        from compile_time import randomise_bn
        from svf_deploy.models import build_model

        model = build_model(a.config).eval()
        randomise_bn(model)
        size = a.frame
    else:
        model, _ = load_checkpoint(a.model)
        size = model.cfg.img_size
    cfg = model.cfg
    x = torch.rand(cfg.T, a.batch, cfg.in_channels, size, size) * 2
    graph, _ = compile_model(model, CompileOptions(), frame_shape=tuple(x.shape[2:]))
    with torch.no_grad():
        t_float = best_of(lambda: model(x), a.repeats)
    t_ref = best_of(lambda: reference.run(graph, x), a.repeats)
    t_ref_nocheck = best_of(lambda: reference.run(graph, x, check_bounds=False), a.repeats)
    print(f"model {cfg.name}, clip T={cfg.T} x {a.batch} x {tuple(x.shape[2:])}, threads {torch.get_num_threads()}")
    print(f"{'executor':<34} {'ms / call':>10} {'speed vs float':>15}")
    print(f"{'float torch model':<34} {1e3 * t_float:>10.2f} {1.0:>15.2f}")
    print(f"{'integer reference (bound checks)':<34} {1e3 * t_ref:>10.2f} {t_float / t_ref:>15.2f}")
    print(f"{'integer reference (no checks)':<34} {1e3 * t_ref_nocheck:>10.2f} {t_float / t_ref_nocheck:>15.2f}")
    ratio = t_float / t_ref
    print(f"goal >= 0.50 of float speed: {'met' if ratio >= 0.5 else 'NOT met'} ({ratio:.2f})")


if __name__ == "__main__":
    main()
