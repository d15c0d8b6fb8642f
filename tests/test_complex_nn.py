"""Tests for wfm.nn.complex: ComplexLinear, ComplexLayerNorm, ComplexMultiheadAttention (CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from wfm.kernels import complex_attention
from wfm.nn.complex import ComplexLayerNorm, ComplexLinear, ComplexMultiheadAttention


def rand_pair(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen, dtype=dtype),
            torch.randn(*shape, generator=gen, dtype=dtype))


# ------------------------------------------------------------------------------------------
# ComplexLinear
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_complex_linear_equals_complex_matmul(bias: bool) -> None:
    layer = ComplexLinear(6, 5, bias=bias).double()
    if bias:  # zero-initialised; make it non-trivial
        with torch.no_grad():
            layer.bias_re.normal_()
            layer.bias_im.normal_()
    xr, xi = rand_pair(3, 4, 6, seed=1, dtype=torch.float64)
    yr, yi = layer((xr, xi))
    w = torch.complex(layer.weight_re, layer.weight_im)
    expected = torch.complex(xr, xi) @ w.T
    if bias:
        expected = expected + torch.complex(layer.bias_re, layer.bias_im)
    torch.testing.assert_close(torch.complex(yr, yi), expected.detach(), rtol=1e-12, atol=1e-12)


def test_complex_linear_init_preserves_variance() -> None:
    torch.manual_seed(0)
    layer = ComplexLinear(512, 512)
    x = rand_pair(64, 512, seed=2)  # E|x|^2 = 2
    with torch.no_grad():
        yr, yi = layer(x)
    ratio = (yr.square() + yi.square()).mean() / (x[0].square() + x[1].square()).mean()
    assert 0.9 < ratio.item() < 1.1
    assert layer.bias_re.abs().sum() == 0 and layer.bias_im.abs().sum() == 0


# ------------------------------------------------------------------------------------------
# ComplexLayerNorm
# ------------------------------------------------------------------------------------------
def test_complex_layernorm_normalises_and_is_phase_equivariant() -> None:
    norm = ComplexLayerNorm(32).double()
    xr, xi = rand_pair(4, 7, 32, seed=3, dtype=torch.float64)
    xr, xi = 3 * xr + 1.5, 0.5 * xi - 2  # non-zero mean, unequal re/im scales
    yr, yi = norm((xr, xi))
    z = torch.complex(yr, yi)
    torch.testing.assert_close(z.mean(-1), torch.zeros_like(z.mean(-1)), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.abs().square().mean(-1), torch.ones(4, 7, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    # Rotating every feature by the same phase rotates the output by it (beta = 0 here).
    rot = torch.polar(torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64))
    xz = torch.complex(xr, xi) * rot
    rr, ri = norm((xz.real, xz.imag))
    torch.testing.assert_close(torch.complex(rr, ri), z * rot, atol=1e-12, rtol=0)


def test_complex_layernorm_half_input_keeps_dtype() -> None:
    norm = ComplexLayerNorm(16)
    x = tuple(t.half() for t in rand_pair(2, 3, 16, seed=4))
    yr, yi = norm(x)
    assert yr.dtype == yi.dtype == torch.float16 and torch.isfinite(yr).all()
    # The same numbers as in float32, to half precision.
    fr, fi = norm(tuple(t.float() for t in x))
    torch.testing.assert_close(yr.float(), fr, rtol=0, atol=1e-2)
    torch.testing.assert_close(yi.float(), fi, rtol=0, atol=1e-2)


# ------------------------------------------------------------------------------------------
# ComplexMultiheadAttention
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["real", "magnitude", "phase"])
def test_mha_shapes_and_gradient_flow(variant: str) -> None:
    torch.manual_seed(0)
    mha = ComplexMultiheadAttention(dim=64, num_heads=2, variant=variant)
    xr, xi = (t.requires_grad_() for t in rand_pair(2, 9, 64, seed=5))
    yr, yi = mha((xr, xi))
    assert yr.shape == yi.shape == (2, 9, 64)
    (yr.square().sum() + yi.square().sum()).backward()
    for name, p in mha.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name
    assert xr.grad.abs().max() > 0 and xi.grad.abs().max() > 0


def test_mha_matches_manual_composition() -> None:
    torch.manual_seed(0)
    mha = ComplexMultiheadAttention(dim=32, num_heads=4, variant="phase").double()
    x = rand_pair(2, 5, 32, seed=6, dtype=torch.float64)

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(2, 5, 4, 8).transpose(1, 2)

    q, k, v = (tuple(heads(t) for t in proj(x)) for proj in (mha.q_proj, mha.k_proj, mha.v_proj))
    o_r, o_i = complex_attention(q, k, v, variant="phase", backend="reference")
    merged = tuple(t.transpose(1, 2).reshape(2, 5, 32) for t in (o_r, o_i))
    expected = mha.out_proj(merged)
    for a, b in zip(mha(x), expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["real", "magnitude", "phase"])
def test_mha_causal_ignores_future_tokens(variant: str) -> None:
    torch.manual_seed(0)
    mha = ComplexMultiheadAttention(dim=32, num_heads=2, variant=variant, causal=True)
    xr, xi = rand_pair(1, 8, 32, seed=7)
    yr, yi = mha((xr, xi))
    xr2, xi2 = xr.clone(), xi.clone()
    xr2[:, 5:] += 1.0
    xi2[:, 5:] -= 1.0
    yr2, yi2 = mha((xr2, xi2))
    torch.testing.assert_close(yr2[:, :5], yr[:, :5])
    torch.testing.assert_close(yi2[:, :5], yi[:, :5])
    assert not torch.allclose(yr2[:, 5:], yr[:, 5:])


def test_mha_rejects_bad_configuration_and_input() -> None:
    with pytest.raises(ValueError, match="divisible"):
        ComplexMultiheadAttention(dim=30, num_heads=4)
    with pytest.raises(ValueError, match="variant"):
        ComplexMultiheadAttention(dim=32, num_heads=4, variant="angle")
    mha = ComplexMultiheadAttention(dim=32, num_heads=4)
    with pytest.raises(ValueError, match=r"\[B, N, 32\]"):
        mha(rand_pair(2, 5, 16))


def test_mha_default_signature_is_stable() -> None:
    """The MAE transformer block relies on this constructor and forward signature."""
    mha = ComplexMultiheadAttention(64, 4)
    assert (mha.variant, mha.causal, mha.head_dim) == ("magnitude", False, 16)
    assert len(list(mha.parameters())) == 16  # 4 projections x (Wr, Wi, br, bi)
    n_params = sum(p.numel() for p in mha.parameters())
    assert n_params == 4 * 2 * (64 * 64 + 64)
    x = rand_pair(1, 3, 64, seed=8)
    out = mha(x)
    assert isinstance(out, tuple) and len(out) == 2
    assert math.isfinite(out[0].sum().item())

    # Projections, the reference magnitude attention per head of 16, merge, output projection.
    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(1, 3, 4, 16).transpose(1, 2)

    q, k, v = (tuple(heads(t) for t in proj(x)) for proj in (mha.q_proj, mha.k_proj, mha.v_proj))
    o = complex_attention(q, k, v, variant="magnitude", backend="reference")
    expected = mha.out_proj(tuple(t.transpose(1, 2).reshape(1, 3, 64) for t in o))
    for a, b in zip(out, expected):
        assert a.shape == (1, 3, 64)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
