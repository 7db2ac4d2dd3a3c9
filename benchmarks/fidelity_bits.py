"""Integer fidelity of the bundled model against its float self, as weight bits vary.

Prints, per weight width, the integer accuracy, the accuracy drop, the fraction of
identical predictions and the mean per-layer spike agreement on validation clips.
Run: .venv/bin/python benchmarks/fidelity_bits.py [--clips 500]
"""

import argparse

import torch

from svf_deploy.api import BUNDLED_MODEL
from svf_deploy.compiler.fidelity import measure_fidelity
from svf_deploy.compiler.pipeline import CompileOptions, compile_model
from svf_deploy.models import data as mdata
from svf_deploy.models.checkpoint import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clips", type=int, default=500)
    ap.add_argument("--bits", type=int, nargs="+", default=[4, 5, 6, 8, 10, 12, 16])
    a = ap.parse_args()
    model, ck = load_checkpoint(BUNDLED_MODEL)
    x, y = mdata.make_split(mdata.MovingDigitsConfig.from_dict(ck["data"]), "val")
    x, y = x[: a.clips], y[: a.clips]
    cal = x[:8].transpose(0, 1)
    print(f"bundled model, {len(x)} validation clips; float accuracy measured alongside")
    print(f"{'weight bits':>11} {'float acc':>9} {'int acc':>8} {'drop':>6} {'same pred':>9} {'spike agr':>9}")
    for bits in a.bits:
        graph, _ = compile_model(model, CompileOptions(weight_bits=bits, calibration=cal))
        f = measure_fidelity(model, graph, x, y, batch=100)
        print(f"{bits:>11} {100 * f.float_accuracy:>8.1f}% {100 * f.int_accuracy:>7.1f}% "
              f"{100 * f.accuracy_drop:>5.1f} {100 * f.prediction_agreement:>8.1f}% "
              f"{100 * f.mean_agreement:>8.2f}%")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
