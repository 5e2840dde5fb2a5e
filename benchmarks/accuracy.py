"""Per-check precision and recall on the labelled corpus and on the real public logs of ``../shared/realworld``.

The corpus (``tests/corpus``: every case module's real CPU training runs) is
trained into a folder, read back and analysed exactly as ``diagnose report``
does; a case counts as detected for a check when a finding of that check
names its study. On the real logs, each labelled run
(``benchmarks/realworld_labels.py``, judged by eye with a reason each) is
detected when a finding of the check names that run; a check that is
skipped on a run (its data is missing) is not judged there.

Run by hand (not a test; trains ~70 tiny models, a minute or two on 2 cores):

    python benchmarks/accuracy.py                      # corpus in a temp folder + realworld
    python benchmarks/accuracy.py --corpus-dir /tmp/c  # keep (and reuse) the trained corpus
    python benchmarks/accuracy.py --skip-corpus        # realworld only
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from diagnose.analyze import analyze  # noqa: E402
from diagnose.checks import BY_ID  # noqa: E402
from diagnose.readers import read_root  # noqa: E402


def corpus_scores(folder: Path | None):
    import corpus

    cases = corpus.all_cases()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(folder) if folder else Path(scratch)
        started = time.perf_counter()
        built = 0
        for case in cases:
            if not (root / case.name).is_dir():
                corpus.build(case, root)
                built += 1
        print(f"corpus: {len(cases)} cases ({built} trained now) in {time.perf_counter() - started:.0f} s under {root}",
              file=sys.stderr)
        document = analyze(read_root(root)).document
    reported = defaultdict(set)
    for finding in document.findings:
        reported[finding.study].add(finding.check)
    return corpus.score(cases, reported), len(cases)


def realworld_scores(folder: Path):
    import realworld_labels

    loaded = read_root(folder)
    analysis = analyze(loaded)
    reported = defaultdict(set)
    for finding in analysis.document.findings:
        for name in finding.runs:
            reported[f"{finding.study}/{name}"].add(finding.check)
    scores = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "misses": [], "false_alarms": []})
    unlabelled = []
    for run in loaded.runs:
        labels = realworld_labels.label(run.key)
        if labels is None:
            unlabelled.append(run.key)
            continue
        expect, forbid, _ = labels
        found = reported.get(run.key, set())
        for check_id in expect | forbid:
            check = BY_ID.get(check_id)
            if check is None or check.why_skipped(run) is not None:
                continue
            entry = scores[check_id]
            if check_id in expect:
                entry["tp" if check_id in found else "fn"] += 1
                if check_id not in found:
                    entry["misses"].append(run.key)
            else:
                entry["fp" if check_id in found else "tn"] += 1
                if check_id in found:
                    entry["false_alarms"].append(run.key)
    return scores, len(loaded.runs), unlabelled, loaded.unreadable


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "  - "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-dir", type=Path, help="train the corpus here (reused when already there)")
    parser.add_argument("--skip-corpus", action="store_true")
    parser.add_argument("--realworld", type=Path, default=REPO.parent / "shared" / "realworld")
    args = parser.parse_args()

    rows: dict[str, dict] = defaultdict(dict)
    notes = []
    if not args.skip_corpus:
        scores, count = corpus_scores(args.corpus_dir)
        notes.append(f"corpus: {count} labelled cases")
        for check_id, s in scores.items():
            rows[check_id]["corpus"] = (s.tp, s.fp, s.fn, s.tn, s.misses, s.false_alarms)
    if args.realworld.is_dir():
        scores, count, unlabelled, unreadable = realworld_scores(args.realworld)
        notes.append(f"realworld: {count} runs, {count - len(unlabelled)} labelled, {len(unreadable)} unreadable")
        for check_id, s in scores.items():
            rows[check_id]["realworld"] = (s["tp"], s["fp"], s["fn"], s["tn"], s["misses"], s["false_alarms"])
    else:
        notes.append(f"realworld: {args.realworld} is absent")

    print("; ".join(notes))
    header = f"{'check':26s} | {'corpus P':>8s} {'R':>5s} {'tp/fp/fn/tn':>12s} | {'realworld P':>11s} {'R':>5s} {'tp/fp/fn/tn':>12s}"
    print(header)
    print("-" * len(header))
    for check_id in sorted(rows, key=lambda c: list(BY_ID).index(c) if c in BY_ID else len(BY_ID)):
        cells = []
        for source in ("corpus", "realworld"):
            if source in rows[check_id]:
                tp, fp, fn, tn, _, _ = rows[check_id][source]
                width = 8 if source == "corpus" else 11
                cells.append(f"{_ratio(tp, tp + fp):>{width}s} {_ratio(tp, tp + fn):>5s} {f'{tp}/{fp}/{fn}/{tn}':>12s}")
            else:
                cells.append(f"{'':>{8 if source == 'corpus' else 11}s} {'':>5s} {'':>12s}")
        print(f"{check_id:26s} | {cells[0]} | {cells[1]}")
    for check_id in rows:
        for source, (_, _, _, _, misses, false_alarms) in rows[check_id].items():
            if misses:
                print(f"  {check_id} {source} misses: {', '.join(misses)}")
            if false_alarms:
                print(f"  {check_id} {source} false alarms: {', '.join(false_alarms)}")


if __name__ == "__main__":
    main()
