"""What the analysis says about the committed samples: real runs with known pathologies.

These pin the rules that read run findings in their study's context (an lr
sweep's runs above lr*, seeds of a ringing config, LR range tests) and the
playbook's short-run procedure on a run whose own noise hides its early rise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnose.pipeline import analyze_root

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture(scope="module")
def document():
    if not any(SAMPLES.glob("*/*/run.json")):
        pytest.skip("samples/ holds no runs")
    return analyze_root(SAMPLES, jobs=1).document


def findings(document, check=None, run=None):
    return [
        f for f in document.findings
        if (check is None or f.check == check) and (run is None or run in f.runs)
    ]


def test_runs_above_lr_star_of_a_sweep_are_evidence_not_alarms(document):
    sweep = next(s for s in document.studies if s["study"] == "lr_sweep")
    assert sweep["best_lr"] == 0.1
    [diverged, *_] = findings(document, "divergence", "lr3-s0")
    assert diverged.severity.value == "info" and diverged.recommendation is None
    assert diverged.evidence["above_best_lr"] == 0.1
    # lr 1 barely moved because it is too large: never "the lr is too small".
    assert findings(document, "underfitting", "lr1-s0") == []
    # The sweep itself carries the alarm and the fix.
    [edge] = [f for f in findings(document, "best_lr_at_edge") if f.study == "lr_sweep"]
    assert edge.severity.value == "warning" and edge.recommendation.action == "warmup"


def test_the_lr_star_run_keeps_its_own_findings(document):
    spikes = next(s for s in document.studies if s["study"] == "spikes")
    assert spikes["best_lr"] == 0.001
    [spike] = findings(document, "loss_spike", "adam-lr0.001")
    assert spike.severity.value == "error" and spike.recommendation is not None


def test_small_rises_of_seeds_whose_siblings_ring_are_info(document):
    ringing = {f.runs[0] for f in findings(document, "momentum_oscillation")}
    assert ringing and all(name.startswith("m0.99") for name in ringing)
    for finding in findings(document):
        if finding.check in ("early_instability", "loss_spike") and finding.study == "swarm":
            assert finding.severity.value == "info", finding.title


def test_an_lr_range_test_gets_only_the_lr_range_check(document):
    assert {f.check for f in findings(document, run="range-test")} == {"lr_range"}
    skipped = {s["check"] for s in document.skipped if "lr_range/range-test" in s["targets"]}
    assert {"divergence", "grad_norm_outliers", "loss_spike"} <= skipped


def test_the_2x_short_run_is_caught_against_lr_star_although_its_noise_hides_the_rise(document):
    [finding] = findings(document, "short_run_instability")
    assert finding.runs[0] == "short-2x-lr0.2"
    [lag] = finding.evidence["lag_periods"]
    start, end = lag["steps"]
    assert start < 50 and end < 100 and lag["factor"] >= 2
    assert finding.evidence["recovered"] is True
    assert finding.recommendation.action == "warmup"


def test_healthy_clipping_and_overfitting_samples_get_what_they_show(document):
    assert findings(document, run="warmup-cosine-lr0.1") == []
    assert [f.check for f in findings(document, run="clip0.25-lr0.1")] == ["clipping_too_aggressive"]
    assert "overfitting" in {f.check for f in findings(document, run="wide-n100")}


def test_the_terminal_lists_what_fails_the_gate_and_counts_the_rest(document):
    from click.testing import CliRunner

    from diagnose.cli import main

    quiet = CliRunner().invoke(main, ["check", str(SAMPLES), "--fail-on", "warning"])
    infos = sum(f.severity.value == "info" for f in document.findings)
    assert quiet.exit_code == 1
    assert f"({infos} informational, not listed here)" in quiet.output
    assert not [line for line in quiet.output.splitlines() if line.startswith("info ")]
    loud = CliRunner().invoke(main, ["check", str(SAMPLES), "--fail-on", "info"])
    assert len([line for line in loud.output.splitlines() if line.startswith("info ")]) == infos
