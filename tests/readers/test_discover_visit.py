"""discover lists a folder once and asks the readers only where one could claim it: the same folders, readers and
order as asking every reader of every folder; a walk split at any breadth-first frontier is the same walk."""

import json
import os
from pathlib import Path

import pytest

from diagnose.readers import READERS, csvlog, discover, frontier, textlog, walk
from diagnose.readers.keys import DEFAULT_KEYS, KeyMap


def asking_every_reader(root, keys=DEFAULT_KEYS):
    """The walk as it was: every reader sniffs every folder, os.walk's order."""
    found = []
    for folder, subfolders, _ in os.walk(root):
        reader = next((r for r in READERS if _sniff(r, folder, keys)), None)
        if reader is not None:
            found.append((folder, reader))
            subfolders.clear()
        else:
            subfolders[:] = sorted(name for name in subfolders
                                   if not name.startswith(".") and not os.path.islink(os.path.join(folder, name)))
    return found


def _sniff(reader, folder, keys):
    if reader in (csvlog, textlog):
        return reader.sniff(Path(folder), keys)
    return reader.sniff(Path(folder))


def _run(folder):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"format": "diagnose.run/1"}))
    (folder / "steps.csv").write_text("step,loss\n1,2.0\n")


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "logs"
    for study in ("b", "a", "c/nested"):
        for name in ("r2", "r1", "r10"):
            _run(root / study / name)
    _run(root / "c" / "r0")  # a run beside a study
    (root / "c" / "notes.txt").write_text("no run here\n")  # a file: the readers are asked, none claims it
    (root / "csv").mkdir()
    (root / "csv" / "log.csv").write_text("step,loss\n1,2.0\n2,1.5\n")
    (root / "text").mkdir()
    (root / "text" / "train.log").write_text("step 1 loss 2.0\nstep 2 loss 1.5\nstep 3 loss 1.2\n")
    (root / "custom").mkdir()
    (root / "custom" / "log.csv").write_text("iteration,objective\n1,2.0\n2,1.5\n")  # found with --loss-key only
    (root / "tb" / "inner").mkdir(parents=True)
    (root / "tb" / "events.out.tfevents.1.host").write_bytes(b"")
    (root / "hf" / "checkpoint-5").mkdir(parents=True)
    (root / "hf" / "checkpoint-5" / "trainer_state.json").write_text('{"log_history": []}')
    (root / "hf_not" / "checkpoint-5").mkdir(parents=True)  # a checkpoint folder without a state: not a run
    _run(root / "hf_not" / "checkpoint-5" / "inner")
    (root / "lightning" / "version_0").mkdir(parents=True)
    (root / "lightning" / "version_0" / "metrics.csv").write_text("step,train_loss\n0,2.0\n")
    (root / "linked_file").mkdir()
    (root / "linked_file" / "run.json").symlink_to(root / "a" / "r1" / "run.json")  # a link to a file counts
    (root / "broken").mkdir()
    (root / "broken" / "trainer_state.json").symlink_to(root / "nowhere.json")
    _run(root / "broken" / "r")
    (root / "fifo").mkdir()
    os.mkfifo(root / "fifo" / "metrics.csv")  # not a file: not a Lightning run
    _run(root / "fifo" / "r")
    _run(root / ".hidden" / "r")
    (root / "link").symlink_to(root / "a", target_is_directory=True)
    (root / "empty" / "deep" / "deeper").mkdir(parents=True)
    _run(root / "empty" / "deep" / "deeper" / "r")
    return root


@pytest.mark.parametrize("keys", [DEFAULT_KEYS, KeyMap(step="iteration", loss="objective")])
def test_the_same_folders_readers_and_order_as_asking_every_reader(root, keys):
    expected = asking_every_reader(root, keys)
    found = [(str(folder), reader) for folder, reader in discover(root, keys)]
    assert found == expected
    assert len(found) > 15 and any(str(folder).endswith("custom") for folder, _ in found) == (keys != DEFAULT_KEYS)


def test_a_run_root_is_its_own_run(root):
    assert [(str(f), r) for f, r in discover(root / "a" / "r1")] == asking_every_reader(root / "a" / "r1")


@pytest.mark.parametrize("wanted", [1, 2, 3, 5, 8, 13, 1000])
def test_a_walk_from_any_frontier_is_discover(root, wanted):
    start = frontier(root, DEFAULT_KEYS, wanted)
    assert walk(start) == discover(root)
    for cut in range(len(start) + 1):
        assert walk(start[:cut]) + walk(start[cut:]) == discover(root)
