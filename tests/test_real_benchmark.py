"""``wfm benchmark real``: the real-data zero-shot table, on synthetic stand-in folders (the
layout of ``../shared/datasets``) and, when present, on the shared real data."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_script
from wfm.cli import main
from wfm.data.errors import DataError
from wfm.tasks import real_data as R

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def _milan(path: Path, cells=(11, 12), steps: int = 144, step_s: int = 600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = 1383260400000
    rng = np.random.default_rng(0)
    lines = ["square_id,time_interval,internet_total"]
    for c in cells:
        for i in range(steps):
            v = 100 + 50 * np.sin(2 * np.pi * i * step_s / 86_400) + rng.normal(0, 2)
            lines.append(f"{c},{t0 + i * step_s * 1000},{v:.4f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _deepsense(folder: Path, scenario: int = 1, n_traj: int = 3, length: int = 30) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n = n_traj * length
    rng = np.random.default_rng(1)
    seq = np.repeat(np.arange(1, n_traj + 1), length)
    bs = np.tile([33.42, -111.93], (n, 1))
    ue = np.stack([np.full(n, 33.42 + 20 / 111_195), -111.93 + np.tile(np.linspace(-1, 1, length), n_traj) * 1e-4], 1)
    np.save(folder / f"scenario{scenario}_unit1_pwr_60ghz_1-{n}.npy", rng.uniform(0, 1, (n, 64)))
    np.save(folder / f"scenario{scenario}_unit1_loc_1-{n}.npy", bs)
    np.save(folder / f"scenario{scenario}_unit2_loc_1-{n}.npy", ue)
    np.save(folder / f"scenario{scenario}_seq_index_1-{n}.npy", seq)
    return folder


def _fake_capture(P: int = 40, A: int = 4, K: int = 32) -> dict:
    """A slowly varying multipath channel with a random linear phase per packet (as a NIC adds)."""
    rng = np.random.default_rng(2)
    k = np.arange(-K // 2, K // 2)
    taps = rng.normal(size=(A, 3)) + 1j * rng.normal(size=(A, 3))
    t = np.arange(P)[:, None, None, None] * 0.01
    h = (taps[None, :, None, :] * np.exp(-2j * np.pi * (k[None, None, :, None] * np.array([0, 0.05, 0.11]) + t))).sum(-1)
    h *= np.exp(1j * (rng.uniform(0, 6, (P, 1, 1)) + rng.uniform(-0.2, 0.2, (P, 1, 1)) * k))
    return {"csi": h.astype(np.complex64), "timestamp": np.arange(P) * 1e-3, "subcarriers": k}


@pytest.fixture
def standin(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "datasets"
    _milan(root / "traffic" / "milan_stand_in.csv")
    _deepsense(root / "deepsense6g-beam")
    (root / "wifi-csi").mkdir(parents=True)
    (root / "wifi-csi" / "fake.dat").write_bytes(b"")
    import wfm.data.loaders.wifi_csi as W

    monkeypatch.setattr(W, "read_capture", lambda path, fmt, **kw: _fake_capture())
    return root


def test_traffic_files_at_any_interval_get_windows_of_16_h_to_2_h(tmp_path):
    """A traffic CSV in the challenge's layout at another step (an operator's 2-minute LTE export,
    hourly counters) is read at its own interval: windows of 16 h -> 2 h of it by default, the
    configured steps otherwise, at most ``max_windows`` a cell, evenly spaced."""
    root = tmp_path / "traffic"
    _milan(root / "lte_2min.csv", cells=(5,), steps=600, step_s=120)
    _milan(root / "hourly.csv", cells=(6,), steps=48, step_s=3600)
    hourly, lte = R.load_traffic(root, R.RealBenchConfig())  # sorted by file name
    assert (hourly.name, lte.name) == ("hourly cell 6", "lte_2min cell 5")
    assert lte.interval == 120.0 and lte.context.shape == (600 - 480 - 60 + 1, 480) and lte.target.shape[1] == 60
    assert hourly.interval == 3600.0 and hourly.context.shape == (48 - 16 - 2 + 1, 16) and "16 h -> 2 h" in hourly.windows_note
    few, = R.load_traffic(root, R.RealBenchConfig(traffic_context=100, traffic_horizon=10, max_windows=7))  # hourly: too short
    assert few.context.shape == (7, 100) and "7 of 491 evenly spaced" in few.windows_note
    assert few.span[:, 1].tolist() == torch.linspace(0, 490, 7).round().long().tolist()
    (root / "hourly.csv").unlink()
    with pytest.raises(DataError, match=r"lte_2min.csv: line 3: irregular interval.*off the 600 s grid"):
        R.load_traffic(root, R.RealBenchConfig(traffic_interval=600.0))  # a declared interval is checked


def test_windows_whose_target_is_all_zero_are_left_out_and_said(tmp_path):
    """A cell idle for a whole horizon (all-zero target) has no per-window NMSE: those windows are
    left out before thinning, and the note says how many."""
    path = _milan(tmp_path / "traffic" / "idle.csv", cells=(7,), steps=200)
    lines = path.read_text().splitlines()
    body = [f"{c},{t},{0.0 if 130 <= i < 150 else float(v)}"
            for i, (c, t, v) in enumerate(x.split(",") for x in lines[1:])]
    path.write_text("\n".join([lines[0], *body]) + "\n")
    cfg = R.RealBenchConfig(traffic_context=96, traffic_horizon=12)
    d, = R.load_traffic(tmp_path / "traffic", cfg)
    zero = [a for a in range(200 - 96 - 12 + 1) if 130 <= a + 96 and a + 96 + 12 <= 150]  # targets inside the idle run
    assert len(zero) == 9 and d.windows == 200 - 96 - 12 + 1 - 9
    assert "9 windows with an all-zero target" in d.windows_note
    assert bool((d.target.abs().sum(1) > 0).all()) and not set(zero) & set(d.span[:, 1].tolist())
    few, = R.load_traffic(tmp_path / "traffic", replace(cfg, max_windows=5))
    assert few.windows == 5 and bool((few.target.abs().sum(1) > 0).all())


def test_an_unreadable_file_is_named_and_the_others_are_scored(standin, tmp_path):
    """A corrupt CSV, or a cell whose missing steps leave no run long enough for a window, is named
    in the report (``skipped``, "Not scored") while every other dataset is scored; with
    ``traffic_max_gap: 0`` missing steps split a cell (no window spans them, none is filled); by
    default a short run is filled, in contexts only. Without a ``skipped`` list the loader raises
    the file's own error."""
    (standin / "traffic" / "broken.csv").write_text("square_id,time_interval,internet_total\n"
                                                     "1,1383260400000,3\n1,1383261000000,abc\n")
    full = [float(x.split(",")[2]) for x in (standin / "traffic" / "milan_stand_in.csv").read_text().splitlines()[1:]
            if x.startswith("11,")]
    lines = (standin / "traffic" / "milan_stand_in.csv").read_text().splitlines()
    del lines[60:63]  # three steps of cell 11 missing: runs of 59 and 82 steps, too short for 96 + 12
    (standin / "traffic" / "milan_stand_in.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"broken.csv: line 3: column 'internet_total' value 'abc' is not a number"):
        R.load_real_datasets(standin)
    filled = next(d for d in R.load_traffic(standin / "traffic", R.RealBenchConfig(), []) if d.name == "Milan cell 11")
    assert "3 missing steps filled (in contexts only)" in filled.windows_note
    starts = filled.span[:, 1].tolist()
    assert starts == [a for a in range(0, 144 - 108 + 1) if not 59 <= a + 96 <= 61 and not a + 96 <= 59 <= a + 107]
    a = starts[-1]  # the last window: its context holds the filled steps 59-61, on the line between 58 and 62
    ctx = filled.context[-1].double()
    assert torch.allclose(ctx[59 - a:62 - a], torch.tensor(np.interp([59, 60, 61], [58, 62], [full[58], full[62]])),
                          rtol=1e-5)
    assert torch.allclose(filled.target[-1].double(), torch.tensor(full[a + 96:a + 108], dtype=torch.float64), rtol=1e-5)
    skipped: list = []
    names = [d.name for d in R.load_real_datasets(standin, R.RealBenchConfig(traffic_max_gap=0), skipped)]
    assert "Milan cell 12" in names and "Milan cell 11" not in names and "DeepSense 6G" in names
    assert [x["error"].split(": ", 1)[1] for x in skipped] == [
        "line 3: column 'internet_total' value 'abc' is not a number",
        "cell 11: no run of 108 steps (context 96 + horizon 12) between missing steps; the longest has 82"]
    (standin / "traffic" / "lte.csv").write_text("time,cell_a\n2024-01-01T00:00:00,3\n")
    other: list = []
    R.load_traffic(standin / "traffic", R.RealBenchConfig(), other)
    lte, = [x["error"] for x in other if x["source"].endswith("lte.csv")]
    assert "missing column 'square_id'" in lte and "wfm data import csv" in lte  # how to score it instead
    (standin / "traffic" / "lte.csv").unlink()
    short, = R.load_traffic(standin / "traffic", R.RealBenchConfig(traffic_context=40, traffic_horizon=10,
                                                                    traffic_max_gap=0), [])[:1]
    assert short.name == "Milan cell 11" and "in 2 runs between missing steps" in short.windows_note
    assert short.context.shape[0] == (59 - 50 + 1) + (82 - 50 + 1)  # no window across the gap
    main(["benchmark", "real", "--datasets", str(standin), "--out", str(tmp_path / "out"), "--time-only",
          "--traffic-max-gap", "0"])
    r = json.loads((tmp_path / "out" / "real_benchmark.json").read_text())
    assert [x["source"] for x in r["skipped"]] == [str(standin / "traffic" / n) for n in ("broken.csv", "milan_stand_in.csv")]
    assert "## Not scored" in (tmp_path / "out" / "real_benchmark.md").read_text()
    assert {x["dataset"] for x in r["rows"]} >= {"Intel 5300", "Milan cell 12", "DeepSense 6G"}


def test_windows_and_views_of_every_stand_in_dataset(standin):
    data = R.load_real_datasets(standin, R.RealBenchConfig())
    names = [(d.name, d.view) for d in data]
    assert names == [("Intel 5300", "csi complex"), ("Intel 5300", "csi amplitude"), ("Milan cell 11", "traffic"),
                     ("Milan cell 12", "traffic"), ("DeepSense 6G", "beam power"), ("DeepSense 6G", "bearing"),
                     ("DeepSense 6G", "distance")]
    csi = data[0]
    # 40 packets: a window of 16 at every alignment (hop 1); --csi-hop 8 gives the 4 whose targets are apart
    assert csi.context.shape == (25, 8, 4, 32) and csi.target.shape == (25, 8, 4, 32) and csi.context.is_complex()
    apart, = [d for d in R.load_wifi(standin / "wifi-csi", R.RealBenchConfig(csi_hop=8)) if d.view == "csi complex"]
    assert torch.equal(apart.context, csi.context[::8]) and len(apart.blocks().unique()) == 4
    assert len(csi.blocks().unique()) == 2  # runs of 16 starts (25 windows)
    # A long capture's windows are capped as they are cut (each is a copy of its packets), evenly spaced
    few, = [d for d in R.load_wifi(standin / "wifi-csi", R.RealBenchConfig(max_windows=5)) if d.view == "csi complex"]
    assert few.span[:, 1].tolist() == [0, 6, 12, 18, 24] and torch.equal(few.context, csi.context[::6])
    assert torch.allclose(data[1].target, csi.target.abs())
    assert data[2].context.shape == (37, 96) and data[2].interval == 600.0  # 144 steps, stride 1
    assert data[4].context.shape == (3 * 3, 16, 64) and data[5].target.shape == (9, 4)  # (30 - 20) // 4 + 1 per traj
    # the distance view: the same windows of the loader's distance (BS GPS -> vehicle GPS, m)
    from wfm.data.loaders.deepsense import load_scenario
    dist = load_scenario(standin / "deepsense6g-beam", 1)["distance"][0]
    assert data[6].context.shape == (9, 16) and torch.equal(data[6].context[0], torch.from_numpy(dist[:16]))
    assert torch.equal(data[6].target[0], torch.from_numpy(dist[16:20])) and "m, BS GPS" in data[6].windows_note
    assert [d.ranges for d in data] == [False] * 6 + [True]  # only the distance is a range (check_range)


def test_imported_dataset_folders_are_scored_like_the_shared_captures(tmp_path, scratch_models):
    """A user's own data, imported with ``wfm data import`` into the datasets folder: CSI imported
    in windows (joined back into its packets; windows that leave a gap split the capture) and a
    series dataset are windowed as the shared captures are, and scored by every model."""
    from wfm.data.loaders.generic import import_series
    from wfm.data.loaders.wifi_csi import import_wifi_csi

    root = tmp_path / "mine"
    root.mkdir()
    cap = _fake_capture(P=56, A=2, K=30)["csi"]
    np.save(tmp_path / "cap.npy", cap)
    import_wifi_csi([tmp_path / "cap.npy"], root / "a", "array", window=8, interval=1e-3)  # packets 0-55
    import_wifi_csi([tmp_path / "cap.npy"], root / "b", "array", window=16, hop=20, interval=1e-3,
                    name="gappy")  # packets 0-15, 20-35, 40-55
    t = np.arange(400, dtype=np.float32)
    np.save(tmp_path / "s.npy", np.stack([10 + np.sin(2 * np.pi * t / 48), 5 + np.cos(2 * np.pi * t / 30)]))
    import_series(tmp_path / "s.npy", root / "c", interval=0.5, series_kind="rssi")
    (root / "notes").mkdir()  # not a dataset: ignored
    cfg = R.RealBenchConfig(series_context=32, series_horizon=8, csi_frequency=True)
    data = R.load_real_datasets(root, cfg)
    views = ["csi complex", "csi amplitude", "csi complex, frequency", "csi amplitude, frequency"]
    assert [(d.name, d.view) for d in data] == [*(("cap (imported)", v) for v in views),
                                                *(("gappy (imported)", v) for v in views),
                                                ("s (imported)", "series (rssi)")]
    whole, gappy = data[0], data[4]
    assert whole.windows == 56 - 16 + 1 and whole.interval == pytest.approx(1e-3)  # every alignment
    np.testing.assert_allclose(whole.csi[8].abs().numpy(), np.abs(cap[8:24]), rtol=1e-5)  # sanitised: same |H|
    assert gappy.windows == 3 and gappy.span.tolist() == [[0, 0], [1, 0], [2, 0]]  # one window per segment
    np.testing.assert_allclose(gappy.csi[2].abs().numpy(), np.abs(cap[40:56]), rtol=1e-5)
    series = data[8]
    assert series.context.shape == (2 * ((400 - 40) // 8 + 1), 32) and series.interval == 0.5
    np.testing.assert_allclose(series.context[1].numpy(), 10 + np.sin(2 * np.pi * t[8:40] / 48), rtol=1e-6)
    assert not series.ranges  # an rssi is no range; a distance is (the causal model's check_range)
    import_series(tmp_path / "s.npy", tmp_path / "dist", interval=0.5, series_kind="distance")
    assert all(d.ranges for d in R.load_real_datasets(tmp_path / "dist", cfg))
    # a dataset too short for one window is named under "Not scored", never dropped in silence
    np.save(tmp_path / "short.npy", np.ones((2, 30), dtype=np.float32))
    import_series(tmp_path / "short.npy", root / "d", interval=0.5)
    skipped = []
    assert [(d.name, d.view) for d in R.load_real_datasets(root, cfg, skipped)][-1] == ("s (imported)", "series (rssi)")
    assert skipped == [{"source": str(root / "d"),
                        "error": f"{root / 'd'}: no series of 40 values for one window (the longest: 30); "
                                 "--series-context / --series-horizon set the window"}]
    shutil.rmtree(root / "d")
    thin = R.load_real_datasets(root, R.RealBenchConfig(series_context=32, series_horizon=8, max_windows=10))
    assert all(d.windows <= 10 for d in thin) and thin[-1].span[-1].tolist() == [1, 360]  # evenly spaced, the last kept

    result = R.run_real_benchmark(root, [(f, "causal" if "causal" in f else "mae") for f in scratch_models], cfg)
    scored = {(r["dataset"], r["view"], r["model"]) for r in result["rows"] if r["kind"].startswith("FM")
              and "ratio_to_best" in r}
    causal, mae = (Path(f).name for f in scratch_models)
    assert {("cap (imported)", "csi complex", mae), ("gappy (imported)", "csi amplitude, frequency", mae),
            ("cap (imported)", "csi amplitude", causal), ("s (imported)", "series (rssi)", causal)} <= scored


def test_forecast_windows_round_trips_channels():
    """Every channel is its own series: persistence of [N, L, A, K] complex is the last step per channel."""
    ctx = torch.randn(3, 5, 2, 4, dtype=torch.complex64)
    d = R.BenchData("x", "csi complex", ctx, torch.zeros(3, 2, 2, 4, dtype=torch.complex64), 1e-3, "", "")
    from wfm.models.baselines import ContextMean, Persistence

    assert torch.equal(R.forecast_windows(Persistence(), d), ctx[:, -1:].expand(-1, 2, -1, -1))
    assert torch.allclose(R.forecast_windows(ContextMean(), d), ctx.mean(1, keepdim=True).expand(-1, 2, -1, -1))


def test_a_windows_channels_pool_the_causal_models_evidence():
    """The 16 series of a window (2 x 4 channels, real and imaginary) are one group: the same as
    ``forecast(..., group=window)`` by hand; ``pool=False`` (``--independent-channels``) is the
    model on every series alone."""
    from wfm.models.registry import create_model
    from wfm.tasks.real_data import _to_series

    torch.manual_seed(0)
    m = create_model("causal_tiny", prior="mix", estimators=("last", "mean"), backtest_origins="value",
                     backtest_weight=4.0).eval()
    ctx = torch.randn(3, 8, 2, 4, dtype=torch.complex64)
    d = R.BenchData("x", "csi complex", ctx, torch.zeros(3, 4, 2, 4, dtype=torch.complex64), 1e-3, "", "")
    s = _to_series(ctx)
    by_hand = m.forecast(s, 1e-3, 4, group=torch.arange(len(s)) // 16)
    assert torch.allclose(_to_series(R.forecast_windows(m, d)), by_hand, atol=1e-6)
    assert torch.allclose(_to_series(R.forecast_windows(m, d, pool=False)), m.forecast(s, 1e-3, 4), atol=1e-6)
    assert not torch.allclose(by_hand, m.forecast(s, 1e-3, 4), atol=1e-3)


@pytest.fixture
def scratch_models(tmp_path, monkeypatch) -> list[str]:
    """Two exported-model folders whose ``from_pretrained`` gives seeded random-weight models of
    the registry (so the test follows the current architectures, not a frozen export)."""
    import wfm
    from wfm.models.registry import create_model

    folders = []
    for name, kind in (("causal-tiny-export", "causal"), ("mae-tiny-export", "mae")):
        (tmp_path / "ckpts" / name).mkdir(parents=True)
        (tmp_path / "ckpts" / name / "config.json").write_text(json.dumps({"model_kind": kind}))
        folders.append(str(tmp_path / "ckpts" / name))

    def fake(path, **kw):
        torch.manual_seed(0)
        return create_model("causal_tiny" if "causal" in Path(path).name else "mae_tiny")

    monkeypatch.setattr(wfm, "from_pretrained", fake)
    return folders


def test_benchmark_on_stand_in_folders(standin, scratch_models, tmp_path):
    out = tmp_path / "out"
    main(["benchmark", "real", "--datasets", str(standin), "--out", str(out),
          "--model", scratch_models[0], "--model", scratch_models[1]])
    r = json.loads((out / "real_benchmark.json").read_text())
    rows = r["rows"]
    by = {(x["dataset"], x["view"], x["model"]): x for x in rows}
    # Every dataset has the classical rows and the causal model but the CSI views in frequency
    # (along subcarriers: no time series); the MAE only the CSI views, in time and in frequency.
    views = [d["view"] for d in r["datasets"]]
    assert "csi complex, frequency" in views and "csi amplitude, frequency" in views
    for d in r["datasets"]:
        assert "window_nmse" in by[(d["dataset"], d["view"], "persistence")]
        assert "window_nmse" in by[(d["dataset"], d["view"], "mean")]
        assert by[(d["dataset"], d["view"], "seasonal")]["period"] == "n/a"  # 96 steps of 10 min < 1 day
        causal = (d["dataset"], d["view"], "causal-tiny-export")
        assert (causal in by) == (not d["view"].endswith("frequency"))
        assert causal not in by or "window_nmse" in by[causal]
        assert ((d["dataset"], d["view"], "mae-tiny-export") in by) == d["view"].startswith("csi")
    # The ratio is to the best classical row of the same dataset (linear extrapolation is a reference only).
    assert {x.get("best_classical") for x in rows} <= {"persistence", "mean", None}
    assert all(by[(d["dataset"], d["view"], "linear")]["kind"] == "reference" for d in r["datasets"])
    # Linear prediction likewise, one recursion per window over its channels: by hand on one view.
    from wfm.models.linear_prediction import ar_forecast
    from wfm.tasks.metrics import window_nmse
    from wfm.tasks.real_data import RealBenchConfig, load_real_datasets

    d = next(x for x in load_real_datasets(standin, RealBenchConfig()) if x.view == "beam power")
    ctx = d.context.to(torch.float64).transpose(1, 2)  # [N, 64 beams, L]: one group per window
    pred = ar_forecast(ctx, d.target.shape[1]).transpose(1, 2).float()
    ar = by[(d.name, d.view, "ar")]
    assert ar["kind"] == "reference" and ar["window_nmse"] == pytest.approx(float(window_nmse(pred, d.target).mean()), rel=1e-4)
    lines = R.verdicts(r)
    for m in ("causal-tiny-export", "mae-tiny-export"):
        behind = [x for x in rows if x["model"] == m and "ratio_to_best" in x
                  and by[(x["dataset"], x["view"], "ar")]["ratio_to_best"] < x["ratio_to_best"]]
        said = [ln for ln in lines if ln.startswith(f"{m}: the reference ar is ahead of it on")]
        assert len(said) == (1 if behind else 0) and (not behind or f"ahead of it on {len(behind)}:" in said[0])
    for x in rows:
        if "ratio_to_best" in x:
            best = by[(x["dataset"], x["view"], x["best_classical"])]
            assert x["ratio_to_best"] == pytest.approx(x["window_nmse"] / best["window_nmse"])
            assert x["window_nmse_db"] == pytest.approx(10 * np.log10(x["window_nmse"]))
    # Each model ratio comes with a 95 % interval over blocks of windows: windows whose targets share
    # no step apart, a chain of overlapping ones in runs a window long (CSI at every alignment, 25
    # windows of 16 packets: 2 runs, too few for an interval); a Milan cell's 37 stride-1 windows lie
    # within one window's length, one block, which gives no interval (and the verdict says so).
    for x in rows:
        assert "_windows" not in x
        if x["kind"].startswith("FM") and "ratio_to_best" in x:
            if x["view"] == "traffic":
                assert x["ratio_blocks"] == 1 and "ratio_low" not in x
            elif x["view"] in ("csi complex", "csi amplitude"):
                assert x["windows"] == 25 and x["ratio_blocks"] == 2 and "ratio_low" not in x
            else:  # beams (9 windows, stride = horizon) and CSI in frequency (windows apart)
                assert x["ratio_blocks"] == x["windows"]
                assert ("ratio_low" in x) == (x["windows"] >= 5)
                if x["windows"] >= 5:
                    assert 0 < x["ratio_low"] <= x["ratio_high"]
        else:
            assert "ratio_low" not in x and "ratio_blocks" not in x
    # A row behind the best classical says how many of its windows make the gap (the rest alone
    # would be at or below it); a row at or below it has no such count.
    for x in rows:
        if x["kind"].startswith("FM") and "ratio_to_best" in x:
            assert ("gap_windows" in x) == (x["ratio_to_best"] > 1)
            assert 1 <= x.get("gap_windows", 1) <= x["windows"]
    summary = {(s["dataset"], s["view"]): s for s in r["summary"]}
    assert summary[("Milan cell 11", "traffic")]["causal-tiny-export ratio 95 %"] == "1 block"
    # Hand computation: persistence on the first Milan cell.
    d = R.load_traffic(standin / "traffic", R.RealBenchConfig())[0]
    pred = d.context[:, -1:].expand(-1, d.target.shape[1])
    hand = float((((pred - d.target) ** 2).sum(1) / (d.target ** 2).sum(1)).mean())
    assert by[("Milan cell 11", "traffic", "persistence")]["window_nmse"] == pytest.approx(hand, rel=1e-6)
    md = (out / "real_benchmark.md").read_text()
    assert "## Summary" in md and "Milan cell 12" in md and "causal-tiny-export ratio" in md
    assert (out / "real_benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the ratios at a glance
    assert not list(out.glob(".*tmp*"))
    assert "Verdict" in md
    # --independent-channels: each channel on its own; the classical rows are the same, and the
    # causal model's CSI rows say how their channels were treated
    main(["benchmark", "real", "--datasets", str(standin), "--out", str(tmp_path / "ind"), "--independent-channels",
          "--model", scratch_models[0]])
    ind = {(x["dataset"], x["view"], x["model"]): x for x in json.loads((tmp_path / "ind" / "real_benchmark.json").read_text())["rows"]}
    assert ind[("Milan cell 11", "traffic", "mean")]["window_nmse"] == by[("Milan cell 11", "traffic", "mean")]["window_nmse"]
    assert "pool" in by[("Intel 5300", "csi complex", "causal-tiny-export")]["note"]
    assert "pool" not in ind[("Intel 5300", "csi complex", "causal-tiny-export")]["note"]
    assert "pool" not in by[("Milan cell 11", "traffic", "causal-tiny-export")]["note"]
    # a model with box_cox says so on its non-negative rows (traffic); one without does not
    from wfm.models.registry import create_model
    model = create_model("causal_tiny", box_cox=True).eval()
    cfg = R.RealBenchConfig()
    milan = R.load_traffic(standin / "traffic", cfg)[0]
    assert "Box-Cox" in R.model_rows(milan, [("bc", "causal", model)], cfg, {})[0]["note"]
    assert "Box-Cox" not in by[("Milan cell 11", "traffic", "causal-tiny-export")]["note"]


def test_a_quantile_models_rows_report_its_bands_coverage_and_quantile_loss(standin):
    """The causal model's rows carry the share of targets inside its 0.1..0.9 band and the
    weighted quantile loss (a window's channels one window), from the same run as its point
    forecast; the verdict says how far the coverage ranges. A model without quantiles has neither."""
    from wfm.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("causal_tiny", quantiles=(0.1, 0.5, 0.9)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=0.2)
    cfg = R.RealBenchConfig()
    for d in R.load_wifi(standin / "wifi-csi", cfg)[:1] + R.load_traffic(standin / "traffic", cfg)[:1]:
        row, = R.model_rows(d, [("q", "causal", model)], cfg, {})
        series = R._to_series(d.context)
        per = len(series) // d.windows
        with torch.no_grad():
            point, q = model.forecast_with_quantiles(series, torch.full((len(series),), d.interval), d.target.shape[1],
                                                     group=torch.arange(len(series)) // per)
        tgt = R._to_series(d.target)
        assert row["window_nmse"] == pytest.approx(R._score(R._from_series(point, d.target), d.target)["window_nmse"])
        inside = ((tgt >= q[..., 0]) & (tgt <= q[..., 2])).float().mean()
        assert row["interval_coverage"] == pytest.approx(float(inside)) and row["interval_nominal"] == pytest.approx(0.8)
        lv = torch.tensor([0.1, 0.5, 0.9])
        diff = tgt[..., None] - q
        pin = torch.maximum(lv * diff, (lv - 1) * diff).reshape(d.windows, -1).sum(1)
        ref = (2 * pin / tgt.abs().reshape(d.windows, -1).sum(1)).mean()
        assert row["quantile_loss"] == pytest.approx(float(ref), rel=1e-5)
    plain, = R.model_rows(d, [("p", "causal", create_model("causal_tiny", quantiles=()).eval())], cfg, {})
    assert "interval_coverage" not in plain and "window_nmse" in plain
    R._finalise([row], d)
    lines = R.verdicts({"models": [{"path": "q"}], "rows": [{**row, "ratio_to_best": 1.0}]})
    assert any("80% band holds" in line for line in lines)


def test_csi_views_in_frequency(standin):
    """``csi_frequency``: the same capture, the upper half of the subcarriers predicted from the
    lower half at every packet, in windows that share no packet (each its own block). The series
    run along subcarriers, so persistence is the last lower subcarrier; the MAE predicts with a
    frequency mask on the whole window; the causal model does not take them."""
    from wfm.models.baselines import ContextMean, Persistence
    from wfm.models.registry import create_model

    cfg = R.RealBenchConfig(csi_frequency=True)
    data = R.load_wifi(standin / "wifi-csi", cfg)
    assert [d.view for d in data] == ["csi complex", "csi amplitude", "csi complex, frequency", "csi amplitude, frequency"]
    assert [d.view for d in R.load_wifi(standin / "wifi-csi", R.RealBenchConfig())] == ["csi complex", "csi amplitude"]
    f, amp = data[2], data[3]
    # 40 packets, windows of 16 that do not overlap: starts 0 and 16; 32 subcarriers: 16 -> 16
    assert f.axis == "frequency" and f.span[:, 1].tolist() == [0, 16]
    assert f.context.shape == (2, 16, 16, 4) and f.target.shape == (2, 16, 16, 4)
    assert torch.equal(f.context, f.csi[..., :16].permute(0, 3, 1, 2))
    assert torch.equal(f.target, f.csi[..., 16:].permute(0, 3, 1, 2)) and torch.equal(amp.target, f.target.abs())
    assert f.blocks().tolist() == [0, 1] and data[0].blocks().tolist() == [0] * 16 + [1] * 9
    last = f.csi[..., 15:16].permute(0, 3, 1, 2).expand_as(f.target)
    assert torch.equal(R.forecast_windows(Persistence(), f), last)
    assert torch.allclose(R.forecast_windows(ContextMean(), f), f.csi[..., :16].mean(-1, keepdim=True).permute(0, 3, 1, 2).expand_as(f.target))
    torch.manual_seed(0)
    mae = create_model("mae_tiny", prior="mix").eval()
    pred = R.mae_windows(mae, f)
    ref = mae.predict(f.csi, "frequency", 0.5).reconstruction[..., 16:].permute(0, 3, 1, 2)
    assert pred.shape == f.target.shape and torch.allclose(pred, ref)
    causal = create_model("causal_tiny").eval()
    assert [r["model"] for r in R.model_rows(f, [("c", "causal", causal), ("m", "mae", mae)], cfg, {})] == ["m"]
    seasonal = next(r for r in R.classical_rows(f, cfg) if r["model"] == "seasonal")
    assert seasonal["note"] == "no season along subcarriers"


def test_mae_that_refuses_a_shape_is_a_row_not_a_crash(standin):
    class Refuses:
        def predict(self, csi, kind, ratio):
            raise ValueError("CSI shape not divisible by patch\nsecond line")

    data = R.load_real_datasets(standin)[:2]
    cache: dict = {}
    rows = [R.model_rows(d, [("x/mae", "mae", Refuses())], R.RealBenchConfig(), cache) for d in data]
    assert [r[0]["error"] for r in rows] == ["ValueError: CSI shape not divisible by patch"] * 2
    # A model that does not load is an error row on every dataset it would take.
    rows = R.model_rows(data[0], [("x/mae", "mae", ValueError("weights do not match"))], R.RealBenchConfig(), {})
    assert rows[0]["error"] == "ValueError: weights do not match"


def test_models_are_discovered_from_config_kind(tmp_path):
    for name, kind in (("a", "mae"), ("b", "causal")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"model_kind": kind}))
    (tmp_path / "notes").mkdir()
    assert R.discover_models(tmp_path) == [(str(tmp_path / "a"), "mae"), (str(tmp_path / "b"), "causal")]
    shipped = R.discover_models()
    assert {k for _, k in shipped} >= {"mae", "causal"}


def test_absent_datasets_folder_skips_cleanly_unless_named(tmp_path, capsys, monkeypatch):
    """No real data on this machine (the default folder, or $WFM_REAL_DATA, absent): nothing to do,
    exit 0. A folder the user names that is not there is a typo: one line, exit 2."""
    monkeypatch.setenv("WFM_REAL_DATA", str(tmp_path / "nope"))
    main(["benchmark", "real", "--out", str(tmp_path / "o")])
    assert "no real datasets" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as e:
        main(["benchmark", "real", "--datasets", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--datasets" in err and "no such folder" in err and not (tmp_path / "o").exists()


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/datasets is absent")
def test_real_traffic_and_csi(tmp_path, monkeypatch):
    """The shared real data (traffic and WiFi CSI; DeepSense is covered by the stand-in): every
    dataset is scored by every classical baseline, with the per-window NMSE computed by hand."""
    root = tmp_path / "real"
    root.mkdir()
    for sub in ("traffic", "wifi-csi"):
        (root / sub).symlink_to(SHARED / sub)
    from wfm.models.registry import create_model

    loaded: list = []  # the windows the benchmark scores, kept for the hand computation
    load = R.load_real_datasets
    monkeypatch.setattr(R, "load_real_datasets", lambda *a, **kw: loaded.extend(load(*a, **kw)) or loaded)
    r = R.run_real_benchmark(root, [("causal_tiny", "causal", create_model("causal_tiny"))])
    views = {(d["dataset"], d["view"]) for d in r["datasets"]}
    assert len([v for v in views if v[1] == "traffic"]) == 6
    assert {("Intel 5300", "csi complex"), ("Nexmon BCM4339", "csi amplitude")} <= views
    for row in r["rows"]:
        if row["model"] in ("persistence", "mean"):
            assert np.isfinite(row["window_nmse"]) and row["window_nmse"] > 0
    # Every channel is its own series: persistence repeats its last context value, the mean its
    # context mean; window NMSE = mean over windows of sum |err|^2 / sum |target|^2.
    by = {(x["dataset"], x["view"], x["model"]): x for x in r["rows"]}
    assert [(d.name, d.view) for d in loaded] == [(d["dataset"], d["view"]) for d in r["datasets"]]
    for d in loaded:
        ctx, target = d.context.to(torch.complex128), d.target.to(torch.complex128)
        dims = tuple(range(1, target.ndim))
        for name, pred in (("persistence", ctx[:, -1:]), ("mean", ctx.mean(1, keepdim=True))):
            err = ((pred.expand_as(target) - target).abs() ** 2).sum(dims) / (target.abs() ** 2).sum(dims)
            got = by[(d.name, d.view, name)]["window_nmse"]
            assert got == pytest.approx(float(err.mean()), rel=1e-4), (d.name, d.view, name)


def test_the_cells_of_one_file_are_scored_together_where_there_are_enough():
    def row(cell: int, ratio: float, source: str = "milan.csv") -> dict:
        return {"model": "m", "kind": "FM (causal) zero-shot", "dataset": f"Milan cell {cell}", "view": "traffic",
                "source": source, "ratio_to_best": ratio}

    ratios = [0.9, 1.03, 0.73, 0.56, 1.14, 0.94]
    fam = R.family_rows([row(c, r) for c, r in enumerate(ratios)] + [row(9, 1.0, "other.csv")])
    assert len(fam) == 1  # one file of 6 cells; the other file's single cell is no family
    f = fam[0]
    assert f["geometric_mean_ratio"] == pytest.approx(float(np.exp(np.mean(np.log(ratios)))))
    assert f["ratio_low"] < f["geometric_mean_ratio"] < f["ratio_high"] and f["label"].startswith("Milan cell")
    lines = R.verdicts({"models": [{"path": "m"}], "rows": [row(c, r) for c, r in enumerate(ratios)], "families": fam})
    assert any("together: geometric mean of the ratios" in x and "within noise" in x for x in lines)


def _saved_beam_model(folder: Path, prior: str = "persistence", context: int = 4) -> Path:
    """A saved future-beam model; anchored on persistence with its head at zero (as built), it
    ranks the beams exactly as persistence does."""
    from wfm.tasks import saved
    from wfm.tasks.future_beam import BeamRNN

    torch.manual_seed(0)
    model = BeamRNN(64, 16, "gru", prior, relative=prior != "none")
    return saved.save(model, folder, "future-beam", "future-beam",
                      {"context": context, "horizon": 1, "trained_on": ["nothing: a test model"]})


def test_saved_future_beam_models_are_scored_on_the_next_best_beam(standin, tmp_path):
    from wfm.tasks.real_beams import discover_beam_models, is_beam_model

    ds = standin / "deepsense6g-beam"
    _deepsense(ds, scenario=2, n_traj=4, length=20)
    anchored = _saved_beam_model(tmp_path / "ckpts" / "anchored")
    free = _saved_beam_model(tmp_path / "ckpts" / "free", prior="none")
    (tmp_path / "ckpts" / "export").mkdir()
    (tmp_path / "ckpts" / "export" / "config.json").write_text(json.dumps({"model_kind": "causal"}))
    assert discover_beam_models(tmp_path / "ckpts") == [str(anchored), str(free)]
    assert not is_beam_model(tmp_path / "ckpts" / "export") and not is_beam_model(tmp_path / "nowhere")

    out = tmp_path / "out"
    main(["benchmark", "real", "--datasets", str(standin), "--out", str(out), "--time-only",
          "--model", str(anchored), "--model", str(free)])
    r = json.loads((out / "real_benchmark.json").read_text())
    assert not r["models"]  # no forecasting model was asked for: the classical rows only
    assert not (out / "real_benchmark.png").exists()  # no model ratio to draw
    rows = {(x["scenarios"], x["model"]): x for x in r["beams"]["rows"]}
    assert set(rows) == {(s, m) for s in ("s1", "s2", "s1-2") for m in ("persistence", "ar", "anchored", "free")}
    # every step with 4 steps of context and one ahead: 3 x (30 - 4) + 4 x (20 - 4) windows
    assert rows[("s1-2", "persistence")]["windows"] == 3 * 26 + 4 * 16
    assert rows[("s1-2", "anchored")]["trajectories"] == 7 and rows[("s1-2", "anchored")]["all_scenarios"]
    assert not rows[("s1", "anchored")]["all_scenarios"]
    # persistence by hand: the best beam now is the best beam next step
    from wfm.data.loaders.deepsense import load_scenario

    hits = [int(np.argmax(p[t]) == np.argmax(p[t + 1])) for s in (1, 2)
            for p in load_scenario(ds, s)["beam_power"] for t in range(3, len(p) - 1)]
    assert rows[("s1-2", "persistence")]["top1"] == pytest.approx(np.mean(hits))
    # linear prediction of the powers by hand: one recursion per window over its 64 beams
    from wfm.models.linear_prediction import ar_forecast

    hits = []
    for s in (1, 2):
        for p in load_scenario(ds, s)["beam_power"]:
            for t in range(3, len(p) - 1):
                past = torch.from_numpy(np.asarray(p[t - 3:t + 1], dtype=np.float32)).double().T[None]
                hits.append(int(ar_forecast(past, 1)[0, :, -1].float().argmax() == int(np.argmax(p[t + 1]))))
    ar = rows[("s1-2", "ar")]
    assert ar["kind"] == "classical" and ar["top1"] == pytest.approx(np.mean(hits))
    assert ar["miss_ratio"] == pytest.approx((1 - ar["top1"]) / (1 - rows[("s1-2", "persistence")]["top1"]))
    for s in ("s1", "s2", "s1-2"):  # the anchored model at its start is persistence
        a, p = rows[(s, "anchored")], rows[(s, "persistence")]
        assert a["top1"] == p["top1"] and a["power_loss_db"] == pytest.approx(p["power_loss_db"])
        assert a["miss_ratio"] == pytest.approx(1.0)
        assert rows[(s, "free")]["miss_ratio"] == pytest.approx((1 - rows[(s, "free")]["top1"]) / (1 - p["top1"]))
    pooled = rows[("s1-2", "free")]
    assert pooled["ratio_blocks"] == 7 and pooled["ratio_low"] <= pooled["miss_ratio"] <= pooled["ratio_high"]
    assert pooled["note"] == "nothing: a test model"
    md = (out / "real_benchmark.md").read_text()
    assert "## Next best beam" in md and "anchored" in md
    assert any(v.startswith("anchored: next best beam top-1") and "miss ratio 1.000" in v for v in R.verdicts(r))
    # a saved model that does not load (its weights changed since it was saved) is a row, not a crash
    (free / "model.safetensors").write_bytes(b"not the weights")
    broken = R.run_real_benchmark(standin, [], R.RealBenchConfig(csi_frequency=False), beam_models=[str(anchored), str(free)])
    bad = [x for x in broken["beams"]["rows"] if x["model"] == "free"]
    assert len(bad) == 1 and "sha256 mismatch" in bad[0]["error"] and str(free) in bad[0]["error"]
    assert any(x["model"] == "anchored" and "top1" in x for x in broken["beams"]["rows"])
    assert any(v.startswith("free: failed on the next best beam (cannot load") for v in R.verdicts(broken))
    # asked for forecasting models only, the benchmark scores no beam model
    assert "beams" not in R.run_real_benchmark(standin, [], R.RealBenchConfig(csi_frequency=False))


def _headroom_script():
    return load_script("finetune/headroom.py")


def test_headroom_measures_against_reference_formulas(standin, tmp_path):
    """finetune/headroom.py: white noise around a level reads as white with the mean best, and each
    oracle ratio is its definition; a random walk does not read as white; the script writes every
    time view of the stand-in folders."""
    script = _headroom_script()
    g = torch.Generator().manual_seed(0)
    n, length, h, c = 200, 8, 8, 30
    x = 3.0 + torch.randn(n, length + h, c, generator=g, dtype=torch.float64)
    ctx, tgt = x[:, :length], x[:, length:]
    row = script.headroom_row(ctx, tgt)
    mean = ctx.mean(1, keepdim=True).expand_as(tgt)
    best = R.window_nmse(mean, tgt).mean()
    assert row["best_classical"] == "mean" and row["best_nmse"] == pytest.approx(float(best))
    assert abs(row["lag1_median"]) < 0.1 and row["white_windows"] > 0.9 and row["white_bound"] == pytest.approx(8 / 9)
    assert row["zero"] == pytest.approx(float(R.window_nmse(torch.zeros_like(tgt), tgt).mean() / best))
    level = tgt.mean(1, keepdim=True).expand_as(tgt)
    assert row["oracle_level"] == pytest.approx(float(R.window_nmse(level, tgt).mean() / best))
    # White noise: knowing the level leaves sigma^2 of the mean's sigma^2 (1 + 1 / 8), within the
    # draw; the hindsight blend is at or below the mean (a = 0 is among its choices).
    assert 0.7 < row["oracle_level"] < 0.85 and row["oracle_blend"] <= 1.0
    walk = torch.randn(n, length + h, c, generator=g, dtype=torch.float64).cumsum(1)
    rw = script.headroom_row(walk[:, :length], walk[:, length:])
    assert rw["lag1_median"] > 0.4 and rw["white_windows"] == 0.0 and rw["best_classical"] == "persistence"
    out = tmp_path / "h.json"
    script.main(["--datasets", str(standin), "--out", str(out)])
    rows = json.loads(out.read_text())
    views = {(r["dataset"], r["view"]) for r in rows}
    assert views == {(d.name, d.view) for d in R.load_real_datasets(standin, R.RealBenchConfig(csi_frequency=True))}


def test_a_folder_with_only_unreadable_files_says_why_in_its_one_error(tmp_path):
    (tmp_path / "traffic").mkdir()
    (tmp_path / "traffic" / "op.csv").write_text("enodeb,timestamp,dl_mb\n1,0,3\n1,120,4\n")
    skipped: list = []
    with pytest.raises(DataError, match=r"no wifi-csi/.*; not scored: .*op.csv: missing column 'square_id'"
                                        r".*--id-column CELL"):
        R.load_real_datasets(tmp_path, R.RealBenchConfig(), skipped)


def test_two_imports_of_one_file_are_named_by_their_folders(tmp_path):
    """Datasets take the imported file's name; two imports of one file (say, with different gap
    rules) would share it in the table, so each is then named by its folder too."""
    from wfm.data.loaders.generic import import_series

    root = tmp_path / "mine"
    t = np.arange(200, dtype=np.float32)
    np.save(tmp_path / "s.npy", 10 + np.sin(2 * np.pi * t / 48))
    import_series(tmp_path / "s.npy", root / "one", interval=0.5)
    import_series(tmp_path / "s.npy", root / "two", interval=0.5)
    cfg = R.RealBenchConfig(series_context=32, series_horizon=8)
    assert sorted(d.name for d in R.load_real_datasets(root, cfg)) == ["s (one, imported)", "s (two, imported)"]
    shutil.rmtree(root / "two")
    assert [d.name for d in R.load_real_datasets(root, cfg)] == ["s (imported)"]
