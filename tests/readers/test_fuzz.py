"""Fuzzing every reader with hypothesis: any input gives a valid Run or one LogError line, never a traceback.

About 10,000 generated inputs in all (the ``EXAMPLES`` below), each written
to a file and read by the reader that claims it. ``derandomize`` keeps the
inputs the same from run to run, so CI is reproducible.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnose.errors import LogError
from diagnose.readers import csvlog, hf, lightning, rundir, tensorboard, textlog

EXAMPLES = {"hf": 2000, "hf_bytes": 2000, "lightning": 1200, "csv": 1000, "rundir": 1000, "text": 1300,
            "tensorboard": 2500}
assert sum(EXAMPLES.values()) >= 10_000


OUTCOMES: dict[tuple[str, str], int] = {}  # (reader, "run" | "error" | "not claimed") -> count


def fuzz(name: str):
    return settings(max_examples=EXAMPLES[name], deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(folder: Path, files: dict[str, bytes | None]) -> Path:
    """The files in place (None: absent); rewriting is cheaper than a new folder per example."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if data is None:
            (folder / name).unlink(missing_ok=True)
        else:
            (folder / name).write_bytes(data)
    return folder


def _check(reader, folder: Path) -> None:
    """The property: a LogError of one line that names a file below ``folder``, or a well-formed Run."""
    if not (reader.sniff(folder)):
        OUTCOMES[reader.__name__, "not claimed"] = OUTCOMES.get((reader.__name__, "not claimed"), 0) + 1
        return
    try:
        run = reader.read(folder, "fuzz")
    except LogError as error:
        OUTCOMES[reader.__name__, "error"] = OUTCOMES.get((reader.__name__, "error"), 0) + 1
        text = str(error)
        assert "\n" not in text and "\r" not in text, text
        assert text.startswith(str(folder)) and error.message.strip(), text
        return
    OUTCOMES[reader.__name__, "run"] = OUTCOMES.get((reader.__name__, "run"), 0) + 1
    steps = run.steps["step"].to_numpy()
    assert steps.dtype == np.int64 and (steps >= 0).all() and (np.diff(steps) > 0).all()
    assert run.steps["loss"].dtype == np.float64
    assert list(run.evals.columns[:3]) == ["step", "split", "loss"]


VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 10**12), st.text(max_size=4), st.just(10**30),
    st.booleans(), st.none(), st.lists(st.integers(0, 3), max_size=2), st.just({}),
)
HF_KEYS = st.sampled_from(["loss", "step", "step", "eval_loss", "learning_rate", "grad_norm", "eval_a_loss",
                           "eval_a_acc", "epoch", "train_runtime", "lr", "eval_accuracy", "momentum", "x"])
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 100))
GOOD_ENTRY = st.one_of(
    st.fixed_dictionaries({"step": st.integers(0, 30), "loss": NUMBERS},
                          optional={"grad_norm": NUMBERS, "learning_rate": NUMBERS, "epoch": NUMBERS}),
    st.fixed_dictionaries({"step": st.integers(0, 30)},
                          optional={"eval_loss": NUMBERS, "eval_a_loss": NUMBERS, "eval_b_acc": NUMBERS}),
)
ENTRY = st.one_of(GOOD_ENTRY, st.dictionaries(HF_KEYS, VALUES, max_size=6), VALUES)
STATE = st.one_of(
    st.fixed_dictionaries({"log_history": st.lists(GOOD_ENTRY, max_size=8)}),  # well-formed: reach assembly
    st.fixed_dictionaries({"log_history": st.lists(ENTRY, max_size=8)},
                          optional={"max_steps": VALUES, "global_step": VALUES, "train_batch_size": VALUES,
                                    "trial_params": st.dictionaries(st.sampled_from(["learning_rate", "seed"]), VALUES)}),
    st.dictionaries(st.sampled_from(["log_history", "global_step"]), VALUES),
    VALUES,
)


@fuzz("hf")
@given(state=STATE)
def test_fuzz_trainer_state(scratch, state):
    text = json.dumps(state, allow_nan=True, indent=1)
    _check(hf, _write(scratch / "hf", {"trainer_state.json": text.encode()}))


VALID_STATE = json.dumps({"global_step": 4, "log_history": [
    {"loss": 1.5, "grad_norm": 2.0, "learning_rate": 0.1, "epoch": 0.5, "step": 2},
    {"eval_loss": 1.2, "eval_a_loss": 1.1, "step": 2},
    {"loss": 1.0, "learning_rate": 0.05, "step": 4},
]}, indent=2).encode()


@fuzz("hf_bytes")
@given(cut=st.integers(0, len(VALID_STATE)), at=st.integers(0, len(VALID_STATE)), junk=st.binary(max_size=6))
def test_fuzz_trainer_state_bytes(scratch, cut, at, junk):
    data = (VALID_STATE[:at] + junk + VALID_STATE[at:])[:cut + len(junk)]
    _check(hf, _write(scratch / "hfb", {"trainer_state.json": data}))


CELLS = st.one_of(st.sampled_from(["", "0", "1", "2", "-1", "1.5", "nan", "inf", "-inf", "abc", "1e400", "1e-3",
                                   '"3"', '"a,b"', " 4 ", "0x10", "NaN"]),
                  st.text(alphabet="0123456789.,-e\"x \t", max_size=5))
COLUMNS = st.sampled_from(["step", "epoch", "train_loss", "train_loss_step", "train_loss_epoch", "val_loss",
                           "lr-Adam", "lr-Adam-momentum", "loss", "grad_norm", "val/acc", "x", "", "_step", "Step",
                           "run - train/loss", "run - train/loss__MIN", "eval_loss"])


NUMBER_CELLS = st.one_of(st.integers(0, 20).map(str), st.floats(allow_nan=True).map(repr), st.just(""))


@st.composite
def csv_text(draw) -> bytes:
    header = draw(st.lists(COLUMNS, min_size=1, max_size=5))
    if draw(st.booleans()):  # a log-shaped header with number-shaped cells, to reach past the parser
        header = ["step", draw(st.sampled_from(["loss", "train_loss", "train_loss_step"]))] + header[:2]
        cells = NUMBER_CELLS
    else:
        cells = CELLS
    width = st.integers(max(0, len(header) - 1), len(header) + 1)
    if cells is NUMBER_CELLS:
        width = st.just(len(header))
    rows = draw(st.lists(width.flatmap(lambda n: st.lists(cells, min_size=n, max_size=n)), max_size=6))
    lines = [",".join(header)] + [",".join(row) for row in rows]
    end = draw(st.sampled_from(["\n", "", "\r\n"]))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines) + end
    prefix = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff"]))
    return prefix + text.encode()


YAML = st.one_of(st.just(b"lr: 0.1\nmomentum: 0.9\n"), st.just(b"learning_rate: 1e-3\nbetas: [0.9, 0.99]\n"),
                 st.binary(max_size=20), st.text(alphabet="lr:0.1[]{}-!\n &*", max_size=20).map(str.encode),
                 st.just(b"a: !!python/object:argparse.Namespace {lr: 0.2}\n"))


@fuzz("lightning")
@given(metrics=csv_text(), hparams=st.one_of(st.none(), YAML))
def test_fuzz_lightning(scratch, metrics, hparams):
    _check(lightning, _write(scratch / "pl", {"metrics.csv": metrics, "hparams.yaml": hparams}))


@fuzz("csv")
@given(log=csv_text())
def test_fuzz_plain_csv(scratch, log):
    _check(csvlog, _write(scratch / "csv", {"log.csv": log}))


RUN_COLUMNS = st.sampled_from(["step", "loss", "grad_norm", "lr", "skipped", "update_norm", "phase", "split",
                               "accuracy", ""])
RUN_JSON = st.sampled_from([b'{"format": "diagnose.run/1"}', b'{"format": "diagnose.run/1", "status": "running"}',
                            b'{"format": "diagnose.run/1", "status": "finished", "config": {"lr": 0.1}}',
                            b'{"format": "diagnose.run/2"}', b'{"format": "diagnose.run/1", "name": 3}', b"[", b""])


@st.composite
def run_table(draw, lead: tuple[str, ...]) -> bytes:
    """A steps.csv (``lead``: step, loss) or evals.csv (step, split): the lead columns and a few others in any
    order, cells number-shaped (to reach past the parser: unsorted and repeated steps) or anything."""
    header = draw(st.permutations(list(lead) + draw(st.lists(RUN_COLUMNS, max_size=3))))
    cells = draw(st.sampled_from([NUMBER_CELLS, CELLS]))
    width = st.just(len(header)) if draw(st.booleans()) else st.integers(max(0, len(header) - 1), len(header) + 1)
    rows = draw(st.lists(width.flatmap(lambda n: st.lists(cells, min_size=n, max_size=n)), max_size=8))
    end = draw(st.sampled_from(["\n", "", "\r\n"]))
    return ("\n".join([",".join(header)] + [",".join(row) for row in rows]) + end).encode()


@fuzz("rundir")
@given(meta=RUN_JSON, steps=st.one_of(st.none(), run_table(("step", "loss"))),
       evals=st.one_of(st.none(), run_table(("step", "split"))))
def test_fuzz_run_directory(scratch, meta, steps, evals):
    _check(rundir, _write(scratch / "run", {"run.json": meta, "steps.csv": steps, "evals.csv": evals}))


TOKENS = st.one_of(
    st.builds(lambda k, sep, v: f"{k}{sep}{v}",
              st.sampled_from(["step", "s", "iter", "loss", "train_loss", "trl", "tel", "val_loss", "lr",
                               "grad_norm", "train_time", "x"]),
              st.sampled_from([":", "=", ": ", " = ", " "]),
              st.one_of(CELLS, st.sampled_from(["5/10", "12ms", "-3", "nanms", "1.5/2", "99999999999999999999"]))),
    st.text(max_size=6),
)


RECORD_LINE = st.builds(
    lambda step, loss, rest: f"step:{step} {loss} " + " ".join(rest),
    st.one_of(st.integers(0, 30).map(str), st.sampled_from(["1/10", "-1", "2.5", "x"])),
    st.builds("{}={}".format, st.sampled_from(["loss", "train_loss", "val_loss", "trl"]), CELLS),
    st.lists(TOKENS, max_size=3),
)


@fuzz("text")
@given(lines=st.lists(st.one_of(RECORD_LINE, st.lists(TOKENS, max_size=5).map(" ".join)), max_size=8),
       junk=st.binary(max_size=4))
def test_fuzz_text_log(scratch, lines, junk):
    data = "\n".join(lines).encode() + junk
    _check(textlog, _write(scratch / "txt", {"train.log": data}))


@pytest.fixture(scope="module")
def event_bytes(summary_writer_logs) -> bytes:
    [first] = (summary_writer_logs / "sweep" / "lr0.1").glob("*.a")
    return first.read_bytes()


@fuzz("tensorboard")
@given(data=st.data())
def test_fuzz_tensorboard(scratch, event_bytes, data):
    mode = data.draw(st.sampled_from(["cut", "flip", "insert", "random"]))
    raw = bytearray(event_bytes)
    if mode == "cut":
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    elif mode == "flip":
        for _ in range(data.draw(st.integers(1, 3))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    elif mode == "insert":
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        raw = bytearray(data.draw(st.binary(max_size=64)))
    _check(tensorboard, _write(scratch / "tb", {"events.out.tfevents.1.fuzz": bytes(raw)}))


def test_zz_fuzzing_reached_both_outcomes_of_every_reader():
    """Runs after the fuzz tests (file order): each reader's inputs were not all rejected, nor all accepted."""
    fuzzed = {name for name, _ in OUTCOMES}  # not the readers whose fuzz test was skipped (no torch to write logs)
    if not fuzzed:
        pytest.skip("the fuzz tests did not run in this session")
    for reader in (hf, lightning, csvlog, rundir, textlog, tensorboard):
        if reader.__name__ not in fuzzed:
            continue
        assert OUTCOMES.get((reader.__name__, "run"), 0) > 0, OUTCOMES
        assert OUTCOMES.get((reader.__name__, "error"), 0) > 0, OUTCOMES
