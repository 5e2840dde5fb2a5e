"""Group runs into studies, run every check, rank the findings into one document."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from . import __version__, sweep
from .checks import BY_ID, CHECKS, Check, Scope
from .checks._events import RINGING_BUMP
from .findings import Finding, FindingsDocument, Severity
from .model import Run, Study
from .readers import LogRoot


@dataclass
class Analysis:
    """What renderers get: the findings document plus the runs whose series they plot."""

    document: FindingsDocument
    studies: list[Study]
    # study name -> digest of everything its findings and plots depend on (its runs' files, the
    # checks' settings, the version); empty when nothing is cached. Lets renderers reuse earlier work.
    study_digests: dict[str, str] = field(default_factory=dict)

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
        if scope is Scope.RUN and target.role == "lr_range":
            skipped.append((check.id, "an LR range test raises the lr until the loss blows up, by design", label))
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


@dataclass
class StudyWork:
    """All that a study adds to the document, found from its runs alone (so it can be cached whole)."""

    findings: list[Finding]
    skipped: list[Skip]
    summary: dict
    # run name -> lr* of the study's sweep, for the runs above it (``in_sweep_context``)
    above_best_lr: dict[str, float]
    # run name -> index of its seed cell (``sweep.seed_cells``, for ``in_ringing_cells``)
    cells: dict[str, int]


def study_work(study: Study, checks: tuple[Check, ...]) -> StudyWork:
    findings, skipped = check_target(study, checks)
    main = sweep.main_sweep(study)
    above = {}
    if main is not None and main.best_lr is not None:
        above = {run.name: main.best_lr for point in main.points if point.lr > main.best_lr for run in point.runs}
    cells = {run.name: index for index, (_, runs) in enumerate(sweep.seed_cells(study)) for run in runs}
    return StudyWork(findings, skipped, _study_summary(study), above, cells)


class StudyStore(Protocol):
    """Where ``assemble`` finds a study's work done before (``cache.StudyCache``)."""

    def digest(self, study: Study) -> str | None: ...
    def prepare(self, study: Study) -> None: ...  # called before the study's work is done
    def load(self, digest: str) -> StudyWork | None: ...
    def store(self, digest: str, work: StudyWork) -> None: ...


def assemble(root_path, checked: list[tuple[Run, list[Finding], list[Skip]]], unreadable: list[dict],
             checks: tuple[Check, ...], store: StudyStore | None = None,
             work_on: Callable[[list[Study], tuple[Check, ...]], Iterable[StudyWork]] | None = None) -> Analysis:
    """Studies, study-level checks, ranking: the findings document from checked runs.

    With a ``store``, a study whose digest it knows is taken from it instead of
    being checked again (its runs' tables are then never read). ``work_on``
    finds the ``StudyWork`` of the other studies, in order (worker processes:
    ``pipeline``); by default ``study_work`` here, one by one.
    """
    studies = group_studies([run for run, _, _ in checked])
    findings = [f for _, run_findings, _ in checked for f in run_findings]
    skipped = [s for _, _, run_skipped in checked for s in run_skipped]
    digests = {}
    works: list[StudyWork | None] = []
    for study in studies:
        digest = store.digest(study) if store else None
        if digest:
            digests[study.name] = digest
        works.append(store.load(digest) if digest else None)
    todo = [index for index, work in enumerate(works) if work is None]
    if store:
        for index in todo:
            store.prepare(studies[index])
    found = (work_on or _work_here)([studies[index] for index in todo], checks)
    for index, work in zip(todo, found, strict=True):
        works[index] = work
        if studies[index].name in digests:
            store.store(digests[studies[index].name], work)
    for work in works:
        findings.extend(work.findings)
        skipped.extend(work.skipped)
    findings = in_sweep_context(findings, {(s.name, run): lr for s, w in zip(studies, works)
                                           for run, lr in w.above_best_lr.items()})
    findings = in_ringing_cells(findings, {(s.name, run): (s.name, cell) for s, w in zip(studies, works)
                                           for run, cell in w.cells.items()})

    order = {check.id: i for i, check in enumerate(checks)}
    findings.sort(key=lambda f: (-f.severity.rank, order.get(f.check, len(order)), f.study, f.runs, f.steps or (0, 0)))
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for check_id, reason, label in skipped:
        grouped[(check_id, reason)].append(label)
    document = FindingsDocument(
        root=str(root_path),
        studies=[work.summary for work in works],
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
    return Analysis(document=document, studies=studies, study_digests=digests)


def _work_here(studies: list[Study], checks: tuple[Check, ...]) -> Iterable[StudyWork]:
    return (study_work(study, checks) for study in studies)


def in_sweep_context(findings: list[Finding], above: dict[tuple[str, str], float]) -> list[Finding]:
    """Run findings on the runs above lr* of an lr sweep, read as the sweep reads them.

    A sweep's lrs above lr* are expected to be unstable: that is what the
    sweep found (Tuning Playbook), and ``unstable_above_best_lr`` /
    ``best_lr_at_edge`` say what to change. Their run-level findings stay as
    evidence, at ``info`` and without a fix of their own; ``underfitting`` is
    dropped there, since a loss that barely moved at too large an lr does not
    mean the lr is too small. ``above`` maps (study, run) to that lr*
    (``StudyWork.above_best_lr``).
    """
    kept = []
    for finding in findings:
        best_lr = above.get((finding.study, finding.runs[0])) if len(finding.runs) == 1 else None
        if best_lr is None or BY_ID.get(finding.check) is None or BY_ID[finding.check].scope is not Scope.RUN:
            kept.append(finding)
        elif finding.check != "underfitting":
            note = (f"This run's lr is above lr* ({best_lr:g}) of its lr sweep, where instability is expected; "
                    "the sweep's findings say what to change.")
            kept.append(_as_evidence(finding, note, above_best_lr=best_lr))
    return kept


def in_ringing_cells(findings: list[Finding], cell_of: dict[tuple[str, str], tuple[str, int]]) -> list[Finding]:
    """Small loss rises on seeds of a config where another seed's loss rings are the ringing too.

    ``momentum_oscillation`` judges each seed alone, and a seed whose ringing
    is less regular is missed; its bumps then show as ``early_instability`` or
    ``loss_spike``. When a sibling seed of the same config (``sweep.seed_cells``)
    rings, rises under ``RINGING_BUMP`` become ``info``, as they do within one
    ringing run (Morrison's bees at momentum 0.99). ``cell_of`` maps (study, run)
    to its cell (``StudyWork.cells``).
    """
    ringing = {
        cell_of.get((f.study, f.runs[0])) for f in findings if f.check == "momentum_oscillation" and len(f.runs) == 1
    }
    ringing.discard(None)
    kept = []
    for finding in findings:
        if (
            finding.check in ("early_instability", "loss_spike")
            and finding.severity is not Severity.INFO
            and len(finding.runs) == 1
            and cell_of.get((finding.study, finding.runs[0])) in ringing
            and _small_rises(finding)
        ):
            note = "Other seeds of this config ring (momentum_oscillation): rises this small are that ringing."
            finding = _as_evidence(finding, note)
        kept.append(finding)
    return kept


def _small_rises(finding: Finding) -> bool:
    """Every loss rise of ``finding`` (its evidence's events) is below ``RINGING_BUMP``, and it has one."""
    ratios = [e.get("ratio") for e in finding.evidence.get("events", []) if isinstance(e, dict)]
    return bool(ratios) and all(r is not None and r < RINGING_BUMP for r in ratios)


def _as_evidence(finding: Finding, note: str, **evidence) -> Finding:
    """``finding`` kept as evidence for another finding: info, no fix of its own, ``note`` saying why."""
    return dataclasses.replace(
        finding,
        severity=Severity.INFO,
        recommendation=None,
        detail=f"{finding.detail} {note}",
        evidence={**finding.evidence, **evidence},
    )


def run_summary(run: Run) -> dict:
    facts = run.facts
    return {
        "study": run.study,
        "name": run.name,
        "role": run.role,
        "status": run.status,
        "format": run.format,
        "source": str(run.source),
        "steps": facts["steps"],
        "last_step": facts["last_step"],
        "evals": facts["evals"],
        "columns": facts["columns"],
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
    lr = run.lr
    return (run.role, math.inf if lr is None else lr, str(run.seed), run.name)
