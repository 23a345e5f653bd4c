"""Pydantic models of the YAML configs, and loading them with one-line errors that name the key.

Every section forbids unknown keys, so a typo fails loudly instead of being ignored.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lightning_modules.execution import ExecutionSetup
from sweep.config_yaml import read_yaml
from sweep.errors import ConfigError, describe_validation_error, echo, problem_keys

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "tucker-sweep"
SWEEP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# A sweep name becomes a folder (reports/<name>, exports/<name>/<trial>, the storage path's
# <name>), an MLflow run name (at most 250 characters) and the registered model
# tucker-<name>: 100 characters leave room for every prefix and suffix.
SWEEP_NAME_MAX_LENGTH = 100
MLFLOW_NAME_MAX_LENGTH = 250  # run and experiment names: MLflow's database holds 250

# Bounds of the config's integers. Past them a value is a typo (a sign, a zero too many), not a
# setting, and would fail mid-sweep in numpy, Lightning or a sampler, with a traceback.
MAX_SEED = 2**32 - 1  # numpy and Lightning take unsigned 32-bit seeds
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 2**20  # far beyond any batch that fits a device
MAX_TRIALS = 10_000  # above that, a zero too many: Tune would queue every trial
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Epochs = Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
BatchSize = Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE)]

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
    raise ValueError(f"must be {RANK_SPEC_HELP}, got {echo(value)}")


def check_rank_spec(value: Any) -> RankSpecConfig | None:
    if value is None:
        return None
    if isinstance(value, dict):
        if not value:
            raise ValueError("a per-layer mapping needs at least one layer")
        return {str(name): check_layer_rank_spec(spec) for name, spec in value.items()}
    return check_layer_rank_spec(value)


class StrictModel(BaseModel):
    # allow_inf_nan=False: every float of a config is finite (YAML reads .inf and .nan).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(StrictModel):
    """Which data module, and options for it (see lightning_modules.data)."""

    name: str = "digits"
    options: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(StrictModel):
    """Which network: a built-in by `name` (lightning_modules.nets.MODELS), a user's
    `factory` ("package.module:callable", called with `options`), a `torchvision` model or a
    `timm` model by name (`options` go to torchvision.models.get_model or timm.create_model);
    `pretrained`: a torchvision or timm model starts from its published weights, read from
    the local caches only (torch hub's, Hugging Face's); `checkpoint`: trained weights of it
    to compress (then nothing trains from scratch: the trials fine-tune from HOOI of these
    weights)."""

    name: str = "vgg_small"
    factory: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    torchvision: str | None = Field(None, min_length=1)
    timm: str | None = Field(None, min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    pretrained: bool = Field(False, strict=True)  # YAML's true, not 'yes' or 1
    checkpoint: str | None = Field(None, min_length=1)

    @field_validator("timm")
    @classmethod
    def _timm_name(cls, value: str | None) -> str | None:
        # "hf-hub:org/repo" and "local-dir:path" would have timm read a config from the hub.
        if value is not None and ":" in value:
            raise ValueError(
                "a model name of timm.list_models() (a .tag allowed), not a hub or folder "
                f"reference, got {echo(value)}"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _pretrained_as_option(cls, raw: Any) -> Any:
        # lightning_modules.nets.build_model takes `pretrained` as an option of torchvision and
        # timm models, and every caller hands it model.options: folded in here, the flag
        # reaches them all (the baseline, each trial, `train`), and a stored config, which
        # holds both, reads back the same.
        if not isinstance(raw, dict) or raw.get("pretrained") is not True:
            return raw
        options = raw.get("options", {})
        if not isinstance(options, dict):
            return raw  # the field's own check names it
        if options.get("pretrained", True) is not True:
            raise ValueError("model.options.pretrained contradicts model.pretrained: true")
        return {**raw, "options": {**options, "pretrained": True}}

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        sources = [
            key for key in ("factory", "torchvision", "timm") if getattr(self, key) is not None
        ]
        # A stored config spells the default name out beside a factory: only another name
        # is a conflict.
        named = self.name != ModelConfig.model_fields["name"].default
        if len(sources) > 1 or (sources and named):
            raise ValueError(
                "give one of model.name, model.factory, model.torchvision or model.timm"
            )
        published = bool(sources) and sources[0] in ("torchvision", "timm")
        if self.pretrained and not published:
            raise ValueError(
                "only a torchvision or timm model has published weights (model.pretrained); "
                "give your own weights as model.checkpoint"
            )
        if self.pretrained and self.checkpoint is not None:
            raise ValueError("give model.pretrained or model.checkpoint, not both")
        if published and self.options.get("pretrained") and not self.pretrained:
            raise ValueError("write model.pretrained: true, not model.options.pretrained")
        return self

    @property
    def spec(self) -> str:
        """What lightning_modules.nets.build_model takes (its FACTORY_PREFIX, TORCHVISION_PREFIX
        and TIMM_PREFIX strings for a factory, a torchvision or a timm model)."""
        if self.factory is not None:
            return f"factory:{self.factory}"
        if self.torchvision is not None:
            return f"torchvision:{self.torchvision}"
        if self.timm is not None:
            return f"timm:{self.timm}"
        return self.name


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
    experiment: str = Field(DEFAULT_EXPERIMENT, min_length=1, max_length=MLFLOW_NAME_MAX_LENGTH)

    def resolved_uri(self) -> str:
        return self.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class ExecutionFields(StrictModel):
    """How a fit runs on its device (lightning_modules.execution): fp32 eager by default."""

    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true"
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"
    channels_last: bool = False

    @field_validator("compile", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        # YAML reads an unquoted `off` as false (and `on` as true).
        return (
            {False: "off", True: "default"}.get(value, value) if isinstance(value, bool) else value
        )

    def execution_setup(self) -> ExecutionSetup:
        return ExecutionSetup(self.precision, self.compile, self.channels_last)


class TrainConfig(ExecutionFields):
    """One training run (`tucker-sweep train`): dense when `ranks` is None."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    ranks: RankSpecConfig | None = None
    epochs: Epochs = 15
    batch_size: BatchSize = 64
    seed: Seed = 0
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    run_name: str | None = Field(None, max_length=MLFLOW_NAME_MAX_LENGTH)

    @field_validator("ranks", mode="plain")
    @classmethod
    def _rank_spec(cls, value: Any) -> RankSpecConfig | None:
        return check_rank_spec(value)

    @model_validator(mode="after")
    def _runnable(self) -> TrainConfig:
        # "auto" resolves to a device only when training starts (sweep.train checks it then).
        device = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "mps": "mps"}.get(self.accelerator)
        problem = device and self.execution_setup().problem_on(device)
        if problem:
            raise ValueError(f"{problem} (accelerator is {self.accelerator})")
        return self


ConfigModel = TypeVar("ConfigModel", bound=BaseModel)


def set_dotted(raw: dict[str, Any], dotted_key: str, value: Any) -> None:
    """raw['a']['b'] = value for 'a.b', creating sections as needed."""
    *sections, last = dotted_key.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted_key}: '{section}' is not a section")
    node[last] = value


def build_config(
    model: type[ConfigModel],
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    flags: Mapping[str, str] | None = None,
    source: str | None = None,
) -> ConfigModel:
    """Validate a config from an optional YAML file, with dotted-key overrides (CLI flags)
    applied on top. Raises ConfigError naming the offending key; `flags` (dotted key -> flag)
    makes a bad override name its flag instead, and `source` names the file (default: path)."""
    raw = read_yaml(path, source) if path is not None else {}
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    for key, value in given.items():
        set_dotted(raw, key, value)
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        labels = {key: flag for key, flag in (flags or {}).items() if key in given}
        raise ConfigError(_describe(error, source or path, labels)) from None


def _describe(error: ValidationError, source: str | Path | None, labels: dict[str, str]) -> str:
    """One line for a config that does not validate. A value a flag gave is blamed on the flag,
    anything else on the file it came from: the user must know which one to edit."""
    keys = problem_keys(error)
    from_flag = bool(keys) and keys[0] in labels
    prefix = f"{source}: " if source is not None and not from_flag else ""
    return prefix + describe_validation_error(error, labels=labels)


def check_sweep_name(name: str, flag: str) -> str:
    """A sweep name is a folder under the storage path: nothing that climbs out of it."""
    if len(name) > SWEEP_NAME_MAX_LENGTH or not re.fullmatch(SWEEP_NAME_PATTERN, name):
        raise ConfigError(
            f"{flag}: {echo(name)} is not a sweep name (up to {SWEEP_NAME_MAX_LENGTH} letters, "
            "digits, '.', '_' and '-', starting with a letter or digit)"
        )
    return name


# ---- sweeps (`tucker-sweep launch`) ---------------------------------------------------------


def _fractions(singular: str, plural: str) -> Callable[[list[float]], list[float]]:
    """A validator of a non-empty list of numbers in (0, 1] that names them in its errors."""

    def check(values: list[float]) -> list[float]:
        if not values:
            raise ValueError(f"needs at least one {singular}")
        for value in values:
            if not 0 < value <= 1:
                raise ValueError(f"{plural} must be in (0, 1], got {value}")
        return values

    return check


class RatioLists(StrictModel):
    """Per-mode rank ratios: the choices of `mode: ratio`, and of `mode: per_layer` unseeded."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True
    )

    out: list[float] = Field(default_factory=lambda: [0.125, 0.25, 0.5])
    in_: list[float] = Field(default_factory=lambda: [0.125, 0.25, 0.5], alias="in")
    spatial: list[float] = Field(default_factory=lambda: [0.34, 0.67, 1.0])

    _valid = field_validator("out", "in_", "spatial")(_fractions("ratio", "ratios"))

    def as_tuple(self) -> tuple[list[float], list[float], list[float]]:
        return (self.out, self.in_, self.spatial)


class SearchRange(StrictModel):
    """A range to sample from: log-uniform (`log: true`, the default) or uniform."""

    low: float = Field(gt=0)
    high: float = Field(gt=0)
    log: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class DecompositionConfig(StrictModel):
    """Which convs become Tucker layers and how their ranks are searched."""

    layers: Literal["all"] | list[str] = "all"  # "all": every decomposable conv but the input
    # per_layer: a candidate triple per layer; ratio: one ratio per mode for every layer;
    # budget: a compression target per trial, turned into per-layer ranks by the allocator.
    # budget is the default: in benchmarks/search_quality.py it found 3x (digits) and 2x
    # (MNIST) the compression of per_layer within half a point of dense test accuracy.
    mode: Literal["per_layer", "ratio", "budget"] = "budget"
    ratios: RatioLists = Field(default_factory=RatioLists)
    # mode budget: the targets (compression of the decomposed convs' `budget_metric`) and how
    # ranks are allocated to meet them (lightning_modules/ranks/allocation.py).
    compression: SearchRange | list[float] = Field(
        default_factory=lambda: SearchRange(low=2.0, high=30.0)
    )
    # latency: the target is a measured speed-up of the decomposed convs on the `deploy`
    # device, priced by a latency table timed there (lightning_modules.inference).
    budget_metric: Literal["params", "flops", "latency"] = "params"
    # uniform by default: on the briefly trained baseline, minimax starves the output mode of
    # the last layers (N' of 4-10) and trained worse at equal compression (search_quality.py).
    allocator: Literal["minimax", "uniform"] = "uniform"
    seed: bool = True  # narrow per-layer candidates with a HOOI analysis of a dense baseline
    seed_epochs: Epochs = 6  # epochs of the dense baseline
    # Lower than the textbook 0.9-0.99: a briefly trained net's kernels keep much of their
    # flat random-init spectrum, so 0.8 and above leave most of every mode (below 2x).
    thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9])
    method: Literal["energy", "vbmf"] = "energy"
    init: list[Literal["hooi", "random"]] = Field(default_factory=lambda: ["hooi", "random"])

    _valid_thresholds = field_validator("thresholds")(
        _fractions("energy threshold", "energy thresholds")
    )

    @field_validator("compression")
    @classmethod
    def _compressions(cls, value: SearchRange | list[float]) -> SearchRange | list[float]:
        values = value if isinstance(value, list) else [value.low, value.high]
        if not values:
            raise ValueError("needs at least one compression target")
        for item in values:
            if not (item >= 1 and math.isfinite(item)):
                raise ValueError(f"compression targets must be at least 1, got {item}")
        return value

    @field_validator("init")
    @classmethod
    def _init(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("needs at least one of hooi, random")
        return list(dict.fromkeys(values))


class SearchConfig(StrictModel):
    algorithm: Literal["random", "grid", "optuna"] = "random"
    # What the searcher optimises: val_acc (maximised), and optionally a cost (minimised) for
    # Optuna's multi-objective search. ASHA stops trials on scheduler.metric either way.
    objectives: list[Literal["val_acc", "params", "flops", "latency"]] = Field(
        default_factory=lambda: ["val_acc"]
    )
    num_samples: int = Field(24, ge=1, le=MAX_TRIALS)
    # None: as many as resources allow
    max_concurrent_trials: int | None = Field(None, ge=1, le=MAX_TRIALS)
    lr: float | list[float] | SearchRange = Field(
        default_factory=lambda: SearchRange(low=0.02, high=0.1)
    )
    seed: Seed = 0

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, values: list[str]) -> list[str]:
        if not values or values[0] != "val_acc":
            raise ValueError(f"the first objective must be val_acc, got {values}")
        if len(values) > 2 or (len(values) == 2 and values[1] == "val_acc"):
            raise ValueError(f"val_acc and at most one of params, flops, latency, got {values}")
        return values

    @field_validator("lr")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, float | int) and not (item > 0 and math.isfinite(item)):
                raise ValueError(f"learning rates must be positive and finite, got {item}")
        if isinstance(value, list) and not value:
            raise ValueError("needs at least one learning rate")
        return value


class SchedulerConfig(StrictModel):
    """ASHA early stopping over epochs, or none (every trial runs to stopping.max_epochs)."""

    name: Literal["asha", "none"] = "asha"
    # What ASHA compares at a rung. Validation loss by default: accuracy on a small, easy
    # validation set saturates and ties (many trials at 0.996), and a tie at the cutoff
    # promotes every tied trial. The best trial is still chosen by val_acc.
    metric: Literal["val_loss", "val_acc"] = "val_loss"
    max_t: Epochs | None = None  # None: stopping.max_epochs
    grace_period: Epochs = 1
    reduction_factor: float = Field(3.0, gt=1)
    brackets: int = Field(1, ge=1, le=100)  # more than log(max_t) brackets are empty


MAX_WORKERS = 1024


class ResourcesConfig(StrictModel):
    """Per trial; fractions share a GPU between trials. With `workers` > 1, every trial and the
    dense baseline train data-parallel (DDP) on that many Ray Train workers, `cpu` and `gpu`
    are per worker, and training.batch_size is split over them (sweep/tuning/train_workers.py)."""

    workers: int = Field(1, ge=1, le=MAX_WORKERS)
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _one_gpu_per_worker(self) -> ResourcesConfig:
        # A DDP rank drives one device: two ranks on one GPU fail in NCCL, and a second GPU of
        # one worker would sit idle.
        if self.workers > 1 and self.gpu not in (0, 1):
            raise ValueError(
                f"gpu: {self.gpu:g} per worker with {self.workers} workers, but a worker "
                "drives one GPU: for N GPUs per trial, give gpu: 1 and workers: N"
            )
        return self


class StoppingConfig(StrictModel):
    max_epochs: Epochs = 27
    target_accuracy: float = Field(0.95, gt=0, le=1)  # for epochs/seconds-to-target metrics


class TrainingConfig(ExecutionFields):
    """What every trial shares (the learning rate is searched: see search.lr)."""

    batch_size: BatchSize = 64
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    seed: Seed = 0
    max_failures: int = Field(2, ge=0, le=100)  # retries of a trial that raised
    # Checkpoint every k-th epoch and the last one (reports stay once per epoch). k > 1 cuts
    # checkpoint storage traffic k-fold; a retried trial redoes up to k-1 epochs, and a trial
    # ASHA stops between checkpoints keeps only its earlier one (or none, to export).
    checkpoint_every: Epochs = 1
    # With model.checkpoint: each trial fine-tunes for this many epochs (ASHA's max_t), from
    # HOOI of the given weights, with the learning rate decaying over them.
    finetune_epochs: Epochs = 5


MAX_THREADS = 1024


class DeployConfig(StrictModel):
    """The device a compressed model is meant to run on: every trial's model is timed there in
    its inference form, beside the dense model, at each batch size (latency_ms_b<B>,
    speedup_b<B>); a latency budget is priced there too. `device` None: the trials' device
    (cuda with resources.gpu, else cpu). Training and deployment may differ: train on a GPU,
    deploy on `cpu`. `threads`: torch's CPU threads while timing (one thread by default: the
    figure of a single-core deployment, and steady beside other trials on the same host)."""

    device: Literal["cpu", "cuda"] | None = None
    threads: int = Field(1, ge=1, le=MAX_THREADS)
    batch_sizes: list[BatchSize] = Field(default_factory=lambda: [1, 64], min_length=1)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    @field_validator("batch_sizes")
    @classmethod
    def _distinct(cls, values: list[int]) -> list[int]:
        return list(dict.fromkeys(values))

    def resolved_device(self, gpus_per_trial: float) -> str:
        return self.device or ("cuda" if gpus_per_trial > 0 else "cpu")


class ClusterConfig(StrictModel):
    """`address` None: $RAY_ADDRESS if set, else a local Ray on loopback."""

    address: str | None = None
    storage_path: str = "ray_results"  # a directory, or a URI (s3://...) shared by all nodes


class SweepConfig(StrictModel):
    """A whole sweep (`tucker-sweep launch`). The defaults are the bundled digits sweep
    (configs/digits.yaml spells them out)."""

    name: str = Field(
        "digits", min_length=1, max_length=SWEEP_NAME_MAX_LENGTH, pattern=SWEEP_NAME_PATTERN
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    decomposition: DecompositionConfig = Field(default_factory=DecompositionConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    stopping: StoppingConfig = Field(default_factory=StoppingConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)

    @model_validator(mode="before")
    @classmethod
    def _latency_targets(cls, raw: Any) -> Any:
        # A latency target is a speed-up: 30x (the params default's top) is out of reach of
        # any conv, so a latency budget without its own targets searches 1.2x to 4x.
        decomposition = raw.get("decomposition") if isinstance(raw, dict) else None
        if (
            isinstance(decomposition, dict)
            and decomposition.get("budget_metric") == "latency"
            and "compression" not in decomposition
        ):
            decomposition = {**decomposition, "compression": {"low": 1.2, "high": 4.0}}
            return {**raw, "decomposition": decomposition}
        return raw

    @model_validator(mode="before")
    @classmethod
    def _finetuning_lr(cls, raw: Any) -> Any:
        # Fine-tuning trained weights wants smaller steps than training from scratch: a
        # checkpoint without a search.lr of its own gets a tenth of the default range.
        if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
            return raw
        search = raw.get("search")
        if raw["model"].get("checkpoint") and not (isinstance(search, dict) and "lr" in search):
            search = dict(search) if isinstance(search, dict) else {}
            search["lr"] = {"low": 0.002, "high": 0.01}
            return {**raw, "search": search}
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> SweepConfig:
        max_t = self.max_t
        if max_t > self.stopping.max_epochs and self.model.checkpoint is None:
            raise ValueError(
                f"scheduler.max_t ({max_t}) exceeds stopping.max_epochs "
                f"({self.stopping.max_epochs})"
            )
        if self.scheduler.grace_period > max_t:
            raise ValueError(
                f"scheduler.grace_period ({self.scheduler.grace_period}) exceeds "
                f"scheduler.max_t ({max_t})"
            )
        grid = self.search.algorithm == "grid"
        if len(self.search.objectives) > 1 and self.search.algorithm != "optuna":
            raise ValueError(
                f"search.objectives: {self.search.objectives} needs search.algorithm: optuna "
                f"(multi-objective search), not {self.search.algorithm}"
            )
        if grid and isinstance(self.search.lr, SearchRange):
            raise ValueError("search.lr: grid search needs a list of learning rates, not a range")
        decomposition = self.decomposition
        if decomposition.mode == "budget":
            if not decomposition.seed:
                raise ValueError(
                    "decomposition.mode: budget allocates ranks from the seed's spectra; set "
                    "decomposition.seed: true"
                )
            if grid and isinstance(decomposition.compression, SearchRange):
                raise ValueError(
                    "decomposition.compression: grid search needs a list of targets, not a range"
                )
        trial_device = "cuda" if self.resources.gpu > 0 else "cpu"
        problem = self.training.execution_setup().problem_on(trial_device)
        if problem:
            raise ValueError(f"training.{problem} (resources.gpu is 0: trials run on CPUs)")
        deploy_device = self.deploy_device
        if deploy_device == "cuda" and self.resources.gpu == 0:
            # Trials time their model where they run: a CPU trial has no GPU to time it on.
            raise ValueError("deploy.device: cuda needs trials on GPUs (resources.gpu > 0)")
        if deploy_device == "cpu" and self.deploy.dtype == "float16":
            raise ValueError(
                "deploy.dtype: float16 convolutions are a GPU setting; use float32 "
                "or bfloat16 on cpu"
            )
        if self.resources.gpu > 1 and self.resources.gpu != int(self.resources.gpu):
            raise ValueError(f"resources.gpu: a fraction must be below 1, got {self.resources.gpu}")
        return self

    @property
    def deploy_device(self) -> str:
        return self.deploy.resolved_device(self.resources.gpu)

    @property
    def max_t(self) -> int:
        """Epochs of a full trial: fine-tuning epochs from a checkpoint, else training ones."""
        if self.model.checkpoint is not None:
            return self.training.finetune_epochs
        return self.scheduler.max_t or self.stopping.max_epochs

    @property
    def schedule_epochs(self) -> int:
        """What a trial's learning-rate schedule spans."""
        return self.max_t if self.model.checkpoint is not None else self.stopping.max_epochs
