"""CSI captures stored as arrays: ``.npy``, ``.npz``, HDF5 (``.h5`` / ``.hdf5``) and MATLAB v7.3
``.mat`` files, whatever tool wrote them (ESP32, PicoScenes, FeitCSI, Atheros tools, a
simulator's export).

The file holds no description of itself, so the user names its axes with letters
(``--axes``): ``p`` packets (time), ``a`` antennas (any mix of receive chains and streams),
``k`` subcarriers, optionally ``n`` captures (each becomes its own capture, as separate files
would) and ``c`` a real/imaginary pair of size 2 for tools that cannot store complex numbers.
``p`` and ``k`` are required; without ``a`` the capture has one antenna. A real array without
``c`` (amplitudes) is stored as complex with a zero imaginary part, as the amplitude views of
the real benchmark are.

MATLAB v7.3 files are HDF5 with the axes reversed (MATLAB is column-major): a dataset that
carries MATLAB's ``MATLAB_class`` attribute is read back in MATLAB's order, so ``--axes``
always names the axes as the writing program saw them. MATLAB complex arrays (a compound of
``real`` and ``imag``) are read as complex. Older ``.mat`` files (v5, no HDF5) are refused with
the way out (``save -v7.3``, or a ``.npy``).

The capture dict is the one :func:`wfm.data.loaders.wifi_csi.read_capture` returns for the
Intel 5300 and Nexmon readers, so windows, phase sanitisation and the dataset format are
shared: ``wfm data import csi-array`` writes the same ``csi`` dataset as ``wfm data import intel``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from wfm.data.errors import DataError
from wfm.data.loaders.generic import _read_npy

AXES = "pakcn"  # packets, antennas, subcarriers, real/imag pair, captures
ARRAY_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5", ".mat")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def check_axes(axes: str) -> str:
    """``axes`` lower-cased, checked: letters of :data:`AXES`, each once, ``p`` and ``k`` among them."""
    axes = axes.lower()
    if (not axes or any(c not in AXES for c in axes) or len(set(axes)) != len(axes)
            or "p" not in axes or "k" not in axes):
        raise DataError(f"--axes {axes!r} must name each axis of the array once with p (packets), k (subcarriers) "
                        "and optionally a (antennas), n (captures), c (a real/imaginary pair), e.g. pak or npka")
    return axes


def _h5_names(f: Any) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if hasattr(obj, "shape") and not name.startswith("#") else None)
    return names


def _pick(names: Sequence[str], key: str | None, src: str) -> str:
    """``key`` if the file holds it; without a key, the file's only array."""
    if key is not None:
        if key not in names:
            raise DataError(f"{src}: no array {key!r}; it holds {', '.join(names) or 'none'}")
        return key
    if len(names) != 1:
        raise DataError(f"{src}: holds {len(names)} arrays ({', '.join(names) or 'none'}); name the CSI with --key")
    return names[0]


def _read_h5(path: Path, key: str | None, time_key: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    import h5py

    src = str(path)
    try:
        with h5py.File(path, "r") as f:
            names = _h5_names(f)

            def load(k: str) -> np.ndarray:
                d = f[_pick(names, k, src)]
                a = d[()]
                if a.dtype.names and {"real", "imag"} <= set(a.dtype.names):  # MATLAB complex
                    a = a["real"] + 1j * a["imag"]
                # MATLAB is column-major: its arrays come back with the axes reversed.
                return np.asarray(np.transpose(a) if "MATLAB_class" in d.attrs else a)

            return load(_pick(names, key, src)), None if time_key is None else load(time_key)
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{src}: not a readable HDF5 file ({msg})") from None


def _read_npz(path: Path, key: str | None, time_key: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    src = str(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            csi = z[_pick(z.files, key, src)]
            return csi, None if time_key is None else z[_pick(z.files, time_key, src)]
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as e:  # ValueError: an object array (would need pickle)
        msg = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{src}: not a readable .npz archive ({msg})") from None


def read_array(path: str | Path, key: str | None = None,
               time_key: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The CSI array of ``path`` (and its timestamps array, ``time_key``), never unpickled."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise DataError(f"{src}: file not found")
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise DataError(f"{src}: not an array file ({', '.join(ARRAY_SUFFIXES)})")
    if suffix == ".npy":
        if key is not None or time_key is not None:
            raise DataError(f"{src}: a .npy file holds one array: --key and --time-key are for .npz, HDF5 and .mat")
        return _read_npy(path), None
    if suffix == ".npz":
        return _read_npz(path, key, time_key)
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(512)
        at512 = f.read(8)
    if HDF5_MAGIC not in (head, at512):  # v7.3 .mat files have a 512-byte text header first
        if suffix == ".mat":
            raise DataError(f"{src}: a MATLAB file before v7.3 (not HDF5); save it with `save(..., '-v7.3')` "
                            "or as a .npy array")
        raise DataError(f"{src}: not an HDF5 file (no HDF5 signature)")
    return _read_h5(path, key, time_key)


def read_csi_array(path: str | Path, interval: float | None = None, axes: str = "pak", key: str | None = None,
                   time_key: str | None = None, subcarriers: Sequence[int] | None = None,
                   bandwidth: float | None = None) -> list[dict[str, Any]]:
    """The captures of an array file, each ``{"csi": [P, A, K] complex64, "timestamp": [P] s,
    "subcarriers": [K], ...}`` as :func:`wfm.data.loaders.wifi_csi.read_capture` returns them.

    ``interval``: seconds between packets (the timestamps; required unless ``time_key`` names an
    array of packet times in seconds, ``[P]``, or ``[N, P]`` with ``n``). ``subcarriers``: the
    subcarrier indices in frequency order (used by ``--phase linear``; default ``0..K-1``
    centred). ``bandwidth`` in Hz, recorded only.
    """
    src = str(path)
    axes = check_axes(axes)
    a, times = read_array(path, key, time_key)
    if a.dtype.kind not in "iufc":
        raise DataError(f"{src}: the CSI array is {a.dtype}, not numbers")
    if a.ndim != len(axes):
        raise DataError(f"{src}: the CSI array is {list(a.shape)} ({a.ndim} axes) but --axes {axes!r} names "
                        f"{len(axes)}")
    if "c" in axes:
        if a.shape[axes.index("c")] != 2 or a.dtype.kind == "c":
            raise DataError(f"{src}: axis c (real, imaginary) must be a real axis of size 2, got size "
                            f"{a.shape[axes.index('c')]} of {a.dtype}")
        a = np.moveaxis(a, axes.index("c"), -1)
        a = a[..., 0] + 1j * a[..., 1]
        axes = axes.replace("c", "")
    for c in "an":
        if c not in axes:
            a, axes = a[..., None], axes + c
    a = np.transpose(a, [axes.index(c) for c in "npak"])
    n, p, na, k = a.shape
    if min(a.shape) == 0:
        raise DataError(f"{src}: the CSI array is empty ({list(a.shape)} as captures, packets, antennas, subcarriers)")
    bad = ~np.isfinite(a.real) | ~np.isfinite(a.imag) if a.dtype.kind == "c" else ~np.isfinite(a)
    if bad.any():
        i = tuple(int(x) for x in np.argwhere(bad)[0])
        raise DataError(f"{src}: {int(bad.sum())} NaN or Inf value(s) (the first: capture {i[0]}, packet {i[1]}, "
                        f"antenna {i[2]}, subcarrier {i[3]}); drop or fill those packets first")
    if subcarriers is None:
        sub = np.arange(k) - k // 2
    else:
        sub = np.asarray(list(subcarriers), dtype=np.int64)
        if sub.shape != (k,) or np.any(np.diff(sub) <= 0):
            raise DataError(f"{src}: --subcarriers gives {len(sub)} indices for {k} subcarriers; they must be one per "
                            "subcarrier, increasing (frequency order)")
    if times is None:
        if interval is None or not interval > 0:
            raise DataError(f"{src}: give --interval (seconds between packets) or --time-key (an array of packet times)")
        stamps = np.broadcast_to(np.arange(p) * float(interval), (n, p))
    else:
        stamps = np.asarray(times, dtype=np.float64).reshape(-1, p) if times.size == n * p else None
        if stamps is None or stamps.shape != (n, p):
            raise DataError(f"{src}: --time-key array is {list(np.shape(times))}, not one time per packet "
                            f"([{p}] or [{n}, {p}])")
        if not np.isfinite(stamps).all() or np.any(np.diff(stamps, axis=1) <= 0):
            raise DataError(f"{src}: --time-key times must be finite and increasing within each capture")
    return [{"csi": a[i].astype(np.complex64), "timestamp": stamps[i] - stamps[i, 0], "subcarriers": sub,
             "chip": "array", "bandwidth": bandwidth, "antennas": [f"antenna{j}" for j in range(na)],
             "source": src if n == 1 else f"{src}[{i}]"} for i in range(n)]
