"""What early_instability and loss_spike share: the run's instability events, minus what divergence reports."""

from __future__ import annotations

import numpy as np

from ..findings import Recommendation, round_sig
from ..instability import InstabilityConfig, InstabilityEvent, run_instability
from ..model import Run
from ..signal import percentile
from . import divergence, momentum_oscillation


def span(run: Run) -> int:
    """The run's planned length in steps (``max_steps``), else its last logged step + 1."""
    return run.max_steps or (run.last_step or 0) + 1


def early_until(run: Run, fraction: float) -> int:
    """The last step that counts as early: ``fraction`` of the run, and at least its first 3 logged steps."""
    steps = run.column(run.updates(), "step")
    first_three = int(steps[min(2, len(steps) - 1)]) if len(steps) else 0
    return max(int(fraction * span(run)), first_three)


# Rises smaller than this in a run whose loss rings are momentum_oscillation's, not instability's.
RINGING_BUMP = 3.0


def events(run: Run, detector: InstabilityConfig) -> list[InstabilityEvent]:
    """Instability events that no other check explains better.

    Left out: non-finite periods and the climb into a divergence
    (``divergence``), and, in a run whose loss rings because of its
    momentum, rises under ``RINGING_BUMP`` (``momentum_oscillation``).
    """
    found = run_instability(run, detector)
    diverged = divergence.detect(run, divergence.CHECK.config)  # found once per run (divergence memoises it)
    cut = diverged[0].steps[0] if diverged and diverged[0].steps else None
    kept = [e for e in found if not e.nonfinite and not (cut is not None and not e.recovered and e.end_step >= cut)]
    if kept and momentum_oscillation.CHECK.why_skipped(run) is None:
        if momentum_oscillation.detect(run, momentum_oscillation.CHECK.config):
            # A ringing loss bounces "in and out of a position" (Morrison): its bumps are the ringing.
            kept = [e for e in kept if e.ratio is None or e.ratio >= RINGING_BUMP]
    return kept


def skip_roles(run: Run) -> str | None:
    if run.role == "short":
        return "short runs are judged by short_run_instability"
    if run.role == "lr_range":
        return "an LR range test blows up by design"
    return None


def grad_norms_before(run: Run, step: int) -> np.ndarray:
    """Finite grad norms of the applied updates before ``step``."""
    if not run.has("grad_norm"):
        return np.array([])
    updates = run.updates()
    norms = run.column(updates, "grad_norm", float)[run.column(updates, "step") < step]
    return norms[np.isfinite(norms)]


def clip_recommendation(run: Run, first_step: int, instability: str) -> Recommendation | None:
    """Clip at the 90th percentile of the grad norms before the instability (Tuning Playbook), or None."""
    norms = grad_norms_before(run, first_step)
    if norms.size < 10:
        return None
    threshold = float(percentile(norms, 90))
    current = run.config.get("clip_norm")
    harder = isinstance(current, (int, float)) and not isinstance(current, bool) and 0 < current <= threshold
    if harder:
        threshold = current / 2
    clipped = int((norms > threshold).sum())
    steps = run.column(run.updates(), "step")
    return Recommendation(
        action="clip",
        # Only what goes into a config; the percentile and its window are said in `why`.
        values={"threshold": round_sig(threshold)},
        why=(
            f"gradient clipping helps {instability} (Tuning Playbook, 'Gradient clipping'); "
            + (
                f"the run already clips at {current:g}: clip harder, at half that"
                if harder
                else f"{threshold:.3g} is the 90th percentile of the unclipped grad norms before the instability "
                f"(steps {int(steps[0])}-{int(first_step) - 1}); it would have clipped {clipped} of those {norms.size} updates"
            )
        ),
    )


def warmup_steps_for(end_step: int, run_span: int) -> int | None:
    """10, 30, 100, 300, ...: the smallest at least twice the unstable period's end (else at least its end), at most 10% of the run."""
    candidates = [m * 10**e for e in range(1, 8) for m in (1, 3) if m * 10**e <= 0.1 * run_span]
    for factor in (2, 1):
        fitting = [c for c in candidates if c >= factor * (end_step + 1)]
        if fitting:
            return fitting[0]
    return None


def halve_lr(run: Run, why: str) -> Recommendation | None:
    """The Tuning Playbook's last resort, when nothing better can be computed: half the run's lr."""
    if not run.lr:
        return None
    return Recommendation(action="lr", values={"value": round_sig(run.lr / 2)}, why=why)
