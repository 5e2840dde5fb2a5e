"""Lightning ``CSVLogger``: ``metrics.csv`` and ``hparams.yaml`` of one ``version_N`` folder.

``metrics.csv`` has one row per ``self.log`` flush: ``epoch``, ``step`` and a
column per logged name, empty where that row did not log it. Metrics logged
with ``on_step`` and ``on_epoch`` get ``_step`` / ``_epoch`` suffixes; the
per-step training loss makes the steps, ``val_*`` metrics the evaluations,
``train_loss_epoch`` the per-epoch ``train`` split, and
``LearningRateMonitor``'s ``lr-Adam`` (``lr-SGD-momentum``) the lr (momentum).
``hparams.yaml`` (``save_hyperparameters``) gives the config: ``lr`` or
``learning_rate``, ``momentum`` or ``betas``, ``batch_size``, ... so that the
``version_N`` siblings of one ``lightning_logs`` folder form an lr study.
``--step-key`` may name another step column only when there is no ``step``
column (a plain CSV with both is an error too): Lightning's ``step`` is never
dropped silently.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ..errors import LogError
from ..model import Run
from .keys import DEFAULT_KEYS, KeyMap, classify, config_from

# The table code (pandas, pyarrow: ``records``, ``table``) is imported where a run's tables are built,
# and yaml where hparams.yaml is read: sniffing the folders of a re-run that the cache serves then imports
# none of them (0.3 s).

FORMAT = "lightning.csv"
METRICS_FILE = "metrics.csv"
HPARAMS_FILE = "hparams.yaml"


def sniff(folder: Path) -> bool:
    return os.path.isfile(os.path.join(folder, METRICS_FILE))


def read(folder: Path, study: str, keys: KeyMap = DEFAULT_KEYS) -> Run:
    """The run logged by a CSVLogger into ``folder``."""
    from .records import assemble
    from .table import Table, read_header, read_table

    path = folder / METRICS_FILE
    step_column = keys.step or "step"
    header = read_header(path, (step_column,))
    if step_column != "step" and "step" in header:
        # as a plain CSV with both columns: the logged 'step' would be lost under the one name records keep
        raise LogError(path, f"--step-key {step_column!r} names the step column, but Lightning's own 'step' column "
                             "would then be lost: leave out --step-key", line=1)
    roles = classify(header, keys, step_column)
    numeric = tuple(set(roles.step.values()) | set(roles.evals.values()))  # wrong values: an error at their line
    table = read_table(path, required=(step_column,), numeric=numeric, step=step_column)
    frame = table.frame.rename(columns={step_column: "step"})
    records = Table(frame=frame, nan_rows=table.nan_rows, notes=table.notes)
    parts = assemble(path, records, keys, what=f"columns of {METRICS_FILE}", line_of=lambda key: 1)
    hparams_path = folder / HPARAMS_FILE
    config = config_from(read_hparams(hparams_path)) if hparams_path.is_file() else {}
    return parts.run(folder, study, format=FORMAT, config=config)


@functools.cache
def _hparams_loader():
    """Safe YAML that reads ``!!python/...`` tags as plain values instead of running code."""
    import yaml

    def plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    class HparamsLoader(yaml.SafeLoader):
        pass

    HparamsLoader.add_multi_constructor("", plain)
    return HparamsLoader


def read_hparams(path: Path) -> dict:
    """``hparams.yaml`` as a dict (empty file: no hyperparameters)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LogError(path, "not UTF-8 text (is this a YAML file?)") from None
    try:
        hparams = yaml.load(text, Loader=_hparams_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        reason = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise LogError(path, f"invalid YAML: {reason}", line=mark.line + 1 if mark else None) from None
    except (ValueError, TypeError, RecursionError) as error:
        raise LogError(path, f"invalid YAML: {error}") from None
    if hparams is None:
        return {}
    if not isinstance(hparams, dict):
        raise LogError(path, f"expected a mapping of hyperparameters, found {type(hparams).__name__}", line=1)
    return {str(key): value for key, value in hparams.items()}
