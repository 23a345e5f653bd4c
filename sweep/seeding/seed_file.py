"""seed.json: the candidate ranks of a trained dense baseline, as a versioned, validated file.

    seed = build_seed(candidate_ranks(model), model={...}, data={...}, baseline={...},
                      method="energy", thresholds=(0.9, 0.99))
    write_seed(seed, "runs/seed.json")
    read_seed("runs/seed.json").candidates_for("block2.conv1")   # [TuckerRanks(...), ...]

Reading refuses, with a one-line SeedFileError, anything the sweep could not use: a missing
file, broken JSON, another schema, a newer schema version, a missing or ill-typed field (named by
its path) and candidate ranks that are infeasible for their layer's shape. Older versions are read
as the current one (seed_versions.py).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from lightning_modules.ranks import METHODS, LayerAnalysis, ModeSpectra
from lightning_modules.tucker import ConvGeometry, InvalidRanksError, TuckerRanks, validate_ranks
from sweep.errors import TuckerSweepError, describe_validation_error
from sweep.seeding.seed_versions import upgraded
from sweep.space import SeedData

__all__ = [
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SeedFile",
    "SeedFileError",
    "build_seed",
    "read_seed",
    "write_seed",
]

SCHEMA_NAME = "tucker-sweep/seed"
SCHEMA_VERSION = 2  # 2: candidates' error_bound (from the spectra) replaces hooi_error

# How many validation problems one error line lists before summarising the rest.
_PROBLEMS_SHOWN = 3


class SeedFileError(TuckerSweepError, ValueError):
    """A seed file that cannot be used (or written); the message says what and what to do."""


class _Schema(BaseModel):
    # Strict shape: a field this version does not know means the file is not what we think it
    # is (any change to the format bumps SCHEMA_VERSION). NaN/inf cannot be written as JSON.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelInfo(_Schema):
    name: str
    options: dict[str, JsonValue] = Field(default_factory=dict)
    in_channels: PositiveInt
    num_classes: PositiveInt
    input_size: tuple[PositiveInt, PositiveInt]


class DataInfo(_Schema):
    name: str
    options: dict[str, JsonValue] = Field(default_factory=dict)


class BaselineInfo(_Schema):
    val_acc: Annotated[float, Field(ge=0.0, le=1.0)]
    epochs: NonNegativeInt
    params: PositiveInt
    flops: NonNegativeInt
    checkpoint: str | None = None
    run_id: str | None = None


class SpectraEntry(_Schema):
    """Singular values of the mode-1 (out), mode-2 (in) and mode-3 (spatial) unfoldings."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    out: list[NonNegativeFloat]
    in_: list[NonNegativeFloat] = Field(alias="in")
    spatial: list[NonNegativeFloat]


class CandidateEntry(_Schema):
    ranks: tuple[int, int, int]
    thresholds: tuple[float, ...] = ()
    params: PositiveInt
    dense_params: PositiveInt
    compression: Annotated[float, Field(gt=0.0)]
    flops: NonNegativeInt | None = None
    dense_flops: NonNegativeInt | None = None
    # The truncated-HOSVD bound on ||W - W_hat|| / ||W|| at these ranks, from the layer's
    # spectra; HOOI, which a trial starts from, fits at least that well.
    error_bound: NonNegativeFloat
    note: str | None = None


class LayerEntry(_Schema):
    shape: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt]
    spectra: SpectraEntry
    candidates: list[CandidateEntry] = Field(min_length=1)

    @property
    def geometry(self) -> ConvGeometry:
        n, c, kh, kw = self.shape
        return ConvGeometry.of(c, n, (kh, kw))

    @model_validator(mode="after")
    def _fits_the_shape(self) -> LayerEntry:
        geometry = self.geometry
        n, c, d = geometry.tensor_shape
        # A mode-n unfolding has min(dim_n, product of the other two) singular values.
        expected = {"out": min(n, c * d), "in": min(c, n * d), "spatial": min(d, n * c)}
        found = {"out": self.spectra.out, "in": self.spectra.in_, "spatial": self.spectra.spatial}
        for mode, length in expected.items():
            if len(found[mode]) != length:
                raise ValueError(
                    f"spectra.{mode} has {len(found[mode])} values, a {geometry.describe()} "
                    f"has {length}"
                )
        seen: set[tuple[int, int, int]] = set()
        for index, candidate in enumerate(self.candidates):
            try:
                validate_ranks(geometry, candidate.ranks)
            except InvalidRanksError as error:
                raise ValueError(f"candidates[{index}] has infeasible ranks: {error}") from None
            if candidate.ranks in seen:
                raise ValueError(f"candidates[{index}] repeats ranks {candidate.ranks}")
            seen.add(candidate.ranks)
        return self


class SeedFile(_Schema):
    """The whole seed.json (schema version 2)."""

    schema_name: Literal["tucker-sweep/seed"] = SCHEMA_NAME
    schema_version: Literal[2] = SCHEMA_VERSION
    created: AwareDatetime
    model: ModelInfo
    data: DataInfo
    baseline: BaselineInfo
    method: Literal["energy", "vbmf"]
    thresholds: tuple[float, ...]
    layers: dict[str, LayerEntry] = Field(min_length=1)

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, thresholds: tuple[float, ...]) -> tuple[float, ...]:
        for threshold in thresholds:
            if not 0.0 < threshold <= 1.0:
                raise ValueError(f"energy threshold {threshold} is not in (0, 1]")
        return thresholds

    @model_validator(mode="after")
    def _energy_needs_thresholds(self) -> SeedFile:
        if self.method == "energy" and not self.thresholds:
            raise ValueError("method 'energy' needs at least one threshold")
        return self

    def layer_names(self) -> list[str]:
        """The analysed layers, in the model's order."""
        return list(self.layers)

    def candidates_for(self, layer: str) -> list[TuckerRanks]:
        """The candidate rank triples of one layer, cheapest first."""
        if layer not in self.layers:
            raise SeedFileError(
                f"the seed has no layer {layer!r}; its layers are {', '.join(self.layers)}"
            )
        return [TuckerRanks(*candidate.ranks) for candidate in self.layers[layer].candidates]

    def seed_data(self) -> SeedData:
        """What the rank space takes from the seed: candidates and spectra per layer."""
        spectra = {
            name: ModeSpectra(
                out=np.asarray(layer.spectra.out, dtype=np.float64),
                in_=np.asarray(layer.spectra.in_, dtype=np.float64),
                spatial=np.asarray(layer.spectra.spatial, dtype=np.float64),
            )
            for name, layer in self.layers.items()
        }
        return SeedData(candidates=self.compressing_candidates(), spectra=spectra)

    def compressing_candidates(self) -> dict[str, list[TuckerRanks]]:
        """Per layer, the candidates with fewer parameters than the dense conv: a Tucker layer
        larger than what it replaces has no place in a compression sweep (high energy
        thresholds on a flat spectrum give such triples). If none compresses, the most
        compressive one."""
        chosen = {}
        for name, layer in self.layers.items():
            useful = [entry for entry in layer.candidates if entry.compression > 1.0]
            if not useful:
                useful = [max(layer.candidates, key=lambda entry: entry.compression)]
            chosen[name] = [TuckerRanks(*entry.ranks) for entry in useful]
        return chosen


# ---- building ----------------------------------------------------------------------------------


def _layer_entry(analysis: LayerAnalysis) -> dict[str, Any]:
    spectra = analysis.spectra
    return {
        "shape": tuple(analysis.shape),
        "spectra": {
            "out": spectra.out.tolist(),
            "in": spectra.in_.tolist(),
            "spatial": spectra.spatial.tolist(),
        },
        "candidates": [
            {
                "ranks": tuple(int(r) for r in candidate.ranks),
                "thresholds": tuple(float(t) for t in candidate.thresholds),
                "params": candidate.params,
                "dense_params": candidate.dense_params,
                "compression": float(candidate.compression),
                "flops": candidate.flops,
                "dense_flops": candidate.dense_flops,
                "error_bound": float(candidate.error_bound),
                "note": candidate.note,
            }
            for candidate in analysis.candidates
        ],
    }


def build_seed(
    analyses: Mapping[str, LayerAnalysis],
    *,
    model: Mapping[str, Any],
    data: Mapping[str, Any],
    baseline: Mapping[str, Any],
    method: str,
    thresholds: Sequence[float],
) -> SeedFile:
    """A SeedFile (created now, UTC) from candidate_ranks' analyses and the run's context:
    model {name, options, in_channels, num_classes, input_size}, data {name, options},
    baseline {val_acc, epochs, params, flops, checkpoint, run_id}."""
    if method not in METHODS:
        raise SeedFileError(f"cannot build a seed: method must be one of {METHODS}, got {method!r}")
    content = {
        "created": datetime.now(timezone.utc),
        "model": dict(model),
        "data": dict(data),
        "baseline": dict(baseline),
        "method": method,
        "thresholds": tuple(float(t) for t in thresholds),
        "layers": {name: _layer_entry(analysis) for name, analysis in analyses.items()},
    }
    try:
        return SeedFile.model_validate(content)
    except ValidationError as error:
        raise SeedFileError(f"cannot build a seed: {_describe(error)}") from None


# ---- reading and writing -----------------------------------------------------------------------


def write_seed(seed: SeedFile, path: str | os.PathLike[str]) -> Path:
    """Write `seed` as JSON (creating parent folders) and return the path. The file is replaced
    atomically, so a crash never leaves a half-written seed for the sweep to read."""
    target = Path(path)
    text = seed.model_dump_json(indent=2, by_alias=True) + "\n"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise SeedFileError(f"cannot write seed file {target}: {error.strerror or error}") from None
    return target


def read_seed(path: str | os.PathLike[str]) -> SeedFile:
    """Read and validate a seed file; SeedFileError says what is wrong with it."""
    source = Path(path)
    text = _read_text(source)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise SeedFileError(
            f"seed file {source} is not valid JSON ({error.msg} at line {error.lineno} column "
            f"{error.colno}): regenerate it with `tucker-sweep seed`"
        ) from None
    version = _check_header(source, raw)
    if version < SCHEMA_VERSION:
        text = json.dumps(upgraded(raw, version, SCHEMA_VERSION))
    try:
        # Strict: a rank written as "12" or 12.0 is a damaged file, not something to coerce.
        return SeedFile.model_validate_json(text, strict=True)
    except ValidationError as error:
        raise SeedFileError(
            f"seed file {source} is invalid: {_describe(error)}; fix these fields or regenerate "
            "it with `tucker-sweep seed`"
        ) from None


def _read_text(source: Path) -> str:
    if not source.exists():
        raise SeedFileError(
            f"seed file {source} does not exist: check the path or create it with "
            "`tucker-sweep seed`"
        )
    try:
        return source.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SeedFileError(f"seed file {source} is not UTF-8 text: is it a seed file?") from None
    except OSError as error:
        raise SeedFileError(f"cannot read seed file {source}: {error.strerror or error}") from None


def _check_header(source: Path, raw: object) -> int:
    """Schema name and version first, so a newer file says "upgrade" rather than listing the
    fields this version does not understand; the file's version."""
    if not isinstance(raw, dict):
        raise SeedFileError(f"seed file {source} holds a JSON {type(raw).__name__}, not an object")
    name = raw.get("schema_name")
    if name != SCHEMA_NAME:
        raise SeedFileError(
            f"{source} has schema_name {name!r}, not {SCHEMA_NAME!r}: it is not a tucker-sweep "
            "seed file"
        )
    version = raw.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise SeedFileError(
            f"seed file {source} has schema_version {version!r}; expected an integer (this "
            f"tucker-sweep reads version {SCHEMA_VERSION})"
        )
    if version > SCHEMA_VERSION:
        raise SeedFileError(
            f"seed file {source} was written by a newer tucker-sweep (version {version} > "
            f"{SCHEMA_VERSION}): upgrade tucker-sweep to read it"
        )
    if version < 1:
        raise SeedFileError(f"seed file {source} has an unknown schema_version {version}")
    return version


def _describe(error: ValidationError) -> str:
    return describe_validation_error(error, most=_PROBLEMS_SHOWN, show_value=False)
