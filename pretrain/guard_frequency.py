"""Score an MAE's guard rules in frequency on clean and noisy CSI: the tables of pretrain/README.md,
"The mean among the guard's choices in frequency" and "The nearest subcarrier of the window's
rank-1 approximation".

    PYTHONPATH=. python pretrain/guard_frequency.py --model checkpoints/mae-tiny-catalog-cpu \
        --data $WFM_DATA --rules "hold|ar|mean" "hold|ar|mean|rank1" --snr clean 10 0 --out guard_frequency.json

Every CSI dataset folder under ``--data`` (its ``test`` split, the first ``--samples`` samples;
``--sets`` keeps those whose name starts with one of the given prefixes) and the two real captures
of ``wfm benchmark real`` (``--datasets``) are predicted in frequency: the upper half of the
subcarriers from the lower half at every packet, as the benchmark's frequency views are. At each
``--snr`` (``clean``, or complex Gaussian noise added at that SNR in dB relative to each window's
mean power, seed 0) the complex CSI and its amplitude are scored, and each rule's per-window
NMSE is divided by the better of the two classical baselines along subcarriers (the nearest
visible subcarrier and the mean of the visible ones). Prints one row per set and the geometric
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


def rule_ratios(model, csi: torch.Tensor, rules: list[str], amplitude: bool) -> dict[str, float]:
    """Each guard rule's per-window NMSE in frequency over the better of the nearest subcarrier and
    the mean, on ``csi`` ``[N, T, A, K]`` (its amplitude with ``amplitude``)."""
    full = csi.abs().to(torch.complex64) if amplitude else csi.to(torch.complex64)
    k = full.shape[3]
    hidden = k // 2
    along = full.permute(0, 3, 1, 2)  # [N, K, T, A]: series along subcarriers
    ctx, tgt = along[:, :k - hidden], along[:, k - hidden:]
    if amplitude:
        ctx, tgt = ctx.real, tgt.real
    best = min(_score(ctx[:, -1:].expand_as(tgt), tgt), _score(ctx.mean(dim=1, keepdim=True).expand_as(tgt), tgt))
    kept, out = dict(model.guard_prior), {}
    try:
        for rule in rules:
            model.guard_prior = {**kept, "frequency": rule}
            pred = model.predict(full, "frequency", hidden / k).reconstruction[..., k - hidden:].permute(0, 3, 1, 2)
            out[rule] = _score(pred.real if amplitude else pred, tgt) / best
    finally:
        model.guard_prior = kept
    return out


def csi_sets(data: Path | None, prefixes: list[str] | None, samples: int, datasets: Path) -> list[tuple[str, bool, torch.Tensor]]:
    """``(name, real, csi [N, T, A, K])``: the real captures' frequency windows, then every generated CSI set."""
    out = []
    if datasets.is_dir():
        for d in load_real_datasets(datasets, RealBenchConfig(csi_frequency=True)):
            if d.view == "csi complex, frequency":
                out.append((d.name, True, d.csi.to(torch.complex64)))
    for p in sorted(data.iterdir()) if data else []:
        if not (p / MANIFEST).is_file() or ShardedDataset(p).kind != "csi":
            continue
        if prefixes and not p.name.startswith(tuple(prefixes)):
            continue
        out.append((p.name, False, generated_frequency_view(generated_csi_view(p, "test", samples)).csi))
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
    ap.add_argument("--snr", nargs="+", default=["clean"], help="clean and/or SNRs in dB")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="JSON of every row and the summary")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    sets = csi_sets(args.data, args.sets, args.samples, args.datasets)
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
                                 **rule_ratios(model, x, args.rules, amplitude)})
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
