"""Does pretraining transfer? Pretrained vs the same architecture from scratch, across datasets.

For each pair ``source -> target`` of real datasets (``wfm.tasks.real_data``: Intel 5300 and
Nexmon WiFi CSI, Milan traffic cells, DeepSense 6G), a model is fine-tuned on the source's
windows for the same budget (steps, batch, learning rate) from

- ``pretrained``: a shipped foundation model, and
- ``scratch``: the same architecture (same arguments, prior included) with random weights,

then scored on the *target's* windows (another capture, cell or device: data neither model was
trained on) by per-window NMSE, next to the target's best classical baseline. Every cell is a
mean over ``seeds`` (seeded batches and, for scratch, seeded initial weights) with its spread.

As a user fine-tunes, the last ``val_fraction`` of the source's windows (in time) are held out,
training windows that overlap their targets are dropped (:func:`split_by_time`), and the weights
kept are those of the step (0 included: the starting model) that beat the weights kept so far on
the held-out windows beyond noise, checked every ``eval_every`` steps (``select``: a one-sided
paired t-test at two sigma over blocks of held-out windows whose targets share no step,
``wfm.tasks.significance.beats_beyond_noise``; ``select="best"``: any improvement). A step that
wins on a handful of overlapping windows by chance is not kept, so fine-tuning moves the weights
only as far as the held-out source data can vouch for; the target is never looked at.

The causal forecaster trains with its pretraining loss on ``[context, target]`` windows (only
the target part is scored); the MAE with its masked loss under the mask that hides the view's
target: the last packets, or in frequency the upper subcarriers.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from wfm.hub import causal_arch, mae_arch
from wfm.models.causal import CausalForecaster
from wfm.models.mae import MaskedAutoencoder
from wfm.tasks.metrics import window_nmse
from wfm.tasks.real_data import (BenchData, RealBenchConfig, classical_rows, forecast_windows, generated_csi_view,
                                 generated_frequency_view, load_real_datasets, mae_windows)
from wfm.tasks.real_datasets import STUDY_CSI_HOP
from wfm.tasks.significance import SELECT, KeptWeights
from wfm.training.lit_causal import pad_to_patches


@dataclass
class TransferConfig:
    """Fine-tuning budget, the same for pretrained and scratch."""

    steps: int = 100
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.0
    seeds: int = 3
    #: Held-out share of the source windows (the last in time) that picks the step; 0: keep the last step.
    val_fraction: float = 0.2
    eval_every: int = 10
    #: How a checked step replaces the kept weights (``wfm.tasks.significance.KeptWeights``):
    #: ``"significant"`` (beats them beyond noise on the held-out windows), ``"best"`` (any lower
    #: held-out score) or ``"last"`` (no selection).
    select: str = "significant"

    def __post_init__(self) -> None:
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {', '.join(SELECT)}; got {self.select!r}")


def split_by_time(data: BenchData, val_fraction: float) -> tuple[Tensor, Tensor]:
    """``(train, val)`` window indices of ``data``: the last ``val_fraction`` of its windows are
    held out, and a training window is dropped if any of its steps is a held-out window's target
    step in the same series (``data.span``), so that no held-out target is trained on."""
    n = data.windows
    n_val = min(n - 1, max(1, math.ceil(val_fraction * n))) if val_fraction > 0 else 0
    val = torch.arange(n - n_val, n)
    if not n_val:
        return torch.arange(n), val
    if data.span is None:
        raise ValueError(f"{data.name} {data.view}: windows without positions cannot be split by time")
    # a window's target steps within its span (a frequency view's target is every packet of it)
    offset, tlen = data.target_steps or (data.context.shape[1], data.target.shape[1])
    length = offset + tlen
    series, start = data.span[:, 0], data.span[:, 1]
    keep = []
    for i in range(n - n_val):
        same = series[val] == series[i]
        lo, hi = start[val][same] + offset, start[val][same] + length  # held-out target steps [lo, hi)
        if not bool(((start[i] < hi) & (start[i] + length > lo)).any()):
            keep.append(i)
    if not keep:
        raise ValueError(f"{data.name} {data.view}: no training window left after holding out {n_val} of {n}")
    return torch.tensor(keep, dtype=torch.long), val


def _windows(data: BenchData) -> tuple[Tensor, int]:
    """Source windows for training: ``[N, L + H, *C]`` and the context length ``L``."""
    if data.csi is not None:
        return data.csi, int(data.context.shape[1])
    return torch.cat([data.context, data.target], dim=1), int(data.context.shape[1])


def _causal_step(model: Any, win: Tensor, ctx_len: int, interval: float) -> Tensor:
    x = win.movedim(1, -1).reshape(-1, win.shape[1]).float()  # every channel is a series
    batch = {"values": x, "observed": torch.ones_like(x, dtype=torch.bool),
             "context_len": torch.full((len(x),), ctx_len)}
    values, observed, ctx = pad_to_patches(batch, model.patch_len)
    group = torch.arange(len(win)).repeat_interleave(len(x) // len(win))  # a window's channels, as scored
    return model.loss(values, observed, torch.full((len(x),), float(interval)), ctx, group=group)[0]


def _mae_step(model: Any, win: Tensor, ctx_len: int, generator: torch.Generator, axis: str = "time") -> Tensor:
    """The masked loss under the mask that hides what the view predicts: the packets after the
    first ``ctx_len`` (time), or the subcarriers above the lowest ``ctx_len`` (frequency)."""
    kind, dim = ("frequency", 3) if axis == "frequency" else ("temporal", 1)
    mask, front = model.prediction_mask(win.shape, kind, 1 - ctx_len / win.shape[dim], generator=generator)
    return model(win, mask, front).loss


def finetune(model: Any, kind: str, data: BenchData, cfg: TransferConfig, seed: int,
             progress: Callable[[], None] | None = None) -> tuple[Any, int]:
    """A copy of ``model`` fine-tuned (all weights) on ``data``'s windows for ``cfg.steps``, and the
    step whose weights it keeps: the best on the held-out windows (``cfg.val_fraction``), or the last."""
    model = copy.deepcopy(model).train()
    train, val = split_by_time(data, cfg.val_fraction)
    held_out = data.subset(val) if len(val) else None
    blocks = None if held_out is None else held_out.blocks()
    kept = KeptWeights(cfg.select, blocks)

    def check(step: int) -> None:
        if held_out is None:
            return
        s = window_scores(model.eval(), kind, held_out)
        model.train()
        kept.offer(step, s, model.state_dict)

    check(0)
    win, ctx_len = _windows(data.subset(train))
    if kind == "causal" and win.is_complex():
        win = torch.view_as_real(win).flatten(-2)  # real and imaginary parts as series
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    for step in range(cfg.steps):
        idx = torch.randint(len(win), (min(cfg.batch_size, len(win)),), generator=gen)
        if kind == "causal":
            loss = _causal_step(model, win[idx], ctx_len, data.interval)
        else:
            loss = _mae_step(model, win[idx].to(torch.complex64), ctx_len, gen, data.axis)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite fine-tuning loss on {data.name} {data.view} (seed {seed})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if progress:
            progress()
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            check(step + 1)
    if kept.state is None:
        return model.eval(), cfg.steps
    model.load_state_dict(kept.state)
    return model.eval(), kept.step


def window_scores(model: Any, kind: str, data: BenchData) -> Tensor:
    """Each window's NMSE ``[N]`` of ``model`` on ``data`` (linear)."""
    pred = mae_windows(model, data) if kind == "mae" else forecast_windows(model, data)
    if kind == "mae" and not data.target.is_complex():  # an amplitude view
        pred = pred.abs()
    return window_nmse(pred, data.target)


def score(model: Any, kind: str, data: BenchData) -> float:
    """Per-window NMSE of ``model`` on ``data`` (linear, the mean over windows)."""
    return float(window_scores(model, kind, data).mean())


def best_classical(data: BenchData) -> tuple[str, float]:
    rows = [r for r in classical_rows(data, RealBenchConfig()) if r["kind"] == "classical" and "window_nmse" in r]
    best = min(rows, key=lambda r: r["window_nmse"])
    return best["model"], float(best["window_nmse"])


def is_generated(name: str) -> bool:
    """Whether a dataset name of a pair is a folder of generated CSI (``wfm data generate``), with
    ``|frequency`` after it or not."""
    return (Path(name.removesuffix("|frequency")) / "manifest.json").is_file()


def pick_dataset(data: dict[str, BenchData], name: str, split: str = "test") -> BenchData:
    """``data["NAME|VIEW"]``, or with a third field ``"NAME|VIEW|S,S"`` its DeepSense scenarios ``S``;
    a folder of generated CSI (``wfm data generate``): its ``split`` as a ``csi complex`` view
    (:func:`wfm.tasks.real_data.generated_csi_view`), predicted in frequency with ``"FOLDER|frequency"``."""
    if is_generated(name):
        folder = name.removesuffix("|frequency")
        view = generated_csi_view(folder, split)
        return generated_frequency_view(view) if folder != name else view
    parts = name.split("|")
    key = "|".join(parts[:2])
    if key not in data:
        raise KeyError(f"no dataset {key!r}; have: {', '.join(sorted(data))}")
    if len(parts) == 2:
        return data[key]
    try:
        keep = [int(x) for x in parts[2].split(",") if x.strip()]
    except ValueError:
        raise KeyError(f"{name!r}: scenarios must be integers separated by commas, like 'DeepSense 6G|beam power|1,2,3'") from None
    return data[key].scenarios(keep)


def _db(x: float) -> float:
    return 10 * math.log10(max(x, 1e-12))


def run_transfer(pretrained: Any, kind: str, pairs: list[tuple[str, str]], root: str,
                 cfg: TransferConfig | None = None, real: RealBenchConfig | None = None,
                 progress: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Rows ``{source, target, init, nmse_db_mean, nmse_db_std, ...}`` for every pair and init.

    ``pairs`` name datasets as ``"NAME|VIEW"`` (e.g. ``"Intel 5300|csi complex"``), DeepSense
    scenarios as ``"DeepSense 6G|beam power|1,2,3,4"`` (a split by site, ``BenchData.scenarios``),
    generated CSI by its folder (the source's train split, the target's test split). Scratch
    models are built with the pretrained model's own arguments (``wfm.hub`` arch), so only the
    weights differ.
    """
    cfg = cfg or TransferConfig()
    needs_real = any(not is_generated(n) for pair in pairs for n in pair)
    if real is None and any("frequency" in n for pair in pairs for n in pair):
        real = RealBenchConfig(csi_frequency=True, csi_hop=STUDY_CSI_HOP)  # the captures' views in frequency too
    data = {f"{d.name}|{d.view}": d for d in load_real_datasets(root, real)} if needs_real else {}
    arch = causal_arch(pretrained) if kind == "causal" else mae_arch(pretrained)
    for k in ("patch_size", "quantiles"):
        if k in arch:
            arch[k] = tuple(arch[k])
    cls = CausalForecaster if kind == "causal" else MaskedAutoencoder
    rows = []
    for src, tgt in pairs:
        s, t = pick_dataset(data, src, "train"), pick_dataset(data, tgt, "test")
        src, tgt = (f"{d.name}|{d.view}" for d in (s, t))
        base_name, base = best_classical(t)
        zero_shot = score(pretrained, kind, t)
        for init in ("pretrained", "scratch"):
            scores, kept = [], []
            for seed in range(cfg.seeds):
                if init == "pretrained":
                    start = pretrained
                else:
                    torch.manual_seed(seed)
                    start = cls(**arch)
                tuned, step = finetune(start, kind, s, cfg, seed, progress)
                scores.append(_db(score(tuned, kind, t)))
                kept.append(step)
            rows.append({"source": src, "target": tgt, "init": init, "seeds": cfg.seeds, "steps": cfg.steps,
                         "nmse_db_mean": float(np.mean(scores)), "nmse_db_std": float(np.std(scores)),
                         "nmse_db": scores, "kept_steps": kept, "best_classical": base_name, "best_classical_db": _db(base),
                         "pretrained_zero_shot_db": _db(zero_shot)})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """A table: one row per pair, pretrained vs scratch (mean ± std over seeds, dB; the steps kept)."""
    out = ["| source -> target | steps x seeds | pretrained zero-shot | pretrained fine-tuned | scratch fine-tuned"
           " | best classical on target | steps kept (pretrained; scratch) |", "|---|---|---|---|---|---|---|"]
    by = {}
    for r in rows:
        by.setdefault((r["source"], r["target"]), {})[r["init"]] = r
    for (src, tgt), d in by.items():
        p, s = d["pretrained"], d["scratch"]
        src, tgt = src.replace("|", ", "), tgt.replace("|", ", ")
        out.append(f"| {src} -> {tgt} | {p['steps']} x {p['seeds']} | {p['pretrained_zero_shot_db']:.2f} | "
                   f"{p['nmse_db_mean']:.2f} ± {p['nmse_db_std']:.2f} | {s['nmse_db_mean']:.2f} ± "
                   f"{s['nmse_db_std']:.2f} | {p['best_classical']} {p['best_classical_db']:.2f} | "
                   f"{'/'.join(map(str, p['kept_steps']))}; {'/'.join(map(str, s['kept_steps']))} |")
    return "\n".join(out)
