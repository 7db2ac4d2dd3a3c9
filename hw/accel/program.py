"""Compiler side of the engine: integer graph -> program, weight/parameter images, DDR map.

:func:`emit` lowers an ``integer`` :class:`~compiler.ir.Graph` to a :class:`Program`: the
descriptors the sequencer runs (:mod:`.isa`), the weight-buffer image (``P_o`` int8 lanes per
word, tile-major), the per-channel parameters (conv biases, LIF ``theta``/``bias``/
``polarity``, requant shifts) and the DDR memory map, all in the byte layout the hardware
reads. Nothing here executes the model: the engine does, and the golden reference judges.

Memory plans (``emit(..., plan="auto" | "chip" | "ddr")``, recorded as ``Program.plan``)
----------------------------------------------------------------------------------------
* DDR (relocatable, 4 KiB-aligned regions): program | weights | parameters | input
  bit-planes | outputs (every spike map, the final output, optionally every integer map)
  [| scratch: the ddr plan's other tensors, regions reused once their last consumer ran].
* ``"chip"``: all parameters are loaded once; every node's output gets an
  activation-buffer region live from its producer to its last consumer (first-fit), so
  the residual stream and spike maps never leave the chip; each spike map is also stored
  to DDR for the host. Weights stream from DDR once per clip, per convolution, in chunks
  of whole ``P_o`` output-channel tiles that fit the weight buffer. A conv whose only
  consumer is an IntLIF, whose integer map is not stored, with ``T <= P_t``, runs that
  LIF on its write-back (``CONV`` ``lflags & LFLAG_WB``, :mod:`.isa` version 6): it
  writes the LIF's spike map directly, the integer map is never in the buffer and no
  ``LIF`` descriptor runs (``Program.fused`` names the LIF).
* ``"ddr"`` (:mod:`.tiling`): every tensor lives in DDR; each node runs on tiles moved
  through the activation buffer (conv: input-channel groups x output-channel chunks x
  row bands x, only if needed, column tiles, the halo loaded with each band and the
  band's top padding in the CONV ``pad_y`` field; LIF/EW/REDUCE: channel or neuron
  ranges; SDHA: whole heads, or token ranges of a head when one head does not fit).
  Weights are still read once per clip.
* ``"auto"`` (default): ``"chip"`` when its live set, parameters and weight tiles fit,
  else ``"ddr"``.

A layer that cannot be tiled into the buffers (words needed vs available), or a node the engine cannot
run exactly (I-LIF with ``levels > 1``, grouped convs, SSSA, spatial/SDSA attention,
values wider than the datapath) raises :class:`HardwareError` naming the node and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ...compiler import ir
from ...compiler.bounds import bounds as proved_bounds
from ...models.errors import HardwareError
from . import isa
from .config import MEM_BITS, AccelConfig

__all__ = ["Program", "TensorPlacement", "LayerStats", "emit", "FORMAT"]

FORMAT = "svf-deploy zcu104 program"
ALIGN = 4096
PLANES = 8           # analog inputs run as 8 bit-planes (plog2 = 3)
STORE_BITS = 32      # stored integers


def _align(x: int, a: int = ALIGN) -> int:
    return (x + a - 1) // a * a


@dataclass(frozen=True)
class TensorPlacement:
    """Where a node's output lives. ``layout``: ``bundles`` (one word per (c, y, x), bit t),
    ``int`` (``[c][y][x][t]``), ``planes`` (analog input), ``vector`` (``[c]``, TimeMean)."""

    name: str
    layout: str
    shape: tuple[int, ...]
    act: int            # activation-buffer word address
    words: int
    ddr: int | None     # DDR byte offset (relative to the image base) if stored


def lif_flags(n) -> int:
    """The LIF descriptor's ``flags`` of IntLIF ``n``: bit 0 decay_input, bit 1 soft reset."""
    return int(n.decay_input) | (2 if n.reset == "soft" else 0)


@dataclass(frozen=True)
class LayerStats:
    """Per-node figures for reports and the cycle model."""

    name: str
    op: str
    unit: str
    dense_adds: int         # gated additions of the dense computation (all T)
    weight_bytes: int
    ddr_bytes: int          # DMA traffic attributable to the node
    act_words: int          # on-chip words of its output


@dataclass
class Program:
    """An emitted program with its DDR image.

    Members
    -------
    cfg : AccelConfig it was emitted for.
    T : time steps.
    descriptors : list of ``(opcode, {field: value}, node_name)``.
    image : ``uint8`` DDR image (program, weights, parameters; input/outputs zero).
    regions : ``{region: (offset, bytes)}``.
    tensors : ``{node: TensorPlacement}``.
    relocs : ``[(descriptor index, word index)]`` holding DDR addresses (relative to 0).
    input_name, output_names, stats, act_peak.
    plan : ``"chip"`` or ``"ddr"`` (module docstring).
    windows : ``{CONV descriptor index: (first input channel, first row, frame height,
        first column, frame width)}`` of a ddr-plan program: the part of the node's input
        the descriptor reads.
    fused : nodes run inside their conv's (or SDHA's) descriptors: IntLIFs on the CONV
        write-back (both plans, ``lflags & LFLAG_WB``) or, in the ddr plan, on its integer
        tiles in the buffer, IntLIFs on an SDHA's output tiles, and Requant/Add epilogues
        (:mod:`.tiling`).
    """

    cfg: AccelConfig
    T: int
    descriptors: list
    image: np.ndarray
    regions: dict
    tensors: dict
    relocs: list
    input_name: str
    output_names: tuple
    stats: list = field(default_factory=list)
    act_peak: int = 0
    input_shape: tuple = ()
    plan: str = "chip"
    windows: dict = field(default_factory=dict)
    fused: tuple = ()

    # ------------------------------------------------------------------ host-side helpers
    def words(self, base: int = 0) -> np.ndarray:
        """The descriptor words (``uint32``), DDR addresses relocated to ``base`` (a multiple
        of 4 KB: the cycle model and the engine cut bursts at 4 KB boundaries of the image's
        own offsets, so any other base would change the bursts)."""
        if base % ALIGN:
            raise HardwareError(f"the program's DDR base {base:#x} must be 4 KB aligned "
                                f"(allocate the buffer on a {ALIGN}-byte boundary)")
        w = np.zeros((len(self.descriptors), isa.DESC_WORDS), np.uint32)
        for i, (op, fields, _) in enumerate(self.descriptors):
            w[i, 0] = isa.word0(op, fields)
            for k, v in fields.items():
                if k != "fence":
                    w[i, isa.field_index(op, k)] = np.uint32(int(v) & 0xFFFFFFFF)
        for i, j in self.relocs:
            w[i, j] = np.uint32((int(w[i, j]) + base) & 0xFFFFFFFF)
        return w

    def ddr_image(self, codes: np.ndarray | None = None, base: int = 0) -> np.ndarray:
        """The full DDR image (``uint8``) relocated to ``base``, with the input codes
        ``[T, C, H, W]`` (integers ``0..2**bits-1``) written as bit-planes when given."""
        img = self.image.copy()
        w = self.words(base).view(np.uint8).ravel()
        img[: w.size] = w
        if codes is not None:
            off, size = self.regions["input"]
            planes = self.input_planes(codes).view(np.uint8)
            img[off: off + planes.size] = planes
        return img

    def input_planes(self, codes: np.ndarray) -> np.ndarray:
        """Bit-plane bundles (``uint32``) of input codes ``[T, C, H, W]``: word
        ``((c*8 + j)*H + y)*W + x`` has bit ``t`` = bit ``j`` of ``codes[t, c, y, x]``."""
        codes = np.asarray(codes)
        if codes.shape != (self.T,) + tuple(self.input_shape):
            raise HardwareError(f"input codes have shape {codes.shape}, the program expects "
                                f"{(self.T,) + tuple(self.input_shape)} ([T, C, H, W])")
        c = codes.astype(np.int64)
        if c.min() < 0 or c.max() >= 2 ** PLANES:
            raise HardwareError(f"input codes must lie in 0..{2 ** PLANES - 1}")
        T, C, H, W = c.shape
        out = np.zeros((C, PLANES, H, W), np.uint32)
        for j in range(PLANES):
            bits = (c >> j) & 1  # [T, C, H, W]
            out[:, j] = (bits.astype(np.uint32) << np.arange(T, dtype=np.uint32)[:, None, None, None]).sum(0)
        return out.ravel()

    def read_tensor(self, ddr: np.ndarray, name: str) -> np.ndarray:
        """Decode a stored node output from a DDR dump (``uint8``) to ``[T, *shape]`` int64
        (``[1, C]`` for the time-summed output), matching ``reference.run(record=True)``."""
        p = self.tensors[name]
        if p.ddr is None:
            raise HardwareError(f"{name!r} is not stored to DDR by this program")
        raw = np.frombuffer(ddr[p.ddr: p.ddr + 4 * p.words].tobytes(), dtype="<u4")
        T = self.T
        if p.layout == "bundles":
            b = raw.reshape(p.shape).astype(np.int64)
            return np.stack([(b >> t) & 1 for t in range(T)])
        if p.layout == "int":
            v = raw.view(np.int32).astype(np.int64).reshape(p.shape + (T,))
            return np.moveaxis(v, -1, 0)
        if p.layout == "vector":
            return raw.view(np.int32).astype(np.int64).reshape((1,) + p.shape)
        raise HardwareError(f"cannot decode layout {p.layout!r}")

    @property
    def stored(self) -> list[str]:
        return [n for n, p in self.tensors.items() if p.ddr is not None and p.layout != "planes"]

    def manifest(self) -> dict:
        """JSON description of the program (versions, config, memory map, tensors)."""
        return {
            "format": FORMAT, "isa_version": isa.VERSION, "magic": isa.MAGIC, "T": self.T,
            "plan": self.plan, "fused": list(self.fused),
            "config": self.cfg.as_dict(), "descriptors": len(self.descriptors),
            "descriptor_bytes": isa.DESC_BYTES,
            "regions": {k: {"offset": o, "bytes": b} for k, (o, b) in self.regions.items()},
            "tensors": {n: {"layout": p.layout, "shape": list(p.shape), "act": p.act, "words": p.words,
                            "ddr": p.ddr} for n, p in self.tensors.items()},
            "relocations": [list(r) for r in self.relocs],
            "input": self.input_name, "outputs": list(self.output_names),
            "act_peak_words": self.act_peak, "image_bytes": int(self.image.size),
            "image_file_bytes": self.static_bytes,
        }

    @property
    def static_bytes(self) -> int:
        """Bytes of the image that hold data before a run (program, weights, parameters):
        the input, output and scratch regions after them start zeroed, so ``ddr_image.bin``
        stops here and a loader zero-fills up to ``image_bytes``."""
        return int(self.regions["input"][0]) if "input" in self.regions else int(self.image.size)

    def listing(self) -> str:
        """Human-readable program listing."""
        lines = []
        for i, (op, fields, node) in enumerate(self.descriptors):
            args = " ".join(f"{k}={v}" for k, v in fields.items())
            lines.append(f"{i:5d} {isa.OPNAMES[op]:<7} {args}" + (f"   ; {node}" if node else ""))
        return "\n".join(lines)

    def save(self, directory) -> None:
        """Write ``program.bin`` (descriptors), ``ddr_image.bin`` (the image up to
        :attr:`static_bytes`), ``program.json``, ``program.lst`` into an existing directory."""
        from pathlib import Path

        d = Path(directory)
        (d / "program.bin").write_bytes(self.words().tobytes())
        (d / "ddr_image.bin").write_bytes(self.ddr_image()[: self.static_bytes].tobytes())
        (d / "program.json").write_text(json.dumps(self.manifest(), indent=1))
        (d / "program.lst").write_text(self.listing() + "\n")


# ----------------------------------------------------------------------------- checks


def _reject(n: ir.Node, why: str, fix: str) -> HardwareError:
    return HardwareError(f"{n.op} {n.name!r}: {why}; {fix}")


def sdha_scratch_words(cfg: AccelConfig, shape, heads: int) -> int:
    """Weight-buffer words an SDHA of output ``(C, H, W)`` uses per head: V transposed,
    ``g*H*W``, and kv, ``d*g``, with ``d = C/heads`` and ``g = ceil(d / (P_o/4))``."""
    c, h, w = shape
    d = c // heads
    g = -(-d // (cfg.p_o // 4))
    return g * h * w + d * g


def sdha_scratch(n: ir.Attention, cfg: AccelConfig, shape, wbuf_words: int) -> int:
    """``g`` (weight-buffer words per token) of attention ``n``, whose per-head scratch
    (:func:`sdha_scratch_words`) must fit ``wbuf_words``; else :class:`HardwareError`."""
    words = sdha_scratch_words(cfg, shape, n.heads)
    if words > wbuf_words:
        raise _reject(n, f"one head's weight-buffer scratch (V transposed + kv) needs {words} words",
                      f"the weight buffer holds {wbuf_words}: use a larger wbuf_depth or more heads")
    return -(-(shape[0] // n.heads) // (cfg.p_o // 4))


#: a CONV accumulator lane (DSP48E2 ``TWO24`` SIMD, :mod:`.simd`) never wraps below this
LANE_LIMIT = 2 ** 23


def lane_bound(n: ir.Node, analog: bool) -> int:
    """Largest ``|partial sum|`` a CONV accumulator lane of conv/linear ``n`` can hold:
    ``max_o sum_{i,ky,kx,j} |w[o,i,ky,kx]| << j`` over its terms (``j`` the bit-plane of an
    analog input, ``0..7``, else 0), the bias excluded (it is added at write-back). Every
    partial sum of any order of any subset of terms is bounded by it, so a lane with
    ``lane_bound < 2**23`` holds every sum exactly in 24 bits."""
    w = np.abs(np.asarray(n.weight, np.int64)).reshape(np.asarray(n.weight).shape[0], -1).sum(1)
    return int(w.max(initial=0)) * ((1 << PLANES) - 1 if analog else 1)


def check_supported(graph: ir.Graph, cfg: AccelConfig, T: int) -> dict[str, int]:
    """Raise :class:`HardwareError` for the first node the engine cannot run exactly;
    returns the proved bounds."""
    if graph.stage != "integer":
        raise HardwareError(f"the zcu104 target needs an integer graph, got stage {graph.stage!r}")
    if not 1 <= T <= 32:
        raise HardwareError(f"T={T} time steps: the engine's spike bundles hold 1..32 steps")
    b = proved_bounds(graph, T)
    lim = 2 ** (STORE_BITS - 1)
    consumers: dict[str, list] = {}
    for n in graph.nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    for n in graph.nodes:
        t = graph.types[n.name]
        if isinstance(n, ir.Input):
            if n.bits > PLANES:
                raise _reject(n, f"{n.bits}-bit input codes", f"use at most {PLANES} input bits")
        elif isinstance(n, (ir.Conv, ir.Linear)):
            src = graph.types[n.inputs[0]]
            if isinstance(n, ir.Conv):
                if n.groups != 1:
                    raise _reject(n, f"groups={n.groups}", "the engine runs dense convolutions only: compile with "
                                  "--factor-depthwise never (the default), which fuses each depthwise conv "
                                  "into the pointwise conv after it")
                kh, kw = n.weight.shape[2:]
                if kh != kw:
                    raise _reject(n, f"{kh}x{kw} kernel", "only square kernels are supported")
                if n.bias_map:
                    raise _reject(n, "has a per-position bias map (folded input normalisation)",
                                  "the v1 engine adds one bias per channel: compile without input normalisation")
                if n.stride > 255 or n.padding > 255:
                    raise _reject(n, "stride/padding above 255", "use smaller strides")
            if not (src.kind == "spike" and src.levels == 1) and not (
                    src.kind == "analog" and isinstance(graph.node(n.inputs[0]), ir.Input)):
                raise _reject(n, f"input {n.inputs[0]!r} is {src.kind} (levels={src.levels})",
                              "the engine convolves binary spikes or the analog input frames only")
            w = np.asarray(n.weight)
            if w.min() < -128 or w.max() > 127:
                raise _reject(n, f"weights span {w.min()}..{w.max()}", "the weight buffer holds int8: compile with --weight-bits 8 or fewer")
            bound = lane_bound(n, src.kind == "analog")
            if bound >= LANE_LIMIT:
                raise _reject(n, f"a DSP accumulator lane can reach {bound} (max_o sum |w| << plane)",
                              f"the 24-bit SIMD lanes hold |sum| < {LANE_LIMIT}: lower the weight bits or split the input channels")
        elif isinstance(n, ir.IntLIF):
            if n.levels != 1:
                raise _reject(n, f"levels={n.levels} (I-LIF)", "the v1 engine runs binary LIF neurons only")
            if n.frac_bits > 63 or n.leak_shift > 63:
                raise _reject(n, "frac_bits/leak_shift above 63", "use smaller shifts")
            src = graph.types[n.inputs[0]]
            if src.kind != "int":
                raise _reject(n, f"input is {src.kind}", "neurons read integer maps")
            need = max(n.mem_bits, (2 * b[n.name] + 1).bit_length() + 1)
            if need > MEM_BITS:
                raise _reject(n, f"membrane needs {need} bits (bound {b[n.name]})",
                              f"the LIF lane has {MEM_BITS}: lower frac_bits or T")
        elif isinstance(n, ir.Attention):
            if n.kind != "sdha" or n.tokens != "joint":
                raise _reject(n, f"kind={n.kind}, tokens={n.tokens}", "the engine runs joint SDHA only")
        elif isinstance(n, ir.TimeMean):
            if consumers.get(n.name):
                raise _reject(n, "has consumers", "TimeMean must be a graph output")
        elif isinstance(n, (ir.Add, ir.Requant, ir.GlobalPool)):
            pass
        else:
            raise _reject(n, "has no engine unit", "remove it or use --target reference/onnx")
        if t.kind == "int" and b[n.name] >= lim:
            raise _reject(n, f"proved bound {b[n.name]} does not fit a 32-bit word", "lower the weight bits")
    return b


# ----------------------------------------------------------------------------- allocator


class _Arena:
    """First-fit allocator over the activation buffer (word addresses)."""

    def __init__(self, depth: int, start: int):
        self.depth = depth
        self.free = [(start, depth - start)]
        self.peak = start

    def alloc(self, words: int, who: str) -> int:
        for i, (a, n) in enumerate(self.free):
            if n >= words:
                self.free[i] = (a + words, n - words)
                if self.free[i][1] == 0:
                    self.free.pop(i)
                self.peak = max(self.peak, a + words)
                return a
        used = self.depth - sum(n for _, n in self.free)
        raise _NoFit(f"{who}: needs {words} more activation words with {used} live; the "
                            f"activation buffer holds {self.depth} words: use a configuration "
                            "with a larger act_depth")

    def release(self, addr: int, words: int) -> None:
        self.free.append((addr, words))
        self.free.sort()
        merged = []
        for a, n in self.free:
            if merged and merged[-1][0] + merged[-1][1] == a:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((a, n))
        self.free = merged


# ----------------------------------------------------------------------------- emitter


def _weight_words(w: np.ndarray, p_o: int) -> np.ndarray:
    """``[O, I, K, K]`` int -> wbuf words ``[tiles * I*K*K, p_o]`` int8, tile-major."""
    o = w.shape[0]
    tiles = -(-o // p_o)
    wp = np.zeros((tiles * p_o,) + w.shape[1:], np.int8)
    wp[:o] = w.astype(np.int8)
    # [tiles, p_o, I, K, K] -> [tiles, I, K, K, p_o]
    return wp.reshape((tiles, p_o) + w.shape[1:]).transpose(0, 2, 3, 4, 1).reshape(-1, p_o)


PLANS = ("auto", "chip", "ddr")


class _NoFit(HardwareError):
    """The on-chip plan does not fit (``plan="auto"`` then takes the DDR-resident one)."""


def placements(graph: ir.Graph, T: int, store_ints: bool) -> tuple[dict, dict, list]:
    """Both plans' tensor layouts: ``(last, tensors, stored)`` with ``last[name]`` the index
    of the last node reading ``name``, ``tensors[name]`` its :class:`TensorPlacement`
    (``act=-1``, ``ddr=None``: the plan fills them in) and ``stored`` the names the host reads
    from DDR in node order (graph outputs, every spike map, and with ``store_ints`` the
    integer maps)."""
    last: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        for s in n.inputs:
            last[s] = i
    outputs = set(graph.outputs)
    tensors: dict[str, TensorPlacement] = {}
    stored: list[str] = []
    for n in graph.nodes:
        t = graph.types[n.name]
        shp = tuple(t.shape) if len(t.shape) == 3 else (t.shape[0], 1, 1)
        if isinstance(n, ir.Input):
            layout, words = "planes", shp[0] * PLANES * shp[1] * shp[2]
        elif isinstance(n, ir.TimeMean):
            layout, words = "vector", t.shape[0]
        elif t.kind == "spike":
            layout, words = "bundles", int(np.prod(shp))
        else:
            layout, words = "int", int(np.prod(shp)) * T
        tensors[n.name] = TensorPlacement(n.name, layout, tuple(t.shape), -1, words, None)
        if n.name in outputs or layout == "bundles" or (store_ints and layout in ("int", "vector")):
            stored.append(n.name)
    return last, tensors, stored


def emit(graph: ir.Graph, cfg: AccelConfig, T: int | None = None, *, plan: str = "auto",
         store_ints: bool = False, act_words: int | None = None, wbuf_words: int | None = None,
         sdha_tokens: int | None = None, async_stores: bool = True) -> Program:
    """Lower ``graph`` to a :class:`Program` for ``cfg`` (see the module docstring).

    ``plan``: ``"chip"`` (every live tensor in the activation buffer), ``"ddr"`` (tensors
    in DDR, tiles through the buffer) or ``"auto"`` (chip when it fits, else ddr); the plan
    taken is ``Program.plan``. ``store_ints`` also stores every integer map to DDR
    (per-layer debugging). ``act_words`` / ``wbuf_words`` (ddr plan only) restrict the
    tiles to the first words of the buffers (small tiles on the same engine);
    ``sdha_tokens`` (ddr plan only) caps an SDHA's token ranges (splits heads that fit).
    ``async_stores``: STOREs that may run beside the next LOADs and fetches are made
    asynchronous (:func:`.overlap.mark_async_stores`; ``False``: every STORE synchronous).
    """
    if plan not in PLANS:
        raise HardwareError(f"unknown memory plan {plan!r}: use one of {', '.join(PLANS)}")
    T = int(graph.meta.get("T", 0) if T is None else T)
    check_supported(graph, cfg, T)
    from .overlap import mark_async_stores

    done = mark_async_stores if async_stores else (lambda p: p)
    if plan != "ddr":
        try:
            return done(_emit_chip(graph, cfg, T, store_ints))
        except _NoFit:
            if plan == "chip":
                raise
    from .tiling import emit_ddr

    return done(emit_ddr(graph, cfg, T, store_ints, act_words=act_words, wbuf_words=wbuf_words,
                         sdha_tokens=sdha_tokens))


def _emit_chip(graph: ir.Graph, cfg: AccelConfig, T: int, store_ints: bool) -> Program:
    """The on-chip plan (see the module docstring)."""
    P = cfg.p_o
    descs: list = []
    relocs: list = []

    def add(op, node="", **fields):
        descs.append((op, fields, node))
        for k in fields:
            if (op, k) in ((isa.OP_LOAD, "ddr"), (isa.OP_LOADW, "ddr"), (isa.OP_STORE, "ddr")):
                relocs.append((len(descs) - 1, isa.field_index(op, k)))

    # ---- parameters (one block, loaded once at act address 0)
    params: list[int] = []
    pbase: dict[tuple[str, str], int] = {}

    def put(node: str, what: str, values) -> None:
        pbase[(node, what)] = len(params)
        params.extend(int(v) for v in values)

    for n in graph.nodes:
        if isinstance(n, (ir.Conv, ir.Linear)):
            bias = np.zeros(n.weight.shape[0], np.int64) if n.bias is None else n.bias
            put(n.name, "bias", list(bias) + [0] * ((-len(bias)) % P))
        elif isinstance(n, ir.IntLIF):
            v = np.stack([n.theta, n.bias, n.polarity], 1).astype(np.int64).ravel()
            put(n.name, "lif", v)
        elif isinstance(n, ir.Requant):
            put(n.name, "shift", n.shift)
    param_words = np.array(params, np.int64).astype(np.int32).view(np.uint32) if params else np.zeros(0, np.uint32)
    if len(param_words) > cfg.act_depth:
        raise _NoFit(f"{len(param_words)} parameter words exceed the activation buffer "
                            f"({cfg.act_depth} words): use a configuration with a larger act_depth")
    arena = _Arena(cfg.act_depth, len(param_words))

    # ---- weights image (per conv, tile-major words)
    wimg: list[np.ndarray] = []
    woff: dict[str, int] = {}
    wpos = 0
    for n in graph.nodes:
        if isinstance(n, (ir.Conv, ir.Linear)):
            w = n.weight if n.weight.ndim == 4 else n.weight.reshape(n.weight.shape + (1, 1))
            words = _weight_words(np.asarray(w), P)
            woff[n.name] = wpos
            wimg.append(words.view(np.uint8).ravel())
            wpos += _align(words.size, 128)
            pad = _align(words.size, 128) - words.size
            if pad:
                wimg.append(np.zeros(pad, np.uint8))

    # ---- liveness
    last, tensors, store_list = placements(graph, T, store_ints)
    outputs = tuple(graph.outputs)

    # ---- DDR map
    off = _align(isa.DESC_BYTES * 4)  # grows once the program length is known; fixed below
    regions: dict[str, tuple[int, int]] = {}

    # program length is known only after emission: emit with symbolic offsets, then patch
    layout_after_prog: list[tuple[str, int]] = [("weights", wpos), ("params", 4 * len(param_words)),
                                                ("input", 4 * tensors[graph.input.name].words)]
    out_off: dict[str, int] = {}
    o_acc = 0
    for name in store_list:
        out_off[name] = o_acc
        o_acc += _align(4 * tensors[name].words, 128)
    layout_after_prog.append(("outputs", o_acc))

    # ---- emission (DDR offsets relative to each region; patched by _fix)
    REG = {"weights": 1 << 28, "params": 2 << 28, "input": 3 << 28, "outputs": 4 << 28}
    act_addr: dict[str, int] = {}
    stats: list[LayerStats] = []

    add(isa.OP_HEADER, magic=isa.MAGIC, version=isa.VERSION, n_desc=0)
    if len(param_words):
        add(isa.OP_LOAD, "params", ddr=REG["params"], addr=0, count=len(param_words))

    def alloc(name: str) -> int:
        a = arena.alloc(tensors[name].words, f"{graph.node(name).op} {name!r}")
        act_addr[name] = a
        return a

    def free_inputs(i: int, n: ir.Node) -> None:
        for s in set(n.inputs):
            if last.get(s) == i and s not in outputs and s in act_addr:
                arena.release(act_addr[s], tensors[s].words)

    consumers: dict[str, list[ir.Node]] = {}
    for n in graph.nodes:
        for s_ in n.inputs:
            consumers.setdefault(s_, []).append(n)
    fused: list[str] = []          # IntLIFs run on their conv's write-back

    for i, n in enumerate(graph.nodes):
        t = graph.types[n.name]
        traffic = 0
        if isinstance(n, ir.Input):
            a = alloc(n.name)
            add(isa.OP_LOAD, n.name, ddr=REG["input"], addr=a, count=tensors[n.name].words)
            traffic += 4 * tensors[n.name].words
            stats.append(LayerStats(n.name, n.op, "DMA", 0, 0, traffic, tensors[n.name].words))
            continue
        if n.name in fused:           # its spikes were written by the conv's write-back
            if n.name in out_off:
                add(isa.OP_STORE, n.name, ddr=REG["outputs"] + out_off[n.name], addr=act_addr[n.name],
                    count=tensors[n.name].words)
            stats.append(LayerStats(n.name, n.op, n.op, 0, 0, 4 * tensors[n.name].words if n.name in out_off
                                    else 0, tensors[n.name].words))
            free_inputs(i, n)
            continue
        ins = [act_addr[s] for s in n.inputs]
        cons = consumers.get(n.name, [])
        lif = (cons[0] if isinstance(n, (ir.Conv, ir.Linear)) and len(cons) == 1
               and isinstance(cons[0], ir.IntLIF) and n.name not in out_off and T <= cfg.p_t else None)
        out = alloc(lif.name if lif is not None else n.name)
        dense = 0
        wbytes = 0
        unit = n.op
        if isinstance(n, (ir.Conv, ir.Linear)):
            unit = "CONV"
            src = graph.types[n.inputs[0]]
            if isinstance(n, ir.Conv):
                cin, k = int(n.weight.shape[1]), int(n.weight.shape[2])
                h, w = src.shape[1:]
                hout, wout = t.shape[1:]
                stride, pad = n.stride, n.padding
            else:
                cin, k, h, w, hout, wout, stride, pad = int(n.weight.shape[1]), 1, 1, 1, 1, 1, 1, 0
            analog = src.kind == "analog"
            plog2 = 3 if analog else 0
            cin_v = cin * (PLANES if analog else 1)
            cout = int(n.weight.shape[0])
            tile_words = cin * k * k
            if tile_words > cfg.wbuf_depth:
                raise _NoFit(str(_reject(n, f"one {P}-channel tile needs {tile_words} weight words",
                              f"the weight buffer holds {cfg.wbuf_depth}: use a larger wbuf_depth")))
            tiles = -(-cout // P)
            per_chunk = cfg.wbuf_depth // tile_words
            tchunks = -(-T // cfg.p_t)
            for c0 in range(0, tiles, per_chunk):
                c1 = min(tiles, c0 + per_chunk)
                nwords = (c1 - c0) * tile_words
                add(isa.OP_LOADW, n.name, ddr=REG["weights"] + woff[n.name] + c0 * tile_words * P,
                    addr=0, count=nwords)
                traffic += nwords * P
                # the channel stride of the output: integers, or the LIF's spike bundles
                cs = hout * wout * (T if lif is None else 1)
                lf = {} if lif is None else dict(
                    lifpb=pbase[(lif.name, "lif")], frac=lif.frac_bits, leak=lif.leak_shift,
                    lflags=lif_flags(lif) | isa.LFLAG_WB)
                add(isa.OP_CONV, n.name, inb=ins[0], outb=out + c0 * P * cs,
                    biasb=pbase[(n.name, "bias")], wb=0, cin=cin_v, h=h, w=w, hw=h * w, hout=hout,
                    wout=wout, k=k, stride=stride, pad=pad, plog2=plog2, cout=cout, oc_start=c0 * P,
                    oc_end=min(cout, c1 * P), t=T, kk=k * k, stride_w=stride * w,
                    hwout_t=cs, wtile=tile_words, tchunks=tchunks, pad_w=pad * w,
                    otile=P * cs, pad_y=pad, **lf)
            dense = cout * hout * wout * cin_v * k * k * T
            wbytes = tiles * tile_words * P
        elif isinstance(n, ir.IntLIF):
            shp = t.shape if len(t.shape) == 3 else (t.shape[0], 1, 1)
            add(isa.OP_LIF, n.name, inb=ins[0], outb=out, pb=pbase[(n.name, "lif")], c=shp[0],
                hw=shp[1] * shp[2], t=T, frac=n.frac_bits, leak=n.leak_shift,
                flags=lif_flags(n))
        elif isinstance(n, ir.Add):
            add(isa.OP_EW, n.name, a=ins[0], b=ins[1], outb=out, n=tensors[n.name].words, mode=0, per=1)
            dense = tensors[n.name].words
        elif isinstance(n, ir.Requant):
            shp = t.shape if len(t.shape) == 3 else (t.shape[0], 1, 1)
            add(isa.OP_EW, n.name, a=ins[0], b=pbase[(n.name, "shift")], outb=out,
                n=tensors[n.name].words, mode=1, per=shp[1] * shp[2] * T)
            dense = tensors[n.name].words
        elif isinstance(n, ir.GlobalPool):
            c, h, w = graph.types[n.inputs[0]].shape
            add(isa.OP_REDUCE, n.name, inb=ins[0], outb=out, n0=c, s0=h * w * T, n1=T, s1=1, n2=h * w, s2=T)
            dense = c * h * w * T
        elif isinstance(n, ir.TimeMean):
            c = t.shape[0]
            add(isa.OP_REDUCE, n.name, inb=ins[0], outb=out, n0=c, s0=T, n1=1, s1=0, n2=T, s2=1)
            dense = c * T
        elif isinstance(n, ir.Attention):
            c, h, w = t.shape
            d = c // n.heads
            g = sdha_scratch(n, cfg, t.shape, cfg.wbuf_depth)
            # weight-buffer scratch: V transposed (g*h*w words), then kv (d*g words); every
            # CONV loads its weights after, so nothing live is overwritten
            add(isa.OP_SDHA, n.name, q=ins[0], k=ins[1], v=ins[2], outb=out, kvw=g * h * w, heads=n.heads,
                d=d, hw=h * w, t=T, hwd=d * h * w, hwdt=d * h * w * T, g=g, hwt=h * w * T, ntok=h * w,
                qs=h * w, mode=0)
            dense = 2 * n.heads * d * d * h * w * T
            unit = "SDHA"
        if n.name in out_off:
            add(isa.OP_STORE, n.name, ddr=REG["outputs"] + out_off[n.name], addr=out,
                count=tensors[n.name].words)
            traffic += 4 * tensors[n.name].words
        if lif is not None:
            fused.append(lif.name)
        stats.append(LayerStats(n.name, n.op, unit, int(dense), int(wbytes), int(traffic + wbytes),
                                tensors[n.name].words if lif is None else 0))
        free_inputs(i, n)
    add(isa.OP_END)

    # ---- fix the DDR map now that the program length is known
    prog_bytes = len(descs) * isa.DESC_BYTES
    base = {"program": 0}
    cur = _align(prog_bytes)
    regions["program"] = (0, prog_bytes)
    for name, size in layout_after_prog:
        base[name] = cur
        regions[name] = (cur, size)
        cur = _align(cur + max(size, 1))
    total = cur
    for idx, (op, fields, node) in enumerate(descs):
        for k in ("ddr",):
            if k in fields and op in (isa.OP_LOAD, isa.OP_LOADW, isa.OP_STORE):
                region = {v: r for r, v in REG.items()}[fields[k] & ~((1 << 28) - 1)]
                fields[k] = base[region] + (fields[k] & ((1 << 28) - 1))
    descs[0][1]["n_desc"] = len(descs)

    image = np.zeros(total, np.uint8)
    wo = base["weights"]
    if wimg:
        wb = np.concatenate(wimg)
        image[wo: wo + wb.size] = wb
    po = base["params"]
    pb = param_words.view(np.uint8)
    image[po: po + pb.size] = pb

    placed = {}
    for name, p in tensors.items():
        ddr = base["outputs"] + out_off[name] if name in out_off else (
            base["input"] if name == graph.input.name else None)
        placed[name] = TensorPlacement(name, p.layout, p.shape, act_addr.get(name, -1), p.words, ddr)
    prog = Program(cfg=cfg, T=T, descriptors=descs, image=image, regions=regions, tensors=placed,
                   relocs=relocs, input_name=graph.input.name, output_names=outputs, stats=stats,
                   act_peak=arena.peak, input_shape=tuple(graph.input.shape), fused=tuple(fused))
    img_w = prog.words().view(np.uint8).ravel()
    image[: img_w.size] = img_w
    return prog
