"""What the probe costs a training step, on CPU (run by hand: ``python benchmarks/probe_overhead.py``).

Two models: a small transformer encoder (the goal: <= 1% step time) and an
MLP (a cheap step, where a fixed cost shows most). For each:

- step time with and without the probe: two copies of the model train side
  by side, one with the probe, alternating step by step (interleaved); per
  block of STEPS steps the ratio of total times (flushes included); the
  median over REPEATS blocks, with a distribution-free 95% interval for it
  (order statistics of the blocks' ratios): whether a goal is met is read
  from the interval, not from one median on a shared machine.
- the probe's own cost divided by one norm pass: what ``clip_grad_norm_``
  computes (``torch.nn.utils.get_total_norm``, which on CPU loops over the
  tensors in Python), and one fused pass (``_foreach_norm``, then the norm of
  the norms), all three called in every step in a rotating order, the first
  of each step timed (it reads the fresh gradients, as the one pass of a
  training step does); one probe for all repeats, so that each block of STEPS
  steps holds one flush (and the writer thread's work on that window); per repeat
  the mean per call, then the minimum over repeats, the usual estimate of a
  cost under the noise of a shared machine (goal: <= 1.1x).
- the CPU time of the probe's writer thread per flush window, over the same
  steps (it competes with training for the GIL and, on a busy machine, a core),
  and probe.step's cost with the writer's CPU per step added, against the
  fused pass: an upper bound (the writer also runs while training's kernels
  have released the GIL), and one that does not depend on which timed call
  the writer's GIL hand-offs land in.
"""

from __future__ import annotations

import argparse
import math
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


MODELS = {"transformer": transformer, "mlp": mlp}


class Trainer:
    """One model in training; ``step()`` runs one update, with the probe when it has one."""

    def __init__(self, build, probe: Probe | None = None):
        self.model, self.x, self.y, self.loss_fn = build()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.probe = probe
        self.steps = 0

    def step(self, timings: dict | None = None) -> None:
        loss = self.loss_fn(self.model(self.x), self.y)
        loss.backward()
        if timings is not None:
            params = list(self.model.parameters())
            # Both references start from the parameters, as clip_grad_norm_ does.
            calls = [("norm", lambda: torch.nn.utils.get_total_norm([p.grad for p in params])),
                     ("fused", lambda: torch.linalg.vector_norm(torch.stack(torch._foreach_norm(
                         [p.grad for p in params])))),
                     ("probe", lambda: self.probe.step(loss, self.optimizer))]
            shift = self.steps % len(calls)  # each call goes first equally often
            for position, (name, call) in enumerate(calls[shift:] + calls[:shift]):
                began = time.perf_counter()
                call()
                # Only the first is timed: it reads the fresh gradients, as the one pass of a training step does;
                # the next find them in the CPU's caches (the MLP's probe.step: ~180 us first, ~125 us after a pass).
                if position == 0:
                    timings[name].append(time.perf_counter() - began)
            self.steps += 1
        elif self.probe is not None:
            self.probe.step(loss, self.optimizer)
        self.optimizer.step()
        self.optimizer.zero_grad()


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """An interval holding the true median with at least ``confidence``, whatever the distribution: the k-th
    smallest and k-th largest value, k the largest rank whose binomial(n, 1/2) tail stays within the error."""
    ordered, n = sorted(values), len(values)
    tail, k = 0.0, 0
    while k < n // 2 and tail + math.comb(n, k) / 2**n <= (1 - confidence) / 2:
        tail += math.comb(n, k) / 2**n
        k += 1
    k = max(k, 1)  # too few blocks for the confidence: the whole range
    return ordered[k - 1], ordered[n - k]


def timed(step) -> float:
    began = time.perf_counter()
    step()
    return time.perf_counter() - began


def measure(name, build, steps, repeats, logdir, null: bool = False) -> dict:
    # Step time: two copies of the model train side by side, one with the probe, alternating step by
    # step, so that the load of a shared machine falls on both alike. One ratio per block of steps.
    with Probe(logdir, name, "overhead") as probe:
        with_probe, without = Trainer(build, None if null else probe), Trainer(build)
        for _ in range(5):
            with_probe.step(), without.step()
        ratios, step_times, probe_times = [], [], []
        for repeat in range(repeats):
            a = b = 0.0
            for step in range(steps):
                if step % 2:
                    a += timed(with_probe.step)
                    b += timed(without.step)
                else:
                    b += timed(without.step)
                    a += timed(with_probe.step)
            ratios.append(a / b)
            step_times.append(b / steps)
            probe_times.append(a / steps)
    # The probe's own cost against one norm pass, timed around the calls inside the same steps; with the
    # default flush_every=100 and STEPS=100 every block holds one flush.
    probe_means, norm_means, fused_means = [], [], []
    with Probe(logdir, name, "cost") as probe:
        trainer = Trainer(build, probe)
        for _ in range(5):
            trainer.step()
        writer_clock = time.pthread_getcpuclockid(probe._writer.ident)
        writer_began = time.clock_gettime(writer_clock)
        for repeat in range(repeats):
            timings = {"norm": [], "fused": [], "probe": []}
            for _ in range(steps):
                trainer.step(timings)
            probe_means.append(statistics.mean(timings["probe"]))
            norm_means.append(statistics.mean(timings["norm"]))
            fused_means.append(statistics.mean(timings["fused"]))
        writer_cpu = time.clock_gettime(writer_clock) - writer_began
    # The writer's CPU counted too: its GIL hand-offs can land in whichever call comes next, timed or not.
    writer_per_step = writer_cpu / (repeats * steps)
    return {
        "model": name,
        "step_ms": statistics.median(step_times) * 1e3,
        "step_with_probe_ms": statistics.median(probe_times) * 1e3,
        "overhead_pct": (statistics.median(ratios) - 1) * 100,
        "overhead_interval_pct": tuple((bound - 1) * 100 for bound in median_interval(ratios)),
        "probe_us": min(probe_means) * 1e6,
        "norm_pass_us": min(norm_means) * 1e6,
        "probe_over_norm": min(probe_means) / min(norm_means),
        "fused_pass_us": min(fused_means) * 1e6,
        "probe_over_fused": min(probe_means) / min(fused_means),
        "writer_us_per_window": writer_cpu / (repeats * steps / probe.flush_every) * 1e6,
        "with_writer_over_fused": (min(probe_means) + writer_per_step) / min(fused_means),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", action="append", choices=sorted(MODELS),
                        help="Only this model (repeatable); default: all")
    parser.add_argument("--null", action="store_true",
                        help="A/A run: neither copy has the probe, to see the noise floor of the step-time ratio")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    with tempfile.TemporaryDirectory() as logdir:
        for name in options.model or MODELS:
            build = MODELS[name]
            result = measure(name, build, options.steps, options.repeats, logdir, options.null)
            low, high = result["overhead_interval_pct"]
            print(
                f"{result['model']:12s} step {result['step_ms']:.2f} ms, with probe {result['step_with_probe_ms']:.2f} ms "
                f"({result['overhead_pct']:+.2f}%, 95% interval {low:+.2f}% to {high:+.2f}%); probe.step {result['probe_us']:.0f} us = "
                f"{result['probe_over_norm']:.2f}x clip_grad_norm_'s norm pass ({result['norm_pass_us']:.0f} us), "
                f"{result['probe_over_fused']:.2f}x one fused _foreach_norm pass ({result['fused_pass_us']:.0f} us); "
                f"writer thread {result['writer_us_per_window']:.0f} us CPU per window "
                f"(probe.step and the writer's CPU: {result['with_writer_over_fused']:.2f}x the fused pass)",
                flush=True,
            )


if __name__ == "__main__":
    main()
