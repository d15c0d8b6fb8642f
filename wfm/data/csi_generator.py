"""CSI from Sionna's 3GPP TR 38.901 channel models, with user mobility.

Downlink from a base station with a ``rows x cols`` UPA (vertically polarised 38.901
elements, half-wavelength spacing) to a single-antenna user. One sample is the channel
frequency response on ``K`` subcarriers at ``T`` instants ``dt`` apart: complex64
``[T, A, K]``.

- UMa / UMi / RMa (system-level): the user is dropped in a 120-degree sector with
  TR 38.901 distances and heights, moves with a random heading at a speed drawn from the
  recipe's range, and the model draws LoS/NLoS, large-scale parameters, clusters and the
  Doppler of every ray from that geometry. Path loss and shadow fading are switched off,
  so channels have unit average power and the data are about small-scale structure; the
  geometry (position, distance, AoA) is kept as metadata.
- CDL / TDL (link-level): profiles A-E with the recipe's delay spread and speed. They
  define no user position, so position, distance and AoA are zeros marked invalid by
  ``geometry_valid = False``. Each call of 32 samples shares one speed drawn from the
  recipe's range. TDL antennas are spatially correlated with an
  exponential (Kronecker) model, since TDL has no angles.

A recipe's ``impairments:`` (:mod:`wfm.data.impairments`) then turn each clean channel
into what a commodity WiFi card reports (noise, per-packet phase offsets and slopes, AGC
steps, fixed-point quantisation, the importer's phase sanitisation), from the sample's
seed; without them the output is exactly the clean channel.
"""

from __future__ import annotations

# Sionna and torch are imported inside the methods that call them: load_recipe imports every kind
# module (for series recipes too), and Sionna costs 8 s of CPU, torch 3 s, that those never need.
import math
from typing import Any

import numpy as np

from wfm.data.generate import register_kind
from wfm.data.impairments import apply_csi_impairments
from wfm.data.recipes import LOS_PROFILES, SYSTEM_LEVEL_MODELS, CSIRecipe
from wfm.data.shards import FieldSpec

SPEED_OF_LIGHT = 299_792_458.0
# Samples per Sionna call: bounds memory (paths x T x A x K per sample). Link-level models
# draw one speed per call, so their calls are smaller to keep speeds diverse within a shard.
MAX_BATCH = 256
LINK_LEVEL_BATCH = 32


class CSIGenerator:
    """Sample generator of ``kind: csi`` recipes (see :mod:`wfm.data.generate`)."""

    kind = "csi"

    def __init__(self, recipe: CSIRecipe):
        self.recipe = recipe

    def specs(self) -> dict[str, FieldSpec]:
        T = self.recipe.time_steps
        return {
            "csi": FieldSpec("complex64", self.recipe.shape),
            "los": FieldSpec("bool", ()),
            "speed": FieldSpec("float32", ()),  # m/s
            "position": FieldSpec("float32", (T, 3)),  # m, base station at the origin
            "distance": FieldSpec("float32", (T,)),  # m, 3D
            "aoa": FieldSpec("float32", (T, 2)),  # deg, azimuth / elevation of the user seen from the BS
            "geometry_valid": FieldSpec("bool", ()),
        } | ({"snr_db": FieldSpec("float32", ())} if self._impaired and self.recipe.impairments.snr_db else {})

    @property
    def _impaired(self) -> bool:
        imp = self.recipe.impairments
        return imp is not None and imp.active

    def attrs(self) -> dict[str, Any]:
        r = self.recipe
        return {
            "scenario": r.scenario,
            "carrier_frequency": r.carrier_frequency_ghz * 1e9,
            "subcarrier_spacing": r.subcarrier_spacing_khz * 1e3,
            "time_step": r.time_step_ms * 1e-3,
            "array_shape": list(r.array),
            "layout": "T, A, K (A = UPA rows x cols, row-major)",
            "bandwidth": r.num_subcarriers * r.subcarrier_spacing_khz * 1e3,
        } | ({"impairments": r.impairments.to_dict()} if self._impaired else {})

    def generate(self, num: int, seed: int, device: str = "cpu") -> dict[str, np.ndarray]:
        step = MAX_BATCH if self.recipe.model in SYSTEM_LEVEL_MODELS else LINK_LEVEL_BATCH
        parts = [self._batch(min(step, num - start), seed + start, device)
                 for start in range(0, num, step)]
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if self._impaired:
            out["csi"], info = apply_csi_impairments(out["csi"], self.recipe.impairments, seed,
                                                     self.recipe.subcarrier_spacing_khz * 1e3)
            out.update(info)
        return out

    # ------------------------------------------------------------------ one Sionna call

    def _batch(self, n: int, seed: int, device: str) -> dict[str, np.ndarray]:
        import sionna.phy
        import torch
        from sionna.phy.channel import cir_to_ofdm_channel, subcarrier_frequencies

        r = self.recipe
        sionna.phy.config.seed = int(seed) % (2**31)
        rng = np.random.default_rng(seed)
        fc = r.carrier_frequency_ghz * 1e9
        lo, hi = (v / 3.6 for v in r.speed_kmh)
        if r.model in SYSTEM_LEVEL_MODELS:
            model, geometry = self._system_level(n, fc, lo, hi, device)
        else:
            model, geometry = self._link_level(n, fc, lo, hi, device, rng)
        dt = r.time_step_ms * 1e-3
        with torch.no_grad():
            if r.model in SYSTEM_LEVEL_MODELS:
                a, tau = model(r.time_steps, 1.0 / dt)
            else:
                a, tau = model(n, r.time_steps, 1.0 / dt)
            freqs = subcarrier_frequencies(r.num_subcarriers, r.subcarrier_spacing_khz * 1e3,
                                           device=device)
            h = cir_to_ofdm_channel(freqs, a, tau, normalize=False)
        # [B, rx, rx_ant, tx, tx_ant, T, K] -> [B, T, A, K]
        csi = h[:, 0, 0, 0].permute(0, 2, 1, 3).contiguous()
        out = {"csi": csi.to(torch.complex64).cpu().numpy()}
        out.update(geometry)
        return out

    def _antenna_arrays(self, fc: float, device: str):
        from sionna.phy.channel.tr38901 import PanelArray

        rows, cols = self.recipe.array
        bs = PanelArray(num_rows_per_panel=rows, num_cols_per_panel=cols, polarization="single",
                        polarization_type="V", antenna_pattern="38.901", carrier_frequency=fc,
                        device=device)
        ut = PanelArray(num_rows_per_panel=1, num_cols_per_panel=1, polarization="single",
                        polarization_type="V", antenna_pattern="omni", carrier_frequency=fc,
                        device=device)
        return bs, ut

    def _system_level(self, n: int, fc: float, lo: float, hi: float, device: str):
        import torch
        from sionna.phy.channel import gen_single_sector_topology
        from sionna.phy.channel.tr38901 import RMa, UMa, UMi

        r = self.recipe
        bs, ut = self._antenna_arrays(fc, device)
        cls = {"uma": UMa, "umi": UMi, "rma": RMa}[r.model]
        kwargs: dict[str, Any] = dict(carrier_frequency=fc, ut_array=ut, bs_array=bs, direction="downlink",
                                      enable_pathloss=False, enable_shadow_fading=False, device=device)
        if r.model != "rma":
            kwargs["o2i_model"] = "low"
        model = cls(**kwargs)
        ut_loc, bs_loc, ut_ori, bs_ori, ut_vel, in_state = gen_single_sector_topology(
            n, 1, r.model, min_ut_velocity=lo, max_ut_velocity=max(hi, lo), indoor_probability=0.0,
            device=device)
        los = {"random": None, "los": True, "nlos": False}[r.los]
        model.set_topology(ut_loc, bs_loc, ut_ori, bs_ori, ut_vel, in_state, los=los)
        los_flag = model._scenario.los.reshape(n).cpu().numpy().astype(bool)

        # Track the user along the T steps: constant velocity over the short window.
        t = torch.arange(r.time_steps, device=device, dtype=ut_loc.dtype) * (r.time_step_ms * 1e-3)
        pos = ut_loc[:, 0, None, :] + ut_vel[:, 0, None, :] * t[None, :, None]  # [n, T, 3]
        rel = pos - bs_loc[:, 0, None, :]
        dist = rel.norm(dim=-1)
        # Azimuth relative to the BS boresight (its yaw), elevation above the horizontal.
        az = torch.atan2(rel[..., 1], rel[..., 0]) - bs_ori[:, 0, None, 0]
        az = torch.remainder(az + math.pi, 2 * math.pi) - math.pi
        el = torch.atan2(rel[..., 2], rel[..., :2].norm(dim=-1))
        geometry = {
            "los": los_flag,
            "speed": ut_vel[:, 0].norm(dim=-1).cpu().numpy().astype(np.float32),
            "position": pos.cpu().numpy().astype(np.float32),
            "distance": dist.cpu().numpy().astype(np.float32),
            "aoa": torch.rad2deg(torch.stack([az, el], -1)).cpu().numpy().astype(np.float32),
            "geometry_valid": np.ones(n, dtype=bool),
        }
        return model, geometry

    def _link_level(self, n: int, fc: float, lo: float, hi: float, device: str, rng: np.random.Generator):
        import torch
        from sionna.phy.channel import exp_corr_mat
        from sionna.phy.channel.tr38901 import CDL, TDL

        r = self.recipe
        ds = r.delay_spread_ns * 1e-9
        # One speed per call, drawn here so that it is known and stored with the samples.
        v = float(rng.uniform(lo, hi))
        if r.model == "cdl":
            bs, ut = self._antenna_arrays(fc, device)
            model = CDL(r.profile, ds, fc, ut, bs, "downlink", min_speed=v, max_speed=v, device=device)
        else:
            rows, cols = r.array
            rho = r.antenna_correlation
            corr = torch.kron(exp_corr_mat(rho, rows, device=device), exp_corr_mat(rho, cols, device=device))
            model = TDL(r.profile, ds, fc, min_speed=v, max_speed=v, num_rx_ant=1,
                        num_tx_ant=r.num_antennas, tx_corr_mat=corr, device=device)
        T = r.time_steps
        geometry = {
            "los": np.full(n, r.profile in LOS_PROFILES, dtype=bool),
            "speed": np.full(n, v, dtype=np.float32),
            "position": np.zeros((n, T, 3), np.float32),
            "distance": np.zeros((n, T), np.float32),
            "aoa": np.zeros((n, T, 2), np.float32),
            "geometry_valid": np.zeros(n, dtype=bool),
        }
        return model, geometry


register_kind("csi", CSIGenerator)
