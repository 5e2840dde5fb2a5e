"""diagnose: automated training-health checks for PyTorch runs.

    from diagnose import read_root, analyze
    analysis = analyze(read_root("logs/"))
    for finding in analysis.document.findings:
        print(finding.severity.value, finding.title)
"""

__version__ = "0.1.0"

from .analyze import Analysis, analyze  # noqa: E402
from .errors import LogError  # noqa: E402
from .findings import Finding, FindingsDocument, Recommendation, Severity  # noqa: E402
from .model import Run, Study  # noqa: E402
from .readers import LogRoot, read_root  # noqa: E402

__all__ = [
    "Analysis",
    "Finding",
    "FindingsDocument",
    "LogError",
    "LogRoot",
    "Recommendation",
    "Run",
    "Severity",
    "Study",
    "analyze",
    "read_root",
]
