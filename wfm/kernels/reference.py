"""PyTorch reference implementation of complex-valued attention.

Every complex tensor is carried as a pair of real tensors ``(re, im)`` of shape
``[B, H, N, D]``. With ``S = Q K^H * scale`` (``K^H`` is the conjugate transpose):

    Re S = (Qr Kr^T + Qi Ki^T) * scale
    Im S = (Qi Kr^T - Qr Ki^T) * scale

and the smoothed magnitude ``|S|_eps = sqrt(Re S^2 + Im S^2 + eps^2)``, the variants are

    real:      O = softmax(Re S) V
    magnitude: O = softmax(|S|_eps) V
    phase:     O = (softmax(|S|_eps) * S / |S|_eps) V      (complex weights, phase kept)

``|S|_eps >= eps > 0`` everywhere, so ``S / |S|_eps`` is exactly 0 (not NaN) at ``S = 0``
and every derivative is finite.

Causal masking is *top-left aligned* (the ``is_causal`` convention of
``torch.nn.functional.scaled_dot_product_attention``): query ``i`` sees keys ``j <= i``.
Every query row therefore sees at least key 0, so no row is ever fully masked.

The computation is chunked over query blocks: at most ``chunk_size x Nk`` scores exist at a
time. When autograd is recording, each chunk runs under activation checkpointing so the
saved state is only the inputs and the per-chunk outputs; the scores are recomputed chunk by
chunk in the backward pass. This keeps CPU memory bounded for long sequences, and the
function stays an exact (float64-capable) oracle for the Triton kernels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = ["VARIANTS", "DEFAULT_EPS", "complex_scores", "reference_attention"]

VARIANTS: tuple[str, ...] = ("real", "magnitude", "phase")

#: Smoothing of ``|S|`` (in units of the scaled logits): ``|S|_eps = sqrt(|S|^2 + eps^2)``.
#: It shifts a logit by at most ``eps`` (at ``S = 0``) and bounds ``d(S/|S|)/dS`` by ``1/eps``,
#: which keeps gradients finite even in fp16 (max ~6.5e4).
DEFAULT_EPS: float = 1e-3


def complex_scores(
    qr: Tensor, qi: Tensor, kr: Tensor, ki: Tensor, scale: float
) -> tuple[Tensor, Tensor]:
    """Return ``(Re S, Im S)`` for ``S = Q K^H * scale``; inputs ``[..., N, D]``."""
    s_re = (qr @ kr.transpose(-1, -2) + qi @ ki.transpose(-1, -2)) * scale
    s_im = (qi @ kr.transpose(-1, -2) - qr @ ki.transpose(-1, -2)) * scale
    return s_re, s_im


def _causal_mask(q_start: int, n_q: int, n_k: int, device: torch.device) -> Tensor:
    """Boolean ``[n_q, n_k]`` mask, True where query ``q_start + i`` may see key ``j``."""
    rows = torch.arange(q_start, q_start + n_q, device=device)[:, None]
    cols = torch.arange(n_k, device=device)[None, :]
    return cols <= rows


def _attention_chunk(
    qr: Tensor,
    qi: Tensor,
    kr: Tensor,
    ki: Tensor,
    vr: Tensor,
    vi: Tensor,
    q_start: int,
    variant: str,
    causal: bool,
    scale: float,
    eps: float,
) -> tuple[Tensor, Tensor]:
    """Attention for one block of queries against all keys; materialises ``[.., chunk, Nk]``."""
    s_re, s_im = complex_scores(qr, qi, kr, ki, scale)
    if variant == "real":
        logits = s_re
    else:
        mag = torch.sqrt(s_re * s_re + s_im * s_im + eps * eps)
        logits = mag
    if causal:
        mask = _causal_mask(q_start, qr.shape[-2], kr.shape[-2], qr.device)
        logits = logits.masked_fill(~mask, float("-inf"))
    p = torch.softmax(logits, dim=-1)
    if variant in ("real", "magnitude"):
        return p @ vr, p @ vi
    # phase: complex weights W = P * S/|S|_eps, then O = W V (complex matmul).
    w_re = p * (s_re / mag)
    w_im = p * (s_im / mag)
    return w_re @ vr - w_im @ vi, w_re @ vi + w_im @ vr


def reference_attention(
    qr: Tensor,
    qi: Tensor,
    kr: Tensor,
    ki: Tensor,
    vr: Tensor,
    vi: Tensor,
    *,
    variant: str = "magnitude",
    causal: bool = False,
    scale: float | None = None,
    eps: float = DEFAULT_EPS,
    chunk_size: int | None = 256,
) -> tuple[Tensor, Tensor]:
    """Complex attention on real/imaginary halves, chunked over queries.

    Args:
        qr, qi: query halves ``[B, H, Nq, D]``.
        kr, ki: key halves ``[B, H, Nk, D]``.
        vr, vi: value halves ``[B, H, Nk, D]``.
        variant: ``"real"``, ``"magnitude"`` or ``"phase"`` (see module docstring).
        causal: top-left aligned causal mask (query ``i`` sees keys ``j <= i``).
        scale: logit scale, default ``1/sqrt(D)``.
        eps: smoothing of ``|S|`` (ignored by ``"real"``).
        chunk_size: queries per chunk; ``None`` materialises all ``Nq x Nk`` scores at once
            (no checkpointing), which is what ``torch.compile`` baselines want.

    Returns:
        ``(Or, Oi)``, each ``[B, H, Nq, D]`` in the input dtype.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if scale is None:
        scale = 1.0 / math.sqrt(qr.shape[-1])
    n_q = qr.shape[-2]
    if chunk_size is None or chunk_size >= n_q:
        return _attention_chunk(qr, qi, kr, ki, vr, vi, 0, variant, causal, scale, eps)

    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (qr, qi, kr, ki, vr, vi)
    )
    outs_re, outs_im = [], []
    for start in range(0, n_q, chunk_size):
        stop = min(start + chunk_size, n_q)
        # Causal: keys beyond the last query of the chunk are invisible, so drop them.
        n_k = min(kr.shape[-2], stop) if causal else kr.shape[-2]
        args = (
            qr[..., start:stop, :],
            qi[..., start:stop, :],
            kr[..., :n_k, :],
            ki[..., :n_k, :],
            vr[..., :n_k, :],
            vi[..., :n_k, :],
            start,
            variant,
            causal,
            scale,
            eps,
        )
        if needs_grad:
            # Recompute this chunk's scores in backward instead of keeping them alive.
            o_re, o_im = checkpoint(_attention_chunk, *args, use_reentrant=False)
        else:
            o_re, o_im = _attention_chunk(*args)
        outs_re.append(o_re)
        outs_im.append(o_im)
    return torch.cat(outs_re, dim=-2), torch.cat(outs_im, dim=-2)
