"""Proactive power allocation for a moving user: a small gymnasium environment.

A base station serves one user moving along a trajectory of the trajectory generator
(:mod:`wfm.data.series_generators`, ``traj-vehicular`` by default). An episode is
``episode_len`` decision slots of ``stride x interval`` seconds; the station has an energy budget
of ``episode_len`` (average power 1 per slot) to spread over them. In slot ``t`` it transmits
with power ``p_t = action * remaining`` and earns the Shannon rate

    r_t = log2(1 + p_t * snr_t),    snr_t = snr_ref * (distance_t / ref_distance_m) ** -path_loss_exp

(the SNR per unit power, set by path loss: ``snr_ref`` at ``ref_distance_m``). The return is the
episode's spectral efficiency sum (bit/s/Hz x slots). Power spent early is gone, so a good policy
saves power for the slots where the user will be close: it needs the *future* distance.

Observation: the last ``history`` distances (m, current slot last), the remaining budget as a
fraction of the episode's, and the fraction of slots left. Action: the fraction of the remaining
budget to spend now, in ``[0, 1]`` (the last slot spends whatever it is given).

Policies (:func:`run_policy`) water-fill the remaining budget over the remaining slots using
predicted SNRs: with a forecaster's multi-step distance forecast (``ForecastPolicy``), with
the current distance held (``ForecastPolicy(Persistence())``: what a policy fed only current
observations can do), or with the true future (``OraclePolicy``: water-filling over the whole
episode at its start, the optimum of this concave problem; no policy can beat it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from wfm.data.generate import generator_for
from wfm.data.recipes import load_recipe

DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "data" / "recipes" / "traj-vehicular.yaml"


def water_fill(snr: np.ndarray, budget: float) -> np.ndarray:
    """Powers ``p >= 0`` with ``sum p = budget`` maximising ``sum log2(1 + p snr)`` (``snr > 0``)."""
    snr = np.asarray(snr, dtype=np.float64)
    if budget <= 0:
        return np.zeros_like(snr)
    inv = np.sort(1.0 / snr)
    # Water level with the k best slots active: (budget + sum of their 1/snr) / k; take the largest k
    # whose level stays above the k-th slot's floor.
    csum = np.cumsum(inv)
    k = np.arange(1, len(inv) + 1)
    level = (budget + csum) / k
    active = int(np.nonzero(level > inv)[0].max()) + 1
    return np.maximum(level[active - 1] - 1.0 / snr, 0.0)


def trajectories(recipe: str | Path = DEFAULT_RECIPE, num: int = 64, seed: int = 0) -> tuple[np.ndarray, float]:
    """``(distance [num, steps] in m, interval s)`` of ``num`` users of a trajectory recipe."""
    gen = generator_for(load_recipe(recipe))
    if gen.kind != "trajectory":
        raise ValueError(f"{recipe}: a {gen.kind!r} recipe; the environment needs a trajectory recipe")
    return gen.generate(num, seed)["distance"].astype(np.float64), float(gen.recipe.interval_s)


class ProactiveAllocationEnv(gym.Env):
    """See the module docstring.

    Args:
        distances: ``[users, steps]`` distance series (m); default: ``trajectories()``.
        interval: seconds between the series' values.
        stride: series steps per decision slot (slot = ``stride * interval`` seconds).
        history: distances in the observation (slots).
        episode_len: decision slots per episode.
        snr_ref_db, ref_distance_m, path_loss_exp: the path-loss SNR model.
    """

    metadata = {"render_modes": []}

    def __init__(self, distances: np.ndarray | None = None, interval: float = 0.1, stride: int = 5,
                 history: int = 48, episode_len: int = 32, snr_ref_db: float = -5.0, ref_distance_m: float = 250.0,
                 path_loss_exp: float = 3.5) -> None:
        super().__init__()
        if distances is None:
            distances, interval = trajectories()
        d = np.asarray(distances, dtype=np.float64)[:, ::stride]
        if d.ndim != 2 or d.shape[1] < history + episode_len:
            raise ValueError(f"distance series of {d.shape[1] if d.ndim == 2 else '?'} slots (stride {stride}) "
                             f"are shorter than history + episode_len = {history + episode_len}")
        if not np.isfinite(d).all() or (d <= 0).any():
            raise ValueError("distances must be finite and positive")
        self.distances, self.slot_s = d, float(interval) * stride
        self.history, self.episode_len = int(history), int(episode_len)
        self.snr_ref, self.ref_distance, self.exp = 10 ** (snr_ref_db / 10), ref_distance_m, path_loss_exp
        self.observation_space = gym.spaces.Box(0.0, 1e6, shape=(history + 2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.budget = float(episode_len)

    def snr(self, distance: np.ndarray | float) -> np.ndarray:
        """SNR per unit power at ``distance`` (m)."""
        return self.snr_ref * (np.asarray(distance, dtype=np.float64) / self.ref_distance) ** (-self.exp)

    def _obs(self) -> np.ndarray:
        hist = self.series[self.t:self.t + self.history]
        return np.concatenate([hist, [self.remaining / self.budget, (self.episode_len - self.k) / self.episode_len]]
                              ).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        user = int(self.np_random.integers(len(self.distances)))
        span = self.history + self.episode_len
        start = int(self.np_random.integers(self.distances.shape[1] - span + 1))
        self.series = self.distances[user, start:start + span]
        self.t, self.k, self.remaining = 0, 0, self.budget  # t: history offset, k: slot of the episode
        return self._obs(), {"user": user, "start": start}

    @property
    def current_distance(self) -> float:
        return float(self.series[self.t + self.history - 1])

    def future_distances(self) -> np.ndarray:
        """True distances of the current and every later slot of the episode (for the oracle)."""
        return self.series[self.t + self.history - 1:][: self.episode_len - self.k]

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], 0.0, 1.0))
        p = a * self.remaining
        snr = float(self.snr(self.current_distance))
        reward = float(np.log2(1.0 + p * snr))
        self.remaining -= p
        self.k += 1
        done = self.k >= self.episode_len
        info = {"power": p, "snr": snr, "distance": self.current_distance}
        if not done:
            self.t += 1
        return self._obs(), reward, done, False, info


# ---------------------------------------------------------------------------- policies


class ForecastPolicy:
    """Water-fill the remaining budget over the remaining slots, with future distances from a
    forecaster (``forecast(context [1, L], interval, horizon)``, e.g. the causal model, or
    ``Persistence`` for a policy that sees only the current observation)."""

    def __init__(self, forecaster: Any) -> None:
        self.forecaster = forecaster

    def plan(self, env: ProactiveAllocationEnv) -> np.ndarray:
        hist = env.series[env.t:env.t + env.history]
        left = env.episode_len - env.k
        d = [hist[-1]]
        if left > 1:
            ctx = torch.as_tensor(hist, dtype=torch.float32)[None]
            with torch.no_grad():
                f = self.forecaster.forecast(ctx, torch.tensor([env.slot_s]), left - 1)
            d += np.clip(np.asarray(f, dtype=np.float64).reshape(-1), 1.0, None).tolist()
        return water_fill(env.snr(np.asarray(d)), env.remaining)

    def __call__(self, env: ProactiveAllocationEnv) -> float:
        p = self.plan(env)[0]
        return 1.0 if env.k == env.episode_len - 1 else float(p / max(env.remaining, 1e-12))


class OraclePolicy:
    """Water-filling over the whole episode with the true distances, planned at its start."""

    def __call__(self, env: ProactiveAllocationEnv) -> float:
        if env.k == 0:
            self.powers = water_fill(env.snr(env.future_distances()), env.remaining)
        if env.k == env.episode_len - 1:
            return 1.0
        return float(self.powers[env.k] / max(env.remaining, 1e-12))


def run_policy(env: ProactiveAllocationEnv, policy: Any, episodes: int = 20, seed: int = 0) -> dict[str, float]:
    """Mean and std of the return of ``policy`` (a callable ``env -> action fraction``) over
    ``episodes`` seeded episodes (the same users and starts for every policy with one seed)."""
    returns = []
    for e in range(episodes):
        env.reset(seed=seed + e)
        total, done = 0.0, False
        while not done:
            _, r, done, _, _ = env.step(np.array([policy(env)], dtype=np.float32))
            total += r
        returns.append(total)
    return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)), "episodes": episodes,
            "returns": [float(x) for x in returns]}
