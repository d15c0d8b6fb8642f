"""The model-folder format and :class:`WfmHubMixin`, the base of wfm's model classes.

``MaskedAutoencoder`` and ``CausalForecaster`` subclass :class:`WfmHubMixin` (huggingface_hub's
``ModelHubMixin`` with wfm's checks), so ``model.save_pretrained(folder)``,
``model.push_to_hub(repo_id)`` and ``MaskedAutoencoder.from_pretrained(folder_or_repo_id,
revision=..., cache_dir=...)`` work. This module holds what the mixin needs: reading and
checking ``config.json`` (format version, model kind, bounds on the architecture), the weights
checked against the config on the meta device and by key and shape, the sha256 of
``model.safetensors``, writing a folder and its model card. ``wfm.hub`` builds on it: export of
Lightning checkpoints, ``wfm.from_pretrained`` (whichever kind ``config.json`` names), uploading
an exported folder, the ``wfm export`` command.

It sits below the model modules and imports none of them (only the registry, inside
functions), so the models can subclass the mixin without an import circle. Each model class
declares its ``model_kind`` (``"mae"``, ``"causal"``); defining the class records it in
:data:`MODEL_CLASSES`, which is how a config's kind finds its class here.

Only the standard library is imported at the top so that ``import wfm.hub`` (and ``wfm --help``)
stays fast: ``huggingface_hub`` is imported, and :class:`WfmHubMixin` built, on first use.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from wfm.safety import CheckpointError

FORMAT_VERSION = 1
MODEL_KINDS = ("mae", "causal")
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: The class of each model kind, by name (for messages; needs no model imported).
MODEL_CLASS_NAMES = {"mae": "MaskedAutoencoder", "causal": "CausalForecaster"}
#: The class of each model kind: a :class:`WfmHubMixin` subclass declaring ``model_kind``
#: records itself here when it is defined (see :func:`model_class`).
MODEL_CLASSES: dict[str, type] = {}


# ---------------------------------------------------------------------------- helpers


def _first(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def mae_arch(model: Any) -> dict[str, Any]:
    """The complete ``MaskedAutoencoder`` kwargs of a built model (read back from its modules)."""
    def heads(blocks: Any) -> int | None:
        return int(blocks[0].attn.num_heads) if len(blocks) else None

    return {
        "patch_size": list(model.patch_size),
        "dim": int(model.dim),
        "depth": len(model.blocks),
        "num_heads": heads(model.blocks),
        "mlp_ratio": float(model.mlp_ratio),
        "decoder_dim": int(model.decoder_dim),
        "decoder_depth": len(model.decoder_blocks),
        "decoder_num_heads": heads(model.decoder_blocks),
        "attention": model.attention,
        "sample_norm": bool(model.sample_norm),
        "norm_pix_loss": bool(model.norm_pix_loss),
        "prior": str(getattr(model, "prior", "none")),
        "drop_path_rate": float(getattr(model, "drop_path_rate", 0.0)),
        "layer_scale": getattr(model, "layer_scale", None),
        # Only where calibrated: configs without it (every release so far) keep the backtest's choice.
        **({"guard_prior": dict(model.guard_prior)} if getattr(model, "guard_prior", None) else {}),
        **({"white_limit": float(model.white_limit)} if getattr(model, "white_limit", None) is not None else {}),
        **({"white_dips": True} if getattr(model, "white_dips", False) else {}),
        **({"guard_origins": list(model.guard_origins)} if getattr(model, "guard_origins", None) else {}),
        **({"drift_ar": True} if getattr(model, "drift_ar", False) else {}),
        **({"drift_shape": True} if getattr(model, "drift_shape", False) else {}),
    }


def causal_arch(model: Any) -> dict[str, Any]:
    """The complete ``CausalForecaster`` kwargs of a built model (read back from its modules)."""
    return {
        "patch_len": int(model.patch_len),
        "dim": int(model.dim),
        "depth": len(model.blocks),
        "num_heads": int(model.blocks[0].attn.num_heads) if len(model.blocks) else 1,
        "mlp_ratio": float(model.mlp_ratio),
        "quantiles": list(model.quantile_levels),
        "horizon_patches": int(model.horizon_patches),
        "max_context": int(model.max_context),
        "interval_freqs": int(model.interval_freqs),
        "attention": model.attention,
        "eps": float(model.eps),
        # Absent from configs written before the classical-prior mix: they load as prior="trend".
        **({} if getattr(model, "prior", "trend") == "trend" else {
            "prior": model.prior, "estimators": list(model.estimators), "backtest_weight": model.backtest_init,
            "coarse_len": int(model.coarse_len), "max_coarse": int(model.max_coarse),
            "backtest_window": int(model.backtest_window), "guard": bool(model.guard),
            **({} if getattr(model, "backtest_origins", "patch") == "patch" else {"backtest_origins": model.backtest_origins}),
            **({} if getattr(model, "guard_weight", None) is None else {"guard_weight": model.guard_weight}),
            **({} if getattr(model, "evidence_power_init", None) is None else {"evidence_power": model.evidence_power_init}),
            **({} if not getattr(model, "check_origins", 0) else {"check_origins": int(model.check_origins)}),
            **({} if getattr(model, "white_limit", None) is None else {"white_limit": float(model.white_limit)}),
            **({} if not getattr(model, "white_shrink", False) else {"white_shrink": True}),
            **({} if not getattr(model, "white_dips", False) else {"white_dips": True}),
            **({} if not getattr(model, "white_scale", False) else {"white_scale": True}),
            **({} if getattr(model, "check_test", "difference") == "difference" else {"check_test": model.check_test}),
            **({} if not getattr(model, "check_ar", False) else {"check_ar": True}),
            **({} if not getattr(model, "ar_blend", False) else {"ar_blend": True}),
            **({} if not getattr(model, "ar_season", False) else {"ar_season": True}),
            **({} if not getattr(model, "check_drift", False) else {"check_drift": True}),
            **({} if getattr(model, "drift_share", "half") == "half" else {"drift_share": model.drift_share}),
            **({} if getattr(model, "ar_share", "half") == "half" else {"ar_share": model.ar_share}),
            **({} if not getattr(model, "check_mean", False) else {"check_mean": True}),
            **({} if not getattr(model, "check_season", False) else {"check_season": True}),
            **({} if getattr(model, "season_share", "half") == "half" else {"season_share": model.season_share}),
            **({} if not getattr(model, "season_mean", False) else {"season_mean": True}),
            **({} if not getattr(model, "season_drift", False) else {"season_drift": True}),
            **({} if not getattr(model, "check_trend", False) else {"check_trend": True}),
            **({} if getattr(model, "trend_share", "half") == "half" else {"trend_share": model.trend_share}),
            **({} if not getattr(model, "trend_local", False) else {"trend_local": True}),
            **({} if not getattr(model, "check_range", False) else {"check_range": True}),
            **({} if getattr(model, "range_share", "half") == "half" else {"range_share": model.range_share}),
            **({} if not getattr(model, "check_last", False) else {"check_last": True}),
            **({} if getattr(model, "last_share", "half") == "half" else {"last_share": model.last_share}),
            **({} if not getattr(model, "check_ses", False) else {"check_ses": True}),
            **({} if getattr(model, "ses_share", "half") == "half" else {"ses_share": model.ses_share}),
            **({} if not getattr(model, "ar_level", False) else {"ar_level": True}),
            **({} if not getattr(model, "pool_by_power", False) else {"pool_by_power": True}),
            **({} if not getattr(model, "box_cox", False) else {"box_cox": True}),
            **({} if not getattr(model, "raw_paths", False) else {"raw_paths": True}),
            **({} if not getattr(model, "box_cox_check", False) else {"box_cox_check": True}),
            **({} if not getattr(model, "box_cox_white", False) else {"box_cox_white": True}),
            **({} if not getattr(model, "ar_given", False) else {"ar_given": True}),
            **({} if not getattr(model, "level_shift", False) else {"level_shift": True}),
            **({} if not getattr(model, "white_level", False) else {"white_level": True}),
            **({} if not getattr(model, "white_whole_season", False) else {"white_whole_season": True}),
            **({} if not getattr(model, "dip_level", False) else {"dip_level": True}),
            **({} if not getattr(model, "short_checks", False) else {"short_checks": True}),
            **({} if not getattr(model, "walk_last", False) else {"walk_last": True}),
            **({} if not getattr(model, "drift_ar", False) else {"drift_ar": True}),
            **({} if not getattr(model, "drift_shape", False) else {"drift_shape": True}),
            **({} if not getattr(model, "coarse_blend", False) else {"coarse_blend": True}),
            **({} if not getattr(model, "propagate_quantiles", False) else {"propagate_quantiles": True})}),
        **({} if not getattr(model, "quantile_steps", 0) else {"quantile_steps": int(model.quantile_steps)}),
    }


def model_kind_of(name: str) -> str:
    """The model kind of a registry name: ``causal_*`` models are ``causal``, the rest ``mae``."""
    return "causal" if name.startswith("causal") else "mae"


def model_class(kind: str) -> type:
    """The model class of ``kind`` (``"mae"``: ``MaskedAutoencoder``, ``"causal"``: ``CausalForecaster``)."""
    # Importing the registry imports the wfm.models package, whose __init__ imports the built-in
    # model modules; defining their classes records them in MODEL_CLASSES. This module itself
    # imports no model (the timm way), so the models can import it.
    import wfm.models.registry  # noqa: F401

    if kind not in MODEL_CLASSES:
        raise CheckpointError(f"unknown model kind {kind!r} in {CONFIG_NAME}; this wfm knows {', '.join(MODEL_KINDS)}")
    return MODEL_CLASSES[kind]


def build_model(config: dict[str, Any]):
    """Rebuild the (randomly initialised) model a config describes."""
    from wfm.models.registry import create_model, list_models

    kind = config.get("model_kind")
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"unknown model kind {kind!r} in {CONFIG_NAME}; this wfm knows {', '.join(MODEL_KINDS)}")
    raw_arch = config.get("arch") or {}
    if not isinstance(raw_arch, dict):
        raise CheckpointError(f"{CONFIG_NAME}: arch must be an object of architecture arguments, "
                              f"got {type(raw_arch).__name__}")
    check_arch(raw_arch)
    arch = dict(raw_arch)
    if "patch_size" in arch:
        arch["patch_size"] = tuple(arch["patch_size"])
    if "quantiles" in arch:
        arch["quantiles"] = tuple(arch["quantiles"])
    name = config.get("name")
    cls = model_class(kind)
    try:
        # The arch kwargs are complete, so the registry's defaults do not matter; the plain
        # class is the fallback for a registry name this version no longer has.
        model = create_model(name, **arch) if name in list_models() and model_kind_of(name) == kind else cls(**arch)
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"cannot build model {name!r} from {CONFIG_NAME}: {' '.join(str(e).split())[:300]}") from None
    return model


#: Bounds of every size in an exported ``config.json`` (checked before anything is allocated).
ARCH_LIMITS = {"dim": 16384, "depth": 256, "num_heads": 512, "decoder_dim": 16384, "decoder_depth": 256,
               "decoder_num_heads": 512, "patch_len": 65536, "horizon_patches": 65536, "max_context": 1 << 22,
               "interval_freqs": 4096, "mlp_ratio": 64}


def check_arch(arch: dict[str, Any]) -> None:
    """Refuse non-integer, non-positive or absurd sizes in ``arch`` (one line)."""
    for key, limit in ARCH_LIMITS.items():
        if key not in arch or arch[key] is None:
            continue
        v = arch[key]
        if key == "mlp_ratio":
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= limit
        else:
            ok = isinstance(v, int) and not isinstance(v, bool) and 0 < v <= limit
        if not ok:
            raise CheckpointError(f"{CONFIG_NAME}: arch.{key} = {v!r} must be a positive "
                                  f"{'number' if key == 'mlp_ratio' else 'integer'} <= {limit}")
    ps = arch.get("patch_size")
    if ps is not None and (not isinstance(ps, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                                                and 0 < x <= 4096 for x in ps)):
        raise CheckpointError(f"{CONFIG_NAME}: arch.patch_size = {ps!r} must be a list of positive integers")


def _meta_check(config: dict[str, Any], state: dict[str, Any], where: str) -> None:
    """Build the model on the meta device (no memory) and check the weights against it, so a
    config that promises a huge model is refused before anything is allocated."""
    import torch

    try:
        with torch.device("meta"):
            skeleton = build_model(config)
    except CheckpointError as e:  # name the folder: "cannot build model ..." alone does not say which
        raise CheckpointError(f"{where}: {e}") from None
    except Exception:  # a model that cannot be built on meta: the bounds in check_arch still held
        return
    _check_state_dict(skeleton, state, where)


def _check_state_dict(model: Any, state: dict[str, Any], where: str) -> None:
    """Raise naming the first few missing/unexpected/mis-shaped keys (before load_state_dict)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_first(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch (file vs config): {_first(shapes)}")
    if problems:
        raise CheckpointError(f"{where}: weights do not match {CONFIG_NAME}: " + "; ".join(problems))

# ---------------------------------------------------------------------------- model card


def _cell(value: Any) -> str:
    """``value`` as a Markdown table cell (a ``|`` in it, such as ``hold|ar``, would end the cell)."""
    return str(value).replace("|", "\\|")


def model_card(config: dict[str, Any], title: str) -> str:
    """The ``README.md`` of an exported folder: what the model is, its numbers, how to load it."""
    arch, causal = config["arch"], config["model_kind"] == "causal"
    if causal:
        what = ("A `wfm` causal multi-task forecaster for univariate wireless series (CSI real/imag parts, "
                "AoA, distance, traffic...)")
        rows = [("patch length", arch["patch_len"]),
                ("width / depth / heads", f"{arch['dim']} / {arch['depth']} / {arch['num_heads']}"),
                ("quantiles", arch["quantiles"] or "none (point forecasts)"),
                ("max context", arch["max_context"])]
        usage = ("forecast = model.forecast(context, interval, horizon)  # context: [B, L], one series [L], or "
                 "[N, C, L] windows of C channels pooled; real or complex; interval: seconds")
        note = ("Any context length and horizon. A complex series is forecast as its real and imaginary parts, "
                "pooled; a window's channels (antennas x subcarriers, beams) pool their evidence as [N, C, L] "
                "or with group= (for CSI, do: a short channel alone cannot tell its noise from a drift).")
    else:
        patch = "x".join(map(str, arch["patch_size"]))
        what = f"A `wfm` {config['model_kind'].upper()} foundation model for wireless CSI"
        rows = [("patch size", patch), ("attention", arch["attention"]),
                ("width / depth / heads", f"{arch['dim']} / {arch['depth']} / {arch['num_heads']}"),
                ("decoder width / depth", f"{arch['decoder_dim']} / {arch['decoder_depth']}"),
                *([("guard prior", ", ".join(f"{k}: {v}" for k, v in arch["guard_prior"].items()))]
                  if arch.get("guard_prior") else []),
                *([("white limit (temporal)", arch["white_limit"])] if arch.get("white_limit") is not None else []),
                *([("white test through common-gain dips", "yes")] if arch.get("white_dips") else []),
                *([("guard backtest origins (temporal)", ", ".join(map(str, arch["guard_origins"])))]
                  if arch.get("guard_origins") else []),
                *([("linear prediction where the visible packets drift (temporal)",
                    "yes, their shape too" if arch.get("drift_shape") else "yes")]
                  if arch.get("drift_ar") else [])]
        usage = 'pred = model.predict(csi, "temporal", 0.5)  # csi: complex64 [B, T, A, K] or one window [T, A, K]'
        note = (f"Any `T`, `A` and `K`: CSI is padded to whole {patch} patches inside the model and the padding "
                "is kept out of the prediction and its metrics.")
    datasets = ((config.get("training") or {}).get("data") or {}).get("datasets") or []
    rows = [("kind", config["model_kind"]), ("size", config["name"]), ("parameters", f"{config['num_params']:,}"),
            *rows, ("training step / epoch", f"{config['global_step']} / {config['epoch']}"),
            *([("weights of step", f"{config['kept_step']} ({config.get('selection', '')})")]
              if "kept_step" in config else []),
            (f"sha256 of {WEIGHTS_NAME}", f"`{config['sha256']}`"),
            *([("training data", ", ".join(f"`{Path(str(d)).name}`" for d in datasets))] if datasets else []),
            *(config.get("metrics") or {}).items()]
    return "\n".join([
        f"# {title}", "",
        f"{what}, {'exported by `wfm export`' if 'source_checkpoint' in config else 'saved by `save_pretrained`'} "
        f"(wfm {config['wfm_version']}).", "",
        "| field | value |", "|---|---|", *(f"| {k} | {_cell(v)} |" for k, v in rows), "",
        "## How to load", "", "```python", "import wfm", "",
        'model = wfm.from_pretrained("path/to/this/folder")  # or a Hugging Face Hub repo id',
        usage, "```", "", note, "",
    ])


def _jsonable(x: Any) -> Any:
    """``x`` with tuples as lists and anything JSON cannot hold as its ``str``."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)

# ---------------------------------------------------------------------------- load


def read_config(folder: str | Path) -> dict[str, Any]:
    """Read and validate an exported folder's ``config.json`` (does not touch the weights)."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder}: missing {CONFIG_NAME} (not an exported wfm model folder)")
    return _parse_config(path, str(path))


def _parse_config(path: Path, where: str) -> dict[str, Any]:
    """``read_config`` of the file ``path``; errors name ``where`` (the file, or ``repo/config.json``)."""
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{where}: not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: expected a JSON object")
    version = config.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{where}: missing or invalid format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{where}: format_version {version} is newer than this wfm supports "
                              f"({FORMAT_VERSION}); upgrade wfm")
    if config.get("model_kind") not in MODEL_KINDS:
        raise CheckpointError(f"{where}: unknown model kind {config.get('model_kind')!r}; "
                              f"this wfm knows {', '.join(MODEL_KINDS)}")
    return config

def _source(path_or_hub_id: str | Path) -> str:
    """An existing folder (as a path string) or something shaped like a Hub repo id; else refused.

    The mixin would hand anything that is not a folder to ``hf_hub_download`` as a repo id, so a
    mistyped local path must be caught here to be reported as one."""
    p = Path(path_or_hub_id).expanduser()
    if p.exists():
        if not p.is_dir():
            raise CheckpointError(f"{p}: expected an exported model folder, got a file")
        return str(p)
    s = str(path_or_hub_id)
    if not _HUB_ID.match(s) or s.startswith((".", "/", "~")):
        raise CheckpointError(f"{s}: no such folder (and not a Hugging Face Hub repo id)")
    if p.parent.is_dir():
        # `checkpoints/causl-tiny` is shaped like a repo id, but its owner is a folder here: a
        # mistyped path, which the Hub would otherwise retry for ~25 s before failing offline.
        import difflib

        near = difflib.get_close_matches(p.name, [c.name for c in p.parent.iterdir() if c.is_dir()], n=1)
        hint = f"; did you mean {p.parent / near[0]}?" if near else ""
        raise CheckpointError(f"{s}: no such folder in {p.parent}/{hint} (a Hub repo id whose owner is "
                              "also a folder here is read as a local path: run from another folder to fetch it)")
    return s


def _hub_error(where: str, e: BaseException, what: str = "it") -> CheckpointError:
    from wfm.safety import _one_line

    return CheckpointError(f"{where}: not a local folder, and could not fetch {what} from the Hugging Face Hub "
                           f"({type(e).__name__}: {_one_line(e)})")


def _fetch(repo_id: str, where: str, filename: str, **kwargs: Any) -> Path:
    """One file of a Hub repo through ``hf_hub_download`` (cache, revision, token, offline mode)."""
    import huggingface_hub

    try:
        return Path(huggingface_hub.hf_hub_download(repo_id=repo_id, filename=filename, **kwargs))
    except Exception as e:  # offline with an empty cache, unknown repo or revision, no network, auth
        raise _hub_error(where, e, filename) from e


def _load_pretrained(cls: type, model_id: str, *, revision: str | None, cache_dir: str | Path | None,
                     force_download: bool, local_files_only: bool, token: str | bool | None, verify: bool,
                     model_kwargs: dict[str, Any]):
    """``WfmHubMixin._from_pretrained``: every check wfm makes on an exported model, on a local
    folder or on the files of a Hub repo (fetched with ``hf_hub_download``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if os.path.isdir(model_id):
        folder = Path(model_id)
        where, config_where, cached = str(folder), str(folder / CONFIG_NAME), ""
        config = read_config(folder)
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{folder}: missing {WEIGHTS_NAME}")
        weights_where = str(weights)
    else:
        # Errors name the repo (and revision) first, the cached copy last.
        where = model_id + (f"@{revision}" if revision else "")
        fetch = dict(revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
                     local_files_only=local_files_only)
        config_where, weights_where = f"{where}/{CONFIG_NAME}", f"{where}/{WEIGHTS_NAME}"
        config = _parse_config(_fetch(model_id, where, CONFIG_NAME, **fetch), config_where)
        weights = _fetch(model_id, where, WEIGHTS_NAME, **fetch)
        cached = f" (cached at {weights})"
    # The mixin passes config.json's top-level values that share a name with an __init__
    # argument (patch_size, attention; every key for wfm.from_pretrained's loader) as kwargs:
    # those are ignored, anything else is refused (the architecture comes from the config).
    unexpected = sorted(k for k, v in model_kwargs.items() if k not in config or config[k] != v)
    if unexpected:
        raise TypeError(f"from_pretrained() got unexpected keyword arguments {', '.join(unexpected)} "
                        f"(the architecture comes from {CONFIG_NAME})")
    # A model class loads its own kind only (a class without a model_kind, the loader of
    # wfm.from_pretrained, loads any); build_model builds the class recorded for the kind.
    kind, want = config["model_kind"], getattr(cls, "model_kind", None)
    if want is not None and (kind != want or not issubclass(model_class(kind), cls)):
        other = MODEL_CLASS_NAMES[kind]
        raise CheckpointError(f"{where}: {CONFIG_NAME} describes a {kind} model ({other}), "
                              f"not a {cls.__name__}; load it with wfm.from_pretrained or {other}.from_pretrained")
    try:
        from wfm.nn.blocks import rename_legacy_mlp_keys

        state = rename_legacy_mlp_keys(load_file(str(weights), device="cpu"))  # pre-timm causal exports
        load_error = None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        state, load_error = None, e
    if verify:
        from wfm.io import sha256_of

        expected = config.get("sha256")
        if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise CheckpointError(f"{config_where}: sha256 of {WEIGHTS_NAME} missing or not 64 hex digits "
                                  "(cannot verify; pass verify=False only for files you trust)")
        digest = sha256_of(weights)
        if digest != expected:
            what = "truncated or corrupt" if load_error is not None else "changed since export"
            raise CheckpointError(f"{weights_where}: sha256 mismatch ({what}): expected {expected[:16]}..., "
                                  f"got {digest[:16]}...{cached}")
    if load_error is not None:
        raise CheckpointError(f"{weights_where}: truncated or corrupt safetensors file: {load_error}{cached}") from load_error
    _meta_check(config, state, where)  # weights vs config before allocating the model
    model = build_model(config)
    _check_state_dict(model, state, where)
    model.load_state_dict(state, strict=True)
    # What save_pretrained / push_to_hub write back: the metadata the model was exported with.
    model._hub_mixin_config = config
    return model.eval()


#: ``config.json`` fields about how a model was made (``export_checkpoint`` sets them); the rest
#: is derived from the model when it is saved. A loaded model keeps them when saved again.
METADATA_KEYS = ("name", "global_step", "epoch", "kept_step", "selection", "source_checkpoint", "metrics", "training")


def _metadata(config: Any) -> dict[str, Any]:
    return {k: config[k] for k in METADATA_KEYS if k in config} if isinstance(config, dict) else {}


def _check_loadable(model: Any, folder: Path) -> None:
    """Raise ``ValueError`` naming ``folder`` where ``model``'s arch would not build from its
    ``config.json`` (on the meta device): options set by hand that the constructor refuses
    (``raw_paths`` without ``box_cox``), caught before anything is written there."""
    import torch

    kind = model.model_kind
    try:
        with torch.device("meta"):
            build_model({"model_kind": kind, "name": f"{kind}_custom",
                         "arch": causal_arch(model) if kind == "causal" else mae_arch(model)})
    except CheckpointError as e:
        raise ValueError(f"not saved to {folder}: {e}") from None


def _write_folder(model: Any, folder: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """``WfmHubMixin._save_pretrained``: ``model.safetensors`` and ``config.json`` (with the
    weights' sha256) of ``model`` in ``folder``; returns the config."""
    import torch
    from safetensors.torch import save_file

    from wfm import __version__
    from wfm.io import sha256_of

    kind = model.model_kind
    # safetensors wants contiguous CPU tensors that share no memory. One metadata key only:
    # safetensors writes metadata in hash-map order, so two keys would make the same weights
    # hash differently from one export to the next.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    config = {
        "format_version": FORMAT_VERSION,
        "model_kind": kind,
        "name": str(metadata.get("name") or f"{kind}_custom"),
        "arch": causal_arch(model) if kind == "causal" else mae_arch(model),
        "patch_size": [model.patch_len] if kind == "causal" else list(model.patch_size),
        "attention": model.attention,
        "num_params": int(model.num_params()),
        "wfm_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "global_step": int(metadata.get("global_step") or 0),
        "epoch": int(metadata.get("epoch") or 0),
        # a fine-tuning run that kept an earlier step on held-out data (``CausalPretrainModule(select=)``)
        "kept_step": None if metadata.get("kept_step") is None else int(metadata["kept_step"]),
        "selection": metadata.get("selection"),
        "source_checkpoint": metadata.get("source_checkpoint"),
        "sha256": sha256_of(folder / WEIGHTS_NAME),
        "metrics": _jsonable(dict(metadata.get("metrics") or {})),
        "training": _jsonable(metadata["training"]) if metadata.get("training") is not None else None,
    }
    config = {k: v for k, v in config.items() if v is not None}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return config


# ---------------------------------------------------------------------------- the mixin


_MIXIN: type | None = None


def _hub_mixin() -> type:
    """:class:`WfmHubMixin`, built on first use so that importing this module (and ``wfm.hub``)
    does not import ``huggingface_hub`` (about a second)."""
    global _MIXIN
    if _MIXIN is not None:
        return _MIXIN
    from huggingface_hub import ModelCard, ModelHubMixin

    class WfmHubMixin(ModelHubMixin, library_name="wfm", tags=["wfm", "wireless"]):
        """``huggingface_hub.ModelHubMixin`` with wfm's folder format and checks.

        ``from_pretrained(folder_or_repo_id, revision=, cache_dir=, verify=True, token=,
        force_download=, local_files_only=)`` loads on CPU in eval mode and refuses, with one
        line naming the file or repo, a bad sha256, a newer format version, another model kind
        than the class, a config out of bounds or weights that do not match it.
        ``save_pretrained(folder, config=METADATA)`` writes ``model.safetensors``,
        ``config.json`` and the card; ``config`` sets the fields of :data:`METADATA_KEYS`
        (default: those the model was loaded with). ``push_to_hub(repo_id)`` saves to a
        temporary folder and uploads it.

        A model class sets ``model_kind`` (one of :data:`MODEL_KINDS`, what its ``config.json``
        records) and is recorded in :data:`MODEL_CLASSES` when defined; ``from_pretrained`` of
        a class without one (``wfm.from_pretrained``'s loader) loads any kind.
        """

        model_kind: str | None = None

        def __init_subclass__(cls, **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)
            kind = cls.__dict__.get("model_kind")
            if kind is not None:
                if kind not in MODEL_KINDS:
                    raise TypeError(f"{cls.__name__}.model_kind = {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
                MODEL_CLASSES[kind] = cls

        @classmethod
        def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, revision: str | None = None,
                            cache_dir: str | Path | None = None, verify: bool = True, force_download: bool = False,
                            token: str | bool | None = None, local_files_only: bool = False, **model_kwargs: Any):
            source = _source(pretrained_model_name_or_path)
            local = os.path.isdir(source)
            if local:
                # The mixin reads config.json with a bare json.load: validate it first, so that a
                # missing or broken one is refused with a line naming the file.
                read_config(source)
            try:
                return super().from_pretrained(source, revision=revision, cache_dir=cache_dir, token=token,
                                               force_download=force_download, local_files_only=local_files_only,
                                               verify=verify, **model_kwargs)
            except (CheckpointError, TypeError):
                raise
            except Exception as e:  # the mixin fetching or parsing config.json of a repo id
                if local:
                    raise
                where = source + (f"@{revision}" if revision else "")
                if isinstance(e, (json.JSONDecodeError, UnicodeDecodeError)):
                    raise CheckpointError(f"{where}/{CONFIG_NAME}: not valid JSON: {e}") from e
                raise _hub_error(where, e) from e

        @classmethod
        def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                             force_download: bool, local_files_only: bool, token: str | bool | None,
                             verify: bool = True, **model_kwargs: Any):
            return _load_pretrained(cls, model_id, revision=revision, cache_dir=cache_dir,
                                    force_download=force_download, local_files_only=local_files_only,
                                    token=token, verify=verify, model_kwargs=model_kwargs)

        def save_pretrained(self, save_directory: str | Path, *, config: dict[str, Any] | None = None,
                            **kwargs: Any):
            _check_loadable(self, Path(save_directory))  # before the mixin makes the folder
            if config is not None:  # the metadata to record (the mixin would write config as it is)
                self._hub_mixin_config = {**_metadata(self._hub_mixin_config), **config}
            return super().save_pretrained(save_directory, **kwargs)

        def _save_pretrained(self, save_directory: Path) -> None:
            self._hub_mixin_config = _write_folder(self, Path(save_directory), _metadata(self._hub_mixin_config))

        def generate_model_card(self, *args: Any, title: str | None = None, **kwargs: Any):
            config = self._hub_mixin_config
            if not isinstance(config, dict) or "sha256" not in config:  # not saved yet: the mixin's card
                return super().generate_model_card(*args, **kwargs)
            header = self._hub_mixin_info.model_card_data.to_yaml()
            return ModelCard(f"---\n{header}\n---\n" + model_card(config, title or config["name"]))

    WfmHubMixin.__module__, WfmHubMixin.__qualname__ = __name__, "WfmHubMixin"
    _MIXIN = WfmHubMixin
    return _MIXIN


def __getattr__(name: str) -> Any:
    if name == "WfmHubMixin":  # `from wfm.hub_mixin import WfmHubMixin` (the model classes' base)
        return _hub_mixin()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
