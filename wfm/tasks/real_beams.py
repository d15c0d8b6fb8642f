"""The next best beam on real DeepSense 6G data: every saved future-beam model (a folder with a
``trained.json`` of task ``future-beam``, such as ``checkpoints/beam-mae-tiny-street-cpu``)
against persistence, per scenario and over all of them (``wfm benchmark real``'s beam section).

The beam-power and bearing rows of the benchmark score forecasts of values (per-window NMSE);
a future-beam model predicts which beam will be the strongest, so it is scored as its task is
(``wfm.tasks.future_beam``): windows of the model's own context (``training.context`` in its
``trained.json``, 8 steps for the shipped one) -> the best beam ``training.horizon`` steps
ahead, at every step of every trajectory that has a full context. Metrics: top-1 and top-3
accuracy, the beam power loss (dB) of the top-1 beam, and the **miss ratio**: the model's
top-1 miss rate over persistence's on the same windows (< 1 beats persistence), with a 95 %
interval from a bootstrap over whole trajectories (windows of one drive share their
surroundings and their beams, so a trajectory counts once).

Persistence (the best beam now) is the classical baseline here: the position-aided k-NN needs
training positions at the same site, which a zero-shot model does not have. Linear prediction
of the beam powers (``ar``, the argmax of one recursion per window pooled over the beams) is a
second classical row, with its own miss ratio against persistence; the verdict names the
scenarios where it is ahead of a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from wfm.data.loaders.deepsense import load_scenario, scenarios_in
from wfm.tasks.future_beam import (BeamWindows, LinearPredictionBeams, persistence_scores, stack_trajectories,
                                   trajectory_windows)
from wfm.tasks.saved import task_of
from wfm.tasks.scoring import score_classes
from wfm.tasks.significance import ratio_interval

TASK = "future-beam"


def is_beam_model(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved future-beam model (a valid ``trained.json`` of that task)."""
    return task_of(folder) == TASK


def discover_beam_models(folder: str | Path | None = None) -> list[str]:
    """Every saved future-beam model under ``folder`` (default: the repository's ``checkpoints/``)."""
    folder = Path(folder) if folder else Path(__file__).resolve().parents[2] / "checkpoints"
    return [str(m.parent) for m in sorted(folder.glob("*/trained.json")) if is_beam_model(m.parent)]


def real_beam_windows(folder: str | Path, context: int, horizon: int) -> BeamWindows | None:
    """Windows of every DeepSense scenario in ``folder`` (the raw arrays' layout), each trajectory
    its own id; None when no trajectory is longer than ``context + horizon``."""
    trajs = []
    for s in scenarios_in(folder):
        d = load_scenario(folder, s)
        for i in range(len(d["beam_power"])):
            trajs.append(trajectory_windows(d["beam_power"][i], d["best_beam"][i], d["vehicle_gps"][i], d["bs_gps"][i],
                                            s, context, horizon, int(d["sequence_id"][i]), len(trajs)))
    return stack_trajectories(trajs)


def _scores_row(scores: torch.Tensor, w: BeamWindows) -> tuple[dict[str, Any], torch.Tensor]:
    """The task's metrics (``score_classes``: top-1, top-3, power loss) and the per-window misses."""
    s = score_classes(scores, w.label, w.future_power)
    return {k: s[k] for k in ("top1", "top3", "power_loss_db")}, (scores.argmax(1) != w.label).double()


def beam_rows(folder: str | Path, models: list[tuple[str, Any, dict[str, Any]]]) -> dict[str, Any]:
    """Persistence and each ``(name, model, meta)`` (``wfm.tasks.saved.load``) on the real windows
    under ``folder``, per scenario and over all scenarios (``all_scenarios``: the row that holds
    every window; with one scenario, its own row): ``{"rows": [...], "windows": [...]}``.
    A model that fails (a layout it cannot take) gets rows with its one-line ``error``; one given
    as an exception (it did not load) gets a single row with it."""
    rows: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    cache: dict[tuple[int, int], BeamWindows | None] = {}
    for name, model, meta in models:
        if isinstance(model, Exception):  # it did not load: one row that says why
            rows.append({"model": Path(name).name, "kind": "FM (future-beam)", "scenarios": "all",
                         "all_scenarios": True, "error": f"cannot load: {str(model).splitlines()[0]}"})
            continue
        train = meta.get("training", {})
        context, horizon = int(train.get("context", 8)), int(train.get("horizon", 1))
        key = (context, horizon)
        if key not in cache:
            cache[key] = real_beam_windows(folder, context, horizon)
            w = cache[key]
            notes.append({"context": context, "horizon": horizon, "windows": 0 if w is None else len(w),
                          "trajectories": 0 if w is None else w.trajectories,
                          "scenarios": [] if w is None else sorted(set(w.scenario.tolist()))})
        w = cache[key]
        if w is None:
            continue
        try:
            with torch.no_grad():
                scores = model.scores(w)
            error = None
        except Exception as e:  # a model that cannot take the windows is a result, not a crash
            scores, error = None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        base = persistence_scores(w)
        ar = LinearPredictionBeams(horizon).scores(w)
        scen = sorted(set(w.scenario.tolist()))
        groups = [(f"s{s}", w.scenario == s, len(scen) == 1) for s in scen]
        if len(scen) > 1:
            groups.append((f"s{scen[0]}-{scen[-1]}", torch.ones(len(w), dtype=torch.bool), True))
        for label, sel, whole in groups:
            idx = sel.nonzero().flatten()
            part = w.subset(idx)
            common = {"scenarios": label, "windows": len(part), "trajectories": part.trajectories,
                      "context": context, "horizon": horizon, "all_scenarios": whole}
            b_row, b_miss = _scores_row(base[idx], part)
            if not any(r["model"] == "persistence" and r["scenarios"] == label and r["context"] == context
                       and r["horizon"] == horizon for r in rows):
                rows.append({"model": "persistence", "kind": "classical", **common, **b_row})
                a_row, a_miss = _scores_row(ar[idx], part)
                if float(b_miss.mean()) > 0:
                    a_row["miss_ratio"] = float(a_miss.mean() / b_miss.mean())
                rows.append({"model": "ar", "kind": "classical", **common, **a_row,
                             "note": "linear prediction of the beam powers, pooled over the beams"})
            row: dict[str, Any] = {"model": Path(name).name, "kind": "FM (future-beam)", **common,
                                   "note": "; ".join(train.get("trained_on", []))}
            if error:
                row["error"] = error
            else:
                m_row, m_miss = _scores_row(scores[idx], part)
                row.update(m_row)
                if float(b_miss.mean()) > 0:
                    row["miss_ratio"] = float(m_miss.mean() / b_miss.mean())
                    ci = ratio_interval(m_miss, b_miss, part.trajectory)
                    if ci is not None:
                        row["ratio_low"], row["ratio_high"], row["ratio_blocks"] = ci
            rows.append(row)
    return {"rows": rows, "windows": notes}


def beam_verdicts(beams: dict[str, Any]) -> list[str]:
    """Per model: on how many scenarios its top-1 beats persistence's, and over all of them."""
    lines = []
    for name in dict.fromkeys(r["model"] for r in beams["rows"] if r["kind"] != "classical"):
        mine = [r for r in beams["rows"] if r["model"] == name and "miss_ratio" in r]
        failed = [r for r in beams["rows"] if r["model"] == name and "error" in r]
        if failed:
            lines.append(f"{name}: failed on the next best beam ({failed[0]['error']})")
        if not mine:
            continue
        pooled = next(r for r in mine if r["all_scenarios"])
        per = [r for r in mine if r is not pooled or len(mine) == 1]
        ahead = [r["scenarios"] for r in per if r["miss_ratio"] < 1]
        behind = [r["scenarios"] for r in per if r["miss_ratio"] >= 1]
        ci = (f", 95 % {pooled['ratio_low']:.3f}-{pooled['ratio_high']:.3f} over {pooled['ratio_blocks']} trajectories"
              if "ratio_low" in pooled else "")
        base = next(r for r in beams["rows"] if r["model"] == "persistence" and r["scenarios"] == pooled["scenarios"]
                    and r["context"] == pooled["context"])
        lines.append(f"{name}: next best beam top-1 {pooled['top1']:.3f} against persistence's {base['top1']:.3f} "
                     f"on {pooled['scenarios']} (miss ratio {pooled['miss_ratio']:.3f}{ci}); fewer misses than "
                     f"persistence on {len(ahead)} of {len(per)} scenarios"
                     + (f", not on {', '.join(behind)}" if behind else ""))
        ar = {r["scenarios"]: r for r in beams["rows"] if r["model"] == "ar" and r["context"] == pooled["context"]}
        over = [r["scenarios"] for r in per if r["scenarios"] in ar and ar[r["scenarios"]]["top1"] > r["top1"]]
        if pooled["scenarios"] in ar:
            lines.append(f"{name}: linear prediction of the beam powers (ar) top-1 {ar[pooled['scenarios']]['top1']:.3f} "
                         f"on {pooled['scenarios']}; ahead of {name} on "
                         + (f"{len(over)} of {len(per)} scenarios ({', '.join(over)})" if over else "none"))
    return lines


BEAM_COLUMNS = ("scenarios", "windows", "trajectories", "model", "kind", "top1", "top3", "power_loss_db",
                "miss_ratio", "ratio_low", "ratio_high", "ratio_blocks", "note", "error")
