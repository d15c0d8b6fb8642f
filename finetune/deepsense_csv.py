"""Write the DeepSense 6G beam sweeps as one long CSV table (a trajectory id, a frame, 64 beam powers
and the user's distance in m), the layout ``wfm forecast --id-column trajectory`` reads.

    PYTHONPATH=. python finetune/deepsense_csv.py ../shared/datasets/deepsense6g-beam deepsense_beams.csv
    wfm forecast checkpoints/causal-tiny-catalog-cpu deepsense_beams.csv --interval 0.1 --id-column trajectory \\
        --columns $(seq -s' ' -f 'beam%g' 0 63) --context 16 --horizon 4 --checks 3 --channels ordered --out fc
    wfm forecast checkpoints/causal-tiny-catalog-cpu deepsense_beams.csv --interval 0.1 --id-column trajectory \
        --columns distance --context 16 --horizon 4 --checks 3 --ranges --out fc-distance

Trajectories shorter than ``--min-frames`` (28: 16 of context and three checks of 4) are left out.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from wfm.data.loaders.deepsense import NUM_BEAMS, load_scenario, scenarios_in


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="the DeepSense 6G folder (scenarioN_unit1_pwr_60ghz_*.npy, ...)")
    ap.add_argument("out", type=Path, help="the CSV to write")
    ap.add_argument("--min-frames", type=int, default=28)
    args = ap.parse_args(argv)
    kept = 0
    tmp = args.out.with_name(args.out.name + ".part")  # never a half-written table under the final name
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trajectory", "frame", *[f"beam{j}" for j in range(NUM_BEAMS)], "distance"])
        for s in scenarios_in(args.folder):
            d = load_scenario(args.folder, s)
            for sid, power, dist in zip(d["sequence_id"], d["beam_power"], d["distance"]):
                if len(power) < args.min_frames:
                    continue
                kept += 1
                w.writerows([f"s{s}-{sid}", i, *(f"{v:.6g}" for v in row), f"{m:.6g}"]
                            for i, (row, m) in enumerate(zip(power, dist)))
    tmp.replace(args.out)
    print(f"wrote {args.out}: {kept} trajectories of at least {args.min_frames} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
