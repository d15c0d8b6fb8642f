"""Downstream tasks: the registry (``registry``), metrics (``metrics``), data (``csi_data``,
``series_data``, ``future_beam``), channel prediction (``channel_prediction``), series forecasting
(``forecasting``), backbones, heads and modes (``backbones``, ``finetune_module``), evaluation
(``evaluation``, ``scoring``) and plots (``plots``). See ``finetune/README.md``."""
