"""How :class:`wfm.models.causal.CausalForecaster` forecasts: the autoregressive rollout and the
inference rules that check the network against its classical combination.

:class:`ForecastMixin` holds ``forecast`` and what it calls, on top of the model's ``forward``:

- the rollout over patches (the network's forecast and, in the same passes, the guard's
  classical combination's);
- ``check_origins``: backtest both on cuts from the end of the context, and keep the classical
  forecast where the network lost beyond noise (:func:`wfm.models.evidence.exceeds_noise`);
- ``white_limit``: the context mean for pooled white noise where no check fits
  (:func:`wfm.models.evidence.looks_white`);
- ``box_cox``: non-negative series forecast in the Box-Cox space their context chooses;
- ``coarse_blend``: long contexts read with and without their coarse tokens, and averaged;
- ``check_ar``, ``check_trend``, ``check_range``, ``check_season``, ``check_drift``,
  ``check_last``, ``check_mean``: linear prediction, the last step extrapolated, a constant
  velocity's range (rows told they are ranges), seasonal naive, a beam profile's drift,
  persistence and the context mean tested on the same checks, and taken (or blended in) where
  they led them;
- ``drift_ar``: a window whose channels drift together beyond doubt where no two checks fit,
  forecast by linear prediction pooled over them (:func:`wfm.models.evidence.drifts_beyond_noise`);
- ``level_shift``: a context that held one level and stepped to another in its last values, which
  no check can see, forecast at the new level (:mod:`wfm.models.level_shift`);
- ``dip_level``: a window's trailing one-packet common-gain dip lifted back to the level before it,
  where the window has dipped and come back before (:func:`wfm.models.evidence.lift_trailing_dips`);
- ``propagate_quantiles`` (off in the release): later patches' quantiles widened by the
  uncertainty of the patches before them (:func:`spread_bounds`).

None of them changes a weight; ``forecast(check=False)`` skips them all. The model provides
``forward``, ``fine_len`` and its options (``patch_len``, ``prior``, ``max_context``, ``eps``,
``horizon_patches``, ``quantile_levels``, ``head``, ``guard``, ``check_origins``,
``white_limit``, ``box_cox``, ``coarse_len``, ``coarse_blend``).
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import Tensor

from wfm.models import box_cox as boxcox  # (the module: `box_cox` is also the option's name)
from wfm.models.evidence import (LOG_RATIO_FLOOR, LOG_RATIO_MIN_CHECKS, backtest_scale, drifts_beyond_noise,
                                 exceeds_noise, fill_dips, lift_trailing_dips, looks_white, shrunk_mean,
                                 walk_beyond_doubt, white_beyond_doubt)
from wfm.models.groups import pool_rows, power_weights
from wfm.models.level_shift import level_after_shift, level_shift_start
from wfm.models.linear_prediction import ar_forecast_rows
from wfm.models.profile_drift import drift_forecast
from wfm.models.series_priors import normalise_stats, season_steps
from wfm.models.smoothing import ses_levels
from wfm.safety import as_tensor, binary_scale

#: Rows whose largest magnitude is outside these bounds are forecast at a power-of-two scale that puts
#: it in ``[2^6, 2^7)`` (``ForecastMixin._input_scale``); rows within them, as given, bit for bit. The
#: forecast is the same (to 1e-3: linear prediction's fit is not exactly scale-free) at every scale
#: from 2^-12 to 2^11 of a series peaking at 11 (but for a band where its values cross 1, in which
#: Box-Cox's choice moves), and fell apart below about 2^-28 before this rescaling.
INPUT_SCALE_LOW, INPUT_SCALE_HIGH, INPUT_SCALE_TARGET = 2.0 ** -10, 2.0 ** 40, 6
#: Float64 rows whose level is more than this many times their spread are forecast as their deviations
#: from it (``ForecastMixin._input_offset``): float32 keeps 24 bits, so at 2^12 the variation still has 12.
INPUT_OFFSET_RATIO = 2.0 ** 12


def spread_bounds(point: Tensor, quant: Tensor, low_path: Tensor, high_path: Tensor,
                  levels: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    """How far the outer quantiles of one rollout step must move out (``[B, P]`` each, >= 0) to
    carry the uncertainty of the steps before: ``point`` and ``quant`` ``[B, P, Q]`` are the
    network's forecast on the point path, ``low_path`` / ``high_path`` its point forecast on the
    paths that appended the earlier steps' widened lower / upper bounds. The distance from the
    point to each bound becomes ``sqrt(own ** 2 + shift ** 2)``, ``shift`` how far the forecast on
    that bound's path moved towards it (errors of the past and of this step assumed independent)."""
    lo, hi = levels.index(min(levels)), levels.index(max(levels))
    own_lo, own_hi = (point - quant[..., lo]).clamp_min(0.0), (quant[..., hi] - point).clamp_min(0.0)
    shift_lo, shift_hi = (point - low_path).clamp_min(0.0), (high_path - point).clamp_min(0.0)
    return ((own_lo ** 2 + shift_lo ** 2).sqrt() - own_lo, (own_hi ** 2 + shift_hi ** 2).sqrt() - own_hi)


#: ``forecast`` runs at most this many context values (rows x length) at once (whole groups).
FORECAST_VALUES = 1 << 18
#: ``check_drift``: the share of the drifting profile in the forecast where it erred less than the
#: forecast so far on the checks. Half, beyond doubt or not: on held-out generated sweeps taking all
#: of it where it won beyond doubt was worse (pretrain/studies.md, "A beam profile that drifts").
DRIFT_SHARE = 0.5


def seasonal_naive(context: Tensor, period: Tensor, horizon: int) -> Tensor:
    """``[B, horizon]``: each row of ``context`` ``[B, L]`` continued by its value one period earlier,
    ``x[L - 1 + h - T ceil(h / T)]`` for ``h = 1 .. horizon`` (``period`` ``[B]``, clamped to 1 .. L)."""
    length = context.shape[1]
    h = torch.arange(1, horizon + 1, device=context.device)[None]
    t = period.clamp(1, length).to(h.device)[:, None]
    return context.gather(1, length - 1 + h - t * ((h + t - 1) // t))


def seasonal_mean(context: Tensor, period: Tensor, horizon: int, drift: bool = False) -> Tensor:
    """``[B, horizon]`` float64: each row of ``context`` ``[B, L]`` continued by its seasonal profile
    averaged over every full period the context holds, on the level of its last period.

    The value ``k`` periods back at each step's phase (seasonal naive's, ``k = 1 .. K``) is taken as
    its deviation from the mean of the period it lies in (periods counted back from the end), the
    ``K`` deviations are averaged, and the last period's mean is added. With one full period this is
    :func:`seasonal_naive` (to the bit); with several, a value's own noise averages out of the
    profile, which seasonal naive carries whole. ``period`` ``[B]`` is clamped to 1 .. L.

    ``drift``: a growing (or shrinking) season: the period means' mean step per period, as a slope
    per value, is taken out of each period's values before they are averaged and carried from the
    last period's centre to each step ahead; a line plus a fixed profile is continued exactly.
    Nothing where the context holds one period."""
    x = context.double()
    b, length = x.shape
    out = x.new_empty(b, horizon)
    h = torch.arange(1, horizon + 1, device=x.device)
    periods = period.clamp(1, length).to(x.device)
    for t in periods.unique().tolist():
        rows = (periods == t).nonzero().flatten()
        z = x[rows]
        n = length // t  # full periods, counted back from the end
        last = length - 1 + h - t * ((h + t - 1) // t)  # seasonal naive's value: in the last period
        if n == 1:
            out[rows] = z[:, last]
            continue
        means = z[:, length - n * t:].reshape(len(rows), n, t).mean(-1).flip(1)  # [R, n]: 1 period back first
        total = z.new_zeros(len(rows), horizon)
        for k in range(n):  # the value k + 1 periods back, off the mean of its period
            total += z[:, last - k * t] - means[:, k:k + 1]
        out[rows] = total / n + means[:, :1]
        if drift:  # the level carried ahead, and the same slope taken out of each period's profile
            step = (means[:, 0] - means[:, n - 1]) / (n - 1)
            within = (last - length + t).double() - (t - 1) / 2  # a step's value from its period's centre
            out[rows] += step[:, None] * ((t - 1) / 2 + h.double() - within)[None] / t
    return out


#: ``check_trend``: by how many times the last step's extrapolation must undercut persistence's
#: error on most of the checks (pretrain/studies.md, "The last step extrapolated as a candidate of
#: the check": weaker gates cost held-out 10- and 15-minute traffic up to 10 %).
TREND_MARGIN = 2.0


def last_step_trend(context: Tensor, horizon: int) -> Tensor:
    """``[B, horizon]`` float64: each row of ``context`` ``[B, L]`` (``L >= 2``) continued by its last
    step, ``x[L - 1] + h (x[L - 1] - x[L - 2])`` for ``h = 1 .. horizon``: linear extrapolation
    through the last two values (persistence of the velocity)."""
    x = context.double()
    h = torch.arange(1, horizon + 1, device=context.device, dtype=torch.float64)
    return x[:, -1:] + h * (x[:, -1:] - x[:, -2:-1])


def trend_in_range(context: Tensor, horizon: int) -> Tensor:
    """``[B]`` bool: rows whose :func:`last_step_trend` moves over ``horizon`` steps by no more than
    the range the row's ``context`` spans (``max - min``). A path the context shows moving steadily
    covers more than that in ``L - 1`` steps, so a horizon shorter than the context always passes
    it; a last step that is a burst (278 after 111 in 10-minute traffic), carried 36 steps, does not."""
    x = context.double()
    move = (x[:, -1] - x[:, -2]).abs() * horizon
    return move <= x.amax(dim=1) - x.amin(dim=1)


def trend_holds_locally(context: Tensor, horizon: int, group: Tensor | None = None) -> Tensor:
    """``[B]`` bool: rows whose own steps vouch for continuing the last step ``horizon`` steps ahead.
    At each step ``t`` of the context, a path of constant curvature would leave the extrapolation
    ``|dd_t| h (h + 1) / 2`` off after ``h`` steps and persistence ``|d_t| h`` (``d``, ``dd``: the
    first and second differences); the rule is :data:`TREND_MARGIN`'s on the checks, that the
    former's square be below ``1 / TREND_MARGIN`` of the latter's, here on more than half of the
    context's steps (a group's rows pooled per step). A vehicle passing the base station turns
    within a 16-value context, so the checks of ``check_origins``, cut before the turn, deny the
    slope that its steps since show; noise (traffic, CSI) has second differences as large as its
    first and never passes."""
    x = context.double()
    if x.shape[1] < 3:
        return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    d = x.diff(dim=1)
    slope, bend = d[:, 1:] ** 2, (d.diff(dim=1) * (horizon + 1) / 2) ** 2
    if group is not None:
        slope, bend = pool_rows(slope, group), pool_rows(bend, group)
    return 2 * (TREND_MARGIN * bend < slope).sum(dim=1) > slope.shape[1]


#: ``check_last``: persistence goes in only where the forecast so far erred more than this many times
#: its error on most of the checks (1: wherever it led them).
LAST_MARGIN = 2.0
#: ``short_checks``: the fewest checks of a shorter horizon that a context too short for two checks
#: of the whole horizon is given (a paired test of 2 checks has 1 degree of freedom, and needs 14
#: standard errors to decide; of 3, 4.5).
SHORT_CHECKS = 3
#: ``walk_last``, ``white_level``: a season the test cannot read (longer than a third of the context)
#: vetoes it unless it is at least this many contexts (and horizons) long: over a small part of a season
#: its swing is nearly a straight line; over a large part it is a walk to every test.
WALK_SEASON_SPAN = 16

#: ``check_range``: how many of the last values the constant-velocity range fit reads. Chosen on held-out
#: generated distances among 6, 8, 12 and 16 (pretrain/check_range.py; within 3 % of each other): the
#: longer fit also averages a GPS receiver's jitter.
RANGE_SPAN = 16


def constant_velocity_range(context: Tensor, horizon: int, span: int | None = None) -> tuple[Tensor, Tensor]:
    """``([B, horizon] float64, [B] bool)``: each row of ``context`` ``[B, L]`` read as the range of
    a target moving at constant velocity past a fixed point (a user's distance to its base station),
    continued. Its square is then a quadratic in time, ``d^2 = d0^2 + v^2 (t - t0)^2``, whatever the
    geometry, so the least-squares quadratic through the last ``span`` squared values, continued,
    gives the range's bend as a vehicle passes the base station, which a straight line through
    the last step misses. Valid (the bool) where the row has at least 3 values, none negative, and
    the fit opens upwards (``v^2 > 0``); other rows get their last value. ``span``: default
    :data:`RANGE_SPAN`, read at the call."""
    x = context.double()
    m = min(RANGE_SPAN if span is None else span, x.shape[1])
    last = x[:, -1:].expand(-1, horizon)
    if m < 3:
        return last, torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    t = torch.arange(1 - m, 1, dtype=torch.float64, device=x.device)
    coef = torch.linalg.pinv(torch.stack([torch.ones_like(t), t, t * t], 1)) @ (x[:, -m:] ** 2).T  # [3, B]
    h = torch.arange(1, horizon + 1, dtype=torch.float64, device=x.device)
    square = (torch.stack([torch.ones_like(h), h, h * h], 1) @ coef).T
    valid = (x.amin(dim=1) >= 0) & (coef[2] > 0)
    return torch.where(valid[:, None], square.clamp_min(0.0).sqrt(), last), valid


def kept_forecasts(cuts: list[tuple[int, Tensor, Tensor, Tensor]], keep: Tensor, ar_cuts: list[Tensor] | None = None,
                   ar_weight: Tensor | None = None) -> list[tuple[int, Tensor, Tensor]]:
    """``(cut, truth, forecast so far)`` of each check of ``cuts`` (``(cut, truth, network,
    classical)``): the network where ``keep`` ``[B]``, else the classical combination, moved towards
    linear prediction (``ar_cuts``, each check's) by ``ar_weight`` ``[B]`` where given; float64."""
    out = []
    for i, (cut, truth, net, cls) in enumerate(cuts):
        kept = torch.where(keep[:, None], net.double(), cls.double())
        if ar_cuts is not None:
            kept = kept + ar_weight[:, None] * (ar_cuts[i] - kept)
        out.append((cut, truth.double(), kept))
    return out


def follow(track: list[Tensor] | None, preds: list[Tensor], weight: Tensor) -> None:
    """Move ``track`` (the forecast so far at each check, float64) in place as the forecast itself
    moved: by ``weight`` ``[B]`` towards each check's ``preds``; nothing where ``track`` is None."""
    if track is not None:
        for i, pred in enumerate(preds):
            track[i] = track[i] + weight[:, None] * (pred.double() - track[i])


def move_towards(point: Tensor, quant: Tensor | None, pred: Tensor, weight: Tensor) -> tuple[Tensor, Tensor | None]:
    """``(point, quant)`` moved by ``weight`` ``[B]`` of the way to ``pred`` ``[B, H]`` (in float64),
    the quantiles along with the point forecast."""
    shifted = point + (weight[:, None] * (pred.double() - point.double())).to(point.dtype)
    return shifted, None if quant is None else quant + (shifted - point)[..., None]


class PairedChecks:
    """The running sums of one paired comparison over the checks of ``check_origins``: a forecast
    A against a forecast B on the same cuts of ``context`` ``[B, L]``.

    Each check adds, per row, ``d`` = A's minus B's mean squared error over the horizon, over the
    row's context variance (with ``weights``, the row's share of its group's power), and the log of
    their ratio (a group's: of its pooled errors). :meth:`a_loses` then runs the one-sided paired
    t-test of ``check_test`` on them, a group pooling its rows' checks."""

    def __init__(self, context: Tensor, group: Tensor | None, pool_by_power: bool, margin: float = 1.0) -> None:
        b = context.shape[0]
        self.var = context.double().var(dim=1, unbiased=False).clamp_min(1e-12)
        # pool_by_power: a row's checks count by its share of the group's power (d is then the
        # squared error difference in the window's units, over the group's mean variance)
        self.weights = power_weights(self.var.sqrt(), group) if pool_by_power and group is not None else None
        self.group = group
        self.sums = [context.new_zeros(b, dtype=torch.float64) for _ in range(2)]
        self.logs = [context.new_zeros(b, dtype=torch.float64) for _ in range(2)]
        self.fit = [context.new_zeros(b, dtype=torch.float64) for _ in range(2)]  # add_forecasts' sums
        self.margin = margin
        self.a_far_behind = context.new_zeros(b, dtype=torch.long)  # checks where A erred > margin x B
        self.n = 0

    def add(self, err_a: Tensor, err_b: Tensor) -> None:
        """One check: the squared errors ``[B, H]`` of A and of B (float64)."""
        ea, eb = err_a.mean(dim=1) / self.var, err_b.mean(dim=1) / self.var
        if self.weights is not None:
            ea, eb = ea * self.weights, eb * self.weights
        d = ea - eb
        self.sums[0] += d
        self.sums[1] += d * d
        if self.group is not None:  # a group's log ratio is that of its pooled errors
            ea, eb = pool_rows(ea, self.group), pool_rows(eb, self.group)
        self.a_far_behind += ea > self.margin * eb
        d = ea.clamp_min(LOG_RATIO_FLOOR).log() - eb.clamp_min(LOG_RATIO_FLOOR).log()
        self.logs[0] += d
        self.logs[1] += d * d
        self.n += 1

    def add_forecasts(self, a: Tensor, b: Tensor, truth: Tensor) -> None:
        """One check from the forecasts ``[B, H]`` of A and B and the ``truth`` (float64): :meth:`add`
        of their squared errors, and the sums of the share of B that fits the checks best
        (:meth:`fitted_share`)."""
        self.add((a - truth) ** 2, (b - truth) ** 2)
        weight = 1.0 / self.var if self.weights is None else self.weights / self.var  # as add weighs a row
        step = b - a
        self.fit[0] += weight * (step * (truth - a)).mean(dim=1)
        self.fit[1] += weight * (step * step).mean(dim=1)

    def fitted_share(self) -> Tensor:
        """``[B]`` in [0, 1]: the ``w`` that minimises the checks' squared error of ``A + w (B - A)``
        (least squares, a group's rows pooled, each weighed as :meth:`add` weighs it): the forecast
        combination fitted on the checks (:meth:`add_forecasts`; 0 without them)."""
        num, den = self.fit if self.group is None else (pool_rows(f, self.group) for f in self.fit)
        return (num / den.clamp_min(1e-300)).clamp(0.0, 1.0)

    def share(self, check_test: str, fitted: bool, wins: float = 1.0, behind: float = 0.5) -> Tensor:
        """``[B]`` float64: how much of B to take: ``wins`` where A lost beyond doubt
        (:meth:`a_loses`), else ``behind`` where A erred more on average (:meth:`a_behind`), else 0;
        with ``fitted``, the mean of that and :meth:`fitted_share`."""
        lead = torch.where(self.a_behind(), behind, 0.0)
        weight = torch.where(self.a_loses(check_test), wins, lead).to(torch.float64)
        return 0.5 * (weight + self.fitted_share()) if fitted else weight

    def a_behind(self) -> Tensor:
        """``[B]`` bool: where A erred more than B on average over the checks (a group's pooled), by
        any margin: the sum of the differences is positive."""
        total = self.sums[0] if self.group is None or not self.n else pool_rows(self.sums[0], self.group)
        return total > 0

    def a_far_behind_on_most(self) -> Tensor:
        """``[B]`` bool: where A erred more than ``margin`` times B (a group's pooled errors) on
        more than half of the checks: a count, so one check with an extreme ratio (a forecast
        clamped onto an idle zero is exact) cannot outweigh the others, as it can in
        :meth:`a_behind` or a mean of log ratios; False before any check."""
        return (2 * self.a_far_behind > self.n) & (self.n > 0)

    def a_loses(self, check_test: str, sign: float = 1.0) -> Tensor:
        """``[B]`` bool: where A erred more than B beyond doubt by ``check_test``
        (:data:`wfm.models.evidence.CHECK_TESTS`; the log ratios from ``LOG_RATIO_MIN_CHECKS`` checks on).
        ``sign=-1``: the same test the other way, where B erred more than A (:meth:`b_loses`)."""
        checks = torch.full_like(self.var, float(self.n))  # a group's log ratio: one per check
        (s1, s2), count = self.sums, checks
        if self.group is not None and self.n:
            s1, s2, count = pool_rows(s1, self.group), pool_rows(s2, self.group), pool_rows(count, self.group)
        lose = exceeds_noise(sign * s1, s2, count)
        if check_test == "log_ratio":
            lose = torch.zeros_like(lose)
        if check_test != "difference" and self.n >= LOG_RATIO_MIN_CHECKS:
            lose = lose | exceeds_noise(sign * self.logs[0], self.logs[1], checks)
        return lose

    def b_loses(self, check_test: str) -> Tensor:
        """``[B]`` bool: where B erred more than A beyond doubt by ``check_test`` (the differences
        negated; their squares, and so the spread, are the same)."""
        return self.a_loses(check_test, -1.0)


class ForecastMixin:
    """``forecast`` and its inference rules for :class:`wfm.models.causal.CausalForecaster`."""

    def _check(self, context: Tensor, interval: Tensor | float, horizon: int) -> tuple[Tensor, Tensor]:
        if context.ndim != 2 or context.shape[0] < 1 or context.shape[1] < 1:
            raise ValueError(f"context must be [B, L] (or one series [L], or [N, C, L] windows of channels) with "
                             f"B >= 1 and L >= 1, "
                             f"got shape {tuple(context.shape)}")
        if context.is_complex():
            raise ValueError("context is complex: pass real and imaginary parts as separate series")
        bad = ~torch.isfinite(context)
        if bool(bad.any()):
            row, pos = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"context contains {int(bad.sum())} NaN or Inf values (the first: row {row}, position {pos}); "
                             "the model takes gap-free series: fill short gaps first (a row at a time: "
                             "wfm.data.loaders.timegrid.fill_gaps, as `wfm forecast` does; for a dataset: "
                             "`wfm data import csv --fill linear --max-gap N`, or `--split-gaps` to cut the series at long ones)")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        interval = torch.as_tensor(interval, dtype=torch.float32, device=context.device).reshape(-1)
        if interval.numel() == 1:
            interval = interval.expand(context.shape[0])
        if interval.shape != (context.shape[0],) or not bool(((interval > 0) & torch.isfinite(interval)).all()):
            raise ValueError(f"interval must be a finite positive scalar or [B] = [{context.shape[0]}] tensor of seconds")
        return context.float(), interval

    @torch.no_grad()
    def forecast(self, context: Tensor, interval: Tensor | float, horizon: int, quantiles: bool = False,
                 group: Tensor | None = None, check: bool = True, ordered: bool = False,
                 ranges: bool = False) -> Tensor:
        """Forecast the next ``horizon`` values of each row of ``context`` ``[B, L]`` (original scale).

        ``interval``: seconds between values, a float or ``[B]``. Autoregressive over patches.
        ``context`` may also be ``[N, C, L]``: ``N`` windows of ``C`` channels (a CSI window's
        antennas x subcarriers, a codebook's beams), each window's channels pooled as ``group=``
        pools them (``interval`` a float, ``[N]`` or ``[N, C]``), returned as ``[N, C, horizon]``.
        A complex context (``[L]``, ``[B, L]`` or ``[N, C, L]``) is forecast as its real and
        imaginary parts, the two parts of a series pooled (with its group, if any), and returned
        complex; its quantiles are those of each part. On real CSI alone, the two parts pooled
        instead of forecast apart: Nexmon 1.155 -> 1.113x the context mean at 8 packets, 1.072 ->
        0.993x at 64; Intel 1.006 -> 0.997x at 8 (pretrain/studies.md, "A complex series' two parts").
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
        classical combination's forecast is returned where the network lost (``check_origins`` in
        :class:`wfm.models.causal.CausalForecaster`).
        That costs ``check_origins + 1`` rollouts of both forecasts (16 rows on 2 CPU threads, every
        option of the release: 19x ``check=False`` at 4,096 values of context and 64 ahead, 5.7 s;
        17x at 512 values and 8 ahead; 2.7x at 16 values and 4 ahead). With ``white_limit``,
        where the context is too short for two checks, rows (or pooled groups) whose context looks
        like white noise around its mean get the context mean (:func:`wfm.models.evidence.looks_white`),
        with ``white_shrink`` shrunk towards zero where their channels are zero-mean noise
        (:func:`wfm.models.evidence.shrunk_mean`). With ``box_cox``, non-negative rows (or groups) are forecast, checks included, in the
        Box-Cox space their context chooses and transformed back (the white-noise mean stays the
        mean of the values given). With ``coarse_blend``, a context long enough for coarse tokens
        is forecast twice, with and without them, each checked alone, and the two are averaged
        (1.7-2x the time: 5.7 s against 3.5 s for 16 rows of 4,096 values and 64 ahead on 2 CPU
        threads, 0.38 s against 0.19 s for 512 values and 8 ahead; the checks share the classical rollouts).
        ``check=False`` skips all of these for this call. ``ordered=True`` says that each group's rows,
        in the order given, are channels along one axis (a codebook's beam powers in angular
        order): with ``check_drift``, the group's profile shifted by its drift is then a candidate
        of the checks. ``ranges=True`` says that every row is a range, the distance from a fixed
        point to something moving (a user's distance to its base station): with ``check_range``,
        its constant-velocity extrapolation is then a candidate of the checks.

        Many rows run in chunks of whole groups (``FORECAST_VALUES`` context values each), so memory
        stays bounded (10,000 rows of 96 values: 2.0 GB peak on the dev box against 2.7 GB for
        5,000 in one batch) and the forecasts are those of one batch.

        Returns ``[B, horizon]`` (point forecast), or ``[B, horizon, Q]`` with ``quantiles=True``
        (needs a quantile head), in float32, or in float64 where a float64 row's level is more than
        ``INPUT_OFFSET_RATIO`` times its spread (forecast as its deviations from that level);
        :meth:`forecast_with_quantiles` returns both from one run. One series ``[L]`` gives
        ``[horizon]`` (``[horizon, Q]``); ``[N, C, L]`` gives ``[N, C, horizon]`` (``[N, C, horizon, Q]``).
        """
        point, quant = self._forecast_any(context, interval, horizon, quantiles, group, check, ordered, ranges)
        return quant if quantiles else point

    @torch.no_grad()
    def forecast_with_quantiles(self, context: Tensor, interval: Tensor | float, horizon: int,
                                group: Tensor | None = None, check: bool = True,
                                ordered: bool = False, ranges: bool = False) -> tuple[Tensor, Tensor]:
        """``(point [B, horizon], quantiles [B, horizon, Q])``: what ``forecast`` and
        ``forecast(quantiles=True)`` return, from one run instead of two (one series ``[L]``:
        ``[horizon]`` and ``[horizon, Q]``)."""
        return self._forecast_any(context, interval, horizon, True, group, check, ordered, ranges)

    def _forecast_any(self, context: Tensor, interval: Tensor | float, horizon: int, quantiles: bool,
                      group: Tensor | None, check: bool, ordered: bool = False,
                      ranges: bool = False) -> tuple[Tensor, Tensor | None]:
        """``_forecast`` for ``[B, L]`` or one series ``[L]`` (a batch of one, the batch axis dropped);
        NumPy arrays and lists are read as tensors."""
        try:  # ints, NumPy and 0-d tensor integers; not 8.0, not True
            if isinstance(horizon, bool):
                raise TypeError
            horizon = operator.index(horizon)
        except TypeError:
            raise ValueError(f"horizon must be a whole number of steps (an int), got {horizon!r}") from None
        context = as_tensor(context, "context")
        group = None if group is None else as_tensor(group, "group")
        if context.ndim == 3:
            return self._forecast_windows(context, interval, horizon, quantiles, group, check, ordered, ranges)
        if context.is_complex():
            return self._forecast_complex(context, interval, horizon, quantiles, group, check, ordered, ranges)
        one = context.ndim == 1
        if one and group is not None:
            raise ValueError("group pools the rows of a [B, L] context; one series [L] has nothing to pool")
        rows = context[None] if one else context
        offset = self._input_offset(rows)
        if offset is not None:  # in float64, before the model's float32 would lose the variation
            rows = rows - offset[:, None]
        scale = self._input_scale(rows, group)
        if scale is not None:  # exact: a power of two per row, the same for a group's rows
            rows = rows / scale.to(rows.dtype if rows.is_floating_point() else torch.float64)[:, None]
        point, quant = (self._forecast(rows, interval, horizon, quantiles, None, check, ranges=ranges) if one
                        else self._forecast_in_chunks(rows, interval, horizon, quantiles, group, check, ordered,
                                                      ranges))
        if scale is not None:
            point = point * scale.to(point.dtype)[:, None]
            quant = None if quant is None else quant * scale.to(quant.dtype)[:, None, None]
        if offset is not None:  # the level back, in float64 (float32 could not hold it with the forecast)
            point = point.double() + offset[:, None]
            quant = None if quant is None else quant.double() + offset[:, None, None]
        return (point[0], None if quant is None else quant[0]) if one else (point, quant)

    def _forecast_windows(self, context: Tensor, interval: Tensor | float, horizon: int, quantiles: bool,
                          group: Tensor | None, check: bool, ordered: bool,
                          ranges: bool) -> tuple[Tensor, Tensor | None]:
        """``[N, C, L]``: ``N`` windows of ``C`` channels, each window's channels one group (as
        ``group=`` would give them), forecast as ``[N * C, L]`` rows and returned as ``[N, C, H]``."""
        if group is not None:
            raise ValueError("a [N, C, L] context already pools each window's C channels; "
                             "group= is for a [B, L] context")
        n, c, length = context.shape
        if n < 1 or c < 1:
            raise ValueError(f"context must be [N, C, L] with N >= 1 windows and C >= 1 channels, "
                             f"got shape {tuple(context.shape)}")
        interval = torch.as_tensor(interval, dtype=torch.float64)
        if interval.numel() > 1:  # one per window ([N]) or per channel ([N, C])
            if interval.shape == (n,):
                interval = interval.repeat_interleave(c)
            elif interval.shape == (n, c):
                interval = interval.reshape(-1)
            else:
                raise ValueError(f"interval of a [N, C, L] = {list(context.shape)} context must be a scalar, "
                                 f"[N] or [N, C], got shape {list(interval.shape)}")
        ids = torch.arange(n, device=context.device).repeat_interleave(c)
        point, quant = self._forecast_any(context.reshape(n * c, length), interval, horizon, quantiles, ids,
                                          check, ordered, ranges)
        return (point.reshape(n, c, *point.shape[1:]),
                None if quant is None else quant.reshape(n, c, *quant.shape[1:]))

    def _forecast_complex(self, context: Tensor, interval: Tensor | float, horizon: int, quantiles: bool,
                          group: Tensor | None, check: bool, ordered: bool,
                          ranges: bool) -> tuple[Tensor, Tensor | None]:
        """Complex ``[L]`` or ``[B, L]``: each series' real and imaginary parts forecast as two rows
        of one group (with ``group=``, of the series' group), put back together as complex values;
        quantiles are those of each part (real part: the real part's quantile)."""
        if ordered:
            raise ValueError("ordered=True says the rows are a codebook's beam powers in angular order; "
                             "a complex context has no such order")
        one = context.ndim == 1
        rows = context[None] if one else context
        if one and group is not None:
            raise ValueError("group pools the rows of a [B, L] context; one series [L] has nothing to pool")
        if group is not None and (group.shape != rows.shape[:1] or group.is_floating_point() or group.is_complex()):
            raise ValueError(f"group must be an integer [B] = [{rows.shape[0]}] tensor of window ids, "
                             f"got {group.dtype} of shape {tuple(group.shape)}")
        bad = ~torch.isfinite(torch.view_as_real(rows)).all(dim=-1)
        if bool(bad.any()):  # named as the caller's rows, not the parts'
            row, pos = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"context contains {int(bad.sum())} NaN or Inf values (the first: row {row}, "
                             f"position {pos}); the model takes gap-free series")
        b = rows.shape[0]
        parts = torch.stack([rows.real, rows.imag], dim=1).reshape(2 * b, rows.shape[1])  # re, im of each row
        ids = torch.arange(b, device=rows.device) if group is None else group
        interval = torch.as_tensor(interval, dtype=torch.float64)
        if interval.numel() > 1:
            if interval.shape != (b,):
                raise ValueError(f"interval must be a finite positive scalar or [B] = [{b}] tensor of seconds")
            interval = interval.repeat_interleave(2)
        point, quant = self._forecast_any(parts, interval, horizon, quantiles, ids.repeat_interleave(2), check,
                                          False, ranges)
        point = torch.complex(point[0::2], point[1::2])
        quant = None if quant is None else torch.complex(quant[0::2], quant[1::2])
        return (point[0], None if quant is None else quant[0]) if one else (point, quant)

    @staticmethod
    def _input_offset(context: Tensor) -> Tensor | None:
        """``[B]`` float64 levels to take off float64 rows whose level is more than ``INPUT_OFFSET_RATIO``
        times their spread (a carrier frequency in Hz, a cumulative counter: float32 would keep a few
        bits of their variation, and the forecast of 1.7e9 + sin came back 1,280 off); 0 for other
        rows; None where there is none. The forecast of such a row is that of its deviations: every
        estimator is translation-equivariant, and Box-Cox is linear over so small a relative range."""
        if context.dtype != torch.float64 or context.ndim != 2 or context.shape[1] < 2:
            return None
        level, spread = context.mean(dim=1), context.std(dim=1)
        far = (spread > 0) & (level.abs() > INPUT_OFFSET_RATIO * spread)  # (a constant row is exact anyway)
        return torch.where(far, level, torch.zeros_like(level)) if bool(far.any()) else None

    @staticmethod
    def _input_scale(context: Tensor, group: Tensor | None) -> Tensor | None:
        """``[B]`` powers of two that bring rows (a group's together, so their shares of its power
        stay) whose largest magnitude is below ``INPUT_SCALE_LOW`` or above ``INPUT_SCALE_HIGH``
        to about 2^6; None where every row is within. The forecast is scale-equivariant by design
        (normalised per series, Box-Cox's lambda chosen by the coefficient of variation), but its
        floors are not: a received power of 1e-15 W came back flat at 3.5x its level."""
        if context.ndim != 2 or context.numel() == 0 or not (context.is_floating_point() or context.is_complex()):
            return None
        peak = context.detach().abs().amax(dim=1).double()
        if group is not None and group.shape == peak.shape:
            _, inverse = torch.unique(group, return_inverse=True)
            peak = peak.new_zeros(int(inverse.max()) + 1).scatter_reduce(0, inverse, peak, "amax")[inverse]
        scale = binary_scale(peak, INPUT_SCALE_LOW, INPUT_SCALE_HIGH, INPUT_SCALE_TARGET)
        return None if bool((scale == 1).all()) else scale

    def _forecast_in_chunks(self, context: Tensor, interval: Tensor | float, horizon: int, quantiles: bool,
                            group: Tensor | None, check: bool, ordered: bool = False,
                            ranges: bool = False) -> tuple[Tensor, Tensor | None]:
        """``_forecast`` in chunks of at most ``FORECAST_VALUES`` context values (whole groups; a
        group larger than that is one chunk), so that memory stays bounded however many rows are
        given (the backtests and checks hold several copies of every value: about 0.45 MB a row
        at 96 values). Rows never see other chunks: a row's forecast depends only on its group."""
        rows = max(1, FORECAST_VALUES // max(1, context.shape[-1]))
        if context.ndim != 2 or context.shape[0] <= rows or (group is not None and group.shape != context.shape[:1]):
            return self._forecast(context, interval, horizon, quantiles, group, check, ordered, ranges)
        context, interval = self._check(context, interval, horizon)  # errors name rows of the whole batch
        if group is None:
            chunks = list(torch.arange(len(context), device=context.device).split(rows))
        else:  # whole groups: the rows sorted by group, cut between groups
            _, inverse, counts = torch.unique(group, return_inverse=True, return_counts=True)
            order = torch.argsort(inverse, stable=True)
            chunks, start, size = [], 0, 0
            for c in counts.tolist():
                if size and size + c > rows:
                    chunks.append(order[start:start + size])
                    start, size = start + size, 0
                size += c
            chunks.append(order[start:start + size])
        point = quant = None
        for idx in chunks:
            p, q = self._forecast(context[idx], interval[idx], horizon, quantiles,
                                  None if group is None else group[idx], check, ordered, ranges)
            if point is None:
                point = p.new_empty(len(context), *p.shape[1:])
                quant = None if q is None else q.new_empty(len(context), *q.shape[1:])
            point[idx] = p
            if q is not None:
                quant[idx] = q
        return point, quant

    def box_cox_exponents(self, context: Tensor, interval: Tensor, horizon: int, group: Tensor | None = None,
                          ranges: bool = False) -> Tensor | None:
        """``[B]`` float64: the Box-Cox exponent ``forecast`` takes for each row (or group) of
        ``context`` ``[B, L]`` at ``interval`` ``[B]`` before ``box_cox_check`` (1: as given), or None
        without ``box_cox``: Guerrero's choice, but 1 where ``box_cox_white`` finds the level holding
        or ``raw_paths`` a smooth path."""
        if not self.box_cox:
            return None
        lam = boxcox.guerrero_lambda(context, group)
        if self.box_cox_white and bool((lam < 1).any()):
            # A level that holds leaves the transform nothing to even out, and its inverse brings the
            # forecast back below the values' mean. Tested in Box-Cox space, where a lone burst no
            # longer hides a day's cycle from the test.
            seasons = self.context_seasons(context.shape[1], horizon, interval)[0]
            white = white_beyond_doubt(boxcox.box_cox(context, lam), group, seasons)
            lam = torch.where(white, torch.ones_like(lam), lam)
        if self.raw_paths and not ranges and bool((lam < 1).any()):
            # A smooth path (an angle, a position) has no level-proportional noise for Box-Cox to even
            # out, and its inverse would bound the forecast at zero, which an angle crosses; a range
            # cannot cross zero, and keeps the bound (held-out distances were up to 9 % worse without).
            lam = torch.where(trend_holds_locally(context, horizon, group), torch.ones_like(lam), lam)
        return lam

    def _forecast(self, context: Tensor, interval: Tensor | float, horizon: int, quantiles: bool,
                  group: Tensor | None, check: bool, ordered: bool = False,
                  ranges: bool = False) -> tuple[Tensor, Tensor | None]:
        device = context.device
        context, interval = self._check(context, interval, horizon)
        if group is not None and (group.shape != context.shape[:1] or group.is_floating_point() or group.is_complex()):
            raise ValueError(f"group must be an integer [B] = [{context.shape[0]}] tensor of window ids, "
                             f"got {group.dtype} of shape {tuple(group.shape)}")
        dev = self.head.weight.device  # inputs follow the model; the result goes back to the caller's device
        context, interval = context.to(dev), interval.to(dev)
        group = None if group is None else group.to(dev)
        if check and self.dip_level and group is not None:  # a dip comes back: forecast from its level
            context = lift_trailing_dips(context, group)
        if quantiles and not self.quantile_levels:
            raise ValueError("this model has no quantile head (quantiles=())")
        lam = self.box_cox_exponents(context, interval, horizon, group, ranges) if check else None
        if lam is not None and self.box_cox_check and not ranges and bool((lam < 1).any()):  # (ranges: as raw_paths)
            lam = torch.where(self._box_cox_loses(context, lam, interval, horizon, group), torch.ones_like(lam), lam)
        if lam is not None and bool((lam < 1).any()):
            point, quant, switched = self._checked_forecast(boxcox.box_cox(context, lam), interval, horizon,
                                                            group, check, quantiles, raw=(context, lam),
                                                            ordered=ordered, ranges=ranges)
            point = boxcox.inv_box_cox(point, lam)
            quant = None if quant is None else boxcox.inv_box_cox(quant, lam)
        else:
            point, quant, switched = self._checked_forecast(context, interval, horizon, group, check, quantiles,
                                                            ordered=ordered, ranges=ranges)
        few_checks = len(self.check_cuts(context.shape[1], horizon)) < 2  # short checks never switch the guard
        if check and (self.white_level or self.walk_last):  # the seasons their tests read, and their veto
            seasons, unseen = self.context_seasons(context.shape[1], horizon, interval)
        if (check and self.white_limit is not None
                and ((few_checks and not switched) or (not few_checks and self.white_level))):
            if few_checks:
                white = looks_white(context, self.white_limit, group, self.white_dips)
            else:  # (a white night of traffic says nothing of the morning: not over most of a day)
                white = white_beyond_doubt(fill_dips(context, group) if self.white_dips else context, group, seasons)
                white &= ~unseen
                if self.white_whole_season:  # a whole period of the shortest season seen: the veto is lifted,
                    # and the test reads the values where they are forecast (a lone burst is no white day there)
                    first = torch.where(seasons[:, 0] > 0, seasons[:, 0], seasons[:, 1])
                    lifted = unseen & (first > 0) & (first <= context.shape[1])
                    if bool(lifted.any()):
                        tested = context if lam is None else boxcox.box_cox(context, lam)
                        tested = fill_dips(tested, group) if self.white_dips else tested
                        white |= lifted & white_beyond_doubt(tested, group, seasons)
            if bool(white.any()):  # the context mean; the quantiles move with the point forecast
                # Summed in float64 as the ``mean`` baseline sums it, so that the two agree to the bit.
                mean = self._level(context, group)
                if self.white_scale:
                    mean = mean * backtest_scale(context, group)
                mean = mean.to(point.dtype)
                shifted = torch.where(white[:, None], mean, point)
                quant = None if quant is None else quant + (shifted - point)[..., None]
                point = shifted
        if check and self.drift_ar and few_checks and group is not None:
            drift = drifts_beyond_noise(context, group, shape=self.drift_shape)
            if bool(drift.any()):  # linear prediction pooled over the window; the quantiles move with it
                rows = drift.nonzero().flatten()
                shifted = point.clone()
                shifted[rows] = ar_forecast_rows(context[rows], horizon, group[rows]).to(point.dtype)
                quant = None if quant is None else quant + (shifted - point)[..., None]
                point = shifted
        shifted_level = torch.zeros(context.shape[0], dtype=torch.bool, device=context.device)
        if check and self.level_shift:
            start = level_shift_start(context)
            shifted_level = start >= 0
            if bool(shifted_level.any()):  # the level since the shift; the quantiles move with the point
                level = level_after_shift(context, start).to(point.dtype)
                shifted = torch.where(shifted_level[:, None], level[:, None], point)
                quant = None if quant is None else quant + (shifted - point)[..., None]
                point = shifted
        if check and self.walk_last and not ranges:  # (a range has its own: check_range's constant velocity)
            walk, drift = walk_beyond_doubt(context, group, seasons)
            walk &= ~shifted_level & ~unseen  # a clean shift's new level is the mean since it, not its last value
            if bool(walk.any()):  # the last value and the drift; the quantiles move with the point forecast
                ahead = torch.arange(1, point.shape[1] + 1, device=point.device, dtype=torch.float64)
                last = (context[:, -1:].double() + drift[:, None] * ahead).to(point.dtype)
                shifted = torch.where(walk[:, None], last, point)
                quant = None if quant is None else quant + (shifted - point)[..., None]
                point = shifted
        return point.to(device), None if quant is None else quant.to(device)

    def _box_cox_loses(self, context: Tensor, lam: Tensor, interval: Tensor, horizon: int,
                       group: Tensor | None) -> Tensor:
        """``[B]`` bool (``box_cox_check``): rows (or groups) with ``lam < 1`` whose network forecast
        in Box-Cox space, transformed back, erred more than the network's forecast of the values as
        given beyond doubt (``check_test``) on the checks of the whole horizon (:meth:`check_cuts`),
        scored in the values' own units. Fewer than two checks decide nothing."""
        boxed = lam < 1
        cuts = self.check_cuts(context.shape[1], horizon)
        if len(cuts) < 2:
            return torch.zeros_like(boxed)
        rows = boxed.nonzero().flatten()  # lam is a group's, so a group's rows are all in or all out
        given, lam_b = context[rows], lam[rows]
        grp = None if group is None else group[rows]
        z = boxcox.box_cox(given, lam_b)
        checks = PairedChecks(given, grp, self.pool_by_power)  # A: Box-Cox space, B: as given
        for cut in cuts:
            truth = given[:, cut:cut + horizon].double()
            (boxed_net, _), = self._rollout(z[:, :cut], interval[rows], horizon, grp)
            (plain_net, _), = self._rollout(given[:, :cut], interval[rows], horizon, grp)
            checks.add((boxcox.inv_box_cox(boxed_net, lam_b).double() - truth) ** 2, (plain_net.double() - truth) ** 2)
        lost = torch.zeros_like(boxed)
        lost[rows] = checks.a_loses(self.check_test)
        return lost

    def _checked_forecast(self, context: Tensor, interval: Tensor, horizon: int, group: Tensor | None,
                          check: bool, quantiles: bool = False, raw: tuple[Tensor, Tensor] | None = None,
                          ordered: bool = False, ranges: bool = False) -> tuple[Tensor, Tensor | None, bool]:
        """The network's forecast ``(point [B, H], quantiles [B, H, Q] | None, switched)``, its
        classical combination's where ``check_origins`` shows the network losing (with ``check``;
        ``switched``: some row was). With ``coarse_blend`` (and ``check``), the mean of the two
        readings of a context that has coarse tokens, with and without them, each checked alone.
        ``raw``: ``(the values given, lam)`` where ``context`` is their Box-Cox transform, so that
        ``check_mean``'s candidate is the mean of the values given, transformed, and ``check_drift``'s
        the drift of the values given, transformed. ``ordered``, ``ranges``: ``forecast``'s."""
        readings = [True] + ([False] if check and self.coarse_blend and self.has_coarse(context.shape[1]) else [])
        keeps: list[Tensor | None] = [None] * len(readings)
        cuts: list[tuple[int, Tensor, Tensor, Tensor]] = []  # check_ar: each check's cut, truth, network, classical
        drift = self.check_drift and ordered and group is not None
        if check and self.check_origins and self.guard:
            keeps = list(self._network_passes_check(context, interval, horizon, group, readings,
                                                    cuts_into=cuts if self.check_ar or self.check_mean or drift
                                                    or self.check_season or self.check_trend
                                                    or (self.check_range and ranges) or self.check_last
                                                    or self.check_ses else None))
        switched = any(k is not None and not bool(k.all()) for k in keeps)
        points, quants = [], []
        for coarse, keep in zip(readings, keeps):
            runs = self._rollout(context, interval, horizon, group, fallback=switched, coarse=coarse,
                                 spread=check and quantiles and self.propagate_quantiles)
            (point, quant) = runs[0]
            if keep is not None and switched:
                (c_point, c_quant) = runs[1]
                point = torch.where(keep[:, None], point, c_point)
                quant = None if quant is None else torch.where(keep[:, None, None], quant, c_quant)
            points.append(point)
            quants.append(quant)
        if len(points) == 1:
            point, quant = points[0], quants[0]
        else:  # the mean of two ordered sets of quantiles is ordered
            point, quant = 0.5 * (points[0] + points[1]), None if quants[0] is None else 0.5 * (quants[0] + quants[1])
        if len(cuts) >= 2:
            ar_cuts, weight = None, None
            # Short checks (short_checks) vouch for the nearer steps only: an extrapolation (a trend,
            # a recursion, a drift, a range) that paid there can overshoot the rest of the horizon,
            # so only the candidates that hold a level or copy a season test on them.
            whole = cuts[0][1].shape[1] == horizon
            if self.check_ar and whole:  # linear prediction from each cut, fitted once for both tests
                ar_cuts = [ar_forecast_rows(context[:, :cut], truth.shape[1], group) for cut, truth, _, _ in cuts]
                weight = self._linear_prediction_weight(context, cuts, ar_cuts, keeps[0], group, interval)
                take = weight > 0
                if bool(take.any()):  # linear prediction, the quantiles moved with the point forecast
                    # (the weight is a group's, so the takers' groups fit as they did on the checks)
                    ar = ar_forecast_rows(context[take], horizon, None if group is None else group[take]).to(point.dtype)
                    shifted = point.clone()
                    shifted[take] = point[take] + weight[take, None].to(point.dtype) * (ar - point[take])
                    quant = None if quant is None else quant + (shifted - point)[..., None]
                    point = shifted
            # check_last tests against the forecast so far at each check as every step before moved
            # it (the steps before test against what the checks kept)
            track = ([kept for _, _, kept in kept_forecasts(cuts, keeps[0], ar_cuts, weight)]
                     if self.check_last or self.check_ses else None)
            trend = None
            if self.check_trend and whole:
                point, quant, trend = self._trend_checked(context, cuts, ar_cuts, keeps[0], weight, group, raw,
                                                          point, quant, track)
            if self.check_range and ranges and whole:
                point, quant = self._range_checked(context, cuts, ar_cuts, keeps[0], weight, trend, group, raw,
                                                   point, quant, track)
            if self.check_season:
                point, quant = self._season_checked(context, cuts, ar_cuts, keeps[0], weight, group, interval,
                                                    point, quant, track)
            if drift and whole:
                point, quant = self._drift_checked(context, cuts, ar_cuts, keeps[0], weight, group, raw, point, quant,
                                                   track)
            if self.check_ses:
                point, quant = self._ses_checked(context, cuts, track, group, interval, point, quant)
            if self.check_last:
                point, quant = self._last_checked(context, cuts, track, group, interval, point, quant)
            if self.check_mean:
                mean_wins = self._mean_checks(context, cuts, ar_cuts, keeps[0], weight, group, raw).a_loses(self.check_test)
                if bool(mean_wins.any()):  # the level; the quantiles move with the point forecast
                    level = self._level(context, group, raw)
                    shifted = torch.where(mean_wins[:, None], level.to(point.dtype), point)
                    quant = None if quant is None else quant + (shifted - point)[..., None]
                    point = shifted
        return point, quant, switched

    def _drift_checked(self, context: Tensor, cuts: list[tuple[int, Tensor, Tensor, Tensor]],
                       ar_cuts: list[Tensor] | None, keep: Tensor, ar_weight: Tensor | None, group: Tensor,
                       raw: tuple[Tensor, Tensor] | None, point: Tensor, quant: Tensor | None,
                       track: list[Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
        """``check_drift``: ``(point, quant)`` moved towards each ordered group's drifting profile
        (:func:`wfm.models.profile_drift.drift_forecast`) by ``DRIFT_SHARE`` where it erred less than
        the forecast so far (what the checks kept, moved towards linear prediction by ``ar_weight``)
        on the same ``cuts`` (on average, or beyond doubt by ``check_test``), and not at all
        elsewhere; with ``drift_share="fitted"`` by the mean of that share and the one that
        minimised the checks' squared error (a group's pooled, each row weighed as the checks
        weigh it). Never where the group has no profile (fewer than 3 rows, or a negative value).
        With ``raw`` (``(values, lam)``, ``context`` their Box-Cox transform) the drift of the
        values given, transformed. ``track``: :func:`follow`'s, moved as the forecast is."""
        def drifted(length: int, ahead: int) -> tuple[Tensor, Tensor]:
            values = context[:, :length] if raw is None else raw[0][:, :length]
            pred, ok = drift_forecast(values, ahead, group)
            return (pred if raw is None else boxcox.box_cox(pred, raw[1].to(pred.dtype))), ok

        stats = PairedChecks(context, group, self.pool_by_power)
        usable = torch.ones(context.shape[0], dtype=torch.bool, device=context.device)
        preds = []
        for cut, truth, kept in kept_forecasts(cuts, keep, ar_cuts, ar_weight):
            pred, ok = drifted(cut, truth.shape[1])
            usable &= ok
            stats.add_forecasts(kept, pred, truth)
            preds.append(pred)
        weight = stats.share(self.check_test, self.drift_share == "fitted", DRIFT_SHARE, DRIFT_SHARE) * usable
        follow(track, preds, weight)
        if not bool((weight > 0).any()):
            return point, quant
        return move_towards(point, quant, drifted(context.shape[1], point.shape[1])[0], weight)

    def _trend_checked(self, context: Tensor, cuts: list[tuple[int, Tensor, Tensor, Tensor]],
                       ar_cuts: list[Tensor] | None, keep: Tensor, ar_weight: Tensor | None, group: Tensor | None,
                       raw: tuple[Tensor, Tensor] | None, point: Tensor, quant: Tensor | None,
                       track: list[Tensor] | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
        """``check_trend``: ``(point, quant, weight)``, the forecast moved towards :func:`last_step_trend` where it beat
        the forecast so far (what the checks kept, moved towards linear prediction by ``ar_weight``)
        on the same ``cuts``, by the share of ``trend_share`` (as ``check_season``), and only where
        it also erred less than ``1 / TREND_MARGIN`` of persistence's error on most of them (more
        than half): its slope must have paid, as it does on a smooth path, all but at a turn. On noise
        the last step's change times the horizon is far off on most checks, and by a mean one
        check on a ramp could outweigh them; on traffic's daily ramps the slope pays a little on
        the checks and overshoots where the ramp ends. On a flat stretch (a cell idle at night)
        the extrapolation is persistence, and ties. The checks test the rule, not the last step it
        is given at the origin, so it is also held to :func:`trend_in_range`: a burst's step carried
        36 steps ahead passed two checks on a daily ramp and left the context's range many-fold. With
        ``raw`` (``(values, lam)``, ``context`` their Box-Cox transform) the extrapolation of the values
        given (at least 0), transformed: a straight line in the transformed space would come back as a
        power of the horizon. With ``trend_local``, all of it where :func:`trend_holds_locally` (the
        context's own steps vouch for the slope: a path that turned after its checks' cuts) and the
        checks do not show it losing to the forecast so far beyond doubt (``check_test``: a sinusoid
        that linear prediction forecasts exactly keeps that forecast). ``weight`` ``[B]``: how far.
        ``track``: :func:`follow`'s, moved as the forecast is."""
        def extrapolated(length: int, ahead: int) -> Tensor:
            if raw is None:
                return last_step_trend(context[:, :length], ahead)
            values, lam = raw
            pred = last_step_trend(values[:, :length], ahead)
            pred = torch.where(lam[:, None] < 1, pred.clamp_min(0.0), pred)  # a non-negative series stays so
            return boxcox.box_cox(pred, lam)

        stats = PairedChecks(context, group, self.pool_by_power)  # A: the forecast so far, B: the trend
        slope = PairedChecks(context, group, self.pool_by_power, TREND_MARGIN)  # A: persistence, B: the trend
        preds = []
        for cut, truth, kept in kept_forecasts(cuts, keep, ar_cuts, ar_weight):
            pred = extrapolated(cut, truth.shape[1])
            stats.add_forecasts(kept, pred, truth)
            slope.add((context[:, cut - 1:cut].double() - truth) ** 2, (pred - truth) ** 2)
            preds.append(pred)
        weight = stats.share(self.check_test, self.trend_share == "fitted") * slope.a_far_behind_on_most()
        values = context if raw is None else raw[0][:, :context.shape[1]]
        if self.trend_local:  # all of it where the context's steps vouch for it and no check refutes it
            local = trend_holds_locally(values, point.shape[1], group) & ~stats.b_loses(self.check_test)
            weight = torch.where(local, 1.0, weight)
        weight = weight * trend_in_range(values, point.shape[1])
        follow(track, preds, weight)
        if not bool((weight > 0).any()):
            return point, quant, weight
        return (*move_towards(point, quant, extrapolated(context.shape[1], point.shape[1]), weight), weight)

    def _last_checked(self, context: Tensor, cuts: list[tuple[int, Tensor, Tensor, Tensor]], track: list[Tensor],
                      group: Tensor | None, interval: Tensor, point: Tensor,
                      quant: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``check_last``: ``(point, quant)`` moved towards persistence (the last value held) where it
        beat the forecast so far on the same ``cuts`` (``track``: what the checks kept, moved as every
        step before moved the forecast, :func:`follow`), by the share of ``last_share``, and only where the
        forecast so far erred more than :data:`LAST_MARGIN` times persistence on most checks. Both
        the network and the classical combination can carry a level from older values into the
        horizon (a bearing that swung 170 degrees and then held: the context mean, the windowed
        means and the network pull it back); persistence was not among the checks' candidates.
        Not where the whole context holds a season that the checks miss (as ``ar_season``): a day
        of 10-minute traffic forecast 6 h ahead from checks without the day favours persistence
        over a forecast that has it (0.664x -> 0.686x the best classical on ``finetune/results.py``'s
        traffic task). Box-Cox is elementwise, so persistence of the transform is that of the values given."""
        stats = PairedChecks(context, group, self.pool_by_power, LAST_MARGIN)  # A: the forecast so far, B: persistence
        for (cut, truth, _, _), kept in zip(cuts, track):
            stats.add_forecasts(kept, context[:, cut - 1:cut].double().expand_as(truth), truth.double())
        weight = stats.share(self.check_test, self.last_share == "fitted")
        if LAST_MARGIN > 1:
            weight = weight * stats.a_far_behind_on_most()
        weight = torch.where(self.checks_miss_season(context.shape[1], cuts[0][0], interval), 0.0, weight)
        if not bool((weight > 0).any()):
            return point, quant
        return move_towards(point, quant, context[:, -1:].double().expand_as(point), weight)

    def _ses_checked(self, context: Tensor, cuts: list[tuple[int, Tensor, Tensor, Tensor]], track: list[Tensor],
                     group: Tensor | None, interval: Tensor, point: Tensor,
                     quant: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``check_ses``: ``(point, quant)`` moved towards simple exponential smoothing
        (:func:`wfm.models.smoothing.ses_levels`, fitted on the values before each cut) where it beat
        the forecast so far on the same ``cuts`` (``track``, :func:`follow`'s, moved with it), by the
        share of ``ses_share``. Not where the whole context holds a season that the checks miss (as
        ``check_last``). Box-Cox is elementwise and the fit reads the context as given, so under
        ``box_cox`` it smooths the transformed values: a multiplicative level."""
        levels = ses_levels(context, [cut for cut, _, _, _ in cuts] + [context.shape[1]], group)
        stats = PairedChecks(context, group, self.pool_by_power)  # A: the forecast so far, B: the level
        preds = []
        for (_, truth, _, _), kept, level in zip(cuts, track, levels):
            preds.append(level[:, None].expand_as(truth))
            stats.add_forecasts(kept, preds[-1], truth.double())
        weight = stats.share(self.check_test, self.ses_share == "fitted")
        weight = torch.where(self.checks_miss_season(context.shape[1], cuts[0][0], interval), 0.0, weight)
        follow(track, preds, weight)
        if not bool((weight > 0).any()):
            return point, quant
        return move_towards(point, quant, levels[-1][:, None].expand_as(point), weight)

    def _range_checked(self, context: Tensor, cuts: list[tuple[int, Tensor, Tensor, Tensor]],
                       ar_cuts: list[Tensor] | None, keep: Tensor, ar_weight: Tensor | None, trend: Tensor | None,
                       group: Tensor | None, raw: tuple[Tensor, Tensor] | None, point: Tensor, quant: Tensor | None,
                       track: list[Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
        """``check_range``: ``(point, quant)`` moved towards :func:`constant_velocity_range` where it
        beat the forecast so far on the same ``cuts`` (what the checks kept, moved towards linear
        prediction by ``ar_weight`` and by ``check_trend``'s ``trend`` weight towards the last step
        extrapolated in the space the checks are scored in: measured 4 % better on the held-out
        distances than the extrapolation as the forecast takes it, through the values given), by the
        share of ``range_share``, and only where it
        also erred less than ``1 / TREND_MARGIN`` of persistence's error on most checks (as
        ``check_trend``). Rows whose fit is not a constant velocity at a check or at the origin
        (:func:`constant_velocity_range`'s ``valid``) do not move. With ``raw``, the fit reads the
        values given (a range, not its Box-Cox transform) and its forecast is transformed. ``track``:
        :func:`follow`'s, moved as the forecast is."""
        values = context if raw is None else raw[0][:, :context.shape[1]]

        def extrapolated(length: int, ahead: int) -> tuple[Tensor, Tensor]:
            pred, valid = constant_velocity_range(values[:, :length], ahead)
            return (pred if raw is None else boxcox.box_cox(pred, raw[1])), valid

        stats = PairedChecks(context, group, self.pool_by_power)  # A: the forecast so far, B: the range fit
        slope = PairedChecks(context, group, self.pool_by_power, TREND_MARGIN)  # A: persistence, B: the range fit
        fits = torch.ones(context.shape[0], dtype=torch.bool, device=context.device)
        preds = []
        for cut, truth, kept in kept_forecasts(cuts, keep, ar_cuts, ar_weight):
            if trend is not None:
                kept = kept + trend[:, None] * (last_step_trend(context[:, :cut], truth.shape[1]) - kept)
            pred, valid = extrapolated(cut, truth.shape[1])
            pred = torch.where(valid[:, None], pred, kept)  # no fit, no evidence
            fits &= valid
            stats.add_forecasts(kept, pred, truth)
            slope.add((context[:, cut - 1:cut].double() - truth) ** 2, (pred - truth) ** 2)
            preds.append(pred)
        pred, valid = extrapolated(context.shape[1], point.shape[1])
        fits &= valid
        weight = stats.share(self.check_test, self.range_share == "fitted") * slope.a_far_behind_on_most() * fits
        follow(track, preds, weight)
        if not bool((weight > 0).any()):
            return point, quant
        return move_towards(point, quant, pred, weight)

    def season_period(self, first_cut: int, interval: Tensor) -> Tensor:
        """``[B]`` long: the longest seasonal period, a week else a day at the row's ``interval`` (at
        least 2 steps), that the earliest check's context (``first_cut`` values) holds; where a week
        is under 2 steps (weekly, monthly, quarterly series), the year's (as
        :func:`wfm.models.baselines.seasonal_period`); 0 where none."""
        period = torch.zeros(interval.shape[0], dtype=torch.long, device=interval.device)
        for name in ("day", "week"):  # the week last: it wins where both fit
            steps = season_steps(name, interval)
            fits = (steps >= 2) & (steps <= first_cut)
            period = torch.where(fits, steps.clamp(max=first_cut).long(), period)
        year = season_steps("year", interval)
        fits = (season_steps("week", interval) < 2) & (year >= 2) & (year <= first_cut)
        return torch.where(fits, year.clamp(max=first_cut).long(), period)

    def _season_checked(self, context: Tensor, cuts: list[tuple[int, Tensor, Tensor, Tensor]],
                        ar_cuts: list[Tensor] | None, keep: Tensor, ar_weight: Tensor | None, group: Tensor | None,
                        interval: Tensor, point: Tensor, quant: Tensor | None,
                        track: list[Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
        """``check_season``: ``(point, quant)`` moved towards seasonal naive (:func:`seasonal_naive`,
        the period of :meth:`season_period`) where it beat the forecast so far (what the checks kept,
        moved towards linear prediction by ``ar_weight``) on the same ``cuts``: all the way where
        beyond doubt (``check_test``), half where on average; with ``season_share="fitted"`` the mean
        of that and the share fitted on the checks. Rows whose earliest check holds no season do not
        move. Box-Cox is elementwise, so seasonal naive of the transformed context is that of the
        values given, transformed. ``track``: :func:`follow`'s, moved as the forecast is. With
        ``season_mean`` the candidate is :func:`seasonal_mean`, and with ``season_drift`` its drifting
        form is tested next (:meth:`_season_drift_checked`)."""
        period = self.season_period(cuts[0][0], interval)
        # A context holding a longer season than its checks (a week of hourly values cut at 96-168)
        # forecasts with it, so seasonal naive of the shorter one is overrated there (as ar_season).
        usable = (period > 0) & ~self.checks_miss_season(context.shape[1], cuts[0][0], interval)
        if cuts[0][1].shape[1] < point.shape[1]:
            # Short checks (short_checks) are weak evidence: they bring in a season the prior lacks
            # (the year of monthly values), never against the network's use of its own day or week
            # estimator (hourly traffic, 48 -> 24: 0.739x -> 0.820x the best classical with them).
            for name in ("day", "week"):
                if name in self.estimators:
                    usable &= period != season_steps(name, interval).long()
        if not bool(usable.any()):
            return point, quant
        candidate = seasonal_mean if self.season_mean else seasonal_naive
        stats = PairedChecks(context, group, self.pool_by_power)
        preds = []
        for cut, truth, kept in kept_forecasts(cuts, keep, ar_cuts, ar_weight):
            preds.append(candidate(context[:, :cut], period, truth.shape[1]).double())
            stats.add_forecasts(kept, preds[-1], truth)
        weight = stats.share(self.check_test, self.season_share == "fitted") * usable
        follow(track, preds, weight)
        if bool((weight > 0).any()):
            point, quant = move_towards(point, quant, candidate(context, period, point.shape[1]), weight)
        if self.season_drift:
            point, quant = self._season_drift_checked(context, cuts, ar_cuts, keep, ar_weight, group, period, usable,
                                                      point, quant, track)
        return point, quant

    def _season_drift_checked(self, context: Tensor, cuts: list[tuple[int, Tensor, Tensor, Tensor]],
                              ar_cuts: list[Tensor] | None, keep: Tensor, ar_weight: Tensor | None,
                              group: Tensor | None, period: Tensor, usable: Tensor, point: Tensor,
                              quant: Tensor | None, track: list[Tensor] | None) -> tuple[Tensor, Tensor | None]:
        """``season_drift``: ``(point, quant)`` taken to the drifting seasonal mean
        (:func:`seasonal_mean` with ``drift``) where it beat the forecast so far on the same ``cuts``
        beyond doubt (``check_test``), and nowhere else: a drift carried a period ahead costs a
        season that does not grow (pretrain/studies.md, "A season averaged over the periods the
        context holds"). ``track`` (:func:`follow`'s, the forecast so far at each check, as
        ``check_season`` left it), or else what the checks kept, is what it is tested against."""
        # Only where every check's context holds two periods: with one, the candidate is seasonal
        # naive, which check_season has weighed already.
        usable = usable & (cuts[0][0] // period.clamp_min(1) >= 2)
        if not bool(usable.any()):
            return point, quant
        stats = PairedChecks(context, group, self.pool_by_power)
        preds = []
        for i, (cut, truth, kept) in enumerate(kept_forecasts(cuts, keep, ar_cuts, ar_weight)):
            preds.append(seasonal_mean(context[:, :cut], period, truth.shape[1], drift=True))
            stats.add_forecasts(kept if track is None else track[i], preds[-1], truth)
        weight = (stats.a_loses(self.check_test) & usable).to(torch.float64)
        follow(track, preds, weight)
        if not bool((weight > 0).any()):
            return point, quant
        return move_towards(point, quant, seasonal_mean(context, period, point.shape[1], drift=True), weight)

    def _level(self, context: Tensor, group: Tensor | None, raw: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``[B, 1]`` float64: the context mean that ``white_limit`` and ``check_mean`` give, with
        ``white_shrink`` shrunk towards zero where a group's channels are zero-mean noise. With
        ``raw`` (``(values, lam)``, ``context`` their Box-Cox transform), the mean of the values
        ``context`` holds, transformed."""
        if raw is not None:
            values, lam = raw
            return boxcox.box_cox(self._level(values[:, :context.shape[1]], group), lam)
        return (shrunk_mean(context, group) if self.white_shrink
                else context.to(torch.float64).mean(dim=1, keepdim=True))

    def _mean_checks(self, context: Tensor, cuts: list[tuple[int, Tensor, Tensor, Tensor]],
                     ar_cuts: list[Tensor] | None, keep: Tensor, weight: Tensor | None, group: Tensor | None,
                     raw: tuple[Tensor, Tensor] | None = None) -> PairedChecks:
        """``check_mean``: the forecast so far (what the checks kept, moved towards linear
        prediction by ``weight``, with ``check_ar``) as A against the context mean (B) on the same ``cuts``."""
        stats = PairedChecks(context, group, self.pool_by_power)
        for cut, truth, kept in kept_forecasts(cuts, keep, ar_cuts, weight):
            stats.add((kept - truth) ** 2, (self._level(context[:, :cut], group, raw) - truth) ** 2)
        return stats

    def _linear_prediction_weight(self, context: Tensor, cuts: list[tuple[int, Tensor, Tensor, Tensor]],
                                  ar_cuts: list[Tensor], keep: Tensor, group: Tensor | None,
                                  interval: Tensor | None = None) -> Tensor:
        """``[B]`` weight of linear prediction in the forecast, ``check_ar``: 1 where linear
        prediction (:func:`wfm.models.linear_prediction.ar_forecast`, a group's rows pooled into one
        recursion) beat what the checks kept (the network where ``keep``, else the classical
        combination; the first reading's) beyond doubt on the same checks (``cuts``: each check's
        ``(cut, truth, network, classical)``), by the test of ``check_test``: the one-sided paired
        t-test on the squared errors' difference over the row's context variance (a group's
        pooled), and with ``"either"`` also on their log ratio. With ``ar_blend``, 0.5 where it
        erred less on average over the checks but not beyond doubt. Else 0. With ``ar_share="fitted"``,
        the mean of that and the share fitted on the checks (:meth:`PairedChecks.fitted_share`). With ``ar_season``,
        0 for rows whose checks miss a season the whole context holds (:meth:`checks_miss_season`)."""
        stats = self._linear_prediction_checks(context, cuts, ar_cuts, keep, group)
        weight = stats.share(self.check_test, self.ar_share == "fitted", behind=0.5 if self.ar_blend else 0.0)
        if self.ar_season and interval is not None and cuts:
            weight = torch.where(self.checks_miss_season(context.shape[1], cuts[0][0], interval), 0.0, weight)
        return weight

    @staticmethod
    def context_seasons(length: int, horizon: int, interval: Tensor) -> tuple[Tensor, Tensor]:
        """``(seasons [B, 2], unseen [B])`` for ``walk_last`` and ``white_level``, whose tests read
        a context as if nothing outside it drove the series: the periods in steps of the seasons a
        row's ``interval`` implies (a day and a week of at least 2 steps; the year where a week is
        under 2, as :meth:`season_period`), 0 for none, and where one of them is neither read by
        their tests (:func:`wfm.models.evidence.pooled_q`: at most a third of the context's steps)
        nor ``WALK_SEASON_SPAN`` times as long as the context and the horizon. Over a large part of a
        season, the season is a walk to every test of the context: held-out hourly traffic, two
        days -> one, went 0.74x -> 3.8x the best classical with the walk's forecast, and 15-minute
        traffic, a day -> an hour, 0.86x -> 0.95x."""
        day, week, year = (season_steps(n, interval).long() for n in ("day", "week", "year"))
        none = torch.zeros_like(day)
        longer = torch.where(week >= 2, week, torch.where(year >= 2, year, none))
        seasons = torch.stack([torch.where(day >= 2, day, none), longer], dim=1)
        unseen = ((seasons > (length - 1) // 3) & (seasons < WALK_SEASON_SPAN * max(length, horizon))).any(dim=1)
        return seasons, unseen

    def checks_miss_season(self, length: int, first_cut: int, interval: Tensor) -> Tensor:
        """``[B]`` bool: rows whose context of ``length`` values holds a full seasonal period of the
        prior's ``day`` / ``week`` estimators (at the row's ``interval``, at least 2 steps) that the
        earliest check's context (``first_cut`` values) does not. There the checks compare linear
        prediction with a network and a classical combination that lack the season the forecast
        itself has (a day of 10-minute traffic from its 144th value on), so they overrate it."""
        miss = torch.zeros(interval.shape[0], dtype=torch.bool, device=interval.device)
        for name in ("day", "week"):
            if name in self.estimators:
                period = season_steps(name, interval)
                miss |= (period >= 2) & (period <= length) & (period > first_cut)
        return miss

    def _linear_prediction_checks(self, context: Tensor, cuts: list[tuple[int, Tensor, Tensor, Tensor]],
                                  ar_cuts: list[Tensor], keep: Tensor, group: Tensor | None) -> PairedChecks:
        """What the checks kept (A) against linear prediction (B, ``ar_cuts``: its forecast from
        each cut) on the same ``cuts``."""
        stats = PairedChecks(context, group, self.pool_by_power)
        for (_, truth, kept), ar in zip(kept_forecasts(cuts, keep), ar_cuts):  # A: the check's keep; B: linear prediction
            stats.add_forecasts(kept, ar.double(), truth)
        return stats

    def _rollout(self, context: Tensor, interval: Tensor, horizon: int, group: Tensor | None = None,
                 fallback: bool = False, coarse: bool = True, reuse: bool = True,
                 spread: bool = False) -> list[tuple[Tensor, Tensor | None]]:
        """``forecast``'s autoregressive rollout of checked inputs: ``[(point [B, H], quantiles [B, H, Q] | None)]``
        in the original scale, the network's; with ``fallback`` (``guard=True``) also the guard's
        classical combination's, rolled out on its own forecasts. The first step serves both (one
        pass gives ``ahead`` and ``fallback``); later steps run both sequences as one batch.
        ``coarse=False``: without coarse tokens (``forward``).

        The estimators' backtest errors count only targets inside the given context, so with
        origins at every value and no window they are the same at every step, and an appended
        patch's are the last given patch's (to the bit): later steps reuse the first step's
        (``forward(backtest=)``; at 720 values of context and 30 ahead, a third of the time). The
        ``ar`` estimator's fits and errors up to the end of the given context do not change either:
        later steps fit only the appended patches (``forward(ar_carry=)``; the same forecasts).
        ``reuse=False`` recomputes them (the tests compare the two).

        ``spread`` (``propagate_quantiles``, with a quantile head): each patch's quantiles are
        conditioned on the point forecast of the patches before it, so they leave out how unsure
        those were. Two more sequences follow the outer quantiles instead (each appends its
        bound), and a patch's outer quantiles move out by how far the network's forecast on them
        departs from the point forecast, added in quadrature (:func:`spread_bounds`). A random walk
        then widens as the square root of the patches ahead; noise around a level, whose forecast
        ignores a low or high past, does not widen."""
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
        spread = spread and len(self.quantile_levels) >= 2
        seqs = [values] * ((2 if fallback else 1) + (2 if spread else 0))
        extra: list[tuple[Tensor, Tensor]] = []  # each step's outward moves of the outer quantiles, normalised
        reuse = reuse and not legacy and self.guard and self.backtest_origins == "value" and not self.backtest_window
        first: Tensor | None = None  # the first step's backtest errors [B, N, E, H]
        first_ar = None  # and its ``ar`` estimates (``CausalOutput.ar_carry``)
        kept = 2 if fallback else 1  # the sequences whose forecasts are returned
        points: list[list[Tensor]] = [[] for _ in range(kept)]
        quants: list[list[Tensor]] = [[] for _ in range(kept)]
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
                group if n == 1 else torch.cat([group + i * (int(group.max()) + 1) for i in range(n)]))
            backtest = carry = None
            if first is not None:
                more = seqs[0].shape[1] // p - first.shape[1]
                backtest = rep(torch.cat([first, first[:, -1:].expand(-1, more, -1, -1)], dim=1))
                carry = None if first_ar is None else type(first_ar)(*map(rep, first_ar))
            out = self(seqs[0] if n == 1 else torch.cat(seqs), rep(observed), rep(interval),
                       stats=(rep(loc), rep(scale)), context_len=None if legacy else rep(given), group=grp,
                       coarse=coarse, backtest=backtest, ar_carry=carry)
            if reuse and first is None:
                first, first_ar = out.backtest, out.ar_carry
            nexts = []
            for i in range(len(seqs)):
                ahead = out.fallback if fallback and i == 1 else out.ahead
                last = ahead[:, -1][i * b:(i + 1) * b] if n > 1 else ahead[:, -1]  # [B, K, P, 1 + Q]: next K patches
                nexts.append(last[..., 0].reshape(b, k * p))
                if i < kept:
                    points[i].append(nexts[i])
                    if self.quantile_levels:
                        grown = self.grow_band(last[..., 0], last[..., 1:], step * k)  # [B, K, P, Q]
                        quants[i].append(grown.reshape(b, k * p, -1))
            if spread:
                q, lv = quants[0][-1], self.quantile_levels
                lo, hi = spread_bounds(nexts[0], q, nexts[kept], nexts[kept + 1], lv)
                extra.append((lo, hi))
                # the widened bounds carry on
                nexts[kept] = q[..., lv.index(min(lv))] - lo
                nexts[kept + 1] = q[..., lv.index(max(lv))] + hi
            for i in range(len(seqs)):
                seqs[i] = torch.cat([seqs[i], nexts[i] * scale + loc], dim=1)
            observed = F.pad(observed, (0, k * p), value=True)
        if spread:  # outer quantiles moved out by the propagated extra, inner ones in proportion
            lv = torch.tensor(self.quantile_levels, device=values.device)
            down = ((0.5 - lv) / (0.5 - lv.min())).clamp_min(0.0)
            up = ((lv - 0.5) / (lv.max() - 0.5)).clamp_min(0.0)
            grow = torch.cat([h[..., None] * up - l[..., None] * down for l, h in extra], dim=1)  # [B, steps * K * P, Q]
            quants = [[torch.cat(qt, dim=1) + grow] for qt in quants]
        return [(torch.cat(pt, dim=1)[:, :horizon] * scale + loc,
                 torch.cat(qt, dim=1)[:, :horizon] * scale[..., None] + loc[..., None] if qt else None)
                for pt, qt in zip(points, quants)]

    def check_cuts(self, length: int, horizon: int) -> list[int]:
        """Where ``check_origins`` cuts a context of ``length`` values: each cut ``c`` forecasts
        values ``c .. c + horizon - 1`` from the ``c`` before it. The latest origins, ``horizon``
        apart (rolling origins whose targets do not overlap), as long as each keeps at least half of
        the context (and a patch): a check then resembles the forecast it vouches for."""
        low = self._first_cut(length)
        return sorted(c for c in (length - k * horizon for k in range(1, self.check_origins + 1)) if c >= low)

    def _first_cut(self, length: int) -> int:
        """The earliest cut :meth:`check_cuts` allows: half the context, and a patch."""
        return max(self.patch_len, -(-length // 2))

    def check_plan(self, length: int, horizon: int) -> tuple[list[int], int]:
        """``(cuts, the values each check forecasts)``: :meth:`check_cuts` of the whole ``horizon``;
        with ``short_checks``, where those are fewer than two, :data:`SHORT_CHECKS` or more checks of
        the longest shorter horizon that gives them (a context under about four horizons: 24 months
        -> 12, whose one check cannot test anything, gets three checks of 4 months)."""
        cuts = self.check_cuts(length, horizon)
        if len(cuts) >= 2 or not self.short_checks:
            return cuts, horizon
        ahead = min(horizon, (length - self._first_cut(length)) // SHORT_CHECKS)
        return (self.check_cuts(length, ahead), ahead) if ahead >= 1 else (cuts, horizon)

    def has_coarse(self, length: int) -> bool:
        """Whether a context of ``length`` values reaches the transformer partly as coarse tokens."""
        padded = length + (-length) % self.patch_len
        return bool(self.coarse_len) and self.prior != "trend" and padded > self.fine_len(padded)

    def _network_passes_check(self, context: Tensor, interval: Tensor, horizon: int,
                              group: Tensor | None = None, readings: list[bool] | None = None,
                              cuts_into: list | None = None) -> list[Tensor]:
        """``[B]`` bool per reading of the context (``readings``: with coarse tokens or not;
        default: with them, as ``forward``): False where the checks (``check_cuts``) show that
        reading of the network erring more than the classical combination beyond doubt. A one-sided
        paired t-test (Diebold-Mariano style) on one value per check and row, the mean over its
        horizon of ``d`` = network minus classical squared error over the row's context variance
        (the values of one horizon move together, so each check counts once); a group pools its
        rows' checks. The network is replaced where ``mean(d) > t * std(d) / sqrt(n)``, ``t`` =
        :func:`wfm.models.evidence.check_threshold` of ``n - 1`` degrees of freedom; fewer than 2 checks decide nothing.
        ``check_test``: ``"log_ratio"`` tests ``d`` = the log of the network's mean squared error
        over the classical combination's (a group's pooled) instead, ``"either"`` both (the log
        ratios from ``LOG_RATIO_MIN_CHECKS`` checks on)."""
        readings = [True] if readings is None else readings
        stats = [PairedChecks(context, group, self.pool_by_power) for _ in readings]  # A: network, B: classical
        cuts, ahead = self.check_plan(context.shape[1], horizon)
        # Short checks (short_checks) test the other candidates only: the guard overruling the network
        # on them cost 2-minute traffic, 64 -> 30, 0.812x -> 0.822x the best classical.
        short = ahead < horizon
        for cut in cuts:
            past, truth = context[:, :cut], context[:, cut:cut + ahead].double()
            (net, _), (cls, _) = self._rollout(past, interval, ahead, group, fallback=True, coarse=readings[0])
            if cuts_into is not None:  # what check_ar tests linear prediction against
                cuts_into.append((cut, truth, net, cls))
            if short:
                continue
            e_c = (cls.double() - truth) ** 2  # the classical combination: the same for every reading
            e_n = (net.double() - truth) ** 2
            for i, coarse in enumerate(readings):
                if i and coarse != readings[0] and self.has_coarse(cut):  # else this cut reads the same
                    (net, _), = self._rollout(past, interval, ahead, group, coarse=coarse)
                    e_n = (net.double() - truth) ** 2
                stats[i].add(e_n, e_c)
        return [~st.a_loses(self.check_test) for st in stats]
