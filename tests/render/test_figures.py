"""The figures of the fixture's report show the marks the findings call for (read back from their SVG)."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

import pytest

from diagnose.render import figures

NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def drawn(page) -> dict[str, ET.Element]:
    """Each figure of the session's page, by its id, as parsed SVG."""
    found = re.findall(r'<figure id="([^"]+)">.*?<img src="data:image/svg\+xml;base64,([^"]+)"', page, flags=re.S)
    return {anchor: ET.fromstring(base64.b64decode(uri)) for anchor, uri in found}


def texts(root: ET.Element) -> list[str]:
    return [t.text for t in root.iter(f"{NS}text")]


def paths(root: ET.Element, **attributes) -> list[ET.Element]:
    return [p for p in root.iter(f"{NS}path") if all(p.get(k) == v for k, v in attributes.items())]


def test_the_sweep_marks_lr_star_and_shades_the_unstable_periods(drawn, analysis):
    sweep = drawn["s3-sweep"]
    best = next(s for s in analysis.document.studies if s["study"] == "sweep")["best_lr"]
    assert f"lr {best:g} = lr*" in texts(sweep) and "unstable period" in texts(sweep)
    assert paths(sweep, stroke=figures.BEST)  # lr*'s curve in green
    bands = paths(sweep, fill=figures.SHADE)
    assert bands and bands[0].get("d").count("z") >= 2  # one path, a band per unstable period


def test_the_axis_plot_marks_lr_star_and_what_is_off_scale(drawn):
    axis = texts(drawn["s3-axis"])
    assert "learning rate" in axis and "off scale" in axis
    assert any(t.startswith("lr* = ") for t in axis)


def test_the_lr_range_plot_annotates_its_evidence(drawn):
    assert {"lr_min 0.001", "lr_max 0.1", "blows up 0.5"} <= set(texts(drawn["s3-range-range"]))


def test_the_gap_plot_marks_the_onset_and_the_grad_plot_the_threshold(drawn, analysis):
    onset = next(f for f in analysis.document.findings if f.check == "overfitting").evidence["onset_step"]
    gap = drawn["f3-plot"]
    assert f"onset {onset}" in texts(gap)
    assert len(paths(gap, stroke=figures.MARK)) == 2  # dashed, on both panels
    grad = drawn["f2-plot"]
    assert any(t.startswith("recommended clip") for t in texts(grad)) and "outliers" in texts(grad)
    assert paths(grad, fill=figures.ABOVE)  # the outliers' dots


def test_log_axes_are_labelled_in_plain_numbers(drawn):
    for anchor in ("s3-sweep", "s3-range-range", "s3-axis"):
        labels = texts(drawn[anchor])
        assert "0.1" in labels and "1" in labels and not any("10^" in t or "$" in t for t in labels), anchor
