"""What the probe costs a training step, on CPU (run by hand: ``python benchmarks/probe_overhead.py``).

Two models: a small transformer encoder (the goal: <= 1% step time) and an
MLP (a cheap step, where a fixed cost shows most). For each:

- step time with and without the probe: REPEATS interleaved pairs of runs
  (probe, no probe, probe, ...) of STEPS steps each; the median over repeats
  of each run's mean step time. Flushes are included (means, not medians,
  within a run).
- the probe's own cost divided by one fused norm pass (what
  ``clip_grad_norm_`` computes, ``torch.nn.utils.get_total_norm`` over the
  gradients), both timed around the call inside the same steps, alternating
  which goes first (goal: <= 1.1x).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from diagnose.probe import Probe


def transformer():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=512, batch_first=True)
    model = torch.nn.Sequential(torch.nn.TransformerEncoder(layer, num_layers=2), torch.nn.Flatten(),
                                torch.nn.Linear(128 * 32, 10))
    x, y = torch.randn(16, 32, 128), torch.randint(0, 10, (16,))
    return model, x, y, torch.nn.functional.cross_entropy


def mlp():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                torch.nn.ReLU(), torch.nn.Linear(512, 10))
    x, y = torch.randn(64, 256), torch.randint(0, 10, (64,))
    return model, x, y, torch.nn.functional.cross_entropy


def run(build, steps: int, probe: Probe | None, timings: dict | None = None) -> float:
    """Mean seconds per training step; with ``timings``, also times probe.step and one norm pass per step."""
    model, x, y, loss_fn = build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for step in range(steps):
        loss = loss_fn(model(x), y)
        loss.backward()
        if timings is not None:
            grads = [p.grad for p in model.parameters()]
            order = [("norm", lambda: torch.nn.utils.get_total_norm(grads)), ("probe", lambda: probe.step(loss, opt))]
            for name, call in order if step % 2 else order[::-1]:
                began = time.perf_counter()
                call()
                timings[name].append(time.perf_counter() - began)
        elif probe is not None:
            probe.step(loss, opt)
        opt.step()
        opt.zero_grad()
    return (time.perf_counter() - start) / steps


def measure(name, build, steps, repeats, logdir) -> dict:
    run(build, 5, None)  # warm-up
    with_probe, without = [], []
    for repeat in range(repeats):
        with Probe(logdir, name, f"overhead-{repeat}") as probe:
            with_probe.append(run(build, steps, probe))
        without.append(run(build, steps, None))
    timings = {"norm": [], "probe": []}
    with Probe(logdir, name, "cost") as probe:
        run(build, steps * repeats, probe, timings)
    return {
        "model": name,
        "step_ms": statistics.median(without) * 1e3,
        "step_with_probe_ms": statistics.median(with_probe) * 1e3,
        "overhead_pct": (statistics.median(with_probe) / statistics.median(without) - 1) * 100,
        "probe_us": statistics.mean(timings["probe"]) * 1e6,
        "norm_pass_us": statistics.mean(timings["norm"]) * 1e6,
        "probe_over_norm": statistics.mean(timings["probe"]) / statistics.mean(timings["norm"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    with tempfile.TemporaryDirectory() as logdir:
        for name, build in (("transformer", transformer), ("mlp", mlp)):
            result = measure(name, build, options.steps, options.repeats, logdir)
            print(
                f"{result['model']:12s} step {result['step_ms']:.2f} ms, with probe {result['step_with_probe_ms']:.2f} ms "
                f"({result['overhead_pct']:+.2f}%); probe.step {result['probe_us']:.0f} us = "
                f"{result['probe_over_norm']:.2f}x one norm pass ({result['norm_pass_us']:.0f} us)",
                flush=True,
            )


if __name__ == "__main__":
    main()
