"""Callbacks for training frameworks; each imports its framework only when imported itself.

- ``diagnose.probe.integrations.huggingface.DiagnoseCallback`` (transformers ``Trainer``)
- ``diagnose.probe.integrations.lightning.DiagnoseCallback`` (Lightning ``Trainer``)
"""
