"""CPU rehearsal of every shipped GPU config: the first crash should happen here, not on a cluster.

    python pretrain/rehearse.py                           # every shipped config
    python pretrain/rehearse.py --only mae-tiny           # the CI size: one config, ~1-2 min
    python pretrain/rehearse.py --only mae-base causal-base --work /tmp/rehearsal --keep
    python pretrain/rehearse.py --list                    # the configs and the overrides they get

Each config runs as a user runs it, in fresh processes, with only the accelerator, the sizes and
the data overridden on the command line (LightningCLI's ``--section.key value``, the mechanism a
user has):

* **Pretraining configs** (``pretrain/*.yaml`` but the ``*-cpu`` ones; a size overlay on its
  shared base, ``--config pretrain/mae.yaml --config pretrain/mae-small.yaml``): launched like
  ``pretrain/torchrun.sh`` (``torchrun --standalone --nproc-per-node 2 -m wfm.pretrain``), so the
  config's own strategy (DDP) runs over 2 gloo processes. Kept as shipped: strategy, precision
  (``bf16-mixed``: CPU autocast), ``compile`` (Inductor), callbacks (checkpoints, LR monitor,
  throughput), loggers, optimiser and schedule. Overridden: ``accelerator cpu``, ``devices 2``,
  ``num_nodes 1``; sizes: the family's tiny model (``mae_tiny``; ``causal_tiny`` at width 32,
  depth 2), 2 samples per rank, 2 optimizer steps of **2 accumulated micro-batches**
  (``accumulate_grad_batches 2``, so accumulation is exercised), 1 validation batch at step 2;
  data: tiny shards made once from the shipped recipes (``uma-1p5-1x4-k32-t16``,
  ``traj-pedestrian``, ``traffic-10min``). Then it **resumes** from its ``last.ckpt``
  (``--ckpt_path last``) for 2 more steps. Checked: both runs exit 0, ``last.ckpt`` holds step 2
  then step 4 with finite weights, and ``metrics.csv`` a finite ``train/loss``.
* **FSDP** (``mae-large-fsdp``) cannot run on the CPU as shipped: Lightning's ``FSDPStrategy``
  refuses ``accelerator cpu`` and torch's FSDP1 needs an accelerator. It is listed as such, and a
  stand-in runs instead: the config's overrides parse (``tests/test_rehearse.py``), and torch's
  FSDP2 (``fully_shard``) over 2 gloo processes shards the model with the config's wrap and
  activation-checkpointing classes, trains 2 bf16-autocast steps and gathers a full state dict
  that loads strictly into a fresh model (:data:`CANNOT_RUN_ON_CPU`).
* **Fine-tuning configs** (``finetune/*.yaml``): ``wfm finetune --config ...`` in one process as
  shipped (``devices: 1``), starting from this rehearsal's own pretraining checkpoint of the same
  family (the pretrain -> fine-tune hand-over; ``scratch:`` weights when that config is not
  rehearsed), 2 steps on the tiny data. Checked: exit 0 and the results file.

Every run's log is kept in ``WORK/logs``; the table (Markdown and JSON) lands in ``WORK``. A
config that cannot run on the CPU is listed with the reason instead of being silently skipped.
"""

from __future__ import annotations

# torch and Lightning are imported inside _check_ckpt and fsdp_standin (torchrun's processes): the
# driver and `--list` start in 0.3 s of CPU instead of 3 s (torch) or 10 s (lit_mae) on a 2-core box.
import argparse
import csv
import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from wfm.data.generate import generate_dataset
from wfm.data.recipes import load_recipe

REPO = Path(__file__).resolve().parents[2]

#: Tiny datasets generated from the shipped recipes: (recipe, samples).
DATA = {"csi": ("uma-1p5-1x4-k32-t16", 16), "traj": ("traj-pedestrian", 8), "traffic": ("traffic-10min", 8)}
#: Configs that are CPU runs already (not GPU configs).
CPU_SUFFIX = "-cpu.yaml"
STEPS, RESUMED_STEPS = 2, 4


@dataclass
class Result:
    config: str
    kind: str  # pretrain / finetune
    launcher: str
    strategy: str
    precision: str
    compile: bool | None
    status: str = "not run"  # ok / failed / cannot run on CPU
    seconds: float = 0.0
    steps: list[int] = field(default_factory=list)  # global step after the fit, after the resume
    train_loss: float | None = None
    note: str = ""
    logs: list[str] = field(default_factory=list)


def shipped_configs(repo: Path = REPO) -> list[Path]:
    """Every GPU pretraining config (the size overlays, not their shared bases) and every
    fine-tuning config, in a fixed order."""
    pre = sorted(p for p in (repo / "pretrain").glob("*.yaml")
                 if not any(f.name.endswith(CPU_SUFFIX) for f in config_files(p)))  # an overlay of a CPU config too
    bases = {files[0] for files in map(config_files, pre) if len(files) > 1}
    return [p for p in pre if p not in bases] + sorted((repo / "finetune").glob("*.yaml"))


def _read(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def _complete(path: Path) -> bool:
    """A config that runs alone (it names its model class), not an overlay."""
    return "class_path" in (_read(path).get("model") or {})


def config_files(path: Path) -> list[Path]:
    """The config files of a run, in the order given to ``--config``: an overlay (a file without
    a model ``class_path``) comes after its base, the complete config beside it whose name is
    the longest ``-``-separated prefix of its own (``mae-small.yaml`` on ``mae.yaml``); any
    other file runs alone (the fine-tuning configs name no model class)."""
    if not _complete(path):
        parts = path.stem.split("-")
        for n in range(len(parts) - 1, 0, -1):
            base = path.with_name("-".join(parts[:n]) + path.suffix)
            if base.is_file() and _complete(base):
                return [base, path]
    return [path]


def config_args(path: Path) -> list[str]:
    """``--config`` arguments of a run of ``path`` (its base first, for a size overlay)."""
    return [arg for f in config_files(path) for arg in ("--config", str(f))]


def merge_config(base: Any, over: Any) -> Any:
    """``over`` on ``base`` as jsonargparse merges a later ``--config``: mappings key by key,
    lists of the same length entry by entry, a class spec with another ``class_path`` (or any
    other value) replaced as a whole."""
    if isinstance(base, dict) and isinstance(over, dict):
        if "class_path" in over and base.get("class_path") != over["class_path"]:
            return over
        return {**base, **{k: merge_config(base[k], v) if k in base else v for k, v in over.items()}}
    if isinstance(base, list) and isinstance(over, list) and len(base) == len(over):
        return [merge_config(b, o) for b, o in zip(base, over)]
    return over


def _yaml(path: Path) -> dict:
    """The config a run of ``path`` gets from its files (base and overlay merged)."""
    cfg: dict = {}
    for f in config_files(path):
        cfg = merge_config(cfg, _read(f))
    return cfg


def _describe(path: Path) -> tuple[str, str, bool | None]:
    """(strategy, precision, compile) as the config ships them."""
    cfg = _yaml(path)
    trainer = cfg.get("trainer") or {}
    strategy = trainer.get("strategy", "auto")
    if isinstance(strategy, dict):
        strategy = strategy.get("class_path", "?").rsplit(".", 1)[-1]
    model = cfg.get("model") or {}
    compile_ = (model.get("init_args") or model).get("compile")
    return str(strategy), str(trainer.get("precision", "32-true")), compile_


def family(path: Path) -> str:
    """``mae`` or ``causal``: whose model the config trains."""
    cfg = _yaml(path)
    model = cfg.get("model") or {}
    cls = str(model.get("class_path", ""))
    if "lit_causal" in cls or str((model.get("init_args") or {}).get("model", "")).startswith("causal"):
        return "causal"
    return "mae"


# --------------------------------------------------------------------------------- data
def make_data(work: Path) -> dict[str, Path]:
    """Generate the tiny datasets once (a rerun keeps them)."""
    out = {}
    for key, (recipe, n) in DATA.items():
        folder = work / "data" / recipe
        if not (folder / "manifest.json").is_file():
            generate_dataset(load_recipe(REPO / "data" / "recipes" / f"{recipe}.yaml"), folder, num_samples=n)
        out[key] = folder
    return out


# --------------------------------------------------------------------------------- overrides
def _list(paths: list[Path]) -> str:
    return "[" + ", ".join(str(p) for p in paths) + "]"


def pretrain_overrides(path: Path, data: dict[str, Path]) -> list[str]:
    """The command-line overrides of a pretraining config: accelerator, sizes, data."""
    args = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.num_nodes", "1",
            "--trainer.accumulate_grad_batches", "2", "--trainer.val_check_interval", str(STEPS),
            "--trainer.limit_val_batches", "1", "--trainer.log_every_n_steps", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    if family(path) == "mae":
        return args + ["--model.init_args.model", "mae_tiny",
                       "--data.init_args.datasets", _list([data["csi"]]), "--data.init_args.batch_size", "2",
                       "--data.init_args.num_workers", "1", "--data.init_args.val_fraction", "0.25",
                       "--data.init_args.test_fraction", "0"]
    # A dict on the command line replaces the config's: keep its design, shrink only the size.
    kwargs = {**(_yaml(path)["model"]["init_args"].get("model_kwargs") or {}), "dim": 32, "depth": 2, "num_heads": 2}
    return args + ["--model.init_args.model", "causal_tiny",
                   "--model.init_args.model_kwargs", json.dumps(kwargs),
                   "--data.init_args.datasets", _list([data["csi"], data["traj"], data["traffic"]]),
                   "--data.init_args.weights", "[1, 1, 1]", "--data.init_args.context", "128",
                   "--data.init_args.horizon", "32", "--data.init_args.batch_size", "2",
                   "--data.init_args.samples_per_epoch", "64", "--data.init_args.eval_windows", "4",
                   "--data.init_args.num_workers", "1"]


def finetune_overrides(path: Path, data: dict[str, Path], init_from: str) -> list[str]:
    """The command-line overrides of a fine-tuning config: accelerator, sizes, data, weights."""
    common = ["--trainer.accelerator", "cpu", "--trainer.max_steps", str(STEPS), "--trainer.val_check_interval",
              "1", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false"]
    if family(path) == "causal":  # LightningCLI subclass form (runs through wfm pretrain's CLI)
        return common + ["--model.init_args.init_from", init_from,
                         "--data.init_args.datasets", _list([data["traj"]]), "--data.init_args.batch_size", "2",
                         "--data.init_args.samples_per_epoch", "8", "--data.init_args.eval_windows", "4",
                         "--data.init_args.num_workers", "0"]
    return common + ["--model.init_from", init_from, "--data.datasets", _list([data["csi"]]),
                     "--data.batch_size", "2"]


# --------------------------------------------------------------------------------- runs
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("TRITON_INTERPRET", None)  # a user's run: compiled kernels, or the reference on CPU
    return env


def _run(cmd: list[str], cwd: Path, log: Path, timeout: float) -> tuple[int, float]:
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=_env(), stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                                  start_new_session=True)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = -9
            f.write(f"\n[rehearse] timed out after {timeout:.0f} s\n")
    return rc, time.monotonic() - start


def _tail(log: Path, n: int = 6) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error:" in ln or "timed out" in ln]
    return " | ".join((errors or lines)[-n:])[-600:]


def _last_ckpt(cwd: Path) -> Path | None:
    found = sorted(cwd.glob("runs/**/last.ckpt"))
    return found[0] if found else None


def _check_ckpt(path: Path) -> tuple[int, bool]:
    """(global_step, all weights finite) of a Lightning checkpoint, read weights-only."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    finite = all(bool(torch.isfinite(t).all()) for t in state["state_dict"].values()
                 if isinstance(t, torch.Tensor) and t.is_floating_point())
    return int(state["global_step"]), finite


def _train_loss(cwd: Path) -> float | None:
    for path in sorted(cwd.glob("runs/**/metrics.csv")):
        rows = list(csv.DictReader(open(path)))
        losses = [float(r[k]) for r in rows for k in ("train/loss", "train/loss_step") if r.get(k)]
        if losses:
            return losses[-1]
    return None


def torchrun(nproc: int = 2) -> list[str]:
    """``torchrun`` as ``pretrain/torchrun.sh`` calls it, on one machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]


def rehearse_pretrain(path: Path, work: Path, data: dict[str, Path], timeout: float) -> Result:
    strategy, precision, compile_ = _describe(path)
    res = Result(path.relative_to(REPO).as_posix(), "pretrain", "torchrun x2 (gloo)", strategy, precision, compile_)
    cwd = work / path.stem
    shutil.rmtree(cwd, ignore_errors=True)
    cwd.mkdir(parents=True)
    base = [*torchrun(2), "-m", "wfm.pretrain", *config_args(path), *pretrain_overrides(path, data)]
    for phase, steps, extra in (("fit", STEPS, []), ("resume", RESUMED_STEPS, ["--ckpt_path", "last"])):
        log = work / "logs" / f"{path.stem}-{phase}.txt"
        res.logs.append(str(log))
        rc, secs = _run([*base, "--trainer.max_steps", str(steps), *extra], cwd, log, timeout)
        res.seconds += secs
        if rc != 0:
            res.status, res.note = "failed", f"{phase}: exit {rc}: {_tail(log)}"
            return res
        ckpt = _last_ckpt(cwd)
        if ckpt is None:
            res.status, res.note = "failed", f"{phase}: no last.ckpt under {cwd}/runs"
            return res
        step, finite = _check_ckpt(ckpt)
        res.steps.append(step)
        if step != steps or not finite:
            res.status, res.note = "failed", f"{phase}: last.ckpt at step {step} (want {steps}), finite weights: {finite}"
            return res
    res.train_loss = _train_loss(cwd)
    if res.train_loss is None or not math.isfinite(res.train_loss):
        res.status, res.note = "failed", f"no finite train/loss in metrics.csv ({res.train_loss})"
        return res
    res.status = "ok"
    return res


def rehearse_finetune(path: Path, work: Path, data: dict[str, Path], init_from: str, timeout: float) -> Result:
    strategy, precision, compile_ = _describe(path)
    res = Result(path.relative_to(REPO).as_posix(), "finetune", "wfm finetune (1 process)", strategy, precision,
                 compile_)
    cwd = work / f"finetune-{path.stem}"
    shutil.rmtree(cwd, ignore_errors=True)
    cwd.mkdir(parents=True)
    log = work / "logs" / f"finetune-{path.stem}.txt"
    res.logs.append(str(log))
    cmd = [sys.executable, "-m", "wfm.cli", "finetune", "--config", str(path), *finetune_overrides(path, data, init_from)]
    rc, res.seconds = _run(cmd, cwd, log, timeout)
    if rc != 0:
        res.status, res.note = "failed", f"exit {rc}: {_tail(log)}"
        return res
    if family(path) == "causal":
        ckpt = _last_ckpt(cwd)
        if ckpt is None:
            res.status, res.note = "failed", "no last.ckpt"
            return res
        step, finite = _check_ckpt(ckpt)
        res.steps = [step]
        ok = step == STEPS and finite
    else:
        metrics = sorted(cwd.glob("**/metrics.json"))
        ok = bool(metrics)
        if ok:
            res.steps = [int(json.loads(metrics[0].read_text()).get("steps", 0))]
    res.status = "ok" if ok else "failed"
    res.note = f"from {Path(init_from).name if not init_from.startswith('scratch:') else init_from}" if ok else \
        f"no results in {cwd}"
    return res


#: Configs that cannot run on the CPU as shipped: the reason, and the check that stands in.
CANNOT_RUN_ON_CPU: dict[str, str] = {
    "mae-large-fsdp.yaml": "Lightning's FSDPStrategy refuses accelerator=cpu ('requires a GPU accelerator') and "
                           "torch's FSDP1 under it needs an accelerator device. Stand-in: the config parses with the "
                           "rehearsal's overrides (tests/test_rehearse.py), and torch's FSDP2 (fully_shard) over 2 "
                           "gloo processes shards the model with the config's auto_wrap_policy and "
                           "activation_checkpointing_policy classes, trains 2 bf16-autocast steps of the MAE loss "
                           "and gathers a full state dict that loads strictly into a fresh model",
}


def _import(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def fsdp_standin(config: Path, out: Path) -> None:
    """The FSDP stand-in (run under ``torchrun --nproc-per-node 2``); writes ``out`` (JSON) on rank 0."""
    import torch
    import torch.distributed as dist
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from wfm.training.lit_mae import MAEPretrainModule

    cfg = _yaml(config)
    strategy = cfg["trainer"]["strategy"]["init_args"]
    wrap = tuple(_import(c) for c in strategy["auto_wrap_policy"])
    ckpt = tuple(_import(c) for c in strategy.get("activation_checkpointing_policy") or [])
    init = dict(cfg["model"]["init_args"], model="mae_tiny", compile=False)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    torch.manual_seed(0)
    module = MAEPretrainModule(**init)
    model = module.model
    if ckpt:
        apply_activation_checkpointing(model, check_fn=lambda m: isinstance(m, ckpt))
    units = [m for m in model.modules() if isinstance(m, wrap)]
    for m in units:
        fully_shard(m, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    csi = torch.randn(2, 16, 4, 32, dtype=torch.complex64, generator=torch.Generator().manual_seed(rank))
    losses = []
    for step in range(STEPS):
        mask, _, _ = module.mask_policy(2, model.grid_for(csi.shape), step, rank=rank)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # what bf16-mixed does
            loss = model(csi, mask).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        fresh = MAEPretrainModule(**init).model
        fresh.load_state_dict(state, strict=True)
        finite = all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())
        out.write_text(json.dumps({"losses": losses, "units": len(units), "keys": len(state), "finite": finite}))
    dist.destroy_process_group()


def rehearse_standin(path: Path, work: Path, timeout: float) -> Result:
    strategy, precision, compile_ = _describe(path)
    res = Result(path.relative_to(REPO).as_posix(), "pretrain", "torchrun x2 (gloo), stand-in", strategy, precision,
                 compile_)
    out = work / f"{path.stem}-standin.json"
    out.unlink(missing_ok=True)
    log = work / "logs" / f"{path.stem}-standin.txt"
    res.logs.append(str(log))
    rc, res.seconds = _run([*torchrun(2), "-m", "wfm.training.rehearse", "_fsdp_standin", str(path), str(out)],
                           work, log, timeout)
    if rc != 0 or not out.is_file():
        res.status, res.note = "failed", f"FSDP stand-in: exit {rc}: {_tail(log)}"
        return res
    got = json.loads(out.read_text())
    ok = got["finite"] and all(math.isfinite(x) for x in got["losses"]) and got["units"] > 0
    res.steps, res.train_loss = [len(got["losses"])], got["losses"][-1]
    res.status = "cannot run on CPU" if ok else "failed"
    res.note = (f"stand-in ok: FSDP2 over {got['units']} blocks + root, {got['keys']} keys gathered. "
                if ok else "stand-in failed. ") + CANNOT_RUN_ON_CPU[path.name]
    return res


def rehearse(configs: list[Path], work: Path, timeout: float = 900.0, echo=print) -> list[Result]:
    """Rehearse ``configs`` (pretraining ones first, so fine-tuning starts from their checkpoints)."""
    work.mkdir(parents=True, exist_ok=True)
    data = make_data(work)
    results: list[Result] = []
    init = {"mae": "scratch:mae_tiny", "causal": "scratch:causal_tiny"}
    pre = [p for p in configs if p.parent.name == "pretrain"]
    fin = [p for p in configs if p.parent.name != "pretrain"]
    for path in pre + fin:
        echo(f"[rehearse] {path.relative_to(REPO)} ...")
        if path.name in CANNOT_RUN_ON_CPU:
            res = rehearse_standin(path, work, timeout)
        elif path in pre:
            res = rehearse_pretrain(path, work, data, timeout)
            ckpt = _last_ckpt(work / path.stem)
            if res.status == "ok" and ckpt is not None and family(path) in init and init[family(path)].startswith("scratch"):
                init[family(path)] = str(ckpt)
        else:
            res = rehearse_finetune(path, work, data, init[family(path)], timeout)
        echo(f"[rehearse]   {res.status} in {res.seconds:.0f} s {res.note}")
        results.append(res)
    return results


def table(results: list[Result]) -> str:
    head = "| config | launcher | strategy | precision | compile | steps (fit, resume) | train loss | status | s | note |"
    rows = [head, "|" + "---|" * 10]
    for r in results:
        loss = "" if r.train_loss is None else f"{r.train_loss:.4g}"
        rows.append(f"| {r.config} | {r.launcher} | {r.strategy} | {r.precision} | {r.compile} | "
                    f"{', '.join(map(str, r.steps))} | {loss} | {r.status} | {r.seconds:.0f} | {r.note} |")
    return "\n".join(rows)


def _select(only: list[str] | None) -> list[Path]:
    configs = shipped_configs()
    if not only:
        return configs
    chosen = [p for p in configs if p.stem in only or p.name in only or f"{p.parent.name}/{p.name}" in only]
    missing = set(only) - {p.stem for p in chosen} - {p.name for p in chosen} - \
        {f"{p.parent.name}/{p.name}" for p in chosen}
    if missing:
        raise SystemExit(f"rehearse: no shipped config named {', '.join(sorted(missing))}; "
                         f"choose from {', '.join(p.stem for p in configs)}")
    return chosen


def main(argv: list[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser(prog="pretrain/rehearse.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="CONFIG", help="config names (e.g. mae-base distance-forecast)")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the working folder (runs, logs, checkpoints)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run (default 900)")
    ap.add_argument("--list", action="store_true", help="print the configs and their overrides, run nothing")
    args = ap.parse_args(argv)
    configs = _select(args.only)
    if args.list:
        data = {k: Path("$WORK/data") / v[0] for k, v in DATA.items()}
        for p in configs:
            over = pretrain_overrides(p, data) if p.parent.name == "pretrain" else \
                finetune_overrides(p, data, "PRETRAINED")
            files = " + ".join(str(f.relative_to(REPO)) for f in config_files(p))
            print(f"{files}: {' '.join(over)}")
        return []
    work = args.work or Path(tempfile.mkdtemp(prefix="wfm-rehearse-"))
    try:
        results = rehearse(configs, work.resolve(), args.timeout)
        md = table(results)
        (work / "rehearsal.md").write_text(md + "\n")
        (work / "rehearsal.json").write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
        print(md)
    finally:
        if args.work is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep or args.work is not None:
            print(f"[rehearse] runs and logs in {work}")
    if any(r.status == "failed" for r in results):
        raise SystemExit(1)  # "cannot run on CPU" (with its stand-in passed) is not a failure
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["_fsdp_standin"]:
        fsdp_standin(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
