"""Pre-norm transformer blocks (timm/nanoGPT style), real and complex.

``Block`` is the usual ``x + attn(norm(x)); x + mlp(norm(x))`` with PyTorch
``F.scaled_dot_product_attention`` (FlashAttention / memory-efficient kernels on GPU).

``ComplexBlock`` treats a real token of width ``dim`` as a complex token of width ``dim/2``
(first half real, second half imaginary) and uses complex linear layers and complex attention
from ``wfm.nn.complex`` (``ComplexLinear``, ``ComplexLayerNorm``, ``ComplexMultiheadAttention``,
the last backed by the Triton kernels in ``wfm.kernels``). Keeping the residual stream as a real ``[re | im]``
tensor lets the rest of the model (embedding, position code, decoder head) stay identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wfm.nn.complex import ComplexLayerNorm, ComplexLinear, ComplexMultiheadAttention, ComplexPair

ATTENTION_KINDS = ("sdpa", "complex-real", "complex-magnitude", "complex-phase")


class Attention(nn.Module):
    """Multi-head self-attention with fused QKV projection and SDPA."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # [B, H, N, d/H]
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ComplexMlp(nn.Module):
    """Complex MLP: ComplexLinear -> split GELU (on real and imaginary parts) -> ComplexLinear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = ComplexLinear(dim, hidden)
        self.fc2 = ComplexLinear(hidden, dim)

    def forward(self, x: ComplexPair) -> ComplexPair:
        re, im = self.fc1(x)
        return self.fc2((F.gelu(re), F.gelu(im)))


class ComplexBlock(nn.Module):
    """Pre-norm block on complex tokens stored as a real ``[re | im]`` stream of width ``dim``.

    The token is ``dim/2`` complex features. ``variant`` is the complex attention score:
    ``real`` (softmax(Re S)), ``magnitude`` (softmax(|S|)) or ``phase`` (softmax(|S|) * S/|S|);
    see ``wfm/kernels``. Norms are ``ComplexLayerNorm`` (they commute with a global phase
    rotation, the natural symmetry of CSI). The fused Triton kernels need a head dim of 32, 64
    or 128 complex features (``dim / 2 / num_heads``: mae_base and mae_large); other sizes run
    the PyTorch reference.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0, variant: str = "real") -> None:
        super().__init__()
        if dim % 2 != 0 or (dim // 2) % num_heads != 0:
            raise ValueError(
                f"complex attention needs width/2 = {dim / 2} divisible by num_heads {num_heads}"
            )
        half = dim // 2
        self.norm1 = ComplexLayerNorm(half)
        self.attn = ComplexMultiheadAttention(half, num_heads, variant)
        self.norm2 = ComplexLayerNorm(half)
        self.mlp = ComplexMlp(half, int(half * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        re, im = x.chunk(2, dim=-1)
        re_a, im_a = self.attn(self.norm1((re, im)))
        re, im = re + re_a, im + im_a
        re_m, im_m = self.mlp(self.norm2((re, im)))
        return torch.cat([re + re_m, im + im_m], dim=-1)


def make_block(dim: int, num_heads: int, mlp_ratio: float, attention: str) -> nn.Module:
    """Build a ``Block`` for ``attention='sdpa'`` or a ``ComplexBlock`` for ``complex-*``."""
    if attention == "sdpa":
        return Block(dim, num_heads, mlp_ratio)
    if attention in ATTENTION_KINDS:
        return ComplexBlock(dim, num_heads, mlp_ratio, variant=attention.removeprefix("complex-"))
    raise ValueError(f"unknown attention {attention!r}; choose one of {', '.join(ATTENTION_KINDS)}")
