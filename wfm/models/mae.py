"""Masked autoencoder over space-time-frequency CSI (in the line of WiFo, arXiv 2412.08908).

Complex CSI ``[B, T, A, K]`` (time x antenna x subcarrier) is cut into 3D patches of its
real/imag parts (``wfm.nn.patching``), embedded, given a 3D sin-cos position code computed for
the batch's own patch grid (``wfm.nn.posenc``), and masked (``wfm.models.masking``). The encoder
sees only the visible tokens; a shallower decoder sees all tokens (mask tokens where masked) and
predicts every patch. The loss is the MSE on masked patches only. Each sample is first
divided by the RMS of its visible part (``sample_norm``), so inputs of any scale work.

Zero-shot channel prediction is reconstruction with the right mask: ``temporal`` masks the
future time steps, ``frequency`` the upper subcarriers (``MaskedAutoencoder.predict``).

Sizes (``create_model(name)``; decoder width = encoder width as in WiFo, decoder depth 4,
8 heads, MLP ratio 2, patch (4, 4, 4)). Parameter counts are measured (``tests/test_mae.py``
checks them; the position code is fixed and has no parameters):

==========  =====  =============  =============  ==========  =====================
name        width  encoder depth  decoder depth  parameters  parameters, complex-*
==========  =====  =============  =============  ==========  =====================
mae_tiny       64              6              4     355,776                191,296
mae_little    128              6              4   1,374,976                718,336
mae_small     256              6              4   5,404,032              2,780,032
mae_base      512              6              4  21,424,768             10,933,888
mae_large     768              8              4  57,516,416             29,195,648
==========  =====  =============  =============  ==========  =====================

With ``attention: complex-*`` a width-``d`` token is ``d/2`` complex features, and a complex
``d/2 -> d/2`` linear map has half the parameters of a real ``d -> d`` one (same FLOPs).
(WiFo-Base, the reference, has 21.5 M.)

Decoder width: WiFo uses the same width in encoder and decoder, and we keep that default so
parameter counts and throughput compare directly with WiFo's (MAE for images uses a narrower
decoder; ``decoder_dim`` sets one, and ``forward_flops`` accounts for it).

FLOPs: ``forward_flops`` counts the matmul FLOPs of one forward pass exactly (2 per
multiply-add; embeddings, QKV/out projections, attention scores and values, MLPs, decoder head;
norms, GELU and softmax are ignored as they are < 1 % here). Training costs 3x forward
(backward = 2x forward). The complex blocks do the same number of real multiply-adds per token
(a complex ``d/2 -> d/2`` map is four real ``d/2 x d/2`` products), so the count applies to
them too up to the elementwise work of the score variants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from wfm.models.masking import MASK_KINDS, make_mask
from wfm.models.registry import register_model
from wfm.nn.blocks import ATTENTION_KINDS, make_block
from wfm.nn.patching import Grid, Patch, patch_grid, patchify, unpatchify
from wfm.nn.posenc import SinCos3D


@dataclass
class MAEOutput:
    """Result of ``MaskedAutoencoder.forward``.

    ``pred`` and ``target`` are ``[B, N, pt*pa*pk*2]`` patches of every token, divided by the
    per-sample ``scale`` ``[B, 1, 1]`` (1 without ``sample_norm``; ``pred`` is moreover in
    normalised-patch space when ``norm_pix_loss``); ``mask`` is ``[B, N]`` (True = masked);
    ``loss`` is the masked-patch MSE; ``nmse`` is the per-sample ``||h_hat - h||^2 / ||h||^2``
    over the masked region (scale-free, so the same in either space).
    """

    pred: Tensor
    target: Tensor
    mask: Tensor
    loss: Tensor
    nmse: Tensor
    grid: Grid
    scale: Tensor


@dataclass
class MAEPrediction:
    """Result of ``MaskedAutoencoder.predict``.

    ``reconstruction`` is complex ``[B, T, A, K]``: the input where it was visible, the model's
    prediction where masked. ``mask`` is the elementwise ``[B, T, A, K]`` bool mask.
    ``nmse`` is per sample over the masked region; ``nmse_db = 10 log10(mean(nmse))``.
    """

    reconstruction: Tensor
    mask: Tensor
    nmse: Tensor
    nmse_db: float


def nmse_db(nmse: Tensor) -> Tensor:
    """``10 log10`` of the batch-mean NMSE (the mean is over linear NMSE, as WiFo reports)."""
    return 10.0 * torch.log10(nmse.mean().clamp_min(1e-12))


class MaskedAutoencoder(nn.Module):
    """Encoder-decoder MAE over 3D CSI patches. See the module docstring.

    Args:
        patch_size: ``(pt, pa, pk)``; every batch's ``(T, A, K)`` must be divisible by it.
        dim, depth, num_heads, mlp_ratio: encoder width, blocks, heads, MLP expansion.
        decoder_dim, decoder_depth, decoder_num_heads: decoder (width defaults to ``dim``).
        attention: ``sdpa`` (real tokens) or ``complex-real|complex-magnitude|complex-phase``.
        sample_norm: divide each sample by the RMS of its *visible* part before embedding, and
            scale the prediction back (RevIN-style). The model then sees unit-power inputs
            whatever the data's scale (raw CSI of a new dataset works zero-shot), and every
            sample weighs the same in the loss, as in the per-sample NMSE. It uses only visible
            data, so it is legitimate for prediction.
        norm_pix_loss: normalise each target patch to zero mean / unit variance before the MSE
            (MAE's trick). It changes what the loss weighs (every patch equally, whatever its
            power), and NMSE is then computed by de-normalising with the *true* patch statistics
            (an oracle), so leave it off for channel prediction; it is for ablations.
    """

    def __init__(
        self,
        patch_size: Patch = (4, 4, 4),
        dim: int = 64,
        depth: int = 6,
        num_heads: int = 8,
        mlp_ratio: float = 2.0,
        decoder_dim: int | None = None,
        decoder_depth: int = 4,
        decoder_num_heads: int | None = None,
        attention: str = "sdpa",
        sample_norm: bool = True,
        norm_pix_loss: bool = False,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention {attention!r}; choose one of {', '.join(ATTENTION_KINDS)}")
        self.patch_size: Patch = tuple(int(p) for p in patch_size)  # type: ignore[assignment]
        self.patch_dim = math.prod(self.patch_size) * 2
        self.dim = dim
        self.decoder_dim = decoder_dim or dim
        self.mlp_ratio = mlp_ratio
        self.attention = attention
        self.sample_norm = sample_norm
        self.norm_pix_loss = norm_pix_loss
        dd = self.decoder_dim

        self.patch_embed = nn.Linear(self.patch_dim, dim)
        self.pos = SinCos3D(dim)
        self.blocks = nn.ModuleList(make_block(dim, num_heads, mlp_ratio, attention) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

        self.decoder_embed = nn.Linear(dim, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_pos = SinCos3D(dd)
        self.decoder_blocks = nn.ModuleList(
            make_block(dd, decoder_num_heads or num_heads, mlp_ratio, attention) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dd)
        self.decoder_pred = nn.Linear(dd, self.patch_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        # MAE/timm init: xavier-uniform linears, zero biases, small-normal mask token. Only plain
        # nn.Linear is touched; complex layers keep the init their authors chose.
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if type(m) is nn.Linear:
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ forward
    def forward(self, csi: Tensor, mask: Tensor) -> MAEOutput:
        """Reconstruct ``csi`` (complex ``[B, T, A, K]``) under ``mask`` (bool ``[B, N]``).

        Every row of ``mask`` must mask the same number of tokens. Keep ``mask`` on the CPU
        where you can: its row counts are read on the host, which would otherwise sync the GPU.
        """
        grid = patch_grid(csi.shape, self.patch_size)
        n = math.prod(grid)
        b = csi.shape[0]
        if mask.shape != (b, n) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool [B, N] = [{b}, {n}] for grid {grid}; got {mask.dtype} {tuple(mask.shape)}")
        counts = mask.sum(dim=1)
        n_mask = int(counts[0])
        if not bool((counts == n_mask).all()) or not 0 < n_mask < n:
            raise ValueError(f"every mask row must mask the same number of tokens in (0, {n}); got {counts.tolist()}")
        n_keep = n - n_mask
        mask = mask.to(csi.device, non_blocking=True)

        target = patchify(csi.to(torch.complex64), self.patch_size)  # [B, N, P] float32
        if self.sample_norm:
            visible = (~mask).float()[..., None]
            mean_sq = (target.square() * visible).sum(dim=(1, 2)) / (visible.sum(dim=(1, 2)) * target.shape[-1])
            scale = (2.0 * mean_sq + 1e-30).sqrt()[:, None, None]  # RMS of the complex entries
        else:
            scale = target.new_ones(b, 1, 1)
        target = target / scale
        x = self.patch_embed(target.to(self.patch_embed.weight.dtype))
        x = x + self.pos(grid, x.device, x.dtype)

        # Visible tokens first (stable sort keeps their order), then the masked ones.
        ids_shuffle = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :n_keep]
        x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))

        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)

        y = self.decoder_embed(x)
        y = torch.cat([y, self.mask_token.to(y.dtype).expand(b, n_mask, -1)], dim=1)
        y = torch.gather(y, 1, ids_restore[..., None].expand(-1, -1, y.shape[-1]))
        y = y + self.decoder_pos(grid, y.device, y.dtype)
        for blk in self.decoder_blocks:
            y = blk(y)
        pred = self.decoder_pred(self.decoder_norm(y)).float()
        loss, nmse = self.loss(pred, target, mask)
        return MAEOutput(pred=pred, target=target, mask=mask, loss=loss, nmse=nmse, grid=grid, scale=scale)

    def loss(self, pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Masked-patch MSE (mean over masked patches and their elements) and per-sample NMSE."""
        m = mask.float()
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            std = (target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
            per_patch = ((pred - (target - mean) / std) ** 2).mean(dim=-1)
            recon = pred * std + mean  # oracle de-normalisation, see class docstring
        else:
            per_patch = ((pred - target) ** 2).mean(dim=-1)
            recon = pred
        loss = (per_patch * m).sum() / m.sum()
        err = (((recon - target) ** 2).sum(dim=-1) * m).sum(dim=1)
        power = ((target**2).sum(dim=-1) * m).sum(dim=1)
        return loss, err / power.clamp_min(1e-12)

    # ------------------------------------------------------------------ inference
    def reconstruct(self, out: MAEOutput) -> Tensor:
        """Complex ``[B, T, A, K]``: visible patches from the input, masked ones predicted."""
        pred = out.pred
        if self.norm_pix_loss:
            mean = out.target.mean(dim=-1, keepdim=True)
            std = (out.target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
            pred = pred * std + mean
        patches = torch.where(out.mask[..., None], pred, out.target) * out.scale
        return unpatchify(patches, out.grid, self.patch_size)

    @torch.no_grad()
    def predict(self, csi: Tensor, mask_kind: str = "temporal", ratio: float = 0.5, seed: int = 0) -> MAEPrediction:
        """Zero-shot prediction: mask ``ratio`` of the CSI by ``mask_kind`` and reconstruct it.

        ``temporal`` predicts the last ``ratio`` of time steps from the earlier ones;
        ``frequency`` the upper ``ratio`` of subcarriers; ``random``/``antenna`` interpolate
        (their random draw is seeded by ``seed``). The masked fraction is rounded to whole patches.
        """
        if mask_kind not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {mask_kind!r}; choose one of {', '.join(MASK_KINDS)}")
        grid = patch_grid(csi.shape, self.patch_size)
        gen = torch.Generator().manual_seed(seed)
        mask = make_mask(mask_kind, csi.shape[0], grid, ratio, generator=gen)
        out = self(csi, mask)
        elem = unpatchify(out.mask[..., None].expand_as(out.target).float(), grid, self.patch_size).real > 0.5
        # The visible part is the input itself, bit for bit (not divided and re-multiplied).
        recon = torch.where(elem, self.reconstruct(out), csi.to(torch.complex64))
        return MAEPrediction(recon, elem, out.nmse, float(nmse_db(out.nmse)))

    # ------------------------------------------------------------------ accounting
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward_flops(self, grid: Grid, num_masked: int) -> int:
        """Matmul FLOPs of one forward pass for one sample (see module docstring)."""
        n = math.prod(grid)
        nv = n - num_masked
        d, dd, p = self.dim, self.decoder_dim, self.patch_dim

        def block(tokens: int, width: int) -> int:
            hidden = int(width * self.mlp_ratio)
            proj = 2 * tokens * (4 * width * width)  # qkv + out
            attn = 2 * 2 * tokens * tokens * width  # scores + weighted values
            mlp = 2 * tokens * 2 * width * hidden
            return proj + attn + mlp

        flops = 2 * n * p * d  # patch embedding (all tokens, before the gather)
        flops += len(self.blocks) * block(nv, d)
        flops += 2 * nv * d * dd
        flops += len(self.decoder_blocks) * block(n, dd)
        flops += 2 * n * dd * p
        return flops

    def compile_blocks(self, **kwargs) -> None:
        """``torch.compile`` each transformer block in place ("regional" compilation).

        Compiling blocks rather than the whole model keeps compile time short, lets every block
        share one compiled graph, and leaves the data-dependent masking/gather code eager.
        Parameter names (and so checkpoints) are unchanged.
        """
        for blk in [*self.blocks, *self.decoder_blocks]:
            blk.compile(**kwargs)


def _mae(size: dict, overrides: dict) -> MaskedAutoencoder:
    """A size's defaults; any ``MaskedAutoencoder`` argument in ``overrides`` wins."""
    return MaskedAutoencoder(**{"num_heads": 8, "mlp_ratio": 2.0, "decoder_depth": 4, **size, **overrides})


@register_model
def mae_tiny(**kwargs) -> MaskedAutoencoder:
    return _mae(dict(dim=64, depth=6), kwargs)


@register_model
def mae_little(**kwargs) -> MaskedAutoencoder:
    return _mae(dict(dim=128, depth=6), kwargs)


@register_model
def mae_small(**kwargs) -> MaskedAutoencoder:
    return _mae(dict(dim=256, depth=6), kwargs)


@register_model
def mae_base(**kwargs) -> MaskedAutoencoder:
    return _mae(dict(dim=512, depth=6), kwargs)


@register_model
def mae_large(**kwargs) -> MaskedAutoencoder:
    return _mae(dict(dim=768, depth=8), kwargs)
