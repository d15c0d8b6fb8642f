"""The decision rules of ``wfm.tasks.significance``: independent blocks of windows and the
one-sided paired t-test at two sigma."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wfm.tasks.significance import (KeptWeights, beats_beyond_noise, geometric_mean_interval, independent_blocks,
                                    ratio_interval, window_runs, windows_behind)


def test_independent_blocks_join_windows_whose_targets_share_a_step():
    L, H = 5, 3
    rng = np.random.default_rng(0)
    span = torch.tensor([[int(s), int(a)] for s, a in zip(rng.integers(0, 3, 40), rng.integers(0, 30, 40))])
    blocks = independent_blocks(span, L, H)
    # brute force: connected components of "targets share a step (same series)"
    n = len(span)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in range(n):
            si, ai = span[i].tolist()
            sj, aj = span[j].tolist()
            if si == sj and ai + L < aj + L + H and aj + L < ai + L + H:
                parent[find(i)] = find(j)
    for i in range(n):
        for j in range(n):
            assert (blocks[i] == blocks[j]) == (find(i) == find(j))
    # Stride equal to the horizon: every window its own block; stride 1: one block.
    assert independent_blocks(torch.tensor([[0, 3 * k] for k in range(6)]), L, H).unique().numel() == 6
    assert independent_blocks(torch.tensor([[0, k] for k in range(6)]), L, H).unique().numel() == 1


def test_window_runs_cut_a_chain_of_overlapping_windows_into_runs_a_window_long():
    """A capture scored at every alignment is one chain of overlapping targets; its runs of starts a
    window (context + horizon) long are the bootstrap's blocks, per series. Windows whose targets
    share no step keep their own blocks, and a chain shorter than a window stays one block."""
    L, H = 8, 8
    dense = torch.tensor([[0, k] for k in range(40)] + [[1, k] for k in range(20)])
    runs = window_runs(dense, L, H)
    want = [k // (L + H) for k in range(40)] + [3 + k // (L + H) for k in range(20)]
    assert torch.equal(torch.unique(runs, return_inverse=True)[1], torch.unique(torch.tensor(want), return_inverse=True)[1])
    apart = torch.tensor([[0, H * k] for k in range(6)])
    assert torch.equal(window_runs(apart, L, H), independent_blocks(apart, L, H))
    assert window_runs(torch.tensor([[0, k] for k in range(37)]), 96, 12).unique().numel() == 1  # a Milan day


def test_beats_beyond_noise_is_the_one_sided_paired_t_test_at_two_sigma():
    from scipy import stats

    level = stats.norm.sf(2.0)
    rng = np.random.default_rng(1)
    agree = 0
    for trial in range(200):
        n = int(rng.integers(2, 30))
        kept = rng.uniform(0.5, 1.5, n)
        cand = kept - rng.normal(rng.uniform(-0.1, 0.3), 0.3, n)
        want = stats.ttest_rel(kept, cand, alternative="greater").pvalue < level
        got = beats_beyond_noise(torch.tensor(kept), torch.tensor(cand))
        agree += want == got
    assert agree >= 198  # the threshold table is within 0.2 % of the exact quantile past 10 dof
    # Blocks average their windows first; one block (or one window) shows nothing.
    kept, cand = torch.ones(6), torch.tensor([0.5, 0.5, 0.5, 0.9, 0.9, 0.9])
    assert beats_beyond_noise(kept, cand + torch.tensor([0.01, -0.01, 0.0] * 2))
    assert not beats_beyond_noise(kept, cand, torch.zeros(6, dtype=torch.long))
    assert not beats_beyond_noise(torch.ones(1), torch.zeros(1))
    # Identical improvements have no spread: better is better.
    assert beats_beyond_noise(torch.ones(4), torch.zeros(4)) and not beats_beyond_noise(torch.zeros(4), torch.ones(4))


def test_kept_weights_move_only_on_held_out_evidence():
    base = torch.ones(6)
    noisy_gain = torch.tensor([0.2, 1.6, 0.3, 1.5, 0.4, 1.4])  # mean 0.9 < 1, but within noise
    clear_gain = torch.full((6,), 0.5)
    states = {s: {"w": torch.full((2,), float(s))} for s in (0, 10, 20)}
    for select, kept_step in (("significant", 20), ("best", 20), ("last", 20)):
        kept = KeptWeights(select)
        assert kept.offer(0, base, lambda: states[0])  # the start is always kept
        assert kept.offer(10, noisy_gain, lambda: states[10]) == (select != "significant")
        assert kept.offer(20, clear_gain, lambda: states[20])
        assert kept.step == kept_step and kept.checks == 3
        assert kept.state is None if select == "last" else torch.equal(kept.state["w"], states[20]["w"])
    kept = KeptWeights("significant")
    kept.offer(0, clear_gain, lambda: states[0])
    assert not kept.offer(10, base, lambda: states[10]) and kept.step == 0  # worse: never taken
    # The state is copied when kept: later in-place training does not change it.
    w = torch.zeros(2)
    kept = KeptWeights("best")
    kept.offer(0, base, lambda: {"w": w})
    w += 1
    assert torch.equal(kept.state["w"], torch.zeros(2))
    with pytest.raises(ValueError, match="same windows"):
        kept.offer(5, torch.ones(3), lambda: {"w": w})
    with pytest.raises(ValueError, match="significant, best, last"):
        KeptWeights("newest")


def test_ratio_interval_resamples_whole_blocks_and_holds_the_ratio():
    g = torch.Generator().manual_seed(0)
    b = torch.rand(200, generator=g, dtype=torch.float64) + 0.5
    # a fixed multiple has no spread; equal errors give exactly 1
    lo, hi, k = ratio_interval(2 * b, b)
    assert (lo, hi, k) == (pytest.approx(2.0), pytest.approx(2.0), 200)
    assert ratio_interval(b, b)[:2] == (pytest.approx(1.0), pytest.approx(1.0))
    # noisy ratios: the interval holds the ratio of the means and narrows with more blocks
    a = b * (1 + 0.3 * torch.randn(200, generator=g, dtype=torch.float64))
    lo, hi, _ = ratio_interval(a, b)
    assert lo < float(a.mean() / b.mean()) < hi
    lo20, hi20, _ = ratio_interval(a[:20], b[:20])
    assert hi20 - lo20 > hi - lo
    # windows of one block move together: 200 windows in 10 blocks resample 10 units
    blocks = torch.arange(200) // 20
    assert ratio_interval(a, b, blocks)[2] == 10
    # too few blocks for an interval (one block: a Milan cell's stride-1 day)
    assert ratio_interval(a, b, torch.zeros(200, dtype=torch.long)) is None
    assert ratio_interval(a[:4], b[:4]) is None
    with pytest.raises(ValueError, match="different shapes"):
        ratio_interval(a, b[:10])


def test_geometric_mean_interval_resamples_datasets():
    geo, lo, hi = geometric_mean_interval([0.5, 2.0, 1.0, 1.0, 1.0, 1.0])
    assert geo == pytest.approx(1.0) and lo < 1.0 < hi
    assert geometric_mean_interval([0.8] * 6)[1:] == (pytest.approx(0.8), pytest.approx(0.8))
    assert geometric_mean_interval([0.9, 1.1, 1.0, 0.95]) is None  # fewer than 5 datasets
    with pytest.raises(ValueError, match="positive"):
        geometric_mean_interval([1.0, 0.0, 1.0, 1.0, 1.0])


def test_windows_behind_counts_the_fewest_windows_that_make_a_gap():
    best = torch.full((10,), 0.1, dtype=torch.float64)
    # one bad window (excess 1.0) against nine slightly better ones (-0.05 each): one event
    mine = best.clone() - 0.05
    mine[3] = 1.1
    k, order = windows_behind(mine, best)
    assert k == 1 and int(order[0]) == 3
    assert mine[order[1:]].mean() <= best[order[1:]].mean()
    # evenly behind everywhere: every window makes the gap
    assert windows_behind(best + 0.01, best)[0] == 10
    # not behind (ties count as not behind): nothing to close
    assert windows_behind(best, best)[0] == 0 and windows_behind(best - 0.01, best)[0] == 0
    # the fewest: dropping the largest excesses first, by brute force over every subset of 6 windows
    import itertools
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        a, b = torch.rand(6, generator=g, dtype=torch.float64), torch.rand(6, generator=g, dtype=torch.float64)
        fewest = min((len(c) for r in range(7) for c in itertools.combinations(range(6), r)
                      if (a - b).sum() - (a - b)[list(c)].sum() <= 0), default=6)
        assert windows_behind(a, b)[0] == (0 if (a - b).sum() <= 0 else fewest)
    with pytest.raises(ValueError, match="different shapes"):
        windows_behind(best, best[:3])
