"""Downstream tasks: the registry (``registry``), metrics (``metrics``), data (``data``,
``series_data``, ``future_beam``), channel prediction (``csi_prediction``), series forecasting
(``forecasting``), models and modes (``models``, ``finetune_module``), evaluation
(``evaluation``, ``scoring``) and plots (``plots``). See ``finetune/README.md``."""
