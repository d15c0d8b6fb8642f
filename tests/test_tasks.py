"""Task data and scoring: DFT-codebook labels, splits, few-shot subsets, CSI prediction helpers."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from wfm.data.errors import DataError
from wfm.tasks.channel_prediction import (forecast_hidden, from_series, hidden_count, prediction_mask, score_prediction,
                                      to_series)
from wfm.tasks.csi_data import beam_gains, csi_labels, dft_codebook, load_csi, split_range, train_subset
from wfm.tasks.future_beam import BeamWindows, knn_scores, trajectory_split
from wfm.tasks.registry import TASKS, get_task
from wfm.models.baselines import Persistence

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dft_codebook_is_unitary_and_labels_a_plane_wave():
    rows, cols = 2, 4
    w = dft_codebook(rows, cols)
    assert w.shape == (8, 8)
    assert torch.allclose(w @ w.conj().T, torch.eye(8, dtype=torch.complex64), atol=1e-5)
    # A plane wave with spatial frequencies (p0 / rows, q0 / cols) is DFT beam p0 * cols + q0.
    p0, q0 = 1, 3
    m, n = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    h = np.exp(2j * np.pi * (p0 * m / rows + q0 * n / cols)).reshape(-1)  # antenna m * cols + n
    csi = torch.from_numpy(np.broadcast_to(h[None, None, :, None], (1, 3, 8, 5)).astype(np.complex64))
    gains = beam_gains(csi, w)
    assert int(gains.argmax()) == p0 * cols + q0
    # All the power lands in that beam: |w^H h|^2 = A per (t, k), over 3 x 5 of them.
    assert float(gains[0, p0 * cols + q0]) == pytest.approx(8 * 15, rel=1e-4)
    labels = csi_labels({"csi": csi, "attrs": {"array_shape": [rows, cols]}}, "beam")
    assert int(labels["y"][0]) == p0 * cols + q0 and labels["beam_power"].shape == (1, 8)
    # Oversampled x2: 4 x 8 beams, the same direction is beam (2 p0) * 8 + 2 q0.
    assert int(beam_gains(csi, dft_codebook(rows, cols, 2)).argmax()) == 2 * p0 * 8 + 2 * q0


def test_train_subset_deterministic_nested_and_in_train():
    a = train_subset(1000, 0.1, seed=3)
    assert np.array_equal(a, train_subset(1000, 0.1, seed=3)) and len(a) == 100
    small = train_subset(1000, 0.01, seed=3)
    assert len(small) == 10 and set(small) <= set(a)
    assert len(train_subset(5, 0.01)) == 1 and np.array_equal(train_subset(7, 1.0), np.arange(7))
    tr, va, te = (split_range(200, s) for s in ("train", "val", "test"))
    assert tr == (0, 140) and va == (140, 160) and te == (160, 200)


def test_load_csi_subsets_are_disjoint_from_test(tiny_dataset):
    train = load_csi(tiny_dataset, "train", ["los"], train_fraction=0.25, seed=1)
    again = load_csi(tiny_dataset, "train", ["los"], train_fraction=0.25, seed=1)
    test = load_csi(tiny_dataset, "test", ["los"])
    assert torch.equal(train["index"], again["index"]) and len(train["index"]) == 7  # 25 % of 28
    assert set(train["index"].tolist()).isdisjoint(test["index"].tolist())
    assert train["csi"].shape[1:] == (8, 4, 16) and train["los"].dtype == torch.bool


def test_missing_field_and_geometry_errors(tiny_dataset, tiny_cdl_dataset):
    with pytest.raises(DataError, match="needs field"):
        load_csi(tiny_dataset, "test", ["beam_index"], task="x")
    d = load_csi(tiny_cdl_dataset, "test", ["distance", "geometry_valid"])
    with pytest.raises(DataError, match="geometry_valid"):
        csi_labels(d, "distance", tiny_cdl_dataset)


def test_trajectory_split_is_disjoint_and_complete():
    s = trajectory_split(50, seed=2)
    parts = [set(s[k].tolist()) for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == 50 and set.union(*parts) == set(range(50))
    assert all(a.isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1:])
    assert len(parts[2]) == 10 and len(parts[1]) == 5


def test_prediction_mask_matches_the_mae_and_series_round_trip():
    from wfm.models.registry import create_model

    csi = torch.randn(2, 8, 4, 16, dtype=torch.complex64)
    mae = create_model("mae_tiny").eval()
    for axis, kind in (("time", "temporal"), ("frequency", "frequency")):
        mask = prediction_mask(tuple(csi.shape), axis, 0.5, (4, 4, 4))
        assert torch.equal(mae.predict(csi, kind, 0.5).mask, mask)
        assert torch.equal(from_series(to_series(csi, axis), csi, axis), csi)
    assert hidden_count(16, 0.5, 4) == 8 and hidden_count(8, 0.9, 4) == 7 and hidden_count(30, 0.5) == 15


def test_forecast_hidden_with_persistence_matches_the_reference():
    from wfm.tasks.channel_prediction import persistence

    csi = torch.randn(3, 8, 4, 16, dtype=torch.complex64)
    for axis in ("time", "frequency"):
        mask = prediction_mask(tuple(csi.shape), axis, 0.5, (4, 4, 4))
        ours = forecast_hidden(Persistence(), csi, mask, axis, 1.0)
        assert torch.equal(ours, persistence(csi, mask, axis))
        s = score_prediction(csi.clone(), csi, mask, axis)
        assert s["nmse_db"] < -250 and len(s["per_step_nmse_db"]) == s["hidden_steps"]


def test_knn_scores_vote_nearest_neighbours_within_a_scenario():
    def win(pos, labels, scen):
        n = len(labels)
        return BeamWindows(torch.zeros(n, 2, 4), torch.tensor(labels), torch.ones(n, 4),
                           torch.tensor(pos, dtype=torch.float32), torch.tensor(scen), torch.zeros(n))
    train = win([[0, 0], [1, 0], [10, 0], [0, 0]], [1, 1, 2, 3], [1, 1, 1, 2])
    test = win([[0.2, 0], [9, 0]], [1, 2], [1, 1])
    s = knn_scores(train, test, k=2)
    assert s.argmax(1).tolist() == [1, 2]  # beam 3 of scenario 2 sits at (0, 0) but does not count
    assert float(s[0, 1]) == pytest.approx(1.5) and float(s[0, 3]) == 0.0


def test_registry_names_modes_and_baselines():
    assert get_task("los-nlos").classes == 2
    assert "zero-shot" not in get_task("los-nlos").modes and "zero-shot" in get_task("channel-prediction-time").modes
    assert {"persistence", "lstm", "position-knn"} <= set(get_task("future-beam").baselines)
    assert all(t.metrics and t.baselines for t in TASKS.values())
    with pytest.raises(KeyError, match="unknown task"):
        get_task("weather")


class _GaussianQuantiles:
    """Forecasts the exact quantiles of N(0, 1): calibrated for standard-normal targets."""

    quantile_levels = (0.1, 0.5, 0.9)

    def forecast(self, context, interval, horizon, quantiles=False):
        z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(self.quantile_levels))
        q = z.expand(len(context), horizon, 3)
        return q if quantiles else q[..., 1]


def _noise_windows(n: int, horizon: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"context": torch.randn(8, generator=g), "target": torch.randn(horizon, generator=g),
             "interval": 1.0} for _ in range(n)]


def test_quantile_coverage_is_the_level_for_calibrated_quantiles_and_detects_bias():
    from wfm.tasks.forecasting import quantile_coverage

    cov = quantile_coverage(_GaussianQuantiles(), _noise_windows(2000, 4))
    for level, below in cov["below"].items():
        assert below == pytest.approx(float(level), abs=0.02)
    assert cov["interval"] == pytest.approx(0.8, abs=0.02) and cov["interval_nominal"] == pytest.approx(0.8)

    biased = [{**w, "target": w["target"] + 2.0} for w in _noise_windows(500, 4)]  # forecasts too low
    cov_b = quantile_coverage(_GaussianQuantiles(), biased)
    assert cov_b["below"]["0.9"] < 0.5 and cov_b["interval"] < 0.5

    # The weighted quantile loss is a proper score: a band three times too wide covers more
    # and scores worse than the calibrated one.
    from wfm.tasks.forecasting import coverage, weighted_quantile_loss
    w = _noise_windows(2000, 4)
    target = torch.stack([x["target"] for x in w])
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor((0.1, 0.5, 0.9)))
    wide = coverage((3 * z).expand(2000, 4, 3), target, (0.1, 0.5, 0.9))
    assert wide["interval"] > cov["interval"] and wide["quantile_loss"] > cov["quantile_loss"]
    q = z.expand(2000, 4, 3)
    pin = sum(torch.maximum(lv * (target - q[..., i]), (lv - 1) * (target - q[..., i])) for i, lv in enumerate((0.1, 0.5, 0.9)))
    ref = (2 * pin.sum(1) / target.abs().sum(1)).mean()
    assert weighted_quantile_loss(q, target, (0.1, 0.5, 0.9)) == pytest.approx(float(ref), rel=1e-6)
    assert cov["quantile_loss"] == pytest.approx(float(ref), rel=1e-5)

    with pytest.raises(ValueError, match="no quantile head"):
        quantile_coverage(Persistence(), _noise_windows(4, 2))


def test_one_run_gives_the_point_forecasts_and_the_quantiles_of_two():
    """``collect_forecasts(quantiles_into=[])`` with a model that has ``forecast_with_quantiles``
    (the causal forecaster): the same points and quantiles as two passes, the forecaster run once."""
    from wfm.models.registry import create_model
    from wfm.tasks.forecasting import collect_forecasts, coverage, quantile_coverage

    torch.manual_seed(0)
    m = create_model("causal_tiny", prior="mix", guard=True, check_origins=4, quantiles=(0.1, 0.5, 0.9)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(m.head.weight, std=0.1)
    g = torch.Generator().manual_seed(1)
    windows = [{"context": torch.randn(48, generator=g).cumsum(0), "target": torch.randn(12, generator=g),
                "interval": 60.0} for _ in range(10)]
    calls = []
    both = m.forecast_with_quantiles
    m.forecast_with_quantiles = lambda *a, **k: calls.append(1) or both(*a, **k)
    got = []
    pred, target, _ = collect_forecasts(m, windows, batch_size=4, quantiles_into=got)
    assert len(calls) == 3  # one run per batch of 4
    assert torch.equal(pred, collect_forecasts(m, windows, batch_size=4)[0])
    q = torch.cat(got)
    assert torch.equal(q, collect_forecasts(m, windows, batch_size=4, quantiles=3)[0])
    assert coverage(q, target, m.quantile_levels) == quantile_coverage(m, windows, batch_size=4)


def test_task_modules_are_named_apart_from_the_packages():
    """``wfm.tasks`` modules say what they hold: none shares its name with a ``wfm`` package
    (``wfm/tasks/models.py`` sat beside ``wfm/models/``, ``wfm/tasks/data.py`` beside
    ``wfm/data/``), and channel prediction is one module (no ``csi_prediction`` beside it)."""
    import importlib.util
    import pkgutil

    import wfm
    import wfm.tasks
    from wfm.tasks import backbones, channel_prediction

    packages = {m.name for m in pkgutil.iter_modules(wfm.__path__) if m.ispkg}
    assert {"models", "data"} <= packages and not packages & {m.name for m in pkgutil.iter_modules(wfm.tasks.__path__)}
    assert importlib.util.find_spec("wfm.tasks.csi_prediction") is None
    assert callable(channel_prediction.persistence) and callable(channel_prediction.score_prediction)
    assert callable(backbones.load_model) and callable(backbones.configure_mode)
