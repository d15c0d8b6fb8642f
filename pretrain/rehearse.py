"""CPU rehearsal of every shipped GPU config (DDP/FSDP over 2 gloo processes, bf16-mixed,
torch.compile, gradient accumulation, checkpoint + resume, the fine-tuning hand-over) at tiny
sizes; see wfm/training/rehearse.py.

    python pretrain/rehearse.py                    # every shipped config
    python pretrain/rehearse.py --only mae-tiny    # the CI size
    python pretrain/rehearse.py --list             # the overrides each config gets
"""

from wfm.training.rehearse import main

if __name__ == "__main__":
    main()
