"""pip's install settings (pip_settings.py) as uv's command-line options and environment."""

from __future__ import annotations

import math

from .pip_settings import PipSettings


def uv_index_options(settings: PipSettings) -> list[str]:
    """Options of `uv pip install` that find packages where pip would."""
    options: list[str] = []
    if settings.index_url:
        options += ["--index-url", settings.index_url]
    for url in settings.extra_index_urls:
        options += ["--extra-index-url", url]
    for place in settings.find_links:
        options += ["--find-links", place]
    if settings.no_index:
        options.append("--no-index")
    for host in settings.trusted_hosts:
        options += ["--allow-insecure-host", host]
    # pip takes the best version over all its indexes; uv by default stops at the first index
    # that has the package at all. A mirror holding an older release (e.g. ray 2.58 only, where
    # constraints.txt pins 2.60) would make uv fail where pip succeeds, so ask for pip's rule.
    options += ["--index-strategy", "unsafe-best-match"]
    return options


def uv_install_options(settings: PipSettings, compile_bytecode: bool) -> list[str]:
    """Options of `uv pip install` alone: pip's configured constraints and binary choices, and
    whether to compile the installed modules (compile_bytecode(), below)."""
    options: list[str] = []
    for path in settings.constraints:
        options += ["--constraint", path]
    for value in settings.only_binary:
        options += ["--only-binary", value]
    for value in settings.no_binary:
        options += ["--no-binary", value]
    if settings.pre:
        options += ["--prerelease", "allow"]
    if compile_bytecode:
        options.append("--compile-bytecode")
    return options


def compile_bytecode(settings: PipSettings, environment: dict[str, str]) -> bool:
    """Whether uv should compile the installed modules to bytecode, as pip always does.

    uv leaves it to Python, which caches each module's bytecode the first time it is imported:
    only what is used, at a first run's cost (the demo: 93 s once, then 73 s). But where
    PYTHONDONTWRITEBYTECODE is set (this development machine, many container images) Python
    never caches it, and every process of a sweep parses torch, Ray and MLflow from source on
    every run (the demo: 132 s against 80 s). There, compile at install (about 25 s on 2 cores).
    """
    if settings.no_compile:
        return False
    return bool(environment.get("PYTHONDONTWRITEBYTECODE"))


def uv_environment(settings: PipSettings, environment: dict[str, str]) -> dict[str, str]:
    """`environment` with pip's certificate, timeout and proxy set the way uv reads them.

    A variable the user already set for uv wins over pip's setting.
    """
    wanted = {
        "SSL_CERT_FILE": settings.cert,
        "SSL_CLIENT_CERT": settings.client_cert,
        "UV_HTTP_TIMEOUT": _whole_seconds(settings.timeout),
        "HTTPS_PROXY": settings.proxy,
        "HTTP_PROXY": settings.proxy,
    }
    merged = dict(environment)
    for name, value in wanted.items():
        if value and name not in merged:
            merged[name] = value
    return merged


def _whole_seconds(timeout: str | None) -> str | None:
    """pip's timeout (seconds, may be fractional) as the whole seconds UV_HTTP_TIMEOUT takes."""
    if not timeout:
        return None
    try:
        return str(max(1, math.ceil(float(timeout))))
    except ValueError:
        return None
