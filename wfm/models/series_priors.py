"""Classical forecasts of a univariate series and their backtests: the prior the causal model corrects.

A ``prior="mix"`` :class:`wfm.models.causal.CausalForecaster` normalises each context
(:func:`normalise_stats`), computes every estimator of ``ESTIMATORS`` it mixes at every patch
end (:func:`classical_priors`), and scores each on its own past forecasts in the same context
(:func:`backtest_mse`, or :func:`backtest_mse_values` with an origin at every value). The gate
weighs the estimators by those errors, so a fresh model is their inverse-MSE combination. Every
function here sees only values at or before its origins.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from wfm.models.groups import pool_rows
from wfm.models.linear_prediction import extrapolate


#: Training targets are clipped at this many context stds (see ``CausalForecaster.loss``).
TARGET_CLIP = 50.0
#: Classical estimators a ``prior="mix"`` model mixes (see :func:`classical_priors`).
ESTIMATORS = ("last", "mean", "trend", "linear", "day", "week", "reversion", "mean16", "mean64", "mean256", "ar",
              "ewm4", "ewm16", "holt16", "holt48")
#: The windowed means among ``ESTIMATORS`` and their windows in values.
RECENT_MEANS = {"mean16": 16, "mean64": 64, "mean256": 256}
#: Exponential smoothing among ``ESTIMATORS``: simple (``ewm``, the level) and Brown's double
#: smoothing with a damped trend (``holt``), by their span ``N`` in values (``alpha = 2 / (N + 1)``).
SMOOTHERS = {"ewm4": 4, "ewm16": 16, "holt16": 16, "holt48": 48}
#: Damping of the ``holt`` estimators' trend per step ahead.
HOLT_DAMPING = 0.9
#: The default mix (the released models'): ``reversion`` is opt-in until a model ships with it.
DEFAULT_ESTIMATORS = ("last", "mean", "trend", "linear", "day", "week")
DAY_S, WEEK_S = 86_400.0, 604_800.0
YEAR_S = 365.2425 * DAY_S  # the Gregorian year: 12 steps of a calendar month (wfm.data.loaders.timegrid.MONTH_S)
SEASONS = {"day": DAY_S, "week": WEEK_S, "year": YEAR_S}
#: Orders the ``ar`` estimator chooses from at each origin (by its earlier forecasts' errors, :func:`ar_prior`).
AR_ORDERS = (1, 2, 4, 8)
#: Positions the ``ar`` estimator refits at most in one series (:func:`ar_prior`).
AR_FITS = 256
#: Ridge on the ``ar`` estimator's normal equations, relative to their mean diagonal.
AR_RIDGE = 1e-6
#: Pseudo-count of the backtest error's prior value (1 = the context's variance), see :func:`backtest_mse`.
BACKTEST_PRIOR = 1.0


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



def first_observed(observed: Tensor) -> Tensor:
    """Index ``[B]`` of each row's first observed value (the row length when there is none)."""
    length = observed.shape[1]
    idx = torch.arange(length, device=observed.device)
    return torch.where(observed, idx, length).min(dim=1).values


def value_targets(z: Tensor, observed: Tensor, ahead: int,
                  origins: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """What a forecast made at each of ``origins`` ``[N]`` (default: every value) of ``z`` ``[B, L]``
    is scored on: the target positions ``tpos`` ``[N, H]`` (origin + 1 .. origin + ``ahead``),
    their values ``[B, N, H]`` and whether each is observed inside the series ``[B, N, H]``."""
    b, length = z.shape
    origins = torch.arange(length, device=z.device) if origins is None else origins
    tpos = origins[:, None] + torch.arange(1, ahead + 1, device=z.device)
    flat = tpos.clamp(max=length - 1).reshape(1, -1).expand(b, -1)
    tobs = observed.gather(1, flat).view(b, -1, ahead) & (tpos < length)[None]
    return tpos, z.gather(1, flat).view(b, -1, ahead), tobs


class ArCarry(NamedTuple):
    """What the later passes of a rollout reuse of the ``ar`` estimator (:func:`ar_fit`): its
    forecasts at the given context's patch ends, ``est`` ``[B, N0, H]`` and ``avail`` ``[B, N0]``,
    and each order's prequential error at the context's last value, ``known`` ``[B, O]``."""

    est: Tensor
    avail: Tensor
    known: Tensor


def ar_prior(z: Tensor, observed: Tensor, origins: Tensor, ahead: int,
             group: Tensor | None = None, level: Tensor | None = None,
             weight: Tensor | None = None, given: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Linear prediction (:mod:`wfm.models.linear_prediction`) made at every origin at once:
    ``(est [B, N, ahead], avail [B, N])``; see :func:`ar_fit`."""
    est, avail, _ = ar_fit(z, observed, origins, ahead, group, level=level, weight=weight, given=given)
    return est, avail


def ar_fit(z: Tensor, observed: Tensor, origins: Tensor, ahead: int, group: Tensor | None = None,
           since: int = 0, known: Tensor | None = None,
           level: Tensor | None = None, weight: Tensor | None = None,
           given: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Linear prediction (:mod:`wfm.models.linear_prediction`) made at every origin at once.

    At every position ``t`` of ``z`` ``[B, L]``, a recursion ``z[t'] = sum_i c_i z[t' - i]`` of each
    order in ``AR_ORDERS`` is fitted by least squares, forward and backward, to the observed values
    up to ``t`` (every equation's values observed; twice as many equations as unknowns), with
    ``AR_RIDGE``; rows sharing a ``group`` id ``[B]`` pool their equations (the channels of one CSI
    window see the same Doppler shifts), but an order ``k`` waits for ``2k`` values of each row
    (on held-out generated UMi CSI with 8 values of context, a window's channels pooled into order 4
    from 5 values took the ratio to the best classical from 0.87 to 1.01; 0.93 with this rule).
    Each runs ``ahead`` steps forward. The forecast at origin ``o`` (``origins`` ``[N]``) is that
    of the candidate whose earlier forecasts, those whose targets are known at ``o``, erred least
    (prequential order selection: an honest backtest, where an in-sample criterion lets 16 values
    pick a wild order 8; an order not yet fitted stands in with the highest lower one). ``z`` is
    normalised by the context, so a recursion reverts to the context's mean. Returns ``(est [B, N,
    ahead], avail [B, N], known [B, O])``, the last each candidate's error at the last value of ``z``.

    ``level`` ``[B]`` (the context's mean over its std, ``loc / scale``): the recursions are fitted
    about two centres instead, and the candidates are both sets. About the mean of the values up to
    each refit: the fit above without its look-ahead (the context's mean includes values after an
    early origin, which flatters a recursion reverting to it in the backtest that picks the order).
    About the series' level, ``z + level`` (the values as measured, in units of the context's std):
    the classical channel predictor, where a recursion carries the level in its own coefficients (a
    channel is a sum of complex exponentials with no constant term, and 8 packets' mean is a poor
    estimate of zero); not shift invariant, which is why the backtest chooses, row by row (group by
    group).

    ``weight`` ``[B]`` (with ``group``): each row's equations and errors count this many times in its
    group's pooled fit and order choice (:func:`wfm.models.groups.power_weights`: the fit in the
    window's common units, as the classical predictor fits the values as measured).

    ``since`` > 0, with ``known`` the errors at value ``since - 1`` (a previous call's on
    ``z[:, :since]``, with the same ``level``): only origins at or after ``since``, from the refits
    since the latest one at or before ``since - ahead``, and errors of targets at or after ``since``
    (a rollout's appended patch; the same result as the whole series, for a fraction of the work).

    The normal equations of every position come from running sums of the lagged products
    ``z[v] z[v - d]``: one pass over the series plus a ``k x k`` solve per position and order.
    Past ``AR_FITS`` values, every position of the first ``AR_FITS / 2`` is refitted (the
    coefficients move fastest there) and the rest on a grid of ``ceil((L - AR_FITS / 2) / (AR_FITS
    / 2))`` values: an origin runs the latest refit's recursion from its own last values, and the
    orders are scored on the refits' forecasts, so the cost stays that of ``AR_FITS`` fits however
    long the context. Instead of reflecting poles into the unit circle (the reference baseline's
    eigenvalues at every position would cost more than the fits), forecasts are kept within twice
    the largest ``|z|`` seen so far: an explosive fit errs in the backtest and is not chosen.

    ``given`` ``[B]``: each row's values from this position on are not data (a rollout's appended
    forecasts): no refit there is used and no error of a target there counts, so an origin past it
    runs the recursion fitted and chosen on the values before it, from its own last values. A
    refit on a forecast patch that bends where the path does not, chosen on errors against that
    patch, can explode (a bearing through zero, forecast up to the bound).
    """
    b, length = z.shape
    kmax, dev = max(AR_ORDERS), z.device
    dense = min(length, AR_FITS // 2)  # early fits move fastest: every position of the start is refitted
    stride = max(1, -(-(length - dense) // (AR_FITS - dense)))
    grid = torch.cat([torch.arange(dense, device=dev), torch.arange(dense, length, stride, device=dev)])  # [F]
    if since:  # from the latest refit at or before since - ahead: earlier ones have no target from since on
        last = max(since - ahead, 0)
        grid = grid[last if last < dense else dense + (last - dense) // stride:]
    if given is not None:  # no refit at or past the given end is used (a rollout's appended patches)
        grid = grid[grid < int(given.max())]
    nf = grid.numel()
    obs = observed.double()
    zd = z.double() * obs
    first = first_observed(observed)[:, None]  # [B, 1]
    o = grid[None].expand(b, nf)
    # What the recursions are fitted about, a centre [B, L] in z at each refit position: the
    # context's mean (None: z as it is), or, with a level, the mean of the values up to the refit
    # and the level.
    centres: list[Tensor | None] = [None]
    if level is not None:
        centres = [zd.cumsum(dim=1) / obs.cumsum(dim=1).clamp_min(1.0),
                   (-level.double().reshape(b, 1)).expand(b, length)]
        s1 = F.pad(zd, (1, 0)).cumsum(dim=1)  # [B, L + 1]: sums of z[v] for v < u
    q = torch.stack([F.pad(zd * F.pad(zd, (d, 0))[:, :length], (1, 0)).cumsum(dim=1)
                     for d in range(kmax + 1)], dim=1)  # [B, K + 1, L + 1]: sums of z[v] z[v - d] for v < u

    def csum(lo: Tensor, hi: Tensor) -> Tensor:  # sum of z[v] over v in [lo, hi]
        top = s1.gather(1, (hi + 1).clamp(0, length))
        bot = s1.gather(1, lo.clamp(0, length))
        return torch.where(hi >= lo, top - bot, torch.zeros_like(top))

    def span(d: int, lo: Tensor, hi: Tensor, c: Tensor | None) -> Tensor:  # sum of (z[v] - c)(z[v - d] - c)
        qd = q[:, d]
        top = qd.gather(1, (hi + 1).clamp(0, length))
        bot = qd.gather(1, lo.clamp(0, length))
        raw = torch.where(hi >= lo, top - bot, torch.zeros_like(top))
        if c is None:
            return raw
        return raw - c * (csum(lo, hi) + csum(lo - d, hi - d)) + c * c * (hi - lo + 1).clamp_min(0).double()

    def history(pos: Tensor, c: Tensor | None) -> Tensor:  # [B * N, 1, K]: the last K values at pos [N] less c
        lag = (pos[:, None] - torch.arange(kmax, device=dev)).clamp_min(0)
        x = zd[:, lag] if c is None else zd[:, lag] - c[..., None]
        return x.reshape(b * pos.numel(), 1, kmax).flip(-1)

    bound = 2 * zd.abs().cummax(dim=1).values  # [B, L]
    tpos, tgt, tobs = value_targets(zd, observed, ahead, grid)  # [F, H], [B, F, H] x 2
    avail = torch.zeros(b, nf, dtype=torch.bool, device=dev)
    coefs, forecasts, knowns = [], [], []
    for centre in centres:
        c0 = None if centre is None else centre[:, grid]  # [B, F]
        coef = torch.zeros(b, nf, kmax, dtype=torch.float64, device=dev)  # the highest order fitted so far
        hist = history(grid, c0)
        for k in AR_ORDERS:
            start = first + k  # the first target whose k lags are all observed
            pairs = [(i, j) for i in range(k + 1) for j in range(i, k + 1)]
            # x[t - i] x[t - j] (forward) plus x[t - k + i] x[t - k + j] (backward), summed over the targets t
            m = torch.stack([span(j - i, start - i, o - i, c0) + span(j - i, start - k + j, o - k + j, c0)
                             for i, j in pairs], -1)
            eqs = 2 * (o - start + 1).clamp_min(0).double()
            if group is not None:
                m, eqs = pool_rows(m, group, weight), pool_rows(eqs, group)
            where = {pair: n for n, pair in enumerate(pairs)}
            sym = torch.tensor([where[min(i, j), max(i, j)] for i in range(k + 1) for j in range(k + 1)], device=dev)
            m = m[..., sym].view(b, nf, k + 1, k + 1)
            gram, rhs = m[..., 1:, 1:], m[..., 1:, 0]
            diag = gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
            gram = gram + (AR_RIDGE * diag)[..., None, None] * torch.eye(k, dtype=gram.dtype, device=dev)
            c = torch.linalg.solve(gram, rhs[..., None])[..., 0]  # [B, F, k]
            # Each row needs its own 2k values (k targets): pooling adds channels, not history.
            ok = (eqs >= 2 * k) & (o - start + 1 >= k)
            coef = torch.where(ok[..., None], F.pad(c, (0, kmax - k)), coef)
            avail = avail | ok
            coefs.append(coef)
            # Prequential errors of the refits' forecasts, filed under their target's position.
            f = extrapolate(hist, coef.view(b * nf, kmax), ahead).view(b, nf, ahead)
            f = f if c0 is None else f + c0[..., None]
            f = f.clamp(-bound[:, grid, None], bound[:, grid, None])
            hit = tobs & (tpos >= since)[None] & avail[..., None]
            if given is not None:
                hit = hit & (tpos[None] < given.view(b, 1, 1))
            err = ((f - tgt).clamp(-TARGET_CLIP, TARGET_CLIP) ** 2 * hit.double()).view(b, -1)
            new = zd.new_zeros(b, length + ahead + 1).scatter_add_(1, tpos.reshape(1, -1).expand(b, -1), err)
            new = new[:, :length].cumsum(dim=1)  # [B, L]: errors whose targets are at or before each position
            new = pool_rows(new, group, weight) if group is not None else new
            forecasts.append(f)
            knowns.append(new if known is None else known[:, len(knowns), None] + new)
    # At each origin, the candidate whose errors are least (the lowest order, the first centre, among equals).
    pick = torch.stack(knowns)[:, :, origins].argmin(dim=0)  # [B, N]
    # The latest refit at or before each origin (and before each row's given end) [B, N].
    last = origins[None].expand(b, -1) if given is None else torch.minimum(origins[None], given.view(b, 1) - 1)
    fit = torch.searchsorted(grid, last.contiguous(), right=True) - 1
    if stride == 1 and given is None:  # every origin refitted: its forecasts are there already
        est = torch.stack(forecasts, dim=2)[:, fit[0]].gather(2, pick[..., None, None].expand(-1, -1, 1, ahead))[:, :, 0]
    else:
        every = torch.stack(coefs, dim=2)  # [B, F, candidates, K]
        chosen = every.gather(1, fit[..., None, None].expand(-1, -1, *every.shape[2:]))
        chosen = chosen.gather(2, pick[..., None, None].expand(-1, -1, 1, kmax))[:, :, 0]
        n, which = origins.numel(), pick // len(AR_ORDERS)
        est = zd.new_zeros(b, n, ahead)
        for i, centre in enumerate(centres):
            c1 = None if centre is None else centre[:, origins]
            e = extrapolate(history(origins, c1), chosen.reshape(b * n, kmax), ahead).view(b, n, ahead)
            est = torch.where((which == i)[..., None], e if c1 is None else e + c1[..., None], est)
        est = est.clamp(-bound[:, origins, None], bound[:, origins, None])
    return est.to(z.dtype), avail.gather(1, fit), torch.stack([k[:, -1] for k in knowns], dim=1)


def exp_smooth(x: Tensor, weight: Tensor, alpha: float) -> Tensor:
    """``[B, L]`` float64: at every position the exponentially weighted mean of the values of
    ``x`` ``[B, L]`` up to it, each weighted by ``weight`` (0 for unobserved values), weights
    ``(1 - alpha) ** age`` normalised by their sum (so the start needs no initial level). The
    kernel is cut where its weights fall under ``1e-6`` of the newest."""
    length = x.shape[1]
    taps = min(length, max(1, math.ceil(math.log(1e-6) / math.log(1.0 - alpha))))
    kernel = (1.0 - alpha) ** torch.arange(taps, dtype=torch.float64, device=x.device)  # by age
    w = weight.double()
    # A causal convolution through the FFT: exact in float64 and, for spans of tens of values,
    # tens of times faster than a direct convolution on a CPU.
    size = 1 << (length + taps - 1).bit_length()
    k = torch.fft.rfft(kernel, size)
    num = torch.fft.irfft(torch.fft.rfft(x.double() * w, size) * k, size)[:, :length]
    den = torch.fft.irfft(torch.fft.rfft(w, size) * k, size)[:, :length]
    return num / den.clamp_min(1e-12)


def classical_priors(z: Tensor, observed: Tensor, interval: Tensor, patch_len: int, ahead: int,
                     estimators: tuple[str, ...] = DEFAULT_ESTIMATORS, every_value: bool = False,
                     group: Tensor | None = None, ar: tuple[Tensor, Tensor] | None = None,
                     level: Tensor | None = None, weight: Tensor | None = None,
                     ar_given: Tensor | None = None) -> tuple[Tensor, Tensor]:
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
    - ``ewm4`` / ``ewm16``: the exponentially weighted mean of the values up to ``o``, span 4 /
      16 values (:func:`exp_smooth`; simple exponential smoothing: the level of noisy traffic);
    - ``holt16`` / ``holt48``: Brown's double exponential smoothing, span 16 / 48 values: level
      ``2 s1 - s2`` and trend ``alpha / (1 - alpha) (s1 - s2)`` (``s2`` the smoothing of ``s1``),
      the trend damped by ``HOLT_DAMPING`` per step ahead (a daily rise or fall through noise);
      each available once the context holds its span;
    - ``day`` / ``week``: seasonal naive, ``z[o + h - T ceil(h / T)]`` with ``T`` = one day /
      week of steps (``round(86400 / interval)``); available only where the context holds a
      full period (``o + 1 - T >= first observed``) and ``T >= 2``;
    - ``ar``: linear prediction fitted to the values up to ``o`` (:func:`ar_prior`), pooled over
      the rows of a ``group`` ``[B]``; or the caller's ``ar = (est [B, N, ahead], avail [B, N])``
      at these origins, if it has them (a rollout's later passes, :func:`ar_fit` with ``since``);
      ``level`` ``[B]``: fitted about the series' level as well, ``weight`` ``[B]``: a group's rows
      weighed in its pooled fit (:func:`ar_fit`); ``ar_given`` ``[B]``: its ``given``.

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
    smooth: dict[tuple[float, int], Tensor] = {}  # (alpha, order) -> s1 or s2 at every position, float64

    def smoothed(alpha: float, order: int) -> Tensor:  # order 2 smooths order 1: ewm needs only s1
        if (alpha, order) not in smooth:
            smooth[alpha, order] = exp_smooth(zm if order == 1 else smoothed(alpha, 1), observed, alpha)
        return smooth[alpha, order]
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
        elif name in SMOOTHERS:
            span_n = SMOOTHERS[name]
            alpha = 2.0 / (span_n + 1.0)
            s1 = smoothed(alpha, 1)[:, o]
            if name.startswith("ewm"):
                e = s1.to(z.dtype)[..., None].expand(b, n, ahead)
            else:
                s2 = smoothed(alpha, 2)[:, o]
                damp = torch.cumsum(HOLT_DAMPING ** hi.double(), 0)  # [H]
                slope = alpha / (1.0 - alpha) * (s1 - s2)
                e = ((2 * s1 - s2)[..., None] + slope[..., None] * damp).to(z.dtype)
            a = o[None] - span_n + 1 >= first[:, None]
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
        elif name == "ar":
            e, a = ar if ar is not None else ar_prior(z, observed, o, ahead, group, level, weight, ar_given)
        elif name in ("day", "week"):
            period = season_steps(name, interval).clamp(max=2.0 ** 40).long().to(dev)  # [B]
            t = period.clamp_min(1)[:, None, None]  # a period under 2 steps (intervals over a day) is unavailable
            idx = o[None, :, None] + hi[None, None] - t * ((hi[None, None] + t - 1) // t)  # [B, N, H]
            a = (period[:, None] >= 2) & (o[None] + 1 - period[:, None] >= first[:, None])
            e = zm.gather(1, idx.clamp(0, length - 1).view(b, -1)).view(b, n, ahead)
        else:
            raise ValueError(f"unknown estimator {name!r}; choose from {ESTIMATORS}")
        a = a & seen
        ests.append(torch.where(a[..., None], e, last[..., None].expand(b, n, ahead)))
        avails.append(a)
    return torch.stack(ests, dim=2), torch.stack(avails, dim=2)


def season_steps(name: str, interval: Tensor) -> Tensor:
    """``[B]`` float64: the steps of a ``day``, ``week`` or ``year`` at each row's ``interval``
    (seconds), rounded (the ``day`` and ``week`` estimators' periods; the year's is
    ``check_season``'s for weekly, monthly and quarterly series)."""
    return torch.round(SEASONS[name] / interval.double().clamp_min(1e-9))


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
                        estimators: tuple[str, ...], window: int = 0, limit: Tensor | None = None,
                        group: Tensor | None = None, priors: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """:func:`backtest_mse` with a forecast origin at every value instead of every patch end.

    Same result layout, ``[B, N, E, H]`` at the patch ends ``o_i``: the mean over earlier origins
    ``j`` (any position, ``j + h <= o_i``) of each estimator's squared error ``h`` steps ahead,
    shrunk towards 1 with ``BACKTEST_PRIOR`` pseudo-counts. A token then has evidence from its own
    patch: with 8 values of context (the first token) the one-step errors of 7 origins tell noise
    around a level (the mean wins) from a random walk (the last value wins), where the patch-level
    backtest has none. ``window > 0``: the latest ``window`` patches of origins; ``limit`` as in
    :func:`backtest_mse`; ``group`` as in :func:`classical_priors`. ``priors``: the estimators'
    forecasts at every value, as ``classical_priors(..., every_value=True)`` returns them, if the
    caller has them already.
    """
    b, length = z.shape
    p, dev = patch_len, z.device
    est, avail = priors if priors is not None else classical_priors(
        z, observed, interval, p, ahead, estimators, every_value=True, group=group)  # [B, L, E, H]
    hi = torch.arange(1, ahead + 1, device=dev)
    tpos, tgt, tobs = value_targets(z, observed, ahead)
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
