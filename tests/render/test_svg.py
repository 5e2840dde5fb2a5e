"""The SVG plotting module: well-formed, escaped, deterministic, with readable ticks and clipped curves."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from diagnose.render import svg

NS = "{http://www.w3.org/2000/svg}"


def parse(figure: svg.Figure) -> ET.Element:
    text, width, height = figure.svg()
    root = ET.fromstring(text)
    assert (root.get("width"), root.get("height")) == (str(width), str(height))
    return root


def texts(root: ET.Element) -> list[str]:
    return [t.text for t in root.iter(f"{NS}text")]


def a_figure(**kwargs) -> tuple[svg.Figure, svg.Axes]:
    figure = svg.Figure(7.6, 3.0, (0.7, 0.15, 0.5, 0.55), **kwargs)
    return figure, figure.axes[0][0]


def test_log_strings_are_text_never_markup():
    figure, ax = a_figure()
    evil = '<script>alert(1)</script> & "q" $\\frac{a}{b}$ \x00\x1b'
    ax.plot([0, 1, 2], [1, 2, 3], "#000", label=evil)
    ax.text(0.5, 0.5, evil, 8)
    ax.set_ylabel(evil)
    ax.legend_above()
    text = figure.svg()[0]
    assert "<script" not in text and "\x00" not in text and "\x1b" not in text
    root = ET.fromstring(text)  # well-formed XML, whatever the label held
    clean = '<script>alert(1)</script> & "q" $\\frac{a}{b}$ '
    assert texts(root).count(clean) == 3  # the legend, the text and the axis label, shown literally


def test_the_same_calls_give_the_same_bytes():
    def draw() -> str:
        figure, ax = a_figure()
        rng = np.random.default_rng(0)
        ax.plot(np.arange(500), np.exp(rng.standard_normal(500)), "#0969da", label="a")
        ax.axvspans([(10, 20), (300, 310)], "#ff8182", 0.25, "shade")
        ax.set_yscale("log")
        ax.legend_above()
        return figure.uri()[0]

    assert draw() == draw()


def test_a_uri_is_base64_svg_of_the_stated_size():
    figure, ax = a_figure()
    ax.plot([0, 1], [0, 1], "#000")
    uri, width, height = figure.uri()
    assert uri.startswith("data:image/svg+xml;base64,")
    text = base64.b64decode(uri.split(",", 1)[1]).decode()
    assert text.startswith("<svg ") and text.endswith("</svg>")
    assert (width, height) == (730, 288)  # 7.6 x 3.0 inches at 96 CSS px per inch


@pytest.mark.parametrize(("low", "high", "scale", "labels"), [
    (0.0015, 40.0, "log", ["0.01", "0.1", "1", "10"]),  # decades, plainly written
    (0.05, 0.5, "log", ["0.05", "0.1", "0.2", "0.5"]),  # one decade: 1-2-5 steps, so it still has labels
    (0.31, 0.39, "log", ["0.32", "0.34", "0.36", "0.38"]),  # no 1-2-5 tick inside: round linear steps
    (0.0095, 0.0145, "log", ["0.010", "0.011", "0.012", "0.013", "0.014"]),  # ... with equal decimals
    (1e-12, 1e12, "log", ["1e-12", "1e-08", "0.0001", "1", "10000", "1e+08", "1e+12"]),  # at most ~7 decades
    (-75, 1575, "linear", ["0", "500", "1000", "1500"]),
    (-0.0031, 0.0079, "linear", ["\u22120.002", "0.000", "0.002", "0.004", "0.006"]),  # a typographic minus
])
def test_ticks_are_few_round_and_plain(low, high, scale, labels):
    axis = svg._Axis(scale=scale, view=(low, high))
    ticks, shown = axis.ticks(5)
    assert shown == labels
    assert all(low <= t <= high for t in ticks)


def test_step_ticks_are_whole_numbers():
    axis = svg._Axis(integer=True, view=(-0.2, 3.2))
    assert axis.ticks(5) == ([0, 1, 2, 3], ["0", "1", "2", "3"])


def test_limits_follow_the_data_with_margins_unless_set():
    figure, ax = a_figure()
    ax.plot([0, 100], [1, 1000], "#000")
    ax.set_yscale("log")
    ax.set_ylim(high=100)
    parse(figure)
    assert ax.x.view == pytest.approx((-5, 105))  # 5% margins, as matplotlib
    assert ax.y.view[0] == pytest.approx(10 ** -0.15) and ax.y.view[1] == 100  # log margins; the set limit kept


def test_a_histogram_stands_on_the_x_axis():
    figure, ax = a_figure()
    ax.stairs([3, 10, 4], [1, 2, 3, 4], "#8c959f")
    parse(figure)
    assert ax.y.view == pytest.approx((0, 10.5)) and ax.x.view == pytest.approx((0.85, 4.15))


def path_points(d: str) -> list[list[tuple[int, int]]]:
    """The absolute vertices of each subpath of an ``M x y l dx dy ...`` path."""
    lines = []
    for absolute, relative in re.findall(r"M(-?\d+ -?\d+)(?:l([-\d ]+))?", d):
        x, y = map(int, absolute.split())
        points = [(x, y)]
        steps = [int(v) for v in re.findall(r"-?\d+", relative)]
        for dx, dy in zip(steps[0::2], steps[1::2]):
            x, y = x + dx, y + dy
            points.append((x, y))
        lines.append(points)
    return lines


def test_curves_are_integer_steps_broken_at_non_finite_points_and_clipped():
    figure, ax = a_figure()
    ax.plot([0, 1, 2, 3, 4, 5], [0, 1, np.nan, 3, 1e300, 5], "#123456")
    ax.set_ylim(0, 5)
    root = parse(figure)
    path = next(p for p in root.iter(f"{NS}path") if p.get("stroke") == "#123456")
    lines = path_points(path.get("d"))
    assert [len(line) for line in lines] == [2, 3]  # the NaN starts a second polyline
    left, top, width, height = ax._units()
    assert lines[0][0] == (round(left + width * 5 / 110), round(top + height))  # data (0, 0), in 0.1 px
    assert all(abs(y) < 20 * height for _, y in lines[1])  # 1e300 becomes a short, finite number
    clipped = [g for g in root.iter(f"{NS}g") if g.get("clip-path") == "url(#c0)"]
    assert clipped and path in list(clipped[0])  # the curve is clipped to the axes box


def plain_path_data(px: np.ndarray, py: np.ndarray) -> str:
    """What ``svg._path_data`` writes, said the plain way: every number formatted, spaces before minus signs dropped."""
    parts, here = [], None
    for x, y in zip(px.tolist(), py.tolist()):
        if not (np.isfinite(x) and np.isfinite(y)):
            here = None
            continue
        point = (int(np.round(x)), int(np.round(y)))
        if here is None:
            parts.append(f"M{point[0]} {point[1]}")
        elif point != here:
            parts.append(("l" if parts[-1].startswith("M") else " ") + f"{point[0] - here[0]} {point[1] - here[1]}")
        here = point
    return "".join(parts).replace(" -", "-")


@pytest.mark.parametrize("n", [0, 1, 2, 5, 8, 9, 40, 3000])
def test_path_data_is_every_step_written_out(n):
    """The fast ways (a few points in Python, many from a table of strings) write what formatting each would."""
    rng = np.random.default_rng(n)
    for scale in (0.4, 30.0, 3e3, 3e4):  # steps within the table and far past it
        px, py = rng.normal(0, scale, n).cumsum(), rng.normal(0, scale, n)
        px[::7] = np.round(px[::7]) + 0.5  # halves round to even
        if n > 3:
            px[n // 3], py[n // 2] = np.nan, -np.inf
            py[: n // 4] = py[0]  # points that round onto the last one
        assert svg._path_data(px, py) == plain_path_data(px, py)


def test_marks_on_the_top_edge_are_not_clipped():
    figure, ax = a_figure()
    ax.plot([1, 2], [1, 2], "#000")
    ax.plot([1.5], [1], "#cf222e", marker="x", line=False, y_axes=True, clip=False, zorder=5)
    root = parse(figure)
    marker = next(p for p in root.iter(f"{NS}path") if p.get("stroke") == "#cf222e")
    clipped = [e for g in root.iter(f"{NS}g") for e in g]
    assert marker not in clipped
    _, top, _, _ = ax._units()
    assert path_points(marker.get("d"))[0][0][1] < top  # the cross sits on the top edge, half above it


def test_a_legend_that_needs_more_room_makes_the_figure_taller():
    figure, ax = a_figure()
    ax.plot([0, 1], [0, 1], "#000", label="one")
    ax.legend_above()
    assert figure.svg()[2] == 288
    crowded, ax = a_figure()
    for i in range(30):
        ax.plot([0, 1], [i, i + 1], "#000", label=f"a long legend entry {i}")
    ax.legend_above(ncols=7)
    text, _, height = crowded.svg()
    assert height > 288
    legend_y = [float(t.get("y")) for t in ET.fromstring(text).iter(f"{NS}text") if t.text.startswith("a long")]
    assert min(legend_y) > 0  # the first row is inside the figure


def test_shared_axes_have_one_view_and_outer_labels():
    figure = svg.Figure(4.4, 3.4, (0.7, 0.15, 0.5, 0.3), nrows=2, ncols=2, share=True)
    figure.axes[0][0].plot([0, 10], [1, 2], "#000")
    figure.axes[1][1].plot([0, 500], [0.1, 5], "#000")
    parse(figure)
    views = {(ax.x.view, ax.y.view) for row in figure.axes for ax in row}
    assert len(views) == 1
    assert [[ax.hide_x_labels, ax.hide_y_labels] for row in figure.axes for ax in row] == [
        [True, False], [True, True], [False, False], [False, True]]


def test_the_figures_import_no_matplotlib():
    script = ("import sys, numpy as np\nfrom diagnose.render import svg\n"
              "f = svg.Figure(7.6, 3, (0.7, 0.15, 0.5, 0.3)); f.axes[0][0].plot(np.arange(3), np.ones(3), '#000')\n"
              "f.uri()\nimport diagnose.render.figures\n"
              "print(sorted(m for m in ('matplotlib', 'PIL') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
