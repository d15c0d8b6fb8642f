"""The causal multi-task forecaster measured: zero-shot, fine-tuning, multi-task vs single-kind,
real data, resource allocation (wfm.tasks.causal_report); prints Markdown, writes JSON.

    PYTHONPATH=. python pretrain/causal_report.py [--quick] [--out DIR] [--data-dir DIR]
"""

from wfm.tasks.causal_report import main

if __name__ == "__main__":
    main()
