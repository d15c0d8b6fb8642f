"""Models trained by ``wfm evaluate``, saved (``--save DIR``) and used again (``--model DIR/NAME``).

A saved model is a folder with two files:

* ``trained.json``: ``format`` (``"wfm-trained"``), ``version``, ``task`` and ``family``, the
  ``class`` (below) and what rebuilds it (``config``), how it was trained (``training``: the
  training folders, split, steps, batch, seed, which weights were kept) and the ``sha256`` of
  the weights;
* ``model.safetensors``: its tensors (weights, or the look-up table of the position k-NN).

Loading reads JSON and safetensors only (nothing is unpickled), checks the sha256 first and
every tensor name and shape against the rebuilt model (``strict``). Classes:

=================  =========================================================================
``forecaster``     a trainable forecasting baseline (``lstm``, ``gru``, ``transformer``) of the
                   series and channel-prediction tasks (``wfm.models.baselines``)
``beam-rnn``       the future-beam LSTM/GRU (``wfm.tasks.future_beam.BeamRNN``)
``beam-mae``       an MAE encoder fine-tuned on future beams + its head (``BeamMAE``); ``config``
                   holds the MAE's architecture (as an export's ``arch``), its ``prior`` and frame
``position-knn``   the position-aided k-NN: its training positions, labels and scenarios
``label-mlp``      the raw-CSI MLP of the CSI label tasks (``TaskModel`` over ``RawCSIFeatures``)
=================  =========================================================================

This module imports only the standard library and light wfm modules at the top; torch,
safetensors and the model classes (9 s of CPU) are imported inside the functions that need them:
``read_meta`` is what ``wfm evaluate`` uses to check ``--model`` folders before torch is imported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from wfm import __version__
from wfm.hub import CheckpointError, build_model
from wfm.io import sha256_of, swap_folder_into_place

FORMAT = "wfm-trained"
VERSION = 1
META_NAME = "trained.json"
WEIGHTS_NAME = "model.safetensors"
CLASSES = ("forecaster", "beam-rnn", "beam-mae", "position-knn", "label-mlp")


class SavedModelError(CheckpointError):
    """A saved-model folder that cannot be read (message says why)."""


def is_saved(spec: str | Path) -> bool:
    """Whether ``spec`` is a folder written by ``save``."""
    return (Path(spec).expanduser() / META_NAME).is_file()


def read_meta(folder: str | Path) -> dict[str, Any]:
    """``trained.json`` of a saved model, validated (no torch, no weights read)."""
    path = Path(folder).expanduser() / META_NAME
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SavedModelError(f"{path}: cannot read ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SavedModelError(f"{path}: not a model saved by wfm evaluate --save (format {FORMAT!r})")
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise SavedModelError(f"{path}: version {meta.get('version')!r} is not one this wfm reads ({VERSION})")
    if meta.get("class") not in CLASSES:
        raise SavedModelError(f"{path}: unknown class {meta.get('class')!r}; this wfm knows {', '.join(CLASSES)}")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("task"), str):
        raise SavedModelError(f"{path}: config (object) and task (string) are required")
    if not isinstance(meta.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", meta["sha256"]):
        raise SavedModelError(f"{path}: sha256 of {WEIGHTS_NAME} missing or not 64 hex digits")
    return meta


def task_of(folder: str | Path) -> str | None:
    """The task of the model saved in ``folder`` (its validated ``trained.json``), None where
    there is none (no torch, no weights read)."""
    try:
        return read_meta(folder)["task"]
    except SavedModelError:
        return None


#: ``--model tune:DIR``: a saved model trained further on ``--train`` instead of used as it is.
TUNE = "tune:"
#: Saved classes that ``tune:`` can train further (a pretrained start with its own head).
TUNABLE = {"beam-mae": "future-beam"}


def check_tune(spec: str, family: str, task: str, can_train: bool) -> dict[str, Any]:
    """``trained.json`` of ``tune:DIR`` after checking that it can be fine-tuned on ``task`` (no torch)."""
    folder = spec[len(TUNE):]
    if not is_saved(folder):
        raise SavedModelError(f"{spec}: tune: takes a folder saved by wfm evaluate --save (with {META_NAME})")
    meta = read_meta(folder)
    if TUNABLE.get(meta["class"]) != family:
        raise SavedModelError(f"{spec}: a saved {meta['class']} of task {meta['task']}; tune: fine-tunes a saved "
                              + ", ".join(f"{c} on a {f} task" for c, f in TUNABLE.items()) + f", not {task}")
    if not can_train:
        raise SavedModelError(f"{spec}: tune: fine-tunes the model: give --train DIR next to --test (or use the "
                              f"folder as it is: --model {folder})")
    return meta


def folder_name(label: str) -> str:
    """A file-system-safe folder name for a model label."""
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", label).strip("-.")
    return name or "model"


# ---------------------------------------------------------------------------- build


def _forecaster_config(f: Any) -> dict[str, Any]:
    from wfm.models.baselines import RNNForecaster, TransformerForecaster

    if isinstance(f, RNNForecaster):
        return {"baseline": f.name, "max_horizon": f.max_horizon, "hidden": int(f.rnn.hidden_size),
                "layers": int(f.rnn.num_layers)}
    if isinstance(f, TransformerForecaster):
        return {"baseline": "transformer", "max_horizon": f.max_horizon, "dim": int(f.dim),
                "depth": len(f.blocks), "heads": int(f.blocks[0].attn.num_heads)}
    raise SavedModelError(f"cannot save a {type(f).__name__} as a forecaster")


def describe(obj: Any) -> tuple[str, dict[str, Any]]:
    """``(class, config)`` of a trained object (module doc)."""
    from wfm.models.baselines import RNNForecaster, TransformerForecaster
    from wfm.tasks.future_beam import BeamMAE, BeamRNN, PositionKNN
    from wfm.tasks.backbones import TaskModel

    if isinstance(obj, (RNNForecaster, TransformerForecaster)):
        return "forecaster", _forecaster_config(obj)
    if isinstance(obj, (BeamRNN, BeamMAE)):  # the anchor's options; the biases only where calibrated
        anchor = {"prior": obj.prior, "relative": obj.relative,
                  **({"stay_bias": float(obj.stay_bias)} if obj.stay_bias else {}),
                  **({"ar_bias": float(obj.ar_bias), "ar_horizon": int(obj.horizon)} if obj.ar_bias else {})}
        if isinstance(obj, BeamRNN):
            return "beam-rnn", {"beams": int(obj.head.out_features), "hidden": int(obj.rnn.hidden_size),
                                "cell": "lstm" if type(obj.rnn).__name__ == "LSTM" else "gru", **anchor}
        return "beam-mae", {"beams": int(obj.beams), "mae_arch": obj.mae_arch, "mae_name": obj.mae_name, **anchor}
    if isinstance(obj, PositionKNN):
        return "position-knn", {"k": int(obj.k), "beams": int(obj.beams)}
    if isinstance(obj, TaskModel):
        return "label-mlp", {"shape": list(obj.features.shape), "hidden": int(obj.features.out_dim),
                             "outputs": int(obj.head.out_features), "regression": bool(obj.regression)}
    raise SavedModelError(f"cannot save a {type(obj).__name__}")


def _with_calibration(beam: Any, config: dict[str, Any]) -> Any:
    # wfm calibrate's biases (models saved before it: none)
    beam.stay_bias = float(config.get("stay_bias", 0.0))
    beam.ar_bias = float(config.get("ar_bias", 0.0))
    beam.horizon = int(config.get("ar_horizon", 1))
    return beam


def build(cls: str, config: dict[str, Any]) -> Any:
    """An untrained object of ``cls`` from its ``config`` (module doc)."""
    try:
        if cls == "forecaster":
            from wfm.models.baselines import build_baseline

            kw = {k: v for k, v in config.items() if k != "baseline"}
            return build_baseline(str(config["baseline"]), **kw)
        if cls == "beam-rnn":
            from wfm.tasks.future_beam import BeamRNN

            return _with_calibration(BeamRNN(int(config["beams"]), int(config["hidden"]), str(config["cell"]),
                                           str(config.get("prior", "none")), bool(config.get("relative", False))),
                                   config)
        if cls == "beam-mae":
            from wfm.tasks.future_beam import BeamMAE

            mae = build_model({"model_kind": "mae", "name": config.get("mae_name"), "arch": config["mae_arch"]})
            # saved before the persistence prior: the head alone
            return _with_calibration(BeamMAE(mae, int(config["beams"]), str(config.get("prior", "none")),
                                           bool(config.get("relative", False))), config)
        if cls == "position-knn":
            from wfm.tasks.future_beam import PositionKNN

            return PositionKNN.empty(int(config["k"]), int(config["beams"]))
        if cls == "label-mlp":
            from wfm.tasks.backbones import RawCSIFeatures, TaskModel

            return TaskModel(RawCSIFeatures(tuple(config["shape"]), int(config["hidden"])), int(config["outputs"]),
                             bool(config["regression"]))
    except (KeyError, TypeError, ValueError) as e:
        raise SavedModelError(f"cannot rebuild a {cls} from its config: {e}") from None
    raise SavedModelError(f"unknown class {cls!r}")


def _tensors(obj: Any) -> dict[str, Any]:
    from wfm.tasks.future_beam import PositionKNN

    state = obj.tensors() if isinstance(obj, PositionKNN) else obj.state_dict()
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


# ---------------------------------------------------------------------------- save / load


def save(obj: Any, folder: str | Path, task: str, family: str, training: dict[str, Any]) -> Path:
    """Write ``obj`` to ``folder`` (replaced atomically if it exists); returns the folder."""
    from safetensors.torch import save_file

    cls, config = describe(obj)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file(_tensors(obj), str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        meta = {"format": FORMAT, "version": VERSION, "task": task, "family": family, "class": cls,
                "config": config, "training": training, "wfm_version": __version__,
                "sha256": sha256_of(tmp / WEIGHTS_NAME)}
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        swap_folder_into_place(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load(folder: str | Path) -> tuple[Any, dict[str, Any]]:
    """``(object, meta)`` of a saved model: sha256 checked, safetensors read, tensors strict."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from wfm.tasks.future_beam import PositionKNN

    folder = Path(folder).expanduser()
    meta = read_meta(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise SavedModelError(f"{folder}: missing {WEIGHTS_NAME}")
    digest = sha256_of(weights)
    if digest != meta["sha256"]:
        raise SavedModelError(f"{weights}: sha256 mismatch (changed or corrupt since it was saved): expected "
                              f"{meta['sha256'][:16]}..., got {digest[:16]}...")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise SavedModelError(f"{weights}: not a readable safetensors file: {e}") from None
    obj = build(meta["class"], meta["config"])
    if isinstance(obj, PositionKNN):
        obj.load_tensors(state, str(folder))
        return obj, meta
    expected = obj.state_dict()
    wrong = sorted(set(expected) ^ set(state)) + [k for k in expected if k in state
                                                     and tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise SavedModelError(f"{folder}: weights do not match {META_NAME} ({', '.join(wrong[:3])}"
                              + (f" +{len(wrong) - 3} more" if len(wrong) > 3 else "") + ")")
    obj.load_state_dict(state, strict=True)
    obj.eval()
    return obj, meta
