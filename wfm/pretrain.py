"""``wfm pretrain``: pretrain a foundation model with ``LightningCLI``.

    wfm pretrain --config pretrain/mae-tiny-cpu.yaml                 # CPU smoke run
    wfm pretrain --config pretrain/mae-base.yaml \\
        --data.datasets '[$WFM_DATA/uma-3p5-4x8-k64-t24, /data/my-csi]'  # your data
    wfm pretrain --config pretrain/mae-base.yaml --ckpt_path last     # resume

The first argument may be a LightningCLI subcommand (``fit``, ``validate``, ``test``); without
one, ``fit`` is meant. Model and data are given by ``class_path`` in the config (subclass mode),
so any LightningModule/LightningDataModule works; ``pretrain/*.yaml`` has one per model size.

Dataset paths in ``data.datasets`` may use ``~`` and environment variables; ``$WFM_DATA``
defaults to ``~/.cache/wfm/data``. On the command line write ``$WFM_DATA/x`` (or quote
``"${WFM_DATA}/x"``): inside a YAML ``[...]`` list an unquoted ``{`` starts a mapping. Distributed runs are
configured in the Trainer section (``strategy``, ``num_nodes``, ``devices``); under SLURM or
torchrun Lightning reads the cluster environment itself (``pretrain/slurm.sh``).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from pytorch_lightning import LightningDataModule, LightningModule
from pytorch_lightning.cli import LightningCLI

SUBCOMMANDS = ("fit", "validate", "test", "predict")
DEFAULT_DATA_DIR = Path("~/.cache/wfm/data").expanduser()


def expand_path(path: str) -> str:
    """Expand ``~`` and ``$VARS`` (``$WFM_DATA`` defaults to ``~/.cache/wfm/data``)."""
    os.environ.setdefault("WFM_DATA", str(DEFAULT_DATA_DIR))
    out = os.path.expanduser(os.path.expandvars(path))
    if "$" in out:
        raise ValueError(f"unset environment variable in dataset path {path!r}")
    return out


class PretrainCLI(LightningCLI):
    """LightningCLI that expands ``~``/``$VARS`` in the data module's dataset paths."""

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        init_args = cfg.get("data", {}).get("init_args") if hasattr(cfg.get("data", {}), "get") else None
        if init_args is not None and init_args.get("datasets"):
            init_args["datasets"] = [expand_path(str(p)) for p in init_args["datasets"]]


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
            _run(args)
        except Exception as e:
            # jsonargparse wraps what a model or data module raises while being built; a bad
            # dataset or checkpoint is still one line naming the file, not a traceback.
            cause = input_error(e)
            if cause is None:
                raise
            from wfm.console import fail

            fail(str(cause))


def input_error(e: BaseException | None) -> Exception | None:
    """The ``DataError`` or ``CheckpointError`` in ``e``'s chain of causes, if any."""
    from wfm.data.errors import DataError
    from wfm.hub import CheckpointError

    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, (DataError, CheckpointError)):
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
        parser_kwargs={"prog": "wfm pretrain"},
    )


if __name__ == "__main__":
    main()
