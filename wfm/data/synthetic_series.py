"""Synthetic univariate series for tests and CPU smoke runs of the causal model (no files).

Three kinds with the intervals of their real counterparts, so the granularity embedding has
something to tell apart:

- ``csi`` (1 ms): real and imaginary parts of a sum of a few complex exponentials (Doppler
  paths) with complex Gaussian gains, 64 steps;
- ``aoa`` (100 ms): a smooth random walk in degrees (integrated, low-passed velocity), 512 steps;
- ``traffic`` (10 min): a daily profile (two harmonics) times a level, with multiplicative
  noise, 1008 steps (one week).

All are drawn from ``seed`` with NumPy, so every process and every run sees the same data.
"""

from __future__ import annotations

import numpy as np

from wfm.data.series import SeriesTable
from wfm.data.series_datamodule import SeriesDataModule

SYNTHETIC_KINDS = ("csi", "aoa", "traffic")


def synthetic_table(kind: str, num: int, seed: int) -> SeriesTable:
    """A table of ``num`` synthetic series of ``kind`` (see the module doc)."""
    rng = np.random.default_rng([seed, SYNTHETIC_KINDS.index(kind)])
    if kind == "csi":
        steps, paths = 64, 3
        t = np.arange(steps)[None, :, None]
        nu = rng.uniform(-0.05, 0.05, (num, 1, paths))
        gain = (rng.normal(size=(num, 1, paths)) + 1j * rng.normal(size=(num, 1, paths))) / np.sqrt(2 * paths)
        x = (gain * np.exp(2j * np.pi * (nu * t + rng.uniform(0, 1, (num, 1, paths))))).sum(-1)
        x = x.astype(np.complex64)
        interval, split = 1e-3, True
    elif kind == "aoa":
        steps = 512
        vel = rng.normal(size=(num, steps)) * rng.uniform(0.1, 1.0, (num, 1))
        for _ in range(3):  # smooth the velocity: vehicles turn gradually
            vel = 0.5 * vel + 0.5 * np.concatenate([vel[:, :1], vel[:, :-1]], axis=1)
        x = (rng.uniform(-60, 60, (num, 1)) + np.cumsum(vel, axis=1)).astype(np.float32)
        interval, split = 0.1, False
    elif kind == "traffic":
        steps = 1008
        day = 2 * np.pi * (np.arange(steps)[None] + rng.integers(0, 144, (num, 1))) / 144
        prof = 1 + 0.6 * np.sin(day + rng.uniform(0, 2 * np.pi, (num, 1))) + 0.2 * np.sin(2 * day)
        x = (rng.uniform(10, 100, (num, 1)) * prof * np.exp(0.05 * rng.normal(size=(num, steps)))).astype(np.float32)
        interval, split = 600.0, False
    else:
        raise ValueError(f"unknown synthetic kind {kind!r}; choose from {', '.join(SYNTHETIC_KINDS)}")
    lengths = np.full(num, steps, dtype=np.int64)
    return SeriesTable(x.reshape(num * steps, 1), np.arange(num) * steps, lengths, interval, kind,
                       f"synthetic:{kind}", split_complex=split)


class SyntheticSeriesDataModule(SeriesDataModule):
    """:class:`SeriesDataModule` over in-memory synthetic series, one "dataset" per kind.

    Args:
        kinds: synthetic kinds to serve (``csi``, ``aoa``, ``traffic``).
        series_per_kind: series (samples) per kind before the split.
        The rest as in :class:`SeriesDataModule`.
    """

    def __init__(self, kinds: list[str] = list(SYNTHETIC_KINDS), series_per_kind: int = 256,  # noqa: B006
                 weights: list[float] | None = None, context: int = 128, horizon: int = 32, batch_size: int = 32,
                 samples_per_epoch: int = 3200, eval_windows: int = 64, val_fraction: float = 0.1,
                 test_fraction: float = 0.1, pad_prob: float = 0.5, group_size: int = 1, num_workers: int = 0,
                 seed: int = 0, interval_jitter: dict[str, float] | None = None, short_hide: bool = False):
        super().__init__(datasets=None, weights=weights, kinds=list(kinds), context=context, horizon=horizon,
                         batch_size=batch_size, samples_per_epoch=samples_per_epoch, eval_windows=eval_windows,
                         val_fraction=val_fraction, test_fraction=test_fraction, pad_prob=pad_prob,
                         group_size=group_size, num_workers=num_workers, seed=seed, interval_jitter=interval_jitter,
                         short_hide=short_hide)
        self.save_hyperparameters()

    def load_tables(self) -> list[tuple[str, list[SeriesTable]]]:
        hp = self.hparams
        return [(f"synthetic-{k}", [synthetic_table(k, hp.series_per_kind, hp.seed)]) for k in hp.kinds]
