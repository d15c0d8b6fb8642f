"""Measured WiFi CSI: Intel 5300 (``.dat``, Linux 802.11n CSI Tool) and Nexmon (``.pcap``).

Both are read with ``csiread`` and stored as dataset kind ``csi`` like generated CSI:
``csi`` complex64 ``[T, A, K]`` windows of ``T`` consecutive packets, plus ``timestamp``
``[T]`` (s since the capture's first packet), ``capture`` (index of the source file) and
``start`` (packet index of the window's first packet). Consecutive windows of one
capture are joined back into one long series by :mod:`wfm.data.series`, so the
window length only matters to consumers of fixed ``[T, A, K]`` samples (the MAE).
``--window 0`` stores each capture whole, as one sample.

Intel 5300: antennas are ``rx x tx`` pairs (rx-major), 30 subcarrier groups (indices of
the 802.11n grouping for 20/40 MHz), CSI scaled to SNR units with RSSI and AGC
(``get_scaled_csi``) so that amplitudes are comparable across packets.
Nexmon: the packets of one frame (same sequence number) carry one spatial stream each;
a frame becomes one time step with ``A = cores x streams``; incomplete frames are
dropped (counted in attrs ``dropped_frames``) and stream slots that merely repeat
another's CSI (as on the BCM4339, a one-antenna chip) are folded into one. Subcarriers are put in frequency order and
the guard, DC and edge bins that the chip fills with garbage are dropped.

WiFi packets do not arrive on a grid: ``time_step`` is the median inter-packet (frame)
interval and ``time_step_jitter`` the 5-95 % range of intervals divided by the median;
the exact times stay in ``timestamp``.
"""

from __future__ import annotations

import faulthandler
import multiprocessing as mp
import signal
from pathlib import Path
from typing import Any, Sequence

import csiread
import numpy as np

from wfm.data.errors import DataError
from wfm.data.loaders.common import write_samples
from wfm.data.loaders.phase import PHASE_METHODS, sanitize_phase
from wfm.data.shards import FieldSpec

#: 802.11n subcarrier grouping of the Intel 5300 (Halperin's CSI Tool), 30 groups.
INTEL_SUBCARRIERS = {
    20: np.r_[np.arange(-28, -1, 2), -1, np.arange(1, 28, 2), 28],
    40: np.r_[np.arange(-58, -1, 4), -2, np.arange(2, 59, 4)],
}
#: Nexmon: usable (data + pilot) subcarriers per bandwidth: 2 <= |k| <= edge.
NEXMON_EDGE = {20: 28, 40: 58, 80: 122}
RATE_HT40 = 0x800  # Intel rate_n_flags: 40 MHz channel


def _capture_error(path: Path, e: Exception) -> DataError:
    return DataError(f"{path}: cannot parse capture ({type(e).__name__}: {e})")


#: Largest capture read (csiread holds it in memory several times over).
MAX_CAPTURE_BYTES = 4 << 30


def check_intel_records(path: Path, nrx: int = 3, ntx: int = 3) -> None:
    """Walk an Intel 5300 ``.dat`` record by record and refuse what csiread would read out of
    bounds: a record running past the end of the file (truncated), a CSI record whose length,
    antenna counts or payload size disagree. Names the byte offset."""
    data = path.read_bytes()
    pos, n = 0, len(data)
    while pos < n:
        if pos + 3 > n:
            raise DataError(f"{path}: truncated record at byte {pos} (file ends inside its header)")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 1 or pos + 2 + length > n:
            raise DataError(f"{path}: record at byte {pos} claims {length} bytes, the file has {n - pos - 2} left "
                            "(truncated or corrupt capture)")
        if data[pos + 2] == 0xBB:  # beamforming (CSI) record: 20-byte header + packed CSI
            body = data[pos + 3:pos + 2 + length]
            if len(body) < 20:
                raise DataError(f"{path}: CSI record at byte {pos} is {len(body)} bytes, shorter than its header")
            r_nrx, r_ntx = body[8], body[9]
            csi_len = int.from_bytes(body[16:18], "little")
            want = (30 * (r_nrx * r_ntx * 8 * 2 + 3) + 7) // 8
            if not (1 <= r_nrx <= 3 and 1 <= r_ntx <= 3) or r_nrx > nrx or r_ntx > ntx:
                raise DataError(f"{path}: CSI record at byte {pos} has {r_nrx}x{r_ntx} antennas "
                                f"(at most {nrx}x{ntx}: corrupt, or pass --nrx/--ntx)")
            if csi_len != want or len(body) != 20 + csi_len:
                raise DataError(f"{path}: CSI record at byte {pos}: {len(body) - 20} payload bytes, length field "
                                f"{csi_len}, expected {want} for {r_nrx}x{r_ntx} (corrupt capture)")
        pos += 2 + length


def check_pcap_records(path: Path) -> np.ndarray:
    """Walk a pcap file's packet headers and refuse a packet that runs past the end of the file
    or beyond the snap length (csiread would read out of bounds). Names the byte offset.
    Returns every packet's captured length (``[packets]``, for :func:`nexmon_bandwidth`)."""
    data = path.read_bytes()
    n = len(data)
    if n < 24:
        raise DataError(f"{path}: {n} bytes, too short for a pcap file")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "little"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = "big"
    else:
        raise DataError(f"{path}: not a pcap file (magic {magic.hex()}; pcapng is not supported)")
    snaplen = int.from_bytes(data[16:20], order) or 262144
    pos = 24
    lengths = []
    while pos < n:
        if pos + 16 > n:
            raise DataError(f"{path}: truncated packet header at byte {pos}")
        incl = int.from_bytes(data[pos + 8:pos + 12], order)
        if incl > max(snaplen, 65535) or pos + 16 + incl > n:
            raise DataError(f"{path}: packet at byte {pos} claims {incl} bytes, the file has {n - pos - 16} left "
                            "(truncated or corrupt capture)")
        lengths.append(incl)
        pos += 16 + incl
    return np.asarray(lengths, dtype=np.int64)


def _child_read(conn, fn_name: str, path: str, kw: dict) -> None:
    faulthandler.disable()  # a crash here is reported by the parent, in one line
    try:
        conn.send(("ok", globals()[fn_name](path, **kw)))
    except Exception as e:  # noqa: BLE001 (sent back as a one-line error)
        conn.send(("error", f"{type(e).__name__}: {e}" if not isinstance(e, DataError) else str(e)))
    finally:
        conn.close()


def parse_isolated(fn_name: str, path: Path, **kw: Any) -> dict[str, Any]:
    """Run a capture parser in a child process: a crash in csiread (a signal) becomes a
    one-line DataError naming the file instead of killing ``wfm``."""
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_read, args=(child_conn, fn_name, str(path), kw), daemon=True)
    proc.start()
    child_conn.close()
    try:
        status, value = parent_conn.recv()
    except EOFError:
        status, value = "crash", None
    proc.join()
    if status == "ok":
        return value
    if status == "error":
        raise DataError(value if str(value).startswith(str(path)) else f"{path}: {value}")
    code = proc.exitcode or 0
    sig = signal.Signals(-code).name if code < 0 and -code in signal.Signals._value2member_map_ else f"exit {code}"
    raise DataError(f"{path}: the capture parser crashed ({sig}); the file is corrupt or truncated")


#: ``read_intel``'s ``scale``: ``snr`` is ``get_scaled_csi`` (the CSI in SNR units: each packet rescaled
#: from its RSSI, AGC and noise readings, so that amplitudes compare across packets and links);
#: ``raw`` is what the card reports, after its AGC (each packet near one power).
INTEL_SCALES = ("snr", "raw")


def _check_scale(path: Path, scale: str) -> None:
    if scale not in INTEL_SCALES:
        raise DataError(f"{path}: scale {scale!r} is not one of {', '.join(INTEL_SCALES)}")


def read_intel(path: str | Path, nrx: int = 3, ntx: int = 3, scale: str = "snr") -> dict[str, Any]:
    """``{"csi": [P, A, K] complex64, "timestamp": [P] s, "subcarriers", attrs...}``.

    ``scale`` (:data:`INTEL_SCALES`): the two differ by one positive factor per packet, which divides
    by the packet's noise reading. That reading jumps (-88 to -61 dBm on the shared still capture), so
    in SNR units the link's common gain dips where it is high: the per-packet power varies by 0.94 dB
    (std) against 0.29 dB as reported, its correlation with the noise reading -0.86. ``raw`` for a
    link's course over time, ``snr`` for its level against the noise."""
    path = Path(path)
    _check_scale(path, scale)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        c = csiread.Intel(str(path), nrxnum=nrx, ntxnum=ntx, if_report=False)
        c.read()
        raw = c.get_scaled_csi() if scale == "snr" else c.csi
    except Exception as e:  # csiread raises assorted errors on foreign files
        raise _capture_error(path, e) from None
    if c.count == 0:
        raise DataError(f"{path}: no CSI packets (not an Intel 5300 .dat capture?)")
    n_rx, n_tx = int(np.max(c.Nrx)), int(np.max(c.Ntx))
    if (c.Nrx != n_rx).any() or (c.Ntx != n_tx).any():
        i = int(np.flatnonzero((c.Nrx != n_rx) | (c.Ntx != n_tx))[0])
        raise DataError(f"{path}: packet {i}: antenna count changes ({c.Nrx[i]}x{c.Ntx[i]} "
                        f"instead of {n_rx}x{n_tx})")
    bw = 40 if (int(c.rate[0]) & RATE_HT40) else 20
    csi = raw[:, :, :n_rx, :n_tx]  # [P, K, rx, tx]
    csi = csi.transpose(0, 2, 3, 1).reshape(c.count, n_rx * n_tx, -1)
    # timestamp_low is a 32-bit microsecond counter: unwrap its overflows.
    t = np.concatenate([[0], np.cumsum(np.diff(c.timestamp_low.astype(np.int64)) % (1 << 32))]) * 1e-6
    return {"csi": csi.astype(np.complex64), "timestamp": t, "subcarriers": INTEL_SUBCARRIERS[bw],
            "chip": "intel5300", "bandwidth": bw * 1e6, "csi_scale": scale,
            "antennas": [f"rx{r}-tx{s}" for r in range(n_rx) for s in range(n_tx)],
            # Measured on the shared capture: the phase between receive chains is random per
            # packet, the phase between the streams of one chain is stable; so references
            # are taken per receive chain.
            "conj_groups": [[r * n_tx + s for s in range(n_tx)] for r in range(n_rx)]}


def nexmon_bandwidth(caplen: np.ndarray, path: Path) -> int:
    """Bandwidth (MHz) of a Nexmon capture from its packets' length: a CSI packet carries 4 bytes
    per FFT bin (3.2 bins per MHz) after about 60 bytes of Ethernet, IP, UDP and Nexmon headers.
    csiread parses a capture at any bandwidth it is told, so a wrong one would go unnoticed."""
    if not len(caplen):
        raise DataError(f"{path}: no packets")
    length = int(np.bincount(np.asarray(caplen, dtype=np.int64)).argmax())
    for bw in sorted(NEXMON_EDGE):
        if 56 <= length - 4 * round(3.2 * bw) <= 80:
            return bw
    raise DataError(f"{path}: CSI packets of {length} bytes match no Nexmon bandwidth of {sorted(NEXMON_EDGE)} MHz; "
                    "pass --bw")


def read_nexmon(path: str | Path, chip: str = "4339", bw: int | None = None) -> dict[str, Any]:
    """Nexmon capture as frames: ``csi`` ``[F, A, K]`` with A = core x spatial stream. ``bw``
    (MHz): ``None`` reads it from the packets' length (:func:`nexmon_bandwidth`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if bw is None:
        bw = nexmon_bandwidth(check_pcap_records(path), path)
    if bw not in NEXMON_EDGE:
        raise DataError(f"{path}: bandwidth {bw} MHz is not one of {sorted(NEXMON_EDGE)}")
    try:
        c = csiread.Nexmon(str(path), chip=chip, bw=bw, if_report=False)
        c.read()
    except Exception as e:
        raise _capture_error(path, e) from None
    if c.count == 0:
        raise DataError(f"{path}: no CSI packets (not a Nexmon CSI pcap, or wrong --chip/--bw?)")
    stream = c.core.astype(np.int64) * 4 + c.spatial.astype(np.int64)
    streams = np.unique(stream)
    A = len(streams)
    # A frame = consecutive packets with one sequence number; keep frames with every stream.
    new_frame = np.concatenate([[True], np.diff(c.seq.astype(np.int64)) != 0])
    frame = np.cumsum(new_frame) - 1
    F = int(frame[-1]) + 1
    K_all = c.csi.shape[1]
    k_all = np.fft.fftshift(np.fft.fftfreq(K_all, 1.0 / K_all)).astype(np.int64)
    keep_k = (np.abs(k_all) >= 2) & (np.abs(k_all) <= NEXMON_EDGE[bw])
    cube = np.full((F, A, K_all), np.nan + 0j, dtype=np.complex128)
    cube[frame, np.searchsorted(streams, stream)] = np.fft.fftshift(c.csi, axes=1)
    complete = ~np.isnan(cube.real).any(axis=(1, 2))
    # Some chips (the BCM4339 among them) report one antenna's CSI once per stream slot:
    # identical copies are not antennas, so they are folded into one.
    distinct = [0] + [a for a in range(1, A) if not np.array_equal(cube[complete, a], cube[complete, 0])]
    cube, streams = cube[:, distinct], streams[distinct]
    t_pkt = c.sec.astype(np.float64) + c.usec.astype(np.float64) * 1e-6
    t_frame = np.full(F, np.nan)
    t_frame[frame[::-1]] = t_pkt[::-1]  # time of each frame's first packet
    t = t_frame[complete]
    return {"csi": cube[complete][:, :, keep_k].astype(np.complex64), "timestamp": t - t[0],
            "subcarriers": k_all[keep_k], "chip": f"bcm{chip}", "bandwidth": bw * 1e6,
            "antennas": [f"core{s // 4}-stream{s % 4}" for s in streams],
            "dropped_frames": int(F - complete.sum())}


def read_capture(path: str | Path, fmt: str, **kw: Any) -> dict[str, Any]:
    """``fmt`` is ``intel`` or ``nexmon``; keyword options go to the reader.

    The records are checked first (lengths, bounds) and csiread runs in a child process, so a
    corrupt capture is a one-line error naming the file and offset, never a segfault.
    """
    path = Path(path)
    if fmt in ("intel", "nexmon"):
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        if path.stat().st_size > MAX_CAPTURE_BYTES:
            raise DataError(f"{path}: larger than {MAX_CAPTURE_BYTES >> 30} GiB; split the capture")
    if fmt == "intel":
        _check_scale(path, kw.get("scale", "snr"))  # before the capture is parsed
        check_intel_records(path, kw.get("nrx", 3), kw.get("ntx", 3))
        return parse_isolated("read_intel", path, **kw)
    if fmt == "nexmon":
        lengths = check_pcap_records(path)
        if kw.get("bw") is None:  # read here, from the headers just walked: the child parses once
            kw = {**kw, "bw": nexmon_bandwidth(lengths, path)}
        return parse_isolated("read_nexmon", path, **kw)
    raise DataError(f"{path}: unknown WiFi CSI format {fmt!r} (intel or nexmon)")


def _windows(n: int, window: int, hop: int) -> list[int]:
    if window == 0:
        return [0]
    return list(range(0, n - window + 1, hop))


def import_wifi_csi(paths: Sequence[str | Path], out: str | Path, fmt: str, phase: str = "none",
                    window: int = 64, hop: int | None = None, name: str | None = None,
                    shard_size: int = 256, conj_groups: str = "chain", **reader_kw: Any) -> Path:
    """Import WiFi CSI captures as a ``csi`` dataset of ``[window, A, K]`` samples.

    ``conj_groups`` (``phase="conj"``): ``chain`` takes a reference per receive chain where the
    reader knows the chains (Intel 5300), ``all`` one reference across every antenna (needed
    for a capture with one transmit stream per chain)."""
    if phase not in PHASE_METHODS:
        raise DataError(f"phase method {phase!r} is not one of {', '.join(PHASE_METHODS)}")
    if conj_groups not in ("chain", "all"):
        raise DataError(f"conj_groups {conj_groups!r} is not 'chain' or 'all'")
    if window < 0 or (hop is not None and hop < 1):
        raise DataError(f"window must be >= 0 and hop >= 1, got {window} and {hop}")
    hop = hop or window or 1
    if fmt == "array":  # a file may hold several captures (axis n)
        from wfm.data.loaders.csi_array import read_csi_array

        caps = [c for p in paths for c in read_csi_array(p, **reader_kw)]
        names = [c["source"] for c in caps]
    else:
        caps = [read_capture(p, fmt, **reader_kw) for p in paths]
        names = [str(p) for p in paths]
    first = caps[0]
    for p, c in zip(names, caps):
        if c["csi"].shape[1:] != first["csi"].shape[1:]:
            raise DataError(f"{p}: CSI shape {list(c['csi'].shape[1:])} (antennas, subcarriers) differs from "
                            f"{names[0]}'s {list(first['csi'].shape[1:])}")
    if window == 0 and len({len(c["csi"]) for c in caps}) > 1:
        raise DataError("--window 0 stores whole captures as samples, so they must have equal "
                        "packet counts; choose a window length instead")
    samples: dict[str, list[Any]] = {"csi": [], "timestamp": [], "capture": [], "start": []}
    intervals = []
    for i, (p, c) in enumerate(zip(names, caps)):
        groups = c.get("conj_groups") if conj_groups == "chain" else None
        if phase == "conj" and groups and min(len(g) for g in groups) < 2:
            raise DataError(f"{p}: --phase conj takes a reference per receive chain, and a chain of this capture has "
                            "one antenna stream; group across receive chains with --conj-groups all")
        csi = sanitize_phase(c["csi"], phase, c["subcarriers"], groups)
        n = len(csi)
        T = window or n
        if n < T:
            raise DataError(f"{p}: {n} packets, fewer than one window of {T}")
        intervals.append(np.diff(c["timestamp"]))
        for s in _windows(n, window, hop):
            samples["csi"].append(csi[s:s + T])
            samples["timestamp"].append(c["timestamp"][s:s + T])
            samples["capture"].append(i)
            samples["start"].append(s)
    T = window or len(caps[0]["csi"])
    A, K = first["csi"].shape[1:]
    specs = {"csi": FieldSpec("complex64", (T, A, K)), "timestamp": FieldSpec("float64", (T,)),
             "capture": FieldSpec("int64", ()), "start": FieldSpec("int64", ())}
    arrays = {"csi": np.stack(samples["csi"]), "timestamp": np.stack(samples["timestamp"]),
              "capture": np.array(samples["capture"], dtype=np.int64),
              "start": np.array(samples["start"], dtype=np.int64)}
    dt = np.concatenate(intervals)
    if dt.size == 0:
        raise DataError(f"{names[0]}: one packet per capture gives no time step; a window needs at least 2 packets")
    med = float(np.median(dt))
    attrs = {"time_step": med, "time_step_jitter": float((np.percentile(dt, 95) - np.percentile(dt, 5)) / med),
             "bandwidth": first["bandwidth"], "chip": first["chip"], "antennas": first["antennas"],
             "subcarrier_indices": [int(k) for k in first["subcarriers"]], "phase_sanitisation": phase,
             "layout": "T, A, K (A = antennas as listed, K = subcarriers in frequency order)",
             "captures": [Path(n).name for n in names], "scenario": ("measured CSI (array file)" if fmt == "array"
                                             else f"measured WiFi ({first['chip']})"),
             **({"conj_groups": conj_groups} if phase == "conj" else {})}
    if "csi_scale" in first:
        attrs["csi_scale"] = first["csi_scale"]
    if "dropped_frames" in first:
        attrs["dropped_frames"] = [c["dropped_frames"] for c in caps]
    return write_samples(out, name or Path(paths[0]).stem, "csi", specs, arrays, attrs,
                         {"format": fmt, "sources": [str(p) for p in paths], "phase": phase,
                          "window": window, "hop": hop, **reader_kw}, shard_size)
