"""Pydantic models of the YAML configs, and loading them with one-line errors that name the key.

Every section forbids unknown keys, so a typo fails loudly instead of being ignored.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sweep.errors import ConfigError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "tucker-sweep"

# A rank specification as YAML writes it: a ratio, "full", a triple, or per layer any of these.
LayerRankSpec = float | str | tuple[int, int, int]
RankSpecConfig = LayerRankSpec | dict[str, LayerRankSpec]
RANK_SPEC_HELP = (
    "a ratio in (0, 1], 'full', three integers N',C',D', or a mapping layer -> one of these"
)


def check_layer_rank_spec(value: Any) -> LayerRankSpec:
    """The shape of one layer's spec; the model checks the ranks against each layer later."""
    if isinstance(value, str) and value == "full":
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 0 < value <= 1:
            return float(value)
        raise ValueError(f"a rank ratio must be in (0, 1], got {value}")
    if (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        return tuple(value)  # type: ignore[return-value]
    raise ValueError(f"must be {RANK_SPEC_HELP}, got {value!r}")


def check_rank_spec(value: Any) -> RankSpecConfig | None:
    if value is None:
        return None
    if isinstance(value, dict):
        if not value:
            raise ValueError("a per-layer mapping needs at least one layer")
        return {str(name): check_layer_rank_spec(spec) for name, spec in value.items()}
    return check_layer_rank_spec(value)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(StrictModel):
    """Which data module, and options for it (see lightning_modules.data)."""

    name: str = "digits"
    options: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(StrictModel):
    """Which network (see lightning_modules.models.MODELS), and constructor options."""

    name: str = "vgg_small"
    options: dict[str, Any] = Field(default_factory=dict)


class OptimizerConfig(StrictModel):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"

    @field_validator("lr")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be finite")
        return value


class TrackingConfig(StrictModel):
    """Where MLflow records runs. `uri` None: $MLFLOW_TRACKING_URI, else a local SQLite file."""

    uri: str | None = None
    experiment: str = Field(DEFAULT_EXPERIMENT, min_length=1)

    def resolved_uri(self) -> str:
        return self.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class TrainConfig(StrictModel):
    """One training run (`tucker-sweep train`): dense when `ranks` is None."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    ranks: RankSpecConfig | None = None
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    run_name: str | None = None

    @field_validator("ranks", mode="plain")
    @classmethod
    def _rank_spec(cls, value: Any) -> RankSpecConfig | None:
        return check_rank_spec(value)


ConfigModel = TypeVar("ConfigModel", bound=BaseModel)


def describe_validation_error(error: ValidationError) -> str:
    """The first problem as 'key.path: message (got value)', on one line."""
    first = error.errors()[0]
    # Union members add their type names to the location; the user's key path is what matters.
    location = ".".join(
        str(part) for part in first["loc"] if not (isinstance(part, str) and "[" in part)
    )
    message = first["msg"]
    shown = f" (got {first.get('input')!r})"
    if first["type"] == "extra_forbidden":
        message, shown = "unknown key", ""
    elif first["type"] == "missing":
        shown = ""
    elif first["type"] == "value_error":  # our validators' messages already show the value
        message, shown = str(first["ctx"]["error"]), ""
    more = len(error.errors()) - 1
    suffix = f"; and {more} more problem{'s' if more > 1 else ''}" if more else ""
    return f"{location or 'config'}: {message}{shown}{suffix}"


def set_dotted(raw: dict[str, Any], dotted_key: str, value: Any) -> None:
    """raw['a']['b'] = value for 'a.b', creating sections as needed."""
    *sections, last = dotted_key.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted_key}: '{section}' is not a section")
    node[last] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, or ConfigError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not a list or value")
    return raw


def build_config(
    model: type[ConfigModel],
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> ConfigModel:
    """Validate a config from an optional YAML file, with dotted-key overrides (CLI flags)
    applied on top. Raises ConfigError naming the offending key."""
    raw = read_yaml(path) if path is not None else {}
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(raw, key, value)
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        source = f"{path}: " if path is not None else ""
        raise ConfigError(source + describe_validation_error(error)) from None
