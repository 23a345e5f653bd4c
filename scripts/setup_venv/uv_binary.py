"""Finding uv: on the PATH, importable by the machine's Python, or installed for the user."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FoundUv:
    """A uv to run (`command` + arguments), its version and where it came from."""

    command: tuple[str, ...]
    version: str
    origin: str


def _version(command: list[str]) -> str | None:
    try:
        answer = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if answer.returncode != 0 or not answer.stdout.startswith("uv "):
        return None
    return answer.stdout.split()[1]


def uv_on_machine(python: str) -> FoundUv | None:
    """uv on the PATH, else the `uv` package of `python` (`python -m uv`), else None."""
    on_path = shutil.which("uv")
    if on_path and (version := _version([on_path])):
        return FoundUv((on_path,), version, "on the PATH")
    module = [python, "-m", "uv"]
    if version := _version(module):
        return FoundUv(tuple(module), version, f"{Path(python).name} -m uv")
    return None


def install_uv_for_user(python: str, constraints: str | None) -> tuple[FoundUv | None, str]:
    """`python -m pip install --user uv` (at the version constraints.txt pins), then find it.

    Returns the uv, or None and pip's last line of why not: an externally managed Python, a
    virtual environment's interpreter (no user site) or no network all end here.
    """
    pinned = ["--constraint", constraints] if constraints else []
    command = [python, "-m", "pip", "install", "--user", "--quiet", *pinned, "uv"]
    try:
        answer = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        return None, f"pip could not be started ({error})"
    if answer.returncode != 0:
        lines = [line for line in answer.stderr.strip().splitlines() if line.strip()]
        return None, f"`pip install --user uv` failed: {lines[-1] if lines else 'no message'}"
    module = [python, "-m", "uv"]
    version = _version(module)
    if version is None:
        return None, "`pip install --user uv` ran, but `python -m uv` still does not start"
    origin = f"installed now: {Path(python).name} -m pip install --user uv"
    return FoundUv(tuple(module), version, origin), ""
