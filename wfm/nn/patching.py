"""3D patching of complex CSI ``[B, T, A, K]`` into tokens, and back.

A CSI tensor (time x antenna x subcarrier) is cut into non-overlapping ``(pt, pa, pk)``
blocks. Real and imaginary parts are two channels, so one patch flattens to
``pt * pa * pk * 2`` real numbers. Tokens are ordered row-major over the patch grid
``(T/pt, A/pa, K/pk)``: time slowest, subcarrier fastest. Everything that indexes tokens
(position code, masks) uses this order.

``PatchEmbed3D`` is a linear map of the flattened patch; this is exactly a ``Conv3d`` with
``kernel_size == stride == patch`` over the 2 real/imag channels (as in WiFo/ViT), written
as patchify + ``nn.Linear`` so that ``unpatchify`` is its literal inverse.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

Patch = tuple[int, int, int]
Grid = tuple[int, int, int]


def patch_grid(shape: tuple[int, ...], patch: Patch) -> Grid:
    """Return the patch grid ``(T/pt, A/pa, K/pk)`` for a CSI of shape ``[..., T, A, K]``.

    Raises ``ValueError`` naming the shape and patch if a dimension is not divisible.
    """
    if len(shape) < 3:
        raise ValueError(f"CSI must be [B, T, A, K]; got shape {tuple(shape)}")
    tak = tuple(int(s) for s in shape[-3:])
    if any(p <= 0 for p in patch):
        raise ValueError(f"patch sizes must be positive; got patch {tuple(patch)}")
    bad = [name for name, s, p in zip("TAK", tak, patch) if s % p != 0]
    if bad:
        raise ValueError(
            f"CSI shape (T, A, K) = {tak} is not divisible by patch (pt, pa, pk) = {tuple(patch)} "
            f"along {', '.join(bad)}; pick a patch that divides every dimension or crop the data"
        )
    return (tak[0] // patch[0], tak[1] // patch[1], tak[2] // patch[2])


def patchify(csi: Tensor, patch: Patch) -> Tensor:
    """Complex ``[B, T, A, K]`` -> real patches ``[B, N, pt*pa*pk*2]`` (N = product of the grid)."""
    if not torch.is_complex(csi):
        raise TypeError(f"patchify expects complex CSI [B, T, A, K]; got dtype {csi.dtype}")
    if csi.ndim != 4:
        raise ValueError(f"CSI must be [B, T, A, K]; got shape {tuple(csi.shape)}")
    gt, ga, gk = patch_grid(csi.shape, patch)
    pt, pa, pk = patch
    x = torch.view_as_real(csi)  # [B, T, A, K, 2]
    b = x.shape[0]
    x = x.reshape(b, gt, pt, ga, pa, gk, pk, 2)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7)  # [B, gt, ga, gk, pt, pa, pk, 2]
    return x.reshape(b, gt * ga * gk, pt * pa * pk * 2)


def unpatchify(patches: Tensor, grid: Grid, patch: Patch) -> Tensor:
    """Real patches ``[B, N, pt*pa*pk*2]`` -> complex ``[B, T, A, K]``; inverse of ``patchify``."""
    gt, ga, gk = grid
    pt, pa, pk = patch
    b, n, p = patches.shape
    if n != gt * ga * gk or p != pt * pa * pk * 2:
        raise ValueError(
            f"patches {tuple(patches.shape)} do not match grid {tuple(grid)} and patch {tuple(patch)}"
        )
    x = patches.reshape(b, gt, ga, gk, pt, pa, pk, 2)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, gt * pt, ga * pa, gk * pk, 2)
    return torch.view_as_complex(x.float().contiguous())


class PatchEmbed3D(nn.Module):
    """Embed complex CSI ``[B, T, A, K]`` as tokens ``[B, N, dim]`` with 3D patches."""

    def __init__(self, patch: Patch, dim: int) -> None:
        super().__init__()
        self.patch: Patch = tuple(int(p) for p in patch)  # type: ignore[assignment]
        self.patch_dim = self.patch[0] * self.patch[1] * self.patch[2] * 2
        self.proj = nn.Linear(self.patch_dim, dim)

    def forward(self, csi: Tensor) -> Tensor:
        return self.proj(patchify(csi, self.patch))
