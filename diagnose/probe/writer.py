"""From device buffers to rows on disk: the one host copy per flush, and the background writer thread.

``Window.pack`` runs on the training thread: it sums the sharded parts over
ranks (one collective), stacks every device value of the window into one
tensor per device and starts one non-blocking copy to the host. ``Writer``
runs on its own thread: it waits for that copy, turns the window into CSV
rows, appends them, and raises alerts. All of its I/O failures become one
warning; the training thread never waits for the disk.
"""

from __future__ import annotations

import math
import queue
import statistics
import threading
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter

import torch
import torch.distributed as dist

from .files import CsvAppender, write_run_json
from .norms import Norm

# Buffer columns that the writer turns into the CONTRACT's columns; any other one is an extra, written as is.
CORE = ("step", "loss", "norm", "lr", "momentum", "time", "scaled", "clip_norm")
QUEUE_WINDOWS = 8  # windows waiting for the disk before new ones are dropped: bounded memory
START_FACTOR = 10.0  # an explosion is also this far above the first window's median (as the divergence check)


class Columns:
    """The steps not flushed yet: one tuple of the ``CORE`` columns per step (one append), extra columns by name."""

    def __init__(self):
        self.rows: list[tuple] = []
        self.extra: dict[str, list] = {}
        # Every row from the usual step of a Plan on the CPU: only the losses are left to look at (at the flush:
        # a look at a tensor costs ~1 us on the cache that a training step leaves, ~3x less in one pass).
        self.usual_cpu = True

    def __len__(self) -> int:
        return len(self.rows)

    def on_cpu(self) -> bool:
        """Whether every tensor among the rows is on the CPU (then the writer thread may pack them)."""
        if not self.usual_cpu:
            return on_cpu(self.data)
        if not self.rows:
            return True
        # The Plan vouches for the norms, but for a model moved to another device since: the first and last tell.
        return on_cpu({"loss": [row[1] for row in self.rows], "norm": [self.rows[0][2], self.rows[-1][2]]})

    def set_last_row(self, extras: dict) -> None:
        """Fill the extra columns of the newest step."""
        for key, value in extras.items():
            self.set_last(key, value)

    def set_last(self, key: str, value) -> None:
        """Fill ``key`` of the newest step (e.g. its update norm, known after ``optimizer.step``)."""
        column = self.extra.setdefault(key, [])
        column.extend([None] * (len(self.rows) - len(column)))
        column[-1] = value

    @property
    def data(self) -> dict[str, list]:
        """Column name -> one value per step."""
        columns = dict(zip(CORE, map(list, zip(*self.rows)))) if self.rows else {key: [] for key in CORE}
        for key, values in self.extra.items():
            columns[key] = values + [None] * (len(self.rows) - len(values))
        return columns


def eval_columns(rows: list[dict]) -> dict[str, list]:
    columns: dict[str, list] = {}
    for number, row in enumerate(rows):
        for key, value in row.items():
            columns.setdefault(key, [None] * number).append(value)
        for values in columns.values():
            values.extend([None] * (number + 1 - len(values)))
    return columns


@dataclass
class Packed:
    """One column: host values, and where its device values sit in a device group's concatenated tensor."""

    values: list
    positions: list[int] = field(default_factory=list)
    group: int = -1
    start: int = 0


@dataclass
class Window:
    """The columns of one flush; a Norm column is a pair (replicated, sharded) of ``Packed``."""

    steps: dict
    evals: dict
    host: list[torch.Tensor] = field(default_factory=list)
    events: list = field(default_factory=list)

    @classmethod
    def pack(cls, steps: dict[str, list], evals: list[dict], world_size: int = 1) -> Window:
        """Reduce over ranks (when ``world_size`` > 1) and start the copy to the host; never waits."""
        if world_size > 1:
            _reduce_over_ranks(steps, world_size)
        groups: dict[torch.device, list[torch.Tensor]] = {}  # device -> 1-D chunks, one per column
        window = cls(
            steps={key: _pack_column(values, groups, key == "norm") for key, values in steps.items()},
            evals={key: _pack_column(values, groups) for key, values in eval_columns(evals).items()},
        )
        for device, chunks in groups.items():
            stacked = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
            if device.type == "cpu":
                window.host.append(stacked)
                window.events.append(None)
            elif device.type == "cuda":
                window.host.append(stacked.to("cpu", non_blocking=True))
                event = torch.cuda.Event()
                event.record()
                window.events.append(event)
            else:  # other accelerators: a plain copy (it waits for the device once per flush)
                window.host.append(stacked.to("cpu"))
                window.events.append(None)
        return window

    @classmethod
    def pack_usual_cpu(cls, rows: list[tuple], evals: list[dict]) -> tuple[dict, dict] | None:
        """The step columns as written (as ``step_columns`` makes them) and the eval columns of the usual step's
        window on the CPU (a tensor loss, the per-tensor norms per row: a 1-D tensor, or a listed Plan's tuple of
        0-dim tensors), on the writer thread; None for any other window.

        The torch calls of ``Window.pack`` (two stacks, the norms, a cat, tolist) without its per-column
        bookkeeping, nor ``Packed`` columns to resolve: each Python or torch call costs ~5-40 us on the cold
        caches that a training step leaves, and each 0-dim tensor of a listed Plan's window ~1 us (stacked,
        then freed with the rows).
        """
        if not rows:
            return None
        step, loss, norm, lr, momentum, time, scaled, clip_norm = zip(*rows)  # writer.CORE's order
        if set(map(type, loss)) != _TENSOR_ONLY or any(scaled) or clip_norm.count(None) != len(clip_norm):
            return None
        count = len(rows)
        try:
            if type(norm[0]) in _LISTED:  # a listed Plan's: one stack of the window's per-tensor norms
                if len(set(map(len, norm))) != 1:
                    return None
                norms = torch.stack(list(chain.from_iterable(norm))).view(count, -1)
            else:
                norms = torch.stack(norm)
            values = torch.cat([torch.stack(loss), torch.linalg.vector_norm(norms, dim=1)])
        except RuntimeError:  # not one value per step (as _chunk tells)
            return None
        # tolist is exact in any float dtype (as _chunk's float32 copy of a float16 value). total_norm of a norm
        # without a sharded part is sqrt(r * r): r itself unless it is a float64 (r * r is exact in a float64).
        host = values.tolist()
        norm = host[count:] if values.dtype != torch.float64 else list(map(_root_of_square, host[count:]))
        steps = {"step": step, "loss": host[:count], "grad_norm": norm, "lr": lr, "momentum": momentum, "time": time}
        return steps, cls.pack({}, evals).resolve()[1] if evals else {}

    def resolve(self) -> tuple[dict, dict]:
        """Wait for the host copy (on the writer thread); the columns as plain values, Norm columns as totals."""
        for event in self.events:
            if event is not None:
                event.synchronize()
        host = [tensor.tolist() for tensor in self.host]
        return _unpack(self.steps, host), _unpack(self.evals, host)


def on_cpu(columns: dict[str, list]) -> bool:
    """Whether every tensor among the columns' values (Norm parts and listed norms included) is on the CPU."""
    for values in columns.values():
        kinds = set(map(type, values))
        if kinds <= _HOST_TYPES:
            continue
        if kinds == _TENSOR_ONLY:  # the loss and (usually) the norm column
            if not all(map(_is_cpu, values)):
                return False
            continue
        if not kinds.isdisjoint(_LISTED):
            values = [part for v in values for part in (v if type(v) in _LISTED else (v,))]
            kinds = set(map(type, values))
        if Norm in kinds:
            values = [part for v in values for part in ((v.replicated, v.sharded_sumsq) if type(v) is Norm else (v,))]
        if not all(map(_is_cpu, filter(_is_tensor, values))):
            return False
    return True


_HOST_TYPES = {int, float, bool, str, type(None)}
_TENSOR_ONLY = {torch.Tensor}
_LISTED = {tuple, list}  # the per-tensor norms of a listed Plan's step, as _foreach_norm returns them
_is_cpu = attrgetter("is_cpu")


def _is_tensor(value) -> bool:
    return isinstance(value, torch.Tensor)


def _pack_column(values: list, groups: dict, norm: bool = False):
    # A Norm column holds Norm or None; the "norm" column may also hold bare tensors or tuples of them, the
    # replicated part of the usual step (no Norm to build per step). One look at the types settles a host-only
    # column.
    kinds = set(map(type, values))
    if kinds <= _HOST_TYPES:
        return Packed(values)
    if norm or Norm in kinds:
        replicated = [v.replicated if type(v) is Norm else torch.stack(v) if type(v) in _LISTED else v for v in values]
        sharded = [v.sharded_sumsq if type(v) is Norm else None for v in values]
        present = [v is not None for v in values]
        return _pack_values(replicated, groups, norms=True), _pack_values(sharded, groups), present
    return _pack_values(values, groups)


def _pack_values(values: list, groups: dict, norms: bool = False) -> Packed:
    """Put the column's device values into one 1-D chunk of its device's group; ``norms``: reduce each to its L2 norm."""
    kinds = set(map(type, values))  # a column is mostly of one type: look at each type once
    if kinds == _TENSOR_ONLY:
        positions = list(range(len(values)))
    elif any(issubclass(kind, torch.Tensor) for kind in kinds):
        positions = [i for i, value in enumerate(values) if isinstance(value, torch.Tensor)]
    else:
        return Packed(values)
    chunk = _chunk([values[i] for i in positions], norms)
    group = groups.setdefault(chunk.device, [])
    packed = Packed(list(values), positions, list(groups).index(chunk.device), sum(map(len, group)))
    group.append(chunk)
    return packed


def _chunk(tensors: list[torch.Tensor], norms: bool) -> torch.Tensor:
    try:
        # The usual case: 0-dim values, or (norms) the per-tensor norms of every step, one shape, one device.
        stacked = torch.stack(tensors)
        if norms and stacked.dim() == 2:
            stacked = torch.linalg.vector_norm(stacked, dim=1)
        elif stacked.dim() != 1:
            raise RuntimeError("not one value per step")
    except RuntimeError:
        device = tensors[0].device
        if norms:
            tensors = [torch.linalg.vector_norm(t) for t in tensors]
        stacked = torch.stack([t.reshape(()).to(device=device, non_blocking=True) for t in tensors])
    return stacked if stacked.dtype in (torch.float32, torch.float64) else stacked.to(torch.float32)


def _unpack(columns: dict, host: list[list[float]]) -> dict:
    out = {}
    for key, column in columns.items():
        if isinstance(column, tuple):
            replicated, sharded, present = (_values(column[0], host), _values(column[1], host), column[2])
            if not column[1].positions and sharded.count(None) == len(sharded):  # no sharded part: sqrt(r * r)
                out[key] = [_root_of_square(r) if p else None for r, p in zip(replicated, present)]
            else:
                out[key] = [total_norm(Norm(r, s)) if p else None for r, s, p in zip(replicated, sharded, present)]
        else:
            out[key] = _values(column, host)
    return out


def _values(packed: Packed, host: list[list[float]]) -> list:
    if not packed.positions:
        return packed.values
    values, source = packed.values, host[packed.group]
    if len(packed.positions) == len(values):  # every value from the device: one slice
        return source[packed.start:packed.start + len(values)]
    for offset, position in enumerate(packed.positions):
        values[position] = source[packed.start + offset]
    return values


def _reduce_over_ranks(data: dict[str, list], world_size: int) -> None:
    """One all-reduce per flush: the mean loss over ranks and every sharded sum of squares."""
    losses = data["loss"]
    norm_keys = [key for key, values in data.items() if any(isinstance(v, Norm) for v in values)]
    parts = list(losses) + [v.sharded_sumsq if type(v) is Norm else None for key in norm_keys for v in data[key]]
    device = _collective_device(parts)
    vector = torch.stack([
        v.reshape(()).to(device=device, dtype=torch.float32) if isinstance(v, torch.Tensor)
        else torch.tensor(math.nan if v is None and i < len(losses) else (v or 0.0), device=device)
        for i, v in enumerate(parts)
    ])
    dist.all_reduce(vector)
    reduced = vector.unbind()
    data["loss"] = [total / world_size for total in reduced[:len(losses)]]
    offset = len(losses)
    for key in norm_keys:
        column = data[key]
        for i, value in enumerate(column):
            if type(value) is Norm and value.sharded_sumsq is not None:
                column[i] = Norm(value.replicated, reduced[offset + i])
        offset += len(column)


def _collective_device(values) -> torch.device:
    for value in values:
        if isinstance(value, torch.Tensor):
            return value.device
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _root_of_square(value: float) -> float:
    """``total_norm`` of a norm without a sharded part."""
    square = value * value
    return math.sqrt(square) if not math.isnan(square) else math.nan


def total_norm(norm: Norm | None) -> float | None:
    """``sqrt(replicated**2 + sharded_sumsq)`` of resolved parts."""
    if norm is None:
        return None
    replicated = norm.replicated if norm.replicated is not None else 0.0
    sharded = norm.sharded_sumsq if norm.sharded_sumsq is not None else 0.0
    square = replicated * replicated + sharded
    return math.sqrt(square) if not math.isnan(square) and square >= 0 else math.nan


class Writer(threading.Thread):
    """Writes windows to the run directory (when ``files`` is given) and raises alerts, on its own thread."""

    def __init__(self, files, meta: dict, *, explode_factor: float, alert, warn):
        super().__init__(name="diagnose-probe-writer", daemon=True)
        self.steps, self.folder, self.resume = files if files is not None else (None, None, False)
        self.evals: CsvAppender | None = None
        self.meta = meta
        self.explode_factor = explode_factor
        self.alert = alert
        self.warn = warn
        # SimpleQueue waits in C: queue.Queue's Condition runs ~50 us of Python per window on the writer thread.
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.diverged = False
        self.fired: set[str] = set()
        self.first_median: float | None = None
        self.best_median = math.inf

    def submit(self, window: Window) -> None:
        if self.queue.qsize() < QUEUE_WINDOWS:  # one thread puts (the loop's): none slips in between
            self.queue.put(window)
        else:
            self.warn("behind", "the disk is too slow for the log: windows of steps are dropped; training goes on")

    def finish(self, status: str | None) -> None:
        """Ask the thread to set ``status`` (None: leave run.json alone) after the queued windows, then end."""
        self.queue.put(("finish", status))

    def run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if isinstance(item, tuple):
                    self._finish(item[1])
                    return
                if callable(item):  # a window of CPU values: packed here, its step columns as written
                    steps, evals = item()
                    # Its rows freed now, while the stack left them in the cache: on the next window's cold
                    # cache, freeing the 0-dim tensors of the usual MLP window costs ~300 us more.
                    del item
                else:
                    steps, evals = item.resolve()
                    steps = step_columns(steps)
                self._watch(steps)
                self._write(steps, evals)
            except Exception as error:  # noqa: BLE001 - a writer bug must not reach training
                self.warn("writer", f"the log writer failed: {error!r}; training goes on")

    def _watch(self, steps: dict) -> None:
        skipped = steps.get("skipped")
        applied = range(len(steps["step"])) if skipped is None else [i for i, s in enumerate(skipped) if not s]
        finite = _all_finite(steps["loss"])
        for i in () if finite and _all_finite(steps["grad_norm"]) else applied:
            loss, grad_norm = steps["loss"][i], steps["grad_norm"][i]
            if _nonfinite(loss) or _nonfinite(grad_norm):
                self.diverged = True
                what, value = ("loss", loss) if _nonfinite(loss) else ("gradient norm", grad_norm)
                step = steps["step"][i]
                self._fire("nonfinite", step, value, f"{what} is {value} at step {step}")
                break
        if finite and skipped is None:  # the usual window: every loss counts
            losses = steps["loss"]
        else:
            losses = [steps["loss"][i] for i in applied]
            losses = [loss for loss in losses if loss is not None and math.isfinite(loss)]
        if not losses:
            return
        median = statistics.median(losses)
        if self.first_median is None:
            self.first_median = median
        last = steps["step"][applied[-1]]
        if median > 0 and self.best_median > 0 and median > self.explode_factor * self.best_median \
                and median > START_FACTOR * self.first_median:
            self._fire(
                "explosion", last, median,
                f"loss exploded: median {median:.4g} up to step {last}, "
                f"{median / self.best_median:.3g}x the best window median {self.best_median:.4g}",
            )
        self.best_median = min(self.best_median, median)

    def _fire(self, kind: str, step: int, value: float, message: str) -> None:
        if kind not in self.fired:
            self.fired.add(kind)
            from .probe import Alert

            self.alert(Alert(kind=kind, step=step, value=value, message=message))

    def _write(self, steps: dict, evals: dict) -> None:
        if self.steps is None:
            return
        try:
            if steps["step"]:
                self.steps.append(steps)
            if evals:
                if self.evals is None:
                    self.evals = CsvAppender(self.folder / "evals.csv", ["step", "split", "loss"], resume=self.resume)
                self.evals.append(evals)
        except OSError as error:
            self._stop_writing(error)

    def _finish(self, status: str | None) -> None:
        if status is None or self.steps is None:
            return
        if status == "finished" and self.diverged:
            status = "diverged"
        self.meta["status"] = status
        try:
            write_run_json(self.folder, self.meta)
        except OSError as error:
            self._stop_writing(error)

    def _stop_writing(self, error: OSError) -> None:
        self.steps = None
        self.warn("write", f"cannot write the log any more ({error}); training goes on without logging")


def step_columns(data: dict) -> dict:
    """The CONTRACT's step columns of a resolved window."""
    grad_norm = data["norm"]
    out = {name: data[key] for name, key in
           (("step", "step"), ("loss", "loss"), ("grad_norm", "norm"), ("lr", "lr"), ("momentum", "momentum"),
            ("time", "time"))}
    if any(c is not None for c in data["clip_norm"]):
        out["clip_norm"] = data["clip_norm"]
        out["clipped"] = [None if c is None or g is None else int(g > c) for c, g in zip(data["clip_norm"], grad_norm)]
    if any(data["scaled"]):
        out["skipped"] = [int(g is not None and not math.isfinite(g)) if scaled else None
                          for scaled, g in zip(data["scaled"], grad_norm)]
    for key, values in data.items():
        if key not in CORE:
            out[key] = values
    return out


def _all_finite(values: list) -> bool:
    """Every value a finite number, checked in one C-level pass (False also when one is None: the caller looks)."""
    try:
        return all(map(math.isfinite, values))
    except TypeError:
        return False


def _nonfinite(value) -> bool:
    return value is not None and not math.isfinite(value)
