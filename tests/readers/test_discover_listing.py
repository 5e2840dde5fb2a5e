"""discover finds each reader's runs, in os.walk's order, hidden folders left out."""

import json

from diagnose.readers import csvlog, discover, rundir, tensorboard, textlog


def _run(folder):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"format": "diagnose.run/1"}))
    (folder / "steps.csv").write_text("step,loss\n1,2.0\n")


def test_every_reader_finds_its_runs_as_before(tmp_path):
    _run(tmp_path / "sweep" / "a")
    _run(tmp_path / "sweep" / "b")
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "log.csv").write_text("step,loss\n1,2.0\n2,1.5\n")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train.log").write_text("step 1 loss 2.0\nstep 2 loss 1.5\nstep 3 loss 1.2\n")
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.out.tfevents.1.host").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    _run(tmp_path / ".hidden" / "c")
    found = [(folder.relative_to(tmp_path).as_posix(), reader) for folder, reader in discover(tmp_path)]
    assert found == [("csv", csvlog), ("sweep/a", rundir), ("sweep/b", rundir), ("tb", tensorboard), ("text", textlog)]

