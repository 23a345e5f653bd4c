"""How long a fresh clone takes to set up, with uv and with pip, and whether both give the same
environment.

    python3 benchmarks/setup_speed.py [--installers uv,pip] [--caches warm,cold] [--demo]
                                      [--out PATH]

Each case is a `git clone` of this checkout's HEAD into a temporary folder, then
`make .venv/.installed INSTALLER=...` timed (and with --demo, `make demo` after it, timed
apart and together). `cold` points UV_CACHE_DIR and PIP_CACHE_DIR at empty folders, so every
wheel is downloaded again; `warm` uses the machine's caches as they are (run a warm case twice
for a truly warm one). uv itself is taken from where the machine has it (`setup:` line kept in
the JSON); to time a machine without uv, `python3 -m pip uninstall uv` first.

Then `pip freeze` of the uv-made and the pip-made environments are compared on every package
constraints.txt pins (names normalised): the JSON lists any that differ.

Timings are wall-clock on whatever else the machine runs: the JSON records the load average.
Prints a table and writes JSON (default benchmarks/results/setup_speed.json). Runs on the
machine's Python with the standard library only: there is no environment yet.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions(constraints: Path) -> dict[str, str]:
    pins = {}
    for line in constraints.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            pins[normalised(name.split("[", 1)[0])] = version.strip()
    return pins


def frozen_versions(venv: Path) -> dict[str, str]:
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    versions = {}
    for line in listed.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            versions[normalised(name)] = version.strip()
    return versions


def timed(command: list[str], cwd: Path, environment: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("a") as out:
        status = subprocess.run(
            command, cwd=cwd, env=environment, stdout=out, stderr=out
        ).returncode
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {status}); see {log}")
    return seconds


def run_case(installer: str, cache: str, demo: bool, work: Path) -> dict:
    clone = work / f"{installer}-{cache}"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    environment = dict(os.environ)
    if cache == "cold":
        for variable in ("UV_CACHE_DIR", "PIP_CACHE_DIR"):
            empty = work / f"{installer}-{cache}-{variable.lower()}"
            empty.mkdir()
            environment[variable] = str(empty)
    log = work / f"{installer}-{cache}.log"
    make_installer = "auto" if installer == "uv" else installer
    setup_s = timed(
        ["make", ".venv/.installed", f"INSTALLER={make_installer}"], clone, environment, log
    )
    said = [line for line in log.read_text().splitlines() if line.startswith("setup:")]
    row = {
        "installer": installer,
        "cache": cache,
        "setup_s": round(setup_s, 1),
        "stamp": (clone / ".venv" / ".installed").read_text().strip(),
        "setup_lines": said,
    }
    if demo:
        demo_s = timed(["make", "demo"], clone, environment, log)
        row.update(demo_s=round(demo_s, 1), total_s=round(setup_s + demo_s, 1))
    row["_venv"] = clone / ".venv"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--installers", default="uv,pip")
    parser.add_argument("--caches", default="warm,cold")
    parser.add_argument("--demo", action="store_true", help="also time `make demo` after setup")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "setup_speed.json"))
    arguments = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="setup-speed-"))
    rows = []
    try:
        for installer in arguments.installers.split(","):
            for cache in arguments.caches.split(","):
                print(f"{installer}, {cache} cache ...", flush=True)
                rows.append(run_case(installer, cache, arguments.demo, work))
        pins = pinned_versions(ROOT / "constraints.txt")
        frozen = {}
        for row in rows:  # one environment per installer is enough to compare
            if row["installer"] not in frozen:
                frozen[row["installer"]] = frozen_versions(row["_venv"])
        differing = []
        if {"uv", "pip"} <= set(frozen):
            for name in sorted(pins):
                versions = {installer: frozen[installer].get(name) for installer in ("uv", "pip")}
                if versions["uv"] != versions["pip"]:
                    differing.append({"package": name, **versions})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for row in rows:
        row.pop("_venv")
    print(f"\n{'installer':<10}{'cache':<7}{'setup s':>9}{'demo s':>9}{'total s':>9}  stamp")
    for row in rows:
        demo_s, total_s = row.get("demo_s", "-"), row.get("total_s", "-")
        print(
            f"{row['installer']:<10}{row['cache']:<7}{row['setup_s']:>9}{demo_s:>9}"
            f"{total_s:>9}  {row['stamp']}"
        )
    if {"uv", "pip"} <= set(frozen):
        compared = f"{len(pins)} pinned packages"
        print(f"\npip freeze, uv against pip: {compared}, {len(differing)} differ {differing}")
    report = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "rows": rows,
        "pinned_packages": len(pins),
        "pinned_versions_differing": differing if {"uv", "pip"} <= set(frozen) else None,
    }
    Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
    Path(arguments.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    sys.exit(main())
