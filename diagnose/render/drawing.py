"""Draw the figures the report asked for: on every core for big reports, reused from an earlier report.

The HTML renderer decides which figures a page shows and names each with a
``Spec``; this module only draws them. Every figure is written from the same
inputs by the same code, so its SVG is the same bytes whichever process draws
it and in whatever order.

With a cache folder and a study digest (``Analysis.study_digests``), each
figure is stored under its slot (study, figure, its runs and finding) with the
key it was drawn for (the digest, the finding's content, the render version);
a later report whose key matches reads it back instead of drawing. A study's
entries share one file, written once when the report ends: creating a file
costs ~0.2-0.4 ms of CPU here, as much as a tenth of a figure's drawing. An
entry that cannot be read is drawn again (all of a file that cannot be read);
a cache that cannot be written is skipped.

The cache stays the size of the figures the last reports showed, as the run
cache does (``diagnose.cache``): a study's file is named by its log root (real
path) and the study, and rewritten with the entries that report asked for; a
record a root of the studies its last report had removes the files of those
gone since. The record says its root in its first line: the end of a report
or a check on any root removes the files of each root that no longer exists,
its studies' figures, its page texts (``texts_path``, kept by ``html``) and
its record (``forget_gone_roots``). Files are written in a staging folder
and renamed into place: the end of a report removes staging files a killed
process left (an hour old), and files of older layouts once (a marker file
names the layout).
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import re
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy

from .. import __version__, files
from ..analyze import Analysis
from ..findings import Finding
from ..model import Run, Study
from .plot import Plot

# Work (logged steps the figures read, and FIGURE_STEPS a figure) past which a forked worker draws a share of
# the figures while this process draws the rest. A figure costs ~2 ms of CPU plus ~1.2 ms a 100k steps it
# reads. Measured on the 10M root (52 figures; its first batch of 32 is ~15M): the report's end took 0.49 CPU s
# alone, 0.34-0.37 s here with a worker drawing a share (0.25-0.28 s there: pages copied on write, tables read
# in both), so ~0.13 s less wall time on two idle cores for ~0.12 s more CPU. The 1M root (~2M) stays here.
PARALLEL_MIN_WORK = 10_000_000
FIGURE_STEPS = 170_000  # a figure's own cost (layout, SVG), in steps read

_SVG_URI = "data:image/svg+xml;base64,"

# The layout of the figures folder, in its marker file: another (or none) means files of older layouts, which
# ``_OLD`` names, may be there. A new layout (or new names of files) takes a new marker.
_MARKER, _FOLDER_LAYOUT = "layout", b"diagnose figures 3\n"
_STAGING = "staging"  # every file is written here first, then renamed into place
_ROOTS = "roots"  # a record a log root of the studies its last report had (``Painter._forget_absent``)
# A root's record: this tag and the JSON of its root (which the record's name is a hash of: a damaged line names no
# root), then the JSON of its studies' names.
_RECORD = "dgnfigures/1"
_TEXTS = "texts"  # the page texts a log root (``texts_path``)
_TIDY_SECONDS = 1.0  # seconds (wall) a report spends at most removing older layouts' files, the rest left to the next
# Older layouts: a file a figure (by its slot), then a file a study named by the study alone; and their
# ``<name>.<pid>.tmp``.
_OLD = re.compile(r"[0-9a-f]{40}(\.[0-9]+\.tmp|\.json)")


def texts_path(cache_dir: Path, root: str) -> Path:
    """The file in which ``html`` keeps the page texts of log root ``root`` (real path): named here, where the files
    of a root that no longer exists are removed (``forget_gone_roots``)."""
    return cache_dir / _TEXTS / hashlib.sha256(f"texts of\0{root}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Spec:
    """One figure to draw: ``figures.<kind>`` of a study's runs (by name) and, for some, one finding."""

    kind: str
    study: str
    runs: tuple[str, ...] = ()
    finding: int | None = None  # index into the document's findings


@dataclass(frozen=True)
class Drawn:
    plot: Plot | None
    error: str | None = None  # "ValueError: bad data" when drawing raised


class Inputs:
    """What the figures of an analysis are drawn from, found by a ``Spec``'s names."""

    def __init__(self, analysis: Analysis):
        self.studies = {study.name: study for study in analysis.studies}
        self.summaries = {s.get("study"): s for s in analysis.document.studies if isinstance(s, dict)}
        self.findings = analysis.document.findings
        self.by_study: dict[str, list[Finding]] = {}  # a sweep figure's findings, not a pass over all for each
        for finding in self.findings:
            self.by_study.setdefault(finding.study, []).append(finding)

    def work(self, spec: Spec) -> int:
        """About what drawing ``spec`` costs, in logged steps read (a sweep reads every run's loss, a zoom a few)."""
        if spec.kind in ("hyper_axis", "finding_zoom"):
            return FIGURE_STEPS
        study = self.studies[spec.study]
        if spec.kind in ("sweep_curves", "swarm_grid"):
            runs = study.runs
        else:
            runs = _runs(study, spec.runs)
        return FIGURE_STEPS + sum(run.facts["steps"] for run in runs)

    def draw(self, spec: Spec) -> Drawn:
        """The figure, or None when its data is absent; a drawing bug costs that figure, never the report."""
        figures = _figures()
        study = self.studies[spec.study]
        summary = self.summaries.get(spec.study, {})
        finding = self.findings[spec.finding] if spec.finding is not None else None
        runs = _runs(study, spec.runs)
        try:
            if spec.kind == "swarm_grid":
                plot = figures.swarm_grid(study, summary)
            elif spec.kind == "sweep_curves":
                plot = figures.sweep_curves(study, summary, self.by_study.get(study.name, []))
            elif spec.kind == "hyper_axis":
                plot = figures.hyper_axis(summary)
            elif spec.kind == "finding_zoom":
                plot = figures.finding_zoom(runs, finding)
            else:  # lr_range, short_run, gap_curve, grad_norms: one run and maybe its finding
                plot = getattr(figures, spec.kind)(runs[0], finding)
        except Exception as error:  # noqa: BLE001
            return Drawn(None, f"{type(error).__name__}: {error}")
        return Drawn(plot)


def _runs(study: Study, names: tuple[str, ...]) -> list[Run]:
    by_name: dict[str, Run] = {}
    for run in study.runs:
        by_name.setdefault(run.name, run)
    return [by_name[name] for name in names if name in by_name]


class Painter:
    """Draws ``Spec``s for one report; a context manager, so its worker processes end with the report."""

    def __init__(self, analysis: Analysis, cache_dir: Path | None = None, jobs: int | None = None):
        self.inputs = Inputs(analysis)
        self.digests = analysis.study_digests if cache_dir is not None else {}
        self.cache_dir = cache_dir
        # a study's file is its root's: the digests of two roots' same-named studies differ (their runs' keys)
        self.root = os.path.realpath(analysis.document.root) if self.digests else ""
        self.jobs = jobs or min(os.cpu_count() or 1, 8)
        self._pool: ProcessPoolExecutor | None = None
        self._homes: dict[str, int] = {}  # study -> the share that drew its first figure (it read its runs)
        self._files: dict[str, dict] = {}  # study -> the entries of its file (slot -> entry), as read
        self._kept: dict[str, dict] = {}  # study -> the entries this report read or drew, its file's next content
        self._drawn: set[str] = set()  # studies whose file has new entries, written on exit

    def __enter__(self) -> Painter:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        for study in sorted(self._drawn):
            self._store(study)
        if self.digests and self.cache_dir is not None:
            self._forget_absent()
            self._tidy()

    def draw(self, specs: list[Spec]) -> list[Drawn]:
        """Each spec's figure, in order: read from the cache when it holds it, else drawn (and stored)."""
        keys = [self._key(spec) for spec in specs]
        done: list[Drawn | None] = [self._read(key) for key in keys]
        missing = [i for i, drawn in enumerate(done) if drawn is None]
        for i, drawn in zip(missing, self._draw([specs[i] for i in missing])):
            done[i] = drawn
            if drawn.error is None:  # a bug is drawn again next time, in case it was fixed
                self._write(keys[i], drawn)
        return done

    def _draw(self, specs: list[Spec]) -> list[Drawn]:
        """The figures, drawn here, or shared with worker processes when there is enough work to pay for them."""
        shares = self._shares(specs)
        # A daemon process (a multiprocessing.Pool worker) may not start processes of its own.
        if (len(shares) > 1 and sys.platform == "linux" and not multiprocessing.current_process().daemon):
            try:
                if self._pool is None:
                    _figures()  # imported once here, not once in each worker
                    # fork: the workers share this process's series instead of receiving a copy of them
                    self._pool = ProcessPoolExecutor(self.jobs - 1, multiprocessing.get_context("fork"),
                                                     initializer=_adopt, initargs=(self.inputs,))
                theirs = [self._pool.submit(_draw_adopted, [specs[i] for i in share]) for share in shares[1:]]
                done = dict(zip(shares[0], (self.inputs.draw(specs[i]) for i in shares[0])))
                for share, future in zip(shares[1:], theirs):
                    done.update(zip(share, future.result()))
                return [done[i] for i in range(len(specs))]
            except (OSError, BrokenProcessPool):  # no process to spare: draw them all here
                self.jobs = 1
        return [self.inputs.draw(spec) for spec in specs]

    def _shares(self, specs: list[Spec]) -> list[list[int]]:
        """The specs (indices) in one share per process, of about equal work; one share when that is too little."""
        work = [self.inputs.work(spec) for spec in specs]
        # once the workers are there, any share of the work pays
        if self.jobs < 2 or len(specs) < 2 or (self._pool is None and sum(work) < PARALLEL_MIN_WORK):
            return [list(range(len(specs)))]
        shares: list[list[int]] = [[] for _ in range(self.jobs)]
        loads = [0] * self.jobs
        for i in sorted(range(len(specs)), key=lambda i: -work[i]):  # the biggest first, each to the least loaded
            share = loads.index(min(loads))
            # or with its study's other figures, which read the same runs, unless that puts a figure's work more
            # out of balance: a run's tables are then read by one process, not two (~0.5 ms CPU a 100k steps)
            home = self._homes.setdefault(specs[i].study, share)
            if loads[home] - loads[share] <= work[i]:
                share = home
            shares[share].append(i)
            loads[share] += work[i]
        return [share for share in shares if share]

    # ------------------------------------------------------------ cache

    def _key(self, spec: Spec) -> tuple[str, str, str] | None:
        """(the study, the figure's slot, the key its content must carry), or None when it is not cached."""
        digest = self.digests.get(spec.study)
        if digest is None or self.cache_dir is None:
            return None
        finding = self.inputs.findings[spec.finding] if spec.finding is not None else None
        slot = [spec.study, spec.kind, spec.runs, _where(finding)]
        content = [_render_version(), digest, spec.kind, spec.runs, finding.to_dict() if finding else None]
        return spec.study, _hash(slot), _hash(content)

    def _path(self, study: str) -> Path:
        return _study_path(self.cache_dir, self.root, study)

    def _entries(self, study: str) -> dict:
        """The entries of the study's file, read once; none when it is absent or cannot be read."""
        entries = self._files.get(study)
        if entries is None:
            try:
                entries = json.loads(self._path(study).read_bytes())
            except (OSError, ValueError):
                entries = None
            entries = self._files[study] = entries if isinstance(entries, dict) else {}
        return entries

    def _read(self, key: tuple[str, str, str] | None) -> Drawn | None:
        if key is None:
            return None
        study, slot, wanted = key
        try:
            entry = self._entries(study)[slot]
            if entry["key"] != wanted:
                return None
            if entry["plot"] is None:
                self._kept.setdefault(study, {})[slot] = entry
                return Drawn(None)
            plot = Plot(**entry["plot"])
            shape_ok = all(isinstance(v, str) for v in (plot.title, plot.caption)) and all(
                isinstance(v, int) and v > 0 for v in (plot.width, plot.height))
            # the CRC-32 written with it, not a decoding of it: a warm 10,000-run page's ~10 MB of figures are
            # checked in ~7 ms of CPU, where b64decode(validate=True) took ~50 and let a changed letter through
            whole = plot.uri.startswith(_SVG_URI) and zlib.crc32(plot.uri.encode()) == entry["crc"]
            if not (whole and shape_ok):
                return None
            self._kept.setdefault(study, {})[slot] = entry
            return Drawn(plot)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):  # absent or damaged: draw it again
            return None

    def _write(self, key: tuple[str, str, str] | None, drawn: Drawn) -> None:
        """Keep the figure in its study's entries, to be written on exit."""
        if key is None:
            return
        study, slot, wanted = key
        plot = drawn.plot
        self._kept.setdefault(study, {})[slot] = {"key": wanted, "plot": None} if plot is None else {
            "key": wanted, "crc": zlib.crc32(plot.uri.encode()), "plot": {
                "title": plot.title, "caption": plot.caption, "uri": plot.uri, "width": plot.width,
                "height": plot.height}}
        self._drawn.add(study)

    def _store(self, study: str) -> None:
        """Write the study's file: the entries this report read from it or drew, not those of figures it no
        longer shows (a finding at other steps), which would pile up in it."""
        try:
            self._put(self._path(study), json.dumps(self._kept[study]).encode("utf-8"))
        except OSError:  # a cache that cannot be written costs the next report the drawing, not this one
            pass

    def _forget_absent(self) -> None:
        """Remove the files of studies gone from the root since its last report, by that report's record."""
        names = sorted(self.inputs.studies)
        record = self.cache_dir / _ROOTS / _record_name(self.root)
        header = _header(self.root)
        try:
            head, _, rest = record.read_bytes().partition(b"\n")
        except OSError:  # none yet: written below
            head, rest = b"", b""
        seen = _recorded_studies(rest) if head == header else []  # another root's line: damaged
        if seen == names:
            return
        present = set(names)
        for name in seen:
            if name not in present:
                files.remove(self._path(name))
        try:
            self._put(record, header + b"\n" + json.dumps(names).encode("utf-8"))
        except OSError:
            pass

    def _tidy(self) -> None:
        """Remove what this code never reads: staging files a killed process left, the files of log roots that no
        longer exist, and (once) older layouts.

        A warm report pays a look at the staging folder, one small read, the marker, and a listing of the roots'
        records with each one's first line; the folder is walked when the marker is not ours, and the marker
        written once all is removed. Removing stops after ``_TIDY_SECONDS``, the rest left to the next report.
        """
        deadline = time.monotonic() + _TIDY_SECONDS
        files.remove_abandoned(self.cache_dir / _STAGING)
        upgrading = not _layout_is_current(self.cache_dir)
        if not forget_gone_roots(self.cache_dir, self.root, deadline, upgrading) or not upgrading:
            return
        try:
            with os.scandir(self.cache_dir) as found:
                old = [entry.path for entry in found if _OLD.fullmatch(entry.name)]
        except FileNotFoundError:
            old = []
        except OSError:
            return
        for path in old:
            if time.monotonic() > deadline:
                return  # the rest at the next report
            files.remove(path)
        try:
            self._put(self.cache_dir / _MARKER, _FOLDER_LAYOUT)
        except OSError:
            pass

    def _put(self, path: Path, data: bytes) -> None:
        """The file ``path`` holding ``data``, put in place whole (``files.put``) through the staging folder, where
        ``_tidy`` finds what a killed process left."""
        files.put(path, [data], self.cache_dir / _STAGING)


def forget_gone_roots(cache_dir: Path, this_root: str, deadline: float, upgrading: bool) -> bool:
    """Remove the files of each log root but ``this_root`` that no longer exists: its studies' figures, its page
    texts, then its record. False when ``deadline`` (monotonic) came first: the rest is the next command's.

    A record says its root in its first line, which only counts when the record's name is that root's: a
    record damaged there, or of an older layout, removes nothing (``upgrading``: records of older layouts
    are removed, their roots' next report writes them anew); one damaged below names no study. A root on a
    drive not mounted now looks gone: its figures are drawn again when it is back, never shown wrong.
    """
    for path, name, line in files.records(cache_dir / _ROOTS, _RECORD, upgrading):
        if time.monotonic() > deadline:
            return False
        root = _recorded_root(line)
        if root is None:  # damaged: names no root
            continue
        # verified only when gone: a line that says a root that exists removes nothing anyway
        if root == this_root or os.path.lexists(root) or _record_name(root) != name:
            continue
        try:
            studies = _recorded_studies(Path(path).read_bytes().partition(b"\n")[2])
        except OSError:
            studies = []
        for study in studies:
            files.remove(_study_path(cache_dir, root, study))
        files.remove(texts_path(cache_dir, root))
        files.remove(path)
    return True


def forget_gone_roots_after_check(cache_dir: Path, this_root: str) -> None:
    """``forget_gone_roots`` for a command that draws nothing (``diagnose check``), within the time a report's tidy
    has; older layouts are left to the next report, which knows them (``Painter._tidy``)."""
    if _layout_is_current(cache_dir):  # (not when there is no figures folder: no report yet)
        forget_gone_roots(cache_dir, this_root, time.monotonic() + _TIDY_SECONDS, upgrading=False)


def _layout_is_current(cache_dir: Path) -> bool:
    """Whether the figures folder's marker names this layout; False when it names another, or is absent or
    unreadable."""
    try:
        return (cache_dir / _MARKER).read_bytes() == _FOLDER_LAYOUT
    except OSError:
        return False


def _study_path(cache_dir: Path, root: str, study: str) -> Path:
    """The file of the figures of ``study`` of log root ``root`` (real path)."""
    return cache_dir / f"{_hash(['figures of', root, study])}.study.json"


def _record_name(root: str) -> str:
    """The file name of the record of log root ``root``'s studies (``Painter._forget_absent``)."""
    return f"{_hash(['studies of', root])}.json"


def _header(root: str) -> bytes:
    """The first line of log root ``root``'s record: JSON writes the path in ASCII, without a newline."""
    return f"{_RECORD} {json.dumps(root)}".encode()


def _recorded_root(line: bytes) -> str | None:
    """The log root a record's first ``line`` says; None when it says none (damaged, of another layout). It is the
    record's when the record's name is its (``_record_name``)."""
    try:
        root = json.loads(line.partition(b" ")[2])
        if type(root) is str and _header(root) == line:
            return root
    except ValueError:  # not JSON
        pass
    return None


def _recorded_studies(body: bytes) -> list[str]:
    """The studies a record's ``body`` (below its first line) names; none when it is damaged. Only names: a
    damaged record names only its own root's files."""
    try:
        names = json.loads(body)
    except ValueError:
        return []
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []


def _where(finding: Finding | None) -> list | None:
    """A finding's place (check and steps): findings at different places get different slots."""
    return None if finding is None else [finding.check, list(finding.steps) if finding.steps else None]


def _hash(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def _figures():
    """``figures``, imported on the first figure that is drawn: a report whose figures are all cached imports
    none of the drawing code."""
    from . import figures

    return figures


@functools.cache
def _render_version() -> str:
    """What the SVG depends on besides the data: the code that draws it, and numpy (decimation, histograms)."""
    sources = []
    for name in ("figures.py", "svg.py", "drawing.py", "plot.py"):
        try:
            sources.append(hashlib.sha256(Path(__file__).with_name(name).read_bytes()).hexdigest())
        except OSError:  # no source to read (a frozen app): the package version still tells releases apart
            sources.append(None)
    return _hash(["svg/1", __version__, numpy.__version__, sources])


# A worker's inputs, inherited from the report's process when the pool forks.
_ADOPTED: Inputs | None = None


def _adopt(inputs: Inputs) -> None:
    global _ADOPTED
    _ADOPTED = inputs


def _draw_adopted(specs: list[Spec]) -> list[Drawn]:
    return [_ADOPTED.draw(spec) for spec in specs]
