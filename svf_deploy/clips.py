"""Validation clips for ``svf-compile``: real video, clip files, a recipe, or synthetic noise.

Every source yields clips ``[T, C, H, W]`` of raw frames in ``[0, 1]`` (pixel / 255) at the
checkpoint's ``T`` and frame size; input normalisation belongs to the model (it is
folded into the first layer), never to the data. Sources, by ``--data PATH``:

* a **folder of video files** (``.mp4 .avi .mkv .webm .mov .m4v .mpg .mpeg .ogv``), decoded
  with PyAV. Each video becomes one clip: ``T`` frames sampled uniformly over the whole
  video (frame ``floor((i + 1/2) n / T)`` of ``n``, the segment centres, as TSN-style
  samplers do), converted to the model's channels (RGB, or luma ``0.299 R + 0.587 G +
  0.114 B`` for 1 channel) and resized to ``H x W`` (bilinear, antialiased). Labels,
  optional: sub-folders named by integer class (``PATH/3/clip.mp4``), or a ``labels.csv``
  of ``file,label`` lines next to the videos.
* an **``.npz``** with ``clips`` ``[N, T', C, H', W']`` (``uint8`` 0..255, or float in
  ``[0, 1]``) and optional ``labels`` ``[N]``; or a **``.pt``/``.pth``** dict with the same
  keys (loaded with ``weights_only=True``). ``T' >= T`` frames are sampled as above, other
  frame sizes resized.

Problems are a :class:`~svf_deploy.models.errors.DataError` naming the file: an unreadable
or undecodable file, a video or clip shorter than ``T``, a wrong channel count, float
values outside ``[0, 1]``, labels that are not integers in ``0..num_classes-1`` or whose
count differs from the clips'. Decoded clips are kept as ``uint8`` (a quarter of the
float size) and converted one batch at a time.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .models.errors import DataError

__all__ = ["ClipSet", "VIDEO_EXTENSIONS", "SYNTHETIC_DEFAULT", "load_clips", "synthetic_clips",
           "tensor_clips", "sample_indices"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv")
#: synthetic clips made when a checkpoint has no data recipe and no --data is given
SYNTHETIC_DEFAULT = 8


class ClipSet:
    """Clips ``[N, T, C, H, W]`` in ``[0, 1]``, materialised per index or slice.

    ``clips[i]`` is one clip ``[T, C, H, W]``; ``clips[a:b]`` a float32 batch ``[n, T, C, H,
    W]``. ``labels``: int64 ``[N]`` or None. ``kind``: ``data``, ``recipe`` or ``synthetic``;
    ``source``: one line for the CLI and the report.
    """

    def __init__(self, n: int, shape: tuple[int, int, int, int], kind: str, source: str,
                 labels: torch.Tensor | None, get):
        self._n, self.clip_shape, self.kind, self.source = n, tuple(shape), kind, source
        self.labels = labels
        self._get = get

    def __len__(self) -> int:
        return self._n

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._n, *self.clip_shape)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            ids = range(*idx.indices(self._n))
            if not ids:
                return torch.empty(0, *self.clip_shape)
            return torch.stack([self._get(i) for i in ids])
        i = int(idx)
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._get(i % self._n)

    def describe(self) -> dict:
        return {"kind": self.kind, "source": self.source, "clips": self._n,
                "labelled": self.labels is not None, "clip_shape": list(self.clip_shape)}


def sample_indices(n: int, T: int) -> np.ndarray:
    """``T`` frame indices spread uniformly over ``n >= T`` frames (segment centres)."""
    return np.floor((np.arange(T) + 0.5) * n / T).astype(np.int64)


def _resize(frames: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """``[T, C, h, w]`` float -> ``[T, C, H, W]`` (bilinear, antialiased), clamped to [0, 1]
    (interpolation overshoot only; inputs are already in range)."""
    if tuple(frames.shape[-2:]) == tuple(hw):
        return frames
    y = F.interpolate(frames, size=hw, mode="bilinear", align_corners=False, antialias=True)
    return y.clamp_(0.0, 1.0)


def _to_channels(rgb: np.ndarray, c: int, who: str) -> np.ndarray:
    """``[..., 3]`` uint8 RGB -> ``[..., c]`` (c = 3, or 1 as luma)."""
    if c == 3:
        return rgb
    if c == 1:
        luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    raise DataError(f"{who}: the model takes {c}-channel frames; video gives RGB (3) or luma (1) only")


def _decode_video(path: Path, T: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """One video file -> ``[T, C, H, W]`` uint8."""
    import av  # PyAV: FFmpeg bindings

    c, h, w = shape
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: has no video stream")
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - FFmpeg/PyAV errors of every kind
        raise DataError(f"{path}: cannot decode video ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        "is it a complete video file?") from None
    if len(frames) < T:
        raise DataError(f"{path}: video has {len(frames)} frames, the model needs T={T}; "
                        "use longer videos or compile with --T")
    idx = sample_indices(len(frames), T)
    x = np.stack([_to_channels(frames[i], c, str(path)) for i in idx])  # [T, h, w, C]
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    return torch.round(_resize(x, (h, w)) * 255).to(torch.uint8)


def _labels(raw, n: int, num_classes: int | None, who: str) -> torch.Tensor:
    lab = torch.as_tensor(np.asarray(raw))
    if lab.dim() != 1 or lab.shape[0] != n:
        raise DataError(f"{who}: {tuple(lab.shape)} labels for {n} clips; give one integer label per clip")
    if lab.dtype.is_floating_point or lab.dtype == torch.bool:
        if lab.dtype == torch.bool or not bool(torch.all(lab == torch.round(lab))):
            raise DataError(f"{who}: labels must be integer class indices, got {lab.dtype}")
    lab = lab.to(torch.int64)
    if n and (int(lab.min()) < 0 or (num_classes is not None and int(lab.max()) >= num_classes)):
        raise DataError(f"{who}: labels span {int(lab.min())}..{int(lab.max())}, the model has "
                        f"{num_classes} classes (0..{(num_classes or 1) - 1})")
    return lab


def _video_folder(path: Path, T: int, shape, num_classes, limit) -> ClipSet:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not files:
        raise DataError(f"{path}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
    labels = None
    csv_path = path / "labels.csv"
    if csv_path.exists():
        table: dict[str, str] = {}
        try:
            with open(csv_path, newline="") as f:
                for row in csv.reader(f):
                    if row and not row[0].startswith("#"):
                        if len(row) != 2:
                            raise DataError(f"{csv_path}: line {row!r} is not 'file,label'")
                        table[row[0].strip()] = row[1].strip()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{csv_path}: unreadable ({type(e).__name__})") from None
        missing = [p for p in files if str(p.relative_to(path)) not in table and p.name not in table]
        if missing:
            raise DataError(f"{csv_path}: no label for {missing[0].relative_to(path)} "
                            f"({len(missing)} of {len(files)} videos unlabelled)")
        raw = [table.get(str(p.relative_to(path)), table.get(p.name)) for p in files]
        if not all(r.lstrip("-").isdigit() for r in raw):
            raise DataError(f"{csv_path}: labels must be integers")
        labels = [int(r) for r in raw]
        who = str(csv_path)
    elif all(p.parent != path for p in files):
        dirs = {p.parent.relative_to(path).parts[0] for p in files}
        if all(d.isdigit() for d in dirs):  # PATH/<class>/<video>
            labels = [int(p.relative_to(path).parts[0]) for p in files]
            who = f"{path} (class sub-folders)"
    if limit is not None:
        files = files[:limit]
        labels = None if labels is None else labels[:limit]
    lab = None if labels is None else _labels(labels, len(files), num_classes, who)
    data = torch.stack([_decode_video(p, T, shape) for p in files])  # validates every file first
    return ClipSet(len(files), (T, *shape), "data",
                   f"{len(files)} videos from {path} (PyAV, {T} frames sampled uniformly, "
                   f"resized to {shape[1]}x{shape[2]})", lab,
                   lambda i: data[i].float() / 255.0)


def _clip_file(path: Path, T: int, shape, num_classes, limit) -> ClipSet:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                obj = {k: z[k] for k in z.files}
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means an unusable file
        raise DataError(f"{path}: cannot read clips ({type(e).__name__}); expected a {suffix} "
                        "with 'clips' [N, T, C, H, W] and optional 'labels' [N]") from None
    if not isinstance(obj, dict) or "clips" not in obj:
        raise DataError(f"{path}: no 'clips' entry; expected 'clips' [N, T, C, H, W] and optional 'labels' [N]")
    clips = torch.as_tensor(np.asarray(obj["clips"]) if not isinstance(obj["clips"], torch.Tensor)
                            else obj["clips"])
    if clips.dim() != 5:
        raise DataError(f"{path}: clips have shape {tuple(clips.shape)}, expected [N, T, C, H, W]")
    n, t, c = clips.shape[:3]
    if c != shape[0]:
        raise DataError(f"{path}: clips have {c} channels, the model takes {shape[0]}")
    if t < T:
        raise DataError(f"{path}: clips have {t} frames, the model needs T={T}; compile with --T {t} "
                        "or give longer clips")
    if clips.dtype == torch.uint8:
        scale = 255.0
    elif clips.dtype.is_floating_point:
        scale = 1.0
        lo, hi = float(clips.min()), float(clips.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise DataError(f"{path}: float clip values span [{lo:.4g}, {hi:.4g}], expected raw frames "
                            "in [0, 1] (or uint8 0..255); normalisation is the model's (--normalize)")
    else:
        raise DataError(f"{path}: clips have dtype {clips.dtype}; use uint8 (0..255) or float in [0, 1]")
    if limit is not None:
        clips = clips[:limit]
    lab = None
    if obj.get("labels") is not None:
        lab = _labels(obj["labels"], n, num_classes, str(path))[: clips.shape[0]]
    hw = (shape[1], shape[2])
    same = t == T and tuple(clips.shape[-2:]) == hw
    if not same:  # sample T of t frames, resize; uint8 stays uint8 codes, float stays float
        idx = torch.from_numpy(sample_indices(t, T))
        out = [_resize(clips[i][idx].float() / scale, hw) for i in range(clips.shape[0])]
        clips = torch.stack([torch.round(o * 255).to(torch.uint8) for o in out]) if scale == 255.0 \
            else torch.stack(out)
    elif scale == 1.0:
        clips = clips.float()
    data, div = clips, scale
    note = "" if same else \
        f", {T} of {t} frames sampled uniformly, resized to {hw[0]}x{hw[1]}"
    return ClipSet(int(data.shape[0]), (T, *shape), "data", f"{data.shape[0]} clips from {path}{note}",
                   lab, (lambda i: data[i].float() / 255.0) if div == 255.0 else (lambda i: data[i]))


def load_clips(path: str | Path, T: int, shape: tuple[int, int, int], num_classes: int | None = None,
               limit: int | None = None) -> ClipSet:
    """Read ``--data PATH`` (see the module docstring) as clips ``[T, *shape]``.

    ``limit``: use only the first ``limit`` clips (sorted file order for folders).
    Raises :class:`DataError` naming the file on any problem.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (--data takes a folder of videos, .npz or .pt)")
    if path.is_dir():
        return _video_folder(path, T, tuple(shape), num_classes, limit)
    if path.suffix.lower() in (".npz", ".pt", ".pth"):
        return _clip_file(path, T, tuple(shape), num_classes, limit)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        raise DataError(f"{path}: give the folder that holds the videos, not one video file")
    raise DataError(f"{path}: unknown data file type {path.suffix!r}; use a folder of videos, .npz or .pt")


def tensor_clips(clips: torch.Tensor, labels: torch.Tensor | None, kind: str, source: str) -> ClipSet:
    """Wrap an in-memory ``[N, T, C, H, W]`` tensor (e.g. a data recipe's split)."""
    return ClipSet(int(clips.shape[0]), tuple(clips.shape[1:]), kind, source, labels,
                   lambda i: clips[i])


def synthetic_clips(n: int, T: int, shape: tuple[int, int, int], seed: int = 0) -> ClipSet:
    """``n`` clips of uniform noise in [0, 1), each generated on demand from ``seed + i``."""

    def get(i: int) -> torch.Tensor:
        return torch.rand(T, *shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + i))

    return ClipSet(n, (T, *shape), "synthetic",
                   f"SYNTHETIC: {n} uniform-noise clips (no --data and no data recipe in the "
                   "checkpoint; accuracy cannot be measured, give --data for real clips)", None, get)
