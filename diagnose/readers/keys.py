"""What each logged metric name means.

Loggers name one quantity many ways (``loss``, ``train/loss``,
``train_loss_step``, ``trl``; ``eval_loss``, ``val/loss``, ``val_loss_epoch``).
``classify`` decides which raw key plays which part of a Run (``loss``,
``grad_norm``, ``lr``, ``momentum``, an evaluation, an extra column); a user's
``KeyMap`` names unusual keys and wins over the known names. Readers sniff
every folder with these names on every run, so this module builds no table
(``records`` does, for the runs that are read) and imports no pandas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

STEP_ROLES = ("loss", "grad_norm", "lr", "momentum")

# Known names, normalized (lower case, runs of non-alphanumerics as "_"), best first.
STEP_NAMES = ("step", "global_step", "trainer_global_step", "iteration", "iter", "it", "s", "steps")
KNOWN = {
    "loss": ("train_loss_step", "train_loss", "training_loss", "loss_train", "train_loss_iter", "loss_step",
             "loss", "trl", "train_total_loss", "total_loss"),
    "grad_norm": ("grad_norm", "train_grad_norm", "gradient_norm", "train_gradient_norm", "grad_norm_step",
                  "train_grad_norm_step", "gnorm", "total_grad_norm", "grad_norm_total"),
    "lr": ("lr", "learning_rate", "train_lr", "train_learning_rate", "lr_step", "lr_0", "lr_pg0"),
    "momentum": ("momentum", "train_momentum", "beta1", "train_beta1"),
}
# Lightning's LearningRateMonitor: ``lr-Adam``, ``lr-SGD/pg1``, ``lr-SGD-momentum``.
LR_MONITOR = re.compile(r"lr_([a-z0-9]+?)(?:_pg(\d+))?")
MOMENTUM_MONITOR = re.compile(r"lr_([a-z0-9]+?)(?:_pg(\d+))?_momentum")

EVAL_PREFIXES = ("eval", "val", "valid", "validation", "test", "dev")
EVAL_ALIASES = {"tel": ("val", "loss")}  # llm.c prints the validation loss as `tel`
# Names that describe the run, not a step: kept out of the steps table.
SUMMARY_NAMES = frozenset({"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos",
                           "train_train_loss", "train_total_flos", "train_train_runtime",
                           "train_train_samples_per_second", "train_train_steps_per_second"})


@lru_cache(maxsize=4096)
def normalize(name: str) -> str:
    """``Train/Loss-Step`` -> ``train_loss_step``: the form names are matched in."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass(frozen=True)
class KeyMap:
    """Names of logged keys that the user says hold a quantity (CLI ``--loss-key`` ...)."""

    loss: str | None = None
    valid: str | None = None
    grad_norm: str | None = None
    lr: str | None = None
    momentum: str | None = None
    step: str | None = None

    def user_key(self, role: str) -> str | None:
        return getattr(self, role)


DEFAULT_KEYS = KeyMap()


@dataclass
class Roles:
    """Which raw column plays which part."""

    step: dict[str, str] = field(default_factory=dict)  # role -> raw column
    evals: dict[tuple[str, str], str] = field(default_factory=dict)  # (split, metric) -> raw column
    extras: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    # (column used, column left out) of keys that differ only in case or punctuation (``Loss`` / ``loss``):
    # one name to the rules above, so only one of them can play its part (``records.assemble`` says so)
    twins: list[tuple[str, str]] = field(default_factory=list)

    def describe(self) -> dict[str, str]:
        """``{"loss": "train/loss", "eval:loss": "eval/loss", ...}``: what ``diagnose runs`` shows."""
        described = dict(self.step)
        described.update({f"{split}:loss": raw for (split, metric), raw in self.evals.items() if metric == "loss"})
        return described


def find_step_column(columns: list[str], keys: KeyMap = DEFAULT_KEYS) -> str | None:
    """The column that numbers the steps: the user's ``--step-key``, else a known name."""
    if keys.step is not None:
        return keys.step if keys.step in columns else None
    by_norm = {}
    for column in columns:
        by_norm.setdefault(normalize(column), column)
    return next((by_norm[name] for name in STEP_NAMES if name in by_norm), None)


def classify(columns: list[str], keys: KeyMap = DEFAULT_KEYS, step_column: str = "step") -> Roles:
    """Decide what every column is; a user's key wins over every known name."""
    roles = Roles()
    remaining = [c for c in columns if c != step_column]
    norms = {c: normalize(c) for c in remaining}
    taken: set[str] = set()

    for role in STEP_ROLES:
        user = keys.user_key(role)
        if user is not None and user in norms:
            roles.step[role] = user
            taken.add(user)
    if keys.valid is not None and keys.valid in norms:
        roles.evals[("valid", "loss")] = keys.valid
        taken.add(keys.valid)

    for role in STEP_ROLES:
        if role in roles.step:
            continue
        rank = {name: i for i, name in enumerate(KNOWN[role])}
        candidates = [c for c in remaining if c not in taken and norms[c] in rank]
        candidates.sort(key=lambda c: rank[norms[c]])
        if not candidates and role in ("lr", "momentum"):
            candidates = _monitor_candidates(remaining, norms, taken, role)
        if candidates:
            roles.step[role] = candidates[0]
            taken.add(candidates[0])

    _classify_evals(remaining, norms, taken, roles)
    for column in remaining:
        if column in taken:
            continue
        if norms[column] in SUMMARY_NAMES:
            roles.summary.append(column)
        elif norms[column] not in STEP_ROLES and column not in ("split",):
            roles.extras.append(column)
    used = [*roles.step.values(), *roles.evals.values(), *roles.extras, *roles.summary]
    used_by_norm = {norms[c]: c for c in reversed(used)}  # the one that plays a part first, at a tie
    roles.twins = [(used_by_norm[norms[c]], c) for c in remaining
                   if c not in used and c != "split" and norms[c] in used_by_norm]
    return roles


def _monitor_candidates(remaining, norms, taken, role) -> list[str]:
    pattern = LR_MONITOR if role == "lr" else MOMENTUM_MONITOR
    found = []
    for column in remaining:
        match = pattern.fullmatch(norms[column])
        if column not in taken and match and not (role == "lr" and norms[column].endswith("_momentum")):
            found.append((int(match.group(2) or 0), column))
    return [column for _, column in sorted(found)]


def _classify_evals(remaining, norms, taken, roles: Roles) -> None:
    """``eval_loss``, ``val/acc``, ``val_loss_epoch``, ``loss_val``, HF groups ``eval_<g>_loss``."""
    groups = {m.group(1) for c in remaining if (m := re.fullmatch(r"eval_(.+)_loss", norms[c]))}
    choices: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for column in remaining:
        if column in taken:
            continue
        parsed = _eval_name(norms[column], groups)
        if parsed is not None:
            split, metric, rank = parsed
            choices.setdefault((split, metric), []).append((rank, column))
    for (split, metric), ranked in choices.items():
        if (split, metric) in roles.evals:
            continue
        column = min(ranked)[1]
        roles.evals[(split, metric)] = column
        taken.update(c for _, c in ranked)


def _eval_name(norm: str, groups: set[str]) -> tuple[str, str, int] | None:
    """(split, metric, rank) of an evaluation key; lower rank wins when names collide."""
    if norm in EVAL_ALIASES:
        return (*EVAL_ALIASES[norm], 0)
    for group in sorted(groups, key=len, reverse=True):
        prefix = f"eval_{group}_"
        if norm.startswith(prefix) and len(norm) > len(prefix):
            return group, norm[len(prefix):], 0
    rank = 0
    base = norm
    if base.endswith("_epoch"):
        base, rank = base[: -len("_epoch")], 1
    elif base.endswith("_step"):
        base, rank = base[: -len("_step")], 2  # per-batch values of an evaluation: the last resort
    for prefix in EVAL_PREFIXES:
        if base.startswith(prefix + "_") and len(base) > len(prefix) + 1:
            return prefix, base[len(prefix) + 1:], rank
        if base.endswith("_" + prefix) and len(base) > len(prefix) + 1:
            return prefix, base[: -len(prefix) - 1], rank
    if rank == 1 and base.startswith("train_"):  # Lightning's per-epoch training mean
        return "train", base[len("train_"):], rank
    return None


def number(value) -> float | None:
    """A JSON/YAML value as a float: numbers, and strings that spell one (YAML reads ``1e-3`` as text)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


# Hyperparameter names that mean a Run.config key (CONTRACT §1), normalized.
CONFIG_ALIASES = {
    "lr": ("lr", "learning_rate", "base_lr", "max_lr", "peak_lr", "init_lr"),
    "momentum": ("momentum", "beta1", "adam_beta1"),
    "batch_size": ("batch_size", "train_batch_size", "per_device_train_batch_size", "bs"),
    "max_steps": ("max_steps", "total_steps", "num_steps", "num_iterations", "max_iters", "train_steps"),
    "warmup_steps": ("warmup_steps", "num_warmup_steps", "warmup"),
    "weight_decay": ("weight_decay", "wd"),
    "seed": ("seed",),
    "max_epochs": ("max_epochs", "num_train_epochs", "num_epochs", "epochs"),
    "clip_norm": ("clip_norm", "max_grad_norm", "gradient_clip_val", "grad_clip"),
    "optimizer": ("optimizer", "optim", "optimizer_name"),
}
_TEXT_CONFIG = frozenset({"optimizer"})
_POSITIVE = frozenset({"lr", "batch_size", "max_steps", "max_epochs"})  # HF writes max_steps=-1 for "not set"


def config_from(hparams: dict, keep_others: bool = True) -> dict:
    """The recognised keys found in a flat or nested hyperparameter dict, plus (``keep_others``) every other
    scalar or list as it was."""
    config: dict = {}
    flat = dict(_flatten(hparams))
    for key, value in flat.items():
        if keep_others and (isinstance(value, (str, int, float, bool, list)) or value is None):
            config.setdefault(key, value)
    for target, aliases in CONFIG_ALIASES.items():
        for alias in aliases:
            value = next((v for k, v in flat.items() if normalize(k.rsplit(".", 1)[-1]) == alias), None)
            if value is None:
                continue
            if target in _TEXT_CONFIG:
                if isinstance(value, str):
                    config[target] = value
                    break
                continue
            if target == "momentum" and isinstance(value, (list, tuple)) and value:
                value = value[0]
            parsed = _whole(value) if isinstance(value, int) and not isinstance(value, bool) else number(value)
            if parsed is not None and np.isfinite(parsed) and not (target in _POSITIVE and parsed <= 0):
                whole = target in ("batch_size", "max_steps", "warmup_steps", "max_epochs", "seed")
                config[target] = int(parsed) if whole and float(parsed).is_integer() else parsed
                break
    if "momentum" not in config:
        betas = next((v for k, v in flat.items() if normalize(k.rsplit(".", 1)[-1]) in ("betas", "momentum_betas")),
                     None)
        if isinstance(betas, (list, tuple)) and betas and number(betas[0]) is not None:
            config["momentum"] = number(betas[0])
    return config


def _whole(value: int) -> int | None:
    """An int kept exact, or None past int64 (no hyperparameter is that large)."""
    return value if abs(value) < 2**63 else None


def _flatten(value: dict, prefix: str = ""):
    """``{"optim": {"lr": 1}}`` -> ``("optim.lr", 1)``."""
    for key, inner in value.items():
        if isinstance(inner, dict):
            yield from _flatten(inner, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", inner
