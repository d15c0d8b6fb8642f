"""Evaluate models and baselines on a task, the same test split for all (``wfm evaluate``).

``evaluate_task(task, models, datasets, options)`` scores every model on every dataset and
returns ``{"task", "rows": [...], "curves": {...}, "examples": {...}}``. A model is

- a baseline name (``TASK.baselines``): closed-form ones run as they are; trainable ones
  (``lstm``, ``gru``, ``transformer``, ``mlp``) are trained from scratch on the training split
  of the *same* dataset (full-shot, or ``train_fractions`` of it), the best of their
  validation checks kept;
- a foundation model (an exported folder, hub id, ``.ckpt`` or ``scratch:NAME``), evaluated
  zero-shot: the MAE predicts channels by masking; a model with ``forecast`` forecasts series.
  Tasks without a zero-shot mode (labels from CSI) answer with a ``CheckpointError`` pointing
  to ``wfm finetune``.

Channel-prediction and series rows carry the per-window NMSE (``window_nmse``, linear, and
``window_nmse_db``), ``best_classical`` (the best of persistence, context mean and seasonal
naive on the same test windows, run whether asked for or not) and ``ratio_to_best`` (< 1 beats
it). The seasonal period comes from the interval (``wfm.models.baselines.seasonal_period``: a
week of steps where the context holds one, else a day) unless ``EvalOptions.period`` sets it;
it is in ``result["periods"]`` and in the seasonal rows' ``period``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from wfm.data.errors import DataError
from wfm.hub import CheckpointError
from wfm.tasks.metrics import add_best_classical
from wfm.tasks.registry import Task, get_task

SERIES_TRAINABLE = ("lstm", "gru", "transformer")
CLASSICAL_NAMES = ("persistence", "mean", "seasonal")  # wfm.models.baselines.CLASSICAL


@dataclass
class EvalOptions:
    """Training budget of trainable baselines and evaluation settings (equal for every model)."""

    train_steps: int = 500
    lr: float = 2e-3
    batch_size: int = 256
    seed: int = 0
    max_train_windows: int = 100_000
    train_fractions: tuple[float, ...] = (1.0,)
    context: int | None = None
    horizon: int | None = None
    knn: int = 5
    finetune_batch_size: int = 32
    period: int | None = None  # seasonal baseline: steps per season (None: from the interval)
    # Per trainable baseline: {"lstm": {"steps": 100, "batch": 64, "threads": 2}} over the defaults above.
    baseline_options: dict = field(default_factory=dict)

    def train_budget(self, name: str) -> dict[str, int | None]:
        """``steps``, ``batch`` and ``threads`` of trainable baseline ``name`` (its own, else the defaults)."""
        own = self.baseline_options.get(name, {})
        return {"steps": int(own.get("steps", self.train_steps)), "batch": int(own.get("batch", self.batch_size)),
                "threads": own.get("threads")}


@contextmanager
def _threads(n: int | None):
    """Run with ``n`` torch CPU threads (unchanged when None), restoring the count after."""
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def model_label(spec: str) -> str:
    """A short name for tables: the baseline name, or the checkpoint's folder/file name."""
    p = Path(spec)
    if spec.startswith("scratch:"):
        return spec
    if p.exists():
        return p.parent.parent.name + "/" + p.name if p.suffix == ".ckpt" and p.parent.name == "checkpoints" else p.name
    return spec


def model_labels(specs: Sequence[str]) -> dict[str, str]:
    """``model_label`` of each spec, made unique: where two different checkpoints share a short
    name (``runs/x/checkpoints/last.ckpt`` of two runs), the first path component that tells
    them apart is added, e.g. ``x/last.ckpt (sdpa)`` and ``x/last.ckpt (complex-phase)``."""
    labels = {s: model_label(s) for s in specs}
    groups: dict[str, list[str]] = {}
    for s in dict.fromkeys(specs):
        groups.setdefault(labels[s], []).append(s)
    for short, clash in groups.items():
        if len(clash) < 2:
            continue
        parts = [Path(s).resolve().parts for s in clash]
        i = next((j for j in range(min(map(len, parts))) if len({p[j] for p in parts}) > 1), None)
        for s, p in zip(clash, parts):
            labels[s] = f"{short} ({p[i]})" if i is not None else s
    return labels


def _is_baseline(task: Task, spec: str) -> bool:
    return spec in task.baselines


def _known_baseline(spec: str) -> bool:
    """Whether ``spec`` names a baseline of any task (so it is not a model path)."""
    from wfm.tasks.registry import TASKS

    return any(spec in t.baselines for t in TASKS.values())


def evaluate_task(task_name: str, models: Sequence[str], datasets: Sequence[str | Path],
                  options: EvalOptions | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score ``models`` on ``task_name`` over each dataset (see module doc)."""
    task = get_task(task_name)
    opts = options or EvalOptions()
    if not models:
        raise CheckpointError(f"task {task.name}: no model given (baselines: {', '.join(task.baselines)})")
    result: dict[str, Any] = {"task": task.name, "description": task.description, "rows": [], "curves": {},
                              "examples": {}, "options": opts.__dict__, "labels": model_labels(models),
                              "periods": {}, "classical": {}}
    runner = {"channel-prediction": _channel_prediction, "csi-label": _csi_label, "series": _series,
              "future-beam": _future_beam}[task.family]
    for root in datasets:
        if not Path(root).exists():
            raise DataError(f"{root}: no such dataset folder")
        runner(task, list(models), str(root), opts, result, progress or (lambda s: None))
    return result


def _foundation(task: Task, spec: str) -> Any:
    from wfm.tasks.models import load_model

    return load_model(spec)


# ---------------------------------------------------------------------------- channel prediction


def _channel_prediction(task: Task, models: list[str], root: str, opts: EvalOptions, result: dict, say) -> None:
    from wfm.models.baselines import build_baseline
    from wfm.tasks.csi_prediction import (AXIS_DIM, axis_interval, forecast_hidden, mae_predict, prediction_mask,
                                          score_prediction, train_csi_forecaster)
    from wfm.tasks.data import load_csi
    from wfm.tasks.models import is_mae

    test = load_csi(root, "test", task=task.name)
    csi, attrs = test["csi"], test["attrs"]
    name = Path(root).name
    mask = prediction_mask(tuple(csi.shape), task.axis, task.ratio, (4, 4, 4))
    interval = axis_interval(attrs, task.axis)
    n_hidden = int(mask.any(dim=tuple(d for d in range(4) if d != AXIS_DIM[task.axis])).sum())
    visible = csi.shape[AXIS_DIM[task.axis]] - n_hidden
    period = _period(opts, interval, visible) if task.axis == "time" else None
    result["periods"][name] = period
    classical = _classical_csi(csi, mask, task.axis, interval, period)
    result["classical"][name] = classical
    first_row = len(result["rows"])
    train = None
    for spec in models:
        say(f"{task.name} / {name}: {spec}")
        row: dict[str, Any] = {"dataset": name, "model": result["labels"][spec]}
        if _is_baseline(task, spec):
            f = build_baseline(spec, **({"max_horizon": n_hidden} if spec in SERIES_TRAINABLE else
                                        {"period": period} if spec == "seasonal" else {}))
            row.update(kind="baseline", mode="full-shot" if spec in SERIES_TRAINABLE else "closed form")
            if spec == "seasonal":
                row["period"] = _period_label(period)
            if spec in SERIES_TRAINABLE:
                if train is None:
                    train = tuple(load_csi(root, s, task=task.name)["csi"] for s in ("train", "val"))
                b = opts.train_budget(spec)
                with _threads(b["threads"]):
                    f = train_csi_forecaster(spec, train[0], task.axis, n_hidden, interval, train[1], b["steps"],
                                             opts.lr, b["batch"], opts.seed, opts.max_train_windows)
                row.update(train_samples=len(train[0]), train_steps=b["steps"], batch_size=b["batch"])
            pred = forecast_hidden(f, csi, mask, task.axis, interval)
        else:
            model = _foundation(task, spec)
            if not is_mae(model):
                raise CheckpointError(f"{spec}: a {type(model).__name__} cannot predict CSI; task {task.name} "
                                      "needs an MAE")
            row.update(kind="foundation", mode="zero-shot", train_samples=0)
            pred = mae_predict(model, csi, task.axis, task.ratio)
            model_mask = model.predict(csi[:1], "temporal" if task.axis == "time" else "frequency", task.ratio).mask
            if not torch.equal(model_mask, mask[:1]):
                raise CheckpointError(f"{spec}: its patch size {model.patch_size} hides other steps than the task's "
                                      "(4, 4, 4) patches; evaluate it on its own")
        scores = score_prediction(pred, csi, mask, task.axis)
        row.update({k: v for k, v in scores.items() if k != "per_step_nmse_db"})
        result["rows"].append(row)
        result["curves"][f"{row['model']} @ {name}"] = scores["per_step_nmse_db"]
        ex = result["examples"].setdefault(name, {"true": csi[0], "axis": task.axis, "hidden": n_hidden,
                                                  "interval": interval, "preds": {}})
        ex["preds"][row["model"]] = pred[0]
    add_best_classical(result["rows"][first_row:], classical)


# ---------------------------------------------------------------------------- labels from CSI


def _csi_label(task: Task, models: list[str], root: str, opts: EvalOptions, result: dict, say) -> None:
    from wfm.tasks.finetune_module import run_finetune

    name = Path(root).name
    for spec in models:
        if not _is_baseline(task, spec) and _known_baseline(spec):
            raise CheckpointError(f"baseline {spec!r} does not apply to task {task.name}; its baselines: "
                                  f"{', '.join(task.baselines)}")
        if not _is_baseline(task, spec):
            raise CheckpointError(f"{spec}: task {task.name} has no zero-shot mode; fine-tune the model: "
                                  f"wfm finetune --config finetune/{task.name}.yaml --model.init_from {spec}")
        for frac in opts.train_fractions:
            say(f"{task.name} / {name}: {spec} (train fraction {frac:g})")
            r = run_finetune(task.name, [root], init_from=f"baseline:{spec}", mode="full", train_fraction=frac,
                             max_steps=opts.train_steps, batch_size=opts.finetune_batch_size, lr=opts.lr,
                             seed=opts.seed)
            result["rows"].append({"dataset": name, "model": spec, "kind": "baseline", "mode": "full-shot",
                                   **{k: v for k, v in r.items() if k not in ("task", "model", "mode")}})


# ---------------------------------------------------------------------------- series


def _series(task: Task, models: list[str], root: str, opts: EvalOptions, result: dict, say) -> None:
    from wfm.models.baselines import build_baseline, stack_windows
    from wfm.tasks.forecasting import evaluate_forecaster, quantile_coverage
    from wfm.tasks.series_data import series_windows

    name = Path(root).name
    w = series_windows([root], task, opts.context, opts.horizon)
    horizon = w["test"].horizon
    horizons = tuple(h for h in (1, 4, 16, 64, horizon) if h <= horizon)
    context = w["test"].context
    period = _period(opts, float(w["test"][0]["interval"]), context)
    result["periods"][name] = period
    classical = _classical_series(w["test"], period)
    result["classical"][name] = classical
    first_row = len(result["rows"])
    train = None
    for spec in models:
        say(f"{task.name} / {name}: {spec}")
        row: dict[str, Any] = {"dataset": name, "model": result["labels"][spec]}
        if _is_baseline(task, spec):
            kw: dict[str, Any] = {}
            if spec == "seasonal":
                kw = {"period": period}
                row["period"] = _period_label(period)
            elif spec in SERIES_TRAINABLE:
                kw = {"max_horizon": horizon}
            f = build_baseline(spec, **kw)
            row.update(kind="baseline", mode="full-shot" if spec in SERIES_TRAINABLE else "closed form")
            if spec in SERIES_TRAINABLE:
                if train is None:
                    train = (stack_windows(w["train"], opts.max_train_windows, opts.seed),
                             stack_windows(w["val"], 20_000, opts.seed) if len(w["val"]) else None)
                b = opts.train_budget(spec)
                with _threads(b["threads"]):
                    f.fit(train[0], train[1], steps=b["steps"], lr=opts.lr, batch_size=b["batch"], seed=opts.seed)
                row.update(train_windows=len(train[0][0]), train_steps=b["steps"], batch_size=b["batch"])
        else:
            f = _foundation(task, spec)
            if not hasattr(f, "forecast"):
                raise CheckpointError(f"{spec}: a {type(f).__name__} has no forecast(); task {task.name} needs a "
                                      "series forecaster (a causal model or a baseline)")
            if isinstance(f, torch.nn.Module):
                f.eval()
            row.update(kind="foundation", mode="zero-shot", train_windows=0)
        r = evaluate_forecaster(f, w["test"], horizons=horizons)
        row.update(nmse_db=r["nmse_db"], window_nmse=r["window_nmse"], window_nmse_db=r["window_nmse_db"],
                   mae=r["mae"], smape=r["smape"], windows=r["windows"], context=context, horizon=horizon)
        if len(getattr(f, "quantile_levels", ())) >= 2:
            cov = quantile_coverage(f, w["test"])
            row.update(interval_coverage=cov["interval"], interval_nominal=cov["interval_nominal"],
                       quantile_below=cov["below"])
        result["rows"].append(row)
        result["curves"][f"{row['model']} @ {name}"] = r["per_step"]["nmse_db"]
    add_best_classical(result["rows"][first_row:], classical)


# ---------------------------------------------------------------------------- best classical


def _period(opts: EvalOptions, interval: float, context: int) -> int | None:
    """``--period`` if given, else the seasonal period of the interval and context."""
    from wfm.models.baselines import seasonal_period

    return opts.period if opts.period else seasonal_period(interval, context)


def _period_label(period: int | None) -> int | str:
    return period if period is not None else "none (< 1 day of context: persistence)"


def _classical_series(windows: Any, period: int | None) -> dict[str, float]:
    """Per-window NMSE of persistence, context mean and (with a period) seasonal naive."""
    from wfm.models.baselines import build_baseline
    from wfm.tasks.forecasting import collect_forecasts
    from wfm.tasks.metrics import window_nmse

    out = {}
    for name in CLASSICAL_NAMES:
        if name == "seasonal" and period is None:
            continue
        f = build_baseline(name, **({"period": period} if name == "seasonal" else {}))
        pred, target, _ = collect_forecasts(f, windows)
        out[name] = float(window_nmse(pred, target).mean())
    return out


def _classical_csi(csi: torch.Tensor, mask: torch.Tensor, axis: str, interval: float,
                   period: int | None) -> dict[str, float]:
    """Per-window NMSE over the hidden part of the classical baselines, each (antenna,
    subcarrier) or (step, antenna) series on its own."""
    from wfm.models.baselines import build_baseline
    from wfm.tasks.csi_prediction import forecast_hidden
    from wfm.tasks.metrics import window_nmse

    out = {}
    for name in CLASSICAL_NAMES:
        if name == "seasonal" and period is None:
            continue
        f = build_baseline(name, **({"period": period} if name == "seasonal" else {}))
        out[name] = float(window_nmse(forecast_hidden(f, csi, mask, axis, interval), csi, mask).mean())
    return out


# ---------------------------------------------------------------------------- future beam


def _future_beam(task: Task, models: list[str], root: str, opts: EvalOptions, result: dict, say) -> None:
    from wfm.tasks.future_beam import BeamRNN, knn_scores, load_beam_windows, persistence_scores
    from wfm.tasks.data import train_subset
    from wfm.tasks.future_beam import BeamWindows
    from wfm.tasks.scoring import score_classes

    name = Path(root).name
    context, horizon = opts.context or task.context, opts.horizon or task.horizon
    w = load_beam_windows(root, context, horizon, opts.seed, task.name)
    test = w["test"]
    for spec in models:
        if not _is_baseline(task, spec):
            from wfm.tasks.models import is_mae

            model = _foundation(task, spec)
            if not is_mae(model):
                raise CheckpointError(f"{spec}: a {type(model).__name__}; task {task.name} fine-tunes an MAE encoder "
                                      "or evaluates its baselines")
            if context % model.patch_size[0]:
                raise CheckpointError(f"{spec}: context {context} is not a multiple of the patch's time size "
                                      f"{model.patch_size[0]}")
        fracs = opts.train_fractions if spec != "persistence" else (1.0,)
        for frac in fracs:
            say(f"{task.name} / {name}: {spec} (train fraction {frac:g})")
            idx = torch.from_numpy(train_subset(len(w["train"]), frac, opts.seed))
            tr = BeamWindows(*(getattr(w["train"], f)[idx] for f in BeamWindows.__dataclass_fields__))
            if spec == "persistence":
                scores = persistence_scores(test)
            elif spec == "position-knn":
                scores = knn_scores(tr, test, opts.knn)
            elif not _is_baseline(task, spec):
                import copy

                from wfm.tasks.future_beam import BeamMAE

                torch.manual_seed(opts.seed)
                net = BeamMAE(copy.deepcopy(model), test.past.shape[2])
                scores = net.fit(tr, w["val"], steps=opts.train_steps, lr=opts.lr / 2, batch_size=opts.batch_size,
                                 seed=opts.seed).scores(test)
            else:
                b = opts.train_budget(spec)
                with _threads(b["threads"]):
                    model = BeamRNN(test.past.shape[2], cell=spec).fit(tr, w["val"], steps=b["steps"], lr=opts.lr,
                                                                       batch_size=b["batch"], seed=opts.seed)
                scores = model.scores(test)
            s = score_classes(scores, test.label, test.future_power)
            kind = "baseline" if _is_baseline(task, spec) else "foundation"
            result["rows"].append({"dataset": name, "model": result["labels"][spec], "kind": kind,
                                   "mode": "closed form" if spec == "persistence" else
                                   "full-shot" if kind == "baseline" else "full fine-tuning",
                                   "train_fraction": frac, "train_samples": len(tr) if spec != "persistence" else 0,
                                   "trajectories_test": int(len(torch.unique(test.trajectory))),
                                   "context": context, "horizon": horizon, **s})
