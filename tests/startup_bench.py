"""Start-up budget of the ``wfm`` command: seconds until ``--help`` and early errors answer.

    python tests/startup_bench.py [--repeat 3] [--repo DIR] [--markdown]

Runs each command in a fresh interpreter (``python -c "from wfm.cli import main; main()" ...``
with ``PYTHONPATH`` = ``--repo``, default this repository) and prints the best of ``--repeat``
wall-clock and CPU (user + system) times. Errors that need a dataset get a DeepSense 6G import
of ``../shared/datasets`` (all 7 scenarios, 289 trajectories) when present, else a synthetic
one. A benchmark figure, not a test: the budget (under 2 s on a 2-core machine for help and argument errors, issue 15) is
read off its output and written in README.md. ``--repo`` points it at another checkout (e.g. a
``git worktree`` of an older commit) to measure "before".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _deepsense(tmp: Path, python: str, repo: Path) -> Path:
    shared = HERE.parent / "shared" / "datasets" / "deepsense6g-beam"
    out = tmp / "deepsense"
    if not shared.is_dir():
        sys.path.insert(0, str(HERE / "tests"))
        from test_train_test import _deepsense as make  # noqa: E402

        shared = make(tmp / "raw", scenarios=(1, 2, 3), n_traj=40, length=40)
    subprocess.run([python, "-c", "from wfm.cli import main; main()", "data", "import", "deepsense", str(shared),
                    "--out", str(out)], check=True, capture_output=True, env=_env(repo))
    return out


def _env(repo: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def cases(data: Path) -> list[tuple[str, list[str]]]:
    causal = str(HERE / "checkpoints" / "causal-tiny-catalog-cpu")
    return [
        ("wfm --help", ["--help"]),
        ("wfm evaluate --help", ["evaluate", "--help"]),
        ("argument error (unknown task)", ["evaluate", "--task", "nope", "--model", "x", "--data", "y"]),
        ("option error (--period 0)", ["evaluate", "--task", "traffic-forecast", "--model", "persistence",
                                       "--data", str(data), "--period", "0"]),
        ("missing data folder", ["evaluate", "--task", "future-beam", "--model", "lstm", "--data", "/nonexistent"]),
        ("unknown model, DeepSense data", ["evaluate", "--task", "future-beam", "--model", "nosuchmodel",
                                           "--data", str(data)]),
        ("causal model on future-beam (not an MAE)", ["evaluate", "--task", "future-beam", "--model", causal,
                                                      "--data", str(data)]),
    ]


def best_of(python: str, repo: Path, argv: list[str], repeat: int) -> tuple[float, float, int]:
    """Best wall-clock and best CPU (user + system) seconds of ``repeat`` runs, and the exit code.
    On a machine shared with other jobs the wall clock measures the queue as much as the
    command; the CPU seconds do not."""
    import resource

    walls, cpus, code = [], [], 0
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run([python, "-c", "from wfm.cli import main; main()", *argv], capture_output=True,
                           env=_env(repo), cwd=tempfile.gettempdir())
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        code = p.returncode
    return min(walls), min(cpus), code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--repo", default=str(HERE), help="checkout to measure (default: this one)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    repo = Path(args.repo).resolve()
    with tempfile.TemporaryDirectory(prefix="wfm-startup-") as tmp:
        data = _deepsense(Path(tmp), args.python, repo)
        rows = [(name, *best_of(args.python, repo, argv, args.repeat)) for name, argv in cases(data)]
    if args.markdown:
        print(f"| command | wall s (best of {args.repeat}) | CPU s (best of {args.repeat}) | exit |")
        print("|---|---|---|---|")
    for name, wall, cpu, code in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {code} |" if args.markdown else
              f"wall {wall:6.2f} s  CPU {cpu:6.2f} s  exit {code}  {name}")


if __name__ == "__main__":
    main()
