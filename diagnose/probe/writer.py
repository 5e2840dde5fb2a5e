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

import torch
import torch.distributed as dist

from .files import CsvAppender, write_run_json
from .norms import Norm

QUEUE_WINDOWS = 8  # windows waiting for the disk before new ones are dropped: bounded memory
START_FACTOR = 10.0  # an explosion is also this far above the first window's median (as the divergence check)


@dataclass
class Slot:
    """A value that is still in the window's device tensor: which device group, which index."""

    group: int
    index: int


@dataclass
class Window:
    """The rows of one flush; device values replaced by ``Slot``s into ``host`` tensors."""

    rows: list[dict]
    evals: list[dict]
    host: list[torch.Tensor] = field(default_factory=list)
    events: list = field(default_factory=list)

    @classmethod
    def pack(cls, rows: list[dict], evals: list[dict], world_size: int = 1) -> Window:
        """Reduce over ranks (when ``world_size`` > 1) and start the copy to the host; never waits."""
        if world_size > 1:
            _reduce_over_ranks(rows, world_size)
        groups: dict[torch.device, list[torch.Tensor]] = {}

        def put(value):
            if isinstance(value, Norm):
                return Norm(put(value.replicated), put(value.sharded_sumsq))
            if isinstance(value, torch.Tensor):
                group = groups.setdefault(value.device, [])
                group.append(value)
                return Slot(list(groups).index(value.device), len(group) - 1)
            return value

        window = cls(
            rows=[{key: put(value) for key, value in row.items()} for row in rows],
            evals=[{key: put(value) for key, value in row.items()} for row in evals],
        )
        for device, tensors in groups.items():
            stacked = torch.stack([t.reshape(()).to(torch.float32) for t in tensors])
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

    def resolve(self) -> None:
        """Wait for the host copy (on the writer thread) and put plain floats in place of the slots."""
        for event in self.events:
            if event is not None:
                event.synchronize()
        values = [tensor.tolist() for tensor in self.host]

        def get(value):
            if isinstance(value, Norm):
                return Norm(get(value.replicated), get(value.sharded_sumsq))
            if isinstance(value, Slot):
                return values[value.group][value.index]
            return value

        self.rows = [{key: get(value) for key, value in row.items()} for row in self.rows]
        self.evals = [{key: get(value) for key, value in row.items()} for row in self.evals]


def _reduce_over_ranks(rows: list[dict], world_size: int) -> None:
    """One all-reduce per flush: the mean loss over ranks and every sharded sum of squares."""
    targets: list[tuple[dict, str]] = [(row, "loss") for row in rows]
    targets += [(row, key) for row in rows for key, value in row.items() if isinstance(value, Norm)]
    values = []
    for row, key in targets:
        value = row[key].sharded_sumsq if isinstance(row[key], Norm) else row[key]
        values.append(value)
    device = _collective_device(values)
    vector = torch.stack([
        v.reshape(()).to(device=device, dtype=torch.float32) if isinstance(v, torch.Tensor)
        else torch.tensor(math.nan if v is None and key == "loss" else (v or 0.0), device=device)
        for v, (_, key) in zip(values, targets)
    ])
    dist.all_reduce(vector)
    reduced = vector.unbind()
    for (row, key), value, total in zip(targets, values, reduced):
        if key == "loss":
            row[key] = total / world_size
        elif value is not None:
            row[key] = Norm(row[key].replicated, total)


def _collective_device(values) -> torch.device:
    for value in values:
        if isinstance(value, torch.Tensor):
            return value.device
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


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
        self.steps, self.folder = files if files is not None else (None, None)
        self.evals: CsvAppender | None = None
        self.meta = meta
        self.explode_factor = explode_factor
        self.alert = alert
        self.warn = warn
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_WINDOWS)
        self.diverged = False
        self.fired: set[str] = set()
        self.first_median: float | None = None
        self.best_median = math.inf

    def submit(self, window: Window) -> None:
        try:
            self.queue.put_nowait(window)
        except queue.Full:
            self.warn("behind", "the disk is too slow for the log: windows of steps are dropped; training goes on")

    def finish(self, status: str | None) -> None:
        """Ask the thread to set ``status`` (None: leave run.json alone) after the queued windows, then end."""
        self.queue.put(("finish", status), timeout=30)

    def run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if isinstance(item, tuple):
                    self._finish(item[1])
                    return
                item.resolve()
                rows = [self._step_row(row) for row in item.rows]
                self._watch(rows)
                self._write(rows, item.evals)
            except Exception as error:  # noqa: BLE001 - a writer bug must not reach training
                self.warn("writer", f"the log writer failed: {error!r}; training goes on")

    def _step_row(self, row: dict) -> dict:
        grad_norm = total_norm(row["norm"])
        out = {
            "step": row["step"],
            "loss": row["loss"],
            "grad_norm": grad_norm,
            "lr": row["lr"],
            "momentum": row["momentum"],
            "time": row["time"],
        }
        if row["clip_norm"] is not None:
            out["clip_norm"] = row["clip_norm"]
            out["clipped"] = None if grad_norm is None else int(grad_norm > row["clip_norm"])
        if row["scaled"]:
            out["skipped"] = int(grad_norm is not None and not math.isfinite(grad_norm))
        for key, value in row.items():
            if isinstance(value, Norm) and key != "norm":
                out[key] = total_norm(value)
        return out

    def _watch(self, rows: list[dict]) -> None:
        applied = [row for row in rows if not row.get("skipped")]
        for row in applied:
            bad = _nonfinite(row["loss"]) or (row["grad_norm"] is not None and _nonfinite(row["grad_norm"]))
            if bad:
                self.diverged = True
                what = "loss" if _nonfinite(row["loss"]) else "gradient norm"
                value = row["loss"] if what == "loss" else row["grad_norm"]
                self._fire("nonfinite", row["step"], value, f"{what} is {value} at step {row['step']}")
                break
        losses = [row["loss"] for row in applied if row["loss"] is not None and math.isfinite(row["loss"])]
        if not losses:
            return
        median = statistics.median(losses)
        if self.first_median is None:
            self.first_median = median
        if median > 0 and self.best_median > 0 and median > self.explode_factor * self.best_median \
                and median > START_FACTOR * self.first_median:
            self._fire(
                "explosion", applied[-1]["step"], median,
                f"loss exploded: median {median:.4g} up to step {applied[-1]['step']}, "
                f"{median / self.best_median:.3g}x the best window median {self.best_median:.4g}",
            )
        self.best_median = min(self.best_median, median)

    def _fire(self, kind: str, step: int, value: float, message: str) -> None:
        if kind not in self.fired:
            self.fired.add(kind)
            from .probe import Alert

            self.alert(Alert(kind=kind, step=step, value=value, message=message))

    def _write(self, rows: list[dict], evals: list[dict]) -> None:
        if self.steps is None:
            return
        try:
            if rows:
                self.steps.append(rows)
            if evals:
                if self.evals is None:
                    self.evals = CsvAppender(self.folder / "evals.csv", ["step", "split", "loss"])
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


def _nonfinite(value) -> bool:
    return value is not None and not math.isfinite(value)
