"""``Probe.step`` never reads a device value on the training thread (no host-device sync).

Every way Python reads a tensor's value (``.item()``, ``.tolist()``, ``float()``,
``int()``, ``bool()``, ``.numpy()``, ``.cpu()``, a blocking ``.to("cpu")``)
passes through ``__torch_function__``; a TorchFunctionMode counts them while
the loop runs, flushes included. The mode is thread-local, so the writer
thread (which is allowed to wait) is not counted.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from diagnose.probe import Probe
from diagnose.readers.rundir import read
from probe_helpers import tiny_problem

READS = {"item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__", "__format__"}


class HostReads(TorchFunctionMode):
    """Records every call that would copy a tensor's value to Python."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in READS:
            self.calls.append(name)
        elif name == "to" and not kwargs.get("non_blocking", False):
            # A blocking copy written as .to("cpu"); a .to(device) that keeps the device is no read.
            if "cpu" in args[1:] or kwargs.get("device") == "cpu":
                self.calls.append("to(cpu)")
        return func(*args, **kwargs)


def loop(probe, steps, counter, scaler=None, clip=None):
    model, x, y = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        (scaler.scale(loss) if scaler else loss).backward()
        with counter:
            if clip is None:
                probe.step(loss, opt, scaler=scaler)
            else:
                scaler.unscale_(opt)
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                probe.step(loss, opt, grad_norm=norm, clip_norm=clip, scaler=scaler)
            if step % 3 == 0:
                probe.eval("valid", loss=loss.detach())
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad()


def test_the_counter_sees_a_sync():
    counter = HostReads()
    with counter:
        loss = torch.tensor(2.0)
        float(loss), loss.item(), bool(loss > 1), loss.to("cpu")
    assert counter.calls == ["__float__", "item", "__bool__", "to(cpu)"]


@pytest.mark.parametrize("variant", ["plain", "amp", "amp-clip", "extras"])
def test_step_and_eval_never_read_a_device_value(tmp_path, variant):
    counter = HostReads()
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0) if variant.startswith("amp") else None
    extra = ("param_norm", "update_norm", "layer_grad_norms") if variant == "extras" else ()
    model_for_layers, _, _ = tiny_problem()
    probe = Probe(tmp_path, "s", variant, flush_every=4, extra=extra, model=model_for_layers)
    loop(probe, 13, counter, scaler=scaler, clip=1.0 if variant == "amp-clip" else None)
    assert counter.calls == []
    probe.close()
    run = read(tmp_path / "s" / variant, "s")
    assert len(run.steps) == 13 and run.steps["grad_norm"].notna().all()
    assert run.status == "finished"


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="torch.cuda.set_sync_debug_mode needs a GPU; the TorchFunctionMode tests cover CPU")
def test_no_sync_on_cuda(tmp_path):
    model, x, y = tiny_problem()
    model, x, y = model.cuda(), x.cuda(), y.cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    with Probe(tmp_path, "s", "cuda", flush_every=4) as probe:
        for step in range(13):
            with torch.autocast("cuda", dtype=torch.float16):
                loss = torch.nn.functional.mse_loss(model(x).float(), y)
            scaler.scale(loss).backward()
            torch.cuda.set_sync_debug_mode("error")
            try:
                probe.step(loss, opt, scaler=scaler)
                probe.eval("valid", loss=loss.detach())
            finally:
                torch.cuda.set_sync_debug_mode(0)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
    run = read(tmp_path / "s" / "cuda", "s")
    assert len(run.steps) == 13 and run.steps["grad_norm"].notna().all()
