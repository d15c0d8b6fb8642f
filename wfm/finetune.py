"""``wfm finetune``: adapt a foundation model to a downstream CSI task with ``LightningCLI``.

    wfm finetune --config finetune/los-nlos.yaml --model.init_from runs/mae-tiny-cpu/checkpoints/last.ckpt
    wfm finetune --config finetune/channel-prediction-time.yaml --model.init_from user/wfm-mae-base \\
        --model.mode lora --data.train_fraction 0.1 --data.datasets '[$WFM_DATA/my-csi]'
    wfm finetune --config finetune/los-nlos.yaml --model.init_from checkpoints/mae-tiny-catalog-cpu \\
        --train $WFM_DATA/site-a $WFM_DATA/site-b --test $WFM_DATA/site-c

Model = ``wfm.tasks.finetune_module.FinetuneModule`` (``init_from``: exported folder, hub id,
``.ckpt``, ``scratch:mae_tiny``, or ``baseline:mlp``; ``mode``: zero-shot, linear-probe, lora,
full), data = ``TaskDataModule`` (``task`` is given once, under ``data``, and linked to the
model). It trains (nothing for zero-shot), tests on the test split, and writes
``metrics.json`` and ``results.md`` to ``trainer.default_root_dir``.

``--train DIR ... --test DIR ...`` (read here, before LightningCLI) train on some folders and
test on every sample of others: they become ``--data.train_datasets`` and
``--data.test_datasets`` (the training folders' last ``val_fraction`` validates) and replace
the config's ``data.datasets``.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from pytorch_lightning.cli import LightningCLI

from wfm.console import console, fail, markdown_table, print_table, write_json
from wfm.pretrain import (_PHASE, check_parsed, check_schedule, config_paths, expand_path, fail_on_input_error,
                          harden_trainer, parser_kwargs, prepare_run)
from wfm.pretrain import main as pretrain_main
from wfm.safety import InputError, check_yaml_file
from wfm.tasks.finetune_module import FinetuneModule, TaskDataModule


class FinetuneCLI(LightningCLI):
    """Task given once (``data.task``) and linked to the model; dataset paths expanded."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.task", "model.task")

    def before_instantiate_classes(self) -> None:
        prepare_run(self, self.config)
        check_schedule(self.config.get("model"))
        data = self.config.get("data")
        for key in ("datasets", "train_datasets", "test_datasets"):
            if data is not None and data.get(key):
                data[key] = [expand_path(str(p)) for p in data[key]]
        frac = data.get("train_fraction") if data is not None else None
        if frac is not None and (isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac <= 1):
            raise InputError(f"data.train_fraction = {frac!r}: must be in (0, 1] (1 = the full training split)")

    def after_instantiate_classes(self) -> None:
        harden_trainer(self.trainer)

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        check_parsed(self.config)


def _names_its_classes(args: list[str]) -> bool:
    """Whether the ``--config`` gives its model by ``class_path`` (the series configs, which
    fine-tune a causal forecaster with the pretraining system) rather than ``FinetuneModule``'s
    plain arguments (the CSI tasks)."""
    for path in config_paths(args):
        if path and Path(path).is_file():
            doc = check_yaml_file(path)  # no aliases, bounded size: refused before jsonargparse reads it
            model = doc.get("model") if isinstance(doc, dict) else None
            if isinstance(model, dict) and "class_path" in model:
                return True
    return False


def train_test_args(args: list[str]) -> list[str]:
    """``--train A B --test C`` -> ``--data.train_datasets=["A", "B"] --data.test_datasets=["C"]
    --data.datasets=null`` (module doc); other arguments unchanged."""
    out: list[str] = []
    found: dict[str, list[str]] = {"--train": [], "--test": []}
    current: list[str] | None = None
    for a in args:
        flag, eq, value = a.partition("=")
        if flag in found:
            current = found[flag]
            if eq:
                current.append(value)
            continue
        if current is not None and not a.startswith("-"):
            current.append(a)
            continue
        current = None
        out.append(a)
    if not found["--train"] and not found["--test"]:
        return out
    if not found["--train"] or not found["--test"]:
        raise InputError("--train and --test go together: wfm finetune ... --train DIR [DIR ...] --test DIR [DIR ...]")
    return out + [f"--data.train_datasets={json.dumps(found['--train'])}",
                  f"--data.test_datasets={json.dumps(found['--test'])}", "--data.datasets=null"]


def main(argv: list[str] | None = None) -> dict:
    """Run ``wfm finetune`` with ``argv``; returns the test metrics (CSI tasks).

    A config whose model is given by ``class_path`` (``finetune/distance-forecast.yaml``: the
    causal forecaster with ``init_from`` and ``mode``) runs through ``wfm pretrain``'s CLI
    instead; score the result with ``wfm export`` and ``wfm evaluate``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        split_args = train_test_args(args)
        named = _names_its_classes(args)
    except ValueError as e:
        fail_on_input_error(e)
        raise
    if named and split_args != args:
        fail("--train / --test: the series fine-tuning configs take --data.datasets; score the result on other "
             "folders with wfm evaluate --train DIR --test DIR")
    args = split_args
    if named:
        pretrain_main(args)
        return {}
    _PHASE["instantiating"] = False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
            cli = FinetuneCLI(FinetuneModule, TaskDataModule, run=False, args=args,
                              save_config_kwargs={"overwrite": True}, parser_kwargs=parser_kwargs("wfm finetune"))
        model, dm, trainer = cli.model, cli.datamodule, cli.trainer
        if model.hparams.mode != "zero-shot" and trainer.max_steps != 0:
            trainer.fit(model, datamodule=dm)
        else:
            dm.setup()
            model.build(dm.info)
        trainer.test(model, datamodule=dm, verbose=False)
    except Exception as e:
        # Also what jsonargparse wraps while building the module and data module.
        fail_on_input_error(e)
        raise
    row = {"task": dm.task.name, "model": model.hparams.init_from, "mode": model.hparams.mode,
           "train_fraction": dm.train_fraction, "train_samples": dm.info["train_samples"],
           "steps": int(trainer.global_step), "kept_step": model.selection.get("kept_step", int(trainer.global_step)),
           "select": model.hparams.select, "trainable_params": model.trainable_parameters(),
           **{k: v for k, v in model.test_results.items() if not isinstance(v, list)}}
    out = Path(trainer.default_root_dir)
    write_json(out / "metrics.json", {**row, **model.test_results})
    (out / "results.md").write_text(f"# {dm.task.name}\n\n" + markdown_table([row]))
    print_table([row], title=f"{dm.task.name}: test split")
    console.print(f"wrote {out / 'metrics.json'} and {out / 'results.md'}")
    return {**row, **model.test_results}


if __name__ == "__main__":
    main()
