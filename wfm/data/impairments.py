"""Real-world impairments of commodity WiFi CSI, applied to generated channels.

Generated channels (:mod:`wfm.data.csi_generator`) are clean: unit average power, no
noise, a phase that evolves only with the channel. CSI that a commodity NIC (Intel 5300,
Broadcom/Nexmon) reports is not. A recipe's ``impairments:`` mapping turns the clean
``[T, A, K]`` channel of every sample into what such a card would report, in this order
(the order of the receive chain):

1. ``snr_db: [low, high]`` -- complex AWGN. Each sample draws its SNR uniformly (dB) from
   the range; the noise variance is the sample's mean channel power / 10^(SNR/10), the
   same for every packet, antenna and subcarrier (thermal noise does not follow the
   fading). Default ``None``: no noise. The drawn SNR is stored per sample (``snr_db``).
2. ``phase_offset: true`` -- a random common phase per packet and antenna (receive
   chain), uniform in [0, 2 pi): carrier frequency offset and PLL phase that the NIC does
   not remove. Default ``false``.
3. ``timing_offset_ns: X`` -- a random timing offset per packet (and antenna, unless
   ``timing_offset_shared: true``), uniform in [-X, X] ns, i.e. a linear phase
   ``-2 pi f_k tau`` across the subcarriers (``f_k`` relative to the centre
   subcarrier): symbol timing / sampling frequency offset and packet detection delay.
   Default ``0`` (off).
4. ``agc_step_db: S`` with ``agc_step_probability: p`` -- automatic gain control: at every
   packet after the first, with probability ``p``, the receive gain jumps by
   ``+-U(0.5, 1) x S`` dB and stays there (a piecewise-constant gain in dB, starting at
   0 dB). One gain for all antennas, or one per antenna with ``agc_per_antenna: true``.
   Defaults ``0`` (off).
5. ``gain_jitter_db: G`` -- per-packet gain jitter: every packet's gain moves by a normal
   ``N(0, G)`` dB, independently from packet to packet, one gain for all antennas and
   subcarriers (per antenna with ``agc_per_antenna: true``): the fine AGC setting and the
   per-packet scaling of the reported CSI. Measured on the Intel 5300 capture of
   ``../shared/datasets`` (a still link at 100 ms): 88 % of the amplitude's change over time is
   such a gain common to every antenna and subcarrier (``python pretrain/guard_study.py``), so a still link's CSI is
   white noise around a level at packet rate. Default ``0`` (off).

   ``gain_dip_db: D`` with ``gain_dip_probability: p`` (and ``gain_dip_length: m``) -- sparse
   gain dips: at every packet not already in one, with probability ``p`` a dip starts; it lasts a
   geometric number of packets of mean ``m`` (default 1: one packet) and lowers the gain by
   ``U(0.75, 1.25) x D`` dB, then the gain is back where it was. Common to every antenna and
   subcarrier (per antenna with ``agc_per_antenna: true``). Measured on the Intel 5300 capture of
   ``../shared/datasets`` (the mean amplitude per packet, dB from its median): 13 % of packets
   sit more than 1 dB low, mostly 2-3 dB (1st percentile -3.0 dB, 5th -2.5), in runs of 1 (33),
   2 (13), 3 (3) and 4 (1) packets, while the other packets stay within about +-0.3 dB; on the
   Nexmon capture 0.7 % (``wfm data calibrate``, :func:`wfm.data.calibrate.gain_dips`). Gaussian jitter makes every packet move a little; this makes a few move a
   lot and come back, which is why the context mean beats the last packet on the real still link.
   Defaults ``0`` (off).
6. ``band_tilt_db: X`` and ``band_edge_db: Y`` -- the receive chain's frequency response,
   fixed over a sample's packets: per sample and receive chain, a gain slope across the band
   drawn uniformly in [-X, X] dB from the lowest to the highest subcarrier, and at each band
   edge an attenuation drawn uniformly in [0, Y] dB that decays as ``exp(-d / band_edge_mhz)``
   with the distance ``d`` from that edge (default 1 MHz). Measured on the captures of
   ``../shared/datasets`` (mean power per subcarrier over the capture): the Intel 5300's
   chains tilt by up to about 5 dB across 20 MHz and drop 2-5 dB at the outermost subcarrier
   group; the Nexmon capture falls 12 dB at its upper edge. With it, a line-of-sight WiFi
   link's band is a smooth curve whose upper half the nearest subcarrier extrapolates better
   than the band's mean, as on both captures; on every WiFi recipe without it the mean wins
   (data/README.md, the band table). Defaults ``0`` (off).

   ``band_delay_ns: D`` -- the same filter's phase: at each band edge an excess group delay
   drawn uniformly in [0, D] ns per sample and receive chain, decaying as
   ``exp(-d / band_delay_mhz)`` (default 3 MHz) into the band, so the phase is
   ``-2 pi`` times its integral over frequency. What a linear sanitisation leaves of it is an
   S-shaped phase across the band that no packet's line removes. Measured on the Intel 5300
   capture (each chain's mean phase across the band after the importer's sanitisation): this
   model fits all six chains with R^2 0.98-0.99, 70-97 ns at each edge, 3-4 MHz wide (about
   +25 deg at the lowest subcarrier group, -13 at the eighth, +12 at the 23rd, -20 at the top).
   Default ``0`` (off).
7. ``quantize_bits: B`` -- the NIC's fixed-point CSI: per packet, scale so that the
   largest real or imaginary part over all antennas and subcarriers is ``2^(B-1) - 1``,
   round to integers, clip to ``[-2^(B-1), 2^(B-1) - 1]`` and scale back (Intel 5300:
   ``B = 8``, int8 real and imaginary parts). Default ``0`` (off).
8. ``sanitize: none | linear | conj`` -- the phase sanitisation that
   ``wfm data import intel|nexmon --phase`` applies to measured CSI
   (:mod:`wfm.data.loaders.phase`, the same code), so pretraining data match imported
   data: ``linear`` removes each packet's and antenna's least-squares phase line across
   subcarriers; ``conj`` multiplies by the conjugate phase of the strongest antenna (all
   antennas as one group). Default ``none``.

Every random draw comes from the sample's own seed (``seed`` of its call + its index),
through a generator that is independent of the one that drew the channel: the clean
channel of a sample is the same with and without impairments, and the impairments of a
sample do not depend on how samples were batched.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from wfm.data.errors import DataError
from wfm.data.loaders.phase import PHASE_METHODS, sanitize_phase

#: Mixed into every impairment seed so impairment draws never coincide with other streams.
_TAG = 0x1A7B


#: The receive chain's frequency response (item 6 of the module doc), written only when on.
BAND_OPTIONS = ("band_tilt_db", "band_edge_db", "band_edge_mhz")
#: Its phase (``band_delay_ns``), added later still and likewise written only when on.
DELAY_OPTIONS = ("band_delay_ns", "band_delay_mhz")
#: Sparse gain dips (item 5 of the module doc), added later still and likewise written only when on.
DIP_OPTIONS = ("gain_dip_db", "gain_dip_probability", "gain_dip_length")


@dataclass(frozen=True)
class CSIImpairments:
    """The ``impairments:`` mapping of a CSI recipe (see the module doc). All off by default."""

    snr_db: tuple[float, float] | None = None
    phase_offset: bool = False
    timing_offset_ns: float = 0.0
    timing_offset_shared: bool = False
    agc_step_db: float = 0.0
    agc_step_probability: float = 0.0
    agc_per_antenna: bool = False
    gain_jitter_db: float = 0.0
    gain_dip_db: float = 0.0
    gain_dip_probability: float = 0.0
    gain_dip_length: float = 1.0
    band_tilt_db: float = 0.0
    band_edge_db: float = 0.0
    band_edge_mhz: float = 1.0
    band_delay_ns: float = 0.0
    band_delay_mhz: float = 3.0
    quantize_bits: int = 0
    sanitize: str = "none"

    def __post_init__(self) -> None:
        p = []
        if self.snr_db is not None and (len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]):
            p.append(f"snr_db {list(self.snr_db)} must be [low, high] with low <= high")
        if not self.timing_offset_ns >= 0:
            p.append("timing_offset_ns must be >= 0")
        if not self.agc_step_db >= 0:
            p.append("agc_step_db must be >= 0")
        if not 0 <= self.agc_step_probability <= 1:
            p.append("agc_step_probability must be in [0, 1]")
        if not self.gain_jitter_db >= 0:
            p.append("gain_jitter_db must be >= 0")
        if not self.gain_dip_db >= 0:
            p.append("gain_dip_db must be >= 0")
        if not 0 <= self.gain_dip_probability <= 1:
            p.append("gain_dip_probability must be in [0, 1]")
        if not self.gain_dip_length >= 1:
            p.append("gain_dip_length (mean packets per dip) must be >= 1")
        for name in ("band_tilt_db", "band_edge_db", "band_delay_ns"):
            if not getattr(self, name) >= 0:
                p.append(f"{name} must be >= 0")
        for name in ("band_edge_mhz", "band_delay_mhz"):
            if not getattr(self, name) > 0:
                p.append(f"{name} must be > 0")
        if self.quantize_bits != 0 and not 2 <= self.quantize_bits <= 16:
            p.append("quantize_bits must be 0 (off) or 2..16")
        if self.sanitize not in PHASE_METHODS:
            p.append(f"sanitize {self.sanitize!r} is not one of {', '.join(PHASE_METHODS)}")
        if p:
            raise DataError("impairments: " + "; ".join(p))

    @property
    def active(self) -> bool:
        """Whether anything is applied at all."""
        return (self.snr_db is not None or self.phase_offset or self.timing_offset_ns > 0
                or (self.agc_step_db > 0 and self.agc_step_probability > 0) or self.gain_jitter_db > 0
                or self.gain_dips or self.band_response or self.quantize_bits > 0 or self.sanitize != "none")

    @property
    def gain_dips(self) -> bool:
        """Whether sparse gain dips are applied (``gain_dip_db`` and ``gain_dip_probability`` both > 0)."""
        return self.gain_dip_db > 0 and self.gain_dip_probability > 0

    @property
    def band_response(self) -> bool:
        """Whether a frequency response of the receive chain is applied (``band_tilt_db``, ``band_edge_db``,
        ``band_delay_ns``)."""
        return self.band_tilt_db > 0 or self.band_edge_db > 0 or self.band_delay_ns > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON values (lists, not tuples), as they read back from a manifest."""
        d = dataclasses.asdict(self)
        # Added later: manifests written before them stay equal to their recipe.
        for names, on in ((BAND_OPTIONS, self.band_tilt_db > 0 or self.band_edge_db > 0),
                          (DELAY_OPTIONS, self.band_delay_ns > 0), (DIP_OPTIONS, self.gain_dips)):
            if not on:
                for k in names:
                    d.pop(k)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


_FIELDS = {f.name: f for f in dataclasses.fields(CSIImpairments)}


def csi_impairments(value: Any) -> CSIImpairments | None:
    """Build :class:`CSIImpairments` from a recipe's mapping (or pass one through).

    ``None`` stays ``None``; unknown keys and bad values are :class:`DataError` naming them.
    """
    if value is None or isinstance(value, CSIImpairments):
        return value
    if not isinstance(value, Mapping):
        raise DataError("impairments must be a mapping of option to value")
    unknown = sorted(set(value) - set(_FIELDS))
    if unknown:
        raise DataError(f"unknown impairment option(s) {', '.join(unknown)} (known: {', '.join(_FIELDS)})")
    out: dict[str, Any] = {}
    try:
        for k, v in value.items():
            if k == "snr_db":
                out[k] = None if v is None else tuple(float(x) for x in v)
            elif k in ("phase_offset", "timing_offset_shared", "agc_per_antenna"):
                if not isinstance(v, bool):
                    raise ValueError(f"{k} must be true or false")
                out[k] = v
            elif k == "quantize_bits":
                if float(v) != int(v):
                    raise ValueError("quantize_bits must be an integer")
                out[k] = int(v)
            elif k == "sanitize":
                out[k] = str(v)
            else:
                out[k] = float(v)
    except (TypeError, ValueError) as e:
        raise DataError(f"impairments: bad value: {e}") from None
    return CSIImpairments(**out)


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The impairment random generator of sample ``index`` of a call with ``seed``."""
    return np.random.default_rng([_TAG, int(seed) % 2**63, int(index)])


def apply_csi_impairments(csi: np.ndarray, cfg: CSIImpairments, seed: int,
                          subcarrier_spacing_hz: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Impair clean CSI ``[n, T, A, K]``; sample ``i`` draws from :func:`sample_rng(seed, i)`.

    Returns the impaired CSI (complex64) and per-sample side information (``snr_db`` when
    noise is on).
    """
    n, T, A, K = csi.shape
    x = csi.astype(np.complex128)
    fk = (np.arange(K) - (K - 1) / 2) * subcarrier_spacing_hz  # Hz, from the centre subcarrier
    snr = np.zeros(n)
    phase = np.zeros((n, T, A, 1))
    tau = np.zeros((n, T, A, 1))
    gain_db = np.zeros((n, T, A, 1))
    noise = np.zeros_like(x) if cfg.snr_db is not None else None
    agc_on = cfg.agc_step_db > 0 and cfg.agc_step_probability > 0
    band_db = np.zeros((n, 1, A, K)) if cfg.band_response else None
    band_phase = np.zeros((n, 1, A, K)) if cfg.band_delay_ns > 0 else None
    # Per-sample draws, always in this order, each only when its option is on.
    for i in range(n):
        rng = sample_rng(seed, i)
        if noise is not None:
            snr[i] = rng.uniform(*cfg.snr_db)
            sigma2 = np.mean(np.abs(x[i]) ** 2) / 10 ** (snr[i] / 10)
            noise[i] = np.sqrt(sigma2 / 2) * (rng.standard_normal((T, A, K)) + 1j * rng.standard_normal((T, A, K)))
        if cfg.phase_offset:
            phase[i] = rng.uniform(0, 2 * np.pi, size=(T, A, 1))
        if cfg.timing_offset_ns > 0:
            m = cfg.timing_offset_ns * 1e-9
            tau[i] = rng.uniform(-m, m, size=(T, 1, 1) if cfg.timing_offset_shared else (T, A, 1))
        if agc_on:
            na = A if cfg.agc_per_antenna else 1
            jump = rng.random((T - 1, na)) < cfg.agc_step_probability
            size = rng.uniform(0.5, 1.0, (T - 1, na)) * rng.choice([-1.0, 1.0], (T - 1, na)) * cfg.agc_step_db
            steps = np.concatenate([np.zeros((1, na)), np.cumsum(np.where(jump, size, 0.0), axis=0)])
            gain_db[i] = steps[:, :, None] if na == A else steps[:, :, None].repeat(A, axis=1)
        if cfg.gain_jitter_db > 0:  # drawn last: recipes without it keep their draws
            gain_db[i] += rng.normal(0.0, cfg.gain_jitter_db, (T, A if cfg.agc_per_antenna else 1, 1))
        if band_db is not None:  # drawn after every other option, for the same reason
            band_db[i] = band_response_db(rng, A, K, subcarrier_spacing_hz, cfg)
        if band_phase is not None:  # and its phase after it: recipes without it keep every draw
            band_phase[i] = band_phase_rad(rng, A, K, subcarrier_spacing_hz, cfg)
        if cfg.gain_dips:  # last of all, for the same reason
            gain_db[i] -= gain_dips_db(rng, T, A if cfg.agc_per_antenna else 1, cfg)[:, :, None]
    if noise is not None:
        x = x + noise
    if cfg.phase_offset or cfg.timing_offset_ns > 0:
        x = x * np.exp(1j * (phase - 2 * np.pi * fk * tau))
    if agc_on or cfg.gain_jitter_db > 0 or cfg.gain_dips:
        x = x * 10 ** (gain_db / 20)
    if band_db is not None:
        x = x * 10 ** (band_db / 20) * (1.0 if band_phase is None else np.exp(1j * band_phase))
    if cfg.quantize_bits:
        x = quantize(x, cfg.quantize_bits)
    if cfg.sanitize != "none":
        x = sanitize_phase(x.reshape(n * T, A, K), cfg.sanitize, np.arange(K)).reshape(n, T, A, K)
    info = {"snr_db": snr.astype(np.float32)} if cfg.snr_db is not None else {}
    return x.astype(np.complex64), info


def gain_dips_db(rng: np.random.Generator, T: int, chains: int, cfg: CSIImpairments) -> np.ndarray:
    """How far ``[T, chains]`` (dB, >= 0) each packet's gain sits below its level in a dip (item 5 of
    the module doc): a dip starts with probability ``gain_dip_probability`` at a packet not in one,
    lasts a geometric number of packets of mean ``gain_dip_length`` and is ``U(0.75, 1.25) x
    gain_dip_db`` deep throughout."""
    start = rng.random((T, chains)) < cfg.gain_dip_probability
    length = rng.geometric(1.0 / cfg.gain_dip_length, (T, chains))
    depth = rng.uniform(0.75, 1.25, (T, chains)) * cfg.gain_dip_db
    out = np.zeros((T, chains))
    for c in range(chains):
        t = 0
        while t < T:
            if start[t, c]:
                out[t:t + length[t, c], c] = depth[t, c]
                t += int(length[t, c])
            else:
                t += 1
    return out


def band_response_db(rng: np.random.Generator, A: int, K: int, subcarrier_spacing_hz: float,
                     cfg: CSIImpairments) -> np.ndarray:
    """One sample's receive-chain gain ``[1, A, K]`` dB across the band: a tilt uniform in
    ``[-band_tilt_db, band_tilt_db]`` from the lowest to the highest subcarrier, plus, at each edge,
    ``-U(0, band_edge_db) exp(-d / band_edge_mhz)`` at distance ``d`` from it (module doc, item 6)."""
    u = np.arange(K) / max(K - 1, 1) - 0.5  # -0.5 .. 0.5 across the band
    tilt = rng.uniform(-cfg.band_tilt_db, cfg.band_tilt_db, (A, 1))
    drop = rng.uniform(0.0, cfg.band_edge_db, (A, 2))
    d_hz = np.arange(K) * subcarrier_spacing_hz  # from the lowest subcarrier
    w = cfg.band_edge_mhz * 1e6
    edges = drop[:, :1] * np.exp(-d_hz / w) + drop[:, 1:] * np.exp(-d_hz[::-1] / w)
    return (tilt * u - edges)[None]


def edge_delay_phase(freqs_hz: np.ndarray, width_mhz: float) -> np.ndarray:
    """Phase ``[2, K]`` (rad) at subcarrier frequencies ``freqs_hz`` ``[K]`` (ascending) of a unit
    excess group delay (1 s) at the low (row 0) and the high band edge (row 1) that decays as
    ``exp(-d / width_mhz)`` with the distance ``d`` from its edge: ``-2 pi`` times its integral
    from the lowest subcarrier (module doc, item 6)."""
    w = width_mhz * 1e6
    f = np.asarray(freqs_hz, float) - float(freqs_hz[0])
    span = f[-1]
    low = w * (1.0 - np.exp(-f / w))  # int_0^f exp(-f'/w) df'
    high = w * (np.exp(-(span - f) / w) - np.exp(-span / w))  # int_0^f exp(-(span - f')/w) df'
    return -2 * np.pi * np.stack([low, high])


def band_phase_rad(rng: np.random.Generator, A: int, K: int, subcarrier_spacing_hz: float,
                   cfg: CSIImpairments) -> np.ndarray:
    """One sample's receive-chain phase ``[1, A, K]`` (rad) across the band: at each edge an excess
    group delay ``U(0, band_delay_ns)`` (:func:`edge_delay_phase`). Its constant and linear parts are
    a common phase and delay, which ``sanitize: linear`` removes with the rest of each packet's line."""
    tau = rng.uniform(0.0, cfg.band_delay_ns * 1e-9, (A, 2))
    return (tau @ edge_delay_phase(np.arange(K) * subcarrier_spacing_hz, cfg.band_delay_mhz))[None]


def quantize(x: np.ndarray, bits: int, axes: Sequence[int] = (-2, -1)) -> np.ndarray:
    """Per-packet fixed-point CSI: the largest |Re| or |Im| over ``axes`` maps to ``2^(bits-1) - 1``;
    round, clip to the signed ``bits`` range and scale back."""
    top = 2 ** (bits - 1) - 1
    peak = np.maximum(np.abs(x.real), np.abs(x.imag)).max(axis=tuple(axes), keepdims=True)
    scale = np.where(peak > 0, top / np.where(peak > 0, peak, 1.0), 1.0)
    q = lambda v: np.clip(np.round(v * scale), -top - 1, top)  # noqa: E731
    return (q(x.real) + 1j * q(x.imag)) / scale
