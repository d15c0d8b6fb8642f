"""Phase sanitisation of measured WiFi CSI.

Commodity NICs add, per packet, a random common phase (carrier frequency offset, PLL
phase) and a random phase slope across subcarriers (symbol timing / sampling frequency
offset, packet detection delay). Both swamp the channel's own phase from one packet to
the next. Two standard remedies, on CSI ``[T, A, K]`` (packets x antennas x subcarriers):

``conj``  antenna-relative conjugate multiplication: ``H_a * conj(H_ref) / |H_ref|``
    with ``ref`` the strongest antenna (of its group: antennas whose offsets are shared). Offsets common to the antennas of one receiver
    cancel; amplitudes stay those of antenna ``a``; the phase left is the phase *between*
    antennas (what AoA, localisation and sensing use). The reference's own series
    becomes ``|H_ref|`` (real).
``linear`` per-packet linear phase removal: unwrap each antenna's phase across
    subcarriers, fit ``phi(k) = slope * k + offset`` by least squares over the actual
    subcarrier indices and subtract it. Removes timing offset and common phase per
    antenna, keeps the non-linear (multipath) part of the frequency response; also
    removes the true mean delay, so it is wrong for ranging/ToF.
``none``  raw CSI as the NIC reports it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from wfm.data.errors import DataError

PHASE_METHODS = ("none", "conj", "linear")


def conj_reference(csi: np.ndarray, groups: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """``H_a * conj(H_ref) / |H_ref|`` for every antenna (see the module doc).

    ``groups`` lists antennas that share offsets (default: all). Intel 5300 CSI, for
    instance, is grouped per receive chain: on measured captures the phase between
    receive chains is random from packet to packet, while the transmit streams seen by
    one chain share its offsets.
    """
    groups = [list(range(csi.shape[1]))] if groups is None else [list(g) for g in groups]
    if min(len(g) for g in groups) < 2:
        raise DataError("conj phase sanitisation needs at least 2 antennas per group (it works between antennas)")
    out = np.empty_like(csi)
    for g in groups:
        part = csi[:, g, :]
        ref = int(np.argmax(np.mean(np.abs(part) ** 2, axis=(0, 2))))
        r = part[:, ref:ref + 1, :]
        mag = np.abs(r)
        # A zero reference coefficient has no phase to remove; leave those entries untouched.
        rot = np.where(mag > 0, np.conj(r) / np.where(mag > 0, mag, 1.0), 1.0)
        out[:, g, :] = part * rot
    return out


def remove_linear_phase(csi: np.ndarray, subcarriers: np.ndarray) -> np.ndarray:
    """Subtract the least-squares phase line across subcarriers, per packet and antenna.

    Timing offsets can turn the phase by more than pi between neighbouring subcarriers,
    where a plain unwrap goes wrong; so a coarse slope is taken first from the mean
    phasor ``H[k + d] conj(H[k])`` over neighbours at the usual spacing ``d`` (immune to
    wrapping), removed, and the remainder is unwrapped and fitted exactly. That phasor
    fixes the slope only modulo ``2 pi / d``; where subcarriers are not all ``d`` apart
    (the Intel 5300 grouping mixes spacings 1 and 2), the candidate that best aligns all
    neighbours is chosen.
    """
    k = np.asarray(subcarriers, dtype=np.float64)
    if k.shape != (csi.shape[-1],):
        raise DataError(f"{len(k)} subcarrier indices for CSI with {csi.shape[-1]} subcarriers")
    dk = np.diff(k)
    d = float(np.median(dk))
    pairs = np.flatnonzero(dk == d)
    coarse = np.angle(np.sum(csi[..., pairs + 1] * np.conj(csi[..., pairs]), axis=-1, keepdims=True)) / d
    if d > 1 and (dk != d).any():
        phasors = csi[..., 1:] * np.conj(csi[..., :-1])  # [..., K - 1]
        cands = coarse[..., None, :] + 2 * np.pi / d * np.arange(int(round(d)))[:, None]  # [..., m, 1]
        score = np.real(np.sum(phasors[..., None, :] * np.exp(-1j * cands * dk), axis=-1))  # [..., m]
        coarse = np.take_along_axis(cands[..., 0], np.argmax(score, axis=-1)[..., None], axis=-1)
    rest = csi * np.exp(-1j * coarse * k)
    phase = np.unwrap(np.angle(rest), axis=-1)
    kc = k - k.mean()
    slope = (phase * kc).sum(-1, keepdims=True) / (kc * kc).sum()
    offset = phase.mean(-1, keepdims=True) - slope * k.mean()
    return (csi * np.exp(-1j * ((coarse + slope) * k + offset))).astype(csi.dtype, copy=False)


def sanitize_phase(csi: np.ndarray, method: str, subcarriers: np.ndarray,
                   groups: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Apply one of :data:`PHASE_METHODS` to CSI ``[T, A, K]`` (``groups``: see :func:`conj_reference`)."""
    if method == "none":
        return csi
    if method == "conj":
        return conj_reference(csi, groups)
    if method == "linear":
        return remove_linear_phase(csi, subcarriers)
    raise DataError(f"phase method {method!r} is not one of {', '.join(PHASE_METHODS)}")


def persistence_nmse_db(csi: np.ndarray) -> float:
    """NMSE (dB) of predicting each packet's CSI by the previous packet's (``[T, ...]``)."""
    err = np.sum(np.abs(csi[1:] - csi[:-1]) ** 2)
    return float(10 * np.log10(err / np.sum(np.abs(csi[1:]) ** 2)))
