"""Training throughput of the MAE on one GPU: samples/s and MFU per configuration (wfm.training.throughput_bench).

    python pretrain/throughput.py                       # MAE-Base, [24, 32, 64] CSI, batch 128
    python pretrain/throughput.py --model mae_large --batch-size 64
    python pretrain/throughput.py --device cpu --tiny   # smoke test of the script itself
"""

from wfm.training.throughput_bench import main

if __name__ == "__main__":
    main()
