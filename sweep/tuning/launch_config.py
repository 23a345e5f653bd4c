"""Which config a launch runs with: a YAML file (or the defaults), or, to resume a sweep, the
config stored with it; flags override either."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweep.config import SweepConfig, build_config, check_sweep_name
from sweep.errors import ConfigError
from sweep.folders import check_output_folder
from sweep.tracking.names import CONFIG_ARTIFACT
from sweep.tuning.storage import SWEEP_FOLDER, SweepStore


def sweep_config(
    config_path: Path | None,
    resume: str | None,
    storage_path: str | None,
    overrides: dict[str, Any],
    flags: Mapping[str, str] | None = None,
) -> SweepConfig:
    """The config of a sweep to launch: from `config_path` (None: the defaults, the digits
    sweep), or for `resume` the config stored with that sweep; `overrides` (dotted keys, None
    for not given) apply on top of either, and `flags` name their flags in errors."""
    if resume is None:
        settings = build_config(SweepConfig, config_path, overrides, flags=flags)
    elif config_path is not None:
        raise ConfigError("--resume continues a sweep with its stored config: drop CONFIG")
    else:
        settings = _resumed_config(resume, storage_path, overrides, flags)
    # Checked here, before Ray or MLflow hear of the sweep: a storage path that is a file
    # would otherwise fail once the parent run exists, and leave it RUNNING.
    if storage_path and flags and "cluster.storage_path" in flags:
        label = flags["cluster.storage_path"]
    else:
        label = f"{config_path}: cluster.storage_path" if config_path else "cluster.storage_path"
    check_output_folder(settings.cluster.storage_path, label)
    return with_absolute_paths(settings)


def with_absolute_paths(settings: SweepConfig) -> SweepConfig:
    """Relative file paths of the config (model.checkpoint, data.options.path and .root) made
    absolute against the working directory: Tune runs each trial in its own folder, where a
    relative path would name nothing. The stored config keeps them absolute for a resume."""
    model, data = settings.model, settings.data
    if model.checkpoint is not None and not Path(model.checkpoint).expanduser().is_absolute():
        model = model.model_copy(update={"checkpoint": str(Path(model.checkpoint).resolve())})
    for key in ("path", "root"):
        path = data.options.get(key)
        local = isinstance(path, str) and "://" not in path
        if local and not Path(path).expanduser().is_absolute():
            data = data.model_copy(
                update={"options": {**data.options, key: str(Path(path).resolve())}}
            )
    return settings.model_copy(update={"model": model, "data": data})


def _resumed_config(
    resume: str, storage_path: str | None, overrides: dict[str, Any],
    flags: Mapping[str, str] | None,
) -> SweepConfig:  # fmt: skip
    # Checked before the name becomes a path: '../x' must not reach outside the storage.
    check_sweep_name(resume, "--resume")
    store = SweepStore(storage_path or SweepConfig().cluster.storage_path, resume)
    if not store.exists(CONFIG_ARTIFACT):
        raise ConfigError(f"no sweep named {resume!r} in {store.storage_path} to resume")
    with tempfile.TemporaryDirectory(prefix="tucker-sweep-") as folder:
        stored = store.copy_to(CONFIG_ARTIFACT, Path(folder) / CONFIG_ARTIFACT)
        # Errors name the stored file, not the temporary copy the user never saw.
        source = f"{store.experiment_path}/{SWEEP_FOLDER}/{CONFIG_ARTIFACT}"
        return build_config(
            SweepConfig, stored, {**overrides, "name": resume}, flags=flags, source=source
        )
