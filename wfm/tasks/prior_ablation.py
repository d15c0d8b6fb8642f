"""With and without the prior: the ablation table of prior-anchored prediction.

For every model folder it scores three variants on the same windows:

- the model as shipped;
- ``correction off``: the same weights with the final correction head zeroed, i.e. the model's
  own classical prior (for ``prior="mix"`` the learned, data-dependent mix of estimators);
- any other model folder given (e.g. an earlier checkpoint trained without a prior),

next to the classical baselines, with per-window NMSE (dB) and the ratio to the best classical
baseline of each dataset. Datasets: the real ones of ``wfm.tasks.real_data`` (every view the
model applies to) and, for an MAE, the test split of generated CSI datasets (time: the last half
of the steps; frequency: the upper half of the subcarriers).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch

from wfm.models.priors import masked_priors
from wfm.tasks.csi_data import load_csi
from wfm.tasks.metrics import window_nmse
from wfm.tasks.real_data import RealBenchConfig, run_real_benchmark
from wfm.tasks.real_datasets import STUDY_CSI_HOP


def correction_off(model: Any) -> Any:
    """A copy of ``model`` whose final correction head is zero: exactly its classical prior."""
    if getattr(model, "prior", "none") in ("none", "trend"):
        raise ValueError("this model has no classical prior to fall back to (prior none/trend)")
    off = copy.deepcopy(model)
    head = off.decoder_pred if hasattr(off, "decoder_pred") else off.head
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return off.eval()


def _db(x: float) -> float:
    return 10 * math.log10(max(x, 1e-12))


@torch.no_grad()
def generated_rows(models: dict[str, Any], root: str | Path, axis: str, ratio: float = 0.5,
                   limit: int = 256) -> list[dict[str, Any]]:
    """Rows of every MAE in ``models`` and of hold / mean on a generated dataset's test split."""
    csi = load_csi(root, "test", task="prior-ablation")["csi"][:limit]
    kind = "temporal" if axis == "time" else "frequency"
    rows, mask = [], None
    for name, model in models.items():
        pred = model.predict(csi, kind, ratio)
        mask = pred.mask
        rows.append({"model": name, "window_nmse": float(window_nmse(pred.reconstruction, csi, mask).mean())})
    est = masked_priors(csi, ~mask)
    for name, key in (("persistence", "hold"), ("mean", "mean")):
        rows.append({"model": name, "classical": True,
                     "window_nmse": float(window_nmse(est[key], csi, mask).mean())})
    best = min(r["window_nmse"] for r in rows if r.get("classical"))
    for r in rows:
        r.update(dataset=Path(root).name, view=f"channel prediction, {axis}", window_nmse_db=_db(r["window_nmse"]),
                 ratio_to_best=r["window_nmse"] / best)
    return rows


def real_rows(models: dict[str, Any], kind: str, root: str | Path, pool_channels: bool = True) -> list[dict[str, Any]]:
    """Rows of every model and the classical baselines on every real dataset it applies to
    (``pool_channels``: see ``RealBenchConfig``)."""
    result = run_real_benchmark(root, [(name, kind, m) for name, m in models.items()],
                                RealBenchConfig(pool_channels=pool_channels, csi_hop=STUDY_CSI_HOP))
    rows = []
    for r in result["rows"]:
        if "window_nmse" not in r or r["kind"] == "reference":
            continue
        rows.append({"model": r["model"], "classical": r["kind"] == "classical", "dataset": r["dataset"],
                     "view": r["view"], "window_nmse": r["window_nmse"], "window_nmse_db": r["window_nmse_db"],
                     "ratio_to_best": r.get("ratio_to_best")})
    # Datasets a model kind does not apply to (MAE: series) carry classical rows only.
    keep = {(r["dataset"], r["view"]) for r in rows if not r["classical"]}
    return [r for r in rows if (r["dataset"], r["view"]) in keep]


def markdown(rows: list[dict[str, Any]], models: list[str]) -> str:
    """One line per dataset view: best classical, then each model's dB and ratio to it."""
    by: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        by.setdefault((r["dataset"], r["view"]), {})[r["model"]] = r
    head = "| dataset | view | best classical (dB) | " + " | ".join(f"{m} dB (ratio)" for m in models) + " |"
    out = [head, "|" + "---|" * (3 + len(models))]
    for (ds, view), d in by.items():
        classical = [r for r in d.values() if r.get("classical")]
        best = min(classical, key=lambda r: r["window_nmse"])
        cells = []
        for m in models:
            r = d.get(m)
            cells.append("-" if r is None else f"{r['window_nmse_db']:.2f} ({r['ratio_to_best']:.2f})")
        out.append(f"| {ds} | {view} | {best['model']} {best['window_nmse_db']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(out)
