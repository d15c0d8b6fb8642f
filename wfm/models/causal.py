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
   context plus a learned linear map of the token (:func:`wfm.models.series_priors.classical_priors`,
   :func:`wfm.models.series_priors.backtest_mse`); the estimators' next patch and backtest errors are embedded into every
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

This file holds the network and its loss. The classical estimators and their backtests are in
:mod:`wfm.models.series_priors`; ``forecast`` and its inference rules (``check_origins``,
``white_limit``, ``box_cox``, ``coarse_blend``) in :mod:`wfm.models.causal_forecast`, their
statistical tests in :mod:`wfm.models.evidence`, and the pooling of a window's channels in
:mod:`wfm.models.groups`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import Attention
from torch import Tensor, nn

from wfm.hub_mixin import WfmHubMixin, causal_arch  # huggingface_hub's ModelHubMixin with wfm's checks
from wfm.models.causal_forecast import ForecastMixin
from wfm.models.evidence import CHECK_TESTS
from wfm.models.groups import group_sizes, group_sums, pool_by_group, power_weights
from wfm.models.registry import register_model
from wfm.models.series_priors import (BACKTEST_PRIOR, DEFAULT_ESTIMATORS, ESTIMATORS, TARGET_CLIP, ArCarry, ar_fit,
                                      backtest_mse, backtest_mse_values, classical_priors, normalise_stats)
from wfm.nn.blocks import Block, rename_legacy_mlp_keys

#: The training loss is squared error up to this many (scaled) units, linear beyond.
HUBER_DELTA = 5.0
#: The skill loss' floor on the classical error, relative to the targets' power (as the MAE's).
SKILL_FLOOR = 1e-3


@dataclass
class CausalOutput:
    """Result of :meth:`CausalForecaster.forward`: next-patch predictions in normalised space.

    ``point`` is ``[B, N, P]`` (token ``i`` predicts patch ``i + 1``), ``quantiles`` is
    ``[B, N, P, Q]`` or ``None``; ``ahead`` is ``[B, N, K, P, 1 + Q]``: every output of the
    direct multi-patch head (patches ``i + 1 .. i + K``; point first, then the quantiles);
    ``loc``/``scale`` are ``[B, 1]`` (the normalisation). ``fallback`` (``guard=True`` models):
    ``ahead``'s layout for the guard's classical combination alone (the quantiles shifted with it),
    computed in the same pass; what ``check_origins`` compares the network against. ``backtest``
    (``prior="mix"``): the estimators' backtest errors at every patch end, ``[B, L / P, E, H]``,
    before a group pools them (what ``forward(backtest=)`` takes back); ``ar_carry`` (a mix with
    ``ar`` and a backtest at every value): what ``forward(ar_carry=)`` takes back.
    """

    point: Tensor
    quantiles: Tensor | None
    ahead: Tensor
    loc: Tensor
    scale: Tensor
    fallback: Tensor | None = None
    backtest: Tensor | None = None
    ar_carry: ArCarry | None = None


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


def share_rule(name: str, value: str) -> str:
    """``value`` of a ``*_share`` option (``"half"`` or ``"fitted"``), else a ValueError naming it."""
    if value not in ("half", "fitted"):
        raise ValueError(f"{name} must be 'half' or 'fitted', got {value!r}")
    return value


class CausalForecaster(ForecastMixin, nn.Module, WfmHubMixin):
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
            visible values (:func:`wfm.models.series_priors.classical_priors`); the gate's logits are a linear map of the
            token's features plus ``backtest_weight x -log(backtest MSE)`` of each estimator
            (:func:`wfm.models.series_priors.backtest_mse`), so a fresh model is the inverse-MSE (Bates-Granger)
            combination. The estimators' next patch, their backtest errors and availability are
            embedded and added to each token (the network sees the prior as input). A zero head
            reproduces the mix exactly.
        estimators: estimators of the ``"mix"`` prior (subset of ``ESTIMATORS``; default
            ``DEFAULT_ESTIMATORS``, the six of the models saved before ``reversion`` and the
            windowed means; the shipped ``causal-tiny-catalog-cpu`` uses all eleven, the last,
            ``ar``, linear prediction fitted at every origin
            (:func:`wfm.models.series_priors.ar_fit`), grown in untrained: ``forecast`` takes
            1.2-1.8x the time without it, pretrain/studies.md).
        backtest_weight: initial weight of ``-log(backtest MSE)`` in the gate (learned).
        backtest_window: origins (patches) the backtest MSE averages over, the latest (0: all).
        backtest_origins: ``"patch"`` (every model saved before this option): the backtest scores
            forecasts made at patch ends (:func:`wfm.models.series_priors.backtest_mse`), so the first token has no evidence;
            ``"value"``: forecasts made at every value (:func:`wfm.models.series_priors.backtest_mse_values`), so 8 values
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
        check_test: what ``check_origins`` tests on each check (:data:`wfm.models.evidence.CHECK_TESTS`):
            ``"difference"`` (every model saved before this option), the network's squared error less
            the classical combination's, over the context's variance; ``"log_ratio"``, the log of
            their ratio (a group's: of its pooled errors); ``"either"``, the classical combination
            where either test shows the network losing (the log ratios from
            ``LOG_RATIO_MIN_CHECKS`` checks on). The difference is the mean's test, but one check
            the network misses by far widens its spread more than its mean: on a smooth series
            where the network was behind on all 8 checks, by up to 3,400x, it kept the network. The
            log ratio alone keeps networks the difference replaces (on short windows of beam powers).
        check_ar: with ``check_origins``, where two or more checks fit, linear prediction (the
            classical channel predictor, :func:`wfm.models.linear_prediction.ar_forecast`: one
            recursion per row, or pooled over a group's rows) is tested on the same checks against
            what they kept (the network, or its classical combination), by the same test
            (``check_test``), and replaces it where it erred less beyond doubt
            (:meth:`_linear_prediction_weight`). Noise-free sinusoids and 1-ms CSI windows of 32 or
            more packets are such series; short or noisy contexts keep what they had. False (every
            model saved before this option): no such test. Inference only.
        ar_blend: with ``check_ar``, where linear prediction erred less than what the checks kept
            on average over them but not beyond doubt, the forecast is the mean of the two (a
            forecast combination: the classical device where neither of two forecasters is shown
            better); where it erred less beyond doubt it still replaces it. Chosen on held-out
            generated series and textbook processes (pretrain/studies.md, "Linear prediction
            blended where it leads the checks"). False (every model saved before it): no blend.
            Inference only.
        ar_share: with ``check_ar``, how much of linear prediction goes in: ``"half"`` (every
            model before session 54) all of it where it won beyond doubt, half where it led on
            average with ``ar_blend``, else none; ``"fitted"`` the mean of that and the share that
            minimised the checks' squared error (least squares, in [0, 1]), as ``drift_share``.
            Measured on held-out generated traffic and not shipped (pretrain/studies.md, "Linear
            prediction's share fitted on the checks"). Inference only.
        ar_season: with ``check_ar``, linear prediction is not taken (nor blended) for a row whose
            earliest check's context lacks a seasonal period that the whole context holds (a day or
            a week of the ``day`` / ``week`` estimators: 10-minute traffic with exactly a day of
            context): its checks then compare it with a network and a classical combination that
            miss the season the forecast has (:meth:`checks_miss_season`). Chosen on held-out
            generated traffic (pretrain/studies.md, "Linear prediction only on checks that hold the
            season"). False (every model saved before it): no such condition. Inference only.
        check_season: with ``check_origins``, where two or more checks fit, seasonal naive (the
            value one period back, the period the longest of a week and a day at the row's interval
            that the earliest check's context holds, at least 2 steps) is tested on the same checks
            against the forecast so far (what they kept, moved towards linear prediction by
            ``check_ar``) and the forecast moved towards it where it led: by ``season_share``. Not
            where the whole context holds a longer season than the checks (as ``ar_season``). The
            guard's classical combination mixes its estimators softly (weights as the backtest error
            to the power ``-backtest_weight``, 0.81 in the release), so on a strongly seasonal
            series it carries a share of every estimator. Chosen on held-out generated traffic
            (pretrain/studies.md, "Seasonal naive as a candidate of the check"). False (every model
            saved before session 55): no such candidate. Inference only.
        season_share: with ``check_season``, how much of seasonal naive goes in: ``"half"`` all of
            it where it won beyond doubt (``check_test``), half where it led on average, else none;
            ``"fitted"`` (the release) the mean of that and the share that minimised the checks'
            squared error, as ``drift_share``. Inference only.
        check_trend: with ``check_origins``, where two or more checks fit, linear extrapolation
            through the last two values (the last value plus ``h`` times the last step's change) is
            tested on the same checks against the forecast so far (what they kept, moved towards
            linear prediction by ``check_ar``) and the forecast moved towards it where it led: by
            ``trend_share``. A smooth path (a user's distance or bearing) continues its last step,
            which neither the network nor the guard's soft classical combination does in full; on
            noise the checks refuse it. Never where the extrapolation would move further over the
            horizon than the context's range (a burst's step carried hours ahead; session 57).
            False (every model saved before session 56): no such candidate. Inference only.
        trend_share: with ``check_trend``, how much of the extrapolation goes in, as ``season_share``.
        trend_local: with ``check_trend``, the extrapolation is also taken in full where the
            context's own steps vouch for it (:func:`wfm.models.causal_forecast.trend_holds_locally`:
            on most steps, its error ``h`` ahead under the local curvature below ``1 / TREND_MARGIN``
            of persistence's), unless the checks show it losing to the forecast so far beyond doubt.
            A vehicle turning past the base station within the context fails the checks, cut before
            the turn, while its steps since show the slope; traffic and CSI noise never pass.
            False (every model saved before session 58). Inference only.
        check_range: with ``check_origins``, where two or more checks fit and ``forecast`` is told
            that its rows are ranges (``ranges=True``: a user's distance to its base station), the
            range of a target at constant velocity (:func:`wfm.models.causal_forecast.constant_velocity_range`:
            the squared range is a quadratic in time) is tested on the same checks against the
            forecast so far, with ``check_trend``'s margin over persistence, and the forecast moved
            towards it where it led: by ``range_share``. A vehicle passing the base station bends
            its range within a few values; the last step's extrapolation overshoots the turn and
            the network flattens it. False (every model saved before session 59). Inference only.
        range_share: with ``check_range``, how much of the range fit goes in, as ``season_share``.
        check_last: with ``check_origins``, where two or more checks fit, persistence (the last value
            held) is tested on the same checks against the forecast so far, and the forecast moved
            towards it where it led them and the forecast so far erred more than
            :data:`wfm.models.causal_forecast.LAST_MARGIN` times persistence on most of them: by
            ``last_share``. The network and the classical combination can both carry an older level
            into the horizon (the context mean after a bearing swung and held). Not where the
            context holds a season its checks miss (as ``ar_season``). False (every model saved
            before session 59). Inference only.
        last_share: with ``check_last``, how much of persistence goes in, as ``season_share``.
        check_ses: with ``check_origins``, where two or more checks fit, simple exponential smoothing
            (:func:`wfm.models.smoothing.ses_forecast`: the local level, its weight fitted on the
            context's one-step errors) is tested on the same checks against the forecast so far,
            and the forecast moved towards it where it led them: by ``ses_share``. A wandering
            level seen through noise is forecast best by neither the last value nor the mean, and
            neither the network nor linear prediction reaches it. Not where the context holds a
            season its checks miss (as ``ar_season``). False (off in the release: textbook
            processes gain, held-out generated traffic and paths and the real Milan cells lose;
            pretrain/studies.md, "Simple exponential smoothing as a candidate of the check").
            Inference only.
        ses_share: with ``check_ses``, how much of it goes in, as ``season_share``.
        season_mean: with ``check_season``, its candidate is the seasonal profile averaged over
            every full period the context (at each check, the context before its cut) holds, on
            the level of the last period (:func:`wfm.models.causal_forecast.seasonal_mean`),
            instead of seasonal naive (the last period alone, whose every value carries its own
            noise into the forecast). The two are the same where the context holds one period.
            False (every model saved before session 66). Inference only.
        season_drift: with ``season_mean``, the same candidate with the drift of its period means
            (a growing season) is then tested on the checks against the forecast so far, and taken
            where it won beyond doubt. False (every model saved before session 66). Inference only.
        check_drift: with ``check_origins``, where two or more checks fit and ``forecast`` is told
            that each group's rows are ordered channels (``ordered=True``: a codebook's beam
            powers in angular order), the group's power profile shifted by its peak's drift
            (:func:`wfm.models.profile_drift.drift_forecast`, the classical beam-tracking forecast
            that no univariate estimator can make) is tested on the same checks against the
            forecast so far (what they kept, with ``check_ar`` moved towards linear prediction), by
            the same test (``check_test``), and averaged with it where it erred less (on average
            over the checks, or beyond doubt). Chosen on held-out generated beam sweeps
            (pretrain/studies.md, "A beam profile that drifts"). False (every model saved before
            it): no such test. Inference only.
        drift_share: with ``check_drift``, how much of the drifting profile goes in: ``"half"``
            (session 53) half of it where it erred less on the checks, else none; ``"fitted"``
            (session 54) the mean of that and the share that minimised the checks' squared error
            (least squares over the group's checks, in [0, 1]): the fitted share alone is noisy
            from a few checks, and the fixed half alone ignores how much better the drift did.
            Chosen on held-out generated beam sweeps (pretrain/studies.md, "The drift's share
            fitted on the checks"). Inference only.
        check_mean: with ``check_origins``, where two or more checks fit, the context mean (with
            ``white_shrink`` shrunk as that option shrinks it) is tested on the same checks against
            the forecast so far (what they kept, with ``check_ar`` moved towards linear
            prediction), by the same test (``check_test``), and replaces it where it erred less
            beyond doubt: ``white_limit``'s mean for contexts long enough to be checked. False
            (every model saved before this option): no such test. Inference only.
        white_limit: with ``check_origins``, where the context is too short for two checks (the
            8-packet CSI windows of ``wfm benchmark real``), a row or pooled group whose context
            looks like white noise around its mean gets the context mean instead of the network
            (:func:`wfm.models.evidence.looks_white`): its lag-1 autocorrelation, scaled so that white noise scores 0
            and a straight line 1 at that length, must lie below the limit by ``WHITE_Z``
            standard errors, with at least ``WHITE_MIN_PAIRS`` lag-1 products pooled (a window's
            channels, not one short series). For white noise around a level nothing beats the mean.
            ``0.5``: closer to white noise than to a line. ``None`` (every model saved before this
            option): the network.
        white_shrink: with ``white_limit``, the mean it gives a white row or group is shrunk
            towards zero by empirical Bayes over the group's rows
            (:func:`wfm.models.evidence.shrunk_mean`): zero-mean noise (the real and imaginary parts
            of CSI whose phase is random per packet) gets about zero, a level far above its noise
            its mean. False (every model saved before this option): the plain context mean.
        white_scale: with ``white_limit``, the mean it gives a white row or group (shrunk by
            ``white_shrink`` where that is on) is scaled by what the context's own backtest fits
            (:func:`wfm.models.evidence.backtest_scale`, the MAE guard's rule): its last 2, 3 and 4
            values forecast by the mean of those before, the scale taken where it is below a half
            (zero-mean noise), else 1. False (every model saved before session 54): no scale.
        short_checks: with ``check_origins``, a context too short for two checks of the whole
            horizon (under about four horizons) is checked on :data:`wfm.models.causal_forecast.SHORT_CHECKS`
            or more checks of the longest shorter horizon that gives them (:meth:`check_plan`: a
            horizon of 12 from 24 monthly values gets 3 checks of 4). Their evidence is on the
            nearer steps only, so they test only what holds a level or copies a season:
            ``check_season`` for a season the prior lacks (the year of weekly, monthly and quarterly
            values; not the day or week its own estimators hold), ``check_last`` and ``check_mean``;
            the guard keeps the network, and the extrapolations (``check_ar``, ``check_trend``,
            ``check_range``, ``check_drift``) are not tested. False (every model saved before
            session 63): such a context keeps the network. Inference only.
        walk_last: a row (or pooled group) of 37 values or more that is a random walk beyond
            doubt (:func:`wfm.models.evidence.walk_beyond_doubt`: its steps white at lags 1-12 and
            not anticorrelated, its level not holding, its unit root kept by the Dickey-Fuller
            test) is forecast as its last value, plus its drift where that stands out of its steps'
            noise; not where ``level_shift`` took the level since a shift, nor for rows told they
            are ranges (``check_range`` has their constant velocity), nor where the row's interval
            implies a season the test cannot read and that is not far longer than the context
            (:meth:`context_seasons`: over most of a day, a day is a walk to every test). The network
            and its classical combination lean towards the context mean, which on a walk loses to
            persistence (a share price at 64 trading days: 1.20x). False (every model saved
            before session 64). Inference only.
        drift_ar: where fewer than two checks of the whole horizon fit (:meth:`check_cuts`; from
            two on, ``check_ar`` tests linear prediction on them), a window of at least 8 channels
            (a ``group``) whose pooled lag-1 autocorrelation stands beyond doubt above white noise's,
            counted over its effective channels (:func:`wfm.models.evidence.drifts_beyond_noise`),
            is forecast by linear prediction pooled over its channels. A fading or slowly turning
            link over 8-31 packets moves less than its noise from one packet to the next, so the
            white test gave it the mean and the network, unchecked, trailed the turn (1.8x
            persistence at 5 Hz over 16 packets of 1 ms, session 70). Lone rows never. False
            (every model saved before session 70). Inference only.
        drift_shape: with ``drift_ar``, a window also drifts where its test passes with Ljung-Box's
            small-sample null variance both as given and with every packet divided by the window's
            common gain (``drifts_beyond_noise(shape=True)``): a drift of the channels' shape, as
            fading moves them. The sharper variance alone passed the real Intel capture's gain
            steps at 16 packets (1.05x the mean, session 70); with the shape it finds fading at 8
            packets. False (every model saved before session 73). Inference only.
        white_whole_season: ``white_level``'s season veto (:meth:`context_seasons`: a white night
            says nothing of the morning) is lifted where the context holds a whole period of the
            shortest season the interval implies (a day of 10-minute values: every time of day seen
            white); there the test reads the values in the Box-Cox space the row (or window) is
            forecast in, where a lone burst does not make a day look white. White noise and Poisson
            counts at 10 minutes over 144-1024 values were 1.08-1.15x the context mean with the veto.
            False (every model saved before session 71). Inference only.
        dip_level: a window (a ``group`` of 8 channels or more) whose last step dropped together
            below the level of the 8 before it, on a link that has dipped for one step and come back
            to its level before in the context, is forecast with that step lifted back to the level
            (:func:`wfm.models.evidence.lift_trailing_dips`). SNR-scaled Intel 5300 CSI dips on one
            packet in eight (its noise reading jumps), and the network read a dip at the end of the
            context as a new level: 1.14x the context mean at 64 packets, 1.01x with it. Lone rows
            never. False (every model saved before session 73); on in the release. Inference only.
        white_level: with ``white_limit``, where two or more checks fit (a long context, which
            ``white_limit`` leaves to the checks), rows (or pooled groups) white beyond doubt get
            ``white_limit``'s mean (:func:`wfm.models.evidence.white_beyond_doubt`: their
            autocorrelations at lags 1-8 jointly white noise's, and their block means holding; the
            lag-1 test alone called white the still links whose level drifts under their noise,
            session 27, and fading links that turn a quarter cycle a packet). It takes long white
            CSI to the mean (real Nexmon series alone at 128-512 packets: 0.2-0.4 dB), but a white
            context of 10-minute traffic is no evidence of a white horizon (a quiet night before
            the morning rise: held-out traffic 0.72x -> 1.12x, session 62): since session 64 not
            where the interval implies a season the test cannot read that is under 16 contexts
            long (:meth:`context_seasons`, ``walk_last``'s veto), and on in the release. Inference only.
        white_dips: with ``white_limit``, a group's common-gain dips (a step at which every channel
            of a window drops together and that stands out of the others,
            :func:`wfm.models.evidence.dip_steps`: the AGC of commodity WiFi on a still link) are
            left out of the white test; the mean stays that of every value given. False (every
            model saved before this option): the test reads them as they are.
        box_cox: ``forecast`` forecasts each non-negative row (or group) in Box-Cox space, with
            the exponent its context chooses by Guerrero's method
            (:func:`wfm.models.box_cox.guerrero_lambda`: ``log`` for a series whose changes grow
            with its level, such as cell traffic; no transform for one whose changes do not, such
            as an angle), and transforms the forecast and its quantiles back. False (every model
            saved before this option): the series as given. Inference only.
        box_cox_check: with ``box_cox`` and ``check_origins``, the network's forecasts in Box-Cox
            space (transformed back) and as given are compared on the checks (:meth:`check_cuts`),
            in the values' own units, and a row (or group) where the transform lost beyond doubt
            (``check_test``) is forecast as given (not rows told they are ranges, which keep the
            transform's bound at zero). The checks in Box-Cox space cannot see this: there
            the transformed mean is what wins, and transformed back it is the median's side of the
            values, not their mean. Intermittent counts (mostly zeros, a few units otherwise) were
            forecast near zero; measured, off in the release (pretrain/studies.md, "Box-Cox judged on
            the checks in the values' own units"). False (every model saved before session 69).
            Inference only.
        box_cox_white: with ``box_cox``, a row (or group) that is white noise around a level that
            holds (:func:`wfm.models.evidence.white_beyond_doubt`, at least ``WHITE_MIN_PAIRS``
            lag-1 products), tested on its values in the Box-Cox space it chose, keeps the values
            as given. A level that holds leaves the transform nothing to even out, yet Guerrero's
            method still reads the noise's own growth with the level (i.i.d. counts: 0.1-0.5), and
            the forecast, a mean in that space, comes back below the values' mean (Poisson counts
            with 5-70 % zeros: 1.1-1.5x the best classical). As given, a lone burst hides a day's
            cycle from the test; in Box-Cox space it does not. False (every model saved before
            session 71). Inference only.
        ar_given: the ``ar`` estimator is fitted, and its order chosen, on the values before
            ``context_len`` only (:func:`wfm.models.series_priors.ar_fit`'s ``given``): at a
            rollout's later origins it runs the recursion of the given context from the values as
            they stand, where it was refitted on the appended forecast and chosen on errors against
            it. A forecast patch that bends where the path does not drew an explosive refit (a
            bearing through zero forecast up to 165 degrees). In training, the targets past
            ``context_len`` are data, and the option reads them as the rollout does its forecasts.
            False (every model saved before session 60).
        raw_paths: with ``box_cox``, rows (or groups) whose own steps vouch for continuing their
            trend (:func:`wfm.models.causal_forecast.trend_holds_locally`: a smooth path, such as
            an angle or a position of a moving user) are forecast as given. Box-Cox evens out
            noise that grows with the level, which a smooth path lacks, and its inverse bounds the
            forecast at zero, which an angle that was positive through the context may cross (a
            bearing swinging through 0 was held at 0). Traffic and CSI noise never pass the test.
            Rows ``forecast`` is told are ranges (``ranges=True``) keep Box-Cox: a range cannot
            cross zero. False (every model saved before session 60). Inference only.
        level_shift: a row that held one level and stepped to another within its last 32 values
            (each side flat within the old level's step noise, the new level settled, the two more
            than 8 standard errors apart: :func:`wfm.models.level_shift.level_shift_start`) is
            forecast as the mean of its values since the shift. No check can see such a shift (they
            all end before it), and the estimators' backtests over the whole context favour the old
            level, so the forecast drifted back towards it. False (every model saved before session 61). Inference only.
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
        propagate_quantiles: with a quantile head, ``forecast(quantiles=True)`` widens the quantiles
            of each patch after the first by the uncertainty of the patches before it, which the
            rollout otherwise conditions on as if it were the point forecast: two more sequences
            follow the outer bounds, and how far the network's forecast on them moves is added in
            quadrature (:func:`wfm.models.causal_forecast.spread_bounds`). False (every model saved
            before this option): each patch's quantiles as the head gives them. Inference only;
            skipped with ``check=False``.
        quantile_steps: with a quantile head, a learned growth of the band with the patches ahead
            (``quantile_growth`` ``[quantile_steps, Q]``, log factors): the ``j``-th patch of a
            rollout has each quantile's distance from the point forecast times
            ``exp(growth[min(j, quantile_steps - 1)])``. The head does not know how far ahead a
            token forecasts; trained by ``rollout_quantile_loss`` (``mode: quantiles``), this lets
            the band widen where the rollout's errors grow. 0 (every model saved before this
            option): no growth.
        ar_level: with ``ar`` among the estimators, its recursions are fitted about two centres
            instead of the context's mean: the mean of the values up to each refit (no look-ahead in
            the backtest that picks the order) and the series' own level (the values as measured,
            in units of the context's std: the classical channel predictor); the backtest picks
            one per row or pooled group (:func:`wfm.models.series_priors.ar_fit` with ``level``).
            False (every model saved before this option, the release): the context's mean.
            Measured and not shipped: held-out generated 0.4916 -> 0.4851, real 0.805 -> 0.812
            (pretrain/studies.md, "Linear prediction about the series' level").
        pool_by_power: the rows of a ``group`` (a window's channels) weigh in its pooled evidence
            (the gate's and the guard's backtest errors, ``check_origins``'s checks) and in its
            pooled ``ar`` fit by their share of the window's power, ``scale^2``
            (:func:`wfm.models.groups.power_weights`), as per-window NMSE weighs them: the strong
            beams of a codebook decide, not the many in the noise floor. False (every model saved
            before this option): every row alike. No parameters of its own (it applies wherever a
            group is given: forecasts, and ``loss(group=)`` in training); rows without a group are unchanged.
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
                 white_limit: float | None = None, box_cox: bool = False, coarse_blend: bool = False,
                 propagate_quantiles: bool = False, quantile_steps: int = 0, white_shrink: bool = False,
                 white_dips: bool = False, check_test: str = "difference",
                 ar_level: bool = False, pool_by_power: bool = False, check_ar: bool = False,
                 ar_blend: bool = False, check_mean: bool = False, ar_season: bool = False,
                 check_drift: bool = False, drift_share: str = "half", ar_share: str = "half",
                 white_scale: bool = False, check_season: bool = False, season_share: str = "half",
                 check_trend: bool = False, trend_share: str = "half", trend_local: bool = False,
                 check_range: bool = False, range_share: str = "half", check_last: bool = False,
                 last_share: str = "half", check_ses: bool = False, ses_share: str = "half",
                 season_mean: bool = False, season_drift: bool = False,
                 raw_paths: bool = False, ar_given: bool = False, box_cox_check: bool = False,
                 box_cox_white: bool = False,
                 level_shift: bool = False, white_level: bool = False, short_checks: bool = False,
                 walk_last: bool = False, drift_ar: bool = False, white_whole_season: bool = False,
                 dip_level: bool = False, drift_shape: bool = False) -> None:
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
        if check_test not in CHECK_TESTS:
            raise ValueError(f"check_test must be one of {CHECK_TESTS}, got {check_test!r}")
        self.check_test = check_test
        if white_limit is not None and check_origins < 2:
            raise ValueError(f"white_limit decides where check_origins cannot: it needs check_origins >= 2, got {check_origins}")
        self.white_limit = None if white_limit is None else float(white_limit)
        if white_shrink and white_limit is None:
            raise ValueError("white_shrink shrinks the mean that white_limit gives: it needs white_limit")
        self.white_shrink = bool(white_shrink)
        if white_scale and white_limit is None:
            raise ValueError("white_scale scales the mean that white_limit gives: it needs white_limit")
        self.white_scale = bool(white_scale)
        if white_dips and white_limit is None:
            raise ValueError("white_dips changes the test of white_limit: it needs white_limit")
        self.white_dips = bool(white_dips)
        if ar_level and "ar" not in estimators:
            raise ValueError("ar_level fits the ar estimator about the series' level: it needs 'ar' in estimators")
        self.ar_level = bool(ar_level)
        candidates = (("check_ar", check_ar, "linear prediction"), ("check_drift", check_drift, "a drifting profile"),
                      ("check_mean", check_mean, "the context mean"), ("check_season", check_season, "seasonal naive"),
                      ("check_trend", check_trend, "linear extrapolation"),
                      ("check_range", check_range, "the constant-velocity range fit"),
                      ("check_last", check_last, "persistence"),
                      ("check_ses", check_ses, "simple exponential smoothing"))  # each tested on the checks
        for name, flag, what in candidates:
            if flag and not check_origins:
                raise ValueError(f"{name} tests {what} on the checks of check_origins: it needs check_origins > 0")
        self.check_ar = bool(check_ar)
        if ar_blend and not check_ar:
            raise ValueError("ar_blend blends linear prediction where it leads the checks of check_ar: "
                             "it needs check_ar")
        self.ar_blend = bool(ar_blend)
        if ar_season and not check_ar:
            raise ValueError("ar_season limits where check_ar takes linear prediction: it needs check_ar")
        self.ar_season = bool(ar_season)
        self.check_drift = bool(check_drift)
        self.drift_share = share_rule("drift_share", drift_share)
        if ar_share == "fitted" and not check_ar:
            raise ValueError("ar_share weighs linear prediction where check_ar tests it: it needs check_ar")
        self.ar_share = share_rule("ar_share", ar_share)
        self.check_mean = bool(check_mean)
        self.check_season = bool(check_season)
        self.season_share = share_rule("season_share", season_share)
        if season_mean and not check_season:
            raise ValueError("season_mean averages check_season's seasonal candidate over periods: it needs check_season")
        self.season_mean = bool(season_mean)
        if season_drift and not season_mean:
            raise ValueError("season_drift tests season_mean's candidate with a drift: it needs season_mean")
        self.season_drift = bool(season_drift)
        self.check_trend = bool(check_trend)
        self.trend_share = share_rule("trend_share", trend_share)
        if trend_local and not check_trend:
            raise ValueError("trend_local takes check_trend's extrapolation where the context's steps vouch for it: "
                             "it needs check_trend")
        self.trend_local = bool(trend_local)
        self.check_range = bool(check_range)
        self.range_share = share_rule("range_share", range_share)
        self.check_last = bool(check_last)
        self.last_share = share_rule("last_share", last_share)
        self.check_ses = bool(check_ses)
        self.ses_share = share_rule("ses_share", ses_share)
        self.pool_by_power = bool(pool_by_power)
        if ar_given and "ar" not in estimators:
            raise ValueError("ar_given fits the ar estimator on the given context only: it needs 'ar' in estimators")
        self.ar_given = bool(ar_given)
        self.box_cox = bool(box_cox)
        if raw_paths and not box_cox:
            raise ValueError("raw_paths leaves smooth paths out of Box-Cox: it needs box_cox")
        self.raw_paths = bool(raw_paths)
        if box_cox_check and not (box_cox and check_origins):
            raise ValueError("box_cox_check compares Box-Cox space on the checks: it needs box_cox and check_origins > 0")
        self.box_cox_check = bool(box_cox_check)
        if box_cox_white and not box_cox:
            raise ValueError("box_cox_white keeps white rows out of Box-Cox: it needs box_cox")
        self.box_cox_white = bool(box_cox_white)
        self.level_shift = bool(level_shift)
        if white_level and white_limit is None:
            raise ValueError("white_level extends white_limit's test to long contexts: it needs white_limit")
        self.white_level = bool(white_level)
        if white_whole_season and not white_level:
            raise ValueError("white_whole_season widens white_level's test: it needs white_level")
        self.white_whole_season = bool(white_whole_season)
        self.dip_level = bool(dip_level)
        if short_checks and not check_origins:
            raise ValueError("short_checks shortens the checks of check_origins: it needs check_origins > 0")
        self.short_checks = bool(short_checks)
        if walk_last and not check_origins:
            raise ValueError("walk_last is one of forecast's checks: it needs check_origins > 0")
        self.walk_last = bool(walk_last)
        if drift_ar and not check_origins:
            raise ValueError("drift_ar is one of forecast's checks: it needs check_origins > 0")
        self.drift_ar = bool(drift_ar)
        if drift_shape and not drift_ar:
            raise ValueError("drift_shape changes drift_ar's test: it needs drift_ar")
        self.drift_shape = bool(drift_shape)
        if coarse_blend and not coarse_len:
            raise ValueError("coarse_blend averages forecasts with and without coarse tokens: it needs coarse_len > 0")
        self.coarse_blend = bool(coarse_blend)
        if propagate_quantiles and len(quantiles) < 2:
            raise ValueError(f"propagate_quantiles widens a quantile head's bounds: it needs two or more quantiles, "
                             f"got {list(quantiles)}")
        self.propagate_quantiles = bool(propagate_quantiles)
        if quantile_steps < 0 or (quantile_steps and len(quantiles) < 2):
            raise ValueError(f"quantile_steps grows a quantile head's band: it needs two or more quantiles and a "
                             f"count >= 0, got {quantile_steps} with {list(quantiles)}")
        self.quantile_steps = int(quantile_steps)
        if quantile_steps:
            self.quantile_growth = nn.Parameter(torch.zeros(quantile_steps, len(quantiles)))
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
                coarse: bool = True, backtest: Tensor | None = None, ar_carry: ArCarry | None = None) -> CausalOutput:
        """Next-patch predictions for every token of ``values`` ``[B, N * P]``.

        ``observed`` (bool, same shape) marks real values (False = padding); ``interval``
        ``[B]`` is in seconds; the normalisation uses the observed values before
        ``context_len`` ``[B]`` (default: all of them), unless ``stats = (loc, scale)`` is given
        (autoregressive steps keep the original context's). ``group`` ``[B]`` (``prior="mix"``):
        rows with one id pool their backtest evidence (:func:`wfm.models.groups.pool_by_group`). ``coarse=False``:
        no coarse tokens (the priors and the normalisation still see every value). ``backtest``
        (``prior="mix"``): the estimators' backtest errors at every patch end, as
        ``CausalOutput.backtest`` returns them, instead of computing them (an autoregressive
        rollout whose appended values are no evidence reuses its first step's). ``ar_carry``: the
        ``ar`` estimator's forecasts at the first step's patch ends and its orders' errors there
        (``CausalOutput.ar_carry``): only the patch ends after them are fitted, the same result for
        a fraction of the work (:func:`wfm.models.series_priors.ar_fit` with ``since``).
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
            return self._forward_mix(values, observed, interval, context_len, (loc, scale), group, coarse, backtest,
                                     ar_carry)
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
                     stats: tuple[Tensor, Tensor], group: Tensor | None = None, coarse: bool = True,
                     backtest: Tensor | None = None, ar_carry: ArCarry | None = None) -> CausalOutput:
        """``forward`` of a ``prior="mix"`` model: tokens for the last ``max_context`` values (plus
        coarse tokens of older ones), every token's forecast = gated classical mix + head."""
        b, length = values.shape
        p, k = self.patch_len, self.horizon_patches
        ahead = k * p
        loc, scale = stats  # from forward: the context's, or the caller's for rollouts
        m = observed.float()
        z = (values - loc) / scale * m  # [B, L]
        interval = interval.to(values.device).expand(b)
        limit = context_len if (self.guard and context_len is not None) else None
        ar_given = context_len if (self.ar_given and context_len is not None) else None
        ends = torch.arange(p - 1, length // p * p, p, device=z.device)
        carry = None
        level = (loc / scale).view(b) if self.ar_level else None
        row_weight = power_weights(scale, group) if self.pool_by_power and group is not None else None
        if backtest is None and self.backtest_origins == "value":  # one pass serves the backtest and the tokens
            ar = None
            if "ar" in self.estimators:
                e_ar, a_ar, known = ar_fit(z, observed, torch.arange(length, device=z.device), ahead, group,
                                          level=level, weight=row_weight, given=ar_given)
                ar, carry = (e_ar, a_ar), ArCarry(e_ar[:, ends], a_ar[:, ends], known)
            every = classical_priors(z, observed, interval, p, ahead, self.estimators, every_value=True, group=group,
                                     ar=ar)
            mse = backtest_mse_values(z, observed, interval, p, ahead, self.estimators, self.backtest_window, limit,
                                      group, priors=every)
            est, avail = every[0][:, ends], every[1][:, ends]
        else:
            ar = None
            if ar_carry is not None and "ar" in self.estimators:
                n0 = ar_carry.est.shape[1]  # the given context's patch ends: their estimates stand
                e_new, a_new, _ = ar_fit(z, observed, ends[n0:], ahead, group, since=n0 * p, known=ar_carry.known,
                                        level=level, weight=row_weight, given=ar_given)
                ar = (torch.cat([ar_carry.est, e_new], dim=1), torch.cat([ar_carry.avail, a_new], dim=1))
            est, avail = classical_priors(z, observed, interval, p, ahead, self.estimators, group=group,
                                          ar=ar, level=level, weight=row_weight, ar_given=ar_given)  # patch ends
            mse = backtest if backtest is not None else backtest_mse(z, observed, est, avail, p, self.backtest_window,
                                                                     limit)
        fine = self.fine_len(length)
        nf = fine // p
        full_mse = mse
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
            mse = pool_by_group(mse, group, row_weight)
            if self.evidence_power_init is not None:
                sharpen = group_sizes(group).to(z.dtype).pow(self.evidence_power)
        sharp = self.backtest_weight if sharpen is None else self.backtest_weight * sharpen.view(b, 1, 1, 1)
        logits = self.prior_gate(h).float().view(b, nf, e, ahead) - sharp * mse.log()
        weight = torch.softmax(logits.masked_fill(~avail[..., None], float("-inf")), dim=2)
        base = (weight * est).sum(dim=2).view(b, nf, k, p)
        out = base[..., None] + self.head(h).float().view(b, nf, k, p, 1 + len(self.quantile_levels))
        fallback = None
        if self.guard:
            out, fallback = self._guard(out, z, observed, est, avail, mse, valid[:, -nf:], limit, group, sharpen,
                                        row_weight)
        quant = out[:, :, 0, :, 1:] if self.quantile_levels else None
        return CausalOutput(point=out[:, :, 0, :, 0], quantiles=quant, ahead=out, loc=loc, scale=scale,
                            fallback=fallback, backtest=full_mse, ar_carry=carry)

    def _guard(self, out: Tensor, z: Tensor, observed: Tensor, est: Tensor, avail: Tensor, mse: Tensor,
               valid: Tensor, limit: Tensor | None, group: Tensor | None = None,
               sharpen: Tensor | None = None, row_weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
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
            mse_c, mse_n = pool_by_group(mse_c, group, row_weight), pool_by_group(mse_n, group, row_weight)
        evidence = mse_c.log() - mse_n.log()
        if sharpen is not None:
            evidence = evidence * sharpen.view(b, 1, 1)
        a = torch.sigmoid(self.guard_scale * evidence + self.guard_bias)
        full = (classical - learned).view(b, nf, k, p, 1)
        return out + full * (1 - a).view(b, nf, k, p, 1), out + full  # final = classical + a (learned - classical)

    def loss(self, values: Tensor, observed: Tensor, interval: Tensor, context_len: Tensor | None = None,
             scaled: bool = False, skill: bool | str = False,
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
        ``skill="group"`` with ``group``: one ratio per group instead, its rows' errors (and the
        classical ones) summed with each row weighed by its share of the group's power
        (:func:`wfm.models.groups.power_weights`), as per-window NMSE weighs a window's channels:
        the few strong beams of a sweep count for what they weigh in the metric, not as one row
        among dozens of noise-floor ones. Without ``group`` it is ``skill=True``.

        ``group`` ``[B]``: rows with one id pool their backtest evidence, as ``forecast(group=)``
        does at inference (the channels of one CSI sample, trained as they are scored).

        Returns ``(loss, output, target [B, N-1, P], weight [B, N-1, P])`` for the next patch,
        where ``weight`` marks target values that count: observed, after the context, and
        predicted by a token that saw data (times the per-series scaling when ``scaled``).
        """
        if skill not in (False, True, "group"):
            raise ValueError(f"skill must be False, True or 'group', got {skill!r}")
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
        if skill == "group" and group is not None:
            # One ratio per group, its rows' errors summed in the window's common units (each
            # row's normalised error times its share of the group's power): per-window NMSE's
            # own ratio to the better classical forecast of the whole window.
            err_s, ref_s, pow_s = pool_skill(err_s, ref_s, pow_s, out.scale.reshape(b), group)
        if skill:
            scored = pow_s > 0
            ratio = err_s / (ref_s.min(dim=1).values + SKILL_FLOOR * pow_s).clamp_min(1e-12)
            loss = loss + (ratio * scored).sum() / scored.sum().clamp_min(1)
        return loss, out, target, weight * series_w

    def grow_band(self, point: Tensor, quant: Tensor, first: int) -> Tensor:
        """``quant`` ``[B, N, P, Q]`` (patches ``first .. first + N - 1`` of a rollout, 0 the first
        after the context) with each quantile's distance from ``point`` ``[B, N, P]`` times its
        ``exp(quantile_growth)`` for that patch (``quantile_steps``; unchanged without)."""
        if not self.quantile_steps:
            return quant
        idx = (torch.arange(quant.shape[1], device=quant.device) + first).clamp(max=self.quantile_steps - 1)
        factor = self.quantile_growth[idx].exp()[None, :, None, :]  # [1, N, 1, Q]
        return point[..., None] + factor * (quant - point[..., None])

    def rollout_quantile_loss(self, values: Tensor, observed: Tensor, interval: Tensor, context_len: Tensor,
                              scaled: bool = True, group: Tensor | None = None, per_row: bool = False) -> Tensor:
        """Pinball loss of the quantiles as ``forecast`` makes them: each patch after the context
        from the context and the network's point forecasts of the patches before it, not the true
        values (what ``loss`` feeds, teacher-forced). Trained teacher-forced, the quantiles fit
        one patch ahead of known values, and a rollout's later patches, conditioned on forecasts
        that are themselves off, fall outside them (measured: a calibration stage on teacher-forced
        pinball took a 16-value band from 74 % to 17 % of its targets).

        ``values``/``observed`` ``[B, W]`` with ``context_len`` ``[B]`` as ``loss`` takes them;
        a context that does not end on a patch boundary is left-padded to one. The point forecasts
        are rolled out without gradient. Scored: observed targets after the context, normalised
        by the context, clipped at ``TARGET_CLIP``, per series times the ``scaled`` weight of
        ``loss``; windows with a constant context are left out, as there. ``per_row``: each row's
        mean ``[B]`` (0 where nothing is scored) instead of the mean over all scored values."""
        if not self.quantile_levels:
            raise ValueError("this model has no quantile head (quantiles=())")
        if self.horizon_patches != 1:  # its rollout appends K patches per pass; this one follows K = 1
            raise ValueError(f"rollout_quantile_loss follows the rollout of a one-patch head, "
                             f"not horizon_patches={self.horizon_patches}")
        p, q = self.patch_len, torch.tensor(self.quantile_levels, device=values.device)
        total, count = values.new_zeros(len(values)), values.new_zeros(len(values))
        for c in context_len.unique().tolist():  # one rollout per context length
            rows = (context_len == c).nonzero().flatten()
            lead = (-int(c)) % p
            v, o = F.pad(values[rows], (lead, 0)), F.pad(observed[rows], (lead, 0))
            tail = (-v.shape[1]) % p
            v, o = F.pad(v, (0, tail)), F.pad(o, (0, tail))
            c2 = int(c) + lead
            if c2 >= v.shape[1]:
                continue
            after = torch.arange(v.shape[1], device=v.device)[None] >= c2
            inputs, given = v.clone(), o | after  # appended forecasts are inputs, as in a rollout
            ctx_len = torch.full((len(rows),), c2, dtype=torch.long, device=v.device)
            itv, grp = interval.to(v.device).expand(len(values))[rows], None if group is None else group[rows]
            first, steps = c2 // p, v.shape[1] // p - c2 // p
            with torch.no_grad():
                for j in range(steps - 1):  # the last patch's forecast is never an input
                    out = self(inputs, given, itv, ctx_len, group=grp)
                    k0 = first - 1 - (v.shape[1] - out.point.shape[1] * p) // p  # tokens cover the last patches
                    pred = out.point[:, k0 + j] * out.scale + out.loc
                    inputs[:, c2 + j * p:c2 + (j + 1) * p] = pred.to(inputs.dtype)
            out = self(inputs, given, itv, ctx_len, group=grp)
            off = v.shape[1] - out.point.shape[1] * p  # values before the first token
            tok = slice(first - 1 - off // p, first - 1 - off // p + steps)
            quant = self.grow_band(out.point[:, tok], out.quantiles[:, tok], 0)
            quant = quant.reshape(len(rows), -1, len(self.quantile_levels))  # [R, steps * P, Q]
            tgt = ((v[:, c2:] - out.loc) / out.scale).clamp(-TARGET_CLIP, TARGET_CLIP)
            floored = out.scale <= self.eps * out.loc.abs().clamp_min(1.0) * (1 + 1e-4)
            w = (o[:, c2:] & ~floored).float()
            if scaled:
                ctx_obs = o & ~after
                pair = (ctx_obs[:, 1:] & ctx_obs[:, :-1]).float()
                z = (v - out.loc) / out.scale
                naive = ((z[:, 1:] - z[:, :-1]) ** 2 * pair).sum(1) / pair.sum(1).clamp_min(1.0)
                w = w * naive.clamp_min(1e-3).rsqrt()[:, None]
            d = tgt[..., None] - quant
            total = total.index_add(0, rows, (torch.maximum(q * d, (q - 1) * d).mean(dim=-1) * w).sum(dim=1))
            count = count.index_add(0, rows, (w > 0).float().sum(dim=1))
        if per_row:
            return total / count.clamp_min(1.0)
        return total.sum() / count.sum().clamp_min(1.0)

    # ------------------------------------------------------------------ inference
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

    def with_estimators(self, estimators: tuple[str, ...] | list[str]) -> "CausalForecaster":
        """A copy of this model that mixes more classical ``estimators`` (a superset), untrained:
        the network sees no change and the mix weighs each new estimator by its backtest alone
        (:meth:`grown_state_dict`); every inference option and the metadata it was saved with kept."""
        arch = {**causal_arch(self), "estimators": tuple(estimators)}
        arch["quantiles"] = tuple(arch["quantiles"])
        out = type(self)(**arch).to(self.head.weight.device)
        out.load_state_dict(self.grown_state_dict(out.estimators))
        if (meta := getattr(self, "_hub_mixin_config", None)) is not None:
            out._hub_mixin_config = meta
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


def pool_skill(err: Tensor, ref: Tensor, power: Tensor, scale: Tensor,
               group: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row sums of the skill loss (``err`` ``[B]``, ``ref`` ``[B, R]``, ``power`` ``[B]``, in
    each row's normalised units) summed over each ``group`` in the group's common units: each row
    times its share of the group's power (``scale^2`` over the group's mean). Returns ``[G]``,
    ``[G, R]``, ``[G]`` in the order of the sorted group ids."""
    wts = power_weights(scale, group)
    return tuple(group_sums(v, group, wts)[0] for v in (err, ref, power))


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
