"""Checkpoints: save with the config inside; load ours or published training checkpoints.

Our format (loadable with ``torch.load(..., weights_only=True)``)::

    {"format": "svf-deploy/1", "config": ModelConfig.to_dict(), "model": state_dict, ...extra}

Published Spike-Driven Transformer V2 / SpikeVideoFormer training checkpoints are
``{"model": state_dict, "optimizer", "epoch", "scaler", "args"}`` with ``args`` a pickled
``argparse.Namespace``: that one class is allow-listed for ``weights_only`` loading; any
other Python object is refused unless the caller opts in (``allow_pickle=True``).
Their architecture is inferred from the ``state_dict`` shapes (:func:`infer_config`).
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from .attention import ATT_MODES, attention_kind, published_att_mode
from .config import NORMALIZATIONS, ModelConfig
from .errors import (CheckpointError, CheckpointMismatchError, CheckpointNotFoundError,
                     ConfigError, MissingStatisticsError, UnsafeCheckpointError)
from .svf import SpikeVideoFormer

__all__ = ["FORMAT", "save_checkpoint", "read_checkpoint", "load_checkpoint", "infer_config",
           "load_state_dict_checked", "extract_state_dict", "ASSUMPTIONS_KEY"]

#: key under which :func:`load_checkpoint` lists, in the returned checkpoint dict, every
#: fact it had to assume (one sentence each); the CLI prints them and reports record them
ASSUMPTIONS_KEY = "svf_assumptions"

FORMAT = "svf-deploy/1"


def save_checkpoint(model: SpikeVideoFormer, path: str | os.PathLike, **extra: Any) -> Path:
    """Atomically write ``model`` with its config (and JSON-like ``extra`` fields)."""
    path = Path(path)
    obj = {"format": FORMAT, "config": model.cfg.to_dict(),
           "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, **extra}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is a shareable file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _pickled_globals(path: Path) -> list[str] | None:
    """Names of the globals a pickle would import, read with ``pickletools`` (nothing runs).

    Returns ``None`` when the stream is not a valid pickle at all.
    """
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return None
                data = z.read(name)
        else:
            data = path.read_bytes()
        names, strings = [], []
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
        return names
    except Exception:  # noqa: BLE001 - any parse failure means "not a pickle"
        return None


def read_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False) -> dict:
    """Read a checkpoint file into a dict, safely.

    Raises :class:`CheckpointError` (missing, unreadable, corrupted, not a dict) or
    :class:`UnsafeCheckpointError` (needs arbitrary unpickling and ``allow_pickle`` is off).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {path} (check the path)")
    if path.is_dir():
        raise CheckpointNotFoundError(f"checkpoint path is a directory: {path} (give the .pt/.pth file)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        what = re.search(r"GLOBAL ([\w.]+)", str(e))
        if not what:
            # e.g. an opcode the safe unpickler lacks: inspect the stream without running it
            found = _pickled_globals(path)
            if not found:
                raise CheckpointError(
                    f"{path} is not a readable PyTorch checkpoint (corrupted pickle stream)") from None
        if not allow_pickle:
            name = f" ({what.group(1) if what else found[0]})"
            raise UnsafeCheckpointError(
                f"{path} contains arbitrary Python objects{name}; loading it could run code. "
                "If you trust its source, re-run with --allow-pickle") from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e2:  # noqa: BLE001 - any failure here means unreadable
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(e2).__name__})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError,
            IndexError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}); "
            "is the file complete and saved with torch.save?") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict or state_dict")
    return obj


def extract_state_dict(obj: dict) -> dict[str, torch.Tensor]:
    """The model ``state_dict`` inside a checkpoint dict (``model``/``state_dict`` key, or the
    dict itself), with a DistributedDataParallel ``module.`` prefix removed."""
    sd = obj
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj.get(key), dict):
            sd = obj[key]
            break
    if not sd or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise CheckpointError("checkpoint has no model state_dict (expected a 'model' entry of tensors)")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _shape(sd: dict, key: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(
            f"state_dict lacks {key!r}: not a SpikeVideoFormer / Meta-SpikeFormer checkpoint")
    return tuple(sd[key].shape)


def _args_attention(args: Any) -> str | None:
    mode = getattr(args, "att_mode", None) if args is not None else None
    if mode is None:
        return None
    if mode not in ATT_MODES:
        raise CheckpointError(f"checkpoint args.att_mode={mode!r} is not a published mode "
                              f"({', '.join(ATT_MODES)}); pass --attention to choose")
    return ATT_MODES[mode]


def _args_normalization(args: Any) -> tuple | None:
    """``(mean, std)`` recorded in training args (``mean``/``std`` or ``normalize``), else None."""
    if args is None:
        return None
    mean, std = getattr(args, "mean", None), getattr(args, "std", None)
    if isinstance(mean, (list, tuple)) and isinstance(std, (list, tuple)):
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    name = getattr(args, "normalize", None)
    if isinstance(name, str) and name in NORMALIZATIONS:
        return NORMALIZATIONS[name] or ((), ())
    return None


def infer_config(sd: dict[str, torch.Tensor], args: Any = None, notes: list[str] | None = None,
                 **overrides) -> ModelConfig:
    """Infer a :class:`ModelConfig` from ``state_dict`` shapes (published checkpoints).

    Widths come from the downsampling convs, depths from the block indices, the attention
    kind from its distinctive parameters (``attn_bn`` -> SDHA, ``saccade_gain`` -> SSSA,
    ``kt_conv`` -> factorized, ``attn.spatial`` -> hierarchical, none -> SDSA), the head
    from its layers. Shapes cannot tell ``num_heads`` (8 as published), the SDHA token
    mode (joint), ``T`` or the frame size; ``args`` (a training Namespace) or
    ``overrides`` supply them.

    Published SpikeVideoFormer modes: ``args.att_mode`` (``2D``, ``3D_dot``, ``3D_ham``)
    decides when recorded. ``2D`` and ``3D_dot`` have identical keys: without
    ``args.att_mode`` or an ``attention`` override, ``2D`` (Meta-SpikeFormer's per-frame
    SDSA) is assumed and a sentence saying so is appended to ``notes``. ``head_kd`` keys
    mean ``kd=True``. Input normalisation comes from ``args.mean/std`` (or
    ``args.normalize``), else an override; for a training checkpoint that records none
    with 3 input channels, ImageNet mean/std (the published pipelines') is assumed and
    noted. Contradictions between keys, args and overrides raise CheckpointMismatchError.
    """
    notes = notes if notes is not None else []
    e0 = _shape(sd, "downsample1_2.encode_conv.weight")[0]
    e1 = _shape(sd, "downsample2.encode_conv.weight")[0]
    e2 = _shape(sd, "downsample3.encode_conv.weight")[0]
    e3 = _shape(sd, "downsample4.encode_conv.weight")[0]
    in_ch = _shape(sd, "downsample1_1.encode_conv.weight")[1]
    stem = _shape(sd, "downsample1_1.encode_conv.weight")[0]
    if stem * 2 != e0:
        raise CheckpointError(f"stem width {stem} is not half of embed_dim[0]={e0}: unsupported layout")
    mlp = _shape(sd, "ConvBlock1_1.0.conv1.weight")[0] // stem

    def depth(prefix: str) -> int:
        idx = {int(m.group(1)) for k in sd for m in [re.match(rf"{prefix}\.(\d+)\.", k)] if m}
        return max(idx) + 1 if idx else 0

    d3, d4 = depth("block3"), depth("block4")
    keys = set(sd)
    any_blk = "block3.0" if d3 else ("block4.0" if d4 else None)
    attention = "sdha"
    if any_blk:
        if f"{any_blk}.attn.spatial.q_conv.0.body.0.weight" in keys:
            attention = "sdha_hierarchical"
        elif f"{any_blk}.attn.kt_conv.0.body.0.weight" in keys:
            attention = "sdha_factorized"
        elif f"{any_blk}.attn.saccade_gain" in keys:
            attention = "sssa"
        elif f"{any_blk}.attn.attn_bn.weight" in keys:
            attention = "sdha"
        else:
            attention = "sdsa"
    dot = attention == "sdsa"
    from_args = _args_attention(args)
    wanted = overrides.get("attention")
    if wanted is not None:
        wanted = attention_kind(wanted)
        overrides = {**overrides, "attention": wanted}
    for src, kind in (("args.att_mode", from_args), ("--attention", wanted)):
        if kind is None:
            continue
        ok = kind == attention or (dot and kind in ("sdsa", "sdsa_joint"))
        if not ok:
            raise CheckpointMismatchError(
                f"{src} says {published_att_mode(kind) or kind} but the state_dict keys are those of "
                f"{published_att_mode(attention) or attention} attention "
                f"({'no' if dot else 'an'} attn.attn_bn); fix {src}")
    if from_args is not None:
        attention = from_args
    if dot and wanted is None and from_args is None and any_blk:
        notes.append("attention mode ASSUMED 2D (per-frame dot-product SDSA): the checkpoint does not "
                     "record args.att_mode and 2D / 3D_dot have identical keys; pass --attention 3D_dot "
                     "if it was trained with joint space-time tokens")
    if "head.weight" in keys:
        head, num_classes = "classification", _shape(sd, "head.weight")[0]
    elif "head_pose.weight" in keys:
        head, num_classes = "pose", 1
    elif any(k.startswith("fpn.") for k in keys):
        head, num_classes = "segmentation", _shape(sd, "fpn.cls.weight")[0]
    else:
        raise CheckpointError("state_dict has no recognised head (head / head_pose / fpn)")
    kd = "head_kd.weight" in keys
    if kd and head != "classification":
        raise CheckpointError("state_dict has head_kd but no classification head: unsupported layout")
    if kd and _shape(sd, "head_kd.weight") != _shape(sd, "head.weight"):
        raise CheckpointMismatchError(f"head_kd.weight has shape {_shape(sd, 'head_kd.weight')}, "
                                      f"head.weight {_shape(sd, 'head.weight')}: they must match")
    kw: dict[str, Any] = dict(name="inferred", embed_dim=(e0, e1, e2, e3), depths=(d3, d4),
                              mlp_ratio=mlp, in_channels=in_ch, num_classes=num_classes,
                              attention=attention, head=head, kd=kd)
    if "input_mean" not in overrides:
        norm = _args_normalization(args)
        if norm is not None:
            if norm[0]:
                kw["input_mean"], kw["input_std"] = norm
        elif in_ch == 3:
            kw["input_mean"], kw["input_std"] = NORMALIZATIONS["imagenet"]
            notes.append("input normalisation ASSUMED imagenet (mean 0.485,0.456,0.406, std "
                         "0.229,0.224,0.225, as the published pipelines): the checkpoint does not "
                         "record it; pass --normalize none or --mean/--std otherwise")
    if attention == "sssa":
        kw["max_T"] = _shape(sd, f"{any_blk}.attn.saccade_gain")[0]
    if args is not None:
        for src, dst in (("time_steps", "T"), ("T", "T"), ("num_heads", "num_heads"),
                         ("input_size", "img_size"), ("img_size", "img_size")):
            v = getattr(args, src, None)
            if isinstance(v, int) and v > 0:
                kw[dst] = v
    kw.update(overrides)
    if "T" in kw and kw["T"] > kw.get("max_T", 16):
        kw["max_T"] = kw["T"]
    try:
        return ModelConfig(**kw)
    except ConfigError as e:
        raise CheckpointError(f"inferred architecture is invalid: {e}") from None


def load_state_dict_checked(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """``strict=True`` loading with an error naming the first mismatching key."""
    own = model.state_dict()
    for k, v in own.items():
        if k not in sd and k.rsplit(".", 1)[-1] in ("running_mean", "running_var"):
            raise MissingStatisticsError(
                f"BatchNorm {k.rsplit('.', 1)[0]} has no running statistics in the checkpoint "
                "(trained with track_running_stats=False?); cannot fold it: re-estimate the statistics and save again")
        if k not in sd:
            raise CheckpointMismatchError(f"checkpoint is missing key {k!r} (expected shape {tuple(v.shape)})")
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointMismatchError(
                f"checkpoint key {k!r} has shape {tuple(sd[k].shape)}, the model expects {tuple(v.shape)}")
    for k in sd:
        if k not in own:
            raise CheckpointMismatchError(f"checkpoint has unexpected key {k!r} (found shape {tuple(sd[k].shape)})")
    model.load_state_dict(sd, strict=True)


def load_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False,
                    config: ModelConfig | None = None, **overrides) -> tuple[SpikeVideoFormer, dict]:
    """Load ours or a published checkpoint into an eval-mode model; returns ``(model, ckpt)``.

    ``ckpt[ASSUMPTIONS_KEY]``: the facts that had to be assumed (see :func:`infer_config`).
    """
    notes: list[str] = []
    obj = read_checkpoint(path, allow_pickle=allow_pickle)
    sd = extract_state_dict(obj)
    if config is None:
        if isinstance(obj.get("config"), dict):
            try:
                config = ModelConfig.from_dict(obj["config"])
                if "attention" in overrides:
                    want = attention_kind(overrides["attention"])
                    if want != config.attention:
                        raise CheckpointMismatchError(
                            f"--attention {overrides['attention']} contradicts the checkpoint's recorded "
                            f"attention {published_att_mode(config.attention) or config.attention}")
                if overrides:
                    config = config.replace(**overrides)
            except (ConfigError, TypeError) as e:
                raise CheckpointError(f"checkpoint config is invalid: {e}") from None
        else:
            config = infer_config(sd, obj.get("args"), notes, **overrides)
    model = SpikeVideoFormer(config)
    load_state_dict_checked(model, sd)
    obj[ASSUMPTIONS_KEY] = notes
    return model.eval(), obj
