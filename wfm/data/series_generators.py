"""Generated series: user trajectories (``kind: trajectory``) and cell traffic (``kind: traffic``).

Both kinds plug into the generic driver of :mod:`wfm.data.generate` (sharded, parallel,
resumable, deterministic) and into :func:`wfm.data.recipes.load_recipe`; each sample is
one long series with a fixed length, so the fields are dense.

Trajectories
    A user moves on the ground (height ``ue_height_m``) around a base station at
    ``(0, 0, bs_height_m)`` whose boresight is the +x axis. Motion is a chain of
    constant-velocity segments of exponentially distributed duration; at each segment
    boundary the user may stop (pedestrians pause, vehicles wait at lights), change speed
    (log-normal factor, clipped to the recipe's range) and turn (vehicles take right-angle
    turns of a street grid and otherwise follow gently curving roads; pedestrians wander).
    Fields per step: ``position`` [L, 3] (m), ``distance`` [L] (m, 3D), ``aoa`` [L, 2]
    (deg, LoS azimuth from boresight, unwrapped along time, and elevation, negative below
    the mast) and ``speed`` [L] (m/s).

Traffic
    Cell load as ``level x daily profile x weekly factor x bursts x heavy-tailed noise``.
    The daily profile mixes three archetypes (residential: evening peak; business: office
    hours; transport: commuting peaks), the weekly factor scales weekends per archetype,
    bursts (events) are Poisson in time with log-normal gain and exponential decay, and the
    noise is multiplicative ``exp(scale * t_df)`` (Student t: rare large deviations, as
    in measured traffic). Each series starts at a random step of the week (``start_step``
    counts steps since Monday 00:00), so a model cannot learn the phase from the index.
    Optional (default off): regime changes (``level_shifts_per_week``: Poisson level
    shifts of log-normal size that persist, as when a cell is re-planned or its users
    change), a slow random wander of the level (``drift_scale``, ``drift_hours``: an
    AR(1) process in log load), which makes persistence a good short-term predictor, as
    on measured traffic, and short spikes (``spikes_per_day``, ``spike_minutes``,
    ``spike_gain_log_mean``: events that last minutes, not hours, and fall back, as a few
    heavy users or a flash crowd make them). The interval (``interval_min``) is any divisor of a day: 1, 2,
    5, 10, 15, 60 minutes...
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wfm.data.errors import DataError
from wfm.data.generate import register_kind
from wfm.data.geometry import los_distance_aoa
from wfm.data.recipes import RecipeFields, field_problems, register_recipe_kind
from wfm.safety import strict_int
from wfm.data.shards import FieldSpec

MOBILITY = ("pedestrian", "vehicular")
TRAFFIC_ARCHETYPES = ("residential", "business", "transport")
#: Optional traffic recipe keys that are left out of the recipe's dict at their defaults.
TRAFFIC_EXTRAS = ("level_shifts_per_week", "level_shift_log_std", "drift_scale", "drift_hours", "spikes_per_day",
                  "spike_minutes", "spike_gain_log_mean", "night_floor", "night_floor_max")


#: The traffic daily profile's default floor: night load at a tenth of an archetype's highest bump.
NIGHT_FLOOR = 0.1

# ---------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class TrajectoryRecipe(RecipeFields):
    """Long user trajectories around a base station. Units are in the key names."""

    name: str
    mobility: str  # pedestrian | vehicular
    num_samples: int
    steps: int = 512
    interval_ms: float = 100.0
    speed_kmh: tuple[float, float] = (2.0, 6.0)
    bs_height_m: float = 25.0
    ue_height_m: float = 1.5
    start_distance_m: tuple[float, float] = (20.0, 300.0)  # horizontal, from the mast
    sector_deg: float = 120.0  # users start within +-sector/2 of boresight
    mean_segment_s: float = 8.0  # mean duration of a constant-velocity segment
    stop_probability: float = 0.1  # chance that a segment is a stop
    turn_probability: float = 0.3  # chance of a sharp turn at a segment boundary
    # GPS error of the user's fix, from which position, distance and aoa are then computed (as a
    # GPS-derived trace such as DeepSense 6G's holds them; speed stays the true one). 0: exact.
    gps_noise_m: float = 0.0  # std per horizontal axis of a Gauss-Markov error (slow wander)
    gps_noise_s: float = 10.0  # its correlation time
    gps_jitter_m: float = 0.0  # std per axis of a white error, new at every fix
    gps_jumps_per_min: float = 0.0  # rate of steps of the error (multipath, reacquisition) that persist
    gps_jump_m: float = 5.0  # std per axis of each step
    shard_size: int = 256
    split: str = "pretrain"
    description: str = ""
    kind: str = field(default="trajectory")

    def __post_init__(self) -> None:
        p = []
        if self.mobility not in MOBILITY:
            p.append(f"mobility {self.mobility!r} is not one of {', '.join(MOBILITY)}")
        if self.speed_kmh[1] <= 0:
            p.append(f"speed_kmh {list(self.speed_kmh)} needs high > 0")
        p += field_problems(self, counts=("steps", "num_samples", "shard_size"),
                            positive=("interval_ms", "mean_segment_s", "bs_height_m", "gps_noise_s"),
                            non_negative=("gps_noise_m", "gps_jitter_m", "gps_jumps_per_min", "gps_jump_m"),
                            probabilities=("stop_probability", "turn_probability"),
                            ranges=("speed_kmh", "start_distance_m"))
        if p:
            raise DataError(f"recipe {self.name!r}: " + "; ".join(p))

    @property
    def interval_s(self) -> float:
        return self.interval_ms * 1e-3

    @property
    def gps_error(self) -> bool:
        """Whether the fixes carry any GPS error."""
        return bool(self.gps_noise_m or self.gps_jitter_m or (self.gps_jumps_per_min and self.gps_jump_m))


@dataclass(frozen=True)
class TrafficRecipe(RecipeFields):
    """Cell traffic series with daily/weekly seasonality, bursts and heavy-tailed noise."""

    name: str
    interval_min: float  # sampling interval; must divide a day
    num_samples: int
    days: int = 28
    level_log_mean: float = 5.0  # log of the typical mean load (activity units)
    level_log_std: float = 1.0
    weekend_jitter: float = 0.1  # std of the random part of the weekend factor
    bursts_per_day: float = 0.3
    burst_hours: float = 1.5  # mean e-folding time of a burst's decay
    burst_gain_log_mean: float = 0.0  # a burst multiplies the load by 1 + exp(N(mean, 0.7))
    noise_scale: float = 0.08
    noise_df: float = 3.0  # Student-t degrees of freedom: lower = heavier tails
    # Optional realism, off by default (see TRAFFIC_EXTRAS): regime changes and level wander.
    level_shifts_per_week: float = 0.0  # Poisson rate of persistent level shifts
    level_shift_log_std: float = 0.5  # a shift multiplies the load by exp(N(0, std))
    drift_scale: float = 0.0  # stationary std of an AR(1) wander of log load
    drift_hours: float = 6.0  # its e-folding (correlation) time
    spikes_per_day: float = 0.0  # Poisson rate of short spikes (bursts that fall back within minutes)
    spike_minutes: float = 15.0  # mean e-folding time of a spike's decay
    spike_gain_log_mean: float = 0.5  # a spike adds exp(N(mean, 0.7)) times the load
    # The daily profile's floor (its quietest load, against an archetype's highest bump of 1): night
    # traffic at a tenth of the peak by default; with night_floor_max, each series draws its floor
    # log-uniformly between the two (the Milan cells of ../shared, which aggregate many users: 17-53 %).
    night_floor: float = NIGHT_FLOOR
    night_floor_max: float | None = None
    shard_size: int = 256
    split: str = "pretrain"
    description: str = ""
    kind: str = field(default="traffic")

    def __post_init__(self) -> None:
        p = []
        if not self.interval_min > 0 or abs(1440 / self.interval_min - round(1440 / self.interval_min)) > 1e-9:
            p.append(f"interval_min {self.interval_min} must be > 0 and divide a day (1440 min)")
        p += field_problems(self, counts=("days", "num_samples", "shard_size"),
                            positive=("noise_df", "burst_hours", "spike_minutes"),
                            non_negative=("bursts_per_day", "noise_scale", "weekend_jitter", "level_log_std",
                                          "level_shifts_per_week", "level_shift_log_std", "drift_scale",
                                          "spikes_per_day"))
        if not self.drift_hours > 0:
            p.append("drift_hours must be > 0")
        if not self.night_floor > 0:
            p.append(f"night_floor {self.night_floor} must be > 0")
        if self.night_floor_max is not None and not self.night_floor_max >= self.night_floor:
            p.append(f"night_floor_max {self.night_floor_max} must be >= night_floor {self.night_floor}")
        if p:
            raise DataError(f"recipe {self.name!r}: " + "; ".join(p))

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`RecipeFields.to_dict`, without the optional extras left at their defaults
        (so recipes without them keep the manifests they always had)."""
        d = super().to_dict()
        for f in dataclasses.fields(self):
            if f.name in TRAFFIC_EXTRAS and d[f.name] == f.default:
                del d[f.name]
        return d

    @property
    def has_extras(self) -> bool:
        return (self.level_shifts_per_week > 0 or self.drift_scale > 0 or self.spikes_per_day > 0
                or self.night_floor != NIGHT_FLOOR or self.night_floor_max is not None)

    @property
    def steps_per_day(self) -> int:
        return int(round(1440 / self.interval_min))

    @property
    def steps(self) -> int:
        return self.days * self.steps_per_day

    @property
    def interval_s(self) -> float:
        return self.interval_min * 60.0


def dataclass_recipe_parser(cls: type, kind: str):
    """A ``load_recipe`` parser for a dataclass recipe: unknown/missing keys are errors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    required = {n for n, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}

    def parse(d: dict[str, Any], source: str) -> Any:
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise DataError(f"{source}: unknown recipe key(s) {', '.join(unknown)}")
        missing = sorted(required - set(d))
        if missing:
            raise DataError(f"{source}: missing recipe key(s) {', '.join(missing)}")
        if d.get("kind", kind) != kind:
            raise DataError(f"{source}: kind {d['kind']!r} is not a {kind} recipe")
        out = {}
        try:
            for k, v in d.items():
                default = fields[k].default
                if isinstance(default, tuple):
                    out[k] = tuple(float(x) for x in v)
                    if len(out[k]) != len(default):
                        raise ValueError(f"{k} must have {len(default)} values")
                elif isinstance(default, bool) or k in ("name", "kind", "split", "description", "mobility"):
                    out[k] = v
                elif k in ("num_samples", "steps", "days", "shard_size") or isinstance(default, int):
                    out[k] = strict_int(v, k)  # 32.7 is an error, not 32
                else:
                    out[k] = float(v)
        except (TypeError, ValueError) as e:
            raise DataError(f"{source}: bad value in recipe: {e}") from None
        try:
            return cls(**out)
        except DataError as e:
            raise DataError(f"{source}: {e}") from None

    return parse


# ---------------------------------------------------------------------------- trajectories


class TrajectoryGenerator:
    """Sample generator of ``kind: trajectory`` recipes."""

    kind = "trajectory"

    def __init__(self, recipe: TrajectoryRecipe):
        self.recipe = recipe

    def specs(self) -> dict[str, FieldSpec]:
        L = self.recipe.steps
        return {
            "position": FieldSpec("float32", (L, 3)),  # m, BS mast foot at the origin
            "distance": FieldSpec("float32", (L,)),  # m, 3D, to the BS antenna
            "aoa": FieldSpec("float32", (L, 2)),  # deg, LoS azimuth (unwrapped) / elevation
            "speed": FieldSpec("float32", (L,)),  # m/s
        }

    def attrs(self) -> dict[str, Any]:
        r = self.recipe
        return {"interval_s": r.interval_s, "mobility": r.mobility,
                "bs_position": [0.0, 0.0, r.bs_height_m], "boresight": "+x",
                "aoa_channels": ["azimuth", "elevation"],
                "layout": "L steps; aoa azimuth from boresight, unwrapped along time"}

    def generate(self, num: int, seed: int, device: str = "cpu") -> dict[str, np.ndarray]:
        r = self.recipe
        rng = np.random.default_rng(seed)
        L, dt = r.steps, r.interval_s
        vel = np.stack([self._velocities(rng) for _ in range(num)])  # [n, L, 2]
        dist0 = rng.uniform(*r.start_distance_m, size=num)
        az0 = np.deg2rad(rng.uniform(-r.sector_deg / 2, r.sector_deg / 2, size=num))
        start = np.stack([dist0 * np.cos(az0), dist0 * np.sin(az0)], -1)
        # Position at step i integrates the velocities of steps 0..i-1.
        steps = np.concatenate([np.zeros((num, 1, 2)), np.cumsum(vel[:, :-1] * dt, axis=1)], axis=1)
        xy = start[:, None, :] + steps
        if r.gps_error:  # its own stream: recipes without GPS error draw exactly what they drew before
            xy = xy + gps_fix_error(np.random.default_rng([seed, 1]), num, L, dt, r)
        pos = np.concatenate([xy, np.full((num, L, 1), r.ue_height_m)], axis=-1)
        dist, aoa = los_distance_aoa(pos, bs=np.array([0.0, 0.0, r.bs_height_m]))
        return {"position": pos.astype(np.float32), "distance": dist.astype(np.float32),
                "aoa": aoa.astype(np.float32),
                "speed": np.linalg.norm(vel, axis=-1).astype(np.float32)}

    def _velocities(self, rng: np.random.Generator) -> np.ndarray:
        """Per-step 2D velocity (m/s) of one user: constant-velocity segments."""
        r = self.recipe
        L, dt = r.steps, r.interval_s
        lo, hi = (v / 3.6 for v in r.speed_kmh)
        vel = np.empty((L, 2))
        heading = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(lo, hi)
        t = 0
        while t < L:
            n = max(1, int(round(rng.exponential(r.mean_segment_s / dt))))
            if t > 0 and rng.random() < r.stop_probability:
                vel[t:t + n] = 0.0
                t += n
                continue
            if t > 0:
                speed = float(np.clip(speed * math.exp(rng.normal(0.0, 0.25)), lo, hi))
                if rng.random() < r.turn_probability:
                    # Vehicles follow a street grid; pedestrians turn by any sizeable angle.
                    turn = (np.pi / 2 if r.mobility == "vehicular" else rng.uniform(np.pi / 4, 3 * np.pi / 4))
                    heading += turn * rng.choice([-1.0, 1.0])
                else:
                    heading += rng.normal(0.0, np.deg2rad(5.0 if r.mobility == "vehicular" else 25.0))
            vel[t:t + n] = speed * np.array([math.cos(heading), math.sin(heading)])
            t += n
        return vel


def gps_fix_error(rng: np.random.Generator, num: int, steps: int, dt: float, r: TrajectoryRecipe) -> np.ndarray:
    """``[num, steps, 2]`` m: the horizontal error of a GPS fix every ``dt`` s. A first-order
    Gauss-Markov process of std ``gps_noise_m`` and correlation time ``gps_noise_s`` (the usual
    model of a receiver's slowly wandering error), white jitter of ``gps_jitter_m``, and steps of
    std ``gps_jump_m`` at ``gps_jumps_per_min`` (a multipath reflection or a reacquisition moves
    the fix and it stays moved, as in DeepSense 6G's traces, where one jumps by 15 m)."""
    a = math.exp(-dt / r.gps_noise_s)
    drive = rng.normal(0.0, r.gps_noise_m * math.sqrt(1.0 - a * a), size=(num, steps, 2))
    wander = np.empty((num, steps, 2))
    wander[:, 0] = rng.normal(0.0, r.gps_noise_m, size=(num, 2))  # stationary from the first fix
    for t in range(1, steps):
        wander[:, t] = a * wander[:, t - 1] + drive[:, t]
    jitter = rng.normal(0.0, r.gps_jitter_m, size=(num, steps, 2))
    jumps = rng.random((num, steps, 1)) < r.gps_jumps_per_min * dt / 60.0
    offsets = np.cumsum(jumps * rng.normal(0.0, r.gps_jump_m, size=(num, steps, 2)), axis=1)
    return wander + jitter + offsets


# ---------------------------------------------------------------------------- traffic

# Daily bumps per archetype: (hour of the peak, width in hours, height). Heights are
# relative; a floor (NIGHT_FLOOR by default) keeps night traffic above zero.
_DAILY = {
    "residential": [(8.0, 1.5, 0.35), (13.0, 2.5, 0.45), (21.0, 2.5, 1.0)],
    "business": [(10.0, 2.0, 1.0), (15.0, 2.0, 0.9), (20.0, 2.0, 0.2)],
    "transport": [(8.0, 1.0, 1.0), (18.0, 1.2, 0.9), (13.0, 3.0, 0.3)],
}
_WEEKEND = {"residential": 1.1, "business": 0.45, "transport": 0.6}


def daily_profile(hours: np.ndarray, archetype: str, floor: float | np.ndarray = NIGHT_FLOOR) -> np.ndarray:
    """Relative load of an archetype at time of day ``hours`` (periodic over 24 h) above ``floor``
    (a scalar, or an array that broadcasts against ``hours``, e.g. one floor per series)."""
    out = np.zeros(np.broadcast_shapes(np.shape(hours), np.shape(floor))) + floor
    for peak, width, height in _DAILY[archetype]:
        d = np.remainder(hours - peak + 12.0, 24.0) - 12.0  # signed distance on the day circle
        out += height * np.exp(-0.5 * (d / width) ** 2)
    return out


class TrafficGenerator:
    """Sample generator of ``kind: traffic`` recipes."""

    kind = "traffic"

    def __init__(self, recipe: TrafficRecipe):
        self.recipe = recipe

    def specs(self) -> dict[str, FieldSpec]:
        return {
            "traffic": FieldSpec("float32", (self.recipe.steps,)),  # activity units, >= 0
            "start_step": FieldSpec("int64", ()),  # steps since Monday 00:00 at the first value
            "archetype_weights": FieldSpec("float32", (len(TRAFFIC_ARCHETYPES),)),
        }

    def attrs(self) -> dict[str, Any]:
        r = self.recipe
        return {"interval_s": r.interval_s, "steps_per_day": r.steps_per_day,
                "archetypes": list(TRAFFIC_ARCHETYPES), "unit": "activity (arbitrary, >= 0)"}

    def generate(self, num: int, seed: int, device: str = "cpu") -> dict[str, np.ndarray]:
        r = self.recipe
        rng = np.random.default_rng(seed)
        L, spd = r.steps, r.steps_per_day
        start = rng.integers(0, 7 * spd, size=num)
        t = start[:, None] + np.arange(L)[None, :]  # absolute step since Monday 00:00
        hours = np.remainder(t, spd) * (24.0 / spd)
        weekend = np.remainder(t // spd, 7) >= 5
        weights = rng.dirichlet(np.full(len(TRAFFIC_ARCHETYPES), 0.7), size=num)
        floor = self._floors(num, seed)
        season = np.zeros((num, L))
        for j, a in enumerate(TRAFFIC_ARCHETYPES):
            wk = _WEEKEND[a] * np.exp(rng.normal(0.0, r.weekend_jitter, size=(num, 1)))
            season += weights[:, j, None] * daily_profile(hours, a, floor) * np.where(weekend, wk, 1.0)
        level = np.exp(rng.normal(r.level_log_mean, r.level_log_std, size=(num, 1)))
        bursts = self._bursts(rng, num, L, spd)
        noise = np.exp(r.noise_scale * np.clip(rng.standard_t(r.noise_df, size=(num, L)), -30, 30))
        if r.spikes_per_day > 0:  # their own random stream too: the rest of a series is unchanged
            bursts = bursts + self._spikes(np.random.default_rng([0x5B1, int(seed) % 2**63]), num, L, spd)
        traffic = level * season * (1.0 + bursts) * noise
        if r.level_shifts_per_week > 0 or r.drift_scale > 0:
            # Their own random stream, so the rest of a series is the same with and without them.
            traffic = traffic * np.exp(self._regimes(np.random.default_rng([0x7AF, int(seed) % 2**63]), num, L, spd))
        return {"traffic": traffic.astype(np.float32), "start_step": start.astype(np.int64),
                "archetype_weights": weights.astype(np.float32)}

    def _floors(self, num: int, seed: int) -> float | np.ndarray:
        """The daily profile's floor: the recipe's, or one per series ``[num, 1]`` drawn log-uniformly
        up to ``night_floor_max`` (its own random stream: the rest of a series is unchanged)."""
        r = self.recipe
        if r.night_floor_max is None:
            return r.night_floor
        u = np.random.default_rng([0xF10, int(seed) % 2**63]).random((num, 1))
        return r.night_floor * (r.night_floor_max / r.night_floor) ** u

    def _regimes(self, rng: np.random.Generator, num: int, L: int, spd: int) -> np.ndarray:
        """Log-load offsets [num, L]: persistent level shifts plus an AR(1) wander."""
        r = self.recipe
        out = np.zeros((num, L))
        if r.level_shifts_per_week > 0:
            for i in range(num):
                for _ in range(rng.poisson(r.level_shifts_per_week * L / (7 * spd))):
                    out[i, int(rng.integers(1, L)):] += rng.normal(0.0, r.level_shift_log_std)
        if r.drift_scale > 0:
            phi = math.exp(-1.0 / (r.drift_hours * spd / 24.0))
            e = rng.standard_normal((num, L)) * r.drift_scale * math.sqrt(1 - phi * phi)
            e[:, 0] = rng.standard_normal(num) * r.drift_scale  # start in the stationary state
            a = np.empty((num, L))
            a[:, 0] = e[:, 0]
            for t in range(1, L):
                a[:, t] = phi * a[:, t - 1] + e[:, t]
            out += a
        return out

    def _spikes(self, rng: np.random.Generator, num: int, L: int, spd: int) -> np.ndarray:
        """Relative extra load of short spikes [num, L]: bursts that decay within minutes
        (e-folding ``spike_minutes``), so at 10-minute steps most last one or two values and at
        1-minute steps a dozen."""
        r = self.recipe
        return _decaying_events(rng, num, L, r.spikes_per_day * L / spd, r.spike_minutes / r.interval_min,
                                r.spike_gain_log_mean)

    def _bursts(self, rng: np.random.Generator, num: int, L: int, spd: int) -> np.ndarray:
        """Relative extra load of events: jump up, decay exponentially over hours."""
        r = self.recipe
        return _decaying_events(rng, num, L, r.bursts_per_day * L / spd, r.burst_hours * spd / 24.0,
                                r.burst_gain_log_mean)


def _decaying_events(rng: np.random.Generator, num: int, L: int, expected: float, tau: float,
                     gain_log_mean: float) -> np.ndarray:
    """Relative extra load [num, L] of Poisson events (``expected`` per series) at uniform
    steps: each jumps by ``exp(N(gain_log_mean, 0.7))`` and decays with an e-folding of ``tau``
    steps times an exponential draw."""
    out = np.zeros((num, L))
    for i in range(num):
        for _ in range(rng.poisson(expected)):
            s = int(rng.integers(0, L))
            gain = math.exp(rng.normal(gain_log_mean, 0.7))
            k = np.arange(L - s)
            out[i, s:] += gain * np.exp(-k / (tau * rng.exponential(1.0) + 1e-9))
    return out

register_recipe_kind("trajectory", dataclass_recipe_parser(TrajectoryRecipe, "trajectory"))
register_recipe_kind("traffic", dataclass_recipe_parser(TrafficRecipe, "traffic"))
register_kind("trajectory", TrajectoryGenerator)
register_kind("traffic", TrafficGenerator)
