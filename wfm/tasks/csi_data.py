"""CSI task data from shard datasets: splits, few-shot subsets, CSI labels and the DFT codebook.

Splits (``split_range``) are the head / middle / tail of every dataset, the same
``contiguous_splits`` that pretraining uses (``val_fraction`` 0.1 and ``test_fraction`` 0.2 by
default), so a model pretrained with ``--data.test_fraction 0.2`` never saw a test sample.
Few-shot training uses a deterministic random subset of the training range
(``train_subset``: a ``fraction`` of it, at least one sample, the same for a seed, nested: the
1 % subset is inside the 10 % one).

CSI labels (``csi_labels``):

- ``los``: the LoS flag (class 1 = LoS);
- ``distance``: the user's 3D distance at the first time step (m);
- ``position``: the user's (x, y) at the first time step (m, base station at the origin);
- ``beam``: the best beam of a 2D DFT codebook for the UPA (``dft_codebook``): the beam of
  largest gain ``sum_{t,k} |w_b^H h[t, :, k]|^2``; ``beam_power`` holds every beam's gain.

Geometry labels need ``geometry_valid`` (link-level CDL/TDL data have no geometry: a
``DataError`` says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from wfm.data.datamodule import contiguous_splits
from wfm.data.errors import DataError
from wfm.data.shards import ShardedDataset

VAL_FRACTION = 0.1
TEST_FRACTION = 0.2
LABEL_FIELDS = {"los": ["los"], "distance": ["distance", "geometry_valid"],
                "position": ["position", "geometry_valid"], "beam": []}


def split_range(n: int, split: str, val_fraction: float = VAL_FRACTION,
                test_fraction: float = TEST_FRACTION) -> tuple[int, int]:
    """``(start, stop)`` of ``split`` (train / val / test) in a dataset of ``n`` samples."""
    s = contiguous_splits([n], val_fraction, test_fraction)[split]
    return s.starts[0], s.stops[0]


def train_subset(n: int, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices ``0..n-1`` of a deterministic ``fraction`` (at least 1) of ``n``; nested in
    ``fraction`` for one seed (a prefix of one fixed permutation)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    if fraction >= 1:
        return np.arange(n)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:max(1, int(round(fraction * n)))])


def open_dataset(root: str | Path, kind: str, task: str) -> ShardedDataset:
    """Open a dataset folder and check its kind, naming the task in the error."""
    ds = ShardedDataset(root)
    if ds.kind != kind:
        raise DataError(f"{root}: task {task} needs a {kind!r} dataset, this one is {ds.kind!r}")
    return ds


def load_csi(root: str | Path, split: str, fields: Sequence[str] = (), task: str = "task",
             train_fraction: float = 1.0, seed: int = 0, val_fraction: float = VAL_FRACTION,
             test_fraction: float = TEST_FRACTION, normalize: bool = True) -> dict[str, Any]:
    """One split of a CSI dataset in memory: ``csi`` complex64 ``[N, T, A, K]`` (divided by the
    dataset's std when ``normalize``) and the requested fields as tensors, plus ``attrs``."""
    ds = open_dataset(root, "csi", task)
    missing = [f for f in fields if f not in ds.specs]
    if missing:
        raise DataError(f"{root}: task {task} needs field(s) {', '.join(missing)}, which this dataset lacks")
    a, b = split_range(len(ds), split, val_fraction, test_fraction)
    if b <= a:
        raise DataError(f"{root}: the {split} split is empty ({len(ds)} samples)")
    block = ds.read_range(a, b, ["csi", *fields])
    idx = train_subset(b - a, train_fraction, seed) if split == "train" else np.arange(b - a)
    out: dict[str, Any] = {k: torch.from_numpy(np.ascontiguousarray(np.asarray(v)[idx])) for k, v in block.items()}
    std = ds.manifest.get("stats", {}).get("csi", {}).get("std")
    if normalize and std:
        out["csi"] = out["csi"] / float(std)
    out["attrs"] = dict(ds.attrs)
    out["index"] = torch.from_numpy(a + idx)
    ds.close()
    return out


def dft_codebook(rows: int, cols: int, oversample: int = 1) -> Tensor:
    """2D DFT beams of a ``rows x cols`` UPA (antenna index ``m * cols + n``), ``[B, A]`` complex,
    unit norm: ``w_{p,q}[m, n] = exp(2j pi (p m / (O rows) + q n / (O cols))) / sqrt(A)``, beam
    index ``p * O cols + q``."""
    o = int(oversample)
    m = torch.arange(rows, dtype=torch.float64)
    n = torch.arange(cols, dtype=torch.float64)
    p = torch.arange(o * rows, dtype=torch.float64)
    q = torch.arange(o * cols, dtype=torch.float64)
    wr = torch.exp(2j * torch.pi * p[:, None] * m[None, :] / (o * rows))  # [Pr, rows]
    wc = torch.exp(2j * torch.pi * q[:, None] * n[None, :] / (o * cols))  # [Pc, cols]
    w = (wr[:, None, :, None] * wc[None, :, None, :]).reshape(o * rows * o * cols, rows * cols)
    return (w / np.sqrt(rows * cols)).to(torch.complex64)


def beam_gains(csi: Tensor, codebook: Tensor) -> Tensor:
    """``[N, B]`` gain ``sum_{t,k} |w_b^H h[t, :, k]|^2`` of every beam for CSI ``[N, T, A, K]``."""
    y = torch.einsum("ba,ntak->ntbk", codebook.conj().to(csi.dtype), csi)
    return (y.abs() ** 2).sum(dim=(1, 3)).float()


def csi_labels(data: dict[str, Any], label: str, root: str | Path = "", oversample: int = 1) -> dict[str, Tensor]:
    """Targets of a CSI label task (module doc); drops samples without valid geometry.

    Returns ``csi`` and ``y`` (long class indices or float regression targets), and for beams
    ``beam_power``."""
    csi = data["csi"]
    if label == "beam":
        rows, cols = (data["attrs"].get("array_shape") or [1, csi.shape[2]])[:2]
        gains = beam_gains(csi, dft_codebook(int(rows), int(cols), oversample))
        return {"csi": csi, "y": gains.argmax(1), "beam_power": gains}
    if label == "los":
        return {"csi": csi, "y": data["los"].long()}
    valid = data["geometry_valid"].bool()
    if not bool(valid.any()):
        raise DataError(f"{root}: task needs user geometry, but no sample has geometry_valid "
                        "(link-level CDL/TDL data carry none; use a UMa/UMi/RMa dataset)")
    if label == "distance":
        y = data["distance"][:, 0:1].float()
    elif label == "position":
        y = data["position"][:, 0, :2].float()
    else:
        raise ValueError(f"unknown CSI label {label!r}")
    return {"csi": csi[valid], "y": y[valid]}
