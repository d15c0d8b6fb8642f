"""Generated beam sweeps (``kind: beam``): a vehicle's received power on every beam of a
base station's codebook, frame by frame, in the layout of the DeepSense 6G import.

A vehicle drives past on a straight road (at a random distance and tilt, its speed wandering
slowly), in view of a base station whose uniform linear array (``antennas`` elements at half a wavelength) sweeps a
codebook of ``num_beams`` beams spread evenly in angle over its field of view. Each frame's
channel is the line-of-sight path plus single-bounce reflections off walls (image sources, so
their angles move with the vehicle), summed coherently with a fresh random phase per path and
frame (at millimetre waves a path's phase turns many times between frames). A beam's power is
its array gain towards that channel, scaled by the frame's SNR, on top of a unit noise floor,
and measured with a few percent of noise: the floor at about half the peak and the flat top of
the main lobe that make the real sweeps' best beam flicker between frames.

Per trajectory, drawn at random: the codebook's field of view, the array's orientation (and
which way its beam index runs), the walls and their losses, the SNR (falling with distance as
free-space loss), the measurement noise, and line-of-sight blockages (Poisson in time, each
cutting the direct path for an exponentially distributed time). Trajectories are grouped at
random into ``scenarios`` scenario numbers, so that ``future-beam`` splits them by scenario
as it splits DeepSense.

Fields (as :mod:`wfm.data.loaders.deepsense` writes them, so every ``beam`` task reads both):
``beam_power`` [L, B] (linear, floor 1), ``bearing`` [L] (deg clockwise from north, BS to
vehicle, unwrapped), ``distance`` [L] (m, horizontal), ``vehicle_gps`` [L, 2] and ``bs_gps``
[2] (lat/lon around a fixed reference), ``best_beam`` [L], ``scenario``, ``sequence_id``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wfm.data.errors import DataError
from wfm.data.generate import register_kind
from wfm.data.geometry import gps_bearing, local_to_gps
from wfm.data.recipes import RecipeFields, field_problems, register_recipe_kind
from wfm.data.series_generators import dataclass_recipe_parser
from wfm.data.shards import FieldSpec

#: Where the generated base stations stand (lat, lon in degrees); only offsets from it matter.
REFERENCE_GPS = (33.42, -111.93)


@dataclass(frozen=True)
class BeamRecipe(RecipeFields):
    """Beam sweeps of a base station's codebook along vehicle trajectories (module doc)."""

    name: str
    num_samples: int
    steps: int = 96
    interval_ms: float = 100.0
    # motion: a straight road in front of the array
    speed_kmh: tuple[float, float] = (10.0, 60.0)
    speed_wander: float = 0.2  # std of the log-speed's slow wander (AR(1) over ~3 s)
    road_distance_m: tuple[float, float] = (6.0, 40.0)  # from the mast foot to the road line
    road_tilt_deg: float = 30.0  # road direction off square to boresight: uniform in +-this
    bs_height_m: float = 5.0
    ue_height_m: float = 1.5
    # array and codebook
    antennas: int = 16
    num_beams: int = 64
    fov_deg: tuple[float, float] = (80.0, 110.0)  # the codebook's span, drawn per trajectory
    orientation_deg: float = 15.0  # array boresight off the road frame: uniform in +-this
    # channel
    walls: tuple[float, float] = (0.0, 3.0)  # number of reflecting walls, drawn uniformly (rounded)
    wall_distance_m: tuple[float, float] = (5.0, 40.0)
    wall_loss_db: tuple[float, float] = (4.0, 15.0)
    blockages_per_s: float = 0.05
    blockage_s: float = 1.0  # mean duration
    blockage_loss_db: tuple[float, float] = (10.0, 25.0)
    # measurement
    snr_db: tuple[float, float] = (8.0, 22.0)  # peak signal over the floor at 10 m, per trajectory
    noise: tuple[float, float] = (0.01, 0.06)  # relative measurement noise, per trajectory
    scenarios: int = 4
    shard_size: int = 256
    split: str = "pretrain"
    description: str = ""
    kind: str = field(default="beam")

    def __post_init__(self) -> None:
        p = []
        p += field_problems(self, counts=("steps", "num_samples", "shard_size", "antennas", "num_beams", "scenarios"),
                            positive=("interval_ms", "bs_height_m", "blockage_s"),
                            non_negative=("orientation_deg", "blockages_per_s", "speed_wander", "road_tilt_deg"),
                            ranges=("speed_kmh", "road_distance_m", "fov_deg", "walls", "wall_distance_m",
                                    "wall_loss_db", "blockage_loss_db", "noise"))
        if not 0 < self.fov_deg[1] < 180:
            p.append(f"fov_deg {list(self.fov_deg)} must lie in (0, 180)")
        if self.snr_db[0] > self.snr_db[1]:
            p.append(f"snr_db {list(self.snr_db)} needs low <= high")
        if p:
            raise DataError(f"recipe {self.name!r}: " + "; ".join(p))

    @property
    def interval_s(self) -> float:
        return self.interval_ms * 1e-3


def array_gain(beam_deg: np.ndarray, path_deg: np.ndarray, antennas: int) -> np.ndarray:
    """Complex array factor ``[..., B, P]`` of beams steered to ``beam_deg`` [..., B] towards paths
    from ``path_deg`` [..., P] (a half-wavelength ULA, normalised to 1 when they coincide)."""
    u = np.sin(np.deg2rad(path_deg))[..., None, :] - np.sin(np.deg2rad(beam_deg))[..., :, None]
    n = np.arange(antennas)
    return np.exp(1j * np.pi * u[..., None] * n).mean(axis=-1)


class BeamGenerator:
    """Sample generator of ``kind: beam`` recipes."""

    kind = "beam"

    def __init__(self, recipe: BeamRecipe):
        self.recipe = recipe

    def specs(self) -> dict[str, FieldSpec]:
        L, B = self.recipe.steps, self.recipe.num_beams
        return {"beam_power": FieldSpec("float32", (L, B)), "bearing": FieldSpec("float32", (L,)),
                "distance": FieldSpec("float32", (L,)), "vehicle_gps": FieldSpec("float64", (L, 2)),
                "best_beam": FieldSpec("int64", (L,)), "bs_gps": FieldSpec("float64", (2,)),
                "scenario": FieldSpec("int64", ()), "sequence_id": FieldSpec("int64", ())}

    def attrs(self) -> dict[str, Any]:
        r = self.recipe
        return {"interval_s": r.interval_s, "num_beams": r.num_beams, "antennas": r.antennas,
                "scenarios": list(range(1, r.scenarios + 1)), "generated": True,
                "bearing": "deg clockwise from north, BS to vehicle, unwrapped per trajectory",
                "beam_power": "linear, noise floor 1"}

    def generate(self, num: int, seed: int, device: str = "cpu") -> dict[str, np.ndarray]:
        r = self.recipe
        rng = np.random.default_rng([0xBEA, int(seed)])
        L, B = r.steps, r.num_beams
        xy = np.stack([self._drive(rng) for _ in range(num)])  # [n, L, 2], BS mast foot at the origin
        power = np.empty((num, L, B))
        for i in range(num):
            power[i] = self._sweep(rng, xy[i])
        bs_gps = np.tile(np.array(REFERENCE_GPS), (num, 1))
        gps = local_to_gps(xy, REFERENCE_GPS)
        bearing = np.rad2deg(np.unwrap(np.deg2rad(gps_bearing(bs_gps[:, None, :], gps)), axis=-1))
        return {"beam_power": power.astype(np.float32), "bearing": bearing.astype(np.float32),
                "distance": np.linalg.norm(xy, axis=-1).astype(np.float32), "vehicle_gps": gps,
                "best_beam": power.argmax(-1).astype(np.int64), "bs_gps": bs_gps,
                "scenario": rng.integers(1, r.scenarios + 1, size=num).astype(np.int64),
                "sequence_id": (np.int64(seed) * 100_000 + np.arange(num)).astype(np.int64)}

    def _drive(self, rng: np.random.Generator) -> np.ndarray:
        """Positions ``[L, 2]`` of one vehicle driving past on a straight road, in view mid-way."""
        r = self.recipe
        L, dt = r.steps, r.interval_s
        offset = rng.uniform(*r.road_distance_m)
        heading = math.pi / 2 + math.radians(rng.uniform(-r.road_tilt_deg, r.road_tilt_deg)) + rng.choice([0, math.pi])
        direction = np.array([math.cos(heading), math.sin(heading)])
        foot = offset * np.array([math.cos(heading - math.pi / 2), math.sin(heading - math.pi / 2)])
        if foot[0] < 0:  # the road's nearest point in front of the array
            foot = -foot
        phi = math.exp(-dt / 3.0)
        wander = np.empty(L)
        wander[0] = rng.standard_normal() * r.speed_wander
        for t in range(1, L):
            wander[t] = phi * wander[t - 1] + math.sqrt(1 - phi * phi) * r.speed_wander * rng.standard_normal()
        speed = rng.uniform(*r.speed_kmh) / 3.6 * np.exp(wander)
        s = np.concatenate([[0.0], np.cumsum(speed[:-1] * dt)])
        # Mid-way the vehicle is seen at an angle drawn within +-40 deg of boresight.
        ray = np.array([math.cos(a := math.radians(rng.uniform(-40, 40))), math.sin(a)])
        cross = ray[0] * direction[1] - ray[1] * direction[0]  # never 0: the road crosses the view
        s += -(ray[0] * foot[1] - ray[1] * foot[0]) / cross - s[L // 2]
        return foot + s[:, None] * direction

    def _sweep(self, rng: np.random.Generator, xy: np.ndarray) -> np.ndarray:
        """Beam powers ``[L, B]`` of one trajectory ``xy`` [L, 2] (module doc)."""
        r = self.recipe
        L = len(xy)
        half = rng.uniform(*r.fov_deg) / 2
        beams = np.linspace(-half, half, r.num_beams) * rng.choice([-1.0, 1.0])
        turn = rng.uniform(-r.orientation_deg, r.orientation_deg)
        # Paths: LoS, then each wall's image source (the vehicle mirrored across the wall line).
        sources, gains_db = [xy], [np.zeros(L)]
        for _ in range(int(round(rng.uniform(*r.walls)))):
            normal = rng.uniform(0, 2 * np.pi)
            n = np.array([math.cos(normal), math.sin(normal)])
            d = rng.uniform(*r.wall_distance_m)  # wall line: n . p = d
            image = xy - 2 * ((xy @ n) - d)[:, None] * n
            spread = 20 * np.log10(np.linalg.norm(image, axis=1) / np.maximum(np.linalg.norm(xy, axis=1), 1.0))
            sources.append(image)
            gains_db.append(-rng.uniform(*r.wall_loss_db) - spread)
        gains_db[0] = gains_db[0] - self._blockage(rng, L)
        angle = np.stack([np.rad2deg(np.arctan2(s[:, 1], s[:, 0])) for s in sources], axis=1) - turn  # [L, P]
        amp = 10 ** (np.stack(gains_db, axis=1) / 20)
        phase = np.exp(2j * np.pi * rng.random(amp.shape))
        # Paths behind the array (|angle| > 90 deg) are not received.
        amp = amp * (np.abs(np.remainder(angle + 180, 360) - 180) < 90)
        field_ = (array_gain(beams[None, :], angle, r.antennas) * (amp * phase)[:, None, :]).sum(-1)  # [L, B]
        dist = np.maximum(np.hypot(np.linalg.norm(xy, axis=1), r.bs_height_m - r.ue_height_m), 1.0)
        snr = 10 ** ((rng.uniform(*r.snr_db) - 20 * np.log10(dist / 10.0)) / 10)
        sigma = rng.uniform(*r.noise)
        signal = snr[:, None] * np.abs(field_) ** 2
        noisy = (1 + sigma * rng.standard_normal((L, r.num_beams))) + signal * (
            1 + sigma * rng.standard_normal((L, r.num_beams)))
        return np.maximum(noisy, 1e-3)

    def _blockage(self, rng: np.random.Generator, L: int) -> np.ndarray:
        """Extra loss (dB) of the direct path per frame: Poisson blockages of random length."""
        r = self.recipe
        loss = np.zeros(L)
        for _ in range(rng.poisson(r.blockages_per_s * L * r.interval_s)):
            start = int(rng.integers(0, L))
            stop = start + max(1, int(round(rng.exponential(r.blockage_s) / r.interval_s)))
            loss[start:stop] = np.maximum(loss[start:stop], rng.uniform(*r.blockage_loss_db))
        return loss


register_recipe_kind("beam", dataclass_recipe_parser(BeamRecipe, "beam"))
register_kind("beam", BeamGenerator)
