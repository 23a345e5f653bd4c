"""Where a sweep's trials run: a local Ray that listens on loopback only, or a cluster."""

from __future__ import annotations

import logging
import os
import socket

import ray

from sweep.config import SweepConfig
from sweep.errors import ConfigError
from sweep.tuning.ray_internals import keep_local_ray_on_loopback

# How long a cluster's address may take to accept a connection.
CONNECT_TIMEOUT_S = 15.0


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """One TCP connection to the cluster's address, or ConfigError in one line. ray.init
    retries an address where nothing listens for many minutes (Ray 2.60: rounds of 5 s connect
    and 30 s cluster-id timeouts), printing its own warnings meanwhile."""
    if address in ("auto", "local"):
        return  # Ray finds these itself, on this machine
    host, separator, port = address.removeprefix("ray://").rpartition(":")
    if not separator or not host or not port.isdigit():
        raise ConfigError(f"Ray cluster address {address!r}: expected host:port")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except TimeoutError:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} (no answer within {timeout_s:.0f} s)"
        ) from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({reason.lower()})") from None


def connect_ray(address: str | None, verbose: bool = False) -> str:
    """Join the cluster at `address` (or $RAY_ADDRESS); otherwise start a local Ray that
    listens on loopback only. Returns a description for the user. Ray's own log lines
    (startup, warnings) reach the terminal only when `verbose`."""
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return "the Ray instance already running in this process"
    if address:
        check_reachable(address)
        ray.init(address=address, log_to_driver=False, logging_level=_ray_log_level(verbose))
        return f"Ray cluster at {address}"
    # Ray binds every interface on Linux by default, which would expose a laptop's Ray to the
    # network.
    keep_local_ray_on_loopback()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=_ray_log_level(verbose))
    return f"local Ray on 127.0.0.1 ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"


def _ray_log_level(verbose: bool) -> int:
    # Errors still show; INFO (startup) and WARNING (e.g. the token-authentication notice) are
    # Ray talking to its own users, not to a sweep's.
    return logging.INFO if verbose else logging.ERROR


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
