"""Linear prediction (an autoregressive model fitted to the context): the classical channel predictor.

A wireless channel over a short window is a sum of a few complex exponentials, one per path:
``h(t) = sum_l a_l exp(j 2 pi f_l t)`` in time (Doppler shifts ``f_l``) and, along subcarriers,
``H(f) = sum_l a_l exp(-j 2 pi f tau_l)`` (path delays ``tau_l``). Such a sum obeys a linear
recursion ``x[t] = sum_i c_i x[t - i]`` of order (at least) the number of paths, so fitting the
``c_i`` on the visible part and running the recursion forward extrapolates it. This is the AR
channel predictor of Duel-Hallen et al. (IEEE Signal Processing Magazine, 2000) and the heart of
Prony-type methods; channel-prediction papers use it as their classical reference.

Here the coefficients are fitted by least squares, forward and backward (the backward recursion
of a stationary process has the conjugate coefficients, which doubles the equations), with a
small ridge, and **pooled over the channels of one window**: every antenna and subcarrier of a
CSI window sees the same Doppler shifts (every time step and antenna the same delays), so a
window of hundreds of channels fits one recursion where one channel of 8 packets could not.
The recursion's poles are reflected into the unit circle before it runs, so a forecast never
grows without bound. The order is picked per window by a backtest on the context itself (fit on
its start, predict its end) among :data:`ORDERS`.

Real series (the real and imaginary parts of complex CSI as two rows) work too: a real
recursion of order 2 holds one complex exponential.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Orders the backtest chooses from (those the context is long enough for).
ORDERS = (1, 2, 3, 4, 6, 8)
#: Ridge on the normal equations, relative to their mean diagonal.
RIDGE = 1e-6
#: Fewest equations per channel and direction a backtested order needs (the pooled count must
#: also be twice the unknowns): 1 lets a window of 4 packets try order 2 (on the demo's UMa in
#: time the MAE's guard goes from -1.4 to -3.9 dB with it; the real captures are unchanged).
MIN_ROWS = 1


def fit_coefficients(x: Tensor, order: int, ridge: float = RIDGE) -> Tensor:
    """Pooled least-squares recursion ``[G, order]`` of ``x`` ``[G, C, L]`` (real or complex).

    ``c`` minimises ``sum_{c, t} |x[c, t] - sum_i c_i x[c, t - i]|^2`` over all ``C`` channels of
    each group, forward and on the conjugated time reversal (backward), plus ``ridge`` times the
    mean diagonal of the normal equations. Needs ``L > order``.
    """
    g, _, n = x.shape
    if not 0 < order < n:
        raise ValueError(f"a recursion of order {order} needs more than {order} values; have {n}")
    both = torch.cat([x, x.flip(-1).conj()], dim=1)  # forward and backward equations
    lags = torch.stack([both[..., order - i:n - i] for i in range(1, order + 1)], dim=-1)  # [G, 2C, n-p, p]
    a = lags.reshape(g, -1, order)
    y = both[..., order:].reshape(g, -1, 1)
    gram = a.mH @ a
    diag = gram.diagonal(dim1=-2, dim2=-1).real.mean(-1)
    # A group of all-zero channels (a dead chain, a zero-filled gap) has no equations: its ridge is
    # taken as 1 so that it solves to the zero recursion (a vanishing ridge gave NaN).
    diag = torch.where(diag > torch.finfo(diag.dtype).tiny, diag, torch.ones_like(diag))
    gram = gram + (ridge * diag)[:, None, None] * torch.eye(order, dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram, a.mH @ y)[..., 0]


def stabilise(coef: Tensor) -> Tensor:
    """The recursion ``[G, p]`` with every pole outside the unit circle reflected to ``1 / conj(z)``.

    The poles are the roots of ``z^p - c_1 z^(p-1) - ... - c_p``; a reflected pole keeps its
    frequency and the recursion's spectrum shape but decays instead of growing. Real
    coefficients stay real (their poles come in conjugate pairs).
    """
    g, p = coef.shape
    # oneMKL's eigenvalue routine crashes the process on a NaN (it does not raise), so a recursion
    # that is not finite is taken as zero, whatever produced it.
    coef = torch.where(torch.isfinite(coef), coef, torch.zeros_like(coef))
    comp = torch.zeros(g, p, p, dtype=torch.complex128, device=coef.device)
    comp[:, 0] = coef.to(torch.complex128)
    if p > 1:
        comp[:, 1:, :-1] = torch.eye(p - 1, dtype=torch.complex128, device=coef.device)
    poles = torch.linalg.eigvals(comp)  # [G, p]
    r = poles.abs()
    poles = torch.where(r > 1, poles / (r * r).clamp_min(1e-300), poles)
    poly = torch.ones(g, 1, dtype=torch.complex128, device=coef.device)  # monic, highest power first
    for k in range(p):
        poly = torch.cat([poly, torch.zeros_like(poly[:, :1])], 1) - torch.cat(
            [torch.zeros_like(poly[:, :1]), poly * poles[:, k:k + 1]], 1)
    out = -poly[:, 1:]
    return out.to(coef.dtype) if coef.is_complex() else out.real.to(coef.dtype)


def extrapolate(x: Tensor, coef: Tensor, horizon: int) -> Tensor:
    """Run the recursion ``coef`` ``[G, p]`` forward from ``x`` ``[G, C, L]``: ``[G, C, horizon]``."""
    p = coef.shape[1]
    hist = x[..., -p:].flip(-1)  # most recent first
    out = []
    for _ in range(horizon):
        nxt = (hist * coef[:, None, :]).sum(-1, keepdim=True)
        out.append(nxt)
        hist = torch.cat([nxt, hist[..., :-1]], dim=-1)
    return torch.cat(out, dim=-1)


def choose_order(x: Tensor, horizon: int, orders: tuple[int, ...] = ORDERS) -> Tensor:
    """Per group, the order ``[G]`` whose recursion fitted on the start of ``x`` ``[G, C, L]``
    best predicts its last ``min(horizon, L // 3)`` values (pooled squared error); 1 if the
    context is too short for a backtest."""
    g, c, n = x.shape
    h = max(1, min(horizon, n // 3))
    head, tail = x[..., :n - h], x[..., n - h:]
    best = torch.ones(g, dtype=torch.long, device=x.device)
    best_err = torch.full((g,), float("inf"), dtype=torch.float64, device=x.device)
    for p in orders:
        rows = head.shape[-1] - p  # equations per channel and direction
        if rows < MIN_ROWS or 2 * c * rows < 4 * p:  # too few equations for p unknowns
            continue
        pred = extrapolate(head, stabilise(fit_coefficients(head, p)), h)
        err = (pred - tail).abs().square().sum(dim=(1, 2)).to(torch.float64)
        take = err < best_err
        best = torch.where(take, torch.full_like(best, p), best)
        best_err = torch.where(take, err, best_err)
    return best


def ar_forecast(x: Tensor, horizon: int, order: int | None = None) -> Tensor:
    """Linear-prediction forecast ``[G, C, horizon]`` of the channels ``x`` ``[G, C, L]`` (module doc).

    ``order`` fixes the recursion's order; ``None`` picks it per group by :func:`choose_order`.
    A context of one value is carried forward. Computed in double precision.
    """
    if x.ndim != 3:
        raise ValueError(f"ar_forecast expects [groups, channels, length]; got shape {tuple(x.shape)}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    dtype = x.dtype
    x = x.to(torch.complex128 if x.is_complex() else torch.float64)
    n = x.shape[-1]
    if n < 2:
        return x[..., -1:].expand(*x.shape[:2], horizon).to(dtype).clone()
    if order is not None:
        return extrapolate(x, stabilise(fit_coefficients(x, min(order, n - 1))), horizon).to(dtype)
    chosen = choose_order(x, horizon)
    out = torch.empty(*x.shape[:2], horizon, dtype=x.dtype, device=x.device)
    for p in chosen.unique().tolist():
        rows = chosen == p
        p = min(p, n - 1)
        out[rows] = extrapolate(x[rows], stabilise(fit_coefficients(x[rows], p)), horizon)
    return out.to(dtype)


def ar_forecast_rows(x: Tensor, horizon: int, group: Tensor | None = None, order: int | None = None) -> Tensor:
    """:func:`ar_forecast` of the rows of ``x`` ``[B, L]``: ``[B, horizon]`` in double precision,
    each row its own recursion, or (``group`` ``[B]``) one recursion pooled over each group's rows.
    Groups of equal size in consecutive rows (a batch of windows' channels) fit in one call."""
    x = x.double()
    b, n = x.shape
    if group is None:
        return ar_forecast(x[:, None], horizon, order)[:, 0]
    size = int((group == group[0]).sum()) if b else 1
    if b % size == 0:
        blocks = group.view(-1, size)
        if bool((blocks == blocks[:, :1]).all()) and len(blocks[:, 0].unique()) == len(blocks):
            return ar_forecast(x.view(-1, size, n), horizon, order).reshape(b, horizon)
    out = torch.empty(b, horizon, dtype=torch.float64, device=x.device)
    _, inverse, counts = torch.unique(group, return_inverse=True, return_counts=True)
    for rows in torch.argsort(inverse, stable=True).split(counts.tolist()):
        out[rows] = ar_forecast(x[rows][None], horizon, order)[0]
    return out
