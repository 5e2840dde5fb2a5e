"""The labelled corpus for check tests: each case is trained once per test session, on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnose.analyze import group_studies
from diagnose.checks import BY_ID
from diagnose.readers import read_root


class Corpus:
    """Builds corpus cases on demand into one session folder and reads them back as studies."""

    def __init__(self, root: Path):
        import corpus

        self.root = root
        self.cases = corpus.by_name()
        self._build = corpus.build
        self._studies = {}

    def study(self, name: str):
        if name not in self._studies:
            folder = self._build(self.cases[name], self.root / "cases")
            loaded = read_root(folder)
            assert not loaded.unreadable, loaded.unreadable
            [study] = group_studies(loaded.runs)
            self._studies[name] = study
        return self._studies[name]

    def run(self, name: str):
        """The case's only run (run cases hold one)."""
        [run] = self.study(name).runs
        return run

    def findings(self, check_id: str, name: str):
        """What the registered check reports on the case (skipped targets give nothing)."""
        check = BY_ID[check_id]
        targets = [self.study(name)] if check.scope.value == "study" else self.study(name).runs
        found = []
        for target in targets:
            if check.why_skipped(target) is None:
                found.extend(check.detect(target, check.config))
        return found


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Corpus:
    pytest.importorskip("torch")
    return Corpus(tmp_path_factory.mktemp("corpus"))


def cases_for(check_id: str) -> tuple[list[str], list[str]]:
    """Names of the corpus cases that expect ``check_id`` and of those that forbid it (the calling module is skipped
    without torch: the cases are trained with it)."""
    pytest.importorskip("torch", reason="the corpus's runs are trained with torch")
    import corpus

    cases = corpus.all_cases()
    return [c.name for c in cases if check_id in c.expect], [c.name for c in cases if check_id in c.forbid]
