"""A small plotting library that writes SVG text: just what the report's figures draw.

matplotlib spent 70-120 ms a figure building tick, text and line objects and
rasterizing them; the report's figures need a few hundred strings of SVG, written
here in 2-5 ms. The vocabulary follows matplotlib's (``plot``, ``axvline``,
``set_ylim``, ``legend_above``...) so the figures read as they did.

Units: sizes come in inches and points as in matplotlib, shown at 96 CSS pixels
per inch. The SVG's own unit is a tenth of a CSS pixel, so every coordinate is
an integer: curves are written as integer steps (``l3-12 4 7``), 4-7 bytes a point.
The same calls give the same bytes (the figure cache and the parallel drawing
rely on it): nothing here depends on a clock, a font file or a hash seed.
"""

from __future__ import annotations

import base64
import functools
import math
import re
from dataclasses import dataclass, field

import numpy as np

PX_PER_INCH = 96
UNIT = 10  # SVG units per CSS pixel
PT = PX_PER_INCH / 72 * UNIT  # SVG units per point
FONT = "sans-serif"  # the reader's own font: an <img> SVG may not fetch one
TEXT = "#1f2328"
GRID = "#b0b0b0"
MINUS = "\u2212"  # a typographic minus, as matplotlib writes tick labels

# Line styles as dash patterns in multiples of the line width (matplotlib's scaled dashes).
DASHES = {"-": None, "--": (3.7, 1.6), ":": (1.0, 1.65)}

# Widths of DejaVu Sans glyphs in em (Chromium's usual sans-serif on Linux, wider than Arial or
# Helvetica): layout estimates text extents from them, so estimates err on the wide side.
_NARROW = dict.fromkeys(" .,:;'|!()[]ijlI", 0.32)
_WIDE = dict.fromkeys("mwMW%", 0.92)
_WIDTHS = {**dict.fromkeys("0123456789", 0.64), **_NARROW, **_WIDE, "f": 0.36, "t": 0.4, "r": 0.42}
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def escape(text: str) -> str:
    """Text from a log as SVG character data: markup escaped, characters XML forbids dropped."""
    # xml.sax.saxutils.escape would import urllib.request and http.client for these four replacements
    text = _XML_INVALID.sub("", str(text)).replace("&", "&amp;")
    return text.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def text_width(text: str, size: float) -> float:
    """Estimated width of ``text`` at ``size`` (any unit): for layout, never for drawing."""
    return size * _ems(text)


@functools.lru_cache(maxsize=4096)
def _ems(text: str) -> float:
    """``text``'s width in em: the same tick labels and legend entries are measured in figure after figure."""
    return sum(_WIDTHS.get(c, 0.72 if c.isupper() else 0.6) for c in text)


def _num(value: float) -> str:
    """A coordinate: an integer number of SVG units (``round`` gives an int, of a numpy float too)."""
    return str(round(value))


@dataclass
class _Axis:
    scale: str = "linear"
    low: float | None = None  # limits set by the caller; None: from the data
    high: float | None = None
    label: str = ""
    label_size: float = 9.0  # points
    integer: bool = False  # ticks on whole numbers only (steps)
    data: list = field(default_factory=list)  # arrays the limits are fitted to
    sticky: list = field(default_factory=list)  # values the margins stop at (a histogram's zero)
    view: tuple[float, float] = (0.0, 1.0)  # the limits, once resolved
    ends: tuple = (0.0, 1.0)  # the view on the linear scale (``scaled``), worked out once

    def fit(self) -> None:
        """The view: the caller's limits, else the data's with matplotlib's 5% margins (in log space on log axes)."""
        values = np.concatenate([np.asarray(d, dtype=float).ravel() for d in self.data]) if self.data else np.array([])
        values = values[np.isfinite(values)]
        if self.scale == "log":
            values = values[values > 0]
        if values.size:
            low, high = float(values.min()), float(values.max())
        else:
            low, high = (1.0, 10.0) if self.scale == "log" else (0.0, 1.0)
        if self.scale == "log":
            low, high = math.log10(low), math.log10(high)
        if high == low:  # one value: a window around it, as matplotlib's nonsingular does
            low, high = (low - 0.5, high + 0.5) if self.scale == "log" else (
                (low - 0.05 * abs(low), high + 0.05 * abs(high)) if low else (-0.05, 0.05))
        pad = 0.05 * (high - low)
        if self.scale == "log":
            low, high = 10 ** (low - pad), 10 ** (high + pad)
        else:  # the margin stops at a sticky value just past the data
            low = max([low - pad] + [v for v in self.sticky if v <= low])
            high = min([high + pad] + [v for v in self.sticky if v >= high])
        low = self.low if self.low is not None else low
        high = self.high if self.high is not None else high
        if self.scale == "log" and (low <= 0 or high <= low):  # a caller's limit that a log axis cannot show
            low, high = (low, low * 10) if low > 0 else (high / 10, high) if high > 0 else (1.0, 10.0)
        if high <= low:
            high = low + 1.0
        self.view = (low, high)
        self.ends = tuple(self.scaled(self.view))

    def scaled(self, values) -> np.ndarray:
        """Values on the axis' linear scale (log10 on log axes; non-positive ones there become NaN)."""
        values = np.asarray(values, dtype=float)
        if self.scale != "log":
            return values
        # NaN where a value is not positive (NaN is not): no value the log is taken of warns
        return np.log10(values, out=np.full(values.shape, np.nan), where=values > 0)

    def fraction(self, values) -> np.ndarray:
        """Where values lie between the view's ends, 0 to 1."""
        low, high = self.ends
        return (self.scaled(values) - low) / (high - low)

    def ticks(self, bins: int) -> tuple[list[float], list[str]]:
        """Major ticks within the view and their labels: 1-2-2.5-5 steps on linear axes, decades (and 2s, 5s
        on short ones) on log axes, round linear steps on a log axis too short for two of those."""
        low, high = self.view
        if self.scale == "log":
            decades = math.log10(high / low)
            subs = (1, 2, 3, 5) if decades < 1 else (1, 2, 5) if decades < 2 else (1,)
            first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
            stride = max(1, math.ceil((last - first) / 7))  # at most ~7 labelled decades
            ticks = [float(f"{s}e{k}") for k in range(first, last + 1) if k % stride == 0 for s in subs]
            ticks = [t for t in ticks if low * (1 - 1e-10) <= t <= high * (1 + 1e-10)]
            if len(ticks) >= 2:
                return ticks, [f"{t:g}" for t in ticks]
        ticks = _nice_ticks(low, high, bins, self.integer)
        return ticks, tick_labels(ticks)


def _nice_ticks(low: float, high: float, bins: int, integer: bool) -> list[float]:
    """Multiples of the smallest 1-2-2.5-5 step that puts at most ``bins + 1`` of them within ``[low, high]``."""
    raw = (high - low) / bins
    if raw <= 0 or not math.isfinite(raw):
        return [low]
    magnitude = 10 ** math.floor(math.log10(raw) - 1)
    if integer:  # steps of 1, 2, 5, 10 at the least
        magnitude = max(magnitude, 0.1)
    for factor in (1, 2, 2.5, 5, 10, 20, 25, 50, 100):  # the last always fits: 100 * magnitude > raw
        step = factor * magnitude
        if integer and (step < 1 or step % 1):
            continue
        start, stop = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
        if stop - start + 1 <= bins + 1:
            break
    return [0.0 if i == 0 else i * step for i in range(start, stop + 1)]


def tick_labels(ticks: list[float]) -> list[str]:
    """Plain numbers: ``0.25`` and ``20000``, never an offset or ``1e4``; all with the decimals the finest needs."""
    digits = next((d for d in range(10) if all(abs(round(t, d) - t) < 1e-9 * max(1.0, abs(t)) for t in ticks)), 10)
    labels = [f"{t:.{digits}f}" if abs(t) < 1e7 else f"{t:g}" for t in ticks]
    return [MINUS + label[1:] if label.startswith("-") else label for label in labels]


class Axes:
    """One plotting area. Marks are kept as calls and drawn once the limits are known, as matplotlib does."""

    def __init__(self, figure: Figure, box: tuple[float, float, float, float]):
        self.figure = figure
        self.box = box  # left, top, width, height in inches, from the figure's top left corner
        self.x, self.y = _Axis(), _Axis()
        self.title = ("", 8.0)
        self.marks: list = []  # (zorder, draw(axes) -> svg, clip)
        self.entries: list[tuple[str, dict]] = []  # legend: label, handle style
        self.legend: tuple | None = None
        self.texts: list[tuple] = []
        self.hide_x_labels = self.hide_y_labels = False
        self.last_column = True  # no axes to its right: a legend above may use the figure's right margin
        self._points: list[tuple[np.ndarray, np.ndarray]] = []  # drawn vertices, for a legend "best" placed

    # -- limits and labels

    def set_xscale(self, scale: str) -> None:
        self.x.scale = scale

    def set_yscale(self, scale: str) -> None:
        self.y.scale = scale

    def set_xlim(self, low: float | None = None, high: float | None = None) -> None:
        self.x.low, self.x.high = low, high

    def set_ylim(self, low: float | None = None, high: float | None = None) -> None:
        self.y.low, self.y.high = low, high

    def set_xlabel(self, text: str, size: float = 9.0, integer: bool = False) -> None:
        self.x.label, self.x.label_size, self.x.integer = text, size, integer

    def set_ylabel(self, text: str, size: float = 9.0) -> None:
        self.y.label, self.y.label_size = text, size

    def set_title(self, text: str, size: float = 8.0) -> None:
        self.title = (text, size)

    # -- marks

    def plot(self, x, y, color: str, width: float = 1.5, alpha: float = 1.0, style: str = "-",
             label: str | None = None, zorder: float = 2, marker: str | None = None, size: float = 6.0,
             line: bool = True, y_axes: bool = False, clip: bool = True) -> None:
        """A polyline through ``(x, y)`` and/or a marker at each point; ``y_axes``: y in axes fractions (0-1).

        Non-finite points break the line, as in matplotlib.
        """
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self.x.data.append(x)
        if not y_axes:
            self.y.data.append(y)
        style_of = {"color": color, "width": width, "alpha": alpha, "style": style if line else None,
                    "marker": marker, "size": size}
        if label is not None:
            self.entries.append((label, style_of))

        def draw(ax: Axes) -> str:
            px, py = ax._to_units(x, y, y_axes)
            out = _polyline(px, py, style_of) if line else ""
            if marker:
                out += _markers(px, py, style_of)
            ax._points.append((px, py))
            return out

        self.marks.append((zorder, draw, clip))

    def legend_entry(self, label: str, color: str, marker: str | None = None, size: float = 6.0) -> None:
        """A legend line for marks drawn elsewhere (matplotlib's ``plot([], [], label=...)``)."""
        self.entries.append((label, {"color": color, "width": 1.5, "alpha": 1.0, "style": None if marker else "-",
                                     "marker": marker, "size": size}))

    def axvline(self, x: float, color: str, width: float = 1.0, style: str = "-", label: str | None = None,
                zorder: float = 2) -> None:
        self.plot([x, x], [0, 1], color, width, style=style, label=label, zorder=zorder, y_axes=True)

    def axhline(self, y: float, color: str, width: float = 1.0, style: str = "-", label: str | None = None,
                zorder: float = 2) -> None:
        self.y.data.append(np.array([y], dtype=float))
        style_of = {"color": color, "width": width, "alpha": 1.0, "style": style, "marker": None, "size": 0}
        if label is not None:
            self.entries.append((label, style_of))

        def draw(ax: Axes) -> str:
            left, top, w, h = ax._units()
            level = top + h * (1 - float(ax.y.fraction([y])[0]))
            return _polyline(np.array([left, left + w]), np.array([level, level]), style_of)

        self.marks.append((zorder, draw, True))

    def axvspans(self, spans: list[tuple[float, float]], color: str, alpha: float, label: str | None = None,
                 zorder: float = 1) -> None:
        """Full-height bands over ``spans`` of x, one path for all of them."""
        if not spans:
            return
        self.x.data.append(np.array(spans, dtype=float))
        if label is not None:
            self.entries.append((label, {"color": color, "alpha": alpha, "band": True}))

        def draw(ax: Axes) -> str:
            _, top, _, h = ax._units()
            starts, _ = ax._to_units(np.array([s for s, _ in spans]), np.zeros(len(spans)))
            ends, _ = ax._to_units(np.array([e for _, e in spans]), np.zeros(len(spans)))
            d = "".join(f"M{_num(a)} {_num(top)}H{_num(max(b, a + 1))}v{_num(h)}H{_num(a)}z"
                        for a, b in zip(starts.tolist(), ends.tolist()) if math.isfinite(a) and math.isfinite(b))
            return f'<path d="{d}" fill="{color}" fill-opacity="{alpha:g}"/>' if d else ""

        self.marks.append((zorder, draw, True))

    def stairs(self, values, edges, color: str, zorder: float = 2) -> None:
        """A filled histogram: ``values[i]`` over ``[edges[i], edges[i+1]]``, from zero."""
        values, edges = np.asarray(values, dtype=float), np.asarray(edges, dtype=float)
        self.x.data.append(edges)
        self.y.data.append(np.append(values, 0.0))
        self.y.sticky.append(0.0)  # the bars stand on the x axis, as matplotlib's stairs do

        def draw(ax: Axes) -> str:
            xs = np.repeat(edges, 2)
            ys = np.concatenate([[0.0], np.repeat(values, 2), [0.0]])
            px, py = ax._to_units(xs, ys)
            return _polyline(px, py, {"color": color, "fill": True})

        self.marks.append((zorder, draw, True))

    def text(self, x: float, y: float, text: str, size: float, color: str = TEXT, ha: str = "left",
             va: str = "baseline", x_data: bool = False) -> None:
        """Text at ``(x, y)`` in axes fractions (``x_data``: x in data coordinates); drawn unclipped.

        A data x outside the view is not drawn, as matplotlib skips annotations whose point is out of view.
        """
        self.texts.append((x, y, text, size, color, ha, va, x_data))

    def legend_above(self, ncols: int = 4, order=None) -> None:
        """The legend in the top margin, where it hides no data; entries sorted by ``order(label)`` if given."""
        self.legend = ("above", ncols, order)

    def legend_inside(self) -> None:
        """The legend in the corner of the axes where it covers the fewest drawn points (matplotlib's "best")."""
        self.legend = ("best", 1, None)

    # -- drawing

    def _units(self) -> tuple[float, float, float, float]:
        left, top, width, height = self.box
        shift = self.figure.shift
        return (left * PX_PER_INCH * UNIT, top * PX_PER_INCH * UNIT + shift,
                width * PX_PER_INCH * UNIT, height * PX_PER_INCH * UNIT)

    def _to_units(self, x, y, y_axes: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Data to SVG units, kept within ten boxes of the axes: a loss of 1e30 stays a finite, short number."""
        left, top, w, h = self._units()
        px = left + w * self.x.fraction(x)
        fy = np.asarray(y, dtype=float) if y_axes else self.y.fraction(y)
        py = top + h * (1 - fy)
        # np.clip's own checks cost more than these two ufuncs on the few points of most marks
        return (np.minimum(np.maximum(px, left - 10 * w), left + 11 * w),
                np.minimum(np.maximum(py, top - 10 * h), top + 11 * h))

    def legend_height(self) -> float:
        """SVG units the legend above needs, or 0."""
        if not self.legend or self.legend[0] != "above" or not self.entries:
            return 0.0
        return _legend_layout(self)[1]

    def svg(self, clip_id: str) -> str:
        left, top, w, h = self._units()
        out = [f'<clipPath id="{clip_id}"><rect x="{_num(left)}" y="{_num(top)}" width="{_num(w)}" '
               f'height="{_num(h)}"/></clipPath>']
        bins = 3 if self.box[2] < 2.5 else 5
        (xticks, xlabels), (yticks, ylabels) = self.x.ticks(bins), self.y.ticks(bins)
        xs = (left + w * self.x.fraction(xticks)).tolist()  # Python floats: round() of a numpy one costs ~1 us
        ys = (top + h * (1 - self.y.fraction(yticks))).tolist()
        grid = "".join(f"M{_num(v)} {_num(top)}v{_num(h)}" for v in xs) + "".join(
            f"M{_num(left)} {_num(v)}h{_num(w)}" for v in ys)
        marks = [(z, draw(self), clip) for z, draw, clip in self.marks]
        marks.append((1.5, f'<path d="{grid}" stroke="{GRID}" stroke-opacity="0.25" '
                           f'stroke-width="{_num(0.6 * PT)}" fill="none"/>', False))
        clipped = False
        for _, element, clip in sorted(marks, key=lambda m: m[0]):  # stable: equal zorders keep call order
            if element and clip != clipped:  # one group for each stretch of clipped marks
                out.append(f'<g clip-path="url(#{clip_id})">' if clip else "</g>")
                clipped = clip
            out.append(element)
        if clipped:
            out.append("</g>")
        out.append(self._frame(xlabels, ylabels, xs, ys))
        for x, y, text, size, color, ha, va, x_data in self.texts:
            fx = float(self.x.fraction([x])[0]) if x_data else x
            if not math.isfinite(fx) or (x_data and not -1e-9 <= fx <= 1 + 1e-9):
                continue
            # beside a line drawn at that x, not on it
            pad = 2 * PT * {"left": 1, "right": -1}.get(ha, 0) if x_data else 0
            out.append(_text(left + w * fx + pad, top + h * (1 - y), text, size, color, ha, va))
        if self.legend and self.entries:
            out.append(_legend(self))
        return "".join(out)

    def _frame(self, xlabels, ylabels, xs, ys) -> str:
        """Left and bottom spines, outward ticks, tick labels, axis labels and the title."""
        left, top, w, h = self._units()
        bottom = top + h
        tick, pad, size = 3.5 * PT, 3.5 * PT, 8 * PT
        spines = f"M{_num(left)} {_num(top)}V{_num(bottom)}H{_num(left + w)}"
        marks = "".join(f"M{_num(v)} {_num(bottom)}v{_num(tick)}" for v in xs) + "".join(
            f"M{_num(left)} {_num(v)}h{_num(-tick)}" for v in ys)
        out = [f'<path d="{spines}{marks}" stroke="#000" stroke-width="{_num(0.8 * PT)}" fill="none"/>']
        if not self.hide_x_labels:
            for v, label in zip(xs, xlabels):
                out.append(_text(v, bottom + tick + pad, label, 8, TEXT, "center", "top"))
        widest = 0.0
        if not self.hide_y_labels:
            widest = max((text_width(label, size) for label in ylabels), default=0.0)
            for v, label in zip(ys, ylabels):
                out.append(_text(left - tick - pad, v, label, 8, TEXT, "right", "center"))
        if self.x.label:
            below = bottom + tick + pad + (1.2 * size if not self.hide_x_labels else 0) + 3.5 * PT
            out.append(_text(left + w / 2, below, self.x.label, self.x.label_size, TEXT, "center", "top"))
        if self.y.label:
            beside = left - tick - pad - widest - 4 * PT
            out.append(_text(beside, top + h / 2, self.y.label, self.y.label_size, TEXT, "center", "bottom",
                             rotate=True))
        text, title_size = self.title
        if text:
            out.append(_text(left + w / 2, top - 6 * PT, text, title_size, TEXT, "center", "bottom"))
        return "".join(out)


class Figure:
    """A grid of axes with fixed margins in inches (left, right, bottom, top), as ``subplots_adjust`` places them."""

    def __init__(self, width: float, height: float, margins: tuple[float, float, float, float],
                 nrows: int = 1, ncols: int = 1, width_ratios: list[float] | None = None,
                 wspace: float = 0.35, hspace: float = 0.25, share: bool = False):
        self.width, self.height = width, height
        self.shift = 0.0  # SVG units the axes move down when a legend needs more room than the top margin
        left, right, bottom, top = margins
        inner_w, inner_h = width - left - right, height - top - bottom
        cell_w = inner_w / (ncols + wspace * (ncols - 1))
        cell_h = inner_h / (nrows + hspace * (nrows - 1))
        ratios = np.asarray(width_ratios or [1.0] * ncols, dtype=float)
        widths = cell_w * ncols * ratios / ratios.sum()
        starts = left + np.concatenate([[0.0], np.cumsum(widths + wspace * cell_w)[:-1]])
        self.axes = [[Axes(self, (float(starts[c]), top + r * cell_h * (1 + hspace), float(widths[c]), cell_h))
                      for c in range(ncols)] for r in range(nrows)]
        for row in self.axes:
            for ax in row[:-1]:
                ax.last_column = False
        self.share = share
        if share:  # inner tick labels say what the outer ones say
            for r, row in enumerate(self.axes):
                for c, ax in enumerate(row):
                    ax.hide_x_labels, ax.hide_y_labels = r < nrows - 1, c > 0

    def svg(self) -> tuple[str, int, int]:
        """The SVG text and its size in CSS pixels."""
        flat = [ax for row in self.axes for ax in row]
        if self.share:  # one view for all: every axes sees every axes' data
            for name in ("x", "y"):
                merged = [d for ax in flat for d in getattr(ax, name).data]
                for ax in flat:
                    getattr(ax, name).data = merged
        for ax in flat:
            ax.x.fit()
            ax.y.fit()
            if ax.legend and ax.legend[2] is not None:  # sorted before it is laid out
                ax.entries = sorted(ax.entries, key=lambda entry, order=ax.legend[2]: order(entry[0]))
        top_margin = min(ax.box[1] for ax in flat) * PX_PER_INCH * UNIT
        needed = max(ax.legend_height() for ax in flat)
        self.shift = max(0.0, needed + 2 * PT - top_margin)
        width = round(self.width * PX_PER_INCH)
        height = round(self.height * PX_PER_INCH + self.shift / UNIT)
        body = "".join(ax.svg(f"c{i}") for i, ax in enumerate(flat))
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
               f'viewBox="0 0 {width * UNIT} {height * UNIT}" font-family="{FONT}" fill="{TEXT}">'
               f'<rect width="100%" height="100%" fill="#fff"/>{body}</svg>')
        return svg, width, height

    def uri(self) -> tuple[str, int, int]:
        """The figure as a ``data:`` URI (base64: no character of it needs escaping in HTML) and its size."""
        svg, width, height = self.svg()
        return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii"), width, height


# ---------------------------------------------------------------- elements


def _stroke(style: dict) -> str:
    width = style["width"] * PT
    attrs = f'stroke="{style["color"]}" stroke-width="{_num(width)}"'
    if style.get("alpha", 1.0) < 1:
        attrs += f' stroke-opacity="{style["alpha"]:g}"'
    dash = DASHES.get(style.get("style") or "-")
    if dash:
        attrs += f' stroke-dasharray="{_num(dash[0] * width)} {_num(dash[1] * width)}"'
    return attrs


def _path_data(px: np.ndarray, py: np.ndarray) -> str:
    """Polylines through the points as integer steps; a non-finite point starts a new polyline."""
    if len(px) <= _FEW:
        return _few_path_data(px, py)
    finite = np.isfinite(px) & np.isfinite(py)
    if not finite.any():
        return ""
    if finite.all():  # one polyline: the usual case
        spans = [(0, len(px))]
    else:  # runs of consecutive finite points
        edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]]))).tolist()
        spans = zip(edges[0::2], edges[1::2])
        px, py = np.where(finite, px, 0), np.where(finite, py, 0)
    points = np.empty((len(px), 2))  # filled in place: np.stack's checks and copy cost ~15 us a curve
    points[:, 0], points[:, 1] = px, py
    points = np.rint(points, out=points).astype(np.int64)
    parts = []
    for start, end in spans:
        steps = np.diff(points[start:end], axis=0)
        # a point that rounds onto the last one adds nothing (compress: a tenth of the time of a boolean index)
        steps = np.compress((steps[:, 0] | steps[:, 1]) != 0, steps, axis=0)
        head = "M" + _numbers(points[start]).removeprefix(" ")
        parts.append(head + "l" + _numbers(steps.ravel()).removeprefix(" ") if len(steps) else head)
    return "".join(parts)


_FEW = 8  # points of the lines, bars and legend handles most marks are: numpy's calls cost more than they save


def _few_path_data(px: np.ndarray, py: np.ndarray) -> str:
    """``_path_data`` of a few points, in Python (``round`` rounds half to even as ``np.round`` does)."""
    spans, here = [], None
    for x, y in zip(px.tolist(), py.tolist()):
        if not (math.isfinite(x) and math.isfinite(y)):
            here = None
        elif here is None:
            here = (round(x), round(y))
            spans.append([f"M{here[0]} {here[1]}"])
        elif (round(x), round(y)) != here:  # a point that rounds onto the last one adds nothing
            point = (round(x), round(y))
            spans[-1].append(f"{point[0] - here[0]} {point[1] - here[1]}")
            here = point
    return "".join(span[0] + ("l" + " ".join(span[1:]) if len(span) > 1 else "") for span in spans).replace(" -", "-")


_NEAR = 8192  # steps shorter than this (nearly all: an axes is 2,000-6,500 units wide) are written from a table


# Each integer from -_NEAR to _NEAR - 1 as a path writes it after another number: `` 12``, ``-12``. Made on
# import (2 ms), so that worker processes forked to draw inherit it.
_SIGNED = np.array([f" {i}" if i >= 0 else str(i) for i in range(-_NEAR, _NEAR)], dtype=object)


def _numbers(values: np.ndarray) -> str:
    """Integers as path data: each after a space, or after nothing when a minus sign separates it (`` 3-12 4``).

    Joined from a table of their strings: a quarter of the time of formatting them, even at once.
    """
    far = np.abs(values) >= _NEAR
    if not far.any():
        return "".join(_SIGNED[values + _NEAR].tolist())
    words = _SIGNED[np.where(far, 0, values) + _NEAR].tolist()
    for i in np.flatnonzero(far).tolist():
        words[i] = f" {values[i]}" if values[i] >= 0 else str(values[i])
    return "".join(words)


def _polyline(px: np.ndarray, py: np.ndarray, style: dict) -> str:
    d = _path_data(px, py)
    if not d:
        return ""
    if style.get("fill"):
        return f'<path d="{d}z" fill="{style["color"]}"/>'
    return f'<path d="{d}" {_stroke(style)} fill="none" stroke-linejoin="round"/>'


def _markers(px: np.ndarray, py: np.ndarray, style: dict) -> str:
    """One path for all markers: ``o`` dots, ``^`` triangles, ``x`` crosses, ``X`` bold crosses."""
    keep = np.isfinite(px) & np.isfinite(py)
    r = style["size"] * PT / 2
    color, marker = style["color"], style["marker"]
    points = list(zip(np.round(px[keep]).astype(int).tolist(), np.round(py[keep]).astype(int).tolist()))
    if not points:
        return ""
    q, half = _num(r), round(r)
    edge = f'stroke="{color}" stroke-width="{_num(PT)}"'  # matplotlib's 1 pt marker edge
    if marker == "o":
        arcs = f"a{q} {q} 0 1 0 {_num(2 * r)} 0a{q} {q} 0 1 0 {_num(-2 * r)} 0"
        d = "".join(f"M{x - half} {y}{arcs}" for x, y in points)
        return f'<path d="{d}" fill="{color}" {edge}/>'
    if marker == "^":
        sides = f"l{_num(r)} {_num(1.5 * r)}h{_num(-2 * r)}z"
        d = "".join(f"M{x} {y - half}{sides}" for x, y in points)
        return f'<path d="{d}" fill="{color}" {edge} stroke-linejoin="round"/>'
    cross = f"l{2 * half} {2 * half}m0 {-2 * half}l{-2 * half} {2 * half}"
    d = "".join(f"M{x - half} {y - half}{cross}" for x, y in points).replace(" -", "-")
    width = (0.45 * r) if marker == "X" else PT
    return f'<path d="{d}" stroke="{color}" stroke-width="{_num(width)}" fill="none"/>'


def _text(x: float, y: float, text: str, size: float, color: str, ha: str, va: str, rotate: bool = False) -> str:
    """Text whose ``ha`` (left, center, right) and ``va`` (top, center, baseline, bottom) side is at ``(x, y)``."""
    units = size * PT
    anchor = {"left": "start", "center": "middle", "right": "end"}[ha]
    # baseline offsets from the top, centre and bottom of a line of text (ascent ~0.76 em, descent ~0.24 em)
    shift = {"top": 0.76, "center": 0.36, "baseline": 0.0, "bottom": -0.24}[va] * units
    if rotate:  # reads upwards; its baseline is then on the right of its glyphs
        x = x - shift
        transform = f' transform="rotate(-90 {_num(x)} {_num(y)})"'
        position = f'x="{_num(x)}" y="{_num(y)}"'
    else:
        transform, position = "", f'x="{_num(x)}" y="{_num(y + shift)}"'
    anchor_attr = "" if anchor == "start" else f' text-anchor="{anchor}"'
    fill = "" if color == TEXT else f' fill="{color}"'  # TEXT is the <svg>'s own fill
    return f'<text {position} font-size="{_num(units)}"{anchor_attr}{fill}{transform}>{escape(text)}</text>'


_LEGEND_SIZE = 7  # points


def _legend_layout(ax: Axes) -> tuple[list[float], float, int]:
    """Column widths, total height and columns of the legend: as many columns as asked and as fit.

    Above the axes it may reach into the right margin when no axes lies to its right; inside, it takes at
    most 60% of the axes' width.
    """
    size = _LEGEND_SIZE * PT
    left, _, w, _ = ax._units()
    if ax.legend[0] != "above":
        room = 0.6 * w
    elif ax.last_column:
        room = ax.figure.width * PX_PER_INCH * UNIT - left - 2 * PT
    else:
        room = w
    entries = ax.entries
    for ncols in range(min(ax.legend[1], len(entries)), 0, -1):
        rows = -(-len(entries) // ncols)
        widths = [max(2.4 * size + text_width(label, size) for label, _ in entries[c::ncols]) for c in range(ncols)]
        if sum(widths) + 1.2 * size * (ncols - 1) <= room or ncols == 1:
            return widths, rows * 1.5 * size + 0.4 * size, ncols
    raise AssertionError("unreachable: one column always fits")


def _legend(ax: Axes) -> str:
    """The legend, row by row: a line, marker or band, then the label."""
    kind = ax.legend[0]
    left, top, w, h = ax._units()
    size = _LEGEND_SIZE * PT
    widths, height, ncols = _legend_layout(ax)
    total = sum(widths) + 1.2 * size * (ncols - 1)
    if kind == "above":
        x0, y0, frame = left, top - height - 2 * PT, ""
    else:
        x0, y0 = _best_corner(ax, total + 0.8 * size, height + 0.4 * size)
        frame = (f'<rect x="{_num(x0)}" y="{_num(y0)}" width="{_num(total + 0.8 * size)}" '
                 f'height="{_num(height + 0.4 * size)}" rx="{_num(2 * PT)}" fill="#fff" fill-opacity="0.8" '
                 f'stroke="#ccc" stroke-width="{_num(0.8 * PT)}"/>')
        x0, y0 = x0 + 0.4 * size, y0 + 0.2 * size
    out = [frame]
    for i, (label, style) in enumerate(ax.entries):
        row, col = divmod(i, ncols)
        x = x0 + sum(widths[:col]) + 1.2 * size * col
        y = y0 + 0.2 * size + (row + 0.5) * 1.5 * size
        handle = 1.6 * size
        if style.get("band"):
            out.append(f'<rect x="{_num(x)}" y="{_num(y - 0.35 * size)}" width="{_num(handle)}" '
                       f'height="{_num(0.7 * size)}" fill="{style["color"]}" fill-opacity="{style["alpha"]:g}"/>')
        else:
            if style.get("style"):
                out.append(_polyline(np.array([x, x + handle]), np.array([y, y]), style))
            if style.get("marker"):
                out.append(_markers(np.array([x + handle / 2]), np.array([y]), style))
        out.append(_text(x + handle + 0.8 * size, y, label, _LEGEND_SIZE, TEXT, "left", "center"))
    return "".join(out)


def _best_corner(ax: Axes, width: float, height: float) -> tuple[float, float]:
    """The top left of a legend box in the corner of the axes that covers the fewest drawn points."""
    left, top, w, h = ax._units()
    inset = 0.5 * _LEGEND_SIZE * PT
    corners = [(left + w - width - inset, top + inset), (left + inset, top + inset),
               (left + inset, top + h - height - inset), (left + w - width - inset, top + h - height - inset)]
    xs = np.concatenate([p[0] for p in ax._points]) if ax._points else np.array([])
    ys = np.concatenate([p[1] for p in ax._points]) if ax._points else np.array([])

    def covered(corner):
        x, y = corner
        return int(np.count_nonzero((xs >= x) & (xs <= x + width) & (ys >= y) & (ys <= y + height)))

    return min(corners, key=covered)  # min keeps the first of equals: upper right, as matplotlib prefers
