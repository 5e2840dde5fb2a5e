"""The ``diagnose`` command: parse, call, print, exit code. Nothing is decided here."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path

import click

from . import __version__
from .analyze import Analysis
from .cache import CACHE_ENV, RunCache, default_directory
from .checks import BY_ID, CHECKS
from .errors import LogError
from .findings import Severity
from .pipeline import analyze_root
from .readers import LogRoot, read_root
from .readers.keys import KeyMap

EXIT_OK, EXIT_FINDINGS, EXIT_UNREADABLE = 0, 1, 2


class _Progress:
    """``read N/M runs`` on stderr, only once reading takes more than a moment."""

    def __init__(self, after_seconds: float = 1.0):
        self.start = time.monotonic()
        self.after = after_seconds
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.start
        if elapsed < self.after or (elapsed - self.last < 1.0 and done < total):
            return
        self.last = elapsed
        click.echo(f"read {done}/{total} runs", err=True)


def _load(logroot: Path, keys: KeyMap) -> LogRoot:
    try:
        return read_root(logroot, on_progress=_Progress(), keys=keys)
    except LogError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_UNREADABLE)


def _checks(settings: tuple[str, ...]):
    """The registered checks with ``--set check.threshold=value`` applied."""
    overrides: dict[str, dict[str, str]] = {}
    for setting in settings:
        name, _, value = setting.partition("=")
        check_id, _, field = name.partition(".")
        if not value or not field or check_id not in BY_ID:
            raise click.BadParameter(
                f"{setting!r}: expected CHECK.THRESHOLD=VALUE with CHECK one of {', '.join(BY_ID)}",
                param_hint="--set",
            )
        overrides.setdefault(check_id, {})[field] = value
    try:
        return tuple(check.configured(overrides.get(check.id, {})) for check in CHECKS)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--set") from None


@contextlib.contextmanager
def _scratch(no_cache: bool):
    """With ``--no-cache``, a temporary directory through which worker processes hand back long runs (see
    ``analyze_root``), removed when the command ends, however it ends (an error, Ctrl-C, SIGTERM): sending the
    tables of a hundred 100k-step runs cost more CPU than reading them, and held them all in memory."""
    if not no_cache:
        yield None
        return
    import tempfile  # here: ~5 ms of imports (shutil, random) that a run with the cache does without

    with tempfile.TemporaryDirectory(prefix="diagnose-", ignore_cleanup_errors=True) as directory:
        # SIGTERM (a CI job cancelled) would end the process without unwinding: it exits as Ctrl-C does
        handled = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, functools.partial(_terminated, os.getpid())) if handled else None
        try:
            yield Path(directory)
        finally:
            if handled:
                signal.signal(signal.SIGTERM, previous)


def _terminated(owner: int, signum: int, frame) -> None:
    if os.getpid() != owner:  # a forked worker inherited the handler: it ends as it always did
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _uncollected():
    """The cyclic collector off while the command builds what lives to its end, then those objects frozen.

    An analysis (10,000 cached runs: ~250k objects) and its page make next to no cyclic garbage (a few
    hundred objects, from the worker pools): the collector's passes freed nothing and took 0.4-0.6 s of
    a ~2 s re-run in the analysis, 15 ms in the page. Frozen, the later collections skip them, as the gc
    docs advise before a fork.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _analyze(logroot: Path, settings: tuple[str, ...], use_cache: bool = True, keys: KeyMap = KeyMap(),
             scratch: Path | None = None) -> Analysis:
    checks = _checks(settings)
    try:
        with _uncollected():
            analysis = analyze_root(
                logroot,
                checks,
                cache=RunCache(default_directory()) if use_cache else None,
                on_progress=_Progress(),
                keys=keys,
                scratch=scratch,
            )
    except LogError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_UNREADABLE)
    for unreadable in analysis.document.unreadable:
        click.echo(f"unreadable: {unreadable['error']}", err=True)
    return analysis


_LOGROOT = click.argument("logroot", type=click.Path(exists=True, file_okay=False, path_type=Path))
_SET = click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="CHECK.THRESHOLD=VALUE",
    help="Tune a check's threshold, e.g. --set divergence.start_factor=100 (see `diagnose explain CHECK`).",
)
_NO_CACHE = click.option(
    "--no-cache",
    is_flag=True,
    help=f"Read every run again instead of reusing earlier work (cache: ${CACHE_ENV} or ~/.cache/diagnose).",
)
_KEY_OPTIONS = (
    ("--loss-key", "loss", "the training loss"),
    ("--valid-key", "valid", "the validation loss (read as split 'valid')"),
    ("--grad-norm-key", "grad_norm", "the gradient norm"),
    ("--lr-key", "lr", "the learning rate"),
    ("--momentum-key", "momentum", "the momentum (or Adam beta1)"),
    ("--step-key", "step", "the step number"),
)


def _keys(command):
    """``--loss-key NAME`` ...: the logged key that holds a quantity, for logs that name it unusually."""
    for flag, role, what in reversed(_KEY_OPTIONS):
        command = click.option(flag, f"key_{role}", metavar="NAME",
                               help=f"The key, column or tag that holds {what} in your logs.")(command)
    return command


def _key_map(options: dict) -> KeyMap:
    return KeyMap(**{role: options.pop(f"key_{role}") for _, role, _ in _KEY_OPTIONS})


_JSON = click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the findings document (diagnose.findings/1) to this file.",
)


# Whether the command ends the process: ``main`` called in standalone mode, as the ``diagnose`` program calls it (click
# then ends the process with sys.exit), not ``main.main`` (click's test runner) nor ``main(..., standalone_mode=False)``.
_ENDS_PROCESS = False


class _Program(click.Group):
    def __call__(self, *args, **kwargs):
        global _ENDS_PROCESS
        _ENDS_PROCESS = kwargs.get("standalone_mode", True)
        return super().__call__(*args, **kwargs)


def _exit_now(code: int) -> None:
    """When the command ends the process, end it now with ``code``, its output flushed; else return.

    A warm 10,000-run report's analysis is ~250k objects: freeing them one by one as the command returned, then
    the interpreter's teardown, took ~0.2 s of CPU after the last line was printed (a ~2.7 s command), where the
    OS frees the process's memory at once (os._exit). Nothing else is left to do at exit by then: the worker
    processes have ended (their pools closed, the forked keying process waited for) and the files are closed.
    """
    if _ENDS_PROCESS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@click.group(cls=_Program, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="diagnose")
def main():
    """Check the health of PyTorch training runs from their logs.

    Point it at a log root: a folder holding runs (diagnose run directories,
    and more formats as they are added). Every folder below it with a log is
    one run; runs in the same parent folder form a study (an lr sweep, a seed
    swarm) and are compared with each other.
    """


@main.command()
@_LOGROOT
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the HTML report. Default: reports/<logroot name>.html",
)
@_JSON
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a short Markdown summary to this file (a PR comment, or $GITHUB_STEP_SUMMARY in CI).",
)
@_SET
@_NO_CACHE
@_keys
def report(logroot: Path, output: Path | None, json_path: Path | None, markdown_path: Path | None, settings,
           no_cache: bool, **key_options):
    """Write one self-contained HTML report for LOGROOT (opens offline, attach it to a review)."""
    from .render import html, markdown

    with _scratch(no_cache) as scratch:  # the figures read the runs' tables
        analysis = _analyze(logroot, settings, use_cache=not no_cache, keys=_key_map(key_options), scratch=scratch)
        if not analysis.document.runs:
            click.echo(f"error: no readable run under {logroot}", err=True)
            sys.exit(EXIT_UNREADABLE)
        output = output or Path("reports") / f"{logroot.resolve().name}.html"
        # figures of unchanged studies come back from the last report (keyed by Analysis.study_digests)
        with _uncollected():
            html.write(analysis, output, cache_dir=None if no_cache else default_directory() / "figures")
    click.echo(f"wrote {output}")
    if json_path:
        analysis.document.write_json(json_path)
        click.echo(f"wrote {json_path}")
    if markdown_path:
        markdown.write(analysis.document, markdown_path)
        click.echo(f"wrote {markdown_path}")
    _print_summary(analysis)
    _exit_now(EXIT_OK)


@main.command()
@_LOGROOT
@click.option(
    "--fail-on",
    type=click.Choice([s.value for s in Severity]),
    default="error",
    show_default=True,
    help="Exit 1 when a finding is at least this severe.",
)
@click.option("--strict", is_flag=True, help="Exit 2 when any run cannot be read, not only when none can.")
@_JSON
@_SET
@_NO_CACHE
@_keys
def check(logroot: Path, fail_on: str, strict: bool, json_path: Path | None, settings, no_cache: bool,
          **key_options):
    """CI gate: print the findings for LOGROOT and set the exit code.

    \b
    Exit codes:
      0  no finding reaches --fail-on
      1  a finding reaches --fail-on
      2  the logs could not be read (no run at all; with --strict, any run)
    """
    with _scratch(no_cache) as scratch:  # no table is read after the analysis
        analysis = _analyze(logroot, settings, use_cache=not no_cache, keys=_key_map(key_options), scratch=scratch)
    if not no_cache:  # a log root deleted whole loses its figures and page texts too, as at a report
        from .render import drawing  # its cache's files only: nothing is drawn

        drawing.forget_gone_roots_after_check(default_directory() / "figures", os.path.realpath(analysis.document.root))
    if json_path:
        analysis.document.write_json(json_path)
    _print_summary(analysis, shown=min(Severity(fail_on), Severity.WARNING, key=lambda s: s.rank))
    if not analysis.document.runs:
        click.echo(f"error: no readable run under {logroot}", err=True)
        sys.exit(EXIT_UNREADABLE)
    threshold = Severity(fail_on).rank
    failing = [f for f in analysis.document.findings if f.severity.rank >= threshold]
    code = EXIT_UNREADABLE if strict and analysis.document.unreadable else EXIT_FINDINGS if failing else EXIT_OK
    _exit_now(code)
    sys.exit(code)


@main.command()
@_LOGROOT
@_keys
def runs(logroot: Path, **key_options):
    """List the runs found under LOGROOT and what was understood from each.

    COLUMNS names each column the checks use, with the logged key it was read
    from where the log named it differently (loss<-train/loss, val:loss<-val_loss).
    """
    root = _load(logroot, _key_map(key_options))
    rows = [("STUDY", "RUN", "ROLE", "STEPS", "STATUS", "FORMAT", "COLUMNS")]
    for run in sorted(root.runs, key=lambda r: (r.study, r.name)):
        columns = ",".join(_understood(run))
        rows.append(
            (run.study, run.name, run.role, str(run.n_steps), run.status or "-", run.format, columns or "-")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    for run in root.runs:
        for note in run.notes:
            click.echo(f"note: {run.key}: {note}", err=True)
    for unreadable in root.unreadable:
        click.echo(f"unreadable: {unreadable.error}", err=True)
    if not root.runs:
        sys.exit(EXIT_UNREADABLE)


@main.command()
@click.argument("check_id", required=False, metavar="CHECK")
@click.option("--markdown", is_flag=True, help="Every check's documentation as one Markdown page (docs/checks.md).")
def explain(check_id: str | None, markdown: bool):
    """Print what CHECK detects, why, how, and what it recommends (no CHECK: list them)."""
    if markdown:
        click.echo(checks_markdown(), nl=False)
        return
    if check_id is None:
        for check in CHECKS:
            click.echo(f"{check.id:26} {check.doc.splitlines()[0]}")
        return
    if check_id not in BY_ID:
        raise click.BadParameter(f"unknown check {check_id!r}; known: {', '.join(BY_ID)}", param_hint="CHECK")
    check = BY_ID[check_id]
    click.echo(f"{check.id} ({check.scope.value} check)\n")
    click.echo(check.doc)
    thresholds = _thresholds(check)
    if thresholds:
        click.echo(f"\nThresholds (--set {check.id}.NAME=VALUE): {thresholds}")


def checks_markdown() -> str:
    """The checks' documentation, generated from the registry (their module docstrings)."""
    parts = ["# Checks\n\nGenerated by `diagnose explain --markdown` from each check's docstring.\n"]
    parts.append("\n".join(f"- [`{c.id}`](#{c.id}): {c.doc.splitlines()[0]}" for c in CHECKS) + "\n")
    for check in CHECKS:
        sections = check.sections()
        parts.append(f"## {check.id}\n\n{check.doc.splitlines()[0]}\n\nScope: {check.scope.value}.\n")
        parts.extend(f"### {name}\n\n{text}\n" for name, text in sections.items())
        thresholds = _thresholds(check)
        if thresholds:
            parts.append(f"Thresholds (`--set {check.id}.NAME=VALUE`): `{thresholds}`\n")
    return "\n".join(parts)


def _thresholds(check) -> str:
    return ", ".join(f"{k}={v}" for k, v in vars(check.config).items())


def _understood(run) -> list[str]:
    """``loss<-train/loss``, ``lr``, ``val:loss<-val_loss``: each column and the key it came from."""
    shown = []
    for column in run.steps.columns:
        if column != "step" and run.has(column):
            source = run.sources.get(column, column)
            shown.append(column if source == column else f"{column}<-{source}")
    for name, source in run.sources.items():
        if ":" in name:
            shown.append(f"{name}<-{source}")
    if not any(":" in name for name in run.sources) and len(run.evals):
        shown.extend(f"{split}:loss" for split in dict.fromkeys(run.evals["split"]))
    return shown


def _print_summary(analysis: Analysis, shown: Severity = Severity.WARNING) -> None:
    """One line per finding at ``shown`` or worse, then the verdict with the counts."""
    document = analysis.document
    lines = [f"{f.severity.value:7} {f.check}: {f.title}" for f in document.findings if f.severity.rank >= shown.rank]
    quieter = len(document.findings) - len(lines)
    lines.append(
        f"{document.verdict}: {len(document.findings)} findings in {len(document.runs)} runs"
        + (f" ({quieter} informational, not listed here)" if quieter else "")
        + (f", {len(document.unreadable)} unreadable" if document.unreadable else "")
    )
    click.echo("\n".join(lines))  # one write: an echo a line (it flushes) cost ~6 us each, 1,440 lines: 9 ms


if __name__ == "__main__":
    main()
