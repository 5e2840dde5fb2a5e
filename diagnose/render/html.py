"""One self-contained HTML report per log root: verdict first, then the evidence."""

from __future__ import annotations

from pathlib import Path

import jinja2
from markupsafe import Markup

from ..analyze import Analysis
from . import figures

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("diagnose.render", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(analysis: Analysis) -> str:
    document = analysis.document
    plots = {study.name: figures.study_loss(study) for study in analysis.studies}
    return _ENV.get_template("report.html.j2").render(
        doc=document,
        verdict=document.verdict,
        findings=document.findings,
        studies=document.studies,
        runs=document.runs,
        plots={name: Markup(svg) for name, svg in plots.items() if svg},
        counts={
            "studies": len(document.studies),
            "runs": len(document.runs),
            "steps": sum(run["steps"] for run in document.runs),
            "unreadable": len(document.unreadable),
        },
    )


def write(analysis: Analysis, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(analysis), encoding="utf-8")
