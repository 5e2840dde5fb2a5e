"""The report in a real browser: headless Chromium loads it offline, without errors, every figure drawn.

Skipped where no Chromium is installed (CI installs Debian's ``chromium``).
Screenshots go to the test's temporary folder, and also to
``$DIAGNOSE_SCREENSHOTS`` when that is set, for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from diagnose.analyze import analyze
from diagnose.findings import Finding, Severity
from diagnose.readers import read_root
from diagnose.render import html

from .browser import Browser, find_chromium
from .many_studies import make_root

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (CI installs Debian's chromium)")

FACTS = """(() => {
  const images = [...document.images];
  return {
    images: images.length,
    drawn: images.filter(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 100).length,
    figures: document.querySelectorAll("figure").length,
    buttons: document.querySelectorAll("button.copy").length,
    snippets: document.querySelectorAll("pre.snippet").length,
    verdict: document.querySelector(".verdict").innerText,
    text: document.body.innerText,
    firstScreen: [...document.querySelectorAll(".top .finding")].filter(
      e => e.getBoundingClientRect().bottom <= window.innerHeight).length,
  };
})()"""


@pytest.fixture(scope="module")
def browser():
    with Browser(CHROMIUM) as instance:
        yield instance


def keep(path: Path) -> None:
    folder = os.environ.get("DIAGNOSE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


def assert_clean(load, url: str) -> None:
    assert load.exceptions == [], load.exceptions
    assert [c for c in load.console if c["type"] in ("error", "warning", "assert")] == []
    assert [e for e in load.log if e.get("level") in ("error", "warning")] == [], load.log  # CSP violations
    assert load.dialogs == []
    # the page itself and its inline data: images; nothing from the network or the disk
    assert [r for r in load.requests if r != url and not r.startswith("data:")] == []


def test_the_report_loads_offline_with_every_figure_drawn(browser, page, tmp_path):
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    url = path.resolve().as_uri()
    shots = {"viewport": tmp_path / "report-first-screen.png", "full": tmp_path / "report-full.png"}
    load = browser.load(url, shots, facts_script=FACTS)
    assert_clean(load, url)
    facts = load.facts
    assert facts["figures"] == page.count("<figure") > 10
    assert facts["images"] == facts["drawn"] == facts["figures"]
    assert facts["buttons"] == facts["snippets"] > 0  # the copy buttons of the inline script ran
    assert facts["verdict"].startswith("Warnings")
    assert facts["firstScreen"] >= 2  # the top findings are on the first screen at 1280x900
    for path in shots.values():
        assert path.stat().st_size > 20_000  # a drawn page, not a blank one
        keep(path)


def test_the_report_reads_the_same_with_javascript_off(browser, analysis, page, tmp_path):
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    url = path.resolve().as_uri()
    load = browser.load(url, javascript=False, facts_script=FACTS)
    assert_clean(load, url)
    assert load.facts["images"] == load.facts["drawn"] == load.facts["figures"] > 10
    assert load.facts["buttons"] == 0 and load.facts["snippets"] > 0
    for finding in analysis.document.findings:
        assert finding.title in load.facts["text"]


def test_a_script_in_a_run_name_is_shown_as_text_and_never_runs(browser, tmp_path, train):
    evil = "<script>alert(1)</script>"
    train(tmp_path / "logs" / "s" / "x", study="s", name=evil, lr=0.05, steps=40, eval_every=10,
          extra_config={"note": "<img src=x onerror=alert(2)>"})
    analysis = analyze(read_root(tmp_path / "logs"))
    analysis.document.findings.append(Finding(
        check="loss_spike", severity=Severity.WARNING, study="s", runs=(evil,), steps=(5, 9),
        title=f"{evil} spiked", detail=evil))
    path = tmp_path / "evil.html"
    html.write(analysis, path)
    url = path.resolve().as_uri()
    load = browser.load(url, {"viewport": tmp_path / "evil.png"}, facts_script=FACTS)
    assert_clean(load, url)
    text = load.facts["text"]
    assert f"{evil} spiked" in text and "<img src=x onerror=alert(2)>" in text
    assert len(re.findall(re.escape(evil), text)) >= 3  # title, table, runs table


def test_a_page_of_many_studies_names_those_left_without_figures(browser, tmp_path):
    analysis = analyze(read_root(make_root(tmp_path / "logs", studies=40)))
    path = tmp_path / "many.html"
    path.write_text(html.render(analysis, figure_bytes=300_000), encoding="utf-8")
    url = path.resolve().as_uri()
    load = browser.load(url, {"viewport": tmp_path / "many-first-screen.png"}, facts_script=FACTS)
    assert_clean(load, url)
    facts = load.facts
    assert 0 < facts["images"] == facts["drawn"] == facts["figures"]
    shown = re.search(r"Figures are shown for (\d+) of 40 studies", facts["text"])
    assert shown and 0 < int(shown[1]) < 40
    assert f"{40 - int(shown[1])} studies without figures" in facts["text"]
    for finding in analysis.document.findings:
        assert finding.title in facts["text"]
    keep(tmp_path / "many-first-screen.png")


SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_the_samples_report_with_the_real_checks(browser, tmp_path):
    if not any(SAMPLES.glob("*/**/run.json")):
        pytest.skip(f"no sample runs under {SAMPLES}")
    analysis = analyze(read_root(SAMPLES))
    path = tmp_path / "samples.html"
    html.write(analysis, path)
    url = path.resolve().as_uri()
    load = browser.load(url, {"viewport": tmp_path / "samples-first-screen.png",
                              "full": tmp_path / "samples-full.png"}, facts_script=FACTS)
    assert_clean(load, url)
    assert load.facts["images"] == load.facts["drawn"] == load.facts["figures"] > 0
    assert load.facts["firstScreen"] >= 1
    for shot in ("samples-first-screen.png", "samples-full.png"):
        keep(tmp_path / shot)
