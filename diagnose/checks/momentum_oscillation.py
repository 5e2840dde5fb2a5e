"""The loss (or gradient norm) rings: an under-damped oscillation, because the momentum is too high for the lr.

Detects:
A run with momentum (SGD momentum or Adam beta1, from the config or the
``momentum`` column) of at least ``min_momentum`` (0.8) whose training
loss or gradient norm oscillates around its trend with a regular period:
the autocorrelation of the detrended series swings negative at about half
a period and back up at one period. Evidence: the period, the amplitude
of the loss oscillation relative to its trend, the momentum, the lr and
the effective step lr / (1 - momentum).

Why:
Morrison, "Learning Rate and Momentum" (seed 000): with momentum 0.99 the
bees "bounce in and out of a position that might be a good fit, potentially
multiple times before they come to settle": the learning process is
"under-damped", and "momentum around 0.9-0.95 works very well" for that
problem. The velocity accumulates 1/(1 - momentum) gradients, so the step
is lr / (1 - momentum): momentum 0.99 multiplies it by 100. Smith (seed
001): momentum and lr are coupled; short runs at momentum 0.99, 0.97,
0.95 and 0.9 quickly show the best value.

Algorithm:
For the log10 loss and, when logged, the log10 grad norm of the applied
updates (after the first 5% of the run, at least ``min_points`` (60)
points): subtract the trend (centered rolling mean over a fifth of the
run, at least 9 points), take the autocorrelation (scipy.signal.correlate,
FFT), and find its peaks (scipy.signal.find_peaks, prominence 0.1) at lags
of at least ``min_period`` (4) steps up to a third of the series. The
period T is the first peak of at least ``min_correlation`` (0.3) (later
peaks are its multiples). Ringing when the autocorrelation's minimum
before T is at most ``max_trough`` (-0.3): white minibatch noise and smooth convergence stay
within +-0.15 in the corpus, a ringing bee reaches +0.5 / -0.6. Amplitude =
sqrt(2) x the standard deviation of the loss around its rolling mean over
one period (after the first 5%), as a ratio (10^amplitude - 1); it must be
at least ``min_amplitude`` (8%): the grad norm of Morrison's bees rings a
little at momentum 0.95 too, but their loss swings only 1.6-7.2% there
(0.95 "works very well", seed 000), against 7.6-25% at 0.99. The ringing period of steps is
where that oscillation's rolling spread is at least half its largest.
Severity: warning.

Example:
Morrison's bee (width-10 ReLU net on sin, 61 points, full batch) at
momentum 0.99, lr 0.01: the grad norm rings with a period of 5 steps
(autocorrelation +0.37 at 5, -0.55 at 2; its spectrum peaks at 4.8) and
the loss bounces +-20% around its trend over steps 50-230: one warning;
effective step 0.01 / (1 - 0.99) = 1.0; recommend momentum 0.9 at lr 0.1.

Recommends:
``momentum``: ``value`` 0.9 (or, from 0.9 or below, 1 - 2 (1 - momentum)),
``lr`` = the lr that keeps the effective step lr / (1 - momentum), and
Smith's short-run grid of momentum 0.9, 0.95, 0.97, 0.99 with the lr that
keeps the effective step for each.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from .. import rolling
from ..findings import Finding, Recommendation, Severity, round_sig
from ..model import Run
from .registry import Check, Scope

GRID = (0.9, 0.95, 0.97, 0.99)


@dataclass(frozen=True)
class Config:
    min_momentum: float = 0.8
    min_correlation: float = 0.3
    max_trough: float = -0.3
    min_period: int = 4
    min_points: int = 60
    min_amplitude: float = 0.08


def applies(run: Run) -> str | None:
    if run.momentum is None:
        return "no momentum in the config or the logs"
    if run.momentum < Config.min_momentum:
        return f"momentum below {Config.min_momentum}: ringing would not be momentum's"
    return None


def detect(run: Run, config: Config) -> list[Finding]:
    # early_instability and loss_spike ask too (an FFT of the whole run each): found once per run and config
    found = run.__dict__.setdefault("_momentum_oscillation", {})
    if config not in found:
        found[config] = _detect(run, config)
    return list(found[config])


def _detect(run: Run, config: Config) -> list[Finding]:
    updates = run.updates()
    steps = run.column(updates, "step")
    found = []
    for column in ("loss", "grad_norm"):
        if not run.has(column):  # (a column without values has no points to ring)
            continue
        values = run.column(updates, column, float)
        keep = np.isfinite(values) & (values > 0)
        if keep.sum() < config.min_points:
            continue
        ringing = _ringing(np.log10(values[keep]), config)
        if ringing is not None:
            found.append((ringing[1], column, ringing[0], ringing[2], steps[keep]))
    if not found:
        return []
    correlation, column, period, trough, where = max(found)

    loss_steps, amplitude, envelope = _loss_oscillation(updates, period)
    if not amplitude >= config.min_amplitude:
        return []  # the oscillation is there but too small in the loss to cost anything
    ringing_steps = loss_steps[envelope >= 0.5 * np.nanmax(envelope)] if np.isfinite(envelope).any() else where
    first, last = int(ringing_steps[0]), int(ringing_steps[-1])
    momentum, lr = run.momentum, run.lr
    effective = lr / (1 - momentum) if lr else None
    evidence = {
        "period_steps": int(period),
        "relative_amplitude": amplitude,
        "momentum": momentum,
        "lr": lr,
        "effective_lr": effective,
        "series": column,
        "autocorrelation_at_period": correlation,
        "autocorrelation_trough": trough,
        "periods": {run.name: [[first, last]]},
    }
    return [
        Finding(
            check="momentum_oscillation",
            severity=Severity.WARNING,
            study=run.study,
            runs=(run.name,),
            steps=(first, last),
            title=(
                f"{run.name}: the {'loss' if column == 'loss' else 'gradient norm'} rings with a period of {period} "
                f"steps (momentum {momentum:g}"
                + (f", effective step lr/(1-momentum) = {effective:.3g}" if effective else "")
                + "): under-damped"
            ),
            detail=(
                f"Detrended, the {column.replace('_', ' ')} correlates {correlation:+.2f} with itself one period "
                f"({period} steps) later and {trough:+.2f} half a period later: a regular oscillation, not noise. "
                f"The loss swings +-{amplitude:.0%} around its trend over steps {first}-{last}."
            ),
            evidence=evidence,
            recommendation=_recommend(momentum, lr),
        )
    ]


def _ringing(x: np.ndarray, config: Config):
    """(period, autocorrelation at it, trough before it) when the detrended series rings, else None."""
    n = len(x)
    x = x[int(0.05 * n) :]
    # A rolling mean (O(n) at any window; a median over a fifth of a 1M-step run takes seconds).
    trend = rolling.mean(x, max(9, len(x) // 5) | 1, center=True, min_periods=1)
    residual = x - trend
    residual = residual - residual.mean()
    if not np.any(residual):
        return None
    from scipy import signal as sps  # imported here: ~1 s that a log root without momentum never pays

    acf = sps.correlate(residual, residual, mode="full", method="fft")[len(residual) - 1 :]
    acf = acf / acf[0]
    peaks, _ = sps.find_peaks(acf[: len(acf) // 3], prominence=0.1)
    # The fundamental: the first peak that is strong enough (later ones are its multiples).
    peaks = peaks[(peaks >= config.min_period) & (acf[peaks] >= config.min_correlation)]
    if not peaks.size:
        return None
    period = int(peaks[0])
    trough = float(acf[:period].min())
    if trough > config.max_trough:
        return None
    return period, float(acf[period]), trough


def _loss_oscillation(updates, period: int):
    """Steps, relative amplitude of the loss around its one-period rolling mean, and its rolling spread."""
    loss = updates["loss"].to_numpy(dtype=float)
    keep = np.isfinite(loss) & (loss > 0)
    steps, x = updates["step"].to_numpy()[keep], np.log10(loss[keep])
    residual = x - rolling.mean(x, max(period, 3), center=True, min_periods=1)
    skip = int(0.05 * len(x))
    amplitude = float(10 ** (np.sqrt(2) * residual[skip:].std()) - 1) if len(x) > skip + 2 else float("nan")
    envelope = rolling.std(residual, 2 * period + 1, center=True, min_periods=3)
    envelope[:skip] = np.nan
    return steps, amplitude, envelope


def _recommend(momentum: float, lr: float | None) -> Recommendation:
    target = 0.9 if momentum > 0.9 else round(1 - 2 * (1 - momentum), 3)
    values: dict = {"value": target}
    grid = [m for m in GRID if m != momentum]
    if lr:
        effective = lr / (1 - momentum)
        values["lr"] = round_sig(effective * (1 - target))
        values["effective_lr"] = round_sig(effective)
        values["grid"] = [{"momentum": m, "lr": round_sig(effective * (1 - m))} for m in grid]
        why = (
            f"momentum {momentum:g} is under-damped here (Morrison: 0.9-0.95 works well; Smith: short runs at "
            f"0.9/0.95/0.97/0.99 show the best value); momentum {target:g} at lr {values['lr']:g} keeps the "
            f"effective step lr/(1-momentum) = {effective:.3g}; the grid lists the lr that keeps it for each momentum"
        )
    else:
        values["grid"] = [{"momentum": m} for m in grid]
        why = f"momentum {momentum:g} is under-damped here: try {target:g} (Morrison: 0.9-0.95), or Smith's short-run grid"
    return Recommendation(action="momentum", values=values, why=why)


CHECK = Check(
    id="momentum_oscillation",
    scope=Scope.RUN,
    detect=detect,
    config=Config(),
    module=sys.modules[__name__],
    applies=applies,
)
