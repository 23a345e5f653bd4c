"""The commands that create the environment and install into it, for each installer.

Both install the same requirement with the same constraints file, so both give the same pinned
versions; uv only gets them faster (parallel downloads and unpacking, a cache of unpacked wheels).
"""

from __future__ import annotations

from pathlib import Path

from .pip_settings import PipSettings
from .uv_binary import FoundUv
from .uv_options import uv_index_options, uv_install_options


def venv_python(venv: str) -> str:
    return str(Path(venv) / "bin" / "python")


def _constraint_option(constraints: str | None) -> list[str]:
    return ["--constraint", constraints] if constraints else []


def uv_commands(
    uv: FoundUv,
    python: str,
    venv: str,
    constraints: str | None,
    requirement: list[str],
    settings: PipSettings,
    compile_bytecode: bool,
) -> list[list[str]]:
    """`uv venv` then `uv pip install`, finding packages where pip's configuration says."""
    return [
        # --allow-existing: a changed pyproject.toml or constraints.txt updates the environment
        # in place, as pip does, instead of uv refusing an existing one.
        [*uv.command, "venv", "--quiet", "--allow-existing", "--python", python, venv],
        # pip too, so that `.venv/bin/pip install ...` works as in an environment made by
        # `python -m venv` (uv's own --seed would add wheel as well, which pip's path has not).
        [
            *uv.command,
            "pip",
            "install",
            "--quiet",
            "--python",
            venv_python(venv),
            *uv_index_options(settings),
            *uv_install_options(settings, compile_bytecode),
            *_constraint_option(constraints),
            "pip",
            *requirement,
        ],
    ]


def pip_commands(
    python: str, venv: str, constraints: str | None, requirement: list[str]
) -> list[list[str]]:
    """`python -m venv`, a current pip, then `pip install` (pip reads its configuration itself)."""
    inner = venv_python(venv)
    return [
        [python, "-m", "venv", venv],
        [inner, "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [inner, "-m", "pip", "install", "--quiet", *_constraint_option(constraints), *requirement],
    ]
