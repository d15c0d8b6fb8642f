"""What every ``wfm`` command shows a person: tables, progress bars, JSON results, errors."""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from wfm.io import write_json_atomic

# Rich would squeeze tables to 80 columns when output goes to a file or CI log.
console = Console(stderr=False, highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) >= 1e9 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "x".join(_fmt(x) for x in v) if all(isinstance(x, int) for x in v) else ", ".join(map(_fmt, v))
    return "" if v is None else str(v)


def print_table(rows: Sequence[Mapping[str, Any]], title: str | None = None,
                columns: Sequence[str] | None = None) -> None:
    """Print dict rows as an aligned table (columns default to the first row's keys)."""
    if not rows:
        console.print(f"{title}: (empty)" if title else "(empty)")
        return
    cols = list(columns or rows[0].keys())
    if len(rows) == 1 and len(cols) > 6:  # one wide record reads better as key/value lines
        rows = [{"key": c, "value": _fmt(rows[0].get(c))} for c in cols]
        cols = ["key", "value"]
    table = Table(title=title, title_justify="left")
    for c in cols:
        table.add_column(c, justify="right" if isinstance(rows[0].get(c), (int, float)) else "left")
    for r in rows:
        table.add_row(*(_fmt(r.get(c)) for c in cols))
    console.print(table)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """The same table as GitHub Markdown, for READMEs and reports."""
    cols = list(columns or (rows[0].keys() if rows else []))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_json(path: str | Path, obj: Any) -> Path:
    """Write results as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, obj)
    return path


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr; yields ``advance(n)``. Quiet when stderr is not a terminal."""
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
                   disable=not sys.stderr.isatty())
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error (never wrapped to the terminal's width) and exit non-zero."""
    err_console.print(Text.assemble(("error: ", "bold red"), " ".join(str(message).split())), soft_wrap=True)
    raise SystemExit(code)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2)
