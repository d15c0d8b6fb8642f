"""Textbook processes (``kind: process``): what each sample is, and how the recipe fails."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import RECIPES
from wfm.data.errors import DataError
from wfm.data.generate import generate_dataset
from wfm.data.process_generator import NOISES, ProcessGenerator, ProcessRecipe
from wfm.data.recipes import load_recipe
from wfm.data.series import series_tables


def _lag1(x: np.ndarray) -> np.ndarray:
    d = x - x.mean(axis=1, keepdims=True)
    return (d[:, 1:] * d[:, :-1]).sum(1) / (d * d).sum(1)


def test_each_noise_has_the_autocorrelation_it_names():
    recipe = ProcessRecipe(name="p", num_samples=96, steps=2048, trend_prob=0.0, shifts_per_1000=0.0)
    out = ProcessGenerator(recipe).generate(96, seed=3)
    values, code, phi = out["values"].astype(np.float64), out["process"], out["phi"]
    assert values.shape == (96, 2048) and np.isfinite(values).all()
    assert set(np.unique(code)) == {0, 1, 2}  # all three noises at these probabilities
    white, walk, ar = code == 0, code == 1, code == 2
    assert (phi[white] == 0).all() and (phi[walk] == 1).all() and ((phi[ar] >= 0.5) & (phi[ar] <= 0.99)).all()
    assert np.abs(_lag1(values[white])).max() < 0.1
    assert np.abs(_lag1(np.diff(values[walk], axis=1))).max() < 0.1  # a walk's steps are white
    assert np.abs(_lag1(values[ar]) - phi[ar]).max() < 0.1


def test_trends_and_shifts_move_the_level():
    base = dict(name="p", num_samples=64, steps=1024, white_prob=1.0, walk_prob=0.0)
    flat = ProcessGenerator(ProcessRecipe(**base, trend_prob=0.0, shifts_per_1000=0.0)).generate(64, seed=0)["values"]
    moved = ProcessGenerator(ProcessRecipe(**base, trend_prob=1.0, trend_scale=0.05,
                                           shifts_per_1000=5.0)).generate(64, seed=0)["values"]
    def drift(v):  # the level's move from the first to the last quarter, in noise stds
        return np.abs(v[:, -256:].mean(1) - v[:, :256].mean(1)) / np.diff(v, axis=1).std(1) * np.sqrt(2)
    assert np.median(drift(flat)) < 0.5 and np.median(drift(moved)) > 5


def test_the_shipped_recipe_generates_a_series_dataset(tmp_path):
    recipe = load_recipe(RECIPES / "process-textbook.yaml").with_overrides(num_samples=8, shard_size=4)
    assert recipe.kind == "process" and recipe.name == "process-textbook"
    generate_dataset(recipe, tmp_path / "p", seed=0)
    (table,) = series_tables(tmp_path / "p")
    assert table.kind == "process" and table.interval == 60.0 and len(table) == 8
    generate_dataset(recipe, tmp_path / "q", seed=0)
    (again,) = series_tables(tmp_path / "q")
    assert np.array_equal(table.values(5), again.values(5))  # deterministic by seed
    assert list(NOISES) == ["white", "random walk", "AR(1)"]


@pytest.mark.parametrize("change, message", [
    ({"white_prob": 0.8, "walk_prob": 0.5}, "at most 1"),
    ({"phi_low": 0.9, "phi_high": 0.5}, "phi_low"),
    ({"trend_prob": 1.5}, "trend_prob"),
    ({"steps": 0}, "steps"),
    ({"interval_s": 0.0}, "interval_s"),
])
def test_bad_recipe_values_are_named(change, message):
    with pytest.raises(DataError, match=message):
        ProcessRecipe(name="p", num_samples=4, **change)
