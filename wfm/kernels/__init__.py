"""Complex-valued attention: one public entry point, :func:`complex_attention`.

Complex tensors can be passed either as a single complex tensor (complex64/complex128) or
as a ``(re, im)`` pair of real tensors; the output uses the same form. PyTorch has no safe
fallback here: ``scaled_dot_product_attention`` rejects complex inputs and eager
``flex_attention`` on complex64 silently drops the imaginary part, so complex tensors are
always split into real halves explicitly before any kernel sees them.

Backends:
    * ``"triton"``: fused FlashAttention-2 style kernels (``magnitude``/``phase``) on CUDA,
      or on CPU when ``TRITON_INTERPRET=1`` was set before the kernels were imported.
    * ``"reference"``: chunked PyTorch implementation (any device/dtype, float64 included).
    * ``"auto"``: Triton for CUDA tensors it supports, the reference otherwise.

The ``real`` variant is ordinary attention on concatenated halves and always runs through
``torch.nn.functional.scaled_dot_product_attention`` unless ``backend="reference"``.
"""

from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .reference import DEFAULT_EPS, VARIANTS, reference_attention

__all__ = ["complex_attention", "ComplexInput", "DEFAULT_EPS", "VARIANTS", "BACKENDS"]

ComplexInput = Union[Tensor, tuple[Tensor, Tensor]]
BACKENDS: tuple[str, ...] = ("auto", "triton", "reference")

_REAL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_COMPLEX_DTYPES = (torch.complex64, torch.complex128)


def _split(x: ComplexInput, name: str) -> tuple[Tensor, Tensor, bool]:
    """Return ``(re, im, was_complex)`` for a complex tensor or a ``(re, im)`` pair."""
    if isinstance(x, Tensor):
        if not x.is_complex():
            raise TypeError(
                f"{name} is a real tensor of dtype {x.dtype}; pass a complex tensor "
                f"(complex64/complex128) or a (re, im) tuple of real tensors"
            )
        if x.dtype not in _COMPLEX_DTYPES:
            raise TypeError(f"{name}: complex dtype {x.dtype} unsupported; use {_COMPLEX_DTYPES}")
        # Explicit split: never let a kernel see (and drop the imaginary part of) a complex tensor.
        return x.real, x.imag, True
    if isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(t, Tensor) for t in x):
        re, im = x
        for part, t in (("re", re), ("im", im)):
            if t.is_complex() or t.dtype not in _REAL_DTYPES:
                raise TypeError(f"{name}.{part} must be a real float tensor, got {t.dtype}")
        if re.dtype != im.dtype:
            raise TypeError(f"{name}: dtype mismatch between halves: {re.dtype} vs {im.dtype}")
        if re.shape != im.shape:
            raise ValueError(f"{name}: shape mismatch between halves: {tuple(re.shape)} vs "
                             f"{tuple(im.shape)}")
        if re.device != im.device:
            raise ValueError(f"{name}: device mismatch between halves: {re.device} vs {im.device}")
        return re, im, False
    raise TypeError(f"{name} must be a complex tensor or a (re, im) tuple of tensors, got {type(x)}")


def _validate(qr: Tensor, kr: Tensor, vr: Tensor, qi: Tensor, ki: Tensor, vi: Tensor) -> None:
    for name, t in (("q", qr), ("k", kr), ("v", vr)):
        if t.dim() != 4:
            raise ValueError(f"{name} must have rank 4 [B, H, N, D], got shape {tuple(t.shape)}")
        if t.shape[2] == 0 or t.shape[3] == 0:
            raise ValueError(f"{name} has an empty sequence or head dim: {tuple(t.shape)}")
    b, h, _, d = qr.shape
    if kr.shape[0] != b or kr.shape[1] != h or kr.shape[3] != d:
        raise ValueError(f"k shape {tuple(kr.shape)} incompatible with q shape {tuple(qr.shape)}: "
                         f"expected [{b}, {h}, Nk, {d}]")
    if vr.shape != kr.shape:
        raise ValueError(f"v shape {tuple(vr.shape)} must equal k shape {tuple(kr.shape)}")
    dtypes = {t.dtype for t in (qr, qi, kr, ki, vr, vi)}
    if len(dtypes) != 1:
        raise TypeError(f"q, k, v must share one dtype, got {sorted(map(str, dtypes))}")
    devices = {t.device for t in (qr, qi, kr, ki, vr, vi)}
    if len(devices) != 1:
        raise ValueError(f"q, k, v must be on one device, got {sorted(map(str, devices))}")


def _triton_module():
    """Import the kernels lazily: importing triton is slow, and absent on some platforms."""
    try:
        from . import triton_attention
    except ImportError as err:  # pragma: no cover - depends on the platform
        raise RuntimeError(f"backend='triton' needs the triton package: {err}") from err
    return triton_attention


def _triton_unsupported_reason(q: Tensor) -> str | None:
    """Why the Triton kernels cannot take ``q`` (None when they can)."""
    try:
        ta = _triton_module()
    except RuntimeError as err:
        return str(err)
    if q.dtype not in ta.SUPPORTED_DTYPES:
        return f"backend='triton' supports dtypes {ta.SUPPORTED_DTYPES}, got {q.dtype}"
    if q.shape[-1] not in ta.SUPPORTED_HEAD_DIMS:
        return f"backend='triton' supports head dims {ta.SUPPORTED_HEAD_DIMS}, got {q.shape[-1]}"
    if q.device.type != "cuda" and not ta.INTERPRET:
        return (f"backend='triton' needs CUDA tensors (got {q.device}); on CPU set "
                f"TRITON_INTERPRET=1 before anything imports triton (CPU interpreter)")
    return None


def _sdpa_real(qr, qi, kr, ki, vr, vi, causal: bool, scale: float) -> tuple[Tensor, Tensor]:
    """softmax(Re S) V as real SDPA: [Qr, Qi] . [Kr, Ki] = Qr Kr^T + Qi Ki^T = Re(Q K^H)."""
    d = qr.shape[-1]
    out = F.scaled_dot_product_attention(
        torch.cat([qr, qi], dim=-1),
        torch.cat([kr, ki], dim=-1),
        torch.cat([vr, vi], dim=-1),
        is_causal=causal,  # top-left aligned, same convention as our kernels
        scale=scale,  # explicit: SDPA would default to 1/sqrt(2D) for the concatenated dim
    )
    return out[..., :d], out[..., d:]


def complex_attention(
    q: ComplexInput,
    k: ComplexInput,
    v: ComplexInput,
    *,
    variant: str = "magnitude",
    causal: bool = False,
    scale: float | None = None,
    backend: str = "auto",
    eps: float = DEFAULT_EPS,
) -> ComplexInput:
    """Complex-valued attention with ``S = Q K^H * scale``.

    Args:
        q: queries ``[B, H, Nq, D]``: complex tensor or ``(re, im)`` real tensors.
        k: keys ``[B, H, Nk, D]``, same form and dtype as ``q``.
        v: values ``[B, H, Nk, D]``, same form and dtype as ``q``.
        variant: ``"real"`` softmax(Re S) V; ``"magnitude"`` softmax(|S|) V;
            ``"phase"`` (softmax(|S|) * S/|S|) V.
        causal: top-left aligned causal mask (query ``i`` sees keys ``j <= i``), as
            ``scaled_dot_product_attention(is_causal=True)``.
        scale: logit scale ``> 0``, default ``1/sqrt(D)``.
        backend: ``"auto"``, ``"triton"`` or ``"reference"``.
        eps: ``|S|`` is computed as ``sqrt(Re^2 + Im^2 + eps^2)`` and ``S/|S|`` uses the same
            smoothed magnitude, so both are finite (``S/|S| = 0``) at ``S = 0``.

    Returns:
        The output ``[B, H, Nq, D]`` in the input form: a complex tensor if ``q`` was one,
        else an ``(re, im)`` tuple.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    qr, qi, q_complex = _split(q, "q")
    kr, ki, k_complex = _split(k, "k")
    vr, vi, v_complex = _split(v, "v")
    if not (q_complex == k_complex == v_complex):
        raise TypeError("q, k, v must all be complex tensors or all be (re, im) tuples")
    _validate(qr, kr, vr, qi, ki, vi)
    if scale is None:
        scale = 1.0 / math.sqrt(qr.shape[-1])
    if not scale > 0:  # also rejects NaN; the kernels fold scale into |S| = scale * rho
        raise ValueError(f"scale must be > 0, got {scale}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0 (it keeps S/|S| finite at S = 0), got {eps}")

    halves = (qr, qi, kr, ki, vr, vi)
    if variant == "real" and backend != "reference":
        o_r, o_i = _sdpa_real(*halves, causal=causal, scale=scale)
    else:
        use_triton = False
        if variant != "real" and backend == "triton":
            reason = _triton_unsupported_reason(qr)
            if reason is not None:
                raise ValueError(reason)
            use_triton = True
        elif variant != "real" and backend == "auto" and qr.device.type == "cuda":
            use_triton = _triton_unsupported_reason(qr) is None
        if use_triton:
            o_r, o_i = _triton_module().triton_complex_attention(
                *halves, variant=variant, causal=causal, scale=scale, eps=eps)
        else:
            o_r, o_i = reference_attention(
                *halves, variant=variant, causal=causal, scale=scale, eps=eps)

    if q_complex:
        return torch.complex(o_r, o_i)
    return o_r, o_i
