"""Future beam across sites: the fine-tuned MAE's codebook frame and its pretrained start, measured.

    PYTHONPATH=. python finetune/beam_frames.py --train ds-s1-5 --test ds-s6 ds-s7 \
        --model checkpoints/mae-tiny-catalog-cpu --seeds 3

(``ds-*``: ``wfm data import deepsense ../shared/datasets/deepsense6g-beam --scenarios ... --out ...``.)
Fine-tunes ``wfm.tasks.future_beam.BeamMAE`` (anchored on persistence) on the training folder
(its last scenario validates, as ``wfm evaluate --train`` splits it) with the codebook as given
(``absolute``) and as seen from the current best beam (``relative``, the default), from the
pretrained weights and from the same architecture with random weights (``scratch:NAME``), over
``--seeds`` seeds, exactly as ``wfm evaluate --task future-beam`` trains it (``--steps``, batch
256, half the evaluation's learning rate). Prints the top-1 of every test folder (mean ± std over
seeds) next to persistence's, and the step each seed kept; ``--out`` writes it as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path

import torch

from wfm.console import print_table
from wfm.tasks import saved
from wfm.tasks.backbones import load_model
from wfm.tasks.future_beam import BeamMAE, BeamRNN, BeamWindows, persistence_scores, plan_beam

FRAMES = {"absolute": False, "relative": True}


def top1(scores: torch.Tensor, w: BeamWindows) -> float:
    return float((scores.argmax(1) == w.label).float().mean())


def start_net(start: str, frame: str, beams: int) -> BeamMAE | None:
    """A fresh ``BeamMAE`` in ``frame`` from ``start``: an MAE (exported folder, ``.ckpt``, hub id,
    ``scratch:NAME``) wrapped with a zero head, or a future-beam MAE saved by ``wfm evaluate
    --save`` (encoder, head and anchor as trained), which has its own frame: ``None`` for another."""
    if saved.is_saved(start):
        net, _ = saved.load(start)
        if not isinstance(net, BeamMAE):
            raise SystemExit(f"{start}: a saved {type(net).__name__}, not a future-beam MAE")
        return net if net.relative == FRAMES[frame] else None
    return BeamMAE(load_model(start), beams, relative=FRAMES[frame])


def run(train: str, tests: list[str], model: str | list[str], scratch: str = "scratch:mae_tiny", seeds: int = 3,
        steps: int = 300, lr: float = 1e-3, batch_size: int = 256, frames: tuple[str, ...] = tuple(FRAMES),
        context: int = 8, horizon: int = 1, rnn: str | None = None, rnn_lr: float = 2e-3) -> dict:
    """``{"persistence": {test: top-1}, "rows": [...]}``: one row per frame and start (``model``: one
    or several pretrained starts, see ``start_net``; then ``scratch``), and with
    ``rnn`` (``gru`` or ``lstm``) that baseline plain, anchored in the absolute codebook and
    anchored in the relative one (``rnn_lr``: ``wfm evaluate``'s baseline rate)."""
    plan = plan_beam([train], tests, False, context, horizon)
    if plan["val"] is None:
        raise SystemExit(f"{train}: no validation scenario (give a folder with two or more scenarios)")
    out = {"train": train, "description": plan["description"],
           "persistence": {name: top1(persistence_scores(w), w) for name, w in plan["tests"]}, "rows": []}
    models = [model] if isinstance(model, str) else list(model)
    for start in (*models, *([scratch] if scratch else [])) if frames else ():
        for frame in frames:
            first = start_net(start, frame, plan["train"].past.shape[2])
            if first is None:
                continue
            scores: dict[str, list[float]] = {n: [] for n, _ in plan["tests"]}
            kept = []
            for seed in range(seeds):
                torch.manual_seed(seed)
                net = copy.deepcopy(first)
                net.fit(plan["train"], plan["val"], steps=steps, lr=lr, batch_size=batch_size, seed=seed)
                kept.append(net.selection["step"])
                for n, w in plan["tests"]:
                    scores[n].append(top1(net.scores(w), w))
            out["rows"].append({"start": start if start == scratch else Path(start).name, "frame": frame, "steps_kept": kept,
                                "top1": {n: v for n, v in scores.items()}})
    for label, prior, relative in (("plain", "none", False), ("anchored", "persistence", False),
                                   ("anchored", "persistence", True)) if rnn else ():
        scores = {n: [] for n, _ in plan["tests"]}
        kept = []
        for seed in range(seeds):
            net = BeamRNN(plan["train"].past.shape[2], cell=rnn, prior=prior, relative=relative)
            net.fit(plan["train"], plan["val"], steps=steps, lr=rnn_lr, batch_size=batch_size, seed=seed)
            kept.append(net.selection["step"])
            for n, w in plan["tests"]:
                scores[n].append(top1(net.scores(w), w))
        out["rows"].append({"start": f"{rnn} ({label})", "frame": "relative" if relative else "absolute",
                            "steps_kept": kept, "top1": scores})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True, help="imported DeepSense folder of two or more scenarios")
    ap.add_argument("--test", nargs="+", required=True, help="imported DeepSense folders of other scenarios")
    ap.add_argument("--model", required=True, action="append",
                    help="a pretrained MAE (exported folder, .ckpt or hub id) or a future-beam MAE saved by "
                         "wfm evaluate --save (repeatable)")
    ap.add_argument("--scratch", default="scratch:mae_tiny",
                    help="the same architecture from random weights ('' leaves it out)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3, help="wfm evaluate's --lr 2e-3, halved for the MAE as it does")
    ap.add_argument("--frames", nargs="+", choices=tuple(FRAMES), default=list(FRAMES))
    ap.add_argument("--rnn", choices=("gru", "lstm"), default=None,
                    help="also that recurrent baseline: plain, and with the MAE's anchor in each frame")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = run(args.train, args.test, args.model, args.scratch, args.seeds, args.steps, args.lr,
              frames=tuple(args.frames), rnn=args.rnn)

    def cell(v: list[float]) -> str:
        return f"{statistics.mean(v):.3f}" + (f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else "")
    rows = [{"start": "persistence", "frame": "", **{n: f"{v:.3f}" for n, v in res["persistence"].items()}}]
    rows += [{"start": r["start"], "frame": r["frame"], **{n: cell(v) for n, v in r["top1"].items()},
              "steps kept": "/".join(map(str, r["steps_kept"]))} for r in res["rows"]]
    print(res["description"])
    print_table(rows, title="top-1 on the test folders", columns=["start", "frame", *res["persistence"], "steps kept"])
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
