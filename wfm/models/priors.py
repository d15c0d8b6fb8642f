"""Classical estimates of masked CSI from its visible part: the prior the MAE corrects.

For complex CSI ``[B, T, A, K]`` and a bool ``visible`` mask of the same shape, every masked
element gets two estimates built from visible elements only:

- ``hold``: the nearest visible value along the first axis that has one, in the order time,
  subcarrier, antenna. For a temporal mask this is persistence (the last context step of the
  same antenna and subcarrier); for a frequency mask (every time step of the upper subcarriers
  hidden) it is the nearest visible subcarrier of the same time and antenna; for an antenna mask,
  the nearest visible antenna.
- ``mean``: the mean of the visible values along that same axis (the context mean for a
  temporal mask).

Both are exact classical baselines, so a model that predicts ``prior + correction`` with a zero
correction scores exactly what the baseline scores. Visible elements keep their own value.

With ``reversion_dim`` there is a third, ``reversion``: the AR(1) forecast around the mean along
that axis, ``mean + phi^h (hold - mean)``, where ``h`` is the distance to the nearest visible
element and ``phi`` (clipped to [0, 1]) is the lag-1 autocorrelation of the visible values'
deviations from their mean, pooled over the whole sample (every antenna and subcarrier of one
window share one ``phi``: hundreds of channels estimate it, where one channel of 8 packets could
not). It is a per-element convex mix of ``hold`` and ``mean``, so a model trained on their mix
reads it as it reads its own prior: white noise around a still channel gives ``phi ~ 0`` and the
mean; a slowly fading or frequency-smooth channel ``phi ~ 1`` and the nearest value.

With ``reversion_dim`` there is also ``ar``: linear prediction along that axis
(:func:`wfm.models.linear_prediction.ar_forecast`), one recursion fitted on the visible block
and pooled over every antenna and subcarrier (time) or time step and antenna (frequency) of the
sample, run forward over the hidden part. It extrapolates what the others only hold: the Doppler
rotation of a moving user, the delay structure across a band. It needs the visible elements to be
one contiguous block along the axis, the same in every channel that has any (the temporal and
frequency masks of ``predict``); elsewhere it is ``hold``.

And ``rank1``: ``hold`` read from the window's rank-1 approximation instead of the window itself.
Each antenna's visible ``[T, K]`` block is approximated as a per-packet gain times one profile,
``g(t) S(k)`` (its leading singular pair, fitted by alternating least squares over the visible
elements), and the nearest visible element of that approximation along the masked axis is the
estimate. Along subcarriers this is the nearest visible subcarrier of the profile that every
packet of the window shares, scaled by each packet's own complex gain:
commodity receivers set a gain (AGC) and a phase per packet, while the noise of one subcarrier
at one packet averages out over the window (on the real Nexmon capture's amplitude in
frequency, 0.65x the nearest subcarrier's NMSE).

And ``line``: the least-squares line through each channel's last ``LINE_SPAN`` visible values along
the axis, continued over the hidden part: a receiver's tilt across the band, which no other
estimate follows. It needs the visible block that ``ar`` needs; elsewhere it is ``hold``. No
backtest on one window's visible band shows the tilt the whole band has (the Intel 5300's
amplitudes), so the guard takes it only where a rule fixes it (``wfm calibrate``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from wfm.models.linear_prediction import ar_forecast

#: Axes searched in order: time, subcarrier, antenna (dims of ``[B, T, A, K]``).
FILL_AXES = (1, 3, 2)
ESTIMATORS = ("hold", "mean")


def _neighbours(vis: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each element's index along ``dim``, and the index of the last visible element at or
    before it (-1 if none) and of the next at or after it (``n`` if none)."""
    n = vis.shape[dim]
    shape = [1] * vis.ndim
    shape[dim] = n
    idx = torch.arange(n, device=vis.device).view(shape).expand_as(vis)
    last = torch.where(vis, idx, -1).cummax(dim).values
    nxt = torch.where(vis, idx, n).flip(dim).cummin(dim).values.flip(dim)
    return idx, last, nxt


def _hold_along(x: Tensor, vis: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Nearest visible value of ``x`` along ``dim`` (ties go to the earlier one) and where one exists."""
    n = x.shape[dim]
    idx, last, nxt = _neighbours(vis, dim)
    use_last = (last >= 0) & ((nxt >= n) | (idx - last <= nxt - idx))
    src = torch.where(use_last, last, nxt).clamp(0, n - 1)
    return torch.gather(x, dim, src), (last >= 0) | (nxt < n)


def _mean_along(x: Tensor, vis: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    count = vis.sum(dim, keepdim=True)
    total = torch.where(vis, x, torch.zeros_like(x)).sum(dim, keepdim=True)
    mean = total / count.clamp_min(1).to(x.real.dtype if x.is_complex() else x.dtype)
    return mean.expand_as(x), (count > 0).expand_as(vis)


def reversion_weight(csi: Tensor, visible: Tensor, dim: int) -> Tensor:
    """Weight ``phi^h`` ``[B, T, A, K]`` of ``hold`` in the AR(1) estimate along ``dim`` (see module docstring).

    ``phi`` is one per sample; ``h`` is each element's distance to the nearest visible element
    along ``dim`` (0 where visible). Elements with no visible neighbour along ``dim`` get 0.
    """
    n = csi.shape[dim]
    vis = visible.expand(csi.shape)
    mean, _ = _mean_along(csi, vis, dim)
    dev = torch.where(vis, csi - mean, torch.zeros_like(csi))
    pair = vis.narrow(dim, 1, n - 1) & vis.narrow(dim, 0, n - 1)
    lag = (dev.narrow(dim, 1, n - 1) * dev.narrow(dim, 0, n - 1).conj()).real * pair
    rest = tuple(range(1, csi.ndim))
    phi = (lag.sum(rest) / (dev.abs() ** 2).sum(rest).clamp_min(1e-30)).clamp(0.0, 1.0)  # [B]
    idx, last, nxt = _neighbours(vis, dim)
    h = torch.minimum(torch.where(last >= 0, idx - last, n + 1), torch.where(nxt < n, nxt - idx, n + 1))
    w = phi.view(-1, *[1] * (csi.ndim - 1)) ** h.to(phi.dtype)
    return torch.where(h <= n, w, torch.zeros_like(w))


def _continue_block(x: Tensor, vis: Tensor, dim: int, hold: Tensor,
                    extend: Callable[[Tensor, int], Tensor], min_len: int = 1) -> Tensor:
    """``hold`` with the elements after the visible block along ``dim`` replaced by ``extend(block,
    count)`` (``block`` ``[B, C, m]``: each channel's visible values in order; ``[B, C, count]`` back).
    ``hold`` itself where the visible part is not one contiguous block of at least ``min_len``
    values, the same in every channel that has any, with something after it."""
    xs, vs = x.movedim(dim, -1), vis.movedim(dim, -1)  # [B, ..., n]
    b, n = xs.shape[0], xs.shape[-1]
    xs, vs = xs.reshape(b, -1, n), vs.reshape(b, -1, n)
    data = vs.any(-1)[0]  # [C]: channels with visible elements (others are padding)
    if not bool(data.any()) or not bool((vs.any(-1) == data).all()):
        return hold
    line = vs[0, data][0]  # one channel's visible pattern: every other must be the same
    if not bool((vs[:, data] == line).all()):
        return hold
    idx = line.nonzero().flatten()
    start, stop = int(idx[0]), int(idx[-1]) + 1
    if stop - start != len(idx) or stop == n or stop - start < min_len:
        return hold
    pred = extend(xs[:, data, start:stop], n - stop)  # [B, Cd, n - stop]
    out = hold.movedim(dim, -1).reshape(b, -1, n).clone()
    sub = out[:, data]
    sub[..., stop:] = pred.to(out.dtype)
    out[:, data] = sub
    return out.reshape(hold.movedim(dim, -1).shape).movedim(-1, dim)


def _ar_along(x: Tensor, vis: Tensor, dim: int, hold: Tensor) -> Tensor:
    """Linear prediction of the elements after the visible block along ``dim`` (module doc);
    ``hold`` where the visible part is not one such block or nothing follows it."""
    return _continue_block(x, vis, dim, hold, ar_forecast)


#: ``line``: the least-squares line runs through at most this many of the last visible values.
LINE_SPAN = 8


def _line_forecast(block: Tensor, count: int) -> Tensor:
    """``[B, C, count]``: the least-squares line through the last ``LINE_SPAN`` values of each row
    of ``block`` ``[B, C, m]`` (``m >= 2``), continued ``count`` steps."""
    span = min(LINE_SPAN, block.shape[-1])
    pos = torch.arange(span, device=block.device, dtype=block.real.dtype)
    pos = pos - pos.mean()
    y = block[..., -span:]
    level = y.mean(-1, keepdim=True)
    slope = (pos * (y - level)).sum(-1, keepdim=True) / (pos * pos).sum()
    ahead = torch.arange(1, count + 1, device=block.device, dtype=block.real.dtype) + pos[-1]
    return level + slope * ahead


def _line_along(x: Tensor, vis: Tensor, dim: int, hold: Tensor) -> Tensor:
    """The least-squares line through each channel's last ``LINE_SPAN`` visible values along
    ``dim``, continued over the elements after the visible block (module doc); ``hold`` where the
    visible part is not one such block of at least two values or nothing follows it."""
    return _continue_block(x, vis, dim, hold, _line_forecast, min_len=2)


#: Alternating least-squares passes of ``rank1``'s gain and profile: each is a power-iteration step,
#: which gains (second / first singular value)^2 on the leading pair.
RANK1_PASSES = 4


def _rank1_along(x: Tensor, vis: Tensor, dim: int, hold: Tensor) -> Tensor:
    """``hold`` along ``dim`` of the visible values' rank-1 approximation ``g(t) S(k)`` per sample
    and antenna (module doc); ``hold`` where the approximation has no visible neighbour.

    The pair is fitted by alternating least squares over the visible elements, from the profile of
    each antenna's strongest packet (a mean over packets would cancel where their phases differ)."""
    xv = torch.where(vis, x, torch.zeros_like(x))
    w = vis.to(x.real.dtype)

    def fit(basis: Tensor, over: int) -> Tensor:  # least-squares coefficients of xv on basis, summed over `over`
        return (basis.conj() * xv).sum(over, keepdim=True) / (w * basis.abs() ** 2).sum(over, keepdim=True).clamp_min(1e-30)

    first = (xv.abs() ** 2).sum(3, keepdim=True).argmax(1, keepdim=True)  # [B, 1, A, 1]
    profile = torch.gather(xv, 1, first.expand(-1, -1, -1, x.shape[3]))  # S [B, 1, A, K]
    for _ in range(RANK1_PASSES):
        profile = fit(fit(profile, 3), 1)  # g [B, T, A, 1] on S, then S on g
    val, found = _hold_along(fit(profile, 3) * profile, vis, dim)
    return torch.where(found, val, hold)


def masked_priors(csi: Tensor, visible: Tensor, reversion_dim: int | None = None) -> dict[str, Tensor]:
    """``{"hold": ..., "mean": ...}``: complex ``[B, T, A, K]`` estimates (see module docstring),
    and ``"reversion"``, ``"ar"``, ``"rank1"`` and ``"line"`` along ``reversion_dim`` when given.

    ``visible`` is bool ``[B, T, A, K]`` (or broadcastable to it). A sample with no visible
    element at all gets zeros. Visible positions hold ``csi`` itself.
    """
    if csi.ndim != 4 or not csi.is_complex():
        raise ValueError(f"masked_priors expects complex CSI [B, T, A, K]; got {csi.dtype} {tuple(csi.shape)}")
    vis = visible.expand(csi.shape)
    out = {}
    for name, along in (("hold", _hold_along), ("mean", _mean_along)):
        est = torch.zeros_like(csi)
        done = torch.zeros_like(vis)
        for dim in FILL_AXES:
            val, found = along(csi, vis, dim)
            est = torch.where(found & ~done, val, est)
            done = done | found
        out[name] = torch.where(vis, csi, est)
    if reversion_dim is not None:
        w = reversion_weight(csi, vis, reversion_dim)
        out["reversion"] = torch.where(vis, csi, w * out["hold"] + (1 - w) * out["mean"])
        out["ar"] = torch.where(vis, csi, _ar_along(csi, vis, reversion_dim, out["hold"]))
        out["rank1"] = torch.where(vis, csi, _rank1_along(csi, vis, reversion_dim, out["hold"]))
        out["line"] = torch.where(vis, csi, _line_along(csi, vis, reversion_dim, out["hold"]))
    return out
