"""The diagnose program ends itself once a command's output is out (cli._exit_now): same output, same exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from diagnose.cli import main

HEALTHY = "step,loss,grad_norm\n" + "".join(f"{i},{1 / (1 + i / 20)!r},1.0\n" for i in range(100))
DIVERGED = "step,loss\n" + "".join(f"{i},{'nan' if i > 50 else 1.0}\n" for i in range(100))
# As the console script calls it; and main.main, which does not end the process itself, as before.
PROGRAM = "import sys; from diagnose.cli import main; main(sys.argv[1:], prog_name='diagnose')"
LIBRARY = "import sys; from diagnose.cli import main; main.main(sys.argv[1:], prog_name='diagnose')"


@pytest.fixture
def logs(tmp_path, make_run):
    make_run(tmp_path / "logs" / "sweep" / "lr0.1", steps=HEALTHY, config={"lr": 0.1, "batch_size": 32})
    make_run(tmp_path / "logs" / "sweep" / "lr1.0", steps=DIVERGED, config={"lr": 1.0, "batch_size": 256})
    (tmp_path / "logs" / "sweep" / "broken").mkdir()
    (tmp_path / "logs" / "sweep" / "broken" / "steps.csv").write_text("step,loss\n0,1.0\n1,abc\n")
    return tmp_path / "logs"


def run(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args", [
    ["check"], ["check", "--fail-on", "info"], ["check", "--strict"], ["check", "--fail-on", "warning", "--strict"],
    ["report", "-o", "{tmp}/r.html"],
])
def test_the_program_prints_and_exits_as_click_would(logs, tmp_path, args):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    program = run(PROGRAM, args[0], logs, *args[1:])
    library = run(LIBRARY, args[0], logs, *args[1:])
    runner = stdout_apart().invoke(main, [args[0], str(logs), *args[1:]])
    assert program.returncode == library.returncode == runner.exit_code, program.stderr
    assert program.stdout == library.stdout == runner.stdout and program.stdout.strip()
    assert messages(program.stderr) == messages(library.stderr)


def stdout_apart() -> CliRunner:
    """A runner whose ``stdout`` holds no stderr: click 8.2's only way, an option before it (pyproject allows 8.1)."""
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2: no such option
        return CliRunner()


def messages(stderr: str) -> list[str]:
    """The lines of stderr but the progress lines, which a read taking over a second prints."""
    return [line for line in stderr.splitlines() if not line.startswith("read ")]


def test_main_returns_to_its_caller_outside_standalone_mode(logs, tmp_path):
    done = run(LIBRARY.replace("main.main(sys.argv[1:], prog_name='diagnose')",
                               "main(sys.argv[1:], standalone_mode=False); print('returned')"),
               "report", logs, "-o", tmp_path / "r.html")
    assert done.returncode == 0 and done.stdout.endswith("returned\n"), done.stderr
