"""Host driver for the engine on the ZCU104's PS (PYNQ-style; ``pynq`` when present).

The register map is :mod:`svf_deploy.hw.accel.isa`'s, the one the cocotb testbench drives.
A run: allocate one DDR buffer, copy the program's DDR image relocated to the buffer's
physical address (descriptors hold absolute DDR addresses, listed in ``relocs``), write
the input clip's bit-planes, write ``PROG_ADDR``, enable the interrupt, set ``CTRL.start``,
wait for ``STATUS.done`` (or the interrupt), read ``CYCLES`` and decode the stored tensors.

On the board::

    from svf_deploy.hw.driver import Accelerator
    acc = Accelerator.from_overlay("vivado/svf_accel.bit", "program")   # needs pynq
    out = acc.run(codes)            # codes: [T, C, H, W] input codes (0..255)
    out["time_mean"]                # the model's output, as reference.run(record=True)

Anywhere else, pass any ``mmio`` with ``read(offset)`` / ``write(offset, value)`` and a
``buffer`` with ``physical_address`` and a writable ``uint8`` view (tests use fakes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .accel import isa

__all__ = ["Accelerator", "load_program"]


def load_program(directory):
    """Re-create the :class:`~svf_deploy.hw.accel.program.Program` host view from the files
    ``svf-compile --target zcu104`` wrote (``program.json`` + ``ddr_image.bin``)."""
    from .accel.config import AccelConfig
    from .accel.program import FORMAT, Program, TensorPlacement

    d = Path(directory)
    meta = json.loads((d / "program.json").read_text())
    if meta.get("format") != FORMAT or meta.get("isa_version") != isa.VERSION:
        raise ValueError(f"{d / 'program.json'} is not a version-{isa.VERSION} {FORMAT!r}")
    stored = np.fromfile(d / "ddr_image.bin", dtype=np.uint8)
    if stored.size != meta.get("image_file_bytes", meta["image_bytes"]) or stored.size > meta["image_bytes"]:
        raise ValueError(f"{d / 'ddr_image.bin'} has {stored.size} bytes, program.json expects "
                         f"{meta.get('image_file_bytes', meta['image_bytes'])}: the files do not belong together")
    image = np.zeros(meta["image_bytes"], np.uint8)   # input, outputs and scratch start zeroed
    image[: stored.size] = stored
    words = image[: meta["descriptors"] * isa.DESC_BYTES].view("<u4").reshape(-1, isa.DESC_WORDS)
    descs = []
    for row in words:
        op, fence = isa.decode_word0(row[0])
        fields = {k: int(row[isa.field_index(op, k)]) for k in isa.FIELDS[op]} | fence
        descs.append((op, fields, ""))
    tensors = {n: TensorPlacement(n, t["layout"], tuple(t["shape"]), t["act"], t["words"], t["ddr"])
               for n, t in meta["tensors"].items()}
    cfg = AccelConfig(**meta["config"])
    regions = {k: (v["offset"], v["bytes"]) for k, v in meta["regions"].items()}
    return Program(cfg=cfg, T=meta["T"], descriptors=descs, image=image, regions=regions,
                   tensors=tensors, relocs=[tuple(r) for r in meta["relocations"]],
                   input_name=meta["input"], output_names=tuple(meta["outputs"]),
                   act_peak=meta["act_peak_words"],
                   input_shape=tuple(meta["tensors"][meta["input"]]["shape"]))


class Accelerator:
    """One engine on the bus. ``mmio``: register window; ``buffer``: DDR buffer of at least
    ``program.image.size`` bytes, physically contiguous."""

    def __init__(self, program, mmio, buffer, *, interrupt=None):
        self.program = program
        self.mmio = mmio
        self.buffer = buffer
        self.interrupt = interrupt
        ident = int(mmio.read(isa.REG_ID))
        if ident != isa.MAGIC:
            raise RuntimeError(f"no svf engine at this address (ID {ident:#x}, expected {isa.MAGIC:#x})")
        version = int(mmio.read(isa.REG_VERSION))
        if version != isa.VERSION:
            raise RuntimeError(f"engine ISA version {version}, program version {isa.VERSION}: rebuild one of them")
        cfgw = int(mmio.read(isa.REG_CONFIG))
        if (cfgw & 0xFFFF, cfgw >> 16) != (program.cfg.p_o, program.cfg.p_t):
            raise RuntimeError(f"engine has P_o={cfgw & 0xFFFF}, P_t={cfgw >> 16}; the program was emitted "
                               f"for P_o={program.cfg.p_o}, P_t={program.cfg.p_t}")
        self.last_cycles = 0

    @classmethod
    def from_overlay(cls, bitfile, program_dir, ip_name: str = "accel"):  # pragma: no cover - board only
        """Load the bitstream with ``pynq`` and bind the engine and one DDR buffer."""
        try:
            import pynq
        except ImportError:
            raise RuntimeError("pynq is not installed: run this on the board's PYNQ image") from None
        prog = load_program(program_dir)
        ol = pynq.Overlay(str(bitfile))
        ip = getattr(ol, ip_name)
        buf = pynq.allocate(shape=(prog.image.size,), dtype=np.uint8)
        irq = getattr(ip, "interrupt", None)
        return cls(prog, ip.mmio if hasattr(ip, "mmio") else ip, buf, interrupt=irq)

    def _view(self) -> np.ndarray:
        return np.asarray(self.buffer).view(np.uint8).reshape(-1)

    def load(self, codes: np.ndarray) -> None:
        """Copy the relocated image and the input bit-planes into the DDR buffer."""
        base = int(self.buffer.physical_address)
        img = self.program.ddr_image(codes, base=base)
        view = self._view()
        if view.size < img.size:
            raise RuntimeError(f"DDR buffer of {view.size} bytes is smaller than the image ({img.size})")
        view[: img.size] = img
        if hasattr(self.buffer, "flush"):
            self.buffer.flush()

    def start(self) -> None:
        self.mmio.write(isa.REG_PROG, int(self.buffer.physical_address) & 0xFFFFFFFF)
        self.mmio.write(isa.REG_IRQ_EN, 1)
        self.mmio.write(isa.REG_CTRL, 1)

    def wait(self, timeout_s: float = 10.0) -> int:
        """Block until done; returns the engine's cycle count. Raises on error or timeout."""
        t0 = time.monotonic()
        while True:
            st = int(self.mmio.read(isa.REG_STATUS))
            if st & isa.STATUS_DONE and not st & isa.STATUS_BUSY:
                break
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"engine still busy after {timeout_s} s (descriptor "
                                   f"{int(self.mmio.read(isa.REG_PC))})")
        self.mmio.write(isa.REG_IRQ_STAT, 1)
        if st & isa.STATUS_ERROR:
            raise RuntimeError(f"engine stopped with an error at descriptor {int(self.mmio.read(isa.REG_PC))}")
        self.last_cycles = int(self.mmio.read(isa.REG_CYCLES))
        return self.last_cycles

    def results(self) -> dict[str, np.ndarray]:
        if hasattr(self.buffer, "invalidate"):
            self.buffer.invalidate()
        ddr = self._view()[: self.program.image.size]
        return {n: self.program.read_tensor(ddr, n) for n in self.program.stored}

    def run(self, codes: np.ndarray, timeout_s: float = 10.0) -> dict[str, np.ndarray]:
        """Load, start, wait, and return every stored tensor (``[T, *shape]`` int64)."""
        self.load(codes)
        self.start()
        self.wait(timeout_s)
        return self.results()
