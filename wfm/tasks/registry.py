"""The downstream tasks: name -> what data it reads, what it predicts, how it is scored, which
modes and baselines apply.

Families:

- ``channel-prediction``: hide part of the CSI (the last ``ratio`` of time steps, or the upper
  ``ratio`` of subcarriers, in whole patches) and predict it. NMSE (dB) over the hidden part
  and per predicted step. The MAE predicts it zero-shot by masking; baselines forecast every
  (antenna, subcarrier) series (real and imaginary parts) along the hidden axis.
- ``csi-label``: a label per CSI sample (LoS/NLoS, distance, position, best DFT beam) from a
  backbone's features and a head. No zero-shot.
- ``future-beam``: DeepSense 6G: the past ``context`` beam-power vectors of a trajectory ->
  the best beam ``horizon`` steps later; split by scenario or by trajectory.
- ``series``: univariate forecasting on ``SeriesWindows`` (``wfm.tasks.forecasting``).

Every forecasting and prediction task also reports the per-window NMSE (linear and dB) and its
ratio to the best classical baseline (persistence, context mean, seasonal naive with the period
from the interval: ``wfm.models.baselines.CLASSICAL``), computed on the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MODES = ("zero-shot", "linear-probe", "lora", "full")


@dataclass(frozen=True)
class Task:
    """One downstream task (see the module doc for the families)."""

    name: str
    family: str
    description: str
    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    baselines: tuple[str, ...]
    dataset_kind: str = "csi"
    axis: str | None = None  # channel prediction: "time" | "frequency"
    ratio: float = 0.5  # channel prediction: hidden share of the axis
    label: str | None = None  # csi-label: los | distance | position | beam
    classes: int | None = None  # classification: number of classes (None: from the data)
    series_kinds: tuple[str, ...] = ()  # series: which series of the dataset
    context: int = 32  # series / future-beam: context length (steps)
    horizon: int = 16  # series / future-beam: steps ahead
    extra: dict = field(default_factory=dict)

    @property
    def is_classification(self) -> bool:
        return self.family == "future-beam" or self.label in ("los", "beam")


_CP_METRICS = ("nmse_db", "window_nmse_db", "per_step_nmse_db")
_CP_BASELINES = ("persistence", "linear", "mean", "ar", "lstm", "gru", "transformer")
_SERIES_METRICS = ("nmse_db", "window_nmse_db", "mae", "smape")
_SERIES_BASELINES = ("persistence", "linear", "mean", "seasonal", "ar", "lstm", "gru", "transformer")

TASKS: dict[str, Task] = {t.name: t for t in [
    Task("channel-prediction-time", "channel-prediction",
         "predict the last half of the time steps of the CSI from the first half", _CP_METRICS,
         ("zero-shot", "linear-probe", "lora", "full"), _CP_BASELINES, axis="time"),
    Task("channel-prediction-frequency", "channel-prediction",
         "predict the upper half of the subcarriers from the lower half", _CP_METRICS,
         ("zero-shot", "linear-probe", "lora", "full"), _CP_BASELINES, axis="frequency"),
    Task("beam-prediction", "csi-label", "best beam of a 2D DFT codebook from the CSI",
         ("top1", "top3", "power_loss_db"), ("linear-probe", "lora", "full"), ("mlp",), label="beam"),
    Task("los-nlos", "csi-label", "LoS / NLoS classification from the CSI", ("accuracy", "f1"),
         ("linear-probe", "lora", "full"), ("mlp",), label="los", classes=2),
    Task("distance-regression", "csi-label", "user distance (m) from the CSI", ("rmse", "mae"),
         ("linear-probe", "lora", "full"), ("mlp",), label="distance"),
    Task("position-regression", "csi-label", "user (x, y) position (m) from the CSI", ("rmse", "mae"),
         ("linear-probe", "lora", "full"), ("mlp",), label="position"),
    Task("future-beam", "future-beam", "DeepSense 6G: past beam powers -> best beam ahead",
         ("top1", "top3", "power_loss_db"), ("full",), ("persistence", "ar", "lstm", "gru", "position-knn"),
         dataset_kind="beam", context=8, horizon=1),
    Task("traffic-forecast", "series", "cell traffic forecasting", _SERIES_METRICS, ("zero-shot",),
         _SERIES_BASELINES, dataset_kind="traffic", series_kinds=("traffic",), context=144, horizon=36),
    Task("aoa-forecast", "series", "angle-of-arrival forecasting (deg)", _SERIES_METRICS, ("zero-shot",),
         _SERIES_BASELINES, dataset_kind="trajectory", series_kinds=("aoa",), context=64, horizon=16),
    Task("distance-forecast", "series", "user distance forecasting (m)", _SERIES_METRICS, ("zero-shot",),
         _SERIES_BASELINES, dataset_kind="trajectory", series_kinds=("distance",), context=64, horizon=16),
]}


def get_task(name: str) -> Task:
    """The task ``name``; a ``KeyError`` listing the known tasks otherwise."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]
