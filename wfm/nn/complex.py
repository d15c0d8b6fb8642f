"""Complex-valued layers on ``(re, im)`` pairs of real tensors.

Complex activations are carried as two real tensors of the same shape instead of a complex
dtype: autocast, fused optimizers, DDP and the Triton kernels all work on real tensors, and
no op can silently drop an imaginary part.

* :class:`ComplexLinear`: ``y = x W^T + b`` with complex ``W`` and ``b``.
* :class:`ComplexLayerNorm`: layer norm on the complex features (see its docstring).
* :class:`ComplexMultiheadAttention`: self-attention with complex q/k/v/out projections
  and :func:`wfm.kernels.complex_attention` (Triton on CUDA, PyTorch reference elsewhere).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from wfm.kernels import complex_attention

__all__ = ["ComplexPair", "ComplexLinear", "ComplexLayerNorm", "ComplexMultiheadAttention"]

#: A complex tensor as ``(real part, imaginary part)``, both real and of equal shape.
ComplexPair = tuple[Tensor, Tensor]


class ComplexLinear(nn.Module):
    """Complex affine map ``y = x W^T + b`` on ``(re, im)`` pairs ``[..., in_features]``.

    With ``W = Wr + i Wi``: ``Re y = xr Wr^T - xi Wi^T + br`` and
    ``Im y = xr Wi^T + xi Wr^T + bi``.

    Init: ``Wr, Wi ~ N(0, 1 / (2 * in_features))`` so ``E|W_jk|^2 = 1 / in_features`` and a
    unit-variance complex input gives a unit-variance complex output (the complex analogue of
    LeCun init, cf. Trabelsi et al., "Deep Complex Networks", 2018). Bias starts at zero.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight_re = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_im = nn.Parameter(torch.empty(out_features, in_features))
        if bias:
            self.bias_re: nn.Parameter | None = nn.Parameter(torch.empty(out_features))
            self.bias_im: nn.Parameter | None = nn.Parameter(torch.empty(out_features))
        else:
            self.register_parameter("bias_re", None)
            self.register_parameter("bias_im", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = 1.0 / math.sqrt(2.0 * self.in_features)
        nn.init.normal_(self.weight_re, std=std)
        nn.init.normal_(self.weight_im, std=std)
        if self.bias_re is not None:
            nn.init.zeros_(self.bias_re)
            nn.init.zeros_(self.bias_im)

    def forward(self, x: ComplexPair) -> ComplexPair:
        xr, xi = x
        # Four real GEMMs (not Gauss's three): equally fast at these sizes and better rounding.
        yr = xr @ self.weight_re.T - xi @ self.weight_im.T
        yi = xr @ self.weight_im.T + xi @ self.weight_re.T
        if self.bias_re is not None:
            # In the products' dtype, as nn.Linear under autocast: a bf16 product plus an fp32 bias
            # would promote q, k, v to fp32 and keep attention off its bf16 kernels.
            yr = yr + self.bias_re.to(yr.dtype)
            yi = yi + self.bias_im.to(yi.dtype)
        return yr, yi

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias_re is not None}"


class ComplexLayerNorm(nn.Module):
    """Layer norm over the last dim of complex features ``z = (re, im)``.

    ``z_hat = (z - mean(z)) / sqrt(mean(|z - mean(z)|^2) + eps)`` followed by a real
    per-feature gain and a complex per-feature bias: ``y = gamma * z_hat + beta``.

    Why this choice rather than whitening the 2x2 covariance of (re, im) (Trabelsi et al.):
    it is cheap, and it commutes with a global phase rotation ``z -> e^{i theta} z`` (for
    ``beta = 0``), which is the natural symmetry of channel state information, where the
    absolute phase carries no information. A real gain keeps that property; a complex gain
    would only add a learned global rotation, which the next ComplexLinear can absorb.
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-5,
                 elementwise_affine: bool = True) -> None:
        super().__init__()
        self.normalized_shape = normalized_shape
        self.eps = eps
        if elementwise_affine:
            self.weight: nn.Parameter | None = nn.Parameter(torch.ones(normalized_shape))
            self.bias_re: nn.Parameter | None = nn.Parameter(torch.zeros(normalized_shape))
            self.bias_im: nn.Parameter | None = nn.Parameter(torch.zeros(normalized_shape))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias_re", None)
            self.register_parameter("bias_im", None)

    def forward(self, x: ComplexPair) -> ComplexPair:
        xr, xi = x
        # Statistics in at least fp32, even for half inputs (like nn.LayerNorm under autocast).
        stat_dtype = torch.promote_types(xr.dtype, torch.float32)
        xr32, xi32 = xr.to(stat_dtype), xi.to(stat_dtype)
        cr = xr32 - xr32.mean(dim=-1, keepdim=True)
        ci = xi32 - xi32.mean(dim=-1, keepdim=True)
        var = (cr * cr + ci * ci).mean(dim=-1, keepdim=True)
        inv = torch.rsqrt(var + self.eps)
        yr, yi = cr * inv, ci * inv
        if self.weight is not None:
            yr = yr * self.weight + self.bias_re
            yi = yi * self.weight + self.bias_im
        return yr.to(xr.dtype), yi.to(xi.dtype)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, " \
               f"elementwise_affine={self.weight is not None}"


class ComplexMultiheadAttention(nn.Module):
    """Multi-head self-attention on complex tokens ``(re, im)`` of shape ``[B, N, dim]``.

    q, k, v and the output projection are :class:`ComplexLinear` layers; the attention is
    :func:`wfm.kernels.complex_attention` with ``variant`` ``"magnitude"`` (softmax(|QK^H|)V),
    ``"phase"`` (phase-preserving complex weights) or ``"real"`` (softmax(Re QK^H)V).

    Args:
        dim: model width (complex features per token); must be divisible by ``num_heads``.
        num_heads: number of heads; head dim ``dim // num_heads`` should be 32, 64 or 128 for
            the fused Triton kernels (other sizes fall back to the PyTorch reference).
        variant: attention variant, see above.
        causal: top-left aligned causal mask.
        bias: whether the projections have (complex) biases.
        backend: passed to :func:`complex_attention` (``"auto"``: Triton on CUDA).
    """

    def __init__(self, dim: int, num_heads: int, variant: str = "magnitude",
                 causal: bool = False, bias: bool = True, backend: str = "auto") -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        if variant not in ("real", "magnitude", "phase"):
            raise ValueError(f"variant must be 'real', 'magnitude' or 'phase', got {variant!r}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.variant = variant
        self.causal = causal
        self.backend = backend
        self.q_proj = ComplexLinear(dim, dim, bias=bias)
        self.k_proj = ComplexLinear(dim, dim, bias=bias)
        self.v_proj = ComplexLinear(dim, dim, bias=bias)
        self.out_proj = ComplexLinear(dim, dim, bias=bias)

    def _heads(self, x: ComplexPair) -> ComplexPair:
        """``[B, N, dim]`` -> ``[B, H, N, head_dim]`` for both halves."""
        b, n, _ = x[0].shape
        return tuple(t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2) for t in x)

    def forward(self, x: ComplexPair) -> ComplexPair:
        xr, xi = x
        if xr.dim() != 3 or xr.shape != xi.shape or xr.shape[-1] != self.dim:
            raise ValueError(f"expected (re, im) of shape [B, N, {self.dim}], got "
                             f"{tuple(xr.shape)} and {tuple(xi.shape)}")
        q = self._heads(self.q_proj(x))
        k = self._heads(self.k_proj(x))
        v = self._heads(self.v_proj(x))
        o_r, o_i = complex_attention(q, k, v, variant=self.variant, causal=self.causal,
                                     backend=self.backend)
        b, _, n, _ = o_r.shape
        o = tuple(t.transpose(1, 2).reshape(b, n, self.dim) for t in (o_r, o_i))
        return self.out_proj(o)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, variant={self.variant!r}, " \
               f"causal={self.causal}"
