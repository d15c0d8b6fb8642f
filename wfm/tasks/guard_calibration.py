"""Choosing an MAE's guard prior on measured windows of one link or receiver (``wfm calibrate``).

Zero-shot, ``MaskedAutoencoder.predict``'s guard picks its classical prior per window by a backtest
on the window's visible part alone (``GUARD_PRIORS``: the backtest's choice, or the nearest visible
value, the mean, the AR(1) reversion, linear prediction, or the backtest's choice among a few of
them, such as ``hold|ar|mean|rank1``). Where a band is not stationary that backtest can be wrong
every time: the Intel 5300's receive filter bends the phase at the band's lower edge, so predicting
the visible band's upper half from its lower half favours the reversion, while over the real
prediction the nearest subcarrier is 1.5x better (pretrain/studies.md, "The receive filter's phase").
No rule that reads one window alone has told these apart without losing elsewhere.

Windows of the same link or receiver whose hidden part was also measured (an earlier stretch of the
capture, the train split of an imported folder) can: each rule is scored there by ``predict``
itself (shrink and correction fit included), and another rule replaces the model's current one
(the released MAE: the nearest subcarrier in frequency, the backtest in time) only where it beats
it beyond noise (:func:`wfm.tasks.significance.beats_beyond_noise`, the rule that keeps fine-tuned
weights). The weights are not touched; the choice is saved in the model's
``config.json`` (``arch.guard_prior``), so every later ``predict``, ``wfm evaluate`` and
``wfm benchmark real --model`` uses it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from wfm.models.mae import GUARD_PRIORS, hidden_size
from wfm.tasks.real_data import BenchData
from wfm.tasks.significance import beats_beyond_noise

#: ``wfm calibrate --axis`` names and the mask kinds they calibrate.
AXES = {"time": "temporal", "frequency": "frequency"}


def _nmse(pred: Tensor, target: Tensor) -> Tensor:
    err = (pred - target).abs().square().flatten(1).sum(1)
    return err / target.abs().square().flatten(1).sum(1).clamp_min(1e-30)


@torch.no_grad()
def guard_errors(model: Any, csi: Tensor, mask_kind: str, ratio: float = 0.5, batch_size: int = 64,
                 progress: Callable[[int], None] | None = None) -> dict[str, Tensor]:
    """Per-window NMSE ``[N]`` over the hidden part of ``predict(csi, mask_kind, ratio)`` under each
    guard rule (``GUARD_PRIORS``), and of the two classical baselines along the masked axis:
    ``persistence`` (the last visible step or subcarrier) and ``mean`` (of the visible part).

    ``csi`` is ``[N, T, A, K]``, complex, or real (an amplitude: the MAE reads it as real-valued CSI
    and only the real part of its prediction is scored, as ``wfm benchmark real`` scores it);
    ``mask_kind`` ``temporal`` or ``frequency``. The model's own ``guard_prior`` is restored
    afterwards. ``progress`` is called with the windows done per batch.
    """
    if mask_kind not in AXES.values():
        raise ValueError(f"mask_kind must be one of {', '.join(AXES.values())}; got {mask_kind!r}")
    if csi.ndim != 4 or len(csi) < 1:
        raise ValueError(f"csi must be [N, T, A, K] with N >= 1; got {csi.dtype} {tuple(csi.shape)}")
    real = not csi.is_complex()
    if real:
        csi = csi.to(torch.complex64)
    dim = 1 if mask_kind == "temporal" else 3
    size = csi.shape[dim]
    if size < 2:
        raise ValueError(f"cannot predict part of an axis of size {size} ({mask_kind}, shape {tuple(csi.shape)})")
    h = hidden_size(size, ratio)
    hidden = csi.narrow(dim, size - h, h)
    out = {"persistence": _nmse(csi.narrow(dim, size - h - 1, 1).expand_as(hidden), hidden),
           "mean": _nmse(csi.narrow(dim, 0, size - h).mean(dim, keepdim=True).expand_as(hidden), hidden)}
    saved = dict(model.guard_prior)
    try:
        for rule in GUARD_PRIORS:
            model.guard_prior = {**saved, mask_kind: rule}
            parts = []
            for a in range(0, len(csi), batch_size):
                pred = model.predict(csi[a:a + batch_size], mask_kind, ratio).reconstruction
                pred = pred.real.to(pred.dtype) if real else pred
                parts.append(_nmse(pred.narrow(dim, size - h, h), hidden[a:a + batch_size]))
                if progress is not None:
                    progress(len(parts[-1]))
            out[f"guard {rule}"] = torch.cat(parts)
    finally:
        model.guard_prior = saved
    return out


def calibrate_guard(model: Any, csi: Tensor, mask_kind: str, ratio: float = 0.5, batch_size: int = 64,
                    blocks: Tensor | None = None, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Choose ``model``'s guard prior for ``mask_kind`` on ``csi`` (see the module docstring) and set it.

    The model's current rule for ``mask_kind`` (``guard_prior``, else the backtest) is kept unless
    another beats it beyond noise; the best of those that do replaces it. Returns ``{"mask_kind",
    "windows", "current", "choice", "rows"}``: one row per rule and baseline with its mean
    per-window NMSE (linear and dB), its ratio to the better baseline, and for the other rules
    whether they beat the current one beyond noise. ``blocks`` ``[N]`` groups windows that share
    steps (``independent_blocks``); without it every window counts as independent, which overstates
    the evidence of overlapping windows.
    """
    current = model.guard_prior.get(mask_kind, "backtest")
    errs = guard_errors(model, csi, mask_kind, ratio, batch_size, progress)
    best = min(float(errs["persistence"].mean()), float(errs["mean"].mean()))
    beats = {r: beats_beyond_noise(errs[f"guard {current}"], errs[f"guard {r}"], blocks)
             for r in GUARD_PRIORS if r != current}
    winners = [r for r in beats if beats[r]]
    choice = min(winners, key=lambda r: float(errs[f"guard {r}"].mean())) if winners else current
    model.guard_prior = {**model.guard_prior, mask_kind: choice}
    rows = []
    for name, e in errs.items():
        m = float(e.mean())
        rule = name.removeprefix("guard ")
        rows.append({"model": name, "nmse": m, "nmse_db": 10 * torch.log10(torch.tensor(max(m, 1e-30))).item(),
                     "ratio": m / best if best > 0 else float("nan"),
                     "beats current": (beats.get(rule, "current") if name.startswith("guard ") else ""),
                     "chosen": "yes" if name == f"guard {choice}" else ""})
    return {"mask_kind": mask_kind, "windows": len(csi), "ratio": ratio, "current": current, "choice": choice,
            "rows": rows}


def split_rows(model: Any, datasets: Sequence[BenchData]) -> list[dict[str, Any]]:
    """For each CSI view of ``datasets`` (``wfm benchmark real``'s windows, in time order): the guard
    calibrated from the zero-shot backtest on the first half of the windows, scored on the second
    half against that backtest and the best classical baseline of that half (``python pretrain/guard_study.py --model M
    --calibration``). The model's ``guard_prior`` is restored afterwards."""
    rows = []
    saved = dict(model.guard_prior)
    try:
        for d in datasets:
            if d.csi is None:
                continue
            kind = "frequency" if d.axis == "frequency" else "temporal"
            csi = d.csi.to(torch.complex64) if d.target.is_complex() else d.csi.real  # amplitudes: scored as real
            ratio = d.target.shape[1] / csi.shape[3 if kind == "frequency" else 1]
            half = len(csi) // 2
            blocks = d.blocks()
            model.guard_prior = {}  # calibrated from the zero-shot backtest, whatever the folder fixes
            fit = calibrate_guard(model, csi[:half], kind, ratio, blocks=None if blocks is None else blocks[:half])
            test = guard_errors(model, csi[half:], kind, ratio)
            best = min(float(test["persistence"].mean()), float(test["mean"].mean()))
            rows.append({"dataset": d.name, "view": d.view, "calibration windows": half, "test windows": len(csi) - half,
                         "choice": fit["choice"], "backtest": float(test["guard backtest"].mean()) / best,
                         "calibrated": float(test[f"guard {fit['choice']}"].mean()) / best})
    finally:
        model.guard_prior = saved
    return rows
