"""The probe's API on a plain loop: files, norm, lr/momentum, clipping, statuses, round trip through the reader."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from diagnose.probe import Probe
from diagnose.readers.rundir import read

from probe_helpers import tiny_problem


def train(probe, steps=30, lr=0.1, clip=None, optimizer="sgd", eval_every=10, explode_at=None):
    """Train the tiny MLP; return the reference norms from clip_grad_norm_ (before clipping)."""
    model, x, y = tiny_problem()
    opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=lr, betas=(0.8, 0.99)))
    reference = []
    for step in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        if explode_at is not None and step >= explode_at:
            loss = loss * float("nan")
        loss.backward()
        if clip is None:
            probe.step(loss, opt)
            reference.append(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item())
        else:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            probe.step(loss, opt, grad_norm=norm, clip_norm=clip)
            reference.append(norm.item())
        opt.step()
        opt.zero_grad()
        if eval_every and step % eval_every == 0:
            probe.eval("valid", loss=loss.detach() * 1.5, accuracy=0.25)
    return reference


def test_plain_loop_writes_a_run_the_reader_reads(tmp_path):
    probe = Probe(tmp_path, study="sweep", name="lr0.1-s0",
                  config={"lr": 0.1, "momentum": 0.9, "seed": 0, "max_steps": 30}, flush_every=7)
    folder = tmp_path / "sweep" / "lr0.1-s0"
    assert json.loads((folder / "run.json").read_text())["status"] == "running"
    assert (folder / "steps.csv").read_text() == "step,loss,grad_norm,lr,momentum,time\n"
    with probe:
        reference = train(probe)
    probe.close()  # idempotent

    run = read(folder, "ignored")
    assert (run.name, run.study, run.role, run.status) == ("lr0.1-s0", "sweep", "train", "finished")
    assert run.config == {"lr": 0.1, "momentum": 0.9, "seed": 0, "max_steps": 30}
    steps = run.steps
    assert steps["step"].tolist() == list(range(30))
    np.testing.assert_allclose(steps["grad_norm"], reference, rtol=1e-6)
    assert (steps["lr"] == 0.1).all() and (steps["momentum"] == 0.9).all()
    assert steps["time"].is_monotonic_increasing
    assert "clip_norm" not in steps.columns and "skipped" not in steps.columns
    assert run.evals["step"].tolist() == [0, 10, 20]
    assert run.evals["split"].tolist() == ["valid"] * 3
    assert (run.evals["accuracy"] == 0.25).all()
    assert run.notes == []


def test_adam_beta1_is_the_momentum_and_user_steps_are_kept(tmp_path):
    model, x, y = tiny_problem()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99))
    with Probe(tmp_path, "s", "adam") as probe:
        for step in (100, 102, 104):
            torch.nn.functional.mse_loss(model(x), y).backward()
            probe.step(torch.nn.functional.mse_loss(model(x), y), opt, step=step)
            opt.step()
            opt.zero_grad()
        probe.eval("valid", 0.5)
    run = read(tmp_path / "s" / "adam", "s")
    assert run.steps["step"].tolist() == [100, 102, 104]
    assert (run.steps["momentum"] == 0.8).all() and (run.steps["lr"] == 0.01).all()
    assert run.evals["step"].tolist() == [104]


def test_clipping_logs_the_unclipped_norm_threshold_and_clipped(tmp_path):
    with Probe(tmp_path, "s", "clip", config={"clip_norm": 0.5}, flush_every=4) as probe:
        reference = train(probe, steps=20, clip=0.5)
    steps = read(tmp_path / "s" / "clip", "s").steps
    np.testing.assert_allclose(steps["grad_norm"], reference, rtol=1e-6)
    assert (steps["clip_norm"] == 0.5).all()
    assert steps["clipped"].tolist() == [float(n > 0.5) for n in reference]
    assert 0 < steps["clipped"].sum() < 20  # both kinds of update occur in this run


def test_clip_columns_appear_when_clipping_starts_after_the_first_rows(tmp_path):
    model, x, y = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(tmp_path, "s", "late", flush_every=2) as probe:
        for step in range(6):
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            if step < 3:
                probe.step(loss, opt)
            else:
                probe.step(loss, opt, grad_norm=torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1),
                           clip_norm=0.1)
            opt.step()
            opt.zero_grad()
    steps = read(tmp_path / "s" / "late", "s").steps
    assert steps["clip_norm"].isna().tolist() == [True] * 3 + [False] * 3
    assert steps["clipped"].iloc[3:].tolist() == [1.0, 1.0, 1.0]


def test_exception_marks_crashed_and_is_reraised(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with Probe(tmp_path, "s", "boom", flush_every=3) as probe:
            train(probe, steps=5)
            1 / 0
    run = read(tmp_path / "s" / "boom", "s")
    assert run.status == "crashed" and len(run.steps) == 5


def test_nan_loss_marks_diverged(tmp_path):
    with Probe(tmp_path, "s", "nan", flush_every=4) as probe:
        train(probe, steps=12, explode_at=8)
    run = read(tmp_path / "s" / "nan", "s")
    assert run.status == "diverged"
    assert math.isnan(run.steps["loss"].iloc[-1]) or 11 in run.nan_steps.get("loss", [])


def test_extra_columns_match_an_independent_computation(tmp_path):
    model, x, y = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    expected = {"param_norm": [], "update_norm": [], "grad_norm:0": [], "grad_norm:2": []}
    with Probe(tmp_path, "s", "extras", model=model, flush_every=3,
               extra=("param_norm", "update_norm", "layer_grad_norms")) as probe:
        for _ in range(7):
            torch.nn.functional.mse_loss(model(x), y).backward()
            before = [p.detach().clone() for p in model.parameters()]
            expected["param_norm"].append(torch.cat([p.flatten() for p in before]).norm().item())
            for layer in ("0", "2"):
                grads = [p.grad.flatten() for p in model.get_submodule(layer).parameters()]
                expected["grad_norm:" + layer].append(torch.cat(grads).norm().item())
            probe.step(torch.nn.functional.mse_loss(model(x), y), opt)
            opt.step()
            opt.zero_grad()
            delta = [p.detach() - b for p, b in zip(model.parameters(), before)]
            expected["update_norm"].append(torch.cat([d.flatten() for d in delta]).norm().item())
    steps = read(tmp_path / "s" / "extras", "s").steps
    for column, values in expected.items():
        np.testing.assert_allclose(steps[column], values, rtol=1e-5, err_msg=column)


def test_no_extra_columns_by_default(tmp_path):
    with Probe(tmp_path, "s", "plain") as probe:
        train(probe, steps=3, eval_every=0)
    header = (tmp_path / "s" / "plain" / "steps.csv").read_text().splitlines()[0]
    assert header == "step,loss,grad_norm,lr,momentum,time"


def test_resume_continues_the_run_after_a_crash(tmp_path):
    first = Probe(tmp_path, "s", "resumed", config={"lr": 0.1, "seed": 3}, flush_every=4)
    train(first, steps=10, eval_every=5)
    first.close("crashed")
    steps_file = tmp_path / "s" / "resumed" / "steps.csv"
    with open(steps_file, "a") as stream:
        stream.write("10,0.5")  # a row cut short by a kill
    # Restart from a checkpoint taken at step 8: steps 8 and 9 are logged again.
    with Probe(tmp_path, "s", "resumed", config={"lr": 0.1}, resume=True, first_step=8, flush_every=4) as probe:
        for value in (7.0, 7.5, 8.0, 8.5):
            probe.step(torch.tensor(value))
        probe.eval("valid", loss=1.0)
    run = read(tmp_path / "s" / "resumed", "s")
    assert run.status == "finished" and run.config == {"lr": 0.1, "seed": 3}
    assert run.steps["step"].tolist() == list(range(12))
    assert run.steps["loss"].tolist()[8:] == [7.0, 7.5, 8.0, 8.5]
    assert run.evals["step"].tolist() == [0, 5, 11]
    assert any("logged more than once" in note for note in run.notes)


def test_resume_without_first_step_numbers_on_from_the_last_row(tmp_path):
    with Probe(tmp_path, "s", "again") as probe:
        for _ in range(3):
            probe.step(torch.tensor(1.0))
    with Probe(tmp_path, "s", "again", resume=True) as probe:
        probe.step(torch.tensor(2.0))
    assert read(tmp_path / "s" / "again", "s").steps["step"].tolist() == [0, 1, 2, 3]


def test_misuse_is_refused_at_once(tmp_path):
    with pytest.raises(ValueError, match="study and name"):
        Probe(tmp_path, "", "x")
    with pytest.raises(ValueError, match="stop_on"):
        Probe(tmp_path, "s", "x", stop_on="nan")
    with pytest.raises(ValueError, match="extra"):
        Probe(tmp_path, "s", "x", extra="grad_norms")
    probe = Probe(tmp_path, "s", "x")
    with pytest.raises(ValueError, match="status must be one of"):
        probe.close("done")
    probe.close("crashed")
    assert read(tmp_path / "s" / "x", "s").status == "crashed"


@pytest.mark.parametrize("optimizer", ["sgd", "adam-tensor-lr"])
def test_lr_and_momentum_follow_a_scheduler_step_by_step(tmp_path, optimizer):
    # OneCycleLR changes the lr and cycles the momentum (SGD momentum, Adam beta1) at every step;
    # a tensor lr is changed in place, so each step must keep its own value.
    model, x, y = tiny_problem()
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01), betas=(0.9, 0.99))
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=20)
    lrs, momenta = [], []
    with Probe(tmp_path, "s", optimizer, flush_every=6) as probe:
        for step in range(20):
            torch.nn.functional.mse_loss(model(x), y).backward()
            group = opt.param_groups[0]
            lrs.append(float(group["lr"]))
            momenta.append(group["momentum"] if optimizer == "sgd" else group["betas"][0])
            probe.step(torch.tensor(1.0), opt)
            opt.step()
            opt.zero_grad()
            schedule.step()
    steps = read(tmp_path / "s" / optimizer, "s").steps
    assert len(set(lrs)) > 10 and len(set(momenta)) > 10  # both really changed
    np.testing.assert_allclose(steps["lr"], lrs, rtol=1e-6)
    np.testing.assert_allclose(steps["momentum"], momenta, rtol=1e-6)


def test_a_parameter_group_added_later_counts_in_the_norm(tmp_path):
    model, x, y = tiny_problem()
    opt = torch.optim.SGD(model[0].parameters(), lr=0.01)
    reference = []
    with Probe(tmp_path, "s", "groups") as probe:
        for step in range(4):
            if step == 2:
                opt.add_param_group({"params": model[2].parameters()})
            torch.nn.functional.mse_loss(model(x), y).backward()
            probe.step(torch.tensor(1.0), opt)
            reference.append(torch.nn.utils.get_total_norm(
                [p.grad for group in opt.param_groups for p in group["params"]]).item())
            opt.step()
            opt.zero_grad()
    np.testing.assert_allclose(read(tmp_path / "s" / "groups", "s").steps["grad_norm"], reference, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_the_loss_and_norm_are_logged_as_measured_in_any_dtype(tmp_path, dtype):
    # Tensor losses, and at step 7 a loss given as a number, in windows of 4 steps.
    model, x, y = tiny_problem()
    model, x, y = model.to(dtype), x.to(dtype), y.to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses, norms = [], []
    with Probe(tmp_path, "s", "dtypes", flush_every=4) as probe:
        for step in range(13):
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            losses.append(loss.item())
            norms.append(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item())
            probe.step(loss.item() if step == 7 else loss, opt)
            opt.step()
            opt.zero_grad()
    steps = read(tmp_path / "s" / "dtypes", "s").steps
    assert steps["step"].tolist() == list(range(13))
    # Nine significant digits: a float32 (bfloat16) value exactly, a float64 one to half a unit of the ninth.
    kind, rtol = (np.float64, 5e-9) if dtype == torch.float64 else (np.float32, 0)
    np.testing.assert_allclose(steps["loss"].astype(kind), np.array(losses, dtype=kind), rtol=rtol, atol=0)
    np.testing.assert_allclose(steps["grad_norm"].astype(kind), np.array(norms, dtype=kind), rtol=rtol, atol=0)


def test_a_window_is_formatted_as_cell_by_cell():
    from diagnose.probe.files import cell, rows

    nan, inf = float("nan"), float("inf")
    columns = [list(range(5)), [1e-3] * 4 + [2e-3], [nan, 0.5, -nan, inf, -inf], [0.0, -0.0, 0.0, -0.0, 1e20],
               [0.1, None, 3, True, 'a,"b"'], None, [-1.5e-45, 3.4028234663852886e38, 1.0, 2.5, 0.30000001192092896],
               [2.5e-4] * 5, [nan] * 5, [-0.0] * 5, [inf] * 5]  # constant columns are formatted once
    expected = "".join(",".join("" if c is None else cell(c[i]) for c in columns) + "\n" for i in range(5))
    assert rows(columns, 5) == expected
    assert rows([[]], 0) == ""


def test_a_window_norm_without_sharded_part_is_as_total_norm_says():
    from diagnose.probe.norms import Norm
    from diagnose.probe.writer import Packed, _unpack, total_norm

    values = [3.0, -4.0, math.inf, -math.inf, math.nan, None]
    present = [v is not None for v in values]
    [out] = _unpack({"norm": (Packed(list(values)), Packed([None] * len(values)), present)}, []).values()
    expected = [total_norm(Norm(v, None)) if p else None for v, p in zip(values, present)]
    assert [str(v) for v in out] == [str(v) for v in expected]


def test_a_window_is_left_to_the_writer_thread_only_when_every_tensor_is_on_the_cpu():
    from diagnose.probe.writer import Columns

    cpu, meta = torch.tensor(1.0), torch.empty((), device="meta")  # meta: a device other than the CPU

    def host_only(losses, norms, lr=0.1, usual=True):
        rows = Columns()
        rows.rows = [(i, loss, norm, lr, 0.9, 0.0, False, None) for i, (loss, norm) in enumerate(zip(losses, norms))]
        rows.usual_cpu = usual
        return rows.on_cpu()

    assert host_only([cpu, 2.0, cpu], [cpu] * 3)
    assert not host_only([cpu, meta, cpu], [cpu] * 3)  # the usual rows' losses are each looked at
    assert not host_only([cpu] * 3, [cpu, cpu, meta])  # a model moved since the Plan was made
    assert not host_only([cpu] * 3, [cpu, meta, cpu], usual=False)  # other rows: every value
    assert not host_only([cpu] * 3, [cpu] * 3, lr=meta, usual=False)
    assert host_only([], [])
    # A listed Plan's norms: the tuple of per-tensor norms of each step, every one looked at.
    assert host_only([cpu] * 3, [(cpu, cpu)] * 3)
    assert not host_only([cpu] * 3, [(cpu, cpu), (cpu, cpu), (cpu, meta)])
    assert not host_only([cpu] * 3, [(cpu, cpu), (meta, cpu), (cpu, cpu)], usual=False)


def usual_and_general_steps(tmp_path, name, *, optimizer="sgd", layers=1, clip=None, step_of=None, float_every=None,
                            tensor_lr=False, no_grad=False, dtype=torch.float32, steps=23):
    """steps.csv (time blanked) of one training logged by ``step`` (the usual path) and by ``measure`` + ``record``."""
    texts = []
    for how in ("step", "halves"):
        torch.manual_seed(0)
        modules = [torch.nn.Linear(8, 16), torch.nn.Tanh()]
        for _ in range(layers - 1):
            modules += [torch.nn.Linear(16, 16), torch.nn.Tanh()]
        model = torch.nn.Sequential(*modules, torch.nn.Linear(16, 1)).to(dtype)
        x, y = torch.randn(64, 8, dtype=dtype), torch.randn(64, 1, dtype=dtype)
        lr = torch.tensor(0.05) if tensor_lr else 0.05
        opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd"
               else torch.optim.Adam(model.parameters(), lr=lr, betas=(0.8, 0.99)) if optimizer == "adam"
               else torch.optim.Adagrad(model.parameters(), lr=0.05))
        if no_grad:
            opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))]})
        with Probe(tmp_path / how, "s", name, flush_every=5) as probe:
            for number in range(steps):
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
                value = loss.item() if float_every and number % float_every == 0 else loss
                step = None if step_of is None else step_of(number)
                if how == "step":
                    probe.step(value, opt, clip_norm=clip, step=step)
                else:
                    probe.record(value, probe.measure(opt), clip_norm=clip, step=step)
                opt.step()
                opt.zero_grad()
            listed = probe._plan.listed
        lines = (tmp_path / how / "s" / name / "steps.csv").read_text().splitlines()
        time = lines[0].split(",").index("time")
        texts.append([",".join("T" if i == time else c for i, c in enumerate(line.split(","))) for line in lines])
    return texts, listed


@pytest.mark.parametrize("name, options", [
    ("plain", {}), ("adam", {"optimizer": "adam"}), ("no momentum", {"optimizer": "adagrad"}),
    ("clip", {"clip": 0.5}), ("user steps", {"step_of": lambda n: 100 + 3 * n}), ("float loss", {"float_every": 3}),
    ("tensor lr", {"tensor_lr": True}), ("a parameter without grad", {"no_grad": True}),
    ("float64", {"dtype": torch.float64}), ("many parameters", {"layers": 8}),
])
def test_the_usual_step_writes_what_the_general_path_writes(tmp_path, name, options):
    # step() inlines Plan.measure and _record for the usual step (and keeps a small CPU model's per-tensor norms
    # unstacked): measure() + record() take the general path, whose rows must come out the same.
    from diagnose.probe.norms import LISTED_MAX

    (usual, general), listed = usual_and_general_steps(tmp_path, name.replace(" ", "_"), **options)
    assert len(usual) == 24 and usual == general
    assert listed == (2 * options.get("layers", 1) + 2 + options.get("no_grad", 0) <= LISTED_MAX)  # both kinds seen
