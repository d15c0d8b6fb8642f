"""Token masks over a (time, antenna, subcarrier) patch grid.

A mask is a bool tensor ``[B, N]`` (``True`` = masked, to be reconstructed) in the token order
of ``wfm.nn.patching`` (time slowest, subcarrier fastest). Every row masks the same number of
tokens, so the encoder can gather the visible tokens into a dense ``[B, N_visible, D]``.

Kinds (``ratio`` is the fraction of patches along the named axis, or of all patches):

- ``random``: a uniformly random ``ratio`` of all tokens, different per sample (MAE).
- ``temporal``: the last ``ratio`` of time patches (the future): time-domain prediction.
- ``frequency``: the upper ``ratio`` of subcarrier patches: frequency-domain prediction.
- ``antenna``: a random ``ratio`` of antenna patches (all times and subcarriers), different per
  sample: spatial interpolation.

The count of masked patches along an axis is ``round(ratio * size)`` clamped to ``[1, size-1]``
so there is always something to predict and something to see.

``MaskPolicy`` draws one kind per training batch from a mixture, as WiFo does (random 0.85,
temporal 0.5, frequency 0.5), either cycling through the kinds or sampling them. Its randomness
comes from a generator seeded by ``(seed, step)``, so training with masking is reproducible and
a resumed run sees exactly the masks an uninterrupted run would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

Grid = tuple[int, int, int]
MASK_KINDS = ("random", "temporal", "frequency", "antenna")


def _count(ratio: float, size: int, what: str) -> int:
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1); got {ratio}")
    if size < 2:
        raise ValueError(f"cannot mask a ratio of {what} with only {size} patch(es) along it")
    return min(max(round(ratio * size), 1), size - 1)


def _random_rows(batch: int, size: int, n_mask: int, generator: torch.Generator | None) -> Tensor:
    """``[batch, size]`` bool with exactly ``n_mask`` random True per row."""
    noise = torch.rand(batch, size, generator=generator)
    rank = noise.argsort(dim=1).argsort(dim=1)
    return rank < n_mask


def make_mask(
    kind: str,
    batch: int,
    grid: Grid,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Return a ``[batch, gt*ga*gk]`` bool mask of the given kind (see module docstring)."""
    gt, ga, gk = grid
    if kind == "random":
        n = gt * ga * gk
        m = _random_rows(batch, n, _count(ratio, n, "tokens"), generator)
    elif kind == "temporal":
        cut = gt - _count(ratio, gt, "time patches")
        m3 = torch.zeros(gt, ga, gk, dtype=torch.bool)
        m3[cut:] = True
        m = m3.reshape(1, -1).expand(batch, -1)
    elif kind == "frequency":
        cut = gk - _count(ratio, gk, "subcarrier patches")
        m3 = torch.zeros(gt, ga, gk, dtype=torch.bool)
        m3[:, :, cut:] = True
        m = m3.reshape(1, -1).expand(batch, -1)
    elif kind == "antenna":
        rows = _random_rows(batch, ga, _count(ratio, ga, "antenna patches"), generator)  # [B, ga]
        m = rows[:, None, :, None].expand(batch, gt, ga, gk).reshape(batch, -1)
    else:
        raise ValueError(f"unknown mask kind {kind!r}; choose one of {', '.join(MASK_KINDS)}")
    return m.contiguous().to(device)


@dataclass
class MaskPolicy:
    """A per-batch mixture of mask kinds (WiFo's default: random 0.85 / temporal 0.5 / frequency 0.5).

    ``mode='cycle'`` takes kind ``step % len(kinds)``; ``mode='sample'`` draws a kind with
    probability ``weights`` (uniform if ``None``).
    """

    kinds: list[str] = field(default_factory=lambda: ["random", "temporal", "frequency"])
    ratios: list[float] = field(default_factory=lambda: [0.85, 0.5, 0.5])
    mode: Literal["cycle", "sample"] = "cycle"
    weights: list[float] | None = None

    def __post_init__(self) -> None:
        if not self.kinds or len(self.kinds) != len(self.ratios):
            raise ValueError(f"mask kinds {self.kinds} and ratios {self.ratios} must be non-empty and of equal length")
        for k, r in zip(self.kinds, self.ratios):
            if k not in MASK_KINDS:
                raise ValueError(f"unknown mask kind {k!r}; choose from {', '.join(MASK_KINDS)}")
            if not 0.0 < r < 1.0:
                raise ValueError(f"mask ratio for {k!r} must be in (0, 1); got {r}")
        if self.weights is not None and (len(self.weights) != len(self.kinds) or min(self.weights) < 0 or sum(self.weights) <= 0):
            raise ValueError(f"mask weights {self.weights} must be non-negative, not all zero, one per kind")

    def choose(self, step: int, seed: int = 0) -> tuple[str, float]:
        """The ``(kind, ratio)`` of micro-batch ``step`` (the same on every rank)."""
        if self.mode == "cycle":
            i = step % len(self.kinds)
        else:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
            w = torch.tensor(self.weights or [1.0] * len(self.kinds), dtype=torch.float)
            i = int(torch.multinomial(w, 1, generator=gen))
        return self.kinds[i], self.ratios[i]

    def __call__(
        self, batch: int, grid: Grid, step: int, seed: int = 0, rank: int = 0, device: torch.device | str = "cpu"
    ) -> tuple[Tensor, str, float]:
        """Mask for micro-batch ``step`` on ``rank``: returns ``(mask [B, N], kind, ratio)``.

        The kind depends on ``(seed, step)`` only; the random draw also on ``rank`` so data
        parallel ranks mask differently.
        """
        kind, ratio = self.choose(step, seed)
        gen = torch.Generator().manual_seed((seed * 1_000_003 + step) * 65_537 + rank + 1)
        return make_mask(kind, batch, grid, ratio, generator=gen, device=device), kind, ratio
