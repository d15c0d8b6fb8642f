"""Hostile and careless inputs (issue 16): every case here once ran code, crashed, trained on NaN,
laundered corruption or printed a traceback. Each must now be refused with one line and exit 2
(or be handled safely). Small and CPU-only: the whole file runs in well under two minutes."""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- helpers


class _Payload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def hostile_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": _Payload(marker)}, path)
    return path


@pytest.fixture
def http_dir(tmp_path):
    """Serve ``tmp_path/www`` on a loopback port; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def tiny_pretrain_config(tmp_path: Path, **model_args) -> Path:
    cfg = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 3, "logger": False,
                    "enable_progress_bar": False, "enable_model_summary": False,
                    "limit_val_batches": 0, "default_root_dir": str(tmp_path / "run"),
                    "callbacks": [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(tmp_path / "run" / "ckpt"),
                                                 "every_n_train_steps": 2, "save_top_k": 0,
                                                 "save_last": True}}]},
        "model": {"class_path": "wfm.training.lit_mae.MAEPretrainModule",
                  "init_args": {"model": "mae_tiny", "patch_size": [2, 2, 4], "warmup_steps": 1,
                                **model_args}},
        "data": {"class_path": "wfm.data.synthetic.SyntheticCSIDataModule",
                 "init_args": {"shapes": [[8, 4, 16]], "batch_size": 4, "train_batches": 8, "val_batches": 1}},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_wfm(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``wfm`` in-process; returns (exit code, stderr)."""
    from wfm.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
        raise SystemExit(0)
    err = capsys.readouterr().err
    return int(e.value.code or 0), err


def one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert lines and lines[-1].lstrip().startswith("error:") or "error:" in err, err


# ---------------------------------------------------------------------------- 1 no unpickling


def test_ckpt_path_url_refused_without_downloads(tmp_path, http_dir, capsys, monkeypatch):
    www, base = http_dir
    marker = tmp_path / "pwned"
    hostile_checkpoint(www / "resume.ckpt", marker)
    monkeypatch.delenv("WFM_ALLOW_DOWNLOADS", raising=False)
    code, err = run_wfm(["pretrain", "--config", str(tiny_pretrain_config(tmp_path)),
                         "--ckpt_path", f"{base}/resume.ckpt"], capsys)
    one_line_error(code, err)
    assert "refusing to download" in err
    assert not marker.exists()


def test_ckpt_path_url_download_is_weights_only(tmp_path, http_dir, capsys, monkeypatch):
    www, base = http_dir
    marker = tmp_path / "pwned"
    hostile_checkpoint(www / "resume.ckpt", marker)
    monkeypatch.setenv("WFM_ALLOW_DOWNLOADS", "1")
    monkeypatch.setattr("wfm.safety.DOWNLOAD_CACHE", tmp_path / "cache")
    code, err = run_wfm(["pretrain", "--config", str(tiny_pretrain_config(tmp_path)),
                         "--ckpt_path", f"{base}/resume.ckpt"], capsys)
    one_line_error(code, err)
    assert "weights_only" in err
    assert not marker.exists()
    # The cache is keyed by URL and content, not by file name: another URL with the same
    # file name is fetched, not served from the cache.
    from wfm.safety import download

    (www / "other").mkdir()
    (www / "other" / "resume.ckpt").write_bytes(b"different")
    got = download(f"{base}/other/resume.ckpt", cache_dir=tmp_path / "cache")
    assert got.read_bytes() == b"different"
    assert len(list((tmp_path / "cache").glob("*.ckpt"))) == 2


def test_local_resume_is_weights_only(tmp_path, capsys):
    marker = tmp_path / "pwned"
    ckpt = hostile_checkpoint(tmp_path / "resume.ckpt", marker)
    code, err = run_wfm(["pretrain", "--config", str(tiny_pretrain_config(tmp_path)),
                         "--ckpt_path", str(ckpt)], capsys)
    one_line_error(code, err)
    assert not marker.exists()


def test_one_safe_loader_refuses_pickles(tmp_path):
    from wfm.hub import CheckpointError
    from wfm.safety import load_checkpoint

    marker = tmp_path / "pwned"
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(hostile_checkpoint(tmp_path / "x.ckpt", marker))
    assert not marker.exists()


# ---------------------------------------------------------------------------- 4 finite or fail, 10 last step


from wfm.data.synthetic import SyntheticCSIDataModule  # noqa: E402


class NaNCSIDataModule(SyntheticCSIDataModule):
    """Synthetic CSI with one NaN in the second training batch."""

    def train_dataloader(self):
        base = self.train_set.__class__.__getitem__

        class WithNaN(self.train_set.__class__):
            def __getitem__(self, index):
                out = base(self, index)
                if index == 1:
                    out["csi"] = out["csi"].clone()
                    out["csi"][0, 0, 0, 0] = complex(float("nan"), 0.0)
                return out

        self.train_set.__class__ = WithNaN
        return super().train_dataloader()


def test_nan_in_data_stops_training(tmp_path, capsys):
    cfg = tiny_pretrain_config(tmp_path)
    code, err = run_wfm(["pretrain", "--config", str(cfg), "--data", "test_hostile.NaNCSIDataModule",
                         "--data.shapes", "[[8, 4, 16]]", "--data.batch_size", "4",
                         "--data.train_batches", "8"], capsys)
    one_line_error(code, err)
    assert "step 1" in err and ("loss" in err or "gradient" in err), err


def test_resume_and_last_step_checkpointed(tmp_path, capsys):
    """A genuine checkpoint still resumes (weights-only), and max_steps 3 with checkpoints every
    2 steps leaves last.ckpt at step 3, not 2."""
    cfg = tiny_pretrain_config(tmp_path)
    code, err = run_wfm(["pretrain", "--config", str(cfg)], capsys)
    assert code == 0, err
    last = tmp_path / "run" / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 3
    code, err = run_wfm(["pretrain", "--config", str(cfg), "--trainer.max_steps", "5",
                         "--ckpt_path", str(last)], capsys)
    assert code == 0, err
    assert torch.load(last, weights_only=True)["global_step"] == 5


# ---------------------------------------------------------------------------- 8 validated values


@pytest.mark.parametrize("arg", ["--model.init_args.min_lr_ratio=-20", "--model.init_args.warmup_steps=-5",
                                 "--model.init_args.lr=-1"])
def test_schedule_values_refused(tmp_path, capsys, arg):
    code, err = run_wfm(["pretrain", "--config", str(tiny_pretrain_config(tmp_path)), arg], capsys)
    one_line_error(code, err)


def test_schedule_function_refuses_bad_values():
    from wfm.training.schedule import warmup_cosine

    with pytest.raises(ValueError):
        warmup_cosine(0, 10, 100, -20.0)
    with pytest.raises(ValueError):
        warmup_cosine(0, -1, 100, 0.0)


# ---------------------------------------------------------------------------- 6 bounded resources


BILLION_LAUGHS = textwrap.dedent("""\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    """)


def test_billion_laughs_pretrain_config_refused(tmp_path, capsys):
    cfg = tmp_path / "laughs.yaml"
    cfg.write_text(tiny_pretrain_config(tmp_path).read_text() + BILLION_LAUGHS.replace("a:", "x_a:", 1))
    t0 = time.perf_counter()
    code, err = run_wfm(["pretrain", "--config", str(cfg)], capsys)
    one_line_error(code, err)
    assert "alias" in err and time.perf_counter() - t0 < 30


# ---------------------------------------------------------------------------- data: a tiny numpy kind


TOY_KIND = '''
import dataclasses, time
import numpy as np
from wfm.data.generate import register_kind
from wfm.data.recipes import RecipeFields
from wfm.data.shards import FieldSpec


@dataclasses.dataclass(frozen=True)
class ToyRecipe(RecipeFields):
    name: str = "toy"
    num_samples: int = 12
    shard_size: int = 4
    sleep: float = 0.0
    split: str = "pretrain"
    kind: str = "toy"


class ToyGenerator:
    kind = "toy"

    def __init__(self, recipe):
        self.recipe = recipe

    def specs(self):
        return {"x": FieldSpec("float32", (8,))}

    def attrs(self):
        return {}

    def generate(self, num, seed, device="cpu"):
        time.sleep(self.recipe.sleep)
        return {"x": np.random.default_rng(seed).standard_normal((num, 8)).astype(np.float32)}


register_kind("toy", ToyGenerator)
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The ``toy`` recipe kind (importable by spawned workers too): returns ToyRecipe."""
    (tmp_path / "wfm_toy_kind.py").write_text(TOY_KIND)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    sys.modules.pop("wfm_toy_kind", None)
    return importlib.import_module("wfm_toy_kind").ToyRecipe


def flip_byte(path: Path, offset: int | None = None) -> None:
    b = bytearray(path.read_bytes())
    i = len(b) - 40 if offset is None else offset  # inside the raw data, at the end of the file
    b[i] ^= 0xFF
    path.write_bytes(bytes(b))


def test_generate_rerun_regenerates_flipped_shard(tmp_path, toy):
    from wfm.data.generate import generate_dataset
    from wfm.data.shards import verify_dataset
    from wfm.data.errors import DataError

    out = tmp_path / "ds"
    generate_dataset(toy(), out)
    flip_byte(out / "shard-00001.h5")
    with pytest.raises(DataError, match="checksum"):
        verify_dataset(out)
    res = generate_dataset(toy(), out)
    assert res.generated_shards == 1
    verify_dataset(out)


def test_generate_resume_without_manifest_checks_recorded_hash(tmp_path, toy):
    from wfm.data.generate import PROGRESS_FILE, generate_dataset
    from wfm.data.shards import MANIFEST, verify_dataset

    out = tmp_path / "ds"
    generate_dataset(toy(), out)
    progress = {"recipe": toy().to_dict(), "seed": 0,
                "shards": {e["file"]: e["sha256"] for e in json.loads((out / MANIFEST).read_text())["shards"]}}
    (out / MANIFEST).unlink()  # as if killed before the manifest was written
    (out / PROGRESS_FILE).write_text(json.dumps(progress))
    flip_byte(out / "shard-00000.h5")
    assert generate_dataset(toy(), out).generated_shards == 1
    verify_dataset(out)


def test_export_verifies_first(tmp_path, toy):
    from wfm.data.errors import DataError
    from wfm.data.generate import generate_dataset
    from wfm.data.loaders.hf import export_hf

    out = tmp_path / "ds"
    generate_dataset(toy(), out)
    flip_byte(out / "shard-00000.h5")
    with pytest.raises(DataError, match="checksum"):
        export_hf(out, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_external_storage_refused(tmp_path, toy):
    from wfm.data.errors import DataError
    from wfm.data.generate import generate_dataset
    from wfm.data.shards import MANIFEST, ShardedDataset, sha256_of, verify_dataset

    out = tmp_path / "ds"
    generate_dataset(toy(), out)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.zeros((4, 8), np.float32).tobytes())
    shard = out / "shard-00000.h5"
    shard.unlink()
    with h5py.File(shard, "w") as f:
        f.attrs["schema_version"] = 1
        f.attrs["num_samples"] = 4
        f.attrs["seed"] = "0"
        f.create_dataset("x", shape=(4, 8), dtype="float32", external=[(str(raw), 0, 4 * 8 * 4)])
    m = json.loads((out / MANIFEST).read_text())
    m["shards"][0]["sha256"] = sha256_of(shard)
    (out / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DataError, match="external"):
        verify_dataset(out)
    with pytest.raises(DataError, match="external"):
        ShardedDataset(out).read_range(0, 1)


def test_nan_statistics_never_written_or_read(tmp_path, toy):
    from wfm.data.errors import DataError
    from wfm.data.generate import generate_dataset
    from wfm.data.shards import MANIFEST, FieldSpec, build_manifest, read_manifest

    entry = {"file": "shard-00000.h5", "num_samples": 1, "sha256": "0" * 64,
             "stats": {"x": {"count": 1, "sum": float("nan"), "sum_sq": 1.0, "min": 0.0, "max": 1.0}}}
    with pytest.raises(DataError, match="NaN"):
        build_manifest("n", "toy", {"x": FieldSpec("float32", ())}, [entry], {})
    out = tmp_path / "ds"
    generate_dataset(toy(), out)
    m = json.loads((out / MANIFEST).read_text())
    m["stats"]["x"]["std"] = float("nan")
    (out / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DataError, match="NaN"):
        read_manifest(out)


def test_nan_shard_not_laundered_on_rerun(tmp_path, toy):
    """A shard holding NaN (no recorded hash) is regenerated, not summed into NaN statistics."""
    from wfm.data.generate import PROGRESS_FILE, generate_dataset
    from wfm.data.shards import MANIFEST, read_manifest

    out = tmp_path / "ds"
    generate_dataset(toy(), out)
    (out / MANIFEST).unlink()  # killed before the manifest, by an older wfm that recorded no hashes
    (out / PROGRESS_FILE).write_text(json.dumps({"recipe": toy().to_dict(), "seed": 0}))
    with h5py.File(out / "shard-00000.h5", "r+") as f:
        f["x"][0, 0] = np.nan
    assert generate_dataset(toy(), out).generated_shards == 1
    assert np.isfinite(read_manifest(out)["stats"]["x"]["std"])


# ---------------------------------------------------------------------------- 5 one writer, 10 .tmp


def test_second_writer_refused(tmp_path, toy):
    from wfm.data.errors import DataError
    from wfm.data.generate import generate_dataset
    from wfm.safety import FolderLock

    out = tmp_path / "ds"
    out.mkdir()
    with FolderLock(out):
        with pytest.raises(DataError, match="another process"):
            generate_dataset(toy(), out)
    assert not any(out.glob("shard-*.h5"))
    generate_dataset(toy(), out)  # free again once the first writer is done


def test_second_writer_refused_across_processes(tmp_path, toy):
    from wfm.data.errors import DataError
    from wfm.data.generate import generate_dataset

    out = tmp_path / "ds"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from wfm.safety import FolderLock
        with FolderLock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataError, match=f"pid {holder.pid}"):
            generate_dataset(toy(num_samples=4), out)
    finally:
        holder.kill()
        holder.wait()


def test_stale_tmp_cleaned_up(tmp_path, toy):
    from wfm.data.generate import generate_dataset

    out = tmp_path / "ds"
    out.mkdir()
    stale = out / ".shard-00000.h5.tmp-999999"
    stale.write_bytes(b"half a shard")
    generate_dataset(toy(), out)
    assert not stale.exists()


# ---------------------------------------------------------------------------- 7 workers die with the parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().split(")")[-1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_generate_workers_die_with_parent(tmp_path, toy):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from wfm_toy_kind import ToyRecipe
        from wfm.data.generate import generate_dataset
        generate_dataset(ToyRecipe(num_samples=8, shard_size=4, sleep=120), {str(tmp_path / 'ds')!r}, workers=2)
        """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        kids: list[int] = []
        while time.time() < deadline and len(kids) < 2:
            time.sleep(0.5)
            kids = _children(parent.pid)
        assert kids, "no workers started"
        time.sleep(1.0)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.2)
        left = [k for k in kids if _alive(k)]
        for k in left:
            os.kill(k, signal.SIGKILL)
        assert not left, f"orphaned workers {left}"
    finally:
        if parent.poll() is None:
            parent.kill()
