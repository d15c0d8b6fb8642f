"""``wfm evaluate``: score models and baselines on a downstream task, in one table.

    wfm evaluate --task channel-prediction-time --model persistence --model lstm \\
        --model runs/mae-tiny-cpu/checkpoints/last.ckpt --data $WFM_DATA/zs-cdl-d-1p9-4x8-k64-t24
    wfm evaluate --task future-beam --model position-knn --model lstm --data deepsense-beam \\
        --train-fraction 0.01 --train-fraction 0.1 --train-fraction 1

``--model`` (repeatable): a baseline name of the task, an exported folder, a hub id, a
``wfm pretrain`` ``.ckpt`` or ``scratch:NAME``. Trainable baselines are trained on the training
split of each ``--data`` set first (``--train-steps``). Writes ``metrics.json``, ``results.md``
and PNG plots to ``--out`` (NMSE per prediction step; accuracy per training fraction; true vs
predicted CSI).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

TABLE_COLUMNS = ("dataset", "model", "kind", "mode", "train_fraction", "train_samples", "train_windows",
                 "train_steps", "batch_size", "samples", "windows", "context", "horizon", "period", "nmse_db", "window_nmse", "window_nmse_db",
                 "best_classical", "ratio_to_best", "mae", "smape", "interval_coverage", "interval_nominal", "rmse",
                 "accuracy", "f1", "top1", "top3", "power_loss_db")


def register(sub: argparse._SubParsersAction) -> None:
    from wfm.tasks.registry import TASKS

    p = sub.add_parser("evaluate", help="score models and baselines on a downstream task (metrics JSON, "
                                        "Markdown table, plots)")
    p.add_argument("--task", required=True, choices=list(TASKS), metavar="TASK", help=f"one of {', '.join(TASKS)}")
    p.add_argument("--model", action="append", required=True, metavar="M",
                   help="baseline name, exported folder, hub id, .ckpt or scratch:NAME (repeatable)")
    p.add_argument("--data", action="append", required=True, metavar="DIR", help="dataset folder (repeatable)")
    p.add_argument("--out", default="wfm-eval", help="output folder (default: wfm-eval)")
    p.add_argument("--train-steps", type=int, default=500, help="training steps of trainable baselines")
    p.add_argument("--train-fraction", type=float, action="append", default=None,
                   help="training-set fraction(s) of trainable baselines (label and beam tasks; repeatable)")
    p.add_argument("--context", type=int, default=None, help="context length (series and beam tasks)")
    p.add_argument("--horizon", type=int, default=None, help="steps ahead (series and beam tasks)")
    p.add_argument("--period", type=int, default=None, metavar="STEPS",
                   help="seasonal period of the seasonal baseline in steps (default: from the interval: a week "
                        "where the context holds one, else a day)")
    p.add_argument("--batch-size", type=int, default=256, help="batch size of trainable baselines")
    p.add_argument("--baseline-options", action="append", default=None, metavar="NAME:KEY=V[,KEY=V]",
                   help="one trainable baseline's own budget, keys steps, batch, threads (repeatable), "
                        "e.g. transformer:steps=100,batch=32,threads=2")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_evaluate)


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """metrics.json, results.md and the plots of an ``evaluate_task`` result; returns the plots."""
    from wfm.console import markdown_table, write_json
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
        pngs.append(plots.accuracy_vs_fraction(rows, metric, out / "accuracy_vs_fraction.png", result["task"]))
    for name, ex in result["examples"].items():
        pngs.append(plots.csi_heatmap(ex["true"], ex["preds"], out / f"csi_{name}.png", ex["axis"], ex["hidden"],
                                      f"{result['task']}: {name}, sample 0, antenna 0"))
    payload = {k: v for k, v in result.items() if k != "examples"}
    payload["plots"] = [str(p) for p in pngs]
    write_json(out / "metrics.json", payload)
    (out / "results.md").write_text(f"# {result['task']}\n\n{result['description']}{_period_note(result)}\n\n"
                                    + markdown_table(rows, cols))
    return pngs


def parse_baseline_options(items: list[str] | None) -> dict[str, dict[str, int]]:
    """``["lstm:steps=100,batch=64", "transformer:threads=2"]`` -> ``{"lstm": {...}, ...}``; a
    one-line ``DataError`` on anything else."""
    from wfm.data.errors import DataError

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


def _period_note(result: dict[str, Any]) -> str:
    """" (seasonal period: 144 steps)" per dataset, for titles; empty where no task has one."""
    periods = result.get("periods") or {}
    if not periods:
        return ""
    text = ", ".join(f"{name}: {p} steps" if p else f"{name}: none (context < 1 day)" for name, p in periods.items())
    return f" (seasonal period {text}; best classical = best of persistence, context mean, seasonal)"


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from wfm.console import console, print_table, progress_bar
    from wfm.tasks.evaluation import EvalOptions, evaluate_task

    if args.period is not None and args.period < 1:
        from wfm.data.errors import DataError

        raise DataError(f"--period must be >= 1 step, got {args.period}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    opts = EvalOptions(train_steps=args.train_steps, seed=args.seed, context=args.context, horizon=args.horizon,
                       train_fractions=tuple(args.train_fraction or (1.0,)), period=args.period,
                       batch_size=args.batch_size, baseline_options=parse_baseline_options(args.baseline_options))
    total = len(args.model) * len(args.data)
    with progress_bar(f"evaluating {args.task}", total) as advance:
        def say(msg: str) -> None:
            advance(1)

        result = evaluate_task(args.task, args.model, args.data, opts, progress=say)
    out = Path(args.out)
    pngs = write_outputs(result, out)
    cols = [c for c in TABLE_COLUMNS if any(c in r for r in result["rows"])]
    print_table(result["rows"], title=f"{args.task}: {result['description']}" + _period_note(result), columns=cols)
    console.print(f"wrote {out / 'metrics.json'}, {out / 'results.md'}" + (f" and {len(pngs)} plot(s)" if pngs else ""))
    return result
