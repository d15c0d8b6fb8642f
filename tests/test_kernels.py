"""Tests for wfm.kernels: reference oracle, fused Triton kernels, complex_attention API.

Without CUDA the Triton kernels run in the CPU interpreter. ``TRITON_INTERPRET=1`` is read when
triton *and* the kernels are decorated, i.e. at import time, so it is set below before anything
imports triton. If some earlier test module already imported triton without it, setting it now
would mix interpreted and compiled functions; then the Triton tests are skipped here and rerun
in a fresh subprocess by ``test_interpreter_suite_in_subprocess``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

_HAS_CUDA = torch.cuda.is_available()
if not _HAS_CUDA and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"
# Triton kernels can run in this process: compiled on CUDA, or interpreted on CPU.
_TRITON_IN_PROCESS = _HAS_CUDA or os.environ.get("TRITON_INTERPRET") == "1"

import torch.nn.functional as F  # noqa: E402

from wfm.kernels import DEFAULT_EPS, complex_attention  # noqa: E402
from wfm.kernels.reference import reference_attention  # noqa: E402

DEVICE = "cuda" if _HAS_CUDA else "cpu"
VARIANTS = ("real", "magnitude", "phase")
FUSED = ("magnitude", "phase")

needs_triton = pytest.mark.skipif(
    not _TRITON_IN_PROCESS,
    reason="triton was imported without TRITON_INTERPRET=1; see test_interpreter_suite_in_subprocess",
)
gpu = [pytest.mark.gpu, pytest.mark.skipif(not _HAS_CUDA, reason="needs a CUDA GPU")]


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------
def halves(b: int, h: int, n_q: int, n_k: int, d: int, seed: int = 0,
           dtype: torch.dtype = torch.float64, device: str = "cpu") -> list[torch.Tensor]:
    """Random (qr, qi, kr, ki, vr, vi)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(b, h, n_q, d)] * 2 + [(b, h, n_k, d)] * 4
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
            for s in shapes]


def forward_backward(fn, inputs: list[torch.Tensor], grad_out: list[torch.Tensor]):
    """Run ``fn(*inputs)`` -> (re, im), backprop ``grad_out``; return outputs and input grads."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    outs = fn(*leaves)
    torch.autograd.backward(outs, [g.to(outs[0].dtype) for g in grad_out])
    return [o.detach() for o in outs], [t.grad for t in leaves]


def rel_err(actual: torch.Tensor, expected: torch.Tensor, floor: float = 0.1) -> float:
    """max |actual - expected| / max |expected|: error relative to the tensor's scale.

    The scale is floored at ``floor`` so gradients that are exactly zero (Nk = 1: the softmax
    is constant, dQ = dK = 0) are compared absolutely instead of dividing rounding noise by 0.
    """
    expected = expected.double()
    scale = expected.abs().max().clamp_min(floor)
    return ((actual.double() - expected).abs().max() / scale).item()


def naive_complex_attention(q, k, v, variant: str, causal: bool, eps: float = DEFAULT_EPS):
    """Independent oracle written with torch complex arithmetic (not the real-halves algebra)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.conj().transpose(-1, -2)) * scale
    mag = torch.sqrt(s.real ** 2 + s.imag ** 2 + eps ** 2)
    logits = s.real if variant == "real" else mag
    if causal:  # top-left aligned
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        logits = logits.masked_fill(~keep, float("-inf"))
    p = torch.softmax(logits, dim=-1)
    w = p * (s / mag) if variant == "phase" else p.to(s.dtype)
    return w @ v


# ------------------------------------------------------------------------------------------
# Reference implementation
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_reference_matches_complex_arithmetic(variant: str, causal: bool) -> None:
    qr, qi, kr, ki, vr, vi = halves(2, 2, 7, 5, 4, seed=1)
    o_r, o_i = reference_attention(qr, qi, kr, ki, vr, vi, variant=variant, causal=causal,
                                   chunk_size=3)
    expected = naive_complex_attention(torch.complex(qr, qi), torch.complex(kr, ki),
                                       torch.complex(vr, vi), variant, causal)
    torch.testing.assert_close(torch.complex(o_r, o_i), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_reference_gradcheck(variant: str, causal: bool) -> None:
    # Nq != Nk and chunk_size < Nq exercise the masking and the checkpointed chunks.
    inputs = [t.requires_grad_() for t in halves(1, 1, 4, 3, 2, seed=2)]

    def fn(*args):
        return reference_attention(*args, variant=variant, causal=causal, chunk_size=2)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_reference_chunking_is_exact(variant: str) -> None:
    inputs = halves(1, 2, 37, 29, 8, seed=3)
    grad_out = halves(1, 2, 37, 37, 8, seed=4)[:2]
    for causal in (False, True):
        full = forward_backward(
            lambda *a: reference_attention(*a, variant=variant, causal=causal, chunk_size=None),
            inputs, grad_out)
        chunked = forward_backward(
            lambda *a: reference_attention(*a, variant=variant, causal=causal, chunk_size=8),
            inputs, grad_out)
        for a, b in zip(full[0] + full[1], chunked[0] + chunked[1]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_q, n_k", [(9, 9), (12, 7), (5, 11)])
@pytest.mark.parametrize("causal", [False, True])
def test_real_variant_is_sdpa_on_concatenated_halves(n_q: int, n_k: int, causal: bool) -> None:
    """softmax(Re QK^H) V == SDPA([Qr,Qi], [Kr,Ki], [Vr,Vi]) with scale 1/sqrt(D), not 1/sqrt(2D)."""
    inputs = halves(2, 3, n_q, n_k, 16, seed=5)
    grad_out = halves(2, 3, n_q, n_q, 16, seed=6)[:2]
    # backend="auto" dispatches "real" to SDPA; the reference computes it explicitly.
    sdpa = forward_backward(
        lambda qr, qi, kr, ki, vr, vi: complex_attention(
            (qr, qi), (kr, ki), (vr, vi), variant="real", causal=causal),
        inputs, grad_out)
    ref = forward_backward(
        lambda *a: reference_attention(*a, variant="real", causal=causal, chunk_size=4),
        inputs, grad_out)
    for a, b in zip(sdpa[0] + sdpa[1], ref[0] + ref[1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # And the concatenation identity itself, spelled out once.
    qr, qi, kr, ki, vr, vi = inputs
    direct = F.scaled_dot_product_attention(
        torch.cat([qr, qi], -1), torch.cat([kr, ki], -1), torch.cat([vr, vi], -1),
        is_causal=causal, scale=1 / 4.0)
    torch.testing.assert_close(torch.cat(sdpa[0], -1), direct, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------
# Fused Triton kernels (interpreter on CPU) vs float64 reference
# ------------------------------------------------------------------------------------------
TRITON_SHAPES = [  # (B, H, Nq, Nk, D): single token, ragged tails, Nq != Nk both ways
    (1, 2, 1, 1, 32),
    (1, 2, 17, 17, 32),
    (2, 2, 33, 17, 32),
    (1, 2, 17, 33, 64),
    (1, 2, 64, 64, 64),
]


def _check_triton_vs_reference(shape, variant, causal, dtype, tol, seed=0, fp32_precision="ieee"):
    b, h, n_q, n_k, d = shape
    inputs = halves(b, h, n_q, n_k, d, seed=seed)
    grad_out = halves(b, h, n_q, n_q, d, seed=seed + 100)[:2]
    ref_out, ref_grads = forward_backward(
        lambda *a: reference_attention(*a, variant=variant, causal=causal, chunk_size=16),
        inputs, grad_out)
    from wfm.kernels.triton_attention import triton_complex_attention

    tri_out, tri_grads = forward_backward(
        lambda *a: triton_complex_attention(*a, variant=variant, causal=causal,
                                            fp32_precision=fp32_precision),
        [t.to(device=DEVICE, dtype=dtype) for t in inputs],
        [g.to(device=DEVICE, dtype=dtype) for g in grad_out])
    names = ["Or", "Oi", "dQr", "dQi", "dKr", "dKi", "dVr", "dVi"]
    for name, actual, expected in zip(names, tri_out + tri_grads, ref_out + ref_grads):
        assert actual.dtype == dtype and actual.shape == expected.shape, name
        assert torch.isfinite(actual).all(), name
        err = rel_err(actual.cpu(), expected)
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol:.0e}"


@needs_triton
@pytest.mark.parametrize("shape", TRITON_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", FUSED)
def test_triton_fp32_matches_reference(shape, variant: str, causal: bool) -> None:
    # fp32 with input_precision="ieee": exact fp32 dots; errors are fp32 rounding only.
    _check_triton_vs_reference(shape, variant, causal, torch.float32, tol=2e-5)


@needs_triton
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", FUSED)
def test_triton_fp16_matches_reference(variant: str, causal: bool) -> None:
    # fp16 operands (P and dS are rounded to fp16 before the dots, as in FlashAttention).
    _check_triton_vs_reference((1, 2, 33, 40, 32), variant, causal, torch.float16, tol=1e-2)


@needs_triton
@pytest.mark.parametrize("variant", FUSED)
def test_triton_via_public_api_and_complex_dtype(variant: str) -> None:
    """complex64 in -> complex64 out through backend='triton'; gradients reach the complex leaf."""
    qr, qi, kr, ki, vr, vi = halves(1, 2, 19, 21, 32, seed=7, dtype=torch.float32, device=DEVICE)
    q = torch.complex(qr, qi).requires_grad_()
    k, v = torch.complex(kr, ki), torch.complex(vr, vi)
    out = complex_attention(q, k, v, variant=variant, causal=True, backend="triton")
    assert out.dtype == torch.complex64
    expected = naive_complex_attention(q.detach().cdouble(), k.cdouble(), v.cdouble(),
                                       variant, causal=True)
    torch.testing.assert_close(out.detach().cdouble(), expected, rtol=1e-4, atol=1e-5)
    out.abs().sum().backward()
    assert q.grad is not None and torch.isfinite(torch.view_as_real(q.grad)).all()
    assert q.grad.imag.abs().max() > 0


# ------------------------------------------------------------------------------------------
# |S| = 0: smoothed magnitude keeps forward and backward finite
# ------------------------------------------------------------------------------------------
def _zero_row_inputs(dtype: torch.dtype, device: str) -> list[torch.Tensor]:
    inputs = halves(1, 2, 20, 18, 32, seed=8, dtype=dtype, device=device)
    for t in inputs[0:2]:  # query row 3 is exactly zero -> S[3, :] == 0
        t[:, :, 3] = 0
    for t in inputs[2:4]:  # key row 5 is exactly zero -> S[:, 5] == 0
        t[:, :, 5] = 0
    return inputs


def _zero_row_backends() -> list:
    params = [pytest.param("reference", torch.float64, id="reference-fp64"),
              pytest.param("reference", torch.float32, id="reference-fp32")]
    params += [pytest.param("triton", dt, id=f"triton-{str(dt)[6:]}", marks=needs_triton)
               for dt in (torch.float32, torch.float16)]
    return params


@pytest.mark.parametrize("backend, dtype", _zero_row_backends())
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", FUSED)
def test_zero_scores_have_no_nan(variant: str, causal: bool, backend: str,
                                 dtype: torch.dtype) -> None:
    device = DEVICE if backend == "triton" else "cpu"
    inputs = [t.requires_grad_() for t in _zero_row_inputs(dtype, device)]
    qr, qi, kr, ki, vr, vi = inputs
    o_r, o_i = complex_attention((qr, qi), (kr, ki), (vr, vi), variant=variant, causal=causal,
                                 backend=backend)
    (o_r.float().square().sum() + o_i.float().sum()).backward()
    for t in [o_r, o_i] + [x.grad for x in inputs]:
        assert torch.isfinite(t).all()
    # Row 3 has S = 0 everywhere: |S|_eps = eps is constant, so softmax is uniform over the
    # visible keys; S/|S|_eps = 0 there, so the phase output is exactly zero.
    n_vis = 4 if causal else kr.shape[2]
    if variant == "phase":
        assert o_r[:, :, 3].abs().max() == 0 and o_i[:, :, 3].abs().max() == 0
    else:
        tol = 1e-2 if dtype == torch.float16 else 1e-5
        expected = vr[:, :, :n_vis].detach().double().mean(dim=2)
        torch.testing.assert_close(o_r[:, :, 3].detach().double(), expected, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------
# Public API: complex dtypes and validation
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("variant", VARIANTS)
def test_complex_dtype_inputs_keep_imaginary_part(variant: str, dtype: torch.dtype) -> None:
    """Unlike eager flex_attention on complex64, the imaginary part is never dropped."""
    gen = torch.Generator().manual_seed(9)
    q, k, v = (torch.randn(2, 2, 6, 8, dtype=dtype, generator=gen) for _ in range(3))
    out = complex_attention(q, k, v, variant=variant, causal=True)
    assert out.dtype == dtype and out.shape == q.shape
    expected = naive_complex_attention(q.cdouble(), k.cdouble(), v.cdouble(), variant, True)
    tol = 1e-5 if dtype == torch.complex64 else 1e-12
    torch.testing.assert_close(out.cdouble(), expected, rtol=tol, atol=tol)
    # Tuple form gives the identical result, as a tuple.
    o_r, o_i = complex_attention((q.real, q.imag), (k.real, k.imag), (v.real, v.imag),
                                 variant=variant, causal=True)
    torch.testing.assert_close(torch.complex(o_r, o_i), out, rtol=0, atol=0)
    # Dropping the imaginary part of q changes the result (it enters Re S and Im S) ...
    q_real_only = torch.complex(q.real, torch.zeros_like(q.real))
    assert not torch.allclose(complex_attention(q_real_only, k, v, variant=variant, causal=True),
                              out, atol=1e-3)
    # ... and the imaginary part of the output is really computed, not zero-filled.
    assert out.imag.abs().max() > 1e-2


def test_complex_dtype_gradients_flow_to_complex_leaves() -> None:
    gen = torch.Generator().manual_seed(10)
    q, k, v = (torch.randn(1, 1, 3, 2, dtype=torch.complex128, generator=gen).requires_grad_()
               for _ in range(3))
    for variant in VARIANTS:
        # Wirtinger-calculus gradcheck through the explicit split and torch.complex recombination.
        assert torch.autograd.gradcheck(
            lambda a, b, c: torch.view_as_real(complex_attention(a, b, c, variant=variant)),
            (q, k, v), eps=1e-6, atol=1e-6)


def _bad_calls() -> list:
    x = torch.randn(1, 2, 4, 32)
    ok = (x, x)
    return [
        pytest.param(lambda: complex_attention(ok, (x, x), (x, x), variant="angle"),
                     ValueError, "variant", id="bad-variant"),
        pytest.param(lambda: complex_attention(ok, ok, ok, backend="cuda"),
                     ValueError, "backend", id="bad-backend"),
        pytest.param(lambda: complex_attention(x, x, x), TypeError, "real tensor", id="real-tensor"),
        pytest.param(lambda: complex_attention((x, x.half()), ok, ok), TypeError,
                     "dtype mismatch between halves", id="half-dtype-mismatch"),
        pytest.param(lambda: complex_attention((x, x[..., :16]), ok, ok), ValueError,
                     "shape mismatch between halves", id="half-shape-mismatch"),
        pytest.param(lambda: complex_attention((x[0], x[0]), ok, ok), ValueError, "rank 4",
                     id="wrong-rank"),
        pytest.param(lambda: complex_attention(ok, (x[:, :1], x[:, :1]), ok), ValueError,
                     "incompatible", id="head-mismatch"),
        pytest.param(lambda: complex_attention(ok, ok, (x[:, :, :3], x[:, :, :3])), ValueError,
                     "must equal k shape", id="v-shape"),
        pytest.param(lambda: complex_attention(ok, ok, (x.half(), x.half())), TypeError,
                     "share one dtype", id="qkv-dtype-mismatch"),
        pytest.param(lambda: complex_attention(torch.complex(x, x), ok, ok), TypeError,
                     "all be complex", id="mixed-forms"),
        pytest.param(lambda: complex_attention(*(3 * [torch.randn(1, 1, 2, 4).to(torch.complex32)])),
                     TypeError, "complex dtype", id="complex32"),
        pytest.param(lambda: complex_attention(*(3 * [(x[..., :24], x[..., :24])]), backend="triton"),
                     ValueError, "head dims", id="triton-head-dim"),
        pytest.param(lambda: complex_attention(*(3 * [(x.double(), x.double())]), backend="triton"),
                     ValueError, "dtypes", id="triton-fp64"),
        pytest.param(lambda: complex_attention(ok, ok, ok, eps=0.0), ValueError, "eps", id="eps"),
        pytest.param(lambda: complex_attention(ok, ok, ok, scale=-0.5), ValueError, "scale must be > 0",
                     id="negative-scale"),
    ]


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("call, exc, match", _bad_calls())
def test_invalid_inputs_raise_clear_errors(call, exc, match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_auto_backend_is_reference_on_cpu() -> None:
    inputs = halves(1, 2, 10, 10, 32, seed=11, dtype=torch.float32)
    q, k, v = (tuple(inputs[i:i + 2]) for i in (0, 2, 4))
    for variant in FUSED:
        auto = complex_attention(q, k, v, variant=variant)
        ref = reference_attention(*inputs, variant=variant)
        assert all(torch.equal(a, b) for a, b in zip(auto, ref))


# ------------------------------------------------------------------------------------------
# Interpreter fallback and real-size GPU checks
# ------------------------------------------------------------------------------------------
@pytest.mark.skipif(_TRITON_IN_PROCESS, reason="Triton tests already ran in this process")
@pytest.mark.slow  # > 20 s on the 2-core CI machine (pytest --durations)
def test_interpreter_suite_in_subprocess() -> None:
    """Rerun the Triton tests in a fresh interpreter where TRITON_INTERPRET=1 precedes triton."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-x",
         "-p", "no:cacheprovider", "-m", "not gpu", "-k", "triton"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


# Runs wfm.kernels.sass_report's compile_one (kernels/sass_report.py; no GPU needed) on the given
# configs; exit 77 when triton has no NVIDIA backend.
_SASS_JOBS = r"""
import json, sys
try:
    import triton.backends.nvidia  # noqa: F401
except ImportError:
    sys.exit(77)
from wfm.kernels.sass_report import compile_one
print(json.dumps([compile_one(tuple(job)) for job in json.loads(sys.argv[1])]))
"""


def _compile_for_sm90(jobs: list, tmp_path: Path) -> list[dict]:
    """Compile kernel configs for an H100 target in a process without the interpreter."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _SASS_JOBS, json.dumps(jobs)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode == 77:
        pytest.skip("triton has no NVIDIA backend here")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_kernels_compile_for_sm90_without_gpu(tmp_path: Path) -> None:
    """The interpreter does not type-check like the compiler: compile the three kernels
    (phase, causal, bf16, 64 x 64, 4 warps) ahead of time for an H100 target."""
    rows = _compile_for_sm90([[k, 64, True, True, [64, 64, 4, 2], "bf16"] for k in ("fwd", "dkdv", "dq")],
                             tmp_path)
    assert [r.get("error") for r in rows] == [None, None, None]
    assert all(r["main_loop"]["hgmma"] > 0 for r in rows)


def test_sass_report_forward_main_loop_does_not_spill(tmp_path: Path) -> None:
    """kernels/sass_report.py on one config: the phase forward at 128 x 32, 8 warps (D = 64,
    bf16, sm_90) runs its main loop on tensor cores without local-memory spill traffic."""
    (row,) = _compile_for_sm90([["fwd", 64, True, False, [128, 32, 8, 3], "bf16"]], tmp_path)
    loop = row["main_loop"]
    assert row["registers"] <= 255 and row["shared_kib"] < 227
    assert loop["hgmma"] >= 6  # 4 score dots + 4 PV dots per tile, each >= 1 wgmma
    assert loop.get("stl", 0) + loop.get("ldl", 0) == 0
    assert loop.get("mufu_rsq", 0) > 0 and loop.get("mufu_sqrt", 0) == 0  # one rsqrt per score


@pytest.mark.parametrize("n_q, n_k", [(4096, 4096), (4000, 4096)])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", FUSED)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.gpu
@pytest.mark.skipif(not _HAS_CUDA, reason="needs a CUDA GPU")
def test_triton_gpu_real_sizes(dtype, variant, causal, head_dim, n_q, n_k) -> None:
    """Compiled kernels at real sizes vs the fp32 reference on the same (rounded) inputs."""
    from wfm.kernels.triton_attention import triton_complex_attention

    inputs = halves(1, 4, n_q, n_k, head_dim, seed=12, dtype=dtype, device="cuda")
    grad_out = halves(1, 4, n_q, n_q, head_dim, seed=13, dtype=dtype, device="cuda")[:2]
    tri = forward_backward(
        lambda *a: triton_complex_attention(*a, variant=variant, causal=causal),
        inputs, grad_out)
    ref = forward_backward(
        lambda *a: reference_attention(*a, variant=variant, causal=causal, chunk_size=512),
        [t.float() for t in inputs], [g.float() for g in grad_out])
    tol = 3e-2 if dtype == torch.bfloat16 else 1e-2
    names = ["Or", "Oi", "dQr", "dQi", "dKr", "dKi", "dVr", "dVi"]
    for name, actual, expected in zip(names, tri[0] + tri[1], ref[0] + ref[1]):
        assert torch.isfinite(actual).all(), name
        err = rel_err(actual, expected)
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol:.0e}"


@pytest.mark.gpu
@pytest.mark.skipif(not _HAS_CUDA, reason="needs a CUDA GPU")
def test_triton_gpu_fp32_tf32() -> None:
    """fp32 inputs with TF32 tensor-core dots: ~1e-3 relative error is expected. Magnitude
    only: phase with TF32 dots hit an illegal memory access on an H200 and is refused."""
    _check_triton_vs_reference((2, 4, 1024, 1024, 64), "magnitude", True, torch.float32,
                               tol=2e-2, fp32_precision="tf32")


@needs_triton
@pytest.mark.parametrize("fp32_precision", ["tf32", "tf32x3"])
def test_phase_with_tf32_dots_is_refused_before_any_launch(fp32_precision: str) -> None:
    from wfm.kernels.triton_attention import triton_complex_attention

    x = torch.randn(1, 2, 4, 32, device=DEVICE)
    with pytest.raises(NotImplementedError, match="illegal memory access"):
        triton_complex_attention(x, x, x, x, x, x, variant="phase", fp32_precision=fp32_precision)


# ------------------------------------------------------------------------------------------
# wfm.kernels.config_check: one autotune config at a time (finds a config that crashes a GPU)
# ------------------------------------------------------------------------------------------
def _config_case(**changes) -> dict:
    case = {"device": DEVICE, "dtype": "fp32", "fp32_precision": "ieee", "variant": "phase", "causal": True,
            "batch": 1, "heads": 2, "seq_len": 17, "head_dim": 32, "others": 0, "tol": 2e-2}
    return {**case, **changes}


@needs_triton
def test_triton_config_check_scores_one_pinned_config_against_the_reference() -> None:
    from wfm.kernels.config_check import OUTPUTS, run_case

    row = run_case("dkdv", 0, _config_case())
    assert row["status"] == "ok" and set(row["errors"]) == set(OUTPUTS)
    assert row["error"] < 1e-5 and set(row["configs"]) == {"fwd", "dkdv", "dq"}
    strict = run_case("dq", 0, _config_case(tol=0.0, variant="magnitude", causal=False))
    assert strict["status"] == "mismatch" and strict["error"] > 0.0


def test_config_check_reports_a_child_that_leaves_no_result_as_crashed(capsys) -> None:
    from wfm.kernels.config_check import check_all, main

    rows = check_all(_config_case(device="cpu"), ["fwd"], timeout=0.01)  # killed before it imports torch
    assert rows and all(r["status"] == "crashed" and "no result" in r["detail"] for r in rows)
    # A child whose run raises reports an error row (here: a device that does not exist).
    assert main(["--child", "fwd", "0", json.dumps(_config_case(device="meta:0"))]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["status"] == "error" and row["detail"]


@needs_triton
def test_triton_bench_records_the_config_each_kernel_ran(tmp_path) -> None:
    """kernels/bench.py --tiny: each of our rows names the autotune config its kernels ran, in
    ``config_check.describe``'s words (the same names the per-config check prints)."""
    from wfm.kernels.bench import main

    out = tmp_path / "b.json"
    main(["--device", DEVICE, "--tiny", "--variants", "phase", "--impls", "triton", "--modes", "fwd",
          "--causal", "true", "--head-dims", "32", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]
    assert rows and all(r["status"] == "ok" for r in rows)
    assert all(r["configs"]["fwd_kernel"].endswith("stages") and " warps, " in r["configs"]["fwd_kernel"]
               for r in rows)
