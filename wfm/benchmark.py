"""``wfm benchmark real``: every shipped foundation model zero-shot against the classical
baselines on every real dataset (``wfm.tasks.real_data``), one table.

    wfm benchmark real [--datasets DIR] [--out DIR] [--checkpoints DIR | --model PATH ...]

``--datasets`` defaults to ``$WFM_REAL_DATA``, else ``../shared/datasets`` beside the
repository; when it is absent the command says so and exits 0 (a clone without the shared
data). Writes ``real_benchmark.json``, ``real_benchmark.md`` and ``real_benchmark.png`` to ``--out`` and prints the
summary table and a verdict per model.
"""

from __future__ import annotations

# torch and wfm.tasks.real_data (9 s of CPU with the models) are imported inside the command:
# `wfm --help` imports this module to list the verb (tests/startup_bench.py).
import argparse
from pathlib import Path
from typing import Any

from wfm.console import console, print_table, progress_bar, write_json
from wfm.hub import CheckpointError
from wfm.io import atomic_path
from wfm.safety import InputError, non_negative_int, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="benchmarks; `wfm benchmark real`: shipped foundation models zero-shot vs "
                                         "classical baselines on real data (per-window NMSE table)")
    bsub = p.add_subparsers(dest="benchmark", metavar="<benchmark>", required=True)
    r = bsub.add_parser("real", help="every shipped model vs persistence / context mean / seasonal naive on every "
                                     "real dataset (Intel 5300 and Nexmon CSI, Milan traffic, DeepSense 6G, and your "
                                     "own imported CSI or series dataset folders in --datasets)")
    r.add_argument("--datasets", default=None, metavar="DIR",
                   help="real datasets folder (default: $WFM_REAL_DATA, else ../shared/datasets beside the repo)")
    r.add_argument("--out", default="wfm-real-benchmark", help="output folder (default: wfm-real-benchmark)")
    r.add_argument("--checkpoints", default=None, metavar="DIR",
                   help="folder of exported models (each with a config.json) and saved future-beam models (each with "
                        "a trained.json; scored on the next best beam) (default: the repo's checkpoints/)")
    r.add_argument("--model", action="append", default=None, metavar="PATH",
                   help="an exported model folder, or a saved future-beam model folder, instead of those found in "
                        "--checkpoints (repeatable)")
    r.add_argument("--csi-window", type=int, default=16, help="CSI window length in packets (default 16)")
    r.add_argument("--csi-predict", type=int, default=8, help="packets predicted at the end of a window (default 8)")
    r.add_argument("--csi-hop", type=positive_int, default=1, metavar="PACKETS",
                   help="packets between the starts of the CSI windows in time (default 1: every alignment of "
                        "the windows on the capture, so that no choice of where they start decides a row; "
                        "--csi-hop 8 with the default window gives the targets that do not overlap that the "
                        "benchmark scored before session 74)")
    r.add_argument("--traffic-context", type=positive_int, default=None,
                   help="traffic context steps (default 16 h at the file's interval: 96 at 10 min, 480 at 2 min)")
    r.add_argument("--traffic-horizon", type=positive_int, default=None,
                   help="traffic steps ahead (default 2 h at the file's interval: 12 at 10 min)")
    r.add_argument("--traffic-interval", type=positive_float, default=None, metavar="SECONDS",
                   help="seconds between a traffic CSV's steps (default: read from each file)")
    r.add_argument("--traffic-max-gap", type=non_negative_int, default=12, metavar="STEPS",
                   help="a traffic cell's runs of up to this many missing steps are filled by linear interpolation, "
                        "in contexts only (a window whose target holds one is not scored); a longer run splits the "
                        "cell (default 12, as wfm forecast; 0: every missing step splits it)")
    r.add_argument("--beam-context", type=int, default=16, help="DeepSense context steps (default 16 = 1.6 s)")
    r.add_argument("--beam-horizon", type=int, default=4, help="DeepSense steps ahead (default 4 = 0.4 s)")
    r.add_argument("--series-context", type=positive_int, default=96,
                   help="imported series datasets in --datasets: context values (default 96)")
    r.add_argument("--series-horizon", type=positive_int, default=12,
                   help="imported series datasets: values ahead (default 12)")
    r.add_argument("--max-windows", type=positive_int, default=4096,
                   help="CSI captures, imported datasets and traffic cells: at most this many windows per view, "
                        "evenly spaced (default 4096)")
    r.add_argument("--period", type=int, default=None, metavar="STEPS",
                   help="seasonal period in steps (default: from the interval, a day or a week)")
    r.add_argument("--independent-channels", action="store_true",
                   help="forecast every channel of a window on its own (default: a window's channels pool the "
                        "causal model's backtest evidence)")
    r.add_argument("--time-only", action="store_true",
                   help="score the CSI captures in time only (default: also in frequency, the upper half of the "
                        "subcarriers from the lower half, which only the MAE takes)")
    r.add_argument("--nexmon-chip", default="4339",
                   help="Nexmon chip of the .pcap captures, as csiread names it: 4339, 43455c0, 4358, 4366c0 "
                        "(default 4339; the bandwidth is read from the packets)")
    r.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    r.set_defaults(func=cmd_benchmark_real)


def cmd_benchmark_real(args: argparse.Namespace) -> dict[str, Any] | None:
    from wfm.tasks.real_beams import discover_beam_models, is_beam_model
    from wfm.tasks.real_data import (RealBenchConfig, default_datasets_dir, discover_models, markdown_report,
                                     run_real_benchmark, verdicts)

    root = Path(args.datasets).expanduser() if args.datasets else default_datasets_dir()
    if args.datasets and not root.is_dir():  # a folder the user named: a typo is an error, not "nothing to do"
        raise InputError(f"--datasets {root}: {'not a folder' if root.exists() else 'no such folder'}")
    if not root.is_dir():
        console.print(f"no real datasets at {root} (set --datasets or $WFM_REAL_DATA); nothing to benchmark")
        return None
    if args.model:
        specs, beams = [], []
        for m in args.model:
            if is_beam_model(m):
                beams.append(m)
                continue
            found = discover_models(Path(m).parent) if Path(m).is_dir() else []
            kind = next((k for p, k in found if Path(p).resolve() == Path(m).resolve()), None)
            if kind is None:
                raise CheckpointError(f"{m}: not an exported model folder (no config.json with a model_kind) nor a "
                                      "saved future-beam model (trained.json)")
            specs.append((m, kind))
    else:
        specs, beams = discover_models(args.checkpoints), discover_beam_models(args.checkpoints)
        if not specs and not beams:
            raise CheckpointError(f"{args.checkpoints or 'checkpoints/'}: no exported model (*/config.json) nor saved "
                                  "future-beam model (*/trained.json)")
    import torch

    torch.set_num_threads(max(1, args.threads))
    cfg = RealBenchConfig(csi_window=args.csi_window, csi_predict=args.csi_predict,
                          csi_hop=args.csi_hop, traffic_context=args.traffic_context,
                          traffic_horizon=args.traffic_horizon, traffic_interval=args.traffic_interval,
                          traffic_max_gap=args.traffic_max_gap, beam_context=args.beam_context,
                          beam_horizon=args.beam_horizon, period=args.period,
                          pool_channels=not args.independent_channels, csi_frequency=not args.time_only,
                          nexmon_chip=args.nexmon_chip, series_context=args.series_context,
                          series_horizon=args.series_horizon, max_windows=args.max_windows)
    with progress_bar("real-data benchmark (datasets)", None) as advance:
        result = run_real_benchmark(root, specs, cfg, progress=advance, beam_models=beams)
    out = Path(args.out)
    command = "wfm benchmark real" + (f" --datasets {args.datasets}" if args.datasets else "") + \
        (" --independent-channels" if args.independent_channels else "") + (" --time-only" if args.time_only else "") + \
        (f" --nexmon-chip {args.nexmon_chip}" if args.nexmon_chip != "4339" else "") + \
        (f" --traffic-max-gap {args.traffic_max_gap}" if args.traffic_max_gap != 12 else "") + \
        "".join(f" --csi-{k} {v}" for k, v, d in (("window", args.csi_window, 16), ("predict", args.csi_predict, 8),
                                                  ("hop", args.csi_hop, 1)) if v != d) + \
        "".join(f" --traffic-{k} {v:g}" for k, v in (("context", args.traffic_context), ("horizon", args.traffic_horizon),
                                                      ("interval", args.traffic_interval)) if v is not None)
    write_json(out / "real_benchmark.json", result)
    with atomic_path(out / "real_benchmark.md") as tmp:
        tmp.write_text(markdown_report(result, command))
    from wfm.tasks.plots import ratio_bars

    fm_rows = [r for r in result["rows"] if r["kind"].startswith("FM")]
    png = None
    if any("ratio_to_best" in r for r in fm_rows):
        with atomic_path(out / "real_benchmark.png") as tmp:
            ratio_bars(fm_rows, tmp, "real data, zero-shot: each model against the best classical baseline")
        png = out / "real_benchmark.png"
    for d in result["datasets"]:
        console.print(f"{d['dataset']} ({d['view']}): {d['note']}")
    for x in result.get("skipped", []):  # one unreadable file does not stop the others; it is named
        console.print(f"not scored: {x['error']}", markup=False, style="bold red")
    print_table(result["summary"], title="real-data zero-shot: per-window NMSE (dB) of the best classical baseline "
                                         "and each model's ratio to it (< 1 beats it)")
    if result.get("beams"):
        print_table([{k: r.get(k) for k in ("scenarios", "windows", "model", "top1", "top3", "power_loss_db", "miss_ratio")}
                     for r in result["beams"]["rows"]],
                    title="next best beam on DeepSense 6G: top-1 / top-3, power loss (dB), misses over persistence's")
    for line in verdicts(result):
        console.print(line)
    console.print(f"wrote {out / 'real_benchmark.json'}, {out / 'real_benchmark.md'}" + (f" and {png}" if png else ""))
    return result
