"""``wfm calibrate``: choose an MAE's guard prior on measured windows of a link, or a future-beam
model's stay bias on labelled sweeps of one's own sites, and write a copy of the model.

    wfm data import intel capture.dat --out data/my-link        # windows of your own capture
    wfm calibrate checkpoints/mae-tiny-catalog-cpu --data data/my-link --out models/mae-my-link
    wfm evaluate --task channel-prediction-frequency --model models/mae-my-link --data data/my-link   # its test split

    wfm data import deepsense DIR --scenarios 1 2 3 4 --out data/my-sites   # beam sweeps of your own sites
    wfm calibrate checkpoints/beam-mae-tiny-street-cpu --data data/my-sites --split all --out models/beam-my-sites

The weights are not trained or changed. An MAE copy's ``config.json`` records its choice
(``arch.guard_prior``), which every later ``predict`` uses (``wfm.tasks.guard_calibration``); a
future-beam copy's ``trained.json`` its ``stay_bias`` and ``ar_bias`` (``wfm.tasks.future_beam.calibrate_beam_biases``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from wfm.safety import InputError

SPLITS = ("train", "val", "test", "all")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="re-choose an MAE's guard prior on measured windows of one link or receiver, "
                                         "or a future-beam model's stay bias and linear-prediction bonus on labelled sweeps of your own sites "
                                         "(no training): writes a copy of the model that uses it")
    p.add_argument("model", help="MAE model folder (wfm export, checkpoints/...), or a saved future-beam model "
                                 "(checkpoints/beam-mae-tiny-street-cpu, wfm evaluate --save)")
    p.add_argument("--data", required=True, help="CSI dataset folder of the same link or receiver, or a beam dataset "
                                                 "of your own sites for a future-beam model (wfm data import ...)")
    p.add_argument("--out", required=True, help="new folder for the calibrated copy")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--axis", choices=("time", "frequency", "both"), default="both",
                   help="MAE: which prediction to calibrate: the last steps (time), the upper subcarriers (frequency)")
    p.add_argument("--ratio", type=float, default=0.5, help="MAE: share of the axis predicted, as predict's ratio")
    p.add_argument("--split", choices=SPLITS, default="train",
                   help="the dataset's split to calibrate on (default train: keep its test split for wfm evaluate)")
    p.add_argument("--max-samples", type=int, default=1024, help="MAE: use at most this many windows (the first ones)")
    p.add_argument("--json", default=None, help="also write every rule's scores and the choice as JSON here")
    p.set_defaults(func=cmd_calibrate)


def load_windows(root: str | Path, split: str, max_samples: int) -> Any:
    """The first ``max_samples`` CSI windows ``[N, T, A, K]`` of ``split`` (``all``: every sample)."""
    import torch

    from wfm.data.errors import DataError
    from wfm.tasks.csi_data import load_csi

    if split == "all":
        csi = load_csi(root, "train", task="calibrate", val_fraction=0.0, test_fraction=0.0)["csi"]
    else:
        csi = load_csi(root, split, task="calibrate")["csi"]
    csi = csi[:max_samples]  # real-valued CSI (amplitudes) stays real: only the real part of predictions is scored
    if not bool(torch.isfinite(torch.view_as_real(csi) if csi.is_complex() else csi).all()):
        raise DataError(f"{root}: the {split} split holds NaN or Inf CSI values")
    return csi


def cmd_calibrate_beam(args: argparse.Namespace, out: Path) -> None:
    """``wfm calibrate`` of a saved future-beam model: its stay bias and bonus on linear prediction's beam on the beam windows of ``--data``."""
    from wfm.console import console, print_table, write_json
    from wfm.tasks import saved
    from wfm.tasks.future_beam import AR_BIASES, calibrate_beam_biases, plan_beam

    model, meta = saved.load(args.model)
    if not hasattr(model, "stay_bias"):
        raise InputError(f"{args.model}: a saved {meta['class']} has no stay bias to calibrate (beam-mae and beam-rnn do)")
    train = meta.get("training", {})
    context, horizon = int(train.get("context", 8)), int(train.get("horizon", 1))
    if args.split == "all":
        w = plan_beam([], [str(args.data)], False, context, horizon, task="calibrate")["tests"][0][1]
    else:  # the split `wfm evaluate --data DIR` makes (by scenario where there are several), so its test stays unseen
        plan = plan_beam([str(args.data)], [str(args.data)], True, context, horizon, task="calibrate")
        w = {"train": plan["train"], "val": plan["val"], "test": plan["tests"][0][1]}[args.split]
        if w is None:
            raise InputError(f"{args.data}: no {args.split} windows in its split ({plan['description']})")
    model.horizon = horizon
    res = calibrate_beam_biases(model, w, ar_biases=AR_BIASES)
    print_table(res["rows"], title=f"{args.data} ({args.split}: {res['windows']} windows of {res['trajectories']} "
                                   f"trajectories): top-1 of the next best beam per stay bias and bonus on linear "
                                   "prediction's beam (the best of each stay bias, the chosen and the current)")
    scen = ",".join(str(s) for s in sorted(set(w.scenario.tolist())))
    training = {**train, "stay_bias_calibrated_on": f"{Path(args.data).name} ({args.split}, scenario(s) {scen}, "
                                                    f"{res['windows']} windows)"}
    saved.save(model, out, meta["task"], meta.get("family", meta["task"]), training)
    moved = (res["choice"], res["ar_choice"]) != (res["current"], res["ar_current"])
    console.print(f"stay bias {res['choice']:g}, ar bias {res['ar_choice']:g}"
                  + (f" (was {res['current']:g}, {res['ar_current']:g})" if moved
                     else " (kept: no other pair beat it beyond noise)"))
    console.print(f"wrote {out}: the same weights, stay_bias {res['choice']:g}, ar_bias {res['ar_choice']:g}")
    if args.json:
        write_json(args.json, {"model": str(args.model), "data": str(args.data), "split": args.split,
                               "out": str(out), "stay_bias": res["choice"], "ar_bias": res["ar_choice"], "result": res})


def cmd_calibrate(args: argparse.Namespace) -> None:
    import wfm
    from wfm.console import console, print_table, progress_bar, write_json
    from wfm.hub import write_model_folder
    from wfm.models.mae import GUARD_PRIORS
    from wfm.tasks.guard_calibration import AXES, calibrate_guard

    if not 0.0 < args.ratio < 1.0:
        raise InputError(f"--ratio must be in (0, 1); got {args.ratio}")
    if args.max_samples < 2:
        raise InputError(f"--max-samples must be at least 2; got {args.max_samples}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        raise InputError(f"{out}: already exists and is not empty (pass --force to replace it)")
    from wfm.tasks.saved import task_of

    if task_of(args.model) == "future-beam":  # a saved future-beam model: its stay bias
        return cmd_calibrate_beam(args, out)
    model = wfm.from_pretrained(args.model)
    if getattr(model, "model_kind", None) != "mae" or getattr(model, "prior", "none") == "none":
        raise InputError(f"{args.model}: wfm calibrate needs an MAE with a classical prior (prior: mix or an "
                         f"estimator); this is a {getattr(model, 'model_kind', '?')} model")
    csi = load_windows(args.data, args.split, args.max_samples)
    kinds = [AXES[a] for a in (("time", "frequency") if args.axis == "both" else (args.axis,))]
    results = []
    with progress_bar(f"scoring {len(csi)} windows of {args.data}", len(csi) * len(GUARD_PRIORS) * len(kinds)) as advance:
        for kind in kinds:
            results.append(calibrate_guard(model, csi, kind, args.ratio, progress=advance))
    for res in results:
        print_table(res["rows"], title=f"{args.data} ({args.split}, {res['windows']} windows of "
                                       f"{tuple(csi.shape[1:])}): {res['mask_kind']} prediction, ratio {args.ratio}")
    metadata = dict(getattr(model, "_hub_mixin_config", None) or {})
    metadata["metrics"] = {**(metadata.get("metrics") or {}),
                           "guard calibrated on": f"{Path(args.data).name} ({args.split}, {len(csi)} windows)"}
    write_model_folder(model, out, metadata)
    for res in results:
        console.print(f"{res['mask_kind']}: guard prior {res['choice']}"
                      + (f" (was {res['current']})" if res["choice"] != res["current"]
                         else " (kept: no other rule beat it beyond noise)"))
    console.print(f"wrote {out}: the same weights, guard_prior {model.guard_prior}")
    if args.json:
        write_json(args.json, {"model": str(args.model), "data": str(args.data), "split": args.split,
                               "out": str(out), "guard_prior": dict(model.guard_prior), "results": results})
