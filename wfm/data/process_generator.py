"""Textbook processes as a generated series dataset (``kind: process``).

The wireless series (CSI, trajectories, traffic) hold few of the processes whose best forecast
is known in closed form, and a forecaster of any series should match that forecast: the mean on
white noise around a level, the last value on a random walk, reversion to the level on an AR(1),
the line on a trend, the new level after a shift (``pretrain/canonical.py`` scores a model on
them). Each sample is one series of ``steps`` values::

    x_t = level + slope * t + shifts_t + scale * u_t

with ``u`` drawn per sample as white noise (probability ``white_prob``), a random walk
(``walk_prob``) or otherwise an AR(1) with ``phi ~ U(phi_low, phi_high)`` started in its
stationary law (innovations of unit variance, so the AR(1) part has std ``1 / sqrt(1 - phi^2)``);
a slope (probability ``trend_prob``, ``N(0, trend_scale)`` noise scales per step) and Poisson level
shifts (``shifts_per_1000`` per 1000 steps, ``N(0, shift_scale)`` noise scales each, persistent).
``level`` is ``N(0, level_scale)`` noise scales from zero; ``scale`` is log-uniform over two decades,
so no series says its size by its values. The dataset is of kind ``series`` (field ``values``,
``series_kind: process``), the view every imported series has, so the causal DataModules read it
with no change; its interval is ``interval_s`` (``interval_jitter`` of the DataModule spreads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wfm.data.errors import DataError
from wfm.data.generate import register_kind
from wfm.data.recipes import RecipeFields, field_problems, register_recipe_kind
from wfm.data.series_generators import dataclass_recipe_parser
from wfm.data.shards import FieldSpec

#: The ``process`` field's codes: which noise a sample has.
NOISES = ("white", "random walk", "AR(1)")


@dataclass(frozen=True)
class ProcessRecipe(RecipeFields):
    """Textbook processes (see the module doc); probabilities are per sample."""

    name: str
    num_samples: int
    steps: int = 2048
    interval_s: float = 60.0
    white_prob: float = 0.25
    walk_prob: float = 0.25
    phi_low: float = 0.5
    phi_high: float = 0.99
    trend_prob: float = 0.3
    trend_scale: float = 0.02
    shifts_per_1000: float = 1.0
    shift_scale: float = 5.0
    level_scale: float = 20.0
    shard_size: int = 256
    split: str = "pretrain"
    description: str = ""
    kind: str = field(default="process")

    def __post_init__(self) -> None:
        p = field_problems(self, counts=("steps", "num_samples", "shard_size"),
                           positive=("interval_s",),
                           non_negative=("trend_scale", "shifts_per_1000", "shift_scale", "level_scale"))
        for name in ("white_prob", "walk_prob", "trend_prob"):
            if not 0 <= getattr(self, name) <= 1:
                p.append(f"{name} must be in [0, 1]")
        if self.white_prob + self.walk_prob > 1:
            p.append("white_prob + walk_prob must be at most 1 (the rest is AR(1))")
        if not -1 < self.phi_low <= self.phi_high < 1:
            p.append("phi_low <= phi_high must lie in (-1, 1)")
        if p:
            raise DataError(f"recipe {self.name!r}: " + "; ".join(p))


class ProcessGenerator:
    """Sample generator of ``kind: process`` recipes; writes a ``series`` dataset."""

    kind = "series"

    def __init__(self, recipe: ProcessRecipe):
        self.recipe = recipe

    def specs(self) -> dict[str, FieldSpec]:
        return {"values": FieldSpec("float32", (self.recipe.steps,)),
                "process": FieldSpec("int64", ()),  # index into NOISES
                "phi": FieldSpec("float32", ())}  # the AR(1) coefficient (0 white, 1 random walk)

    def attrs(self) -> dict[str, Any]:
        return {"interval_s": self.recipe.interval_s, "series_kind": "process", "noises": list(NOISES)}

    def generate(self, num: int, seed: int, device: str = "cpu") -> dict[str, np.ndarray]:
        r = self.recipe
        rng = np.random.default_rng(seed)
        n = r.steps
        u = rng.random(num)
        code = np.where(u < r.white_prob, 0, np.where(u < r.white_prob + r.walk_prob, 1, 2))
        phi = np.where(code == 0, 0.0, np.where(code == 1, 1.0, rng.uniform(r.phi_low, r.phi_high, num)))
        e = rng.standard_normal((num, n))
        noise = np.empty((num, n))
        # Stationary start for |phi| < 1 (std 1 / sqrt(1 - phi^2)); a random walk starts at 0.
        noise[:, 0] = np.where(code == 1, 0.0, e[:, 0] / np.sqrt(np.clip(1 - phi ** 2, 1e-12, None)))
        for t in range(1, n):
            noise[:, t] = phi * noise[:, t - 1] + e[:, t]
        scale = 10.0 ** rng.uniform(-1, 1, (num, 1))
        t = np.arange(n)[None, :]
        slope = np.where(rng.random((num, 1)) < r.trend_prob, rng.normal(0, r.trend_scale, (num, 1)), 0.0)
        shifts = np.zeros((num, n))
        for i in range(num):
            for _ in range(rng.poisson(r.shifts_per_1000 * n / 1000)):
                shifts[i, int(rng.integers(1, n)):] += rng.normal(0, r.shift_scale)
        level = rng.normal(0, r.level_scale, (num, 1))
        values = scale * (level + slope * t + shifts + noise)
        return {"values": values.astype(np.float32), "process": code.astype(np.int64),
                "phi": phi.astype(np.float32)}


register_recipe_kind("process", dataclass_recipe_parser(ProcessRecipe, "process"))
register_kind("process", ProcessGenerator)
