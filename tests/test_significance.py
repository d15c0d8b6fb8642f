"""The decision rules of ``wfm.tasks.significance``: independent blocks of windows and the
one-sided paired t-test at two sigma."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wfm.tasks.significance import beats_beyond_noise, independent_blocks


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
