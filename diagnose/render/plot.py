"""What a figure is and which figures a study gets, without the drawing code.

A report whose figures all come from the cache never draws one: choosing and
laying them out imports none of ``figures`` or ``svg``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Plot:
    """One rendered figure: an SVG ``data:`` URI, its display size in CSS pixels, a title and a caption."""

    title: str
    caption: str
    uri: str
    width: int
    height: int


def number(value) -> float | None:
    """A finite int or float as a float, else None (bools and evidence of the wrong type too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def swarm_axes(summary: dict) -> tuple[list[dict], list[float], list[float]] | None:
    """The swarm grid's cells, its momenta (rows) and lrs (columns); None when the study has no grid to show."""
    swarm = summary.get("swarm")
    if not isinstance(swarm, dict) or not isinstance(swarm.get("cells"), list):
        return None
    cells = [c for c in swarm["cells"] if isinstance(c, dict)]
    momenta = sorted({m for m in (number(c.get("momentum")) for c in cells) if m is not None})
    lrs = sorted({v for v in (number(c.get("lr")) for c in cells) if v is not None})
    # One momentum is an lr sweep: its loss curves show it better than a row of small multiples.
    if len(momenta) < 2 or not lrs or len(momenta) * len(lrs) > 64:
        return None
    return cells, momenta, lrs
