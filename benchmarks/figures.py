"""CPU time of drawing a report's figures, figure by figure, in one process and without the cache.

The root is analysed first (not timed); then the HTML page is rendered with
``jobs=1`` and every ``drawing.Inputs.draw`` call is timed in CPU seconds
(``time.process_time``), so other work on a shared machine does not count.
With ``--cache DIR`` the root is analysed as ``diagnose report`` does, with a
run cache in DIR (emptied first): the figures read the runs' tables back from
it, as in a cold report, and that reading is part of their time.

Run by hand (not a test):

    python benchmarks/figures.py samples/
    python benchmarks/figures.py /tmp/scale/10M --html /tmp/10M.html
    python benchmarks/figures.py /tmp/scale/10M --cache /tmp/figures-cache
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import defaultdict
from pathlib import Path

from diagnose.analyze import analyze
from diagnose.cache import RunCache
from diagnose.pipeline import analyze_root
from diagnose.readers import read_root
from diagnose.render import drawing, html


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--html", type=Path, help="also write the page here")
    parser.add_argument("--cache", type=Path, help="analyse with a run cache here (emptied first), as a report does")
    args = parser.parse_args()

    if args.cache:
        shutil.rmtree(args.cache, ignore_errors=True)
        analysis = analyze_root(args.root, cache=RunCache(args.cache))
    else:
        analysis = analyze(read_root(args.root))
    seconds: dict[str, list[float]] = defaultdict(list)
    original = drawing.Inputs.draw

    def timed(self, spec):
        start = time.process_time()
        try:
            return original(self, spec)
        finally:
            seconds[spec.kind].append(time.process_time() - start)

    drawing.Inputs.draw = timed
    start = time.process_time()
    page = html.render(analysis, jobs=1)
    total = time.process_time() - start
    drawing.Inputs.draw = original
    if args.html:
        args.html.write_text(page, encoding="utf-8")

    count = sum(len(v) for v in seconds.values())
    drawn = sum(sum(v) for v in seconds.values())
    print(f"{args.root}: {count} figures, {drawn:.2f} CPU s drawing ({1e3 * drawn / max(count, 1):.1f} ms each); "
          f"render {total:.2f} CPU s; page {len(page.encode()) / 1e6:.2f} MB")
    for kind, times in sorted(seconds.items(), key=lambda item: -sum(item[1])):
        print(f"  {kind:14s} {len(times):4d} x {1e3 * sum(times) / len(times):6.1f} ms  (max {1e3 * max(times):.1f})")


if __name__ == "__main__":
    main()
