"""Read and check a whole log root: both cores, and a cache for re-runs.

Runs the cache holds (with their run-level findings) are taken in this
process; their tables are read only if something asks for them. Each worker
process reads a share of the other run folders, a parent folder at a time,
and runs the run-level checks on them right there; when it read every run of
a parent folder it also does the study work of the studies those runs make
(``analyze.study_work``), while their tables are in its memory. A run the
cache now holds is then sent back without its tables (they load from the
cache entry if this process, or a figure drawing process forked from it,
asks). Without a cache, a run of many rows goes back the same way through an
entry in a scratch directory that the caller removes afterwards (``scratch``),
so only small runs' tables cross a process boundary. The
studies no worker saw whole (runs of a study in several folders, a study too
big for one share or for a worker's memory, some runs cached) are checked
afterwards in worker processes forked from this one, which see the runs as
they are here. A few runs, of few bytes, are done in this process: forking
costs more than it saves there.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import multiprocessing
import os
import sys
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import sweep
from .analyze import Analysis, Skip, StudyWork, assemble, check_target, group_studies, study_work
from .cache import RunCache, StudyCache, checks_key, settle
from .checks import BY_ID, CHECKS, Check, Scope
from .findings import Finding
from .model import Run, Study
from .readers import Unreadable, check_root, disambiguate, discover, frontier, read_run, walk
from .readers.keys import DEFAULT_KEYS, KeyMap

# Below this many bytes of logs and this many runs to read, one process is faster than a pool. A run costs ~5 CPU ms
# whatever its size (its files, tables, checks and cache entry): 1,000 runs of 1k steps are only 25 MB, but ~6.5 CPU s.
PARALLEL_MIN_BYTES = 32 << 20
PARALLEL_MIN_RUNS = 64
# From this many run folders (as estimated by the first ones found), half of them are found and keyed in a forked
# process: below, forking costs more.
FORKED_KEYS_MIN = 2_000
# The walk is split between the two processes once this many folders of the root's first depths are still to walk.
FORKED_FRONTIER = 16
# Below this many logged steps in the studies to check, one process is faster than a pool.
PARALLEL_MIN_ROWS = 1_000_000
# At most this many logged steps a worker keeps in memory (~40 bytes each) to do a group's study work.
STUDY_ROWS_HELD = 5_000_000
# Without a cache, a worker hands back a run of this many rows (steps and evals) or more through a scratch entry:
# storing one costs 1.3-2.5 CPU ms, pickling one of 1,000 rows 0.4 ms, one of 100k rows ~20 ms with the pipe.
SCRATCH_MIN_ROWS = 10_000

# A folder's run (or why it is unreadable), its run-level findings and skips, and its cache key.
Checked = tuple[Run | Unreadable, list[Finding], list[Skip], str | None]
# A folder to read, its reader module's name and its cache key (None: no cache).
Item = tuple[Path, str, str | None]
# A study's work done by a worker, by study name: its runs (name, source) in order, and the work.
Done = dict[str, tuple[tuple[tuple[str, str], ...], StudyWork]]


def analyze_root(
    path: Path,
    checks: tuple[Check, ...] = CHECKS,
    jobs: int | None = None,
    cache: RunCache | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    keys: KeyMap = DEFAULT_KEYS,
    scratch: Path | None = None,
) -> Analysis:
    """Read every run under ``path``, check it, and assemble the findings document.

    ``keys`` names logged keys the readers do not know (``--loss-key`` ...).
    Without a cache, worker processes hand long runs back through entries in
    ``scratch`` (an empty directory) instead of sending their tables: the
    caller removes it once done with the runs' tables (figures drawn).
    """
    root = check_root(path)
    jobs = jobs or min(os.cpu_count() or 1, 8)
    # Each folder's cache key (a scan of its files) is found once, here: a worker reading the folder is given it.
    folders, run_keys = _folders_and_keys(root, cache, scratch, keys, jobs)
    run_checks = tuple(c for c in checks if c.scope is Scope.RUN)
    specs = [(c.id, c.config) for c in checks]
    cache_dir = cache.directory if cache else scratch

    if cache:  # the entries of runs deleted since the last command on this root go
        cache.forget_absent(os.path.realpath(root), run_keys, "" if keys == DEFAULT_KEYS else repr(keys))
    # What the cache has is taken here: a worker would cost more in sending the run back than the lookup.
    done: dict[int, Checked] = _cached(root, folders, run_keys, checks_key(run_checks), cache, keys) if cache else {}
    todo = [index for index in range(len(folders)) if index not in done]
    if on_progress and done:
        on_progress(len(done), len(folders))
    misses = [(*folders[index], run_keys[index]) for index in todo]
    studied: Done = {}
    if jobs > 1 and len(misses) > 1 and (len(misses) >= PARALLEL_MIN_RUNS
                                         or _total_bytes(misses) >= PARALLEL_MIN_BYTES):
        shares = _shares(folders, todo, set(done), jobs)
        _import_for_workers()
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = pool.map(_check_folders, [root] * len(shares),
                               [[([(*folders[i], run_keys[i]) for i in group], whole) for group, whole in share]
                                for share in shares],
                               [specs] * len(shares), [cache_dir] * len(shares), [keys] * len(shares),
                               [cache is None] * len(shares))
            for share, (outcomes, works) in zip(shares, results):
                done.update(zip((i for group, _ in share for i in group), outcomes))
                studied.update(works)
                if on_progress:
                    on_progress(len(done), len(folders))
    else:
        for index, (outcome, _) in zip(todo, _checked(root, misses, run_checks, cache, keys)):
            done[index] = outcome
            if on_progress:
                on_progress(len(done), len(folders))
    outcomes = [done[index] for index in range(len(folders))]

    runs = [run for run, _, _, _ in outcomes if isinstance(run, Run)]
    renamed = set(map(id, disambiguate(root, runs)))
    for run in runs:
        if id(run) in renamed:  # checked again below: a cached run's instability events from its entry, not searched
            settle(run)
    checked = [
        (run, *check_target(run, run_checks)) if id(run) in renamed else (run, findings, skipped)
        for run, findings, skipped, _ in outcomes
        if isinstance(run, Run)
    ]
    unreadable = sorted((run.to_dict() for run, _, _, _ in outcomes if isinstance(run, Unreadable)),
                        key=lambda u: u["path"])
    studies = StudyCache(cache.directory, {id(run): key for run, _, _, key in outcomes}, checks) if cache else None
    analysis = assemble(root, checked, unreadable, checks, studies,
                        functools.partial(_work_on_studies, jobs=jobs, studied=studied) if jobs > 1 else None)
    if cache:  # after the study work, which may have found an entry of the record gone (``cache._UNKEPT``)
        cache.record(run_keys)
        studies.forget_absent()
    return analysis


# The studies a forked worker works on and the checks, inherited from the main process (runs' tables included).
_STUDIES: tuple[list[Study], tuple[Check, ...]] = ([], ())


def _work_on_studies(studies: list[Study], checks: tuple[Check, ...], jobs: int, studied: Done) -> list[StudyWork]:
    """``study_work`` of each study: done by a run worker when it saw the study whole, else in worker processes
    when they hold enough steps to pay for them.

    The workers fork, so that they share the studies' runs instead of being
    sent them: a run's tables are here (no cache), or read from its cache entry.
    """
    found = {}
    for index, study in enumerate(studies):
        members, work = studied.get(study.name, ((), None))
        if members == _members(study):  # not when a run was renamed here, or is cached, or came from another share
            found[index] = work
    rest = [index for index in range(len(studies)) if index not in found]
    found.update(zip(rest, _study_works([studies[index] for index in rest], checks, jobs)))
    return [found[index] for index in range(len(studies))]


def _study_works(studies: list[Study], checks: tuple[Check, ...], jobs: int) -> list[StudyWork]:
    rows = [sum(run.facts["steps"] for run in study.runs) for study in studies]
    # fork is Linux's: Windows has none, and macOS's breaks libraries that started threads
    if len(studies) < 2 or sum(rows) < PARALLEL_MIN_ROWS or sys.platform != "linux":
        return [study_work(study, checks) for study in studies]
    global _STUDIES
    _STUDIES = studies, checks
    # the biggest first, so that no big one is left for the end
    order = sorted(range(len(studies)), key=lambda index: -rows[index])
    try:
        with ProcessPoolExecutor(min(jobs, len(studies)), multiprocessing.get_context("fork")) as pool:
            # a thousand small studies go in shares: one message each would cost more than some of them
            found = dict(zip(order, pool.map(_study_work_at, order, chunksize=max(1, len(order) // (jobs * 16)))))
    finally:
        _STUDIES = [], ()
    return [found[index] for index in range(len(studies))]


def _study_work_at(index: int) -> StudyWork:
    """Worker: ``study_work`` of an inherited study."""
    studies, checks = _STUDIES
    return study_work(studies[index], checks)


def _folders_and_keys(root: Path, cache: RunCache | None, scratch: Path | None, keys: KeyMap,
                      jobs: int) -> tuple[list[tuple[Path, str]], list[str | None]]:
    """``discover``'s folders (with their readers' module names) and their cache keys.

    Many run folders on Linux, two cores or more: the walk's first depths are visited breadth first, and a forked
    process finds and keys the folders below the second half of them while this one does the first half (10,000
    runs in 1,000 studies: a run's folder costs ~15 us to find and ~40 us to key, a folder sent back ~5 us).
    """
    if cache is None or jobs < 2 or sys.platform != "linux":
        folders = _named(discover(root, keys))
        return folders, _run_keys(root, folders, cache, scratch, keys)
    head, mine, theirs, runs = _halves(root, keys)
    if runs < FORKED_KEYS_MIN or not theirs:
        folders = _named(head + walk(mine + theirs, keys))
        return folders, _run_keys(root, folders, cache, scratch, keys)
    real_root = os.path.realpath(root)

    def key(folder: Path, reader_name: str) -> str:
        return cache.key(folder, _reader_id(reader_name, keys), real_root)

    def found_and_keyed(part: list[tuple[Path, object | None]]) -> list[str]:
        return [text for folder, reader_name in _named(walk(part, keys))
                for text in (str(folder), reader_name, key(folder, reader_name))]

    folders = _named(head)
    first = key(*folders[0])  # the cache tidied and the code's version found once, before the fork
    child = _forked(lambda: found_and_keyed(theirs))
    try:
        folders += _named(walk(mine, keys))
        run_keys = [first, *(key(folder, reader_name) for folder, reader_name in folders[1:])]
    finally:
        texts = child()  # also when this process failed: the child is waited for
    if texts is None or len(texts) % 3:  # the child failed: its part is done here
        texts = found_and_keyed(theirs)
    folders += [(Path(texts[at]), texts[at + 1]) for at in range(0, len(texts), 3)]
    return folders, run_keys + texts[2::3]


def _halves(root: Path, keys: KeyMap):
    """``discover(root)`` in three parts, and about how many runs it finds.

    The folders this process finds first (a run at least, and the whole walk of
    a folder, a sample of how many runs one holds), then the rest of the walk's
    first depths (``readers.frontier``) in two parts of about as many runs.
    """
    start = frontier(root, keys, FORKED_FRONTIER)
    to_walk = any(reader is None for _, reader in start)
    head: list[tuple[Path, object]] = []
    index = walked = sampled = 0
    while index < len(start) and (not head or (to_walk and not walked)):
        folder, reader = start[index]
        found = walk([(folder, reader)], keys)
        head += found
        if reader is None:
            walked += 1
            sampled += len(found)
        index += 1
    rest = start[index:]
    weights = [sampled / walked if reader is None else 1 for _, reader in rest]
    runs = len(head) + sum(weights)
    cut, share = 0, runs / 2 - len(head)
    while cut < len(rest) and share > 0:
        share -= weights[cut]
        cut += 1
    return head, rest[:cut], rest[cut:], runs


def _named(found: list[tuple[Path, object]]) -> list[tuple[Path, str]]:
    return [(folder, reader.__name__) for folder, reader in found]


def _run_keys(root: Path, folders: list[tuple[Path, str]], cache: RunCache | None, scratch: Path | None,
              keys: KeyMap) -> list[str | None]:
    """Each folder's cache key, found here."""
    if cache is None:
        # a scratch entry is never looked up: the folder's index names it
        return [f"{index:064x}" if scratch else None for index in range(len(folders))]
    real_root = os.path.realpath(root)
    return [cache.key(folder, _reader_id(reader_name, keys), real_root) for folder, reader_name in folders]


def _forked(work: Callable[[], list[str]]) -> Callable[[], list[str] | None]:
    """``work`` done in a forked process meanwhile: a function that waits for its strings (none holds a NUL, as no
    path does), or None when the process failed."""
    readable, writable = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(readable)
        os.close(writable)
        return lambda: None
    if pid == 0:  # the child: its result down the pipe, then gone without this process's exit handlers
        status = 1
        try:
            os.close(readable)
            with open(writable, "wb") as pipe:
                pipe.write(os.fsencode("\0".join(work())))
            status = 0
        finally:
            os._exit(status)
    os.close(writable)

    def result() -> list[str] | None:
        with open(readable, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        return None if status else os.fsdecode(data).split("\0") if data else []

    return result


def _cached(root: Path, folders: list[tuple[Path, str]], run_keys: list[str], checked_with: str, cache: RunCache,
            keys: KeyMap) -> dict[int, Checked]:
    """The folders (by index) whose run and run-level findings the cache holds."""
    hits = cache.load_many(run_keys, checked_with, [(root, folder, reader_name, keys) for folder, reader_name in folders])
    return {index: (*hit, key) for index, (hit, key) in enumerate(zip(hits, run_keys)) if hit and hit[1] is not None}


def _reader_id(reader_name: str, keys: KeyMap) -> str:
    """Other key names read other columns: part of what a cached run depends on."""
    return reader_name if keys == DEFAULT_KEYS else f"{reader_name} {keys!r}"


def _import_for_workers() -> None:
    """Import here what every worker imports to read runs and write them to the cache (pandas, pyarrow).

    The workers fork from this process: they share these modules instead of each importing them
    (~0.3 s CPU a worker, paid twice on two cores).
    """
    importlib.import_module(f"{__package__}.readers.records")


def _check_folders(root: Path, groups: list[tuple[list[Item], bool]], specs, cache_dir: Path | None,
                   keys: KeyMap = DEFAULT_KEYS, scratch: bool = False) -> tuple[list[Checked], Done]:
    """Worker: ``_checked`` on a share of the folders, and the study work of the runs of each whole group.

    ``groups`` are folders of one parent, each with whether it holds all of
    that parent's folders to read. The runs the cache holds are sent back
    without their tables. ``scratch``: ``cache_dir`` is a scratch directory.
    """
    checks = tuple(dataclasses.replace(BY_ID[check_id], config=config) for check_id, config in specs)
    run_checks = tuple(c for c in checks if c.scope is Scope.RUN)
    cache = RunCache(cache_dir) if cache_dir else None
    outcomes: list[Checked] = []
    works: Done = {}
    for items, whole in groups:
        runs: list[Run] = []
        rows = 0
        held = []  # the runs the cache now holds, whose tables stay here for the group's study work
        checked = _checked(root, items, run_checks, cache, keys, scratch)
        for (folder, reader_name, _), (outcome, stored) in zip(items, checked):
            outcomes.append(outcome)
            run, _, _, key = outcome
            if isinstance(run, Run):
                runs.append(run)
                rows += run.facts["steps"]
            if stored:
                held.append((key, run, (root, folder, reader_name, keys)))
            if rows > STUDY_ROWS_HELD:
                whole = False  # too much to hold: the study phase reads them from the cache
            if not whole:
                for entry in held:
                    cache.tables_later(*entry)
                held = []
        if whole:
            for study in group_studies(runs):
                works[study.name] = (_members(study), study_work(study, checks))
        for entry in held:
            cache.tables_later(*entry)
    return outcomes, works


def _checked(root: Path, items: list[Item], checks: tuple[Check, ...], cache: RunCache | None, keys: KeyMap,
             scratch: bool = False):
    """Read each folder and run the run-level ``checks``: one ``Checked`` each, and whether the cache now holds it.

    A folder the cache holds the run of (checked with other settings) is not
    read again. A scratch ``cache`` holds nothing yet, and only runs of
    ``SCRATCH_MIN_ROWS`` or more.
    """
    checked_with = checks_key(checks)
    for folder, reader_name, key in items:
        hit = cache.load(key, checked_with, (root, folder, reader_name, keys)) if cache and not scratch else None
        run = hit[0] if hit else read_run(root, folder, importlib.import_module(reader_name), keys)
        if isinstance(run, Unreadable):
            yield (run, [], [], None), False
            continue
        findings, skipped = check_target(run, checks)
        # the study phase asks every run for these: found here, in parallel, memoised on the run
        sweep.best_valid_loss(run)
        sweep.loss_facts(run)
        kept = cache and (not scratch or len(run.steps) + len(run.evals) >= SCRATCH_MIN_ROWS)
        stored = bool(kept and cache.store(key, run, checked_with, findings, skipped))
        yield (run, findings, skipped, key), stored


def _members(study: Study) -> tuple[tuple[str, str], ...]:
    return tuple((run.name, str(run.source)) for run in study.runs)


def _total_bytes(folders) -> int:
    total = 0
    for folder, *_ in folders:
        total += sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
        if total >= PARALLEL_MIN_BYTES:
            break
    return total


def _shares(folders: list[tuple[Path, str]], todo: list[int], cached: set[int],
            jobs: int) -> list[list[tuple[list[int], bool]]]:
    """The folders to read (indices) in shares for the workers: groups of one parent folder, each with whether it is
    whole (every folder of that parent is read in it, so a worker may do its studies' work).

    A parent holding more than a quarter of one worker's part of the folders to read (an eighth of them
    on two cores), or a cached folder, is split into single folders: one worker left alone with it at the end would cost more than checking
    its study afterwards. Small shares (16 per worker), interleaved, the biggest groups first, so
    that no worker is left alone with a long one at the end.
    """
    by_parent: dict[Path, list[int]] = defaultdict(list)
    for index in todo:
        by_parent[folders[index][0].parent].append(index)
    partly_cached = {folders[index][0].parent for index in cached}
    limit = max(1, len(todo) // (4 * jobs))
    groups = []
    for parent, indices in by_parent.items():
        if parent in partly_cached or len(indices) > limit:
            groups.extend(([index], False) for index in indices)
        else:
            groups.append((indices, True))
    groups.sort(key=lambda group: -len(group[0]))
    count = max(1, min(jobs * 16, len(groups)))
    return [groups[i::count] for i in range(count)]
