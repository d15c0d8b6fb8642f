"""Metrics of the downstream tasks: channel prediction, forecasting, beams, classification, regression.

Every function takes tensors (any float or complex dtype; computed in float64) and returns a
tensor or a Python float as documented. Conventions:

- **NMSE** (``nmse``): per sample, ``||pred - target||^2 / ||target||^2`` over every non-batch
  element (complex values: squared magnitude). ``to_db(x) = 10 log10(x)``; the dB figure of a
  set is ``10 log10`` of the *mean linear* NMSE (as WiFo and LWM report it), ``nmse_db``.
- **Per-step NMSE** (``per_step_nmse``): the same ratio computed separately for every index of
  a step axis (the prediction step of a time-domain forecast, or a subcarrier), averaged over
  samples: ``[S]``.
- **Series NMSE** (``series_nmse``): for forecasts of univariate series (distance in metres,
  traffic volume, AoA in degrees) an NMSE against ``||target||^2`` would be tiny just because
  the series sits far from zero (a user 200 m away, 1 m off, scores -46 dB). So the error
  energy is normalised by the energy of the target's *variation about its context mean*,
  summed over the whole test set::

      series_nmse = sum_{windows, steps} (pred - target)^2
                    / sum_{windows, steps} (target - mean(context))^2

  0 dB is the skill of predicting the context mean; anything below beats it. Summing over the
  set (rather than averaging per-window ratios) keeps nearly-flat windows from dominating.
- **Per-window NMSE** (``window_nmse``), the one metric every forecasting and prediction task
  reports (DESIGN.md, "How models are judged"): the mean over windows of
  ``sum err^2 / sum true^2`` (each window's sums over its steps and channels; complex values:
  squared magnitude), in linear and in dB (``10 log10`` of the mean). ``best_classical`` and
  ``ratio_to_best`` put it next to the best classical baseline of the same windows. A window
  whose target is all zero has no NMSE (NaN) and is left out of the mean.
- **MAE** (mean absolute error) and **RMSE** in the target's own unit.
- **sMAPE** in percent: ``mean(200 |pred - target| / max(|pred| + |target|, 1.17e-6))`` (the
  floor is torchmetrics' epsilon), so a term with ``pred = target = 0`` counts 0; bounded in
  [0, 200].
- **Top-k accuracy** of class scores ``[N, C]`` against labels ``[N]``.
- **Beam power loss** (dB): ``10 log10(P[best] / P[predicted])`` per sample from the linear
  received power of every beam ``[N, C]``, averaged over samples in dB (0 dB = always the best
  beam). A predicted beam with zero power is floored at ``1e-12`` of the best.
- **Accuracy** and **F1** (per class, macro average or the positive class for ``binary``).

The generic ones (MAE, RMSE, sMAPE, top-k accuracy, accuracy, F1) are ``torchmetrics.functional``
(regression in float64; classification scores are ratios of counts, which torchmetrics divides
in float32); NMSE, its per-step, series and per-window forms and the beam power loss are ours.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torchmetrics.functional as TMF
from torch import Tensor


def _check_same(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: pred {list(pred.shape)} vs target {list(target.shape)}")


def _sq(x: Tensor) -> Tensor:
    """Squared magnitude in float64 (complex or real)."""
    return x.abs().to(torch.float64) ** 2 if x.is_complex() else x.to(torch.float64) ** 2


def db(x: Tensor) -> Tensor:
    """``10 log10(x)`` elementwise, floored at -300 dB; stays a tensor (no device sync: for logging)."""
    return 10 * torch.log10(x.clamp_min(1e-30))


def to_db(x: Tensor | float) -> float:
    """``10 log10(x)`` of a (positive) scalar, floored at -300 dB."""
    return float(db(torch.as_tensor(x, dtype=torch.float64)))


def nmse(pred: Tensor, target: Tensor) -> Tensor:
    """Per-sample ``||pred - target||^2 / ||target||^2`` over all non-batch elements, ``[B]``."""
    _check_same(pred, target)
    err = _sq(pred - target).reshape(len(target), -1).sum(1)
    ref = _sq(target).reshape(len(target), -1).sum(1)
    return err / ref.clamp_min(1e-30)


def nmse_db(pred: Tensor, target: Tensor) -> float:
    """``10 log10`` of the mean per-sample NMSE."""
    return to_db(nmse(pred, target).mean())


def window_nmse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-window ``sum |pred - target|^2 / sum |target|^2`` over every non-batch element (only
    those where ``mask`` is True, when given): ``[N]`` float64. Its mean is the per-window NMSE.

    A window whose target is all zero (an idle cell's night, a count series' quiet hour) has no
    energy to normalise by: its NMSE is NaN, not scored, and :func:`mean_window_nmse` leaves it out
    of the mean (dividing by a floor instead gave 1e30 and ranked forecasts by that one window)."""
    _check_same(pred, target)
    err, ref = _sq(pred - target), _sq(target)
    if mask is not None:
        if mask.shape != target.shape:
            raise ValueError(f"mask shape {list(mask.shape)} differs from target {list(target.shape)}")
        m = mask.to(torch.float64)
        err, ref = err * m, ref * m
    n = len(target)
    energy = ref.reshape(n, -1).sum(1)
    return torch.where(energy > 0, err.reshape(n, -1).sum(1) / energy.clamp_min(1e-300), torch.nan)


def scorable_windows(target: Tensor) -> Tensor:
    """``[N]`` bool: the windows :func:`window_nmse` can score (their target is not all zero)."""
    return _sq(target).reshape(len(target), -1).sum(1) > 0


def mean_window_nmse(per_window: Tensor) -> float:
    """The per-window NMSE: the mean of :func:`window_nmse`'s ``[N]`` over the windows it scored
    (NaN where none was)."""
    return float(torch.nanmean(per_window.to(torch.float64))) if len(per_window) else math.nan


def unscored_windows(per_window: Tensor) -> int:
    """How many of :func:`window_nmse`'s windows it could not score (an all-zero target)."""
    return int(torch.isnan(per_window).sum())


def window_nmse_scores(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> dict[str, float]:
    """``{"window_nmse": mean linear, "window_nmse_db": its dB}`` of ``window_nmse`` (and
    ``unscored_windows`` where some target is all zero)."""
    per = window_nmse(pred, target, mask)
    m = mean_window_nmse(per)
    out = {"window_nmse": m, "window_nmse_db": to_db(m)}
    if unscored_windows(per):
        out["unscored_windows"] = unscored_windows(per)
    return out


def add_best_classical(rows: list[dict], classical: dict[str, float], key: str = "window_nmse") -> None:
    """Give every row ``best_classical`` (the name of the lowest ``classical[name]`` NMSE) and
    ``ratio_to_best`` (its ``key`` over that NMSE; < 1 beats every classical baseline)."""
    if not classical:
        return
    best = min(classical, key=classical.__getitem__)
    for r in rows:
        if key in r and r[key] is not None:
            r["best_classical"] = best
            r["ratio_to_best"] = float(r[key]) / max(classical[best], 1e-300)


def per_step_nmse(pred: Tensor, target: Tensor, step_dim: int = 1) -> Tensor:
    """NMSE at every index of ``step_dim``, per sample then averaged over samples: ``[S]``."""
    _check_same(pred, target)
    p = pred.movedim(step_dim, 1).reshape(pred.shape[0], pred.shape[step_dim], -1)
    t = target.movedim(step_dim, 1).reshape(target.shape[0], target.shape[step_dim], -1)
    err = _sq(p - t).sum(-1)
    ref = _sq(t).sum(-1)
    return (err / ref.clamp_min(1e-30)).mean(0)


def series_nmse(pred: Tensor, target: Tensor, context: Tensor, dim: int | None = None) -> Tensor:
    """Series NMSE (module doc): error energy over the energy of ``target - mean(context)``.

    ``pred``, ``target``: ``[N, H]``; ``context``: ``[N, L]``. ``dim=None`` sums over everything
    (a scalar); ``dim=0`` sums over windows only, giving one value per step ``[H]``.
    """
    _check_same(pred, target)
    ref_level = context.to(torch.float64).mean(dim=1, keepdim=True)
    err = _sq(pred - target)
    ref = _sq(target.to(torch.float64) - ref_level)
    if dim is None:
        return err.sum() / ref.sum().clamp_min(1e-30)
    return err.sum(dim) / ref.sum(dim).clamp_min(1e-30)


def _over(fn: Callable[[Tensor, Tensor], Tensor], pred: Tensor, target: Tensor, dim: int | None) -> Tensor:
    """A torchmetrics regression function of float64 ``pred`` and ``target``: over everything, or
    over ``dim`` only (one value per index of the other dimensions)."""
    _check_same(pred, target)
    p, t = pred.to(torch.float64), target.to(torch.float64)
    if dim is None:
        return fn(p, t)
    p, t = p.movedim(dim, -1), t.movedim(dim, -1)
    rows = zip(p.reshape(-1, p.shape[-1]), t.reshape(-1, t.shape[-1]))
    return torch.stack([fn(a, b) for a, b in rows]).reshape(p.shape[:-1])


def mae(pred: Tensor, target: Tensor, dim: int | None = None) -> Tensor:
    """Mean absolute error (over everything, or over ``dim``) of real values."""
    return _over(TMF.mean_absolute_error, pred, target, dim)


def rmse(pred: Tensor, target: Tensor, dim: int | None = None) -> Tensor:
    """Root mean squared error (over everything, or over ``dim``) of real values."""
    return _over(partial(TMF.mean_squared_error, squared=False), pred, target, dim)


def smape(pred: Tensor, target: Tensor, dim: int | None = None) -> Tensor:
    """Symmetric mean absolute percentage error in percent (module doc), in [0, 200]."""
    return 100 * _over(TMF.symmetric_mean_absolute_percentage_error, pred, target, dim)


def topk_accuracy(scores: Tensor, labels: Tensor, k: int = 1) -> float:
    """Share of samples whose label is among the ``k`` highest ``scores`` ``[N, C]``."""
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"scores must be [N, C] and labels [N]; got {list(scores.shape)} and {list(labels.shape)}")
    c, k = scores.shape[1], min(k, scores.shape[1])
    # For k = 1 torchmetrics takes the argmax (the first of tied scores); the top score as
    # torch.topk picks it among ties, as for k > 1, keeps top-1 of tied vote scores (the position
    # k-NN) what it was.
    preds = scores.topk(1, dim=1).indices[:, 0] if k == 1 else scores
    return float(TMF.accuracy(preds, labels.long().to(scores.device), "multiclass", num_classes=c,
                              average="micro", top_k=k))


def beam_power_loss_db(pred_beam: Tensor, beam_power: Tensor) -> float:
    """Mean over samples of ``10 log10(P_best / P_pred)`` in dB; ``beam_power``: linear ``[N, C]``."""
    if beam_power.ndim != 2 or pred_beam.shape != beam_power.shape[:1]:
        raise ValueError(f"beam_power must be [N, C] and pred_beam [N]; got {list(beam_power.shape)} and "
                         f"{list(pred_beam.shape)}")
    p = beam_power.to(torch.float64)
    best = p.max(1).values
    got = p.gather(1, pred_beam.long()[:, None])[:, 0]
    ratio = best / got.clamp_min(1e-12 * best.clamp_min(1e-300))
    return float((10 * torch.log10(ratio.clamp_min(1.0))).mean())


def accuracy(pred: Tensor, labels: Tensor) -> float:
    """Share of ``pred == labels`` (class indices)."""
    _check_same(pred, labels)
    pred, labels = pred.long(), labels.long()
    # torchmetrics needs two classes at least: a test split of one class, predicted as that class
    # (all NLoS), is 100 % accurate, not an error.
    c = max(2, int(max(int(pred.max()), int(labels.max())) + 1))
    return float(TMF.accuracy(pred, labels, "multiclass", num_classes=c, average="micro"))


def f1_score(pred: Tensor, labels: Tensor, num_classes: int | None = None, average: str = "macro") -> float:
    """F1 of class predictions: ``macro`` (mean over classes present in pred or labels) or
    ``binary`` (class 1 as positive)."""
    _check_same(pred, labels)
    pred, labels = pred.long(), labels.long()
    if average == "binary":
        return float(TMF.f1_score((pred == 1).long(), (labels == 1).long(), "binary"))
    if average != "macro":
        raise ValueError(f"average must be 'macro' or 'binary', got {average!r}")
    c = num_classes or int(max(int(pred.max()), int(labels.max())) + 1)
    # torchmetrics' macro average leaves out classes in neither pred nor labels (tp + fp + fn = 0).
    return float(TMF.f1_score(pred, labels, "multiclass", num_classes=c, average="macro"))
