"""``svf-train``: train the bundled tiny SpikeVideoFormer on moving digits, reproducibly.

The run is deterministic given the seed (fixed thread count, seeded generators, no
data-order randomness outside ``torch.Generator``). It prints a progress bar per epoch,
the final validation accuracy, and writes the checkpoint (config, data recipe, accuracy
and training recipe inside; loadable with ``weights_only=True``) plus a JSON sidecar.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import data as mdata
from .checkpoint import save_checkpoint
from .config import get_config
from .svf import SpikeVideoFormer, build_model

__all__ = ["TrainConfig", "train", "evaluate", "main"]


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe of the bundled model."""

    model: str = "svf-tiny"
    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 0.01
    warmup_steps: int = 30
    label_smoothing: float = 0.0
    seed: int = 0
    threads: int = 2
    max_steps: int = 0  # 0 = all epochs; > 0 stops early (tests)


@torch.no_grad()
def evaluate(model: SpikeVideoFormer, clips: torch.Tensor, labels: torch.Tensor,
             batch: int = 128) -> float:
    """Top-1 accuracy on ``clips [N, T, C, H, W]``."""
    model.eval()
    correct = 0
    for i in range(0, len(clips), batch):
        x = clips[i:i + batch].transpose(0, 1).contiguous()
        correct += int((model(x).argmax(-1) == labels[i:i + batch]).sum())
    return correct / len(clips)


def train(tcfg: TrainConfig, dcfg: mdata.MovingDigitsConfig, progress: bool = True,
          log=print) -> tuple[SpikeVideoFormer, dict]:
    """Train and return ``(model, history)``; deterministic for a given seed and thread count."""
    torch.manual_seed(tcfg.seed)
    torch.set_num_threads(tcfg.threads)
    xtr, ytr = mdata.make_split(dcfg, "train")
    xva, yva = mdata.make_split(dcfg, "val")
    n_classes = dcfg.num_classes
    cfg = get_config(tcfg.model, num_classes=n_classes, T=dcfg.T, img_size=dcfg.frame_size,
                     in_channels=1)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    steps_per_epoch = math.ceil(len(xtr) / tcfg.batch_size)
    total = tcfg.epochs * steps_per_epoch
    if tcfg.max_steps:
        total = min(total, tcfg.max_steps)

    def lr_at(step: int) -> float:
        if step < tcfg.warmup_steps:
            return (step + 1) / tcfg.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - tcfg.warmup_steps) / max(1, total - tcfg.warmup_steps)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(tcfg.seed)
    history = {"loss": [], "val_accuracy": []}
    step = 0
    t0 = time.perf_counter()
    bar = None
    if progress:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
        bar.start()
        task = bar.add_task("training", total=total, info="")
    try:
        for epoch in range(tcfg.epochs):
            model.train()
            perm = torch.randperm(len(xtr), generator=gen)
            for i in range(0, len(xtr), tcfg.batch_size):
                if step >= total:
                    break
                idx = perm[i:i + tcfg.batch_size]
                x = xtr[idx].transpose(0, 1).contiguous()
                loss = F.cross_entropy(model(x), ytr[idx], label_smoothing=tcfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                history["loss"].append(float(loss.detach()))
                if bar:
                    bar.update(task, advance=1, info=f"epoch {epoch + 1} loss {float(loss.detach()):.3f}")
            if step >= total and tcfg.max_steps:
                break
            acc = evaluate(model, xva, yva)
            history["val_accuracy"].append(acc)
            log(f"epoch {epoch + 1}/{tcfg.epochs}: val accuracy {100 * acc:.2f} %")
    finally:
        if bar:
            bar.stop()
    history["seconds"] = time.perf_counter() - t0
    history["final_val_accuracy"] = evaluate(model, xva, yva)
    return model.eval(), history


def check_args(out: Path, epochs: int, max_steps: int) -> None:
    """Refuse bad ``svf-train`` arguments before any training (one clear line each)."""
    import os

    from .errors import ConfigError, OutputError

    if epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}")
    if max_steps < 0:
        raise ConfigError(f"--max-steps must be >= 0 (0 = no limit), got {max_steps}")
    if out.is_dir():
        raise OutputError(f"--out {out} is a directory; give a file path such as {out / 'model.pt'}")
    if out.suffix not in (".pt", ".pth"):
        raise ConfigError(f"--out {out} must end in .pt or .pth (a JSON summary is written beside it)")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise OutputError(f"--out {out}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"--out {out}: directory {parent} is not writable; choose another --out")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="svf-train", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description=(
        "Train the tiny SpikeVideoFormer on the moving-digits video dataset and save a checkpoint "
        "with its config, data recipe and measured accuracy inside."))
    p.add_argument("--out", type=Path, default=Path("svf-tiny-digits.pt"),
                   help="checkpoint path (.pt/.pth; a .json summary is written beside it)")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="training epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of data and initialisation")
    p.add_argument("--max-steps", type=int, default=0, help="stop after N steps (smoke runs; 0 = no limit)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log")
    a = p.parse_args(argv)
    check_args(a.out, a.epochs, a.max_steps)  # before minutes of training, not after
    tcfg = TrainConfig(epochs=a.epochs, seed=a.seed, max_steps=a.max_steps)
    dcfg = mdata.MovingDigitsConfig(seed=a.seed)
    model, hist = train(tcfg, dcfg, progress=not a.quiet, log=(lambda s: None) if a.quiet else print)
    acc = hist["final_val_accuracy"]
    recipe = {"train": asdict(tcfg), "seconds": round(hist["seconds"], 1),
              "torch": str(torch.__version__)}
    save_checkpoint(model, a.out, data=dcfg.to_dict(), val_accuracy=acc, recipe=recipe)
    side = a.out.with_suffix(".json")
    side.write_text(json.dumps({"checkpoint": a.out.name, "val_accuracy": acc,
                                "val_clips": dcfg.n_val, "data": dcfg.to_dict(),
                                "model": model.cfg.to_dict(), **recipe}, indent=1))
    print(f"final validation accuracy: {100 * acc:.2f} % ({dcfg.n_val} clips), "
          f"{hist['seconds']:.0f} s; wrote {a.out} and {side.name}")
    return 0
