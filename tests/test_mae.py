"""The CSI masked autoencoder: patching, position code, masks, loss, sizes, prediction."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from wfm.data.synthetic import plane_wave_csi
from wfm.models import create_model, list_models
from wfm.models.mae import MaskedAutoencoder
from wfm.models.masking import MaskPolicy, make_mask
from wfm.nn.patching import patch_grid, patchify, unpatchify
from wfm.nn.posenc import SinCos3D, sincos_3d

#: Measured parameter counts at the default patch (4, 4, 4); also in wfm/models/mae.py's docstring.
PARAMS = {
    "mae_tiny": 355_776,
    "mae_little": 1_374_976,
    "mae_small": 5_404_032,
    "mae_base": 21_424_768,
    "mae_large": 57_516_416,
}
PARAMS_COMPLEX = {
    "mae_tiny": 191_296,
    "mae_little": 718_336,
    "mae_small": 2_780_032,
    "mae_base": 10_933_888,
    "mae_large": 29_195_648,
}
WIDTH = {"mae_tiny": 64, "mae_little": 128, "mae_small": 256, "mae_base": 512, "mae_large": 768}


def csi(b: int = 2, shape: tuple[int, int, int] = (8, 8, 16), seed: int = 0) -> torch.Tensor:
    return plane_wave_csi(b, shape, generator=torch.Generator().manual_seed(seed))


def masked_mse(out) -> float:
    """The MAE loss by hand: mean squared error of the predicted patches over the masked tokens."""
    m = out.mask[..., None].float().expand_as(out.pred)
    return float((((out.pred - out.target) ** 2) * m).sum() / m.sum())


# ---------------------------------------------------------------------------- patching
def test_patchify_roundtrip_and_token_order():
    x = torch.randn(2, 8, 4, 12, dtype=torch.complex64)
    p = patchify(x, (2, 2, 3))
    assert p.shape == (2, 4 * 2 * 4, 2 * 2 * 3 * 2)
    assert torch.equal(unpatchify(p, (4, 2, 4), (2, 2, 3)), x)
    # Token 1 is time-patch 0, antenna-patch 0, subcarrier-patch 1 (subcarrier fastest).
    block = x[0, 0:2, 0:2, 3:6]
    assert torch.equal(p[0, 1], torch.view_as_real(block).reshape(-1))


def test_indivisible_shape_names_shape_and_patch():
    with pytest.raises(ValueError, match=r"\(8, 6, 16\).*\(4, 4, 4\).*A"):
        patch_grid((2, 8, 6, 16), (4, 4, 4))
    # The model pads instead (tests/test_mae_prior.py); a shape it truly cannot use is one error.
    model = create_model("mae_tiny")
    assert model.predict(csi(1, (8, 8, 18))).reconstruction.shape == (1, 8, 8, 18)
    with pytest.raises(ValueError, match="cannot predict part of an axis of size 1"):
        model.predict(csi(1, (1, 8, 16)))


# ---------------------------------------------------------------------------- position code
def test_sincos_3d_separates_axes():
    pe = sincos_3d((3, 2, 4), 64).reshape(3, 2, 4, 64)
    dt = 24  # time part is the first 24 dims for width 64
    # The time part depends on the time index only, etc.
    assert torch.equal(pe[1, 0, 0, :dt], pe[1, 1, 3, :dt])
    assert not torch.equal(pe[0, 0, 0, :dt], pe[1, 0, 0, :dt])
    assert torch.equal(pe[0, 1, 0, dt:dt + 20], pe[2, 1, 3, dt:dt + 20])
    assert torch.equal(pe[0, 0, 2, dt + 20:], pe[2, 1, 2, dt + 20:])
    assert torch.unique(pe.reshape(24, 64), dim=0).shape[0] == 24  # every token distinct


def test_position_code_adapts_to_two_grids_in_one_model():
    model = create_model("mae_tiny", patch_size=(2, 2, 4))
    a, b = csi(2, (8, 4, 16)), csi(2, (4, 8, 32), seed=1)
    for x in (a, b, a):
        g = patch_grid(x.shape, model.patch_size)
        out = model(x, make_mask("random", 2, g, 0.5, generator=torch.Generator().manual_seed(0)))
        assert out.pred.shape == (2, math.prod(g), 2 * 2 * 4 * 2) and torch.isfinite(out.loss)
        assert float(out.loss) == pytest.approx(masked_mse(out), rel=1e-5)
    cached = {key[0] for key in model.pos._cache}
    assert cached == {(4, 2, 4), (2, 4, 8)}
    assert not any("pos" in k for k in model.state_dict())  # fixed code: not in checkpoints
    assert SinCos3D(64)((2, 4, 8), torch.device("cpu")).shape == (1, 64, 64)


# ---------------------------------------------------------------------------- masks
@pytest.mark.parametrize("kind", ["random", "temporal", "frequency", "antenna"])
def test_every_mask_kind_counts_and_forward(kind):
    grid = (4, 2, 4)
    mask = make_mask(kind, 3, grid, 0.5, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (3, 32) and mask.dtype == torch.bool
    assert (mask.sum(1) == 16).all()
    model = create_model("mae_tiny", patch_size=(2, 4, 4))
    out = model(csi(3, (8, 8, 16)), mask)
    assert out.pred.shape == (3, 32, 64) and out.nmse.shape == (3,)


def test_temporal_and_frequency_masks_are_exactly_the_tail():
    grid = (4, 2, 5)
    t = make_mask("temporal", 2, grid, 0.5).reshape(2, *grid)
    assert t[:, 2:].all() and not t[:, :2].any()
    f = make_mask("frequency", 2, grid, 0.4).reshape(2, *grid)
    assert f[..., 3:].all() and not f[..., :3].any()
    a = make_mask("antenna", 4, (2, 4, 3), 0.5, generator=torch.Generator().manual_seed(0)).reshape(4, 2, 4, 3)
    per_antenna = a.all(dim=(1, 3))  # an antenna patch is masked at every time and subcarrier
    assert torch.equal(per_antenna, a.any(dim=(1, 3))) and (per_antenna.sum(1) == 2).all()
    # A ratio that would mask everything or nothing is clamped to one patch either way.
    assert make_mask("temporal", 1, (4, 1, 1), 0.99).sum() == 3
    assert make_mask("temporal", 1, (4, 1, 1), 0.01).sum() == 1


def test_mask_policy_cycle_sample_and_errors():
    pol = MaskPolicy()
    kinds = [pol(2, (4, 2, 4), s)[1] for s in range(6)]
    assert kinds == ["random", "temporal", "frequency"] * 2
    m_random, _, r = pol(2, (4, 2, 4), 0)
    assert r == 0.85 and (m_random.sum(1) == round(0.85 * 32)).all()
    sampled = MaskPolicy(mode="sample", weights=[0.0, 1.0, 0.0])
    assert {sampled.choose(s)[0] for s in range(10)} == {"temporal"}
    # Same (seed, step) -> same mask; a different rank -> a different random draw.
    assert torch.equal(pol(4, (4, 2, 4), 3)[0], pol(4, (4, 2, 4), 3)[0])
    assert not torch.equal(pol(4, (4, 2, 4), 3, rank=0)[0], pol(4, (4, 2, 4), 3, rank=1)[0])
    with pytest.raises(ValueError, match="unknown mask kind"):
        MaskPolicy(kinds=["diagonal"], ratios=[0.5])
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        MaskPolicy(kinds=["random"], ratios=[1.0])
    with pytest.raises(ValueError, match="unknown mask kind"):
        make_mask("diagonal", 1, (2, 2, 2), 0.5)


def test_forward_rejects_bad_masks():
    model = create_model("mae_tiny", patch_size=(2, 4, 4))
    x = csi(2, (8, 8, 16))
    uneven = torch.zeros(2, 32, dtype=torch.bool)
    uneven[0, :4] = True
    uneven[1, :5] = True
    with pytest.raises(ValueError, match="same number"):
        model(x, uneven)
    with pytest.raises(ValueError, match="bool"):
        model(x, torch.zeros(2, 31, dtype=torch.bool))


# ---------------------------------------------------------------------------- loss
def test_loss_counts_masked_patches_only_hand_built():
    model = create_model("mae_tiny", patch_size=(1, 1, 1))  # patch = (re, im) of one element
    target = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[False, True, True, False]])
    pred = torch.tensor([[[9.0, 9.0], [0.0, 1.0], [3.0, 1.0], [-7.0, 5.0]]])
    loss, nmse = model.loss(pred, target, mask)
    # masked patches: (0,1)-(0,2) -> mean sq err 0.5; (3,1)-(3,0) -> 0.5  => loss 0.5
    assert loss.item() == pytest.approx(0.5)
    # NMSE over the masked region: (1 + 1) / (4 + 9)
    assert nmse.item() == pytest.approx(2 / 13)
    # Changing the predictions at unmasked patches does not change the loss.
    pred2 = pred.clone()
    pred2[0, 0] = torch.tensor([-100.0, 100.0])
    pred2[0, 3] = torch.tensor([42.0, 0.0])
    loss2, nmse2 = model.loss(pred2, target, mask)
    assert loss2.item() == loss.item() and nmse2.item() == nmse.item()


def test_loss_gradient_ignores_unmasked_outputs():
    model = create_model("mae_tiny", patch_size=(2, 4, 4))
    x = csi(2, (8, 8, 16))
    mask = make_mask("temporal", 2, patch_grid(x.shape, model.patch_size), 0.5)
    out = model(x, mask)
    pred = out.pred.detach().requires_grad_()
    model.loss(pred, out.target, out.mask)[0].backward()
    assert (pred.grad[~mask] == 0).all() and (pred.grad[mask] != 0).any()


def test_sample_norm_makes_prediction_scale_free():
    """Raw CSI at any scale predicts the same (relative) channel: zero-shot on un-normalised data."""
    torch.manual_seed(0)
    model = create_model("mae_tiny", patch_size=(2, 4, 4)).eval()
    x = csi(2, (8, 8, 16))
    x[1] *= 30.0  # samples of very different power in one batch
    a = model.predict(x, "temporal", 0.5)
    b = model.predict(x * 1e-5, "temporal", 0.5)
    torch.testing.assert_close(a.nmse, b.nmse, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b.reconstruction * 1e5, a.reconstruction, rtol=1e-3, atol=1e-3)
    plain = create_model("mae_tiny", patch_size=(2, 4, 4), sample_norm=False).eval()
    assert plain.predict(x, "temporal", 0.5).nmse.shape == (2,)
    # far below any receiver's units (1e-25) the floors used to win: a poor prediction reported as
    # -150 dB; now such windows are predicted at a power of two near 1 and scaled back exactly
    c = model.predict(x * 1e-25, "temporal", 0.5)
    torch.testing.assert_close(c.nmse, a.nmse, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(c.reconstruction * 1e25, a.reconstruction, rtol=1e-3, atol=1e-3)
    visible = ~c.mask
    assert torch.equal(c.reconstruction[visible], (x * 1e-25).to(torch.complex64)[visible])


def test_norm_pix_loss_runs_and_nmse_stays_in_signal_space():
    model = create_model("mae_tiny", patch_size=(2, 4, 4), norm_pix_loss=True)
    x = csi(2, (8, 8, 16))
    out = model(x, make_mask("frequency", 2, patch_grid(x.shape, model.patch_size), 0.5))
    assert torch.isfinite(out.loss) and (out.nmse > 0).all()
    m = out.mask[..., None].float().expand_as(out.pred)
    # The loss is the masked MSE against each target patch normalised to zero mean, unit variance.
    mean, std = out.target.mean(-1, keepdim=True), (out.target.var(-1, keepdim=True) + 1e-6).sqrt()
    assert float(out.loss) == pytest.approx(float((((out.pred - (out.target - mean) / std) ** 2) * m).sum() / m.sum()),
                                            rel=1e-5)
    # The NMSE is that of the reconstructed CSI (prediction de-normalised, times the sample scale)
    # against the input, over the masked patches: signal space, not the loss's space.
    rec, true = patchify(model.reconstruct(out), model.patch_size), patchify(x, model.patch_size)
    by_hand = (((rec - true) ** 2) * m).sum(dim=(1, 2)) / ((true ** 2) * m).sum(dim=(1, 2))
    torch.testing.assert_close(out.nmse, by_hand, rtol=1e-4, atol=0)


# ---------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_sizes_param_counts_and_tiny_forward(name):
    model = create_model(name)
    assert isinstance(model, MaskedAutoencoder) and model.dim == WIDTH[name] == model.decoder_dim
    assert len(model.blocks) == (8 if name == "mae_large" else 6) and len(model.decoder_blocks) == 4
    assert model.num_params() == PARAMS[name]
    assert create_model(name, attention="complex-phase").num_params() == PARAMS_COMPLEX[name]
    if name in ("mae_tiny", "mae_little"):
        x = csi(2, (8, 8, 16))
        out = model(x, make_mask("random", 2, patch_grid(x.shape, model.patch_size), 0.75,
                                 generator=torch.Generator().manual_seed(0)))
        assert out.pred.shape == (2, 16, 128) and torch.isfinite(out.loss)
        assert float(out.loss) == pytest.approx(masked_mse(out), rel=1e-5)


def test_registry():
    assert list_models("mae_*") == sorted(PARAMS)
    with pytest.raises(KeyError, match="unknown model"):
        create_model("mae_huge")
    with pytest.raises(ValueError, match="unknown attention"):
        create_model("mae_tiny", attention="linear")


def test_forward_flops_match_flop_counter():
    model = create_model("mae_tiny", patch_size=(2, 4, 4))
    x = csi(1, (8, 8, 16))
    mask = make_mask("random", 1, patch_grid(x.shape, model.patch_size), 0.75, generator=torch.Generator().manual_seed(0))
    # The math backend decomposes attention into matmuls the counter sees.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x, mask)
    assert model.forward_flops((4, 2, 4), int(mask.sum())) == counter.get_total_flops()


# ---------------------------------------------------------------------------- prediction
def test_predict_returns_reconstruction_and_masked_nmse():
    torch.manual_seed(0)
    model = create_model("mae_tiny", patch_size=(2, 4, 4)).eval()
    x = csi(2, (8, 8, 16))
    p = model.predict(x, "temporal", 0.5)
    assert p.reconstruction.shape == x.shape and p.reconstruction.dtype == torch.complex64
    assert p.mask[:, 4:].all() and not p.mask[:, :4].any()  # the future half of the time steps
    assert torch.equal(p.reconstruction[~p.mask], x[~p.mask])  # the past is passed through
    err = (p.reconstruction - x).abs().pow(2).sum(dim=(1, 2, 3))
    ref = (x.abs().pow(2) * p.mask).sum(dim=(1, 2, 3))
    torch.testing.assert_close(p.nmse, err / ref)
    assert p.nmse_db == pytest.approx(10 * math.log10(p.nmse.mean().item()), abs=1e-4)
    f = model.predict(x, "frequency", 0.25)
    assert f.mask[..., 12:].all() and not f.mask[..., :12].any()
    with pytest.raises(ValueError, match="unknown mask kind"):
        model.predict(x, "future")


def test_tiny_model_overfits_tiny_synthetic_set():
    """A small MAE memorises a fixed batch: the masked loss falls >= 10x and the NMSE of the
    predicted future goes below -10 dB (so it is not just learning to output zeros)."""
    torch.manual_seed(0)
    model = create_model("mae_tiny", patch_size=(2, 2, 2), depth=2, decoder_depth=2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    x = plane_wave_csi(4, (8, 4, 8), num_paths=2, generator=torch.Generator().manual_seed(0))
    mask = make_mask("temporal", 4, patch_grid(x.shape, model.patch_size), 0.5)
    losses, nmse = [], float("inf")
    for _ in range(200):
        out = model(x, mask)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.item())
        nmse = out.nmse.mean().item()
        if losses[-1] < losses[0] / 10 and nmse < 0.1:
            break
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-5:])
    assert nmse < 0.1, nmse


# ---------------------------------------------------------------------------- complex attention
@pytest.mark.parametrize("attention", ["complex-real", "complex-magnitude", "complex-phase"])
def test_complex_attention_variants_forward_backward(attention):
    torch.manual_seed(0)
    model = create_model("mae_tiny", patch_size=(2, 4, 4), attention=attention)
    assert all(type(b).__name__ == "ComplexBlock" for b in [*model.blocks, *model.decoder_blocks])
    x = csi(2, (8, 8, 16))
    out = model(x, make_mask("temporal", 2, patch_grid(x.shape, model.patch_size), 0.5))
    out.loss.backward()
    assert out.pred.shape == (2, 32, 64) and torch.isfinite(out.loss)
    assert float(out.loss) == pytest.approx(masked_mse(out), rel=1e-5)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_complex_attention_is_phase_equivariant_at_init():
    """Rotating every complex token by a global phase rotates the attention sub-layer's output
    the same way (biases are zero at init): the complex path respects CSI's phase symmetry."""
    from wfm.nn.blocks import ComplexBlock

    torch.manual_seed(0)
    block = ComplexBlock(32, 2, variant="phase")
    re, im = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    c, s = math.cos(0.7), math.sin(0.7)
    attn = block.attn(block.norm1((re, im)))
    attn_rot = block.attn(block.norm1((c * re - s * im, s * re + c * im)))
    torch.testing.assert_close(attn_rot[0], c * attn[0] - s * attn[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(attn_rot[1], s * attn[0] + c * attn[1], rtol=1e-4, atol=1e-5)


def test_compile_blocks_keeps_outputs_and_checkpoint_keys():
    """``torch.compile`` of every block (the configs' ``compile: true``): same loss, same
    parameter names, so compiled and eager checkpoints are interchangeable (~15 s on CPU)."""
    torch.manual_seed(0)
    model = create_model("mae_tiny", patch_size=(2, 4, 4), depth=1, decoder_depth=1)
    x = csi(2, (8, 8, 16))
    mask = make_mask("temporal", 2, (4, 2, 4), 0.5)
    keys = list(model.state_dict())
    eager = model(x, mask).loss
    model.compile_blocks()
    compiled = model(x, mask).loss
    compiled.backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    assert list(model.state_dict()) == keys
    assert all(p.grad is not None for p in model.parameters())
