"""The ``wfm`` command: ``wfm <verb> ...``.

Each verb lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func``; this file only assembles them and turns library errors into
one-line messages with a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys

from wfm import __version__

# Modules that register a verb, in the order `wfm --help` lists them.
VERB_MODULES = ("wfm.demo", "wfm.data.cli", "wfm.hub", "wfm.evaluate", "wfm.benchmark")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="wfm", description="Wireless foundation models.")
    parser.add_argument("--version", action="version", version=f"wfm {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    for name in VERB_MODULES:
        importlib.import_module(name).register(sub)
    # Listed for --help only: main() hands `wfm pretrain ...` to LightningCLI before parsing.
    sub.add_parser("pretrain", help="pretrain a foundation model (LightningCLI): wfm pretrain --config "
                                    "pretrain/mae-SIZE.yaml or causal-SIZE.yaml; see wfm pretrain --help")
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
    from wfm.console import fail
    from wfm.data.errors import DataError
    from wfm.hub import CheckpointError

    from wfm.safety import InputError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, CheckpointError, InputError) as e:
        fail(str(e))
    except OSError as e:  # unwritable folder, a path under a file, disk full: one line, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{e.strerror or e}")
    except KeyboardInterrupt:
        fail("interrupted", code=130)


if __name__ == "__main__":
    main()
