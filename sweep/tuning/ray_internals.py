"""The one place that reaches into Ray's private API, checked against Ray 2.60.0 (the
constraints.txt pin). Everything else in the project uses Ray's public API.

Why: a local Ray binds every interface on Linux, and no public setting keeps it on loopback.
With clusters "disabled" (what Ray does on macOS and Windows) a local instance binds 127.0.0.1
only. The switch is `ray._private.ray_constants.ENABLE_RAY_CLUSTER`, read from the environment
when Ray is first imported; tests/test_sweep_errors.py checks that it still works.
"""

from __future__ import annotations

import os

import ray._private.ray_constants as ray_constants


def keep_local_ray_on_loopback() -> None:
    """Before `ray.init()` of a local instance: bind 127.0.0.1 only. The variable reaches the
    processes Ray starts; the constant is set too because this process imported Ray already."""
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
