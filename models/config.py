"""Model configurations and the named zoo.

Widths follow the published code: ``embed_dim = [2C, 4C, 8C, W4]`` with the stem at
``embed_dim[0] // 2 = C``. ``svf-small`` (C = 32, W4 = 360) and ``svf-large`` (C = 64,
W4 = 640) reproduce the paper's 15.1M and 55.4M parameters (see ``tests/models``);
the paper table's ``10C = 320`` for W4 would give 14.1M instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .attention import ATTENTION_KINDS, ATT_MODES, attention_kind
from .errors import ConfigError
from .neurons import NeuronConfig

__all__ = ["ModelConfig", "ZOO", "get_config", "HEADS", "NORMALIZATIONS"]

HEADS = ("classification", "pose", "segmentation")

#: named input normalisations ``(mean, std)`` per channel, on frames in [0, 1]
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "none": None,
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # timm IMAGENET_DEFAULT_*
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored inside every checkpoint.

    Parameters
    ----------
    embed_dim : ``(2C, 4C, 8C, W4)``; the stem width is ``embed_dim[0] // 2``.
    depths : transformer blocks in stage 3 and stage 4 (6 and 2 published).
    num_heads : attention heads (the full width ``8C`` / ``W4`` must divide).
    attention : one of ``sdha`` (joint space-time, default), ``sdha_spatial``,
        ``sdha_hierarchical``, ``sdha_factorized``, ``sdsa``, ``sssa``.
    head : ``classification`` (mean over T), ``pose`` (per-step SMPL) or ``segmentation``.
    T : default number of time steps (a static image is repeated T times).
    seg_levels : I-LIF level count D of the segmentation head (1 = binary LIF).
    attn_threshold : ``attn_lif`` threshold; ``None`` = the published value (1.0 after the
        Hamming core + ``attn_bn``, 0.5 after a dot-product core).
    kd : classification with the distillation head ``head_kd`` (published ``--kd``); eval
        output ``(head(z).mean(0) + head_kd(z).mean(0)) / 2``.
    input_mean, input_std : per-channel input normalisation: the first conv sees
        ``(x - mean) / std`` for frames ``x`` in [0, 1] (= ``(pixel/255 - mean)/std``), as
        published pipelines feed it. ``None``: the frames as they are.
    """

    name: str = "custom"
    embed_dim: tuple[int, int, int, int] = (64, 128, 256, 360)
    depths: tuple[int, int] = (6, 2)
    num_heads: int = 8
    mlp_ratio: int = 4
    in_channels: int = 3
    num_classes: int = 1000
    img_size: int = 224
    T: int = 4
    attention: str = "sdha"
    head: str = "classification"
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    seg_levels: int = 4
    pose_joints: int = 24
    max_T: int = 16
    attn_threshold: float | None = None
    kd: bool = False
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "embed_dim", tuple(int(x) for x in self.embed_dim))
        object.__setattr__(self, "depths", tuple(int(x) for x in self.depths))
        if isinstance(self.neuron, dict):
            object.__setattr__(self, "neuron", NeuronConfig.from_dict(self.neuron))
        if len(self.embed_dim) != 4 or any(d <= 0 for d in self.embed_dim):
            raise ConfigError(f"embed_dim must be 4 positive widths (2C, 4C, 8C, W4), got {self.embed_dim}")
        if self.embed_dim[0] % 2:
            raise ConfigError(f"embed_dim[0] must be even (the stem is half of it), got {self.embed_dim[0]}")
        if len(self.depths) != 2 or any(d < 0 for d in self.depths):
            raise ConfigError(f"depths must be two non-negative block counts, got {self.depths}")
        for w in self.embed_dim[2:]:
            if w % self.num_heads:
                raise ConfigError(f"width {w} is not divisible by num_heads={self.num_heads}")
        if self.attention in ATT_MODES:  # published att_mode names
            object.__setattr__(self, "attention", attention_kind(self.attention))
        if self.attention not in ATTENTION_KINDS:
            raise ConfigError(f"attention {self.attention!r} unknown; choose one of {', '.join(ATTENTION_KINDS)} "
                              f"or a published att_mode ({', '.join(ATT_MODES)})")
        if self.attn_threshold is not None and not self.attn_threshold > 0:
            raise ConfigError(f"attn_threshold must be > 0, got {self.attn_threshold!r}")
        if self.kd and self.head != "classification":
            raise ConfigError("kd (the distillation head head_kd) exists for the classification head only")
        if (self.input_mean is None) != (self.input_std is None):
            raise ConfigError("give both input_mean and input_std (or neither)")
        if self.input_mean is not None:
            mean = tuple(float(v) for v in self.input_mean)
            std = tuple(float(v) for v in self.input_std)
            object.__setattr__(self, "input_mean", mean)
            object.__setattr__(self, "input_std", std)
            if len(mean) != self.in_channels or len(std) != self.in_channels:
                raise ConfigError(f"input_mean/input_std need {self.in_channels} values (one per "
                                  f"channel), got {len(mean)} and {len(std)}")
            if not all(v > 0 for v in std):
                raise ConfigError(f"input_std must be positive, got {std}")
        if self.head not in HEADS:
            raise ConfigError(f"head {self.head!r} unknown; choose one of {', '.join(HEADS)}")
        if self.img_size % 16:
            raise ConfigError(f"img_size must be a multiple of 16 (four stride-2 stages), got {self.img_size}")
        if self.T < 1 or self.T > self.max_T:
            raise ConfigError(f"T must be in 1..max_T={self.max_T}, got {self.T}")
        if self.num_classes < 1 or self.in_channels < 1:
            raise ConfigError("num_classes and in_channels must be >= 1")

    @property
    def stem(self) -> int:
        return self.embed_dim[0] // 2

    def replace(self, **kw) -> "ModelConfig":
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(kw)
        return ModelConfig(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["embed_dim"] = list(self.embed_dim)
        d["depths"] = list(self.depths)
        for k in ("input_mean", "input_std"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    @property
    def normalization(self) -> str:
        """``none``, a name of :data:`NORMALIZATIONS`, or ``mean=...,std=...``."""
        if self.input_mean is None:
            return "none"
        for name, v in NORMALIZATIONS.items():
            if v is not None and v == (self.input_mean, self.input_std):
                return name
        return f"mean={list(self.input_mean)},std={list(self.input_std)}"

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model config fields {sorted(unknown)}; this checkpoint is from a newer svf-deploy")
        return cls(**d)


ZOO: dict[str, ModelConfig] = {
    # SpikeVideoFormer, the paper's sizes (Kinetics-style classification heads)
    "svf-small": ModelConfig(name="svf-small", embed_dim=(64, 128, 256, 360), num_classes=1000),
    "svf-large": ModelConfig(name="svf-large", embed_dim=(128, 256, 512, 640), num_classes=1000),
    # relatives
    "meta-spikeformer-15m": ModelConfig(name="meta-spikeformer-15m", attention="sdsa", T=1),
    "snn-vit-sssa-small": ModelConfig(name="snn-vit-sssa-small", attention="sssa"),
    # tiny configs for tests and the demo (every block type at 32x32)
    "svf-tiny": ModelConfig(name="svf-tiny", embed_dim=(16, 32, 64, 64), depths=(1, 1),
                            num_heads=2, in_channels=1, num_classes=10, img_size=32, T=4),
    "svf-tiny-pose": ModelConfig(name="svf-tiny-pose", embed_dim=(16, 32, 64, 64), depths=(1, 1),
                                 num_heads=2, in_channels=1, num_classes=1, img_size=32, T=4,
                                 head="pose"),
    "svf-tiny-seg": ModelConfig(name="svf-tiny-seg", embed_dim=(16, 32, 64, 64), depths=(1, 1),
                                num_heads=2, in_channels=1, num_classes=5, img_size=32, T=4,
                                head="segmentation", seg_levels=4),
}


def get_config(name: str, **overrides) -> ModelConfig:
    """A named configuration from :data:`ZOO`, with optional field overrides."""
    if name not in ZOO:
        raise ConfigError(f"unknown model config {name!r}; choose one of {', '.join(ZOO)}")
    cfg = ZOO[name]
    return cfg.replace(**overrides) if overrides else cfg
