"""Export trained checkpoints as self-contained model folders, and load them back.

An exported folder (``format_version`` 1) holds three files:

* ``model.safetensors``: the bare model's state dict (keys without Lightning's ``model.`` prefix);
* ``config.json``: ``format_version``, ``model_kind`` (``"mae"`` or ``"causal"``), the registry
  ``name``, the complete architecture kwargs (``arch``: everything ``MaskedAutoencoder`` or
  ``CausalForecaster`` needs, so an export does not depend on the registry's defaults staying
  the same; the causal model normalises each series itself, so no dataset statistics are
  stored), parameter count, library version, training step/epoch, the sha256 of
  ``model.safetensors``, optional metrics and ``training`` (the module's and data module's
  arguments the checkpoint holds: datasets, weights, optimiser, schedule);
* ``README.md``: a model card.

Saving, loading and pushing go through ``huggingface_hub.ModelHubMixin``: ``MaskedAutoencoder``
and ``CausalForecaster`` subclass :class:`wfm.hub_mixin.WfmHubMixin`, so ``model.save_pretrained(folder)``,
``model.push_to_hub(repo_id)`` and ``MaskedAutoencoder.from_pretrained(folder_or_repo_id,
revision=..., cache_dir=...)`` work, and ``wfm.from_pretrained`` is the same loader for whichever
kind ``config.json`` names. The mixin resolves a folder or a repo id to files (``hf_hub_download``,
which honours ``HF_HUB_OFFLINE``, the cache, ``revision`` and ``token``), creates the folder and
the repo and uploads; wfm does the rest itself: the sha256 of the weights recorded in the config,
the format version and model kind, safetensors only (nothing is ever unpickled: checkpoints are
read with ``torch.load(weights_only=True)``, weights with safetensors), bounds on the config, the
weights checked against the config on the meta device before anything is allocated, a
``strict=True`` load, and one-line :class:`CheckpointError` messages naming the file or repo.

The folder format, its checks and the mixin live in :mod:`wfm.hub_mixin`, below the model
modules (which import it) and importing none of them. This module sits on top: it imports the
models and holds the export of Lightning checkpoints, the generic ``from_pretrained``, the
upload of an exported folder and the ``wfm export`` command; nothing below it imports it. Its
names from :mod:`wfm.hub_mixin` (``read_config``, ``build_model``, ``mae_arch``...) stay
importable from here.

This module imports only the standard library and :mod:`wfm.hub_mixin` at the top so that
``wfm --help`` stays fast: ``huggingface_hub`` is imported, and the mixin built, on first use.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

# The folder format and its checks, re-exported: wfm.hub is where callers import them from.
from wfm.hub_mixin import (  # noqa: F401
    _HUB_ID,
    ARCH_LIMITS,
    CARD_NAME,
    CONFIG_NAME,
    FORMAT_VERSION,
    METADATA_KEYS,
    MODEL_CLASS_NAMES,
    MODEL_KINDS,
    WEIGHTS_NAME,
    _check_state_dict,
    _jsonable,
    build_model,
    causal_arch,
    check_arch,
    mae_arch,
    model_card,
    model_class,
    model_kind_of,
    read_config,
)
from wfm.safety import CheckpointError, is_url, load_checkpoint

# ---------------------------------------------------------------------------- export


def _load_lightning_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:

    # weights_only=True; the one way wfm reads a .ckpt. A URL (kept a str: Path() would turn
    # http://host into http:/host) is fetched only when WFM_ALLOW_DOWNLOADS=1, as for --ckpt_path.
    ckpt = load_checkpoint(ckpt_path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{ckpt_path}: not a Lightning checkpoint (needs state_dict and hyper_parameters)")
    return ckpt


def _source_name(ckpt_path: str | Path) -> str:
    """The checkpoint's file name, also for a URL (its path's last part; no host, query or fragment)."""
    if isinstance(ckpt_path, str):
        from urllib.parse import urlsplit

        return Path(urlsplit(ckpt_path).path).name
    return ckpt_path.name


def write_model_folder(model: Any, out_dir: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (``save_pretrained``: weights, ``config.json`` with ``metadata``, the card) as
    ``out_dir``, written to a temporary folder beside it and renamed into place, so that an
    interruption leaves nothing half-written. Replaces an existing ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tmp.chmod(0o755)
    try:
        # ModelHubMixin.save_pretrained: weights and config.json (WfmHubMixin._save_pretrained),
        # then the card (WfmHubMixin.generate_model_card), into the temporary folder.
        model.save_pretrained(tmp, config=metadata, model_card_kwargs={"title": out_dir.name})
        for f in tmp.iterdir():
            f.chmod(0o644)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        from wfm.io import swap_folder_into_place

        swap_folder_into_place(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path, *, metrics: dict[str, Any] | None = None,
                      overwrite: bool = False, last: bool = False) -> Path:
    """Export a Lightning ``MAEPretrainModule`` or ``CausalPretrainModule`` checkpoint to a model folder.

    Returns the folder. A fine-tuning run with held-out selection (``CausalPretrainModule(select=)``)
    carries the weights its validation windows vouched for (``wfm_kept``): those are exported, and
    ``config.json`` records their step (``kept_step``), unless ``last`` asks for the last step's.

    Everything is written to a temporary folder beside ``out_dir`` and renamed into place, so an
    interrupted export leaves nothing half-written. An existing non-empty ``out_dir`` is an
    error unless ``overwrite``.
    """
    # A URL stays a string (Path() collapses its "//"); it goes through wfm.safety's download,
    # which refuses unless WFM_ALLOW_DOWNLOADS=1, as for --ckpt_path and init_from.
    url = str(ckpt_path) if is_url(str(ckpt_path)) else None
    ckpt_path, out_dir = (url if url else Path(ckpt_path)), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise CheckpointError(f"{out_dir}: already exists and is not empty (pass overwrite / --force)")
    ckpt = _load_lightning_checkpoint(ckpt_path)
    hp = dict(ckpt["hyper_parameters"])
    name = hp.get("model", "mae_tiny")
    from wfm.models.registry import create_model, list_models

    if name not in list_models():
        raise CheckpointError(f"{ckpt_path}: unknown model {name!r} in hyper_parameters")
    kind = model_kind_of(name)
    if kind == "causal":
        overrides = dict(hp.get("model_kwargs") or {})
        overrides.update({k: hp[k] for k in ("patch_len", "quantiles", "max_context") if hp.get(k) is not None})
        if "quantiles" in overrides:
            overrides["quantiles"] = tuple(overrides["quantiles"])
    else:
        overrides = {k: hp[k] for k in ("patch_size", "attention", "decoder_dim", "sample_norm", "norm_pix_loss",
                                         "prior", "drop_path_rate", "layer_scale") if k in hp}
        overrides.update(hp.get("model_kwargs") or {})  # the inference rules a config sets (guard_prior ...)
        if "patch_size" in overrides:
            overrides["patch_size"] = tuple(overrides["patch_size"])
    if ckpt.get("wfm_arch"):  # fine-tuning runs record the architecture they started from
        from wfm.models.causal import CausalForecaster
        from wfm.models.mae import MaskedAutoencoder

        arch = dict(ckpt["wfm_arch"])
        for k in ("patch_size", "quantiles"):
            if k in arch:
                arch[k] = tuple(arch[k])
        model = (CausalForecaster if kind == "causal" else MaskedAutoencoder)(**arch)
    else:
        model = create_model(name, **overrides)
    kept = None if last else ckpt.get("wfm_kept")
    source = kept["state_dict"] if kept else ckpt["state_dict"]
    state = {k.removeprefix("model."): v for k, v in source.items() if k.startswith("model.")}
    state = {k.replace("._orig_mod.", "."): v for k, v in state.items()}  # torch.compile wrappers
    from wfm.nn.lora import fold_lora_state_dict

    from wfm.nn.blocks import rename_legacy_mlp_keys

    state = rename_legacy_mlp_keys(fold_lora_state_dict(state))  # LoRA fine-tunes export as the plain model
    _check_state_dict(model, state, str(ckpt_path))
    model.load_state_dict(state, strict=True)
    metadata = {
        "name": name,
        "global_step": int(ckpt.get("global_step", 0)),
        "epoch": int(ckpt.get("epoch", 0)),
        "source_checkpoint": _source_name(ckpt_path),
        **({"kept_step": int(kept["step"]), "selection": f"{kept['select']} over {int(kept['checks'])} validation checks"}
           if kept else {}),
        "metrics": dict(metrics or {}),
        # How it was trained: the LightningModule's and DataModule's arguments as the
        # checkpoint holds them (datasets, mixture weights, kinds, optimiser, schedule).
        "training": {"module": _jsonable(hp), "data": _jsonable(dict(ckpt.get("datamodule_hyper_parameters") or {}))},
    }

    write_model_folder(model, out_dir, metadata)
    return out_dir


# ---------------------------------------------------------------------------- load and push


_LOADER: type | None = None


def _loader() -> type:
    """The loader behind ``from_pretrained`` (a :class:`WfmHubMixin` without a ``model_kind``:
    it returns whichever model ``config.json`` names), built on first use."""
    global _LOADER
    if _LOADER is None:
        from wfm.hub_mixin import WfmHubMixin

        class PretrainedModel(WfmHubMixin):
            """The loader behind ``wfm.from_pretrained``: returns whichever model ``config.json`` names."""

        PretrainedModel.__qualname__ = "PretrainedModel"
        _LOADER = PretrainedModel
    return _LOADER


def __getattr__(name: str) -> Any:
    if name == "WfmHubMixin":  # re-exported (it lives in wfm.hub_mixin, below the models)
        from wfm.hub_mixin import WfmHubMixin

        return WfmHubMixin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def from_pretrained(path_or_hub_id: str | Path, *, revision: str | None = None,
                    cache_dir: str | Path | None = None, verify: bool = True):
    """Load an exported model from a folder or a Hugging Face Hub repo id, in eval mode on CPU.

    The model kind (MAE or causal) comes from ``config.json``; ``MaskedAutoencoder.from_pretrained``
    and ``CausalForecaster.from_pretrained`` are the same loader, refusing the other kind.
    ``verify`` checks the sha256 of ``model.safetensors`` against ``config.json`` first.
    Raises :class:`CheckpointError` (a ``ValueError``) naming what is wrong.
    """
    return _loader().from_pretrained(path_or_hub_id, revision=revision, cache_dir=cache_dir, verify=verify)


def load_weights_into(model: Any, path_or_hub_id: str | Path) -> Any:
    """Copy the weights of an exported model (``from_pretrained``, with all its checks) into
    ``model``, which must have exactly the same parameters and shapes; returns ``model``.

    Raises :class:`CheckpointError` naming the source and the first mismatch."""
    source = from_pretrained(path_or_hub_id)
    _check_state_dict(model, source.state_dict(), f"{path_or_hub_id} (init_weights)")
    model.load_state_dict(source.state_dict(), strict=True)
    return model


def push_to_hub(local_dir: str | Path, repo_id: str, token: str | None = None, *, private: bool = False,
                commit_message: str | None = None) -> str:
    """Upload an exported folder to the Hugging Face Hub as it is (creates the repo if needed);
    returns its URL.

    The folder must pass every check of ``from_pretrained`` first (sha256, format version,
    architecture, strict load), so what is published loads. ``token`` defaults to the logged-in
    one (``hf auth login`` / ``HF_TOKEN``). A model in memory pushes with ``model.push_to_hub``.
    """
    from huggingface_hub import HfApi

    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise CheckpointError(f"{local_dir}: no such folder (push_to_hub takes an exported model folder)")
    from_pretrained(local_dir)
    config = read_config(local_dir)
    # Not ModelHubMixin.push_to_hub: that saves the model in memory to a temporary folder and
    # uploads that, so the card (with any edit to it) would be regenerated and an older export's
    # weights re-keyed (a new sha256, no longer the one published in checkpoints.md). The
    # checked folder goes up byte for byte, with the same two calls the mixin makes.
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(local_dir),
                      allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME],
                      commit_message=commit_message or f"Upload {config['name']} (wfm {config['wfm_version']})")
    return f"https://huggingface.co/{repo_id}"


# ---------------------------------------------------------------------------- CLI


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a Lightning checkpoint to a model folder (safetensors + config + card)")
    p.add_argument("ckpt", help="Lightning .ckpt written by wfm pretrain")
    p.add_argument("out_dir", help="output folder (created; loads with wfm.from_pretrained)")
    p.add_argument("--metric", action="append", default=[], metavar="KEY=VALUE",
                   help="record a metric in config.json and the model card (repeatable)")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT_DIR")
    p.add_argument("--last", action="store_true",
                   help="export the last step's weights even where the run kept an earlier step on held-out data")
    p.set_defaults(func=cmd_export)


def _parse_metrics(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CheckpointError(f"--metric {item!r}: expected KEY=VALUE")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def cmd_export(args: argparse.Namespace) -> None:
    from wfm.console import console, print_table

    out = export_checkpoint(args.ckpt, args.out_dir, metrics=_parse_metrics(args.metric), overwrite=args.force,
                            last=args.last)
    config = read_config(out)
    print_table([{"name": config["name"], "kind": config["model_kind"], "params": config["num_params"],
                  "patch": config["patch_size"], "attention": config["attention"],
                  "step": config["global_step"], "epoch": config["epoch"],
                  **({"weights of step": config["kept_step"]} if "kept_step" in config else {})}], title="exported model")
    print_table([{"file": str(out / f), "bytes": (out / f).stat().st_size}
                 for f in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)], title="files written")
    console.print(f"sha256 {config['sha256']}  load with: wfm.from_pretrained({str(out)!r})")
