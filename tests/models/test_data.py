"""Tests of the Moving Digits video dataset (``svf_deploy.models.data``)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from svf_deploy.models.data import (
    DIRECTIONS,
    MovingDigits,
    MovingDigitsConfig,
    class_names,
    decode_label,
    load_digit_images,
    make_split,
    make_split_with_sources,
    render_clip,
    source_indices,
    split_bytes,
    to_time_major,
)
from svf_deploy.models.errors import ConfigError

FOUR = ("right", "left", "down", "up")
SMALL = MovingDigitsConfig(n_train=400, n_val=120, directions=FOUR, step_min=1, step_max=2)


def _positions(cfg: MovingDigitsConfig, clips: torch.Tensor, sources: torch.Tensor) -> np.ndarray:
    """Top-left corner (y, x) of the digit in every frame of noise-free clips -> [N, T, 2].

    The first non-zero row/column of a frame minus that of the upsampled source image.
    """
    images, _ = load_digit_images()
    s = cfg.digit_scale
    up = np.kron(images[sources.numpy()], np.ones((s, s), dtype=np.float32)[None]) > 0
    src_off = np.stack([up.any(2).argmax(1), up.any(1).argmax(1)], axis=1)  # [N, 2]
    mask = clips[:, :, 0].numpy() > 0  # [N, T, H, W]
    first = np.stack([mask.any(3).argmax(2), mask.any(2).argmax(2)], axis=2)  # [N, T, 2]
    return first - src_off[:, None, :]


# --- determinism ----------------------------------------------------------------------


def test_same_config_gives_identical_data() -> None:
    for split in ("train", "val"):
        a = make_split_with_sources(SMALL, split)
        b = make_split_with_sources(MovingDigitsConfig.from_dict(SMALL.to_dict()), split)
        for x, y in zip(a, b):
            assert torch.equal(x, y)


def test_different_seed_gives_different_data() -> None:
    other = MovingDigitsConfig(**{**SMALL.to_dict(), "seed": 1})
    xa, ya = make_split(SMALL, "train")
    xb, yb = make_split(other, "train")
    assert not torch.equal(xa, xb)
    assert not torch.equal(ya, yb)
    assert not np.array_equal(source_indices(SMALL, "val"), source_indices(other, "val"))


def test_global_rng_state_is_untouched() -> None:
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    make_split(MovingDigitsConfig(n_train=100, n_val=20, noise_std=0.1), "train")
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert np_state[0] == after[0] and np.array_equal(np_state[1], after[1])


# --- shapes, values, labels -------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "val"])
def test_shapes_dtypes_and_range(split: str) -> None:
    clips, labels = make_split(SMALL, split)
    n = SMALL.n_train if split == "train" else SMALL.n_val
    assert clips.shape == (n, SMALL.T, 1, SMALL.frame_size, SMALL.frame_size)
    assert clips.dtype == torch.float32 and labels.dtype == torch.int64
    assert labels.shape == (n,)
    assert clips.min() >= 0.0 and clips.max() <= 1.0
    assert clips.max() == 1.0  # the digits' 16 maps to 1
    # Noise-free pixels are the digits' 0..16 levels scaled to [0, 1].
    levels = clips * 16
    assert torch.equal(levels, levels.round())


def test_labels_balanced_and_every_class_in_train() -> None:
    _, labels = make_split(SMALL, "train")
    assert labels.min() >= 0 and labels.max() < SMALL.num_classes
    counts = torch.bincount(labels, minlength=SMALL.num_classes)
    assert counts.min() >= 1
    assert counts.max() - counts.min() <= 1


def test_label_matches_digit_class_of_source() -> None:
    _, targets = load_digit_images()
    for split in ("train", "val"):
        _, labels, sources = make_split_with_sources(SMALL, split)
        digit = labels // len(SMALL.directions)
        assert torch.equal(digit, torch.from_numpy(targets[sources.numpy()]))


# --- train / val separation --------------------------------------------------------------


def test_no_source_image_shared_between_train_and_val() -> None:
    cfg = MovingDigitsConfig(n_digits=10, n_train=3000, n_val=800)
    _, _, src_train = make_split_with_sources(cfg, "train")
    _, _, src_val = make_split_with_sources(cfg, "val")
    assert not set(src_train.tolist()) & set(src_val.tolist())
    pool_train, pool_val = source_indices(cfg, "train"), source_indices(cfg, "val")
    assert not set(pool_train.tolist()) & set(pool_val.tolist())
    assert set(src_train.tolist()) <= set(pool_train.tolist())
    assert set(src_val.tolist()) <= set(pool_val.tolist())
    # Together the pools hold every image of the used classes once.
    _, targets = load_digit_images()
    assert sorted(np.concatenate([pool_train, pool_val]).tolist()) == np.flatnonzero(targets < 10).tolist()
    assert 0.15 < len(pool_val) / len(targets) < 0.25


def test_image_partition_does_not_depend_on_n_digits() -> None:
    """Growing n_digits must not move an image of an already used class across splits."""
    few, many = MovingDigitsConfig(n_digits=3), MovingDigitsConfig(n_digits=10)
    _, targets = load_digit_images()
    for split in ("train", "val"):
        many_idx = source_indices(many, split)
        assert np.array_equal(source_indices(few, split), many_idx[targets[many_idx] < 3])


# --- geometry and motion --------------------------------------------------------------------


def test_digit_stays_inside_frame() -> None:
    """Without noise each frame holds the whole upsampled digit: its total intensity."""
    images, _ = load_digit_images()
    clips, _, sources = make_split_with_sources(SMALL, "train")
    per_frame = clips.sum(dim=(2, 3, 4)).double()  # [N, T]
    expected = torch.from_numpy(images[sources.numpy()].sum(axis=(1, 2))).double() * SMALL.digit_scale**2
    torch.testing.assert_close(per_frame, expected[:, None].expand_as(per_frame), rtol=1e-6, atol=1e-4)


def test_motion_matches_label_direction_and_step() -> None:
    cfg = SMALL
    clips, labels, sources = make_split_with_sources(cfg, "train")
    pos = _positions(cfg, clips, sources)
    lim = cfg.frame_size - cfg.digit_size
    assert pos.min() >= 0 and pos.max() <= lim
    delta = np.diff(pos, axis=1)  # [N, T-1, 2]
    assert (delta == delta[:, :1]).all(), "constant velocity"
    unit = np.array([DIRECTIONS[cfg.directions[int(label) % len(cfg.directions)]] for label in labels])
    step = np.abs(delta[:, 0]).max(axis=1)
    assert np.array_equal(delta[:, 0], unit * step[:, None])
    assert set(step.tolist()) == set(range(cfg.step_min, cfg.step_max + 1))


def test_one_frame_does_not_determine_the_label() -> None:
    """Same source image and start: every direction gives the same frame 0, other labels."""
    cfg = MovingDigitsConfig(directions=FOUR + ("still",), step_min=1, step_max=2)
    lo, hi = cfg.max_travel, cfg.frame_size - cfg.digit_size - cfg.max_travel
    start = (lo + hi) // 2, lo
    source = int(source_indices(cfg, "train")[7])
    clips = [render_clip(cfg, source, start, d, cfg.step_max) for d in cfg.directions]
    for clip in clips[1:]:
        assert torch.equal(clip[0], clips[0][0])
    later = {clip[1:].numpy().tobytes() for clip in clips}
    assert len(later) == len(cfg.directions)
    digit = int(load_digit_images()[1][source])
    names = [f"{digit}-{d}" for d in cfg.directions]
    labels = [class_names(cfg).index(name) for name in names]
    assert len(set(labels)) == len(labels)


def test_single_frame_position_is_weak_evidence_of_direction() -> None:
    """Predicting the direction from one frame's digit position (best lookup table fitted
    on train) stays near chance on val; two frames give it exactly."""
    cfg = MovingDigitsConfig(n_train=6000, n_val=2000, directions=FOUR, step_min=1, step_max=2)
    n_dir = len(cfg.directions)
    per_split = {}
    for split in ("train", "val"):
        clips, labels, sources = make_split_with_sources(cfg, split)
        per_split[split] = (_positions(cfg, clips, sources), (labels % n_dir).numpy())
    (pos_tr, dir_tr), (pos_va, dir_va) = per_split["train"], per_split["val"]
    for t in range(cfg.T):
        table: dict[tuple[int, int], np.ndarray] = {}
        for p, d in zip(map(tuple, pos_tr[:, t]), dir_tr):
            table.setdefault(p, np.zeros(n_dir))[d] += 1
        pred = np.array([table[tuple(p)].argmax() if tuple(p) in table else 0 for p in pos_va[:, t]])
        assert (pred == dir_va).mean() < 0.45, f"frame {t} alone reveals the direction"
    unit = np.array([DIRECTIONS[d] for d in cfg.directions])
    sign = np.sign(pos_va[:, 1] - pos_va[:, 0])
    assert np.array_equal((sign[:, None, :] == unit[None]).all(2).argmax(1), dir_va)


@settings(max_examples=25, deadline=None)
@given(
    T=st.integers(2, 6),
    scale=st.integers(1, 3),
    step_min=st.integers(1, 3),
    extra_step=st.integers(0, 2),
    margin=st.integers(0, 8),
    n_digits=st.integers(1, 10),
    all_dirs=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_random_configs_keep_digit_inside(
    T: int, scale: int, step_min: int, extra_step: int, margin: int, n_digits: int, all_dirs: bool, seed: int
) -> None:
    step_max = step_min + extra_step
    directions = tuple(DIRECTIONS) if all_dirs else ("right", "left", "down", "up")
    cfg = MovingDigitsConfig(
        frame_size=8 * scale + (T - 1) * step_max + margin, T=T, n_digits=n_digits,
        directions=directions, step_min=step_min, step_max=step_max, digit_scale=scale,
        seed=seed, n_train=n_digits * len(directions), n_val=16,
    )
    images, _ = load_digit_images()
    for split in ("train", "val"):
        clips, labels, sources = make_split_with_sources(cfg, split)
        assert labels.max() < cfg.num_classes
        sums = clips.sum(dim=(2, 3, 4)).double()
        expected = torch.from_numpy(images[sources.numpy()].sum(axis=(1, 2))).double() * scale**2
        torch.testing.assert_close(sums, expected[:, None].expand_as(sums), rtol=1e-6, atol=1e-4)


def test_render_clip_rejects_starts_that_leave_the_frame() -> None:
    cfg = MovingDigitsConfig()
    lim = cfg.frame_size - cfg.digit_size
    with pytest.raises(ValueError, match="leaves the frame"):
        render_clip(cfg, 0, (0, lim), "right", 1)
    with pytest.raises(ValueError, match="direction"):
        render_clip(cfg, 0, (8, 8), "sideways", 1)


# --- noise ---------------------------------------------------------------------------------


def test_noise_is_deterministic_bounded_and_keeps_labels() -> None:
    noisy = MovingDigitsConfig(**{**SMALL.to_dict(), "noise_std": 0.1})
    a, la, sa = make_split_with_sources(noisy, "train")
    b, lb, sb = make_split_with_sources(noisy, "train")
    clean, lc, sc = make_split_with_sources(SMALL, "train")
    assert torch.equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert not torch.equal(a, clean)
    assert torch.equal(la, lc) and torch.equal(sa, sc)
    assert 0.02 < (a - clean).abs().mean() < 0.1


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"T": 1}, "T"),
        ({"n_digits": 0}, "n_digits"),
        ({"n_digits": 11}, "n_digits"),
        ({"directions": ("right",)}, "directions"),
        ({"directions": ("right", "sideways")}, "directions"),
        ({"directions": ("right", "right")}, "directions"),
        ({"directions": "right"}, "directions"),
        ({"step_min": 0}, "step_min"),
        ({"step_min": 3, "step_max": 2}, "step_max"),
        ({"digit_scale": 0}, "digit_scale"),
        ({"frame_size": 20}, "frame_size"),
        ({"T": 16, "step_max": 2}, "frame_size"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"noise_std": float("nan")}, "noise_std"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"seed": -1}, "seed"),
        ({"n_train": 5}, "n_train"),
        ({"n_val": 0}, "n_val"),
        ({"frame_size": 32.0}, "frame_size"),
        ({"T": True}, "T"),
    ],
)
def test_config_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"MovingDigitsConfig.{field}") as info:
        MovingDigitsConfig(**kwargs)
    assert isinstance(info.value, ConfigError)


def test_config_round_trip_through_json() -> None:
    cfg = MovingDigitsConfig(
        frame_size=40, T=5, n_digits=7, directions=("up", "down-left", "right"),
        step_min=1, step_max=3, digit_scale=2, noise_std=0.05, val_fraction=0.25,
        seed=123, n_train=300, n_val=50,
    )
    data = json.loads(json.dumps(cfg.to_dict()))
    assert MovingDigitsConfig.from_dict(data) == cfg
    assert MovingDigitsConfig.from_dict({}) == MovingDigitsConfig()
    assert hash(MovingDigitsConfig.from_dict(data)) == hash(cfg)
    with pytest.raises(ConfigError, match="unknown key"):
        MovingDigitsConfig.from_dict({**data, "frames": 4})


def test_defaults() -> None:
    cfg = MovingDigitsConfig()
    assert (cfg.frame_size, cfg.T, cfg.digit_size) == (32, 4, 16)
    assert cfg.directions == ("still", "right") and (cfg.step_min, cfg.step_max) == (2, 3)
    assert cfg.num_classes == cfg.n_digits * len(cfg.directions) == 10


def test_class_names_and_decode_label() -> None:
    cfg = MovingDigitsConfig(n_digits=10, directions=FOUR)
    names = class_names(cfg)
    assert len(names) == cfg.num_classes == 40
    assert names[3 * 4 + 1] == "3-left"
    for label, name in enumerate(names):
        digit, direction = decode_label(cfg, label)
        assert name == f"{digit}-{direction}"
    with pytest.raises(ValueError):
        decode_label(cfg, 40)


# --- dataset wrapper and layout ---------------------------------------------------------------


def test_dataset_and_time_major_batches() -> None:
    ds = MovingDigits(SMALL, "val")
    assert len(ds) == SMALL.n_val
    assert ds.num_classes == SMALL.num_classes and ds.class_names == class_names(SMALL)
    clip, label = ds[3]
    assert clip.shape == (SMALL.T, 1, SMALL.frame_size, SMALL.frame_size)
    assert label.dtype == torch.int64
    clips, labels = make_split(SMALL, "val")
    assert torch.equal(clip, clips[3]) and label == labels[3]
    batch, _ = next(iter(DataLoader(ds, batch_size=8)))
    tm = to_time_major(batch)
    assert tm.shape == (SMALL.T, 8, 1, SMALL.frame_size, SMALL.frame_size)
    assert tm.is_contiguous()
    assert torch.equal(tm, batch.permute(1, 0, 2, 3, 4))
    with pytest.raises(ValueError, match=r"\[B, T, C, H, W\]"):
        to_time_major(batch[0])


def test_bad_split_name() -> None:
    with pytest.raises(ValueError, match="split"):
        make_split(SMALL, "test")


def test_generation_is_fast() -> None:
    cfg = MovingDigitsConfig(n_train=4000, n_val=1000)
    load_digit_images()  # sklearn's one-off file read is not generation
    t0 = time.perf_counter()
    make_split(cfg, "train")
    make_split(cfg, "val")
    assert time.perf_counter() - t0 < 2.0


def test_default_task_still_or_moving_needs_two_frames() -> None:
    """Default labels: digit x {still, moving}. One frame's position is weak evidence of
    motion (a still digit sits where a mover would be at a random frame); two frames
    decide it exactly."""
    cfg = MovingDigitsConfig(n_train=4000, n_val=2000)
    per_split = {}
    for split in ("train", "val"):
        clips, labels, sources = make_split_with_sources(cfg, split)
        per_split[split] = (_positions(cfg, clips, sources), (labels % 2).numpy())
    (pos_tr, mv_tr), (pos_va, mv_va) = per_split["train"], per_split["val"]
    for t in range(cfg.T):
        table: dict[tuple[int, int], np.ndarray] = {}
        for p, d in zip(map(tuple, pos_tr[:, t]), mv_tr):
            table.setdefault(p, np.zeros(2))[d] += 1
        pred = np.array([table[tuple(p)].argmax() if tuple(p) in table else 0 for p in pos_va[:, t]])
        assert (pred == mv_va).mean() < 0.75, f"frame {t} alone reveals the motion"
    moved = (pos_va[:, 1] != pos_va[:, 0]).any(axis=1)
    assert np.array_equal(moved.astype(int), mv_va)


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_limit_renders_the_splits_first_clips(noise: float) -> None:
    cfg = MovingDigitsConfig(n_train=60, n_val=50, directions=("still", "right"), noise_std=noise)
    full_x, full_y, full_s = make_split_with_sources(cfg, "val")
    x, y, s = make_split_with_sources(cfg, "val", limit=7)
    assert x.shape == (7, *full_x.shape[1:])
    assert torch.equal(x, full_x[:7]) and torch.equal(y, full_y[:7]) and torch.equal(s, full_s[:7])
    assert torch.equal(make_split(cfg, "val", limit=500)[0], full_x)  # limit above N: the whole split
    assert split_bytes(cfg, "val", 7) == x.numel() * 4 and split_bytes(cfg, "val") == full_x.numel() * 4
    with pytest.raises(ValueError, match="limit"):
        make_split(cfg, "val", limit=0)
