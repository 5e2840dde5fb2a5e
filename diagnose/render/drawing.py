"""Draw the figures the report asked for: on every core for big reports, reused from an earlier report.

The HTML renderer decides which figures a page shows and names each with a
``Spec``; this module only draws them. Every figure is written from the same
inputs by the same code, so its SVG is the same bytes whichever process draws
it and in whatever order.

With a cache folder and a study digest (``Analysis.study_digests``), each
figure is stored under its slot (study, figure, its runs and finding) with the
key it was drawn for (the digest, the finding's content, the render version);
a later report whose key matches reads it back instead of drawing. An entry
that cannot be read is drawn again; a cache that cannot be written is skipped.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy

from .. import __version__
from ..analyze import Analysis
from ..findings import Finding
from ..model import Run, Study
from .plot import Plot

# Fewer figures to draw than this are drawn in this process. A figure takes 1-6 ms of CPU; starting two
# workers takes 25-80 ms, and they spend more CPU than one process would (pages copied on write, cold
# caches). Measured (two cores, busy machine): 10M rows (52 figures) 0.46 s wall in one process, 0.54-0.81 s
# with two workers; 412 figures 1.1-3.0 s with one, 1.4-2.4 s with two; 10k runs (4,012 figures, 18 CPU s
# either way) 41-51 s wall with one, 21-27 s with two.
PARALLEL_MIN_FIGURES = 1000

_SVG_URI = "data:image/svg+xml;base64,"


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
                plot = figures.sweep_curves(study, summary, [f for f in self.findings if f.study == study.name])
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
        self.jobs = jobs or min(os.cpu_count() or 1, 8)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Painter:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown()

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
        # A daemon process (a multiprocessing.Pool worker) may not start processes of its own.
        if (len(specs) >= PARALLEL_MIN_FIGURES and self.jobs > 1 and sys.platform == "linux"
                and not multiprocessing.current_process().daemon):
            try:
                if self._pool is None:
                    _figures()  # imported once here, not once in each worker
                    # fork: the workers share this process's series instead of receiving a copy of them
                    self._pool = ProcessPoolExecutor(min(self.jobs, len(specs)), multiprocessing.get_context("fork"),
                                                     initializer=_adopt, initargs=(self.inputs,))
                return list(self._pool.map(_draw_adopted, specs))
            except (OSError, BrokenProcessPool):  # no process to spare: draw them all here
                self.jobs = 1
        return [self.inputs.draw(spec) for spec in specs]

    # ------------------------------------------------------------ cache

    def _key(self, spec: Spec) -> tuple[Path, str] | None:
        """(the figure's slot file, the key its content must carry), or None when it is not cached."""
        digest = self.digests.get(spec.study)
        if digest is None or self.cache_dir is None:
            return None
        finding = self.inputs.findings[spec.finding] if spec.finding is not None else None
        slot = [spec.study, spec.kind, spec.runs, _where(finding)]
        content = [_render_version(), digest, spec.kind, spec.runs, finding.to_dict() if finding else None]
        return self.cache_dir / f"{_hash(slot)}.json", _hash(content)

    def _read(self, key: tuple[Path, str] | None) -> Drawn | None:
        if key is None:
            return None
        path, wanted = key
        try:
            entry = json.loads(path.read_bytes())
            if entry["key"] != wanted:
                return None
            if entry["plot"] is None:
                return Drawn(None)
            plot = Plot(**entry["plot"])
            svg = base64.b64decode(plot.uri.removeprefix(_SVG_URI), validate=True)
            shape_ok = all(isinstance(v, str) for v in (plot.title, plot.caption)) and all(
                isinstance(v, int) and v > 0 for v in (plot.width, plot.height))
            whole = svg.startswith(b"<svg ") and svg.endswith(b"</svg>")  # a cut entry loses its end
            if not (plot.uri.startswith(_SVG_URI) and whole and shape_ok):
                return None
            return Drawn(plot)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):  # absent or damaged: draw it again
            return None

    def _write(self, key: tuple[Path, str] | None, drawn: Drawn) -> None:
        if key is None:
            return
        path, wanted = key
        plot = drawn.plot
        entry = {"key": wanted, "plot": None if plot is None else {
            "title": plot.title, "caption": plot.caption, "uri": plot.uri, "width": plot.width, "height": plot.height}}
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(entry), encoding="utf-8")
            os.replace(temporary, path)  # a reader sees the old entry or the new one, never half of one
        except OSError:  # a cache that cannot be written costs the next report the drawing, not this one
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


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


def _draw_adopted(spec: Spec) -> Drawn:
    return _ADOPTED.draw(spec)
