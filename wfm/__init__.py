"""wfm: wireless foundation models.

Data engine for CSI and wireless time series, masked-autoencoder and causal foundation
models, complex-attention kernels and downstream tasks, on PyTorch Lightning.
"""

__version__ = "0.1.0"
