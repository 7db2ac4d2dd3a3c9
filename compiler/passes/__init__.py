"""Graph -> Graph passes, one per module.

Each pass module declares its contract as ``CONTRACT`` (a :class:`Contract`): the stage it
reads, the stage it writes and the names of the compile options it takes. The pipeline
checks the stages around every pass and hands it exactly the declared options (validated
once, in :class:`~compiler.pipeline.CompileOptions`), as hls4ml's flows declare theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Contract"]


@dataclass(frozen=True)
class Contract:
    """What a pass needs and establishes.

    Members
    -------
    name : the pass name (its module name).
    input_stage, output_stage : graph stages (``float``, ``quantized``, ``integer``).
    options : names of :class:`~compiler.pipeline.CompileOptions`-derived keyword
        arguments the pass's ``run`` accepts.
    """

    name: str
    input_stage: str
    output_stage: str
    options: tuple[str, ...] = ()
