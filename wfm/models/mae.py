"""Masked autoencoder over space-time-frequency CSI (in the line of WiFo, arXiv 2412.08908).

Complex CSI ``[B, T, A, K]`` (time x antenna x subcarrier) is cut into 3D patches of its
real/imag parts (``wfm.nn.patching``), embedded, given a 3D sin-cos position code computed for
the batch's own patch grid (``wfm.nn.posenc``), and masked (``wfm.models.masking``). The encoder
sees only the visible tokens; a shallower decoder sees all tokens (mask tokens where masked) and
predicts every patch. The loss is the MSE on masked patches only. Each sample is first
divided by the RMS of its visible part (``sample_norm``), so inputs of any scale work.

Zero-shot channel prediction is reconstruction with the right mask: ``temporal`` masks the
future time steps, ``frequency`` the upper subcarriers (``MaskedAutoencoder.predict``).

Sizes (``create_model(name)``; decoder width = encoder width as in WiFo, decoder depth 4,
8 heads, MLP ratio 2, patch (4, 4, 4)). Parameter counts are measured (``tests/test_mae.py``
checks them; the position code is fixed and has no parameters):

==========  =====  =============  =============  ==========  =====================
name        width  encoder depth  decoder depth  parameters  parameters, complex-*
==========  =====  =============  =============  ==========  =====================
mae_tiny       64              6              4     355,776                191,296
mae_little    128              6              4   1,374,976                718,336
mae_small     256              6              4   5,404,032              2,780,032
mae_base      512              6              4  21,424,768             10,933,888
mae_large     768              8              4  57,516,416             29,195,648
==========  =====  =============  =============  ==========  =====================

With ``attention: complex-*`` a width-``d`` token is ``d/2`` complex features, and a complex
``d/2 -> d/2`` linear map has half the parameters of a real ``d -> d`` one (same FLOPs).
(WiFo-Base, the reference, has 21.5 M.)

Decoder width: WiFo uses the same width in encoder and decoder, and we keep that default so
parameter counts and throughput compare directly with WiFo's (MAE for images uses a narrower
decoder; ``decoder_dim`` sets one, and ``forward_flops`` accounts for it).

FLOPs: ``forward_flops`` counts the matmul FLOPs of one forward pass exactly (2 per
multiply-add; embeddings, QKV/out projections, attention scores and values, MLPs, decoder head;
norms, GELU and softmax are ignored as they are < 1 % here). Training costs 3x forward
(backward = 2x forward). The complex blocks do the same number of real multiply-adds per token
(a complex ``d/2 -> d/2`` map is four real ``d/2 x d/2`` products), so the count applies to
them too up to the elementwise work of the score variants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wfm.hub_mixin import WfmHubMixin  # huggingface_hub's ModelHubMixin with wfm's checks
from wfm.models.evidence import drifts_beyond_noise, fitted_shrink, looks_white, prior_shrink
from wfm.models.masking import MASK_KINDS, make_mask
from wfm.models.priors import ESTIMATORS, masked_priors
from wfm.models.registry import register_model
from wfm.nn.blocks import ATTENTION_KINDS, drop_path_rates, make_block
from wfm.nn.patching import Grid, Patch, patch_grid, patchify, unpatchify
from wfm.nn.posenc import SinCos3D
from wfm.safety import as_tensor, binary_scale
from wfm.tasks.metrics import to_db

#: ``prior`` options: ``none`` (mask tokens, no anchor: the original MAE), one classical
#: estimator, or ``mix`` (a per-sample learned convex mix of them).
PRIORS = ("none", *ESTIMATORS, "mix")
#: Largest |CSI| value ``predict`` accepts (squares of larger ones overflow float32).
MAX_ABS_INPUT = 1e15
#: Windows whose largest magnitude is below this are predicted at a power-of-two scale near 1
#: (:func:`wfm.safety.binary_scale`); others as given, bit for bit.
MIN_ABS_INPUT = 2.0 ** -40

#: Training losses (``MaskedAutoencoder(loss=...)``) and the skill loss' floor on the prior's
#: error, relative to the sample's masked power (-30 dB).
LOSSES = ("mse", "skill")
SKILL_FLOOR = 1e-3

#: How sharply ``predict``'s guard prefers the estimator with the lower backtest error
#: (weights proportional to ``mse ** -GUARD_SHARPNESS``).
GUARD_SHARPNESS = 16.0
#: The guard divides the ``reversion`` estimate's backtest error by this before comparing: the
#: nearest value or the mean must beat it by 1.5x on the visible data to take over. A backtest
#: posed on 4 packets is noisy; on real still links (Intel 5300) a plain comparison picked the
#: last packet by chance in enough windows to cost 1.11x the mean (1.02x with the margin), and
#: on generated CDL-E/TDL-C it gains (measured with 1.0, 1.5 and 2.5: pretrain/studies.md).
REVERSION_MARGIN = 1.5
#: Whether the guard may shrink the prior towards zero where the backtest's target decorrelated
#: from it (``fitted_scales``); off, the prior is always at full scale (the rule before session 23).
PRIOR_SHRINK = True
#: ``predict`` runs at most this many CSI values (samples x T x A x K) at once (whole samples).
PREDICT_VALUES = 1 << 17

#: What the guard's prior can be, per mask kind (``MaskedAutoencoder(guard_prior=...)``): chosen by
#: the backtest on each window (the zero-shot default), or one classical estimate fixed in advance,
#: where data of the same link or receiver has shown which one predicts it (``wfm.tasks.guard_calibration``).
#: ``hold|ar``: the backtest's choice between those two alone (the nearest value, unless linear
#: prediction beats it by ``AR_MARGIN``); ``hold|ar|mean``: the same with the mean of the visible part
#: as a third choice (a band whose subcarriers the noise has decorrelated: pretrain/studies.md,
#: "The mean among the guard's choices in frequency"); ``hold|ar|mean|rank1`` adds the nearest value
#: of the window's rank-1 (a gain per packet times one profile) approximation; ``line`` continues a
#: least-squares line through the last visible values (a receiver's tilt across the band, which a
#: window's own backtest does not show: a rule fixes it where a link's windows do). Any other ``|`` set of
#: ``GUARD_ESTIMATES`` is a rule too; these are the ones ``wfm calibrate`` scores.
GUARD_PRIORS = ("backtest", *ESTIMATORS, "reversion", "ar", "line", "hold|ar", "hold|ar|mean", "hold|ar|mean|rank1")
#: Estimates the guard adds along the masked axis (after ``ESTIMATORS``), in ``forward``'s order.
GUARD_EXTRA = ("reversion", "ar", "rank1", "line")
GUARD_ESTIMATES = (*ESTIMATORS, *GUARD_EXTRA)
#: What ``backtest`` (a rule's default) weighs: every estimate but ``rank1`` and ``line``, the guard's
#: choice before they existed, so that folders saved before them predict as they did.
BACKTEST_ESTIMATES = ("hold", "mean", "reversion", "ar")
#: Linear prediction (``ar``) must beat the other estimates by this factor on the backtest: it can
#: extrapolate a rotation or a delay structure far better than they hold it, but fitted on a few
#: packets of a still link it follows noise. On the real captures it is never picked at 1.5 (nor
#: at 3 or 10); on generated CDL-D / CDL-E time windows it gives -20.4 / -16.1 dB at 1.5, -20.2 /
#: -13.9 at 3, against -0.6 / -0.4 without it (pretrain/studies.md, "Linear prediction as the guard's estimate").
AR_MARGIN = 1.5


@dataclass
class MAEOutput:
    """Result of ``MaskedAutoencoder.forward``.

    ``pred`` and ``target`` are ``[B, N, pt*pa*pk*2]`` patches of every token, divided by the
    per-sample ``scale`` ``[B, 1, 1]`` (1 without ``sample_norm``; ``pred`` is moreover in
    normalised-patch space when ``norm_pix_loss``); ``mask`` is ``[B, N]`` (True = masked);
    ``loss`` is the masked-patch MSE; ``nmse`` is the per-sample ``||h_hat - h||^2 / ||h||^2``
    over the masked region (scale-free, so the same in either space). ``valid`` ``[1, N, P]``
    marks patch entries that hold data rather than padding to the patch grid; ``prior`` is the
    classical estimate the prediction corrects (``None`` without a prior); ``crop`` the
    ``(front, size)`` of each of T, A, K in the padded grid.
    """

    pred: Tensor
    target: Tensor
    mask: Tensor
    loss: Tensor
    nmse: Tensor
    grid: Grid
    scale: Tensor
    valid: Tensor | None = None
    prior: Tensor | None = None
    crop: tuple[tuple[int, int], ...] | None = None
    estimates: dict[str, Tensor] | None = None
    correction: Tensor | None = None

    @property
    def scored(self) -> Tensor:
        """``[B, N, P]`` float: 1 on the entries the loss and the NMSE count (masked, not padding)."""
        return (self.mask[..., None].float() * (1.0 if self.valid is None else self.valid)).expand_as(self.target)


@dataclass
class MAEPrediction:
    """Result of ``MaskedAutoencoder.predict``.

    ``reconstruction`` is complex ``[B, T, A, K]``: the input where it was visible, the model's
    prediction where masked. ``mask`` is the elementwise ``[B, T, A, K]`` bool mask.
    ``nmse`` is per sample over the masked region; ``nmse_db = 10 log10(mean(nmse))``.
    For one window ``[T, A, K]`` given, ``[T, A, K]`` and a scalar ``nmse``.
    """

    reconstruction: Tensor
    mask: Tensor
    nmse: Tensor
    nmse_db: float


def hidden_size(size: int, ratio: float) -> int:
    """How many steps (``temporal``) or subcarriers (``frequency``) at the end of an axis of ``size``
    ``predict`` hides at ``ratio``: ``round(ratio * size)``, at least one and at most all but one."""
    return min(max(round(ratio * size), 1), size - 1)


def fitted_correction_scale(cr: Tensor, cc: Tensor) -> Tensor:
    """The guard's scale of the learned correction ``c``: its least-squares fit ``c.r / c.c`` to what
    the prior missed on the backtest (``r``), clipped to [0, 1] (``MaskedAutoencoder.backtest``)."""
    return (cr / cc.clamp_min(1e-12)).clamp(0.0, 1.0)


@dataclass
class BacktestSums:
    """Sums ``[B]`` (float64) over the hidden part of ``predict``'s backtest of the target ``t``, the
    guard's prior ``p`` and the learned correction ``c`` (normalised space): ``tt = t.t``, ``pt =
    p.t`` and so on."""

    tt: Tensor
    pt: Tensor
    ct: Tensor
    pp: Tensor
    pc: Tensor
    cc: Tensor

    @property
    def cr(self) -> Tensor:
        """``c.r``, ``r = t - p`` what the prior missed."""
        return self.ct - self.pc

    @property
    def rr(self) -> Tensor:
        """``r.r``."""
        return self.tt - 2 * self.pt + self.pp

    def error(self, a: Tensor, b: Tensor) -> Tensor:
        """``|t - a p - b c|^2`` for prior scales ``a`` and correction scales ``b`` ``[B]``."""
        return (self.tt - 2 * a * self.pt - 2 * b * self.ct + a * a * self.pp + 2 * a * b * self.pc
                + b * b * self.cc)


def fitted_scales(s: BacktestSums) -> tuple[Tensor, Tensor]:
    """The guard's ``(prior scale, correction scale)`` ``[B]`` from its backtest (``BacktestSums``).

    Either the prior at full scale and the correction at :func:`fitted_correction_scale`, or, where
    the backtest scores it at least as well, the prior shrunk towards zero by
    ``a = p.t / min(p.p, t.t)`` (clipped to [0, 1]) and the correction refitted under it. ``a`` is
    the least-squares coefficient of whichever of ``t`` on ``p`` or ``p`` on ``t`` is the larger:
    noise around a level that the prior holds (``t.t > p.p``, ``p.t ~ p.p``) and a gain step between
    the backtest's two parts (``t ~ g p``) both give 1, and only a target that decorrelates from
    its prior (fast fading in time; a wide band's far subcarriers) is shrunk, by about its
    correlation, the MMSE forecast of a zero-mean stationary channel. The plain least-squares
    ``p.t / p.p`` also shrinks on every gain step down, which a still link with AGC steps (the
    Intel 5300 capture) does not repeat (pretrain/studies.md, "The guard's prior scale").
    """
    one = torch.ones_like(s.tt)
    full = fitted_correction_scale(s.cr, s.cc)
    if not PRIOR_SHRINK:
        return one.float(), full.float()
    a = _prior_shrink(s)
    b = fitted_correction_scale(s.ct - a * s.pc, s.cc)
    shrink = s.error(a, b) <= s.error(one, full)
    return torch.where(shrink, a, one).float(), torch.where(shrink, b, full).float()


def _prior_shrink(s: BacktestSums) -> Tensor:
    """The shrink ``a = p.t / min(p.p, t.t)`` clipped to [0, 1] (:func:`fitted_scales` says why)."""
    return prior_shrink(s.pt, s.pp, s.tt)


def fitted_prior_scale(s: BacktestSums) -> Tensor:
    """The guard's prior scale ``[B]`` where the correction is off: :func:`fitted_scales`' shrink
    ``a = p.t / min(p.p, t.t)`` where the backtest scores it at least as well as the full prior, else 1."""
    if not PRIOR_SHRINK:
        return torch.ones_like(s.tt).float()
    return fitted_shrink(s.pt, s.pp, s.tt).float()


def visible_looks_white(seen: Tensor, limit: float, dips: bool = False) -> Tensor:
    """``[B]`` bool: whether the visible part ``seen`` (complex ``[B, L, A, K]``, time first) of each
    sample is white noise around its level, with every channel's real and imaginary part pooled
    (:func:`wfm.models.evidence.looks_white`, the causal model's ``white_limit`` test). Parts that are
    zero throughout (the imaginary part of amplitude CSI) are left out. ``dips``: the sample's
    common-gain dips are left out of the test (:func:`wfm.models.evidence.fill_dips`)."""
    rows, group, keep = _visible_rows(seen)
    white = torch.zeros(seen.shape[0], dtype=torch.bool, device=seen.device)
    if bool(keep.any()):
        white[group[keep]] = looks_white(rows[keep], limit, group[keep], dips)
    return white


#: ``drift_ar`` acts where the visible packets are fewer than this many hidden spans: as the causal
#: model's, where fewer than two backtests of the span fit in the visible part's second half. From
#: there the guard's backtest weighs linear prediction on the sample's own packets; fixing it instead
#: cost the real still links at 64 packets (Intel 1.002 -> 1.026x the mean, session 71).
DRIFT_SPANS = 4


def visible_drifts(seen: Tensor, shape: bool = False) -> Tensor:
    """``[B]`` bool: whether the visible part ``seen`` (complex ``[B, L, A, K]``, time first) of each
    sample drifts beyond doubt, every channel's real and imaginary part pooled
    (:func:`wfm.models.evidence.drifts_beyond_noise`, the causal model's ``drift_ar`` test; ``shape``:
    ``drift_shape``'s). Parts that are zero throughout (the imaginary part of amplitude CSI) are left out."""
    rows, group, keep = _visible_rows(seen)
    drift = torch.zeros(seen.shape[0], dtype=torch.bool, device=seen.device)
    if bool(keep.any()):
        drift[group[keep]] = drifts_beyond_noise(rows[keep], group[keep], shape)
    return drift


def _visible_rows(seen: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(rows [B * C, L], group [B * C], keep [B * C])``: every channel's real and imaginary part
    of ``seen`` (complex ``[B, L, A, K]``) as a row, its sample's index, and whether it is not zero
    throughout."""
    b, length = seen.shape[:2]
    rows = torch.view_as_real(seen.to(torch.complex64)).permute(0, 2, 3, 4, 1).reshape(b, -1, length)
    group = torch.arange(b, device=seen.device).repeat_interleave(rows.shape[1])
    rows = rows.reshape(-1, length)
    return rows, group, rows.abs().amax(dim=1) > 0


def margined(mse: Tensor) -> Tensor:
    """The guard's backtest errors ``[B, E]`` (``GUARD_ESTIMATES``' order) with the reversion's
    bonus and the handicap of linear prediction and of the line applied (``REVERSION_MARGIN``,
    ``AR_MARGIN``)."""
    mse = mse.clone()
    mse[:, GUARD_ESTIMATES.index("reversion")] /= REVERSION_MARGIN
    mse[:, GUARD_ESTIMATES.index("ar")] *= AR_MARGIN
    mse[:, GUARD_ESTIMATES.index("line")] *= AR_MARGIN  # an extrapolation too: it must win as clearly
    return mse


def origin_log_errors(seen: Tensor, dim: int, origins: tuple[int, ...]) -> Tensor | None:
    """The mean over backtest origins of each classical estimate's log error ``[B, E]`` on
    ``seen`` (complex ``[B, T, A, K]``, the visible part): each origin hides the last ``h`` along
    ``dim``, and its errors are relative to the power of what it hid (margins applied). ``None``
    when no origin fits (every ``h`` must leave at least one step visible)."""
    size, total, n = seen.shape[dim], None, 0
    for h in origins:
        if not 0 < h < size:
            continue
        vis = torch.ones(seen.shape, dtype=torch.bool, device=seen.device)
        vis.narrow(dim, size - h, h).fill_(False)
        target = seen.narrow(dim, size - h, h)
        power = target.abs().square().flatten(1).sum(1).clamp_min(1e-30)
        mse = torch.stack([(est.narrow(dim, size - h, h) - target).abs().square().flatten(1).sum(1) / power
                           for est in masked_priors(seen, vis, dim).values()], 1)
        log = torch.log(margined(mse) + 1e-12)
        total, n = (log if total is None else total + log), n + 1
    return None if total is None else total / n


def check_guard_prior(guard_prior: dict[str, str] | None) -> dict[str, str]:
    """``guard_prior`` as a plain dict ``{mask kind: rule}`` (``temporal`` / ``frequency`` ->
    ``backtest`` or a ``|`` set of ``GUARD_ESTIMATES``, such as those of ``GUARD_PRIORS``); a kind it
    leaves out keeps the backtest's choice. Refuses anything else."""
    out = dict(guard_prior or {})
    for kind, rule in out.items():
        parts = str(rule).split("|")
        ok = rule == "backtest" or (len(set(parts)) == len(parts) and all(p in GUARD_ESTIMATES for p in parts))
        if kind not in ("temporal", "frequency") or not ok:
            raise ValueError(f"guard_prior maps 'temporal' / 'frequency' to 'backtest' or estimates of "
                             f"{', '.join(GUARD_ESTIMATES)} joined by '|' (such as 'hold|ar|mean'); got {kind!r}: {rule!r}")
    return {k: str(v) for k, v in out.items()}


def pad_to_patches(csi: Tensor, patch: Patch, front: tuple[int, int, int] = (0, 0, 0)) -> tuple[Tensor, Tensor, tuple]:
    """Pad complex ``[B, T, A, K]`` to multiples of ``patch`` by repeating edge values.

    ``front`` puts that many padded entries before the data on each axis (the rest go after).
    Returns ``(padded, valid [1, T', A', K'] bool, crop)`` where ``crop`` is each axis'
    ``(front, size)``. Edge repetition keeps padded patches looking like data (zeros would make
    patches unlike anything seen in training); ``valid`` keeps them out of losses and metrics.
    """
    tak = csi.shape[-3:]
    total = [(-(s + f)) % p + f for s, p, f in zip(tak, patch, front)]
    if any(f < 0 for f in front):
        raise ValueError(f"front padding {front} out of range for shape {tuple(tak)} and patch {tuple(patch)}")
    crop = tuple((f, s) for f, s in zip(front, tak))
    valid = torch.ones(1, *tak, dtype=torch.bool, device=csi.device)
    if not any(total):
        return csi, valid, crop
    pads = []
    for (f, _), t in zip(reversed(crop), reversed(total)):  # F.pad wants the last axis first
        pads += [f, t - f]
    x = torch.view_as_real(csi).permute(0, 4, 1, 2, 3)  # [B, 2, T, A, K]
    x = F.pad(x, pads, mode="replicate").permute(0, 2, 3, 4, 1).contiguous()
    return torch.view_as_complex(x), F.pad(valid, pads, value=False), crop


class MaskedAutoencoder(nn.Module, WfmHubMixin):
    """Encoder-decoder MAE over 3D CSI patches. See the module docstring.

    Args:
        patch_size: ``(pt, pa, pk)``. CSI of any ``(T, A, K)`` works: it is padded to the patch
            grid (edge values repeated) and the padding is kept out of the loss and metrics.
        dim, depth, num_heads, mlp_ratio: encoder width, blocks, heads, MLP expansion.
        decoder_dim, decoder_depth, decoder_num_heads: decoder (width defaults to ``dim``).
        attention: ``sdpa`` (real tokens) or ``complex-real|complex-magnitude|complex-phase``.
        sample_norm: divide each sample by the RMS of its *visible* part before embedding, and
            scale the prediction back (RevIN-style). The model then sees unit-power inputs
            whatever the data's scale (raw CSI of a new dataset works zero-shot), and every
            sample weighs the same in the loss, as in the per-sample NMSE. It uses only visible
            data, so it is legitimate for prediction.
        norm_pix_loss: normalise each target patch to zero mean / unit variance before the MSE
            (MAE's trick). It changes what the loss weighs (every patch equally, whatever its
            power), and NMSE is then computed by de-normalising with the *true* patch statistics
            (an oracle), so leave it off for channel prediction; it is for ablations.
        prior: prior-anchored prediction (``wfm.models.priors``). With ``hold``, ``mean`` or
            ``mix``, every masked value is predicted as a classical estimate from the visible data
            plus a learned correction; the decoder sees that estimate (embedded, plus the mask
            token) at masked positions instead of a bare mask token, the loss is on the final
            prediction, and the correction head starts at zero, so an untrained model is exactly
            the classical estimate. ``mix`` mixes ``hold`` and ``mean`` with per-sample convex
            weights from a gate on the pooled encoder output. ``none``: the original MAE.
        drop_path_rate, layer_scale: stochastic depth (linearly increasing over the encoder
            blocks, as in timm) and LayerScale init values (``None``: off).
        loss: ``mse``: the mean squared error over every masked entry of the batch (samples with
            large errors dominate). ``skill`` (needs a prior): the mean over samples of each
            sample's masked MSE divided by that of its own classical prior (detached, floored at
            -30 dB of the sample's masked power): 1 is the prior's score and every sample weighs
            the same relative to it, so a correction that hurts a quasi-static sample, where the
            prior is already good, costs as much as one that helps a fast-fading sample gains.
        guard_prior: ``{mask kind: rule}`` fixing the guard's classical prior (``GUARD_PRIORS``);
            a kind left out keeps the backtest's choice on each window.
        white_limit: in ``temporal`` prediction, a sample whose visible part looks like white
            noise around its level (:func:`visible_looks_white`, the test and limit of the causal
            model's ``white_limit``) is predicted as its mean, shrunk towards zero as the guard's
            backtest says (:func:`fitted_prior_scale`), with the learned correction off: on such
            a window nothing beats the level, and the backtest's choice between the estimates and
            its fitted correction only add noise. ``None`` (every folder saved before it): off.
        guard_origins: in ``temporal`` prediction, the backtest's hidden lengths by which the guard
            chooses its classical estimate (each origin hides that many of the visible packets'
            last ones; the estimates' log errors, relative to the power each origin hid, are
            averaged), such as ``(2, 3, 4)``: one backtest of 4 packets picks by chance. ``None``:
            one origin, the visible part's last ``ratio`` (the rule before, and the rule in
            frequency). The correction's scale is fitted on that one origin either way.
        white_dips: with ``white_limit``, a sample's common-gain dips (packets at which every
            channel drops together, :func:`wfm.models.evidence.dip_steps`) are left out of the
            white test; the mean stays that of every visible packet. False: the test reads them.
        drift_ar: in ``temporal`` prediction, a sample whose visible packets drift together beyond
            doubt (:func:`visible_drifts`: their pooled lag-1 autocorrelation over their effective
            number of channels, the causal model's ``drift_ar`` test) has linear prediction along
            time pooled over its channels (the guard's ``ar`` estimate) as its prior, whatever the
            guard's rule, with the correction and the prior's shrink fitted on the backtest as for
            any prior, and not the white test's mean. A link turning at a few hertz over 16 packets
            of 1 ms moves less than its noise from packet to packet: the white test gave it the mean
            (1.5x persistence at 5 Hz, session 70). False: off.
        drift_shape: with ``drift_ar``, a sample also drifts where the test passes with Ljung-Box's
            small-sample null variance both as given and with every packet divided by the sample's
            common gain (``drifts_beyond_noise(shape=True)``, the causal model's ``drift_shape``).
            False: off.
    """

    model_kind = "mae"  # what config.json records (wfm.hub_mixin)

    def __init__(
        self,
        patch_size: Patch = (4, 4, 4),
        dim: int = 64,
        depth: int = 6,
        num_heads: int = 8,
        mlp_ratio: float = 2.0,
        decoder_dim: int | None = None,
        decoder_depth: int = 4,
        decoder_num_heads: int | None = None,
        attention: str = "sdpa",
        sample_norm: bool = True,
        norm_pix_loss: bool = False,
        prior: str = "none",
        drop_path_rate: float = 0.0,
        layer_scale: float | None = None,
        loss: str = "mse",
        guard_prior: dict[str, str] | None = None,
        white_limit: float | None = None,
        white_dips: bool = False,
        guard_origins: tuple[int, ...] | None = None,
        drift_ar: bool = False,
        drift_shape: bool = False,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention {attention!r}; choose one of {', '.join(ATTENTION_KINDS)}")
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
        if loss not in LOSSES or (loss == "skill" and prior == "none"):
            raise ValueError(f"loss must be one of {', '.join(LOSSES)} ('skill' needs a prior); got {loss!r} with prior {prior!r}")
        if prior != "none" and norm_pix_loss:
            raise ValueError("prior-anchored prediction needs norm_pix_loss=False (the prior lives in data space)")
        self.patch_size: Patch = tuple(int(p) for p in patch_size)  # type: ignore[assignment]
        if any(p < 1 for p in self.patch_size):
            raise ValueError(f"patch sizes must be positive; got {self.patch_size}")
        self.patch_dim = math.prod(self.patch_size) * 2
        self.dim = dim
        self.decoder_dim = decoder_dim or dim
        self.mlp_ratio = mlp_ratio
        self.attention = attention
        self.sample_norm = sample_norm
        self.norm_pix_loss = norm_pix_loss
        self.prior = prior
        self.drop_path_rate = float(drop_path_rate)
        self.layer_scale = layer_scale
        self.loss_kind = loss
        self.guard_prior = check_guard_prior(guard_prior)
        if white_limit is not None and not (math.isfinite(white_limit) and white_limit > 0):
            raise ValueError(f"white_limit must be a positive number (or None: off); got {white_limit!r}")
        self.white_limit = None if white_limit is None else float(white_limit)
        if white_dips and white_limit is None:
            raise ValueError("white_dips changes the test of white_limit: it needs white_limit")
        self.white_dips = bool(white_dips)
        if guard_origins is not None and (not guard_origins or any(int(h) < 1 for h in guard_origins)):
            raise ValueError(f"guard_origins must be positive hidden lengths such as (2, 3, 4) (or None: off); got {guard_origins!r}")
        self.guard_origins = None if guard_origins is None else tuple(int(h) for h in guard_origins)
        if drift_ar and prior == "none":
            raise ValueError("drift_ar fixes the guard's prior: it needs a model with a prior")
        self.drift_ar = bool(drift_ar)
        if drift_shape and not drift_ar:
            raise ValueError("drift_shape changes drift_ar's test: it needs drift_ar")
        self.drift_shape = bool(drift_shape)
        dd = self.decoder_dim

        self.patch_embed = nn.Linear(self.patch_dim, dim)
        self.pos = SinCos3D(dim)
        self.blocks = nn.ModuleList(
            make_block(dim, num_heads, mlp_ratio, attention, drop_path=r, init_values=layer_scale)
            for r in drop_path_rates(drop_path_rate, depth))
        self.norm = nn.LayerNorm(dim)

        self.decoder_embed = nn.Linear(dim, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_pos = SinCos3D(dd)
        self.decoder_blocks = nn.ModuleList(
            make_block(dd, decoder_num_heads or num_heads, mlp_ratio, attention, init_values=layer_scale)
            for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dd)
        self.decoder_pred = nn.Linear(dd, self.patch_dim)
        if prior != "none":
            self.prior_embed = nn.Linear(self.patch_dim, dd)
        if prior == "mix":
            self.prior_gate = nn.Linear(dim, len(ESTIMATORS))
        self._init_weights()

    def _init_weights(self) -> None:
        # MAE/timm init: xavier-uniform linears, zero biases, small-normal mask token. Only plain
        # nn.Linear is touched; complex layers keep the init their authors chose.
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if type(m) is nn.Linear:
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if self.prior != "none":
            # A zero correction: the untrained model predicts the classical estimate exactly.
            nn.init.zeros_(self.decoder_pred.weight)
        if self.prior == "mix":
            nn.init.zeros_(self.prior_gate.weight)  # equal weights until trained

    # ------------------------------------------------------------------ shapes
    def grid_for(self, shape: tuple[int, ...]) -> Grid:
        """The patch grid of CSI ``[..., T, A, K]`` after padding to whole patches."""
        if len(shape) < 3:
            raise ValueError(f"CSI must be [B, T, A, K]; got shape {tuple(shape)}")
        return tuple(-(-int(s) // p) for s, p in zip(shape[-3:], self.patch_size))  # type: ignore[return-value]

    # ------------------------------------------------------------------ forward
    def forward(self, csi: Tensor, mask: Tensor, front: tuple[int, int, int] = (0, 0, 0),
                prior_weights: Tensor | None = None, correction_scale: Tensor | None = None,
                reversion_dim: int | None = None, prior_scale: Tensor | None = None) -> MAEOutput:
        """Reconstruct ``csi`` (complex ``[B, T, A, K]``, any T, A, K) under ``mask`` (bool ``[B, N]``).

        ``mask`` is over the padded grid ``grid_for(csi.shape)``; ``front`` places the padding of
        each axis (``predict`` aligns the border of the predicted region with a patch border).
        ``reversion_dim`` (1: time, 3: subcarrier) adds the guard's estimates along that axis
        (``GUARD_EXTRA``: the AR(1) ``reversion``, linear prediction, ``rank1``, ``line``; ``wfm.models.priors``)
        to the classical estimates. ``prior_weights`` ``[B, E]`` replace the prior's mix: weights
        over ``ESTIMATORS``, then ``GUARD_EXTRA`` when they are there (``GUARD_ESTIMATES``' order).
        ``correction_scale`` ``[B]`` multiplies the learned correction and ``prior_scale`` ``[B]``
        the prior in the output (the network still reads the prior itself; ``predict``'s guard sets
        all three from a backtest on the visible data). Every row of ``mask`` must mask the same number
        of tokens. Keep ``mask`` on the CPU
        where you can: its row counts are read on the host, which would otherwise sync the GPU.
        """
        if csi.ndim != 4:
            raise ValueError(f"CSI must be [B, T, A, K]; got shape {tuple(csi.shape)}")
        csi, valid_elem, crop = pad_to_patches(csi.to(torch.complex64), self.patch_size, front)
        grid = patch_grid(csi.shape, self.patch_size)
        n = math.prod(grid)
        b = csi.shape[0]
        if mask.shape != (b, n) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool [B, N] = [{b}, {n}] for grid {grid}; got {mask.dtype} {tuple(mask.shape)}")
        counts = mask.sum(dim=1)
        n_mask = int(counts[0])
        if not bool((counts == n_mask).all()) or not 0 < n_mask < n:
            raise ValueError(f"every mask row must mask the same number of tokens in (0, {n}); got {counts.tolist()}")
        mask = mask.to(csi.device, non_blocking=True)
        pad_free = bool(valid_elem.all())
        valid = None if pad_free else patchify(torch.complex(valid_elem.float(), valid_elem.float()), self.patch_size)

        target = patchify(csi, self.patch_size)  # [B, N, P] float32
        if self.sample_norm:
            visible = ((~mask).float()[..., None] * (1.0 if valid is None else valid)).expand_as(target)
            mean_sq = (target.square() * visible).sum(dim=(1, 2)) / visible.sum(dim=(1, 2)).clamp_min(1.0)
            scale = (2.0 * mean_sq + 1e-30).sqrt()[:, None, None]  # RMS of the complex entries
        else:
            scale = target.new_ones(b, 1, 1)
        target = target / scale
        latent, ids_restore = self.forward_encoder(target, mask, grid)
        estimates = self.forward_estimates(target, mask, grid, valid, reversion_dim)
        prior = self.mix_prior(estimates, latent, prior_weights)
        pred = self.forward_decoder(latent, ids_restore, grid, prior, correction_scale)
        if prior_scale is not None:  # the output keeps this much of the prior; the correction is unchanged
            scaled = prior_scale[:, None, None] * prior
            pred, prior = pred - prior + scaled, scaled
        loss, nmse = self.forward_loss(pred, target, mask, valid, prior)
        return MAEOutput(pred=pred, target=target, mask=mask, loss=loss, nmse=nmse, grid=grid, scale=scale,
                         valid=valid, prior=prior, crop=crop, estimates=estimates,
                         correction=None if prior is None else pred - prior)

    def forward_encoder(self, target: Tensor, mask: Tensor, grid: Grid) -> tuple[Tensor, Tensor]:
        """Encode the visible patches of ``target`` ``[B, N, P]`` (normalised).

        Returns ``(latent [B, N_visible, dim], ids_restore [B, N])``; pass an all-False ``mask``
        row set for features of every token is not allowed here (use ``forward_features``).
        """
        n_keep = int((~mask[0]).sum())
        x = self.patch_embed(target.to(self.patch_embed.weight.dtype))
        x = x + self.pos(grid, x.device, x.dtype)
        # Visible tokens first (stable sort keeps their order), then the masked ones.
        ids_shuffle = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :n_keep]
        x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), ids_restore

    def forward_features(self, csi: Tensor) -> Tensor:
        """Encoder output of every token of unmasked CSI (any shape): ``[B, N, dim]``."""
        csi, _, _ = pad_to_patches(csi.to(torch.complex64), self.patch_size)
        grid = patch_grid(csi.shape, self.patch_size)
        x = patchify(csi, self.patch_size)
        if self.sample_norm:
            x = x / (2.0 * x.square().mean(dim=(1, 2), keepdim=True) + 1e-30).sqrt()
        h = self.patch_embed(x.to(self.patch_embed.weight.dtype)) + self.pos(grid, x.device, x.dtype)
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h)

    def forward_estimates(self, target: Tensor, mask: Tensor, grid: Grid, valid: Tensor | None = None,
                          reversion_dim: int | None = None) -> dict[str, Tensor] | None:
        """Every classical estimate ``{name: [B, N, P]}`` of every patch from the visible, valid entries.

        ``None`` without a prior. Padding never counts as data, so each estimate is exactly the
        classical baseline's on the user's own shape.
        """
        if self.prior == "none":
            return None
        x = unpatchify(target.float(), grid, self.patch_size)
        seen = (~mask)[..., None].float() * (1.0 if valid is None else valid)
        vis = unpatchify(seen.expand_as(target).contiguous(), grid, self.patch_size).real > 0.5
        return {k: patchify(v, self.patch_size) for k, v in masked_priors(x, vis, reversion_dim).items()}

    def mix_prior(self, estimates: dict[str, Tensor] | None, latent: Tensor,
                  weights: Tensor | None = None) -> Tensor | None:
        """The prior ``[B, N, P]``: ``weights`` ``[B, E]`` over the estimates given (in their
        order) if any, else the model's own (the learned gate over ``ESTIMATORS`` for ``mix``,
        the one estimator otherwise)."""
        if estimates is None:
            return None
        if weights is not None:
            return sum(weights[:, i, None, None] * est for i, est in enumerate(estimates.values()))
        if self.prior != "mix":
            return estimates[self.prior]
        weights = torch.softmax(self.prior_gate(latent.mean(dim=1)).float(), dim=-1)  # [B, E]
        return sum(weights[:, i, None, None] * estimates[e] for i, e in enumerate(ESTIMATORS))

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor, grid: Grid, prior: Tensor | None = None,
                        correction_scale: Tensor | None = None) -> Tensor:
        """Predict every patch ``[B, N, P]`` (normalised space) from the encoded visible tokens.

        With a prior, masked tokens carry the embedded prior and the output is prior + correction.
        """
        b, n = ids_restore.shape
        y = self.decoder_embed(latent)
        y = torch.cat([y, self.mask_token.to(y.dtype).expand(b, n - y.shape[1], -1)], dim=1)
        y = torch.gather(y, 1, ids_restore[..., None].expand(-1, -1, y.shape[-1]))
        if prior is not None:
            masked = (ids_restore >= latent.shape[1])[..., None]
            y = y + masked * self.prior_embed(prior.to(y.dtype))
        y = y + self.decoder_pos(grid, y.device, y.dtype)
        for blk in self.decoder_blocks:
            y = blk(y)
        pred = self.decoder_pred(self.decoder_norm(y)).float()
        if prior is None:
            return pred
        return prior + (pred if correction_scale is None else correction_scale[:, None, None] * pred)

    def forward_loss(self, pred: Tensor, target: Tensor, mask: Tensor, valid: Tensor | None = None,
                     prior: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The training loss over masked, valid entries (``loss``: ``mse`` or ``skill`` against
        ``prior``) and the per-sample NMSE (see ``MAEOutput``)."""
        m = mask.float()[..., None] * (1.0 if valid is None else valid)  # [B, N, P]
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            std = (target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
            sq = (pred - (target - mean) / std) ** 2
            recon = pred * std + mean  # oracle de-normalisation, see class docstring
        else:
            sq = (pred - target) ** 2
            recon = pred
        m = m.expand_as(sq)
        err = (((recon - target) ** 2) * m).sum(dim=(1, 2))
        power = ((target**2) * m).sum(dim=(1, 2))
        if self.loss_kind == "skill" and prior is not None:
            prior_err = (((prior - target) ** 2) * m).sum(dim=(1, 2)).detach()
            loss = (err / (prior_err + SKILL_FLOOR * power).clamp_min(1e-12)).mean()
        else:
            loss = (sq * m).sum() / m.sum().clamp_min(1.0)
        return loss, err / power.clamp_min(1e-12)

    def loss(self, pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Alias of ``forward_loss`` without padding (kept for callers of the old name)."""
        return self.forward_loss(pred, target, mask)

    # ------------------------------------------------------------------ inference
    def reconstruct(self, out: MAEOutput) -> Tensor:
        """Complex ``[B, T, A, K]`` (the unpadded shape): visible patches from the input, masked ones predicted."""
        pred = out.pred
        if self.norm_pix_loss:
            mean = out.target.mean(dim=-1, keepdim=True)
            std = (out.target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
            pred = pred * std + mean
        patches = torch.where(out.mask[..., None], pred, out.target) * out.scale
        full = unpatchify(patches, out.grid, self.patch_size)
        if out.crop is None:
            return full
        (t0, t), (a0, a), (k0, k) = out.crop
        return full[:, t0:t0 + t, a0:a0 + a, k0:k0 + k]

    def prediction_mask(self, shape: tuple[int, ...], mask_kind: str, ratio: float,
                        generator: torch.Generator | None = None) -> tuple[Tensor, tuple[int, int, int]]:
        """Token mask ``[B, N]`` and front padding that hide ``ratio`` of CSI of ``shape`` by ``mask_kind``.

        For ``temporal`` (``frequency``), ``round(ratio * T)`` (``K``) steps (subcarriers) at the end,
        at least one and at most all but one, are hidden exactly: the axis is padded in front so
        that the hidden part starts on a patch border. Other kinds hide whole padded patches.
        """
        if mask_kind not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {mask_kind!r}; choose one of {', '.join(MASK_KINDS)}")
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"mask ratio must be in (0, 1); got {ratio}")
        b, tak = int(shape[0]), [int(s) for s in shape[-3:]]
        front = [0, 0, 0]
        axis = {"temporal": 0, "frequency": 2}.get(mask_kind)
        if axis is not None:
            size, p = tak[axis], self.patch_size[axis]
            if size < 2:
                raise ValueError(f"cannot predict part of an axis of size {size} ({mask_kind} mask of shape {tuple(shape)})")
            hidden = hidden_size(size, ratio)
            front[axis] = (-(size - hidden)) % p
            padded = [s + f for s, f in zip(tak, front)]
            grid = self.grid_for(padded)
            ratio = -(-hidden // p) / grid[axis]  # exactly the patches holding the hidden part
        grid = self.grid_for([s + f for s, f in zip(tak, front)])
        return make_mask(mask_kind, b, grid, ratio, generator=generator), tuple(front)  # type: ignore[return-value]

    @torch.no_grad()
    def backtest(self, csi: Tensor, mask_kind: str, ratio: float) -> tuple[Tensor, Tensor, int, Tensor] | None:
        """Prior weights ``[B, E]``, correction scales ``[B]``, the ``reversion_dim`` and prior scales
        ``[B]`` that worked on the visible data (the arguments ``forward`` takes after ``front``).

        The same prediction is posed on the visible part alone (for ``temporal``: predict the last
        ``ratio`` of the context from its start; likewise along subcarriers for ``frequency``). Each
        classical estimate the rule names there (``BACKTEST_ESTIMATES`` for ``backtest``: the
        ``ESTIMATORS``, the AR(1) ``reversion``, which must lose by ``REVERSION_MARGIN`` to be passed
        over, and linear prediction, which must win by ``AR_MARGIN``) is weighed by its error
        (``mse ** -GUARD_SHARPNESS``, normalised), and
        the learned correction is scaled by its least-squares fit to what that prior missed,
        clipped to ``[0, 1]``: a correction that did not help on the sample's own past is switched
        off, so the model falls back to the classical estimate that did best. Where the target
        decorrelated from the prior on the backtest, the prior is shrunk towards zero
        (:func:`fitted_scales`). With ``white_limit``, a sample whose visible part looks white gets
        the mean as its prior and no correction (``white_windows``); with ``drift_ar``, one whose
        visible part drifts gets linear prediction as its prior (``drift_windows``). ``None`` for
        other mask kinds, models without a prior, or too little visible data.
        """
        white = self.white_windows(csi, mask_kind, ratio)
        drift = self.drift_windows(csi, mask_kind, ratio)
        if white is not None and drift is not None:
            white = white & ~drift
        fit = self.backtest_fit(csi, mask_kind, ratio, white, drift)
        if fit is None:
            return None
        weights, sums, dim = fit
        prior_scale, correction_scale = fitted_scales(sums)
        if white is not None:
            prior_scale = torch.where(white, fitted_prior_scale(sums), prior_scale)
            correction_scale = torch.where(white, torch.zeros_like(correction_scale), correction_scale)
        return weights, correction_scale, dim, prior_scale

    def drift_windows(self, csi: Tensor, mask_kind: str, ratio: float) -> Tensor | None:
        """``[B]`` bool, with ``drift_ar`` in ``temporal`` prediction: the samples whose visible part
        (the packets before the hidden ``ratio``) drifts beyond doubt (:func:`visible_drifts`), where
        it is shorter than ``DRIFT_SPANS`` hidden spans (none from there on); ``None`` otherwise."""
        if not self.drift_ar or mask_kind != "temporal" or self.prior == "none":
            return None
        size = csi.shape[1]
        hidden = hidden_size(size, ratio)
        if size - hidden >= DRIFT_SPANS * hidden:  # the guard's own backtests judge linear prediction there
            return torch.zeros(csi.shape[0], dtype=torch.bool, device=csi.device)
        return visible_drifts(csi[:, :size - hidden], self.drift_shape)

    def white_windows(self, csi: Tensor, mask_kind: str, ratio: float) -> Tensor | None:
        """``[B]`` bool, with ``white_limit`` in ``temporal`` prediction: the samples whose visible
        part (the packets before the hidden ``ratio``) looks like white noise around its level
        (:func:`visible_looks_white`); ``None`` otherwise."""
        if self.white_limit is None or mask_kind != "temporal" or self.prior == "none":
            return None
        size = csi.shape[1]
        seen = csi[:, :size - hidden_size(size, ratio)]
        return visible_looks_white(seen, self.white_limit, self.white_dips)

    @torch.no_grad()
    def backtest_fit(self, csi: Tensor, mask_kind: str, ratio: float,
                     white: Tensor | None = None,
                     drift: Tensor | None = None) -> tuple[Tensor, BacktestSums, int] | None:
        """What ``backtest`` fits on the visible data: the prior weights ``[B, E]``, the sums of the
        target, the prior and the correction over the backtest's hidden part (``BacktestSums``),
        and the ``reversion_dim`` (``None`` where ``backtest`` is). ``white`` ``[B]`` bool: samples
        whose prior is the mean whatever the guard's rule (``white_limit``); ``drift`` ``[B]`` bool:
        samples whose prior is linear prediction whatever the rule (``drift_ar``)."""
        if self.prior == "none" or mask_kind not in ("temporal", "frequency"):
            return None
        dim = 1 if mask_kind == "temporal" else 3
        size = csi.shape[dim]
        seen = csi.narrow(dim, 0, size - hidden_size(size, ratio))
        if seen.shape[dim] < 2:
            return None
        mask, front = self.prediction_mask(seen.shape, mask_kind, ratio)
        fixed = self.guard_prior.get(mask_kind, "backtest")
        if fixed in GUARD_ESTIMATES:  # one estimate fixed in advance: no pass to weigh them
            weights = torch.zeros(seen.shape[0], len(GUARD_ESTIMATES))
            weights[:, GUARD_ESTIMATES.index(fixed)] = 1.0
        else:  # weigh the estimates (all, or the rule's) by their errors on the backtest
            log_mse = (origin_log_errors(seen.to(torch.complex64), dim, self.guard_origins)
                       if self.guard_origins and mask_kind == "temporal" else None)
            if log_mse is None:
                out = self(seen, mask, front, reversion_dim=dim)
                m = out.scored
                count = m.sum(dim=(1, 2)).clamp_min(1.0)
                mse = torch.stack([((est - out.target) ** 2 * m).sum(dim=(1, 2)) / count for est in out.estimates.values()], 1)
                log_mse = torch.log(margined(mse) + 1e-12)
            chosen = BACKTEST_ESTIMATES if fixed == "backtest" else fixed.split("|")
            keep = torch.tensor([e in chosen for e in GUARD_ESTIMATES])
            log_mse = torch.where(keep, log_mse, torch.full_like(log_mse, float("inf")))
            weights = torch.softmax(-GUARD_SHARPNESS * log_mse, dim=1)
        for fixed_to, name in ((white, "mean"), (drift, "ar")):
            if fixed_to is not None and bool(fixed_to.any()):
                weights = weights.clone()
                weights[fixed_to] = 0.0
                weights[fixed_to, GUARD_ESTIMATES.index(name)] = 1.0
        out = self(seen, mask, front, prior_weights=weights, reversion_dim=dim)
        m = out.scored
        t, p, c = ((x * m).double() for x in (out.target, out.prior, out.correction))
        dot = lambda a, b: (a * b).sum(dim=(1, 2))  # noqa: E731
        return weights, BacktestSums(dot(t, t), dot(p, t), dot(c, t), dot(p, p), dot(p, c), dot(c, c)), dim

    @torch.no_grad()
    def predict(self, csi: Tensor, mask_kind: str = "temporal", ratio: float = 0.5, seed: int = 0,
                guard: bool = True) -> MAEPrediction:
        """Zero-shot prediction: mask ``ratio`` of the CSI by ``mask_kind`` and reconstruct it.

        ``csi`` (a tensor or a NumPy array) is complex ``[B, T, A, K]`` of any shape (1-3 antennas, 30/56/114/242
        subcarriers, odd T: padding is internal), or one window ``[T, A, K]``, whose
        reconstruction and mask come back ``[T, A, K]`` and its NMSE a scalar (a real ``csi``,
        such as amplitudes, is read as complex with a zero imaginary part). ``temporal`` predicts the last ``ratio`` of
        time steps from the earlier ones; ``frequency`` the upper ``ratio`` of subcarriers
        (both rounded to whole steps / subcarriers); ``random``/``antenna`` interpolate whole
        patches (their random draw is seeded by ``seed``). ``guard`` (models with a prior,
        temporal and frequency prediction): weigh the classical estimators and the learned
        correction by how they did on the visible data (``backtest``), so that a correction that
        does not transfer to this data is switched off, and a prior the target decorrelated from
        is shrunk towards zero.
        """
        csi = as_tensor(csi, "csi")
        if csi.ndim == 3:  # one window
            one = self.predict(csi[None], mask_kind, ratio, seed, guard)
            return MAEPrediction(one.reconstruction[0], one.mask[0], one.nmse[0], one.nmse_db)
        if csi.ndim != 4 or csi.shape[0] < 1:
            raise ValueError(f"csi must be [T, A, K] (one window) or [B, T, A, K] with B >= 1 "
                             f"(time, antennas, subcarriers); got shape {tuple(csi.shape)}")
        # One reduction per window checks both: NaN propagates through amax, and Inf is larger than
        # the bound; the same peaks set the scale below.
        peaks = (torch.view_as_real(csi) if csi.is_complex() else csi).abs().flatten(1).amax(1).double()
        peak = float(peaks.max())
        if not math.isfinite(peak):
            raise ValueError("csi contains NaN or Inf values; clean or drop those samples first")
        if peak > MAX_ABS_INPUT:  # its square overflows float32 in the sample norm and the priors' errors
            raise ValueError(f"csi has values up to {peak:.3g} in magnitude (> {MAX_ABS_INPUT:g}); rescale it first "
                             "(the model normalises each sample, so any scale works)")
        # A window far below a unit scale (CSI in volts at 1e-25) is predicted at a power of two
        # near 1 and scaled back, exactly: the sample norm makes any scale work, its floors do not.
        scale = binary_scale(peaks, MIN_ABS_INPUT)
        if bool((scale != 1).any()):
            csi = csi / scale.to(csi.real.dtype).view(-1, 1, 1, 1)  # (an integer window's peak is never that small)
        gen = torch.Generator().manual_seed(seed)
        mask, front = self.prediction_mask(csi.shape, mask_kind, ratio, generator=gen)  # the whole batch's draw
        # Samples are independent: chunks keep memory bounded (about 0.8 MB a [16, 3, 30] window).
        rows = max(1, PREDICT_VALUES // max(1, csi[0].numel()))
        parts = [self._predict_chunk(csi[a:a + rows], mask[a:a + rows], front, mask_kind, ratio, guard)
                 for a in range(0, csi.shape[0], rows)]
        recon, elem, nmse = (torch.cat(x) for x in zip(*parts))
        if bool((scale != 1).any()):
            recon = recon * scale.to(recon.real.dtype).view(-1, 1, 1, 1)
        return MAEPrediction(recon, elem, nmse, to_db(nmse.mean()))

    def _predict_chunk(self, csi: Tensor, mask: Tensor, front: tuple[int, int, int], mask_kind: str, ratio: float,
                       guard: bool) -> tuple[Tensor, Tensor, Tensor]:
        """``predict`` of some samples with their part of the batch's mask: ``(reconstruction, mask, nmse)``."""
        fitted = self.backtest(csi.to(torch.complex64), mask_kind, ratio) if guard else None
        out = self(csi, mask, front) if fitted is None else self(csi, mask, front, *fitted)
        elem_full = unpatchify(out.mask[..., None].expand_as(out.target).float(), out.grid, self.patch_size).real > 0.5
        (t0, t), (a0, a), (k0, k) = out.crop
        elem = elem_full[:, t0:t0 + t, a0:a0 + a, k0:k0 + k]
        # The visible part is the input itself, bit for bit (not divided and re-multiplied).
        recon = torch.where(elem, self.reconstruct(out), csi.to(torch.complex64))
        return recon, elem, out.nmse

    # ------------------------------------------------------------------ accounting
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward_flops(self, grid: Grid, num_masked: int) -> int:
        """Matmul FLOPs of one forward pass for one sample (see module docstring)."""
        n = math.prod(grid)
        nv = n - num_masked
        d, dd, p = self.dim, self.decoder_dim, self.patch_dim

        def block(tokens: int, width: int) -> int:
            hidden = int(width * self.mlp_ratio)
            proj = 2 * tokens * (4 * width * width)  # qkv + out
            attn = 2 * 2 * tokens * tokens * width  # scores + weighted values
            mlp = 2 * tokens * 2 * width * hidden
            return proj + attn + mlp

        flops = 2 * n * p * d  # patch embedding (all tokens, before the gather)
        flops += len(self.blocks) * block(nv, d)
        flops += 2 * nv * d * dd
        flops += len(self.decoder_blocks) * block(n, dd)
        flops += 2 * n * dd * p
        return flops

    def compile_blocks(self, **kwargs) -> None:
        """``torch.compile`` each transformer block in place ("regional" compilation).

        Compiling blocks rather than the whole model keeps compile time short, lets every block
        share one compiled graph, and leaves the data-dependent masking/gather code eager.
        Parameter names (and so checkpoints) are unchanged.
        """
        for blk in [*self.blocks, *self.decoder_blocks]:
            blk.compile(**kwargs)


def _mae(size: dict, overrides: dict) -> MaskedAutoencoder:
    """A size's defaults; any ``MaskedAutoencoder`` argument in ``overrides`` wins."""
    return MaskedAutoencoder(**{"num_heads": 8, "mlp_ratio": 2.0, "decoder_depth": 4, **size, **overrides})


@register_model
def mae_tiny(**kwargs) -> MaskedAutoencoder:
    return _mae(dict(dim=64, depth=6), kwargs)


@register_model
def mae_little(**kwargs) -> MaskedAutoencoder:
    return _mae(dict(dim=128, depth=6), kwargs)


@register_model
def mae_small(**kwargs) -> MaskedAutoencoder:
    return _mae(dict(dim=256, depth=6), kwargs)


@register_model
def mae_base(**kwargs) -> MaskedAutoencoder:
    return _mae(dict(dim=512, depth=6), kwargs)


@register_model
def mae_large(**kwargs) -> MaskedAutoencoder:
    return _mae(dict(dim=768, depth=8), kwargs)
