"""A log root of many studies: the page keeps every study and finding, and figures within its budget.

Real run folders (tests/render/many_studies.py) read and checked by the real
checks; the budget is lowered so that 40 small studies do not all fit.
"""

from __future__ import annotations

import re
import shlex
from html import unescape
from pathlib import Path

import pytest

from diagnose.analyze import analyze
from diagnose.readers import read_root
from diagnose.render import html

from .many_studies import make_root

BUDGET = 300_000


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    root = make_root(tmp_path_factory.mktemp("many") / "logs", studies=40)
    return root, analyze(read_root(root))


@pytest.fixture(scope="module")
def page(many) -> str:
    return html.render(many[1], figure_bytes=BUDGET)


def sections(page: str) -> dict[str, str]:
    """Each study's section of the page, by study name."""
    parts = re.split(r'<h2 id="s\d+">Study ', page)[1:]
    return {part[:part.index("</h2>")]: part for part in parts}


def study_figures(section: str) -> bool:
    """Whether a study's section shows the study's figures (a finding's card may hold a plot of its own)."""
    return re.search(r'<figure id="s\d+-', section) is not None


def test_study_figures_stay_within_the_budget_most_severe_studies_first(many, page):
    analysis = many[1]
    images = re.findall(r'<figure id="(s\d+)-[^"]*">.*?src="(data:[^"]*)"', page, flags=re.S)
    assert 0 < sum(len(uri) for _, uri in images) <= BUDGET
    shown = {name for name, text in sections(page).items() if study_figures(text)}
    assert 0 < len(shown) < len(analysis.studies)
    # the studies shown are the first ones in the findings' ranking: every error before any warning ...
    ranked = list(dict.fromkeys(f.study for f in analysis.document.findings))
    quiet = [s.name for s in analysis.studies if s.name not in ranked]
    assert shown == set(ranked[:len(shown)])
    errors = {f.study for f in analysis.document.findings if f.severity.value == "error"}
    assert errors and errors <= shown
    assert quiet and not shown & set(quiet)  # ... and a study with no finding gets none while one with one waits
    assert html.render(analysis).count("<figure") > page.count("<figure")  # the default budget holds them all


def test_the_page_names_every_study_left_out_and_how_to_see_it(many, page):
    root, analysis = many
    by_name = sections(page)
    left = [name for name, text in by_name.items() if not study_figures(text)]
    note = page[page.index('<p id="left-out">'):page.index("</details>", page.index('<p id="left-out">'))]
    assert f"Figures are shown for {len(by_name) - len(left)} of {len(by_name)} studies" in note
    assert f"{len(left)} studies without figures" in note
    listed = re.findall(r'<a href="#s\d+">([^<]+)</a>', note)
    assert sorted(listed) == sorted(left)
    for name in left:
        assert f"To see them: <code>diagnose report {root / name}</code>" in by_name[name]
        assert "only the first 12 findings get one" not in by_name[name]  # the study's note says it once


def test_every_study_and_finding_stays_on_the_page(many, page):
    analysis = many[1]
    findings = analysis.document.findings
    overview = page[page.index('<table class="overview"'):page.index("</table>", page.index('<table class="overview"'))]
    assert overview.count("<tr>") == len(analysis.studies) + 1
    assert overview.count("(no figures)") == len(re.findall(r"No figures of this study", page)) > 0
    assert finding_rows(page) == [f"f{i}" for i in range(1, len(findings) + 1)]
    assert len(re.findall(r'<article class="finding \w+" id="f\d+">', page)) == len(findings)
    text = unescape(page)
    for finding in findings:
        assert finding.title in text and finding.detail in text
    # past html.NAV_STUDIES studies the contents line links the studies table, not each of them
    nav = page[page.index("<nav"):page.index("</nav>")]
    assert '<a href="#studies">40 studies</a>' in nav and 'href="#s1"' not in nav and 'id="studies"' in page


def finding_rows(page: str) -> list[str]:
    """The anchors the findings table's rows link to, open and folded."""
    start = page.index('<h2 id="findings">')
    return re.findall(r'<tr><td><span class="sev \w+">\w+</span></td><td><a href="#(f\d+)">',
                      page[start:page.index('<h2 id="s1">', start)])


def test_a_long_findings_table_folds_the_informational_rows(many, monkeypatch):
    analysis = many[1]
    infos = [f"f{i}" for i, f in enumerate(analysis.document.findings, start=1) if f.severity.value == "info"]
    assert 0 < len(infos) < len(analysis.document.findings)
    monkeypatch.setattr(html, "FINDING_ROWS", len(analysis.document.findings) - 1)
    page = html.render(analysis, figure_bytes=BUDGET)
    assert finding_rows(page) == [f"f{i}" for i in range(1, len(analysis.document.findings) + 1)]
    folded = page[page.index('<details class="folded">'):]
    folded = folded[:folded.index("</details>")]
    assert f"<summary>{len(infos)} informational findings" in folded
    assert re.findall(r'<a href="#(f\d+)">', folded) == infos
    monkeypatch.setattr(html, "FINDING_ROWS", len(analysis.document.findings))
    assert '<details class="folded">' not in html.render(analysis, figure_bytes=BUDGET)


def test_the_most_important_study_keeps_its_figures_whatever_their_size(many):
    analysis = many[1]
    page = html.render(analysis, figure_bytes=1)
    shown = [name for name, text in sections(page).items() if study_figures(text)]
    assert shown == [analysis.document.findings[0].study]
    assert f"Figures are shown for 1 of {len(analysis.studies)} studies" in page


def test_the_command_given_for_a_study_left_out_draws_its_figures(many, page):
    command = unescape(re.search(r"To see them: <code>(diagnose report [^<]+)</code>", page)[1])
    alone = html.render(analyze(read_root(Path(shlex.split(command)[2]))), figure_bytes=1)
    assert alone.count("<figure") >= 2 and 'id="left-out"' not in alone
