"""Where a sweep's trials run: a local Ray that listens on loopback only, or a cluster."""

from __future__ import annotations

import os

import ray

from sweep.config import SweepConfig
from sweep.errors import ConfigError
from sweep.tuning.ray_internals import keep_local_ray_on_loopback


def connect_ray(address: str | None) -> str:
    """Join the cluster at `address` (or $RAY_ADDRESS); otherwise start a local Ray that
    listens on loopback only. Returns a description for the user."""
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return "the Ray instance already running in this process"
    if address:
        ray.init(address=address, log_to_driver=False)
        return f"Ray cluster at {address}"
    # Ray binds every interface on Linux by default, which would expose a laptop's Ray to the
    # network.
    keep_local_ray_on_loopback()
    ray.init(include_dashboard=False, log_to_driver=False)
    return f"local Ray on 127.0.0.1 ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"


def check_cluster_resources(config: SweepConfig) -> None:
    """Per-trial resources the cluster can never provide are a config error, not a hang."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    gpus = max((node.get("GPU", 0) for node in nodes), default=0)
    cpus = max((node.get("CPU", 0) for node in nodes), default=0)
    if config.resources.gpu > 0 and gpus == 0:
        raise ConfigError(
            f"resources.gpu: {config.resources.gpu} GPU per trial requested, but the Ray "
            "cluster has no GPU (set resources.gpu: 0 to train on CPUs)"
        )
    if config.resources.gpu > gpus:
        raise ConfigError(
            f"resources.gpu: {config.resources.gpu} GPUs per trial, but no node has more "
            f"than {gpus:g}"
        )
    if config.resources.cpu > cpus:
        raise ConfigError(
            f"resources.cpu: {config.resources.cpu:g} CPUs per trial, but no node has more "
            f"than {cpus:g}"
        )
