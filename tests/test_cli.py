"""The diagnose command end to end: files written, exit codes, messages."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest
from click.testing import CliRunner

from diagnose import cache
from diagnose.cli import main
from diagnose.model import Run
from diagnose.render import drawing

HEALTHY = "step,loss,grad_norm\n" + "".join(f"{i},{1 / (1 + i / 20)!r},1.0\n" for i in range(100))
DIVERGED = "step,loss\n" + "".join(f"{i},{'nan' if i > 50 else 1.0}\n" for i in range(100))
NAN_ONCE = "step,loss\n" + "".join(f"{i},{'nan' if i == 20 else 1.0}\n" for i in range(100))


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def logs(tmp_path, make_run):
    # Two runs of one model at different batch sizes (not an lr sweep): the diverged one is an error.
    make_run(tmp_path / "logs" / "sweep" / "lr0.1", steps=HEALTHY, config={"lr": 0.1, "batch_size": 32})
    make_run(tmp_path / "logs" / "sweep" / "lr1.0", steps=DIVERGED, config={"lr": 1.0, "batch_size": 256})
    return tmp_path / "logs"


def findings_schema():
    return json.loads(resources.files("diagnose.schemas").joinpath("findings.schema.json").read_text())


def test_report_writes_html_and_a_findings_document_that_follows_the_contract(logs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("report", logs, "--json", "out/findings.json")
    assert result.exit_code == 0, result.output
    assert "wrote reports/logs.html" in result.output
    html = (tmp_path / "reports" / "logs.html").read_text()
    assert "lr1.0: diverged at step 51" in html
    document = json.loads((tmp_path / "out" / "findings.json").read_text())
    jsonschema.validate(document, findings_schema())
    assert document["format"] == "diagnose.findings/1"
    assert [f["check"] for f in document["findings"]] == ["divergence"]
    assert document["findings"][0]["runs"] == ["lr1.0"]
    assert document["studies"][0]["runs"] == ["lr0.1", "lr1.0"]


def test_report_goes_where_asked(logs, tmp_path):
    result = invoke("report", logs, "-o", tmp_path / "x" / "r.html")
    assert result.exit_code == 0 and (tmp_path / "x" / "r.html").is_file()


def test_check_exits_1_on_an_error_finding_and_0_on_a_healthy_root(logs, tmp_path, make_run):
    assert invoke("check", logs).exit_code == 1
    make_run(tmp_path / "ok" / "a", steps=HEALTHY)
    result = invoke("check", tmp_path / "ok")
    assert result.exit_code == 0, result.output
    assert "healthy: 0 findings in 1 runs" in result.output


def test_fail_on_sets_the_bar(tmp_path, make_run):
    make_run(tmp_path / "w" / "a", steps=NAN_ONCE)
    assert invoke("check", tmp_path / "w").exit_code == 0
    assert invoke("check", tmp_path / "w", "--fail-on", "warning").exit_code == 1
    assert invoke("check", tmp_path / "w", "--fail-on", "info").exit_code == 1


def test_check_exits_2_when_nothing_can_be_read(tmp_path, make_run):
    (tmp_path / "empty").mkdir()
    result = invoke("check", tmp_path / "empty")
    assert result.exit_code == 2 and "no readable run" in result.output
    make_run(tmp_path / "bad" / "a", steps="step,loss\n0,x\n")
    result = invoke("check", tmp_path / "bad")
    assert result.exit_code == 2
    assert f"unreadable: {tmp_path}/bad/a/steps.csv:2: column 'loss': 'x' is not a number" in result.output


def test_one_unreadable_run_fails_check_only_when_strict(tmp_path, make_run):
    make_run(tmp_path / "l" / "good", steps=HEALTHY)
    make_run(tmp_path / "l" / "bad", steps="")
    assert invoke("check", tmp_path / "l").exit_code == 0
    assert invoke("check", tmp_path / "l", "--strict").exit_code == 2
    out = tmp_path / "f.json"
    invoke("check", tmp_path / "l", "--json", out)
    document = json.loads(out.read_text())
    jsonschema.validate(document, findings_schema())
    assert document["unreadable"] == [
        {"path": f"{tmp_path}/l/bad/steps.csv", "error": f"{tmp_path}/l/bad/steps.csv:1: file is empty: expected a header row naming step, loss"}
    ]


def test_report_lists_unreadable_runs(tmp_path, make_run):
    make_run(tmp_path / "l" / "good", steps=HEALTHY)
    make_run(tmp_path / "l" / "bad", steps="step,loss\n0,1\n1,2,3\n")
    result = invoke("report", tmp_path / "l", "-o", tmp_path / "r.html")
    assert result.exit_code == 0
    html = (tmp_path / "r.html").read_text()
    assert "steps.csv:3: expected 2 fields (step,loss), found 3" in html


def test_report_on_a_root_without_runs_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("report", tmp_path / "empty")
    assert result.exit_code == 2 and "no readable run" in result.output


def test_a_missing_log_root_is_a_usage_error(tmp_path):
    result = invoke("check", tmp_path / "nope")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_runs_lists_what_was_found(logs):
    result = invoke("runs", logs)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["STUDY", "RUN", "ROLE", "STEPS", "STATUS", "FORMAT", "COLUMNS"]
    assert lines[1].split() == ["sweep", "lr0.1", "train", "100", "-", "diagnose.run/1", "loss,grad_norm"]


def test_explain_prints_a_checks_documentation(tmp_path):
    result = invoke("explain", "divergence")
    assert result.exit_code == 0
    for section in ("Detects:", "Why:", "Algorithm:", "Example:", "Recommends:", "Thresholds"):
        assert section in result.output
    assert "divergence" in invoke("explain").output
    assert invoke("explain", "nope").exit_code == 2


def test_set_tunes_a_threshold_and_rejects_unknown_ones(logs):
    assert invoke("check", logs, "--set", "divergence.start_factor=100").exit_code == 1
    result = invoke("check", logs, "--set", "divergence.nope=1")
    assert result.exit_code == 2 and "divergence has no threshold 'nope'" in result.output
    assert invoke("check", logs, "--set", "garbage").exit_code == 2


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("diagnose, version ")


def test_reading_and_reporting_never_import_torch(logs, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from diagnose.cli import main\n"
        f"main(['report', {str(logs)!r}, '-o', {str(tmp_path / 'r.html')!r}], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_checks_documentation_page_is_generated_from_the_registry():
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "checks.md"
    result = invoke("explain", "--markdown")
    assert result.exit_code == 0
    assert page.read_text() == result.output, "docs/checks.md is stale: run `diagnose explain --markdown > docs/checks.md`"


def test_a_warm_check_reads_no_run(logs, monkeypatch):
    reads = []
    original = cache._read_table
    monkeypatch.setattr(cache, "_read_table",
                        lambda entry, source, name: reads.append((source[1], name)) or original(entry, source, name))
    cold = invoke("check", logs)
    warm = invoke("check", logs)
    assert (warm.exit_code, warm.output) == (cold.exit_code, cold.output) == (1, cold.output)
    assert reads == []  # the runs' and the study's findings came from the cache


def test_a_warm_report_writes_the_same_files(logs, tmp_path, monkeypatch):
    cold = invoke("report", logs, "-o", tmp_path / "cold.html", "--json", tmp_path / "cold.json")
    figures = sorted((cache.default_directory() / "figures").iterdir())
    assert cold.exit_code == 0 and figures
    # Nothing changed: the warm report reads no run's table and draws (imports the drawing code for) nothing.
    tables, lazy_table = [], Run.__getattr__

    def reading(run, name):
        tables.append(f"{run.name}.{name}")
        return lazy_table(run, name)

    monkeypatch.setattr(Run, "__getattr__", reading)
    monkeypatch.setattr(drawing, "_figures", lambda: pytest.fail("a warm report drew a figure"))
    warm = invoke("report", logs, "-o", tmp_path / "warm.html", "--json", tmp_path / "warm.json")
    assert warm.exit_code == 0 and warm.output == cold.output.replace("cold.", "warm.")
    assert not tables, tables
    assert sorted((cache.default_directory() / "figures").iterdir()) == figures  # none drawn again
    documents = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("cold", "warm")]
    assert [{**d, "generated": None} for d in documents][0] == {**documents[1], "generated": None}
    pages = [(tmp_path / f"{name}.html").read_text().replace(document["generated"].replace("T", " ")[:19], "")
             for name, document in zip(("cold", "warm"), documents)]
    assert pages[0] == pages[1]


def test_no_cache_keeps_no_figures(logs, tmp_path):
    assert invoke("report", logs, "-o", tmp_path / "r.html", "--no-cache").exit_code == 0
    assert not (cache.default_directory() / "figures").exists()


@pytest.fixture
def scratch_used(tmp_path, monkeypatch):
    """A private temporary directory, and worker processes that hand back every run through its scratch entries."""
    import tempfile

    from diagnose import pipeline

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(pipeline, "SCRATCH_MIN_ROWS", 0)
    return temporary


def test_no_cache_hands_runs_back_through_a_scratch_directory_it_removes(logs, tmp_path, scratch_used, monkeypatch):
    from diagnose.render import html

    seen = []
    write = html.write

    def drawing_from_the_scratch(analysis, *args, **kwargs):
        seen.extend(sorted(p.name for p in scratch_used.glob("diagnose-*/*/*.run")))
        runs = [run for study in analysis.studies for run in study.runs]
        # the workers sent no table: each is read from its scratch entry when first used
        assert all(str(scratch_used) in str(run._load_table.args[0]) for run in runs)
        return write(analysis, *args, **kwargs)

    cached = invoke("report", logs, "-o", tmp_path / "cached.html", "--json", tmp_path / "cached.json")
    monkeypatch.setattr(html, "write", drawing_from_the_scratch)
    result = invoke("report", logs, "-o", tmp_path / "r.html", "--no-cache", "--json", tmp_path / "r.json")
    assert result.exit_code == cached.exit_code == 0 and len(seen) == 2
    documents = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("cached", "r")]
    assert {**documents[0], "generated": None} == {**documents[1], "generated": None}
    check = invoke("check", logs, "--no-cache")
    assert check.exit_code == 1 and check.output == invoke("check", logs).output
    assert not list(scratch_used.iterdir())
    assert len(list(cache.default_directory().glob("*/*.run"))) == 2  # only the cached report's


def test_no_cache_removes_its_scratch_directory_when_the_command_fails(logs, tmp_path, scratch_used, monkeypatch):
    from diagnose.render import html

    def failing(analysis, *args, **kwargs):
        assert list(scratch_used.glob("diagnose-*/*/*.run"))
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(html, "write", failing)
    result = invoke("report", logs, "-o", tmp_path / "r.html", "--no-cache")
    assert isinstance(result.exception, RuntimeError)
    assert not list(scratch_used.iterdir()) and not list(cache.default_directory().iterdir())


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_no_cache_removes_its_scratch_directory_on_ctrl_c_or_sigterm(signum, logs, tmp_path, scratch_used):
    import os
    import signal
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from diagnose import cli, pipeline\n"
        "from diagnose.render import html\n"
        "pipeline.PARALLEL_MIN_BYTES = pipeline.SCRATCH_MIN_ROWS = 0\n"
        "html.write = lambda *args, **kwargs: print('drawing', flush=True) or time.sleep(60)\n"
        "cli.main(sys.argv[1:])\n"
    )
    command = [sys.executable, "-c", script, "report", str(logs), "-o", str(tmp_path / "r.html"), "--no-cache"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "TMPDIR": str(scratch_used)}) as process:
        assert process.stdout.readline() == "drawing\n"
        assert list(scratch_used.glob("diagnose-*/*/*.run"))
        process.send_signal(getattr(signal, signum))
        process.wait(timeout=30)
    assert process.returncode == (1 if signum == "SIGINT" else 128 + signal.SIGTERM)  # click's "Aborted!" for Ctrl-C
    assert not list(scratch_used.iterdir()) and not list(cache.default_directory().iterdir())


def test_the_collector_is_back_on_after_an_analysis_whatever_its_end(logs, monkeypatch):
    """``_analyze`` turns the cyclic collector off while it builds what lives to the end (see cli._analyze)."""
    import gc

    from diagnose import cli
    from diagnose.errors import LogError

    assert invoke("check", logs).exit_code == 1 and gc.isenabled()

    def unreadable(path, *args, **kwargs):
        assert not gc.isenabled()
        raise LogError(path, "changed while being analyzed")

    monkeypatch.setattr(cli, "analyze_root", unreadable)
    result = invoke("check", logs)
    assert result.exit_code == 2 and "changed while being analyzed" in result.output
    assert gc.isenabled()
