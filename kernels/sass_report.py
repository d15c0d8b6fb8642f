"""Static resource report of the fused kernels for an H100 (sm_90), without a GPU (wfm.kernels.sass_report).

    PYTHONPATH=. python kernels/sass_report.py --out sass.json              # every config
    PYTHONPATH=. python kernels/sass_report.py --head-dims 64 --kernels fwd  # a subset
"""

from wfm.kernels.sass_report import main

if __name__ == "__main__":
    main()
