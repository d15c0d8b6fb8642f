"""The pretraining system: LightningModule, schedule, throughput, resume, DDP, CLI configs."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from conftest import load_script
from wfm.data.synthetic import SyntheticCSIDataModule
from wfm.pretrain import expand_path, main
from wfm.training.lit_mae import MAEPretrainModule
from wfm.training.schedule import warmup_cosine
from wfm.training.rehearse import config_files, merge_config
from wfm.training.throughput import Throughput

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "pretrain").glob("*.yaml"))

#: A small, fast model for Lightning tests: the tiny size, shallower.
SMALL = dict(model="mae_tiny", patch_size=(2, 2, 4), warmup_steps=2)


def small_module(**kw) -> MAEPretrainModule:
    return MAEPretrainModule(**{**SMALL, **kw})


def small_data(**kw) -> SyntheticCSIDataModule:
    return SyntheticCSIDataModule(**{"shapes": [(8, 4, 16)], "batch_size": 4, "train_batches": 4,
                                     "val_batches": 1, **kw})


def trainer(tmp_path: Path, **kw) -> pl.Trainer:
    args = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                enable_model_summary=False, enable_checkpointing=False, deterministic=True,
                default_root_dir=tmp_path)
    args.update(kw)
    return pl.Trainer(**args)


class LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


# ---------------------------------------------------------------------------- pieces
def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(110, 10, 110, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(500, 10, 110, 0.1) == pytest.approx(0.1)
    values = [warmup_cosine(s, 10, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_expand_path_uses_wfm_data(monkeypatch, tmp_path):
    monkeypatch.setenv("WFM_DATA", str(tmp_path))
    assert expand_path("${WFM_DATA}/uma") == f"{tmp_path}/uma"
    monkeypatch.delenv("NO_SUCH_VAR_WFM", raising=False)
    with pytest.raises(ValueError, match="unset environment variable"):
        expand_path("$NO_SUCH_VAR_WFM/x")


def test_module_rejects_bad_config():
    with pytest.raises(ValueError, match="unknown mask kind"):
        small_module(mask_kinds=["spiral"], mask_ratios=[0.5])
    with pytest.raises(KeyError, match="unknown model"):
        small_module(model="mae_gigantic")


def test_weight_decay_groups_and_validation_names(tmp_path):
    module = small_module(attention="complex-real", mask_kinds=["random", "random", "temporal"],
                          mask_ratios=[0.85, 0.5, 0.5])
    assert [name for name, _, _ in module.val_kinds] == ["random85", "random50", "temporal"]
    module.trainer = trainer(tmp_path, max_steps=10)  # the schedule reads the run length
    decay, no_decay = module.configure_optimizers()["optimizer"].param_groups
    names = {id(p): n for n, p in module.model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    assert "mask_token" in no_decay_names and "blocks.0.norm1.weight" in no_decay_names
    assert "blocks.0.attn.q_proj.bias_re" in no_decay_names
    assert all(names[id(p)].split(".")[-1] in ("weight", "weight_re", "weight_im") for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)


def test_compile_flag_compiles_every_block_once():
    module = small_module(compile=True)
    module.configure_model()
    module.configure_model()  # Lightning may call it again (e.g. validate after fit)
    blocks = [*module.model.blocks, *module.model.decoder_blocks]
    # nn.Module.compile stores the compiled call here; the module and its names stay the same.
    assert all(b._compiled_call_impl is not None for b in blocks)
    assert not small_module()._compiled


# ---------------------------------------------------------------------------- training
def test_fit_logs_loss_nmse_and_throughput(tmp_path):
    from pytorch_lightning.loggers import CSVLogger

    pl.seed_everything(0)
    throughput = Throughput(window=2, peak_tflops=0.5)  # a given peak gives an MFU on the CPU too
    t = trainer(tmp_path, max_steps=4, logger=CSVLogger(tmp_path, name="run"), log_every_n_steps=1,
                callbacks=[throughput], val_check_interval=4, limit_val_batches=1)
    module = small_module()
    t.fit(module, small_data())
    metrics = t.callback_metrics
    for kind in ("random", "temporal", "frequency"):
        assert math.isfinite(metrics[f"val/nmse_db_{kind}"])
    assert math.isfinite(metrics["val/loss"]) and math.isfinite(metrics["train/loss"])
    # The logged validation numbers are the trained model's on the one validation batch under
    # its fixed mask (seed 0 * 1_000_003 + 7919 * batch 0 + rank 0), recomputed here by hand from
    # the predicted and true patches: per-sample masked NMSE, averaged; loss = masked MSE.
    from wfm.models.masking import make_mask

    csi = small_data().val_set[0]["csi"]
    model = module.model.eval()
    grid = model.grid_for(csi.shape)
    losses = []
    for name, kind, ratio in module.val_kinds:
        mask = make_mask(kind, 4, grid, ratio, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            out = model(csi, mask)
        m = mask.float()[..., None].expand_as(out.pred)
        sq = (out.pred - out.target) ** 2
        nmse = ((sq * m).sum(dim=(1, 2)) / ((out.target ** 2) * m).sum(dim=(1, 2))).mean()
        losses.append(float((sq * m).sum() / m.sum()))
        assert float(metrics[f"val/nmse_{name}"]) == pytest.approx(float(nmse), rel=1e-4)
        assert float(metrics[f"val/nmse_db_{name}"]) == pytest.approx(10 * math.log10(float(nmse)), abs=1e-3)
        assert float(metrics[f"val/loss_{name}"]) == pytest.approx(losses[-1], rel=1e-4)
    assert float(metrics["val/loss"]) == pytest.approx(sum(losses) / 3, rel=1e-4)
    # Lightning's ThroughputMonitor, last logged after step 4 over a window of steps 3 and 4.
    perf = {k: float(v) for k, v in t.logged_metrics.items() if k.startswith("train/")}
    rate = perf["train/device/samples_per_sec"]
    assert rate > 0 and perf["train/device/items_per_sec"] == pytest.approx(rate * 4 * 2 * 4)  # grid (4, 2, 4)
    assert perf["train/samples"] == 16 and perf["train/lengths"] == 16 * 4 * 2 * 4
    # The window's FLOPs are step 4's: 3 x the exact forward count for micro-step 3's mask.
    grid = (4, 2, 4)
    mask, _, _ = module.mask_policy(4, grid, 3, seed=0, rank=0)
    step_flops = 3 * 4 * module.model.forward_flops(grid, int(mask[0].sum()))
    assert perf["train/device/flops_per_sec"] == pytest.approx(rate / 4 * step_flops)
    assert perf["train/device/mfu"] == pytest.approx(perf["train/device/flops_per_sec"] / 0.5e12)
    rows = list(csv.DictReader(open(Path(t.logger.log_dir) / "metrics.csv")))
    assert any(r.get("train/device/samples_per_sec") for r in rows) and any(r.get("train/loss") for r in rows)


@pytest.mark.parametrize("attention", ["sdpa", "complex-phase"])
def test_bf16_mixed_training_steps(tmp_path, attention):
    """The GPU configs' precision (bf16 autocast), exercised on CPU: dtypes line up end to end."""
    pl.seed_everything(0)
    t = trainer(tmp_path, max_steps=2, precision="bf16-mixed", limit_val_batches=1, val_check_interval=2)
    module = small_module(attention=attention)
    t.fit(module, small_data())
    assert math.isfinite(t.callback_metrics["train/loss"]) and math.isfinite(t.callback_metrics["val/loss"])
    assert all(p.dtype == torch.float32 for p in module.parameters())  # fp32 master weights
    # val/loss is the trained model's mean masked loss over the three kinds on the validation
    # batch under bf16 autocast, with the fixed masks of batch 0 (generator seed 0).
    from wfm.models.masking import make_mask

    csi = small_data().val_set[0]["csi"]
    model = module.model.eval()
    grid = model.grid_for(csi.shape)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = [float(model(csi, make_mask(kind, 4, grid, ratio, generator=torch.Generator().manual_seed(0))).loss)
                  for _, kind, ratio in module.val_kinds]
    assert float(t.callback_metrics["val/loss"]) == pytest.approx(sum(losses) / 3, rel=1e-5)


def test_gradient_accumulation_and_clipping_run(tmp_path):
    pl.seed_everything(0)
    t = trainer(tmp_path, max_steps=2, accumulate_grad_batches=2, gradient_clip_val=0.5, limit_val_batches=0)
    rec = LossRecorder()
    t.callbacks.append(rec)
    t.fit(small_module(), small_data())
    assert t.global_step == 2 and len(rec.losses) == 4


def test_save_and_resume_matches_uninterrupted_run(tmp_path):
    """N steps straight == N/2 steps, stop, resume from the checkpoint for N/2 more."""
    n = 8

    def run(max_steps: int, root: Path, ckpt_path: str | None = None) -> tuple[MAEPretrainModule, list[float]]:
        pl.seed_everything(0)
        rec = LossRecorder()
        # Saved at a batch end (as the periodic checkpoints of the configs are): Lightning then
        # resumes exactly at the next batch even with a loader that keeps no state.
        ckpt = ModelCheckpoint(dirpath=root / "ckpt", save_last=True, every_n_train_steps=2)
        t = trainer(root, max_steps=max_steps, limit_val_batches=0, callbacks=[rec, ckpt],
                    enable_checkpointing=True)
        # The schedule's length is fixed (max_steps=n), as it must be for a resumable run.
        module = small_module(max_steps=n, mask_kinds=["random", "temporal"], mask_ratios=[0.7, 0.5])
        t.fit(module, small_data(), ckpt_path=ckpt_path)
        return module, rec.losses

    straight, losses = run(n, tmp_path / "a")
    _, first = run(n // 2, tmp_path / "b")  # 4 steps = one epoch of 4 batches, then "killed"
    resumed, second = run(n, tmp_path / "b", ckpt_path="last")
    assert len(first) == len(second) == n // 2
    torch.testing.assert_close(torch.tensor(first + second), torch.tensor(losses), rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


class RankReport(Callback):
    """Writes, per rank, the batches it trained on and a checksum of its final weights."""

    def __init__(self, out: Path) -> None:
        self.out, self.batches = out, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append(round(float(batch["csi"].abs().sum()), 3))

    def on_train_end(self, trainer, pl_module):
        checksum = float(sum(p.double().sum() for p in pl_module.parameters()))
        path = self.out / f"rank{trainer.global_rank}.yaml"
        path.write_text(yaml.safe_dump({"batches": self.batches, "checksum": checksum, "step": trainer.global_step}))


def test_ddp_two_cpu_processes(tmp_path):
    """DDP (gloo) with 2 CPU processes: batches split across ranks, weights stay in sync."""
    pl.seed_everything(0)
    module = small_module()
    before = [p.detach().clone() for p in module.parameters()]
    t = trainer(tmp_path, strategy="ddp_spawn", devices=2, max_epochs=1, limit_val_batches=1,
                deterministic=False, callbacks=[RankReport(tmp_path)])
    t.fit(module, small_data())
    r0, r1 = (yaml.safe_load((tmp_path / f"rank{r}.yaml").read_text()) for r in (0, 1))
    assert r0["step"] == r1["step"] == 2  # 4 batches over 2 ranks: 2 optimizer steps each
    assert len(set(r0["batches"] + r1["batches"])) == 4  # disjoint batches
    assert r0["checksum"] == pytest.approx(r1["checksum"], rel=1e-6)  # in sync
    assert all(not torch.equal(a, b) for a, b in zip(before, module.parameters()))  # rank 0's weights came back
    assert math.isfinite(t.callback_metrics["val/loss"])


# ---------------------------------------------------------------------------- CLI and configs
def _config_for_test(path: Path, tmp_path: Path) -> Path:
    """The config, with its data section swapped for synthetic data when the real DataModule
    is not importable in this checkout (so the rest of the config is still checked)."""
    if importlib.util.find_spec("wfm.data.datamodule") is not None:
        return path
    cfg = yaml.safe_load(path.read_text())
    cfg["data"] = {"class_path": "wfm.data.synthetic.SyntheticCSIDataModule"}
    out = tmp_path / path.name
    out.write_text(yaml.safe_dump(cfg))
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_parses(config, tmp_path, capsys):
    """Every config parses as its header runs it: alone, or (an overlay) after its base."""
    args = [a for f in config_files(config) for a in ("--config", str(_config_for_test(f, tmp_path)))]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    kind = config.stem.split("-")[0]  # mae*.yaml or causal*.yaml
    module = {"mae": "wfm.training.lit_mae.MAEPretrainModule",
              "causal": "wfm.training.lit_causal.CausalPretrainModule"}[kind]
    assert printed["model"]["class_path"] == module
    assert printed["model"]["init_args"]["model"].startswith(f"{kind}_")
    assert printed["trainer"]["callbacks"]  # checkpoints, LR monitor, throughput


def _leaves(cfg, path=()):
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(cfg, list) and cfg and all(isinstance(v, dict) for v in cfg):
        for i, v in enumerate(cfg):
            yield from _leaves(v, (*path, i))
    else:
        yield path, cfg


OVERLAYS = {"mae": ["tiny", "little", "small", "base", "large", "large-fsdp"], "causal": ["tiny", "little", "small", "base"]}


@pytest.mark.parametrize("name", [f"{k}-{s}" for k, sizes in OVERLAYS.items() for s in sizes])
def test_size_overlays_on_the_shared_base(name, capsys):
    """pretrain/mae-SIZE.yaml and causal-SIZE.yaml are short overlays of mae.yaml / causal.yaml:
    the size's model, learning rate, schedule and run folder; the rest (trainer, callbacks,
    loggers, masking, data) is the base's, entry by entry."""
    kind, size = name.split("-", 1)
    base, overlay = REPO / "pretrain" / f"{kind}.yaml", REPO / "pretrain" / f"{name}.yaml"
    assert config_files(overlay) == [base, overlay] and config_files(base) == [base]
    assert len(overlay.read_text().splitlines()) <= 35
    with pytest.raises(SystemExit):
        main(["--config", str(base), "--config", str(overlay), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    trainer, init = printed["trainer"], printed["model"]["init_args"]
    assert init["model"] == f"{kind}_{size.split('-')[0]}"
    run = f"runs/{name}"
    assert [lg["init_args"]["save_dir"] for lg in trainer["logger"]] == [run, run]
    assert [lg["init_args"]["name"] for lg in trainer["logger"]] == ["tb", "csv"]
    callbacks = [c["class_path"].rsplit(".", 1)[-1] for c in trainer["callbacks"]]
    assert callbacks == ["ModelCheckpoint"] * 3 + ["LearningRateMonitor", "Throughput"]
    assert {c["init_args"]["dirpath"] for c in trainer["callbacks"][:3]} == {f"{run}/checkpoints"}
    assert trainer["callbacks"][0]["init_args"]["save_last"] and trainer["callbacks"][2]["init_args"]["monitor"] == "val/loss"
    assert trainer["precision"] == "bf16-mixed" and trainer["accelerator"] == "gpu"
    # rehearse's merge of the two files is what LightningCLI resolves, leaf by leaf.
    merged = merge_config(yaml.safe_load(base.read_text()), yaml.safe_load(overlay.read_text()))
    for path, value in _leaves(merged):
        got = printed
        for key in path:
            got = got[key]
        assert got == value, path


#: Arguments that size a model, not its design: a scaled-up run may change these only.
SIZE_KEYS = {"mae": {"dim", "depth", "num_heads", "mlp_ratio", "decoder_dim", "decoder_depth", "decoder_num_heads",
                     "drop_path_rate", "layer_scale"},
             "causal": {"dim", "depth", "num_heads", "mlp_ratio", "patch_len", "max_context"}}
SCALE_UP = [f"{k}-{s}" for k, sizes in OVERLAYS.items() for s in sizes] + ["mae", "causal", "mae-tiny-cpu", "causal-tiny-cpu"]


@pytest.mark.parametrize("name", SCALE_UP)
def test_configs_train_the_shipped_design(name):
    """The configs a user pretrains with (the GPU bases and size overlays, and the laptop ones)
    build the shipped checkpoint's design, less its size: prior, estimators, guard and every
    inference rule its config.json holds (what ``wfm export`` writes), on the loss and, for the
    GPU configs, the data mixture it was pretrained on. The GPU configs once trained the models
    before the classical prior (no anchor, 256 values of context)."""
    from wfm.hub_mixin import causal_arch, mae_arch
    from wfm.training.lit_causal import CausalPretrainModule
    from wfm.training.rehearse import _yaml

    kind = name.split("-")[0]
    cfg = _yaml(REPO / "pretrain" / f"{name}.yaml")
    init = {k: v for k, v in cfg["model"]["init_args"].items() if k != "compile"}
    shipped = json.loads((REPO / "checkpoints" / f"{kind}-tiny-catalog-cpu" / "config.json").read_text())
    if kind == "mae":
        module, arch = MAEPretrainModule(**{**init, "model": "mae_tiny"}), mae_arch
        assert module.hparams.loss == "skill"
    else:
        module, arch = CausalPretrainModule(**{**init, "model": "causal_tiny"}), causal_arch
        assert module.hparams.skill_loss is True
    design = {k: v for k, v in arch(module.model).items() if k not in SIZE_KEYS[kind]}
    assert design == {k: v for k, v in shipped["arch"].items() if k not in SIZE_KEYS[kind]}
    if cfg["data"]["class_path"].rsplit(".", 1)[-1] in ("CSIDataModule", "SeriesDataModule"):  # not synthetic
        data, released = cfg["data"]["init_args"], shipped["training"]["data"]
        assert [d.rsplit("/", 1)[-1] for d in data["datasets"]] == [d.rsplit("/", 1)[-1] for d in released["datasets"]]
        for key in ("weights", "kinds", "group_size", "pad_prob"):
            assert data.get(key) == released.get(key), key
        assert kind == "mae" or data["context"] >= released["context"]


@pytest.mark.parametrize("name", ["mae", "causal"])
def test_data_script_generates_every_dataset_of_a_config(name, tmp_path):
    """pretrain/data.sh CONFIG: one ``wfm data generate`` per dataset the config lists, from its
    recipe (dry run); an unknown dataset is an error naming it."""
    import os
    import subprocess

    env = {**os.environ, "WFM_DATA": str(tmp_path), "WFM_DRY_RUN": "1"}
    config = REPO / "pretrain" / f"{name}.yaml"
    out = subprocess.run(["bash", str(REPO / "pretrain" / "data.sh"), str(config)], env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    listed = yaml.safe_load(config.read_text())["data"]["init_args"]["datasets"]
    assert [line.rsplit("/", 1)[-1] for line in out] == [d.rsplit("/", 1)[-1] for d in listed]
    for line in out:
        recipe = line.split("--recipe ")[1].split()[0]
        assert (REPO / recipe).is_file() and line.startswith("wfm data generate")
    env2 = {**env, "WFM": "python3 -m wfm.cli", "WFM_NUM_SAMPLES": "512", "WFM_GENERATE_ARGS": "--device cuda --workers 4"}
    first = subprocess.run(["bash", str(REPO / "pretrain" / "data.sh"), str(config)], env=env2, capture_output=True,
                           text=True, check=True).stdout.splitlines()[0]
    assert first.startswith("python3 -m wfm.cli data generate") and first.endswith("--num-samples 512 --device cuda --workers 4")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  init_args:\n    datasets: [${WFM_DATA}/no-such-recipe]\n")
    run = subprocess.run(["bash", str(REPO / "pretrain" / "data.sh"), str(bad)], env=env, capture_output=True, text=True)
    assert run.returncode == 2 and "no-such-recipe" in run.stderr


def test_cpu_config_trains_and_resumes_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config writes runs/ relative to the working directory
    cfg = str(REPO / "pretrain" / "mae-tiny-cpu.yaml")
    fast = ["--data.init_args.train_batches", "2", "--data.init_args.batch_size", "4",
            "--data.init_args.shapes", "[[8, 8, 16]]", "--trainer.val_check_interval", "2",
            "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]
    main(["--config", cfg, *fast, "--trainer.max_steps", "2"])
    ckpt_dir = tmp_path / "runs" / "mae-tiny-cpu" / "checkpoints"
    assert (ckpt_dir / "last.ckpt").exists() and list(ckpt_dir.glob("best-*.ckpt"))
    run = tmp_path / "runs" / "mae-tiny-cpu"
    assert (run / "tb" / "version_0" / "config.yaml").exists() and (run / "csv" / "version_0" / "metrics.csv").exists()
    main(["fit", "--config", cfg, *fast, "--trainer.max_steps", "4", "--ckpt_path", "last"])
    state = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 4
    assert state["hyper_parameters"]["model"] == "mae_tiny"


def test_throughput_script_cpu_smoke(capsys, monkeypatch, tmp_path):
    """pretrain/throughput.py runs end to end (CPU, tiny), reports every configuration and writes
    them as JSON."""
    script = load_script("pretrain/throughput.py", monkeypatch)
    rows = script.main(["--device", "cpu", "--tiny", "--only", "fp32 (TF32) sdpa", "bf16 complex-phase",
                        "bf16 sdpa + compile", "--out", str(tmp_path / "t.json")])
    assert json.loads((tmp_path / "t.json").read_text())["rows"] == rows
    assert [r["config"] for r in rows] == ["bf16 sdpa + compile", "fp32 (TF32) sdpa", "bf16 complex-phase"]
    assert rows[0]["samples/s"] == "skipped on CPU"
    assert rows[1]["samples/s"] > 0 and rows[2]["TFLOP/s"] > 0
    # Both rates share the timed interval: TFLOP/s = samples/s x the exact training FLOPs per sample
    # (3 x forward) averaged over the timed steps 2 and 3 (--tiny: 2 warm-up + 2 timed, batch 4).
    from wfm.models.masking import MaskPolicy
    from wfm.models.registry import create_model

    grid, policy = (2, 2, 4), MaskPolicy()  # [8, 8, 16] in patches of (4, 4, 4)
    for row, attention in ((rows[1], "sdpa"), (rows[2], "complex-phase")):
        model = create_model("mae_tiny", patch_size=(4, 4, 4), attention=attention, prior="mix", loss="skill")
        per_sample = sum(3 * model.forward_flops(grid, int(policy(4, grid, i)[0][0].sum())) for i in (2, 3)) / 2
        assert row["TFLOP/s"] == pytest.approx(row["samples/s"] * per_sample / 1e12, rel=1e-9)
    assert "| config" in capsys.readouterr().out


def test_cli_pretrains_on_generated_shards_via_wfm_data(tiny_dataset, tmp_path, monkeypatch):
    """The real data path: CSIDataModule over a `wfm data generate` folder named via $WFM_DATA."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WFM_DATA", str(tiny_dataset.parent))
    main(["--config", str(REPO / "pretrain" / "mae-tiny-cpu.yaml"),
          "--data", "wfm.data.datamodule.CSIDataModule",
          "--data.datasets", f"[$WFM_DATA/{tiny_dataset.name}]", "--data.batch_size", "8",
          "--model.patch_size", "[2, 2, 4]",
          "--trainer.max_steps", "3", "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "1",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    state = torch.load(tmp_path / "runs" / "mae-tiny-cpu" / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 3
    assert state["datamodule_hyper_parameters"]["datasets"] == [str(tiny_dataset)]


def test_causal_data_script_generates_every_dataset_the_causal_stages_read(tmp_path):
    """``pretrain/causal-tiny-catalog-cpu-data.sh`` covers the base config and every overlay, with
    the sample counts of checkpoints.md, and stops on a failed generation."""
    import re
    import subprocess

    import yaml

    script = REPO / "pretrain" / "causal-tiny-catalog-cpu-data.sh"
    env = {"PATH": "/usr/bin:/bin", "WFM_DATA": str(tmp_path), "WFM_DRY_RUN": "1"}
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True).stdout
    made = {Path(m.group(1)).name: int(m.group(2)) for m in re.finditer(r"--out (\S+) --num-samples (\d+)", out)}
    read = set()
    for cfg in sorted((REPO / "pretrain").glob("causal-tiny-catalog-cpu*.yaml")):
        data = (yaml.safe_load(cfg.read_text()) or {}).get("data") or {}
        read |= {Path(d).name for d in (data.get("init_args") or {}).get("datasets", [])}
    assert read and read <= set(made), sorted(read - set(made))
    assert made["wifi-jitter-intel-5p2-6x1-k30-t16"] == 2048 and made["traffic-2min"] == 256
    failing = subprocess.run(["bash", str(script)], env={**env, "WFM_DRY_RUN": "0", "WFM": "false"},
                             capture_output=True, text=True)
    assert failing.returncode != 0 and not any(tmp_path.iterdir())


def _load_script(name: str, monkeypatch):
    """``pretrain/NAME.py`` as a module, for the test only."""
    return load_script(f"pretrain/{name}.py", monkeypatch)


def _held_out_csi(root: Path) -> str:
    """A small WiFi CSI dataset in ``root`` (50 samples, seed 0); its folder name."""
    from wfm.data.generate import generate_dataset
    from wfm.data.recipes import load_recipe

    name = "wifi-intel-2p4-3x1-k30-t16"
    recipe = load_recipe(REPO / "data" / "recipes" / "wifi" / f"{name}.yaml").with_overrides(num_samples=50)
    generate_dataset(recipe, root / name, seed=0)
    return name


def test_attention_variants_script_scores_each_seed_as_predict_does(tmp_path, monkeypatch):
    """pretrain/attention_variants.py: runs are grouped by the VARIANT-sSEED folder names (an
    ``export/`` inside or the folder itself), each seed's score is ``predict``'s per-window NMSE in
    dB on the test tail with the guard and without it, and persistence is the last visible step
    carried over the same hidden part."""
    import wfm
    from wfm.models.mae import MaskedAutoencoder
    from wfm.tasks.csi_data import load_csi

    script = _load_script("attention_variants", monkeypatch)
    name = _held_out_csi(tmp_path / "data")
    runs = tmp_path / "runs"
    for attention, seed, inner in (("sdpa", 0, "export"), ("sdpa", 1, ""), ("complex-real", 0, "export")):
        torch.manual_seed(seed)
        MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior="mix", attention=attention,
                          ).save_pretrained(runs / f"{attention}-s{seed}" / inner)
    (runs / "notes").mkdir()
    rows = script.main(["--runs", str(runs), "--data", str(tmp_path / "data" / name), "--out", str(tmp_path / "a.json")])
    assert json.loads((tmp_path / "a.json").read_text()) == rows
    models = [(r["kind"], r["guard"], r["model"], r["seeds"]) for r in rows]
    assert models == [(k, g, m, s) for k in ("temporal", "frequency")
                      for g, m, s in ((True, "sdpa", [0, 1]), (True, "complex-real", [0]), (False, "sdpa", [0, 1]),
                                      (False, "complex-real", [0]), (None, "persistence", []), (None, "ar", []))]
    csi = load_csi(tmp_path / "data" / name, "test")["csi"]
    model = wfm.from_pretrained(runs / "sdpa-s1")
    for row in rows[:6]:
        if row["model"] == "sdpa":
            p = model.predict(csi, "temporal", 0.5, guard=row["guard"])
            assert row["db"][1] == pytest.approx(10 * math.log10(float(p.nmse.double().mean())), abs=1e-9)
    t = csi.shape[1]
    ctx, tgt = csi[:, :t - t // 2], csi[:, t - t // 2:]
    carried = ctx[:, -1:].expand_as(tgt)
    nmse = ((carried - tgt).abs() ** 2).flatten(1).sum(1).double() / (tgt.abs() ** 2).flatten(1).sum(1).double()
    assert rows[4]["db"][0] == pytest.approx(10 * math.log10(float(nmse.mean())), abs=1e-6)
    table = script.markdown(rows, ["sdpa", "complex-real"])
    assert "| sdpa | complex-real | persistence | ar |" in table and "±" in table
    log = runs / "sdpa-s1" / "runs" / "mae" / "csv" / "version_0" / "metrics.csv"
    log.parent.mkdir(parents=True)
    log.write_text("step,train/time,val/loss\n0,10,\n0,,0.5\n1,20,\n1,,0.3\n")
    lines = script.training_table(script.find_runs(runs)).splitlines()
    params = json.loads((runs / "sdpa-s1" / "config.json").read_text())["num_params"]
    assert lines[2] == f"| sdpa | {params} | 0.3000 | 20 |" and lines[3].endswith("| - | - |")


def test_guard_frequency_script_scores_each_rule_as_predict_applies_it(tmp_path, monkeypatch):
    """pretrain/guard_frequency.py: each rule's ratio is the model's own frequency prediction with
    that ``guard_prior`` over the better of the nearest subcarrier and the mean; noise at an SNR is
    added as stated; the model's own rule is left as it was."""
    import wfm
    from wfm.models.mae import MaskedAutoencoder
    from wfm.tasks.metrics import window_nmse

    script = _load_script("guard_frequency", monkeypatch)
    name = _held_out_csi(tmp_path / "data")
    torch.manual_seed(0)
    MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior="mix",
                      guard_prior={"frequency": "hold"}).save_pretrained(tmp_path / "m")
    rows = script.main(["--model", str(tmp_path / "m"), "--data", str(tmp_path / "data"), "--datasets", str(tmp_path / "none"),
                        "--rules", "hold|ar", "mean", "--snr", "clean", "0", "--samples", "4",
                        "--out", str(tmp_path / "g.json")])
    assert [(r["snr"], r["set"], r["view"]) for r in rows] == [
        ("clean", name, "complex"), ("clean", name, "amplitude"), ("0", name, "complex"), ("0", name, "amplitude")]
    model = wfm.from_pretrained(tmp_path / "m")
    csi = script.csi_sets(tmp_path / "data", None, 4, tmp_path / "none")[0][2]
    assert torch.equal(csi, script.generated_frequency_view(script.generated_csi_view(tmp_path / "data" / name, "test", 4)).csi)
    ratios = script.rule_ratios(model, csi, ["mean"], amplitude=False)
    assert model.guard_prior == {"frequency": "hold"} and ratios["mean"] == pytest.approx(rows[0]["mean"])
    k = csi.shape[3]
    tgt = csi.permute(0, 3, 1, 2)[:, k - k // 2:]
    model.guard_prior = {"frequency": "mean"}
    pred = model.predict(csi, "frequency", (k // 2) / k).reconstruction[..., k - k // 2:].permute(0, 3, 1, 2)
    ctx = csi.permute(0, 3, 1, 2)[:, :k - k // 2]
    best = min(float(window_nmse(ctx[:, -1:].expand_as(tgt), tgt).mean()),
               float(window_nmse(ctx.mean(1, keepdim=True).expand_as(tgt), tgt).mean()))
    assert rows[0]["mean"] == pytest.approx(float(window_nmse(pred, tgt).mean()) / best, rel=1e-5)
    # --axis time: the last 8 of the first 16 packets from the first 8, the rule set in time only.
    csi_t = script.csi_sets(tmp_path / "data", None, 4, tmp_path / "none", axis="time")[0][2]
    assert torch.equal(csi_t, script.generated_csi_view(tmp_path / "data" / name, "test", 4).csi)
    model.guard_prior = {"frequency": "hold"}
    got = script.rule_ratios(model, csi_t, ["hold|mean|ar"], amplitude=True, axis="time")["hold|mean|ar"]
    assert model.guard_prior == {"frequency": "hold"}
    amp = csi_t[:, :16].abs()
    model.guard_prior = {"frequency": "hold", "temporal": "hold|mean|ar"}
    pred = model.predict(amp.to(torch.complex64), "temporal", 0.5).reconstruction[:, 8:].real
    best = min(float(window_nmse(amp[:, 7:8].expand_as(amp[:, 8:]), amp[:, 8:]).mean()),
               float(window_nmse(amp[:, :8].mean(1, keepdim=True).expand_as(amp[:, 8:]), amp[:, 8:]).mean()))
    assert got == pytest.approx(float(window_nmse(pred, amp[:, 8:]).mean()) / best, rel=1e-5)
    x = script.noisy(torch.ones(2, 4, 1, 8, dtype=torch.complex64), 0.0, torch.Generator().manual_seed(0))
    assert 0.5 < float((x - 1).abs().pow(2).mean()) < 1.5  # 0 dB: noise power = the signal's
    saved = json.loads((tmp_path / "g.json").read_text())
    assert [s["sets"] for s in saved["summary"]] == ["generated (1)"] * 4


def test_beam_heldout_script_scores_sweeps_as_the_deepsense_benchmark_windows_them(tmp_path, monkeypatch):
    """pretrain/beam_heldout.py: context 16 -> next 4, stride 4 within a trajectory, a window is all
    64 beams pooling their evidence; ratios are per-window NMSE over the better of persistence and mean."""
    from wfm.models.registry import create_model
    from wfm.tasks.metrics import window_nmse

    script = _load_script("beam_heldout", monkeypatch)
    torch.manual_seed(0)
    model = create_model("causal_tiny", prior="mix", guard=True, coarse_len=64, backtest_origins="value")
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=0.01)
    model.save_pretrained(str(tmp_path / "m"))
    out = script.main(["--model", str(tmp_path / "m"), "--heldout", str(tmp_path / "sweeps"), "--samples", "2",
                       "--seed", "5", "--correction-off", "--out", str(tmp_path / "b.json")])
    assert json.loads((tmp_path / "b.json").read_text())["cells"] == json.loads(json.dumps(out["cells"]))
    power, bearing = out["cells"]
    assert (power["view"], bearing["view"]) == ("beam power", "bearing")
    # by hand: the same windows of the generated sweeps
    ds = script.ShardedDataset(tmp_path / "sweeps")
    x = torch.from_numpy(np.stack([ds[i]["beam_power"] for i in range(len(ds))])).float()  # [2, 96, 64]
    starts = range(0, x.shape[1] - 20 + 1, 4)
    ctx = torch.stack([x[n, a:a + 16] for n in range(len(x)) for a in starts])
    tgt = torch.stack([x[n, a + 16:a + 20] for n in range(len(x)) for a in starts])
    assert power["windows"] == len(ctx) == 2 * 20
    pers = window_nmse(ctx[:, -1:].expand_as(tgt), tgt).mean()
    mean = window_nmse(ctx.mean(1, keepdim=True).expand_as(tgt), tgt).mean()
    best = min(pers, mean)
    assert power["best_classical_nmse"] == pytest.approx(float(best))
    assert power["ratio"]["persistence"] == pytest.approx(float(pers / best))
    series = ctx.permute(0, 2, 1).reshape(-1, 16)  # every beam of every window a row
    group = torch.arange(len(ctx)).repeat_interleave(64)
    with torch.no_grad():
        pred = model.eval().forecast(series, torch.full((len(series),), 0.1), 4, group=group)
    pred = pred.reshape(len(ctx), 64, 4).permute(0, 2, 1)
    assert power["ratio"][str(tmp_path / "m")] == pytest.approx(float(window_nmse(pred, tgt).mean() / best), rel=1e-4)
    assert f"{tmp_path / 'm'} (correction off)" in power["ratio"]


def test_evidence_power_script_scores_held_out_generated_windows(tmp_path, monkeypatch):
    """pretrain/evidence_power.py: every channel of a held-out sample is one window; power 0 is the
    model as it is, scored by per-window NMSE against the better of persistence and the mean."""
    from wfm.models.registry import create_model

    script = _load_script("evidence_power", monkeypatch)
    name = _held_out_csi(tmp_path)
    torch.manual_seed(0)
    model = create_model("causal_tiny", prior="mix", guard=True, coarse_len=64, backtest_origins="value")
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=0.01)
    model.save_pretrained(str(tmp_path / "m"))
    out = script.main(["--model", str(tmp_path / "m"), "--data", str(tmp_path), "--datasets", name,
                       "--powers", "0", "1", "--windows", "2", "--contexts", "8", "--out", str(tmp_path / "e.json")])
    assert json.loads((tmp_path / "e.json").read_text())["chosen"] == out["chosen"] in (0.0, 1.0)
    (cell,) = out["cells"]
    assert cell["dataset"] == name and cell["context"] == 8 and cell["channels"] == 3 * 30 * 2
    # by hand: the same held-out windows, the model as it is (power 0)
    pool = script.held_out_pool(tmp_path / name)
    x, group, interval = script.held_out_windows(pool, 8, 8, 2, 0)
    ctx, tgt = x[:, :8], x[:, 8:]
    best = min(script.window_nmse(ctx[:, -1:].expand_as(tgt), tgt, group),
               script.window_nmse(ctx.mean(1, keepdim=True).expand_as(tgt), tgt, group))
    with torch.no_grad():
        plain = script.window_nmse(model.eval().forecast(ctx, interval, 8, group=group), tgt, group)
    assert cell["best_classical"] == pytest.approx(best) and cell["ratio p=0"] == pytest.approx(plain / best, rel=1e-5)
    assert cell["ratio p=1"] != pytest.approx(cell["ratio p=0"])


def test_white_limit_script_scores_the_rule_as_forecast_applies_it(tmp_path, monkeypatch):
    """pretrain/white_limit.py: each limit's ratio is the model's own ``forecast`` with that
    ``white_limit`` (pooled windows) over the better of persistence and the mean."""
    from wfm.models.registry import create_model

    script = _load_script("white_limit", monkeypatch)
    name = _held_out_csi(tmp_path)
    torch.manual_seed(0)
    kw = dict(prior="mix", guard=True, coarse_len=64, backtest_origins="value", check_origins=8)
    model = create_model("causal_tiny", **kw)
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=0.3)
    model.save_pretrained(str(tmp_path / "m"))
    out = script.main(["--model", str(tmp_path / "m"), "--data", str(tmp_path), "--extra", name, "--real", "",
                       "--limits", "0.5", "5", "--windows", "2", "--rows", "1", "--contexts", "8", "--shrink",
                       "--dips", "--scale", "--out", str(tmp_path / "w.json")])
    saved = json.loads((tmp_path / "w.json").read_text())
    assert saved["lowest"] == {"8": out["lowest"][8]}
    assert out["lowest"][8] in ("network", *(f"{lim}{s}{d}{c}" for lim in ("0.5", "5.0") for s in ("", " shrunk")
                                             for d in ("", " dips") for c in ("", " scaled")))
    cell = next(c for c in out["cells"] if c["windows"] == "pooled")
    assert cell["dataset"] == name and cell["context"] == 8
    pool = script.held_out_pool(tmp_path / name)
    x, group, interval = script.held_out_windows(pool, 8, 8, 2, 0)
    ctx, tgt = x[:, :8], x[:, 8:]
    best = script.best_classical(ctx, tgt, group)
    for limit, shrink, dips, scale in ((None, False, False, False), (0.5, False, False, False), (5.0, False, False, False),
                                       (0.5, True, False, False), (5.0, True, False, False), (0.5, False, True, False),
                                       (0.5, True, True, False), (5.0, False, False, True), (5.0, True, True, True)):
        m = create_model("causal_tiny", white_limit=limit, white_shrink=shrink, white_dips=dips, white_scale=scale,
                         **kw).eval()
        m.load_state_dict(model.state_dict())
        with torch.no_grad():
            ratio = script.window_nmse(m.forecast(ctx, interval, 8, group=group), tgt, group) / best
        key = "network" if limit is None else \
            f"{limit}{' shrunk' if shrink else ''}{' dips' if dips else ''}{' scaled' if scale else ''}"
        assert cell["ratio"][key] == pytest.approx(ratio, rel=1e-5)
    # a limit no score can exceed gives every pooled window the context mean
    assert cell["ratio"]["5.0"] == pytest.approx(
        script.window_nmse(ctx.mean(1, keepdim=True).expand_as(tgt), tgt, group) / best, rel=1e-5)


def test_check_candidates_replaces_a_losing_network_only_on_evidence():
    """pretrain/check_candidates.py: a wild network on noise around a level is replaced (pooled over
    a window's channels) by a candidate where the short check runs; without a check it stands."""
    from wfm.models.registry import create_model

    script = load_script("pretrain/check_candidates.py")
    torch.manual_seed(0)
    m = create_model("causal_tiny", prior="mix", guard=True, coarse_len=64, backtest_origins="value",
                     check_origins=8).eval()
    with torch.no_grad():
        torch.nn.init.normal_(m.head.weight, std=1.0)
        m.guard_bias.fill_(100.0)
    x = 5.0 + torch.randn(64, 16)
    group = torch.zeros(64, dtype=torch.long)
    short, regular = script.CheckedSelection(m, ["fallback", "mean"]), script.CheckedSelection(m, ["mean"], short=False)
    assert short.cuts(8, 8) == [(4, 4)] and regular.cuts(8, 8) == [] and short.cuts(96, 12) == regular.cuts(96, 12)
    net = m.forecast(x[:, :8], 1e-3, 8, group=group)
    assert torch.equal(regular.forecast(x[:, :8], 1e-3, 8, group), net)  # no check fits: the network stands
    picked = short.forecast(x[:, :8], 1e-3, 8, group)
    mean = x[:, :8].mean(dim=1, keepdim=True).expand(-1, 8)
    _, (fallback, _) = m._rollout(x[:, :8], torch.full((64,), 1e-3), 8, group, fallback=True)
    assert torch.allclose(picked, mean) or torch.allclose(picked, fallback)
    assert ((picked - x[:, 8:]) ** 2).mean() < ((net - x[:, 8:]) ** 2).mean()
    assert set(script.variants(m)) >= {"shipped", "short: fallback, mean", "below a patch: fallback, mean"}


def test_ar_season_script_scores_the_option_off_and_on_as_forecast_applies_it(tmp_path, monkeypatch):
    """pretrain/ar_season.py: generates the held-out traffic it lacks, per seed, and each cell's two
    ratios are the model's own ``forecast`` with ``ar_season`` off and on over the best classical."""
    from wfm.data.shards import ShardedDataset
    from wfm.models.registry import create_model

    script = _load_script("ar_season", monkeypatch)
    kw = dict(prior="mix", guard=True, coarse_len=64, check_origins=4, check_ar=True, ar_blend=True)
    torch.manual_seed(0)
    model = create_model("causal_tiny", **kw)
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=0.3)
    model.save_pretrained(str(tmp_path / "m"))
    out = script.main(["--model", str(tmp_path / "m"), "--heldout", str(tmp_path / "ho"), "--seeds", "5",
                       "--cells", "traffic-10min (L=144, H=36)", "--series", "2", "--per-series", "2",
                       "--out", str(tmp_path / "a.json")])
    assert json.loads((tmp_path / "a.json").read_text())["seeds"] == out
    (name, row), = out["5"]["cells"].items()
    assert name == "traffic-10min (L=144, H=36)" and not (tmp_path / "ho" / "5" / "traffic-2min").exists()
    x = ShardedDataset(tmp_path / "ho" / "5" / "traffic-10min").read_range(0, 2, ["traffic"])["traffic"]
    ctx, tgt = _load_script("box_cox", monkeypatch).series_windows(x.reshape(2, -1), 144, 36, 2)
    group = torch.arange(len(ctx))
    best = script.best_classical(ctx, tgt, group, 600.0)
    for flag, key in ((False, "off"), (True, "on")):
        m = create_model("causal_tiny", ar_season=flag, **kw).eval()
        m.load_state_dict(model.state_dict())
        with torch.no_grad():
            ratio = script.window_nmse(m.forecast(ctx, 600.0, 36, group=group), tgt, group) / best
        assert row[key] == pytest.approx(ratio, rel=1e-6)


def _check_variants_are_the_forecast(script, row: dict, model, kw: dict, option: tuple[str, str], ctx, tgt,
                                     interval: float) -> None:
    """Each of ``script.VARIANTS`` in ``row`` is the per-window NMSE, over the best classical's, of a
    model with ``model``'s weights and the option pair ``(check_*, *_share)`` set as the variant says
    ("off": the check off; a script's ``OPTIONS``, where it has them), each window a series of its own."""
    from wfm.models.registry import create_model

    flag, share = option
    group = torch.arange(len(ctx))
    best = script.best_classical(ctx, tgt, group, interval)
    for key in script.VARIANTS:
        options = script.OPTIONS[key] if hasattr(script, "OPTIONS") else {flag: key != "off", share: "half" if key == "off" else key}
        m = create_model("causal_tiny", **options, **kw).eval()
        m.load_state_dict(model.state_dict())
        with torch.no_grad():
            pred = m.forecast(ctx, interval, tgt.shape[1], group=group)
        assert row[key] == pytest.approx(script.window_nmse(pred, tgt, group) / best, rel=1e-6), key


def test_check_season_script_scores_each_share_as_forecast_applies_it_and_reads_the_taylor_wheel(tmp_path, monkeypatch):
    """pretrain/check_season.py: each cell's ratios are the model's own ``forecast`` with
    ``check_season`` off and with each share over the best classical (the model's options restored
    after), and ``--taylor`` reads the 4,032 values out of a pmdarima wheel (a wrong count is an error)."""
    import zipfile

    from wfm.models.registry import create_model

    script = _load_script("check_season", monkeypatch)
    kw = dict(prior="mix", guard=True, coarse_len=64, check_origins=4)
    torch.manual_seed(0)
    model = create_model("causal_tiny", **kw).eval()
    t = torch.arange(24 * 7, dtype=torch.float64)  # 6 days of context (no week), a day ahead
    x = torch.stack([20 + 5 * torch.sin(2 * math.pi * (t + 3 * i) / 24) + torch.randn(len(t)) for i in range(4)]).float()
    ctx, tgt = x[:, :-24], x[:, -24:]
    (name, row), = script.score(model, [("hourly", ctx, tgt, 3600.0)]).items()
    assert not model.check_season and model.season_share == "half" and list(row) == list(script.VARIANTS)
    _check_variants_are_the_forecast(script, row, model, kw, ("check_season", "season_share"), ctx, tgt, 3600.0)
    assert row["half"] < row["off"]  # a clean daily cycle: seasonal naive leads the checks
    values = ", ".join(f"{20000 + i}." for i in range(4032))
    with zipfile.ZipFile(tmp_path / "p.whl", "w") as z:
        z.writestr("pmdarima/datasets/taylor.py", f"def load_taylor():\n    x = np.array([{values}])\n")
    series = script.taylor_series(tmp_path / "p.whl")
    assert series.shape == (4032,) and series[0] == 20000 and series[-1] == 24031
    cells = script.taylor_cells(series)
    assert [c[1].shape for c in cells] == [(63, 192), (63, 672), (63, 1008)] and all(torch.equal(c[2], cells[0][2]) for c in cells)
    with zipfile.ZipFile(tmp_path / "short.whl", "w") as z:
        z.writestr("pmdarima/datasets/taylor.py", "x = np.array([1., 2.])\n")
    with pytest.raises(ValueError, match="4,032"):
        script.taylor_series(tmp_path / "short.whl")


def test_check_trend_script_scores_each_share_as_forecast_applies_it_and_restores_the_extrapolation(tmp_path, monkeypatch):
    """pretrain/check_trend.py: each cell's ratios are the model's own ``forecast`` with
    ``check_trend`` off and with each share over the best classical (the options restored after);
    ``robust_step_trend`` continues the last step but reads a jump as a jump; ``main`` puts the
    library's extrapolation back; the real paths are DeepSense 6G's distance and bearing windows."""
    from test_real_benchmark import _deepsense

    from wfm.models import causal_forecast
    from wfm.models.registry import create_model

    script = _load_script("check_trend", monkeypatch)
    kw = dict(prior="mix", guard=True, coarse_len=64, check_origins=8)
    torch.manual_seed(0)
    model = create_model("causal_tiny", **kw).eval()
    t = torch.arange(36, dtype=torch.float64) * 0.1
    x = torch.stack([torch.sqrt(15.0 ** 2 + (8.0 * (t - 0.5 - 0.1 * i)) ** 2) for i in range(4)]).float()
    ctx, tgt, group = x[:, :32], x[:, 32:], torch.arange(4)
    row = script.ratios(model, ctx, tgt, group, 0.1)
    assert not model.check_trend and model.trend_share == "half" and not model.trend_local
    assert list(row) == list(script.VARIANTS) == ["off", "half", "fitted", "local"]
    _check_variants_are_the_forecast(script, row, model, kw, ("check_trend", "trend_share"), ctx, tgt, 0.1)
    assert row["half"] < row["off"]  # a vehicle driving away: the last step leads the checks
    line = torch.arange(12, dtype=torch.float64)[None] * 0.5
    jump = line.clone()
    jump[0, -1] += 10.0  # a GPS fix off by 10
    assert torch.allclose(script.robust_step_trend(line, 3), script.LAST_STEP(line, 3))
    assert torch.allclose(script.robust_step_trend(jump, 3), jump[:, -1:] + 0.5 * torch.arange(1, 4))
    model.save_pretrained(str(tmp_path / "m"))
    script.main(["--model", str(tmp_path / "m"), "--heldout", str(tmp_path / "h"), "--seeds",
                 "--real", "", "--candidate", "robust"])
    assert causal_forecast.last_step_trend is script.LAST_STEP
    from wfm.data.generate import generate_dataset
    from wfm.data.recipes import load_recipe

    generate_dataset(load_recipe(REPO / "data" / "recipes" / "traj-pedestrian.yaml"), tmp_path / "h" / "traj-pedestrian",
                     num_samples=2, seed=0)
    generate_dataset(load_recipe(REPO / "data" / "recipes" / "traj-vehicular-gps.yaml"), tmp_path / "h" / "traj-vehicular-gps",
                     num_samples=2, seed=0)
    cells = list(script.path_cells(tmp_path / "h", tmp_path))  # no traj-highway-heldout there: skipped
    assert [c[0] for c in cells] == [f"traj-pedestrian {f} (L={L}, H={H})" for f in ("distance", "azimuth")
                                     for L, H in script.PATH_SHAPES] + [
        f"traj-vehicular-gps {f} (L={L}, H={H})" for f in ("distance", "azimuth") for L, H in (*script.PATH_SHAPES, (64, 16))]
    assert all(c[1].shape[1] == int(c[0].split("L=")[1].split(",")[0]) and len(c[1]) == len(c[2]) == len(c[3]) for c in cells)
    _deepsense(tmp_path / "real" / "deepsense6g-beam", n_traj=2, length=60)
    names = [c[0] for c in script.real_paths(tmp_path / "real")]
    assert names == [f"DeepSense 6G {k} (L={L}, H={H})" for L, H in ((16, 4), (32, 8)) for k in ("bearing", "distance")]


def test_check_range_script_scores_each_share_and_span_as_forecast_applies_it_and_restores_them(tmp_path, monkeypatch):
    """pretrain/check_range.py: each variant's ratio is the model's own ``forecast`` of the rows as
    ranges, with ``check_range`` off or with the variant's share and span, over the best classical
    (the options and the default span restored after); its cells are the held-out distances."""
    from wfm.models import causal_forecast
    from wfm.models.registry import create_model

    script = _load_script("check_range", monkeypatch)
    kw = dict(prior="mix", guard=True, coarse_len=64, check_origins=8, estimators=("mean",), backtest_origins="value")
    torch.manual_seed(0)
    model = create_model("causal_tiny", **kw).eval()
    t = torch.arange(36, dtype=torch.float64) * 0.1
    x = torch.stack([torch.sqrt(15.0 ** 2 + (8.0 * (t - 1.5 - 0.1 * i)) ** 2) for i in range(4)]).float()
    ctx, tgt, group = x[:, :32], x[:, 32:], torch.arange(4)
    row = script.ratios(model, ctx, tgt, 0.1, [6, 16])
    assert list(row) == ["off", "half 6", "half 16", "fitted 6", "fitted 16"]
    assert not model.check_range and model.range_share == "half"
    assert causal_forecast.RANGE_SPAN == 16
    best = script.best_classical(ctx, tgt, group, 0.1)
    for name, options, span in script.variants([6, 16]):
        m = create_model("causal_tiny", **options, **kw).eval()
        m.load_state_dict(model.state_dict())
        monkeypatch.setattr(causal_forecast, "RANGE_SPAN", span)
        with torch.no_grad():
            pred = m.forecast(ctx, 0.1, 4, group=group, ranges=True)
        assert row[name] == pytest.approx(script.window_nmse(pred, tgt, group) / best, rel=1e-6), name
    assert row["fitted 16"] < 0.5 * row["off"]  # a pass: the range fit leads the checks
    from wfm.data.generate import generate_dataset
    from wfm.data.recipes import load_recipe

    generate_dataset(load_recipe(REPO / "data" / "recipes" / "traj-pedestrian.yaml"), tmp_path / "h" / "traj-pedestrian",
                     num_samples=2, seed=0)
    cells = list(script.distance_cells(tmp_path / "h", tmp_path))
    assert [c[0] for c in cells] == [f"traj-pedestrian distance (L={L}, H={H})" for L, H, _ in script.SHAPES]


def test_path_options_script_scores_off_and_on_as_forecast_applies_them_and_restores_the_option(tmp_path, monkeypatch):
    """pretrain/path_options.py: each variant's ratio is the model's own ``forecast`` with the option
    (``raw_paths``, ``ar_given``) off or on (distances as ranges), over the best classical (the
    option restored after); with ``raw_paths`` a path decaying through zero gains unless it is a
    range, and the cells are the held-out paths' distance and azimuth."""
    from wfm.models.registry import create_model

    script = _load_script("path_options", monkeypatch)
    kw = dict(prior="mix", guard=True, coarse_len=64, check_origins=8, estimators=("mean", "trend", "ar"),
              backtest_origins="value", box_cox=True)
    torch.manual_seed(0)
    model = create_model("causal_tiny", **kw).eval()
    t = torch.arange(80, dtype=torch.float64) * 0.1
    x = torch.stack([40 * torch.exp(-t / 3.0) - 4.0 - 0.2 * i for i in range(4)]).float()
    ctx, tgt, group = x[:, :64], x[:, 64:], torch.arange(4)
    rows = {}
    for ranges in (False, True):
        row = rows[ranges] = script.ratios(model, ctx, tgt, 0.1, ranges)
        assert list(row) == ["off", "on"] and not model.raw_paths
        best = script.best_classical(ctx, tgt, group, 0.1)
        for name in row:
            m = create_model("causal_tiny", raw_paths=name == "on", **kw).eval()
            m.load_state_dict(model.state_dict())
            with torch.no_grad():
                pred = m.forecast(ctx, 0.1, 16, group=group, ranges=ranges)
            assert row[name] == pytest.approx(script.window_nmse(pred, tgt, group) / best, rel=1e-6), name
    assert rows[False]["on"] < rows[False]["off"]  # the forecast held at zero by Box-Cox's inverse crosses it
    assert rows[True]["on"] == rows[True]["off"]  # a range keeps Box-Cox's bound
    row = script.ratios(model, ctx, tgt, 0.1, False, "ar_given")
    assert not model.ar_given
    m = create_model("causal_tiny", ar_given=True, **kw).eval()
    m.load_state_dict(model.state_dict())
    with torch.no_grad():
        pred = m.forecast(ctx, 0.1, 16, group=group)
    assert row["on"] == pytest.approx(script.window_nmse(pred, tgt, group) / best, rel=1e-6)
    from wfm.data.generate import generate_dataset
    from wfm.data.recipes import load_recipe

    generate_dataset(load_recipe(REPO / "data" / "recipes" / "traj-pedestrian.yaml"), tmp_path / "h" / "traj-pedestrian",
                     num_samples=2, seed=0)
    monkeypatch.setattr(script, "TRAFFIC", [])
    cells = list(script.cells(tmp_path / "h", tmp_path, 1, 1))
    assert [c[0] for c in cells] == [f"traj-pedestrian {f} (L={L}, H={H})" for f in ("distance", "azimuth")
                                     for L, H, _ in script.SHAPES]


def test_check_last_script_scores_each_variant_as_forecast_applies_it_and_restores_the_options(monkeypatch):
    """pretrain/check_last.py: each variant's ratio is the model's own ``forecast`` with ``check_last``
    off, or with the variant's share and margin, over the best classical (restored after)."""
    from wfm.models import causal_forecast
    from wfm.models.registry import create_model

    script = _load_script("check_last", monkeypatch)
    kw = dict(prior="mix", guard=True, coarse_len=64, check_origins=8, estimators=("mean",), backtest_origins="value")
    torch.manual_seed(0)
    model = create_model("causal_tiny", **kw).eval()
    t = torch.arange(80, dtype=torch.float64)
    x = torch.stack([-10 - 175 / (1 + torch.exp(-(t - 24) / 1.5)) - 0.02 * t + 0.3 * i for i in range(4)]).float()
    ctx, tgt, group = x[:, :64], x[:, 64:], torch.arange(4)
    row = script.ratios(model, ctx, tgt, group, 0.05)
    assert list(row) == list(script.VARIANTS) and not model.check_last and model.last_share == "half"
    assert causal_forecast.LAST_MARGIN == 2.0
    best = script.best_classical(ctx, tgt, group, 0.05)
    for name, (flag, share, margin) in script.VARIANTS.items():
        m = create_model("causal_tiny", check_last=flag, last_share=share, **kw).eval()
        m.load_state_dict(model.state_dict())
        monkeypatch.setattr(causal_forecast, "LAST_MARGIN", margin)
        with torch.no_grad():
            pred = m.forecast(ctx, 0.05, 16, group=group)
        assert row[name] == pytest.approx(script.window_nmse(pred, tgt, group) / best, rel=1e-6), name
    assert row["fitted"] < 0.1 * row["off"]  # the swing held: persistence wins every check


def test_check_ses_script_scores_each_variant_as_forecast_applies_it_and_restores_the_options(monkeypatch):
    """pretrain/check_ses.py: each variant's ratio is the model's own ``forecast`` with ``check_ses``
    off, or with the variant's share, over the best classical (the options restored after)."""
    from wfm.models.registry import create_model

    script = _load_script("check_ses", monkeypatch)
    kw = dict(prior="mix", guard=True, coarse_len=64, check_origins=8, estimators=("mean",), backtest_origins="value")
    torch.manual_seed(0)
    model = create_model("causal_tiny", **kw).eval()
    g = torch.Generator().manual_seed(3)
    x = (100 + torch.randn(4, 80, generator=g).cumsum(1) + 0.5 * torch.randn(4, 80, generator=g))
    ctx, tgt = x[:, :64], x[:, 64:]
    row = script.ratios(model, ctx, tgt, torch.arange(4), 1.0)
    assert list(row) == list(script.VARIANTS) and not model.check_ses and model.ses_share == "half"
    _check_variants_are_the_forecast(script, row, model, kw, ("check_ses", "ses_share"), ctx, tgt, 1.0)
    assert row["fitted"] < row["off"]  # the smoothed level beats the context mean on a wandering level


def test_season_mean_script_scores_the_option_off_and_on_as_forecast_applies_it(tmp_path, monkeypatch, capsys):
    """pretrain/season_mean.py: each variant's ratio is the model's own ``forecast`` with
    ``season_mean`` off or on (and ``season_drift``) over the best classical (the options restored
    after); a model without ``check_season`` is refused."""
    from wfm.models.registry import create_model

    script = _load_script("season_mean", monkeypatch)
    kw = dict(prior="mix", guard=True, coarse_len=64, check_origins=8, estimators=("last",), backtest_origins="value",
              check_season=True)
    torch.manual_seed(0)
    model = create_model("causal_tiny", **kw).eval()
    g = torch.Generator().manual_seed(5)
    t = torch.arange(24 * 9, dtype=torch.float32)
    x = torch.stack([10 + 3 * torch.sin(2 * math.pi * (t + 5 * i) / 24) + 2 * torch.randn(len(t), generator=g)
                     for i in range(4)])
    ctx, tgt = x[:, :24 * 8], x[:, 24 * 8:]
    row = script.ratios(model, ctx, tgt, torch.arange(4), 3600.0)
    assert list(row) == list(script.VARIANTS) and not model.season_mean and not model.season_drift
    _check_variants_are_the_forecast(script, row, model, kw, ("season_mean", "season_drift"), ctx, tgt, 3600.0)
    assert row["on"] < row["off"]  # eight days' profile against one day's
    create_model("causal_tiny", **{**kw, "check_season": False}).save_pretrained(str(tmp_path / "m"))
    with pytest.raises(SystemExit):
        script.main(["--model", str(tmp_path / "m"), "--heldout", str(tmp_path / "h")])
    assert "acts through check_season" in capsys.readouterr().err and not (tmp_path / "h").exists()


def test_box_cox_script_scores_the_option_as_forecast_applies_it(tmp_path, monkeypatch):
    """pretrain/box_cox.py: generates the held-out series it lacks, and each cell's ratio is the
    model's own ``forecast`` with and without ``box_cox`` over the best classical baseline."""
    from wfm.data.shards import ShardedDataset
    from wfm.models.registry import create_model

    script = _load_script("box_cox", monkeypatch)
    name = _held_out_csi(tmp_path)
    torch.manual_seed(0)
    model = create_model("causal_tiny", prior="mix", guard=True, coarse_len=64, check_origins=4)
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=0.3)
    model.save_pretrained(str(tmp_path / "m"))
    out = script.main(["--model", str(tmp_path / "m"), "--heldout", str(tmp_path / "ho"), "--data", str(tmp_path),
                       "--traffic", "traffic-10min:96:12:600", "traffic-10min:96:12:600:idle", "--traj", "traj-pedestrian",
                       "--csi", name,
                       "--series", "2", "--per-series", "2", "--traj-samples", "2", "--csi-samples", "2",
                       "--real", "", "--out", str(tmp_path / "b.json")])
    assert json.loads((tmp_path / "b.json").read_text())["summary"] == out["summary"]
    assert [c["kind"] for c in out["cells"]] == ["traffic", "traffic", "distance", "azimuth", "csi amplitude"]
    assert "idle nights" in out["cells"][1]["cell"] and "idle" not in out["cells"][0]["cell"]
    traffic = out["cells"][0]
    x = ShardedDataset(tmp_path / "ho" / "traffic-10min").read_range(0, 2, ["traffic"])["traffic"]
    ctx, tgt = script.series_windows(x.reshape(2, -1), 96, 12, 2)
    group = torch.arange(len(ctx))
    best = script.best_classical(ctx, tgt, group, 600.0)
    for flag, key in ((False, "as given"), (True, "box_cox")):
        m = create_model("causal_tiny", prior="mix", guard=True, coarse_len=64, check_origins=4, box_cox=flag).eval()
        m.load_state_dict(model.state_dict())
        with torch.no_grad():
            ratio = script.window_nmse(m.forecast(ctx, 600.0, 12, group=group), tgt, group) / best
        assert traffic["ratio"][key] == pytest.approx(ratio, rel=1e-5)
    assert traffic["ratio"]["box_cox"] != traffic["ratio"]["as given"]  # traffic is positive: transformed


def test_coarse_blend_script_scores_the_readings_as_forecast_applies_them(tmp_path, monkeypatch):
    """pretrain/coarse_blend.py: its ``coarse`` and ``blend`` rules are the model's own ``forecast``
    without and with ``coarse_blend`` (box_cox and the checks included), over the best classical."""
    from wfm.data.shards import ShardedDataset
    from wfm.models.registry import create_model

    script = _load_script("coarse_blend", monkeypatch)
    kw = dict(prior="mix", guard=True, coarse_len=16, max_context=32, check_origins=4, box_cox=True)
    torch.manual_seed(0)
    model = create_model("causal_tiny", **kw)
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=0.3)
    model.save_pretrained(str(tmp_path / "m"))
    out = script.main(["--model", str(tmp_path / "m"), "--heldout", str(tmp_path / "ho"),
                       "--traffic", "traffic-10min:96:12:600", "--series", "2", "--per-series", "2",
                       "--real-data", "", "--out", str(tmp_path / "c.json")])
    assert json.loads((tmp_path / "c.json").read_text())["geometric_mean"] == out["geometric_mean"]
    cell = out["traffic"][0]
    assert set(cell["ratio"]) == set(script.RULES) and out["real"] == []
    x = ShardedDataset(tmp_path / "ho" / "traffic-10min").read_range(0, 2, ["traffic"])["traffic"]
    ctx, tgt = script.study.series_windows(x.reshape(2, -1), 96, 12, 2)
    best = script.study.best_classical(ctx, tgt, torch.arange(len(ctx)), 600.0)
    for flag, key in ((False, "coarse"), (True, "blend")):
        m = create_model("causal_tiny", coarse_blend=flag, **kw).eval()
        m.load_state_dict(model.state_dict())
        with torch.no_grad():
            ratio = float(script.window_nmse(m.forecast(ctx, 600.0, 12), tgt).mean()) / best
        assert cell["ratio"][key] == pytest.approx(ratio, rel=1e-5)
    assert cell["ratio"]["without"] != cell["ratio"]["coarse"]  # 96 values: 64 of them as coarse tokens


def test_quantile_spread_script_scores_the_option_as_forecast_applies_it(tmp_path, monkeypatch):
    """pretrain/quantile_spread.py: its "off" and "on" rows are the model's own quantile forecasts
    without and with ``propagate_quantiles`` (coverage over all values, the first and the last
    patch, and the weighted quantile loss against a reference written out), and the model's
    option is restored."""
    from wfm.data.shards import ShardedDataset
    from wfm.models.registry import create_model

    script = _load_script("quantile_spread", monkeypatch)
    kw = dict(prior="mix", guard=True, check_origins=4, box_cox=True, quantiles=(0.1, 0.5, 0.9))
    torch.manual_seed(0)
    model = create_model("causal_tiny", **kw)
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=0.3)
    model.save_pretrained(str(tmp_path / "m"))
    out = script.main(["--model", str(tmp_path / "m"), "--heldout", str(tmp_path / "ho"), "--traj",
                       "--traffic", "traffic-10min:96:20:600", "--series", "2", "--per-series", "2",
                       "--data", str(tmp_path / "none"), "--out", str(tmp_path / "q.json")])
    assert json.loads((tmp_path / "q.json").read_text())["summary"] == out["summary"]
    cell, = out["cells"]
    x = ShardedDataset(tmp_path / "ho" / "traffic-10min").read_range(0, 2, ["traffic"])["traffic"]
    ctx, tgt = script.study.series_windows(x.reshape(2, -1), 96, 20, 2)
    assert cell["windows"] == len(ctx) == 4
    for flag, key in ((False, "off"), (True, "on")):
        m = create_model("causal_tiny", propagate_quantiles=flag, **kw).eval()
        m.load_state_dict(model.state_dict())
        with torch.no_grad():
            q = m.forecast(ctx, 600.0, 20, quantiles=True)
        inside = ((tgt >= q[..., 0]) & (tgt <= q[..., 2])).float()
        assert cell[key]["inside"] == pytest.approx(float(inside.mean()))
        assert cell[key]["last"] == pytest.approx(float(inside[:, -8:].mean()))
        pin = sum(torch.maximum(lv * (tgt - q[..., i]), (lv - 1) * (tgt - q[..., i])) for i, lv in enumerate((0.1, 0.5, 0.9)))
        assert cell[key]["loss"] == pytest.approx(float((2 * pin.sum(1) / tgt.abs().sum(1)).mean()), rel=1e-5)
    assert cell["on"]["first"] == cell["off"]["first"]  # the first patch has nothing before it


def test_canonical_script_scores_the_model_and_the_oracle_against_the_best_classical(tmp_path, monkeypatch):
    """pretrain/canonical.py: each process's oracle is the optimal forecast it names (the level for
    white noise, the last value for a random walk, the line for a trend: at or below the best of
    persistence and the mean), and the model's row is its own ``forecast`` over that baseline."""
    import wfm
    from wfm.models.registry import create_model
    from wfm.tasks.metrics import window_nmse

    script = _load_script("canonical", monkeypatch)
    for process in script.PROCESSES + script.MORE_PROCESSES:
        x, oracle = script.draw(process, 64, 96, 8, seed=0)
        assert x.shape == (64, 104) and oracle.shape == (64, 8) and torch.isfinite(x).all()
        assert script.score(_Persistence(), process, 64, 96, 8, 0, 60.0)["oracle"] <= 1.02, process
    x, oracle = script.draw("counts 3", 64, 96, 8, seed=0)  # Poisson counts: their rate is the oracle
    assert torch.equal(x, x.round()) and (x >= 0).all() and float(x.mean()) == pytest.approx(3.0, rel=0.05)
    assert (oracle == 3.0).all()
    x, oracle = script.draw("random walk", 4, 32, 4, seed=1)
    assert torch.equal(oracle, x[:, 31:32].expand(4, 4))
    # a wandering level under noise: its filtered level beats both the last value and the mean
    assert script.score(_Persistence(), "local level", 64, 96, 8, 0, 60.0)["oracle"] < 0.9
    torch.manual_seed(0)
    model = create_model("causal_tiny", prior="mix", guard=True, check_origins=4)
    model.save_pretrained(str(tmp_path / "m"))
    out = script.main(["--model", str(tmp_path / "m"), "--processes", "white", "trend", "--contexts", "32",
                       "--horizon", "8", "--series", "4", "--seeds", "2", "--out", str(tmp_path / "c.json")])
    assert json.loads((tmp_path / "c.json").read_text())["rows"] == out["rows"] and len(out["rows"]) == 2
    x, _ = script.draw("trend", 4, 32, 8, seed=0)
    ctx, tgt = x[:, :32], x[:, 32:]
    best = min(float(window_nmse(ctx[:, -1:].expand_as(tgt), tgt).mean()),
               float(window_nmse(ctx.mean(1, keepdim=True).expand_as(tgt), tgt).mean()))
    m = wfm.from_pretrained(str(tmp_path / "m")).eval()
    with torch.no_grad():
        ratio = float(window_nmse(m.forecast(ctx, 60.0, 8), tgt).mean()) / best
    runs = [script.score(m, "trend", 4, 32, 8, s, 60.0)["model"] for s in range(2)]
    assert runs[0] == pytest.approx(ratio, rel=1e-6)
    assert out["rows"][1]["model"] == pytest.approx(sum(runs) / 2, rel=1e-6)


class _Persistence:
    """A stand-in forecaster (the last value) for the oracle checks of pretrain/canonical.py."""

    def forecast(self, context, interval, horizon):
        return context[:, -1:].expand(-1, horizon)


def test_check_test_script_scores_each_statistic_on_sinusoids(tmp_path, monkeypatch):
    """pretrain/check_test.py: sinusoids of period 20-500 values around their level, with the noise
    asked for; each cell's ratio is the model's ``forecast`` with that ``check_test`` over the best
    of persistence and the mean; the model's own statistic is restored; the JSON holds the rows."""
    import wfm
    from wfm.models.registry import create_model

    script = _load_script("check_test", monkeypatch)
    x = script.sinusoids(64, 600, level=5.0, noise=0.0, seed=0)
    assert x.shape == (64, 600) and torch.allclose(x.mean(dim=1), torch.full((64,), 5.0, dtype=x.dtype), atol=0.3)
    assert float((x - 5.0).abs().max()) <= 1.0 + 1e-9  # unit amplitude, no noise
    noisy = script.sinusoids(4, 600, level=0.0, noise=0.05, seed=0)
    assert 0.03 < float((noisy - script.sinusoids(4, 600, 0.0, 0.0, seed=0)).std()) < 0.07
    torch.manual_seed(0)
    model = create_model("causal_tiny", prior="mix", guard=True, check_origins=8)
    model.save_pretrained(str(tmp_path / "m"))
    out = script.main(["--model", str(tmp_path / "m"), "--contexts", "64", "--series", "2",
                       "--tests", "difference", "either", "--out", str(tmp_path / "c.json")])
    assert json.loads((tmp_path / "c.json").read_text())["cells"] == out["cells"] and len(out["cells"]) == 6
    m = wfm.from_pretrained(str(tmp_path / "m")).eval()
    x = script.sinusoids(2, 64 + 30, 0.0, 0.0, seed=64)
    ctx, tgt = x[:, :64].float(), x[:, 64:].float()
    got = script.score(m, ctx, tgt, 120.0, torch.arange(2), ["either"])["either"]
    assert m.check_test == "difference"  # restored
    assert out["cells"][0]["ratio"]["either"] == pytest.approx(got, rel=1e-6)


def test_one_period_script_reads_the_season_off_the_context_ends_and_blends_seasonal_naive_in(monkeypatch):
    """pretrain/one_period.py: ``wrap_ratio`` is about 1 where a day of context ends where it began
    (a daily cycle with noise) and large where it does not (a trend); each variant moves the
    model's own forecast towards seasonal naive of the context by its share, scored against the
    best classical (seasonal naive among them)."""
    from wfm.models.registry import create_model

    script = _load_script("one_period", monkeypatch)
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(48, dtype=torch.float64)
    daily = 10 + 5 * torch.sin(2 * math.pi * t / 24) + 0.3 * torch.randn(8, 48, generator=gen, dtype=torch.float64)
    trend = 10 + 0.5 * t + 0.3 * torch.randn(8, 48, generator=gen, dtype=torch.float64)
    wrap_daily, wrap_trend = script.wrap_ratio(daily[:, :24], 12), script.wrap_ratio(trend[:, :24], 12)
    assert wrap_daily.median() < 2 and wrap_trend.min() > 10
    x = daily[:, :24]  # the reference: sum over k of sum_{t<k} (x[L-k+t] - x[t])^2 over sum of k * mean k-step change^2
    num = sum(((x[:, 24 - k + i] - x[:, i]) ** 2) for k in range(1, 7) for i in range(k))
    den = sum(k * ((x[:, k:] - x[:, :-k]) ** 2).mean(1) for k in range(1, 7))
    assert torch.allclose(script.wrap_ratio(x, 12), num / den)
    release = torch.zeros(8, 12, dtype=torch.float64)
    out = script.variants(release, x, 24)
    season = x[:, :12]
    assert torch.equal(out["release"], release) and torch.allclose(out["half"], 0.5 * season)
    assert torch.allclose(out["wrap share"], (0.5 / (1 + script.wrap_ratio(x, 12)))[:, None] * season)
    torch.manual_seed(0)
    model = create_model("causal_tiny", prior="mix", guard=True, estimators=("last", "mean", "day")).eval()
    ctx, tgt = daily[:, :24].float(), daily[:, 24:36].float()
    rows = script.score(model, [("daily", ctx, tgt, 3600.0)])
    group = torch.arange(8)
    with torch.no_grad():
        pred = model.forecast(ctx, 3600.0, 12, group=group)
    best = script.best_classical(ctx, tgt, group, 3600.0)
    assert best == pytest.approx(script.window_nmse(ctx[:, :12], tgt, group))  # seasonal naive is the best classical
    for name, value in rows["daily"].items():
        want = script.variants(pred, ctx, 24)[name]
        assert value == pytest.approx(script.window_nmse(want, tgt, group) / best, rel=1e-6), name
    assert rows["daily"]["half"] < rows["daily"]["release"]  # a clean daily cycle: yesterday helps
    assert set(script.summary(rows)) == set(script.VARIANTS)


def test_shallow_days_script_scores_each_model_as_forecast_does(tmp_path, monkeypatch):
    """pretrain/shallow_days.py: generates the held-out series it lacks (deep- and shallow-day
    recipes), and each cell's ratio is the model's own ``forecast`` over the best classical."""
    from wfm.data.shards import ShardedDataset
    from wfm.models.registry import create_model

    script = _load_script("shallow_days", monkeypatch)
    torch.manual_seed(0)
    model = create_model("causal_tiny", prior="mix", guard=True, coarse_len=64, check_origins=4).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=0.3)
    model.save_pretrained(str(tmp_path / "m"))
    out = script.main(["--models", str(tmp_path / "m"), "--heldout", str(tmp_path / "ho"), "--seeds", "5",
                       "--cells", "traffic-10min:96:12:600", "traffic-10min-shallow:96:12:600",
                       "--series", "2", "--per-series", "2", "--out", str(tmp_path / "s.json")])
    assert json.loads((tmp_path / "s.json").read_text())["summary"] == out["summary"]
    assert set(out["summary"]) == {"deep", "shallow"} and list(out["summary"]["deep"]) == [str(tmp_path / "m")]
    for recipe, key in (("traffic-10min", "5 traffic-10min (L=96, H=12)"),
                        ("traffic-10min-shallow", "5 traffic-10min-shallow (L=96, H=12)")):
        x = ShardedDataset(tmp_path / "ho" / "5" / recipe).read_range(0, 2, ["traffic"])["traffic"]
        ctx, tgt = _load_script("box_cox", monkeypatch).series_windows(x.reshape(2, -1), 96, 12, 2)
        group = torch.arange(len(ctx))
        best = script.best_classical(ctx, tgt, group, 600.0)
        with torch.no_grad():
            ratio = script.window_nmse(model.forecast(ctx, 600.0, 12, group=group), tgt, group) / best
        assert out["cells"][key][str(tmp_path / "m")] == pytest.approx(ratio, rel=1e-5)
    manifest = json.loads((tmp_path / "ho" / "5" / "traffic-10min-shallow" / "manifest.json").read_text())
    assert "night_floor_max" in json.dumps(manifest)


def test_intermittent_script_draws_zero_inflated_counts_and_scores_each_model_as_forecast_does(tmp_path, monkeypatch):
    """pretrain/intermittent.py: each cell's series hold about the asked share of zeros (the rest
    Poisson counts), no window's target is all zero, and a cell's ratio is the model's own
    ``forecast`` over the best classical on the same windows."""
    from wfm.models.registry import create_model

    script = _load_script("intermittent", monkeypatch)
    ctx, tgt = script.intermittent_windows(0.7, 400, 20, 64, 3.0, seed=1)
    assert ctx.shape[1:] == (400,) and tgt.shape[1:] == (20,) and len(ctx) == len(tgt) >= 60
    assert float((ctx == 0).double().mean()) == pytest.approx(0.7 + 0.3 * math.exp(-3.0), abs=0.02)
    assert bool((tgt > 0).any(dim=1).all()) and bool((ctx == ctx.round()).all())
    torch.manual_seed(0)
    model = create_model("causal_tiny", prior="mix", guard=True, check_origins=4, box_cox=True).eval()
    model.save_pretrained(str(tmp_path / "m"))
    out = script.main(["--models", str(tmp_path / "m"), "--zeros", "0.5", "--shapes", "64:8:600",
                       "--series", "6", "--seed", "3", "--out", str(tmp_path / "i.json")])
    assert json.loads((tmp_path / "i.json").read_text())["summary"] == out["summary"]
    ctx, tgt = script.intermittent_windows(0.5, 64, 8, 6, 3.0, seed=3)
    group = torch.arange(len(ctx))
    with torch.no_grad():
        ratio = script.window_nmse(model.forecast(ctx, 600.0, 8, group=group), tgt, group) / \
            script.best_classical(ctx, tgt, group, 600.0)
    assert out["cells"]["zeros 0.5 (L=64, H=8)"][str(tmp_path / "m")] == pytest.approx(ratio, rel=1e-6)


def test_drift_ar_script_scores_the_option_off_and_on_as_forecast_applies_it(tmp_path, monkeypatch):
    """pretrain/drift_ar.py: each arm's ratio is the model's own ``forecast`` with ``drift_ar`` off,
    on, or on with ``drift_shape`` (a held-out sample's channels pooled) over the better of persistence and the mean, and on
    a turning link over persistence; linear prediction pooled over the window beside them."""
    from wfm.models.linear_prediction import ar_forecast_rows
    from wfm.models.registry import create_model
    from wfm.tasks.metrics import window_nmse

    script = _load_script("drift_ar", monkeypatch)
    name = _held_out_csi(tmp_path)
    torch.manual_seed(0)
    kw = dict(prior="mix", guard=True, coarse_len=64, backtest_origins="value", check_origins=8, white_limit=0.5)
    model = create_model("causal_tiny", **kw)
    model.save_pretrained(str(tmp_path / "m"))
    mae = create_model("mae_tiny", prior="mix", white_limit=0.5).eval()
    mae.save_pretrained(str(tmp_path / "mae"))
    out = script.main(["--model", str(tmp_path / "m"), "--data", str(tmp_path), "--real", "", "--windows", "2",
                       "--contexts", "8", "--dopplers", "20", "--seeds", "0", "--mae", str(tmp_path / "mae"),
                       "--mae-windows", "3", "--out", str(tmp_path / "d.json")])
    assert json.loads((tmp_path / "d.json").read_text()) == json.loads(json.dumps(out))
    (cell,) = out["generated"]
    assert cell["dataset"] == name and cell["context"] == 8
    assert set(cell["ratio"]) == {"off", "drift_ar", "drift_shape", "ar", "mae off", "mae drift_ar", "mae drift_shape"}
    csi = script.load_csi(tmp_path / name, "test", task="drift-ar")["csi"][:3, :16]
    tgt = csi[:, 8:]
    best_c = min(float(window_nmse(csi[:, 7:8].expand_as(tgt), tgt).mean()),
                 float(window_nmse(csi[:, :8].mean(1, keepdim=True).expand_as(tgt), tgt).mean()))
    rec = mae.predict(csi, "temporal", 0.5).reconstruction[:, 8:]
    assert cell["ratio"]["mae off"] == pytest.approx(float(window_nmse(rec, tgt).mean()) / best_c, rel=1e-5)
    pool = script.held_out_pool(tmp_path / name)
    x, group, interval = script.held_out_windows(pool, 8, 8, 2, 0)
    ctx, tgt = x[:, :8], x[:, 8:]
    best = script.best_classical(ctx, tgt, group)
    with torch.no_grad():
        plain = script.grouped_nmse(model.eval().forecast(ctx, interval, 8, group=group), tgt, group)
    assert cell["ratio"]["off"] == pytest.approx(plain / best, rel=1e-5)
    on = create_model("causal_tiny", drift_ar=True, **kw).eval()
    on.load_state_dict(model.state_dict())
    with torch.no_grad():
        drift = script.grouped_nmse(on.forecast(ctx, interval, 8, group=group), tgt, group)
    assert cell["ratio"]["drift_ar"] == pytest.approx(drift / best, rel=1e-5)
    shape = create_model("causal_tiny", drift_ar=True, drift_shape=True, **kw).eval()
    shape.load_state_dict(model.state_dict())
    with torch.no_grad():
        drift = script.grouped_nmse(shape.forecast(ctx, interval, 8, group=group), tgt, group)
    assert cell["ratio"]["drift_shape"] == pytest.approx(drift / best, rel=1e-5)
    lp = script.grouped_nmse(ar_forecast_rows(ctx, 8, group).float(), tgt, group)
    assert cell["ratio"]["ar"] == pytest.approx(lp / best, rel=1e-5)
    (link,) = out["turning"]  # a 20 Hz link over 8 packets: linear prediction is far ahead of persistence
    assert link["doppler"] == 20 and link["ratio"]["ar"] < 0.8
    # --draw: other held-out samples of the same split, scored the same way
    other = script.main(["--model", str(tmp_path / "m"), "--data", str(tmp_path), "--real", "", "--windows", "2",
                         "--contexts", "8", "--dopplers", "--draw", "1"])
    x, group, interval = script.held_out_windows(pool, 8, 8, 2, 1)
    ctx, tgt = x[:, :8], x[:, 8:]
    with torch.no_grad():
        plain = script.grouped_nmse(model.eval().forecast(ctx, interval, 8, group=group), tgt, group)
    assert other["generated"][0]["ratio"]["off"] == pytest.approx(plain / script.best_classical(ctx, tgt, group), rel=1e-5)
