"""Where a sweep's trials run: a local Ray that listens on loopback only, or a cluster."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import ray

from sweep.config import SweepConfig
from sweep.errors import ConfigError
from sweep.stop_signals import StopRequested, StopSignals
from sweep.tuning.ray_internals import keep_local_ray_on_loopback, ray_keeps_our_sigterm_handler
from sweep.tuning.train_workers import TRAIN_DRIVER_CPU, fit_footprint, is_multi_worker

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


@contextmanager
def _ray_starting(stop_signals: StopSignals | None) -> Iterator[None]:
    """Around `ray.init`: the stop path's handlers stay installed (not Ray's), and a first
    signal waits for the start to end, since a start cut half-way leaves Ray's processes
    behind with nothing to shut them down (docs: sweep/stop_signals.py)."""
    if stop_signals is None:
        yield
        return
    with stop_signals.deferred():
        with ray_keeps_our_sigterm_handler():
            yield
        stop_signals.install()  # Ray's core worker installed a native handler in the end


def connect_ray(
    address: str | None, verbose: bool = False, stop_signals: StopSignals | None = None
) -> str:
    """Join the cluster at `address` (or $RAY_ADDRESS); otherwise start a local Ray that
    listens on loopback only. Returns a description for the user. Ray's own log lines
    (startup, warnings) reach the terminal only when `verbose`. With `stop_signals`, a stop
    signal during the start raises StopRequested once Ray has started."""
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return "the Ray instance already running in this process"
    if address:
        check_reachable(address)
        with _ray_starting(stop_signals):
            ray.init(address=address, log_to_driver=False, logging_level=_ray_log_level(verbose))
        return f"Ray cluster at {address}"
    # Ray binds every interface on Linux by default, which would expose a laptop's Ray to the
    # network.
    keep_local_ray_on_loopback()
    with _ray_starting(stop_signals):
        ray.init(
            include_dashboard=False, log_to_driver=False, logging_level=_ray_log_level(verbose)
        )
    return f"local Ray on 127.0.0.1 ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"


def shut_down_ray(stop_signals: StopSignals, progress: Callable[[str], None]) -> int | None:
    """Disconnect from Ray (and stop a local one) with stop signals held off until it is done:
    Ray's exit handler would otherwise do it at interpreter exit, where a Ctrl-C cut it
    half-way with a traceback and left Ray's agents running. Returns the signal that arrived
    meanwhile, if any."""
    if not ray.is_initialized():
        return None
    try:
        with stop_signals.deferred(every_signal=True):
            progress("shutting down Ray")
            ray.shutdown()
    except StopRequested as stop:
        return stop.signum
    return None


def _ray_log_level(verbose: bool) -> int:
    # Errors still show; INFO (startup) and WARNING (e.g. the token-authentication notice) are
    # Ray talking to its own users, not to a sweep's.
    return logging.INFO if verbose else logging.ERROR


def check_cluster_resources(config: SweepConfig) -> None:
    """Per-trial resources the connected cluster can never provide are a config error, not a
    hang (check_resources_on its live nodes)."""
    check_resources_on(config, [node["Resources"] for node in ray.nodes() if node.get("Alive")])


def check_resources_on(config: SweepConfig, nodes: Sequence[Mapping[str, float]]) -> None:
    """ConfigError in one line unless a trial fits on nodes with these resources. With
    resources.workers > 1, cpu and gpu are a worker's: each must fit on some node, and all of
    a trial's workers (with their driver) in the cluster at once."""
    gpus = max((node.get("GPU", 0) for node in nodes), default=0)
    cpus = max((node.get("CPU", 0) for node in nodes), default=0)
    if is_multi_worker(config):
        _check_per_worker(config, cpus, gpus)
        _check_workers_fit(config, nodes)
        return
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


def _check_per_worker(config: SweepConfig, cpus: float, gpus: float) -> None:
    resources = config.resources
    if resources.gpu > 0 and gpus == 0:
        raise ConfigError(
            f"resources.gpu: {resources.gpu:g} GPU per worker requested, but the Ray cluster "
            "has no GPU (set resources.gpu: 0 to train on CPUs)"
        )
    if resources.cpu > cpus:
        raise ConfigError(
            f"resources.cpu: {resources.cpu:g} CPUs per worker, but no node has more than {cpus:g}"
        )


def _check_workers_fit(config: SweepConfig, nodes: Sequence[Mapping[str, float]]) -> None:
    """A trial's Train run starts only once all its workers have their resources at once."""
    resources = config.resources
    needed = fit_footprint(config)
    for name, label, per_worker in (("CPU", "cpu", resources.cpu), ("GPU", "gpu", resources.gpu)):
        have = sum(node.get(name, 0) for node in nodes)
        if needed[name] > have + 1e-9:
            driver = f" and {TRAIN_DRIVER_CPU:g} for the trial's driver" if name == "CPU" else ""
            raise ConfigError(
                f"resources: {resources.workers} workers x {per_worker:g} {label}{driver} need "
                f"{needed[name]:g} {name}s at once, but the Ray cluster has {have:g}; lower "
                f"resources.{label} or resources.workers"
            )
