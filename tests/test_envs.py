"""The proactive allocation environment: gymnasium API, water-filling, oracle bound."""

from __future__ import annotations

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")

from wfm.envs.allocation import (  # noqa: E402
    ForecastPolicy,
    OraclePolicy,
    ProactiveAllocationEnv,
    run_policy,
    trajectories,
    water_fill,
)
from wfm.models.baselines import LinearExtrapolation, Persistence  # noqa: E402


@pytest.fixture(scope="module")
def env():
    d, interval = trajectories(num=8, seed=0)
    return ProactiveAllocationEnv(d, interval, stride=5, history=24, episode_len=16)


def test_water_filling_against_reference():
    snr = np.array([4.0, 1.0, 0.25, 2.0])
    p = water_fill(snr, 1.0)
    assert p.sum() == pytest.approx(1.0) and (p >= 0).all()
    # KKT: active slots share one water level p + 1/snr, inactive ones have 1/snr above it
    level = (p + 1 / snr)[p > 0]
    assert np.allclose(level, level[0]) and (1 / snr[p == 0] >= level[0] - 1e-12).all()
    # better than any other split (random feasible ones)
    rng = np.random.default_rng(0)
    best = np.log2(1 + p * snr).sum()
    for _ in range(200):
        q = rng.dirichlet(np.ones(4))
        assert np.log2(1 + q * snr).sum() <= best + 1e-12
    assert np.allclose(water_fill(np.ones(3), 3.0), 1.0)  # equal gains: equal powers


def test_env_api(env):
    from gymnasium.utils.env_checker import check_env

    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert obs.shape == (26,) and obs[-2] == 1.0 and obs[-1] == 1.0
    total_power = 0.0
    for k in range(16):
        current = float(obs[-3])  # the last distance of the history is the current slot's
        obs, r, done, trunc, info = env.step(np.array([0.5], dtype=np.float32))
        total_power += info["power"]
        assert r >= 0
        # Half of what remains of the budget of 16 each slot: 8, 4, 2, ...; the Shannon rate at
        # the current distance's SNR (default path loss: -5 dB at 250 m, exponent 3.5).
        assert info["power"] == pytest.approx(16 * 0.5 ** (k + 1)) and obs[-2] == pytest.approx(0.5 ** (k + 1))
        assert info["distance"] == pytest.approx(current, rel=1e-6)
        assert info["snr"] == pytest.approx(10 ** (-5 / 10) * (info["distance"] / 250) ** -3.5)
        assert r == pytest.approx(np.log2(1 + info["power"] * info["snr"]))
    assert done and not trunc and total_power <= env.budget + 1e-9
    assert total_power == pytest.approx(16 * (1 - 0.5 ** 16))


def test_oracle_bounds_every_policy(env):
    oracle = run_policy(env, OraclePolicy(), episodes=6, seed=0)
    for policy in (ForecastPolicy(Persistence()), ForecastPolicy(LinearExtrapolation(4))):
        res = run_policy(env, policy, episodes=6, seed=0)
        assert all(o >= r - 1e-4 for o, r in zip(oracle["returns"], res["returns"]))
    # spending everything in the first slot is worse than the oracle too
    greedy = run_policy(env, lambda e: 1.0, episodes=6, seed=0)
    assert oracle["mean_return"] > greedy["mean_return"]


def test_bad_series_are_refused():
    with pytest.raises(ValueError, match="shorter"):
        ProactiveAllocationEnv(np.full((2, 50), 100.0), 0.1, stride=5)
    with pytest.raises(ValueError, match="positive"):
        ProactiveAllocationEnv(np.zeros((2, 500)), 0.1)
