"""The probe's tests need torch; they are skipped with the reason when it is absent."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the probe needs torch (pip install -e '.[torch]')")

torch.set_num_threads(1)
