"""Box-Cox transforms whose exponent a context chooses (Guerrero's method), for forecasting.

Cell traffic, like most volumes and counts, varies in proportion to its level: at night it
moves by a few units, at the busy hour by tens. A forecaster that works in the series' own
units (normalised by the whole context's mean and std) treats the night's changes as noise and
misses them by a large share of their level, which is what a per-window NMSE punishes.
Forecasting ``(x ** lam - 1) / lam`` (``log x`` at ``lam = 0``) and transforming back makes the
variation even again. Angles and other additive series want ``lam = 1`` (no transform).

``lam`` comes from the context itself by Guerrero's method (Guerrero 1993, as in R's
``forecast::BoxCox.lambda``): cut the series into chunks of two values, and pick the ``lam`` for
which ``std / mean ** (1 - lam)`` of the chunks varies least (its coefficient of variation). A
series whose changes grow with its level gets ``lam`` near 0, one whose changes do not near 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wfm.models.groups import pool_rows

#: The exponents searched, from the log (0) to no transform (1).
LAMBDAS = tuple(i / 10 for i in range(11))
#: The fewest chunks (pooled over a group) that may choose an exponent; fewer keep ``lam = 1``.
MIN_CHUNKS = 8
#: Chunk length: two values, Guerrero's choice for series without a season to cut along.
CHUNK = 2


def _pool(x: Tensor, group: Tensor | None) -> Tensor:
    return x if group is None else pool_rows(x, group)


def guerrero_lambda(context: Tensor, group: Tensor | None = None, lambdas: tuple[float, ...] = LAMBDAS,
                    min_chunks: int = MIN_CHUNKS, observed: Tensor | None = None) -> Tensor:
    """``[B]`` float64: the Box-Cox exponent of each row of ``context`` ``[B, L]`` by Guerrero's method.

    The chunks (``CHUNK`` values each, the oldest value dropped where ``L`` is odd) of a ``group``'s
    rows are pooled, so a window's channels share one exponent. Zeros are allowed (an idle cell at
    night): chunks of zeros say nothing about how change grows with level and are left out, and a
    row or group with any zero chooses from the exponents above 0 (``0 ** lam`` is finite only
    there). A row, or a group, with a negative value or nothing but zeros, or with fewer than
    ``min_chunks`` chunks of positive level, gets 1.

    ``observed`` ``[B, L]`` (bool): only these values count (a training window's padding and its
    targets are not the context); a chunk with a value outside it is left out."""
    b, length = context.shape
    x = context.double()
    obs = torch.ones_like(x, dtype=torch.bool) if observed is None else observed.to(torch.bool)
    n = length // CHUNK
    bad = (((x < 0) & obs).any(dim=1) | ~((x > 0) & obs).any(dim=1)).double()
    zero = ((x == 0) & obs).any(dim=1).double()
    parts = x[:, length - n * CHUNK:].reshape(b, n, CHUNK)
    whole = obs[:, length - n * CHUNK:].reshape(b, n, CHUNK).all(dim=-1)
    level = parts.mean(dim=-1)  # [B, n]
    used = ((level > 0) & whole).double()
    chunks = used.sum(dim=1)
    ok = (_pool(bad, group) == 0) & (_pool(chunks, group) >= min_chunks)
    if n == 0 or not bool(ok.any()):
        return torch.ones(b, dtype=torch.float64, device=x.device)
    lam = torch.tensor(lambdas, dtype=torch.float64, device=x.device)
    spread, log_level = parts.std(dim=-1) * used, level.clamp_min(1e-300).log()
    s1, s2 = x.new_zeros(b, len(lambdas)), x.new_zeros(b, len(lambdas))
    for i, l in enumerate(lambdas):  # one [B, n] at a time: long contexts in large batches stay small
        ratio = spread * torch.exp(-(1.0 - l) * log_level)
        s1[:, i], s2[:, i] = ratio.sum(dim=1), (ratio * ratio).sum(dim=1)
    s1, s2 = _pool(s1, group), _pool(s2, group)
    count = _pool(chunks, group).clamp_min(1.0)[:, None]
    mean = s1 / count
    cv = (s2 / count - mean * mean).clamp_min(0.0).sqrt() / mean.clamp_min(1e-300)
    cv = cv.masked_fill((_pool(zero, group) > 0)[:, None] & (lam == 0)[None], float("inf"))
    best = lam[cv.argmin(dim=1)]
    return torch.where(ok, best, torch.ones_like(best))


def box_cox(x: Tensor, lam: Tensor) -> Tensor:
    """``x`` ``[B, L]`` transformed row by row with ``lam`` ``[B]``; rows with ``lam >= 1`` are returned
    unchanged (not shifted by 1). A row whose ``lam`` is below 1 must be non-negative, and
    positive where ``lam`` is 0 (as :func:`guerrero_lambda` chooses)."""
    lam = lam.to(torch.float64)[:, None]
    xd = x.double()
    safe = torch.where(lam < 1, xd, 1.0).clamp_min(1e-300)
    y = torch.where(lam == 0, safe.log(), (safe ** lam - 1.0) / torch.where(lam == 0, 1.0, lam))
    return torch.where(lam < 1, y, xd).to(x.dtype)


def inv_box_cox(y: Tensor, lam: Tensor) -> Tensor:
    """The inverse of :func:`box_cox` for ``y`` ``[B, ...]``; a forecast below the transform's floor
    (``-1 / lam``) comes back as 0, and one too large for ``y``'s dtype as its largest value."""
    lam = lam.to(torch.float64).reshape(-1, *([1] * (y.dim() - 1)))
    yd = y.double()
    nz = torch.where(lam == 0, 1.0, lam)
    x = torch.where(lam == 0, yd.clamp(max=700.0).exp(), (lam * yd + 1.0).clamp_min(0.0) ** (1.0 / nz))
    x = x.clamp(max=torch.finfo(y.dtype).max) if y.dtype.is_floating_point else x
    return torch.where(lam < 1, x, yd).to(y.dtype)


def box_cox_windows(values: Tensor, observed: Tensor, context_len: Tensor,
                    group: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Training windows ``values`` ``[B, W]`` in the Box-Cox space ``forecast(box_cox=True)`` would
    forecast them in: ``(transformed values, lam [B])``.

    ``lam`` is Guerrero's on each row's (or ``group``'s) observed context, the values before
    ``context_len`` ``[B]`` (:func:`guerrero_lambda`), as at inference; a row with a negative
    observed value anywhere in its window (its target included) keeps ``lam = 1``, since the
    transform is defined for non-negative values only. Unobserved positions (padding) stay as
    they were; rows at ``lam = 1`` are returned unchanged, to the bit."""
    pos = torch.arange(values.shape[1], device=values.device)
    context = observed & (pos[None] < context_len.view(-1, 1))
    lam = guerrero_lambda(values, group, observed=context)
    negative = ((values < 0) & observed).any(dim=1)
    lam = torch.where(negative, torch.ones_like(lam), lam)
    safe = torch.where(observed, values, torch.ones_like(values))  # padding: any finite value
    return torch.where(observed, box_cox(safe, lam), values), lam
