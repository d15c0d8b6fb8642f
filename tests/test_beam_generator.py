"""Generated beam sweeps (``kind: beam``, ``wfm.data.beam_generator``): the array physics, the
DeepSense layout every future-beam task reads, determinism and recipe errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from wfm.data.beam_generator import BeamGenerator, BeamRecipe, array_gain
from wfm.data.errors import DataError
from wfm.data.generate import generate_dataset
from wfm.data.geometry import gps_bearing, gps_to_local, local_to_gps
from wfm.data.loaders.deepsense import SPECS
from wfm.data.recipes import load_recipe


def _clean(**kw) -> BeamRecipe:
    """Line of sight only, no noise, no blockage, array square to the frame."""
    base = dict(name="b", num_samples=8, steps=24, walls=(0.0, 0.0), blockages_per_s=0.0, noise=(0.0, 0.0),
                orientation_deg=0.0, snr_db=(30.0, 30.0))
    return BeamRecipe(**{**base, **kw})


def test_array_gain_is_one_on_the_beam_and_zero_at_the_first_null():
    g = array_gain(np.array([0.0, 20.0]), np.array([0.0, 20.0]), 16)
    assert np.allclose(np.abs(np.diag(g)), 1.0)
    null = np.rad2deg(np.arcsin(2 / 16))  # sin(theta) = 2/N: the first null of a half-wavelength ULA
    assert abs(array_gain(np.array([0.0]), np.array([null]), 16)[0, 0]) < 1e-9


def test_without_clutter_the_best_beam_points_at_the_vehicle():
    r = _clean()
    gen = BeamGenerator(r)
    out = gen.generate(8, seed=4)
    xy = gps_to_local(out["vehicle_gps"], out["bs_gps"][:, None, :])  # [n, L, 2] east/north = the +x/+y frame
    los = np.rad2deg(np.arctan2(xy[..., 1], xy[..., 0]))
    for i in range(8):
        seen = np.abs(los[i]) < 35  # well inside every field of view the recipe draws
        assert seen.any()
        best = out["best_beam"][i][seen]
        # the codebook's direction is drawn: the best beam tracks the angle one way or the other
        c = np.corrcoef(best, los[i][seen])[0, 1] if np.ptp(best) else 1.0
        assert abs(c) > 0.98
    assert np.array_equal(out["best_beam"], out["beam_power"].argmax(-1))
    assert (out["beam_power"] >= 1.0 - 1e-6).all()  # noise-free: the floor is 1, signal adds to it


def test_fields_match_the_deepsense_import_and_generation_is_deterministic():
    r = BeamRecipe(name="b", num_samples=6, steps=32)
    gen = BeamGenerator(r)
    a, b = gen.generate(6, seed=7), gen.generate(6, seed=7)
    assert set(a) == set(SPECS)
    for k, v in a.items():
        assert np.array_equal(v, b[k])
        spec = gen.specs()[k]
        assert v.shape == (6, *spec.shape) and v.dtype == np.dtype(spec.dtype)
    assert not np.array_equal(a["beam_power"], gen.generate(6, seed=8)["beam_power"])
    assert set(a["scenario"].tolist()) <= set(range(1, r.scenarios + 1))
    assert len(set(a["sequence_id"].tolist())) == 6
    # bearing and distance are those of the GPS track, as the importer derives them
    en = gps_to_local(a["vehicle_gps"], a["bs_gps"][:, None, :])
    assert np.allclose(a["distance"], np.linalg.norm(en, axis=-1), atol=1e-3)
    wrapped = np.remainder(a["bearing"], 360.0)
    assert np.allclose(np.cos(np.deg2rad(wrapped)), np.cos(np.deg2rad(gps_bearing(a["bs_gps"][:, None, :],
                                                                                   a["vehicle_gps"]))), atol=1e-4)


def test_local_to_gps_inverts_gps_to_local():
    en = np.array([[12.5, -40.0], [0.0, 0.0], [-300.0, 250.0]])
    origin = (33.42, -111.93)
    assert np.allclose(gps_to_local(local_to_gps(en, origin), np.array(origin)), en, atol=1e-6)


def test_noise_and_clutter_make_the_best_beam_flicker():
    quiet = BeamGenerator(_clean(num_samples=16, steps=48)).generate(16, seed=1)
    noisy = BeamGenerator(dataclasses.replace(_clean(num_samples=16, steps=48), noise=(0.05, 0.05),
                                              snr_db=(8.0, 8.0), walls=(2.0, 2.0))).generate(16, seed=1)

    def same(o: dict) -> float:
        return float((np.diff(o["best_beam"], axis=1) == 0).mean())
    assert same(noisy) < same(quiet)


def test_the_shipped_recipe_feeds_the_future_beam_task(tmp_path):
    from wfm.tasks.future_beam import plan_beam, persistence_scores
    recipe = load_recipe("data/recipes/beam-street-60g.yaml").with_overrides(num_samples=24, shard_size=12)
    out = generate_dataset(recipe, tmp_path / "beam").out_dir
    plan = plan_beam([str(out)], [str(out)], True, 8, 1)
    assert plan["split"] == "scenario" and len(plan["train"]) > 0
    test = plan["tests"][0][1]
    top1 = float((persistence_scores(test).argmax(1) == test.label).float().mean())
    assert 0.05 < top1 < 0.9  # the best beam moves and flickers, but not at random


@pytest.mark.parametrize("change, message", [
    (dict(fov_deg=(80.0, 200.0)), "fov_deg"),
    (dict(antennas=0), "antennas must be >= 1"),
    (dict(snr_db=(10.0, 0.0)), "snr_db"),
    (dict(noise=(0.1, 0.05)), "noise"),
])
def test_bad_recipe_values_are_named(change, message):
    with pytest.raises(DataError, match=message):
        BeamRecipe(name="b", num_samples=4, **change)


def test_recipe_file_errors_name_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("kind: beam\nnum_samples: 4\nantennas: 16.5\n")
    with pytest.raises(DataError, match="antennas"):
        load_recipe(p)
    p.write_text("kind: beam\nnum_samples: 4\ncolour: red\n")
    with pytest.raises(DataError, match="bad.yaml.*colour"):
        load_recipe(p)
