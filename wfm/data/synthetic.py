"""A tiny synthetic CSI DataModule for tests and smoke runs (no files, no Sionna).

Each sample is a sum of a few plane waves over (time, antenna, subcarrier):

    h[t, a, k] = sum_p g_p * exp(j 2 pi (nu_p t + 0.5 sin(theta_p) a - tau_p k))

with complex Gaussian gains ``g_p``, Doppler ``nu_p`` (cycles per time step, ``|nu| <=
max_doppler``), angle of arrival ``theta_p`` on a half-wavelength uniform linear array and
delay ``tau_p`` (cycles per subcarrier, ``0 <= tau <= max_delay``). Every sample is scaled to
unit mean power, like the real DataModules' output. The structure is the one physical channels
have (few paths, smooth phase ramps) so masked prediction is learnable and a tiny model can
fit it, which is what the tests need.

Items are whole batches (``{"csi": complex64 [B, T, A, K]}``), generated from ``(seed, index)``
so the data is identical in every epoch, process and resumed run, and each batch has a single
shape; with several ``shapes`` the batches cycle through them. The loaders use
``batch_size=None`` and no shuffling, so Lightning's distributed sampler splits batches across
ranks without changing them.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from wfm.safety import InputError, strict_int

#: Largest ``batch_size x num_paths x T x A x K`` one batch may build (its complex128 phase
#: tensors are 16 bytes an element: 4 GiB each), checked before anything is allocated.
MAX_BATCH_ELEMENTS = 1 << 28


def check_shapes(shapes: object) -> list[tuple[int, int, int]]:
    """``shapes`` as a list of ``(T, A, K)`` int tuples, or an :class:`~wfm.safety.InputError`
    (one line, exit 2 from the CLI) naming the bad shape: each has three integers >= 1."""
    if isinstance(shapes, (str, bytes)) or not isinstance(shapes, (list, tuple)) or not shapes:
        raise InputError(f"shapes {shapes!r}: must be a non-empty list of [T, A, K] shapes")
    out = []
    for shape in shapes:
        if isinstance(shape, (str, bytes)) or not isinstance(shape, (list, tuple)) or len(shape) != 3:
            raise InputError(f"shapes: {shape!r} must be [T, A, K], three integers >= 1")
        try:
            dims = tuple(strict_int(s, "shape size") for s in shape)
        except InputError:
            raise InputError(f"shapes: {list(shape)} must be [T, A, K], three integers >= 1") from None
        if min(dims) < 1:
            raise InputError(f"shapes: {list(dims)} must be [T, A, K], three integers >= 1")
        out.append(dims)
    return out  # type: ignore[return-value]


def plane_wave_csi(
    batch: int,
    shape: tuple[int, int, int],
    num_paths: int = 3,
    max_doppler: float = 0.05,
    max_delay: float = 0.05,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Complex64 ``[batch, T, A, K]`` sums of ``num_paths`` plane waves, unit mean power per sample."""
    t_len, a_len, k_len = shape
    g = generator

    def u(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(batch, num_paths, 1, 1, 1, generator=g, dtype=torch.float64)

    gain = torch.complex(torch.randn(batch, num_paths, 1, 1, 1, generator=g, dtype=torch.float64),
                         torch.randn(batch, num_paths, 1, 1, 1, generator=g, dtype=torch.float64))
    nu = u(-max_doppler, max_doppler)
    sin_theta = torch.sin(u(-math.pi / 2, math.pi / 2))
    tau = u(0.0, max_delay)
    t = torch.arange(t_len, dtype=torch.float64)[:, None, None]
    a = torch.arange(a_len, dtype=torch.float64)[None, :, None]
    k = torch.arange(k_len, dtype=torch.float64)[None, None, :]
    phase = 2 * math.pi * (nu * t + 0.5 * sin_theta * a - tau * k)  # [B, P, T, A, K]
    h = (gain * torch.polar(torch.ones_like(phase), phase)).sum(dim=1)
    h = h / h.abs().pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return h.to(torch.complex64)


class SyntheticCSIDataset(Dataset):
    """``num_batches`` deterministic batches of plane-wave CSI (see module docstring)."""

    def __init__(
        self,
        num_batches: int,
        batch_size: int,
        shapes: list[tuple[int, int, int]],
        num_paths: int = 3,
        max_doppler: float = 0.05,
        max_delay: float = 0.05,
        seed: int = 0,
    ) -> None:
        # Checked here, when the data module is built, not at the first training step.
        self.shapes = check_shapes(shapes)
        num_batches, batch_size = strict_int(num_batches, "batches"), strict_int(batch_size, "batch_size")
        num_paths = strict_int(num_paths, "num_paths")
        if num_batches < 1 or batch_size < 1 or num_paths < 1:
            raise InputError(f"synthetic data needs batches >= 1, batch_size >= 1 and num_paths >= 1 "
                             f"(got {num_batches}, {batch_size}, {num_paths})")
        if not (math.isfinite(max_doppler) and math.isfinite(max_delay)):
            raise InputError(f"max_doppler {max_doppler} and max_delay {max_delay} must be finite")
        for shape in self.shapes:
            if batch_size * num_paths * math.prod(shape) > MAX_BATCH_ELEMENTS:
                raise InputError(f"shapes: {list(shape)} with batch_size {batch_size} and num_paths {num_paths} "
                                 f"is over {MAX_BATCH_ELEMENTS} elements a batch")
        self.num_batches, self.batch_size = num_batches, batch_size
        self.kw = dict(num_paths=num_paths, max_doppler=max_doppler, max_delay=max_delay)
        self.seed = seed

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.num_batches:
            raise IndexError(index)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        shape = self.shapes[index % len(self.shapes)]
        return {"csi": plane_wave_csi(self.batch_size, shape, generator=gen, **self.kw)}


class SyntheticCSIDataModule(pl.LightningDataModule):
    """Plane-wave CSI batches; a stand-in for ``CSIDataModule`` in tests and smoke runs.

    Args:
        shapes: ``(T, A, K)`` shapes; batches cycle through them (one shape per batch).
        batch_size: samples per batch (per device under DDP).
        train_batches, val_batches: batches per epoch (fixed data: repeated every epoch).
        num_paths, max_doppler, max_delay: channel structure (see ``plane_wave_csi``).
        seed: data seed; validation uses a disjoint seed.
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        shapes: list[tuple[int, int, int]] = [(16, 8, 32)],  # noqa: B006 (read-only default; typed for the CLI)
        batch_size: int = 32,
        train_batches: int = 64,
        val_batches: int = 4,
        num_paths: int = 3,
        max_doppler: float = 0.05,
        max_delay: float = 0.05,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        kw = dict(batch_size=batch_size, shapes=check_shapes(shapes), num_paths=num_paths,
                  max_doppler=max_doppler, max_delay=max_delay)
        self.train_set = SyntheticCSIDataset(train_batches, seed=2 * seed, **kw)
        self.val_set = SyntheticCSIDataset(val_batches, seed=2 * seed + 1, **kw)
        self.num_workers = num_workers

    def _loader(self, ds: Dataset) -> DataLoader:
        return DataLoader(ds, batch_size=None, shuffle=False, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)
