"""``wfm data import <format> ...`` and ``wfm data export``: measured data in and out of wfm datasets.

Formats: ``intel`` / ``nexmon`` (WiFi CSI captures), ``csi-array`` (CSI of any tool stored as an
array: ``.npy``, ``.npz``, HDF5, MATLAB v7.3 ``.mat``), ``deepsense`` (DeepSense 6G beam
arrays), ``telecom-italia`` (cell traffic CSV/TSV), ``csv`` / ``npy`` (generic series),
``hf`` (Arrow/Parquet). Every import writes a new dataset folder, verifies it and prints
its summary, like ``wfm data inspect``.
"""

from __future__ import annotations

# The loaders and shards (numpy, h5py, Hugging Face datasets) are imported inside the commands:
# `wfm --help` imports this module to list the verb, in 0.2 s (tests/startup_bench.py).
import argparse
from pathlib import Path

from wfm.console import console
from wfm.data.summary import print_summary
from wfm.safety import non_negative_int, positive_float, positive_int


def _gap_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fill", choices=("none", "linear", "ffill"), default="none",
                   help="fill missing steps (NaN, empty cells, absent timestamps); none: a gap is an error")
    p.add_argument("--max-gap", type=non_negative_int, default=0, help="longest run of missing steps that --fill fills")
    p.add_argument("--split-gaps", action="store_true",
                   help="split a series at gaps too long to fill instead of failing")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="new dataset folder (must not exist or be empty)")
    p.add_argument("--name", default=None, help="dataset name (default: from the source)")
    p.add_argument("--shard-size", type=positive_int, default=256)


def register(data_verbs: argparse._SubParsersAction) -> None:
    """Add ``import`` (one sub-command per format) and ``export`` under ``wfm data``."""
    imp = data_verbs.add_parser("import", help="import measured data (WiFi CSI, DeepSense, traffic, CSV/NPY, HF)")
    fmts = imp.add_subparsers(dest="import_format", metavar="<format>", required=True)

    for fmt, help_ in (("intel", "Intel 5300 .dat captures (csiread)"), ("nexmon", "Nexmon .pcap captures (csiread)"),
                       ("csi-array", "CSI of any tool as an array: .npy, .npz, HDF5 or MATLAB v7.3 .mat")):
        w = fmts.add_parser(fmt, help=help_)
        w.add_argument("paths", nargs="+", help="capture file(s), one capture each" if fmt != "csi-array" else
                       "array file(s), one capture each (or several along axis n)")
        _common(w)
        w.add_argument("--phase", choices=("none", "conj", "linear"), default="none",
                       help="phase sanitisation (see data/README.md: which suits which task)")
        w.add_argument("--conj-groups", choices=("chain", "all"), default="chain",
                       help="--phase conj: a reference antenna per receive chain (Intel 5300 default) or one "
                            "across all antennas (a 1-tx capture)")
        w.add_argument("--window", type=non_negative_int, default=64, help="packets per sample; 0 = each capture whole")
        w.add_argument("--hop", type=positive_int, default=None, help="packets between window starts (default: --window)")
        if fmt == "intel":
            w.add_argument("--nrx", type=positive_int, default=3)
            w.add_argument("--ntx", type=positive_int, default=3)
            w.add_argument("--scale", choices=("snr", "raw"), default="snr",
                           help="snr (default): get_scaled_csi, each packet rescaled from its RSSI, AGC and noise "
                                "readings (SNR units); raw: as the card reports it after its AGC, steadier over "
                                "time (no dips where a packet's noise reading jumps)")
        elif fmt == "csi-array":
            w.add_argument("--axes", default="pak",
                           help="the array's axes in order: p packets, a antennas, k subcarriers, and optionally n "
                                "captures, c a real/imaginary pair of size 2 (default pak; e.g. npak, pkac)")
            w.add_argument("--interval", type=positive_float, default=None,
                           help="seconds between packets (or --time-key)")
            w.add_argument("--key", default=None, help="the CSI array's name in a .npz, HDF5 or .mat file "
                                                       "(needed when it holds several)")
            w.add_argument("--time-key", default=None, help="an array of packet times in seconds in the same file")
            w.add_argument("--subcarriers", type=int, nargs="+", default=None,
                           help="subcarrier indices in frequency order, one per subcarrier (for --phase linear; "
                                "default consecutive, centred)")
            w.add_argument("--bandwidth", type=positive_float, default=None, help="channel bandwidth in Hz (recorded)")
        else:
            w.add_argument("--chip", default="4339", help="Nexmon chip, e.g. 4339, 43455c0, 4358, 4366c0")
            w.add_argument("--bw", type=positive_int, default=None,
                           help="bandwidth in MHz (default: read from the packets' length)")
        w.set_defaults(func=cmd_import_wifi)

    d = fmts.add_parser("deepsense", help="DeepSense 6G beam-power / GPS / sequence arrays")
    d.add_argument("folder")
    _common(d)
    d.add_argument("--scenarios", type=int, nargs="*", default=None, help="scenario numbers (default: all found)")
    d.add_argument("--interval", type=positive_float, default=0.1, help="nominal seconds between samples (no timestamps)")
    d.add_argument("--raw-gps", action="store_true", help="use raw rather than calibrated vehicle GPS")
    d.set_defaults(func=cmd_import_deepsense)

    t = fmts.add_parser("telecom-italia", help="cell traffic: square_id, time_interval (ms), activity columns")
    t.add_argument("path")
    _common(t)
    t.add_argument("--interval", type=positive_float, default=None,
                   help="seconds between steps (default: read from the file, the most common step between a cell's "
                        "timestamps; 600 for the challenge's files)")
    t.add_argument("--columns", nargs="*", default=None, help="activity columns (default: all)")
    _gap_args(t)
    t.set_defaults(func=cmd_import_traffic)

    for fmt in ("csv", "npy"):
        g = fmts.add_parser(fmt, help=f"generic series from a {fmt.upper()} file with a declared interval"
                            + (" or timestamps" if fmt == "csv" else ""))
        g.add_argument("path")
        _common(g)
        if fmt == "csv":
            g.add_argument("--interval", type=positive_float, default=None,
                           help="seconds between values, e.g. 0.1 (default: read from --time-column, the most "
                                "common step between its timestamps)")
        else:
            g.add_argument("--interval", type=positive_float, required=True, help="seconds between values, e.g. 0.1")
        g.add_argument("--series-kind", default="series", help="what the values are: traffic, aoa, rssi...; distance (or range): a user's distance "
                            "to its base station, which the causal model then forecasts as a range")
        if fmt == "csv":
            g.add_argument("--columns", nargs="*", default=None, help="value columns (default: all)")
            g.add_argument("--time-column", default=None,
                           help="timestamps (s, ISO 8601, months 2023-07, quarters 2023Q3), checked against "
                                "--interval or setting it")
            g.add_argument("--id-column", default=None,
                           help="a long table's series id (a cell, a user): each id's rows are its own series")
            add_time_arguments(g)
        _gap_args(g)
        g.set_defaults(func=cmd_import_series)

    h = fmts.add_parser("hf", help="Hugging Face datasets: a save_to_disk folder or Parquet file(s)")
    h.add_argument("path")
    _common(h)
    h.add_argument("--kind", default=None, help="dataset kind for files without wfm metadata (default series)")
    h.add_argument("--interval", type=positive_float, default=None, help="seconds between values (required without wfm metadata)")
    h.set_defaults(func=cmd_import_hf)

    e = data_verbs.add_parser("export", help="export a dataset to Hugging Face Arrow (save_to_disk) or Parquet")
    e.add_argument("dir", help="dataset folder")
    e.add_argument("--out", required=True, help="new folder for the export")
    e.add_argument("--format", choices=("parquet", "arrow"), default="parquet")
    e.set_defaults(func=cmd_export)


def add_time_arguments(parser: argparse.ArgumentParser) -> None:
    """``--time-unit`` and ``--resample``: how a CSV's time column is read (``wfm data import csv``,
    ``wfm forecast``; :func:`wfm.data.loaders.generic.load_csv_series`)."""
    parser.add_argument("--time-unit", choices=("s", "ms", "us", "ns", "year"), default=None,
                        help="unit of numeric timestamps (default s, or calendar years where every one is a whole "
                             "number from 1000 to 2999; epoch milliseconds: ms)")
    parser.add_argument("--resample", action="store_true",
                        help="interpolate timestamps that keep no regular step (packets, GPS fixes) onto the grid "
                             "of --interval (or of their most common step) instead of refusing them")


def _policy(args: argparse.Namespace):
    from wfm.data.loaders.timegrid import GapPolicy

    return GapPolicy(args.fill, args.max_gap, args.split_gaps)


def _done(out: Path) -> None:
    from wfm.data.shards import read_manifest, verify_dataset

    verify_dataset(out)
    manifest = read_manifest(out)
    print_summary(manifest)
    console.print(f"{out}: imported and verified ({manifest['num_samples']} samples, "
                  f"{len(manifest['shards'])} shards)")


def cmd_import_wifi(args: argparse.Namespace) -> None:
    from wfm.data.loaders.wifi_csi import import_wifi_csi

    fmt = args.import_format
    if fmt == "intel":
        kw = {"nrx": args.nrx, "ntx": args.ntx, "scale": args.scale}
    elif fmt == "csi-array":
        fmt, kw = "array", {"interval": args.interval, "axes": args.axes, "key": args.key, "time_key": args.time_key,
                            "subcarriers": args.subcarriers, "bandwidth": args.bandwidth}
    else:
        kw = {"chip": args.chip, "bw": args.bw}
    _done(import_wifi_csi(args.paths, args.out, fmt, phase=args.phase, window=args.window,
                          hop=args.hop, name=args.name, shard_size=args.shard_size, conj_groups=args.conj_groups,
                          **kw))


def cmd_import_deepsense(args: argparse.Namespace) -> None:
    from wfm.data.loaders.deepsense import import_deepsense

    _done(import_deepsense(args.folder, args.out, args.scenarios, args.interval, not args.raw_gps,
                           args.name, args.shard_size))


def cmd_import_traffic(args: argparse.Namespace) -> None:
    from wfm.data.loaders.traffic_csv import import_telecom_italia

    _done(import_telecom_italia(args.path, args.out, args.interval, args.columns, _policy(args),
                                args.name, args.shard_size))


def cmd_import_series(args: argparse.Namespace) -> None:
    from wfm.data.loaders.generic import import_series

    _done(import_series(args.path, args.out, args.interval, args.series_kind, getattr(args, "columns", None),
                        getattr(args, "time_column", None), _policy(args), args.name, args.shard_size,
                        getattr(args, "id_column", None), getattr(args, "time_unit", None),
                        getattr(args, "resample", False)))


def cmd_import_hf(args: argparse.Namespace) -> None:
    from wfm.data.loaders.hf import import_hf

    _done(import_hf(args.path, args.out, args.kind, args.interval, args.name, args.shard_size))


def cmd_export(args: argparse.Namespace) -> None:
    from wfm.data.loaders.hf import export_hf

    out = export_hf(args.dir, args.out, args.format)
    console.print(f"{out}: exported {args.dir} as {args.format} (re-import: wfm data import hf {out} --out ...)")
