"""Evaluate models and baselines on a task, the same test windows for all (``wfm evaluate``).

``evaluate_task(task, models, datasets, options)`` splits each dataset folder into train /
validation / test and scores every model on its test part; ``evaluate_task(task, models,
train=[...], test=[...])`` trains on the ``train`` folders and scores on every ``test`` folder
as a whole. It returns ``{"task", "rows": [...], "curves": {...}, "examples": {...}, "splits",
"warnings", "saved", ...}``. A model is

- a baseline name (``TASK.baselines``): closed-form ones run as they are; trainable ones
  (``lstm``, ``gru``, ``transformer``, ``mlp``, ``position-knn``) are trained from scratch on the
  training data (full-shot, or ``train_fractions`` of it), the best of their validation checks
  kept (or the last weights where there is no validation split: the row's ``selected`` says
  which);
- a foundation model (an exported folder, hub id, ``.ckpt`` or ``scratch:NAME``), evaluated
  zero-shot: the MAE predicts channels by masking; a model with ``forecast`` (the causal model)
  forecasts series, and the CSI series of the channel-prediction tasks. On future-beam the MAE
  encoder is fine-tuned. Tasks without a zero-shot mode (labels from CSI) answer with a
  ``CheckpointError`` pointing to ``wfm finetune``;
- a folder written by ``--save`` (``wfm.tasks.saved``): a trained model used as it is; as
  ``tune:DIR`` (a saved future-beam MAE) trained further on the training data, its head, anchor
  and codebook frame kept, like a foundation model.

Every model is loaded and checked before any data is read. Splits (stated in ``splits`` and
the output): CSI by sample (head / middle / tail), series by sample or by time
(``wfm.tasks.series_data.plan_series``), DeepSense by scenario or by trajectory
(``wfm.tasks.future_beam.plan_beam``).

With ``seeds`` > 1 every trained model is trained once per seed (``seed``, ``seed + 1``, ...; the
split stays that of ``seed``), and its row holds the mean of every metric and ``<metric>_std``
(sample standard deviation over the seeds; every seed's value in ``per_seed``), its per-step
curve the mean of the seeds' curves. Models next to
each other in a test set's ranking that the test set cannot tell apart get a warning with the
numbers (``wfm.tasks.significance``).

Channel-prediction and series rows carry the per-window NMSE (``window_nmse``, linear, and
``window_nmse_db``), ``best_classical`` (the best of persistence, context mean and seasonal
naive on the same test windows, run whether asked for or not) and ``ratio_to_best`` (< 1 beats
it). The seasonal period comes from the interval (``wfm.models.baselines.seasonal_period``: a
week of steps where the context holds one, else a day) unless ``EvalOptions.period`` sets it;
it is in ``result["periods"]`` and in the seasonal rows' ``period``.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from wfm.data.errors import DataError
from wfm.hub import CheckpointError
from wfm.models.baselines import build_baseline, seasonal_period, stack_windows
from wfm.tasks import saved
from wfm.tasks.backbones import is_mae, load_model
from wfm.tasks.channel_prediction import (AXIS_DIM, axis_interval, forecast_hidden, mae_predict, prediction_mask,
                                          score_prediction, train_csi_forecaster)
from wfm.tasks.csi_data import LABEL_FIELDS, csi_labels, load_csi, train_subset
from wfm.tasks.finetune_module import run_finetune
from wfm.tasks.forecasting import collect_forecasts, coverage, pools_channels, quantile_coverage, score_forecasts
from wfm.tasks.future_beam import BeamMAE, BeamRNN, LinearPredictionBeams, PositionKNN, persistence_scores, plan_beam
from wfm.tasks.metrics import add_best_classical, mean_window_nmse, to_db, window_nmse
from wfm.tasks.progress import Reporter, as_reporter
from wfm.tasks.registry import TASKS, Task, get_task
from wfm.tasks.scoring import score_classes, score_task
from wfm.tasks.series_data import plan_series
from wfm.tasks.significance import Scored, separation_warnings

SERIES_TRAINABLE = ("lstm", "gru", "transformer")
BEAM_TRAINABLE = ("lstm", "gru", "position-knn")
CLASSICAL_NAMES = ("persistence", "mean", "seasonal")  # wfm.models.baselines.CLASSICAL
#: Future-beam baselines with nothing to train: persistence and linear prediction of the powers.
CLOSED_FORM_BEAMS = ("persistence", "ar")
#: Row metrics that get a mean and a ``_std`` over seeds.
METRICS = ("nmse_db", "window_nmse", "window_nmse_db", "mae", "smape", "rmse", "accuracy", "f1", "top1", "top3",
           "power_loss_db", "interval_coverage", "quantile_loss")


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
    seeds: int = 1  # trained models: one run per seed, mean and std
    split: str = "auto"  # auto | sample | time (series) | trajectory | scenario (DeepSense)
    gap: int | None = None  # split by time: steps between parts (None: the horizon)
    save: str | None = None  # folder to save every trained model into
    beam_frame: str = "relative"  # future-beam: the MAE's codebook frame (wfm.tasks.future_beam.BeamMAE)

    def train_budget(self, name: str) -> dict[str, int | None]:
        """``steps``, ``batch`` and ``threads`` of trainable baseline ``name`` (its own, else the defaults)."""
        own = self.baseline_options.get(name, {})
        return {"steps": int(own.get("steps", self.train_steps)), "batch": int(own.get("batch", self.batch_size)),
                "threads": own.get("threads")}

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(max(1, int(self.seeds)))]


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
    if spec.startswith(saved.TUNE):
        return saved.TUNE + Path(spec[len(saved.TUNE):]).name
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
    return any(spec in t.baselines for t in TASKS.values())


def needs_training(task: Task, spec: str) -> bool:
    """Whether baseline ``spec`` of ``task`` is trained on data (rather than closed form)."""
    if task.family == "csi-label":
        return True
    if task.family == "future-beam":
        return spec in BEAM_TRAINABLE
    return spec in SERIES_TRAINABLE


def evaluate_task(task_name: str, models: Sequence[str], datasets: Sequence[str | Path] = (),
                  options: EvalOptions | None = None, progress: Callable[[str], None] | Reporter | None = None,
                  *, train: Sequence[str | Path] = (), test: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Score ``models`` on ``task_name`` (see module doc): each of ``datasets`` split inside
    itself, or trained on ``train`` and tested on each of ``test``."""
    task = get_task(task_name)
    opts = options or EvalOptions()
    rep = as_reporter(progress)
    if not models:
        raise CheckpointError(f"task {task.name}: no model given (baselines: {', '.join(task.baselines)})")
    if datasets and (train or test):
        raise DataError("give --data DIR (each folder split into train and test) or --train DIR --test DIR, not both")
    if train and not test:
        raise DataError("--train needs --test DIR: the folder(s) to score the trained models on")
    if not datasets and not test:
        raise DataError("no data: give --data DIR, or --test DIR (with --train DIR for models that train)")
    for root in [*datasets, *train, *test]:
        if not Path(root).exists():
            raise DataError(f"{root}: no such dataset folder")
    within = bool(datasets)
    loaded = check_models(task, models, opts, can_train=within or bool(train))  # before any data is read
    result: dict[str, Any] = {"task": task.name, "description": task.description, "rows": [], "curves": {},
                              "examples": {}, "options": dict(opts.__dict__), "labels": model_labels(models),
                              "periods": {}, "classical": {}, "splits": {}, "warnings": [], "saved": [],
                              "seeds": len(opts.seed_list),
                              "data": {"within": [str(d) for d in datasets], "train": [str(d) for d in train],
                                       "test": [str(d) for d in test]}}
    runner = {"channel-prediction": _channel_prediction, "csi-label": _csi_label, "series": _series,
              "future-beam": _future_beam}[task.family]
    if within:
        for root in datasets:
            runner(_Run(task, list(models), [str(root)], [str(root)], True, opts, result, rep, loaded))
    else:
        runner(_Run(task, list(models), [str(r) for r in train], [str(r) for r in test], False, opts, result, rep,
                    loaded))
    return result


def _foundation(task: Task, spec: str) -> Any:
    return load_model(spec)


def check_models(task: Task, models: Sequence[str], opts: EvalOptions, can_train: bool) -> dict[str, Any]:
    """Load every foundation model and saved model, and check that each model fits the task,
    before any data is read. Returns ``{spec: model}`` (saved ones as ``("saved", obj, meta)``)."""
    loaded: dict[str, Any] = {}
    for spec in dict.fromkeys(models):
        if _is_baseline(task, spec):
            if needs_training(task, spec) and not can_train:
                raise CheckpointError(f"{spec} is trained on data: give --train DIR (what to train it on) next to "
                                      "--test, or a model saved with --save (--model SAVED_DIR)")
            continue
        if _known_baseline(spec):
            raise CheckpointError(f"baseline {spec!r} does not apply to task {task.name}; its baselines: "
                                  f"{', '.join(task.baselines)}")
        if spec.startswith(saved.TUNE):
            saved.check_tune(spec, task.family, task.name, can_train)
            obj, meta = saved.load(spec[len(saved.TUNE):])
            loaded[spec] = ("tune", obj.train(), meta)
            continue
        if saved.is_saved(spec):
            obj, meta = saved.load(spec)
            fam = get_task(meta["task"]).family if meta["task"] in _task_names() else meta.get("family")
            if fam != task.family and not (meta["class"] == "forecaster" and
                                           task.family in ("series", "channel-prediction")):
                raise CheckpointError(f"{spec}: saved from task {meta['task']}, which is not a {task.family} task "
                                      f"like {task.name}")
            loaded[spec] = ("saved", obj, meta)
            continue
        if task.family == "csi-label":
            raise CheckpointError(f"{spec}: task {task.name} has no zero-shot mode; fine-tune the model: "
                                  f"wfm finetune --config finetune/{task.name}.yaml --model.init_from {spec}")
        model = _foundation(task, spec)
        kind = type(model).__name__
        if task.family == "channel-prediction" and not (is_mae(model) or hasattr(model, "forecast")):
            raise CheckpointError(f"{spec}: a {kind} can neither mask nor forecast CSI; task {task.name} needs an "
                                  "MAE or a forecaster")
        if task.family == "series" and not hasattr(model, "forecast"):
            raise CheckpointError(f"{spec}: a {kind} has no forecast(); task {task.name} needs a series forecaster "
                                  "(a causal model or a baseline)")
        if task.family == "future-beam":
            if not is_mae(model):
                raise CheckpointError(f"{spec}: a {kind}; task {task.name} fine-tunes an MAE encoder or evaluates "
                                      "its baselines")
            context = opts.context or task.context
            if context % model.patch_size[0]:
                raise CheckpointError(f"{spec}: context {context} is not a multiple of the patch's time size "
                                      f"{model.patch_size[0]} (--context)")
            if not can_train:
                raise CheckpointError(f"{spec}: task {task.name} fine-tunes the MAE: give --train DIR next to --test")
        if isinstance(model, torch.nn.Module):
            model.eval()
        loaded[spec] = model
    return loaded


def _task_names() -> list[str]:
    return list(TASKS)


@dataclass
class _Run:
    """One call of a family runner: what trains, what is tested, and where results go."""

    task: Task
    models: list[str]
    train_roots: list[str]
    test_roots: list[str]
    within: bool
    opts: EvalOptions
    result: dict
    rep: Reporter
    loaded: dict

    def label(self, spec: str) -> str:
        return self.result["labels"][spec]

    def saved(self, spec: str) -> tuple[Any, dict] | None:
        got = self.loaded.get(spec)
        return (got[1], got[2]) if isinstance(got, tuple) and got and got[0] == "saved" else None

    def note(self, text: str) -> None:
        self.rep.note(text)

    def warn(self, text: str) -> None:
        self.result["warnings"].append(text)
        self.rep.note(f"warning: {text}")

    def split(self, name: str, description: str) -> None:
        if description not in self.result["splits"].values():  # one line for test sets split alike
            self.rep.note(f"{self.task.name} / {name}: {description}")
        self.result["splits"][name] = description

    def save(self, obj: Any, spec: str, seed: int | None, frac: float | None, training: dict[str, Any]) -> None:
        """Save a trained model to ``--save`` (a folder per model, fraction and seed)."""
        if not self.opts.save:
            return
        name = self.label(spec)
        if frac is not None and len(self.opts.train_fractions) > 1:
            name += f"-f{frac:g}"
        if seed is not None and len(self.opts.seed_list) > 1:
            name += f"-seed{seed}"
        if self.within and len(self.result["data"]["within"]) > 1:
            name = f"{Path(self.train_roots[0]).name}-{name}"
        folder = saved.save(obj, Path(self.opts.save) / saved.folder_name(name), self.task.name, self.task.family,
                            {"trained_on": self.train_roots, "within": self.within, **training})
        self.result["saved"].append(str(folder))
        self.note(f"saved {name} to {folder}")

    def kept(self, label: str, obj: Any) -> str:
        """Which weights training kept (a note when there was no validation split)."""
        sel = getattr(obj, "selection", None) or {}
        kept = str(sel.get("kept", ""))
        if kept.startswith("last"):
            self.note(f"{label}: no validation split, so no best-validation selection: kept the last weights")
        return kept


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the runs of several seeds: mean and ``_std`` of every metric (module doc)."""
    row = dict(runs[0])
    if len(runs) < 2:
        return row
    for k in METRICS:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
        if len(vals) == len(runs):
            t = torch.tensor(vals, dtype=torch.float64)
            row[k] = float(t.mean())
            row[f"{k}_std"] = float(t.std())
            row.setdefault("per_seed", {})[k] = [float(v) for v in vals]
    if "window_nmse" in row and "window_nmse_std" in row:
        row["window_nmse_db"] = to_db(row["window_nmse"])  # the dB of the mean NMSE
    row["seeds"] = len(runs)
    kept = list(dict.fromkeys(str(r.get("selected")) for r in runs if r.get("selected")))
    if kept:
        row["selected"] = kept[0] if len(kept) == 1 else "; ".join(kept)
    return row


def _finish_group(run: _Run, first_row: int, classical: dict[str, float], scored: list, metric: str,
                  higher_better: bool, groups: torch.Tensor | None, group_name: str, where: str) -> None:
    """Best classical and ratio (with its std over seeds) and the too-small warnings of one test set."""
    rows = run.result["rows"][first_row:]
    add_best_classical(rows, classical)
    if classical:
        best = min(classical.values())
        for r in rows:
            if "window_nmse_std" in r:
                r["ratio_to_best_std"] = r["window_nmse_std"] / max(best, 1e-300)
    for text in separation_warnings(scored, metric, higher_better, groups, group_name, where):
        run.warn(text)


def _score_models(run: _Run, name: str, split: str, period: int | None, classical: dict[str, float],
                  train_runs: Callable[[str], list], saved_keys: tuple[str, ...], untrained: dict[str, Any],
                  score: Callable[[str, Any, dict], tuple[dict[str, Any], torch.Tensor, list[float]]],
                  groups: torch.Tensor | None, group_name: str) -> None:
    """One row per model of a channel-prediction or series test set ``name``.

    Trainable baselines come from ``train_runs(spec)`` (one run per seed), closed-form ones are
    built with the test set's ``period``, saved models keep the ``saved_keys`` of their training
    record and foundation models run zero-shot (``untrained`` says so). ``score(spec, model,
    info)`` gives one run's row, its per-window NMSE ``[N]`` and its per-step NMSE curve (dB); a
    model's row and curve are the means over its runs. Then the best classical baseline and the
    too-small-test-set warnings (``_finish_group``)."""
    task = run.task
    first_row, scored = len(run.result["rows"]), []
    for spec in run.models:
        label = run.label(spec)
        run.rep.start(f"{task.name} / {name}: {label}")
        row: dict[str, Any] = {"dataset": name, "model": label, "split": split}
        got = run.saved(spec)
        if _is_baseline(task, spec) and spec in SERIES_TRAINABLE:
            runs = train_runs(spec)
            row.update(kind="baseline", mode="full-shot")
        elif _is_baseline(task, spec):
            f = build_baseline(spec, **({"period": period} if spec == "seasonal" else {}))
            runs = [(None, f, {"period": _period_label(period)} if spec == "seasonal" else {})]
            row.update(kind="baseline", mode="closed form")
        elif got is not None:
            runs = [(None, got[0], {k: got[1]["training"].get(k) for k in saved_keys})]
            row.update(kind="baseline", mode="trained (loaded)")
        else:
            runs = [(None, run.loaded[spec], dict(untrained))]
            row.update(kind="foundation", mode="zero-shot")
        per_run, values, curves = [], [], []
        for _, f, info in runs:
            one, nmse, curve = score(spec, f, info)
            per_run.append(one)
            values.append(nmse)
            curves.append(curve)
        row.update(_aggregate(per_run))
        run.result["rows"].append(row)
        run.result["curves"][f"{label} @ {name}"] = [float(sum(c) / len(c)) for c in zip(*curves)]
        scored.append(Scored(label, torch.stack(values).mean(0), row["window_nmse"]))
        run.rep.advance()
    _finish_group(run, first_row, classical, scored, "window_nmse", False, groups, group_name, name)


# ---------------------------------------------------------------------------- channel prediction


def _csi_parts(run: _Run) -> tuple[Any, list[tuple[str, dict]], str]:
    """``(train loader, [(name, test data)], description)`` of a channel-prediction run."""
    task = run.task
    if run.within:
        root = run.train_roots[0]
        tests = [(Path(root).name, load_csi(root, "test", task=task.name))]

        def train() -> tuple[Any, Any, dict]:
            tr, va = (load_csi(root, s, task=task.name) for s in ("train", "val"))
            return tr["csi"], va["csi"], tr["attrs"]

        n = len(tests[0][1]["csi"])
        return train, tests, (f"split by sample: the first 70 % of the samples train, the next 10 % validate, the "
                              f"last 20 % ({n}) test")
    tests = [(Path(r).name, load_csi(r, "train", task=task.name, val_fraction=0.0, test_fraction=0.0))
             for r in run.test_roots]

    def train_cross() -> tuple[Any, Any, dict]:
        parts = {s: [load_csi(r, s, task=task.name, val_fraction=0.1, test_fraction=0.0) for r in run.train_roots]
                 for s in ("train", "val")}
        shapes = {tuple(p["csi"].shape[1:]) for p in parts["train"]}
        if len(shapes) > 1:
            raise DataError(f"task {task.name}: training folders differ in CSI shape {sorted(shapes)}; train on "
                            "folders of one shape")
        return (torch.cat([p["csi"] for p in parts["train"]]), torch.cat([p["csi"] for p in parts["val"]]),
                parts["train"][0]["attrs"])

    trained_on = (f"train on {', '.join(Path(r).name for r in run.train_roots)} (the last 10 % of the samples "
                  "validate)" if run.train_roots else "no training data (models scored as they are)")
    return train_cross, tests, f"{trained_on}, test on every sample of {', '.join(Path(r).name for r in run.test_roots)}"


def _channel_prediction(run: _Run) -> None:
    task, opts = run.task, run.opts
    load_train, tests, desc = _csi_parts(run)
    for name, _ in tests:
        run.split(name, desc)
    train_data: list[Any] = []
    trained: dict[str, list] = {}

    def hidden_of(shape: tuple[int, ...]) -> int:
        mask = prediction_mask(shape, task.axis, task.ratio, (4, 4, 4))
        return int(mask.any(dim=tuple(d for d in range(4) if d != AXIS_DIM[task.axis])).sum())

    def train_runs(spec: str) -> list:
        if spec in trained:
            return trained[spec]
        if not train_data:
            train_data.extend(load_train())
        tr, va, attrs = train_data
        n_hidden, interval = hidden_of(tuple(tr.shape)), axis_interval(attrs, task.axis)
        b = opts.train_budget(spec)
        runs = []
        for seed in opts.seed_list:
            label = f"{run.label(spec)} (seed {seed})"
            with _threads(b["threads"]), run.rep.training(label, b["steps"]) as cb:
                f = train_csi_forecaster(spec, tr, task.axis, n_hidden, interval, va, b["steps"], opts.lr, b["batch"],
                                         seed, opts.max_train_windows, progress=cb)
            info = {"train_samples": len(tr), "train_steps": b["steps"], "batch_size": b["batch"],
                    "selected": run.kept(label, f)}
            run.save(f, spec, seed, None, {**info, "seed": seed, "lr": opts.lr, "axis": task.axis,
                                           "hidden_steps": n_hidden, "interval": interval})
            runs.append((seed, f, info))
        trained[spec] = runs
        return runs

    for name, test in tests:
        csi, attrs = test["csi"], test["attrs"]
        mask = prediction_mask(tuple(csi.shape), task.axis, task.ratio, (4, 4, 4))
        interval = axis_interval(attrs, task.axis)
        n_hidden = hidden_of(tuple(csi.shape))
        visible = csi.shape[AXIS_DIM[task.axis]] - n_hidden
        period = _period(opts, interval, visible) if task.axis == "time" else None
        run.result["periods"][name] = period
        classical = _classical_csi(csi, mask, task.axis, interval, period)
        run.result["classical"][name] = classical

        def score(spec: str, f: Any, info: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor, list[float]]:
            if is_mae(f):
                model_mask = f.predict(csi[:1], "temporal" if task.axis == "time" else "frequency", task.ratio).mask
                if not torch.equal(model_mask, mask[:1]):
                    raise CheckpointError(f"{spec}: its patch size {f.patch_size} hides other steps than the "
                                          "task's (4, 4, 4) patches; evaluate it on its own")
                pred = mae_predict(f, csi, task.axis, task.ratio)
            else:
                if not _is_baseline(task, spec) and run.saved(spec) is None:
                    info = {**info, "note": "every antenna x subcarrier series forecast on its own"
                            + ("; a sample's series pool their backtest evidence" if pools_channels(f) else "")
                            + ("; interval = the subcarrier spacing" if task.axis == "frequency" else "")}
                pred = forecast_hidden(f, csi, mask, task.axis, interval)
            scores = score_prediction(pred, csi, mask, task.axis)
            ex = run.result["examples"].setdefault(name, {"true": csi[0], "axis": task.axis, "hidden": n_hidden,
                                                          "interval": interval, "preds": {}})
            ex["preds"][run.label(spec)] = pred[0]
            one = {**info, **{k: v for k, v in scores.items() if k != "per_step_nmse_db"}}
            return one, window_nmse(pred, csi, mask), scores["per_step_nmse_db"]

        split = "sample" if run.within else "train/test" if run.train_roots else "test only"
        _score_models(run, name, split, period, classical, train_runs, ("train_steps", "selected"),
                      {"train_samples": 0}, score, None, "samples")


# ---------------------------------------------------------------------------- labels from CSI


def _label_test(task: Task, root: str, within: bool) -> dict[str, Any]:
    """Test samples and labels of a CSI label task (for a saved MLP)."""
    fields = LABEL_FIELDS.get(task.label, [])
    d = load_csi(root, "test", fields, task.name) if within else \
        load_csi(root, "train", fields, task.name, val_fraction=0.0, test_fraction=0.0)
    return csi_labels(d, task.label, root)


def _csi_label(run: _Run) -> None:
    task, opts = run.task, run.opts
    for root in run.test_roots:
        name = Path(root).name
        run.split(name, "split by sample: the first 70 % of the samples train, the next 10 % validate, the last 20 % "
                        "test" if run.within else
                  f"train on {', '.join(Path(r).name for r in run.train_roots)} (the last 10 % of the samples "
                  f"validate), test on every sample of {name}")
        for spec in run.models:
            label = run.label(spec)
            got = run.saved(spec)
            if got is not None:
                run.rep.start(f"{task.name} / {name}: {label}")
                data = _label_test(task, root, run.within)
                with torch.no_grad():
                    out = torch.cat([got[0].predict(data["csi"][a:a + 256]) for a in range(0, len(data["csi"]), 256)])
                s = score_task(task, {"y": data["y"], "out": out, **({"beam_power": data["beam_power"]}
                                                                      if "beam_power" in data else {})})
                run.result["rows"].append({"dataset": name, "model": label, "kind": "baseline",
                                           "mode": "trained (loaded)", **s})
                run.rep.advance()
                continue
            for frac in opts.train_fractions:
                runs = []
                for seed in opts.seed_list:
                    run.rep.start(f"{task.name} / {name}: {label} (train fraction {frac:g}, seed {seed})")
                    r = run_finetune(task.name, [root] if run.within else None, init_from=f"baseline:{spec}",
                                     mode="full", train_fraction=frac, max_steps=opts.train_steps,
                                     batch_size=opts.finetune_batch_size, lr=opts.lr, seed=seed, split_seed=opts.seed,
                                     train_datasets=None if run.within else run.train_roots,
                                     test_datasets=None if run.within else [root], return_model=bool(opts.save))
                    net = r.pop("net", None)
                    r["selected"] = f"last, step {opts.train_steps} (no val checks)"
                    if net is not None:
                        run.save(net, spec, seed, frac, {"train_fraction": frac, "train_steps": opts.train_steps,
                                                         "seed": seed, "selected": r["selected"]})
                    runs.append({k: v for k, v in r.items() if k not in ("task", "model", "mode")})
                run.result["rows"].append({"dataset": name, "model": label, "kind": "baseline", "mode": "full-shot",
                                           **_aggregate(runs)})
                run.rep.advance()


# ---------------------------------------------------------------------------- series


def _series_groups(w: Any) -> torch.Tensor:
    """The series index of every window of a ``SeriesWindows`` (windows of one series are one group)."""
    return torch.tensor([int(w._series_base[t]) + i for t, i, _ in (w.locate(j) for j in range(len(w)))])


def _series(run: _Run) -> None:
    task, opts = run.task, run.opts
    plan = plan_series(task, run.train_roots, run.test_roots, run.within, opts.context, opts.horizon, opts.split,
                       opts.gap)
    context, horizon = plan["context"], plan["horizon"]
    horizons = tuple(h for h in (1, 4, 16, 64, horizon) if h <= horizon)
    for name, _ in plan["tests"]:
        run.split(name, plan["description"])
    stacked: list[Any] = []
    trained: dict[str, list] = {}

    def train_runs(spec: str) -> list:
        if spec in trained:
            return trained[spec]
        if not stacked:
            stacked.extend([stack_windows(plan["train"], opts.max_train_windows, opts.seed),
                            stack_windows(plan["val"], 20_000, opts.seed) if len(plan["val"]) else None])
        b = opts.train_budget(spec)
        runs = []
        for seed in opts.seed_list:
            label = f"{run.label(spec)} (seed {seed})"
            f = build_baseline(spec, max_horizon=horizon)
            with _threads(b["threads"]), run.rep.training(label, b["steps"]) as cb:
                f.fit(stacked[0], stacked[1], steps=b["steps"], lr=opts.lr, batch_size=b["batch"], seed=seed,
                      progress=cb)
            info = {"train_windows": len(stacked[0][0]), "train_steps": b["steps"], "batch_size": b["batch"],
                    "selected": run.kept(label, f)}
            run.save(f, spec, seed, None, {**info, "seed": seed, "lr": opts.lr, "context": context,
                                           "horizon": horizon, "split": plan["split"],
                                           "split_description": plan["description"]})
            runs.append((seed, f, info))
        trained[spec] = runs
        return runs

    for name, w in plan["tests"]:
        period = _period(opts, float(w[0]["interval"]), context)
        run.result["periods"][name] = period
        classical = _classical_series(w, period)
        run.result["classical"][name] = classical

        def score(spec: str, f: Any, info: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor, list[float]]:
            levels = tuple(getattr(f, "quantile_levels", ()))
            both: list | None = [] if len(levels) >= 2 and hasattr(f, "forecast_with_quantiles") else None
            pred, target, ctx = collect_forecasts(f, w, quantiles_into=both)  # one run gives both, where it can
            r = score_forecasts(pred, target, ctx, horizons)
            one = {**info, "nmse_db": r["nmse_db"], "window_nmse": r["window_nmse"],
                   "window_nmse_db": r["window_nmse_db"], "mae": r["mae"], "smape": r["smape"],
                   "windows": r["windows"], "context": context, "horizon": horizon}
            if len(levels) >= 2:
                cov = coverage(torch.cat(both), target, levels) if both else quantile_coverage(f, w)
                one.update(interval_coverage=cov["interval"], interval_nominal=cov["interval_nominal"],
                           quantile_loss=cov["quantile_loss"], quantile_below=cov["below"])
            return one, window_nmse(pred, target), r["per_step"]["nmse_db"]

        _score_models(run, name, plan["split"], period, classical, train_runs,
                      ("train_windows", "train_steps", "selected"), {"train_windows": 0}, score, _series_groups(w),
                      "series")


# ---------------------------------------------------------------------------- best classical


def _period(opts: EvalOptions, interval: float, context: int) -> int | None:
    """``--period`` if given, else the seasonal period of the interval and context."""
    return opts.period if opts.period else seasonal_period(interval, context)


def _period_label(period: int | None) -> int | str:
    return period if period is not None else "none (< 1 day of context: persistence)"


def _classical_series(windows: Any, period: int | None) -> dict[str, float]:
    """Per-window NMSE of persistence, context mean and (with a period) seasonal naive."""
    out = {}
    for name in CLASSICAL_NAMES:
        if name == "seasonal" and period is None:
            continue
        f = build_baseline(name, **({"period": period} if name == "seasonal" else {}))
        pred, target, _ = collect_forecasts(f, windows)
        out[name] = mean_window_nmse(window_nmse(pred, target))
    return out


def _classical_csi(csi: torch.Tensor, mask: torch.Tensor, axis: str, interval: float,
                   period: int | None) -> dict[str, float]:
    """Per-window NMSE over the hidden part of the classical baselines, each (antenna,
    subcarrier) or (step, antenna) series on its own."""
    out = {}
    for name in CLASSICAL_NAMES:
        if name == "seasonal" and period is None:
            continue
        f = build_baseline(name, **({"period": period} if name == "seasonal" else {}))
        out[name] = mean_window_nmse(window_nmse(forecast_hidden(f, csi, mask, axis, interval), csi, mask))
    return out


# ---------------------------------------------------------------------------- future beam


def _future_beam(run: _Run) -> None:
    task, opts = run.task, run.opts
    context, horizon = opts.context or task.context, opts.horizon or task.horizon
    plan = plan_beam(run.train_roots, run.test_roots, run.within, context, horizon, opts.split, opts.seed, task.name)
    for name, _ in plan["tests"]:
        run.split(name, plan["description"])
    for text in plan["warnings"]:
        run.warn(text)
    train_all, val = plan["train"], plan["val"]
    if val is None and train_all is not None:
        run.note(f"{task.name}: no validation split: trained models keep their last weights")
    trained: dict[tuple[str, float], list] = {}

    def train_runs(spec: str, frac: float) -> list:
        key = (spec, frac)
        if key in trained:
            return trained[key]
        tr = train_all.subset(torch.from_numpy(train_subset(len(train_all), frac, opts.seed)))
        base = {"train_fraction": frac, "train_samples": len(tr), "train_trajectories": tr.trajectories}
        meta = {"context": context, "horizon": horizon, "split": plan["split"],
                "split_description": plan["description"]}
        runs = []
        if spec == "position-knn":
            knn = PositionKNN.fit(tr, opts.knn)
            run.save(knn, spec, None, frac, {**base, **meta, "k": opts.knn})
            runs.append((None, knn, base))
        for seed in (opts.seed_list if spec != "position-knn" else ()):
            label = f"{run.label(spec)} (fraction {frac:g}, seed {seed})"
            if _is_baseline(task, spec):
                b = opts.train_budget(spec)
                steps, lr, batch = b["steps"], opts.lr, b["batch"]
                net = BeamRNN(train_all.past.shape[2], cell=spec)
            else:
                b = {"threads": None}
                steps, lr, batch = opts.train_steps, opts.lr / 2, opts.batch_size
                torch.manual_seed(seed)
                start = run.loaded[spec]
                if isinstance(start, tuple):  # tune:DIR: the saved future-beam MAE, head, anchor and frame kept
                    net = copy.deepcopy(start[1])
                else:
                    net = BeamMAE(copy.deepcopy(start), train_all.past.shape[2], relative=opts.beam_frame == "relative")
            with _threads(b["threads"]), run.rep.training(label, steps) as cb:
                net.fit(tr, val, steps=steps, lr=lr, batch_size=batch, seed=seed, progress=cb)
            info = {**base, "train_steps": steps, "batch_size": batch, "selected": run.kept(label, net)}
            run.save(net, spec, seed, frac, {**info, **meta, "seed": seed, "lr": lr})
            runs.append((seed, net, info))
        trained[key] = runs
        return runs

    for name, test in plan["tests"]:
        groups_by_frac: dict[float, list] = {}
        for spec in run.models:
            label = run.label(spec)
            got = run.saved(spec)
            trains = spec not in CLOSED_FORM_BEAMS and got is None
            for frac in (opts.train_fractions if trains else (1.0,)):
                run.rep.start(f"{task.name} / {name}: {label} (train fraction {frac:g})")
                kind = "baseline" if _is_baseline(task, spec) or (got is not None and got[1]["class"] != "beam-mae") \
                    else "foundation"
                row: dict[str, Any] = {"dataset": name, "model": label, "kind": kind, "split": plan["split"],
                                       "train_fraction": frac}
                if spec in CLOSED_FORM_BEAMS:
                    runs = [(None, None if spec == "persistence" else LinearPredictionBeams(horizon),
                             {"train_samples": 0})]
                    row["mode"] = "closed form"
                elif got is not None:
                    tr_meta = got[1]["training"]
                    runs = [(None, got[0], {k: tr_meta.get(k) for k in ("train_samples", "train_steps", "selected")})]
                    row.update(mode="trained (loaded)", train_fraction=tr_meta.get("train_fraction"))
                else:
                    runs = train_runs(spec, frac)
                    row["mode"] = "full-shot" if kind == "baseline" else "full fine-tuning"
                per_run, hits = [], []
                for _, obj, info in runs:
                    one = dict(info)
                    if obj is None:
                        scores = persistence_scores(test)
                    else:
                        scores = obj.scores(test)
                    if isinstance(obj, PositionKNN):
                        cov = obj.covered(test)
                        missing = sorted(set(test.scenario[~cov].tolist()))
                        if not bool(cov.any()):
                            one["note"] = (f"not applicable: no training positions in test scenario(s) "
                                           f"{','.join(map(str, missing))} (position k-NN looks up its own scenario)")
                            run.warn(f"{name}: {label} has no training positions for scenario(s) "
                                     f"{','.join(map(str, missing))}: not scored")
                            per_run.append(one)
                            continue
                        if missing:
                            one["note"] = (f"{int((~cov).sum())} of {len(test)} windows (scenario(s) "
                                           f"{','.join(map(str, missing))}) have no training positions and count as "
                                           "wrong")
                            run.warn(f"{name}: {label}: {one['note']}")
                    one.update(score_classes(scores, test.label, test.future_power))
                    one.update(windows=len(test), trajectories_test=test.trajectories, context=context,
                               horizon=horizon)
                    per_run.append(one)
                    hits.append((scores.argmax(1) == test.label).double())
                row.update(_aggregate(per_run))
                beam_mae = next((obj for _, obj, _ in runs if isinstance(obj, BeamMAE)), None)
                if beam_mae is not None and beam_mae.prior != "none" and "note" not in row:
                    row["note"] = ("scores anchored on persistence; codebook "
                                   + ("seen from the current best beam" if beam_mae.relative else "as given"))
                row.setdefault("trajectories_test", test.trajectories)
                row.setdefault("windows", len(test))
                row.setdefault("context", context)
                row.setdefault("horizon", horizon)
                run.result["rows"].append(row)
                if hits:
                    groups_by_frac.setdefault(float(row["train_fraction"] or 1.0), []).append(
                        Scored(f"{label} (fraction {frac:g})" if len(opts.train_fractions) > 1 else label,
                               torch.stack(hits).mean(0), row["top1"]))
                run.rep.advance()
        for frac, scored in groups_by_frac.items():
            _finish_group(run, len(run.result["rows"]), {}, scored, "top1", True, test.trajectory,
                          "trajectories", name)
