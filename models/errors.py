"""Error types shared by every layer of svf-deploy.

Each error carries a distinct process exit code (2 is left to argparse usage errors) so that the command-line tools can
turn it into one clear line and a non-zero status without a traceback. The base lives
in the lowest layer (``models``) because imports flow one way:
models -> compiler -> hw -> sim -> svf_deploy.
"""

from __future__ import annotations

__all__ = [
    "SVFError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointMismatchError",
    "UnsafeCheckpointError",
    "NotSpikingError",
    "MissingStatisticsError",
    "LeakNotShiftError",
    "ConfigError",
    "UnsupportedModelError",
    "GraphError",
    "OutputError",
    "HardwareError",
    "ExportError",
    "DataError",
    "IntegrityError",
    "VerifyMismatchError",
]


class SVFError(Exception):
    """Base class. ``exit_code`` is the status a CLI exits with for this error."""

    exit_code: int = 1


class ConfigError(SVFError, ValueError):
    """A model or compiler configuration is invalid."""

    exit_code = 8


class CheckpointError(SVFError):
    """A checkpoint is missing, corrupted, foreign, or does not fit the model."""

    exit_code = 3


class CheckpointNotFoundError(CheckpointError):
    """The checkpoint path does not exist or is not a file."""

    exit_code = 9


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's keys or shapes do not fit the architecture."""

    exit_code = 10


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint needs arbitrary unpickling; refused unless explicitly allowed."""

    exit_code = 4


class UnsupportedModelError(SVFError):
    """A layer or configuration the compiler cannot translate exactly."""

    exit_code = 5


class NotSpikingError(UnsupportedModelError):
    """The model has no spiking neurons: nothing to compile to a spike graph."""

    exit_code = 11


class MissingStatisticsError(UnsupportedModelError):
    """A BatchNorm has no running statistics, so it cannot be folded."""

    exit_code = 12


class LeakNotShiftError(UnsupportedModelError, ConfigError):
    """A neuron's tau is not a power of two, so its leak is not an arithmetic shift.

    Both an unsupported model (for the compiler) and a bad neuron configuration.
    """

    exit_code = 13


class GraphError(SVFError):
    """A graph file or IR object is malformed or violates an invariant."""

    exit_code = 6


class OutputError(SVFError):
    """The output location cannot be written."""

    exit_code = 7


class HardwareError(SVFError):
    """A node, width or parameter that the hardware cores cannot implement exactly.

    Raised when hardware is generated (never approximated): the message names the node or
    core, the offending value and what would make it implementable.
    """

    exit_code = 14


class ExportError(SVFError):
    """A node an interchange format (NIR, ONNX) cannot express, refused under ``--strict``,
    or an exporter package that is missing."""

    exit_code = 15


class DataError(SVFError):
    """Validation data (``--data``) that cannot be used: unreadable or undecodable file,
    a clip shorter than ``T``, wrong frame shape or value range, labels that do not match.
    The message names the file."""

    exit_code = 16


class IntegrityError(SVFError):
    """A compiled OUTDIR whose files are corrupt or were changed after svf-compile wrote
    them: a sha256 that differs from the manifest, a missing or unlisted file, widths that
    differ from the proof, or an incomplete golden record. ``svf-verify`` exit code."""

    exit_code = 20


class VerifyMismatchError(SVFError):
    """The golden reference, re-run on the stored clip, produced values that differ from
    the stored golden record (the message says how many and where the first is)."""

    exit_code = 21
