"""Forecast error against context length on real series (wfm.tasks.context_sweep).

    PYTHONPATH=. python pretrain/context_sweep.py --model checkpoints/causal-tiny-catalog-cpu \
        --model prior-mix [--data-dir DIR] [--out runs/context-sweep]
"""

from wfm.tasks.context_sweep import main

if __name__ == "__main__":
    main()
