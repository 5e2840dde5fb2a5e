"""What tests compare of an analysis: its findings document as written, but for the time it was made."""

from __future__ import annotations

import json


def document(analysis) -> str:
    data = analysis.document.to_dict()
    del data["generated"]
    return json.dumps(data, indent=2, allow_nan=False)
