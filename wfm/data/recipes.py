"""Dataset recipes: the YAML files in ``data/recipes/`` that say what to generate.

A recipe names a 3GPP TR 38.901 channel model and the radio set-up (band, array,
subcarriers, time grid, speeds). Unknown keys are errors, not silently ignored: a typo
in a recipe would otherwise produce a dataset that differs from what its name promises.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from wfm.data.errors import DataError
from wfm.data.impairments import csi_impairments
from wfm.safety import check_yaml_file, strict_int

#: Channel models of TR 38.901 that the CSI generator implements.
SYSTEM_LEVEL_MODELS = ("uma", "umi", "rma")
LINK_LEVEL_MODELS = ("cdl", "tdl")
CSI_MODELS = SYSTEM_LEVEL_MODELS + LINK_LEVEL_MODELS
#: CDL/TDL profiles of TR 38.901 (D and E contain a LoS path).
PROFILES = ("A", "B", "C", "D", "E")
LOS_PROFILES = ("D", "E")


SPLITS = ("pretrain", "zeroshot", "test")


def field_problems(recipe: Any, *, counts: Sequence[str] = (), positive: Sequence[str] = (),
                   non_negative: Sequence[str] = (), probabilities: Sequence[str] = (),
                   ranges: Sequence[str] = ()) -> list[str]:
    """The checks every recipe type shares, as one message per bad field.

    counts >= 1; positive > 0; non_negative >= 0; probabilities in [0, 1]; ranges are
    ``[low, high]`` with ``0 <= low <= high``; ``split`` is one of :data:`SPLITS`.
    """
    problems = []
    for key in counts:
        if int(getattr(recipe, key)) < 1:
            problems.append(f"{key} must be >= 1")
    for key in positive:
        if not float(getattr(recipe, key)) > 0:
            problems.append(f"{key} must be > 0")
    for key in non_negative:
        if float(getattr(recipe, key)) < 0:
            problems.append(f"{key} must be >= 0")
    for key in probabilities:
        if not 0 <= float(getattr(recipe, key)) <= 1:
            problems.append(f"{key} must be in [0, 1]")
    for key in ranges:
        r = getattr(recipe, key)
        if len(r) != 2 or not 0 <= r[0] <= r[1]:
            problems.append(f"{key} {list(r)} must be [low, high], 0 <= low <= high")
    if recipe.split not in SPLITS:
        problems.append(f"split {recipe.split!r} is not one of {', '.join(SPLITS)}")
    return problems


class RecipeFields:
    """What every recipe dataclass does alike: its YAML-ready dict and overridden copies."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain YAML/JSON values (tuples as lists)."""
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def with_overrides(self, **changes: Any) -> Any:
        """A copy with some fields changed (e.g. ``num_samples`` from the command line); ``None``
        values leave a field as it is."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[type-var]


@dataclass(frozen=True)
class CSIRecipe(RecipeFields):
    """What one CSI dataset holds. Units are in the key names."""

    name: str
    model: str  # uma | umi | rma | cdl | tdl
    carrier_frequency_ghz: float
    subcarrier_spacing_khz: float
    num_subcarriers: int
    array: tuple[int, int]  # base-station UPA rows x cols; the user has one antenna
    time_steps: int
    time_step_ms: float
    speed_kmh: tuple[float, float]  # user speed drawn uniformly in [low, high]
    num_samples: int
    profile: str | None = None  # CDL/TDL profile A-E
    delay_spread_ns: float = 300.0  # CDL/TDL only; system-level models draw their own
    los: str = "random"  # uma/umi/rma: random | los | nlos (TR 38.901 7.4.2 when random)
    antenna_correlation: float = 0.7  # TDL only: exponential correlation between neighbours
    # Commodity-WiFi impairments (wfm.data.impairments.CSIImpairments, from a mapping); None = off
    impairments: Any = None
    shard_size: int = 256
    split: str = "pretrain"  # pretrain | zeroshot | test
    description: str = ""
    kind: str = field(default="csi")

    def __post_init__(self) -> None:
        if self.impairments is not None:
            object.__setattr__(self, "impairments", csi_impairments(self.impairments))
        problems = []
        if self.model not in CSI_MODELS:
            problems.append(f"model {self.model!r} is not one of {', '.join(CSI_MODELS)}")
        if self.model in LINK_LEVEL_MODELS and self.profile not in PROFILES:
            problems.append(f"model {self.model} needs profile one of {', '.join(PROFILES)}")
        if self.model in SYSTEM_LEVEL_MODELS and self.profile is not None:
            problems.append(f"model {self.model} takes no profile")
        if self.los not in ("random", "los", "nlos"):
            problems.append(f"los {self.los!r} is not random, los or nlos")
        if len(self.array) != 2 or min(self.array) < 1:
            problems.append(f"array {list(self.array)} must be [rows, cols] >= 1")
        problems += field_problems(
            self, counts=("num_subcarriers", "time_steps", "num_samples", "shard_size"),
            positive=("carrier_frequency_ghz", "subcarrier_spacing_khz", "time_step_ms"), ranges=("speed_kmh",))
        if problems:
            raise DataError(f"recipe {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`RecipeFields.to_dict`; ``impairments`` only when set (so recipes without
        them keep the manifests they always had)."""
        d = super().to_dict()
        imp = d.pop("impairments")
        if imp is not None:
            d["impairments"] = self.impairments.to_dict()
        return d

    # Derived quantities, in SI units, used by the generator and written to the manifest.
    @property
    def num_antennas(self) -> int:
        return self.array[0] * self.array[1]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Per-sample CSI shape ``[T, A, K]``."""
        return (self.time_steps, self.num_antennas, self.num_subcarriers)

    @property
    def scenario(self) -> str:
        """Human name of the propagation scenario, e.g. ``UMa`` or ``CDL-C``."""
        names = {"uma": "UMa", "umi": "UMi", "rma": "RMa", "cdl": "CDL", "tdl": "TDL"}
        base = names[self.model]
        return f"{base}-{self.profile}" if self.profile else base



_FIELDS = {f.name for f in dataclasses.fields(CSIRecipe)}
_REQUIRED = {
    f.name
    for f in dataclasses.fields(CSIRecipe)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
}


def recipe_from_dict(d: dict[str, Any], source: str = "<dict>") -> CSIRecipe:
    """Build a recipe from a mapping, rejecting unknown and missing keys by name."""
    if not isinstance(d, dict):
        raise DataError(f"{source}: a recipe must be a mapping of keys to values")
    unknown = sorted(set(d) - _FIELDS)
    if unknown:
        raise DataError(f"{source}: unknown recipe key(s) {', '.join(unknown)}")
    missing = sorted(_REQUIRED - set(d))
    if missing:
        raise DataError(f"{source}: missing recipe key(s) {', '.join(missing)}")
    if d.get("kind", "csi") != "csi":
        raise DataError(f"{source}: kind {d['kind']!r} is not a CSI recipe")
    d = dict(d)
    try:
        if not isinstance(d["array"], (list, tuple)):
            raise ValueError(f"array must be [rows, cols], got {d['array']!r}")
        d["array"] = tuple(strict_int(x, "array entry") for x in d["array"])  # [1, 4.5] is refused, not (1, 4)
        d["speed_kmh"] = tuple(float(x) for x in d["speed_kmh"])
        for key in ("num_subcarriers", "time_steps", "num_samples", "shard_size"):
            if key in d:
                d[key] = strict_int(d[key], key)  # 32.7 is refused, not truncated to 32
        for key in ("carrier_frequency_ghz", "subcarrier_spacing_khz", "time_step_ms",
                    "delay_spread_ns", "antenna_correlation"):
            if key in d:
                d[key] = float(d[key])
    except (TypeError, ValueError) as e:
        raise DataError(f"{source}: bad value in recipe: {e}") from None
    try:
        return CSIRecipe(**d)
    except DataError as e:
        raise DataError(f"{source}: {e}") from None


# Recipe kinds other than CSI (series, traffic...) live in their own modules, which call
# register_recipe_kind when imported; KIND_MODULES lists them so that load_recipe finds them.
# Every recipe type has: name, kind, num_samples, shard_size, split, to_dict(), with_overrides().
KIND_MODULES: tuple[str, ...] = ("wfm.data.csi_generator", "wfm.data.series_generators", "wfm.data.beam_generator",
                                 "wfm.data.process_generator")
_PARSERS: dict[str, Callable[[dict[str, Any], str], Any]] = {"csi": recipe_from_dict}


def register_recipe_kind(kind: str, parser: Callable[[dict[str, Any], str], Any]) -> None:
    """Teach :func:`load_recipe` a new ``kind:``; ``parser(mapping, source)`` builds the recipe."""
    _PARSERS[kind] = parser


def load_recipe(path: str | Path) -> Any:
    """Read a recipe YAML file of any kind. The recipe's name defaults to the file's stem."""
    for module in KIND_MODULES:
        importlib.import_module(module)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: recipe file not found")
    try:
        d = check_yaml_file(path)  # no aliases (billion laughs), bounded size
    except ValueError as e:
        raise DataError(str(e)) from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: a recipe must be a mapping of keys to values")
    d.setdefault("name", path.stem)
    kind = d.get("kind", "csi")
    if kind not in _PARSERS:
        raise DataError(f"{path}: unknown recipe kind {kind!r} (known: {', '.join(sorted(_PARSERS))})")
    return _PARSERS[kind](d, str(path))


def recipe_catalog(directory: str | Path) -> list[Any]:
    """All recipes in a folder, sorted by file name."""
    return [load_recipe(p) for p in sorted(Path(directory).glob("*.yaml"))]
