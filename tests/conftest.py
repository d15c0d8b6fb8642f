"""Shared fixtures: tiny generated datasets, the repository's paths."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "data" / "recipes"
# Real measured data lives beside the project (never in it); tests that need it skip without it.
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

torch.set_num_threads(min(2, torch.get_num_threads()))


def load_script(relative: str, monkeypatch: pytest.MonkeyPatch | None = None) -> ModuleType:
    """A script of the repository (``pretrain/box_cox.py``) as a module, registered in
    ``sys.modules`` so that its dataclasses and imports resolve (for the test only, given
    ``monkeypatch``)."""
    path = REPO / relative
    name = "wfm_script_" + "_".join(path.with_suffix("").parts[-2:])
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if monkeypatch is not None:
        monkeypatch.setitem(sys.modules, name, module)
    else:
        sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: small CPU models run far faster on one thread than on
    two contended ones. Test modules of small models use it for every test:
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_recipe(**changes):
    """A small CSI recipe that Sionna generates in well under a second."""
    from wfm.data.recipes import recipe_from_dict

    base = {"name": "tiny-uma", "model": "uma", "carrier_frequency_ghz": 3.5, "subcarrier_spacing_khz": 30,
            "num_subcarriers": 16, "array": [1, 4], "time_steps": 8, "time_step_ms": 0.5,
            "speed_kmh": [10, 60], "num_samples": 40, "shard_size": 16}
    base.update(changes)
    return recipe_from_dict(base)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A 40-sample UMa dataset in 3 shards (16 + 16 + 8)."""
    from wfm.data.generate import generate_dataset

    out = tmp_path_factory.mktemp("data") / "tiny-uma"
    generate_dataset(tiny_recipe(), out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_cdl_dataset(tmp_path_factory) -> Path:
    """A 24-sample CDL-C dataset of another shape ([4, 8, 32]) for mixtures."""
    from wfm.data.generate import generate_dataset

    out = tmp_path_factory.mktemp("data") / "tiny-cdl"
    generate_dataset(tiny_recipe(name="tiny-cdl", model="cdl", profile="C", time_steps=4, array=[2, 4],
                                 num_subcarriers=32, num_samples=24, shard_size=8), out, seed=1)
    return out
