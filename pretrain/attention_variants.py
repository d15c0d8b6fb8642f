"""MAEs that differ only in their attention, over seeds: zero-shot CSI prediction, mean and spread.

    PYTHONPATH=. python pretrain/attention_variants.py --runs RUNS --data $WFM_DATA/umi-2p4-1x8-k32-t24 \
        $WFM_DATA/uma-1p5-1x4-k32-t16 $WFM_DATA/zs-cdl-e-4p0-2x4-k64-t16 [--out attention.json]

``RUNS`` holds one folder per training run, named ``VARIANT-sSEED`` (``sdpa-s0``, ``complex-phase-s2``),
each an exported model or holding one in ``export/``; pretrain/studies.md ("Real vs complex
attention in the MAE") trains them with::

    for s in 0 1 2; do for att in sdpa complex-real complex-magnitude complex-phase; do
      mkdir -p RUNS/$att-s$s && cd RUNS/$att-s$s
      OMP_NUM_THREADS=1 wfm pretrain --config pretrain/mae-tiny-catalog-cpu.yaml \
        --data.datasets "[$WFM_DATA/umi-2p4-1x8-k32-t24, $WFM_DATA/uma-1p5-1x4-k32-t16]" \
        --data.val_fraction 0.1 --data.test_fraction 0.2 --model.attention $att \
        --trainer.max_steps 1500 --seed_everything $s
      wfm export runs/mae-tiny-anchored-cpu/checkpoints/last.ckpt export; cd -
    done; done

Each model predicts the last half of the time steps and the upper half of the subcarriers of each
``--data`` set's test tail (the 20 % that ``--data.test_fraction 0.2`` kept out of pretraining),
with its guard (``predict`` as shipped: the classical estimate and the learned correction weighed
by a backtest on the visible part) and without it (``guard=False``: the network's own prediction,
where the attention does its work). The score is the per-window NMSE in dB (``wfm evaluate``'s
``window_nmse_db``); persistence and linear prediction (``ar``) on the same hidden parts are the
references. Prints a Markdown table per guard setting (mean +- std over seeds) and writes every
seed's score to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np
import torch

import wfm
from wfm.models.baselines import LinearPrediction
from wfm.tasks.channel_prediction import axis_interval, forecast_hidden, persistence
from wfm.tasks.csi_data import load_csi
from wfm.tasks.metrics import mean_window_nmse, to_db, window_nmse

KINDS = {"temporal": "time", "frequency": "frequency"}  # predict's mask kind -> the axis it hides
RUN_NAME = re.compile(r"^(?P<variant>.+)-s(?P<seed>\d+)$")
#: The table's column order (other variants follow, by name).
ATTENTIONS = ("sdpa", "complex-real", "complex-magnitude", "complex-phase")


def find_runs(root: Path) -> dict[str, list[tuple[int, Path]]]:
    """``{variant: [(seed, model folder), ...]}`` of the ``VARIANT-sSEED`` folders under ``root``."""
    runs: dict[str, list[tuple[int, Path]]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        name = RUN_NAME.match(sub.name)
        model = sub / "export" if (sub / "export" / "config.json").is_file() else sub
        if name and (model / "config.json").is_file():
            runs.setdefault(name["variant"], []).append((int(name["seed"]), model))
    if not runs:
        raise SystemExit(f"{root}: no VARIANT-sSEED folder holding an exported model")
    order = sorted(runs, key=lambda v: (ATTENTIONS.index(v) if v in ATTENTIONS else len(ATTENTIONS), v))
    return {k: sorted(runs[k]) for k in order}


def run_log(model: Path) -> dict:
    """What a run's CSV log says at its end (``None`` where there is none): the last ``val/loss``
    and ``train/time`` (seconds of training), and the model's parameter count."""
    run = model.parent if model.name == "export" else model
    logs = sorted(run.glob("runs/*/csv/version_*/metrics.csv"), key=lambda f: f.stat().st_mtime)
    rows = list(csv.DictReader(logs[-1].open())) if logs else []

    def last(key: str) -> float | None:
        got = [float(r[key]) for r in rows if r.get(key)]
        return got[-1] if got else None

    params = json.loads((model / "config.json").read_text()).get("num_params")
    return {"val_loss": last("val/loss"), "train_seconds": last("train/time"), "params": params}


def window_db(per_window: torch.Tensor) -> float:
    """The per-window NMSE (the mean of ``[N]`` per-window values), in dB."""
    return to_db(mean_window_nmse(per_window))


@torch.no_grad()
def score_sets(runs: dict[str, list[tuple[int, Path]]], data: list[Path], ratio: float = 0.5) -> list[dict]:
    """One row per set, mask kind, guard setting and variant (``db``: each seed's score), and the
    ``persistence`` and ``ar`` rows of the same hidden parts."""
    rows: list[dict] = []
    sets = {}
    for root in data:
        split = load_csi(root, "test")
        sets[root.name] = (split["csi"], split["attrs"])
    models = {(v, s): wfm.from_pretrained(path).eval() for v, seeds in runs.items() for s, path in seeds}
    for name, (csi, attrs) in sets.items():
        for kind, axis in KINDS.items():
            mask = None
            for guard in (True, False):
                for variant, seeds in runs.items():
                    scores = []
                    for seed, _ in seeds:
                        p = models[variant, seed].predict(csi, kind, ratio, guard=guard)
                        mask = p.mask  # the same hidden part for every model (predict hides round(ratio * size))
                        scores.append(window_db(p.nmse))
                    rows.append({"set": name, "kind": kind, "guard": guard, "model": variant,
                                 "seeds": [s for s, _ in seeds], "db": scores})
            base = {"persistence": persistence(csi, mask, axis),
                    "ar": forecast_hidden(LinearPrediction(), csi, mask, axis, axis_interval(attrs, axis))}
            for model, pred in base.items():
                rows.append({"set": name, "kind": kind, "guard": None, "model": model, "seeds": [],
                             "db": [window_db(window_nmse(pred, csi, mask))]})
    return rows


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def markdown(rows: list[dict], variants: list[str]) -> str:
    """A table per guard setting: mean +- std over seeds, persistence and ``ar`` beside them."""
    out = []
    keys = list(dict.fromkeys((r["set"], r["kind"]) for r in rows))
    ref = {(r["set"], r["kind"], r["model"]): r["db"][0] for r in rows if r["guard"] is None}
    for guard in (True, False):
        out.append(f"guard {'on (as shipped)' if guard else 'off (the network alone)'}:\n")
        out.append("| set | task | " + " | ".join(variants) + " | persistence | ar |")
        out.append("|---" * (len(variants) + 4) + "|")
        got = {(r["set"], r["kind"], r["model"]): r["db"] for r in rows if r["guard"] is guard}
        for s, k in keys:
            cells = [mean_std(got[s, k, v]) for v in variants]
            out.append(f"| {s} | {KINDS[k]} | " + " | ".join(cells)
                       + f" | {ref[s, k, 'persistence']:.2f} | {ref[s, k, 'ar']:.2f} |")
        out.append("")
    return "\n".join(out)


def training_table(runs: dict[str, list[tuple[int, Path]]]) -> str:
    """Parameters, the last validation loss and the training time of each variant (mean +- std)."""
    out = ["| variant | parameters | val loss | training time (s) |", "|---|---|---|---|"]
    for variant, seeds in runs.items():
        logs = [run_log(path) for _, path in seeds]
        cells = []
        for key, fmt in (("val_loss", "{:.4f}"), ("train_seconds", "{:.0f}")):
            got = [g[key] for g in logs if g[key] is not None]
            cells.append("-" if not got else (f"{fmt.format(np.mean(got))} ± {fmt.format(np.std(got))}"
                                              if len(got) > 1 else fmt.format(got[0])))
        out.append(f"| {variant} | {logs[0]['params']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True, help="folder of VARIANT-sSEED run folders")
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="CSI dataset folders (their test tails)")
    ap.add_argument("--ratio", type=float, default=0.5, help="share of the time steps / subcarriers hidden")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="JSON of every seed's score")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = find_runs(args.runs)
    rows = score_sets(runs, args.data, args.ratio)
    print(markdown(rows, list(runs)))
    print(training_table(runs))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
