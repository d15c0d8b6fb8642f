"""Progress of ``wfm evaluate``: what runs now, and how far each training run has got.

``Reporter`` shows, on a terminal (stderr is a TTY), one overall bar (models x test sets) and
one bar per training run (step, loss); otherwise (output to a file or a CI log) it writes plain
lines: one when a model starts, and one every ``every`` training steps and at the last step,
so a log shows progress while a long run is going, not only at the end. ``note`` prints a line
either way (warnings, which weights were kept).
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TextIO

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class Reporter:
    """See the module doc. Use as a context manager; ``tty=None`` asks the stream."""

    def __init__(self, description: str = "evaluating", total: int | None = None, every: int = 100,
                 tty: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(self.stream.isatty()) if tty is None else tty
        self.every = max(1, int(every))
        self.description, self.total = description, total
        self._bar: Any = None
        self._overall: Any = None
        self.done = 0

    def __enter__(self) -> "Reporter":
        if self.tty:
            console = Console(file=self.stream, highlight=False)
            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console)
            self._bar.start()
            self._overall = self._bar.add_task(self.description, total=self.total, info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, highlight=False, markup=False)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        """A line for the person running the command (kept above the bars on a terminal)."""
        self._line(text)

    def start(self, what: str) -> None:
        """A model starts on a test set (``what`` names both)."""
        if self._bar is not None:
            self._bar.update(self._overall, info=what)
        else:
            total = f"/{self.total}" if self.total else ""
            self._line(f"[{self.done + 1}{total}] {what}")

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._overall, advance=n)

    def __call__(self, what: str) -> None:  # the old ``progress(str)`` callback of evaluate_task
        self.start(what)
        self.advance()

    @contextmanager
    def training(self, label: str, total: int) -> Iterator[Callable[[int, Any], None]]:
        """Yields ``step_done(step, loss)`` (``step`` counted from 1, ``loss`` a float or a
        0-d tensor, read only when shown) for a run of ``total`` steps."""
        t0 = time.perf_counter()
        if self._bar is not None:
            task = self._bar.add_task(f"  {label}", total=total, info="")

            def step_done(step: int, loss: Any) -> None:
                info = f"loss {float(loss):.4g}" if (step % 10 == 0 or step == total) else None
                self._bar.update(task, completed=step, **({"info": info} if info else {}))

            try:
                yield step_done
            finally:
                self._bar.remove_task(task)
            return

        def step_line(step: int, loss: Any) -> None:
            if step % self.every == 0 or step == total:
                self._line(f"  {label}: step {step}/{total}, loss {float(loss):.4g}, {time.perf_counter() - t0:.1f} s")

        yield step_line


class Quiet(Reporter):
    """A ``Reporter`` that shows nothing (library calls without a reporter)."""

    def __init__(self) -> None:
        super().__init__(tty=False)

    def _line(self, text: str) -> None:
        pass


def as_reporter(progress: Any) -> Reporter:
    """``progress`` as a ``Reporter``: itself, a quiet one for ``None``, or one wrapping an old
    ``progress(message)`` callback."""
    if isinstance(progress, Reporter):
        return progress
    quiet = Quiet()
    if progress is not None:
        quiet.start = lambda what: progress(what)  # type: ignore[method-assign]
    return quiet
