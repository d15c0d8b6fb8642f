"""``wfm finetune``: adapt a foundation model to a downstream CSI task with ``LightningCLI``.

    wfm finetune --config finetune/los-nlos.yaml --model.init_from runs/mae-tiny-cpu/checkpoints/last.ckpt
    wfm finetune --config finetune/channel-prediction-time.yaml --model.init_from user/wfm-mae-base \\
        --model.mode lora --data.train_fraction 0.1 --data.datasets '[$WFM_DATA/my-csi]'

Model = ``wfm.tasks.finetune_module.FinetuneModule`` (``init_from``: exported folder, hub id,
``.ckpt``, ``scratch:mae_tiny``, or ``baseline:mlp``; ``mode``: zero-shot, linear-probe, lora,
full), data = ``TaskDataModule`` (``task`` is given once, under ``data``, and linked to the
model). It trains (nothing for zero-shot), tests on the test split, and writes
``metrics.json`` and ``results.md`` to ``trainer.default_root_dir``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from pytorch_lightning.cli import LightningCLI

from wfm.tasks.finetune_module import FinetuneModule, TaskDataModule


class FinetuneCLI(LightningCLI):
    """Task given once (``data.task``) and linked to the model; dataset paths expanded."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.task", "model.task")

    def before_instantiate_classes(self) -> None:
        from wfm.pretrain import expand_path

        data = self.config.get("data")
        if data is not None and data.get("datasets"):
            data["datasets"] = [expand_path(str(p)) for p in data["datasets"]]


def main(argv: list[str] | None = None) -> dict:
    """Run ``wfm finetune`` with ``argv``; returns the test metrics."""
    from wfm.console import console, fail, markdown_table, print_table, write_json
    from wfm.data.errors import DataError
    from wfm.hub import CheckpointError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
            cli = FinetuneCLI(FinetuneModule, TaskDataModule, run=False, args=args,
                              save_config_kwargs={"overwrite": True}, parser_kwargs={"prog": "wfm finetune"})
        model, dm, trainer = cli.model, cli.datamodule, cli.trainer
        if model.hparams.mode != "zero-shot" and trainer.max_steps != 0:
            trainer.fit(model, datamodule=dm)
        else:
            dm.setup()
            model.build(dm.info)
        trainer.test(model, datamodule=dm, verbose=False)
    except (DataError, CheckpointError) as e:
        fail(str(e))
    row = {"task": dm.task.name, "model": model.hparams.init_from, "mode": model.hparams.mode,
           "train_fraction": dm.train_fraction, "train_samples": dm.info["train_samples"],
           "steps": int(trainer.global_step), "trainable_params": model.trainable_parameters(),
           **{k: v for k, v in model.test_results.items() if not isinstance(v, list)}}
    out = Path(trainer.default_root_dir)
    write_json(out / "metrics.json", {**row, **model.test_results})
    (out / "results.md").write_text(f"# {dm.task.name}\n\n" + markdown_table([row]))
    print_table([row], title=f"{dm.task.name}: test split")
    console.print(f"wrote {out / 'metrics.json'} and {out / 'results.md'}")
    return {**row, **model.test_results}


if __name__ == "__main__":
    main()
