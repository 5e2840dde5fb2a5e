"""Labels for the run-level checks on ``../shared/realworld`` (real public logs), judged by eye from their curves.

Each run (``study/name`` as ``diagnose.readers.read_root`` names it) lists the
checks that must report it (``expect``) and those not judged (``unjudged``,
when the curve is ambiguous); every other run check that can run on it
must stay quiet. ``why`` is what the curves show.
"""

from __future__ import annotations

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

HEALTHY = {"expect": (), "unjudged": ()}

LABELS: dict[str, dict] = {
    "realworld/hf_dnabert2_cls": {
        "unjudged": ("overfitting",),
        "why": "train 0.46 -> 0.03; eval 0.23-0.31 jumps by 0.03-0.07 between evals, as much as its late rise",
    },
    "realworld/hf_multi_eval_groups": {"why": "loss 1.0 -> 0.05 smoothly over 30 logged points; eval groups g0-g5"},
    "realworld/hf_qlora_a": {
        "expect": ("early_instability",),
        "unjudged": ("divergence", "underfitting"),
        "why": "lr 5.0: loss 1.6 -> 11.8 at the second logged point and flat at 10.4 after: unstable from init (10 points)",
    },
    "realworld/hf_qlora_b": {
        "unjudged": ("loss_spike", "underfitting"),
        "why": "25 epochs of QLoRA: 2 -> 0.05 with an epoch-periodic sawtooth of growing amplitude (memorization), still falling",
    },
    "realworld/hf_star_40k": {
        "expect": ("grad_norm_outliers",),
        "why": "grad norm bursts to 20-60 over a typical 4 while the loss falls smoothly 25 -> 3.8",
    },
    "realworld/hf_tinyllama_sft": {"why": "train and eval fall together 2.1 -> 1.0 / 1.15 under a cosine schedule"},
    "realworld/hf_token_compressor": {
        "expect": ("underfitting",),
        "why": "the loss stays at 2.1-2.2 for 1000 steps of cosine lr 2e-4: it barely moved",
    },
    "realworld/hf_vit_cls": {
        "expect": ("overfitting", "grad_norm_outliers"),
        "unjudged": ("loss_spike",),
        "why": "eval loss best 0.5 near step 1900, 0.9 at the end while train -> 1e-3; grad norm bursts 100-700x; "
        "the 1e-3 train loss jumps 100x on rare batches (noise or instability: unclear)",
    },
    "realworld/hf_whisper_large_ja": {
        "unjudged": ("overfitting",),
        "why": "train 0.3 -> 1e-4 (4-decimal quantized at the end); eval flat at 0.37-0.38 over only 5 evals",
    },
    "realworld/hf_whisper_tiny": {"why": "100k steps: train and eval fall smoothly (power law)"},
    "realworld/pl_imagebind_probe": {
        "expect": ("overfitting",),
        "why": "val loss 3.6 near step 660 rises to 4.1 while the train loss falls 3.0 -> 1.6",
    },
    **{
        f"pl_mnist_cnn/version_{v}": {"why": "MNIST CNN: noisy batch losses around a steady decline; val flat at ~0.03"}
        for v in (7, 9, 10, 12, 15, 25)
    },
    "pl_slm_wikitext103/version_0": {"why": "LM on WikiText-103: train and val fall smoothly 7 -> 3.6"},
    "pl_slm_wikitext103/version_12": {
        "unjudged": ("underfitting",),
        "why": "lr 5e-6: the loss falls 10 -> 5.7 and is still falling (slowly, power-law-like)",
    },
    "pl_slm_wikitext103/version_5": {
        "why": "resumes version_0 at step 140k: flat at 3.7 (train evals drift up 2%, val flat): converged, not stuck",
    },
    "pl_slm_wikitext103/version_8": {
        "unjudged": ("underfitting",),
        "why": "lr 1e-5: the loss falls 9 -> 4.6 and is still falling",
    },
    "realworld/pl_toy_lstm": {
        "expect": ("underfitting",),
        "why": "MSE 0.2525 -> 0.2500, the constant-prediction level of a 0/1 target, then flat: it learned nothing",
    },
    "realworld/pl_transfer_head": {
        "expect": ("loss_spike",),
        "unjudged": ("divergence", "early_instability"),
        "why": "the train loss climbs 0.2 -> 22 from the second epoch on (val with it): instability, not overfitting",
    },
    "realworld/tb_llama_sft": {
        "expect": ("loss_spike", "grad_norm_outliers"),
        "why": "plateau at 0.045 until step 40k, then the loss jumps to 0.8 and stays; grad norm bursts 100-700x from 40k",
    },
    "realworld/tb_llamafactory_llama": {
        "expect": ("overfitting",),
        "why": "eval loss best 0.27 at step 210, 0.33 at 490 while the train loss falls to 0.03",
    },
    "realworld/tb_qwen_lora": {
        "expect": ("grad_norm_outliers",),
        "unjudged": ("loss_spike",),
        "why": "converged at 0.04 with one 1.7x blip at a single logged point (1450); grad norm bursts to 1e4 over 0.03",
    },
    "realworld/tb_qwen_sft": {
        "expect": ("grad_norm_outliers",),
        "unjudged": ("underfitting",),
        "why": "SFT loss 2.4 -> 1.8 in the first logged steps, then flat for 25k steps (converged or stuck: unclear); "
        "grad norm spikes 10x at 4450 and 21000",
    },
    "realworld/txt_llmc_gpt2_124m": {"why": "GPT-2 124M (llm.c): smooth decline, val with it"},
    "realworld/txt_nanogpt_1.5b": {
        "why": "GPT-2 1.5B: noisy per-step loss around a steady decline; isolated 1.5x minibatch losses, no sustained rise",
    },
    "realworld/txt_nanogpt_124m": {
        "unjudged": ("loss_spike",),
        "why": "GPT-2 124M: steady decline with a few 1-3 step blips near steps 700-1000",
    },
}


def label(key: str) -> tuple[frozenset[str], frozenset[str], str] | None:
    """(expect, forbid, why) for a run key, or None when the run is not labelled."""
    entry = LABELS.get(key)
    if entry is None:
        return None
    expect = frozenset(entry.get("expect", ()))
    forbid = frozenset(RUN_CHECKS) - expect - frozenset(entry.get("unjudged", ()))
    return expect, forbid, entry["why"]
