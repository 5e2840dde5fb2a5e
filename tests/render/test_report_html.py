"""The HTML report: self-contained, verdict first, the seeds' plots, escaped, small on big logs."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import time
import xml.etree.ElementTree as ET
from html import unescape

import markupsafe
import numpy as np
import pandas as pd
import pytest

from diagnose import signal
from diagnose.analyze import Analysis, analyze
from diagnose.findings import Finding, FindingsDocument, Recommendation, Severity
from diagnose.model import Run, Study
from diagnose.readers import read_root
from diagnose.render import figures, html


def figure_ids(text: str) -> list[str]:
    return re.findall(r'<figure id="([^"]+)">', text)


def test_nothing_is_fetched_from_anywhere(page):
    assert "http://" not in page and "https://" not in page
    sources = re.findall(r'\b(?:src|href)="([^"]*)"', page)
    assert sources, "the report has figures and links"
    assert all(s.startswith(("data:image/svg+xml;base64,", "#")) for s in sources), sources
    assert "<link" not in page and "@import" not in page and "url(" not in page
    # the CSP forbids any request a future edit might add
    policy = unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)[1])
    assert policy.startswith("default-src 'none'; img-src data:;")


def test_first_screen_has_root_counts_verdict_and_the_top_fixes(page, analysis):
    head = page[: page.index('id="findings"')]
    assert analysis.document.root in head
    assert "2026-11-22 03:00:00 UTC" in head
    assert "<b>3</b> studies" in head and "<b>20</b> runs" in head
    steps = sum(r["steps"] for r in analysis.document.runs)
    assert f"<b>{steps:,}</b> logged steps" in head
    assert "Warnings: 3 things to look at." in head
    # the three warnings, each with the snippet to copy; the info finding only in the full list
    assert head.count('class="finding warning"') == 3
    assert "warmup_steps: 100\nbase_lr: 0.3" in head
    assert "clip_norm: " in head and "weight_decay: 0.0005" in head
    assert "LR range test: train between" not in head


def test_each_study_shows_the_plots_its_runs_and_summary_support(page):
    ids = figure_ids(page)
    studies = {"s1": "overfit", "s2": "swarm", "s3": "sweep"}
    for anchor, name in studies.items():
        assert f'<h2 id="{anchor}">Study {name}</h2>' in page
    # sweep: loss curves with lr*, hyperparameter axis, LR range test, the 2x short run, the gap curve
    assert {"s3-sweep", "s3-axis", "s3-range-range", "s3-short-short-lr0.06", "s3-gap"} <= set(ids)
    # its grad-norm plot belongs to the grad_norm_outliers finding, not a second copy at study level
    assert "s3-grad" not in ids
    # swarm: the momentum x lr grid replaces the loss plot; it has grad norms but no evals
    assert {"s2-swarm", "s2-grad"} <= set(ids) and "s2-sweep" not in ids and "s2-gap" not in ids
    # overfit: its gap curve is the overfitting finding's plot
    assert "s1-gap" not in ids and "s1-sweep" in ids


def test_each_finding_has_title_detail_snippet_and_its_evidence(page, analysis):
    ids = set(figure_ids(page))
    cards = dict(re.findall(r'<article class="finding \w+" id="(f\d+)">(.*?)</article>', page, flags=re.S))
    assert len(cards) == len(analysis.document.findings)
    for anchor, finding in zip(sorted(cards, key=lambda a: int(a[1:])), analysis.document.findings):
        card = cards[anchor]
        assert html_text(finding.title) in card and html_text(finding.detail) in card
        assert f"<code>{finding.check}</code>" in card
        if finding.check == "lr_range":  # shown by the study's LR range figure
            assert 'href="#s3-range-range"' in card and f"{anchor}-plot" not in ids
        else:
            assert f"{anchor}-plot" in ids
        assert '<pre class="snippet">' in card
    assert "clip_norm: " in cards["f2"] and "lr: 0.1" in cards["f4"]


def html_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_table_cells_escaped_as_the_template_escapes():
    """The runs and findings tables are built in Python: each cell reads as jinja2's autoescape prints it."""
    for value in ["<b class='x'>&\"", "plain", "", 3, 0.5, float("nan"), None, True, [1, "<x>"], {"k": "'"}]:
        assert html._e(value) == markupsafe.escape(value)


def test_a_run_named_like_a_script_shows_as_text(tmp_path, train):
    evil = "<script>alert(1)</script>"
    train(tmp_path / "logs" / "a&b" / "x", study="<b>study</b>", name=evil, lr=0.05, steps=60,
          extra_config={"note": "<img src=x onerror=alert(2)>", "$\\frac{a}{$": "$\\bad$"})
    steps_csv = tmp_path / "logs" / "a&b" / "x" / "steps.csv"
    lines = steps_csv.read_text().splitlines()
    steps_csv.write_text("\n".join([lines[0] + ",<b>col</b>"] + [line + ",1.5" for line in lines[1:]]) + "\n")
    (tmp_path / "logs" / "broken").mkdir()
    (tmp_path / "logs" / "broken" / "run.json").write_text('{"format": "diagnose.run/1", "name": "<i>x</i>"}')
    (tmp_path / "logs" / "broken" / "steps.csv").write_text("step,loss\n0,1.0\n1,<svg onload=alert(3)>\n")
    analysis = analyze(read_root(tmp_path / "logs"))
    run = analysis.studies[0].runs[0]
    finding = Finding(
        check="loss_spike", severity=Severity.ERROR, study=run.study, runs=(run.name,), steps=(10, 20),
        title=f"{evil} spiked", detail=f"column <b>{evil}</b>", evidence={"periods": {run.name: [[10, 20]]}},
        recommendation=Recommendation("optimizer", f"try {evil}", {"value": evil}),
    )
    analysis.document.findings.append(finding)
    page = html.render(analysis)
    assert evil not in page and "<img src=x" not in page and "<svg onload" not in page and "<b>study" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page  # config value, in the runs table
    assert "&lt;b&gt;col&lt;/b&gt;" in page  # a logged column's name, in the runs table
    assert "&lt;svg onload=alert(3)&gt;" in page or "line 3" in page  # the unreadable run's error
    assert page.count("<script>") == 1  # ours, whose hash the CSP allows
    # the finding still got its plot, the run's name escaped inside its SVG too
    uri = re.search(r'<figure id="f1-plot">.*?<img src="data:image/svg\+xml;base64,([^"]+)"', page, flags=re.S)[1]
    image = base64.b64decode(uri).decode()
    assert evil not in image and "&lt;script&gt;alert(1)&lt;/script&gt; (lr 0.05)" in image
    ET.fromstring(image)  # well-formed


def test_unreadable_runs_and_skipped_checks_are_listed_once(analysis):
    document = dataclasses.replace(
        analysis.document,
        unreadable=[{"path": "logs/bad", "error": "logs/bad/steps.csv:7: loss is 'abc', not a number"}],
        skipped=[{"check": "grad_norm_outliers", "reason": "no grad_norm logged", "count": 9,
                  "targets": ["a/1", "a/2", "a/3", "a/4", "a/5"]}],
    )
    page = html.render(Analysis(document, studies=[]))  # tables only: no series, no figures
    assert 'id="unreadable"' in page and "logs/bad/steps.csv:7: loss is &#39;abc&#39;, not a number" in page
    assert page.count("no grad_norm logged") == 1 and "9: a/1, a/2, a/3, a/4, a/5, &hellip;" in page
    assert "<b>1</b> unreadable" in page


def test_missing_or_malformed_evidence_costs_only_that_mark(analysis):
    studies = [dict(s, lrs=[{"lr": "x"}, {"score": 1.0}, 5], swarm={"cells": "none"}, best_lr="?",
                    unstable_lrs=[None, "a"]) for s in analysis.document.studies]
    findings = [dataclasses.replace(f, evidence={"periods": "everywhere", "threshold": "high", "window": [1],
                                                 "outlier_steps": ["a"], "onset_step": None, "lr_min": -1})
                for f in analysis.document.findings]
    page = html.render(Analysis(dataclasses.replace(analysis.document, studies=studies, findings=findings),
                                analysis.studies))
    ids = figure_ids(page)
    assert "s3-axis" not in ids and "s2-swarm" not in ids  # nothing to draw them from
    assert {"s3-sweep", "s3-range-range", "f1-plot", "f2-plot"} <= set(ids)
    assert "could not be drawn" not in page


def test_a_figure_that_fails_costs_that_figure_and_says_so(analysis, monkeypatch):
    def broken(*args):
        raise ValueError("bad data")

    monkeypatch.setattr(figures, "hyper_axis", broken)
    sweep = [study for study in analysis.studies if study.name == "sweep"]
    page = html.render(Analysis(analysis.document, sweep))
    assert "The hyperparameter-axis plot could not be drawn (ValueError: bad data)" in page
    assert "s1-sweep" in figure_ids(page)


def test_the_report_renders_again_from_the_saved_findings_json(analysis, page, tmp_path):
    path = tmp_path / "findings.json"
    analysis.document.write_json(path)
    again = FindingsDocument.from_dict(json.loads(path.read_text()))
    second = html.render(Analysis(again, analysis.studies))
    assert figure_ids(page) == figure_ids(second)
    assert strip_images(page) == strip_images(second)


def strip_images(text: str) -> str:
    return re.sub(r'src="data:[^"]*"', "", text)


def test_decimation_keeps_one_step_spikes_and_drops_non_finite():
    x = np.arange(1_000_000)
    y = np.random.default_rng(0).normal(1.0, 0.01, x.size)
    y[123_457] = 50.0
    y[654_321] = -7.0
    y[200_000:200_500] = np.nan
    y[900_000] = np.inf
    xs, ys = figures.decimate(x, y)
    assert len(xs) <= figures.MAX_POINTS
    assert 123_457 in xs and 654_321 in xs
    assert np.isfinite(ys).all() and np.all(np.diff(xs) > 0)
    assert ys.max() == 50.0 and ys.min() == -7.0
    short = np.arange(10.0)
    assert figures.decimate(short, short)[0] is short


def test_decimation_keeps_the_limits_of_the_finite_values():
    """The loss axis is fitted to the decimated curves: they hold the finite values' min and max."""
    rng = np.random.default_rng(1)
    for n in (10, 1_601, 100_000, 100_003):
        y = rng.lognormal(0, 1, n)
        y[rng.integers(0, n, 3)] = [np.nan, np.inf, -np.inf]
        finite = y[np.isfinite(y)]
        _, kept = figures.decimate(np.arange(n), y)
        assert (kept.min(), kept.max()) == (finite.min(), finite.max())


def test_the_train_trend_at_the_evaluations_is_the_rolling_median_read_there():
    rng = np.random.default_rng(0)
    steps = np.arange(0, 20_000, 2)
    loss = 2 + rng.normal(0, 0.3, steps.size)
    run = Run("r", "s", source=".", steps=pd.DataFrame({"step": steps, "loss": loss}))
    evals = np.array([-5, 0, 1, 2, 777, 778, 10_001, 19_998, 19_999, 25_000])  # on train steps and between them
    trend = signal.smooth(loss, signal.window(len(loss), 0.02))
    assert np.array_equal(figures._trend_at(run, evals), np.interp(evals, steps, trend))


def test_snippets_are_yaml_a_user_can_paste():
    snippet = html.config_snippet
    assert snippet(Recommendation("warmup", "", {"warmup_steps": 100, "base_lr": 0.3})) == "warmup_steps: 100\nbase_lr: 0.3"
    assert snippet(Recommendation("clip", "", {"threshold": 1.5})) == "clip_norm: 1.5"
    assert snippet(Recommendation("momentum", "", {"value": 0.8})) == "momentum: 0.8"
    assert snippet(Recommendation("more_steps", "", {"value": 20000})) == "max_steps: 20000"
    assert snippet(Recommendation("lr", "", {"value": 1e-05})) == "lr: 1.0e-05"
    assert snippet(Recommendation("optimizer", "", {"value": "adam"})) == "optimizer: adam"
    assert snippet(Recommendation("optimizer", "", {"value": "no"})) == 'optimizer: "no"'
    assert snippet(Recommendation("schedule", "", {"value": "one cycle: 0.1"})) == 'schedule: "one cycle: 0.1"'
    assert snippet(Recommendation("lr", "only words")) is None
    assert snippet(Recommendation("lr", "", {"value": 0.063, "clip_threshold": 0.68})) == "lr: 0.063\nclip_norm: 0.68"
    nested = Recommendation("warmup", "", {
        "warmup_steps": [10, 30], "experiments": [{"warmup_steps": 10, "max_steps": 310},
                                                   {"warmup_steps": 30, "note": "a: b"}],
        "momentum": {"max": 0.95, "base": 0.85}})
    assert snippet(nested) == (
        "warmup_steps: [10, 30]\n"
        "experiments:\n"
        "  - warmup_steps: 10\n"
        "    max_steps: 310\n"
        "  - warmup_steps: 30\n"
        '    note: "a: b"\n'
        "momentum:\n"
        "  max: 0.95\n"
        "  base: 0.85"
    )
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(snippet(nested)) == {
        "warmup_steps": [10, 30], "momentum": {"max": 0.95, "base": 0.85},
        "experiments": [{"warmup_steps": 10, "max_steps": 310}, {"warmup_steps": 30, "note": "a: b"}]}
    assert yaml.safe_load(snippet(Recommendation("lr", "", {"value": 1e-05}))) == {"lr": 1e-05}


def big_analysis(runs: int, steps: int) -> Analysis:
    """``runs`` runs of ``steps`` steps each (a noisy decaying loss with spikes), with a finding per run."""
    rng = np.random.default_rng(1)
    step = np.arange(steps)
    members = []
    for i in range(runs):
        loss = 2.0 * np.exp(-step / (steps / 5)) + 0.1 + 0.02 * rng.standard_normal(steps) ** 2
        loss[rng.integers(0, steps, 20)] *= 30  # one-step spikes
        frame = pd.DataFrame({"step": step, "loss": loss, "grad_norm": 1 + rng.standard_normal(steps) ** 2,
                              "lr": 0.001 * (i + 1)})
        members.append(Run(name=f"run{i:03d}", study="big", source=None, steps=frame,
                           config={"lr": 0.001 * (i + 1), "seed": i}))
    study = Study("big", members)
    findings = [
        Finding(check="loss_spike", severity=Severity.WARNING, study="big", runs=(run.name,),
                steps=(steps // 2, steps // 2 + 500), title=f"{run.name}: loss spike", detail="x",
                evidence={"periods": {run.name: [[steps // 2, steps // 2 + 500]]}},
                recommendation=Recommendation("clip", "clip", {"threshold": 2.0}))
        for run in members
    ]
    document = FindingsDocument(
        root="big", studies=[{"study": "big", "best_lr": 0.05, "runs": [r.name for r in members],
                              "lrs": [{"lr": r.lr, "score": 0.1 + abs(r.lr - 0.05), "stable": True}
                                      for r in members]}],
        findings=findings, runs=[{"study": "big", "name": r.name, "role": "train", "status": "finished",
                                  "steps": steps, "lr": r.lr, "momentum": None, "notes": []} for r in members],
        generated="2026-11-22T03:00:00+00:00", tool_version="test")
    return Analysis(document, [study])


def test_a_100_run_100k_step_root_gives_at_most_3_mb():
    analysis = big_analysis(runs=100, steps=100_000)
    start = time.perf_counter()
    page = html.render(analysis)
    seconds = time.perf_counter() - start
    size = len(page.encode())
    print(f"100 runs x 100k steps: {size / 1e6:.2f} MB in {seconds:.1f} s")
    assert size <= 3_000_000
    assert page.count('id="f') >= 100  # every finding is listed and has its card ...
    assert len([i for i in figure_ids(page) if i.endswith("-plot")]) == html.MAX_FINDING_PLOTS  # ... the first plotted
    assert "only the first 12 findings get one" in page
    assert f"{figures.MAX_LINES} of 100 runs drawn" in page  # the sweep plot says it thinned its lines


def test_the_real_checks_render_on_real_runs(log_root):
    analysis = analyze(read_root(log_root))
    page = html.render(analysis)
    assert page.count('<article class="finding') >= len(analysis.document.findings)
    for finding in analysis.document.findings:
        assert html_text(finding.title) in page
    assert "could not be drawn" not in page


def test_handmade_fixture_matches_the_runs(analysis):
    """The fixture's findings describe what the tiny runs really did (so the plots show something)."""
    sweep = next(s for s in analysis.document.studies if s["study"] == "sweep")
    assert sweep["best_lr"] < max(entry["lr"] for entry in sweep["lrs"])
    assert sweep["unstable_lrs"] and min(sweep["unstable_lrs"]) > sweep["best_lr"]


def degenerate_runs() -> list[Run]:
    """Runs a plot must survive: empty, one step, all-inf, negative, constant, no lr, NaN grad norms."""
    def run(name, loss, **columns):
        steps = np.arange(len(loss))
        frame = pd.DataFrame({"step": steps, "loss": np.asarray(loss, dtype=float),
                              **{k: np.asarray(v, dtype=float) for k, v in columns.items()}})
        return Run(name=name, study="odd", source=None, steps=frame, config={"lr": columns.pop("cfg_lr", 0.1)})

    return [
        run("empty", []),
        run("one-step", [1.0], grad_norm=[0.5]),
        run("all-inf", [np.inf] * 50, grad_norm=[np.inf] * 50),
        run("negative", -np.linspace(1, 5, 300), grad_norm=np.full(300, np.nan)),
        run("constant", np.ones(300), grad_norm=np.ones(300)),
        Run(name="no-lr", study="odd", source=None,
            steps=pd.DataFrame({"step": np.arange(200), "loss": np.linspace(2, 1, 200),
                                "lr": np.zeros(200), "grad_norm": np.zeros(200)}), role="lr_range"),
    ]


def test_degenerate_runs_still_render_every_plot_they_can():
    runs = degenerate_runs()
    study = Study("odd", runs)
    findings = [
        Finding(check=check, severity=Severity.WARNING, study="odd", runs=(run.name,), steps=steps,
                title=f"{check} on {run.name}", detail="",
                evidence={"periods": {run.name: [[0, 5]]}, "threshold": 0.0, "onset_step": 3,
                          "recovery_step": 4, "outlier_steps": [0, 1, 10_000], "lr_min": 0.1})
        for run in runs
        for check, steps in (("loss_spike", (0, 5)), ("grad_norm_outliers", None), ("overfitting", (0, 0)))
    ]
    document = FindingsDocument(
        root="odd", studies=[{"study": "odd", "best_lr": 0.1, "runs": [r.name for r in runs],
                              "lrs": [{"lr": 0.1, "score": None}, {"lr": 0.2, "score": float("inf")}],
                              "swarm": {"cells": [{"momentum": 0.9, "lr": 0.1, "runs": ["empty"], "fit": 0},
                                                  {"momentum": 0.5, "lr": 0.1, "runs": ["one-step"]}]}}],
        findings=findings, runs=[], generated="", tool_version="test")
    page = html.render(Analysis(document, [study]))
    assert "could not be drawn" not in page, re.findall(r"could not be drawn \([^)]*\)", page)
    ids = set(figure_ids(page))
    assert {"s1-swarm", "f4-plot", "f10-plot", "f13-plot"} <= ids  # one-step, negative, constant
    assert "f1-plot" not in ids  # the empty run has nothing to show


def test_the_most_severe_findings_get_the_plots_whatever_their_study():
    analysis = big_analysis(runs=html.MAX_FINDING_PLOTS + 1, steps=2_000)
    study = analysis.studies[0]
    last = study.runs.pop()
    error = dataclasses.replace(analysis.document.findings.pop(), study="z-last", severity=Severity.ERROR,
                                title="the error")
    analysis.studies.append(Study("z-last", [last]))
    analysis.document.findings.insert(0, error)  # ranked first, in the last study
    page = html.render(analysis)
    card = re.search(r'<article class="finding error" id="f1">(.*?)</article>', page, flags=re.S)[1]
    assert 'id="f1-plot"' in card
    assert page.count("only the first 12 findings get one") == 1


def test_the_gap_plot_draws_the_checks_own_gap_curve_when_given():
    finding = Finding(check="overfitting", severity=Severity.WARNING, study="s", runs=("r",), title="", detail="",
                      evidence={"gap": [[0, 0.1], [10, 0.2], ["x", 1], [20, "nan"], [30, 0.5]]})
    steps, gap = figures._evidence_gap(finding)
    assert steps.tolist() == [0, 10, 30] and gap.tolist() == [0.1, 0.2, 0.5]
    malformed = dataclasses.replace(finding, evidence={"gap": "wide"})
    assert figures._evidence_gap(malformed) == (None, None) and figures._evidence_gap(None) == (None, None)
