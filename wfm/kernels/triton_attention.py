"""Fused Triton kernels for complex ``magnitude`` and ``phase`` attention (FlashAttention-2 style).

Notation (all real tensors; a complex X is the pair Xr, Xi; ``@`` is a real matmul)::

    A = Re S = (Qr @ Kr^T + Qi @ Ki^T) * scale        [Nq, Nk]
    B = Im S = (Qi @ Kr^T - Qr @ Ki^T) * scale
    M = sqrt(A^2 + B^2 + eps^2)                         smoothed |S|, M >= eps
    P = softmax_rows(M)  (causal: top-left aligned, key j visible to query i iff j <= i)

    magnitude:  Or = P @ Vr,                Oi = P @ Vi
    phase:      Wr = P * A/M,  Wi = P * B/M (complex weights W = P * S/|S|)
                Or = Wr @ Vr - Wi @ Vi,     Oi = Wr @ Vi + Wi @ Vr

Forward (one program per query block and (batch, head)): stream key blocks, keep a running
row max ``m`` and row sum ``l`` of ``exp(M - m)`` (online softmax, base 2), rescale the FP32
accumulators when the max grows, divide once at the end, and save the base-2
log-sum-exp ``lse = m + log2(l)`` per query row. Nothing of size Nq x Nk is ever stored.

Backward (gradients derived in ``kernels/README.md``)::

    delta = rowsum(dOr * Or + dOi * Oi)                 (preprocess kernel)
    magnitude: G = dOr @ Vr^T + dOi @ Vi^T              (= dP)
               dA = P (G - delta) A/M,  dB = P (G - delta) B/M
               dVr = P^T dOr,           dVi = P^T dOi
    phase:     dWr = dOr @ Vr^T + dOi @ Vi^T,  dWi = dOi @ Vr^T - dOr @ Vi^T
               G   = dWr A/M + dWi B/M                  (= dP)
               dA  = P (G - delta) A/M + P (dWr - G A/M) / M
               dB  = P (G - delta) B/M + P (dWi - G B/M) / M
               dVr = Wr^T dOr + Wi^T dOi,    dVi = Wr^T dOi - Wi^T dOr
    dQr = scale (dA Kr - dB Ki),     dQi = scale (dA Ki + dB Kr)
    dKr = scale (dA^T Qr + dB^T Qi), dKi = scale (dA^T Qi - dB^T Qr)

P is recomputed from the saved ``lse``. dK/dV come from a kernel that owns a key block and
loops over query blocks; dQ from a kernel that owns a query block and loops over key blocks.
This recomputes the scores twice but needs no atomics, so results are deterministic.

For the CPU interpreter, ``TRITON_INTERPRET=1`` must be set before ``triton`` itself is first
imported (triton's own ``@jit`` helpers are decorated then) and thus before this module; under
the interpreter each kernel gets exactly one autotune config.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from .reference import DEFAULT_EPS

__all__ = ["INTERPRET", "SUPPORTED_HEAD_DIMS", "SUPPORTED_DTYPES", "complex_attention_bwd",
           "complex_attention_fwd", "triton_complex_attention"]

#: Whether the kernels below were decorated in interpreter mode (read once at import).
INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") == "1"
SUPPORTED_HEAD_DIMS: tuple[int, ...] = (32, 64, 128)
SUPPORTED_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32)

# Softmax runs in base 2 (exp2 is the native instruction): exp(x) = exp2(x * log2(e)).
_LOG2E = tl.constexpr(1.4426950408889634)


def _configs(space: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    """Autotune configs from ``(BLOCK_M, BLOCK_N, num_warps, num_stages)`` tuples.

    A short curated list per kernel (not a full grid): every config is compiled for each
    (variant, causal, head dim, dtype), so a grid would make the first call take minutes.
    Under the interpreter exactly one small config, because it rejects several.
    """
    if INTERPRET:
        return [triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=4, num_stages=1)]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm, bn, w, s in space]


# The spaces keep the configs that kernels/sass_report.py shows spill no registers in the
# main loop on sm_90 (bf16, D = 64; at D = 128 every config spills some, these least). A complex
# tile is two real ones, so tiles are narrower than FlashAttention's: e.g. the forward at
# 64 x 64 with 4 warps spills inside its loop, with 8 warps it does not.
_FWD_SPACE = [(64, 16, 4, 3), (64, 32, 4, 3), (64, 64, 8, 3),
              (128, 16, 8, 3), (128, 32, 8, 3), (128, 64, 8, 3)]
# dK/dV: the key tile holds K, V halves and four FP32 accumulators; short query tiles stream.
_DKDV_SPACE = [(16, 32, 4, 2), (16, 64, 4, 2), (16, 64, 8, 2), (16, 128, 8, 2),
               (32, 64, 8, 2), (32, 128, 8, 1)]
# dQ: the query tile holds Q, dO halves and FP32 dQ; short key tiles stream.
_DQ_SPACE = [(64, 16, 4, 2), (64, 32, 4, 2), (64, 64, 8, 2), (128, 16, 8, 2), (128, 32, 8, 2)]
_AUTOTUNE_KEY = ["N_Q", "N_K", "HEAD_DIM", "PHASE", "CAUSAL"]


# --------------------------------------------------------------------------------------------
# Shared tile math
#
# Register pressure decides the speed of these kernels: a complex tile is two real ones, so a
# program holds twice FlashAttention's accumulators. Hence (checked with kernels/sass_report.py)
# - scores are kept *unscaled* (a = Re QK^H, b = Im QK^H); the scale and log2(e) fold into
#   one constant per tile, and eps into e2 = (eps/scale)^2, so |S|_eps = scale * rho with
#   rho = sqrt(a^2 + b^2 + e2) and S/|S|_eps = (a, b) / rho (scale-free);
# - one rsqrt gives 1/rho, and rho = rho^2 * (1/rho): one special-function op, not sqrt + rcp;
# - every difference of products is an accumulating dot with a negated operand
#   (tl.dot(-x, y, acc)) rather than acc - tl.dot(x, y), which would hold a second FP32 tile.
# --------------------------------------------------------------------------------------------
@triton.jit
def _scores(x1, y1, x2, y2, w1, w2, e2, DOT_PRECISION: tl.constexpr):
    """Unscaled complex scores of a tile: ``a = x1 @ w1 + y1 @ w2``, ``b = x2 @ w1 + y2 @ w2``.

    Returns ``(a, b, rho2, inv)`` with ``rho2 = a^2 + b^2 + e2`` and ``inv = 1/sqrt(rho2)``.
    For ``S = Q K^H``: ``(x1, y1, x2, y2) = (Qr, Qi, Qi, -Qr)``, ``(w1, w2) = (Kr^T, Ki^T)``;
    for its transpose ``S^T``: ``(Kr, Ki, -Ki, Kr)`` and ``(Qr^T, Qi^T)``.
    """
    a = tl.dot(x1, w1, input_precision=DOT_PRECISION)
    a = tl.dot(y1, w2, a, input_precision=DOT_PRECISION)
    b = tl.dot(x2, w1, input_precision=DOT_PRECISION)
    b = tl.dot(y2, w2, b, input_precision=DOT_PRECISION)
    rho2 = a * a + b * b + e2
    return a, b, rho2, tl.math.rsqrt(rho2)


@triton.jit
def _score_grads(p, ur, ui, inv, g_r, g_i, delta, sm_scale, PHASE: tl.constexpr):
    """Gradient of the loss w.r.t. the unscaled scores ``a``, ``b`` of one tile.

    ``(ur, ui) = (a, b) / rho`` (= S/|S|_eps), ``inv = 1/rho``; ``g_r``/``g_i`` are dP
    (magnitude; g_i unused) or dWr/dWi (phase); ``delta`` is broadcast to the tile already.
    ``|S|_eps = scale * rho``, so the softmax path carries ``scale``; the path through the
    scale-free ``S/|S|_eps`` carries ``1/rho``. Elementwise, so transposed tiles work too.
    """
    if PHASE:
        g = g_r * ur + g_i * ui  # dL/dP through W = P * U
        soft = p * (g - delta) * sm_scale  # softmax backward, times d|S|/drho
        p_inv = p * inv
        d_re = soft * ur + p_inv * (g_r - ur * g)  # + path through U = S/|S|
        d_im = soft * ui + p_inv * (g_i - ui * g)
    else:
        soft = p * (g_r - delta) * sm_scale
        d_re = soft * ur
        d_im = soft * ui
    return d_re, d_im


# --------------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------------
@triton.jit
def _fwd_inner(acc_r, acc_i, l_i, m_i, qr, qi, nqr, KR, KI, VR, VI, k_base, stride_kn,
               lo, hi, offs_m, offs_d, N_K, logit_scale, e2,
               PHASE: tl.constexpr, CAUSAL: tl.constexpr, MASKED: tl.constexpr,
               DOT_PRECISION: tl.constexpr, BLOCK_N: tl.constexpr):
    """Online softmax over key blocks ``[lo, hi)``. ``MASKED=False`` only for blocks that are
    entirely in range and causally visible to every row: no masks, no selects."""
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        kt_offs = k_base + cols[None, :] * stride_kn + offs_d[:, None]  # K^T tile [D, BLOCK_N]
        v_offs = k_base + cols[:, None] * stride_kn + offs_d[None, :]
        if MASKED:
            n_valid = cols < N_K
            krt = tl.load(KR + kt_offs, mask=n_valid[None, :], other=0.0)
            kit = tl.load(KI + kt_offs, mask=n_valid[None, :], other=0.0)
        else:
            krt = tl.load(KR + kt_offs)
            kit = tl.load(KI + kt_offs)
        a, b, rho2, inv = _scores(qr, qi, qi, nqr, krt, kit, e2, DOT_PRECISION)
        logits = rho2 * inv * logit_scale  # |S|_eps * log2(e)
        if MASKED:
            valid = n_valid[None, :]
            if CAUSAL:
                valid = valid & (cols[None, :] <= offs_m[:, None])
            logits = tl.where(valid, logits, float("-inf"))
        # Column 0 is visible to every row and comes first, so m_new is finite from block 0.
        m_new = tl.maximum(m_i, tl.max(logits, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(logits - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc_r = acc_r * alpha[:, None]
        acc_i = acc_i * alpha[:, None]
        if MASKED:
            vr = tl.load(VR + v_offs, mask=n_valid[:, None], other=0.0)
            vi = tl.load(VI + v_offs, mask=n_valid[:, None], other=0.0)
        else:
            vr = tl.load(VR + v_offs)
            vi = tl.load(VI + v_offs)
        if PHASE:
            pinv = p * inv
            wr = (pinv * a).to(vr.dtype)
            wi = (pinv * b).to(vr.dtype)
            acc_r = tl.dot(wr, vr, acc_r, input_precision=DOT_PRECISION)
            acc_r = tl.dot(-wi, vi, acc_r, input_precision=DOT_PRECISION)
            acc_i = tl.dot(wr, vi, acc_i, input_precision=DOT_PRECISION)
            acc_i = tl.dot(wi, vr, acc_i, input_precision=DOT_PRECISION)
        else:
            p_lo = p.to(vr.dtype)
            acc_r = tl.dot(p_lo, vr, acc_r, input_precision=DOT_PRECISION)
            acc_i = tl.dot(p_lo, vi, acc_i, input_precision=DOT_PRECISION)
        m_i = m_new
    return acc_r, acc_i, l_i, m_i


@triton.autotune(configs=_configs(_FWD_SPACE), key=_AUTOTUNE_KEY)
@triton.jit
def _fwd_kernel(
    QR, QI, KR, KI, VR, VI, OR, OI, LSE,
    sm_scale, e2,
    stride_qb, stride_qh, stride_qn,
    stride_kb, stride_kh, stride_kn,
    H, N_Q, N_K,
    HEAD_DIM: tl.constexpr, PHASE: tl.constexpr, CAUSAL: tl.constexpr,
    DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    q_base = (off_bh // H).to(tl.int64) * stride_qb + (off_bh % H).to(tl.int64) * stride_qh
    k_base = (off_bh // H).to(tl.int64) * stride_kb + (off_bh % H).to(tl.int64) * stride_kh

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    m_valid = offs_m < N_Q

    q_offs = q_base + offs_m[:, None] * stride_qn + offs_d[None, :]
    qr = tl.load(QR + q_offs, mask=m_valid[:, None], other=0.0)
    qi = tl.load(QI + q_offs, mask=m_valid[:, None], other=0.0)
    nqr = -qr

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc_r = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    acc_i = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    logit_scale = sm_scale * _LOG2E

    # Blocks [0, mid) are in range and (causal, top-left) before this block's first query, so
    # visible to every row; [mid, hi) need masks: the ragged tail and the causal diagonal.
    hi = N_K
    mid = (N_K // BLOCK_N) * BLOCK_N
    if CAUSAL:
        hi = tl.minimum(N_K, (start_m + 1) * BLOCK_M)
        mid = tl.minimum(mid, (start_m * BLOCK_M // BLOCK_N) * BLOCK_N)
    acc_r, acc_i, l_i, m_i = _fwd_inner(
        acc_r, acc_i, l_i, m_i, qr, qi, nqr, KR, KI, VR, VI, k_base, stride_kn, 0, mid,
        offs_m, offs_d, N_K, logit_scale, e2, PHASE, CAUSAL, False, DOT_PRECISION, BLOCK_N)
    acc_r, acc_i, l_i, m_i = _fwd_inner(
        acc_r, acc_i, l_i, m_i, qr, qi, nqr, KR, KI, VR, VI, k_base, stride_kn, mid, hi,
        offs_m, offs_d, N_K, logit_scale, e2, PHASE, CAUSAL, True, DOT_PRECISION, BLOCK_N)

    acc_r = acc_r / l_i[:, None]
    acc_i = acc_i / l_i[:, None]
    tl.store(OR + q_offs, acc_r.to(OR.dtype.element_ty), mask=m_valid[:, None])
    tl.store(OI + q_offs, acc_i.to(OI.dtype.element_ty), mask=m_valid[:, None])
    tl.store(LSE + off_bh.to(tl.int64) * N_Q + offs_m, m_i + tl.log2(l_i), mask=m_valid)


# --------------------------------------------------------------------------------------------
# Backward
# --------------------------------------------------------------------------------------------
@triton.jit
def _bwd_preprocess_kernel(OR, OI, DOR, DOI, DELTA, N_Q, HEAD_DIM: tl.constexpr,
                           BLOCK_M: tl.constexpr):
    """delta_i = sum_d dOr*Or + dOi*Oi = sum_j P_ij dP_ij (FA2's D term); all contiguous."""
    off_bh = tl.program_id(1)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    m_valid = offs_m < N_Q
    offs = off_bh.to(tl.int64) * N_Q * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    o_r = tl.load(OR + offs, mask=m_valid[:, None], other=0.0).to(tl.float32)
    o_i = tl.load(OI + offs, mask=m_valid[:, None], other=0.0).to(tl.float32)
    do_r = tl.load(DOR + offs, mask=m_valid[:, None], other=0.0).to(tl.float32)
    do_i = tl.load(DOI + offs, mask=m_valid[:, None], other=0.0).to(tl.float32)
    delta = tl.sum(o_r * do_r + o_i * do_i, axis=1)
    tl.store(DELTA + off_bh.to(tl.int64) * N_Q + offs_m, delta, mask=m_valid)


@triton.autotune(configs=_configs(_DKDV_SPACE), key=_AUTOTUNE_KEY)
@triton.jit
def _bwd_dkdv_kernel(
    QR, QI, KR, KI, VR, VI, DOR, DOI, LSE, DELTA, DKR, DKI, DVR, DVI,
    sm_scale, e2,
    stride_qb, stride_qh, stride_qn,
    stride_kb, stride_kh, stride_kn,
    H, N_Q, N_K,
    HEAD_DIM: tl.constexpr, PHASE: tl.constexpr, CAUSAL: tl.constexpr,
    DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One key block per program; loop over query blocks. Tiles are transposed: [keys, queries].

    Q, dO (and O) share the ``stride_q*`` layout; K, V, dK, dV share ``stride_k*``.
    """
    start_n = tl.program_id(0) * BLOCK_N
    off_bh = tl.program_id(1)
    q_base = (off_bh // H).to(tl.int64) * stride_qb + (off_bh % H).to(tl.int64) * stride_qh
    k_base = (off_bh // H).to(tl.int64) * stride_kb + (off_bh % H).to(tl.int64) * stride_kh
    row_base = off_bh.to(tl.int64) * N_Q  # LSE / delta are [B*H, Nq]

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    n_valid = offs_n < N_K

    k_offs = k_base + offs_n[:, None] * stride_kn + offs_d[None, :]
    kr = tl.load(KR + k_offs, mask=n_valid[:, None], other=0.0)
    ki = tl.load(KI + k_offs, mask=n_valid[:, None], other=0.0)
    vr = tl.load(VR + k_offs, mask=n_valid[:, None], other=0.0)
    vi = tl.load(VI + k_offs, mask=n_valid[:, None], other=0.0)
    nki = -ki
    nvi = -vi

    dkr = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dki = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dvr = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dvi = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    logit_scale = sm_scale * _LOG2E

    # Causal (top-left): queries before this key block cannot see it.
    lo = 0
    if CAUSAL:
        lo = (start_n // BLOCK_M) * BLOCK_M
    for start_m in range(lo, N_Q, BLOCK_M):
        offs_m = start_m + offs_m0
        m_valid = offs_m < N_Q
        qt_offs = q_base + offs_m[None, :] * stride_qn + offs_d[:, None]  # [D, BLOCK_M]
        qrt = tl.load(QR + qt_offs, mask=m_valid[None, :], other=0.0)
        qit = tl.load(QI + qt_offs, mask=m_valid[None, :], other=0.0)
        # S^T = conj(K Q^H): a^T = Kr Qr^T + Ki Qi^T,  b^T = -Ki Qr^T + Kr Qi^T
        at, bt, rho2, inv = _scores(kr, ki, nki, kr, qrt, qit, e2, DOT_PRECISION)
        lse = tl.load(LSE + row_base + offs_m, mask=m_valid, other=0.0)
        delta = tl.load(DELTA + row_base + offs_m, mask=m_valid, other=0.0)
        valid = n_valid[:, None] & m_valid[None, :]
        if CAUSAL:
            valid = valid & (offs_n[:, None] <= offs_m[None, :])
        pt = tl.where(valid, tl.exp2(rho2 * inv * logit_scale - lse[None, :]), 0.0)
        urt = at * inv
        uit = bt * inv

        do_offs = q_base + offs_m[:, None] * stride_qn + offs_d[None, :]
        do_r = tl.load(DOR + do_offs, mask=m_valid[:, None], other=0.0)
        do_i = tl.load(DOI + do_offs, mask=m_valid[:, None], other=0.0)
        do_rt = tl.trans(do_r)
        do_it = tl.trans(do_i)
        if PHASE:
            wrt = (pt * urt).to(do_r.dtype)
            wit = (pt * uit).to(do_r.dtype)
            # dVr = Wr^T dOr + Wi^T dOi,  dVi = Wr^T dOi - Wi^T dOr
            dvr = tl.dot(wrt, do_r, dvr, input_precision=DOT_PRECISION)
            dvr = tl.dot(wit, do_i, dvr, input_precision=DOT_PRECISION)
            dvi = tl.dot(wrt, do_i, dvi, input_precision=DOT_PRECISION)
            dvi = tl.dot(-wit, do_r, dvi, input_precision=DOT_PRECISION)
            # dWr^T = Vr dOr^T + Vi dOi^T,  dWi^T = Vr dOi^T - Vi dOr^T
            g_r = tl.dot(vr, do_rt, input_precision=DOT_PRECISION)
            g_r = tl.dot(vi, do_it, g_r, input_precision=DOT_PRECISION)
            g_i = tl.dot(vr, do_it, input_precision=DOT_PRECISION)
            g_i = tl.dot(nvi, do_rt, g_i, input_precision=DOT_PRECISION)
        else:
            pt_lo = pt.to(do_r.dtype)
            dvr = tl.dot(pt_lo, do_r, dvr, input_precision=DOT_PRECISION)
            dvi = tl.dot(pt_lo, do_i, dvi, input_precision=DOT_PRECISION)
            g_r = tl.dot(vr, do_rt, input_precision=DOT_PRECISION)  # dP^T
            g_r = tl.dot(vi, do_it, g_r, input_precision=DOT_PRECISION)
            g_i = g_r  # unused for magnitude
        dat, dbt = _score_grads(pt, urt, uit, inv, g_r, g_i, delta[None, :], sm_scale, PHASE)
        dat = dat.to(kr.dtype)
        dbt = dbt.to(kr.dtype)
        qr = tl.trans(qrt)
        qi = tl.trans(qit)
        # dKr = da^T Qr + db^T Qi,  dKi = da^T Qi - db^T Qr
        dkr = tl.dot(dat, qr, dkr, input_precision=DOT_PRECISION)
        dkr = tl.dot(dbt, qi, dkr, input_precision=DOT_PRECISION)
        dki = tl.dot(dat, qi, dki, input_precision=DOT_PRECISION)
        dki = tl.dot(-dbt, qr, dki, input_precision=DOT_PRECISION)

    tl.store(DKR + k_offs, dkr.to(DKR.dtype.element_ty), mask=n_valid[:, None])
    tl.store(DKI + k_offs, dki.to(DKI.dtype.element_ty), mask=n_valid[:, None])
    tl.store(DVR + k_offs, dvr.to(DVR.dtype.element_ty), mask=n_valid[:, None])
    tl.store(DVI + k_offs, dvi.to(DVI.dtype.element_ty), mask=n_valid[:, None])


@triton.autotune(configs=_configs(_DQ_SPACE), key=_AUTOTUNE_KEY)
@triton.jit
def _bwd_dq_kernel(
    QR, QI, KR, KI, VR, VI, DOR, DOI, LSE, DELTA, DQR, DQI,
    sm_scale, e2,
    stride_qb, stride_qh, stride_qn,
    stride_kb, stride_kh, stride_kn,
    H, N_Q, N_K,
    HEAD_DIM: tl.constexpr, PHASE: tl.constexpr, CAUSAL: tl.constexpr,
    DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One query block per program; loop over key blocks. Tiles are [queries, keys]."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    q_base = (off_bh // H).to(tl.int64) * stride_qb + (off_bh % H).to(tl.int64) * stride_qh
    k_base = (off_bh // H).to(tl.int64) * stride_kb + (off_bh % H).to(tl.int64) * stride_kh
    row_base = off_bh.to(tl.int64) * N_Q

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    m_valid = offs_m < N_Q

    q_offs = q_base + offs_m[:, None] * stride_qn + offs_d[None, :]
    qr = tl.load(QR + q_offs, mask=m_valid[:, None], other=0.0)
    qi = tl.load(QI + q_offs, mask=m_valid[:, None], other=0.0)
    do_r = tl.load(DOR + q_offs, mask=m_valid[:, None], other=0.0)
    do_i = tl.load(DOI + q_offs, mask=m_valid[:, None], other=0.0)
    nqr = -qr
    ndo_r = -do_r
    lse = tl.load(LSE + row_base + offs_m, mask=m_valid, other=0.0)
    delta = tl.load(DELTA + row_base + offs_m, mask=m_valid, other=0.0)

    dqr = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    dqi = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    logit_scale = sm_scale * _LOG2E

    hi = N_K
    if CAUSAL:
        hi = tl.minimum(N_K, (start_m + 1) * BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n0
        n_valid = cols < N_K
        kt_offs = k_base + cols[None, :] * stride_kn + offs_d[:, None]  # [D, BLOCK_N]
        krt = tl.load(KR + kt_offs, mask=n_valid[None, :], other=0.0)
        kit = tl.load(KI + kt_offs, mask=n_valid[None, :], other=0.0)
        vrt = tl.load(VR + kt_offs, mask=n_valid[None, :], other=0.0)
        vit = tl.load(VI + kt_offs, mask=n_valid[None, :], other=0.0)
        a, b, rho2, inv = _scores(qr, qi, qi, nqr, krt, kit, e2, DOT_PRECISION)

        valid = m_valid[:, None] & n_valid[None, :]
        if CAUSAL:
            valid = valid & (cols[None, :] <= offs_m[:, None])
        p = tl.where(valid, tl.exp2(rho2 * inv * logit_scale - lse[:, None]), 0.0)
        ur = a * inv
        ui = b * inv

        # magnitude: g_r = dP = dOr Vr^T + dOi Vi^T; phase: g_r = dWr, g_i = dWi.
        g_r = tl.dot(do_r, vrt, input_precision=DOT_PRECISION)
        g_r = tl.dot(do_i, vit, g_r, input_precision=DOT_PRECISION)
        if PHASE:
            g_i = tl.dot(do_i, vrt, input_precision=DOT_PRECISION)
            g_i = tl.dot(ndo_r, vit, g_i, input_precision=DOT_PRECISION)
        else:
            g_i = g_r
        d_re, d_im = _score_grads(p, ur, ui, inv, g_r, g_i, delta[:, None], sm_scale, PHASE)
        d_re = d_re.to(qr.dtype)
        d_im = d_im.to(qr.dtype)
        kr = tl.trans(krt)
        ki = tl.trans(kit)
        # dQr = da Kr - db Ki,  dQi = da Ki + db Kr
        dqr = tl.dot(d_re, kr, dqr, input_precision=DOT_PRECISION)
        dqr = tl.dot(-d_im, ki, dqr, input_precision=DOT_PRECISION)
        dqi = tl.dot(d_re, ki, dqi, input_precision=DOT_PRECISION)
        dqi = tl.dot(d_im, kr, dqi, input_precision=DOT_PRECISION)

    tl.store(DQR + q_offs, dqr.to(DQR.dtype.element_ty), mask=m_valid[:, None])
    tl.store(DQI + q_offs, dqi.to(DQI.dtype.element_ty), mask=m_valid[:, None])


# --------------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------------
def _dot_precision(dtype: torch.dtype, fp32_precision: str) -> str:
    """``tl.dot`` input precision: only matters for fp32 operands (ignored for fp16/bf16)."""
    if fp32_precision not in ("ieee", "tf32", "tf32x3"):
        raise ValueError(f"fp32_precision must be 'ieee', 'tf32' or 'tf32x3', got {fp32_precision!r}")
    return fp32_precision if dtype == torch.float32 else "tf32"


def _empty_outputs(qr: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Contiguous ``(Or, Oi, lse)`` for queries ``qr`` ``[B, H, Nq, D]`` (the fake needs the same)."""
    b, h, n_q, _ = qr.shape
    return (qr.new_empty(qr.shape), qr.new_empty(qr.shape),
            qr.new_empty((b, h, n_q), dtype=torch.float32))


# The kernels are registered as two custom ops (torch.library.custom_op) with fake (meta)
# implementations and an autograd formula, so ``torch.compile`` traces a model through them
# as single graph nodes instead of breaking the graph at an autograd.Function whose forward
# launches Triton. ``custom_op`` rather than ``triton_op``: the op stays opaque to Inductor, so
# the same Python launches the same autotuned kernels eagerly, compiled, on CUDA and in the CPU
# interpreter, and what the CPU tests cover is what a GPU runs. Callers pass contiguous inputs
# (``triton_complex_attention`` does), so the tensors saved for backward are the inputs.
@torch.library.custom_op("wfm::complex_attention_fwd", mutates_args=())
def complex_attention_fwd(qr: Tensor, qi: Tensor, kr: Tensor, ki: Tensor, vr: Tensor, vi: Tensor,
                          phase: bool, causal: bool, scale: float, eps: float,
                          dot_precision: str) -> tuple[Tensor, Tensor, Tensor]:
    """Forward kernel: ``(Or, Oi, lse)``, ``lse`` the base-2 log-sum-exp ``[B, H, Nq]`` (fp32)."""
    qr, qi, kr, ki, vr, vi = (t.contiguous() for t in (qr, qi, kr, ki, vr, vi))
    b, h, n_q, d = qr.shape
    n_k = kr.shape[2]
    o_r, o_i, lse = _empty_outputs(qr)

    def grid(meta):
        return (triton.cdiv(n_q, meta["BLOCK_M"]), b * h)

    _fwd_kernel[grid](
        qr, qi, kr, ki, vr, vi, o_r, o_i, lse,
        scale, (eps / scale) ** 2,
        qr.stride(0), qr.stride(1), qr.stride(2),
        kr.stride(0), kr.stride(1), kr.stride(2),
        h, n_q, n_k,
        HEAD_DIM=d, PHASE=phase, CAUSAL=causal, DOT_PRECISION=dot_precision,
    )
    return o_r, o_i, lse


@complex_attention_fwd.register_fake
def _complex_attention_fwd_fake(qr, qi, kr, ki, vr, vi, phase, causal, scale, eps, dot_precision):
    return _empty_outputs(qr)


@torch.library.custom_op("wfm::complex_attention_bwd", mutates_args=())
def complex_attention_bwd(do_r: Tensor, do_i: Tensor, qr: Tensor, qi: Tensor, kr: Tensor, ki: Tensor,
                          vr: Tensor, vi: Tensor, o_r: Tensor, o_i: Tensor, lse: Tensor,
                          phase: bool, causal: bool, scale: float, eps: float,
                          dot_precision: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward kernels: ``(dQr, dQi, dKr, dKi, dVr, dVi)`` from ``dO`` and the forward's saved state."""
    qr, qi, kr, ki, vr, vi, o_r, o_i = (t.contiguous() for t in (qr, qi, kr, ki, vr, vi, o_r, o_i))
    b, h, n_q, d = qr.shape
    n_k = kr.shape[2]
    # dO must share Q's (contiguous) layout: the kernels index Q, O and dO identically.
    do_r = do_r.contiguous()
    do_i = do_i.contiguous()

    delta = torch.empty_like(lse)
    pre_block = 16 if INTERPRET else 64
    _bwd_preprocess_kernel[(triton.cdiv(n_q, pre_block), b * h)](
        o_r, o_i, do_r, do_i, delta, n_q, HEAD_DIM=d, BLOCK_M=pre_block,
    )

    dqr, dqi = torch.empty_like(qr), torch.empty_like(qi)
    dkr, dki = torch.empty_like(kr), torch.empty_like(ki)
    dvr, dvi = torch.empty_like(vr), torch.empty_like(vi)
    common = dict(HEAD_DIM=d, PHASE=phase, CAUSAL=causal, DOT_PRECISION=dot_precision)
    strides = (qr.stride(0), qr.stride(1), qr.stride(2),
               kr.stride(0), kr.stride(1), kr.stride(2))

    def grid_k(meta):
        return (triton.cdiv(n_k, meta["BLOCK_N"]), b * h)

    _bwd_dkdv_kernel[grid_k](
        qr, qi, kr, ki, vr, vi, do_r, do_i, lse, delta, dkr, dki, dvr, dvi,
        scale, (eps / scale) ** 2, *strides, h, n_q, n_k, **common,
    )

    def grid_q(meta):
        return (triton.cdiv(n_q, meta["BLOCK_M"]), b * h)

    _bwd_dq_kernel[grid_q](
        qr, qi, kr, ki, vr, vi, do_r, do_i, lse, delta, dqr, dqi,
        scale, (eps / scale) ** 2, *strides, h, n_q, n_k, **common,
    )
    return dqr, dqi, dkr, dki, dvr, dvi


@complex_attention_bwd.register_fake
def _complex_attention_bwd_fake(do_r, do_i, qr, qi, kr, ki, vr, vi, o_r, o_i, lse,
                                phase, causal, scale, eps, dot_precision):
    return tuple(t.new_empty(t.shape) for t in (qr, qi, kr, ki, vr, vi))


def _fwd_setup_context(ctx, inputs, output) -> None:
    qr, qi, kr, ki, vr, vi, phase, causal, scale, eps, dot_precision = inputs
    o_r, o_i, lse = output
    ctx.save_for_backward(qr, qi, kr, ki, vr, vi, o_r, o_i, lse)
    ctx.config = (phase, causal, scale, eps, dot_precision)
    ctx.mark_non_differentiable(lse)


def _fwd_backward(ctx, do_r, do_i, _dlse):
    grads = torch.ops.wfm.complex_attention_bwd(do_r, do_i, *ctx.saved_tensors, *ctx.config)
    return (*grads, None, None, None, None, None)


complex_attention_fwd.register_autograd(_fwd_backward, setup_context=_fwd_setup_context)


def triton_complex_attention(
    qr: Tensor, qi: Tensor, kr: Tensor, ki: Tensor, vr: Tensor, vi: Tensor,
    *,
    variant: str = "magnitude",
    causal: bool = False,
    scale: float | None = None,
    eps: float = DEFAULT_EPS,
    fp32_precision: str = "ieee",
) -> tuple[Tensor, Tensor]:
    """Fused complex attention on real/imaginary halves ``[B, H, N, D]`` (differentiable).

    Inputs are assumed validated by :func:`wfm.kernels.complex_attention` (same dtype in
    {fp16, bf16, fp32}, head dim in ``SUPPORTED_HEAD_DIMS``, matching shapes).

    Args:
        variant: ``"magnitude"`` or ``"phase"``.
        causal: top-left aligned causal mask.
        scale: logit scale (> 0), default ``1/sqrt(D)``.
        eps: smoothing of ``|S|``; must match the reference to compare results.
        fp32_precision: ``tl.dot`` precision for fp32 inputs: ``"ieee"`` (exact, default),
            ``"tf32"`` (fast, ~1e-3 relative error) or ``"tf32x3"``; ``"ieee"`` only for
            ``"phase"`` (see below).

    Raises:
        NotImplementedError: ``"phase"`` with fp32 inputs and TF32 dots. On an H200
            (Triton 3.6.0) its dK/dV kernel hit an illegal memory access while autotuning,
            which leaves the CUDA context unusable for the rest of the process; refused
            until it is found and fixed on a GPU (kernels/README.md, "Measured").
    """
    if variant not in ("magnitude", "phase"):
        raise ValueError(f"the Triton kernels implement 'magnitude' and 'phase', got {variant!r}")
    if variant == "phase" and qr.dtype == torch.float32 and fp32_precision != "ieee":
        raise NotImplementedError(
            f"variant='phase' with fp32 inputs and fp32_precision={fp32_precision!r} is refused: its "
            "backward hit an illegal memory access on an H200 (Triton 3.6.0); use "
            "fp32_precision='ieee' or bf16/fp16 inputs")
    if scale is None:
        scale = 1.0 / math.sqrt(qr.shape[-1])
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    o_r, o_i, _ = torch.ops.wfm.complex_attention_fwd(
        *(t.contiguous() for t in (qr, qi, kr, ki, vr, vi)), variant == "phase", bool(causal),
        float(scale), float(eps), _dot_precision(qr.dtype, fp32_precision),
    )
    return o_r, o_i
