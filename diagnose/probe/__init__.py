"""Log a PyTorch training run in the ``diagnose.run/1`` format from inside the loop.

    from diagnose.probe import Probe
    with Probe("logs", study="sweep", name="lr0.1-s0", config={"lr": 0.1}) as probe:
        for batch in data:
            loss = loss_fn(model(batch.x), batch.y)
            loss.backward()
            probe.step(loss, optimizer)      # before clipping and optimizer.step()
            optimizer.step(); optimizer.zero_grad()

This package is the only part of diagnose that imports torch.
"""

from .probe import Alert, Probe, ProbeStop, ProbeWarning

__all__ = ["Alert", "Probe", "ProbeStop", "ProbeWarning"]
