"""Causal multi-task forecaster over univariate wireless series (after Sheng et al., arXiv 2507.05938).

One model forecasts any univariate series, whatever its kind (CSI real/imag parts, AoA,
distance, traffic) or sampling interval, in the style of TimesFM / Moirai / nanoGPT:

1. **Per-series normalisation.** ``loc``/``scale`` = mean/std of the *observed context*
   (float64, NaN-free; a constant series gets ``scale = eps * max(1, |loc|)``), so the model
   sees unit-scale inputs and forecasts are mapped back: ``forecast(a x + b) = a forecast(x) + b``.
2. **Patch tokens.** The series is left-padded to a multiple of ``patch_len``; each patch
   becomes ``Linear([values * observed, observed])`` (the mask tells padding from zeros, as
   in TimesFM), so any context length ``L >= 1`` works.
3. **Granularity embedding.** A sinusoidal code of ``log10(interval_s)`` through a small MLP is
   added to every token: one model serves 1 ms CSI and 10 min traffic.
4. **Decoder-only transformer** with rotary position codes (relative, so left padding does not
   shift them) and causal attention that also hides padded keys (pre-norm blocks, SDPA with
   ``is_causal=True``: padded tokens are sorted behind the valid ones, no mask is built).
5. **Next-patch head.** Token ``i`` predicts patch ``i + 1`` as a damped trend of patch ``i``
   (last value + gate x mean step x steps ahead, the gate learned per token) plus a learned
   residual: a point forecast (squared error in normalised space, Huber beyond a few units)
   and optionally quantiles (pinball loss).
   Building in the trend matters for the smooth series of mobility.
   Optionally (``horizon_patches=K``) each token predicts the next ``K`` patches directly, and
   ``forecast`` advances ``K`` patches per step (fewer, faster autoregressive steps).

6. **Prior-anchored mix and long context** (``prior="mix"``, new models; configs without the
   key load as ``prior="trend"``, the model above). Every forecast is a classical estimate from
   the visible values plus a learned correction: last value, context mean, half-damped trend and
   seasonal naive of a day and a week (where the context holds one), optionally a least-squares
   line, the AR(1) ``reversion`` and the means of the last 16 / 64 / 256 values, mixed by a softmax gate
   whose logits are ``-backtest_weight x log(backtest MSE)`` of each estimator on the same
   context plus a learned linear map of the token (:func:`classical_priors`,
   :func:`backtest_mse`); the estimators' next patch and backtest errors are embedded into every
   token. Normalisation and priors use the whole context; the transformer sees the last
   ``max_context`` values as patches and up to ``max_coarse`` coarse tokens of ``coarse_len``
   older values each (with ``coarse_blend``, ``forecast`` averages its readings with and without
   them). ``guard=True`` also falls back from the network to the classical mix where
   the context shows the network losing. A zero head reproduces the prior exactly.

Training draws random left padding (random context lengths) so that short contexts work, and
scores the next-patch predictions of the horizon after each window's context (normalised by
that context only, so no statistic of the targets leaks into the inputs); see
:meth:`CausalForecaster.loss`. ``forecast`` is autoregressive over patches: each predicted
patch is appended as observed input until the horizon is covered (batched, no grad).

Sizes (``create_model(name)``; parameters measured by ``tests/test_causal.py``):

=============  =====  =====  =====  =========  ==========
name           width  depth  heads  patch_len  parameters
=============  =====  =====  =====  =========  ==========
causal_tiny       64      4      4          8     211,209
causal_little    128      6      8         16   1,231,633
causal_small     256      8      8         16   6,467,601
causal_base      512     12      8         32  38,414,369
=============  =====  =====  =====  =========  ==========

Complex CSI enters as two real series (real and imaginary part; ``complex_mode="real_imag"``
of :class:`wfm.data.series.SeriesWindows`). The complex attention kernels are not wired in
here: ``attention`` accepts only ``"sdpa"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import Attention
from torch import Tensor, nn

from wfm.hub_mixin import WfmHubMixin, causal_arch  # huggingface_hub's ModelHubMixin with wfm's checks
from wfm.models import box_cox as boxcox  # (the module: `box_cox` is also the option's name)
from wfm.models.groups import pool_rows
from wfm.models.registry import register_model
from wfm.nn.blocks import Block, rename_legacy_mlp_keys

#: Training targets are clipped at this many context stds (see ``CausalForecaster.loss``).
TARGET_CLIP = 50.0
#: The training loss is squared error up to this many (scaled) units, linear beyond.
HUBER_DELTA = 5.0
#: Classical estimators a ``prior="mix"`` model mixes (see :func:`classical_priors`).
ESTIMATORS = ("last", "mean", "trend", "linear", "day", "week", "reversion", "mean16", "mean64", "mean256")
#: The windowed means among ``ESTIMATORS`` and their windows in values.
RECENT_MEANS = {"mean16": 16, "mean64": 64, "mean256": 256}
#: The default mix (the released models'): ``reversion`` is opt-in until a model ships with it.
DEFAULT_ESTIMATORS = ("last", "mean", "trend", "linear", "day", "week")
DAY_S, WEEK_S = 86_400.0, 604_800.0
#: The skill loss' floor on the classical error, relative to the targets' power (as the MAE's).
SKILL_FLOOR = 1e-3
#: ``check_origins``: the classical combination replaces the network only where the network's
#: extra squared error on the checks is significant at the level of this many normal standard
#: errors (one-sided, ~2.3 %), in Student-t terms for the number of checks (``_T_AT_Z2`` holds them).
CHECK_Z = 2.0
#: ``white_limit``: standard errors the whiteness score must stay below the limit by, and the
#: fewest lag-1 products that may decide. A lone series of 8 or 16 values (7 or 15 products, a
#: standard error of 0.3-0.5) never decides: on the real CSI series alone it moved 0.04-0.17 dB
#: either way (pretrain/README.md, "White noise where no check fits"); a window of hundreds of
#: channels pooling theirs has thousands.
WHITE_Z = 1.0
WHITE_MIN_PAIRS = 64
#: Pseudo-count of the backtest error's prior value (1 = the context's variance), see :func:`backtest_mse`.
BACKTEST_PRIOR = 1.0


#: The Student-t quantiles at the level of ``CHECK_Z = 2`` (one-sided 97.72 %) for 1..10 degrees of
#: freedom (``scipy.stats.t.ppf(norm.cdf(2), dof)``); beyond, ``check_threshold``'s expansion.
_T_AT_Z2 = (13.968, 4.527, 3.307, 2.869, 2.649, 2.517, 2.429, 2.366, 2.320, 2.284)


def check_threshold(dof: Tensor) -> Tensor:
    """How many standard errors the network's extra error must reach for ``check_origins`` to
    replace it: the Student-t quantile at the level of ``CHECK_Z`` with ``dof`` degrees of freedom
    (tabulated up to 10, then the Cornish-Fisher expansion, within 0.2 % there)."""
    v = dof.double().clamp_min(1.0)
    z = CHECK_Z
    series = z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v * v)
    table = torch.tensor(_T_AT_Z2, dtype=torch.float64, device=v.device)
    return torch.where(v <= len(_T_AT_Z2), table[(v.round().long() - 1).clamp(0, len(_T_AT_Z2) - 1)], series)


def exceeds_noise(total: Tensor, total_sq: Tensor, count: Tensor) -> Tensor:
    """One-sided paired t-test from sums: whether the mean of ``count`` differences (their sum
    ``total`` and sum of squares ``total_sq``) exceeds ``check_threshold(count - 1)`` standard
    errors. Fewer than two differences show nothing (False); with no spread, any positive mean
    passes. Elementwise over rows; the rule of ``check_origins`` and of
    ``wfm.tasks.significance.beats_beyond_noise``."""
    n = count.to(torch.float64)
    mean = total / n.clamp_min(1.0)
    sd = ((total_sq - n * mean * mean) / (n - 1).clamp_min(1.0)).clamp_min(0.0).sqrt()
    return (n >= 2) & (mean > check_threshold(n - 1) * sd / n.clamp_min(1.0).sqrt())


def first_observed(observed: Tensor) -> Tensor:
    """Index ``[B]`` of each row's first observed value (the row length when there is none)."""
    length = observed.shape[1]
    idx = torch.arange(length, device=observed.device)
    return torch.where(observed, idx, length).min(dim=1).values


def classical_priors(z: Tensor, observed: Tensor, interval: Tensor, patch_len: int, ahead: int,
                     estimators: tuple[str, ...] = DEFAULT_ESTIMATORS, every_value: bool = False) -> tuple[Tensor, Tensor]:
    """Classical forecasts made at the end of every patch of ``z`` ``[B, L]`` (``L = N * patch_len``).

    Returns ``(est [B, N, E, ahead], avail [B, N, E])``: estimator ``e`` made at origin
    ``o = (j + 1) * patch_len - 1`` (the last value of patch ``j``) for positions
    ``o + 1 .. o + ahead``, from the observed values at positions ``<= o`` only (left padding
    only: ``observed`` is False before each row's first value). ``every_value``: origins at every
    position instead (``o = j``, ``N = L``; the backtest of :func:`backtest_mse_values`), with the
    same ``patch_len``-value span for ``trend`` and ``linear``:

    - ``last``: ``z[o]`` (persistence); ``mean``: mean of every observed value up to ``o``;
    - ``mean16`` / ``mean64`` / ``mean256``: mean of the observed values among the last 16 / 64 /
      256 up to ``o``, available once the context holds that many (the level of a drifting
      series: a longer context never forces an older level on the mix, the recent ones stay);
    - ``reversion``: the AR(1) forecast around that mean, ``mean + phi^h (z[o] - mean)``, with
      ``phi`` (clipped to [0, 1]) the lag-1 autocorrelation of the observed values' deviations
      from the mean up to ``o``: the mean for noise around a level, the last value for a
      random walk, and in between for a mean-reverting series (a still WiFi link at 100 ms);
    - ``trend``: ``z[o] + 0.5 * h * slope`` (half-damped trend, slope over the last patch);
    - ``linear``: the least-squares line through the observed values of the last patch,
      extrapolated undamped (smooth motion: distance, bearing, AoA of a moving user);
    - ``day`` / ``week``: seasonal naive, ``z[o + h - T ceil(h / T)]`` with ``T`` = one day /
      week of steps (``round(86400 / interval)``); available only where the context holds a
      full period (``o + 1 - T >= first observed``) and ``T >= 2``.

    Unavailable estimates hold ``last`` (finite; a mix gives them weight 0).
    """
    b, length = z.shape
    p, dev = patch_len, z.device
    zm = z * observed.to(z.dtype)
    o = torch.arange(length, device=dev) if every_value else torch.arange(p - 1, length // p * p, p, device=dev)  # [N]
    n = o.numel()
    first = first_observed(observed)  # [B]
    seen = o[None] >= first[:, None]  # [B, N]
    hi = torch.arange(1, ahead + 1, device=dev)  # [H]
    last = zm[:, o]
    if "mean" in estimators or "reversion" in estimators:  # shared running sums up to every origin
        obs = observed.to(z.dtype)
        count = obs.cumsum(dim=1)[:, o]
        total = zm.cumsum(dim=1)[:, o]
        mean = total / count.clamp_min(1.0)
    if any(name in RECENT_MEANS for name in estimators):  # running sums with a leading zero, in
        csum = F.pad(zm.double().cumsum(dim=1), (1, 0))  # float64: differences of long sums
        cobs = F.pad(observed.double().cumsum(dim=1), (1, 0))
    ests, avails = [], []
    for name in estimators:
        if name == "last":
            e, a = last[..., None].expand(b, n, ahead), seen
        elif name == "mean":
            e, a = mean[..., None].expand(b, n, ahead), seen
        elif name == "reversion":
            mu = mean
            pair = F.pad(obs[:, 1:] * obs[:, :-1], (1, 0))  # [B, L]: z[t] and z[t - 1] both observed
            prev = F.pad(zm[:, :-1], (1, 0))
            lag = (zm * prev * pair).cumsum(dim=1)[:, o]
            psum = ((zm + prev) * pair).cumsum(dim=1)[:, o]
            npair = pair.cumsum(dim=1)[:, o]
            cov = lag - mu * psum + npair * mu * mu
            var = (zm * zm).cumsum(dim=1)[:, o] - 2 * mu * total + count * mu * mu
            phi = (cov / var.clamp_min(1e-9)).clamp(0.0, 1.0)
            phi = torch.where(var > 1e-9, phi, torch.ones_like(phi))  # a constant context: hold it
            e = mu[..., None] + phi[..., None] ** hi.to(z.dtype) * (last - mu)[..., None]
            a = seen
        elif name in RECENT_MEANS:
            w = RECENT_MEANS[name]
            lo = (o - w + 1).clamp_min(0)
            tot, cnt = csum[:, o + 1] - csum[:, lo], cobs[:, o + 1] - cobs[:, lo]
            e = (tot / cnt.clamp_min(1.0)).to(z.dtype)[..., None].expand(b, n, ahead)
            a = (o[None] - w + 1 >= first[:, None]) & (cnt > 0)  # a full window: else it is ``mean``
        elif name == "trend":
            s = torch.maximum(o[None] - (p - 1), first[:, None]).clamp(0, length - 1)  # [B, N]
            span = (o[None] - s).clamp_min(1).to(z.dtype)
            slope = torch.where(o[None] > s, (last - zm.gather(1, s)) / span, torch.zeros_like(last))
            e, a = last[..., None] + 0.5 * slope[..., None] * hi.to(z.dtype), seen
        elif name == "linear":
            win = o[:, None] - (p - 1) + torch.arange(p, device=dev)  # [N, P]: the span ending at o
            w = observed.gather(1, win.clamp_min(0).view(1, -1).expand(b, -1)).view(b, n, p)
            w = (w & (win >= 0)[None]).to(z.dtype)
            zp = zm.gather(1, win.clamp_min(0).view(1, -1).expand(b, -1)).view(b, n, p) * w
            i = torch.arange(p, device=dev, dtype=z.dtype)
            sw = w.sum(-1).clamp_min(1.0)
            im, zmean = (w * i).sum(-1) / sw, (w * zp).sum(-1) / sw
            di = (i - im[..., None]) * w
            var = (di * (i - im[..., None])).sum(-1)
            slope = (di * (zp - zmean[..., None])).sum(-1) / var.clamp_min(1e-9)
            slope = torch.where(var > 0, slope, torch.zeros_like(slope))
            end = zmean + slope * (p - 1 - im)
            e, a = end[..., None] + slope[..., None] * hi.to(z.dtype), seen & (w.sum(-1) >= 2)
        elif name in ("day", "week"):
            period = torch.round((DAY_S if name == "day" else WEEK_S) / interval.double().clamp_min(1e-9))
            period = period.clamp(max=2.0 ** 40).long().to(dev)  # [B]
            t = period[:, None, None]
            idx = o[None, :, None] + hi[None, None] - t * ((hi[None, None] + t - 1) // t)  # [B, N, H]
            a = (period[:, None] >= 2) & (o[None] + 1 - period[:, None] >= first[:, None])
            e = zm.gather(1, idx.clamp(0, length - 1).view(b, -1)).view(b, n, ahead)
        else:
            raise ValueError(f"unknown estimator {name!r}; choose from {ESTIMATORS}")
        a = a & seen
        ests.append(torch.where(a[..., None], e, last[..., None].expand(b, n, ahead)))
        avails.append(a)
    return torch.stack(ests, dim=2), torch.stack(avails, dim=2)


def backtest_mse(z: Tensor, observed: Tensor, est: Tensor, avail: Tensor, patch_len: int, window: int = 0,
                 limit: Tensor | None = None) -> Tensor:
    """Each estimator's mean squared error on its own past forecasts, as known at every origin.

    ``est``/``avail`` as from :func:`classical_priors` on ``z`` ``[B, L]``. Returns ``[B, N, E, H]``:
    at origin ``i``, the mean over earlier origins ``j`` whose targets are all observed by then
    (``j + ceil(H / patch_len) <= i``) of ``(est[j, e, h] - z[o_j + h])^2``, per step ahead ``h``,
    shrunk towards 1 (the context's variance) with ``BACKTEST_PRIOR`` pseudo-counts. ``window > 0``:
    only the latest ``window`` realised origins count (recent behaviour; 0: all of them).
    ``limit`` ``[B]``: only targets before this position count (the context: values appended by
    an autoregressive rollout, or teacher-forced in training, are not evidence).
    """
    b, n, e, ahead = est.shape
    length, p = z.shape[1], patch_len
    o = torch.arange(p - 1, n * p, p, device=z.device)
    tpos = o[:, None] + torch.arange(1, ahead + 1, device=z.device)  # [N, H]
    inside = (tpos < length)[None]
    flat = tpos.clamp(max=length - 1).reshape(1, -1).expand(b, -1)
    tgt = z.gather(1, flat).view(b, n, ahead)
    tobs = observed.gather(1, flat).view(b, n, ahead) & inside
    if limit is not None:
        tobs = tobs & (tpos[None] < limit.view(-1, 1, 1))
    valid = (avail[..., None] & tobs[:, :, None]).to(z.dtype)  # [B, N, E, H]
    err = (est - tgt[:, :, None]).clamp(-TARGET_CLIP, TARGET_CLIP) ** 2 * valid
    k = -(-ahead // p)
    total = F.pad(err.cumsum(dim=1), (0, 0, 0, 0, k, 0))[:, :n]
    count = F.pad(valid.cumsum(dim=1), (0, 0, 0, 0, k, 0))[:, :n]
    if window > 0:
        total = total - F.pad(total, (0, 0, 0, 0, window, 0))[:, :n]
        count = count - F.pad(count, (0, 0, 0, 0, window, 0))[:, :n]
    return (total + BACKTEST_PRIOR) / (count + BACKTEST_PRIOR)


def backtest_mse_values(z: Tensor, observed: Tensor, interval: Tensor, patch_len: int, ahead: int,
                        estimators: tuple[str, ...], window: int = 0, limit: Tensor | None = None) -> Tensor:
    """:func:`backtest_mse` with a forecast origin at every value instead of every patch end.

    Same result layout, ``[B, N, E, H]`` at the patch ends ``o_i``: the mean over earlier origins
    ``j`` (any position, ``j + h <= o_i``) of each estimator's squared error ``h`` steps ahead,
    shrunk towards 1 with ``BACKTEST_PRIOR`` pseudo-counts. A token then has evidence from its own
    patch: with 8 values of context (the first token) the one-step errors of 7 origins tell noise
    around a level (the mean wins) from a random walk (the last value wins), where the patch-level
    backtest has none. ``window > 0``: the latest ``window`` patches of origins; ``limit`` as in
    :func:`backtest_mse`.
    """
    b, length = z.shape
    p, dev = patch_len, z.device
    est, avail = classical_priors(z, observed, interval, p, ahead, estimators, every_value=True)  # [B, L, E, H]
    hi = torch.arange(1, ahead + 1, device=dev)
    tpos = torch.arange(length, device=dev)[:, None] + hi  # [L, H]
    flat = tpos.clamp(max=length - 1).reshape(1, -1).expand(b, -1)
    tgt = z.gather(1, flat).view(b, length, ahead)
    tobs = observed.gather(1, flat).view(b, length, ahead) & (tpos < length)[None]
    if limit is not None:
        tobs = tobs & (tpos[None] < limit.view(-1, 1, 1))
    valid = (avail[..., None] & tobs[:, :, None]).to(z.dtype)
    err = (est - tgt[:, :, None]).clamp(-TARGET_CLIP, TARGET_CLIP) ** 2 * valid
    total, count = F.pad(err.cumsum(dim=1), (0, 0, 0, 0, 1, 0)), F.pad(valid.cumsum(dim=1), (0, 0, 0, 0, 1, 0))
    o = torch.arange(p - 1, length // p * p, p, device=dev)  # patch ends
    e = est.shape[2]

    def upto(last_origin: Tensor) -> tuple[Tensor, Tensor]:  # sums over origins j <= last_origin [N, H]
        idx = (last_origin + 1).clamp_min(0)[None, :, None, :].expand(b, -1, e, -1)  # +1: the leading zero row
        return total.gather(1, idx), count.gather(1, idx)

    end = o[:, None] - hi  # the latest origin whose h-step target is known at o
    t, c = upto(end)
    if window > 0:
        t0, c0 = upto(end - window * p)
        t, c = t - t0, c - c0
    # Long steps ahead have few realised origins in a short context (none 8 steps ahead of 8 values):
    # shrink each step's error towards the estimator's error pooled over all steps, and that
    # towards 1, so the ranking of estimators carries over to every step ahead.
    pooled = (t.sum(dim=-1, keepdim=True) + BACKTEST_PRIOR) / (c.sum(dim=-1, keepdim=True) + BACKTEST_PRIOR)
    return (t + BACKTEST_PRIOR * pooled) / (c + BACKTEST_PRIOR)


def pool_by_group(x: Tensor, group: Tensor) -> Tensor:
    """Geometric mean of positive ``x`` ``[B, ...]`` over the rows sharing a ``group`` id ``[B]``.

    The channels of one window (the subcarriers and antennas of a CSI capture, the beams of a
    codebook) share their dynamics: whether a level holds (the mean wins) or drifts (the last
    value wins). Eight values of one series say little about that; a few hundred channels of
    the same eight packets say much more. Geometric, because the gate uses ``log`` errors and one
    wild channel must not outvote the rest."""
    if group.shape != x.shape[:1]:
        raise ValueError(f"group must be [B] = [{x.shape[0]}], got shape {tuple(group.shape)}")
    _, inv = torch.unique(group, return_inverse=True)
    flat = x.clamp_min(1e-12).log().reshape(x.shape[0], -1)
    total = flat.new_zeros(int(inv.max()) + 1, flat.shape[1]).index_add_(0, inv, flat)
    count = torch.bincount(inv).to(flat.dtype)[:, None]
    return (total / count)[inv].reshape(x.shape).exp()


def whiteness_bound(context: Tensor, group: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(bound [B], pairs [B])``: how far a row's (or its group's pooled) context ``[B, L]`` is
    from white noise around its mean, by its lag-1 autocorrelation, plus ``WHITE_Z`` standard errors.

    ``phi`` = the sum of lag-1 products of the deviations from each row's mean over their sum of
    squares. At ``L`` values its expectation is about ``-1 / L`` for white noise and exactly
    ``1 - 3 / L`` for a straight line, so ``u = (phi + 1 / L) / (1 - 2 / L)`` puts them at 0 and 1.
    ``bound = u + WHITE_Z / sqrt(pairs) / (1 - 2 / L)``, ``pairs`` the lag-1 products pooled
    (``L - 1`` per row, as if independent). Needs ``L >= 3``."""
    length = context.shape[1]
    if length < 3:
        raise ValueError(f"whiteness needs at least 3 values of context, got {length}")
    x = context.double()
    dev = x - x.mean(dim=1, keepdim=True)
    lag, power = (dev[:, 1:] * dev[:, :-1]).sum(dim=1), (dev * dev).sum(dim=1)
    pairs = torch.full_like(lag, float(length - 1))
    if group is not None:
        lag, power, pairs = (pool_rows(v, group) for v in (lag, power, pairs))
    phi = torch.where(power > 0, lag / power.clamp_min(1e-300), 0.0)
    scale = 1.0 - 2.0 / length
    return (phi + 1.0 / length) / scale + WHITE_Z * pairs.rsqrt() / scale, pairs


def looks_white(context: Tensor, limit: float, group: Tensor | None = None) -> Tensor:
    """``[B]`` bool, ``CausalForecaster(white_limit=limit)``'s test: a row's (or its group's pooled)
    context ``[B, L]`` is white noise around its mean where :func:`whiteness_bound` is at most
    ``limit`` from at least ``WHITE_MIN_PAIRS`` lag-1 products. Fewer than 3 values: never."""
    if context.shape[1] < 3:
        return torch.zeros(context.shape[0], dtype=torch.bool, device=context.device)
    bound, pairs = whiteness_bound(context, group)
    return (bound <= limit) & (pairs >= WHITE_MIN_PAIRS)


def group_sizes(group: Tensor) -> Tensor:
    """How many rows share each row's ``group`` id ``[B]``: ``[B]`` (long)."""
    _, inv = torch.unique(group, return_inverse=True)
    return torch.bincount(inv)[inv]


@dataclass
class CausalOutput:
    """Result of :meth:`CausalForecaster.forward`: next-patch predictions in normalised space.

    ``point`` is ``[B, N, P]`` (token ``i`` predicts patch ``i + 1``), ``quantiles`` is
    ``[B, N, P, Q]`` or ``None``; ``ahead`` is ``[B, N, K, P, 1 + Q]``: every output of the
    direct multi-patch head (patches ``i + 1 .. i + K``; point first, then the quantiles);
    ``loc``/``scale`` are ``[B, 1]`` (the normalisation). ``fallback`` (``guard=True`` models):
    ``ahead``'s layout for the guard's classical combination alone (the quantiles shifted with it),
    computed in the same pass; what ``check_origins`` compares the network against.
    """

    point: Tensor
    quantiles: Tensor | None
    ahead: Tensor
    loc: Tensor
    scale: Tensor
    fallback: Tensor | None = None


def normalise_stats(values: Tensor, observed: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Mean and std over the ``observed`` entries of each row of ``values`` ``[B, L]``; ``[B, 1]`` each.

    Computed in float64 so large offsets (distances of hundreds of metres) lose no precision;
    rows with a single value or a constant value get ``scale = eps * max(1, |loc|)``.
    """
    v, m = values.double(), observed.double()
    n = m.sum(dim=1, keepdim=True).clamp_min(1.0)
    loc = (v * m).sum(dim=1, keepdim=True) / n
    var = (((v - loc) * m) ** 2).sum(dim=1, keepdim=True) / n
    floor = eps * loc.abs().clamp_min(1.0)
    scale = torch.maximum(var.sqrt(), floor)
    return loc.float(), scale.float()


def interval_features(interval: Tensor, num: int) -> Tensor:
    """Sinusoidal code ``[B, 2 num + 1]`` of ``log10(interval)``: periods from 0.25 to 64 decades."""
    x = torch.log10(interval.float().clamp_min(1e-9))[:, None]
    freqs = 2 * math.pi / (0.25 * 2.0 ** torch.arange(num, device=x.device, dtype=torch.float32))
    return torch.cat([x / 4.0, torch.sin(x * freqs), torch.cos(x * freqs)], dim=1)


def rotary_angles(pos: Tensor, head_dim: int) -> tuple[Tensor, Tensor]:
    """``(cos, sin)`` ``[..., head_dim / 2]`` (float32) of the rotary code at integer positions ``pos``."""
    half = head_dim // 2
    inv = 1.0 / (10000 ** (torch.arange(half, device=pos.device, dtype=torch.float32) / half))
    ang = pos.float()[..., None] * inv  # [..., D/2]
    return ang.cos(), ang.sin()


def rotary(x: Tensor, pos: Tensor | None = None, angles: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Rotary position code on ``x`` ``[B, H, N, D]`` at integer positions ``pos`` ``[N]``, or with
    precomputed ``angles`` (``rotary_angles``, broadcastable to ``[B, H, N, D/2]``: per-row positions)."""
    half = x.shape[-1] // 2
    cos, sin = angles if angles is not None else rotary_angles(pos.to(x.device), x.shape[-1])
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class CausalSelfAttention(Attention):
    """timm's ``Attention`` (fused QKV, SDPA) with rotary codes on q and k, always causal.

    A timm ``attn_layer``. ``rope``: the ``(cos, sin)`` of each token's position (``[B, 1, N, D/2]``,
    from ``rotary_angles``), default positions ``0 .. N-1``. ``attn_mask`` ``None``: plain causal
    attention, SDPA with ``is_causal=True`` (FlashAttention on a GPU); otherwise the mask is used as
    given and must already be causal (no ``CausalForecaster`` passes one: see its ``_run_blocks``).
    timm's ``is_causal`` argument is accepted and ignored.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, **kwargs) -> None:
        if dim % num_heads or (dim // num_heads) % 2:
            raise ValueError(f"width {dim} must split into {num_heads} heads of even size")
        super().__init__(dim, num_heads=num_heads, qkv_bias=qkv_bias, **kwargs)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = True,
                rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is None:
            rope = rotary_angles(torch.arange(n, device=x.device), self.head_dim)
        q, k = rotary(q, angles=rope), rotary(k, angles=rope)
        drop = self.attn_drop.p if self.training else 0.0
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
        y = self.norm(y.transpose(1, 2).reshape(b, n, self.attn_dim))
        return self.proj_drop(self.proj(y))


class CausalBlock(Block):
    """timm's pre-norm ``Block`` (``wfm.nn.blocks.Block``) with ``CausalSelfAttention`` and timm's
    ``Mlp``: ``blk(x, attn_mask)``. ``drop_path``/``init_values``: stochastic depth and LayerScale,
    as in timm (off by default).

    State dicts of the pre-timm block (an ``nn.Sequential`` MLP: ``mlp.0``/``mlp.2``) load through
    a load hook that renames them to ``mlp.fc1``/``mlp.fc2`` (``rename_legacy_mlp_keys``).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float = 0.0,
                 init_values: float | None = None) -> None:
        super().__init__(dim, num_heads, mlp_ratio, drop_path=drop_path, init_values=init_values,
                         attn_layer=CausalSelfAttention)
        self.register_load_state_dict_pre_hook(CausalBlock._rename_legacy_keys)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False,
                rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """timm's ``Block.forward``, passing the tokens' rotary ``rope`` to the attention."""
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask, rope=rope)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))

    @staticmethod
    def _rename_legacy_keys(module: nn.Module, state_dict: dict, prefix: str, *_) -> None:
        rename_legacy_mlp_keys(state_dict, prefix)


class CausalForecaster(nn.Module, WfmHubMixin):
    """Decoder-only patch transformer for univariate series; see the module docstring.

    Args:
        patch_len: values per token (input and output patch).
        dim, depth, num_heads, mlp_ratio: transformer width, blocks, heads, MLP expansion.
        quantiles: levels of an optional quantile head (e.g. ``(0.1, 0.5, 0.9)``); empty: point only.
        horizon_patches: patches each token predicts directly (``K``); ``forecast`` then advances
            ``K`` patches per autoregressive step (1: pure next-patch).
        max_context: longest context the model reads (older values are dropped by ``forecast``).
        interval_freqs: sinusoids in the granularity code.
        attention: ``"sdpa"`` only (kept for config symmetry with the MAE).
        eps: relative floor of the normalisation scale.
        prior: what the head corrects. ``"trend"`` (the default, and every model saved before
            this option existed): the damped trend of the token's own patch with a learned gate.
            ``"mix"``: a learned softmax gate over the classical ``estimators`` computed from all
            visible values (:func:`classical_priors`); the gate's logits are a linear map of the
            token's features plus ``backtest_weight x -log(backtest MSE)`` of each estimator
            (:func:`backtest_mse`), so a fresh model is the inverse-MSE (Bates-Granger)
            combination. The estimators' next patch, their backtest errors and availability are
            embedded and added to each token (the network sees the prior as input). A zero head
            reproduces the mix exactly.
        estimators: estimators of the ``"mix"`` prior (subset of ``ESTIMATORS``; default
            ``DEFAULT_ESTIMATORS``, the six of the models saved before ``reversion`` and the
            windowed means; the shipped ``causal-tiny-catalog-cpu`` uses all ten).
        backtest_weight: initial weight of ``-log(backtest MSE)`` in the gate (learned).
        backtest_window: origins (patches) the backtest MSE averages over, the latest (0: all).
        backtest_origins: ``"patch"`` (every model saved before this option): the backtest scores
            forecasts made at patch ends (:func:`backtest_mse`), so the first token has no evidence;
            ``"value"``: forecasts made at every value (:func:`backtest_mse_values`), so 8 values
            of context already tell noise around a level from a random walk.
        guard: with ``prior="mix"``, blend the network's forecast with the classical combination
            (the backtest-weighted mix without the learned gate term or correction) by their
            realised errors on earlier tokens of the same context: ``classical + a (network -
            classical)`` with ``a = sigmoid(s (log mse_classical - log mse_network) + c)`` (``s``,
            ``c`` learned), so where the context shows the network losing to the classical
            combination, the forecast falls back to it; more context, more evidence. Backtests
            then count only targets inside the context.
        evidence_power: with ``prior="mix"``, rows that pool their evidence (``group``) weigh it
            ``G ** evidence_power`` times as sharply, ``G`` the rows in the group (learned, from this
            initial value; ``None``, every model saved before this option: ``G`` does not matter).
            Under Gaussian errors the log-likelihood of an estimator grows with the number of
            errors checked, so a window of 484 CSI channels can trust its evidence far more than
            one series; correlated channels make the true exponent less than 1. The gate's
            ``backtest_weight``, the guard's classical combination and the guard's evidence all scale.
        guard_weight: the evidence weight of the guard's classical combination, fixed (``None``,
            every model saved before this option: the gate's learned ``backtest_weight``, which
            training drifts from 4.0 towards 1 and so makes the fallback itself a soft mix).
        check_origins: with ``guard=True``, ``forecast`` first backtests the network against its
            classical combination (the guard's fallback) on the end of the context: from up to this
            many of the latest origins (:meth:`check_cuts`), each forecasts the ``horizon`` values
            that followed it from the values before it alone (normalised on them, nothing later
            seen). A row, or a group pooling its evidence, takes the classical combination's
            forecast where a paired t-test says the network erred more beyond doubt
            (:meth:`_network_passes_check`), and keeps the network's otherwise. Unlike the guard's
            evidence (the in-context tokens, whose inputs are normalised with the whole context,
            later values included), these checks see only the past, as the forecast does. 0 (every
            model saved before this option): no check. Costs ``check_origins + 1`` rollouts of
            both forecasts instead of one of the network's (their first step is one pass); a context with fewer than two checks keeps the network.
        white_limit: with ``check_origins``, where the context is too short for two checks (the
            8-packet CSI windows of ``wfm benchmark real``), a row or pooled group whose context
            looks like white noise around its mean gets the context mean instead of the network
            (:func:`looks_white`): its lag-1 autocorrelation, scaled so that white noise scores 0
            and a straight line 1 at that length, must lie below the limit by ``WHITE_Z``
            standard errors, with at least ``WHITE_MIN_PAIRS`` lag-1 products pooled (a window's
            channels, not one short series). For white noise around a level nothing beats the mean.
            ``0.5``: closer to white noise than to a line. ``None`` (every model saved before this
            option): the network.
        box_cox: ``forecast`` forecasts each non-negative row (or group) in Box-Cox space, with
            the exponent its context chooses by Guerrero's method
            (:func:`wfm.models.box_cox.guerrero_lambda`: ``log`` for a series whose changes grow
            with its level, such as cell traffic; no transform for one whose changes do not, such
            as an angle), and transforms the forecast and its quantiles back. False (every model
            saved before this option): the series as given. Inference only.
        coarse_blend: where the context reaches the transformer partly as coarse tokens, ``forecast``
            returns the mean of the network's two readings of it: with the coarse tokens, and
            without them (the last ``max_context`` values as tokens; the priors and the
            normalisation see every value in both), each checked against the classical
            combination on its own (``check_origins``). Coarse tokens help on some series
            (2-minute traffic with a day of context) and hurt on others (CSI at 100 ms past 256
            values, whose long past the pretraining never showed); the mean of the two readings is
            never far from the better one and often beats both. False (every model saved before
            this option): coarse tokens wherever the context has them. Inference only; skipped with
            ``check=False``.
        coarse_len: with ``prior="mix"``, values older than the last ``max_context`` become
            coarse tokens of ``coarse_len`` values each (mean-pooled to ``patch_len`` values), at
            most ``max_coarse`` of them (the newest); 0: no coarse tokens. The normalisation and
            the priors always use the whole context.
    """

    model_kind = "causal"  # what config.json records (wfm.hub_mixin)

    def __init__(self, patch_len: int = 16, dim: int = 64, depth: int = 4, num_heads: int = 4,
                 mlp_ratio: float = 4.0, quantiles: tuple[float, ...] = (), horizon_patches: int = 1,
                 max_context: int = 512,
                 interval_freqs: int = 8, attention: str = "sdpa", eps: float = 1e-5, prior: str = "trend",
                 estimators: tuple[str, ...] = DEFAULT_ESTIMATORS, backtest_weight: float = 1.0, coarse_len: int = 0,
                 max_coarse: int = 64, backtest_window: int = 0, guard: bool = False,
                 backtest_origins: str = "patch", guard_weight: float | None = None,
                 evidence_power: float | None = None, check_origins: int = 0,
                 white_limit: float | None = None, box_cox: bool = False, coarse_blend: bool = False) -> None:
        super().__init__()
        if prior not in ("trend", "mix"):
            raise ValueError(f"prior must be 'trend' or 'mix', got {prior!r}")
        if prior == "trend" and coarse_len:
            raise ValueError("coarse_len needs prior='mix'")
        if not estimators or any(e not in ESTIMATORS for e in estimators):
            raise ValueError(f"estimators must be a non-empty subset of {ESTIMATORS}, got {list(estimators)}")
        if coarse_len < 0 or coarse_len % patch_len or max_coarse < 1:
            raise ValueError(f"coarse_len must be a multiple of patch_len {patch_len} (or 0) and max_coarse >= 1, "
                             f"got {coarse_len}, {max_coarse}")
        if backtest_origins not in ("patch", "value"):
            raise ValueError(f"backtest_origins must be 'patch' or 'value', got {backtest_origins!r}")
        if attention != "sdpa":
            raise ValueError(f"CausalForecaster supports attention='sdpa' only, got {attention!r}")
        if patch_len < 1 or max_context < patch_len:
            raise ValueError(f"need patch_len >= 1 and max_context >= patch_len, got {patch_len}, {max_context}")
        if horizon_patches < 1:
            raise ValueError(f"horizon_patches must be >= 1, got {horizon_patches}")
        if any(not 0 < q < 1 for q in quantiles):
            raise ValueError(f"quantiles must lie in (0, 1), got {list(quantiles)}")
        self.patch_len, self.dim, self.mlp_ratio = int(patch_len), int(dim), float(mlp_ratio)
        self.quantile_levels = tuple(float(q) for q in quantiles)
        self.horizon_patches = int(horizon_patches)
        self.max_context, self.interval_freqs, self.attention, self.eps = int(max_context), int(interval_freqs), attention, eps
        p = self.patch_len
        self.patch_embed = nn.Sequential(nn.Linear(2 * p, dim), nn.GELU(), nn.Linear(dim, dim))
        self.interval_embed = nn.Sequential(nn.Linear(2 * interval_freqs + 1, dim), nn.GELU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList(CausalBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, self.horizon_patches * p * (1 + len(self.quantile_levels)))
        self.prior, self.estimators = prior, tuple(estimators)
        self.coarse_len, self.max_coarse = int(coarse_len), int(max_coarse)
        self.backtest_init, self.backtest_window = float(backtest_weight), int(backtest_window)
        self.backtest_origins = backtest_origins
        self.guard = bool(guard) and prior == "mix"
        if guard_weight is not None and not (self.guard and guard_weight > 0):
            raise ValueError(f"guard_weight needs guard=True and a positive value, got {guard_weight}")
        self.guard_weight = None if guard_weight is None else float(guard_weight)
        if evidence_power is not None and prior != "mix":
            raise ValueError("evidence_power needs prior='mix'")
        self.evidence_power_init = None if evidence_power is None else float(evidence_power)
        if check_origins < 0 or (check_origins and not self.guard):
            raise ValueError(f"check_origins needs guard=True and a count >= 0, got {check_origins}")
        self.check_origins = int(check_origins)
        if white_limit is not None and check_origins < 2:
            raise ValueError(f"white_limit decides where check_origins cannot: it needs check_origins >= 2, got {check_origins}")
        self.white_limit = None if white_limit is None else float(white_limit)
        self.box_cox = bool(box_cox)
        if coarse_blend and not coarse_len:
            raise ValueError("coarse_blend averages forecasts with and without coarse tokens: it needs coarse_len > 0")
        self.coarse_blend = bool(coarse_blend)
        if prior == "trend":
            self.trend_gate = nn.Linear(dim, 1)
        else:
            e, ahead = len(self.estimators), self.horizon_patches * p
            self.prior_embed = nn.Linear(e * p + 2 * e, dim)
            self.prior_gate = nn.Linear(dim, e * ahead)
            self.backtest_weight = nn.Parameter(torch.tensor(float(backtest_weight)))
            if evidence_power is not None:
                self.evidence_power = nn.Parameter(torch.tensor(float(evidence_power)))
            if self.guard:
                self.guard_scale = nn.Parameter(torch.tensor(4.0))
                self.guard_bias = nn.Parameter(torch.tensor(0.0))
            if self.coarse_len:
                self.coarse_embed = nn.Sequential(nn.Linear(2 * p, dim), nn.GELU(), nn.Linear(dim, dim))
        self.apply(self._init)
        # A fresh model forecasts the half-damped trend of the last patch, or the backtest-weighted
        # mix of the classical estimators (see forward).
        nn.init.zeros_(self.head.weight)
        if prior == "trend":
            nn.init.zeros_(self.trend_gate.weight)
        else:
            nn.init.zeros_(self.prior_gate.weight)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ core
    def forward(self, values: Tensor, observed: Tensor, interval: Tensor, context_len: Tensor | None = None,
                stats: tuple[Tensor, Tensor] | None = None, group: Tensor | None = None,
                coarse: bool = True) -> CausalOutput:
        """Next-patch predictions for every token of ``values`` ``[B, N * P]``.

        ``observed`` (bool, same shape) marks real values (False = padding); ``interval``
        ``[B]`` is in seconds; the normalisation uses the observed values before
        ``context_len`` ``[B]`` (default: all of them), unless ``stats = (loc, scale)`` is given
        (autoregressive steps keep the original context's). ``group`` ``[B]`` (``prior="mix"``):
        rows with one id pool their backtest evidence (:func:`pool_by_group`). ``coarse=False``:
        no coarse tokens (the priors and the normalisation still see every value).
        """
        b, length = values.shape
        p = self.patch_len
        if length % p:
            raise ValueError(f"sequence length {length} is not a multiple of patch_len {p}")
        if stats is not None:
            loc, scale = stats
        else:
            ctx_obs = observed
            if context_len is not None:
                ctx_obs = observed & (torch.arange(length, device=values.device)[None] < context_len[:, None])
            loc, scale = normalise_stats(values, ctx_obs, self.eps)
        if self.prior != "trend":
            return self._forward_mix(values, observed, interval, context_len, (loc, scale), group, coarse)
        m = observed.float()
        x = ((values - loc) / scale * m).view(b, -1, p)
        tok = self.patch_embed(torch.cat([x, m.view(b, -1, p)], dim=-1))
        tok = tok + self.interval_embed(interval_features(interval.to(values.device).expand(b), self.interval_freqs))[:, None]
        valid = observed.view(b, -1, p).any(dim=-1)  # [B, N]
        n = valid.shape[1]
        tok = self._run_blocks(tok, valid)
        # The head predicts a residual on a damped trend of the token's own patch: the last value
        # plus g times the patch's mean step per step ahead, with a learned gate g in (0, 1). Smooth
        # series (AoA, distance at 50-100 ms) then need only a small correction, which a tiny
        # model learns far better than the extrapolation itself; noisy ones learn g -> 0.
        h = self.norm(tok)
        last = x[:, :, -1]
        step = (x[:, :, -1] - x[:, :, 0]) / max(p - 1, 1)
        k = self.horizon_patches
        ahead = torch.arange(1, k * p + 1, device=x.device, dtype=x.dtype).view(k, p)
        gate = torch.sigmoid(self.trend_gate(h).float())[..., None]  # [B, N, 1, 1]
        base = last[..., None, None] + gate * step[..., None, None] * ahead  # [B, N, K, P]
        out = base[..., None] + self.head(h).float().view(b, n, k, p, 1 + len(self.quantile_levels))
        quant = out[:, :, 0, :, 1:] if self.quantile_levels else None
        return CausalOutput(point=out[:, :, 0, :, 0], quantiles=quant, ahead=out, loc=loc, scale=scale)

    def _run_blocks(self, tok: Tensor, valid: Tensor) -> Tensor:
        """The transformer over tokens ``[B, N, D]``; ``valid`` ``[B, N]`` marks tokens that saw data.

        A valid token attends to the valid tokens at or before it; tokens that saw no data (the left
        padding of short contexts) are hidden as keys. No mask is built for that: each row's valid
        tokens are moved, in order, to the front (a stable sort), every block runs plain causal
        attention (SDPA ``is_causal=True``: FlashAttention on a GPU), each token keeping the rotary
        code of its own position, and the tokens are put back. A valid token's output is that of the
        causal mask that hides padded keys (bit for bit when nothing is padded, as in ``forecast``);
        a padded token's (never scored) sees every valid token and stays finite. No host sync.
        """
        b, n, d = tok.shape
        order = torch.sort((~valid).to(torch.uint8), dim=1, stable=True).indices  # [B, N]: valid first
        cos, sin = rotary_angles(torch.arange(n, device=tok.device), self.blocks[0].attn.head_dim)
        rope = (cos[order][:, None], sin[order][:, None])  # [B, 1, N, D/2]: each token's own position
        x = tok.gather(1, order[..., None].expand(b, n, d))
        for blk in self.blocks:
            x = blk(x, rope=rope)
        return x.gather(1, torch.argsort(order, dim=1)[..., None].expand(b, n, d))

    def fine_len(self, length: int) -> int:
        """How many of the last ``length`` values become full-resolution tokens (the rest: coarse tokens or priors only)."""
        if self.prior == "trend":
            return length
        return min(length, -(-self.max_context // self.patch_len) * self.patch_len)

    def num_tokens(self, length: int) -> int:
        """Tokens the transformer sees for a (patch-padded) window of ``length`` values."""
        fine = self.fine_len(length)
        coarse = min(-(-(length - fine) // self.coarse_len), self.max_coarse) if self.coarse_len else 0
        return fine // self.patch_len + coarse

    def _forward_mix(self, values: Tensor, observed: Tensor, interval: Tensor, context_len: Tensor | None,
                     stats: tuple[Tensor, Tensor], group: Tensor | None = None, coarse: bool = True) -> CausalOutput:
        """``forward`` of a ``prior="mix"`` model: tokens for the last ``max_context`` values (plus
        coarse tokens of older ones), every token's forecast = gated classical mix + head."""
        b, length = values.shape
        p, k = self.patch_len, self.horizon_patches
        ahead = k * p
        loc, scale = stats  # from forward: the context's, or the caller's for rollouts
        m = observed.float()
        z = (values - loc) / scale * m  # [B, L]
        interval = interval.to(values.device).expand(b)
        est, avail = classical_priors(z, observed, interval, p, ahead, self.estimators)  # every origin
        limit = context_len if (self.guard and context_len is not None) else None
        if self.backtest_origins == "value":
            mse = backtest_mse_values(z, observed, interval, p, ahead, self.estimators, self.backtest_window, limit)
        else:
            mse = backtest_mse(z, observed, est, avail, p, self.backtest_window, limit)
        fine = self.fine_len(length)
        nf = fine // p
        est, avail, mse = est[:, -nf:], avail[:, -nf:], mse[:, -nf:]
        avail = avail.clone()
        avail[..., 0] |= ~avail.any(dim=-1)  # a token that saw nothing still gets a finite prior
        zf, mf = z[:, -fine:].view(b, nf, p), m[:, -fine:].view(b, nf, p)
        tok = self.patch_embed(torch.cat([zf, mf], dim=-1))
        af = avail.float()
        seen = torch.where(avail[..., None], est[..., :p], torch.zeros_like(est[..., :p]))
        prior_in = torch.cat([seen.clamp(-TARGET_CLIP, TARGET_CLIP).flatten(2),
                              -mse[..., :p].mean(dim=-1).log() * af, af], dim=-1)
        tok = tok + self.prior_embed(prior_in)
        valid = mf.any(dim=-1)
        if self.coarse_len and coarse and length > fine:
            c, r = self.coarse_len, self.coarse_len // p
            zo, mo = z[:, :length - fine], m[:, :length - fine]
            pad = (-zo.shape[1]) % c
            zo, mo = F.pad(zo, (pad, 0)), F.pad(mo, (pad, 0))
            keep = min(zo.shape[1], self.max_coarse * c)
            zo, mo = zo[:, -keep:].reshape(b, -1, p, r), mo[:, -keep:].reshape(b, -1, p, r)
            count = mo.sum(dim=-1)
            ctok = self.coarse_embed(torch.cat([zo.sum(dim=-1) / count.clamp_min(1.0), count / r], dim=-1))
            tok, valid = torch.cat([ctok, tok], dim=1), torch.cat([count.sum(dim=-1) > 0, valid], dim=1)
        tok = tok + self.interval_embed(interval_features(interval, self.interval_freqs))[:, None]
        tok = self._run_blocks(tok, valid)
        h = self.norm(tok[:, -nf:])
        e = len(self.estimators)
        sharpen = None  # [B]: G ** evidence_power of each row's group
        if group is not None:  # the gate and the guard weigh the window's pooled evidence; tokens keep their own
            mse = pool_by_group(mse, group)
            if self.evidence_power_init is not None:
                sharpen = group_sizes(group).to(z.dtype).pow(self.evidence_power)
        sharp = self.backtest_weight if sharpen is None else self.backtest_weight * sharpen.view(b, 1, 1, 1)
        logits = self.prior_gate(h).float().view(b, nf, e, ahead) - sharp * mse.log()
        weight = torch.softmax(logits.masked_fill(~avail[..., None], float("-inf")), dim=2)
        base = (weight * est).sum(dim=2).view(b, nf, k, p)
        out = base[..., None] + self.head(h).float().view(b, nf, k, p, 1 + len(self.quantile_levels))
        fallback = None
        if self.guard:
            out, fallback = self._guard(out, z, observed, est, avail, mse, valid[:, -nf:], limit, group, sharpen)
        quant = out[:, :, 0, :, 1:] if self.quantile_levels else None
        return CausalOutput(point=out[:, :, 0, :, 0], quantiles=quant, ahead=out, loc=loc, scale=scale,
                            fallback=fallback)

    def _guard(self, out: Tensor, z: Tensor, observed: Tensor, est: Tensor, avail: Tensor, mse: Tensor,
               valid: Tensor, limit: Tensor | None, group: Tensor | None = None,
               sharpen: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Blend ``out`` ``[B, N, K, P, 1 + Q]`` (the last ``N`` patches' forecasts) towards the classical
        combination by both forecasts' realised errors on earlier tokens (see ``guard``). Returns the
        blend and ``out`` moved all the way to the classical combination (``CausalOutput.fallback``)."""
        b, nf, k, p = out.shape[:4]
        ahead, length = k * p, z.shape[1]
        sharp = self.backtest_weight if self.guard_weight is None else self.guard_weight
        if sharpen is not None:  # [B]: G ** evidence_power
            sharp = sharp * sharpen.view(b, 1, 1, 1)
        weight = torch.softmax((-sharp * mse.log()).masked_fill(~avail[..., None], float("-inf")), dim=2)
        classical = (weight * est).sum(dim=2)  # [B, N, H]
        learned = out[..., 0].reshape(b, nf, ahead)
        tpos = (length - nf * p) + (torch.arange(nf, device=z.device) * p + p - 1)[:, None] + \
            torch.arange(1, ahead + 1, device=z.device)  # [N, H] absolute target positions
        flat = tpos.clamp(max=length - 1).reshape(1, -1).expand(b, -1)
        tgt = z.gather(1, flat).view(b, nf, ahead).clamp(-TARGET_CLIP, TARGET_CLIP)
        ok = observed.gather(1, flat).view(b, nf, ahead) & (tpos < length)[None] & valid[..., None]
        if limit is not None:
            ok = ok & (tpos[None] < limit.view(-1, 1, 1))
        okf = ok.to(z.dtype)

        def realised(pred: Tensor) -> Tensor:
            err = ((pred.detach() - tgt).clamp(-TARGET_CLIP, TARGET_CLIP) ** 2 * okf).cumsum(dim=1)
            count = okf.cumsum(dim=1)
            err, count = F.pad(err, (0, 0, k, 0))[:, :nf], F.pad(count, (0, 0, k, 0))[:, :nf]
            return (err + BACKTEST_PRIOR) / (count + BACKTEST_PRIOR)

        mse_c, mse_n = realised(classical), realised(learned)
        if group is not None:
            mse_c, mse_n = pool_by_group(mse_c, group), pool_by_group(mse_n, group)
        evidence = mse_c.log() - mse_n.log()
        if sharpen is not None:
            evidence = evidence * sharpen.view(b, 1, 1)
        a = torch.sigmoid(self.guard_scale * evidence + self.guard_bias)
        full = (classical - learned).view(b, nf, k, p, 1)
        return out + full * (1 - a).view(b, nf, k, p, 1), out + full  # final = classical + a (learned - classical)

    def loss(self, values: Tensor, observed: Tensor, interval: Tensor, context_len: Tensor | None = None,
             scaled: bool = False, skill: bool = False,
             group: Tensor | None = None) -> tuple[Tensor, CausalOutput, Tensor, Tensor]:
        """Next-patch loss: squared error, Huber-robust (plus pinball for quantiles), in normalised space.

        With ``context_len``, only the patches after the context are scored (teacher-forced,
        normalised by the context: what ``forecast`` does); without it, every next patch.

        ``scaled``: divide each series' errors by the mean squared one-step change of its
        normalised context (MASE-style, floored at 1e-3). Smooth series (AoA at 100 ms changes by
        ~1 % of its std per step) otherwise add almost nothing to a mixture's loss next to
        noisy traffic or CSI, and the model never learns their fine trends.

        Robust to what a context cannot foretell: windows whose context is constant (scale at its
        floor) are not scored, targets are clipped at ``TARGET_CLIP`` context stds, and the loss
        is squared error up to ``HUBER_DELTA`` scaled units and linear beyond (a Huber loss), so
        one jump after a still context cannot dominate a batch.

        With a direct multi-patch head, every offset ``1..K`` is scored alike (the loss is the
        mean over all scored values).

        ``skill`` (``prior="mix"``, with ``context_len``): the point loss is instead each series'
        squared error over that of the better of persistence and the context mean on the same
        targets (each made at the same origins, detached, plus ``SKILL_FLOOR`` of the targets'
        power), averaged over series: the ratio to the best classical baseline that the real-data
        benchmark reports, per window. A series counts by how much the model beats or loses to
        the classical answer, not by its scale (the MAE's skill loss, ``wfm.models.mae``).

        ``group`` ``[B]``: rows with one id pool their backtest evidence, as ``forecast(group=)``
        does at inference (the channels of one CSI sample, trained as they are scored).

        Returns ``(loss, output, target [B, N-1, P], weight [B, N-1, P])`` for the next patch,
        where ``weight`` marks target values that count: observed, after the context, and
        predicted by a token that saw data (times the per-series scaling when ``scaled``).
        """
        b = values.shape[0]
        p = self.patch_len
        out = self(values, observed, interval, context_len, group=group)
        # Tokens (and so predictions) cover the last ``out.point.shape[1]`` patches only when older
        # values are coarse tokens or seen by the priors only (``prior="mix"``); ``off`` = the rest.
        off = values.shape[1] - out.point.shape[1] * p
        z_all = (values - out.loc) / out.scale
        z = z_all[:, off:]
        target = z.reshape(b, -1, p)[:, 1:]
        obs = observed[:, off:].reshape(b, -1, p)
        weight = (obs[:, 1:] & obs[:, :-1].any(dim=-1, keepdim=True)).float()
        pos = torch.arange(off, values.shape[1], device=values.device).view(-1, p)
        if context_len is not None:
            # Only targets after the context count. Inside the context the normalisation has seen
            # them (its mean includes later values), which teaches a false reversion to the mean.
            horizon = (pos[None] >= context_len[:, None, None]).float()  # [B, N, P]
            weight = weight * horizon[:, 1:]
        # A constant context (a pedestrian standing still: AoA fixed to the bit) has its scale at
        # the floor, so any later change is 1e4-1e6 "stds" away: one such window outweighs a
        # batch and training diverges. Such windows teach nothing about scale-free dynamics;
        # they are not scored, and the rare bursts left are clipped at TARGET_CLIP stds.
        floored = out.scale <= self.eps * out.loc.abs().clamp_min(1.0) * (1 + 1e-4)  # [B, 1]
        weight = weight * (~floored).float()[:, :, None]
        if scaled:
            ctx = observed if context_len is None else (
                observed & (torch.arange(values.shape[1], device=values.device)[None] < context_len[:, None]))
            pair = (ctx[:, 1:] & ctx[:, :-1]).float()
            naive = ((z_all[:, 1:] - z_all[:, :-1]) ** 2 * pair).sum(1) / pair.sum(1).clamp_min(1.0)
            series_w = 1.0 / naive.clamp_min(1e-3)[:, None, None]
        else:
            series_w = torch.ones(b, 1, 1, device=values.device)
        valid = obs.any(dim=-1)  # tokens that saw data
        zp = z.view(b, -1, p)
        q = torch.tensor(self.quantile_levels, device=values.device)
        total, count = values.new_zeros(()), values.new_zeros(())
        if skill:
            if self.prior != "mix" or context_len is None:
                raise ValueError("the skill loss needs prior='mix' and a context_len")
            ahead = self.horizon_patches * p
            ref_est, _ = classical_priors(z_all * observed, observed, interval.to(values.device).expand(b), p, ahead,
                                          ("last", "mean"))
            ref_est = ref_est[:, -zp.shape[1]:]  # [B, N, 2, ahead]: the tokens' origins
            err_s, ref_s, pow_s = values.new_zeros(b), values.new_zeros(b, 2), values.new_zeros(b)
        for k in range(1, min(self.horizon_patches, zp.shape[1] - 1) + 1):  # token i -> patch i + k
            tgt = zp[:, k:].clamp(-TARGET_CLIP, TARGET_CLIP)
            w = (obs[:, k:] & valid[:, :-k, None]).float() * (~floored).float()[:, :, None]
            if context_len is not None:
                w = w * horizon[:, k:]
            count = count + (w > 0).float().sum()
            pred = out.ahead[:, :-k, k - 1]  # [B, N-k, P, 1 + Q]
            # Squared (scaled) error, linear beyond HUBER_DELTA: a series that sat still through
            # its context and then moved has a near-zero one-step scale, and its squared error
            # would otherwise dwarf the batch (measured: single steps of 1e4-1e5 loss).
            if skill:
                ref = ref_est[:, :-k, :, (k - 1) * p:k * p].clamp(-TARGET_CLIP, TARGET_CLIP)  # [B, N-k, 2, P]
                err_s = err_s + ((pred[..., 0] - tgt) ** 2 * w).sum(dim=(1, 2))
                ref_s = ref_s + ((ref - tgt[:, :, None]) ** 2 * w[:, :, None]).sum(dim=(1, 3)).detach()
                pow_s = pow_s + (tgt ** 2 * w).sum(dim=(1, 2))
            else:
                r = series_w.sqrt() * (pred[..., 0] - tgt).abs()
                d = HUBER_DELTA
                total = total + (torch.where(r <= d, r * r, 2 * d * r - d * d) * w).sum()
            if self.quantile_levels:
                diff = tgt[..., None] - pred[..., 1:]
                pinball = torch.maximum(q * diff, (q - 1) * diff).mean(dim=-1)
                total = total + (pinball * series_w.sqrt() * w).sum()
        loss = total / count.clamp_min(1.0)
        if skill:
            scored = pow_s > 0
            ratio = err_s / (ref_s.min(dim=1).values + SKILL_FLOOR * pow_s).clamp_min(1e-12)
            loss = loss + (ratio * scored).sum() / scored.sum().clamp_min(1)
        return loss, out, target, weight * series_w

    # ------------------------------------------------------------------ inference
    def _check(self, context: Tensor, interval: Tensor | float, horizon: int) -> tuple[Tensor, Tensor]:
        if context.ndim != 2 or context.shape[0] < 1 or context.shape[1] < 1:
            raise ValueError(f"context must be [B, L] with B >= 1 and L >= 1, got shape {tuple(context.shape)}")
        if context.is_complex():
            raise ValueError("context is complex: pass real and imaginary parts as separate series")
        bad = ~torch.isfinite(context)
        if bool(bad.any()):
            row, pos = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"context contains {int(bad.sum())} NaN or Inf values (the first: row {row}, position {pos}); "
                             "the model takes gap-free series: fill short gaps first (for example `wfm data import csv "
                             "--fill linear --max-gap N`, or `--split-gaps` to cut the series at long ones)")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        interval = torch.as_tensor(interval, dtype=torch.float32, device=context.device).reshape(-1)
        if interval.numel() == 1:
            interval = interval.expand(context.shape[0])
        if interval.shape != (context.shape[0],) or not bool(((interval > 0) & torch.isfinite(interval)).all()):
            raise ValueError(f"interval must be a finite positive scalar or [B] = [{context.shape[0]}] tensor of seconds")
        return context.float(), interval

    def forward_features(self, context: Tensor, interval: Tensor | float) -> Tensor:
        """Per-token features of a context ``[B, L]`` (original scale): ``[B, N, dim]``.

        The normalised transformer output of the full-resolution tokens, the input of the heads
        (timm's ``forward_features``): the context is normalised and left-padded to whole patches
        as in ``forecast``, and for ``prior="mix"`` models the coarse tokens of older values are
        attended to but not returned. The last token summarises the whole context. Differentiable
        (no ``no_grad``), for heads trained on top.
        """
        context, interval = self._check(context, interval, 1)
        dev = self.head.weight.device
        context, interval = context.to(dev), interval.to(dev)
        if self.prior == "trend":
            context = context[:, -self.max_context:]
        pad = (-context.shape[1]) % self.patch_len
        values = F.pad(context, (pad, 0))
        observed = F.pad(torch.ones_like(context, dtype=torch.bool), (pad, 0))
        features: list[Tensor] = []
        hook = self.norm.register_forward_hook(lambda _m, _i, out: features.append(out))
        try:  # the heads' input is exactly what self.norm returns inside forward
            self(values, observed, interval)
        finally:
            hook.remove()
        return features[-1]

    @torch.no_grad()
    def forecast(self, context: Tensor, interval: Tensor | float, horizon: int, quantiles: bool = False,
                 group: Tensor | None = None, check: bool = True) -> Tensor:
        """Forecast the next ``horizon`` values of each row of ``context`` ``[B, L]`` (original scale).

        ``interval``: seconds between values, a float or ``[B]``. Autoregressive over patches.
        What is used of the context:

        - ``prior="trend"`` models (releases before the prior mix): the last
          ``max_context`` values only (normalisation included); older values are dropped.
        - ``prior="mix"`` models: **all** of it. The normalisation (mean, std) and the classical
          priors (last value, context mean, damped trend, seasonal naive of a day / a week where
          the context holds one, and each estimator's backtest error) use every value given; the
          transformer sees the last ``max_context`` values as full-resolution tokens and, with
          ``coarse_len``, up to ``max_coarse * coarse_len`` older values as coarse tokens.

        With ``check_origins``, the network's forecast of a row (or a pooled group) is first
        backtested against the guard's classical combination on the end of the context, and the
        classical combination's forecast is returned where the network lost (see the class doc).
        That costs ``check_origins + 1`` rollouts of both forecasts (measured on 2 CPU threads: 16x
        at 4,096 values of context and 64 ahead, 2.5x at 16 values and 4 ahead). With ``white_limit``,
        where the context is too short for two checks, rows (or pooled groups) whose context looks
        like white noise around its mean get the context mean (:func:`looks_white`). With
        ``box_cox``, non-negative rows (or groups) are forecast, checks included, in the
        Box-Cox space their context chooses and transformed back (the white-noise mean stays the
        mean of the values given). With ``coarse_blend``, a context long enough for coarse tokens
        is forecast twice, with and without them, each checked alone, and the two are averaged
        (1.5-2x the time: 24 s against 17 s for 16 rows of 4,096 values and 64 ahead on 2 CPU
        threads, 0.31 s against 0.16 s for 512 values and 8 ahead; the checks share the classical rollouts). ``check=False`` skips all four for this call.

        Returns ``[B, horizon]`` (point forecast), or ``[B, horizon, Q]`` with ``quantiles=True``
        (needs a quantile head).
        """
        device = context.device
        context, interval = self._check(context, interval, horizon)
        dev = self.head.weight.device  # inputs follow the model; the result goes back to the caller's device
        context, interval = context.to(dev), interval.to(dev)
        if quantiles and not self.quantile_levels:
            raise ValueError("this model has no quantile head (quantiles=())")
        lam = boxcox.guerrero_lambda(context, group) if check and self.box_cox else None
        if lam is not None and bool((lam < 1).any()):
            point, quant, switched = self._checked_forecast(boxcox.box_cox(context, lam), interval, horizon,
                                                            group, check)
            point = boxcox.inv_box_cox(point, lam)
            quant = None if quant is None else boxcox.inv_box_cox(quant, lam)
        else:
            point, quant, switched = self._checked_forecast(context, interval, horizon, group, check)
        if (check and not switched and self.white_limit is not None
                and len(self.check_cuts(context.shape[1], horizon)) < 2):
            white = looks_white(context, self.white_limit, group)
            if bool(white.any()):  # the context mean; the quantiles move with the point forecast
                # Summed in float64 as the ``mean`` baseline sums it, so that the two agree to the bit.
                mean = context.to(torch.float64).mean(dim=1, keepdim=True).to(point.dtype)
                shifted = torch.where(white[:, None], mean, point)
                quant = None if quant is None else quant + (shifted - point)[..., None]
                point = shifted
        return (quant if quantiles else point).to(device)

    def _checked_forecast(self, context: Tensor, interval: Tensor, horizon: int, group: Tensor | None,
                          check: bool) -> tuple[Tensor, Tensor | None, bool]:
        """The network's forecast ``(point [B, H], quantiles [B, H, Q] | None, switched)``, its
        classical combination's where ``check_origins`` shows the network losing (with ``check``;
        ``switched``: some row was). With ``coarse_blend`` (and ``check``), the mean of the two
        readings of a context that has coarse tokens, with and without them, each checked alone."""
        readings = [True] + ([False] if check and self.coarse_blend and self.has_coarse(context.shape[1]) else [])
        keeps: list[Tensor | None] = [None] * len(readings)
        if check and self.check_origins and self.guard:
            keeps = list(self._network_passes_check(context, interval, horizon, group, readings))
        switched = any(k is not None and not bool(k.all()) for k in keeps)
        points, quants = [], []
        for coarse, keep in zip(readings, keeps):
            runs = self._rollout(context, interval, horizon, group, fallback=switched, coarse=coarse)
            (point, quant) = runs[0]
            if keep is not None and switched:
                (c_point, c_quant) = runs[1]
                point = torch.where(keep[:, None], point, c_point)
                quant = None if quant is None else torch.where(keep[:, None, None], quant, c_quant)
            points.append(point)
            quants.append(quant)
        if len(points) == 1:
            return points[0], quants[0], switched
        # The mean of two ordered sets of quantiles is ordered.
        return (0.5 * (points[0] + points[1]), None if quants[0] is None else 0.5 * (quants[0] + quants[1]),
                switched)

    def _rollout(self, context: Tensor, interval: Tensor, horizon: int, group: Tensor | None = None,
                 fallback: bool = False, coarse: bool = True) -> list[tuple[Tensor, Tensor | None]]:
        """``forecast``'s autoregressive rollout of checked inputs: ``[(point [B, H], quantiles [B, H, Q] | None)]``
        in the original scale, the network's; with ``fallback`` (``guard=True``) also the guard's
        classical combination's, rolled out on its own forecasts. The first step serves both (one
        pass gives ``ahead`` and ``fallback``); later steps run both sequences as one batch.
        ``coarse=False``: without coarse tokens (``forward``)."""
        p = self.patch_len
        legacy = self.prior == "trend"
        if legacy:
            context = context[:, -self.max_context:]
        b, length = context.shape
        pad = (-length) % p
        values = F.pad(context, (pad, 0))
        observed = F.pad(torch.ones_like(context, dtype=torch.bool), (pad, 0))
        loc, scale = normalise_stats(values, observed, self.eps)
        given = torch.full((b,), values.shape[1], dtype=torch.long, device=values.device)  # appended values are not evidence
        k = self.horizon_patches
        steps = -(-horizon // (k * p))
        seqs = [values, values] if fallback else [values]
        points: list[list[Tensor]] = [[] for _ in seqs]
        quants: list[list[Tensor]] = [[] for _ in seqs]
        for step in range(steps):
            # Keep the window within max_context (rounded up to whole patches); stats stay those
            # of the original context so all steps share one scale.
            if legacy:
                keep = -(-self.max_context // p) * p
                seqs, observed = [v[:, -keep:] for v in seqs], observed[:, -keep:]
            n = 1 if step == 0 else len(seqs)  # rows per original row in this pass

            def rep(t: Tensor) -> Tensor:
                return t.repeat(n, *([1] * (t.dim() - 1)))
            grp = None if legacy or group is None else (
                group if n == 1 else torch.cat([group, group + int(group.max()) + 1]))
            out = self(seqs[0] if n == 1 else torch.cat(seqs), rep(observed), rep(interval),
                       stats=(rep(loc), rep(scale)), context_len=None if legacy else rep(given), group=grp,
                       coarse=coarse)
            for i, ahead in enumerate([out.ahead, out.fallback][:len(seqs)]):
                last = ahead[:, -1][i * b:(i + 1) * b] if n > 1 else ahead[:, -1]  # [B, K, P, 1 + Q]: next K patches
                nxt = last[..., 0].reshape(b, k * p)
                points[i].append(nxt)
                if self.quantile_levels:
                    quants[i].append(last[..., 1:].reshape(b, k * p, -1))
                seqs[i] = torch.cat([seqs[i], nxt * scale + loc], dim=1)
            observed = F.pad(observed, (0, k * p), value=True)
        return [(torch.cat(pt, dim=1)[:, :horizon] * scale + loc,
                 torch.cat(qt, dim=1)[:, :horizon] * scale[..., None] + loc[..., None] if qt else None)
                for pt, qt in zip(points, quants)]

    def check_cuts(self, length: int, horizon: int) -> list[int]:
        """Where ``check_origins`` cuts a context of ``length`` values: each cut ``c`` forecasts
        values ``c .. c + horizon - 1`` from the ``c`` before it. The latest origins, ``horizon``
        apart (rolling origins whose targets do not overlap), as long as each keeps at least half of
        the context (and a patch): a check then resembles the forecast it vouches for."""
        low = max(self.patch_len, -(-length // 2))
        return sorted(c for c in (length - k * horizon for k in range(1, self.check_origins + 1)) if c >= low)

    def has_coarse(self, length: int) -> bool:
        """Whether a context of ``length`` values reaches the transformer partly as coarse tokens."""
        padded = length + (-length) % self.patch_len
        return bool(self.coarse_len) and self.prior != "trend" and padded > self.fine_len(padded)

    def _network_passes_check(self, context: Tensor, interval: Tensor, horizon: int,
                              group: Tensor | None = None, readings: list[bool] | None = None) -> list[Tensor]:
        """``[B]`` bool per reading of the context (``readings``: with coarse tokens or not;
        default: with them, as ``forward``): False where the checks (``check_cuts``) show that
        reading of the network erring more than the classical combination beyond doubt. A one-sided
        paired t-test (Diebold-Mariano style) on one value per check and row, the mean over its
        horizon of ``d`` = network minus classical squared error over the row's context variance
        (the values of one horizon move together, so each check counts once); a group pools its
        rows' checks. The network is replaced where ``mean(d) > t * std(d) / sqrt(n)``, ``t`` =
        :func:`check_threshold` of ``n - 1`` degrees of freedom; fewer than 2 checks decide nothing."""
        readings = [True] if readings is None else readings
        b, length = context.shape
        var = context.double().var(dim=1, unbiased=False).clamp_min(1e-12)
        sums = [[context.new_zeros(b, dtype=torch.float64) for _ in range(2)] for _ in readings]
        n = 0
        for cut in self.check_cuts(length, horizon):
            past, truth = context[:, :cut], context[:, cut:cut + horizon].double()
            (net, _), (cls, _) = self._rollout(past, interval, horizon, group, fallback=True, coarse=readings[0])
            e_c = (cls.double() - truth) ** 2  # the classical combination: the same for every reading
            e_n = (net.double() - truth) ** 2
            for i, coarse in enumerate(readings):
                if i and coarse != readings[0] and self.has_coarse(cut):  # else this cut reads the same
                    (net, _), = self._rollout(past, interval, horizon, group, coarse=coarse)
                    e_n = (net.double() - truth) ** 2
                d = (e_n - e_c).mean(dim=1) / var
                sums[i][0] += d
                sums[i][1] += d * d
            n += 1
        count = torch.full((b,), float(n), dtype=torch.float64, device=context.device)
        if group is not None and n:
            sums = [[pool_rows(x, group) for x in pair] for pair in sums]
            count = pool_rows(count, group)
        return [~exceeds_noise(s1, s2, count) for s1, s2 in sums]

    def with_evidence_power(self, power: float | None) -> "CausalForecaster":
        """A copy of this model whose pooled groups weigh their evidence ``G ** power`` times as
        sharply (``evidence_power``; ``None``: not at all), every other weight kept."""
        arch = {**causal_arch(self), "evidence_power": power}
        arch["quantiles"] = tuple(arch["quantiles"])
        out = type(self)(**arch).to(self.head.weight.device)
        state = {k: v for k, v in self.state_dict().items() if k != "evidence_power"}
        if power is not None:
            state["evidence_power"] = out.evidence_power.detach().clone()
        out.load_state_dict(state)
        return out.train(self.training)

    def grown_state_dict(self, estimators: tuple[str, ...] | list[str]) -> dict[str, Tensor]:
        """This model's weights laid out for the same architecture with more ``estimators`` (a
        superset, any order): continued pretraining adds a classical estimator to a trained mix.

        The prior embedding gets zero input columns for the new estimators (the network sees no
        change until trained); their gate rows start at zero, as a fresh gate does, so the mix
        gives them their backtest weight from the first step.
        """
        if self.prior != "mix":
            raise ValueError(f"only a prior='mix' model has estimators to grow; this one has prior={self.prior!r}")
        old, new = list(self.estimators), list(estimators)
        if missing := [e for e in old if e not in new]:
            raise ValueError(f"estimators {new} drop {missing} of the trained model's {old}")
        p, ahead = self.patch_len, self.horizon_patches * self.patch_len
        state = {k: v.clone() for k, v in self.state_dict().items()}
        e_old, e_new = len(old), len(new)
        w_in = self.prior_embed.weight.detach()  # [dim, E p + 2 E]: values, -log mse, avail
        grown = w_in.new_zeros(w_in.shape[0], e_new * p + 2 * e_new)
        gate_w = self.prior_gate.weight.detach().view(e_old, ahead, -1)
        gate_b = self.prior_gate.bias.detach().view(e_old, ahead)
        new_gw, new_gb = gate_w.new_zeros(e_new, ahead, gate_w.shape[-1]), gate_b.new_zeros(e_new, ahead)
        for i, name in enumerate(old):
            j = new.index(name)
            grown[:, j * p:(j + 1) * p] = w_in[:, i * p:(i + 1) * p]
            grown[:, e_new * p + j] = w_in[:, e_old * p + i]
            grown[:, e_new * p + e_new + j] = w_in[:, e_old * p + e_old + i]
            new_gw[j], new_gb[j] = gate_w[i], gate_b[i]
        state["prior_embed.weight"] = grown
        state["prior_gate.weight"], state["prior_gate.bias"] = new_gw.flatten(0, 1), new_gb.flatten()
        return state

    # ------------------------------------------------------------------ accounting
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward_flops(self, num_patches: int) -> int:
        """Matmul FLOPs of one forward pass over ``num_patches`` tokens of one series (2 per MAC)."""
        n, d, p = num_patches, self.dim, self.patch_len
        hidden = int(d * self.mlp_ratio)
        block = 2 * n * 4 * d * d + 2 * 2 * n * n * d + 2 * n * 2 * d * hidden
        embed = 2 * n * (2 * p * d + d * d)
        head = 2 * n * d * p * self.horizon_patches * (1 + len(self.quantile_levels))
        return embed + len(self.blocks) * block + head


def _causal(size: dict, overrides: dict) -> CausalForecaster:
    """A size's defaults; any ``CausalForecaster`` argument in ``overrides`` wins."""
    return CausalForecaster(**{"mlp_ratio": 4.0, **size, **overrides})


@register_model
def causal_tiny(**kwargs) -> CausalForecaster:
    return _causal(dict(dim=64, depth=4, num_heads=4, patch_len=8, max_context=256), kwargs)


@register_model
def causal_little(**kwargs) -> CausalForecaster:
    return _causal(dict(dim=128, depth=6, num_heads=8, patch_len=16, max_context=512), kwargs)


@register_model
def causal_small(**kwargs) -> CausalForecaster:
    return _causal(dict(dim=256, depth=8, num_heads=8, patch_len=16, max_context=1024), kwargs)


@register_model
def causal_base(**kwargs) -> CausalForecaster:
    return _causal(dict(dim=512, depth=12, num_heads=8, patch_len=32, max_context=2048), kwargs)
