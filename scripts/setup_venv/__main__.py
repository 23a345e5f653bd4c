"""python3 -m scripts.setup_venv --venv .venv [--constraints FILE] [--installer auto|uv|pip]
[--stamp FILE] [--dry-run] -- REQUIREMENT...

auto (the default): uv when it is on the PATH or importable, else after
`python3 -m pip install --user uv`, else pip; and pip if uv fails. One line says which ran.
A bad --installer is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from .installers import pip_commands, uv_commands
from .pip_settings import read_pip_settings
from .uv_binary import FoundUv, install_uv_for_user, uv_on_machine
from .uv_options import compile_bytecode, uv_environment

INSTALLERS = ("auto", "uv", "pip")


def _say(line: str) -> None:
    print(f"setup: {line}", flush=True)


def _fail(line: str) -> None:
    print(f"setup: error: {line}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _run(commands: list[list[str]], environment: dict[str, str], dry_run: bool) -> int:
    added = [
        f"{name}={value}" for name, value in environment.items() if os.environ.get(name) != value
    ]
    for command in commands:
        if dry_run:
            print(shlex.join(["env", *added, *command] if added else command), flush=True)
            continue
        status = subprocess.run(command, env=environment, check=False).returncode
        if status != 0:
            return status
    return 0


def _pip_version(venv: str) -> str:
    answer = subprocess.run(
        [str(Path(venv) / "bin" / "python"), "-m", "pip", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    return answer.stdout.split()[1] if answer.returncode == 0 else "?"


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m scripts.setup_venv", description=__doc__)
    parser.add_argument("--venv", default=".venv")
    parser.add_argument("--constraints", default=None)
    parser.add_argument("--installer", default="auto")
    parser.add_argument("--stamp", default=None, help="written with the installer on success")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    parser.add_argument("requirement", nargs="+", help="what to install, as pip takes it")
    return parser.parse_args(argv)


def _find_uv(python: str, constraints: str | None, dry_run: bool) -> tuple[FoundUv | None, str]:
    """(uv or None, why not). Installing uv for the user is left out of a dry run."""
    found = uv_on_machine(python)
    if found is not None:
        return found, ""
    if dry_run:
        return None, "uv is not on this machine (a real run would try `pip install --user uv`)"
    return install_uv_for_user(python, constraints)


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(sys.argv[1:] if argv is None else argv)
    installer = arguments.installer.strip().lower()
    if installer not in INSTALLERS:
        _fail(f"INSTALLER must be one of {', '.join(INSTALLERS)}, not {arguments.installer!r}")
    if arguments.constraints and not Path(arguments.constraints).is_file():
        _fail(f"constraints file {arguments.constraints} does not exist")
    python = sys.executable
    used = None
    why_not_uv = "INSTALLER=pip"
    if installer in ("auto", "uv"):
        uv, why_not_uv = _find_uv(python, arguments.constraints, arguments.dry_run)
        if uv is None and installer == "uv":
            _fail(f"INSTALLER=uv, but no uv could be had: {why_not_uv}")
        if uv is not None:
            status = _install_with_uv(uv, python, arguments)
            if status == 0:
                used = f"uv {uv.version}"
            elif installer == "uv":
                _say(f"uv failed (exit status {status}); INSTALLER=uv, so no pip fallback")
                return status
            else:
                _say(f"uv failed (exit status {status}); installing with pip instead")
                why_not_uv = "uv failed"
    if used is None:
        _say(f"installing with pip ({why_not_uv})")
        commands = pip_commands(
            python, arguments.venv, arguments.constraints, arguments.requirement
        )
        status = _run(commands, dict(os.environ), arguments.dry_run)
        if status != 0:
            return status
        used = "pip" if arguments.dry_run else f"pip {_pip_version(arguments.venv)}"
    if arguments.stamp and not arguments.dry_run:
        Path(arguments.stamp).write_text(f"{used}\n")
    return 0


def _install_with_uv(uv: FoundUv, python: str, arguments: argparse.Namespace) -> int:
    """Installs with uv, after one line saying so and what of pip's settings it was given."""
    settings, unreadable = read_pip_settings(python)
    environment = uv_environment(settings, dict(os.environ))
    compiling = compile_bytecode(settings, environment)
    honoured = ", ".join(settings.names()) or "none set"
    _say(
        f"installing with uv {uv.version} ({uv.origin}); pip's settings passed on: {honoured}"
        + (f"; not read: {unreadable}" if unreadable else "")
        + (f"; no uv match, ignored: {', '.join(settings.unmatched)}" if settings.unmatched else "")
        + ("; compiling bytecode (PYTHONDONTWRITEBYTECODE is set)" if compiling else "")
    )
    commands = uv_commands(
        uv,
        python,
        arguments.venv,
        arguments.constraints,
        arguments.requirement,
        settings,
        compiling,
    )
    return _run(commands, environment, arguments.dry_run)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        # Ctrl-C reaches the installer too; no stamp is written, so the next `make` reinstalls.
        print("setup: interrupted; the environment is unfinished and will be redone", flush=True)
        raise SystemExit(130) from None
