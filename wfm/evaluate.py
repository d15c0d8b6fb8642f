"""``wfm evaluate``: score models and baselines on a downstream task, in one table.

    wfm evaluate --task channel-prediction-time --model persistence --model lstm \\
        --model runs/mae-tiny-cpu/checkpoints/last.ckpt --data $WFM_DATA/zs-cdl-d-1p9-4x8-k64-t24
    wfm evaluate --task future-beam --model persistence --model lstm --model checkpoints/mae-tiny-catalog-cpu \\
        --train deepsense-s1-5 --test deepsense-s6 --seeds 3 --save trained/
    wfm evaluate --task traffic-forecast --model persistence --model seasonal --model lstm \\
        --model checkpoints/causal-tiny-catalog-cpu --train station-a --test station-b --context 720 --horizon 30

``--model`` (repeatable): a baseline name of the task, an exported folder, a hub id, a
``wfm pretrain`` ``.ckpt``, ``scratch:NAME`` or a folder saved by ``--save``. Data: ``--data DIR``
(repeatable) splits each folder into train / validation / test (``--split``: by sample, by
time with ``--gap``, by DeepSense scenario or trajectory; stated in the output), or ``--train
DIR ... --test DIR ...`` trains on some folders and scores every window of each test folder.
Trainable models train once per ``--seeds`` seed (mean and std in the table); ``--save DIR``
keeps them (safetensors + JSON). Writes ``metrics.json``, ``results.md`` and PNG plots to ``--out``.

Everything that can be checked without torch (arguments, folders, model names and folders) is
checked before torch is imported; models are loaded and checked before any data is read.
"""

from __future__ import annotations

# torch, wfm.tasks.evaluation (10 s of CPU with the models and Lightning) and the plots (numpy) are
# imported inside the commands: `wfm evaluate --help` and argument errors answer in 0.2 s
# (tests/startup_bench.py).
import argparse
import math
from pathlib import Path
from typing import Any

from wfm.console import _fmt, console, markdown_table, print_table, write_json
from wfm.data.errors import DataError
from wfm.hub import _HUB_ID, CheckpointError, read_config
from wfm.safety import non_negative_int, positive_int
from wfm.tasks import saved
from wfm.tasks.progress import Reporter
from wfm.tasks.registry import TASKS, get_task

#: Columns of the terminal table and results.md (metrics.json has every key of every row).
TABLE_COLUMNS = ("dataset", "model", "kind", "mode", "split", "train_fraction", "train_samples", "train_windows",
                 "train_steps", "batch_size", "selected", "seeds", "samples", "windows", "trajectories_test",
                 "context", "horizon", "period", "nmse_db", "window_nmse", "window_nmse_db", "best_classical",
                 "ratio_to_best", "mae", "smape", "interval_coverage", "interval_nominal", "quantile_loss", "rmse", "accuracy", "f1",
                 "top1", "top3", "power_loss_db", "note")
SPLITS = ("auto", "sample", "time", "trajectory", "scenario")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score models and baselines on a downstream task (metrics JSON, "
                                        "Markdown table, plots); train on some folders, test on others")
    p.add_argument("--task", required=True, choices=list(TASKS), metavar="TASK", help=f"one of {', '.join(TASKS)}")
    p.add_argument("--model", action="append", required=True, metavar="M",
                   help="baseline name, exported folder, hub id, .ckpt, scratch:NAME, a folder saved by --save "
                        "(used as it is) or tune:SAVED_DIR (a saved future-beam MAE, fine-tuned on --train) "
                        "(repeatable)")
    d = p.add_argument_group("data (--data, or --test with --train)")
    d.add_argument("--data", action="append", default=None, metavar="DIR",
                   help="dataset folder split into train / validation / test (repeatable; each scored on its own)")
    d.add_argument("--train", action="extend", nargs="+", default=None, metavar="DIR",
                   help="folder(s) to train on (validation: their last 10 %% of samples, series steps or a "
                        "DeepSense scenario)")
    d.add_argument("--test", action="extend", nargs="+", default=None, metavar="DIR",
                   help="folder(s) to test on, every window of each (each scored on its own); without --train only "
                        "models that need no training (closed-form baselines, zero-shot and saved models)")
    d.add_argument("--split", choices=SPLITS, default="auto",
                   help="how --data is split (and --train into train and validation): sample, time (series), "
                        "trajectory or scenario (DeepSense); auto: by scenario when a DeepSense folder holds several, "
                        "by sample where every split gets windows, else by time")
    d.add_argument("--gap", type=non_negative_int, default=None, metavar="STEPS",
                   help="split by time: steps left out before the validation and test parts (default: the horizon)")
    p.add_argument("--out", default="wfm-eval", help="output folder (default: wfm-eval)")
    p.add_argument("--save", default=None, metavar="DIR",
                   help="save every trained model (baselines, fine-tuned MAE) to DIR/NAME (safetensors + "
                        "trained.json); re-use one with --model DIR/NAME")
    p.add_argument("--seeds", type=positive_int, default=1, metavar="N",
                   help="train every trained model with N seeds (--seed, --seed+1, ...) and report mean and std")
    p.add_argument("--train-steps", type=positive_int, default=500, help="training steps of trainable models")
    p.add_argument("--train-fraction", type=float, action="append", default=None,
                   help="training-set fraction(s) of trainable models (label and beam tasks; repeatable)")
    p.add_argument("--context", type=positive_int, default=None, help="context length (series and beam tasks)")
    p.add_argument("--horizon", type=positive_int, default=None, help="steps ahead (series and beam tasks)")
    p.add_argument("--period", type=int, default=None, metavar="STEPS",
                   help="seasonal period of the seasonal baseline in steps (default: from the interval: a week "
                        "where the context holds one, else a day)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="batch size of trainable baselines")
    p.add_argument("--beam-frame", choices=("relative", "absolute"), default="relative",
                   help="future-beam: the fine-tuned MAE reads the codebook as seen from the current best beam "
                        "(relative: how the best beam moves, which carries to other sites) or as given (absolute: "
                        "where a site's best beams lie, for a test on the training sites); default relative")
    p.add_argument("--baseline-options", action="append", default=None, metavar="NAME:KEY=V[,KEY=V]",
                   help="one trainable baseline's own budget, keys steps, batch, threads (repeatable), "
                        "e.g. transformer:steps=100,batch=32,threads=2")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--progress-every", type=positive_int, default=100, metavar="N",
                   help="without a terminal: a progress line every N training steps (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the first training seed")
    p.set_defaults(func=cmd_evaluate)


def parse_baseline_options(items: list[str] | None) -> dict[str, dict[str, int]]:
    """``["lstm:steps=100,batch=64", "transformer:threads=2"]`` -> ``{"lstm": {...}, ...}``; a
    one-line ``DataError`` on anything else."""
    out: dict[str, dict[str, int]] = {}
    for item in items or ():
        name, sep, rest = item.partition(":")
        if not sep or not name or not rest:
            raise DataError(f"--baseline-options {item!r}: expected NAME:KEY=VALUE[,KEY=VALUE]")
        for kv in rest.split(","):
            key, eq, value = kv.partition("=")
            if key not in ("steps", "batch", "threads") or not eq or not value.isdigit() or int(value) < 1:
                raise DataError(f"--baseline-options {item!r}: {kv!r} is not steps=N, batch=N or threads=N (N >= 1)")
            out.setdefault(name, {})[key] = int(value)
    return out


def precheck(args: argparse.Namespace) -> dict[str, dict[str, int]]:
    """Every check that needs no torch and no data: argument combinations, folders, model names
    and saved-model folders (one-line errors, in well under a second). Returns the parsed
    ``--baseline-options``."""
    task = get_task(args.task)
    data, train, test = args.data or [], args.train or [], args.test or []
    if data and (train or test):
        raise DataError("give --data DIR (each folder split into train and test) or --train DIR --test DIR, not both")
    if train and not test:
        raise DataError("--train needs --test DIR: the folder(s) to score the trained models on")
    if not data and not test:
        raise DataError("no data: give --data DIR (split into train and test), or --train DIR --test DIR")
    if args.period is not None and args.period < 1:
        raise DataError(f"--period must be >= 1 step, got {args.period}")
    for f in args.train_fraction or ():
        if not 0 < f <= 1:
            raise DataError(f"--train-fraction {f:g}: must be in (0, 1] (1 = the whole training data)")
    allowed = {"series": ("auto", "sample", "time"), "future-beam": ("auto", "trajectory", "scenario"),
               "channel-prediction": ("auto", "sample"), "csi-label": ("auto", "sample")}[task.family]
    if args.split not in allowed:
        raise DataError(f"--split {args.split}: task {task.name} splits by {' or '.join(allowed[1:])}")
    if args.gap is not None and task.family != "series":
        raise DataError(f"--gap: task {task.name} is not split by time (only series tasks are)")
    for root in [*data, *train, *test]:
        if not Path(root).expanduser().exists():
            raise DataError(f"{root}: no such dataset folder")
        if not Path(root).expanduser().is_dir():
            raise DataError(f"{root}: not a folder (a dataset is a folder; import a file with wfm data import)")
    options = parse_baseline_options(args.baseline_options)
    trainable = {"series": ("lstm", "gru", "transformer"), "channel-prediction": ("lstm", "gru", "transformer"),
                 "future-beam": ("lstm", "gru", "position-knn"), "csi-label": ("mlp",)}[task.family]
    for name in options:
        if name not in trainable:
            raise DataError(f"--baseline-options {name}: not a trainable baseline of task {task.name} "
                            f"({', '.join(trainable)})")
    can_train = bool(data or train)
    for spec in args.model:
        if spec in task.baselines:
            if spec in trainable and not can_train:
                raise CheckpointError(f"{spec} is trained on data: give --train DIR (what to train it on) next to "
                                      "--test, or a model saved with --save (--model SAVED_DIR)")
            continue
        if any(spec in t.baselines for t in TASKS.values()):
            raise CheckpointError(f"baseline {spec!r} does not apply to task {task.name}; its baselines: "
                                  f"{', '.join(task.baselines)}")
        path = Path(spec).expanduser()
        if spec.startswith(saved.TUNE):
            saved.check_tune(spec, task.family, task.name, can_train)
            continue
        if spec.startswith("scratch:"):
            pass
        elif path.exists():
            if saved.is_saved(path):
                meta = saved.read_meta(path)
                other = TASKS.get(meta["task"])
                if (other is None or other.family != task.family) and not (
                        meta["class"] == "forecaster" and task.family in ("series", "channel-prediction")):
                    raise CheckpointError(f"{spec}: saved from task {meta['task']}, not a {task.family} task like "
                                          f"{task.name}")
                continue
            if path.is_dir() and (path / "config.json").is_file():  # an export: its kind, without torch
                kind = read_config(path)["model_kind"]
                need = {"future-beam": "mae", "series": "causal"}.get(task.family)
                if need and kind != need:
                    raise CheckpointError(f"{spec}: {'an MAE' if kind == 'mae' else f'a {kind}'} model; task "
                                          f"{task.name} needs "
                                          + ("an MAE (it fine-tunes the encoder) or its baselines" if need == "mae"
                                             else "a forecaster (a causal model) or a baseline"))
        elif not _HUB_ID.match(spec):
            raise CheckpointError(f"{spec}: not a baseline of task {task.name} ({', '.join(task.baselines)}), not "
                                  "an existing folder or file, and not a Hugging Face Hub id (OWNER/NAME)")
        if task.family == "csi-label":
            raise CheckpointError(f"{spec}: task {task.name} has no zero-shot mode; fine-tune the model: "
                                  f"wfm finetune --config finetune/{task.name}.yaml --model.init_from {spec}")
        if task.family == "future-beam" and not can_train:
            raise CheckpointError(f"{spec}: task {task.name} fine-tunes the MAE: give --train DIR next to --test")
    return options


def _with_std(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for display: a metric with a ``_std`` over seeds becomes ``"mean ± std"``."""
    out = []
    for r in rows:
        d = dict(r)
        for k, v in r.items():
            std = r.get(f"{k}_std")
            if isinstance(v, (int, float)) and isinstance(std, (int, float)) and not math.isnan(std):
                d[k] = f"{_fmt(float(v))} ± {_fmt(float(std))}"
        out.append(d)
    return out


#: Settings shown once above the terminal table where every row of a test set has the same value
#: (``PARTIAL``: the same value in every row that has one, e.g. the trained models' steps).
SETTINGS = ("split", "samples", "windows", "trajectories_test", "context", "horizon", "best_classical")
PARTIAL = ("train_windows", "train_steps", "batch_size", "seeds", "interval_nominal")


def terminal_table(rows: list[dict[str, Any]], cols: list[str]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """``(rows, columns, header lines)`` for the terminal: per test set, the ``SETTINGS`` that
    are equal in all its rows become one line (``ds-s7: split train/test, windows 383, ...``) and
    leave the table, and long notes become lines below it; ``results.md`` keeps every column."""
    by_set: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_set.setdefault(str(r.get("dataset")), []).append(r)
    def values(rs: list[dict[str, Any]], c: str, partial: bool) -> set[str]:
        return {_fmt(r.get(c)) for r in rs if not partial or r.get(c) is not None}

    constant = [c for c in SETTINGS if c in cols and all(
        len(values(rs, c, False)) == 1 and rs[0].get(c) is not None for rs in by_set.values())]
    constant += [c for c in PARTIAL if c in cols and all(len(values(rs, c, True)) <= 1 for rs in by_set.values())]
    lines = []
    for name, rs in by_set.items():
        shown = [f"{c.replace('_', ' ')} {next(iter(values(rs, c, c in PARTIAL)))}" for c in constant
                 if values(rs, c, c in PARTIAL)]
        if shown:
            lines.append(f"{name}: " + ", ".join(shown))
    keep = [c for c in cols if c not in constant and c not in ("note", "kind")]
    return rows, keep, lines


def _notes(result: dict[str, Any]) -> list[str]:
    """Split, period and warning lines of a result, for the output and ``results.md``."""
    by_text: dict[str, list[str]] = {}
    for name, text in (result.get("splits") or {}).items():
        by_text.setdefault(text, []).append(name)
    lines = [f"{', '.join(names)}: {text}" for text, names in by_text.items()]
    note = _period_note(result).strip()
    if note:
        lines.append(note.strip("()"))
    if result.get("seeds", 1) > 1:
        lines.append(f"trained models: mean ± std over {result['seeds']} seeds (training seeds; the split is fixed)")
    notes = dict.fromkeys(f"{r['model']} on {r['dataset']}: {r['note']}" for r in result.get("rows") or ()
                          if r.get("note"))
    lines += list(notes)
    lines += [f"warning: {w}" for w in result.get("warnings") or ()]
    return lines


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """metrics.json, results.md and the plots of an ``evaluate_task`` result; returns the plots."""
    from wfm.tasks import plots

    out.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    cols = [c for c in TABLE_COLUMNS if any(c in r for r in rows)]
    pngs: list[Path] = []
    if result["curves"]:
        xlabel = "predicted subcarrier" if result["task"].endswith("frequency") else "prediction step"
        pngs.append(plots.nmse_vs_step(result["curves"], out / "nmse_vs_step.png", xlabel, result["task"]))
    if len({r.get("train_fraction") for r in rows}) > 1:
        metric = next(m for m in ("top1", "accuracy", "rmse") if any(m in r for r in rows))
        pngs.append(plots.accuracy_vs_fraction([r for r in rows if metric in r], metric,
                                               out / "accuracy_vs_fraction.png", result["task"]))
    for name, ex in result["examples"].items():
        pngs.append(plots.csi_heatmap(ex["true"], ex["preds"], out / f"csi_{name}.png", ex["axis"], ex["hidden"],
                                      f"{result['task']}: {name}, sample 0, antenna 0"))
    payload = {k: v for k, v in result.items() if k != "examples"}
    payload["plots"] = [str(p) for p in pngs]
    write_json(out / "metrics.json", payload)
    notes = "".join(f"- {line}\n" for line in _notes(result))
    (out / "results.md").write_text(f"# {result['task']}\n\n{result['description']}{_period_note(result)}\n\n"
                                    + (notes + "\n" if notes else "") + markdown_table(_with_std(rows), cols))
    return pngs


def _period_note(result: dict[str, Any]) -> str:
    """" (seasonal period: 144 steps)" per dataset, for titles; empty where no task has one."""
    periods = result.get("periods") or {}
    if not periods:
        return ""
    text = ", ".join(f"{name}: {p} steps" if p else f"{name}: none (context < 1 day)" for name, p in periods.items())
    return f" (seasonal period {text}; best classical = best of persistence, context mean, seasonal)"


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    baseline_options = precheck(args)  # before torch: a bad argument answers at once
    from wfm.tasks.evaluation import EvalOptions, evaluate_task

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    opts = EvalOptions(train_steps=args.train_steps, seed=args.seed, context=args.context, horizon=args.horizon,
                       train_fractions=tuple(args.train_fraction or (1.0,)), period=args.period,
                       batch_size=args.batch_size, baseline_options=baseline_options, seeds=args.seeds,
                       split=args.split, gap=args.gap, save=args.save, beam_frame=args.beam_frame)
    with Reporter(f"evaluating {args.task}", None, every=args.progress_every) as rep:
        result = evaluate_task(args.task, args.model, args.data or (), opts, rep, train=args.train or (),
                               test=args.test or ())
    out = Path(args.out)
    pngs = write_outputs(result, out)
    cols = [c for c in TABLE_COLUMNS if any(c in r for r in result["rows"])]
    rows, cols, header = terminal_table(_with_std(result["rows"]), cols)
    for line in header:
        console.print(line, markup=False)
    print_table(rows, title=f"{args.task}: {result['description']}", columns=cols)
    for line in _notes(result):
        console.print(line, markup=False)
    if result["saved"]:
        console.print(f"saved {len(result['saved'])} trained model(s) under {args.save} (re-use: --model "
                      f"{result['saved'][0]})", markup=False)
    console.print(f"wrote {out / 'metrics.json'}, {out / 'results.md'}" + (f" and {len(pngs)} plot(s)" if pngs else ""))
    return result
