"""The ``wfm`` command: ``wfm <verb> ...``.

Each verb lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func``; this file only assembles them and turns library errors into
one-line messages with a non-zero exit.
"""

from __future__ import annotations

# wfm.pretrain and wfm.finetune (Lightning: 8 s of CPU) are imported only when their verb runs; the
# other verbs' modules import their heavy parts inside their commands (tests/startup_bench.py).
import argparse
import importlib
import sys
from typing import NoReturn

from wfm import __version__
from wfm.console import fail
from wfm.data.errors import DataError
from wfm.hub import CheckpointError
from wfm.io import ENVIRONMENT_ERRNOS, os_error_in, os_error_line  # noqa: F401 (the error path; re-exported)
from wfm.safety import InputError

# Modules that register a verb, in the order `wfm --help` lists them.
VERB_MODULES = ("wfm.demo", "wfm.data.cli", "wfm.hub", "wfm.evaluate", "wfm.calibrate", "wfm.forecast", "wfm.benchmark")


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` that answers a bad argument with one line and exit 2 (``error: wfm VERB:
    ...; see wfm VERB --help``) instead of the usage screen. Sub-commands inherit the class."""

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message} (see {self.prog} --help)")
        raise AssertionError("unreachable")  # fail() exits


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="wfm", description="Wireless foundation models.")
    parser.add_argument("--version", action="version", version=f"wfm {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    for name in VERB_MODULES:
        importlib.import_module(name).register(sub)
    # Listed for --help only: main() hands `wfm pretrain ...` to LightningCLI before parsing.
    sub.add_parser("pretrain", help="pretrain a foundation model (LightningCLI): wfm pretrain --config "
                                    "pretrain/mae.yaml --config pretrain/mae-SIZE.yaml (or causal.yaml + "
                                    "causal-SIZE.yaml); see wfm pretrain --help")
    sub.add_parser("finetune", help="fine-tune a model on a downstream task (LightningCLI): wfm finetune "
                                    "--config finetune/TASK.yaml --model.init_from M [--train DIR... --test DIR...]; "
                                    "see wfm finetune --help")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    # LightningCLI parses its own arguments: hand them over untouched.
    if argv[:1] == ["pretrain"]:
        from wfm.pretrain import main as pretrain_main

        return pretrain_main(argv[1:])
    if argv[:1] == ["finetune"]:
        from wfm.finetune import main as finetune_main

        finetune_main(argv[1:])
        return None
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, CheckpointError, InputError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except Exception as e:  # unwritable folder, a path under a file, disk full: one line, not a traceback
        cause = os_error_in(e)
        if cause is None:
            raise
        fail(os_error_line(cause))


if __name__ == "__main__":
    main()
