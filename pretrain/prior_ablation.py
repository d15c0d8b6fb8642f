"""With and without the prior (``wfm.tasks.prior_ablation``): prints the Markdown table of pretrain/studies.md.

    PYTHONPATH=. python pretrain/prior_ablation.py --model checkpoints/mae-tiny-catalog-cpu \
        --compare old=/tmp/mae-old --data $WFM_DATA/zs-cdl-d-1p9-4x8-k64-t24 --out ablation.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import wfm
from wfm.tasks.prior_ablation import correction_off, generated_rows, markdown, real_rows
from wfm.tasks.real_data import default_datasets_dir


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a model folder with a classical prior (MAE or causal)")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=FOLDER",
                    help="another model of the same kind to score beside it (e.g. one trained without a prior)")
    ap.add_argument("--data", action="append", default=[], help="generated CSI dataset folders (MAE only)")
    ap.add_argument("--datasets", default=str(default_datasets_dir()), help="real datasets folder")
    ap.add_argument("--independent-channels", action="store_true",
                    help="forecast every channel of a window on its own (default: the window's channels pool evidence)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    model = wfm.from_pretrained(args.model)
    kind = "causal" if hasattr(model, "forecast") else "mae"
    models = {"shipped": model, "correction off": correction_off(model)}
    for spec in args.compare:
        name, _, folder = spec.partition("=")
        models[name] = wfm.from_pretrained(folder)
    rows = []
    if kind == "mae":
        for root in args.data:
            for axis in ("time", "frequency"):
                rows += generated_rows(models, root, axis)
    if Path(args.datasets).is_dir():
        rows += real_rows(models, kind, args.datasets, not args.independent_channels)
    table = markdown(rows, list(models))
    print(table)
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "compare": args.compare, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
