"""`diagnose report --markdown FILE` writes the summary beside the HTML report."""

from __future__ import annotations

from click.testing import CliRunner

from diagnose.cli import main


def test_report_writes_html_and_markdown(log_root, tmp_path):
    html_path, md_path = tmp_path / "out" / "report.html", tmp_path / "out" / "summary.md"
    result = CliRunner().invoke(
        main, ["report", str(log_root), "-o", str(html_path), "--markdown", str(md_path), "--no-cache"])
    assert result.exit_code == 0, result.output
    assert f"wrote {md_path}" in result.output
    summary = md_path.read_text()
    assert summary.startswith("### ") and "diagnose:" in summary.splitlines()[0]
    assert "3 studies, 20 runs" in summary
    assert html_path.read_text().startswith("<!DOCTYPE html>")
