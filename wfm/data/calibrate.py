"""Measure a capture's receive-chain impairments, so that generated CSI can be made to match it.

``wfm data calibrate DIR`` reads measured (imported) CSI ``[N, T, A, K]`` and fits, per receive
chain, the options of :mod:`wfm.data.impairments` that describe the receiver rather than the
channel:

- the gain across the band (``band_tilt_db``, ``band_edge_db``): each chain's mean power per
  subcarrier over the whole capture in dB, its least-squares line (the tilt, edge to edge) and
  how far the outermost subcarrier at each edge falls below that line;
- the phase across the band (``band_delay_ns``, ``band_delay_mhz``): :func:`fit_band_delay`;
- the per-packet gain common to every antenna and subcarrier (``gain_jitter_db``): the standard
  deviation over packets, within each sample, of the mean log-amplitude of a packet;
- its sparse dips (``gain_dip_db``, ``gain_dip_probability``, ``gain_dip_length``): :func:`gain_dips`,
  the packets whose common gain sits far below the running median of their neighbours (more than
  ``DIP_THRESHOLD_DB``, and more than ``DIP_SIGMAS`` robust standard deviations, so that the tail of
  Gaussian jitter is not read as dips). Where a capture has them, the jitter suggested is that of
  the other packets.

Averaged over a capture, the channel's own frequency selectivity largely cancels (the fading
changes, the receiver does not), which is why these are fitted on the mean over every packet.
For a still link the mean still carries the one channel it saw: read the tilt of a capture in
line of sight, and the jitter of a still one. :func:`suggested_options` rounds the fits up into
an ``impairments:`` block for a recipe.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from wfm.data.errors import DataError
from wfm.data.impairments import edge_delay_phase
from wfm.data.shards import ShardedDataset

#: Subcarrier spacing of 802.11n/ac OFDM (Hz): the unit of imported datasets' ``subcarrier_indices``.
OFDM_SPACING_HZ = 312.5e3


def subcarrier_freqs_hz(ds: ShardedDataset, spacing_khz: float | None = None) -> np.ndarray:
    """Subcarrier frequencies (Hz, ascending) of a CSI dataset: ``spacing_khz`` apart if given, else
    its ``subcarrier_indices`` attr (imported captures) at 312.5 kHz, else its recipe's spacing."""
    k = int(ds.specs["csi"].shape[-1])
    if spacing_khz is not None:
        if not spacing_khz > 0:
            raise DataError(f"--spacing-khz must be > 0; got {spacing_khz}")
        return np.arange(k) * spacing_khz * 1e3
    idx = ds.attrs.get("subcarrier_indices")
    if idx is not None and len(idx) == k:
        return np.asarray(idx, float) * OFDM_SPACING_HZ
    recipe = ds.manifest.get("recipe") or {}
    if "subcarrier_spacing_khz" in recipe:
        return np.arange(k) * float(recipe["subcarrier_spacing_khz"]) * 1e3
    raise DataError(f"{ds.root}: no subcarrier_indices attr or recipe spacing: pass --spacing-khz")


def _check(csi: np.ndarray, freqs_hz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(csi)
    if x.ndim != 4 or not np.iscomplexobj(x) or x.shape[-1] < 4:
        raise DataError(f"calibration needs complex CSI [N, T, A, K] with K >= 4; got {x.dtype} {x.shape}")
    f = np.asarray(freqs_hz, float).reshape(-1)
    if f.shape != (x.shape[-1],) or not np.all(np.diff(f) > 0):
        raise DataError(f"need {x.shape[-1]} ascending subcarrier frequencies; got {f.shape[0]}")
    return x.astype(np.complex128), f


def _detrend(values: np.ndarray, f: np.ndarray) -> np.ndarray:
    """``values`` ``[K, ...]`` less their least-squares line over ``f``."""
    line = np.stack([np.ones_like(f), f - f.mean()], 1)
    return values - line @ np.linalg.lstsq(line, values, rcond=None)[0]


def fit_band_delay(csi: np.ndarray, freqs_hz: np.ndarray,
                   widths_mhz: Sequence[float] = (0.5, 1, 2, 3, 4, 5, 8)) -> list[dict[str, float]]:
    """Fit ``band_delay_ns`` / ``band_delay_mhz`` to complex CSI ``[N, T, A, K]`` at subcarrier
    frequencies ``freqs_hz`` ``[K]``, one row per receive chain.

    Each chain's phase across the band (each packet divided by its mean over the band, averaged
    over packets, unwrapped), less its least-squares line, is fitted by least squares with what the
    line leaves of the two edges' delays (:func:`wfm.data.impairments.edge_delay_phase`) at each
    width; the width with the best ``r2`` (the share of the phase's variance explained) wins.
    ``tau_*_ns`` < 0 means that edge leads instead. ``phase_*_deg``: the phase left at the lowest and
    at the highest subcarrier.
    """
    x, f = _check(csi, freqs_hz)
    rows = []
    for a in range(x.shape[2]):
        ref = x[:, :, a].mean(-1, keepdims=True)
        ratio = np.where(np.abs(ref) > 0, x[:, :, a] / np.where(np.abs(ref) > 0, ref, 1), 0).mean(axis=(0, 1))
        phase = _detrend(np.unwrap(np.angle(ratio)), f)
        best: dict[str, float] = {"r2": -math.inf}
        for w in widths_mhz:
            basis = _detrend(edge_delay_phase(f, w).T, f)  # [K, 2]
            tau = np.linalg.lstsq(basis, phase, rcond=None)[0]
            r2 = 1.0 - float(((phase - basis @ tau) ** 2).sum() / max(float((phase ** 2).sum()), 1e-30))
            if r2 > best["r2"]:
                best = {"chain": a, "r2": r2, "tau_low_ns": float(tau[0] * 1e9), "tau_high_ns": float(tau[1] * 1e9),
                        "width_mhz": float(w)}
        rows.append({**best, "phase_low_deg": float(np.degrees(phase[0])), "phase_high_deg": float(np.degrees(phase[-1]))})
    return rows


def fit_band_gain(csi: np.ndarray, freqs_hz: np.ndarray) -> list[dict[str, float]]:
    """Per receive chain: ``tilt_db`` (the least-squares line of its mean power per subcarrier in
    dB, from the lowest to the highest subcarrier) and ``edge_low_db`` / ``edge_high_db`` (how far the
    outermost subcarrier falls below that line; < 0 if above)."""
    x, f = _check(csi, freqs_hz)
    power = (np.abs(x) ** 2).mean(axis=(0, 1))  # [A, K]
    db = 10 * np.log10(np.maximum(power, 1e-30))
    line = np.stack([np.ones_like(f), f - f.mean()], 1)
    rows = []
    for a in range(x.shape[2]):
        c = np.linalg.lstsq(line, db[a], rcond=None)[0]
        fit = line @ c
        rows.append({"chain": a, "tilt_db": float(c[1] * (f[-1] - f[0])),
                     "edge_low_db": float(fit[0] - db[a, 0]), "edge_high_db": float(fit[-1] - db[a, -1])})
    return rows


def gain_jitter_db(csi: np.ndarray) -> float:
    """The standard deviation (dB) over packets, within each sample, of a packet's mean log-amplitude
    over every antenna and subcarrier (pooled over samples): ``gain_jitter_db`` for a still link."""
    x = np.asarray(csi)
    if x.ndim != 4 or x.shape[1] < 2:
        raise DataError(f"gain jitter needs CSI [N, T, A, K] with T >= 2; got {x.shape}")
    g = 20 * np.log10(np.maximum(np.abs(x), 1e-30)).mean(axis=(2, 3))  # [N, T]
    return float(np.sqrt(((g - g.mean(axis=1, keepdims=True)) ** 2).sum() / max(g.size - g.shape[0], 1)))


#: A packet whose common gain sits more than this below the running median of its neighbours, and
#: more than ``DIP_SIGMAS`` robust standard deviations (1.4826 x the median absolute deviation), is in a dip.
DIP_THRESHOLD_DB = 1.0
DIP_SIGMAS = 3.0
#: The running median's window (packets, centred; shorter at a sample's ends): the level, which a
#: dip of a few packets does not move.
DIP_MEDIAN_PACKETS = 15
#: Dips are suggested only where at least this many were seen, on at least ``MIN_DIP_SHARE`` of the packets.
MIN_DIPS = 5
MIN_DIP_SHARE = 0.02


def gain_dips(csi: np.ndarray) -> dict[str, float]:
    """The sparse dips of the per-packet gain common to every antenna and subcarrier (the
    ``gain_dip_*`` options of :mod:`wfm.data.impairments`): ``share`` of packets in a dip, ``dips``
    (runs of consecutive dipped packets), their mean ``depth_db`` and ``length`` (packets), the
    ``probability`` that a dip starts at a packet not in one (runs over packets out of dips) and
    ``jitter_db``, the standard deviation of the other packets' gain about their level, and the
    ``threshold_db`` used. A packet's level is the running median of its sample's common gain over
    ``DIP_MEDIAN_PACKETS``; it is in a dip ``max(DIP_THRESHOLD_DB, DIP_SIGMAS x robust std)`` below it."""
    x = np.asarray(csi)
    if x.ndim != 4 or x.shape[1] < 3:
        raise DataError(f"gain dips need CSI [N, T, A, K] with T >= 3; got {x.shape}")
    g = 20 * np.log10(np.maximum(np.abs(x), 1e-30)).mean(axis=(2, 3))  # [N, T]
    T, half = g.shape[1], DIP_MEDIAN_PACKETS // 2
    level = np.stack([np.median(g[:, max(0, t - half):t + half + 1], axis=1) for t in range(T)], axis=1)
    d = g - level
    threshold = max(DIP_THRESHOLD_DB, DIP_SIGMAS * 1.4826 * float(np.median(np.abs(d - np.median(d)))))
    dip = d < -threshold
    starts = int((dip[:, 0].sum() + (dip[:, 1:] & ~dip[:, :-1]).sum()))
    inside, out = int(dip.sum()), int((~dip).sum())
    return {"share": inside / dip.size, "dips": starts,
            "depth_db": float(-d[dip].mean()) if inside else 0.0,
            "length": inside / starts if starts else 0.0,
            "probability": starts / out if out else 0.0,
            "jitter_db": float(d[~dip].std()) if out > 1 else 0.0, "threshold_db": threshold}


def calibrate(csi: np.ndarray, freqs_hz: np.ndarray) -> dict[str, Any]:
    """Every fit of the module doc: ``{"chains": [one row per chain], "gain_jitter_db": float,
    "gain_dips": gain_dips(...), "options": suggested_options(...)}``."""
    gain, delay = fit_band_gain(csi, freqs_hz), fit_band_delay(csi, freqs_hz)
    chains = [{**g, **{k: v for k, v in d.items() if k != "chain"}} for g, d in zip(gain, delay)]
    jitter = gain_jitter_db(csi)
    dips = gain_dips(csi) if csi.shape[1] >= 3 else None
    return {"chains": chains, "gain_jitter_db": jitter, "gain_dips": dips,
            "options": suggested_options(chains, jitter, dips=dips)}


def suggested_options(chains: Sequence[dict[str, float]], jitter_db: float, min_r2: float = 0.8,
                      dips: dict[str, float] | None = None) -> dict[str, float]:
    """An ``impairments:`` block that covers every chain: the uniform draws' bounds rounded up from
    the largest fit (tilt and edges in whole dB, delay in 10 ns), the delay's width the median
    chain's, and the jitter to 0.1 dB. The delay only where its fit explains at least ``min_r2`` of
    the phase on every chain (otherwise the phase is not this filter's, and it is left out).
    ``dips`` (:func:`gain_dips`) with at least ``MIN_DIPS`` dips on ``MIN_DIP_SHARE`` of the
    packets: their depth (0.1 dB), start probability (0.005) and mean length (0.1 packet), and the
    jitter of the packets out of them instead of ``jitter_db``."""
    out: dict[str, float] = {
        "band_tilt_db": float(math.ceil(max(abs(c["tilt_db"]) for c in chains))),
        "band_edge_db": float(math.ceil(max(0.0, *(max(c["edge_low_db"], c["edge_high_db"]) for c in chains)))),
    }
    if all(c["r2"] >= min_r2 for c in chains):
        out["band_delay_ns"] = float(10 * math.ceil(max(0.0, *(max(c["tau_low_ns"], c["tau_high_ns"]) for c in chains)) / 10))
        out["band_delay_mhz"] = float(np.median([c["width_mhz"] for c in chains]))
    if dips is not None and dips["dips"] >= MIN_DIPS and dips["share"] >= MIN_DIP_SHARE:
        out["gain_jitter_db"] = round(dips["jitter_db"], 1)
        out["gain_dip_db"] = round(dips["depth_db"], 1)
        out["gain_dip_probability"] = round(0.005 * round(dips["probability"] / 0.005), 3)
        out["gain_dip_length"] = max(1.0, round(dips["length"], 1))
    else:
        out["gain_jitter_db"] = round(jitter_db, 1)
    return out
