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
    fig.savefig(path, dpi=110)
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
