"""The key options of `diagnose runs`, `check` and `report`, and what `runs` shows was understood."""

from __future__ import annotations

from click.testing import CliRunner

from diagnose.cli import main

LOG = "iteration,objective,gnorm_total,heldout\n" + "".join(
    f"{i},{3 - i / 50:.4f},{1 + (i % 3) / 10:.2f},{'' if i % 10 else 3 - i / 60}\n" for i in range(100)
)


def _root(tmp_path):
    (tmp_path / "logs" / "run1").mkdir(parents=True)
    (tmp_path / "logs" / "run1" / "log.csv").write_text(LOG)
    return str(tmp_path / "logs")


def test_runs_finds_nothing_without_keys_and_the_run_with_them(tmp_path):
    root = _root(tmp_path)
    assert CliRunner().invoke(main, ["runs", root]).exit_code == 2
    result = CliRunner().invoke(main, ["runs", root, "--loss-key", "objective", "--grad-norm-key", "gnorm_total",
                                       "--valid-key", "heldout"])
    assert result.exit_code == 0, result.output
    [header, row] = [line for line in result.output.splitlines() if line.strip() and not line.startswith("read ")]
    assert header.split()[:7] == ["STUDY", "RUN", "ROLE", "STEPS", "STATUS", "FORMAT", "COLUMNS"]
    assert row.split() == ["logs", "run1", "train", "100", "-", "csv",
                           "loss<-objective,grad_norm<-gnorm_total,valid:loss<-heldout"]


def test_check_and_report_take_the_same_keys(tmp_path):
    root = _root(tmp_path)
    keys = ["--loss-key", "objective", "--step-key", "iteration", "--no-cache"]
    result = CliRunner().invoke(main, ["check", root, *keys])
    assert result.exit_code in (0, 1), result.output
    assert "in 1 runs" in result.output
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", root, "-o", str(out), *keys])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0
