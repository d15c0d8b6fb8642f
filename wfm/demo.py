"""``wfm demo``: the main job, end to end on an embedded default, on a laptop CPU.

1. generates a small CSI dataset with Sionna (3GPP UMa, a 2x4 UPA, 32 subcarriers, 16 steps
   of 0.5 ms, users at 30-120 km/h), verifies it, prints its summary and writes a PNG of CSI
   magnitude over time x subcarrier and over antennas x subcarrier;
2. loads the released MAE-Tiny (``checkpoints/mae-tiny-catalog-cpu``, or ``--checkpoint``: any
   folder, hub id or ``.ckpt`` that ``wfm.tasks.backbones.load_model`` takes), or with ``--pretrain``
   trains its own on that dataset with ``pretrain/mae-tiny-cpu.yaml`` (``--pretrain-steps``);
3. predicts the channel zero-shot (masking what is to be predicted): the last half of the
   time steps and the upper half of the subcarriers, on the held-out tail of that dataset and
   on an unseen scenario and band (CDL-D at 1.9 GHz), next to persistence and an LSTM trained
   full-shot on the demo's training split (per antenna and subcarrier series,
   ``wfm.tasks.channel_prediction``), as a table, ``demo.json``, a PNG of true vs predicted CSI and
   a PNG of NMSE per predicted step.
"""

from __future__ import annotations

# numpy, torch, Lightning and the data and task modules are imported inside the functions that use
# them: `wfm --help` imports this module to list the verb, in 0.2 s (tests/startup_bench.py).
import argparse
import time
from contextlib import chdir
from pathlib import Path
from typing import Any

import wfm
from wfm.console import console, print_table, progress_bar, write_json
from wfm.hub import CheckpointError

#: The embedded recipe: no data file needed to run the demo.
DEMO_RECIPE: dict[str, Any] = {
    "name": "demo-uma-3p5-2x4-k32-t16",
    "model": "uma",
    "carrier_frequency_ghz": 3.5,
    "subcarrier_spacing_khz": 30,
    "num_subcarriers": 32,
    "array": [2, 4],
    "time_steps": 16,
    "time_step_ms": 0.5,
    "speed_kmh": [30, 120],
    "num_samples": 512,
    "shard_size": 128,
    "description": "wfm demo: small UMa dataset",
}
#: Zero-shot set of the demo: a scenario (CDL-D, with LoS) and band the model never saw.
DEMO_ZEROSHOT_RECIPE: dict[str, Any] = {
    **DEMO_RECIPE, "name": "demo-zs-cdl-d-1p9-2x4-k32-t16", "model": "cdl", "profile": "D",
    "delay_spread_ns": 100, "carrier_frequency_ghz": 1.9, "num_samples": 128,
    "description": "wfm demo: zero-shot set, unseen scenario and band",
}
#: Share of the demo dataset held out (its tail) for the zero-shot evaluation.
TEST_FRACTION = 0.2
#: Share before the test tail that pretraining validates on (CSIDataModule's default); the LSTM
#: baseline trains on the rest, the same samples as MAE-Tiny.
VAL_FRACTION = 0.05
#: Training steps of the LSTM baseline (each of time and frequency).
LSTM_STEPS = 600
#: The MAE the demo evaluates unless told otherwise: shipped in the repository (checkpoints.md).
SHIPPED_MAE = "checkpoints/mae-tiny-catalog-cpu"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on an embedded default (CPU, minutes)")
    p.add_argument("--out", default="wfm-demo", help="output folder (default: wfm-demo)")
    p.add_argument("--num-samples", type=int, default=DEMO_RECIPE["num_samples"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=SHIPPED_MAE,
                   help=f"MAE to evaluate: a model folder, hub id or wfm pretrain .ckpt "
                        f"(default: the shipped {SHIPPED_MAE})")
    p.add_argument("--pretrain", action="store_true",
                   help="pretrain MAE-Tiny on the demo dataset instead of loading --checkpoint")
    p.add_argument("--pretrain-steps", type=int, default=2000,
                   help="with --pretrain: MAE-Tiny training steps (about 10 steps/s on 2 cores)")
    p.add_argument("--lstm-steps", type=int, default=LSTM_STEPS,
                   help="training steps of the LSTM baseline, per prediction axis")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from wfm.data.generate import generate_dataset, summarize
    from wfm.data.recipes import recipe_from_dict
    from wfm.data.shards import ShardedDataset, read_manifest, verify_dataset

    out = Path(args.out)
    t0 = time.perf_counter()
    if not args.pretrain:  # a missing or wrong model fails before minutes of data generation
        source, model = load_checkpoint(args.checkpoint)
    recipe = recipe_from_dict(DEMO_RECIPE, source="wfm.demo.DEMO_RECIPE")
    data_dir = out / "data" / recipe.name
    console.rule("1. generate CSI with Sionna (3GPP TR 38.901 UMa)")
    with progress_bar("generating", args.num_samples) as advance:
        gen = generate_dataset(recipe, data_dir, num_samples=args.num_samples, seed=args.seed,
                               progress=advance)
    verify_dataset(data_dir)
    manifest = read_manifest(data_dir)
    summary = summarize(manifest)
    ds = ShardedDataset(data_dir)
    meta = ds.read_range(0, len(ds), ["los", "speed", "distance"])
    summary.update({"los_fraction": float(np.mean(meta["los"])),
                    "speed_kmh_mean": float(np.mean(meta["speed"]) * 3.6),
                    "distance_m_median": float(np.median(meta["distance"][:, 0])),
                    "generation_samples_per_s": gen.samples_per_second})
    print_table([summary], title="generated dataset")

    png = plot_csi(ds, out / "csi.png")
    ds.close()
    results: dict[str, Any] = {"dataset": summary, "plots": [str(png)]}
    if args.pretrain:
        console.rule("2. pretrain MAE-Tiny on it (pretrain/mae-tiny-cpu.yaml)")
        source, model = load_checkpoint(str(pretrain(data_dir, out, args.pretrain_steps)))
    else:
        console.rule(f"2. the pretrained MAE: {source}")
    console.rule("3. zero-shot channel prediction against persistence, linear prediction and a full-shot LSTM")
    zs = recipe_from_dict(DEMO_ZEROSHOT_RECIPE, source="wfm.demo.DEMO_ZEROSHOT_RECIPE")
    zs_dir = out / "data" / zs.name
    generate_dataset(zs, zs_dir, seed=args.seed)
    lstms = train_lstms(data_dir, args.lstm_steps, args.seed)
    rows, png2, png3 = evaluate(model, [(data_dir, "held-out tail", True), (zs_dir, "unseen scenario+band", False)],
                                out / "prediction.png", lstms)
    print_table(rows, title=f"zero-shot NMSE (dB, lower is better) of the MAE ({source}) vs persistence, linear "
                            "prediction (AR) and an LSTM trained on the demo training split")
    results.update({"model": source, "zero_shot": rows})
    results["plots"] += [str(png2), str(png3)]
    results["seconds"] = time.perf_counter() - t0
    write_json(out / "demo.json", results)
    console.print(f"wrote {', '.join(results['plots'])} and {out / 'demo.json'} in {results['seconds']:.1f} s")
    return results


def pretrain(data_dir: Path, out: Path, steps: int) -> Path:
    """Train MAE-Tiny on ``data_dir`` with the CPU config; returns the last checkpoint."""
    from wfm.pretrain import main as pretrain_main

    config = Path(wfm.__file__).resolve().parents[1] / "pretrain" / "mae-tiny-cpu.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: the demo needs the repository's pretrain/ configs "
                                "(run it from a clone: make demo)")
    out.mkdir(parents=True, exist_ok=True)
    with chdir(out):  # the config writes runs/ under the working directory
        pretrain_main(["--config", str(config), "--data", "wfm.data.datamodule.CSIDataModule",
                       "--data.datasets", f"[{data_dir.resolve()}]", "--data.batch_size", "32",
                       "--data.test_fraction", str(TEST_FRACTION),
                       "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(min(500, steps)),
                       "--trainer.enable_model_summary", "false"])
    ckpt = out / "runs" / "mae-tiny-cpu" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: pretraining wrote no checkpoint")
    return ckpt


def load_checkpoint(name: str) -> tuple[str, Any]:
    """The MAE of a model folder, hub id or ``wfm pretrain`` ``.ckpt`` (``wfm.tasks.backbones.load_model``);
    the default one is looked up in the repository when run from elsewhere."""
    from wfm.tasks.backbones import is_mae, load_model

    if name == SHIPPED_MAE and not Path(name).is_dir():  # run from elsewhere than the clone's root
        path = Path(wfm.__file__).resolve().parents[1] / SHIPPED_MAE
        if not path.is_dir():
            raise FileNotFoundError(f"{SHIPPED_MAE}: the shipped checkpoint is not here (run the demo from a "
                                    "clone, pass --checkpoint FOLDER_OR_HUB_ID, or --pretrain)")
        name = str(path)
    model = load_model(name)
    if not is_mae(model):
        raise CheckpointError(f"{name}: the demo predicts CSI with an MAE; this is a {type(model).__name__}")
    return name, model.eval()


def train_lstms(data_dir: Path, steps: int, seed: int) -> dict[str, Any]:
    """An LSTM forecaster per axis (time, frequency), trained on the demo's training split:
    every (antenna, subcarrier) series, real and imaginary parts (``train_csi_forecaster``)."""
    import torch

    from wfm.data.datamodule import contiguous_splits
    from wfm.data.shards import ShardedDataset
    from wfm.tasks.channel_prediction import axis_interval, hidden_count, train_csi_forecaster

    ds = ShardedDataset(data_dir)
    split = contiguous_splits([len(ds)], VAL_FRACTION, TEST_FRACTION)
    csi = {k: torch.from_numpy(ds.read_range(split[k].starts[0], split[k].stops[0], ["csi"])["csi"])
           for k in ("train", "val")}
    attrs = dict(ds.attrs)
    ds.close()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small LSTM: one thread is as fast, and far faster on a busy CPU
    try:
        out = {}
        for axis, dim in (("time", 1), ("frequency", 3)):
            n = hidden_count(csi["train"].shape[dim], 0.5, 4)
            out[axis] = train_csi_forecaster("lstm", csi["train"], axis, n, axis_interval(attrs, axis), csi["val"],
                                             steps=steps, seed=seed)
    finally:
        torch.set_num_threads(threads)
    return out


def evaluate(model: Any, datasets: list[tuple[Path, str, bool]], png: Path,
             lstms: dict[str, Any] | None = None) -> tuple[list[dict], Path, Path]:
    """Zero-shot temporal and frequency prediction NMSE of the MAE ``model`` vs persistence, linear
    prediction (the classical AR channel predictor, ``ar``) and, when given, the trained LSTMs
    (``train_lstms``).

    ``datasets`` holds ``(folder, label, held_out)``: with ``held_out`` only the test tail the
    model was not trained on is evaluated, otherwise the whole dataset.
    """
    import torch

    from wfm.data.datamodule import contiguous_splits
    from wfm.data.shards import ShardedDataset
    from wfm.models.baselines import LinearPrediction
    from wfm.tasks.channel_prediction import axis_interval, forecast_hidden, persistence, score_prediction
    from wfm.tasks.metrics import to_db, window_nmse
    from wfm.tasks.plots import csi_heatmap, nmse_vs_step

    rows, shown, curves = [], None, {}
    for root, label, held_out in datasets:
        ds = ShardedDataset(root)
        a, b = 0, len(ds)
        if held_out:
            test = contiguous_splits([len(ds)], 0.0, TEST_FRACTION)["test"]
            a, b = test.starts[0], test.stops[0]
        csi = torch.from_numpy(ds.read_range(a, b, ["csi"])["csi"])
        for kind, axis in (("temporal", "time"), ("frequency", "frequency")):
            with torch.no_grad():
                pred = model.predict(csi, kind, 0.5)
            base = persistence(csi, pred.mask, axis)
            row = {"dataset": ds.name, "set": label, "task": f"{kind} (last 50% of {axis})",
                   "samples": len(csi), "mae_db": to_db(window_nmse(pred.reconstruction, csi, pred.mask).mean()),
                   "persistence_db": to_db(window_nmse(base, csi, pred.mask).mean())}
            named = {"MAE zero-shot": pred.reconstruction, "persistence": base,
                     "AR": forecast_hidden(LinearPrediction(), csi, pred.mask, axis, axis_interval(ds.attrs, axis))}
            row["ar_db"] = to_db(window_nmse(named["AR"], csi, pred.mask).mean())
            if lstms:
                named["LSTM"] = forecast_hidden(lstms[axis], csi, pred.mask, axis, axis_interval(ds.attrs, axis))
                row["lstm_db"] = to_db(window_nmse(named["LSTM"], csi, pred.mask).mean())
            rows.append(row)
            if axis == "time":
                for name, p in named.items():
                    curves[f"{name}, {label}"] = score_prediction(p, csi, pred.mask, axis)["per_step_nmse_db"]
            if shown is None and kind == "temporal":
                hidden = int(pred.mask[0].any(dim=(1, 2)).sum())  # masked time steps
                shown = (ds.name, csi[0], {n: p[0] for n, p in named.items()}, hidden)
        ds.close()
    steps_png = nmse_vs_step(curves, png.with_name("nmse_vs_step.png"), "predicted time step (0.5 ms each)",
                             "time-domain prediction: NMSE per predicted step")
    name, true, preds, hidden = shown
    heat = csi_heatmap(true, preds, png, "time", hidden,
                       f"{name}, antenna 0: the steps above the dashed line are predicted")
    return rows, heat, steps_png


def plot_csi(ds: Any, path: Path) -> Path:
    """|H| over time x subcarrier (first antenna) and over antenna x subcarrier (first step)
    for one LoS and one NLoS sample, when the data has both."""
    import numpy as np

    from wfm.tasks.plots import pyplot, save

    plt = pyplot()

    los = ds.read_range(0, len(ds), ["los"])["los"]
    picks = [int(np.argmax(los)), int(np.argmin(los))] if los.any() and not los.all() else [0, 1]
    fig, axes = plt.subplots(len(picks), 2, figsize=(10, 3.6 * len(picks)), squeeze=False)
    dt = ds.attrs["time_step"] * 1e3
    for row, idx in zip(axes, picks):
        s = ds[idx]
        mag = 20 * np.log10(np.abs(s["csi"]) + 1e-12)
        T, A, K = mag.shape
        tag = f"sample {idx}, {'LoS' if s['los'] else 'NLoS'}, {s['speed'] * 3.6:.0f} km/h, {s['distance'][0]:.0f} m"
        im = row[0].imshow(mag[:, 0, :], aspect="auto", origin="lower", extent=[0, K, 0, T * dt])
        row[0].set(xlabel="subcarrier", ylabel="time (ms)", title=f"|H| dB, antenna 0\n{tag}")
        fig.colorbar(im, ax=row[0])
        im = row[1].imshow(mag[0], aspect="auto", origin="lower", extent=[0, K, 0, A])
        row[1].set(xlabel="subcarrier", ylabel="antenna", title=f"|H| dB, time step 0\n{tag}")
        fig.colorbar(im, ax=row[1])
    fig.suptitle(f"{ds.name}: {ds.attrs['scenario']}, {ds.attrs['carrier_frequency'] / 1e9:g} GHz")
    fig.tight_layout()
    return save(fig, path)
