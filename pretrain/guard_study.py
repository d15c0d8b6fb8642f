"""Per-window classical rules, how noisy and how smooth across its band each CSI view is, its receive filter's phase, and the MAE guard's reversion margin
(``wfm.tasks.guard_study``): the tables of pretrain/studies.md, "The MAE's guard" and "Still links
with per-packet gain jitter".

    python pretrain/guard_study.py                                   # classical rules and noise, real data
    python pretrain/guard_study.py --data $WFM_DATA/wifi-jitter-intel-5p2-6x1-k30-t16   # and generated CSI
    python pretrain/guard_study.py --data $WFM_DATA/zs-wifi-band-intel-5p2-6x1-k30-t16   # the band table of data/README.md
    python pretrain/guard_study.py --model checkpoints/mae-tiny-catalog-cpu \
        --data $WFM_DATA/zs-cdl-d-1p9-4x8-k64-t24 --data $WFM_DATA/zs-cdl-e-4p0-2x4-k64-t16 \
        --data $WFM_DATA/zs-tdl-c-6p7-2x8-k128-t24                   # and the margins
    python pretrain/guard_study.py --model checkpoints/mae-tiny-catalog-cpu \
        --correction-data $WFM_DATA/zs-cdl-d-1p9-4x8-k64-t24 ...      # only the correction-scale rules
    python pretrain/guard_study.py --model checkpoints/mae-tiny-catalog-cpu --forced-prior \
        --data $WFM_DATA/zs-wifi-filter-intel-5p2-6x1-k30-t16          # only each prior forced, correction off and on
    python pretrain/guard_study.py --model checkpoints/mae-tiny-catalog-cpu --calibration   # guard calibrated on each capture's first half
    python pretrain/guard_study.py --model checkpoints/mae-tiny-catalog-cpu \
        --white-limit $WFM_DATA/zs-cdl-e-4p0-2x4-k64-t16 ...            # only white_limit off and on, four window shapes
    python pretrain/guard_study.py --model checkpoints/mae-tiny-catalog-cpu --prior-shrink 0 --prior-shrink 1 \
        --data $WFM_DATA/zs-cdl-d-1p9-4x8-k64-t24 ...                  # only the prior's shrink, off and on
"""

from wfm.tasks.guard_study import main

if __name__ == "__main__":
    main()
