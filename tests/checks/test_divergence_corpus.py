"""divergence on the labelled corpus: reported at the step where the loss began to explode, not the first NaN."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cases_for

POSITIVE, NEGATIVE = cases_for("divergence")


@pytest.mark.parametrize("name", POSITIVE)
def test_diverged_runs_are_errors_from_the_start_of_the_explosion(corpus, name):
    [finding] = corpus.findings("divergence", name)
    run = corpus.run(name)
    steps = run.steps.set_index("step")
    loss = steps["loss"]
    first_nan = int(steps.index[~np.isfinite(steps[["loss", "grad_norm"]].to_numpy()).all(axis=1)][0])
    start = finding.steps[0]
    assert finding.severity.value == "error"
    assert finding.evidence["first_nonfinite_step"] == first_nan
    assert start < first_nan and finding.evidence["divergence_step"] == start
    # From the reported start on, the loss never gets back to its best before it (measured here).
    assert loss[start:first_nan - 1].min() > loss[:start].min()
    assert loss[:first_nan - 1].max() > 1e3 * loss[:start].min()


@pytest.mark.parametrize("name", NEGATIVE)
def test_quiet_on_runs_that_did_not_diverge(corpus, name):
    assert corpus.findings("divergence", name) == []
