"""Effect of WiFi CSI phase sanitisation on the real captures: prints a Markdown table.

For each capture and each ``--phase`` method of ``wfm data import intel|nexmon``:

- ``persistence NMSE``: error of predicting each packet's complex CSI by the previous
  packet's, over all antennas and subcarriers (dB; 0 dB = as bad as predicting zero);
- ``amplitude NMSE``: the same on |CSI| (what amplitude-only tasks see; untouched by
  sanitisation, so it is the floor the complex NMSE can reach without phase noise);
- ``phase coherence``: mean over antennas and subcarriers of
  ``|mean_t exp(j (phase[t+1] - phase[t]))|``; 1 = packet-to-packet phase is stable,
  ~0 = random.

Usage (from the repository root)::

    python data/wifi_phase_report.py [../shared/datasets/wifi-csi]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from wfm.console import markdown_table
from wfm.data.errors import DataError
from wfm.data.loaders.phase import PHASE_METHODS, persistence_nmse_db, sanitize_phase
from wfm.data.loaders.wifi_csi import read_intel, read_nexmon

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "wifi-csi"


def phase_coherence(csi: np.ndarray) -> float:
    step = csi[1:] * np.conj(csi[:-1])
    unit = step / np.maximum(np.abs(step), 1e-30)
    return float(np.mean(np.abs(unit.mean(axis=0))))


def report(folder: Path) -> list[dict]:
    rows = []
    captures = [(p, read_intel(p)) for p in sorted(folder.glob("*.dat"))]
    captures += [(p, read_nexmon(p)) for p in sorted(folder.glob("*.pcap"))]
    for path, c in captures:
        T, A, K = c["csi"].shape
        for method in PHASE_METHODS:
            row = {"capture": path.name, "T x A x K": f"{T}x{A}x{K}", "phase": method}
            try:
                s = sanitize_phase(c["csi"], method, c["subcarriers"], c.get("conj_groups"))
            except DataError as e:
                rows.append({**row, "persistence NMSE dB": None, "amplitude NMSE dB": None,
                             "phase coherence": None, "note": str(e).split("(")[0].strip()})
                continue
            rows.append({**row, "persistence NMSE dB": round(persistence_nmse_db(s), 2),
                         "amplitude NMSE dB": round(persistence_nmse_db(np.abs(s)), 2),
                         "phase coherence": round(phase_coherence(s), 3), "note": ""})
    return rows


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if not folder.is_dir():
        sys.exit(f"error: {folder}: folder not found")
    print(markdown_table(report(folder)), end="")
