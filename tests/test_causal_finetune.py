"""Fine-tuning the causal forecaster: what each mode trains, LoRA export, `wfm finetune` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import REPO, RECIPES
from wfm.hub import CheckpointError, export_checkpoint, from_pretrained
from wfm.nn.lora import DEFAULT_TARGETS
from wfm.models.causal import CausalForecaster
from wfm.training.lit_causal import CausalPretrainModule, set_trainable

FIXTURE = REPO / "tests" / "fixtures" / "causal-tiny-export"


def trainable(module: CausalPretrainModule) -> set[str]:
    return {n for n, p in module.model.named_parameters() if p.requires_grad}


def test_each_mode_trains_what_it_should():
    full = CausalPretrainModule(init_from=str(FIXTURE), mode="full")
    assert trainable(full) == {n for n, _ in full.model.named_parameters()}
    probe = CausalPretrainModule(init_from=str(FIXTURE), mode="linear-probe")
    assert trainable(probe) == {"head.weight", "head.bias", "trend_gate.weight", "trend_gate.bias"}
    lora = CausalPretrainModule(init_from=str(FIXTURE), mode="lora", lora_rank=2)
    adapters = {n for n in trainable(lora) if ".lora_" in n}
    depth = len(lora.model.blocks)
    assert len(adapters) == 2 * 4 * depth  # A and B on qkv, proj and both MLP layers of every block
    # The one LoRA target list (wfm.nn.lora, also the MAE's): exactly the linears it names.
    named = {n for n, m in full.model.named_modules() if isinstance(m, torch.nn.Linear) and n.endswith(DEFAULT_TARGETS)}
    assert {n.rsplit(".", 1)[0] for n in adapters} == named
    assert trainable(lora) - adapters == trainable(probe)
    n_lora = sum(p.numel() for p in lora.model.parameters() if p.requires_grad)
    assert n_lora < 0.2 * sum(p.numel() for p in full.model.parameters())
    # Starting from the pretrained weights: before any step, every mode forecasts alike.
    x = torch.cumsum(torch.randn(3, 40), dim=1)
    ref = from_pretrained(FIXTURE).forecast(x, 0.1, 8)
    for m in (full, probe, lora):
        torch.testing.assert_close(m.model.forecast(x, 0.1, 8), ref)


def test_quantiles_mode_trains_the_quantile_outputs_and_leaves_every_point_forecast_to_the_bit():
    module = CausalPretrainModule(init_from=str(FIXTURE), mode="quantiles", lr=1e-2, warmup_steps=1,
                                  max_steps=10, weight_decay=0.5)
    assert trainable(module) == {"head.weight", "head.bias"}
    model = module.model
    start = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    values = torch.cumsum(torch.randn(8, 48, generator=g), dim=1)
    observed = torch.ones_like(values, dtype=torch.bool)
    interval, ctx = torch.full((8,), 0.1), torch.full((8,), 32)
    x = values[:, :32]
    ref_point, ref_quant = model.eval().forecast_with_quantiles(x, 0.1, 16)
    module._trainer = SimpleNamespace(estimated_stepping_batches=10)  # what configure_optimizers reads
    opt = module.configure_optimizers()["optimizer"]
    module._trainer = None  # (training_step's self.log then only warns)
    assert all(group["weight_decay"] == 0.0 for group in opt.param_groups if group["params"])
    model.train()
    for _ in range(5):
        loss = module.training_step({"values": values, "observed": observed, "interval": interval,
                                     "context_len": ctx}, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    state = model.state_dict()
    rows = torch.zeros(model.head.out_features, dtype=torch.bool)
    rows[::1 + len(model.quantile_levels)] = True
    assert torch.equal(state["head.weight"][rows], start["head.weight"][rows])
    assert torch.equal(state["head.bias"][rows], start["head.bias"][rows])
    assert not torch.equal(state["head.weight"][~rows], start["head.weight"][~rows])  # the quantile rows trained
    assert all(torch.equal(state[k], v) for k, v in start.items() if not k.startswith("head."))
    point, quant = model.forecast_with_quantiles(x, 0.1, 16)
    assert torch.equal(point, ref_point) and not torch.allclose(quant, ref_quant)
    with pytest.raises(ValueError, match="quantile head"):
        set_trainable(CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, quantiles=()), "quantiles")


def test_rollout_quantile_loss_scores_the_quantiles_that_forecast_rolls_out():
    """The calibration stage's loss is the pinball loss of ``forecast``'s own quantiles (the
    rollout feeds point forecasts, not the truth, to the later patches), normalised by the context
    and weighted per series as ``loss(scaled=True)``; a context off the patch grid is padded."""
    from wfm.models.series_priors import normalise_stats

    model = from_pretrained(FIXTURE).eval()
    g = torch.Generator().manual_seed(1)
    for context, horizon in ((32, 16), (29, 11)):
        x = torch.cumsum(torch.randn(5, context + horizon, generator=g), dim=1) + 40.0
        ctx, tgt = x[:, :context], x[:, context:]
        with torch.no_grad():
            _, q = model.forecast_with_quantiles(ctx, 0.1, horizon, check=False)
            loc, scale = normalise_stats(ctx, torch.ones_like(ctx, dtype=torch.bool), model.eps)
            d = ((tgt - loc) / scale)[..., None] - (q - loc[..., None]) / scale[..., None]
            lv = torch.tensor(model.quantile_levels)
            step = (((ctx - loc) / scale).diff(dim=1) ** 2).mean(dim=1).clamp_min(1e-3)
            ref = torch.maximum(lv * d, (lv - 1) * d).mean(dim=-1) / step.sqrt()[:, None]
            lens = torch.full((5,), context)
            ones = torch.ones_like(x, dtype=torch.bool)
            got = model.rollout_quantile_loss(x, ones, torch.full((5,), 0.1), lens)
            rows = model.rollout_quantile_loss(x, ones, torch.full((5,), 0.1), lens, per_row=True)
        torch.testing.assert_close(got, ref.mean(), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(rows, ref.mean(dim=1), rtol=1e-4, atol=1e-6)
        if context % model.patch_len == 0:  # not what teacher forcing gives: its second patch sees the true first
            with torch.no_grad():
                out = model(x, ones, torch.full((5,), 0.1), lens)
            k = context // model.patch_len  # the token after the first forecast patch
            second = out.quantiles[:, k] * out.scale[..., None] + out.loc[..., None]
            assert not torch.allclose(second, q[:, model.patch_len:2 * model.patch_len], atol=1e-3)
    with pytest.raises(ValueError, match="one-patch head"):
        two = CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, quantiles=(0.1, 0.9), horizon_patches=2)
        two.rollout_quantile_loss(x, ones, torch.full((5,), 0.1), lens)


def test_quantile_steps_grows_the_band_per_patch_ahead_and_trains_in_quantiles_mode(tmp_path):
    """``quantile_steps``: the ``j``-th patch of a rollout has its quantiles' distances from the point
    forecast times ``exp(growth[min(j, S - 1)])``; zero growth is the model without it; the point
    forecast never changes; the rollout loss sees the grown band; ``mode="quantiles"`` trains the
    growth; the option round-trips through ``save_pretrained``."""
    from wfm.hub_mixin import causal_arch

    base = from_pretrained(FIXTURE).eval()
    grown = CausalForecaster(**{**causal_arch(base), "quantile_steps": 2}).eval()
    grown.load_state_dict({**base.state_dict(), "quantile_growth": torch.zeros(2, 3)})
    p = base.patch_len
    x = torch.cumsum(torch.randn(3, 40, generator=torch.Generator().manual_seed(2)), dim=1)
    point, quant = base.forecast_with_quantiles(x, 0.1, 3 * p, check=False)
    torch.testing.assert_close(grown.forecast_with_quantiles(x, 0.1, 3 * p, check=False)[1], quant)
    with torch.no_grad():
        grown.quantile_growth.copy_(torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, -0.5]]))
    g_point, g_quant = grown.forecast_with_quantiles(x, 0.1, 3 * p, check=False)
    assert torch.equal(g_point, point)
    factor = torch.tensor([[1.0, 1.0, 1.0]] * p + [[math.exp(0.5), 1.0, math.exp(-0.5)]] * (2 * p))  # patches 2, 3: row 1
    torch.testing.assert_close(g_quant - point[..., None], factor * (quant - point[..., None]), rtol=1e-5, atol=1e-5)
    values = torch.cat([x, x[:, -3 * p:] + 1.0], dim=1)
    ones, lens = torch.ones_like(values, dtype=torch.bool), torch.full((3,), 40)
    with torch.no_grad():
        assert not torch.isclose(grown.rollout_quantile_loss(values, ones, torch.full((3,), 0.1), lens),
                                 base.rollout_quantile_loss(values, ones, torch.full((3,), 0.1), lens))
    grown.save_pretrained(str(tmp_path / "g"))
    again = from_pretrained(tmp_path / "g")
    assert again.quantile_steps == 2 and torch.equal(again.quantile_growth, grown.quantile_growth)
    assert "quantile_growth" in trainable(CausalPretrainModule(init_from=str(tmp_path / "g"), mode="quantiles"))
    with pytest.raises(ValueError, match="quantile_steps"):
        CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, quantiles=(), quantile_steps=2)


def test_init_from_must_be_a_causal_model():
    with pytest.raises(CheckpointError, match="not a causal forecaster"):
        CausalPretrainModule(init_from=str(REPO / "tests" / "fixtures" / "mae-tiny-export"))


def test_lora_checkpoint_exports_as_the_plain_model(tmp_path):
    module = CausalPretrainModule(init_from=str(FIXTURE), mode="lora", lora_rank=2)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in module.model.named_parameters():
            if n.endswith("lora_b"):
                p.normal_(0, 0.05)  # a trained adapter: not the zero it starts from
    # What Lightning writes for this module (its state dict under "model.", hparams, the hook's arch).
    ckpt = {"state_dict": {f"model.{k}": v for k, v in module.model.state_dict().items()},
            "hyper_parameters": dict(module.hparams), "global_step": 7, "epoch": 0}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "lora.ckpt")
    out = export_checkpoint(tmp_path / "lora.ckpt", tmp_path / "export")
    plain = from_pretrained(out)
    assert not any(".lora_" in k or ".base." in k for k in plain.state_dict())
    x = torch.cumsum(torch.randn(4, 50), dim=1)
    torch.testing.assert_close(plain.forecast(x, 0.1, 12), module.model.eval().forecast(x, 0.1, 12),
                               rtol=1e-4, atol=1e-4)
    assert not torch.allclose(plain.forecast(x, 0.1, 12), from_pretrained(FIXTURE).forecast(x, 0.1, 12))


def test_wfm_finetune_then_export_then_evaluate(tmp_path, monkeypatch):
    from wfm.cli import main
    from wfm.data.generate import generate_dataset
    from wfm.data.recipes import load_recipe

    data = tmp_path / "data" / "traj-highway-heldout"
    generate_dataset(load_recipe(RECIPES / "traj-highway-heldout.yaml").with_overrides(num_samples=20, steps=128),
                     data, seed=0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WFM_DATA", str(data.parent))
    main(["finetune", "--config", str(REPO / "finetune" / "distance-forecast.yaml"),
          "--model.init_from", str(FIXTURE), "--model.mode", "lora", "--trainer.max_steps", "3",
          "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "1",
          "--data.batch_size", "8", "--data.eval_windows", "8", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false"])
    ckpt = tmp_path / "runs" / "finetune-distance" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["global_step"] == 3 and saved["wfm_kept"]["step"] in (0, 3)  # the start, or step 3 if it won
    assert saved["wfm_kept"]["checks"] == 2 and saved["wfm_kept"]["select"] == "significant"
    main(["export", str(ckpt), str(tmp_path / "ft")])
    main(["export", str(ckpt), str(tmp_path / "ft-last"), "--last"])
    kept, last = json.loads((tmp_path / "ft" / "config.json").read_text()), from_pretrained(tmp_path / "ft-last")
    assert kept["kept_step"] == saved["wfm_kept"]["step"] and "kept_step" not in json.loads(
        (tmp_path / "ft-last" / "config.json").read_text())
    x = torch.cumsum(torch.randn(4, 64, generator=torch.Generator().manual_seed(0)), dim=1)
    f_kept, f_last = from_pretrained(tmp_path / "ft").forecast(x, 0.1, 8), last.forecast(x, 0.1, 8)
    start = from_pretrained(FIXTURE).forecast(x, 0.1, 8)
    assert not torch.allclose(f_last, start, atol=1e-6)  # it trained
    torch.testing.assert_close(f_kept, start if saved["wfm_kept"]["step"] == 0 else f_last, rtol=1e-4, atol=1e-4)
    main(["evaluate", "--task", "distance-forecast", "--model", str(tmp_path / "ft"), "--model", "persistence",
          "--data", str(data), "--out", str(tmp_path / "eval")])
    rows = json.loads((tmp_path / "eval" / "metrics.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["ft", "persistence"] and all(r["windows"] > 0 for r in rows)
    # the quantile head's calibration is reported for the model, not for the point baseline
    assert 0 <= rows[0]["interval_coverage"] <= 1 and rows[0]["interval_nominal"] == pytest.approx(0.8)
    assert set(rows[0]["quantile_below"]) == {"0.1", "0.5", "0.9"} and "interval_coverage" not in rows[1]
    # Coverage of [q0.1, q0.9] against the per-level shares below, over the same targets:
    # inside implies below q0.9 and not below q0.1, and below q0.9 but not q0.1 implies inside
    # (equality when the quantiles do not cross; a target exactly on q0.1 is counted inside).
    below = rows[0]["quantile_below"]
    eps = 1e-6
    assert below["0.9"] - below["0.1"] - eps <= rows[0]["interval_coverage"] <= below["0.9"] + eps
    assert rows[0]["interval_coverage"] <= 1 - below["0.1"] + eps
    # Every share is a count over the 16 windows x 16 steps.
    n = rows[0]["windows"] * rows[0]["horizon"]
    assert n == 256 and all(abs(v * n - round(v * n)) < 1e-6 for v in (rows[0]["interval_coverage"], *below.values()))


def test_bad_init_from_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    """jsonargparse wraps what the module raises while being built; the user still gets one line."""
    from wfm.cli import main

    monkeypatch.chdir(tmp_path)
    mae = REPO / "tests" / "fixtures" / "mae-tiny-export"
    with pytest.raises(SystemExit) as e:
        main(["finetune", "--config", str(REPO / "finetune" / "distance-forecast.yaml"), "--model.init_from", str(mae)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "not a causal forecaster" in err and "Traceback" not in err


class _ScriptedCausal(CausalPretrainModule):
    """Held-out errors scripted by step (every validation window gets one value), and the weights
    seen at each offer."""

    ERRORS = {0: 1.0, 2: 0.5, 4: None}  # None: a noisy step, lower on average but within noise

    def heldout_errors(self, batch):
        self.seen[int(self.global_step)] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        n = len(batch["values"])
        e = self.ERRORS[int(self.global_step)]
        if e is None:
            return torch.tensor([0.1, 0.85] * (n // 2) + [0.1] * (n % 2))
        return torch.full((n,), e)


def _fit_scripted(cls: type, select: str, max_steps: int, tmp_path: Path) -> "_ScriptedCausal":
    """A scripted causal fine-tune from the fixture: validation every 2 steps, ``last.ckpt`` in ``tmp_path``."""
    import pytorch_lightning as pl

    from wfm.data.synthetic_series import SyntheticSeriesDataModule

    module = cls(init_from=str(FIXTURE), mode="full", lr=1e-3, warmup_steps=1, select=select)
    module.seen = {}
    dm = SyntheticSeriesDataModule(series_per_kind=8, context=24, horizon=8, batch_size=4, samples_per_epoch=64,
                                   eval_windows=4)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, val_check_interval=2,
                         check_val_every_n_epoch=None, limit_val_batches=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
                         callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_top_k=0, save_last=True)])
    trainer.fit(module, datamodule=dm)
    return module


@pytest.mark.parametrize("select, kept_step", [("significant", 2), ("best", 4)])
def test_causal_finetune_keeps_the_step_the_validation_windows_vouch_for(tmp_path, select, kept_step):
    module = _fit_scripted(_ScriptedCausal, select, 4, tmp_path)
    assert sorted(module.seen) == [0, 2, 4] and module.kept.step == kept_step
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 4 and saved["wfm_kept"]["step"] == kept_step
    out = export_checkpoint(tmp_path / "last.ckpt", tmp_path / "export")
    exported = from_pretrained(out).state_dict()
    assert json.loads((out / "config.json").read_text())["kept_step"] == kept_step
    assert all(torch.equal(exported[k], v) for k, v in module.seen[kept_step].items())
    assert not all(torch.equal(exported[k], v) for k, v in module.seen[0].items())  # it trained
    # a resumed run goes on comparing against the weights it had kept
    again = _ScriptedCausal(init_from=str(FIXTURE), mode="full", select=select)
    again.on_load_checkpoint(saved)
    assert again.kept.step == kept_step and again.kept.checks == 3 and torch.equal(again.kept.scores, module.kept.scores)
    assert all(torch.equal(again.kept.state[k], v) for k, v in module.seen[kept_step].items())


def test_causal_finetune_offers_the_steps_after_the_last_validation_check(tmp_path):
    """max_steps between two checks: the last step is scored too, before ``last.ckpt`` is written."""
    class LastWins(_ScriptedCausal):
        ERRORS = {0: 1.0, 2: 0.9, 4: 0.8, 5: 0.1}

    module = _fit_scripted(LastWins, "significant", 5, tmp_path)
    assert sorted(module.seen) == [0, 2, 4, 5] and module.kept.step == 5
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 5 and saved["wfm_kept"]["step"] == 5 and saved["wfm_kept"]["checks"] == 4
