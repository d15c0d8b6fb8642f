"""The recipe catalog and recipe validation."""

from __future__ import annotations

import re

import pytest

from conftest import RECIPES, REPO
from wfm.data.errors import DataError
from wfm.data.recipes import CSIRecipe, load_recipe, recipe_catalog, recipe_from_dict


def csi_catalog() -> list[CSIRecipe]:
    return [r for r in recipe_catalog(RECIPES) if isinstance(r, CSIRecipe)]


def test_catalog_mirrors_the_wifo_corpus_structure():
    cat = csi_catalog()
    pre = [r for r in cat if r.split == "pretrain"]
    zs = [r for r in cat if r.split == "zeroshot"]
    assert len(pre) >= 16 and len(zs) >= 3
    assert {r.model for r in pre} == {"uma", "umi", "rma", "cdl", "tdl"}
    assert {r.array for r in pre} >= {(1, 4), (4, 8)}
    assert {r.num_subcarriers for r in pre} == {32, 64, 128}
    assert {r.time_steps for r in pre} == {16, 24}
    assert min(r.time_step_ms for r in pre) == 0.25 and max(r.time_step_ms for r in pre) == 1.0
    assert min(r.speed_kmh[0] for r in pre) == 0 and max(r.speed_kmh[1] for r in pre) == 300
    # Zero-shot sets are out of distribution in both band and scenario.
    pre_bands = {r.carrier_frequency_ghz for r in pre}
    pre_scenarios = {r.scenario for r in pre}
    for r in zs:
        assert r.carrier_frequency_ghz not in pre_bands, r.name
        assert r.scenario not in pre_scenarios, r.name


def test_no_pretraining_config_trains_on_a_held_out_recipe():
    """Zero-shot and transfer tables rest on it: a ``split: zeroshot`` recipe is never in a pretraining mixture."""
    held = {p.stem for p in RECIPES.rglob("*.yaml") if load_recipe(p).split == "zeroshot"}
    assert {"zs-cdl-d-1p9-4x8-k64-t24", "zs-wifi-band-intel-5p2-6x1-k30-t16", "traj-highway-heldout"} <= held
    configs = sorted((REPO / "pretrain").glob("*.yaml"))
    used = {c.name: set(re.findall(r"\$\{WFM_DATA\}/([\w.-]+)", c.read_text())) for c in configs}
    assert sum(map(len, used.values())) > 50  # the pattern finds the mixtures
    assert {n: u & held for n, u in used.items() if u & held} == {}


def test_still_recipes_hold_their_level_where_the_static_ones_drift():
    """What the ``wifi-still-*`` recipes are for (data/README.md): over 56 packets of a still link the
    whole context estimates the level better than the last 8 packets, as on the real captures
    (1.08-1.13x); the ``wifi-static-*`` link drawn as long drifts, so the recent packets win there."""
    from dataclasses import replace

    import numpy as np

    from wfm.data.generate import generator_for

    def last8_over_mean(name: str) -> float:
        recipe = replace(load_recipe(RECIPES / "wifi" / f"{name}.yaml"), time_steps=64)
        csi = np.asarray(generator_for(recipe).generate(16, 0)["csi"]).reshape(16, 64, -1)
        ctx, tgt = csi[:, :56], csi[:, 56:]

        def nmse(pred: np.ndarray) -> float:
            return float((np.abs(tgt - pred) ** 2).sum((1, 2)).mean() / (np.abs(tgt) ** 2).sum((1, 2)).mean())
        return nmse(ctx[:, -8:].mean(1, keepdims=True)) / nmse(ctx.mean(1, keepdims=True))

    assert last8_over_mean("wifi-still-nexmon-5p8-1x1-k242-t64") > 1.05
    assert last8_over_mean("wifi-static-nexmon-5p8-1x1-k242-t16") < 0.8


def test_recipe_names_match_files():
    for path in sorted(RECIPES.glob("*.yaml")):
        assert load_recipe(path).name == path.stem


def test_every_catalog_shape_fits_4x4x4_patches():
    for r in csi_catalog():
        assert all(n % 4 == 0 for n in r.shape), (r.name, r.shape)


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text((RECIPES / "uma-3p5-4x8-k64-t24.yaml").read_text() + "carrier_freq_ghz: 3.5\n")
    with pytest.raises(DataError, match=r"bad.yaml: unknown recipe key\(s\) carrier_freq_ghz"):
        load_recipe(p)


@pytest.mark.parametrize("change, message", [
    ({"model": "uma5"}, "model 'uma5' is not one of"),
    ({"model": "cdl"}, "needs profile"),
    ({"array": [0, 4]}, "array"),
    ({"speed_kmh": [50, 10]}, "speed_kmh"),
    ({"time_step_ms": 0}, "time_step_ms must be > 0"),
    ({"los": "sometimes"}, "los 'sometimes'"),
    ({"num_subcarriers": "many"}, "bad value"),
])
def test_bad_values_are_named(change, message):
    d = load_recipe(RECIPES / "uma-3p5-4x8-k64-t24.yaml").to_dict()
    d.update(change)
    with pytest.raises(DataError, match=message):
        recipe_from_dict(d, source="x.yaml")


def test_missing_key_and_bad_files(tmp_path):
    d = load_recipe(RECIPES / "uma-3p5-4x8-k64-t24.yaml").to_dict()
    del d["time_steps"]
    with pytest.raises(DataError, match="missing recipe key.*time_steps"):
        recipe_from_dict(d)
    with pytest.raises(DataError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("model: [uma\n")
    with pytest.raises(DataError, match="broken.yaml: not valid YAML"):
        load_recipe(tmp_path / "broken.yaml")
    (tmp_path / "kind.yaml").write_text("kind: hologram\n")
    with pytest.raises(DataError, match="unknown recipe kind 'hologram'"):
        load_recipe(tmp_path / "kind.yaml")


def test_recipes_markdown_keeps_every_csi_column_whatever_recipe_comes_first(capsys):
    """``wfm data recipes --markdown`` prints data/README.md's table: the beam recipe sorted first
    (a row without the CSI columns) used to cut it to name, split, scenario and samples."""
    from wfm.cli import main

    with pytest.raises(SystemExit) as e:
        main(["data", "recipes", "--markdown"])
        raise SystemExit(0)
    assert not e.value.code
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| name | split | scenario | band_ghz | array | K | scs_khz | T | dt_ms | speed_kmh | samples |"
    assert any(line.startswith("| beam-street-60g | pretrain | beam |") for line in lines)
