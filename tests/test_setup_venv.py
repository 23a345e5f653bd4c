"""scripts/setup_venv: `make`'s environment, with uv or pip, from the machine's pip settings.

Real installers into real virtual environments, offline: the packages come from a folder of
wheels written here, reached only through pip's configuration (a config file and PIP_*
variables), as the CPU torch wheel is reached on the development machine.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = "tsw-probe"  # a name no index holds: found in the test's wheel folder or nowhere


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(folder: Path, version: str) -> Path:
    """A pure-Python wheel of tsw-probe whose module says its version."""
    info = f"tsw_probe-{version}.dist-info"
    files = {
        "tsw_probe/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PROBE}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [_record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,"]
    path = folder / f"tsw_probe-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def bundled_pip_wheel() -> Path:
    """The pip wheel that ships inside Python's ensurepip: both installers' pip, offline."""
    import ensurepip

    wheels = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if not wheels:
        pytest.skip("this Python's ensurepip bundles no pip wheel (python -m venv cannot work)")
    return wheels[-1]


@pytest.fixture
def offline(tmp_path: Path) -> dict:
    """Wheels of tsw-probe 1.0 and 2.0 (and pip), a pip config that finds only them, and the
    environment to run the script in."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    write_wheel(wheels, "1.0")
    write_wheel(wheels, "2.0")
    shutil.copy(bundled_pip_wheel(), wheels)
    config = tmp_path / "pip.conf"
    # [install] overrides [global] in pip: the global find-links is a decoy that must lose.
    config.write_text(
        f"[global]\nfind-links = {tmp_path / 'nowhere'}\n"
        f"[install]\nno-index = true\nfind-links = {wheels}\n"
    )
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(f"{PROBE}==1.0\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    environment.update(
        PIP_CONFIG_FILE=str(config),
        UV_CACHE_DIR=str(tmp_path / "uv-cache"),
        PIP_NO_CACHE_DIR="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return {"tmp": tmp_path, "constraints": constraints, "env": environment}


def setup_venv(offline: dict, *arguments: str, python: str = sys.executable, env=None):
    return subprocess.run(
        [python, "-m", "scripts.setup_venv", *arguments],
        cwd=REPO,
        env=env or offline["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def install_probe(offline: dict, venv: Path, *options: str, **how):
    """setup_venv of tsw-probe into `venv` under the test's constraints (1.0 unless changed)."""
    arguments = ["--venv", str(venv), "--constraints", str(offline["constraints"]), *options]
    return setup_venv(offline, *arguments, "--", PROBE, **how)


def probe_version(venv: Path) -> str:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import tsw_probe; print(tsw_probe.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def pip_freeze(venv: Path) -> list[str]:
    frozen = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(frozen.split())


def uv_available() -> None:
    found = (
        shutil.which("uv")
        or subprocess.run(
            [sys.executable, "-m", "uv", "--version"], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not found:
        pytest.skip("no uv here (the dev extra installs it)")


def test_uv_and_pip_install_the_same_pinned_versions_from_pips_settings(offline):
    uv_available()
    venvs, lines = {}, {}
    for installer in ("uv", "pip"):
        venv = offline["tmp"] / f"venv-{installer}"
        stamp = offline["tmp"] / f"{installer}.stamp"
        done = install_probe(offline, venv, "--installer", installer, "--stamp", str(stamp))
        assert done.returncode == 0, done.stdout + done.stderr
        said = [line for line in done.stdout.splitlines() if line.startswith("setup:")]
        assert said[0].startswith(f"setup: installing with {installer}"), said
        assert stamp.read_text().startswith(f"{installer} ")
        # 2.0 is in the folder too: the constraints file held both installers to 1.0.
        assert probe_version(venv) == "1.0"
        venvs[installer], lines[installer] = venv, said[0]
    assert "find-links" in lines["uv"]  # reached only through pip's configuration
    assert pip_freeze(venvs["uv"]) == pip_freeze(venvs["pip"]) == [f"{PROBE}==1.0"]


def test_changed_pins_reinstall_in_place_with_uv(offline):
    uv_available()
    venv = offline["tmp"] / "venv"
    first = install_probe(offline, venv, "--installer", "uv")
    assert first.returncode == 0, first.stderr
    offline["constraints"].write_text(f"{PROBE}==2.0\n")
    second = install_probe(offline, venv, "--installer", "uv")
    assert second.returncode == 0, second.stderr
    assert probe_version(venv) == "2.0"


def test_pip_settings_reach_uv_in_pips_order_of_precedence(offline):
    uv_available()
    config = offline["tmp"] / "pip.conf"
    config.write_text(
        "[global]\nindex-url = http://global.invalid/simple\ntimeout = 7\n"
        "trusted-host = global.invalid\n"
        "[install]\nindex-url = http://install.invalid/simple\n"
        "extra-index-url =\n    http://extra-1.invalid/simple\n    http://extra-2.invalid/simple\n"
        "no-compile = false\n"  # pip's inverted spelling of --no-compile
    )
    machine_constraints = offline["tmp"] / "machine-constraints.txt"
    machine_constraints.write_text("")
    env = dict(
        offline["env"],
        PIP_FIND_LINKS="/env/one /env/two",
        PIP_CONSTRAINT=str(machine_constraints),
        PIP_DEFAULT_TIMEOUT="12.5",
        PIP_CERT="/env/ca.pem",
        PYTHONDONTWRITEBYTECODE="1",  # uv would compile, but for pip's no-compile
    )
    env.pop("SSL_CERT_FILE", None)
    env.pop("UV_HTTP_TIMEOUT", None)
    done = setup_venv(
        offline,
        "--dry-run",
        "--installer",
        "uv",
        "--venv",
        "v",
        "--constraints",
        str(offline["constraints"]),
        "--",
        PROBE,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    line, _venv_command, install_command = done.stdout.splitlines()
    assert "find-links" in line and "index-url" in line and "cert" in line
    words = shlex.split(install_command)
    assert words[:3] == ["env", "SSL_CERT_FILE=/env/ca.pem", "UV_HTTP_TIMEOUT=13"]

    def values(option: str) -> list[str]:
        return [words[i + 1] for i, word in enumerate(words) if word == option]

    assert values("--index-url") == ["http://install.invalid/simple"]  # [install] over [global]
    assert values("--extra-index-url") == [
        "http://extra-1.invalid/simple",
        "http://extra-2.invalid/simple",
    ]
    assert values("--find-links") == ["/env/one", "/env/two"]  # PIP_* over both files
    assert values("--allow-insecure-host") == ["global.invalid"]
    assert values("--constraint") == [str(machine_constraints), str(offline["constraints"])]
    assert values("--index-strategy") == ["unsafe-best-match"]
    assert "--compile-bytecode" not in words  # pip would not compile either
    assert words[-2:] == ["pip", PROBE]


@pytest.mark.parametrize(("dont_write_bytecode", "compiles"), [("1", True), (None, False)])
def test_uv_compiles_bytecode_where_python_would_never_cache_it(
    offline, dont_write_bytecode, compiles
):
    uv_available()
    env = {k: v for k, v in offline["env"].items() if k != "PYTHONDONTWRITEBYTECODE"}
    if dont_write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = dont_write_bytecode
    done = setup_venv(offline, "--dry-run", "--installer", "uv", "--", PROBE, env=env)
    assert done.returncode == 0, done.stderr
    line, _venv_command, install_command = done.stdout.splitlines()
    assert ("--compile-bytecode" in shlex.split(install_command)) is compiles
    assert ("compiling bytecode (PYTHONDONTWRITEBYTECODE is set)" in line) is compiles


def bare_python(tmp: Path) -> str:
    """An interpreter with neither uv nor pip: a venv made without pip."""
    bare = tmp / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    return str(bare / "bin" / "python")


def path_without_uv() -> str:
    path = os.pathsep.join(p for p in ("/usr/bin", "/bin") if Path(p).is_dir())
    if shutil.which("uv", path=path):
        pytest.skip("uv lies in /usr/bin here: no PATH without it")
    return path


def test_without_uv_auto_installs_with_pip_and_says_why(offline):
    bundled_pip_wheel()
    env = dict(offline["env"], PATH=path_without_uv())
    venv = offline["tmp"] / "venv"
    done = install_probe(offline, venv, python=bare_python(offline["tmp"]), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.splitlines()[0]
    assert line.startswith("setup: installing with pip (") and "pip install --user uv" in line
    assert probe_version(venv) == "1.0"


def test_installer_uv_without_uv_is_one_line_and_status_2(offline):
    env = dict(offline["env"], PATH=path_without_uv())
    venv = offline["tmp"] / "venv"
    done = install_probe(
        offline, venv, "--installer", "uv", python=bare_python(offline["tmp"]), env=env
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("setup: error: INSTALLER=uv, but no uv could be had")
    assert not venv.exists()


def test_a_failing_uv_falls_back_to_pip(offline):
    # A uv on the PATH that answers --version but fails at work (an old or broken uv).
    bundled_pip_wheel()
    broken = offline["tmp"] / "broken-uv"
    broken.mkdir()
    script = broken / "uv"
    script.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "uv 0.0.1" && exit 0\nexit 3\n')
    script.chmod(0o755)
    env = dict(offline["env"], PATH=f"{broken}{os.pathsep}{offline['env']['PATH']}")
    venv = offline["tmp"] / "venv"
    done = install_probe(offline, venv, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("setup: installing with uv 0.0.1 (on the PATH)")
    assert lines[1] == "setup: uv failed (exit status 3); installing with pip instead"
    assert lines[2].startswith("setup: installing with pip (uv failed)")
    assert probe_version(venv) == "1.0"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--installer", "conda"], "INSTALLER must be one of auto, uv, pip, not 'conda'"),
        (["--constraints", "no-such-file.txt"], "constraints file no-such-file.txt does not exist"),
    ],
)
def test_bad_arguments_are_one_line_and_status_2(offline, arguments, message):
    done = setup_venv(offline, "--venv", str(offline["tmp"] / "venv"), *arguments, "--", PROBE)
    assert done.returncode == 2
    assert done.stderr.strip() == f"setup: error: {message}"
    assert not (offline["tmp"] / "venv").exists()
