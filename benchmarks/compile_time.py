"""Compile time of svf-small and svf-large (goals here: under 30 s and 90 s).

Run: .venv/bin/python benchmarks/compile_time.py [--frame 224]
Random weights with randomised BatchNorm statistics stand in for trained ones: the
compiler's work does not depend on the values.
"""

import argparse
import time

import torch

from svf_deploy.compiler.pipeline import CompileOptions, compile_model
from svf_deploy.models import build_model

GOALS = {"svf-small": 30.0, "svf-large": 90.0}


def randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frame", type=int, default=224)
    a = ap.parse_args()
    print(f"{'model':<10} {'params':>8} {'nodes':>6} {'compile s':>10} {'goal s':>7}  passes")
    for name, goal in GOALS.items():
        model = build_model(name, T=4).eval()
        randomise_bn(model)
        t0 = time.perf_counter()
        graph, records = compile_model(model, CompileOptions(), frame_shape=(3, a.frame, a.frame))
        dt = time.perf_counter() - t0
        params = sum(p.numel() for p in model.parameters()) / 1e6
        per = ", ".join(f"{r.name} {r.seconds:.1f}" for r in records)
        print(f"{name:<10} {params:>7.1f}M {len(graph.nodes):>6} {dt:>10.2f} {goal:>7.0f}  {per}"
              f"  {'OK' if dt < goal else 'OVER GOAL'}")


if __name__ == "__main__":
    main()
