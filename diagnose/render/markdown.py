"""A short Markdown summary for a PR comment or a CI step summary (``$GITHUB_STEP_SUMMARY``).

The verdict, the counts, the findings as a table (most severe first, at most
``MAX_ROWS``), what to change as config snippets, and the runs that could not
be read. It reads only the findings document. Every string from a log is
escaped: the characters that start Markdown markup inside a table cell or a
list item get a backslash and ``<``, ``>``, ``&`` become
entities, since GitHub renders HTML inside Markdown.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..findings import FindingsDocument, Severity
from .html import config_snippet, steps_text, where

MAX_ROWS = 10
MAX_FIXES = 3
MAX_UNREADABLE = 5

_VERDICT = {"healthy": "Healthy", "warnings": "Warnings", "errors": "Errors"}
_ICON = {"healthy": "✅", "warnings": "⚠️", "errors": "❌"}


def escape(text: str) -> str:
    """``text`` shown literally in Markdown and in the HTML that GitHub renders from it."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"([\\`*_\[\]|~])", r"\\\1", text)
    return " ".join(text.split())


def render(document: FindingsDocument) -> str:
    """The summary's Markdown text."""
    findings = document.findings
    counts = {s: sum(f.severity is s for f in findings) for s in Severity}
    steps = sum(int(run.get("steps") or 0) for run in document.runs)
    verdict = document.verdict
    lines = [f"### {_ICON[verdict]} diagnose: {_VERDICT[verdict]}", ""]
    tally = ", ".join(f"{n} {s.value}{'s' if n != 1 else ''}" for s, n in reversed(counts.items()) if n)
    lines.append(
        f"{escape(document.root)}: {_count(len(document.studies), 'study', 'studies')}, "
        f"{_count(len(document.runs), 'run', 'runs')}, {steps:,} logged steps"
        + (f", {len(document.unreadable)} unreadable" if document.unreadable else "")
        + f". Findings: {tally or 'none'}."
    )
    if findings:
        lines += ["", "| severity | check | where | steps | finding |", "|---|---|---|---|---|"]
        for finding in findings[:MAX_ROWS]:
            span = steps_text(finding.steps, "") if finding.steps else ""
            lines.append(
                f"| {finding.severity.value} | `{finding.check}` | {escape(where(finding))} | {span} "
                f"| {escape(finding.title)} |"
            )
        if len(findings) > MAX_ROWS:
            lines.append(f"\n…and {len(findings) - MAX_ROWS} more in the HTML report.")
    fixes = [f for f in findings if f.recommendation is not None and f.severity is not Severity.INFO]
    shown, seen = [], set()
    for finding in fixes:
        if finding.check not in seen:
            seen.add(finding.check)
            shown.append(finding)
    if shown:
        lines += ["", "**What to change**", ""]
        for finding in shown[:MAX_FIXES]:
            recommendation = finding.recommendation
            lines.append(f"- {escape(where(finding))}: {escape(recommendation.why or recommendation.action)}")
            snippet = config_snippet(recommendation)
            if snippet:
                lines += ["  ```yaml", *(f"  {_code(line)}" for line in snippet.splitlines()), "  ```"]
    if document.unreadable:
        lines += ["", f"**{len(document.unreadable)} run(s) could not be read**", ""]
        for entry in document.unreadable[:MAX_UNREADABLE]:
            lines.append(f"- {escape(entry.get('error', entry.get('path', '')))}")
        if len(document.unreadable) > MAX_UNREADABLE:
            lines.append(f"- …and {len(document.unreadable) - MAX_UNREADABLE} more")
    if document.skipped:
        names = sorted({entry.get("check", "") for entry in document.skipped})
        lines += ["", f"Checks skipped for missing data: {', '.join(f'`{_code(n)}`' for n in names)}."]
    return "\n".join(lines) + "\n"


def write(document: FindingsDocument, path: Path) -> None:
    """Write the summary to ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(document), encoding="utf-8")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _code(text: str) -> str:
    """Text inside a code span or fence: a backtick or a line break would end it."""
    return str(text).replace("`", "'").replace("\n", " ")
