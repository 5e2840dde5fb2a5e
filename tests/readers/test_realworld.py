"""Every folder of ../shared/realworld (real public logs, see its PROVENANCE.md) read into the right runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diagnose.readers import read_root

# folder (relative to realworld) -> format, steps, eval rows per split, step columns that must hold values
EXPECTED = {
    "hf_whisper_large_ja": ("hf.trainer_state", 200, {"eval": 5}, ("lr",)),
    "hf_multi_eval_groups": ("hf.trainer_state", 30, {f"g{i}": 31 for i in range(6)}, ("grad_norm", "lr")),
    "hf_star_40k": ("hf.trainer_state", 2000, {}, ("grad_norm", "lr")),
    "hf_tinyllama_sft": ("hf.trainer_state", 186, {"eval": 14}, ("grad_norm", "lr")),
    "hf_token_compressor": ("hf.trainer_state", 100, {}, ("grad_norm", "lr")),
    "hf_dnabert2_cls": ("hf.trainer_state", 22, {"eval": 11}, ("lr",)),
    "hf_qlora_a": ("hf.trainer_state", 10, {}, ("lr",)),
    "hf_qlora_b": ("hf.trainer_state", 1000, {}, ("lr",)),
    "hf_vit_cls": ("hf.trainer_state", 892, {"eval": 89}, ("grad_norm", "lr")),
    "hf_whisper_tiny": ("hf.trainer_state", 2000, {"eval": 100}, ("lr",)),
    "pl_slm_wikitext103/version_0": ("lightning.csv", 2814, {"train": 10, "val": 10}, ()),
    "pl_slm_wikitext103/version_5": ("lightning.csv", 1126, {"train": 4, "val": 4}, ()),
    "pl_slm_wikitext103/version_8": ("lightning.csv", 1511, {}, ()),
    "pl_slm_wikitext103/version_12": ("lightning.csv", 641, {}, ()),
    "pl_imagebind_probe": ("lightning.csv", 38, {"train": 23, "val": 23}, ()),
    "pl_toy_lstm": ("lightning.csv", 120, {}, ()),
    "pl_transfer_head": ("lightning.csv", 39, {"train": 4, "val": 4}, ()),
    **{f"pl_mnist_cnn/version_{v}": ("lightning.csv", 625, {"val": 21}, ()) for v in (7, 9, 10, 12, 15, 25)},
    "tb_llama_sft": ("tensorboard", 1244, {}, ("grad_norm", "lr")),
    "tb_qwen_lora": ("tensorboard", 129, {}, ("grad_norm", "lr")),
    "tb_llamafactory_llama": ("tensorboard", 49, {"eval": 12}, ("grad_norm", "lr")),
    "tb_qwen_sft": ("tensorboard", 510, {}, ("grad_norm", "lr")),
    "txt_nanogpt_1.5b": ("text", 20344, {"val": 164}, ()),
    "txt_nanogpt_124m": ("text", 5100, {"val": 42}, ()),
    "txt_llmc_gpt2_124m": ("text", 9536, {"val": 76}, ()),
}


@pytest.fixture(scope="module")
def root(realworld):
    return read_root(realworld)


def _by_folder(root, realworld):
    return {run.source.relative_to(realworld).as_posix(): run for run in root.runs}


def test_every_folder_is_one_run_and_none_is_unreadable(root, realworld):
    assert root.unreadable == []
    assert sorted(_by_folder(root, realworld)) == sorted(EXPECTED)


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_runs_rows_and_key_columns(root, realworld, folder):
    fmt, n_steps, evals, columns = EXPECTED[folder]
    run = _by_folder(root, realworld)[folder]
    assert run.format == fmt
    assert run.name == folder.rsplit("/", 1)[-1]
    assert run.study == (folder.rsplit("/", 1)[0] if "/" in folder else "realworld")
    assert run.n_steps == n_steps
    steps = run.steps["step"].to_numpy()
    assert (np.diff(steps) > 0).all()
    assert run.steps["loss"].notna().all()
    for column in columns:
        assert run.steps[column].notna().all(), column
    counts = run.evals.groupby("split").size().to_dict() if len(run.evals) else {}
    assert counts == evals
    if len(run.evals):
        assert run.evals["loss"].notna().all()


@pytest.mark.parametrize("folder", [f for f in EXPECTED if f.startswith("hf_")])
def test_hf_numbers_match_the_json(realworld, root, folder):
    """Independently: every log entry with a loss (not the summary) is one step, values unchanged."""
    state = json.loads((realworld / folder / "trainer_state.json").read_text())
    entries = [e for e in state["log_history"] if "loss" in e and "train_runtime" not in e]
    run = _by_folder(root, realworld)[folder]
    assert run.steps["step"].tolist() == [e["step"] for e in entries]
    assert run.steps["loss"].tolist() == [e["loss"] for e in entries]
    lr_key = "learning_rate" if "learning_rate" in entries[0] else "lr"
    assert run.steps["lr"].tolist() == [e[lr_key] for e in entries]
    assert run.sources["lr"] == lr_key
    assert run.config["max_steps"] == state["max_steps"]


def test_hf_grouped_eval_losses_are_splits(root, realworld):
    run = _by_folder(root, realworld)["hf_multi_eval_groups"]
    state = json.loads((realworld / "hf_multi_eval_groups" / "trainer_state.json").read_text())
    g3 = [(e["step"], e["eval_g3_loss"]) for e in state["log_history"] if "eval_g3_loss" in e]
    rows = run.evals[run.evals["split"] == "g3"]
    assert list(zip(rows["step"], rows["loss"])) == g3
    assert "accuracy" in run.evals.columns


def test_lightning_sweep_is_one_study_with_lrs_from_hparams(root):
    mnist = sorted((r for r in root.runs if r.study == "pl_mnist_cnn"), key=lambda r: r.lr)
    assert [r.name for r in mnist] == ["version_9", "version_10", "version_12", "version_15", "version_7", "version_25"]
    assert [r.lr for r in mnist] == [0.0005, 0.0008, 0.001, 0.0015, 0.002, 0.003]
    slm = {r.name: r for r in root.runs if r.study == "pl_slm_wikitext103"}
    assert slm["version_8"].config["lr"] == 1e-05
    assert slm["version_5"].steps["step"].iloc[0] == 140749  # resumes version_0 (last step 140739)


def test_lightning_columns_and_config(root, realworld):
    runs = _by_folder(root, realworld)
    imagebind = runs["pl_imagebind_probe"]
    assert imagebind.sources == {"loss": "train_loss_step", "train:loss": "train_loss_epoch",
                                 "val:loss": "val_loss_epoch"}
    assert imagebind.config["momentum"] == 0.9 and imagebind.config["batch_size"] == 6
    assert imagebind.config["lr"] == 5e-06
    toy = runs["pl_toy_lstm"]
    assert toy.steps["loss"].iloc[0] == pytest.approx(0.2521775960922241)
    assert "out_tensor([0.])" in toy.steps.columns


def test_tensorboard_two_files_are_one_run_and_args_give_config(root, realworld):
    run = _by_folder(root, realworld)["tb_llamafactory_llama"]
    assert run.evals["step"].iloc[-1] == 492  # the eval of the second event file
    assert run.config["lr"] == 0.0001 and run.config["batch_size"] == 2
    assert run.sources == {"loss": "train/loss", "grad_norm": "train/grad_norm", "lr": "train/learning_rate",
                           "eval:loss": "eval/loss"}
    sft = _by_folder(root, realworld)["tb_llama_sft"]
    assert sft.steps["loss"].iloc[0] == pytest.approx(1.1624, rel=1e-6)
    assert sft.steps["step"].iloc[0] == 50


def test_text_logs_numbers(root, realworld):
    runs = _by_folder(root, realworld)
    big = runs["txt_nanogpt_1.5b"]
    assert big.steps["loss"].iloc[0] == pytest.approx(22.6211)
    assert big.config["max_steps"] == 20344
    assert big.evals["loss"].iloc[-1] == pytest.approx(2.7737)
    llmc = runs["txt_llmc_gpt2_124m"]
    assert llmc.steps["step"].iloc[0] == 0 and llmc.steps["loss"].iloc[0] == pytest.approx(10.965596)
    assert llmc.sources == {"loss": "trl", "val:loss": "tel"}
