"""The leak as a shift: ``tau = 2**k``, the one power-of-two check every layer uses.

Torch-free (math only), so the compiler's static bounds and the hardware generators can use
it without importing the torch model (:mod:`models.neurons` re-exports it).
"""

from __future__ import annotations

import math

from .errors import LeakNotShiftError

__all__ = ["leak_shift"]


def leak_shift(tau: float, where: str = "") -> int:
    """``k`` with ``tau == 2**k`` (``k >= 1``); the one check every layer uses.

    Raises :class:`LeakNotShiftError` (a ConfigError and an UnsupportedModelError) when
    ``tau`` is not a power of two; ``where`` prefixes the message (e.g. the node name).
    """
    k = round(math.log2(tau)) if tau > 0 else 0
    if k < 1 or abs(2.0 ** k - tau) > 1e-12 * tau:
        raise LeakNotShiftError(f"{where + ': ' if where else ''}tau={tau!r} is not a power of two; "
                                "its leak is not a shift (retrain with tau in 2, 4, 8, ...)")
    return int(k)
