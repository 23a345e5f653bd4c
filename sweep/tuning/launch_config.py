"""Which config a launch runs with: a YAML file (or the defaults), or, to resume a sweep, the
config stored with it; flags override either."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sweep.config import SweepConfig, build_config
from sweep.errors import ConfigError
from sweep.tracking.names import CONFIG_ARTIFACT
from sweep.tuning.storage import SweepStore


def sweep_config(
    config_path: Path | None,
    resume: str | None,
    storage_path: str | None,
    overrides: dict[str, Any],
) -> SweepConfig:
    """The config of a sweep to launch: from `config_path` (None: the defaults, the digits
    sweep), or for `resume` the config stored with that sweep; `overrides` (dotted keys, None
    for not given) apply on top of either."""
    if resume is None:
        return build_config(SweepConfig, config_path, overrides)
    if config_path is not None:
        raise ConfigError("--resume continues a sweep with its stored config: drop CONFIG")
    store = SweepStore(storage_path or SweepConfig().cluster.storage_path, resume)
    if not store.exists(CONFIG_ARTIFACT):
        raise ConfigError(f"no sweep named {resume!r} in {store.storage_path} to resume")
    with tempfile.TemporaryDirectory(prefix="tucker-sweep-") as folder:
        stored = store.copy_to(CONFIG_ARTIFACT, Path(folder) / CONFIG_ARTIFACT)
        return build_config(SweepConfig, stored, {**overrides, "name": resume})
