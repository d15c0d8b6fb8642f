"""``wfm pretrain``: pretrain a foundation model with ``LightningCLI``.

    wfm pretrain --config pretrain/mae-tiny-cpu.yaml                 # CPU smoke run
    wfm pretrain --config pretrain/mae.yaml --config pretrain/mae-base.yaml \\
        --data.datasets '[$WFM_DATA/uma-3p5-4x8-k64-t24, /data/my-csi]'  # your data
    wfm pretrain --config pretrain/mae.yaml --config pretrain/mae-base.yaml --ckpt_path last  # resume

The first argument may be a LightningCLI subcommand (``fit``, ``validate``, ``test``); without
one, ``fit`` is meant. Model and data are given by ``class_path`` in the config (subclass mode),
so any LightningModule/LightningDataModule works; ``pretrain/*.yaml`` has a base (``mae.yaml``,
``causal.yaml``) and a short overlay per model size.

Dataset paths in ``data.datasets`` may use ``~`` and environment variables; ``$WFM_DATA``
defaults to ``~/.cache/wfm/data``. On the command line write ``$WFM_DATA/x`` (or quote
``"${WFM_DATA}/x"``): inside a YAML ``[...]`` list an unquoted ``{`` starts a mapping. Distributed runs are
configured in the Trainer section (``strategy``, ``num_nodes``, ``devices``); under SLURM or
torchrun Lightning reads the cluster environment itself (``pretrain/slurm.sh``).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning import LightningDataModule, LightningModule
from pytorch_lightning.cli import LightningCLI

from wfm.console import fail
from wfm.data.errors import DataError
from wfm.hub import CheckpointError
from wfm.io import os_error_in, os_error_line
from wfm.safety import InputError, check_yaml_file, install_safe_checkpoint_io, load_checkpoint, resolve_ckpt_path
from wfm.training.finite import FinalCheckpoint, FiniteGuard, NonFiniteError

SUBCOMMANDS = ("fit", "validate", "test", "predict")
DEFAULT_DATA_DIR = Path("~/.cache/wfm/data").expanduser()


def expand_path(path: str) -> str:
    """Expand ``~`` and ``$VARS`` (``$WFM_DATA`` defaults to ``~/.cache/wfm/data``)."""
    os.environ.setdefault("WFM_DATA", str(DEFAULT_DATA_DIR))
    out = os.path.expanduser(os.path.expandvars(path))
    if "$" in out:
        raise ValueError(f"unset environment variable in dataset path {path!r}")
    return out


#: Where the CLI is: a failure while building the classes is a bad input (one line, exit 2).
_PHASE = {"instantiating": False}


def check_schedule(init_args: Any, where: str = "model") -> None:
    """Refuse schedule values that would train on garbage (negative learning rates...)."""
    if not hasattr(init_args, "get"):
        return
    checks = {"warmup_steps": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
              "min_lr_ratio": lambda v: isinstance(v, (int, float)) and 0 <= v <= 1,
              "lr": lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v > 0,
              "weight_decay": lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v >= 0,
              "max_steps": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)}
    want = {"warmup_steps": "an integer >= 0", "min_lr_ratio": "in [0, 1]", "lr": "a finite number > 0",
            "weight_decay": "a finite number >= 0", "max_steps": "an integer >= 0"}
    for key, ok in checks.items():
        if key in init_args and init_args.get(key) is not None and not ok(init_args.get(key)):
            raise InputError(f"{where}.{key} = {init_args.get(key)!r}: must be {want[key]}")


def prepare_run(cli: LightningCLI, cfg: Any) -> None:
    """Shared by ``wfm pretrain`` and ``wfm finetune`` before the classes are built: a URL
    ``ckpt_path`` is refused unless downloads are allowed (then fetched and verified)."""
    _PHASE["instantiating"] = True
    if hasattr(cfg, "get") and cfg.get("ckpt_path") is not None:
        cfg["ckpt_path"] = resolve_ckpt_path(cfg["ckpt_path"])


def harden_trainer(trainer: Any) -> None:
    """Shared by ``wfm pretrain`` and ``wfm finetune`` once the Trainer exists: checkpoints are
    loaded weights-only; non-finite losses/gradients stop training; the last step is saved."""
    _PHASE["instantiating"] = False
    install_safe_checkpoint_io(trainer)
    have = {type(c).__name__ for c in trainer.callbacks}
    for cb in (FiniteGuard(), FinalCheckpoint()):
        if type(cb).__name__ not in have:
            trainer.callbacks.append(cb)


class PretrainCLI(LightningCLI):
    """LightningCLI that expands ``~``/``$VARS`` in the data module's dataset paths, loads
    checkpoints weights-only and stops on non-finite losses."""

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        prepare_run(self, cfg)
        model = cfg.get("model") if hasattr(cfg, "get") else None
        check_schedule(model.get("init_args") if hasattr(model, "get") else None)
        init_args = cfg.get("data", {}).get("init_args") if hasattr(cfg.get("data", {}), "get") else None
        if init_args is not None and init_args.get("datasets"):
            init_args["datasets"] = [expand_path(str(p)) for p in init_args["datasets"]]

    def after_instantiate_classes(self) -> None:
        harden_trainer(self.trainer)

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        check_parsed(self.config[sub] if sub else self.config)

    def _parse_ckpt_path(self) -> None:
        """Lightning reads the hyperparameters of ``ckpt_path`` before anything else: a URL is
        refused (or fetched and verified) and the file read weights-only, with one-line errors."""
        parse_ckpt_hparams(self)


def parse_ckpt_hparams(cli: LightningCLI) -> None:
    """``LightningCLI._parse_ckpt_path`` through :func:`wfm.safety.load_checkpoint`."""
    sub = cli.config.get("subcommand")
    if not sub:
        return
    cfg = cli.config[sub]
    if cfg.get("ckpt_path") is None:
        return
    cfg["ckpt_path"] = resolve_ckpt_path(cfg["ckpt_path"])
    ckpt_path = cfg["ckpt_path"]
    if not Path(str(ckpt_path)).is_file():
        return  # "last", "best", "hpc": resolved by Lightning, loaded through SafeCheckpointIO
    ckpt = load_checkpoint(ckpt_path)
    hparams = dict(ckpt.get("hyper_parameters") or {}) if isinstance(ckpt, dict) else {}
    hparams.pop("_instantiator", None)
    if not hparams:
        return
    if "_class_path" in hparams:
        hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
    cli.config = cli.parser.parse_object({sub: {"model": hparams}}, cli.config)


def config_paths(args: list[str]) -> list[str]:
    """The ``--config`` files named in ``args``."""
    out = []
    for i, a in enumerate(args):
        if a.startswith("--config="):
            out.append(a.split("=", 1)[1])
        elif a in ("--config", "-c") and i + 1 < len(args):
            out.append(args[i + 1])
    return out


def check_configs(args: list[str]) -> None:
    """Read every ``--config`` with the alias-free, size-bounded YAML loader first (a
    billion-laughs file is refused here, before jsonargparse would expand it)."""
    for path in config_paths(args):
        if Path(path).is_file():
            check_yaml_file(path)


def main(argv: list[str] | None = None) -> None:
    """Run ``wfm pretrain`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in SUBCOMMANDS:
        args = ["fit", *args]  # also makes `wfm pretrain --help` list fit's options
    with warnings.catch_warnings():
        # We pass ``args`` on purpose (``wfm pretrain`` hands over its own argv); Lightning
        # would warn because sys.argv is also set.
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
        try:
            check_configs(args)
            _PHASE["instantiating"] = False
            _run(args)
        except Exception as e:
            # jsonargparse wraps what a model or data module raises while being built; a bad
            # dataset or checkpoint is still one line naming the file, not a traceback.
            fail_on_input_error(e)
            raise


def parser_kwargs(prog: str) -> dict[str, Any]:
    """LightningCLI ``parser_kwargs`` shared by ``wfm pretrain`` and ``wfm finetune``: a bad
    argument raises ``ArgumentError`` (printed by :func:`fail_on_input_error` as one line, exit 2)
    instead of jsonargparse's usage screen and nested multi-line message."""
    return {"prog": prog, "exit_on_error": False}


#: jsonargparse's scaffolding around the actual problem in a nested (Union, subclass) error.
_PARSE_NOISE = re.compile(r"^(Does not validate against any of the Union subtypes|Subtypes:|Errors:|"
                          r"Given value type:|Expected a <class 'NoneType'>)")
_GIVEN = re.compile(r"^Given value: (.*)$")
_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
_CLASS_PATH = re.compile(r"^Problem with given class_path '([^']+)':\s*(.*)$")


def parse_error_line(message: str, limit: int = 300) -> str:
    """jsonargparse's (multi-line, nested) error ``message`` as one line: the keys that lead to
    the innermost problem and that problem, e.g. ``model.lr: Expected a float. Got value: abc``.
    A problem inside a ``class_path`` is preferred to the Union's other, generic branches."""
    keys: list[tuple[int, str]] = []
    found: list[tuple[tuple[str, str] | None, str, str]] = []  # (class_path, key path, detail)
    in_class = 0  # indent below which the class_path being read ends
    in_class_key: tuple[str, str] | None = None  # (key path, class) of that class_path
    given = ""  # the outermost "Given value: ..."
    for raw in message.splitlines():
        text = raw.strip().removeprefix("- ").strip()
        if not text:
            continue
        indent = len(raw) - len(raw.lstrip())
        while keys and keys[-1][0] >= indent:
            keys.pop()
        if in_class and indent < in_class:
            in_class, in_class_key = 0, None
        m = _PARSER_KEY.match(text)
        if m:
            keys.append((indent, m.group(1)))
            text = m.group(2)
            if not text:
                continue
        m = _CLASS_PATH.match(text)
        if m:
            in_class, in_class_key = indent + 1, (".".join(k for _, k in keys), m.group(1))
            text = m.group(2)
            if not text:
                continue
        if _PARSE_NOISE.match(text):
            continue
        m = _GIVEN.match(text)
        if m:
            given = given or m.group(1)
            continue
        found.append((in_class_key, ".".join(k for _, k in keys), text))
    if not found:
        return " ".join(message.split())[:limit] or "invalid arguments"
    where, key, detail = next((f for f in found if f[0] is not None), found[0])
    alternatives = [d for c, k, d in found if c is None and k == key]
    if where is None and len(alternatives) > 1 and all(d.startswith("Expected a ") for d in alternatives):
        detail = "Expected one of: " + ", ".join(d.removeprefix("Expected a ") for d in alternatives)
    plain_value = given and not given.startswith(("NestedArg(", "Namespace("))
    if where is None and plain_value and "Got value" not in detail:
        detail += f"; got {given}"
    detail = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", detail).replace("Expected a int", "Expected an int")
    detail = detail.replace("typing.", "")
    if where is not None and where[0] == key:  # directly about the class: name it
        detail = f"{detail} ({where[1]})"
    line = f"{key}: {detail}" if key else detail
    return line if len(line) <= limit else line[:limit - 3] + "..."


def fail_on_input_error(e: BaseException) -> None:
    """Exit with one line (code 2) when ``e`` is a bad input: a DataError, CheckpointError,
    InputError or NonFiniteError in its chain, a bad command-line argument or config value
    (``ArgumentError``), or anything raised while the CLI was building the model, data module
    and trainer from the config. Returns otherwise."""
    cause = input_error(e)
    if cause is not None:
        fail(str(cause))
    if isinstance(e, argparse.ArgumentError):
        fail(parse_error_line(str(e)))
    os_error = os_error_in(e)
    if os_error is not None:  # unwritable run folder, disk full (also behind h5py's RuntimeError)
        fail(os_error_line(os_error))
    if _is_misconfiguration(e) or (
            _PHASE["instantiating"] and isinstance(e, (ValueError, TypeError, RuntimeError, KeyError))):
        _PHASE["instantiating"] = False
        inner = e
        while inner.__cause__ is not None and isinstance(inner.__cause__, Exception):
            inner = inner.__cause__
        text = inner.args[0] if isinstance(inner, KeyError) and inner.args else str(inner)  # KeyError quotes
        fail(f"invalid configuration: {parse_error_line(str(text) or type(inner).__name__, limit=400)}")


def _is_misconfiguration(e: BaseException) -> bool:
    """Lightning's own "you configured it wrong" (``max_steps -5``...), at any point of a run."""
    return isinstance(e, MisconfigurationException)


def check_parsed(config: Any) -> None:
    """Checks of the parsed config that must run before LightningCLI uses it: ``seed_everything``
    is seeded before any hook, so a seed numpy refuses is refused here, as one line."""
    seed = config.get("seed_everything") if hasattr(config, "get") else None
    if seed is None or isinstance(seed, bool):
        return
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InputError(f"seed_everything = {seed!r}: must be true, false or an integer in [0, 2**32)")


def input_error(e: BaseException | None) -> Exception | None:
    """The ``DataError``, ``CheckpointError``, ``InputError`` or ``NonFiniteError`` in ``e``'s
    chain of causes, if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, (DataError, CheckpointError, InputError, NonFiniteError)):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _run(args: list[str]) -> None:
    PretrainCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
        parser_kwargs=parser_kwargs("wfm pretrain"),
    )


if __name__ == "__main__":
    main()
