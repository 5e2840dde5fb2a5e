"""Labelled run-level cases: one real small training run per study, with the run checks it must (not) raise.

Each case trains one tiny model on CPU (well under a second to a few
seconds) through ``diagnose.probe.Probe`` into ``root/<case name>/<run>``.
The pathology comes from the training itself: an lr above the initial
stability limit (the catapult), a batch of outliers at a known step, a
clipping threshold far below the grad norms, a big net on 100 samples, an
lr 1000x too small, momentum 0.99 on Morrison's sin fit. Every run check
that is not expected is forbidden (a false alarm if it fires), except the
ones named in ``unjudged`` with the reason.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from diagnose.probe import Probe

from . import Case, training

RUN_CHECKS = (
    "divergence",
    "early_instability",
    "loss_spike",
    "grad_norm_outliers",
    "clipping_too_aggressive",
    "overfitting",
    "underfitting",
    "momentum_oscillation",
)


def _train(root: Path, study: str, *, train, name: str = "run", role: str = "train", **kwargs) -> None:
    config = {
        key: kwargs.get(key)
        for key in ("lr", "momentum", "optimizer", "batch_size", "seed", "warmup_steps", "clip_norm")
        if key in kwargs
    }
    config.setdefault("optimizer", "sgd")
    config["max_steps"] = kwargs.get("steps") or kwargs.get("epochs")
    with Probe(root, study=study, name=name, config=config, role=role) as probe:
        train(probe, **kwargs)


def case(name: str, train, expect=(), unjudged=(), why: str = "", **kwargs) -> Case:
    expect, unjudged = frozenset(expect), frozenset(unjudged)
    return Case(
        name=name,
        build=partial(_train, train=train, **kwargs),
        expect=expect,
        forbid=frozenset(RUN_CHECKS) - expect - unjudged,
        why=why,
    )


reg, cls, cat, bee = training.mlp_regression, training.mlp_classification, training.catapult, training.sin_bee

CASES: tuple[Case, ...] = (
    # healthy runs: every run check must stay quiet
    case("healthy_bs4_momentum", reg, lr=0.003, batch_size=4, momentum=0.9, steps=800,
         why="batch 4: minibatch losses range 0.01-1 (noise of +-100%) around a steady decline"),
    case("healthy_bs4_plain_sgd", reg, lr=0.03, batch_size=4, momentum=0.0, seed=2, steps=800,
         unjudged=("underfitting",), why="batch 4, plain SGD (still slowly improving at the end: not judged for underfitting)"),
    case("healthy_bs32_evals", reg, lr=0.03, batch_size=32, momentum=0.9, steps=1000, eval_every=50,
         why="batch 32, momentum 0.9, converges to 0.01 with validation evals every 50 steps"),
    case("healthy_adam_classifier", cls, lr=0.003, optimizer="adam", momentum=0.9, steps=1500, n_train=8192,
         eval_every=100, why="Adam on 8192 samples: train and valid fall together"),
    case("healthy_logged_every_10", reg, lr=0.01, batch_size=8, momentum=0.9, steps=4000, log_every=10,
         why="the mean loss of every 10 steps, as the Hugging Face Trainer logs it"),
    # early instability: the catapult of a wide net above its initial stability limit
    case("catapult_lr12", cat, expect=("early_instability",), lr=12.0, steps=300,
         why="loss 0.98 -> 10.6 at steps 6-15, back at 16: early instability that recovers"),
    case("catapult_lr16", cat, expect=("early_instability", "grad_norm_outliers"), lr=16.0, steps=300, seed=0,
         why="loss 0.98 -> 88 at steps 3-7, back at 8; the grad norm jumps 70x with it"),
    case("catapult_lr12_warmup", cat, expect=("loss_spike",), lr=12.0, warmup_steps=30, steps=300,
         why="30 warmup steps only delay the catapult: 120x at steps 56-70 once the lr is at 12, a mid-run spike"),
    case("catapult_lr4", cat, lr=4.0, steps=300, why="below the stability limit: smooth descent"),
    # mid-training spikes from outlier batches (targets scaled at a known step)
    case("spike_outlier_sgd", reg, expect=("loss_spike", "grad_norm_outliers"), lr=0.01, outliers=((300, 5.0),),
         steps=800, why="one batch of 5x targets at step 300: the loss jumps 20x and recovers in 20 steps"),
    case("spike_outlier_adam", reg, expect=("loss_spike", "grad_norm_outliers"), lr=0.003, optimizer="adam",
         momentum=0.9, outliers=((500, 10.0),), steps=800, why="Adam, one batch of 10x targets at step 500"),
    case("spike_two_outliers", reg, expect=("loss_spike", "grad_norm_outliers"), lr=0.01,
         outliers=((200, 10.0), (500, 10.0)), steps=800, why="two outlier batches: one finding, two periods"),
    case("spike_outlier_clipped", reg, expect=("grad_norm_outliers",), lr=0.01, outliers=((300, 5.0),), steps=800,
         clip_norm=1.0, why="the same outlier with clipping at about the 90th percentile: the loss stays calm"),
    # clipping
    case("clip_tight_regression", reg, expect=("clipping_too_aggressive",), lr=0.03, clip_norm=0.02, steps=600,
         unjudged=("underfitting",), why="clip 0.02 against grad norms of 0.1-1: every update clipped"),
    case("clip_tight_classifier", cls, expect=("clipping_too_aggressive",), lr=0.1, clip_norm=0.1, steps=600,
         unjudged=("underfitting",), why="clip 0.1 against grad norms around 1"),
    case("clip_loose", reg, lr=0.03, clip_norm=10.0, steps=600, why="clip 10: never reached"),
    # over- and underfitting
    case("overfit_classifier_100", cls, expect=("overfitting",), lr=0.003, optimizer="adam", momentum=0.9,
         n_train=100, width=256, label_noise=0.2, steps=1500, eval_every=25, eval_train=True,
         why="a 256-wide net on 100 noisy samples: train loss -> 0, valid loss rises from step ~200"),
    case("overfit_classifier_sgd", cls, expect=("overfitting",), lr=0.05, momentum=0.9, n_train=200, width=256,
         label_noise=0.3, steps=800, eval_every=25, why="SGD on 200 samples with 30% noisy labels, 256 wide"),
    case("tiny_lr_regression", reg, expect=("underfitting",), lr=1e-5, momentum=0.0, steps=600,
         why="lr 1e-5 plain SGD: the loss moves about 1% in 600 steps"),
    case("tiny_lr_classifier", cls, expect=("underfitting",), lr=1e-4, momentum=0.0, steps=600,
         why="lr 1e-4 plain SGD on cross-entropy: barely moved"),
    case("still_falling_classifier", cls, expect=("underfitting",), lr=0.02, momentum=0.0, batch_size=256, steps=300,
         why="batch 256, plain SGD, stopped at step 300 while the loss falls as fast as ever"),
    case("still_falling_classifier_seed1", cls, expect=("underfitting",), lr=0.01, momentum=0.0, batch_size=256,
         steps=300, seed=1, why="the same at lr 0.01: a straight decline, cut off"),
    # momentum: Morrison's sin bees (seed 000)
    case("bee_momentum_099", bee, expect=("momentum_oscillation",), lr=0.01, momentum=0.99, epochs=600,
         unjudged=("underfitting", "early_instability", "loss_spike"),
         why="momentum 0.99 at lr 0.01: the loss rings up and down (under-damped)"),
    case("bee_momentum_099_slow", bee, expect=("momentum_oscillation",), lr=0.002, momentum=0.99, epochs=800,
         unjudged=("underfitting", "early_instability", "loss_spike"), why="momentum 0.99 at lr 0.002"),
    case("bee_momentum_095", bee, lr=0.01, momentum=0.95, epochs=600, unjudged=("underfitting", "loss_spike"),
         why="momentum 0.95 at lr 0.01, which Morrison finds 'works very well': no ringing worth a warning"),
    case("bee_momentum_09", bee, lr=0.01, momentum=0.9, epochs=600, unjudged=("underfitting",),
         why="momentum 0.9 at lr 0.01: settles smoothly"),
    case("bee_momentum_0", bee, expect=("loss_spike",), lr=0.05, momentum=0.0, epochs=600,
         unjudged=("underfitting", "grad_norm_outliers"),
         why="no momentum at lr 0.05: a smooth fit is knocked out 3 times (40x, 30x, 10x), as Morrison's low-momentum "
         "bees 'shake themselves out of position'; no ringing"),
    # divergence
    case("diverge_regression", reg, expect=("divergence",), lr=0.2, steps=300,
         unjudged=("grad_norm_outliers",), why="lr 0.2 with momentum 0.9: NaN after step ~15"),
    case("catapult_too_far", cat, expect=("divergence",), lr=25.0, steps=100, unjudged=("grad_norm_outliers",),
         why="lr 25: the catapult never comes back; 77 at step 1, 4e9 at step 2, NaN after"),
)
