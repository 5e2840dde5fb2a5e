"""The texts the page escapes once and reuses (a finding's check and steps, a study's name) and a study's command."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from diagnose.analyze import Analysis
from diagnose.findings import Finding, Severity
from diagnose.model import Run, Study
from diagnose.render import html


def test_a_findings_check_steps_and_study_read_the_same_in_its_row_and_its_card(analysis):
    odd = [
        Finding(check="<b>mine</b>", severity=Severity.ERROR, study="<i>s</i>", runs=("a&b",), steps=(7, 7),
                title="t", detail="d"),
        Finding(check="loss_spike", severity=Severity.WARNING, study="<i>s</i>", runs=(), steps=(140, 220),
                title="u", detail="e"),
        Finding(check="loss_spike", severity=Severity.INFO, study="<i>s</i>", runs=(), title="v", detail="f"),
    ]
    document = dataclasses.replace(analysis.document, findings=odd)
    page = html.render(Analysis(document, studies=[Study("<i>s</i>", [])]))
    rows = re.findall(r'<tr><td><span class="sev \w+">\w+</span></td>(.*?)</tr>', page)
    assert rows == [
        '<td><a href="#f1">t</a></td><td><code>&lt;b&gt;mine&lt;/b&gt;</code></td><td>&lt;i&gt;s&lt;/i&gt; / a&amp;b</td>'
        '<td class="num">7</td>',
        '<td><a href="#f2">u</a></td><td><code>loss_spike</code></td><td>&lt;i&gt;s&lt;/i&gt;</td>'
        '<td class="num">140–220</td>',
        '<td><a href="#f3">v</a></td><td><code>loss_spike</code></td><td>&lt;i&gt;s&lt;/i&gt;</td><td class="num"></td>',
    ]
    wheres = re.findall(r'<article class="finding (\w+)" id="(f\d)">\n<h4>.*?</h4>\n<p class="where">(.*?)</p>', page)
    assert wheres == [
        ("error", "f1", "<code>&lt;b&gt;mine&lt;/b&gt;</code> &middot; &lt;i&gt;s&lt;/i&gt; / a&amp;b &middot; step 7"),
        ("warning", "f2", "<code>loss_spike</code> &middot; &lt;i&gt;s&lt;/i&gt; &middot; steps 140–220"),
        ("info", "f3", "<code>loss_spike</code> &middot; &lt;i&gt;s&lt;/i&gt;"),
    ]
    assert '<h2 id="s1">Study &lt;i&gt;s&lt;/i&gt;</h2>' in page and "<h3>Findings in &lt;i&gt;s&lt;/i&gt;</h3>" in page


def test_a_studys_command_reports_the_folder_that_holds_all_its_runs():
    def command(*sources):
        return html._command(Study("s", [Run(f"r{i}", "s", source=Path(p)) for i, p in enumerate(sources)]))

    assert command("/logs/s/r1", "/logs/s/r2") == "diagnose report /logs/s"
    assert command("/logs/s/a/r1", "/logs/s/b/r2", "/logs/s/a/r3") == "diagnose report /logs/s"
    assert command("logs/my study/r1") == "diagnose report 'logs/my study'"
    assert command("/r1", "/r2") == "diagnose report /"
    assert command("r1") == "" and command("/logs/r1", "logs/r2") == ""
