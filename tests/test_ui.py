"""`tucker-sweep ui` serves the sweep's store on 127.0.0.1: the runs are listed through MLflow's
REST API, report artifacts are served, and SIGINT (Ctrl-C) stops the server and frees the port."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.request

import pytest
from support.cli import run_cli, start_cli
from support.report_store import EXPERIMENT, SWEEP, free_port, shared_sweep

from sweep.errors import TrackingError
from sweep.ui import open_log, port_is_free

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return shared_sweep(tmp_path_factory)


def _get(url: str, body: dict | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read()


def _something_listens(port: int) -> bool:
    # A connection, not a bind: a bind also fails on the TIME_WAIT sockets that a stopped server
    # leaves behind for a minute, which are no server at all (the first CI failure of this test).
    with socket.socket() as probe:
        probe.settimeout(5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _leave_time_wait_on(port_owner: socket.socket) -> None:
    """Accept one connection and close it from the server's side first, as an HTTP server
    does: the server's end of it then lingers in TIME_WAIT on the port."""
    client = socket.create_connection(port_owner.getsockname())
    accepted, _ = port_owner.accept()
    accepted.close()
    client.recv(1)  # the server's FIN: the server side is now in FIN_WAIT_2
    client.close()  # ... and after this, in TIME_WAIT


def test_a_port_left_in_time_wait_by_a_stopped_server_counts_as_free():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert not port_is_free(port)
    _leave_time_wait_on(listener)
    listener.close()
    # The probe the first version used (a bind without SO_REUSEADDR) fails here.
    with socket.socket() as plain_probe, pytest.raises(OSError):
        plain_probe.bind(("127.0.0.1", port))
    assert port_is_free(port)


@pytest.mark.slow
def test_ui_serves_the_sweep_and_stops_on_ctrl_c(sweep, tmp_path):
    # The report's files are logged on the sweep's run: the UI must serve them too.
    assert (
        run_cli(
            "report",
            SWEEP,
            "--format",
            "json",
            "--out",
            str(tmp_path / "report"),
            *sweep.store_args(),
            cwd=sweep.folder,
        ).returncode
        == 0
    )
    port = free_port()
    log = tmp_path / "ui.log"
    # Started as `tucker-sweep ui &` in a script is: SIGINT ignored, which the UI overrides.
    server = start_cli("ui", "--port", str(port), *sweep.store_args(), cwd=sweep.folder, log=log,
                       sigint_ignored=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        url = None
        while url is None and time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()[-3000:]
            found = re.search(rf"http://127\.0\.0\.1:{port}/#/experiments/\S+", log.read_text())
            url = found and found.group(0)
            time.sleep(0.5)
        assert url, f"no URL announced: {log.read_text()[-3000:]}"
        experiment_id = re.search(r"experiments/(\d+)", url).group(1)
        client = sweep.client()
        assert client.get_experiment_by_name(EXPERIMENT).experiment_id == experiment_id
        # What makes MLflow 3 open the experiment on its runs, not on the GenAI overview.
        kind = client.get_experiment(experiment_id).tags.get("mlflow.experimentKind")
        assert kind == "custom_model_development"

        base = f"http://127.0.0.1:{port}"
        listed = json.loads(
            _get(
                f"{base}/api/2.0/mlflow/runs/search",
                {"experiment_ids": [experiment_id], "max_results": 1000},
            )
        )
        listed_ids = {run["info"]["run_id"] for run in listed["runs"]}
        stored = client.search_runs([experiment_id])
        assert listed_ids == {run.info.run_id for run in stored}
        kinds = [
            t["value"]
            for run in listed["runs"]
            for t in run["data"].get("tags", [])
            if t["key"] == "tucker_sweep.kind"
        ]
        assert kinds.count("trial") == 8 and "sweep" in kinds and "baseline" in kinds

        parent = next(run for run in stored if run.data.tags.get("tucker_sweep.kind") == "sweep")
        markdown = _get(f"{base}/get-artifact?path=report/report.md&run_uuid={parent.info.run_id}")
        assert b"Tucker-rank report" in markdown
        _check_in_a_browser(url, base, experiment_id, parent, stored, tmp_path)

        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0, log.read_text()[-3000:]
        assert "stopped" in log.read_text()  # ... and only once the server's processes are gone
        assert not _something_listens(port), "the MLflow server outlived Ctrl-C"
    finally:
        if server.poll() is None:  # SIGTERM first: the CLI then stops its MLflow server too
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


def _browser_dom(url: str, tmp_path, screenshot=None, height: int = 900) -> str:
    """The page's DOM after MLflow's single-page app has rendered it, in headless Chromium."""
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size=1500,{height}",
             "--virtual-time-budget=20000"]  # fmt: skip
    if screenshot is not None:
        subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True,
                       timeout=180, check=False)  # fmt: skip
    done = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                          timeout=180, check=False)  # fmt: skip
    return done.stdout


def _check_in_a_browser(url, base, experiment_id, parent, stored, tmp_path) -> None:
    """The printed URL opens on the sweep's runs table (not the GenAI overview) with the
    trials named by index and compression; the sweep's run page shows the report headline."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is not installed (scripts/ensure-chromium.sh installs it)")
    assert url == (
        f"{base}/#/experiments/{experiment_id}/runs?searchFilter="
        "tags.%60tucker_sweep.sweep%60%20%3D%20%27report-sweep%27"
        "&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true"
    )
    # Screenshots for docs/ when asked: TUCKER_SWEEP_UI_SHOTS=<folder>.
    shots = os.environ.get("TUCKER_SWEEP_UI_SHOTS")
    runs_page = _browser_dom(url, tmp_path, shots and f"{shots}/ui-runs.png")
    trial_names = [r.info.run_name for r in stored if r.data.tags["tucker_sweep.kind"] == "trial"]
    assert all(re.fullmatch(r"\d{5} · \d+\.\d\dx", name) for name in trial_names), trial_names
    shown = [name for name in trial_names if name in runs_page]
    assert len(shown) == len(trial_names), f"runs table shows {shown} of {trial_names}"
    assert "Detect Issues" not in runs_page and "No data available" not in runs_page
    run_page = _browser_dom(
        f"{base}/#/experiments/{experiment_id}/runs/{parent.info.run_id}", tmp_path,
        shots and f"{shots}/ui-sweep-run.png", height=1900,
    )  # fmt: skip
    assert "Recommended ranks" in run_page and "report/report.html" in run_page


def test_ui_on_a_port_in_use_is_a_one_line_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("ui", "--port", str(port), cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_ui_log_is_a_new_private_file_with_an_unguessable_name(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkstemp creates files
    # The path the first version wrote to, planted as a link to a file worth protecting.
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    (tmp_path / "tucker-sweep-ui-5000.log").symlink_to(precious)
    paths = []
    for _ in range(2):
        path, descriptor = open_log(5000)
        os.write(descriptor, b"server output")
        os.close(descriptor)
        paths.append(path)
        assert path.parent == tmp_path and not path.is_symlink()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert paths[0] != paths[1]  # a new name every time: nothing to plant a link at
    assert precious.read_text() == "keep me"


def test_a_given_ui_log_path_is_never_opened_through_a_link(tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    link = tmp_path / "ui.log"
    link.symlink_to(precious)
    with pytest.raises(TrackingError, match=r"ui\.log: it is a symbolic link"):
        open_log(5000, link)
    assert precious.read_text() == "keep me"
