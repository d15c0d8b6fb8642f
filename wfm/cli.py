"""The ``wfm`` command: ``wfm <verb> ...``.

Each verb lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func``; this file only assembles them and turns library errors into
one-line messages with a non-zero exit.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from typing import NoReturn

from wfm import __version__

# Modules that register a verb, in the order `wfm --help` lists them.
VERB_MODULES = ("wfm.demo", "wfm.data.cli", "wfm.hub", "wfm.evaluate", "wfm.benchmark")


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` that answers a bad argument with one line and exit 2 (``error: wfm VERB:
    ...; see wfm VERB --help``) instead of the usage screen. Sub-commands inherit the class."""

    def error(self, message: str) -> NoReturn:
        from wfm.console import fail

        fail(f"{self.prog}: {message} (see {self.prog} --help)")
        raise AssertionError("unreachable")  # fail() exits


def build_parser() -> argparse.ArgumentParser:
    import importlib

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
    from wfm.console import fail
    from wfm.data.errors import DataError
    from wfm.hub import CheckpointError
    from wfm.safety import InputError

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


#: errno values that say the machine, not wfm, refused a write: no space, no permission, I/O error.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                                errno.EIO})


def os_error_in(e: BaseException | None) -> OSError | None:
    """The ``OSError`` behind ``e``: ``e`` itself, or one in its chain of causes with an errno
    from :data:`ENVIRONMENT_ERRNOS` (h5py reports a full disk as an OSError, then raises a
    RuntimeError while closing the file). Any other exception is a bug: None."""
    seen: set[int] = set()
    first = e
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and (e is first or e.errno in ENVIRONMENT_ERRNOS):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def os_error_line(e: OSError) -> str:
    """``e`` as one line naming the file: h5py's messages hold the file and a multi-line dump."""
    text = " ".join(str(e.strerror or e).split())
    filename = e.filename
    if filename is None:
        m = re.search(r"filename = '([^']+)'", text)
        filename = m.group(1) if m else None
    if e.errno is not None and e.errno in ENVIRONMENT_ERRNOS and ("filename =" in text or not e.strerror):
        text = os.strerror(e.errno)  # h5py: "Can't write data (file write failed: time = ..., ...)"
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        text += " (disk full, quota or file-size limit reached)"
    if filename:  # name the file being written, not its temporary (wfm.io: .NAME.tmp-PID)
        filename = re.sub(r"(^|/)\.([^/]+)\.tmp-\d+$", r"\1\2", os.fsdecode(filename))
    return f"{filename}: {text}" if filename else text


if __name__ == "__main__":
    main()
