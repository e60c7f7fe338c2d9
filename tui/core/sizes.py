"""Byte counts as people read them, one way for the whole product.

Three conventions use it: the commands' lines (``12.3 KB``, 1024-based: :func:`tui.core.names.size_text`),
the validator's messages (``64.0 MiB``, IEC units) and the screens (``1.2 kB``, ``34 MB``: decimal
units as file managers show them, ``tui.widgets.formatting.human_size``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def byte_size(n: float, units: Sequence[str], *, step: int = 1024, whole_from: float = math.inf) -> str:
    """``n`` bytes in the first of ``units`` (each ``step`` times the one before; the last takes
    any larger count) in which it stays below ``step``: a whole number in the first unit, else
    one decimal, or a whole number from ``whole_from`` on."""
    value = float(n)
    for i, unit in enumerate(units):
        if abs(value) < step or i == len(units) - 1:
            if i == 0:
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}" if abs(value) < whole_from else f"{value:.0f} {unit}"
        value /= step
    raise ValueError("byte_size needs at least one unit")
