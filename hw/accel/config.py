"""Engine parameters: a small CI configuration and a production one for the ZCU104."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ...compiler.passes.bitwidths import MAX_BITS
from ...models.errors import HardwareError

__all__ = ["AccelConfig", "CI", "PRODUCTION", "XCZU7EV", "lif_lanes", "MEM_BITS", "WB_LIF_SUBSTAGES"]

#: width of the LIF datapaths' membranes (:mod:`.engine`): the compiler's widest register, so
#: every IntLIF it proves fits (the program emitter refuses one that needs more)
MEM_BITS = MAX_BITS

#: pipeline sub-stages of one LIF step on the CONV write-back (:mod:`.engine`): a channel's
#: bundles are written ``WB_LIF_SUBSTAGES * P_t + 1`` cycles after it enters the step pipeline
WB_LIF_SUBSTAGES = 3

#: XCZU7EV (ZCU104) capacity
XCZU7EV = {"lut": 230_400, "ff": 460_800, "dsp": 1_728, "bram36": 312, "uram": 96}


@dataclass(frozen=True)
class AccelConfig:
    """Parameters of the layer-sequential engine.

    Parameters
    ----------
    p_o : output-channel lanes (each conv term adds one weight into ``p_o`` channels).
    p_t : time-step lanes; a spike bundle's ``p_t`` steps share one weight vector.
        ``T > p_t`` runs in chunks.
    p_pix : output pixels of a row that share each weight read (``1..units_per_beat``): the
        CONV array is ``p_o/2 * p_t * p_pix`` DSP48E2 two-lane accumulators, each adding a
        pair of terms per cycle, ``adders = 2 * p_o * p_t * p_pix`` additions per cycle.
    scan : CONV terms ``(i, ky, kx)`` examined per cycle (even, >= 2): a group's term
        sequence is cut into blocks of ``scan`` terms; the activation buffer's occupancy flags
        (``scan`` flag read ports) tell which terms have a non-zero T-bundle for some pixel of
        the group (*live*), and only those are issued, two per cycle:
        ``max(1, ceil(live/2))`` cycles a block (:mod:`.engine`, :func:`.cycles.conv_busy`).
        ``scan = 2`` is the dense engine (one pair a cycle). ``adders`` is unchanged.
    act_depth : activation buffer, 32-bit words (spike bundles, integer maps, parameters), in
        ``axi_data_width/32`` banks so that the DMA moves a whole beat per cycle.
    wbuf_depth : weight buffer, ``p_o * 8``-bit words.
    axi_data_width : DDR port width (64 or 128 bits), INCR bursts of ``burst`` beats.
    outstanding : AXI bursts the DMA keeps in flight per direction (1..16): reads issued
        whose last beat has not come, writes issued whose response has not come. With
        enough in flight the DDR's per-burst latency is hidden behind the beats
        (:func:`.cycles.dma_read`); the ZCU104's S_AXI_HP ports accept 8 commands per channel.
    clock_mhz : target clock for latency predictions.
    act_ram_style / wbuf_ram_style : Vivado ``ram_style`` of the buffers.
    store_ram_style : ``ram_style`` of the activation buffer's third copy, read only by the
        STORE machine (:class:`.actbuf.ActBuffer` ``store_style``) so that STOREs run
        beside the compute units; block RAM in the production engine (the URAMs are spent).
    """

    name: str
    p_o: int = 16
    p_t: int = 4
    p_pix: int = 1
    scan: int = 2
    act_depth: int = 65536
    wbuf_depth: int = 8192
    axi_data_width: int = 64
    burst: int = 16
    outstanding: int = 8
    clock_mhz: float = 100.0
    act_ram_style: str = "block"
    wbuf_ram_style: str = "block"
    store_ram_style: str = "block"

    def __post_init__(self) -> None:
        for f in ("p_o", "p_t", "p_pix", "act_depth", "wbuf_depth", "burst"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise HardwareError(f"AccelConfig.{f} must be a positive int, not {v!r}")
        if not isinstance(self.scan, int) or self.scan < 2 or self.scan % 2:
            raise HardwareError(f"AccelConfig.scan must be an even int >= 2 (CONV terms examined per "
                                f"cycle, issued two at a time), not {self.scan!r}")
        if self.p_o % 4:
            raise HardwareError(f"AccelConfig.p_o must be a multiple of 4 (32-bit DMA units), not {self.p_o}")
        if not 1 <= self.p_t <= 32:
            raise HardwareError(f"AccelConfig.p_t must be in 1..32, not {self.p_t}")
        if self.axi_data_width not in (32, 64, 128):
            raise HardwareError(f"AccelConfig.axi_data_width must be 32, 64 or 128, not {self.axi_data_width}")
        u = self.axi_data_width // 32
        if (self.p_o * 8) % self.axi_data_width:
            raise HardwareError(f"AccelConfig.p_o * 8 = {self.p_o * 8} bits must be a multiple of "
                                f"axi_data_width {self.axi_data_width} (a weight word is whole beats): "
                                f"use p_o a multiple of {self.axi_data_width // 8}")
        if self.act_depth % u:
            raise HardwareError(f"AccelConfig.act_depth {self.act_depth} must be a multiple of the {u} "
                                "activation-buffer banks (32-bit units per AXI beat)")
        if self.p_pix > u:
            raise HardwareError(f"AccelConfig.p_pix {self.p_pix} must be at most the {u} words a read "
                                "port returns per cycle (axi_data_width/32)")
        if self.p_pix > 1 and self.act_depth & (self.act_depth - 1):
            raise HardwareError(f"AccelConfig.act_depth {self.act_depth} must be a power of two with "
                                "p_pix > 1 (a pixel group's run of words wraps modulo the buffer)")
        if not isinstance(self.outstanding, int) or not 1 <= self.outstanding <= 16:
            raise HardwareError(f"AccelConfig.outstanding must be an int in 1..16 (AXI bursts in flight per "
                                f"direction), not {self.outstanding!r}")
        if self.burst > 256:
            raise HardwareError(f"AccelConfig.burst must be <= 256 beats, not {self.burst}")
        for f in ("act_ram_style", "wbuf_ram_style", "store_ram_style"):
            if getattr(self, f) not in ("block", "ultra", "distributed"):
                raise HardwareError(f"AccelConfig.{f} must be block/ultra/distributed, not {getattr(self, f)!r}")

    @property
    def units_per_beat(self) -> int:
        return self.axi_data_width // 32

    @property
    def dsps(self) -> int:
        """DSP48E2 slices of the CONV array (two 24-bit lanes = two output channels each)."""
        return self.p_o // 2 * self.p_t * self.p_pix

    @property
    def adders(self) -> int:
        """Additions per cycle of the CONV array: two terms per DSP lane."""
        return 2 * self.p_o * self.p_t * self.p_pix

    def as_dict(self) -> dict:
        return asdict(self)


#: small configuration simulated in CI (fits the bundled model's layers on chip)
CI = AccelConfig(name="ci", p_o=16, p_t=4, p_pix=2, scan=4, act_depth=131072, wbuf_depth=8192, axi_data_width=64,
                 clock_mhz=100.0)
#: production configuration for the XCZU7EV: both buffers in URAM (Yosys: the activation
#: buffer 32 URAM288, the 1,024-bit x 8,192 weight buffer 58, each built twice for its two
#: read ports; 90 of 96), which halves the weight tiles' reloads against 4,096 BRAM words
PRODUCTION = AccelConfig(name="zcu104", p_o=128, p_t=8, p_pix=3, scan=8, act_depth=131072, wbuf_depth=8192,
                         axi_data_width=128, burst=16, clock_mhz=250.0, act_ram_style="ultra",
                         wbuf_ram_style="ultra")


def lif_lanes(cfg: AccelConfig) -> int:
    """LIF lanes of the engine: ``2u`` (``u`` = 32-bit units per AXI beat). Each lane runs
    one neuron's ``T`` steps at one step per cycle; a lane takes a run of ``u`` of its
    neuron's steps (consecutive words) every ``u`` cycles, and the activation buffer's two
    read ports deliver one such run each per cycle: ``2u`` lanes keep both ports busy."""
    return 2 * cfg.units_per_beat
