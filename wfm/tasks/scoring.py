"""Score a task's predictions with its metric set (``wfm.tasks.metrics``)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from wfm.tasks import metrics as M
from wfm.tasks.channel_prediction import score_prediction
from wfm.tasks.registry import Task


def score_classes(scores: Tensor, y: Tensor, beam_power: Tensor | None = None) -> dict[str, Any]:
    """top-1 / top-3 accuracy, F1 (macro) and, with per-class power, the beam power loss (dB)."""
    pred = scores.argmax(1)
    out = {"top1": M.topk_accuracy(scores, y, 1), "top3": M.topk_accuracy(scores, y, 3),
           "f1": M.f1_score(pred, y, num_classes=scores.shape[1]), "samples": int(len(y))}
    if beam_power is not None:
        out["power_loss_db"] = M.beam_power_loss_db(pred, beam_power)
    return out


def score_task(task: Task, cat: dict[str, Tensor]) -> dict[str, Any]:
    """Metrics of stacked test outputs: ``pred/csi/mask`` (channel prediction) or ``out/y`` (labels)."""
    if task.family == "channel-prediction":
        return score_prediction(cat["pred"], cat["csi"], cat["mask"], task.axis)
    y, out = cat["y"], cat["out"]
    if task.label == "los":
        pred = out.argmax(1)
        return {"accuracy": M.accuracy(pred, y), "f1": M.f1_score(pred, y, num_classes=2, average="binary"),
                "samples": int(len(y))}
    if task.label == "beam":
        return score_classes(out, y, cat.get("beam_power"))
    return {"rmse": float(M.rmse(out, y)), "mae": float(M.mae(out, y)), "samples": int(len(y))}
