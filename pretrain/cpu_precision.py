"""fp32 vs bf16 autocast vs torch.compile for CPU pretraining, in one run (wfm.training.precision_bench).

    python pretrain/cpu_precision.py            # both shipped CPU models at their pretraining shapes
    python pretrain/cpu_precision.py --quick    # a smoke test
"""

from wfm.training.precision_bench import main

if __name__ == "__main__":
    main()
