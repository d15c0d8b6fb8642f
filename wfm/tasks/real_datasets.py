"""The datasets of ``wfm benchmark real`` (see :mod:`wfm.tasks.real_data` for what each is):
the window settings (:class:`RealBenchConfig`), one dataset's windows (:class:`BenchData`), and
the readers of the raw files of ``../shared/datasets``' layout (Intel 5300 and Nexmon CSI, Milan
traffic, DeepSense 6G) and of generated CSI. Imported dataset folders: :mod:`wfm.tasks.real_imported`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from wfm.data.errors import DataError
from wfm.data.loaders import wifi_csi
from wfm.data.loaders.deepsense import load_scenario, scenarios_in
from wfm.data.loaders.phase import sanitize_phase
from wfm.data.loaders.timegrid import GapPolicy, interval_label
from wfm.data.loaders.traffic_csv import load_telecom_italia
from wfm.tasks.metrics import scorable_windows
from wfm.tasks.significance import window_runs

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_datasets_dir() -> Path:
    """``$WFM_REAL_DATA``, else ``../shared/datasets`` beside the repository."""
    env = os.environ.get("WFM_REAL_DATA")
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "datasets"


#: The CSI windows' hop in time that ``wfm benchmark real`` used before session 74 (targets apart,
#: from packet 0), and that the studies measured with: they ask for it to reproduce their figures.
STUDY_CSI_HOP = 8


@dataclass
class RealBenchConfig:
    """Window settings of every dataset (stated in the output)."""

    csi_window: int = 16
    csi_predict: int = 8
    csi_hop: int = 1  # every alignment of the time windows on the capture (STUDY_CSI_HOP before session 74)
    traffic_context: int | None = None  # steps; None: 16 h at the file's interval (96 at 10 min)
    traffic_horizon: int | None = None  # steps; None: 2 h at the file's interval (12 at 10 min)
    traffic_stride: int = 1
    traffic_interval: float | None = None  # seconds; None: read from each file
    traffic_max_gap: int = 12  # runs of up to this many missing steps filled (contexts only); 0: every gap splits
    beam_context: int = 16
    beam_horizon: int = 4
    beam_interval: float = 0.1
    period: int | None = None  # seasonal period in steps (None: from the interval)
    batch_series: int = 8192  # series per forecast call
    batch_csi: int = 64  # CSI windows per MAE call
    pool_channels: bool = True  # a window's channels pool a forecaster's evidence (``group``); False: each on its own
    csi_frequency: bool = False  # also the CSI views in frequency (upper half of the subcarriers from the lower half)
    nexmon_chip: str = "4339"  # csiread's chip of the .pcap captures (the bandwidth is read from the packets)
    # Imported wfm dataset folders of kind series / traffic (wfm.tasks.real_imported):
    series_context: int = 96
    series_horizon: int = 12
    series_stride: int | None = None  # None: the horizon
    max_windows: int = 4096  # per view (a CSI capture's, a traffic cell's, an imported dataset's), evenly spaced


@dataclass
class BenchData:
    """One benchmark dataset: ``context`` ``[N, L, *C]`` and ``target`` ``[N, H, *C]`` (real,
    or complex for CSI), ``interval`` seconds per step, and how the windows were made."""

    name: str
    view: str
    context: Tensor
    target: Tensor
    interval: float
    windows_note: str
    source: str
    csi: Tensor | None = None  # CSI views: the full windows [N, T, A, K] the MAE gets (complex; |H| for amplitude)
    #: ``[N, 2]``: each window's series (capture, cell segment, trajectory) and first step in it, so that
    #: a split by time can drop training windows that overlap held-out targets (``wfm.tasks.transfer``).
    span: Tensor | None = None
    #: ``[N]``: each window's DeepSense scenario (other datasets: None), for splits by site.
    scenario: Tensor | None = None
    #: ``time``: ``context`` and ``target`` run along time; ``frequency``: along subcarriers (``[N, K', T, A]``).
    axis: str = "time"
    #: A window's channels lie in this order along one axis (a codebook's beams in angular order):
    #: the drifting-profile reference and the causal model's ``check_drift`` apply.
    ordered: bool = False
    #: Every series is a range (a user's distance to its base station): the causal model's ``check_range``
    #: applies (``wfm.tasks.forecasting.RANGE_KINDS``).
    ranges: bool = False
    #: Where a window's target lies in ``span``'s steps, ``(offset, length)``; None: after the context,
    #: ``(L, H)``. A frequency view's target is every packet of the window: ``(0, T)``.
    target_steps: tuple[int, int] | None = None

    def scorable(self) -> "BenchData":
        """The windows with a target to score: one whose target is all zero (an idle cell's night)
        has no per-window NMSE (:func:`wfm.tasks.metrics.scorable_windows`), so it is left out, and
        the note says how many were."""
        keep = scorable_windows(self.target)
        if bool(keep.all()):
            return self
        return replace(self.subset(keep.nonzero().flatten()),
                       windows_note=f"{self.windows_note}; {int((~keep).sum())} windows with an all-zero target "
                                    "left out (no per-window NMSE)")

    def thin(self, limit: int) -> "BenchData":
        """At most ``limit`` windows, evenly spaced (all of them when there are no more)."""
        if self.windows <= limit:
            return self
        return self.subset(evenly_spaced(self.windows, limit))

    def subset(self, idx: Tensor) -> "BenchData":
        """The windows ``idx`` (a long index), everything else unchanged."""
        return replace(self, context=self.context[idx], target=self.target[idx],
                       csi=None if self.csi is None else self.csi[idx],
                       span=None if self.span is None else self.span[idx],
                       scenario=None if self.scenario is None else self.scenario[idx])

    def scenarios(self, keep: list[int]) -> "BenchData":
        """The windows of the DeepSense scenarios ``keep``, named after them (``DeepSense 6G s1-4``)."""
        if self.scenario is None:
            raise DataError(f"{self.name} {self.view}: only DeepSense data has scenarios")
        have = sorted(set(self.scenario.tolist()))
        missing = sorted(set(keep) - set(have))
        if missing:
            raise DataError(f"{self.name} {self.view}: no scenario {missing}; have {have}")
        ks = sorted(set(keep))
        label = f"s{ks[0]}-{ks[-1]}" if ks == list(range(ks[0], ks[-1] + 1)) and len(ks) > 1 else "s" + ",".join(map(str, ks))
        sub = self.subset(torch.isin(self.scenario, torch.tensor(ks)).nonzero().flatten())
        return replace(sub, name=f"{self.name} {label}")

    @property
    def is_csi(self) -> bool:
        return self.view.startswith("csi")

    @property
    def windows(self) -> int:
        return int(self.target.shape[0])

    def blocks(self) -> Tensor | None:
        """Block ids ``[N]`` of the bootstrap: windows whose targets share no step apart, a chain of
        overlapping windows in runs a window long (``window_runs``); None without ``span``."""
        if self.span is None:
            return None
        offset, length = self.target_steps or (int(self.context.shape[1]), int(self.target.shape[1]))
        return window_runs(self.span, offset, length)


def evenly_spaced(n: int, limit: int) -> Tensor:
    """Indices of at most ``limit`` of ``n`` items, evenly spaced (all ``n`` when there are no more):
    how ``BenchData.thin`` picks windows, and how a long capture's are chosen before they are cut."""
    if n <= limit:
        return torch.arange(n)
    return torch.linspace(0, n - 1, limit).round().long().unique()


def csi_views(name: str, csi: np.ndarray, subcarriers: np.ndarray, interval: float, cfg: RealBenchConfig,
              source: str = "") -> list[BenchData]:
    """The complex and amplitude views of one capture ``[P, A, K]`` (sanitised here), in time, and
    with ``cfg.csi_frequency`` also in frequency (the upper half of the subcarriers from the lower)."""
    P = len(csi)
    T, n = cfg.csi_window, cfg.csi_predict
    if not 0 < n < T:
        raise DataError(f"csi_predict must be in 1..{T - 1}, got {n}")
    if P < T:
        raise DataError(f"{source or name}: {P} packets, fewer than one window of {T}")
    clean = sanitize_phase(np.asarray(csi, dtype=np.complex64), "linear", np.asarray(subcarriers))
    starts = range(0, P - T + 1, cfg.csi_hop)
    starts = [starts[i] for i in evenly_spaced(len(starts), cfg.max_windows).tolist()]  # (each window a copy)
    win = torch.from_numpy(np.stack([clean[s:s + T] for s in starts]).astype(np.complex64))  # [N, T, A, K]
    A, K = win.shape[2:]
    note = (f"{len(win)} windows of {T} packets (hop {cfg.csi_hop}, median interval {_fmt_interval(interval)}), "
            f"{A} antenna{'s' if A > 1 else ''} x {K} subcarriers, predict the last {n} from the first {T - n}; "
            "linear-phase sanitised")
    ctx, tgt = win[:, :T - n], win[:, T - n:]
    span = torch.tensor([[0, s] for s in starts], dtype=torch.long)
    views = [BenchData(name, "csi complex", ctx, tgt, interval, note, source, win, span),
             BenchData(name, "csi amplitude", ctx.abs(), tgt.abs(), interval, note, source,
                       win.abs().to(torch.complex64), span)]
    if cfg.csi_frequency and K >= 2:
        # Every packet of a window is a target here, so windows that share packets are not
        # independent evidence: the frequency views take windows that do not overlap (hop T).
        starts = range(0, P - T + 1, T)
        starts = [starts[i] for i in evenly_spaced(len(starts), cfg.max_windows).tolist()]
        win = torch.from_numpy(np.stack([clean[s:s + T] for s in starts]).astype(np.complex64))
        span = torch.tensor([[0, s] for s in starts], dtype=torch.long)
        low = K - K // 2
        note = (f"{len(win)} windows of {T} packets (hop {T}, median interval {_fmt_interval(interval)}), "
                f"{A} antenna{'s' if A > 1 else ''} x {K} subcarriers, predict the upper {K - low} subcarriers "
                f"from the lower {low} at every packet; linear-phase sanitised")
        along = win.permute(0, 3, 1, 2)  # [N, K, T, A]: series along subcarriers
        for view, x, full in (("csi complex, frequency", along, win),
                              ("csi amplitude, frequency", along.abs(), win.abs().to(torch.complex64))):
            views.append(BenchData(name, view, x[:, :low], x[:, low:], interval, note, source, full, span,
                                   axis="frequency", target_steps=(0, T)))
    return views


def _capture_interval(t: np.ndarray) -> float:
    d = np.diff(np.asarray(t, dtype=np.float64))
    d = d[d > 0]
    return float(np.median(d)) if len(d) else 1.0


def skip_or_raise(path: Path, error: DataError, skipped: list[dict[str, str]] | None) -> None:
    """A file the benchmark cannot read: raise ``error``, or with a ``skipped`` list note it there
    (``{"source", "error"}``) so that the other files are still scored."""
    if skipped is None:
        raise error
    skipped.append({"source": str(path), "error": str(error)})


def load_wifi(folder: Path, cfg: RealBenchConfig, skipped: list[dict[str, str]] | None = None) -> list[BenchData]:
    """Intel 5300 ``.dat`` and Nexmon ``.pcap`` captures of ``folder`` (module doc); a capture
    that does not read is an error, or noted in ``skipped`` (:func:`skip_or_raise`)."""
    out: list[BenchData] = []
    for pattern, fmt, label, kw in (("*.dat", "intel", "Intel 5300", {"nrx": 3, "ntx": 3}),
                                    ("*.pcap", "nexmon", f"Nexmon BCM{cfg.nexmon_chip.upper()}",
                                     {"chip": cfg.nexmon_chip, "bw": None})):
        paths = sorted(folder.glob(pattern))
        for path in paths:
            try:
                cap = wifi_csi.read_capture(path, fmt, **kw)
            except DataError as e:
                skip_or_raise(path, e, skipped)
                continue
            name = label if len(paths) == 1 else f"{label} {path.stem}"
            out += csi_views(name, cap["csi"], cap["subcarriers"], _capture_interval(cap["timestamp"]), cfg, str(path))
    return out


def _series_windows(series: list[np.ndarray], context: int, horizon: int, stride: int,
                    filled: list[np.ndarray] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(context [N, L, *C], target [N, H, *C], span [N, 2])`` windows of every series long enough
    (``span``: the series' index and the window's first step). ``filled`` (``[len]`` bool per series):
    steps filled in, never a target (a window whose target holds one is left out)."""
    ctx, tgt, span = [], [], []
    for i, s in enumerate(series):
        for a in range(0, len(s) - context - horizon + 1, stride):
            if filled is not None and filled[i][a + context:a + context + horizon].any():
                continue
            ctx.append(s[a:a + context])
            tgt.append(s[a + context:a + context + horizon])
            span.append((i, a))
    if not ctx:
        return torch.empty(0), torch.empty(0), torch.empty(0, 2, dtype=torch.long)
    return (torch.from_numpy(np.stack(ctx).astype(np.float32)), torch.from_numpy(np.stack(tgt).astype(np.float32)),
            torch.tensor(span, dtype=torch.long))


def traffic_steps(cfg: RealBenchConfig, interval: float) -> tuple[int, int]:
    """``(context, horizon)`` steps of a traffic file at ``interval`` seconds: the configured
    steps, else 16 h -> 2 h at that interval (96 -> 12 at the challenge's 10 minutes, 480 -> 60 at
    2 minutes, 16 -> 2 hourly)."""
    return (cfg.traffic_context or max(2, round(16 * 3600 / interval)),
            cfg.traffic_horizon or max(1, round(2 * 3600 / interval)))


def load_traffic(folder: Path, cfg: RealBenchConfig, skipped: list[dict[str, str]] | None = None) -> list[BenchData]:
    """One dataset per cell of every Telecom-Italia-layout CSV in ``folder``, at the interval read
    from each file (unless ``traffic_interval`` is set); at most ``max_windows`` windows a cell,
    evenly spaced. A cell's runs of up to ``traffic_max_gap`` missing steps (absent rows, empty
    values) are filled by linear interpolation, as ``wfm forecast`` fills them, and may lie in a
    window's context but never in its target (such windows are not scored); a longer run splits the
    cell, and no window spans it. A file that does not read is an error, or noted in ``skipped``."""
    out: list[BenchData] = []
    S = cfg.traffic_stride
    policy = GapPolicy("linear", cfg.traffic_max_gap, split=True) if cfg.traffic_max_gap else GapPolicy(split=True)
    for path in sorted(folder.glob("*.csv")):
        try:
            d = load_telecom_italia(path, interval=cfg.traffic_interval, policy=policy)
        except DataError as e:
            if "missing column 'square_id'" in str(e) or "missing column 'time_interval'" in str(e):
                e = DataError(f"{e}: not the Telecom Italia layout; import other series first, e.g. `wfm data import "
                              f"csv {path} --time-column COLUMN [--id-column CELL] --series-kind traffic --out "
                              f"{path.parent.parent / path.stem}` (scored from --datasets as an imported dataset)")
            skip_or_raise(path, e, skipped)
            continue
        interval = d["interval_s"]
        L, H = traffic_steps(cfg, interval)
        cells: dict[int, list[np.ndarray]] = {}
        fills: dict[int, list[np.ndarray]] = {}
        for cell, seg, filled in zip(d["cell_id"], d["traffic"], d["filled"]):
            cells.setdefault(int(cell), []).append(seg.sum(axis=1))  # all activity columns together
            fills.setdefault(int(cell), []).append(filled)
        gaps = f"missing runs over {cfg.traffic_max_gap} steps" if cfg.traffic_max_gap else "missing steps"
        for cell, segs in cells.items():
            ctx, tgt, span = _series_windows(segs, L, H, S, fills[cell])
            if not len(ctx):
                if skipped is not None:
                    skipped.append({"source": str(path), "error": f"{path}: cell {cell}: no run of {L + H} steps "
                                    f"(context {L} + horizon {H}) between {gaps}; the longest has "
                                    f"{max(len(x) for x in segs)}"})
                continue
            steps, filled = sum(len(s) for s in segs), int(sum(f.sum() for f in fills[cell]))
            kept = min(len(ctx), cfg.max_windows)
            note = (f"{kept} windows (stride {S}" + (f", {kept} of {len(ctx)} evenly spaced" if kept < len(ctx) else "")
                    + f") of {L} steps -> next {H} ({L * interval / 3600:g} h -> {H * interval / 3600:g} h) "
                    f"from {steps} steps of {interval / 60:g} min"
                    + (f" in {len(segs)} runs between {gaps}" if len(segs) > 1 else "")
                    + (f", {filled} missing steps filled (in contexts only)" if filled else ""))
            data = BenchData(f"Milan cell {cell}" if "milan" in path.name.lower() else f"{path.stem} cell {cell}",
                             "traffic", ctx, tgt, interval, note, str(path), span=span)
            out.append(data.scorable().thin(cfg.max_windows))
    return out


def load_beams(folder: Path, cfg: RealBenchConfig) -> list[BenchData]:
    """Beam power (64 beams), bearing and distance windows over every DeepSense scenario in ``folder``
    (bearing and distance from the base station's GPS to the vehicle's: the user's path)."""
    scen = scenarios_in(folder)
    if not scen:
        return []
    power, bearing, distance, of = [], [], [], []
    for s in scen:
        d = load_scenario(folder, s)
        power += d["beam_power"]
        bearing += d["bearing"]
        distance += d["distance"]
        of += [s] * len(d["beam_power"])
    L, H = cfg.beam_context, cfg.beam_horizon
    out = []
    used = sum(len(p) >= L + H for p in power)
    units = {"beam power": "; a window is all 64 beams", "bearing": "; deg, BS GPS -> vehicle GPS",
             "distance": "; m, BS GPS -> vehicle GPS"}
    for view, series in (("beam power", power), ("bearing", bearing), ("distance", distance)):
        ctx, tgt, span = _series_windows(series, L, H, H)
        if not len(ctx):
            continue
        note = (f"{len(ctx)} windows (stride {H}) of {L} steps -> next {H} at {cfg.beam_interval:g} s, "
                f"{used} of {len(series)} trajectories of scenarios {','.join(map(str, scen))} long enough"
                + units[view])
        out.append(BenchData("DeepSense 6G", view, ctx, tgt, cfg.beam_interval, note, str(folder), span=span,
                             scenario=torch.tensor(of, dtype=torch.long)[span[:, 0]], ordered=view == "beam power",
                             ranges=view == "distance"))
    return out


def generated_csi_view(root: str | Path, split: str = "test", limit: int = 256) -> BenchData:
    """A generated CSI dataset (``wfm data generate``) as a ``csi complex`` view: the first
    ``limit`` samples of ``split``, the first half of each sample's time steps as context and the
    next as target (an odd step is dropped), each sample a series of its own (``span``)."""
    from wfm.data.series import dataset_interval
    from wfm.data.shards import ShardedDataset
    from wfm.tasks.csi_data import load_csi

    csi = load_csi(root, split, task="generated-view")["csi"][:limit]
    half = csi.shape[1] // 2
    if half < 1:
        raise DataError(f"{root}: samples of {csi.shape[1]} time step(s) have no half to predict")
    span = torch.stack([torch.arange(len(csi)), torch.zeros(len(csi), dtype=torch.long)], dim=1)
    return BenchData(Path(root).name, "csi complex", csi[:, :half], csi[:, half:2 * half],
                     dataset_interval(ShardedDataset(root)),
                     f"{len(csi)} {split} samples, {half} -> {half} steps", str(root), csi=csi[:, :2 * half], span=span)


def generated_frequency_view(view: BenchData) -> BenchData:
    """A generated time view's windows predicted along subcarriers instead: the upper half of the
    subcarriers (rounded down) from the lower, at every packet (``[N, K', T, A]``, as the real
    captures' frequency views)."""
    csi = view.csi
    k = csi.shape[3]
    hidden = k // 2
    along = csi.permute(0, 3, 1, 2)
    return replace(view, context=along[:, :k - hidden], target=along[:, k - hidden:], axis="frequency",
                   view="csi complex, frequency", target_steps=(0, csi.shape[1]))


_fmt_interval = interval_label  # the name real_data and the notes use
