"""Nothing in a training step forces a slow GPU path (issue 18, item 3), checked on the CPU.

* The causal model hides padded tokens without a dense ``[B, 1, N, N]`` mask (valid tokens are
  sorted to the front, SDPA runs with ``is_causal=True``): its outputs on valid tokens are those
  of the dense mask, forecasts bit for bit; every SDPA call of a bf16 training step is one that
  CUDA's FlashAttention takes (``wfm.kernels.dispatch.flash_blockers``), and the step reads
  nothing back to the host (``record_host_syncs``).
* Complex attention under autocast gets bf16 q, k, v (the fast kernels), not fp32.
* On a GPU (``gpu`` marker): the same step under ``sdpa_kernel(FLASH_ATTENTION)`` and
  ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import pytest
import torch

from wfm.kernels.dispatch import SDPACall, flash_blockers, record_host_syncs, record_sdpa
from wfm.models.registry import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _dense_mask_blocks(model, tok: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``CausalForecaster._run_blocks`` as it was: a dense causal mask hiding padded keys."""
    n = valid.shape[1]
    attn_mask = None
    if not bool(valid.all()):
        causal = torch.ones(n, n, dtype=torch.bool, device=tok.device).tril()
        attn_mask = (causal[None] & valid[:, None, :]) | torch.eye(n, dtype=torch.bool, device=tok.device)[None]
        attn_mask = attn_mask[:, None]
    for blk in model.blocks:
        tok = blk(tok, attn_mask)
    return tok


def _randomised(seed: int, **kwargs):
    torch.manual_seed(seed)
    model = create_model("causal_tiny", dim=32, depth=2, num_heads=2, max_context=64, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a trained-looking model: the zero-initialised head would hide differences
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


MODELS = {
    "trend": dict(),
    "mix-coarse-guard": dict(prior="mix", coarse_len=16, max_coarse=4, guard=True, quantiles=(0.1, 0.9),
                             horizon_patches=2),
}


def _padded_batch(model, width: int, seed: int):
    """A training-like batch: random left padding (whole padded tokens), context lengths."""
    gen = torch.Generator().manual_seed(seed)
    b = 6
    values = torch.randn(b, width, generator=gen).cumsum(1) * 0.2
    start = torch.randint(0, width - 2, (b,), generator=gen)
    start[0] = 0
    observed = torch.arange(width)[None] >= start[:, None]
    ctx = torch.clamp(start + (width - start) // 2, max=width - 1)
    return values * observed, observed, torch.full((b,), 60.0), ctx


@pytest.mark.parametrize("kind", list(MODELS))
def test_padding_without_a_mask_matches_the_dense_mask(kind: str, monkeypatch) -> None:
    model = _randomised(1, **MODELS[kind])
    gen = torch.Generator().manual_seed(0)
    contexts = {n: torch.randn(3, n, generator=gen).cumsum(1) * 0.3 + 5.0
                for n in (1, 3, 8, 13, 100, 300, 1500)}  # shorter than a patch ... longer than max_context
    interval = torch.tensor([0.001, 60.0, 600.0])
    batches = [_padded_batch(model, w * model.patch_len, seed=w) for w in (4, 40, 200)]

    def run():
        with torch.no_grad():
            fc = {n: model.forecast(c, interval, horizon=20) for n, c in contexts.items()}
            tr = [model.loss(*batch, scaled=True)[:2] for batch in batches]
        return fc, tr

    new_fc, new_tr = run()
    monkeypatch.setattr(model, "_run_blocks", lambda tok, valid: _dense_mask_blocks(model, tok, valid))
    old_fc, old_tr = run()
    for n in contexts:  # forecasts see no padded token: bit for bit
        assert torch.equal(new_fc[n], old_fc[n]), n
    padded = 0
    for (values, observed, _, _), (new_loss, new), (old_loss, old) in zip(batches, new_tr, old_tr):
        p, nt = model.patch_len, new.ahead.shape[1]  # outputs: the last nt (fine) tokens
        valid = observed[:, -nt * p:].reshape(len(values), nt, p).any(-1)
        padded += int((~valid).sum())
        torch.testing.assert_close(new.ahead[valid], old.ahead[valid], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(new_loss, old_loss, rtol=1e-6, atol=1e-6)
        assert torch.isfinite(new.ahead).all()  # padded tokens' outputs are unused but finite
    assert padded > 0  # the batches do have padded tokens


def test_causal_training_step_runs_flash_attention_and_never_syncs() -> None:
    """A bf16 training step (forward + backward) of a padded batch: every SDPA call is causal,
    maskless and bf16 (FlashAttention on CUDA), and no op reads a value back to the host."""
    model = _randomised(2, **MODELS["mix-coarse-guard"]).train()
    batch = _padded_batch(model, 40 * model.patch_len, seed=3)
    with record_sdpa() as calls, record_host_syncs() as syncs, torch.autocast("cpu", dtype=torch.bfloat16):
        loss, *_ = model.loss(*batch, scaled=True)
        loss.backward()
    assert len(calls) == len(model.blocks)
    assert all(c.attn_mask is None and c.is_causal for c in calls)
    assert [flash_blockers(c) for c in calls] == [[]] * len(calls)
    # The one host transfer left is CausalForecaster.loss's torch.tensor(self.quantile_levels)
    # (outside the model's forward); nothing reads a device value back.
    assert [s.where for s in syncs if "quantile_levels" not in s.where] == []


def test_flash_blockers_name_a_dense_mask_and_fp32() -> None:
    """The check refuses what the causal model used to do (a [B, 1, N, N] mask) and fp32."""
    shape = (4, 4, 12, 16)
    masked = SDPACall(shape, shape, shape, (torch.bfloat16,) * 3, (1, 1, 1), (4, 1, 12, 12), 0.0, False, False)
    assert any("attn_mask" in why for why in flash_blockers(masked))
    fp32 = SDPACall(shape, shape, shape, (torch.float32,) * 3, (1, 1, 1), None, 0.0, True, False)
    assert any("fp16/bf16" in why for why in flash_blockers(fp32))
    causal_rect = SDPACall(shape, (4, 4, 20, 16), (4, 4, 20, 16), (torch.bfloat16,) * 3, (1, 1, 1), None, 0.0, True,
                           False)
    assert any("square" in why for why in flash_blockers(causal_rect))


@pytest.mark.parametrize("attention", ["sdpa", "complex-real", "complex-magnitude"])
def test_mae_attention_gets_bf16_under_autocast(attention: str) -> None:
    """bf16-mixed: SDPA calls of the MAE (real and complex-real) are flash-eligible, and the
    complex kernels get bf16 q, k, v (a bf16 product plus an fp32 bias used to promote to fp32)."""
    from wfm.models.masking import MaskPolicy

    torch.manual_seed(0)
    model = create_model("mae_tiny", attention=attention, depth=1, decoder_depth=1)
    csi = torch.randn(2, 6, 4, 30, dtype=torch.complex64)
    mask, _, _ = MaskPolicy()(2, model.grid_for(csi.shape), 0)
    seen = []
    if attention.startswith("complex"):
        for blk in [*model.blocks, *model.decoder_blocks]:
            blk.attn.q_proj.register_forward_hook(lambda m, i, out: seen.append(out[0].dtype))
    with record_sdpa() as calls, torch.autocast("cpu", dtype=torch.bfloat16):
        model(csi, mask).loss.backward()
    assert [flash_blockers(c) for c in calls] == [[]] * len(calls)
    assert seen == ([torch.bfloat16] * 2 if attention.startswith("complex") else [])
    assert len(calls) == (2 if attention in ("sdpa", "complex-real") else 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_causal_step_on_flash_only_without_syncs() -> None:
    """FlashAttention only (SDPA raises if it cannot use it) and every synchronising CUDA call
    reported: the only one allowed is ``loss``'s ``torch.tensor(self.quantile_levels)`` copy."""
    import linecache
    import warnings

    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = create_model("causal_small", prior="mix", coarse_len=64, guard=True).cuda().train()
    batch = [t.cuda() for t in _padded_batch(model, 96 * model.patch_len, seed=4)]
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast("cuda", dtype=torch.bfloat16):
        model.loss(*batch, scaled=True)[0].backward()  # warm-up (allocator, autotuning)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.loss(*batch, scaled=True)[0].backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    lines = [linecache.getline(w.filename, w.lineno).strip() for w in caught if "synchroniz" in str(w.message)]
    assert [line for line in lines if "quantile_levels" not in line] == []
