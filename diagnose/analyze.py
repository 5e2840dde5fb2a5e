"""Group runs into studies, run every check, rank the findings into one document."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from . import __version__, sweep
from .checks import CHECKS, Check, Scope
from .findings import Finding, FindingsDocument
from .model import Run, Study
from .readers import LogRoot


@dataclass
class Analysis:
    """What renderers get: the findings document plus the runs whose series they plot."""

    document: FindingsDocument
    studies: list[Study]

    def run(self, study: str, name: str) -> Run | None:
        for candidate in self.studies:
            if candidate.name == study:
                return next((r for r in candidate.runs if r.name == name), None)
        return None


def group_studies(runs: list[Run]) -> list[Study]:
    by_name: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_name[run.study].append(run)
    return [Study(name, sorted(members, key=_run_order)) for name, members in sorted(by_name.items())]


# What a check could not look at, and why: (check id, reason, run key or study name).
Skip = tuple[str, str, str]


def check_target(target: Run | Study, checks: tuple[Check, ...]) -> tuple[list[Finding], list[Skip]]:
    """Every check of ``target``'s scope on it; a check that cannot run says why, once."""
    scope = Scope.STUDY if isinstance(target, Study) else Scope.RUN
    label = target.name if isinstance(target, Study) else target.key
    findings: list[Finding] = []
    skipped: list[Skip] = []
    for check in checks:
        if check.scope is not scope:
            continue
        reason = check.why_skipped(target)
        if reason is not None:
            skipped.append((check.id, reason, label))
            continue
        try:
            findings.extend(check.detect(target, check.config))
        except Exception as error:  # a check bug must cost one finding, not the report
            skipped.append((check.id, f"internal error ({type(error).__name__}: {error}); please report this", label))
    return findings, skipped


def analyze(root: LogRoot, checks: tuple[Check, ...] = CHECKS) -> Analysis:
    """Run every check on runs already read (in this process)."""
    checked = [(run, *check_target(run, checks)) for run in root.runs]
    return assemble(root.path, checked, [u.to_dict() for u in root.unreadable], checks)


def assemble(root_path, checked: list[tuple[Run, list[Finding], list[Skip]]], unreadable: list[dict],
             checks: tuple[Check, ...]) -> Analysis:
    """Studies, study-level checks, ranking: the findings document from checked runs."""
    studies = group_studies([run for run, _, _ in checked])
    findings = [f for _, run_findings, _ in checked for f in run_findings]
    skipped = [s for _, _, run_skipped in checked for s in run_skipped]
    for study in studies:
        study_findings, study_skipped = check_target(study, checks)
        findings.extend(study_findings)
        skipped.extend(study_skipped)

    order = {check.id: i for i, check in enumerate(checks)}
    findings.sort(key=lambda f: (-f.severity.rank, order.get(f.check, len(order)), f.study, f.runs, f.steps or (0, 0)))
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for check_id, reason, label in skipped:
        grouped[(check_id, reason)].append(label)
    document = FindingsDocument(
        root=str(root_path),
        studies=[_study_summary(study) for study in studies],
        findings=findings,
        unreadable=unreadable,
        skipped=[
            {"check": check_id, "reason": reason, "count": len(labels), "targets": labels[:5]}
            for (check_id, reason), labels in grouped.items()
        ],
        runs=[run_summary(run) for study in studies for run in study.runs],
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        tool_version=__version__,
    )
    return Analysis(document=document, studies=studies)


def run_summary(run: Run) -> dict:
    return {
        "study": run.study,
        "name": run.name,
        "role": run.role,
        "status": run.status,
        "format": run.format,
        "source": str(run.source),
        "steps": run.n_steps,
        "last_step": run.last_step,
        "evals": len(run.evals),
        "columns": [c for c in run.steps.columns if c != "step" and run.has(c)],
        "lr": run.lr,
        "momentum": run.momentum,
        "config": run.config,
        "notes": list(run.notes),
    }


def _study_summary(study: Study) -> dict:
    return {
        "study": study.name,
        "runs": [run.name for run in study.runs],
        "varying": study.varying,
        **sweep.summary(study),
    }


def _run_order(run: Run):
    return (run.role, run.lr if run.lr is not None else float("inf"), str(run.seed), run.name)
