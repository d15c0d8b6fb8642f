"""Score an MAE's guard rules in frequency (or, with ``--axis time``, in time) on clean and noisy
CSI: the tables of pretrain/studies.md, "The mean among the guard's choices in frequency" and "The
nearest subcarrier of the window's rank-1 approximation".

    PYTHONPATH=. python pretrain/guard_frequency.py --model checkpoints/mae-tiny-catalog-cpu \
        --data $WFM_DATA --rules "hold|ar|mean" "hold|ar|mean|rank1" --snr clean 10 0 --out guard_frequency.json

Every CSI dataset folder under ``--data`` (its ``test`` split, the first ``--samples`` samples;
``--sets`` keeps those whose name starts with one of the given prefixes) and the two real captures
of ``wfm benchmark real`` (``--datasets``) are predicted in frequency: the upper half of the
subcarriers from the lower half at every packet, as the benchmark's frequency views are; with
``--axis time`` the last 8 of a window's first 16 packets from the first 8, as its time views are
(the rule then set is ``guard_prior["temporal"]``, and the baselines persistence and the context
mean). At each
``--snr`` (``clean``, or complex Gaussian noise added at that SNR in dB relative to each window's
mean power, seed 0) the complex CSI and its amplitude are scored, and each rule's per-window
NMSE is divided by the better of the two classical baselines along the axis (the nearest visible
subcarrier or packet, and the mean of the visible ones). Prints one row per set and the geometric
mean / the count at or below 1 per SNR, view and source (real or generated).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from rich.progress import Progress

import wfm
from wfm.data.shards import MANIFEST, ShardedDataset
from wfm.tasks.metrics import window_nmse
from wfm.tasks.real_data import (RealBenchConfig, default_datasets_dir, generated_csi_view, generated_frequency_view,
                                 load_real_datasets)
from wfm.tasks.real_datasets import STUDY_CSI_HOP


def _score(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Per-window NMSE, the mean over windows (the benchmark's metric)."""
    return float(window_nmse(pred, target).mean())


def noisy(csi: torch.Tensor, snr_db: float | None, generator: torch.Generator) -> torch.Tensor:
    """``csi`` ``[N, T, A, K]`` with complex Gaussian noise at ``snr_db`` below each window's mean power."""
    if snr_db is None:
        return csi
    power = csi.abs().pow(2).mean(dim=(1, 2, 3), keepdim=True)
    noise = torch.complex(torch.randn(csi.shape, generator=generator), torch.randn(csi.shape, generator=generator))
    return csi + noise * (power / 2 * 10 ** (-snr_db / 10)).sqrt()


#: ``--axis time``: the packets of a window scored, and how many of them are predicted.
TIME_WINDOW, TIME_HIDDEN = 16, 8


def rule_ratios(model, csi: torch.Tensor, rules: list[str], amplitude: bool, axis: str = "frequency") -> dict[str, float]:
    """Each guard rule's per-window NMSE over the better of the two classical baselines along
    ``axis`` (the nearest value and the mean of the visible ones), on ``csi`` ``[N, T, A, K]`` (its
    amplitude with ``amplitude``): the upper half of the subcarriers, or the last ``TIME_HIDDEN`` of
    the first ``TIME_WINDOW`` packets."""
    full = csi.abs().to(torch.complex64) if amplitude else csi.to(torch.complex64)
    if axis == "time":
        full = full[:, :TIME_WINDOW]
        kind, dim, size, hidden = "temporal", 1, full.shape[1], min(TIME_HIDDEN, full.shape[1] - 1)
        along = full  # [N, T, A, K]: series along time
    else:
        kind, dim, size = "frequency", 3, full.shape[3]
        hidden = size // 2
        along = full.permute(0, 3, 1, 2)  # [N, K, T, A]: series along subcarriers
    ctx, tgt = along[:, :size - hidden], along[:, size - hidden:]
    if amplitude:
        ctx, tgt = ctx.real, tgt.real
    best = min(_score(ctx[:, -1:].expand_as(tgt), tgt), _score(ctx.mean(dim=1, keepdim=True).expand_as(tgt), tgt))
    kept, out = dict(model.guard_prior), {}
    try:
        for rule in rules:
            model.guard_prior = {**kept, kind: rule}
            pred = model.predict(full, kind, hidden / size).reconstruction.narrow(dim, size - hidden, hidden)
            if axis != "time":
                pred = pred.permute(0, 3, 1, 2)
            out[rule] = _score(pred.real if amplitude else pred, tgt) / best
    finally:
        model.guard_prior = kept
    return out


def csi_sets(data: Path | None, prefixes: list[str] | None, samples: int, datasets: Path,
             axis: str = "frequency") -> list[tuple[str, bool, torch.Tensor]]:
    """``(name, real, csi [N, T, A, K])``: the real captures' windows along ``axis`` (those of
    ``wfm benchmark real``), then every generated CSI set."""
    out = []
    if datasets.is_dir():
        view = "csi complex" if axis == "time" else "csi complex, frequency"
        for d in load_real_datasets(datasets, RealBenchConfig(csi_frequency=axis != "time", csi_hop=STUDY_CSI_HOP)):
            if d.view == view:
                out.append((d.name, True, d.csi.to(torch.complex64)))
    for p in sorted(data.iterdir()) if data else []:
        if not (p / MANIFEST).is_file() or ShardedDataset(p).kind != "csi":
            continue
        if prefixes and not p.name.startswith(tuple(prefixes)):
            continue
        view = generated_csi_view(p, "test", samples)
        out.append((p.name, False, (view if axis == "time" else generated_frequency_view(view)).csi))
    return out


def summary(rows: list[dict], rules: list[str]) -> list[dict]:
    """Geometric mean and count at or below 1 of each rule, per SNR, view and source."""
    out = []
    for key in dict.fromkeys((r["snr"], r["view"], r["real"]) for r in rows):
        sub = [r for r in rows if (r["snr"], r["view"], r["real"]) == key]
        row = {"snr": key[0], "view": key[1], "sets": f"{'real' if key[2] else 'generated'} ({len(sub)})"}
        for rule in rules:
            x = [r[rule] for r in sub]
            row[rule] = f"{math.exp(sum(map(math.log, x)) / len(x)):.4f} / {sum(v <= 1 for v in x)}"
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an MAE folder")
    ap.add_argument("--data", type=Path, default=None, help="folder of generated CSI dataset folders")
    ap.add_argument("--sets", nargs="*", default=None, help="only the sets whose name starts with one of these")
    ap.add_argument("--datasets", type=Path, default=default_datasets_dir(), help="real datasets folder")
    ap.add_argument("--rules", nargs="+", default=["hold|ar|mean", "hold|ar|mean|rank1"])
    ap.add_argument("--axis", choices=("frequency", "time"), default="frequency")
    ap.add_argument("--snr", nargs="+", default=["clean"], help="clean and/or SNRs in dB")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="JSON of every row and the summary")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    sets = csi_sets(args.data, args.sets, args.samples, args.datasets, args.axis)
    gen = torch.Generator().manual_seed(0)
    rows = []
    with Progress() as bar:
        task = bar.add_task("sets x SNR", total=len(sets) * len(args.snr))
        for snr in args.snr:
            level = None if snr == "clean" else float(snr)
            for name, real, csi in sets:
                x = noisy(csi, level, gen)
                for amplitude in (False, True):
                    rows.append({"snr": snr, "set": name, "real": real, "view": "amplitude" if amplitude else "complex",
                                 **rule_ratios(model, x, args.rules, amplitude, args.axis)})
                bar.advance(task)
    for r in rows:
        print(" | ".join([r["snr"], r["set"], r["view"], *(f"{r[k]:.4f}" for k in args.rules)]))
    table = summary(rows, args.rules)
    print("| SNR | view | sets | " + " | ".join(args.rules) + " |")
    for t in table:
        print("| " + " | ".join(str(v) for v in t.values()) + " |")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "summary": table}, indent=1))
    return rows


if __name__ == "__main__":
    main()
