"""seed_spread on real sin swarms (Morrison's bees, CPU) and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from diagnose import sweep
from diagnose.checks import seed_spread as check
from diagnose.model import Study

torch = pytest.importorskip("torch")
from conftest import cases_for  # noqa: E402
from test_sweep import decaying, make_run  # noqa: E402

POSITIVE, NEGATIVE = cases_for("seed_spread")


def detect(case: Study):
    reason = check.CHECK.why_skipped(case)
    return None if reason else check.detect(case, check.Config())


def final_losses(case: Study, **cell) -> list[float]:
    runs = [r for r in case.runs if all(r.config.get(k) == v for k, v in cell.items())]
    return [float(np.median(r.steps["loss"].to_numpy()[-13:])) for r in runs]


def test_slow_cells_whose_bees_end_far_apart_are_named_with_how_many_fit(corpus):
    case = corpus.study("swarm_slow_cells_disagree")
    [finding] = detect(case)
    assert finding.severity.value == "warning"
    cells = {(c["momentum"], c["lr"]): c for c in finding.evidence["cells"]}
    assert set(cells) == {(0.9, 0.002), (0.95, 0.002)}
    for (momentum, lr), cell in cells.items():
        finals = final_losses(case, momentum=momentum, lr=lr)
        assert max(finals) / min(finals) >= 3  # measured here
        assert cell["spread"] == pytest.approx(max(finals) / min(finals), rel=0.02)
        assert cell["fit"] < len(cell["runs"]) == 4
    # Every bee at lr 0.01 fits: that is the recommended cell.
    rec = finding.recommendation
    assert rec.action == "momentum" and rec.values["lr"] == 0.01 and rec.values["value"] in (0.9, 0.95)
    assert finding.evidence["axes"] == ["momentum", "lr"]


def test_one_bee_knocked_into_a_poor_fit(corpus):
    case = corpus.study("swarm_stuck_seed")
    [finding] = detect(case)
    [cell] = finding.evidence["cells"]
    assert cell["momentum"] == 0.0
    finals = final_losses(case, momentum=0.0)
    assert sorted(finals)[-1] > 3 * sorted(finals)[-2]  # one outlier seed, measured here
    assert cell["spread"] > 5



def test_quiet_on_lr_sweeps_with_two_seeds_per_lr(corpus):
    # Two seeds say little about a spread; sweeps are judged by the sweep checks.
    assert detect(corpus.study("sweep_edge_classifier")) == []


def test_skipped_when_no_config_has_two_seeds():
    case = Study("s", [make_run("a", decaying(), 0.1, seed=0), make_run("b", decaying(), 0.3, seed=0)])
    assert check.CHECK.why_skipped(case) == "no config with two or more seeds"


def test_some_seeds_diverging_while_others_do_not_is_disagreement():
    runs = [make_run(f"s{s}", decaying(end=0.1, seed=s), 0.1, seed=s) for s in range(3)]
    runs.append(make_run("s3", [np.nan] * 300, 0.1, seed=3))
    [finding] = detect(Study("s", runs))
    [cell] = finding.evidence["cells"]
    assert cell["diverged"] == 1 and cell["fit"] == 3
    assert finding.evidence["axes"] == []


def test_every_seed_diverged_is_not_a_spread():
    runs = [make_run(f"s{s}", [np.nan] * 300, 0.1, seed=s) for s in range(3)]
    assert detect(Study("s", runs)) == []


@pytest.mark.parametrize("scale", [1e-4, 1e4])
def test_scale_free(scale):
    ends = (0.01, 0.012, 0.05)
    runs = [make_run(f"s{s}", decaying(end=end, seed=s) * scale, 0.1, seed=s) for s, end in enumerate(ends)]
    [finding] = detect(Study("s", runs))
    view = sweep.swarm(Study("s", runs))
    assert finding.evidence["cells"][0]["fit"] == 2
    assert view["fit_threshold"] == pytest.approx(2 * min(view["cells"][0]["final_losses"]))


@pytest.mark.parametrize("name", POSITIVE)
def test_every_corpus_case_labelled_with_it_gets_a_finding(corpus, name):
    assert detect(corpus.study(name))


@pytest.mark.parametrize("name", NEGATIVE)
def test_quiet_on_every_corpus_case_that_forbids_it(corpus, name):
    assert not detect(corpus.study(name))
