"""Moving Digits: a small, offline, deterministic video classification dataset.

Recipe
------
Source images are scikit-learn's bundled 8x8 handwritten digits
(:func:`sklearn.datasets.load_digits`, 1797 images, no download), restricted to
the classes ``0 .. n_digits-1``. Their 0..16 intensities are scaled to [0, 1]
and each image is upsampled by pixel replication (``np.kron``) to a square
digit of ``8 * digit_scale`` pixels.

One sample is a clip of ``T`` frames of size ``frame_size x frame_size`` with
one channel. The background is 0. In frame ``t`` (``t = 0 .. T-1``) the digit's
top-left corner is at::

    (y, x) = (y0 + t * step * dy, x0 + t * step * dx)

where ``(dy, dx)`` is the unit vector of the clip's direction (``right`` is
``(0, +1)``, ``left`` ``(0, -1)``, ``down`` ``(+1, 0)``, ``up`` ``(-1, 0)``;
the diagonals ``down-right`` etc. combine them) and ``step`` is an integer
number of pixels per frame drawn uniformly from ``[step_min, step_max]``. The
start ``(y0, x0)`` is drawn uniformly from all starts whose whole trajectory
stays inside the frame: per axis, with ``L = frame_size - digit_size`` and
``travel = (T - 1) * step``, ``c0`` is in ``[0, L - travel]`` when moving
towards +, ``[travel, L]`` when moving towards -, and ``[0, L]`` when not moving
along that axis. The digit is therefore never clipped. Optionally, Gaussian
noise of standard deviation ``noise_std`` is added to every pixel and the
result clipped to [0, 1].

Label
-----
``label = digit_class * len(directions) + direction_index`` (for example with
the default directions, ``"3-left"`` is ``3 * 4 + 1 = 13``), so there are
``n_digits * len(directions)`` classes. Classes are balanced: a split of ``N``
clips holds every class ``N // num_classes`` or ``N // num_classes + 1`` times.

Why one frame is not enough
---------------------------
The direction is half of the label, and the digit looks the same in every
frame. Any start in the central box ``[travel, L - travel]`` is possible for
every direction, and for such a start all directions give the identical frame 0
but different labels. Near the borders the start ranges differ, so a single
frame's digit position is weakly informative; with the defaults the best
possible direction accuracy from one frame's position is about 0.35 (chance
0.25; exact enumeration over all starts and steps), while two frames give the
direction exactly.

Splits
------
The source images of each digit class are partitioned once, by ``seed``, into
a train part and a validation part (``val_fraction`` of each class, rounded,
at least one image in each part). Train clips are made only from train images and validation clips
only from validation images, so no handwritten digit is shared between splits.
Clip parameters come from a ``numpy.random.Generator`` seeded with ``seed``
and the split name; global RNG state is never used, so a config fully
determines its data.

Models consume clips time-major, ``[T, B, C, H, W]``; the dataset yields
``[T, C, H, W]`` per sample, so a collated batch is ``[B, T, C, H, W]`` and
:func:`to_time_major` converts it.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import ConfigError

__all__ = [
    "DIRECTIONS",
    "SPLITS",
    "MovingDigits",
    "MovingDigitsConfig",
    "class_names",
    "decode_label",
    "load_digit_images",
    "make_split",
    "make_split_with_sources",
    "render_clip",
    "source_indices",
    "to_time_major",
]

#: Supported direction names -> unit displacement ``(dy, dx)`` in pixels.
DIRECTIONS: Final[dict[str, tuple[int, int]]] = {
    "right": (0, 1),
    "left": (0, -1),
    "down": (1, 0),
    "up": (-1, 0),
    "down-right": (1, 1),
    "down-left": (1, -1),
    "up-right": (-1, 1),
    "up-left": (-1, -1),
    "still": (0, 0),
}

#: Split names accepted by :func:`make_split`.
SPLITS: Final[tuple[str, ...]] = ("train", "val")

_DIGIT_PIXELS: Final = 8  # sklearn digits are 8x8
_DIGIT_MAX: Final = 16.0  # sklearn digits have intensities 0..16
# Stream keys mixed with cfg.seed; fixed so data never changes between versions.
_PARTITION_KEY: Final = 0
_SPLIT_KEYS: Final[dict[str, int]] = {"train": 1, "val": 2}


@dataclass(frozen=True)
class MovingDigitsConfig:
    """Recipe of a Moving Digits dataset; see the module docstring.

    The defaults give 5 digits x 4 directions = 20 classes, which a tiny spiking
    CNN learns to ~99% validation accuracy in minutes on 2 CPU cores;
    ``n_digits=10`` (40 classes) reaches ~95%, limited by recognising unseen
    handwriting, not by the motion. Invalid fields raise
    :class:`~svf_deploy.models.errors.ConfigError` (a ``ValueError``).

    Attributes:
        frame_size: Height and width of each square frame, in pixels.
        T: Number of frames per clip.
        n_digits: Digit classes used: ``0 .. n_digits-1`` (1..10).
        directions: Direction names (keys of :data:`DIRECTIONS`), in label order.
        step_min: Smallest motion, in pixels per frame (>= 1).
        step_max: Largest motion, in pixels per frame (>= step_min).
        digit_scale: Integer upsampling of the 8x8 digit (digit is ``8*scale`` px).
        noise_std: Std of additive Gaussian pixel noise (0 disables it).
        val_fraction: Fraction of each class's source images held out for val.
        seed: Seed of the image partition and of all clip parameters.
        n_train: Number of training clips.
        n_val: Number of validation clips.
    """

    frame_size: int = 32
    T: int = 4
    n_digits: int = 5
    directions: tuple[str, ...] = ("still", "right")
    step_min: int = 2
    step_max: int = 3
    digit_scale: int = 2
    noise_std: float = 0.0
    wrap: bool = False
    val_fraction: float = 0.2
    seed: int = 0
    n_train: int = 5000
    n_val: int = 1000

    def __post_init__(self) -> None:
        # Lists (e.g. from JSON) become tuples so the config stays hashable.
        if isinstance(self.directions, list):
            object.__setattr__(self, "directions", tuple(self.directions))
        for name in ("frame_size", "T", "n_digits", "step_min", "step_max",
                     "digit_scale", "seed", "n_train", "n_val"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(
                    f"MovingDigitsConfig.{name}={value!r} must be an int; pass an integer."
                )
        for name in ("noise_std", "val_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
                raise ConfigError(
                    f"MovingDigitsConfig.{name}={value!r} must be a number; pass a float."
                )
        if self.T < 2:
            raise ConfigError(
                f"MovingDigitsConfig.T={self.T} is too small: the label needs motion, "
                "so use T >= 2."
            )
        if not 1 <= self.n_digits <= 10:
            raise ConfigError(
                f"MovingDigitsConfig.n_digits={self.n_digits} is out of range; "
                "use 1..10 (digits 0..n_digits-1)."
            )
        if not isinstance(self.directions, tuple) or len(self.directions) < 2:
            raise ConfigError(
                f"MovingDigitsConfig.directions={self.directions!r} needs at least two "
                f"names; choose from {sorted(DIRECTIONS)}."
            )
        unknown = [d for d in self.directions if d not in DIRECTIONS]
        if unknown:
            raise ConfigError(
                f"MovingDigitsConfig.directions has unknown name(s) {unknown!r}; "
                f"choose from {sorted(DIRECTIONS)}."
            )
        if len(set(self.directions)) != len(self.directions):
            raise ConfigError(
                f"MovingDigitsConfig.directions={self.directions!r} repeats a name; "
                "list each direction once."
            )
        if self.step_min < 1:
            raise ConfigError(
                f"MovingDigitsConfig.step_min={self.step_min} must be >= 1 so the digit moves."
            )
        if self.step_max < self.step_min:
            raise ConfigError(
                f"MovingDigitsConfig.step_max={self.step_max} is below "
                f"step_min={self.step_min}; set step_max >= step_min."
            )
        if self.digit_scale < 1:
            raise ConfigError(
                f"MovingDigitsConfig.digit_scale={self.digit_scale} must be >= 1."
            )
        needed = self.digit_size + self.max_travel
        if self.wrap:
            if not (self.digit_size <= self.frame_size and self.step_max < self.frame_size):
                raise ConfigError(
                    f"MovingDigitsConfig: with wrap=True the {self.digit_size}px digit and a "
                    f"step of up to {self.step_max}px must fit a frame_size={self.frame_size}.")
        elif self.frame_size < needed:
            raise ConfigError(
                f"MovingDigitsConfig.frame_size={self.frame_size} is too small for a "
                f"{self.digit_size}px digit travelling up to {self.max_travel}px; use "
                f"frame_size >= {needed}, or lower T, step_max or digit_scale."
            )
        if not (self.noise_std >= 0.0 and np.isfinite(self.noise_std)):
            raise ConfigError(
                f"MovingDigitsConfig.noise_std={self.noise_std} must be finite and >= 0."
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(
                f"MovingDigitsConfig.val_fraction={self.val_fraction} must be in (0, 1), "
                "e.g. 0.2."
            )
        if self.seed < 0:
            raise ConfigError(f"MovingDigitsConfig.seed={self.seed} must be >= 0.")
        if self.n_train < self.num_classes:
            raise ConfigError(
                f"MovingDigitsConfig.n_train={self.n_train} is below num_classes="
                f"{self.num_classes}; use n_train >= {self.num_classes} so every class "
                "is in the training set."
            )
        if self.n_val < 1:
            raise ConfigError(f"MovingDigitsConfig.n_val={self.n_val} must be >= 1.")

    @property
    def digit_size(self) -> int:
        """Side of the upsampled digit, in pixels."""
        return _DIGIT_PIXELS * self.digit_scale

    @property
    def max_travel(self) -> int:
        """Largest displacement between frame 0 and frame T-1, per axis, in pixels."""
        return (self.T - 1) * self.step_max

    @property
    def num_classes(self) -> int:
        """``n_digits * len(directions)``."""
        return self.n_digits * len(self.directions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields (``directions`` as a list)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "directions":
                out[f.name] = list(value)
            elif f.name in ("noise_std", "val_fraction"):
                out[f.name] = float(value)
            elif f.name == "wrap":
                out[f.name] = bool(value)
            else:
                out[f.name] = int(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MovingDigitsConfig:
        """Inverse of :meth:`to_dict`; missing keys take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"MovingDigitsConfig.from_dict got unknown key(s) {unknown}; "
                f"valid keys are {sorted(known)}."
            )
        kwargs = dict(data)
        if "directions" in kwargs:
            kwargs["directions"] = tuple(kwargs["directions"])
        return cls(**kwargs)


@functools.lru_cache(maxsize=1)
def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """All sklearn digits as read-only arrays: images float32 [1797, 8, 8] in
    [0, 1] and targets int64 [1797]."""
    from sklearn.datasets import load_digits  # local: sklearn import is slow

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / _DIGIT_MAX
    targets = np.asarray(bunch.target, dtype=np.int64)
    images.setflags(write=False)
    targets.setflags(write=False)
    return images, targets


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; use one of {SPLITS}.")


def _partition(cfg: MovingDigitsConfig) -> dict[str, list[np.ndarray]]:
    """Per split, per digit class: sorted indices into :func:`load_digit_images`."""
    _, targets = load_digit_images()
    rng = np.random.default_rng([cfg.seed, _PARTITION_KEY])
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    for digit in range(10):  # always all 10, so a class's split ignores n_digits
        idx = rng.permutation(np.flatnonzero(targets == digit))
        n_val = min(len(idx) - 1, max(1, round(cfg.val_fraction * len(idx))))
        parts["val"].append(np.sort(idx[:n_val]))
        parts["train"].append(np.sort(idx[n_val:]))
    return parts


def source_indices(cfg: MovingDigitsConfig, split: str) -> np.ndarray:
    """Indices into ``load_digits()`` of the images that ``split`` may use
    (digits ``0 .. n_digits-1`` only), sorted, int64."""
    _check_split(split)
    return np.sort(np.concatenate(_partition(cfg)[split][: cfg.n_digits]))


def decode_label(cfg: MovingDigitsConfig, label: int) -> tuple[int, str]:
    """``label -> (digit_class, direction_name)``."""
    if not 0 <= label < cfg.num_classes:
        raise ValueError(f"label={label} is outside 0..{cfg.num_classes - 1}.")
    digit, d = divmod(int(label), len(cfg.directions))
    return digit, cfg.directions[d]


def class_names(cfg: MovingDigitsConfig) -> list[str]:
    """Name of every label, in label order, e.g. ``"3-left"``."""
    return [f"{digit}-{name}" for digit in range(cfg.n_digits) for name in cfg.directions]


def _upsampled(cfg: MovingDigitsConfig, idx: np.ndarray) -> np.ndarray:
    images, _ = load_digit_images()
    block = np.ones((cfg.digit_scale, cfg.digit_scale), dtype=np.float32)
    return np.kron(images[idx], block[None])  # [N, s*8, s*8]


def _render(
    cfg: MovingDigitsConfig,
    digits: np.ndarray,
    y0: np.ndarray,
    x0: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    step: np.ndarray,
) -> np.ndarray:
    """Paint ``digits`` [N, d, d] along their trajectories -> [N, T, H, W] float32."""
    n, d = len(digits), cfg.digit_size
    clips = np.zeros((n, cfg.T, cfg.frame_size, cfg.frame_size), dtype=np.float32)
    rows = np.arange(n)[:, None, None]
    offs = np.arange(d)
    size = cfg.frame_size
    for t in range(cfg.T):
        ys = (y0 + t * step * dy)[:, None] + offs
        xs = (x0 + t * step * dx)[:, None] + offs
        if cfg.wrap:  # toroidal frame: what leaves one edge enters the opposite one
            ys, xs = ys % size, xs % size
        clips[rows, t, ys[:, :, None], xs[:, None, :]] = digits
    return clips


def render_clip(
    cfg: MovingDigitsConfig,
    source: int,
    start: tuple[int, int],
    direction: str,
    step: int,
) -> torch.Tensor:
    """One noise-free clip [T, 1, H, W] of image ``source`` (an index into
    ``load_digits()``) starting with its top-left corner at ``start = (y0, x0)``.

    The trajectory must stay inside the frame (else ValueError). Any start in
    ``[travel, L - travel]`` on both axes is valid for every direction.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} is unknown; choose from {sorted(DIRECTIONS)}.")
    dy, dx = DIRECTIONS[direction]
    y0, x0 = start
    lim = cfg.frame_size - cfg.digit_size
    for c0, dc in ((y0, dy), (x0, dx)):
        end = c0 + (cfg.T - 1) * step * dc
        if cfg.wrap:
            if not 0 <= c0 < cfg.frame_size:
                raise ValueError(f"start={start} must lie in 0..{cfg.frame_size - 1} (wrap=True)")
        elif not (0 <= c0 <= lim and 0 <= end <= lim):
            raise ValueError(
                f"start={start} with direction={direction!r}, step={step} leaves the "
                f"frame; top-left coordinates must stay within 0..{lim}."
            )
    clip = _render(
        cfg,
        _upsampled(cfg, np.array([source])),
        *(np.array([v]) for v in (y0, x0, dy, dx, step)),
    )
    return torch.from_numpy(clip[0]).unsqueeze(1)


def _draw_start(
    rng: np.random.Generator, cfg: MovingDigitsConfig, dc: np.ndarray, step: np.ndarray
) -> np.ndarray:
    """Uniform start coordinate per clip such that the trajectory along this axis
    (direction component ``dc`` in {-1, 0, 1}) stays inside the frame."""
    if cfg.wrap:  # every position is valid on a torus: one frame tells nothing of the motion
        return rng.integers(0, cfg.frame_size, size=len(dc))
    lim = cfg.frame_size - cfg.digit_size
    travel = (cfg.T - 1) * step
    lo = np.where(dc < 0, travel, 0)
    hi = np.where(dc > 0, lim - travel, lim)
    return rng.integers(lo, hi + 1)


def make_split_with_sources(
    cfg: MovingDigitsConfig, split: str, limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Like :func:`make_split`, also returning each clip's source image index
    into ``load_digits()`` as int64 [N]."""
    _check_split(split)
    n = cfg.n_train if split == "train" else cfg.n_val
    n_out = split_size(cfg, split, limit)
    pools = _partition(cfg)[split]
    rng = np.random.default_rng([cfg.seed, _SPLIT_KEYS[split]])

    # Balanced labels in random order.
    labels = rng.permutation(np.arange(n, dtype=np.int64) % cfg.num_classes)
    digit, dir_idx = np.divmod(labels, len(cfg.directions))
    sources = np.empty(n, dtype=np.int64)
    for c in range(cfg.n_digits):
        mask = digit == c
        sources[mask] = rng.choice(pools[c], size=int(mask.sum()))
    vec = np.array([DIRECTIONS[d] for d in cfg.directions], dtype=np.int64)[dir_idx]
    step = rng.integers(cfg.step_min, cfg.step_max + 1, size=n)
    y0 = _draw_start(rng, cfg, vec[:, 0], step)
    x0 = _draw_start(rng, cfg, vec[:, 1], step)
    still = (vec == 0).all(axis=1)
    movers = [DIRECTIONS[d] for d in cfg.directions if DIRECTIONS[d] != (0, 0)]
    if still.any() and movers and not cfg.wrap:
        # a still digit sits where some mover would be at a random frame, so one frame's
        # position says (almost) nothing about whether the digit moves
        k = int(still.sum())
        mv = np.array(movers, dtype=np.int64)[rng.integers(0, len(movers), size=k)]
        s = rng.integers(cfg.step_min, cfg.step_max + 1, size=k)
        t = rng.integers(0, cfg.T, size=k)
        y0[still] = _draw_start(rng, cfg, mv[:, 0], s) + t * s * mv[:, 0]
        x0[still] = _draw_start(rng, cfg, mv[:, 1], s) + t * s * mv[:, 1]

    # every clip's draws above are made for the whole split; only the first n_out are
    # rendered, and the noise is drawn in clip order, so they equal the split's first n_out
    labels, sources = labels[:n_out], sources[:n_out]
    clips = _render(cfg, _upsampled(cfg, sources), y0[:n_out], x0[:n_out], vec[:n_out, 0], vec[:n_out, 1],
                    step[:n_out])
    if cfg.noise_std > 0:
        clips += rng.normal(0.0, cfg.noise_std, size=clips.shape).astype(np.float32)
        np.clip(clips, 0.0, 1.0, out=clips)
    return (
        torch.from_numpy(clips).unsqueeze(2),
        torch.from_numpy(labels),
        torch.from_numpy(sources),
    )


def split_size(cfg: MovingDigitsConfig, split: str, limit: int | None = None) -> int:
    """Clips :func:`make_split` returns for ``split``: ``N = cfg.n_train`` or ``cfg.n_val``,
    at most ``limit`` (``>= 1``) when given."""
    _check_split(split)
    n = cfg.n_train if split == "train" else cfg.n_val
    if limit is None:
        return n
    if limit < 1:
        raise ValueError(f"limit must be >= 1 clip, got {limit}")
    return min(n, int(limit))


def split_bytes(cfg: MovingDigitsConfig, split: str, limit: int | None = None) -> int:
    """Bytes of the float32 clips :func:`make_split` returns for ``split`` (``limit``: at
    most that many clips): ``N * T * H * W * 4``."""
    return split_size(cfg, split, limit) * cfg.T * cfg.frame_size * cfg.frame_size * 4


def make_split(cfg: MovingDigitsConfig, split: str, limit: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate one split: clips float32 [N, T, 1, H, W] in [0, 1] and labels
    int64 [N] (``N = cfg.n_train`` or ``cfg.n_val``). Deterministic in ``cfg``.

    ``limit``: only the split's first ``min(limit, N)`` clips, exactly equal to the first
    ones of the whole split (every random draw is still made for all ``N``; only the
    rendering, the memory and time that grow with ``H * W``, is limited)."""
    clips, labels, _ = make_split_with_sources(cfg, split, limit)
    return clips, labels


class MovingDigits(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Map-style dataset over one split; items are ``(clip [T, 1, H, W], label)``.

    The split is generated in memory once, at construction.
    """

    def __init__(self, cfg: MovingDigitsConfig | None = None, split: str = "train") -> None:
        self.cfg = cfg if cfg is not None else MovingDigitsConfig()
        self.split = split
        self.clips, self.labels = make_split(self.cfg, split)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.clips[i], self.labels[i]

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    @property
    def class_names(self) -> list[str]:
        return class_names(self.cfg)


def to_time_major(batch: torch.Tensor) -> torch.Tensor:
    """``[B, T, C, H, W] -> [T, B, C, H, W]`` (contiguous), the models' input layout."""
    if batch.dim() != 5:
        raise ValueError(
            f"to_time_major expects a [B, T, C, H, W] batch, got shape {tuple(batch.shape)}."
        )
    return batch.transpose(0, 1).contiguous()
