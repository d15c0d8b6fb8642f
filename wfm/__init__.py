"""wfm: wireless foundation models.

Data engine for CSI and wireless time series, masked-autoencoder and causal foundation
models, complex-attention kernels and downstream tasks, on PyTorch Lightning.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {"from_pretrained": "wfm.hub", "push_to_hub": "wfm.hub", "export_checkpoint": "wfm.hub"}


def __getattr__(name: str):
    # Lazy so that `import wfm` stays light (no torch until a model is loaded).
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wfm' has no attribute {name!r}")
