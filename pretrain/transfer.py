"""Pretrained vs scratch on cross-dataset splits (``wfm.tasks.transfer``): the real data, and
generated CSI folders (the source's train split, the target's test split).

    PYTHONPATH=. python pretrain/transfer.py --model checkpoints/causal-tiny-anchored-cpu \
        --pair "Intel 5300|csi amplitude" "Nexmon BCM4339|csi amplitude" --steps 100 --seeds 3 --out transfer.json
    PYTHONPATH=. python pretrain/transfer.py --model checkpoints/mae-tiny-catalog-cpu \
        --pair $WFM_DATA/zs-cdl-e-4p0-2x4-k64-t16 $WFM_DATA/zs-cdl-d-1p9-4x8-k64-t24 --steps 60 --batch-size 8
    PYTHONPATH=. python pretrain/transfer.py --model checkpoints/mae-tiny-catalog-cpu \
        --pair "$WFM_DATA/zs-wifi-filter-intel-5p2-6x1-k30-t16|frequency" "Intel 5300|csi complex, frequency" \
        --steps 60 --batch-size 8          # in frequency: the upper half of the subcarriers from the lower

Prints a Markdown table (mean ± std over seeds, per-window NMSE in dB on the target) and
writes every seed's numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.progress import Progress

import wfm
from wfm.tasks.real_data import default_datasets_dir
from wfm.tasks.significance import SELECT
from wfm.tasks.transfer import TransferConfig, markdown, run_transfer


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="shipped model folder (MAE or causal)")
    ap.add_argument("--pair", nargs=2, action="append", required=True, metavar=("SOURCE", "TARGET"),
                    help='"NAME|VIEW" of the fine-tuning and the test dataset, or a generated CSI folder (repeatable)')
    ap.add_argument("--datasets", default=str(default_datasets_dir()))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--val-fraction", type=float, default=0.2,
                    help="held-out share of the source windows (the last in time) that picks the step kept; 0: the last step")
    ap.add_argument("--eval-every", type=int, default=10, help="steps between held-out checks")
    ap.add_argument("--select", choices=SELECT, default="significant",
                    help="a checked step replaces the kept weights if it beats them beyond noise on the held-out "
                         "windows (significant), by any margin (best), or always (last: no selection)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    model = wfm.from_pretrained(args.model)
    kind = "causal" if hasattr(model, "forecast") else "mae"
    cfg = TransferConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seeds=args.seeds,
                         val_fraction=args.val_fraction, eval_every=args.eval_every, select=args.select)
    total = len(args.pair) * 2 * args.seeds * args.steps
    with Progress() as bar:
        task = bar.add_task("fine-tuning", total=total)
        rows = run_transfer(model, kind, [tuple(p) for p in args.pair], args.datasets, cfg,
                            progress=lambda: bar.advance(task))
    print(markdown(rows))
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "config": vars(cfg), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
