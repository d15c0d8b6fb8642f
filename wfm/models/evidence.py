"""Is the network's forecast better than its classical fallback? The tests ``forecast`` applies.

- :func:`exceeds_noise`: a one-sided paired t-test from sums (``check_origins``: the network's
  extra squared error on checks cut from the end of the context, and
  ``wfm.tasks.significance.beats_beyond_noise``);
- :func:`looks_white`: whether a context (a window's channels pooled) is white noise around its
  mean, where no forecast beats the mean (``white_limit``, for contexts too short for checks).
"""

from __future__ import annotations

import torch
from torch import Tensor

from wfm.models.groups import group_sums, pool_rows


#: ``check_origins``: the classical combination replaces the network only where the network's
#: extra squared error on the checks is significant at the level of this many normal standard
#: errors (one-sided, ~2.3 %), in Student-t terms for the number of checks (``_T_AT_Z2`` holds them).
CHECK_Z = 2.0
#: ``check_origins``'s statistic per check (``CausalForecaster(check_test=)``): ``"difference"``, the
#: network's extra squared error (over the context's variance); ``"log_ratio"``, the log of its
#: squared error over the classical combination's, which one far miss cannot drown (the network
#: behind on all 8 checks of a smooth series, by up to 3,400x, passed the difference test).
CHECK_TESTS = ("difference", "log_ratio", "either")
#: The squared errors (over the context's variance) a log ratio clamps to: both exact is a tie.
LOG_RATIO_FLOOR = 1e-30
#: The fewest checks the log ratios decide from: two or three noisy log ratios can agree by chance
#: (on textbook processes at 64 values of context, two checks, they replaced a better network).
LOG_RATIO_MIN_CHECKS = 4

#: ``white_limit``: standard errors the whiteness score must stay below the limit by, and the
#: fewest lag-1 products that may decide. A lone series of 8 or 16 values (7 or 15 products, a
#: standard error of 0.3-0.5) never decides: on the real CSI series alone it moved 0.04-0.17 dB
#: either way (pretrain/studies.md, "White noise where no check fits"); a window of hundreds of
#: channels pooling theirs has thousands.
WHITE_Z = 1.0
WHITE_MIN_PAIRS = 64

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

def whiteness_score(context: Tensor, group: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(u [B], pairs [B])``: how far a row's (or its group's pooled) context ``[B, L]`` is from
    white noise around its mean, by its lag-1 autocorrelation, and how many lag-1 products say so.

    ``phi`` = the sum of lag-1 products of the deviations from each row's mean over their sum of
    squares. At ``L`` values its expectation is about ``-1 / L`` for white noise and exactly
    ``1 - 3 / L`` for a straight line, so ``u = (phi + 1 / L) / (1 - 2 / L)`` puts them at 0 and 1.
    ``pairs``: the lag-1 products pooled (``L - 1`` per row, as if independent). Needs ``L >= 3``."""
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
    return (phi + 1.0 / length) / (1.0 - 2.0 / length), pairs


def whiteness_bound(context: Tensor, group: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(bound [B], pairs [B])``: :func:`whiteness_score` plus ``WHITE_Z`` standard errors,
    ``bound = u + WHITE_Z / sqrt(pairs) / (1 - 2 / L)``. Needs ``L >= 3``."""
    u, pairs = whiteness_score(context, group)
    return u + WHITE_Z * pairs.rsqrt() / (1.0 - 2.0 / context.shape[1]), pairs


def looks_white(context: Tensor, limit: float, group: Tensor | None = None, dips: bool = False) -> Tensor:
    """``[B]`` bool, ``CausalForecaster(white_limit=limit)``'s test: a row's (or its group's pooled)
    context ``[B, L]`` is white noise around its mean where :func:`whiteness_bound` is at most
    ``limit`` from at least ``WHITE_MIN_PAIRS`` lag-1 products. Fewer than 3 values: never.
    ``dips`` (``white_dips``): the group's common-gain dips are left out first (:func:`fill_dips`)."""
    if context.shape[1] < 3:
        return torch.zeros(context.shape[0], dtype=torch.bool, device=context.device)
    if dips:
        context = fill_dips(context, group)
    bound, pairs = whiteness_bound(context, group)
    return (bound <= limit) & (pairs >= WHITE_MIN_PAIRS)


#: ``white_level``: the blocks a context is cut into to test that its level holds, the fewest values
#: a block may hold, and the standard errors the blocks' F statistic may exceed 1 by.
LEVEL_BLOCKS = 8
LEVEL_MIN_BLOCK = 4
LEVEL_Z = 2.0
LEVEL_LAGS = 8


def white_beyond_doubt(context: Tensor, group: Tensor | None = None, seasons: Tensor | None = None) -> Tensor:
    """``[B]`` bool: ``white_level``'s test of a long context: a row (or its group, pooled) is white
    noise around a level that holds. Its autocorrelations at lags 1..``min(LEVEL_LAGS, L // 4)``
    (each pooled over the group, weighted by its products) are jointly within white noise's spread
    (the Ljung-Box-like ``Q = sum_k n_k r_k^2`` at most ``m + LEVEL_Z sqrt(2 m)`` for ``m`` lags,
    from at least ``WHITE_MIN_PAIRS`` lag-1 products), and its level holds (:func:`level_holds`).
    Stricter than :func:`looks_white`'s "closer to white than to a line", which is for 8-16 values:
    with hundreds of values a correlation of 0.05, or a Doppler turn that leaves lag 1 at zero and
    lag 2 negative, is evidence the network uses (a fading TDL-A link, pooled: 0.80x the best
    classical, 0.91-0.96x where the lag-1 test alone gave it the mean). ``seasons``: more lags, as
    :func:`pooled_q` reads them."""
    length = context.shape[1]
    lags = min(LEVEL_LAGS, length // 4)
    if lags < 1:
        return torch.zeros(context.shape[0], dtype=torch.bool, device=context.device)
    x = context.double()
    dev = x - x.mean(dim=1, keepdim=True)
    power = (dev * dev).sum(dim=1)
    power = pool_rows(power, group) if group is not None else power
    q, m, _, pairs = pooled_q(dev, power, group, lags, seasons)
    white = q <= m + LEVEL_Z * (2.0 * m).sqrt()
    return (pairs >= WHITE_MIN_PAIRS) & (power > 0) & white & level_holds(context, group)


def pooled_q(dev: Tensor, power: Tensor, group: Tensor | None, lags: int,
             seasons: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(Q, m, r1, pairs1)`` ``[B]`` of the Ljung-Box-like test that :func:`white_beyond_doubt`
    and :func:`walk_beyond_doubt` share: ``Q = sum_k n_k r_k^2`` over lags ``1..lags`` and each
    row's ``seasons`` (``[B, S]`` periods in steps, 0 for none; read where a third of the ``n``
    values or less), of ``dev`` ``[B, n]`` (less its mean) whose (group-pooled) power is ``power``;
    each correlation pooled over the group, weighted by its products, plus white noise's bias
    ``1 / n``; ``m`` the lags read, ``r1`` the lag-1 correlation and ``pairs1`` its products."""
    n = dev.shape[1]

    def correlation(k: int) -> tuple[Tensor, Tensor]:
        lag = (dev[:, k:] * dev[:, :-k]).sum(dim=1)
        pairs = torch.full_like(lag, float(n - k))
        if group is not None:
            lag, pairs = pool_rows(lag, group), pool_rows(pairs, group)
        return torch.where(power > 0, lag / power.clamp_min(1e-300), 0.0) + 1.0 / n, pairs

    lagged = [correlation(k) for k in range(1, lags + 1)]
    q = sum(pairs * r * r for r, pairs in lagged)
    m = torch.full_like(q, float(lags))
    if seasons is not None:  # each row's seasons' lags, where its values hold three of them
        for k in seasons[(seasons > lags) & (seasons <= n // 3)].unique().tolist():
            r, pairs = correlation(k)
            read = (seasons == k).any(dim=1).double()
            read = read if group is None else (pool_rows(read, group) > 0).double()
            q, m = q + read * pairs * r * r, m + read
    return q, m, lagged[0][0], lagged[0][1]


#: ``walk_last``: the lags its whiteness test reads (a year of months; a row needs three steps
#: a lag), the standard errors its lag-1 correlation may fall below zero by, the Dickey-Fuller t
#: statistic (with a constant) below which a unit root is rejected (5 %), and the standard errors
#: a drift must stand out by.
WALK_LAGS = 12
WALK_Z = 1.0
WALK_DF = -2.86
WALK_DRIFT_Z = 3.0


def walk_beyond_doubt(context: Tensor, group: Tensor | None = None,
                      seasons: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(walk [B] bool, drift [B])``: ``walk_last``'s test of a row (or its group, pooled) of at
    least ``3 WALK_LAGS + 1`` values: is it a random walk beyond doubt, and its drift per step (0
    where not beyond ``WALK_DRIFT_Z`` standard errors). A walk's steps (first differences, less
    their mean) are white (lags 1..``WALK_LAGS``, ``Q = sum_k n_k r_k^2`` within
    ``m + LEVEL_Z sqrt(2 m)``, as :func:`white_beyond_doubt` tests a level), and their lag-1
    correlation is not negative beyond ``WALK_Z`` standard errors (noise around a level, or a
    level drifting under its noise, gives -0.5 to 0); its level does not hold (:func:`level_holds`),
    and the Dickey-Fuller test does not reject a unit root (``WALK_DF``: a stationary AR(1) at 0.9
    over 256 values is told apart; over 64 it is not, and its last value is then nearly as good).
    There the last value, plus the drift, is the forecast: one that leans to the context mean or
    older levels loses to it (a share price at 64 trading days: 1.20x persistence). ``seasons``
    ``[B, S]``: more lags, as :func:`pooled_q` reads them (two days of hourly traffic passed lags
    1-12)."""
    steps, lags = context.shape[1] - 1, WALK_LAGS
    if steps < 3 * lags:  # (three years of months test the year's lag; fewer can not)
        no = torch.zeros(context.shape[0], dtype=torch.bool, device=context.device)
        return no, torch.zeros(context.shape[0], dtype=torch.float64, device=context.device)
    x = context.double()
    d = x.diff(dim=1)
    mean = d.mean(dim=1, keepdim=True)
    d = d - mean
    power = (d * d).sum(dim=1)
    count = torch.full_like(power, float(steps))
    prev = x[:, :-1] - x[:, :-1].mean(dim=1, keepdim=True)  # Dickey-Fuller: d_t on x_{t-1}, with a constant
    sxy, sxx = (prev * d).sum(dim=1), (prev * prev).sum(dim=1)
    drift = mean[:, 0]  # each row's own, beyond doubt by its own steps
    drift = torch.where(drift.abs() > WALK_DRIFT_Z * (power / (steps - 1) / steps).sqrt(), drift, 0.0)
    rows = torch.ones_like(power)
    if group is not None:
        power, count, sxy, sxx, rows = (pool_rows(v, group) for v in (power, count, sxy, sxx, rows))
    q, m, r1, _ = pooled_q(d, power, group, lags, seasons)
    white = (q <= m + LEVEL_Z * (2.0 * m).sqrt()) & (r1 >= -WALK_Z / count.sqrt())
    slope = sxy / sxx.clamp_min(1e-300)
    resid = (power - slope * sxy).clamp_min(0.0) / (count - 2.0 * rows).clamp_min(1.0)
    unit_root = (sxx > 0) & (slope / (resid / sxx.clamp_min(1e-300)).sqrt().clamp_min(1e-300) > WALK_DF)
    walk = (power > 0) & white & unit_root & ~level_holds(context, group)
    return walk, drift


def level_holds(context: Tensor, group: Tensor | None = None) -> Tensor:
    """``[B]`` bool: whether a row's (or its group's pooled) level holds over its context ``[B, L]``:
    the one-way F statistic of its last values cut into up to ``LEVEL_BLOCKS`` blocks of at least
    ``LEVEL_MIN_BLOCK`` (the variance of the block means, times the block length, over the variance
    within the blocks; about 1 for white noise, ``sqrt(2 / dof)`` apart) stays within ``LEVEL_Z``
    of its standard errors of 1. The lag-1 test of :func:`looks_white` cannot see a level that
    drifts slowly under its noise; the block means do. Fewer than two blocks: never."""
    length = context.shape[1]
    blocks = min(LEVEL_BLOCKS, length // LEVEL_MIN_BLOCK)
    if blocks < 2:
        return torch.zeros(context.shape[0], dtype=torch.bool, device=context.device)
    size = length // blocks
    x = context[:, length - blocks * size:].double().reshape(len(context), blocks, size)
    means = x.mean(dim=2, keepdim=True)
    between = size * ((means - means.mean(dim=1, keepdim=True)) ** 2).sum(dim=(1, 2))
    within = ((x - means) ** 2).sum(dim=(1, 2))
    dof_b = torch.full_like(between, float(blocks - 1))
    dof_w = torch.full_like(between, float(blocks * (size - 1)))
    if group is not None:
        between, within, dof_b, dof_w = (pool_rows(v, group) for v in (between, within, dof_b, dof_w))
    f = (between / dof_b) / (within / dof_w).clamp_min(1e-300)
    return (within > 0) & (f <= 1.0 + LEVEL_Z * (2.0 / dof_b).sqrt())


def shrunk_mean(context: Tensor, group: Tensor | None = None) -> Tensor:
    """``[B, 1]`` float64: each row's context mean, shrunk towards zero where a row's (or its
    group's pooled) means are indistinguishable from zero-mean noise.

    A row's mean ``m`` of ``L`` values estimates its level ``mu`` with variance ``se^2 = s^2 / L``.
    Under ``mu = 0`` the group's ``sum m^2`` (a window's channels) matches its ``sum se^2``. Where
    their ratio stays within ``WHITE_Z`` standard errors of 1 (``sqrt(2 (1 + 1 / (L - 1)) / G)``,
    ``G = (sum se^2)^2 / sum se^4`` the group's effective number of rows), the levels are taken
    as drawn around zero with variance ``tau^2 = (sum m^2 - sum se^2) / rows`` (at least 0), and
    each row gets the posterior mean ``m tau^2 / (tau^2 + se^2)`` (empirical Bayes, James-Stein).
    Zero-mean noise (the real and imaginary parts of CSI whose phase is random per packet) then
    gets about zero, which beats the mean of ``L`` noisy values by ``1 / L`` of the noise power.
    Every other row keeps its mean to the bit: a level that stands out of its noise (a still
    link's amplitude, traffic), and any group whose means stand out together, where one
    ``tau^2`` would shrink its weak channels wrongly (on the still Intel 5300 link, shrinking
    every group cost 2 %). Needs ``L >= 2``."""
    x = context.double()
    length = x.shape[1]
    if length < 2:
        raise ValueError(f"a shrunk mean needs at least 2 values of context, got {length}")
    m = x.mean(dim=1)
    se2 = x.var(dim=1, unbiased=True) / length
    sums = [m * m, se2, se2 * se2, torch.ones_like(m)]
    if group is not None:
        sums = [pool_rows(v, group) for v in sums]
    mm, ss, s4, rows = sums
    eff = ss * ss / s4.clamp_min(1e-300)
    limit = 1.0 + WHITE_Z * (2.0 * (1.0 + 1.0 / (length - 1)) / eff.clamp_min(1.0)).sqrt()
    zero_like = (ss > 0) & (mm <= limit * ss)
    tau2 = ((mm - ss) / rows).clamp_min(0.0)
    factor = tau2 / (tau2 + se2).clamp_min(1e-300)
    return torch.where(zero_like, m * factor, m)[:, None]


#: ``white_scale``: the backtests of :func:`backtest_scale` hide the context's last ``k`` values for each
#: ``k`` here (the MAE guard's ``guard_origins``), and its fitted scale is taken only below
#: ``WHITE_SCALE_BELOW``: a window whose level is indistinguishable from zero (zero-mean noise), not
#: a still link whose last packets came in a little low (pretrain/studies.md, "The white mean's
#: scale from its own backtest").
WHITE_SCALE_ORIGINS = (2, 3, 4)
WHITE_SCALE_BELOW = 0.5


def prior_shrink(pt: Tensor, pp: Tensor, tt: Tensor) -> Tensor:
    """The shrink ``a = p.t / min(p.p, t.t)`` of a prior ``p`` towards zero, clipped to [0, 1], from a
    backtest's sums against its target ``t``: the least-squares coefficient of whichever of ``t`` on
    ``p`` or ``p`` on ``t`` is the larger, so that noise around a level the prior holds and a gain step
    give 1 and only a target that decorrelates from its prior is shrunk (the MAE guard's rule,
    :func:`wfm.models.mae.fitted_scales`)."""
    return (pt / torch.minimum(pp, tt).clamp_min(1e-30)).clamp(0.0, 1.0)


def fitted_shrink(pt: Tensor, pp: Tensor, tt: Tensor) -> Tensor:
    """:func:`prior_shrink` where it fits the backtest at least as well as the full prior (``|t -
    a p|^2 <= |t - p|^2``), else 1: the scale the MAE guard gives a prior without correction
    (:func:`wfm.models.mae.fitted_prior_scale`) and ``white_scale`` a white window's mean."""
    a = prior_shrink(pt, pp, tt)
    return torch.where(tt - 2 * a * pt + a * a * pp <= tt - 2 * pt + pp, a, torch.ones_like(a))


def backtest_scale(context: Tensor, group: Tensor | None = None) -> Tensor:
    """``[B, 1]`` float64: the scale of a white window's mean that its own context fits, the MAE
    guard's rule (:func:`fitted_shrink`) on the causal model's rows.

    Each backtest hides the context's last ``k`` values (``WHITE_SCALE_ORIGINS``, where at least 2
    values stay before them) and forecasts them by the mean of the values before; ``p.t``, ``p.p``
    and ``t.t`` are summed over the backtests (and a group's rows). The scale ``a = p.t / min(p.p,
    t.t)`` in [0, 1] is taken where it fits the backtests at least as well as 1 and is below
    ``WHITE_SCALE_BELOW``; elsewhere 1, and everywhere for contexts too short for a backtest
    (fewer than 4 values). Zero-mean noise (the real and imaginary parts of CSI whose
    phase is random per packet) gets about 0, a level that stands out of its noise 1."""
    x = context.double()
    length = x.shape[1]
    ones = torch.ones(len(x), 1, dtype=torch.float64, device=x.device)
    origins = [k for k in WHITE_SCALE_ORIGINS if length - k >= 2]
    if not origins:  # too short for a backtest: no scale
        return ones
    sums = [torch.zeros(len(x), dtype=torch.float64, device=x.device) for _ in range(3)]  # p.t, p.p, t.t
    for k in origins:
        p, t = x[:, :length - k].mean(dim=1, keepdim=True), x[:, length - k:]
        sums[0] += (p * t).sum(dim=1)
        sums[1] += p[:, 0] ** 2 * k
        sums[2] += (t * t).sum(dim=1)
    pt, pp, tt = sums if group is None else (pool_rows(v, group) for v in sums)
    a = fitted_shrink(pt, pp, tt)
    return torch.where(a[:, None] < WHITE_SCALE_BELOW, a[:, None], ones)


#: ``white_dips``: a step whose common power (mean square over a window's channels) sits more than
#: ``DIP_THRESHOLD_DB`` and ``DIP_SIGMAS`` robust standard deviations below the window's median is a
#: dip (the rule of :func:`wfm.data.calibrate.gain_dips`, which reads them from a whole capture), in
#: windows of at least ``DIP_MIN_ROWS`` rows whose dips hold at most a quarter of the steps.
DIP_THRESHOLD_DB = 1.0
DIP_SIGMAS = 3.0
DIP_MIN_ROWS = 8


def common_gain_db(context: Tensor, group: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(db [G, L], rows [G, 1], inv [B])``: each group's common gain at each step, in dB of the
    mean square over its rows of ``context`` ``[B, L]`` (float64), its row count, and each row's group."""
    x = context.double()
    sums, inv = group_sums(x * x, group)
    rows = torch.bincount(inv).to(x.dtype)[:, None]
    return 10.0 * (sums / rows).clamp_min(1e-300).log10(), rows, inv


def dip_steps(context: Tensor, group: Tensor | None = None) -> Tensor:
    """``[B, L]`` bool: the steps of each row's context ``[B, L]`` at which its group's common gain
    dips (every channel of a window at once, as commodity WiFi's AGC does on a still link; the
    ``gain_dip_*`` impairment of :mod:`wfm.data.impairments`).

    The common gain is read from the group's mean square at each step, so a drop shared by every
    channel stands out of the channels' own changes, which it averages away; a fade that builds
    over the window widens the robust spread it is judged against instead. A dip comes back; a
    low run at the end of the context has not yet, and may be a level that changed (an AGC step)
    as well as a dip. So it counts only next to evidence that this link dips: another dip in the
    same context that came back, and no longer than a quarter of the context. None at all for a
    lone row (no ``group``), a group of fewer than ``DIP_MIN_ROWS`` rows, fewer than 4 steps, or
    more than 3/8 of them low (the median the level is read from stays among the other steps)."""
    b, length = context.shape
    none = torch.zeros(b, length, dtype=torch.bool, device=context.device)
    if group is None or length < 4:
        return none
    db, rows, inv = common_gain_db(context, group)
    med = db.median(dim=1, keepdim=True).values
    spread = 1.4826 * (db - med).abs().median(dim=1, keepdim=True).values
    low = db < med - torch.clamp(DIP_SIGMAS * spread, min=DIP_THRESHOLD_DB)
    trailing = low.flip(1).to(torch.int64).cumprod(dim=1).sum(dim=1, keepdim=True)
    count = low.sum(dim=1, keepdim=True)
    ok = (rows >= DIP_MIN_ROWS) & (8 * count <= 3 * length) & ((trailing == 0) | ((trailing <= length // 4) & (count > trailing)))
    return (low & ok)[inv]


def fill_dips(context: Tensor, group: Tensor | None = None) -> Tensor:
    """``context`` ``[B, L]`` with the steps of :func:`dip_steps` replaced by each row's mean over
    its other steps: what the white-noise test reads with ``white_dips`` (a dip comes back, so it
    says nothing of whether the level holds). No dip: ``context`` itself."""
    dip = dip_steps(context, group)
    if not bool(dip.any()):
        return context
    keep = (~dip).to(context.dtype)
    mean = (context * keep).sum(dim=1, keepdim=True) / keep.sum(dim=1, keepdim=True).clamp_min(1.0)
    return torch.where(dip, mean, context)


#: ``dip_level``: packets before a step that make its local level, and the longest run that counts as a dip.
DIP_LOCAL, DIP_RUN = 8, 1


def _local_lows(db: Tensor, thr: Tensor) -> Tensor:
    """``[G, L]`` bool: steps of the common gain ``db`` ``[G, L]`` more than ``thr`` ``[G, 1]`` under the
    median of the ``DIP_LOCAL`` steps before them (those not low themselves, where 3 or more are not)."""
    g, length = db.shape
    low = torch.zeros(g, length, dtype=torch.bool, device=db.device)
    for t in range(min(DIP_LOCAL, length - 1), length):
        ref, was = db[:, max(0, t - DIP_LOCAL):t], low[:, max(0, t - DIP_LOCAL):t]
        kept = torch.where(was, torch.full_like(ref, float("nan")), ref).nanmedian(dim=1).values
        level = torch.where((~was).sum(dim=1) >= 3, kept, ref.median(dim=1).values)
        low[:, t] = db[:, t] < level - thr[:, 0]
    return low


def lift_trailing_dips(context: Tensor, group: Tensor | None = None) -> Tensor:
    """``dip_level``: ``context`` ``[B, L]`` with a window's trailing common-gain dip lifted back to the
    level before it, where the window has shown that it dips and comes back.

    A step is low where the window's common gain (dB of the mean square over its rows, as
    :func:`dip_steps`) lies more than ``max(DIP_THRESHOLD_DB, DIP_SIGMAS sd)`` under the median of
    the ``DIP_LOCAL`` steps before it (``sd`` from the median packet-to-packet change): judged against
    the local level, so that a link whose level drifts does not read as dipping. A window qualifies
    where its last 1 to ``DIP_RUN`` steps are low and an earlier run of at most ``DIP_RUN`` low steps
    came back, the step after it within half the threshold of the level before it (an AGC step that
    stays does not). Its trailing low steps are scaled by ``10 ** ((level - gain) / 20)``, ``level`` the
    median of the ``DIP_LOCAL`` steps before them. A dip of SNR-scaled Intel 5300 CSI is one packet
    whose noise reading jumped (data/README.md). Nothing for lone rows or windows of fewer than
    ``DIP_MIN_ROWS`` rows; no qualifying window: ``context`` itself."""
    length = context.shape[1]
    if group is None or length < DIP_LOCAL + 2:
        return context
    db, rows, inv = common_gain_db(context, group)
    sd = 1.4826 * (db[:, 1:] - db[:, :-1]).abs().median(dim=1, keepdim=True).values / 2 ** 0.5
    thr = (DIP_SIGMAS * sd).clamp_min(DIP_THRESHOLD_DB)
    low = _local_lows(db, thr)
    run = low.flip(1).to(torch.int64).cumprod(dim=1).sum(dim=1)
    scale = torch.ones_like(db)
    for g in ((rows[:, 0] >= DIP_MIN_ROWS) & (run >= 1) & (run <= DIP_RUN)).nonzero().flatten().tolist():
        base = length - int(run[g])
        lows, t, returned = low[g, :base].tolist(), 1, False
        while t < base and not returned:  # an earlier short dip that came back to its level
            if not lows[t]:
                t += 1
                continue
            a = t
            while t < base and lows[t]:
                t += 1
            returned = (t - a <= DIP_RUN and t < base
                        and bool(db[g, t] >= db[g, max(0, a - DIP_LOCAL):a].median() - thr[g, 0] / 2))
        if returned:
            level = db[g, max(0, base - DIP_LOCAL):base].median()
            scale[g, base:] = 10.0 ** ((level - db[g, base:]) / 20.0)
    if bool((scale == 1.0).all()):
        return context
    return (context.double() * scale[inv]).to(context.dtype)


#: ``drift_ar``: a window's pooled lag-1 autocorrelation this many standard errors above white noise's
#: is a drift (the standard error from the window's effective number of channels, :func:`drifts_beyond_noise`).
DRIFT_Z = 3.0
#: ``drift_ar``: the Gram matrices of at most this many values (rows x length x length) at once.
DRIFT_BLOCK = 1 << 22


def drifts_beyond_noise(context: Tensor, group: Tensor, shape: bool = False) -> Tensor:
    """``[B]`` bool, ``drift_ar``'s test: the rows of a window (a ``group`` of at least
    ``DIP_MIN_ROWS`` rows of ``context`` ``[B, L]``, ``L >= 4``) move together more smoothly than
    white noise could, beyond doubt.

    The statistic is the window's lag-1 autocorrelation pooled over its rows, ``r = sum_t d_t . d_(t+1)
    / sum_t |d_t|^2`` (``d_t`` the deviations of step ``t`` from each row's mean). Under white noise
    it is ``-1 / L`` with a variance of about ``1 / (n L)``, where ``n`` is the number of independent
    channels. A window's channels are not independent (a gain they share, a few paths that drive them
    all), so ``n`` is the participation ratio of their covariance, ``tr(S)^2 / tr(S^2)``, with
    ``tr(S^2)`` from the products of distinct steps' deviation vectors (``sum_(t != s) (d_t . d_s)^2``,
    which the noise of each step does not bias). The window drifts where ``(r + 1 / L) sqrt(n L)``
    exceeds ``DRIFT_Z``. A slowly turning link (Doppler of a few hertz at 1 ms) whose turn hides
    under its noise has ``r`` of 0.2-0.4 over 16 packets but moves as a handful of channels, which
    a test that counted every channel as independent evidence would read as white; still links
    (the real captures) concentrate their variation in a common gain and stay below.

    ``shape`` (``drift_shape``): a window also drifts where the test passes with Ljung-Box's
    small-sample variance ``(L - 1) / (L (L + 2) n)`` (0.70x of ``1 / (n L)`` at 8 steps, 0.83x at
    16) both as given and with every step divided by the window's common gain (its RMS over the rows
    at that step): a drift of the channels' shape, as fading moves them. The sharper variance alone
    also passes the still links whose receiver steps a gain they all share (an AGC step, SNR-scaled
    CSI's noise reading: the real Intel capture at 16 packets); the shape alone misses links whose
    drift is mostly that gain, which the release's test keeps."""
    b, length = context.shape
    out = torch.zeros(b, dtype=torch.bool, device=context.device)
    if length < 4 or b == 0:
        return out
    x = context.double()
    _, inv, counts = torch.unique(group, return_inverse=True, return_counts=True)
    excess, channels, power = _lag1_excess(x, inv, counts)
    enough = (counts >= DIP_MIN_ROWS) & (power > 0)
    drift = (_drift_z(excess, channels, length, False) > DRIFT_Z) & enough
    if shape:  # the sharper variance, where the drift is one of the channels' shape too
        sharp = enough & ~drift & (_drift_z(excess, channels, length, True) > DRIFT_Z)
        if bool(sharp.any()):
            gain = (group_sums(x * x, group)[0] / counts[:, None]).sqrt().clamp_min(1e-300)
            excess, channels, _ = _lag1_excess(x / gain[inv], inv, counts)
            drift |= sharp & (_drift_z(excess, channels, length, True) > DRIFT_Z)
    return drift[inv]


def _lag1_excess(x: Tensor, inv: Tensor, counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(r + 1 / L, n, power)``, each ``[G]``: :func:`drifts_beyond_noise`'s pooled lag-1
    autocorrelation above white noise's mean, effective channels and power, for the rows ``x``
    ``[B, L]`` (float64) of the groups ``inv`` (``counts`` rows each)."""
    length = x.shape[1]
    d = x - x.mean(dim=1, keepdim=True)
    gram = x.new_zeros(len(counts), length, length)
    step = max(1, DRIFT_BLOCK // (length * length))
    for start in range(0, x.shape[0], step):  # (rows x L x L at once would be large for long contexts)
        part = d[start:start + step]
        gram.index_add_(0, inv[start:start + step], part[:, :, None] * part[:, None, :])
    diag = torch.diagonal(gram, dim1=1, dim2=2)  # [G, L]: |d_t|^2
    power = diag.sum(dim=1)
    trace = power / (length - 1)
    distinct = (gram * gram).sum(dim=(1, 2)) - (diag * diag).sum(dim=1)
    channels = (trace * trace / (distinct / (length * (length - 1))).clamp_min(1e-300)).clamp(min=1.0)
    channels = torch.minimum(channels, counts.to(x.dtype))
    r = torch.diagonal(gram, offset=1, dim1=1, dim2=2).sum(dim=1) / power.clamp_min(1e-300)
    return r + 1.0 / length, channels, power


def _drift_z(excess: Tensor, channels: Tensor, length: int, exact: bool) -> Tensor:
    """The z-score of :func:`_lag1_excess`'s ``excess`` over ``channels`` effective channels of
    ``length`` steps; ``exact``: with Ljung-Box's null variance instead of ``1 / (n L)``."""
    if exact:
        return excess / ((length - 1) / (length * (length + 2) * channels)).sqrt()
    return excess * (channels * length).sqrt()
