"""Every downstream task x mode x baseline at CPU scale, in one table: finetune/results.md
(wfm.tasks.results_table).

    python finetune/results.py            # the full CPU run (about 20-25 min on 2 cores)
    python finetune/results.py --quick    # a smoke run at toy sizes (a few minutes)
    python finetune/results.py --causal PATH_OR_HUB_ID   # + zero-shot rows of a causal model
"""

from wfm.tasks.results_table import main

if __name__ == "__main__":
    main()
