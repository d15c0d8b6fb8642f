"""Every downstream task x mode x baseline at CPU scale, in one table: ``finetune/results.md``.

    python finetune/results.py            # the full CPU run (about 20-25 min on 2 cores)
    python finetune/results.py --quick    # a smoke run at toy sizes (a few minutes)
    python finetune/results.py --causal PATH_OR_HUB_ID   # + zero-shot rows of a causal model
    python finetune/results.py --tasks distance-forecast --causal M --merge finetune/results.json
        # re-run some tasks; their tables replace those of an earlier full run, the rest is kept

What it does, all seeded (seed 0):

1. generates small datasets with Sionna / the series generators into ``--data-dir`` (default
   ``$WFM_DATA/finetune-results``; reused when present): the demo's UMa 3.5 GHz set (2x4 UPA,
   32 subcarriers, 16 steps of 0.5 ms), the demo's unseen CDL-D 1.9 GHz set, vehicular and
   (held-out) highway trajectories, 10-minute cell traffic; and imports DeepSense 6G from
   ``../shared/datasets/deepsense6g-beam`` when present (skipped otherwise);
2. pretrains MAE-Tiny on the UMa set with ``pretrain/mae-tiny-cpu.yaml`` (as ``wfm demo``
   does; the test tail is held out);
3. evaluates (``wfm.tasks.evaluation.evaluate_task``, what ``wfm evaluate`` runs) and fine-tunes
   (``wfm.tasks.finetune_module.run_finetune``, what ``wfm finetune --model.select last`` runs) every task, and
   writes ``results.md`` and ``results.json`` to ``--out`` (default: ``finetune/``).

Budgets are equal within a table: every trainable baseline gets the same steps, learning rate
and batch size; every fine-tuning mode the same steps (the linear probe a 10x learning rate, as
heads alone usually need).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from wfm.console import markdown_table, print_table, write_json
from wfm.data.generate import generate_dataset
from wfm.data.loaders.deepsense import import_deepsense
from wfm.data.recipes import load_recipe, recipe_from_dict
from wfm.demo import DEMO_RECIPE, DEMO_ZEROSHOT_RECIPE
from wfm.demo import pretrain as demo_pretrain
from wfm.tasks.evaluation import EvalOptions, evaluate_task
from wfm.tasks.finetune_module import run_finetune

REPO = Path(__file__).resolve().parents[2]

SIZES = {
    # samples per dataset, MAE pretraining steps, baseline training steps, fine-tuning steps
    "full": {"csi": 512, "unseen": 256, "traj": 200, "highway": 100, "traffic": 100, "pretrain": 2000,
             "train_steps": 400, "finetune_steps": 200, "beam_steps": 600},
    "quick": {"csi": 128, "unseen": 64, "traj": 30, "highway": 20, "traffic": 20, "pretrain": 100,
              "train_steps": 40, "finetune_steps": 20, "beam_steps": 60},
}
CP_TASKS = ("channel-prediction-time", "channel-prediction-frequency")
LABEL_TASKS = ("los-nlos", "beam-prediction", "distance-regression", "position-regression")
SERIES_TASKS = ("distance-forecast", "aoa-forecast", "traffic-forecast")
FRACTIONS = (0.01, 0.1, 1.0)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def generate(data_dir: Path, sizes: dict[str, int], seed: int) -> dict[str, Path]:
    """The datasets of the run (module doc), generated once per size into ``data_dir``."""
    plan = {
        "csi": (recipe_from_dict(DEMO_RECIPE, "wfm.demo.DEMO_RECIPE"), sizes["csi"]),
        "unseen": (recipe_from_dict(DEMO_ZEROSHOT_RECIPE, "wfm.demo.DEMO_ZEROSHOT_RECIPE"), sizes["unseen"]),
        "traj": (load_recipe(REPO / "data/recipes/traj-vehicular.yaml"), sizes["traj"]),
        "highway": (load_recipe(REPO / "data/recipes/traj-highway-heldout.yaml"), sizes["highway"]),
        "traffic": (load_recipe(REPO / "data/recipes/traffic-10min.yaml"), sizes["traffic"]),
    }
    out = {}
    for key, (recipe, n) in plan.items():
        folder = data_dir / f"{recipe.name}-n{n}-s{seed}"
        if not (folder / "manifest.json").is_file():
            log(f"generating {folder.name}")
            generate_dataset(recipe, folder, num_samples=n, seed=seed)
        out[key] = folder
    src = REPO.parent / "shared" / "datasets" / "deepsense6g-beam"
    if src.is_dir():
        folder = data_dir / "deepsense6g-beam"
        if not (folder / "manifest.json").is_file():
            log("importing DeepSense 6G")
            shutil.rmtree(folder, ignore_errors=True)
            import_deepsense(src, folder)
        out["deepsense"] = folder
    return out


def pretrain_mae(data: Path, work: Path, steps: int) -> Path:
    """MAE-Tiny pretrained on ``data`` (test tail held out), cached by step count."""
    run = work / f"mae-tiny-{data.name}-{steps}"
    ckpt = run / "runs" / "mae-tiny-cpu" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        log(f"pretraining MAE-Tiny for {steps} steps")
        demo_pretrain(data, run, steps)
    return ckpt


FINETUNE = REPO / "finetune"
README = FINETUNE / "README.md"
BEGIN, END = "<!-- results:begin (written by finetune/results.py) -->", "<!-- results:end -->"


def render_markdown(result: dict[str, Any], level: int = 1) -> str:
    """The results as Markdown: header (sizes, model, notes), then one table per task with its command."""
    h = "#" * level
    sizes, seconds, quick = result["sizes"], result["seconds"], result["quick"]
    csi = Path(result["datasets"].get("csi", "csi")).name
    md = [f"{h} Downstream results ({'quick smoke run' if quick else 'CPU scale'})", "",
          f"Produced by `python finetune/results.py{' --quick' if quick else ''}` in {seconds / 60:.1f} min "
          f"(seed {result['seed']}, one torch thread). Sizes: `{json.dumps(sizes)}`. Datasets in "
          f"`$WFM_DATA/finetune-results/`: " + ", ".join(f"`{Path(v).name}`" for v in result["datasets"].values())
          + ".", "",
          f"MAE-Tiny: pretrained for {sizes['pretrain']} steps on `{csi}` with `pretrain/mae-tiny-cpu.yaml` "
          "(its test tail held out), as `wfm demo` does: a CPU-scale model, not a released checkpoint.", ""]
    md += [f"- note: {n}" for n in result["notes"]] + ([""] if result["notes"] else [])
    for t in result["tables"]:
        md += [f"{h}# {t['title']}", "", f"Command: `{t['command']}`", "", markdown_table(t["rows"], t["columns"])]
    # Paths under the data cache read as $WFM_DATA, not as one machine's home folder.
    cache = str(Path(os.environ.get("WFM_DATA", "~/.cache/wfm/data")).expanduser())
    return "\n".join(md).replace(cache, "$WFM_DATA")


def update_readme(result: dict[str, Any]) -> None:
    """Replace the results block of ``finetune/README.md`` with these results."""
    text = README.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{README}: no results markers ({BEGIN} ... {END})")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(head + BEGIN + "\n" + render_markdown(result, level=3) + "\n" + END + tail)


def table_task(table: dict[str, Any]) -> str:
    """The task a results table belongs to: the first word of its title."""
    return table["title"].split()[0]


def merge_results(base: dict[str, Any], new: dict[str, Any], source: str = "results.json") -> dict[str, Any]:
    """``base`` (a full run's results) with each table of ``new`` (a run of some tasks at the same
    sizes and seed) in place of ``base``'s table of the same task, and a note naming the tasks re-run,
    the date and the minutes; ``base``'s header (time, sizes) is kept. Refused when the sizes or the
    seed differ (the tables would not be comparable), or a task of ``new`` has no table in ``base``."""
    if new["quick"] or base["quick"] or new["sizes"] != base["sizes"] or new["seed"] != base["seed"]:
        raise SystemExit(f"error: {source}: --merge needs a full run at the same sizes and seed "
                         f"(it has {base['sizes']}, seed {base['seed']}; this run {new['sizes']}, seed {new['seed']})")
    fresh = {table_task(t): t for t in new["tables"]}
    missing = sorted(set(fresh) - {table_task(t) for t in base["tables"]})
    if missing:
        raise SystemExit(f"error: {source}: no table of {', '.join(missing)} to replace")
    merged = dict(base, tables=[fresh.get(table_task(t), t) for t in base["tables"]])
    merged["notes"] = list(base["notes"]) + [n for n in new["notes"] if n not in base["notes"]] + [
        f"{', '.join(fresh)} re-run on {time.strftime('%Y-%m-%d')} in {new['seconds'] / 60:.1f} min "
        f"(`--tasks {','.join(fresh)} --merge`); the other tables are the run above"]
    return merged


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="toy sizes: a smoke run")
    p.add_argument("--data-dir", default=None, help="dataset cache (default $WFM_DATA/finetune-results)")
    p.add_argument("--work-dir", default=None, help="pretraining runs (default DATA_DIR/work)")
    p.add_argument("--out", default=str(FINETUNE), help="where results.md/json go")
    p.add_argument("--tasks", default=None, help="comma-separated subset of tasks")
    p.add_argument("--pretrain-steps", type=int, default=None, help="override the MAE pretraining steps")
    p.add_argument("--sizes", default=None, help='JSON overrides of the sizes, e.g. \'{"csi": 64}\' (tests)')
    p.add_argument("--causal", default=None, help="a causal model (folder, hub id, .ckpt) for zero-shot rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--readme", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the tables into finetune/README.md (full runs only)")
    p.add_argument("--from-json", default=None, help="re-render results.md / the README from a results.json")
    p.add_argument("--merge", default=None,
                   help="an earlier full run's results.json: this run's tables replace those of the same tasks, "
                        "the others are kept (a note says which were re-run, when and in how long)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (tiny models: 1 is about as fast as 2, and far faster on a busy CPU)")
    args = p.parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        (Path(args.out) / ("results-quick.md" if result["quick"] else "results.md")).write_text(render_markdown(result))
        if args.readme and not result["quick"]:
            update_readme(result)
        return result

    base = None
    if args.merge:  # read before the run, not after it
        try:
            base = json.loads(Path(args.merge).read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: {args.merge}: not a results.json to merge into ({e})") from None
    t0 = time.perf_counter()
    sizes = dict(SIZES["quick" if args.quick else "full"])
    sizes.update(json.loads(args.sizes) if args.sizes else {})
    if args.pretrain_steps is not None:
        sizes["pretrain"] = args.pretrain_steps
    data_dir = Path(args.data_dir or Path(os.environ.get("WFM_DATA", "~/.cache/wfm/data")).expanduser()
                    / "finetune-results")
    work = Path(args.work_dir) if args.work_dir else data_dir / "work"
    wanted = set(args.tasks.split(",")) if args.tasks else None
    want = lambda t: wanted is None or t in wanted  # noqa: E731

    torch.set_num_threads(args.threads)
    data = generate(data_dir, sizes, args.seed)
    needs_mae = any(want(t) for t in (*CP_TASKS, *LABEL_TASKS, "future-beam"))
    ckpt = pretrain_mae(data["csi"], work, sizes["pretrain"]) if needs_mae else None
    mae = str(ckpt) if ckpt else None
    opts = EvalOptions(train_steps=sizes["train_steps"], seed=args.seed)
    tables: list[dict[str, Any]] = []
    notes: list[str] = []

    def table(title: str, rows: list[dict], command: str, columns: list[str]) -> None:
        tables.append({"title": title, "rows": rows, "command": command, "columns": columns})
        print_table(rows, title=title, columns=columns)

    # ---------------------------------------------------------------- channel prediction
    for task in CP_TASKS:
        if not want(task):
            continue
        log(task)
        models = [mae, "persistence", "linear", "lstm", "gru", "transformer"]
        r = evaluate_task(task, models, [data["csi"], data["unseen"]], opts)
        rows = r["rows"]
        ft = []
        for mode, frac in (("linear-probe", 1.0), ("lora", 1.0), ("full", 1.0), ("full", 0.1), ("full", 0.01)):
            log(f"{task}: fine-tune {mode} on {frac:g} of the unseen set")
            res = run_finetune(task, [data["unseen"]], init_from=mae, mode=mode, train_fraction=frac,
                               max_steps=sizes["finetune_steps"], lr=1e-2 if mode == "linear-probe" else 1e-3,
                               seed=args.seed)
            ft.append({"dataset": data["unseen"].name, "model": "MAE-Tiny", "kind": "foundation",
                       "mode": f"{mode} ({frac:g})", "train_samples": res["train_samples"],
                       "trainable_params": res["trainable_params"], "samples": res["samples"],
                       "nmse_db": res["nmse_db"]})
        for row in rows:
            if row["model"].endswith("last.ckpt"):
                row["model"] = "MAE-Tiny"
        table(f"{task} (NMSE dB over the hidden half, lower is better)", rows + ft,
              f"wfm evaluate --task {task} --model {mae} --model persistence --model linear --model lstm "
              f"--model gru --model transformer --data {data['csi']} --data {data['unseen']} "
              f"--train-steps {sizes['train_steps']}; fine-tuning rows: wfm finetune --config "
              f"finetune/{task}.yaml --model.init_from {mae} --data.datasets '[{data['unseen']}]' "
              f"--model.mode MODE --data.train_fraction F --trainer.max_steps {sizes['finetune_steps']} --model.select last",
              ["dataset", "model", "kind", "mode", "train_samples", "trainable_params", "samples", "nmse_db"])

    # ---------------------------------------------------------------- labels from CSI
    for task in LABEL_TASKS:
        if not want(task):
            continue
        log(task)
        rows = []
        runs = [("MAE-Tiny", mae, m, 1.0) for m in ("linear-probe", "lora", "full")]
        runs += [("MAE-Tiny", mae, "linear-probe", f) for f in FRACTIONS[:2]]
        runs += [("transformer from scratch", "scratch:mae_tiny", "full", 1.0)]
        runs += [("MLP on raw CSI", "baseline:mlp", "full", f) for f in FRACTIONS]
        for label, init, mode, frac in runs:
            res = run_finetune(task, [data["csi"]], init_from=init, mode=mode, train_fraction=frac,
                               max_steps=sizes["finetune_steps"], lr=1e-2 if mode == "linear-probe" else 1e-3,
                               seed=args.seed)
            rows.append({"dataset": data["csi"].name, "model": label, "mode": mode, "train_fraction": frac,
                         **{k: v for k, v in res.items() if k not in ("task", "model", "mode", "train_fraction", "steps")}})
        metric_cols = {"los-nlos": ["accuracy", "f1"], "beam-prediction": ["top1", "top3", "power_loss_db"]}
        cols = ["model", "mode", "train_fraction", "train_samples", "trainable_params", "samples",
                *metric_cols.get(task, ["rmse", "mae"])]
        table(f"{task} on {data['csi'].name} (test tail)", rows,
              f"wfm finetune --config finetune/{task}.yaml --model.init_from {mae} --data.datasets '[{data['csi']}]' "
              f"--model.mode MODE --data.train_fraction F --trainer.max_steps {sizes['finetune_steps']} --model.select last; "
              f"MLP: wfm evaluate --task {task} --model mlp --data {data['csi']} --train-steps {sizes['finetune_steps']}",
              cols)

    # ---------------------------------------------------------------- series forecasting
    if not args.causal:
        notes.append("no causal model given (--causal PATH_OR_HUB_ID): the causal model's zero-shot rows, and so "
                     "the claim 'zero-shot distance prediction of the causal model beats a full-shot LSTM', "
                     "are not measured here")
    for task in SERIES_TASKS:
        if not want(task):
            continue
        log(task)
        sets = [data["traffic"]] if task == "traffic-forecast" else [data["traj"], data["highway"]]
        models = ["persistence", "linear", *(["seasonal"] if task == "traffic-forecast" else []), "lstm", "gru",
                  "transformer", *([args.causal] if args.causal else [])]
        r = evaluate_task(task, models, sets, opts)
        table(f"{task} (series NMSE dB: error over the target's variation about the context mean)", r["rows"],
              f"wfm evaluate --task {task} " + " ".join(f"--model {m}" for m in models) + " "
              + " ".join(f"--data {s}" for s in sets) + f" --train-steps {sizes['train_steps']}",
              ["dataset", "model", "mode", "train_windows", "windows", "context", "horizon", "nmse_db", "mae", "smape"])

    # ---------------------------------------------------------------- DeepSense future beam
    if want("future-beam"):
        if "deepsense" in data:
            log("future-beam")
            # The table is the within-scenario split by trajectory (wfm evaluate now defaults to by scenario).
            bopts = EvalOptions(train_steps=sizes["beam_steps"], seed=args.seed, train_fractions=FRACTIONS,
                                split="trajectory")
            r = evaluate_task("future-beam", ["persistence", "position-knn", "lstm", "gru", mae, "scratch:mae_tiny"],
                              [data["deepsense"]], bopts)
            for row in r["rows"]:
                if row["model"].endswith("last.ckpt"):
                    row["model"] = "MAE-Tiny (CSI-pretrained)"
            table("future-beam on DeepSense 6G scenarios 1-7 (split by trajectory; best beam 1 step = 0.1 s ahead "
                  "from the last 8 beam-power vectors)", r["rows"],
                  f"wfm evaluate --task future-beam --model persistence --model position-knn --model lstm --model gru "
                  f"--model {mae} --model scratch:mae_tiny "
                  f"--data {data['deepsense']} --split trajectory --train-steps {sizes['beam_steps']} --train-fraction 0.01 "
                  "--train-fraction 0.1 --train-fraction 1",
                  ["model", "mode", "train_fraction", "train_samples", "samples", "trajectories_test", "top1", "top3",
                   "power_loss_db"])
        else:
            notes.append("DeepSense 6G not found at ../shared/datasets/deepsense6g-beam: future-beam rows skipped")

    seconds = time.perf_counter() - t0
    out = Path(args.out)
    result = {"quick": args.quick, "sizes": sizes, "seed": args.seed, "seconds": seconds,
              "datasets": {k: str(v) for k, v in data.items()}, "mae_checkpoint": mae, "notes": notes,
              "tables": tables}
    if base is not None:
        result = merge_results(base, result, args.merge)
    write_json(out / ("results-quick.json" if args.quick else "results.json"), result)
    path = out / ("results-quick.md" if args.quick else "results.md")
    path.write_text(render_markdown(result))
    if args.readme and not args.quick:
        update_readme(result)
    log(f"wrote {path} in {seconds / 60:.1f} min")
    return result


if __name__ == "__main__":
    main()
