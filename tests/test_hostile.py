"""Hostile and careless inputs (issue 16): every case here once ran code, crashed, trained on NaN,
laundered corruption or printed a traceback. Each must now be refused with one line and exit 2
(or be handled safely). Small and CPU-only: the whole file runs in well under two minutes."""

from __future__ import annotations

import contextlib
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
from typing import Iterator

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
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a, **k):  # not on stderr, where the tests read wfm's one line
            pass

    handler = functools.partial(Quiet, directory=str(root))
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


def test_export_url_refused_without_downloads_and_shown_intact(tmp_path, http_dir, capsys, monkeypatch):
    """``wfm export http://host/x.ckpt`` once said ``http:/host/x.ckpt: no such checkpoint file``."""
    www, base = http_dir
    marker = tmp_path / "pwned"
    hostile_checkpoint(www / "x.ckpt", marker)
    monkeypatch.delenv("WFM_ALLOW_DOWNLOADS", raising=False)

    def no_fetch(*a, **k):
        raise AssertionError("export fetched a URL without WFM_ALLOW_DOWNLOADS")

    monkeypatch.setattr("urllib.request.urlopen", no_fetch)
    code, err = run_wfm(["export", f"{base}/x.ckpt", str(tmp_path / "out")], capsys)
    line = only_error_line(code, err)
    assert line.startswith(f"error: {base}/x.ckpt: refusing to download") and "WFM_ALLOW_DOWNLOADS=1" in line, line
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_export_url_download_is_weights_only(tmp_path, http_dir, capsys, monkeypatch):
    """With downloads allowed, export takes the one safe download (URL- and content-keyed cache,
    weights-only load), as ``--ckpt_path`` does: a hostile pickle is refused, a checkpoint exports."""
    from wfm.models.registry import create_model

    www, base = http_dir
    marker = tmp_path / "pwned"
    hostile_checkpoint(www / "x.ckpt", marker)
    state = {f"model.{k}": v for k, v in create_model("mae_tiny").state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model": "mae_tiny"}, "global_step": 7}, www / "good.ckpt")
    monkeypatch.setenv("WFM_ALLOW_DOWNLOADS", "1")
    monkeypatch.setattr("wfm.safety.DOWNLOAD_CACHE", tmp_path / "cache")
    code, err = run_wfm(["export", f"{base}/x.ckpt", str(tmp_path / "out")], capsys)
    assert "cannot read checkpoint safely (weights_only)" in only_error_line(code, err)
    assert not marker.exists() and not (tmp_path / "out").exists()
    code, err = run_wfm(["export", f"{base}/good.ckpt", str(tmp_path / "out")], capsys)
    assert code == 0, err
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["global_step"] == 7 and config["source_checkpoint"] == "good.ckpt"


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


@pytest.mark.parametrize("storage", ["external", "virtual", "external_link", "soft_link"])
def test_storage_outside_the_checksum_refused(tmp_path, toy, storage):
    """Data the shard's sha256 does not cover (it lives, or can change, in another file) is refused."""
    from wfm.data.errors import DataError
    from wfm.data.generate import generate_dataset
    from wfm.data.shards import MANIFEST, ShardedDataset, verify_dataset
    from wfm.io import sha256_of

    out = tmp_path / "ds"
    generate_dataset(toy(), out)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.zeros((4, 8), np.float32).tobytes())
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.zeros((4, 8), np.float32))
    shard = out / "shard-00000.h5"
    shard.unlink()
    with h5py.File(shard, "w") as f:
        f.attrs["schema_version"] = 1
        f.attrs["num_samples"] = 4
        f.attrs["seed"] = "0"
        if storage == "external":
            f.create_dataset("x", shape=(4, 8), dtype="float32", external=[(str(raw), 0, 4 * 8 * 4)])
        elif storage == "virtual":
            layout = h5py.VirtualLayout(shape=(4, 8), dtype="float32")
            layout[:] = h5py.VirtualSource(str(other), "x", shape=(4, 8))
            f.create_virtual_dataset("x", layout)
        elif storage == "external_link":
            f["x"] = h5py.ExternalLink(str(other), "x")
        else:
            f.create_dataset("hidden", data=np.zeros((4, 8), np.float32))
            f["x"] = h5py.SoftLink("/hidden")
    m = json.loads((out / MANIFEST).read_text())
    m["shards"][0]["sha256"] = sha256_of(shard)
    (out / MANIFEST).write_text(json.dumps(m))
    match = "external or virtual" if storage in ("external", "virtual") else "Link"
    with pytest.raises(DataError, match=match):
        verify_dataset(out)
    with pytest.raises(DataError, match=match):
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


@contextlib.contextmanager
def _held_by_another_process(folder: Path) -> Iterator[int]:
    """``folder``'s write lock held by a live child process for the block; yields its pid."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from wfm.safety import FolderLock
        with FolderLock({str(folder)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_second_writer_refused_across_processes(tmp_path, toy):
    from wfm.data.errors import DataError
    from wfm.data.generate import generate_dataset

    out = tmp_path / "ds"
    out.mkdir()
    with _held_by_another_process(out) as pid:
        with pytest.raises(DataError, match=f"pid {pid}"):
            generate_dataset(toy(num_samples=4), out)


def test_stale_tmp_cleaned_up(tmp_path, toy):
    from wfm.data.generate import generate_dataset

    out = tmp_path / "ds"
    out.mkdir()
    stale = out / ".shard-00000.h5.tmp-999999"
    stale.write_bytes(b"half a shard")
    generate_dataset(toy(), out)
    assert not stale.exists()


def _series_csv(tmp_path: Path) -> Path:
    csv = tmp_path / "s.csv"
    csv.write_text("v\n" + "\n".join(str(i) for i in range(20)) + "\n")
    return csv


def test_import_over_a_killed_imports_leftovers(tmp_path, capsys):
    """What a killed import leaves (its lock file, a half-written shard) does not block the next
    import into that folder, and the temporary is removed."""
    from wfm.safety import LOCK_NAME

    out = tmp_path / "o"
    out.mkdir()
    (out / LOCK_NAME).write_text("999999\n")
    stale = out / ".shard-00000.h5.tmp-999999"
    stale.write_bytes(b"half a shard")
    code, err = run_wfm(["data", "import", "csv", str(_series_csv(tmp_path)), "--out", str(out), "--interval", "1"],
                        capsys)
    assert code == 0, err
    assert not stale.exists() and (out / "manifest.json").is_file()


def test_import_checks_its_folder_is_empty_under_the_lock(tmp_path, capsys, monkeypatch):
    """An import once checked that its folder was empty and only then took the lock: another
    import finishing in between was written over. Here that other import finishes exactly then
    (just before the lock is taken); the folder must be refused, its files untouched."""
    import wfm.safety

    out = tmp_path / "o"
    planted = {"manifest.json": b'{"the other import": 1}', "shard-00000.h5": b"the other import's shard"}

    class FinishesJustBeforeTheLock(wfm.safety.FolderLock):
        def __enter__(self):
            for name, data in planted.items():
                (self.folder / name).write_bytes(data)
            return super().__enter__()

    monkeypatch.setattr(wfm.safety, "FolderLock", FinishesJustBeforeTheLock)
    code, err = run_wfm(["data", "import", "csv", str(_series_csv(tmp_path)), "--out", str(out),
                         "--interval", "1"], capsys)
    assert f"{out}: output folder exists and is not empty" in only_error_line(code, err)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in planted} == planted
    assert not any(out.glob("shard-00001.h5"))


def test_import_refused_while_another_writer_holds_the_folder(tmp_path, capsys):
    """A second import into a folder another process is writing: one line naming its pid."""
    out = tmp_path / "o"
    out.mkdir()
    with _held_by_another_process(out) as pid:
        code, err = run_wfm(["data", "import", "csv", str(_series_csv(tmp_path)), "--out", str(out),
                             "--interval", "1"], capsys)
        line = only_error_line(code, err)
        assert "is being written by another process" in line and f"pid {pid}" in line, line
        assert not any(out.glob("shard-*")) and not (out / "manifest.json").exists()


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


# ---------------------------------------------------------------------------- exported folders (6, 8, 9)


FIXTURE = REPO / "tests" / "fixtures" / "mae-tiny-export"


def _export_copy(tmp_path: Path, **changes) -> Path:
    import shutil

    out = tmp_path / "export"
    shutil.copytree(FIXTURE, out)
    cfg = json.loads((out / "config.json").read_text())
    for k, v in changes.items():
        if k.startswith("arch."):
            cfg["arch"][k[5:]] = v
        else:
            cfg[k] = v
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def test_config_sha256_null_refused(tmp_path):
    import wfm
    from wfm.hub import CheckpointError

    with pytest.raises(CheckpointError, match="sha256"):
        wfm.from_pretrained(_export_copy(tmp_path, sha256=None))


@pytest.mark.parametrize("change", [{"arch": "mae_tiny"}, {"arch.dim": -64}, {"arch.dim": 1 << 20},
                                    {"arch.depth": 2.5}])
def test_config_bad_arch_one_line(tmp_path, capsys, change):
    import wfm
    from wfm.hub import CheckpointError

    with pytest.raises(CheckpointError):
        wfm.from_pretrained(_export_copy(tmp_path, **change))


def test_weights_checked_against_config_before_building(tmp_path, monkeypatch):
    """dim 1024 x depth 12 is within bounds but does not match the weights: refused while the
    model exists only on the meta device (nothing allocated)."""
    import wfm
    import wfm.hub as hub

    real_devices = []
    build = hub.build_model

    def spy(config):
        if torch.empty(0).device.type != "meta":
            real_devices.append(config["arch"]["dim"])
        return build(config)

    monkeypatch.setattr("wfm.hub_mixin.build_model", spy)
    with pytest.raises(hub.CheckpointError, match="do not match"):
        wfm.from_pretrained(_export_copy(tmp_path, **{"arch.dim": 1024, "arch.depth": 12}))
    assert real_devices == []


# ---------------------------------------------------------------------------- 2 parser guards


def intel_capture(path: Path, packets: int = 40, nrx: int = 3, ntx: int = 2) -> Path:
    """A synthetic Intel 5300 .dat (Linux 802.11n CSI Tool beamforming records)."""
    import struct

    rng = np.random.default_rng(0)
    n = (30 * (nrx * ntx * 8 * 2 + 3) + 7) // 8
    out = b""
    for i in range(packets):
        hdr = struct.pack("<IHHBBBBBbBBHH", 1000 * i, i, 0, nrx, ntx, 40, 40, 40, -92, 30, 0x24, n, 0x4101)
        body = bytes([0xBB]) + hdr + rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        out += struct.pack(">H", len(body)) + body
    path.write_bytes(out)
    return path


SHARED_PCAP = REPO.parent / "shared" / "datasets" / "wifi-csi" / "nexmon_bcm4339_80mhz.pcap"


def test_intel_record_length_flip_is_one_line(tmp_path, capsys):
    cap = intel_capture(tmp_path / "c.dat")
    flip_byte(cap, 0)  # the first record's length: csiread read out of bounds (SIGSEGV)
    code, err = run_wfm(["data", "import", "intel", str(cap), "--out", str(tmp_path / "o"),
                         "--window", "0", "--ntx", "2"], capsys)
    one_line_error(code, err)
    assert "byte 0" in err


def test_intel_truncated_record_refused(tmp_path):
    from wfm.data.errors import DataError
    from wfm.data.loaders.wifi_csi import read_capture

    cap = intel_capture(tmp_path / "c.dat")
    cap.write_bytes(cap.read_bytes()[:-7])
    with pytest.raises(DataError, match="truncated"):
        read_capture(cap, "intel", nrx=3, ntx=2)


def test_parser_crash_becomes_one_line(tmp_path, monkeypatch):
    """Whatever the checks miss, a crash inside the parser is a DataError, not a dead wfm."""
    from wfm.data.errors import DataError
    from wfm.data.loaders import wifi_csi

    cap = intel_capture(tmp_path / "c.dat")

    def crash(path, **kw):
        os.kill(os.getpid(), signal.SIGSEGV)

    monkeypatch.setattr(wifi_csi, "read_intel", crash)
    with pytest.raises(DataError, match="SIGSEGV"):
        wifi_csi.read_capture(cap, "intel", nrx=3, ntx=2)


def _fuzz(path: Path, fmt: str, kw: dict, seeds: int, budget_s: float) -> int:
    from wfm.data.errors import DataError
    from wfm.data.loaders.wifi_csi import read_capture

    data = path.read_bytes()
    t0, done = time.perf_counter(), 0
    for seed in range(seeds):
        if time.perf_counter() - t0 > budget_s:
            break
        rng = np.random.default_rng(seed)
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        if seed % 4 == 3:
            b = b[:int(rng.integers(1, len(b)))]
        fuzzed = path.with_name(f"fuzz{path.suffix}")
        fuzzed.write_bytes(bytes(b))
        try:
            read_capture(fuzzed, fmt, **kw)
        except DataError:
            pass
        done += 1
    return done


def test_fuzz_intel_parser(tmp_path):
    assert _fuzz(intel_capture(tmp_path / "c.dat"), "intel", {"nrx": 3, "ntx": 2}, seeds=40, budget_s=15) > 5


def nexmon_capture(path: Path, frames: int = 8, streams: int = 4, nfft: int = 256) -> Path:
    """A synthetic Nexmon CSI pcap (bcm4339, 80 MHz unless ``nfft`` says 64 or 128 bins): UDP port
    5500 packets of one spatial stream each, laid out as the shared capture's (so the fuzz test
    runs without ../shared)."""
    import struct

    rng = np.random.default_rng(0)
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)  # pcap header, Ethernet
    lower = bytes.fromhex("ffffffffffff4e45584d4f4e0800"  # Ethernet: broadcast from "NEXMON"
                          "4500042e000100000111a1ab0a0a0a0affffffff"  # IPv4, UDP
                          "157c157c041a0000")  # UDP 5500 -> 5500
    for f in range(frames):
        for s in range(streams):
            # magic, rssi, frame control, source MAC, sequence, core/stream, chanspec, chip version
            nexmon = struct.pack("<HBB6sHHHH", 0x1111, 0x11, 0x11, bytes.fromhex("112233445566"), f, s << 3,
                                 0xE02A, 0x0001)
            pkt = lower + nexmon + rng.integers(-2000, 2000, 2 * nfft, dtype=np.int16).tobytes()  # int16 I, Q per bin
            out += struct.pack("<IIII", f, s, len(pkt), len(pkt)) + pkt
    path.write_bytes(out)
    return path


def test_synthetic_nexmon_capture_parses(tmp_path):
    from wfm.data.loaders.wifi_csi import read_capture

    d = read_capture(nexmon_capture(tmp_path / "c.pcap"), "nexmon", chip="4339", bw=80)
    assert d["csi"].shape == (8, 4, 242)


@pytest.mark.parametrize("nfft, bw, usable", [(64, 20, 54), (128, 40, 114), (256, 80, 242)])
def test_nexmon_bandwidth_is_read_from_the_packets(tmp_path, nfft, bw, usable):
    """csiread parses a capture at whatever bandwidth it is told; without --bw the packets' length
    says which, so a 20 or 40 MHz capture is not read as garbage 80 MHz CSI."""
    from wfm.data.loaders.wifi_csi import read_capture

    d = read_capture(nexmon_capture(tmp_path / "c.pcap", nfft=nfft), "nexmon", chip="4339")
    assert d["csi"].shape == (8, 4, usable) and d["bandwidth"] == bw * 1e6


@pytest.mark.parametrize("source", ["synthetic", "shared"])
def test_fuzz_nexmon_parser(tmp_path, source):
    cap = tmp_path / "c.pcap"
    if source == "synthetic":
        nexmon_capture(cap)
    else:
        if not SHARED_PCAP.is_file():
            pytest.skip("needs the shared Nexmon capture")
        # The first 60 packets, cut at a packet boundary, keep each parse fast.
        data, pos = SHARED_PCAP.read_bytes(), 24
        for _ in range(60):
            pos += 16 + int.from_bytes(data[pos + 8:pos + 12], "little")
        cap.write_bytes(data[:pos])
    assert _fuzz(cap, "nexmon", {"chip": "4339", "bw": 80}, seeds=40, budget_s=15) > 5


# ---------------------------------------------------------------------------- 8, 9 one line and exit 2


def _toy_dataset(tmp_path: Path) -> Path:
    from wfm.data.shards import FieldSpec, write_dataset

    return write_dataset(tmp_path / "ds", "toy", "toy", {"x": FieldSpec("float32", (4,))},
                         [{"x": np.ones((3, 4), np.float32)}], {})


@pytest.mark.parametrize("edit", ["schema_abc", "no_sha", "dtype", "not_utf8", "file_escape"])
def test_hostile_manifest_one_line(tmp_path, capsys, edit):
    ds = _toy_dataset(tmp_path)
    path = ds / "manifest.json"
    m = json.loads(path.read_text())
    if edit == "schema_abc":
        m["schema_version"] = "abc"
    elif edit == "no_sha":
        del m["shards"][0]["sha256"]
    elif edit == "dtype":
        m["fields"]["x"]["dtype"] = "nonsense"
    elif edit == "file_escape":
        m["shards"][0]["file"] = "../../etc/passwd"
    path.write_text(json.dumps(m))
    if edit == "not_utf8":
        path.write_bytes(b"\xff\xfe" + path.read_bytes())
    code, err = run_wfm(["data", "inspect", str(ds)], capsys)
    one_line_error(code, err)


@pytest.mark.parametrize("argv", [
    ["data", "generate", "--recipe", "R", "--out", "O", "--seed", "-1"],
    ["data", "generate", "--recipe", "R", "--out", "O", "--device", "tpu7"],
    ["data", "generate", "--recipe", "R", "--out", "O", "--num-samples", "0"],
    ["data", "import", "csv", "x.csv", "--out", "O", "--interval", "0"],
    ["data", "import", "csv", "x.csv", "--out", "O", "--interval", "-1"],
    ["data", "import", "npy", "x.npy", "--out", "O", "--interval", "inf"],
    ["data", "import", "csv", "x.csv", "--out", "O", "--interval", "1", "--shard-size", "0"],
    ["data", "import", "intel", "x.dat", "--out", "O", "--window", "-1"],
    ["evaluate", "--task", "los-nlos", "--model", "knn", "--data", "D", "--train-fraction", "0"],
    ["evaluate", "--task", "traffic-forecast", "--model", "persistence", "--data", "D", "--gap", "-3"],
    ["data", "import", "csv"],
    ["data", "recipes", "/no/such/recipes"],
    [],
])
def test_bad_cli_values_refused(capsys, argv):
    """One line, exit 2: argparse's usage screen is not shown either (it says where --help is)."""
    code, err = run_wfm(argv, capsys)
    line = only_error_line(code, err)
    assert "Traceback" not in err and ("--help" in line or "train-fraction" in line or "no such" in line), line


def test_output_under_a_file_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    csv = tmp_path / "s.csv"
    csv.write_text("v\n" + "\n".join(str(i) for i in range(20)) + "\n")
    code, err = run_wfm(["data", "import", "csv", str(csv), "--out", str(blocker / "sub"), "--interval", "1"], capsys)
    one_line_error(code, err)


@pytest.mark.parametrize("case", ["empty", "zero_length", "huge_header"])
def test_hostile_npy_one_line(tmp_path, capsys, case):
    path = tmp_path / "x.npy"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "zero_length":
        np.save(path, np.zeros((0,), np.float32))
    else:
        np.save(path, np.zeros((4,), np.float32))
        b = path.read_bytes().replace(b"(4,)", b"(200000000000,)".ljust(4))
        hdr_len = int.from_bytes(b[8:10], "little")
        path.write_bytes(b[:10] + b[10:10 + hdr_len + 11].replace(b"    \n", b"\n", 1)[:hdr_len - 1] + b"\n"
                         + np.zeros((4,), np.float32).tobytes())
    t0 = time.perf_counter()
    code, err = run_wfm(["data", "import", "npy", str(path), "--out", str(tmp_path / "o"), "--interval", "1"], capsys)
    one_line_error(code, err)
    assert time.perf_counter() - t0 < 10


def _recipe(tmp_path: Path, **changes) -> Path:
    base = {"model": "uma", "carrier_frequency_ghz": 3.5, "subcarrier_spacing_khz": 30, "num_subcarriers": 16,
            "array": [1, 4], "time_steps": 8, "time_step_ms": 0.5, "speed_kmh": [10, 60], "num_samples": 8,
            "shard_size": 4}
    base.update(changes)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


@pytest.mark.parametrize("changes", [{"num_subcarriers": 32.7}, {"num_subcarriers": 1000000000},
                                     {"num_samples": 10**15, "shard_size": 1}])
def test_recipe_values_refused_up_front(tmp_path, capsys, changes):
    t0 = time.perf_counter()
    code, err = run_wfm(["data", "generate", "--recipe", str(_recipe(tmp_path, **changes)),
                         "--out", str(tmp_path / "o")], capsys)
    one_line_error(code, err)
    assert time.perf_counter() - t0 < 20
    assert not any((tmp_path / "o").glob("shard-*")) if (tmp_path / "o").exists() else True


@pytest.mark.parametrize("array", [[1, 4.5], [1, "4x"], [True, 4], 4])
def test_recipe_non_integral_array_refused(tmp_path, capsys, array):
    """``array: [1, 4.5]`` once became (1, 4) silently; it is refused like ``num_subcarriers: 32.7``."""
    code, err = run_wfm(["data", "generate", "--recipe", str(_recipe(tmp_path, array=array)),
                         "--out", str(tmp_path / "o")], capsys)
    line = only_error_line(code, err)
    assert f"{tmp_path / 'r.yaml'}: bad value in recipe: array" in line, line
    assert not (tmp_path / "o").exists()


def test_recipe_billion_laughs_refused(tmp_path, capsys):
    path = _recipe(tmp_path)
    path.write_text(BILLION_LAUGHS + path.read_text() + "description: *i\n")
    t0 = time.perf_counter()
    code, err = run_wfm(["data", "generate", "--recipe", str(path), "--out", str(tmp_path / "o")], capsys)
    one_line_error(code, err)
    assert "alias" in err and time.perf_counter() - t0 < 20


def test_finetune_train_fraction_zero_refused(tmp_path, capsys):
    cfg = REPO / "finetune" / "los-nlos.yaml"
    if not cfg.is_file():
        pytest.skip("no finetune/los-nlos.yaml")
    code, err = run_wfm(["finetune", "--config", str(cfg), "--data.train_fraction", "0",
                         "--model.init_from", "scratch:mae_tiny"], capsys)
    one_line_error(code, err)
    assert "train_fraction" in err


# ---------------------------------------------------------------------------- 8 truncated Telecom Italia records


TI_T0_MS = 1383260400000


def _ti_text(header: bool = True) -> str:
    rows = [f"7,{TI_T0_MS + k * 600_000},139.30" for k in range(6)]
    return "\n".join((["square_id,time_interval,internet"] if header else []) + rows) + "\n"


@pytest.mark.parametrize("cut", ["mid_number", "after_separator", "fewer_fields", "raw_tsv_mid_number"])
def test_telecom_italia_truncated_last_record_refused(tmp_path, capsys, cut):
    """A download cut inside the last record: ``139.30`` -> ``139.3`` still parses as a number,
    so the missing newline is what gives it away; a row cut at a separator has too few fields."""
    text = _ti_text()
    if cut == "mid_number":
        text = text[:-2]  # "...,139.3"
    elif cut == "after_separator":
        text = text[:-7]  # "...,": an empty (missing) value
    elif cut == "fewer_fields":
        text = text[:text.rstrip().rfind(",")]  # "7,<time>" (no newline either)
    else:  # the header-less raw challenge TSV
        text = "".join(f"7\t{TI_T0_MS + k * 600_000}\t39\t1\t2\t\t\t139.30\n" for k in range(6))[:-3]
    src = tmp_path / "ti.csv"
    src.write_text(text)
    code, err = run_wfm(["data", "import", "telecom-italia", str(src), "--out", str(tmp_path / "o")], capsys)
    one_line_error(code, err)
    assert f"ti.csv: line {6 if cut.startswith('raw') else 7}:" in " ".join(err.split()), err
    assert "truncated" in err, err
    assert not (tmp_path / "o").exists()


def test_telecom_italia_complete_file_still_imports(tmp_path):
    from wfm.data.loaders.traffic_csv import load_telecom_italia

    src = tmp_path / "ti.csv"
    src.write_text(_ti_text())
    d = load_telecom_italia(src)
    assert d["traffic"][0].shape == (6, 1) and float(d["traffic"][0][-1, 0]) == pytest.approx(139.30)


# ---------------------------------------------------------------------------- 9 LightningCLI arguments: one line


def only_error_line(code: int, err: str) -> str:
    """Exit 2 and stderr of exactly one line, ``error: ...`` (no usage screen, no traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("args,expect", [
    (["--model.init_args.lr", "abc"], "model.lr: Expected a float. Got value: abc"),
    (["--model.lr", "abc"], "model.lr: Expected a float. Got value: abc"),
    (["--model.init_args.bogus", "1"], "Option 'bogus' is not accepted (wfm.training.lit_mae.MAEPretrainModule)"),
    (["--trainer.bogus", "1"], "unrecognized arguments: --trainer.bogus 1"),
    (["--trainer.max_steps", "x"], "trainer.max_steps: Expected an int. Got value: x"),
    (["--model", "no.such.Module"], "No module named 'no'"),
])
def test_pretrain_bad_argument_one_line(tmp_path, capsys, args, expect):
    code, err = run_wfm(["pretrain", "--config", str(tiny_pretrain_config(tmp_path)), *args], capsys)
    assert expect in only_error_line(code, err)


def test_pretrain_missing_config_one_line(tmp_path, capsys):
    code, err = run_wfm(["pretrain", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert "nope.yaml" in only_error_line(code, err)


def test_finetune_bad_argument_one_line(capsys):
    cfg = REPO / "finetune" / "los-nlos.yaml"
    if not cfg.is_file():
        pytest.skip("no finetune/los-nlos.yaml")
    code, err = run_wfm(["finetune", "--config", str(cfg), "--model.lr", "abc"], capsys)
    assert "lr: Expected a float. Got value: abc" in only_error_line(code, err)
    code, err = run_wfm(["finetune", "--config", str(cfg), "--data.bogus", "1"], capsys)
    assert "--data.bogus" in only_error_line(code, err)


def test_long_error_is_not_wrapped(capsys):
    from wfm.console import fail

    with pytest.raises(SystemExit):
        fail("a/long/path/" * 30 + ": refused")
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_parse_error_line_condenses_nested_union_errors():
    from wfm.pretrain import parse_error_line

    msg = textwrap.dedent("""\
        Parser key "model":
          Does not validate against any of the Union subtypes
          Subtypes: [<class 'pytorch_lightning.core.module.LightningModule'>, <class 'NoneType'>]
          Errors:
            - Problem with given class_path 'wfm.training.lit_mae.MAEPretrainModule':
                Parser key "mask_ratios":
                  Expected a <class 'float'>. Got value: x
            - Expected a <class 'NoneType'>
          Given value type: <class 'jsonargparse._util.NestedArg'>
          Given value: NestedArg(key='mask_ratios', val='x')""")
    assert parse_error_line(msg) == "model.mask_ratios: Expected a float. Got value: x"
    assert parse_error_line("unrecognized arguments: --x 1") == "unrecognized arguments: --x 1"
    assert len(parse_error_line("word " * 500)) <= 300


# ---------------------------------------------------------------------------- 9 the machine refuses: one line


def _limited_wfm(argv: list[str], file_size_limit: int) -> subprocess.CompletedProcess:
    """``wfm argv`` in a child whose files may not grow past ``file_size_limit`` bytes: writes
    beyond fail with EFBIG, as on a full disk (Python ignores SIGXFSZ), without root or a tmpfs."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "wfm.cli", *argv], preexec_fn=limit, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs preexec_fn (POSIX)")
def test_disk_full_one_line_and_folder_reusable(tmp_path, capsys):
    """A full disk while h5py writes a shard (an OSError, then a RuntimeError while closing the
    file) is one line naming the shard; the folder it leaves (lock only) takes the next import."""
    src = tmp_path / "big.npy"
    np.save(src, np.random.default_rng(0).standard_normal((16, 8192)).astype(np.float32))
    out = tmp_path / "o"
    r = _limited_wfm(["data", "import", "npy", str(src), "--out", str(out), "--interval", "1"], 128 << 10)
    only_error_line(r.returncode, r.stderr)
    assert f"{out / 'shard-00000.h5'}: File too large" in r.stderr and "disk full" in r.stderr, r.stderr
    assert not any(out.glob("*.h5")) and not any(out.glob(".*.tmp-*"))
    code, err = run_wfm(["data", "import", "npy", str(src), "--out", str(out), "--interval", "1"], capsys)
    assert code == 0, err


def test_os_error_line_names_the_file_not_the_temporary():
    import errno

    from wfm.cli import os_error_line

    h5 = OSError(errno.ENOSPC, "Can't synchronously write data (file write failed: time = Mon Nov 30\n, "
                               "filename = 'out/.shard-00003.h5.tmp-4242', errno = 28, error message = 'x')")
    assert os_error_line(h5) == "out/shard-00003.h5: No space left on device (disk full, quota or file-size limit reached)"
    assert os_error_line(PermissionError(errno.EACCES, "Permission denied", "/ro/x")) == "/ro/x: Permission denied"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_folder_one_line(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    csv = tmp_path / "s.csv"
    csv.write_text("v\n" + "\n".join(str(i) for i in range(20)) + "\n")
    try:
        code, err = run_wfm(["data", "import", "csv", str(csv), "--out", str(ro / "sub"), "--interval", "1"], capsys)
    finally:
        ro.chmod(0o700)
    assert "ro" in only_error_line(code, err)


@pytest.mark.parametrize("args,expect", [
    (["--trainer.max_steps", "-5"], "max_steps"),
    (["--seed_everything", "-1"], "seed_everything = -1"),
    (["--model.init_args.model", "nope"], "unknown model 'nope'"),
    (["--data.init_args.shapes", "[[0, 4, 4]]"], "shapes: [0, 4, 4] must be [T, A, K], three integers >= 1"),
    (["--data.init_args.shapes", "[[8, 4, 16], [8, -4, 16]]"], "shapes: [8, -4, 16] must be"),
    (["--data.init_args.shapes", "[[100000, 100000, 100]]"], "elements a batch"),
    (["--data.init_args.num_paths", "0"], "num_paths >= 1"),
])
def test_pretrain_bad_values_found_while_building_one_line(tmp_path, capsys, args, expect):
    code, err = run_wfm(["pretrain", "--config", str(tiny_pretrain_config(tmp_path)), *args], capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and expect in lines[0] and "Traceback" not in err, err
    assert '"unknown' not in lines[0]  # a KeyError's message, not its repr


@pytest.mark.parametrize("shapes", [[(0, 4, 4)], [(8, 4, 16), (8, 4, -1)], [(8, 4)], [(8, 4, 16.5)], [], 7])
def test_synthetic_shapes_checked_when_built(shapes):
    """A zero or negative size once passed construction and failed at the first training step."""
    from wfm.data.synthetic import SyntheticCSIDataModule
    from wfm.safety import InputError

    with pytest.raises(InputError, match="shapes"):
        SyntheticCSIDataModule(shapes=shapes, batch_size=2, train_batches=1, val_batches=1)


# ---------------------------------------------------------------------------- 9 truncated pcap, whole capture


def test_truncated_pcap_whole_capture_one_line(tmp_path, capsys):
    """A pcap cut inside the first packet header, imported as one sample (--window 0)."""
    import struct

    cap = tmp_path / "cut.pcap"
    cap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"\x01\x00\x00\x00\x02\x00")
    code, err = run_wfm(["data", "import", "nexmon", str(cap), "--out", str(tmp_path / "o"), "--window", "0"], capsys)
    assert "cut.pcap" in only_error_line(code, err) and "truncated" in err


@pytest.mark.parametrize("source", ["synthetic", "shared"])
def test_truncated_nexmon_pcap_whole_capture_one_line(tmp_path, capsys, source):
    if source == "shared" and not SHARED_PCAP.is_file():
        pytest.skip("needs the shared Nexmon capture")
    data = nexmon_capture(tmp_path / "full.pcap").read_bytes() if source == "synthetic" else SHARED_PCAP.read_bytes()
    cap = tmp_path / "cut.pcap"
    cap.write_bytes(data[:3000])  # inside the third packet
    code, err = run_wfm(["data", "import", "nexmon", str(cap), "--out", str(tmp_path / "o"), "--window", "0"], capsys)
    assert "cut.pcap" in only_error_line(code, err) and "truncated" in err


# ---------------------------------------------------------------------------- 4, 8 predict: finite input, B >= 1


@pytest.mark.parametrize("bad", ["nan", "inf", "batch0"])
def test_mae_predict_refuses_non_finite_and_empty_input(bad):
    import wfm

    model = wfm.from_pretrained(FIXTURE)
    csi = torch.randn(2, 8, 4, 16, dtype=torch.complex64)
    if bad == "batch0":
        csi = csi[:0]
    else:
        csi[1, 3, 2, 5] = complex(float(bad), 0.0)
    with pytest.raises(ValueError, match="NaN or Inf" if bad != "batch0" else "B >= 1"):
        model.predict(csi)


# ---------------------------------------------------------------------------- 4 a non-finite gradient, finite loss


def test_non_finite_gradient_stops_training_naming_the_parameter_and_step():
    """sqrt at 0: the loss is 0, its gradient NaN; nothing trains on it."""
    import pytorch_lightning as pl

    from wfm.training.finite import FiniteGuard, NonFiniteError

    class SqrtAtZero(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))

        def training_step(self, batch, batch_idx):
            return torch.sqrt(self.w * 0.0).sum() + (self.w * batch[0]).sum() * 0.0

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 3)), batch_size=2)

    model = SqrtAtZero()
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[FiniteGuard()])
    with pytest.raises(NonFiniteError, match=r"non-finite gradient of w at step 0"):
        trainer.fit(model)
    assert torch.equal(model.w.detach(), torch.ones(3))  # the optimizer never stepped on NaN


# ---------------------------------------------------------------------------- 9 patch that does not divide the shape


def test_patch_not_dividing_the_shape_trains_and_validates(tmp_path, capsys):
    """[3, 3, 3] on [8, 4, 16] CSI once failed at the first validation step: the grid is padded."""
    code, err = run_wfm(["pretrain", "--config", str(tiny_pretrain_config(tmp_path)),
                         "--model.init_args.patch_size", "[3, 3, 3]", "--trainer.max_steps", "1",
                         "--trainer.limit_val_batches", "1", "--trainer.val_check_interval", "1"], capsys)
    assert code == 0, err


def test_causal_forecast_names_the_first_gap_and_the_fix():
    from wfm.models.causal import CausalForecaster

    model = CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, max_context=32, prior="mix").eval()
    x = torch.randn(3, 40).cumsum(1)
    x[2, 17:19] = float("nan")
    with pytest.raises(ValueError, match=r"2 NaN or Inf values \(the first: row 2, position 17\).*--fill linear"):
        model.forecast(x, 60.0, 4)


def test_numpy_arrays_and_lists_are_read_as_tensors_and_strings_refused():
    """Data read with h5py or scipy arrives as NumPy: it once failed on a missing ``.ndim`` / ``.to``."""
    import numpy as np

    import wfm
    from wfm.models.causal import CausalForecaster
    from wfm.safety import InputError

    causal = CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, max_context=32, prior="mix").eval()
    x = torch.randn(2, 40).cumsum(1)
    want = causal.forecast(x, 60.0, 4)
    assert torch.equal(causal.forecast(x.numpy(), 60.0, 4), want)
    assert torch.equal(causal.forecast(x.tolist(), 60.0, 4), want)
    assert torch.equal(causal.forecast(x[0].numpy().astype(np.float64), 60.0, 4), causal.forecast(x[0], 60.0, 4))
    for bad in (["a", "b"], [[1.0, 2.0], [3.0]]):
        with pytest.raises(InputError, match="context must be a tensor or an array of numbers"):
            causal.forecast(bad, 60.0, 4)

    mae = wfm.from_pretrained(FIXTURE)
    csi = torch.randn(8, 4, 16, dtype=torch.complex64)
    got = mae.predict(csi.numpy(), "temporal", 0.5)
    assert torch.equal(got.reconstruction, mae.predict(csi, "temporal", 0.5).reconstruction)
    with pytest.raises(InputError, match="csi must be a tensor"):
        mae.predict(np.array([["x"]]), "temporal", 0.5)


def test_causal_forecast_runs_many_rows_in_chunks_of_whole_groups(monkeypatch):
    """Memory stays bounded however many rows a user passes (about 0.45 MB a row at 96 values
    unchunked); chunks hold whole groups, so the forecasts are those of one batch."""
    import wfm.models.causal_forecast as cf
    from wfm.models.causal import CausalForecaster

    torch.manual_seed(0)
    model = CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, max_context=32, prior="mix", guard=True,
                             check_origins=4, white_limit=0.5).eval()
    x = torch.randn(90, 24).cumsum(1)
    group = torch.randint(0, 12, (90,))
    whole = model.forecast(x, 60.0, 6, group=group)
    calls = []
    real = cf.ForecastMixin._forecast

    def spy(self, context, *args):
        calls.append(len(context))
        return real(self, context, *args)

    monkeypatch.setattr(cf, "FORECAST_VALUES", 24 * 20)
    monkeypatch.setattr(cf.ForecastMixin, "_forecast", spy)
    assert torch.equal(model.forecast(x, 60.0, 6, group=group), whole)
    assert len(calls) > 4 and sum(calls) == 90  # several chunks, every row once
    calls.clear()
    halves = torch.cat([model.forecast(x[:45], 60.0, 6), model.forecast(x[45:], 60.0, 6)])
    assert torch.equal(model.forecast(x, torch.full((90,), 60.0), 6), halves)  # ungrouped rows alone, [B] intervals
    bad = x.clone()
    bad[77, 3] = float("nan")  # the error names the row of the whole batch, not of its chunk
    with pytest.raises(ValueError, match=r"row 77, position 3"):
        model.forecast(bad, 60.0, 6, group=group)


@pytest.mark.parametrize("kind", ["temporal", "frequency", "random"])
def test_mae_predict_runs_many_samples_in_chunks_with_the_batch_mask(monkeypatch, kind):
    import wfm
    import wfm.models.mae as mae_mod

    model = wfm.from_pretrained(FIXTURE)
    csi = torch.randn(40, 8, 4, 16, dtype=torch.complex64)
    whole = model.predict(csi, kind, 0.5, seed=3)
    monkeypatch.setattr(mae_mod, "PREDICT_VALUES", 8 * 4 * 16 * 7)  # chunks of 7 samples
    chunked = model.predict(csi, kind, 0.5, seed=3)
    assert torch.equal(chunked.mask, whole.mask)  # a random mask is the whole batch's draw
    assert torch.equal(chunked.reconstruction, whole.reconstruction) and torch.equal(chunked.nmse, whole.nmse)
