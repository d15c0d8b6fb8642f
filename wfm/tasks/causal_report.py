"""Measure the causal multi-task forecaster: zero-shot, fine-tuning, multi-task vs single-kind,
real data, and model-based resource allocation. Prints Markdown tables and writes JSON.

    PYTHONPATH=. python pretrain/causal_report.py [--quick] [--out DIR] [--data-dir DIR]

What it does (CPU; ~12 min with defaults on 2 cores, ~2 min with ``--quick``):

a. generates small datasets from the catalog recipes into ``--data-dir`` (default
   ``$WFM_DATA/causal-report``; kept between runs): CSI (UMa 3.5 GHz with 128 steps of 1 ms,
   the ``uma-3p5`` recipe with more time steps and a smaller array, read as real/imag series),
   AoA (``traj-vehicular``, ``traj-pedestrian``), traffic (``traffic-10min``, ``traffic-hourly``)
   and the held-out ``traj-highway-heldout``; pretrains ``causal_tiny`` on the CSI + AoA +
   traffic mixture (one third each; distance and speed series are never seen);
b. zero-shot on the distance series of ``traj-highway-heldout`` (test = last 30 % of its users),
   NMSE at horizons 1, 4, 16, next to persistence, linear extrapolation and an LSTM trained
   full-shot on the first 70 % of the users' distance series (``wfm.models.baselines``);
c. the causal model fine-tuned briefly on the same distance training windows;
d. per-kind NMSE on the held-out CSI / AoA / traffic test splits against the baselines (LSTM
   trained full-shot per kind) and against ``causal_tiny`` models pretrained on one kind only
   with the same number of steps;
e. real data from ``../shared/datasets`` (skipped when absent): Milan traffic (Telecom Italia
   layout) and DeepSense 6G beam power / bearing series, imported with the series loaders,
   zero-shot against seasonal-naive and persistence;
f. the proactive power-allocation environment (``wfm.envs.allocation``) on held-out highway
   trajectories: water-filling fed the causal model's multi-step distance forecast vs fed only
   the current distance (persistence) vs the oracle future.

NMSE is the series NMSE of ``wfm.tasks.metrics.series_nmse`` (error energy over the energy of
the target's variation about its context mean, summed over all windows; 0 dB = forecasting the
context mean); at horizon h it covers steps 1..h (``wfm.tasks.forecasting``).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from safetensors.torch import save_file

from wfm.data.generate import generate_dataset
from wfm.data.loaders.deepsense import import_deepsense
from wfm.data.loaders.traffic_csv import import_telecom_italia
from wfm.data.recipes import load_recipe
from wfm.data.series import SeriesWindows, series_tables
from wfm.data.series_datamodule import SeriesDataModule, split_table
from wfm.envs.allocation import ForecastPolicy, OraclePolicy, ProactiveAllocationEnv, run_policy, trajectories
from wfm.models.baselines import LinearExtrapolation, Persistence, RNNForecaster, SeasonalNaive
from wfm.tasks.forecasting import evaluate_forecaster
from wfm.training.lit_causal import CausalPretrainModule, pad_to_patches

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "data" / "recipes"
SHARED = REPO.parent / "shared" / "datasets"
HORIZONS = (1, 4, 16)

# name -> (recipe, samples default, samples quick, overrides of the recipe)
DATASETS = {
    "csi": ("uma-3p5-4x8-k64-t24", 240, 60, {"time_steps": 128, "time_step_ms": 1.0, "array": [1, 2],
                                             "num_subcarriers": 8, "speed_kmh": [3, 60], "shard_size": 120}),
    "traj-vehicular": ("traj-vehicular", 300, 80, {}),
    "traj-pedestrian": ("traj-pedestrian", 200, 60, {}),
    "traffic-10min": ("traffic-10min", 200, 60, {}),
    "traffic-hourly": ("traffic-hourly", 200, 60, {}),
    "traj-highway-heldout": ("traj-highway-heldout", 200, 60, {}),
}
MIXTURE = {"csi": ["csi"], "aoa": ["traj-vehicular", "traj-pedestrian"], "traffic": ["traffic-10min", "traffic-hourly"]}
EVAL_CONTEXT = {"csi": 96, "aoa": 128, "traffic": 192, "distance": 128}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------- data


def generate(data_dir: Path, quick: bool) -> dict[str, Path]:
    """Generate (or reuse) the datasets of ``DATASETS``; returns their folders."""
    out = {}
    for name, (recipe, n_full, n_quick, overrides) in DATASETS.items():
        n = n_quick if quick else n_full
        folder = data_dir / f"{name}-{n}"
        if not (folder / "manifest.json").is_file() or overrides:
            if overrides:
                d = yaml.safe_load((RECIPES / f"{recipe}.yaml").read_text())
                d.update(overrides, name=f"{recipe}-t{overrides['time_steps']}", num_samples=n)
                path = data_dir / f"{name}.yaml"
                data_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(yaml.safe_dump(d))
                rec = load_recipe(path)
            else:
                rec = load_recipe(RECIPES / f"{recipe}.yaml")
            if not (folder / "manifest.json").is_file():
                log(f"generating {name} ({n} samples) -> {folder}")
            generate_dataset(rec, folder, num_samples=n, seed=0)  # resumes / no-op when complete
        out[name] = folder
    return out


def tables(folder: Path, kinds: list[str]) -> list:
    return series_tables(folder, kinds, split_complex=True)


def split(folder: Path, kinds: list[str], val: float, test: float) -> dict[str, list]:
    """Tables of a dataset cut by sample into train / val / test (as ``SeriesDataModule`` does)."""
    parts = [split_table(t, val, test) for t in tables(folder, kinds)]
    return {s: [p[s] for p in parts] for s in ("train", "val", "test")}


def windows(tabs: list, context: int, horizon: int, stride: int, max_windows: int, seed: int = 0) -> list[dict]:
    """A seeded subset of at most ``max_windows`` windows of ``SeriesWindows`` over ``tabs``."""
    sw = SeriesWindows(tabs, context, horizon, stride=stride, complex_mode="real_imag")
    idx = np.arange(len(sw))
    if len(idx) > max_windows:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_windows, replace=False))
    return [sw[int(i)] for i in idx]


# ---------------------------------------------------------------------------- models


def pretrain(paths: dict[str, Path], kinds: list[str], steps: int, batch: int, seed: int = 0, scaled: bool = True):
    """``causal_tiny`` pretrained on the ``kinds`` of the mixture (equal weights per kind)."""
    pl.seed_everything(seed, verbose=False)
    datasets, weights = [], []
    for kind in kinds:
        names = MIXTURE[kind]
        datasets += [str(paths[n]) for n in names]
        weights += [1.0 / len(names)] * len(names)
    dm = SeriesDataModule(datasets, weights=weights, kinds=kinds, context=192, horizon=32, batch_size=batch,
                          samples_per_epoch=steps * batch, eval_windows=32, val_fraction=0.1, test_fraction=0.1,
                          seed=seed)
    module = CausalPretrainModule(model="causal_tiny", lr=2e-3, warmup_steps=min(100, steps // 10), min_lr_ratio=0.05,
                                  scaled_loss=scaled)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         gradient_clip_val=1.0)
    t0 = time.time()
    trainer.fit(module, datamodule=dm)
    log(f"pretrained causal_tiny on {'+'.join(kinds)}: {steps} steps in {time.time() - t0:.0f} s")
    return module.model.eval()


def fine_tune(model, train: list[dict], steps: int, lr: float = 5e-4, batch: int = 32, seed: int = 0):
    """A copy of ``model`` trained on full windows ``context + target`` with the next-patch loss."""
    m = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.0)
    x = torch.stack([torch.cat([w["context"], w["target"]]) for w in train]).float()
    ctx_len = train[0]["context"].shape[0]
    itv = torch.stack([torch.as_tensor(w["interval"], dtype=torch.float32) for w in train])
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(len(x), (min(batch, len(x)),), generator=g)
        b = {"values": x[i], "observed": torch.ones_like(x[i], dtype=torch.bool),
             "context_len": torch.full((len(i),), ctx_len)}
        v, o, c = pad_to_patches(b, m.patch_len)
        loss, *_ = m.loss(v, o, itv[i], c, scaled=True)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
    return m.eval()


def fit_lstm(train: list[dict], val: list[dict], steps: int, seed: int = 0):
    return RNNForecaster(cell="lstm", max_horizon=max(HORIZONS)).fit(train, val, steps=steps, lr=3e-3,
                                                                      batch_size=128, seed=seed)


def score(forecaster: Any, wins: list[dict]) -> dict[str, Any]:
    r = evaluate_forecaster(forecaster, wins, horizons=HORIZONS, batch_size=256)
    return {f"h{h}": r["at_horizon"][h]["nmse_db"] for h in HORIZONS} | {"windows": r["windows"]}


# ---------------------------------------------------------------------------- sections


def section_distance(model, paths, cfg) -> dict[str, Any]:
    """(b) zero-shot and (c) fine-tuned on held-out highway distance series."""
    parts = split(paths["traj-highway-heldout"], ["distance"], 0.1, 0.3)
    c, h = EVAL_CONTEXT["distance"], max(HORIZONS)
    train = windows(parts["train"], c, h, stride=16, max_windows=cfg["train_windows"])
    val = windows(parts["val"], c, h, stride=32, max_windows=500)
    test = windows(parts["test"], c, h, stride=32, max_windows=cfg["test_windows"])
    lstm = fit_lstm(train, val, cfg["lstm_steps"])
    tuned = fine_tune(model, train, cfg["finetune_steps"])
    rows = {
        "causal_tiny zero-shot": score(model, test),
        f"causal_tiny fine-tuned ({cfg['finetune_steps']} steps)": score(tuned, test),
        f"LSTM full-shot ({len(train)} windows)": score(lstm, test),
        "persistence": score(Persistence(), test),
        "linear extrapolation (4 pts)": score(LinearExtrapolation(4), test),
    }
    return {"rows": rows, "context": c, "interval_s": float(test[0]["interval"]), "tuned": tuned}


def section_kinds(model, singles, paths, cfg) -> dict[str, Any]:
    """(d) per-kind NMSE on the held-out test splits of the pretraining data."""
    out = {}
    for kind, names in MIXTURE.items():
        c, h = EVAL_CONTEXT[kind], max(HORIZONS)
        # The first dataset of each kind (the datamodule's 10 % / 10 % split: same test samples).
        parts = split(paths[names[0]], [kind], 0.1, 0.1)
        stride = 16 if kind != "traffic" else 64
        test = windows(parts["test"], c, h, stride, cfg["test_windows"])
        train = windows(parts["train"], c, h, stride, cfg["train_windows"])
        val = windows(parts["val"], c, h, stride, 500)
        rows = {"causal_tiny multi-task": score(model, test),
                f"causal_tiny {kind} only": score(singles[kind], test),
                "LSTM full-shot": score(fit_lstm(train, val, cfg["lstm_steps"]), test),
                "persistence": score(Persistence(), test),
                "linear extrapolation (4 pts)": score(LinearExtrapolation(4), test)}
        if kind == "traffic":
            rows["seasonal-naive (1 day)"] = score(SeasonalNaive(144), test)
        out[kind] = {"rows": rows, "context": c, "dataset": names[0], "interval_s": float(test[0]["interval"])}
    return out


def section_real(model, data_dir: Path, cfg) -> dict[str, Any]:
    """(e) real data of ../shared/datasets, zero-shot (skipped without the folder)."""
    out: dict[str, Any] = {}
    milan = SHARED / "traffic" / "milan_2013-11-01_internet_6cells.csv"
    if milan.is_file():
        folder = data_dir / "real-milan-traffic"
        if not (folder / "manifest.json").is_file():
            import_telecom_italia(milan, folder)
        # One day of 10-min steps per cell: 96 steps (16 h) of context, 16 (2 h 40) ahead.
        test = windows(tables(folder, ["traffic"]), 96, 16, stride=4, max_windows=10_000)
        out["Milan internet traffic (6 cells, 10 min)"] = {"rows": {
            "causal_tiny zero-shot": score(model, test), "persistence": score(Persistence(), test),
            "seasonal-naive (1 h)": score(SeasonalNaive(6), test),
            "linear extrapolation (4 pts)": score(LinearExtrapolation(4), test)}, "context": 96}
    beams = SHARED / "deepsense6g-beam"
    if beams.is_dir():
        folder = data_dir / "real-deepsense"
        if not (folder / "manifest.json").is_file():
            import_deepsense(beams, folder)
        for kind, label in (("aoa", "DeepSense 6G bearing (deg)"), ("beam_power", "DeepSense 6G beam power (64 beams)")):
            test = windows(tables(folder, [kind]), 32, 16, stride=8, max_windows=cfg["test_windows"])
            if not test:
                continue
            out[label] = {"rows": {
                "causal_tiny zero-shot": score(model, test), "persistence": score(Persistence(), test),
                "seasonal-naive (8 steps)": score(SeasonalNaive(8), test),
                "linear extrapolation (4 pts)": score(LinearExtrapolation(4), test)}, "context": 32}
    return out


def section_env(model, tuned, cfg) -> dict[str, Any]:
    """(f) proactive power allocation on held-out highway trajectories."""
    d, interval = trajectories(RECIPES / "traj-highway-heldout.yaml", num=cfg["env_users"], seed=12345)
    env = ProactiveAllocationEnv(d, interval, stride=8, history=32, episode_len=32)
    policies = {
        "oracle future (upper bound)": OraclePolicy(),
        "causal_tiny zero-shot forecast": ForecastPolicy(model),
        "causal_tiny fine-tuned forecast": ForecastPolicy(tuned),
        "linear extrapolation forecast": ForecastPolicy(LinearExtrapolation(4)),
        "current observation only (persistence)": ForecastPolicy(Persistence()),
    }
    rows = {name: run_policy(env, p, episodes=cfg["episodes"], seed=0) for name, p in policies.items()}
    return {"rows": rows, "slot_s": env.slot_s, "episode_len": env.episode_len}


# ---------------------------------------------------------------------------- report


def md_table(rows: dict[str, dict], cols: list[str], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in rows.items():
        cells = [f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(res: dict[str, Any]) -> str:
    nm = ["h1", "h4", "h16", "windows"]
    head = ["forecaster", "NMSE dB h=1", "h<=4", "h<=16", "windows"]
    out = [f"# Causal forecaster report ({'quick' if res['quick'] else 'default'} run, {res['seconds']:.0f} s)", ""]
    d = res["distance"]
    out += [f"## Zero-shot on distance (traj-highway-heldout, {d['interval_s'] * 1e3:.0f} ms, context {d['context']})",
            "", md_table(d["rows"], nm, head), ""]
    for kind, r in res["kinds"].items():
        out += [f"## {kind} test split ({r['dataset']}, interval {r['interval_s']:g} s, context {r['context']})", "",
                md_table(r["rows"], nm, head), ""]
    for name, r in res["real"].items():
        out += [f"## Real data: {name}, context {r['context']}", "", md_table(r["rows"], nm, head), ""]
    if not res["real"]:
        out += ["## Real data: skipped (../shared/datasets not found)", ""]
    e = res["env"]
    out += [f"## Proactive power allocation ({e['episode_len']} slots of {e['slot_s']:g} s, held-out highway users)", "",
            md_table(e["rows"], ["mean_return", "std_return", "episodes"],
                     ["policy", "mean return (bit/s/Hz x slots)", "std", "episodes"]), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a ~2 minute smoke run (fewer samples and steps)")
    p.add_argument("--out", default="runs/causal-report", help="folder for report.json and report.md")
    p.add_argument("--data-dir", default=None, help="dataset cache (default $WFM_DATA/causal-report)")
    p.add_argument("--steps", type=int, default=None, help="pretraining steps (default 1500, quick 60)")
    p.add_argument("--no-scaled-loss", action="store_true", help="ablation: plain MSE instead of the MASE-style loss")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these tiny models)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    quick = args.quick
    cfg = dict(steps=args.steps or (60 if quick else 1500), single_steps=None, batch=32 if quick else 48,
               train_windows=300 if quick else 2000, test_windows=200 if quick else 1000,
               lstm_steps=40 if quick else 400, finetune_steps=20 if quick else 150,
               env_users=16 if quick else 64, episodes=6 if quick else 40)
    cfg["single_steps"] = cfg["steps"]
    data_dir = Path(args.data_dir or Path(os.environ.get("WFM_DATA", "~/.cache/wfm/data")).expanduser() / "causal-report")
    out_dir = Path(args.out)
    t0 = time.time()
    paths = generate(data_dir, quick)
    scaled = not args.no_scaled_loss
    cfg["scaled_loss"] = scaled
    model = pretrain(paths, ["csi", "aoa", "traffic"], cfg["steps"], cfg["batch"], scaled=scaled)
    singles = {k: pretrain(paths, [k], cfg["single_steps"], cfg["batch"], scaled=scaled) for k in MIXTURE}
    log("scoring distance (zero-shot, fine-tune, LSTM)")
    dist = section_distance(model, paths, cfg)
    tuned = dist.pop("tuned")
    log("scoring per kind")
    kinds = section_kinds(model, singles, paths, cfg)
    log("scoring real data")
    real = section_real(model, data_dir, cfg)
    log("running the allocation environment")
    env = section_env(model, tuned, cfg)
    res = {"quick": quick, "config": cfg, "seconds": time.time() - t0, "distance": dist, "kinds": kinds,
           "real": real, "env": env, "command": " ".join(["python", "pretrain/causal_report.py", *(argv or sys.argv[1:])]),
           "nmse": "series NMSE (wfm.tasks.metrics.series_nmse) in dB over steps 1..h"}
    for r in env["rows"].values():
        r.pop("returns", None)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The weights, for a look at the model after the run (create_model("causal_tiny").load_state_dict).
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / "causal_tiny_multitask.safetensors"))
    text = markdown(res)
    (out_dir / "report.json").write_text(json.dumps(res, indent=2) + "\n")
    (out_dir / "report.md").write_text(text + "\n")
    print(text)
    log(f"wrote {out_dir / 'report.json'} and {out_dir / 'report.md'}")


if __name__ == "__main__":
    main()
