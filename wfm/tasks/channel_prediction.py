"""Channel prediction in time and frequency with any predictor: the MAE, a series forecaster, or
the persistence baseline (``persistence``: the last visible step or subcarrier carried on).

The hidden part is the last ``n`` steps along the axis (time: the future; frequency: the upper
subcarriers), ``n = round(ratio * size)`` (clamped to ``[1, size - 1]``), exactly what
``MaskedAutoencoder.predict`` masks for CSI of any shape.

A series forecaster (``wfm.models.baselines``) predicts every (antenna, subcarrier) time series,
or every (time step, antenna) series over subcarriers, real and imaginary parts separately:
context = the visible part, horizon = the hidden part. The "interval" it sees is the time step
(s) or the subcarrier spacing (Hz).

Scores (``score_prediction``): NMSE over the hidden part per sample, ``nmse_db`` of the mean
(``wfm.tasks.metrics.window_nmse`` with the mask; this is the per-window NMSE, also given as
``window_nmse`` linear and ``window_nmse_db``), and ``per_step_nmse_db``: the NMSE of every
hidden step (time step or subcarrier) on its own, averaged over samples.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from wfm.models.baselines import build_baseline
from wfm.tasks.forecasting import forecast_series
from wfm.tasks.metrics import per_step_nmse, to_db, window_nmse_scores

AXIS_DIM = {"time": 1, "frequency": 3}
MASK_KIND = {"time": "temporal", "frequency": "frequency"}


def hidden_count(size: int, ratio: float, patch: int = 1) -> int:
    """Steps hidden along an axis of ``size``: ``round(ratio * size)`` in ``[1, size - 1]``.

    The same count ``MaskedAutoencoder.predict`` hides for any axis size (it pads the axis so the
    hidden part starts on a patch border); ``patch`` is kept for callers and no longer matters.
    """
    if size < 2:
        raise ValueError(f"an axis of {size} step(s) has nothing to hide and keep")
    from wfm.models.mae import hidden_size  # the model's own count (imported here: keeps this module light)

    return hidden_size(size, ratio)


def prediction_mask(shape: tuple[int, ...], axis: str, ratio: float, patch: tuple[int, int, int]) -> Tensor:
    """Bool ``[N, T, A, K]`` mask (True = hidden) of the last ``hidden_count`` steps of ``axis``."""
    dim = AXIS_DIM[axis]
    n = hidden_count(shape[dim], ratio, patch[dim - 1])
    m = torch.zeros(shape, dtype=torch.bool)
    m.narrow(dim, shape[dim] - n, n).fill_(True)
    return m


def persistence(csi: Tensor, mask: Tensor, axis: str) -> Tensor:
    """The last observed value carried forward along ``axis`` ("time" or "frequency").

    For a temporal mask (the last steps are hidden) every hidden step gets the last visible
    step; for a frequency mask (the upper subcarriers are hidden) every hidden subcarrier gets
    the last visible one. Visible elements are returned unchanged.
    """
    dim = AXIS_DIM[axis]
    hidden = mask.any(dim=tuple(d for d in range(mask.ndim) if d != dim))  # [size along dim]
    if not hidden.any():
        return csi.clone()
    first = int(hidden.nonzero()[0])
    if first == 0 or not hidden[first:].all():
        raise ValueError(f"persistence along {axis} needs a visible head and a hidden tail")
    last_seen = csi.narrow(dim, first - 1, 1)
    return torch.where(mask, last_seen.expand_as(csi), csi)


def to_series(csi: Tensor, axis: str) -> Tensor:
    """Real series along ``axis``: ``[N * others * 2, size]`` (real, imaginary interleaved)."""
    x = torch.view_as_real(csi.to(torch.complex64))  # [N, T, A, K, 2]
    x = x.movedim(AXIS_DIM[axis], -1)  # [..., 2, size]
    return x.reshape(-1, x.shape[-1])


def from_series(series: Tensor, like: Tensor, axis: str) -> Tensor:
    """Inverse of ``to_series`` for a tensor of ``like``'s shape (any length along ``axis``)."""
    shape = list(like.shape)
    dim = AXIS_DIM[axis]
    shape[dim] = series.shape[-1]
    moved = [*shape[:dim], *shape[dim + 1:], 2, shape[dim]]
    x = series.reshape(moved).movedim(-1, dim)
    return torch.view_as_complex(x.contiguous())


def axis_interval(attrs: dict[str, Any], axis: str) -> float:
    return float(attrs.get("time_step", 1.0) if axis == "time" else attrs.get("subcarrier_spacing", 1.0))


def forecast_hidden(forecaster: Any, csi: Tensor, mask: Tensor, axis: str, interval: float,
                    batch_size: int = 8192) -> Tensor:
    """Fill the hidden part of ``csi`` with ``forecaster``'s forecasts from the visible part."""
    dim = AXIS_DIM[axis]
    size = csi.shape[dim]
    hidden = mask.any(dim=tuple(d for d in range(mask.ndim) if d != dim))
    n = int(hidden.sum())
    visible = csi.narrow(dim, 0, size - n)
    series = to_series(visible, axis)  # each sample's series are consecutive: one group per sample
    pred = forecast_series(forecaster, series, interval, n, per_group=len(series) // csi.shape[0],
                           batch_size=batch_size)
    pred = from_series(pred, csi, axis)
    return torch.cat([visible.to(torch.complex64), pred], dim=dim)


def series_windows(csi: Tensor, axis: str, n_hidden: int, interval: float) -> tuple[Tensor, Tensor, Tensor]:
    """Training windows ``(context, target, interval)`` of the forecasters from training CSI."""
    s = to_series(csi, axis)
    ctx, tgt = s[:, :-n_hidden], s[:, -n_hidden:]
    return ctx.contiguous(), tgt.contiguous(), torch.full((len(s),), float(interval))


def score_prediction(pred: Tensor, csi: Tensor, mask: Tensor, axis: str) -> dict[str, Any]:
    """``nmse_db`` over the hidden part and ``per_step_nmse_db`` over each hidden step."""
    dim = AXIS_DIM[axis]
    hidden = mask.any(dim=tuple(d for d in range(mask.ndim) if d != dim))
    n = int(hidden.sum())
    size = csi.shape[dim]
    steps = per_step_nmse(pred.narrow(dim, size - n, n), csi.narrow(dim, size - n, n), step_dim=dim)
    window = window_nmse_scores(pred, csi, mask)
    return {"nmse_db": window["window_nmse_db"], **window, "per_step_nmse_db": [to_db(x) for x in steps],
            "samples": int(csi.shape[0]), "hidden_steps": n}


@torch.no_grad()
def mae_predict(model: Any, csi: Tensor, axis: str, ratio: float, batch_size: int = 256) -> Tensor:
    """The MAE's zero-shot (or fine-tuned) prediction of the hidden part, in batches."""
    model.eval()
    outs = [model.predict(csi[a:a + batch_size], MASK_KIND[axis], ratio).reconstruction
            for a in range(0, len(csi), batch_size)]
    return torch.cat(outs)


def train_csi_forecaster(name: str, train_csi: Tensor, axis: str, n_hidden: int, interval: float,
                         val_csi: Tensor | None = None, steps: int = 500, lr: float = 2e-3, batch_size: int = 256,
                         seed: int = 0, max_windows: int = 100_000, progress: Any = None) -> Any:
    """A trainable forecasting baseline (``lstm``, ``gru``, ``transformer``) fitted on the
    (antenna, subcarrier) series of training CSI: context = visible part, target = hidden part
    (a seeded subset of ``max_windows`` series; validation capped at 20 000)."""
    data = series_windows(train_csi, axis, n_hidden, interval)
    if len(data[0]) > max_windows:
        keep = torch.randperm(len(data[0]), generator=torch.Generator().manual_seed(seed))[:max_windows]
        data = tuple(x[keep] for x in data)
    val = None
    if val_csi is not None and len(val_csi):
        val = tuple(x[:20_000] for x in series_windows(val_csi, axis, n_hidden, interval))
    f = build_baseline(name, max_horizon=n_hidden)
    return f.fit(data, val, steps=steps, lr=lr, batch_size=batch_size, seed=seed, progress=progress)
