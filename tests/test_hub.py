"""Checkpoint export (``wfm export``) and loading (``wfm.from_pretrained``)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wfm.hub import CheckpointError, export_checkpoint, from_pretrained, read_config

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "mae-tiny-export"


def _input(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    re, im = torch.randn(2, 2, 8, 8, 16, generator=g).unbind(0)
    return torch.complex(re, im)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A mae_tiny module after one real training step, and its Lightning checkpoint."""
    import pytorch_lightning as pl

    from wfm.data.synthetic import SyntheticCSIDataModule
    from wfm.training.lit_mae import MAEPretrainModule

    pl.seed_everything(0)
    module = MAEPretrainModule(model="mae_tiny", warmup_steps=1)
    dm = SyntheticCSIDataModule(shapes=[(8, 8, 16)], batch_size=2, train_batches=2, val_batches=1)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    ckpt = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    return module, ckpt


@pytest.fixture()
def exported(trained, tmp_path) -> Path:
    return export_checkpoint(trained[1], tmp_path / "mae-tiny")


def test_export_writes_folder_and_loads_identically(trained, exported):
    module, ckpt = trained
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert not list(exported.parent.glob(".*tmp*"))  # nothing half-written left behind
    config = read_config(exported)
    assert config["format_version"] == 1 and config["model_kind"] == "mae" and config["name"] == "mae_tiny"
    assert config["global_step"] == 1 and config["num_params"] == module.model.num_params()
    assert config["arch"]["dim"] == 64 and config["patch_size"] == [4, 4, 4] and config["attention"] == "sdpa"
    from safetensors.torch import load_file

    assert not any(k.startswith("model.") for k in load_file(str(exported / "model.safetensors")))
    assert "wfm.from_pretrained" in (exported / "README.md").read_text()

    import wfm

    loaded = wfm.from_pretrained(exported)
    assert not loaded.training
    original = module.model.eval()
    csi = _input()
    a, b = original.predict(csi, "temporal", 0.5), loaded.predict(csi, "temporal", 0.5)
    assert torch.equal(a.reconstruction, b.reconstruction) and a.nmse_db == b.nmse_db
    for k, v in original.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_export_carries_the_mae_inference_rules_a_config_sets(tmp_path):
    """``MAEPretrainModule(model_kwargs=...)`` (the GPU configs' inference rules) reach the
    exported ``config.json`` and the loaded model."""
    import pytorch_lightning as pl

    from wfm.training.lit_mae import MAEPretrainModule

    rules = {"guard_prior": {"frequency": "hold|ar|mean|rank1"}, "white_limit": 0.5, "white_dips": True,
             "guard_origins": [2, 3, 4]}
    module = MAEPretrainModule(model="mae_tiny", prior="mix", loss="skill", model_kwargs=rules)
    trainer = pl.Trainer(max_steps=0, accelerator="cpu", logger=False, enable_checkpointing=False)
    trainer.strategy.connect(module)
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    config = read_config(export_checkpoint(ckpt, tmp_path / "out"))
    assert {k: config["arch"][k] for k in rules} == rules and config["arch"]["prior"] == "mix"
    loaded = from_pretrained(tmp_path / "out")
    assert loaded.white_limit == 0.5 and tuple(loaded.guard_origins) == (2, 3, 4) and loaded.white_dips


def test_export_refuses_non_empty_out_dir_unless_overwrite(trained, exported):
    with pytest.raises(CheckpointError, match="not empty"):
        export_checkpoint(trained[1], exported)
    export_checkpoint(trained[1], exported, overwrite=True, metrics={"val/nmse_db": -3.5})
    assert read_config(exported)["metrics"] == {"val/nmse_db": -3.5}
    assert "val/nmse_db" in (exported / "README.md").read_text()


def test_export_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        export_checkpoint(tmp_path / "missing.ckpt", tmp_path / "out")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")  # neither torch.save's zip nor a pickle: said before torch.load
    with pytest.raises(CheckpointError, match="bad.ckpt: not a PyTorch checkpoint"):
        export_checkpoint(bad, tmp_path / "out")
    bad.write_bytes(b"PK\x03\x04 truncated")  # a zip header and nothing after it
    with pytest.raises(CheckpointError, match="bad.ckpt: cannot read checkpoint"):
        export_checkpoint(bad, tmp_path / "out")
    torch.save({"foo": 1}, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        export_checkpoint(tmp_path / "plain.ckpt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_refuses_pickled_objects(tmp_path):
    import argparse  # any non-allowlisted class: weights_only must refuse to build it

    torch.save({"state_dict": {}, "hyper_parameters": {"model": argparse.Namespace(a=1)}}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="weights_only"):
        export_checkpoint(tmp_path / "evil.ckpt", tmp_path / "out")


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for k, v in changes.items():
        if k.startswith("arch_"):
            config["arch"][k[5:]] = v
        else:
            config[k] = v
    path.write_text(json.dumps(config))


def test_missing_files(exported, tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="no such folder"):
        from_pretrained(tmp_path / "nowhere")
    # shaped like a Hub repo id, but its owner is a folder here: a mistyped path, refused at once
    # (offline, the Hub would retry it for ~25 s), with the nearest folder named
    (tmp_path / "checkpoints" / "causal-tiny-catalog-cpu").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"checkpoints/causl-tiny: no such folder in checkpoints/; "
                                              r"did you mean checkpoints/causal-tiny-catalog-cpu\?"):
        from_pretrained("checkpoints/causl-tiny")
    (exported / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        from_pretrained(exported)
    (exported / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config.json"):
        from_pretrained(exported)


@pytest.mark.parametrize("changes, pattern", [
    ({"arch_depth": 5}, r"unexpected keys: blocks\.5\."),
    ({"arch_depth": 7}, r"missing keys: blocks\.6\."),
    ({"arch_dim": 32}, r"shape mismatch .*patch_embed\.weight"),
])
def test_config_that_does_not_match_the_weights(exported, changes, pattern):
    _edit_config(exported, **changes)
    with pytest.raises(CheckpointError, match=pattern):
        from_pretrained(exported)


def test_format_version_and_kind(exported):
    _edit_config(exported, format_version=2)
    with pytest.raises(CheckpointError, match="format_version 2 is newer"):
        from_pretrained(exported)
    _edit_config(exported, format_version=1, model_kind="diffusion")
    with pytest.raises(CheckpointError, match="unknown model kind 'diffusion'"):
        from_pretrained(exported)
    (exported / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        from_pretrained(exported)


def test_truncated_and_tampered_weights(exported):
    weights = exported / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        from_pretrained(exported)
    # Without the recorded checksum the safetensors parser itself must still refuse it.
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        from_pretrained(exported, verify=False)
    tampered = bytearray(data)
    tampered[-1] ^= 0xFF  # one bit of one weight: still a valid file
    weights.write_bytes(bytes(tampered))
    with pytest.raises(CheckpointError, match="sha256 mismatch \\(changed since export\\)"):
        from_pretrained(exported)
    from_pretrained(exported, verify=False)  # opt-out loads it


def test_hub_id_offline_with_empty_cache_names_the_id(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    code = ("import wfm\n"
            "try:\n    wfm.from_pretrained('someone/wfm-mae-tiny')\n"
            "except ValueError as e:\n    print('ERR', type(e).__name__, e)\n")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "ERR CheckpointError someone/wfm-mae-tiny" in res.stdout, res.stdout + res.stderr
    assert "Hugging Face Hub" in res.stdout


def test_cli_export(trained, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "cli-export"
    cmd = [sys.executable, "-m", "wfm.cli", "export", str(trained[1]), str(out), "--metric", "val/loss=0.5"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "mae_tiny" in res.stdout and "model.safetensors" in res.stdout and "config.json" in res.stdout
    config = read_config(out)
    assert config["metrics"] == {"val/loss": 0.5}
    # How it was trained travels with it: the module's arguments (and the data module's, if any).
    assert config["training"]["module"]["model"] == "mae_tiny" and "lr" in config["training"]["module"]
    # A second export into the same folder is a one-line error with exit 2.
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "error:" in res.stderr and "not empty" in res.stderr
    assert "Traceback" not in res.stderr


def test_export_is_byte_for_byte_reproducible(trained, tmp_path):
    """The same checkpoint always gives the same weights file, so its sha256 can be published."""
    a = export_checkpoint(trained[1], tmp_path / "a")
    b = export_checkpoint(trained[1], tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def load_committed(fixture: Path, maker: str, tmp_path: Path):
    """``(model, expected outputs, fixed input)`` of a committed export, loaded from a copy (the
    committed files are never touched) with the input its ``maker`` script recorded them for."""
    sys.path.insert(0, str(fixture.parent))
    try:
        fixed_input = importlib.import_module(maker).fixed_input
    finally:
        sys.path.pop(0)
    folder = tmp_path / "fixture"
    shutil.copytree(fixture, folder)
    return from_pretrained(folder), json.loads((fixture / "expected.json").read_text()), fixed_input()


def test_committed_fixture_keeps_loading(tmp_path):
    """Old exports must keep working: the committed folder loads and gives the recorded outputs."""
    model, expected, x = load_committed(FIXTURE, "make_mae_tiny_export", tmp_path)
    pred = model.predict(x, *expected["mask"])
    r = pred.reconstruction
    assert float(r.real.sum()) == pytest.approx(expected["sum_real"], rel=1e-4, abs=1e-3)
    assert float(r.imag.sum()) == pytest.approx(expected["sum_imag"], rel=1e-4, abs=1e-3)
    assert float(r.abs().sum()) == pytest.approx(expected["abs_sum"], rel=1e-5)
    assert pred.nmse_db == pytest.approx(expected["nmse_db"], abs=1e-4)
    got = [x for v in r[0, -1, 0, :4] for x in (float(v.real), float(v.imag))]
    assert got == pytest.approx([x for pair in expected["first_values"] for x in pair], abs=1e-5)


# ---------------------------------------------------------------------------- causal model

CAUSAL_FIXTURE = REPO / "tests" / "fixtures" / "causal-tiny-export"


def test_causal_export_round_trip(tmp_path):
    """A CausalPretrainModule checkpoint exports to a folder that forecasts identically."""
    import pytorch_lightning as pl

    from wfm.data.synthetic_series import SyntheticSeriesDataModule
    from wfm.training.lit_causal import CausalPretrainModule

    pl.seed_everything(0)
    module = CausalPretrainModule(model="causal_tiny", quantiles=[0.2, 0.8], model_kwargs={"dim": 32, "depth": 1, "horizon_patches": 2},
                                  warmup_steps=1)
    dm = SyntheticSeriesDataModule(series_per_kind=8, context=32, horizon=8, batch_size=4, samples_per_epoch=8)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    ckpt = tmp_path / "causal.ckpt"
    trainer.save_checkpoint(ckpt)
    out = export_checkpoint(ckpt, tmp_path / "causal-export", metrics={"val/nmse_aoa": 0.1})
    config = read_config(out)
    assert config["model_kind"] == "causal" and config["name"] == "causal_tiny"
    assert config["arch"]["dim"] == 32 and config["arch"]["depth"] == 1 and config["arch"]["horizon_patches"] == 2 and config["arch"]["quantiles"] == [0.2, 0.8]
    assert config["num_params"] == module.model.num_params()
    assert "model.forecast(context, interval, horizon)" in (out / "README.md").read_text()

    import wfm

    loaded = wfm.from_pretrained(out)
    x = torch.randn(2, 29).cumsum(1)
    original = module.model.eval()
    assert torch.equal(original.forecast(x, 0.1, 11), loaded.forecast(x, 0.1, 11))
    assert torch.equal(original.forecast(x, 0.1, 5, quantiles=True), loaded.forecast(x, 0.1, 5, quantiles=True))


def test_committed_causal_fixture_keeps_loading(tmp_path):
    model, expected, x = load_committed(CAUSAL_FIXTURE, "make_causal_tiny_export", tmp_path)
    assert read_config(tmp_path / "fixture")["model_kind"] == "causal"
    iv = torch.tensor(expected["intervals"])
    f = model.forecast(x, iv, expected["horizon"])
    q = model.forecast(x, iv, expected["horizon"], quantiles=True)
    assert float(f.sum()) == pytest.approx(expected["sum"], rel=1e-5)
    assert float(f.abs().sum()) == pytest.approx(expected["abs_sum"], rel=1e-5)
    assert [float(v) for v in f[:, 0]] == pytest.approx(expected["first_values"], abs=1e-4)
    assert [float(v) for v in f[:, -1]] == pytest.approx(expected["last_values"], abs=1e-4)
    assert float(q.sum()) == pytest.approx(expected["quantile_sum"], rel=1e-5)


# ---------------------------------------------------------------------------- huggingface_hub mixin


def _fixture_copy(tmp_path: Path, name: str = "mae") -> Path:
    out = tmp_path / f"{name}-copy"
    shutil.copytree(FIXTURE if name == "mae" else CAUSAL_FIXTURE, out)
    return out


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one bit of one weight: still a valid safetensors file
    path.write_bytes(bytes(data))


def test_model_class_from_pretrained_makes_the_same_checks(tmp_path):
    """``MaskedAutoencoder.from_pretrained`` / ``CausalForecaster.from_pretrained`` (ModelHubMixin)
    are wfm's loader: same model, and the sha256, kind and argument checks."""
    from wfm.models.causal import CausalForecaster
    from wfm.models.mae import MaskedAutoencoder

    folder = _fixture_copy(tmp_path)
    model = MaskedAutoencoder.from_pretrained(folder)
    assert type(model) is MaskedAutoencoder and not model.training
    reference = from_pretrained(folder)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    causal = _fixture_copy(tmp_path, "causal")
    assert type(CausalForecaster.from_pretrained(causal)) is CausalForecaster

    with pytest.raises(CheckpointError, match=r"describes a mae model \(MaskedAutoencoder\), not a CausalForecaster"):
        CausalForecaster.from_pretrained(folder)
    with pytest.raises(CheckpointError, match=r"describes a causal model \(CausalForecaster\), not a MaskedAutoencoder"):
        MaskedAutoencoder.from_pretrained(causal)
    with pytest.raises(TypeError, match="unexpected keyword arguments dim"):
        MaskedAutoencoder.from_pretrained(folder, dim=32)
    with pytest.raises(CheckpointError, match="no such folder"):
        MaskedAutoencoder.from_pretrained(tmp_path / "nowhere")
    _flip_last_byte(folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 mismatch \(changed since export\)"):
        MaskedAutoencoder.from_pretrained(folder)
    MaskedAutoencoder.from_pretrained(folder, verify=False)  # the opt-out, as for wfm.from_pretrained
    _edit_config(folder, format_version=2)
    with pytest.raises(CheckpointError, match="format_version 2 is newer"):
        MaskedAutoencoder.from_pretrained(folder)


@pytest.fixture()
def fake_hub(tmp_path, monkeypatch):
    """A Hub without a network: ``hf_hub_download`` copies files of ``remote/<repo>/<revision>/``
    into ``cache_dir``; yields (remote folder, list of calls)."""
    import huggingface_hub
    import huggingface_hub.hub_mixin
    from huggingface_hub.errors import EntryNotFoundError

    remote, calls = tmp_path / "remote", []

    def download(repo_id, filename, *, revision=None, cache_dir=None, **kwargs):
        calls.append({"repo_id": repo_id, "filename": filename, "revision": revision, "cache_dir": cache_dir})
        src = remote / repo_id / (revision or "main") / filename
        if not src.is_file():
            raise EntryNotFoundError(f"404 Client Error: {filename} not found in {repo_id}")
        dst = Path(cache_dir or tmp_path / "hf-cache") / repo_id / (revision or "main") / filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return str(dst)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub.hub_mixin, "hf_hub_download", download)
    return remote, calls


def test_hub_repo_id_resolves_through_the_mixin(tmp_path, fake_hub):
    from wfm.models.mae import MaskedAutoencoder

    remote, calls = fake_hub
    shutil.copytree(FIXTURE, remote / "someone" / "wfm-mae-tiny" / "v1")
    cache = tmp_path / "cache"
    model = from_pretrained("someone/wfm-mae-tiny", revision="v1", cache_dir=cache)
    assert type(model) is MaskedAutoencoder and not model.training
    assert {c["filename"] for c in calls} == {"config.json", "model.safetensors"}
    assert all(c["repo_id"] == "someone/wfm-mae-tiny" and c["revision"] == "v1" and Path(c["cache_dir"]) == cache
               for c in calls)
    local = from_pretrained(FIXTURE)
    assert all(torch.equal(v, local.state_dict()[k]) for k, v in model.state_dict().items())
    assert type(MaskedAutoencoder.from_pretrained("someone/wfm-mae-tiny", revision="v1", cache_dir=cache)) is MaskedAutoencoder

    # A tampered file from the Hub: the error names the repo and revision first, the cached copy last.
    _flip_last_byte(remote / "someone" / "wfm-mae-tiny" / "v1" / "model.safetensors")
    with pytest.raises(CheckpointError) as e:
        MaskedAutoencoder.from_pretrained("someone/wfm-mae-tiny", revision="v1", cache_dir=cache)
    msg = str(e.value)
    assert msg.startswith("someone/wfm-mae-tiny@v1/model.safetensors: sha256 mismatch (changed since export)"), msg
    assert f"cached at {cache}" in msg and "\n" not in msg
    with pytest.raises(CheckpointError, match=r"^someone/other: not a local folder, and could not fetch .*Hugging Face Hub"):
        from_pretrained("someone/other")


def test_save_pretrained_writes_the_export_format_and_keeps_metadata(tmp_path):
    """``model.save_pretrained`` (ModelHubMixin) writes the folder ``wfm export`` writes, keeps the
    metadata the model was loaded with, and what it writes loads with every check."""
    from wfm.models.mae import MaskedAutoencoder

    model = from_pretrained(FIXTURE)
    out = tmp_path / "saved"
    model.save_pretrained(out, config={"metrics": {"val/nmse_db": -1.5}})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config, original = read_config(out), read_config(FIXTURE)
    from wfm.io import sha256_of

    assert config["sha256"] == sha256_of(out / "model.safetensors")
    assert config["metrics"] == {"val/nmse_db": -1.5}
    for key in ("name", "global_step", "epoch", "source_checkpoint", "training", "num_params", "patch_size"):
        assert config.get(key) == original.get(key), key
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: wfm" in card and "wfm.from_pretrained" in card
    model.guard_prior, model.white_limit, model.white_dips = {"frequency": "hold|ar"}, 0.5, True
    model.save_pretrained(tmp_path / "options")
    card = (tmp_path / "options" / "README.md").read_text()  # a | inside a cell is escaped, not a new column
    assert "| guard prior | frequency: hold\\|ar |" in card and "| white test through common-gain dips | yes |" in card
    again = MaskedAutoencoder.from_pretrained(out)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())

    fresh = MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1)
    fresh.save_pretrained(tmp_path / "fresh")
    assert read_config(tmp_path / "fresh")["name"] == "mae_custom"
    assert from_pretrained(tmp_path / "fresh").dim == 32


def test_save_pretrained_refuses_options_that_would_not_load_and_writes_nothing(tmp_path):
    """Inference options are attributes a user sets by hand; a combination the constructor refuses
    (``raw_paths`` keeps smooth paths out of Box-Cox, so it needs ``box_cox``) is refused at
    ``save_pretrained``, naming the folder and the reason, before any file or folder is made."""
    from wfm.models.registry import create_model

    model = create_model("causal_tiny", prior="mix", guard=True, box_cox=True, raw_paths=True)
    model.box_cox = False
    with pytest.raises(ValueError, match=r"not saved to .*bad.*raw_paths.*needs box_cox"):
        model.save_pretrained(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    model.raw_paths = False
    model.save_pretrained(tmp_path / "good")
    assert from_pretrained(tmp_path / "good").box_cox is False


class _FakeApi:
    """``HfApi`` recording its calls; ``upload_folder`` loads what it is given with wfm's checks."""

    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = sorted(p.name for p in Path(folder_path).iterdir())
        self.calls.append(("upload_folder", repo_id, {"folder_path": str(folder_path), "files": files, **kwargs}))
        from_pretrained(folder_path)  # what goes up loads
        return f"https://huggingface.co/{repo_id}/commit/0"


def test_push_to_hub_validates_then_uploads(tmp_path, monkeypatch):
    import huggingface_hub
    import huggingface_hub.hub_mixin

    import wfm.hub

    _FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    monkeypatch.setattr(huggingface_hub.hub_mixin, "HfApi", _FakeApi)
    folder = _fixture_copy(tmp_path)
    assert wfm.hub.push_to_hub(folder, "me/wfm-mae", private=True) == "https://huggingface.co/me/wfm-mae"
    (_, repo, create), (_, _, upload) = _FakeApi.calls
    assert repo == "me/wfm-mae" and create["private"] is True
    assert upload["folder_path"] == str(folder)  # the exported folder itself, byte for byte
    assert upload["allow_patterns"] == ["config.json", "model.safetensors", "README.md"]

    _FakeApi.calls = []
    _flip_last_byte(folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        wfm.hub.push_to_hub(folder, "me/wfm-mae")
    assert _FakeApi.calls == []  # refused before anything reached the Hub

    # A model in memory: the mixin's push_to_hub saves it to a temporary folder and uploads that.
    from_pretrained(FIXTURE).push_to_hub("me/wfm-mae-2", commit_message="up")
    (_, repo, _), (_, _, upload) = _FakeApi.calls
    assert repo == "me/wfm-mae-2" and upload["files"] == ["README.md", "config.json", "model.safetensors"]
    assert upload["commit_message"] == "up"


def test_url_checkpoint_refused_names_the_url(tmp_path, monkeypatch):
    """A downloaded checkpoint refused as unsafe: the error names the URL (then the cached copy),
    the unpickler's reason, and carries no terminal colour codes."""
    from wfm.safety import load_checkpoint

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    torch.save({"state_dict": {}, "payload": Payload()}, tmp_path / "evil.ckpt")
    url = (tmp_path / "evil.ckpt").as_uri()  # file://, fetched by urllib like http://
    monkeypatch.setenv("WFM_ALLOW_DOWNLOADS", "1")
    monkeypatch.setattr("wfm.safety.DOWNLOAD_CACHE", tmp_path / "cache")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(url)
    msg = str(e.value)
    assert msg.startswith(f"{url}: cannot read checkpoint safely (weights_only): "), msg
    assert "Unsupported global" in msg and "io.open" in msg and f"downloaded to {tmp_path / 'cache'}" in msg
    assert "\x1b" not in msg and "\n" not in msg and "add_safe_globals" not in msg
    assert not (tmp_path / "pwned").exists()


def test_the_mixin_imports_no_model():
    """The mixin sits below the models (they subclass it): it finds a config's class through the
    kind each model class declares, never by importing a model module (the timm way)."""
    import ast

    import wfm.hub
    import wfm.hub_mixin
    from wfm.models.causal import CausalForecaster
    from wfm.models.mae import MaskedAutoencoder

    tree = ast.parse(Path(wfm.hub_mixin.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m for m in imported if m.startswith("wfm.models")} <= {"wfm.models.registry"}
    assert not {m for m in imported if m == "wfm.hub" or m.startswith("wfm.hub.")}
    assert wfm.hub_mixin.MODEL_CLASSES == {"mae": MaskedAutoencoder, "causal": CausalForecaster}
    assert {k: c.__name__ for k, c in wfm.hub_mixin.MODEL_CLASSES.items()} == wfm.hub_mixin.MODEL_CLASS_NAMES
    assert wfm.hub.WfmHubMixin is wfm.hub_mixin.WfmHubMixin and issubclass(MaskedAutoencoder, wfm.hub.WfmHubMixin)


def test_importing_wfm_hub_stays_light():
    code = "import sys, wfm.hub; print('huggingface_hub' in sys.modules, 'torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=60)
    assert res.stdout.split() == ["False", "False"], res.stdout + res.stderr
