"""One self-contained HTML report per log root: verdict first, then the evidence.

The page is built from the findings document and the runs' series only: which
runs are unstable, what lr* is, where an onset lies all come from the checks
(``Finding.evidence`` and the study summaries); this module picks which plots
to draw (within a page's budget of figure bytes, the studies with the most
severe findings first) and lays them out; ``drawing`` draws them (in worker
processes on big reports, or not at all when a cache folder holds them from an
earlier report of the same data); the same folder keeps a study's facts, command
and runs' rows by its digest (``_StudyTexts``). Everything from a log is escaped: by jinja2's
autoescape in the template, by ``_e`` (the same escaping) in the big tables and the
study sections built here, by ``svg`` inside the figures. Figures are inline SVG images; a
Content-Security-Policy forbids every request, so the file opens offline and
cannot fetch anything.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import itertools
import json
import math
import operator
import os
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import markupsafe

from .. import files
from ..analyze import Analysis
from ..checks import CHECKS
from ..findings import Finding, Recommendation, Severity
from ..model import Run, Study
from . import drawing
from .plot import Plot, swarm_axes

# Findings past this many get no plot of their own (their study's figures still show them).
MAX_FINDING_PLOTS = 12
# Bytes of study figures (their data: URIs) one page holds. Past it, the studies that matter least are
# listed without figures, each with the command that draws them. A figure is 5-700 kB: 10 MB holds
# every figure of the samples (0.5 MB) and of 100 runs x 100k steps (1 MB), and ~100 studies of a
# 10,000-run root (4 figures of ~24 kB each) instead of 1,000: headless Chromium took 218 s to load
# that 107 MB page and 5-7 s for the 17 MB one (2 busy cores; the samples report: 1.4 s).
FIGURE_BYTES = 10_000_000
# Findings on the first screen: the first of each distinct check, most severe first.
TOP_FINDINGS = 3
# Findings the findings table lists open: past this many, the informational ones (notes, and the evidence
# of other findings such as the runs above lr* of a sweep: 1,795 of 3,238 on a 10,000-run root) go to a
# folded table below it, so the errors and warnings are not lost among them.
FINDING_ROWS = 100
# Studies the contents line links one by one (two or three lines of links); past it, it links the studies
# table, which lists them all: 1,000 names would be a wall of links before the findings.
NAV_STUDIES = 30

# The page's template settings: what its compiled code depends on besides its source and jinja2.
_TEMPLATE_OPTIONS = {"autoescape": True, "undefined": jinja2.StrictUndefined, "trim_blocks": True,
                     "lstrip_blocks": True}

# Copy buttons for the config snippets; the page reads the same without it.
_SCRIPT = """
document.querySelectorAll("pre.snippet").forEach(function (pre) {
  if (!navigator.clipboard) { return; }
  var button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "copy";
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(pre.textContent).then(function () {
      button.textContent = "copied";
    }, function () {
      button.textContent = "select and copy";
    });
  });
  pre.parentNode.appendChild(button);
});
""".strip()


# The big repeated tables (10,000 runs, ~3,000 findings, 1,000 studies) and the study sections with their findings'
# cards are built here rather than in the template: jinja2 took ~0.5 s a 10,000-run page for the tables, its macros
# ~0.1 s for the cards. Their text is escaped as jinja2's autoescape does, and they are plain str that the template
# puts in with autoescape off: as Markup, each was copied twice more (made, then escaped: 13 MB of sections ~40 ms).
_NUMBERS = frozenset({int, float, bool})  # the types whose text never holds one of the five characters


def _e(value) -> str:
    """``value`` as autoescape prints it (markupsafe.escape of its str); five replaces beat str.translate."""
    if type(value) in _NUMBERS:  # ~1/3 of a 10,000-run page's ~100k cells: steps, config values
        return str(value)
    return (str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
            .replace("'", "&#39;"))


def _e_long(text: str) -> str:
    """``_e`` of a long text (a figure's ``data:`` URI, tens of kB): its base64 has none of the five characters, and
    looking for them is ~40x faster than five replaces that find nothing (10 MB of figures: 40 -> 1 ms)."""
    return _e(text) if any(c in text for c in "&<>\"'") else text


# Each severity's label and class name, made once: a page shows thousands.
_SEVERITY_LABELS = {severity: markupsafe.Markup(f'<span class="sev {value}">{value}</span>')
                    for severity in Severity for value in [_e(severity.value)]}
_SEVERITY_CLASSES = {severity: _e(severity.value) for severity in Severity}


@dataclass
class FindingView:
    """A finding as the page shows it: anchor, where, the snippet to copy, its plot."""

    anchor: str
    finding: Finding
    where: str
    snippet: str | None
    plot: Plot | None = None
    see: tuple[str, str] | None = None  # (anchor, title) of a study figure that shows this finding
    note: str | None = None
    sev: markupsafe.Markup = field(init=False)  # its severity label, shown with it wherever it is
    # its title, where and check, escaped once for its row in the findings table and its card
    title_html: str = field(init=False)
    where_html: str = field(init=False)
    check_html: str = field(init=False)

    def __post_init__(self) -> None:
        finding = self.finding
        self.sev = _SEVERITY_LABELS[finding.severity]
        self.title_html = _e(finding.title)
        self.where_html = _e(self.where)
        self.check_html = _CHECKS_HTML.get(finding.check) or _e(finding.check)


# The registered checks' ids, escaped once: thousands of findings show a few checks.
_CHECKS_HTML = {check.id: _e(check.id) for check in CHECKS}


@dataclass
class StudyView:
    anchor: str
    name: str
    facts: list[str]
    runs: int = 0
    best_lr: str = ""
    unstable: str = ""
    tally: list[tuple[str, int]] = field(default_factory=list)
    plots: list[tuple[str, Plot]] = field(default_factory=list)
    findings: list[FindingView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str = ""  # ``diagnose report FOLDER``: the report of this study's folder alone
    left_out: bool = False  # its figures did not fit in the page's budget
    name_html: str = field(init=False)  # its name escaped once, for its row, its section and its link

    def __post_init__(self) -> None:
        self.name_html = _e(self.name)


def render(analysis: Analysis, cache_dir: Path | None = None, jobs: int | None = None,
           figure_bytes: int = FIGURE_BYTES) -> str:
    """The report's HTML text.

    ``cache_dir``, ``jobs`` and ``figure_bytes`` as for ``_parts``.
    """
    return "".join(_parts(analysis, cache_dir, jobs, figure_bytes))


def write(analysis: Analysis, path: Path, cache_dir: Path | None = None, jobs: int | None = None) -> None:
    """Write the report to ``path`` (folders created); ``cache_dir`` and ``jobs`` as for ``render``."""
    parts = list(_parts(analysis, cache_dir, jobs))  # whole before the file is opened, as one text would be
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(parts)  # not joined first: a 10,000-run page is 17M characters, 34 MB to copy


def _parts(analysis: Analysis, cache_dir: Path | None = None, jobs: int | None = None,
           figure_bytes: int = FIGURE_BYTES) -> Iterator[str]:
    """The report's HTML text, in the pieces the template puts together.

    ``cache_dir``: where figures are kept for the next report, by ``analysis.study_digests`` (none
    without digests); ``jobs``: processes that may draw figures (default: one per core);
    ``figure_bytes``: the study figures' budget (the findings' own plots come on top, at most
    MAX_FINDING_PLOTS).
    """
    document = analysis.document
    summaries = {s.get("study"): s for s in document.studies if isinstance(s, dict)}
    snippets = {}  # thousands of findings recommend a few dozen distinct changes: each one's snippet made once
    all_views = [FindingView(f"f{i}", f, where(f), _snippet(f.recommendation, snippets))
                 for i, f in enumerate(document.findings, start=1)]
    # Keyed by identity: a Finding holds dicts, so it is not hashable.
    views = {id(v.finding): v for v in all_views}
    index = {id(f): i for i, f in enumerate(document.findings)}
    by_study: dict[str, list[Finding]] = {}
    for finding in document.findings:
        by_study.setdefault(finding.study, []).append(finding)
    kept = _StudyTexts(analysis, cache_dir)
    studies, by_name, wanted = [], {}, []
    for number, study in enumerate(analysis.studies, start=1):
        findings = by_study.get(study.name, [])
        summary = summaries.get(study.name, {})
        texts = kept.study(study, summary)
        view = StudyView(f"s{number}", study.name, texts.facts, runs=len(study.runs), best_lr=texts.best_lr,
                         unstable=texts.unstable, tally=_tally(findings), command=texts.command)
        view.findings = [views[id(f)] for f in findings]
        # which figures, found for the studies that get them (~100 of a 10,000-run root's 1,000) when drawn
        wanted.append((view, functools.partial(_study_figures, study, summary, findings, index)))
        studies.append(view)
        by_name[study.name] = (study, view)
    # The study of the highest-ranked finding first: errors, then warnings, then notes, then no finding.
    first = {}
    for i, finding in enumerate(document.findings):
        first.setdefault(finding.study, i)
    wanted.sort(key=lambda item: first.get(item[0].name, len(document.findings)))
    with drawing.Painter(analysis, cache_dir, jobs) as painter:
        _study_plots(painter, wanted, figure_bytes)
        _finding_plots(painter, [v for v in all_views if v.finding.study in by_name], by_name, index)
    orphans = [v for v in all_views if v.finding.study not in by_name]
    left_out = [view for view in studies if view.left_out]  # linked one by one: 900 of 1,000 on a 10,000-run page
    severities = [f.severity for f in document.findings]
    templates = os.fspath(cache_dir / "templates") if cache_dir is not None else None
    figure_mb = f"{figure_bytes / 1e6:g}"
    return _environment(templates).get_template("report.html.j2").generate(
        doc=document,
        verdict=document.verdict,
        findings=all_views,
        **_finding_table(all_views),
        top=_top(views, document.findings),
        studies=studies,
        study_rows=_study_rows(studies),
        study_sections=_study_sections(studies, figure_mb),
        fix=_fix,
        left_out=left_out,
        left_out_links=", ".join(f'<a href="#{s.anchor}">{s.name_html}</a>' for s in left_out),
        nav_studies=NAV_STUDIES,
        figure_mb=figure_mb,
        orphan_cards="".join(map(_card, orphans)),
        runs=document.runs,
        run_rows=kept.rows(document.runs),
        counts={
            "studies": len(document.studies),
            "runs": len(document.runs),
            "steps": sum(int(run.get("steps") or 0) for run in document.runs),
            "unreadable": len(document.unreadable),
            "errors": severities.count(Severity.ERROR),
            "warnings": severities.count(Severity.WARNING),
            "infos": severities.count(Severity.INFO),
        },
        script=_SCRIPT,
        csp=_csp(_SCRIPT),
        generated=_date(document.generated),
    )


def config_snippet(recommendation: Recommendation | None) -> str | None:
    """The recommendation's numbers as YAML lines to paste into a config, e.g. ``warmup_steps: 100``.

    Keys are the run config keys of CONTRACT §1: ``value`` is named after the
    action (``momentum: 0.8``), a clip ``threshold`` (or ``clip_threshold``) is ``clip_norm``.
    """
    if recommendation is None or not recommendation.values:
        return None
    lines: list[str] = []
    for key, value in recommendation.values.items():
        _yaml_entry(lines, _config_key(recommendation.action, str(key)), value, "")
    return "\n".join(lines)


def _snippet(recommendation: Recommendation | None, made: dict) -> str | None:
    """``config_snippet``, kept in ``made`` by the recommendation's action and values (their repr tells
    apart every value that YAML writes differently: 1, 1.0 and True, "1" and 1)."""
    if recommendation is None or not recommendation.values:
        return None
    key = (recommendation.action, repr(recommendation.values))
    if key not in made:
        made[key] = config_snippet(recommendation)
    return made[key]


def _yaml_entry(lines: list[str], key: str, value, indent: str) -> None:
    """``key: value`` in block style: nested mappings indented, lists of mappings as ``- `` items."""
    if isinstance(value, dict) and value:
        lines.append(f"{indent}{_yaml(key)}:")
        for inner_key, inner in value.items():
            _yaml_entry(lines, str(inner_key), inner, indent + "  ")
    elif isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value):
        lines.append(f"{indent}{_yaml(key)}:")
        for item in value:
            if isinstance(item, dict) and item:
                first = len(lines)
                for inner_key, inner in item.items():
                    _yaml_entry(lines, str(inner_key), inner, indent + "    ")
                lines[first] = f"{indent}  - {lines[first].lstrip()}"
            else:
                lines.append(f"{indent}  - {_yaml(item)}")
    else:
        lines.append(f"{indent}{_yaml(key)}: {_yaml(value)}")


def _config_key(action: str, key: str) -> str:
    if key == "value":
        return {"more_steps": "max_steps", "regularization": "weight_decay"}.get(action, action)
    if (action == "clip" and key == "threshold") or key == "clip_threshold":
        return "clip_norm"
    return key


def _yaml(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
        text = f"{value:.6g}"
        mantissa, _, exponent = text.partition("e")
        if "." not in mantissa:  # a float stays a float; YAML reads 1e-05 as a string, 1.0e-05 as a number
            text = f"{mantissa}.0" + (f"e{exponent}" if exponent else "")
        return text
    if isinstance(value, str):
        return value if re.fullmatch(r"[A-Za-z_][\w.\-]*", value) and value not in _YAML_WORDS else json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return json.dumps(value, default=str)


_YAML_WORDS = {"null", "true", "false", "yes", "no", "on", "off", "Null", "True", "False", "Yes", "No"}


def steps_text(steps: tuple[int, int], prefix: str = "steps ") -> str:
    """``steps 140–220``, or ``step 4`` when the span is one step."""
    first, last = steps
    if first == last:
        return f"{prefix.replace('steps', 'step')}{first}"
    return f"{prefix}{first}–{last}"


@functools.cache
def _environment(templates: str | None) -> jinja2.Environment:
    """The page's jinja2 environment, keeping its compiled template in the folder ``templates`` if given."""
    environment = jinja2.Environment(loader=jinja2.PackageLoader("diagnose.render", "templates"),
                                     bytecode_cache=_CompiledTemplates(templates) if templates else None,
                                     **_TEMPLATE_OPTIONS)
    environment.globals["steps_text"] = steps_text
    return environment


class _CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """The page template compiled once, kept in the cache folder: compiling it costs ~50 ms a report.

    jinja2 checks an entry against the template's source; the settings and jinja2's version are part of
    that check here, as the compiled code depends on them. A folder that cannot be read or written, or a
    damaged entry, costs the compiling, never the report.
    """

    def get_source_checksum(self, source: str) -> str:
        return super().get_source_checksum(f"{jinja2.__version__}\0{_TEMPLATE_OPTIONS!r}\0{source}")

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - unreadable or damaged: compiled again
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            os.makedirs(self.directory, exist_ok=True)
            super().dump_bytecode(bucket)


def where(finding: Finding) -> str:
    """``study / run, run, run and N more``: where a finding is, in one short line."""
    runs = list(finding.runs)
    shown = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
    return f"{finding.study} / {shown}" if shown else finding.study


def _finding_table(views: list[FindingView]) -> dict:
    """The findings table's open rows (``listed``) and its folded ones (``folded``: none, or the infos).

    With each, its rows' HTML (``listed_rows``, ``folded_rows``).
    """
    listed = [v for v in views if v.finding.severity is not Severity.INFO]
    if len(views) <= FINDING_ROWS or not listed:
        listed, folded = views, []
    else:
        folded = [v for v in views if v.finding.severity is Severity.INFO]
    return {"listed": listed, "folded": folded, "listed_rows": _finding_rows(listed),
            "folded_rows": _finding_rows(folded)}


def _finding_rows(views: list[FindingView]) -> str:
    rows = []
    for v in views:  # an anchor is "f" and a number: nothing to escape
        steps = _e(steps_text(v.finding.steps, "")) if v.finding.steps else ""
        rows.append(f'<tr><td>{v.sev}</td><td><a href="#{v.anchor}">{v.title_html}</a></td>'
                    f'<td><code>{v.check_html}</code></td><td>{v.where_html}</td><td class="num">{steps}</td></tr>\n')
    return "".join(rows)


_STAGING = "staging"  # the cache folder's subfolder of files being written


@dataclass
class _Texts:
    """What a study's digest stands for on the page: its facts, lrs and command, and its runs' rows."""

    names: str  # its runs' names in their order, NUL-separated: the rows are in that order
    facts: list[str]
    best_lr: str
    unstable: str
    command: str
    rows: str | None = None  # None until made or read


class _StudyTexts:
    """The texts of each study that its digest (``Analysis.study_digests``, of its runs' cache keys: files, reader,
    keys, root, code version) stands for, kept in the cache folder for the next report, as the figures drawn for
    the digest are: its facts, lrs and command, and its runs' rows in the runs table.

    A warm 10,000-run page made them again with ~120-130 ms of CPU (the rows ~70, the facts and commands ~50); it
    reads them (~3 MB) instead. They are kept with the runs' names in their order and a hash of this module. One
    file a log root (``drawing.texts_path``, which goes with the root's figures once the root no longer exists),
    rewritten with the texts of its studies of now when some were made or a study is gone; a file that cannot be
    read (absent, cut, damaged, of another version) costs the making, one that cannot be written nothing. Without
    a cache folder or digests, all are made.
    """

    def __init__(self, analysis: Analysis, cache_dir: Path | None):
        self.digests = analysis.study_digests if cache_dir is not None else {}
        self.version = _code_version() if self.digests else None
        self.held: dict[str, _Texts] = {}
        self.now: dict[str, _Texts] = {}  # the file's next content
        self.made = False
        if self.version is not None:
            self.path = drawing.texts_path(cache_dir, os.path.realpath(analysis.document.root))
            self.staging = cache_dir / _STAGING
            self.held = self._read()

    def study(self, study: Study, summary: dict) -> _Texts:
        """The study's texts but its rows (``rows`` gives them), kept or made."""
        digest = self.digests.get(study.name)
        names = "\0".join([str(run.name) for run in study.runs]) if digest else ""
        texts = self.held.get(digest) if digest else None
        if texts is None or texts.names != names:  # made, and its rows with them
            texts = _Texts(names, _facts(summary, study), _lr_list([summary.get("best_lr")]),
                           _lr_list(summary.get("unstable_lrs")), _command(study))
        if digest:
            self.now[digest] = texts
        return texts

    def rows(self, runs: list[dict]) -> str:
        """The runs table's rows (``_run_rows``), a study's kept or made; then the file written if need be."""
        parts, seen = [], set()
        for study, group in itertools.groupby(runs, key=operator.itemgetter("study")):
            group = list(group)
            texts = self.now.get(self.digests.get(study))
            # none kept for a study without digest, or whose runs are apart in the document (never, as assembled)
            if texts is None or study in seen or texts.names != "\0".join([str(r["name"]) for r in group]):
                parts.append(_run_rows(group))
                continue
            seen.add(study)
            if texts.rows is None:
                texts.rows, self.made = _run_rows(group), True
            parts.append(texts.rows)
        if self.version is not None:
            self.now = {digest: texts for digest, texts in self.now.items() if texts.rows is not None}
            if self.made or self.now.keys() != self.held.keys():
                self._write()
        return "".join(parts)

    def _read(self) -> dict[str, _Texts]:
        """A CRC-32 of the rest of the file; a line of JSON (the version, each study's digest, texts and rows'
        length); then the rows: JSON of the rows themselves, their quotes escaped, took ~15 ms to read. The
        checksum covers the texts in the JSON too: a changed letter there would be shown on the page."""
        try:
            rest = files.unsealed(self.path.read_bytes())
            if rest is None:
                return {}
            head, _, body = rest.partition(b"\n")
            held = json.loads(head)
            if held["version"] != self.version:
                return {}
            text, kept, start = body.decode(), {}, 0
            for digest, names, facts, best_lr, unstable, command, length in held["studies"]:
                if not (isinstance(facts, list) and all(
                        isinstance(v, str) for v in (digest, names, best_lr, unstable, command, *facts))):
                    return {}
                kept[digest] = _Texts(names, facts, best_lr, unstable, command, text[start:start + length])
                start += length
            return kept if start == len(text) else {}
        except (OSError, ValueError, TypeError, KeyError):  # none yet, or damaged: made again and replaced
            return {}

    def _write(self) -> None:
        head = json.dumps({"version": self.version, "studies": [
            [digest, t.names, t.facts, t.best_lr, t.unstable, t.command, len(t.rows)] for digest, t in self.now.items()]})
        body = "".join(texts.rows for texts in self.now.values()).encode()
        with contextlib.suppress(OSError):
            files.put(self.path, files.sealed([head.encode(), b"\n", body]), self.staging)


@functools.cache
def _code_version() -> str | None:
    """What the texts kept by ``_StudyTexts`` depend on besides a study's digest: this module's code (None: unread)."""
    try:
        return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    except OSError:
        return None


def _run_rows(runs: list[dict]) -> str:
    rows = []
    logged: dict[tuple, str] = {}  # most runs of a root log the same columns
    repeated: dict[str, str] = {}  # studies, roles, statuses and config keys, escaped once

    def same(value) -> str:
        if type(value) is not str:  # 1 and True are one key of a dict, not one cell
            return _e(value)
        text = repeated.get(value)
        if text is None:
            text = repeated[value] = _e(value)
        return text

    for r in runs:
        lr, momentum, notes = r["lr"], r["momentum"], r["notes"]
        columns = tuple(r.get("columns") or ())
        if columns not in logged:
            logged[columns] = ", ".join(map(_e, columns))
        config = ", ".join([f"{same(key)}: {_e(value)}" for key, value in (r.get("config") or {}).items()
                            if key not in ("lr", "momentum")])
        rows.append(f'<tr><td>{same(r["study"])}</td><td>{_e(r["name"])}</td><td>{same(r["role"])}</td>'
                    f'<td>{same(r["status"] or "")}</td><td class="num">{_e(r["steps"])}</td>'
                    f'<td class="num">{"" if lr is None else "%g" % lr}</td>'
                    f'<td class="num">{"" if momentum is None else "%g" % momentum}</td>'
                    f'<td class="note">{config}</td><td class="note">{logged[columns]}</td>'
                    f'<td class="note">{"; ".join(map(_e, notes)) if notes else ""}</td></tr>\n')
    return "".join(rows)


def _study_rows(studies: list[StudyView]) -> str:
    rows = []
    tallies: dict[tuple, str] = {}  # a thousand studies have a few distinct tallies
    for s in studies:
        left_out = ' <span class="note">(no figures)</span>' if s.left_out else ""
        key = tuple(s.tally)
        tally = tallies.get(key)
        if tally is None:
            tally = tallies[key] = ", ".join(
                f'<span class="count {_e(severity)}">{_e(n)} {_e(severity)}{"s" if n != 1 else ""}</span>'
                for severity, n in s.tally) or '<span class="ok">none</span>'
        # an anchor is "s" and a number: nothing to escape
        rows.append(f'<tr><td><a href="#{s.anchor}">{s.name_html}</a>{left_out}</td><td class="num">{_e(s.runs)}</td>'
                    f'<td class="num">{_e(s.best_lr)}</td><td>{_e(s.unstable)}</td><td>{tally}</td></tr>\n')
    return "".join(rows)


def _fix(v: FindingView) -> markupsafe.Markup:
    """``_fix_html`` for the template."""
    return markupsafe.Markup(_fix_html(v))


def _fix_html(v: FindingView) -> str:
    """The finding's recommendation: what to change, why, and its config snippet."""
    r = v.finding.recommendation
    if not r:
        return ""
    why = f" &mdash; {_e(r.why)}" if r.why else ""
    snippet = f'<div class="snippet-row"><pre class="snippet">{_e(v.snippet)}</pre></div>' if v.snippet else ""
    action = _e(r.action.replace("_", " "))
    return f'<div class="fix">\n<div class="fix-head">Change: <strong>{action}</strong>{why}</div>\n{snippet}</div>\n'


def _figure(anchor: str, plot: Plot) -> str:
    title = _e(plot.title)
    return (f'<figure id="{_e(anchor)}">\n<figcaption><strong>{title}.</strong> {_e(plot.caption)}</figcaption>\n'
            f'<img src="{_e_long(plot.uri)}" width="{_e(plot.width)}" height="{_e(plot.height)}" alt="{title}">\n'
            '</figure>\n')


def _card(v: FindingView) -> str:
    """A finding's card in its study's section: what, where, the fix, its plot or the figure that shows it."""
    f = v.finding
    steps = f" &middot; {_e(steps_text(f.steps))}" if f.steps else ""
    plot = _figure(f"{v.anchor}-plot", v.plot) if v.plot else ""
    see = f'<p class="note">Evidence: <a href="#{_e(v.see[0])}">{_e(v.see[1])}</a> above.</p>' if v.see else ""
    note = f'<p class="note">{_e(v.note)}</p>' if v.note else ""
    return (f'<article class="finding {_SEVERITY_CLASSES[f.severity]}" id="{v.anchor}">\n'
            f'<h4>{v.sev} {v.title_html}</h4>\n'
            f'<p class="where"><code>{v.check_html}</code> &middot; {v.where_html}{steps}</p>\n<p>{_e(f.detail)}</p>\n'
            f'{_fix_html(v)}\n{plot}{see}{note}</article>\n')


def _study_sections(studies: list[StudyView], figure_mb: str) -> list[str]:
    """Each study's section: its facts, figures, notes and findings' cards, in pieces.

    Not joined: the pieces are written as they are (13M characters on a 10,000-run page, of which the
    figures' 10M are ASCII; joined with the cards' en dashes, all were copied at two bytes each and
    encoded back: ~18 ms).
    """
    parts = []
    no_figures = (f'<p class="note">No figures of this study in this page: <a href="#left-out">its {_e(figure_mb)} MB '
                  'of figures</a> went to the studies whose findings rank first. ')
    for s in studies:  # an anchor is "s" and a number: nothing to escape
        parts.append(f'<h2 id="{s.anchor}">Study {s.name_html}</h2>\n<p class="facts">{_e(" · ".join(s.facts))}</p>\n')
        if s.plots:
            parts.extend(_figure(anchor, plot) for anchor, plot in s.plots)
        if s.left_out:
            see = (f"To see them: <code>{_e(s.command)}</code>" if s.command
                   else "To see them, run the report on the folder that holds its runs.")
            parts.append(f'{no_figures}{see}</p>\n')
        if s.notes:
            parts.extend(f'<p class="note">{_e(note)}</p>' for note in s.notes)
        if s.findings:
            parts.append(f"<h3>Findings in {s.name_html}</h3>\n")
            parts.extend(map(_card, s.findings))
        else:
            parts.append('<p class="note">No finding in this study.</p>\n')
    return parts


def _top(views: dict[int, FindingView], findings: list[Finding]) -> list[FindingView]:
    seen, top = set(), []
    for finding in findings:
        if finding.severity is Severity.INFO or finding.check in seen:
            continue
        seen.add(finding.check)
        top.append(views[id(finding)])
        if len(top) == TOP_FINDINGS:
            break
    return top


def _facts(summary: dict, study: Study) -> list[str]:
    facts = [f"{len(study.runs)} run{'s' if len(study.runs) != 1 else ''}"]
    roles = sorted({run.role for run in study.runs} - {"train"})
    if roles:
        facts.append("with " + ", ".join(f"{len(study.by_role(r))} {r.replace('_', ' ')}" for r in roles))
    best = summary.get("best_lr")
    if isinstance(best, (int, float)) and not isinstance(best, bool):
        metric = str(summary.get("metric") or "").replace("_", " ")
        facts.append(f"best lr {best:g}" + (f" (by {metric})" if metric else ""))
    unstable = [u for u in summary.get("unstable_lrs") or [] if isinstance(u, (int, float))]
    if unstable:
        facts.append("unstable at lr " + ", ".join(f"{u:g}" for u in unstable))
    for key, values in (summary.get("varying") or {}).items():
        if key in ("seed", "name"):
            continue
        shown = ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else "")
        facts.append(f"{key}: {shown}")
    return facts


def _lr_list(values) -> str:
    numbers = [v for v in values or [] if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return ", ".join(f"{v:g}" for v in numbers)


_BY_RANK = (Severity.ERROR, Severity.WARNING, Severity.INFO)


def _tally(findings: list[Finding]) -> list[tuple[str, int]]:
    """``[("error", 2), ("warning", 5)]``: the study's findings by severity, most severe first."""
    counts = dict.fromkeys(_BY_RANK, 0)
    for finding in findings:
        counts[finding.severity] += 1
    return [(severity.value, n) for severity, n in counts.items() if n]


def _first(findings: list[Finding], check: str, run: str | None = None) -> Finding | None:
    return next((f for f in findings if f.check == check and (run is None or run in f.runs)), None)


def _default_run(study: Study, summary: dict, needs) -> Run | None:
    """The run a study's descriptive plot shows: the best-lr run, else the first that has the data."""
    best = summary.get("best_lr")
    candidates = [r for r in study.by_role("train") if needs(r)]
    if isinstance(best, (int, float)):
        at_best = [r for r in candidates if r.lr is not None and math.isclose(r.lr, best, rel_tol=1e-9)]
        if at_best:
            return at_best[0]
    return candidates[0] if candidates else None


def _study_figures(study: Study, summary: dict, findings: list[Finding], index: dict[int, int]):
    """``(key, spec, what)`` of each figure the study's section shows."""
    name = study.name

    def spec(kind: str, run: Run | None = None, finding: Finding | None = None) -> drawing.Spec:
        return drawing.Spec(kind, name, (run.name,) if run else (), index[id(finding)] if finding else None)

    wanted = []
    if swarm_axes(summary) is not None:
        wanted.append(("swarm", spec("swarm_grid"), "swarm grid"))
    else:  # the swarm grid already shows every run's loss
        wanted.append(("sweep", spec("sweep_curves"), "training-loss plot"))
    wanted.append(("axis", spec("hyper_axis"), "hyperparameter-axis plot"))
    for run in study.by_role("lr_range"):
        wanted.append((f"range-{run.name}", spec("lr_range", run, _first(findings, "lr_range", run.name)),
                       "LR range plot"))
    for run in study.by_role("short"):
        wanted.append((f"short-{run.name}", spec("short_run", run, _first(findings, "short_run_instability", run.name)),
                       "short-run plot"))
    if not _first(findings, "overfitting"):
        run = _default_run(study, summary, Run.has_valid_evals)
        if run is not None:
            wanted.append(("gap", spec("gap_curve", run), "generalization-gap plot"))
    if not (_first(findings, "grad_norm_outliers") or _first(findings, "clipping_too_aggressive")):
        run = _default_run(study, summary, lambda r: r.has("grad_norm"))
        if run is not None:
            wanted.append(("grad", spec("grad_norms", run), "grad-norm plot"))
    return wanted


def _study_plots(painter: drawing.Painter, wanted: list[tuple[StudyView, Callable[[], list]]], budget: int) -> None:
    """Draw each study's figures, in the order given, while they fit in ``budget`` bytes; the rest are left out.

    ``wanted``: each study's view, and what gives its figures (``_study_figures``).

    A study shows all its figures or none, and the first that does not fit ends the drawing (a later,
    smaller one does not jump the order). The first study always shows them: a page has the figures of its
    most important study, and ``diagnose report STUDY_FOLDER`` those of that study whatever their size.
    Sizes are known once drawn, so studies are drawn in batches of as many as the budget left seems to
    hold, at the mean size so far: at most one batch is drawn in vain.
    """
    spent, done = 0, 0
    while done < len(wanted):
        mean = spent / done if done else 0
        count = max(1, int((budget - spent) / mean)) if mean else 8
        batch = [(view, figures()) for view, figures in wanted[done:done + count]]
        specs = [spec for _, figures in batch for _, spec, _ in figures]
        results = iter(painter.draw(specs))
        for view, figures in batch:
            drawn = [next(results) for _ in figures]
            size = sum(len(d.plot.uri) for d in drawn if d.plot is not None)
            if done and spent + size > budget:
                for left, _ in wanted[done:]:
                    left.left_out = True
                return
            spent += size
            done += 1
            for (key, _, what), result in zip(figures, drawn):
                if result.plot is not None:
                    view.plots.append((f"{view.anchor}-{key}", result.plot))
                if result.error is not None:
                    view.notes.append(f"The {what} could not be drawn ({result.error}); please report this.")


def _command(study: Study) -> str:
    """``diagnose report FOLDER`` for the folder that holds every run of the study, or "" when none does."""
    # A Path's text is normalized, so its dirname is its parent ("." for a bare name): no Path made per run.
    # each parent once: a study's runs mostly share one, and commonpath splits each path it is given
    parents = list({os.path.dirname(run.source) or ".": None
                    for run in study.runs if run.source is not None})
    try:
        folder = os.path.commonpath(parents) if parents else ""
    except ValueError:  # absolute and relative paths mixed
        folder = ""
    return f"diagnose report {shlex.quote(folder)}" if folder else ""


# The checks whose findings a study figure shows: the anchors of the figures that may show one (study anchor, runs).
_SHOWN_BY_STUDY_FIGURE = {
    "lr_range": lambda anchor, runs: [f"{anchor}-range-{name}" for name in runs],
    "short_run_instability": lambda anchor, runs: [f"{anchor}-short-{name}" for name in runs],
    "best_lr_at_edge": lambda anchor, runs: [f"{anchor}-axis", f"{anchor}-sweep"],
}


def _finding_plots(painter: drawing.Painter, views: list[FindingView], by_name: dict, index: dict[int, int]) -> None:
    """Give each finding (most severe first) its own zoomed plot, or point at the study figure that shows it.

    Only the first MAX_FINDING_PLOTS plots are drawn; a finding whose plot comes out empty leaves its
    place to the next, so plots are drawn in batches of the places left.
    """
    pending = []  # the views that no study figure shows
    for view in views:
        finding = view.finding
        study_view = by_name[finding.study][1]
        if finding.check in _SHOWN_BY_STUDY_FIGURE:  # a few checks: the others' findings are thousands
            by_key = dict(study_view.plots)
            shown = next((key for key in _SHOWN_BY_STUDY_FIGURE[finding.check](study_view.anchor, finding.runs)
                          if key in by_key), None)
            if shown is not None:
                view.see = (shown, by_key[shown].title)
                continue
        pending.append(view)
    budget, done = MAX_FINDING_PLOTS, 0
    while done < len(pending) and budget > 0:
        batch = []  # (view, spec or None when it has no run to show)
        while done < len(pending) and sum(spec is not None for _, spec in batch) < budget:
            view = pending[done]
            batch.append((view, _finding_spec(view.finding, by_name[view.finding.study][0], index)))
            done += 1
        specs = [spec for _, spec in batch if spec is not None]
        results = iter(painter.draw(specs))
        for view, spec in batch:
            if spec is None:
                continue
            drawn = next(results)
            view.plot = drawn.plot
            if drawn.error is not None:
                view.note = f"The plot of this finding could not be drawn ({drawn.error}); please report this."
            budget -= drawn.plot is not None
    for view in pending[done:]:  # a study without figures says so once, above its findings
        if not by_name[view.finding.study][1].left_out:
            view.note = f"No plot: only the first {MAX_FINDING_PLOTS} findings get one; the study's figures show the rest."


# The figure of a finding's own plot, by check: the others get a zoom on their runs at their steps.
_FINDING_FIGURES = {"grad_norm_outliers": "grad_norms", "clipping_too_aggressive": "grad_norms",
                    "overfitting": "gap_curve"}


def _finding_spec(finding: Finding, study: Study, index: dict[int, int]) -> drawing.Spec | None:
    """The plot of ``finding`` (of ``study``), or None when it names none of the study's runs."""
    in_study = {run.name for run in study.runs}
    names = tuple(name for name in finding.runs if name in in_study)
    kind = _FINDING_FIGURES.get(finding.check, "finding_zoom")
    if kind != "finding_zoom":
        names = names[:1]
    return drawing.Spec(kind, study.name, names, index[id(finding)]) if names else None


def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def _date(iso: str) -> str:
    return iso.replace("T", " ").replace("+00:00", " UTC") if iso else ""
