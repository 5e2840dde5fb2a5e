"""Logs written by the real libraries (transformers Trainer, Lightning CSVLogger, torch's SummaryWriter).

Each fixture trains a tiny model built from a config (no download) on CPU for
a few steps, once per test session.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest



REALWORLD = Path(__file__).resolve().parents[2].parent / "shared" / "realworld"


@pytest.fixture(scope="session")
def realworld() -> Path:
    if not REALWORLD.is_dir():
        pytest.skip(f"{REALWORLD} is absent (it ships beside the repository only in the project's workspace)")
    return REALWORLD


@pytest.fixture(scope="session")
def hf_output(tmp_path_factory) -> Path:
    """A Trainer output folder: checkpoint-6 and checkpoint-12 (no top-level state), TensorBoard in runs/."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)

    class Tokens(torch.utils.data.Dataset):
        def __init__(self, n, seed):
            generator = torch.Generator().manual_seed(seed)
            self.ids = torch.randint(0, 32, (n, 16), generator=generator)

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "labels": self.ids[i]}

    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=12, per_device_train_batch_size=4, learning_rate=3e-3,
        logging_steps=2, eval_strategy="steps", eval_steps=4, save_steps=6, report_to=["tensorboard"],
        use_cpu=True, seed=0, dataloader_num_workers=0, disable_tqdm=True, max_grad_norm=1.0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(64, 0),
                                   eval_dataset={"a": Tokens(8, 1), "b": Tokens(8, 2)})
    trainer.train()
    for checkpoint in out.glob("checkpoint-*"):  # weights are not what the reader needs; keep the tmp dir small
        for weights in checkpoint.glob("*.safetensors"):
            weights.unlink()
    return out


@pytest.fixture(scope="session")
def lightning_logs(tmp_path_factory) -> Path:
    """``lightning_logs/version_0`` (lr 0.01) and ``version_1`` (lr 0.05): CSVLogger + LearningRateMonitor."""
    torch = pytest.importorskip("torch")
    lightning = pytest.importorskip("lightning.pytorch")
    torch.set_num_threads(1)
    save_dir = tmp_path_factory.mktemp("pl")

    class Regression(lightning.LightningModule):
        def __init__(self, lr: float, momentum: float, batch_size: int):
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum)

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    for lr in (0.01, 0.05):
        lightning.seed_everything(0, verbose=False)
        trainer = lightning.Trainer(
            max_epochs=3, accelerator="cpu", devices=1, logger=lightning.loggers.CSVLogger(save_dir, name="lightning_logs"),
            callbacks=[lightning.callbacks.LearningRateMonitor(logging_interval="step", log_momentum=True)],
            log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        )
        loader = torch.utils.data.DataLoader(data, batch_size=8)
        trainer.fit(Regression(lr, 0.9, 8), loader, torch.utils.data.DataLoader(data, batch_size=32))
    return save_dir


@pytest.fixture(scope="session")
def summary_writer_logs(tmp_path_factory) -> Path:
    """One run written by torch's SummaryWriter in two sessions (a resume): two event files in one folder."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("tb")
    folder = root / "sweep" / "lr0.1"
    first = SummaryWriter(log_dir=str(folder), filename_suffix=".a")
    for step in range(20):
        first.add_scalar("train/loss", 2.0 / (step + 1), step)
        first.add_scalar("train/grad_norm", 1.0 + step % 3, step)
        first.add_scalar("train/lr", 0.1, step)
        if step % 5 == 4:
            first.add_scalar("eval/loss", 1.5 / (step + 1), step)
    first.add_text("notes", "not a scalar", 0)
    first.add_histogram("weights", torch.arange(10.0), 0)
    first.close()
    second = SummaryWriter(log_dir=str(folder), filename_suffix=".b")
    for step in range(15, 30):  # resumed from step 15: the later file wins on 15..19
        second.add_scalar("train/loss", float("nan") if step == 25 else 10.0 + step, step)
    second.close()
    shutil.copytree(folder, root / "sweep" / "lr0.3")
    return root
