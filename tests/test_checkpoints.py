"""Every checkpoint shipped in ``checkpoints/`` loads, and reproduces the metric it was released with.

A shipped folder records its check in ``config.json`` as a metric named
``fixed_eval/TASK/RECIPE/NUM_SAMPLES/SEED/METRIC`` (``wfm export --metric``): generate
``NUM_SAMPLES`` samples of ``data/recipes/RECIPE.yaml`` with ``SEED``, run
``wfm evaluate --task TASK`` on them, and the model's ``METRIC`` must come out as recorded. The
same number, the file size and the sha256 must stand in its row of ``checkpoints.md``.

A shipped task model (a folder saved by ``wfm evaluate --save``: ``trained.json``, such as the
future-beam MAE) records the same kind of metric in ``trained.json``'s ``metrics``, scored as it is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import REPO, RECIPES, SHARED_DATASETS

SHIPPED = REPO / "checkpoints"
FOLDERS = sorted(p for p in SHIPPED.iterdir() if (p / "config.json").is_file()) if SHIPPED.is_dir() else []
TASK_MODELS = sorted(p for p in SHIPPED.iterdir() if (p / "trained.json").is_file()) if SHIPPED.is_dir() else []


def fixed_evals(folder: Path) -> list[tuple[str, str, int, int, str, float]]:
    meta = folder / "config.json"
    metrics = json.loads((meta if meta.is_file() else folder / "trained.json").read_text())["metrics"]
    out = []
    for key, value in metrics.items():
        parts = key.split("/")
        if parts[0] == "fixed_eval":
            task, recipe, num, seed, metric = parts[1:]
            out.append((task, recipe, int(num), int(seed), metric, float(value)))
    return out


def test_there_is_a_shipped_checkpoint_of_each_released_kind():
    kinds = {json.loads((f / "config.json").read_text())["model_kind"] for f in FOLDERS}
    assert {"mae", "causal"} <= kinds


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_shipped_checkpoint_is_listed_with_its_sha256_and_metrics(folder):
    import wfm

    model = wfm.from_pretrained(folder)  # checks the sha256 and loads strict
    assert sum(p.numel() for p in model.parameters()) == json.loads((folder / "config.json").read_text())["num_params"]
    rows = [line for line in (REPO / "checkpoints.md").read_text().splitlines() if f"`{folder.name}`" in line]
    assert len(rows) == 1, f"checkpoints.md has no single row for {folder.name}"
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert sha in rows[0]
    evals = fixed_evals(folder)
    assert evals, f"{folder.name}: config.json records no fixed_eval metric"
    for *_, value in evals:
        assert f"{value:.2f}" in rows[0]


@pytest.mark.parametrize("folder", TASK_MODELS, ids=lambda p: p.name)
def test_shipped_task_model_is_listed_with_its_sha256_and_metrics(folder):
    from wfm.tasks import saved

    saved.load(folder)  # checks the sha256 and loads strict
    rows = [line for line in (REPO / "checkpoints.md").read_text().splitlines() if f"`{folder.name}`" in line]
    assert len(rows) == 1, f"checkpoints.md has no single row for {folder.name}"
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() in rows[0]
    evals = fixed_evals(folder)
    assert evals, f"{folder.name}: trained.json records no fixed_eval metric"
    for *_, value in evals:
        assert f"{value:.2f}" in rows[0]


@pytest.mark.parametrize("folder", FOLDERS + TASK_MODELS, ids=lambda p: p.name)
def test_shipped_checkpoint_reproduces_its_metric(folder, tmp_path):
    from wfm.cli import main
    from wfm.data.generate import generate_dataset
    from wfm.data.recipes import load_recipe

    for task, recipe, num, seed, metric, value in fixed_evals(folder):
        data = tmp_path / recipe
        generate_dataset(load_recipe(RECIPES / f"{recipe}.yaml").with_overrides(num_samples=num), data, seed=seed)
        main(["evaluate", "--task", task, "--model", str(folder), "--data", str(data), "--out", str(tmp_path / "eval")])
        rows = json.loads((tmp_path / "eval" / "metrics.json").read_text())["rows"]
        got = [r[metric] for r in rows if r["model"] == folder.name]
        assert got and got[0] == pytest.approx(value, abs=0.02), (task, recipe, metric)


@pytest.mark.skipif(not (SHARED_DATASETS / "deepsense6g-beam").is_dir(), reason="DeepSense 6G arrays not present")
def test_the_shipped_future_beam_mae_beats_persistence_zero_shot_on_a_real_site_it_never_saw(tmp_path):
    """Pretrained on generated sweeps only: scenario 6 of DeepSense 6G, as released (top-1 0.447
    against persistence's 0.328, finetune/README.md, "Next best beam")."""
    from wfm.data.loaders.deepsense import import_deepsense
    from wfm.tasks import saved
    from wfm.tasks.future_beam import plan_beam, persistence_scores

    data = import_deepsense(SHARED_DATASETS / "deepsense6g-beam", tmp_path / "s6", [6])
    test = plan_beam([], [str(data)], False, 8, 1)["tests"][0][1]
    model, _ = saved.load(SHIPPED / "beam-mae-tiny-street-cpu")
    top1 = float((model.scores(test).argmax(1) == test.label).float().mean())
    base = float((persistence_scores(test).argmax(1) == test.label).float().mean())
    assert top1 == pytest.approx(0.447, abs=0.005) and top1 > base + 0.1


@pytest.mark.skipif(not (SHARED_DATASETS / "deepsense6g-beam").is_dir(), reason="DeepSense 6G arrays not present")
def test_the_real_benchmark_scores_the_shipped_future_beam_mae_on_every_deepsense_scenario():
    """`wfm benchmark real`'s beam section (finetune/README.md, "Next best beam"): the raw arrays'
    windows give the imported scenario 6's figure, and over all seven the model misses less."""
    from wfm.tasks import saved
    from wfm.tasks.real_beams import beam_rows

    folder = SHIPPED / "beam-mae-tiny-street-cpu"
    model, meta = saved.load(folder)
    rows = {(r["scenarios"], r["model"]): r for r in beam_rows(SHARED_DATASETS / "deepsense6g-beam",
                                                                [(str(folder), model, meta)])["rows"]}
    assert rows[("s6", folder.name)]["top1"] == pytest.approx(0.447, abs=0.005)
    pooled = rows[("s1-7", folder.name)]
    assert pooled["top1"] == pytest.approx(0.404, abs=0.005) and pooled["ratio_high"] < 1
    assert rows[("s1-7", "persistence")]["top1"] == pytest.approx(0.361, abs=0.005)
