"""Which process drives a sweep, so that a RUNNING parent run whose driver died (SIGKILL, a
lost node) reads as interrupted rather than as a sweep still starting."""

from __future__ import annotations

import os
import socket

import psutil

# Tag of a sweep's parent run: "host:pid:start_time" of the driver that last opened it.
DRIVER_TAG = "tucker_sweep.driver"


def driver_identity() -> str:
    """host:pid:start time of this process (the start time tells a reused pid apart)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{psutil.Process(pid).create_time():.2f}"


def driver_alive(identity: str | None) -> bool | None:
    """Whether the driver named by `identity` still runs: None when that cannot be known
    here (no tag, or another host)."""
    if not identity:
        return None
    host, _, rest = identity.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname():
        return None
    try:
        process = psutil.Process(int(pid_text))
        return f"{process.create_time():.2f}" == started
    except (psutil.NoSuchProcess, ValueError):
        return False
