"""The one place that reaches into Ray's private API, checked against Ray 2.60.0 (the
constraints.txt pin). Everything else in the project uses Ray's public API.

Why (loopback): a local Ray binds every interface on Linux, and no public setting keeps it on
loopback. With clusters "disabled" (what Ray does on macOS and Windows) a local instance binds
127.0.0.1 only. The switch is `ray._private.ray_constants.ENABLE_RAY_CLUSTER`, read from the
environment when Ray is first imported; tests/test_sweep_errors.py checks that it still works.

Why (SIGTERM): no public setting stops `ray.init` from installing its own SIGTERM handlers;
tests/test_stop_signals.py checks that a SIGTERM during Ray's start still stops cleanly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray._private.ray_constants as ray_constants
import ray._private.utils as ray_utils


def keep_local_ray_on_loopback() -> None:
    """Before `ray.init()` of a local instance: bind 127.0.0.1 only. The variable reaches the
    processes Ray starts; the constant is set too because this process imported Ray already."""
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


@contextmanager
def ray_keeps_our_sigterm_handler() -> Iterator[None]:
    """During `ray.init`: Ray's own SIGTERM handlers (the driver's `sys.exit(signum)`, the local
    node's "kill Ray, exit 1") are not installed, so the caller's stays in charge for the whole
    start. Both go through `ray._private.utils.set_sigterm_handler`, looked up on the module
    at each call. Why: a SIGTERM in that window exited 15 with no resume hint."""
    original = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = lambda _handler: None
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = original
