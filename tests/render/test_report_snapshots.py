"""Snapshots of the report's text: the Markdown summary, the first screen, the findings table.

A fixed findings document (no training, no clock) is rendered; the text is
compared with ``snapshots/``. After an intended change, regenerate with
``UPDATE_SNAPSHOTS=1 python -m pytest tests/render/test_report_snapshots.py``
and review the diff.
"""

from __future__ import annotations

import os
import re
from html import unescape
from pathlib import Path

import pytest

from diagnose.analyze import Analysis
from diagnose.findings import Finding, FindingsDocument, Recommendation, Severity
from diagnose.render import html, markdown

SNAPSHOTS = Path(__file__).parent / "snapshots"


def document() -> FindingsDocument:
    findings = [
        Finding("divergence", Severity.ERROR, "sweep-a", ("lr1.0-s0",), "lr1.0-s0: diverged at step 63 (loss became inf)",
                "From step 63 on, 137 of 200 logged updates have a non-finite loss; the last finite loss was 1.2e4.",
                steps=(63, 199), evidence={"first_nonfinite_step": 63},
                recommendation=Recommendation("warmup", "the run diverged early: ramp the lr up over 100 steps",
                                              {"warmup_steps": 100, "base_lr": 1.0})),
        Finding("unstable_above_best_lr", Severity.WARNING, "sweep-a", ("lr0.3-s0", "lr0.3-s1", "lr1.0-s0", "lr1.0-s1"),
                "Runs above lr* = 0.1 are unstable", "The loss rises in 4 runs at lr 0.3 and 1.0, for 80 steps in all.",
                steps=(140, 220), evidence={"periods": {"lr0.3-s0": [[140, 160]]}},
                recommendation=Recommendation("warmup", "fix the instability to use a higher lr",
                                              {"warmup_steps": 1000, "base_lr": 0.3})),
        Finding("grad_norm_outliers", Severity.WARNING, "sweep-a", ("lr0.1-s0",), "lr0.1-s0: 3% of gradient norms are outliers | x",
                "The 90th percentile is 2.4; 31 updates exceed 10x the median (0.8).", steps=(12, 1900),
                evidence={"threshold": 2.4, "percentile": 90},
                recommendation=Recommendation("clip", "clip at the 90th percentile", {"threshold": 2.4})),
        Finding("lr_range", Severity.INFO, "range", ("lrrt",), "LR range test: lr_min 0.001, lr_max 0.1",
                "The loss falls fastest between 0.001 and 0.1 and blows up at 0.5.",
                evidence={"lr_min": 0.001, "lr_max": 0.1},
                recommendation=Recommendation("lr", "the largest lr where the loss still falls", {"value": 0.1})),
    ]
    return FindingsDocument(
        root="logs/<script>alert(1)</script>",
        studies=[{"study": "sweep-a", "best_lr": 0.1, "runs": []}, {"study": "range", "best_lr": None, "runs": []}],
        findings=findings,
        unreadable=[{"path": "logs/bad", "error": "logs/bad/steps.csv:7: loss is 'abc', not a number"}],
        skipped=[{"check": "overfitting", "reason": "no valid evals", "count": 6, "targets": ["sweep-a/lr0.1-s0"]}],
        runs=[{"study": "sweep-a", "name": f"lr{lr}-s{s}", "role": "train", "status": "finished", "steps": 2000,
               "lr": lr, "momentum": 0.9, "config": {}, "notes": []} for lr in (0.1, 0.3, 1.0) for s in (0, 1)],
        generated="2026-11-22T03:00:00+00:00",
        tool_version="0.1.0",
    )


def text_of(fragment: str) -> str:
    """Visible text, one line per table row or block, cells joined by `` | ``."""
    fragment = re.sub(r"<script>.*?</script>|<style>.*?</style>", "", fragment, flags=re.S)
    fragment = re.sub(r"</t[dh]>\s*<t[dh][^>]*>", " | ", fragment)
    fragment = re.sub(r"<(?:/tr|/h\d|/p|/pre|br|/article|/div)[^>]*>", "\n", fragment)
    text = unescape(re.sub(r"<[^>]+>", "", fragment))
    return "\n".join(line.strip() for line in text.splitlines() if line.strip()) + "\n"


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.write_text(text, encoding="utf-8")
    if not path.exists():
        pytest.fail(f"{path} is missing: run with UPDATE_SNAPSHOTS=1 and review it")
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page() -> str:
    return html.render(Analysis(document(), studies=[]))


def test_markdown_summary_snapshot():
    check_snapshot("summary.md", markdown.render(document()))


def test_first_screen_snapshot(page):
    check_snapshot("first_screen.txt", text_of(page[page.index("<body>"):page.index('<nav')]))


def test_findings_table_snapshot(page):
    start = page.index('<h2 id="findings">')
    check_snapshot("findings_table.txt", text_of(page[start:page.index("</table>", start)]))


def test_markdown_escapes_log_strings():
    text = markdown.render(document())
    assert "<script>" not in text and "logs/&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "outliers \\| x" in text  # a pipe in a title does not split the table row
