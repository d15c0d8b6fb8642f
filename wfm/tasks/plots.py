"""PNG plots of task results: NMSE per prediction step, accuracy per training fraction, and
true vs predicted CSI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported on first use: importing
    this module neither costs matplotlib's 0.8 s of CPU nor switches the backend of the program."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders made as needed) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")  # also for a temporary name without the .png suffix
    pyplot().close(fig)
    return path


def nmse_vs_step(curves: Mapping[str, Sequence[float]], path: str | Path, xlabel: str = "prediction step",
                 title: str = "") -> Path:
    """One line per model: NMSE (dB) at every predicted step."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for name, ys in curves.items():
        ax.plot(np.arange(1, len(ys) + 1), ys, marker="o", ms=3, label=name)
    ax.set(xlabel=xlabel, ylabel="NMSE (dB), lower is better", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def accuracy_vs_fraction(rows: Sequence[Mapping[str, Any]], metric: str, path: str | Path, title: str = "") -> Path:
    """One line per model: ``metric`` against the training fraction (log x axis)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    by: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if metric in r and "train_fraction" in r:
            by.setdefault(f"{r['model']} ({r.get('mode', '')})", []).append((float(r["train_fraction"]), float(r[metric])))
    for name, pts in by.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log")
    ax.set(xlabel="training fraction", ylabel=metric, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def csi_heatmap(true: Any, preds: Mapping[str, Any], path: str | Path, axis: str, hidden: int, title: str = "") -> Path:
    """|H| (dB) over time x subcarrier at antenna 0: the truth and each model's prediction; the
    dashed line marks where the hidden (predicted) part begins."""
    plt = pyplot()
    mags = [20 * np.log10(np.abs(np.asarray(x)[:, 0, :]) + 1e-12) for x in (true, *preds.values())]
    names = ["true", *preds.keys()]
    lo, hi = min(m.min() for m in mags), max(m.max() for m in mags)
    fig, axes = plt.subplots(1, len(mags), figsize=(3.3 * len(mags) + 1, 3.6), layout="constrained", squeeze=False)
    T, K = mags[0].shape
    for ax, m, name in zip(axes[0], mags, names):
        im = ax.imshow(m, aspect="auto", origin="lower", vmin=lo, vmax=hi)
        if axis == "time":
            ax.axhline(T - hidden - 0.5, color="w", ls="--", lw=1)
        else:
            ax.axvline(K - hidden - 0.5, color="w", ls="--", lw=1)
        ax.set(xlabel="subcarrier", ylabel="time step", title=name)
    fig.colorbar(im, ax=axes[0].tolist(), label="|H| dB")
    if title:
        fig.suptitle(title)
    return save(fig, path)


def ratio_bars(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """The real benchmark at a glance: one horizontal bar per dataset and model, its ratio to the
    best classical baseline (log scale; < 1 beats it) with the 95 % interval where there is one,
    and the lines at 1 and 0.8 that the models are judged by. ``rows``: ``wfm benchmark real``
    rows with ``ratio_to_best``."""
    plt = pyplot()
    rows = [r for r in rows if r.get("ratio_to_best")]
    models = list(dict.fromkeys(r["model"] for r in rows))
    labels = list(dict.fromkeys(f"{r['dataset']}, {r['view']}" for r in rows))
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.22 * len(labels) * max(1, len(models))), layout="constrained")
    height = 0.8 / max(1, len(models))
    for j, m in enumerate(models):
        mine = {f"{r['dataset']}, {r['view']}": r for r in rows if r["model"] == m}
        ys = [i + (j - (len(models) - 1) / 2) * height for i, lab in enumerate(labels) if lab in mine]
        rs = [mine[lab] for lab in labels if lab in mine]
        x = np.array([float(r["ratio_to_best"]) for r in rs])
        lo = np.array([float(r.get("ratio_low", r["ratio_to_best"])) for r in rs])
        hi = np.array([float(r.get("ratio_high", r["ratio_to_best"])) for r in rs])
        ax.barh(ys, x - 1, left=1, height=height * 0.9, label=m, alpha=0.8)
        ax.errorbar(x, ys, xerr=[x - lo, hi - x], fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    ax.set_xscale("log")
    plain = plt.FuncFormatter(lambda v, _: f"{v:g}")  # 0.3, not 3x10^-1
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="both", labelsize=7)
    ax.axvline(1.0, color="black", lw=1)
    ax.axvline(0.8, color="gray", lw=1, ls="--")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="ratio to the best classical baseline (per-window NMSE; < 1 beats it, dashed: 0.8)", title=title)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7)
    return save(fig, path)
