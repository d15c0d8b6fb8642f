"""Is a test set big enough to tell two models apart?

Two models scored on the same test windows differ by the mean of their per-window differences
(top-1 hit, or per-window NMSE). Windows of one trajectory or one series are not independent,
so the uncertainty of that mean comes from a paired *cluster* bootstrap: whole groups
(trajectories, series, samples) are resampled with replacement, ``n_boot`` times, and the
2.5 / 97.5 percentiles of the resampled mean difference give a 95 % interval. When it holds 0,
the test set cannot separate the two models, and ``separation_warnings`` says so with the
numbers, and roughly how many times more test groups would separate a difference of that size
(the interval shrinks as one over the square root of the number of groups).

With fewer than ``MIN_GROUPS`` groups a cluster bootstrap means little; windows are resampled
instead and the warning says so.

:func:`beats_beyond_noise` is the one-sided version for a decision (keep a fine-tuned step only if
it beat the kept weights on held-out windows): a paired t-test at two sigma over
:func:`independent_blocks` of windows, those whose targets share no step. :class:`KeptWeights`
applies it to the checked steps of a fine-tuning run (``wfm.tasks.transfer``, ``wfm finetune``).

:func:`ratio_interval` is the interval of a ratio of two mean errors (``wfm benchmark real``'s
model over the best classical baseline), by the same block bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from wfm.models.evidence import exceeds_noise

MIN_GROUPS = 5


@dataclass
class Scored:
    """One model's per-window values on a test set (same windows, same order, for every model)."""

    label: str
    values: Tensor  # [N] per-window metric (top-1 hit 0/1, per-window NMSE)
    mean: float


def _block_ratio_bootstrap(num: Tensor, den: Tensor, inverse: Tensor, n_boot: int, seed: int) -> tuple[float, float]:
    """2.5 % and 97.5 % of ``sum(num) / sum(den)`` over resamples of whole blocks (``inverse``:
    each window's block index ``0..k-1``): the resampling both intervals here share."""
    k = int(inverse.max()) + 1
    sn = torch.zeros(k, dtype=torch.float64).index_add_(0, inverse, num)
    sd = torch.zeros(k, dtype=torch.float64).index_add_(0, inverse, den)
    pick = torch.randint(0, k, (n_boot, k), generator=torch.Generator().manual_seed(seed))
    boot = sn[pick].sum(1) / sd[pick].sum(1).clamp_min(1e-300)
    lo, hi = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return lo, hi


def paired_bootstrap(a: Tensor, b: Tensor, groups: Tensor | None = None, n_boot: int = 1000,
                     seed: int = 0) -> tuple[float, float, float, int, str]:
    """``(mean difference a - b, 2.5 %, 97.5 % of it, units resampled, unit)`` (module doc),
    over the windows both scored (a NaN, an all-zero target's NMSE, is left out)."""
    d = (a.double() - b.double()).flatten()
    keep = ~torch.isnan(d)
    if not bool(keep.all()):
        d, groups = d[keep], None if groups is None else groups.flatten()[keep]
    if not len(d):
        return math.nan, math.nan, math.nan, 0, "windows"
    if groups is not None and len(torch.unique(groups)) >= MIN_GROUPS:
        inverse, unit = torch.unique(groups, return_inverse=True)[1].flatten(), "groups"
    else:
        inverse, unit = torch.arange(len(d)), "windows"
    lo, hi = _block_ratio_bootstrap(d, torch.ones_like(d), inverse, n_boot, seed)
    return float(d.mean()), lo, hi, int(inverse.max()) + 1, unit


def ratio_interval(a: Tensor, b: Tensor, blocks: Tensor | None = None, n_boot: int = 2000,
                   seed: int = 0) -> tuple[float, float, int] | None:
    """95 % paired bootstrap interval ``(low, high, blocks resampled)`` of ``mean(a) / mean(b)``,
    two models' per-window errors ``[N]`` on the same windows (a model over the best classical
    baseline: the real benchmark's ratio). Whole ``blocks`` (:func:`independent_blocks`; every
    window its own without them) are resampled, so windows whose targets share steps count once.
    None with fewer than ``MIN_GROUPS`` blocks: a handful of blocks cannot give an interval."""
    a, b = a.double().flatten(), b.double().flatten()
    if a.shape != b.shape:
        raise ValueError(f"per-window errors of different shapes: {tuple(a.shape)} and {tuple(b.shape)}")
    inverse = torch.arange(len(a)) if blocks is None else torch.unique(blocks, return_inverse=True)[1].flatten()
    k = int(inverse.max()) + 1 if len(a) else 0
    if k < MIN_GROUPS:
        return None
    return (*_block_ratio_bootstrap(a, b, inverse, n_boot, seed), k)


def geometric_mean_interval(ratios: Sequence[float], n_boot: int = 2000,
                            seed: int = 0) -> tuple[float, float, float] | None:
    """``(geometric mean, 2.5 %, 97.5 %)`` of positive ``ratios``, one per independent dataset
    (the cells of one traffic file), by resampling the datasets; None with fewer than
    ``MIN_GROUPS``."""
    r = torch.tensor([float(x) for x in ratios], dtype=torch.float64)
    if len(r) < MIN_GROUPS:
        return None
    if not bool((r > 0).all()):
        raise ValueError("ratios must be positive")
    logs = r.log()
    pick = torch.randint(0, len(r), (n_boot, len(r)), generator=torch.Generator().manual_seed(seed))
    lo, hi = torch.quantile(logs[pick].mean(1).exp(), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return float(logs.mean().exp()), lo, hi


def independent_blocks(span: Tensor, context: int, horizon: int) -> Tensor:
    """Block id ``[N]`` of windows whose targets overlap, directly or through a chain of others.

    ``span`` ``[N, 2]`` holds each window's series and first step (``BenchData.span``); the target
    of a window starting at ``s`` is steps ``[s + context, s + context + horizon)``. Windows of a
    stride shorter than the horizon share target steps, so their errors are not independent
    evidence: the 8 held-out windows of a Milan cell (stride 1, 12 steps ahead) are one block.
    """
    series, start = span[:, 0].long(), span[:, 1].long()
    order = torch.argsort(series * (int(start.max()) + horizon + context + 1) + start) if len(span) else start
    block = torch.empty(len(span), dtype=torch.long)
    current, prev_series, prev_end = -1, None, None
    for i in order.tolist():
        lo = int(start[i]) + context
        if prev_series != int(series[i]) or lo >= prev_end:
            current += 1
            prev_end = lo + horizon
        prev_end = max(prev_end, lo + horizon)
        prev_series = int(series[i])
        block[i] = current
    return block


def window_runs(span: Tensor, context: int, horizon: int) -> Tensor:
    """Block id ``[N]``: :func:`independent_blocks`, with a chain of overlapping windows cut into runs
    whose first steps lie within one window's length (``context + horizon``) of the run's first.

    A capture scored at every alignment (a window starting at every packet) is one chain, so
    :func:`independent_blocks` leaves no interval. Runs a window long are the non-overlapping block
    bootstrap's blocks (Carlstein 1986) on the windows' sequence: a run shares no packet with any
    but its neighbours, whose shared packets make the interval somewhat narrow. Windows whose
    targets share no step stay their own blocks, as before."""
    chains = independent_blocks(span, context, horizon)
    if not len(span):
        return chains
    start = span[:, 1].long()
    first = torch.full((int(chains.max()) + 1,), int(start.max()) + 1, dtype=torch.long).scatter_reduce(
        0, chains, start, reduce="amin")
    run = (start - first[chains]) // max(1, context + horizon)
    return torch.unique(torch.stack([chains, run], dim=1), dim=0, return_inverse=True)[1]


def beats_beyond_noise(kept: Tensor, candidate: Tensor, blocks: Tensor | None = None) -> bool:
    """Whether ``candidate``'s per-window errors ``[N]`` are lower than ``kept``'s beyond noise.

    The paired differences are averaged within each block (``independent_blocks``; every window
    its own without one), and the mean over blocks must exceed ``check_threshold`` (the Student-t
    quantile at two sigma, one-sided) standard errors (``wfm.models.evidence.exceeds_noise``): the rule
    ``CausalForecaster(check_origins=)`` applies to its own checks. Fewer than two blocks cannot
    show anything: False.
    """
    d = (kept.double() - candidate.double()).flatten()
    if blocks is not None:
        _, inverse = torch.unique(blocks, return_inverse=True)
        k = int(inverse.max()) + 1 if len(d) else 0
        d = (torch.zeros(k, dtype=torch.float64).index_add_(0, inverse, d)
             / torch.zeros(k, dtype=torch.float64).index_add_(0, inverse, torch.ones_like(d)))
    return bool(exceeds_noise(d.sum(), (d * d).sum(), torch.tensor(float(len(d)), dtype=torch.float64)))


#: Rules for replacing the weights a fine-tuning run keeps by a later step (:class:`KeptWeights`).
SELECT = ("significant", "best", "last")


class KeptWeights:
    """The weights a fine-tuning run keeps, offered every checked step with its held-out errors.

    ``select``: ``"significant"`` replaces the kept weights only where the step's per-window errors
    beat theirs beyond noise (:func:`beats_beyond_noise` over ``blocks``), ``"best"`` on any lower
    mean, ``"last"`` always (no selection: nothing is copied, the caller's weights are the last
    step's). The first offer (the starting weights, step 0) is always kept. Picking the best of several checks on a few noisy windows keeps whichever step got
    lucky; the significance rule moves only as far as the held-out data vouches for.
    """

    def __init__(self, select: str = "significant", blocks: Tensor | None = None) -> None:
        if select not in SELECT:
            raise ValueError(f"select must be one of {', '.join(SELECT)}; got {select!r}")
        self.select, self.blocks = select, blocks
        self.step: int | None = None
        self.scores: Tensor | None = None
        self.state: dict[str, Tensor] | None = None
        self.checks = 0

    def offer(self, step: int, scores: Tensor, state: Callable[[], Mapping[str, Tensor]]) -> bool:
        """Consider ``step`` with held-out errors ``scores`` ``[N]`` (lower is better; the same
        windows, in the same order, at every offer); ``state()`` is called, and its tensors copied
        to the CPU, only when the step is kept. Returns whether it was."""
        if self.select == "last":
            self.step, self.checks = step, self.checks + 1
            return True
        scores = scores.detach().double().flatten().cpu()
        if self.scores is not None and scores.shape != self.scores.shape:
            raise ValueError(f"held-out scores changed shape between checks: {tuple(self.scores.shape)} -> "
                             f"{tuple(scores.shape)}; every check must score the same windows")
        self.checks += 1
        if self.scores is None:
            better = True
        elif self.select == "best":
            better = float(scores.mean()) < float(self.scores.mean())
        else:
            better = beats_beyond_noise(self.scores, scores, self.blocks)
        if better:
            self.step, self.scores = step, scores
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in state().items()}
        return better


def separation_warnings(scored: Sequence[Scored], metric: str, higher_better: bool, groups: Tensor | None,
                        group_name: str, where: str, n_boot: int = 1000) -> list[str]:
    """A sentence for every pair of models next to each other in the ranking whose difference
    the test set cannot resolve (95 % paired cluster bootstrap interval holding 0)."""
    ranked = sorted(scored, key=lambda s: s.mean, reverse=higher_better)
    out = []
    for a, b in zip(ranked, ranked[1:]):
        if a.values.shape != b.values.shape or not len(a.values):
            continue
        diff, lo, hi, k, unit = paired_bootstrap(a.values, b.values, groups, n_boot)
        if lo <= 0 <= hi:
            units = group_name if unit == "groups" else f"windows; fewer than {MIN_GROUPS} {group_name} to resample"
            half = (hi - lo) / 2
            need = (f"; a difference of {abs(diff):.3g} needs about {math.ceil((half / abs(diff)) ** 2):d}x "
                    f"as many test {group_name if unit == 'groups' else 'windows'}") if abs(diff) > 1e-12 else ""
            out.append(f"{where}: the test set is too small to separate {a.label} ({metric} {a.mean:.4g}) from "
                       f"{b.label} ({b.mean:.4g}): difference {diff:+.3g}, 95 % interval {lo:+.3g} to {hi:+.3g} "
                       f"(paired bootstrap over {k} test {units}){need}")
    return out


def windows_behind(a: Tensor, b: Tensor) -> tuple[int, Tensor]:
    """How concentrated a model's loss is: the fewest windows whose removal leaves ``mean(a) <=
    mean(b)`` on the rest (0 where it already is), with ``a`` and ``b`` two models' per-window
    errors ``[N]`` on the same windows, and the window indices by how much ``a`` exceeds ``b``
    there, largest first. A gap closed by one window of 37 is one event, not a pattern."""
    a, b = a.double().flatten(), b.double().flatten()
    if a.shape != b.shape:
        raise ValueError(f"per-window errors of different shapes: {tuple(a.shape)} and {tuple(b.shape)}")
    excess = a - b
    order = torch.argsort(excess, descending=True)
    left = float(excess.sum()) - torch.cumsum(excess[order], 0)  # the rest's total excess after dropping 1, 2, ...
    if float(excess.sum()) <= 0:
        return 0, order
    closed = (left <= 0).nonzero()
    return (int(closed[0]) + 1 if len(closed) else len(a)), order
