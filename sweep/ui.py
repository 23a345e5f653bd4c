"""The MLflow UI for the configured tracking store, on 127.0.0.1 only.

`mlflow server` runs as a child process in its own session, so stopping it (Ctrl-C here, or
any exit of this process) takes its workers with it. Artifacts of SQLite and file stores are
local paths recorded on each run, which the server reads directly: reports, plots and exported
models are browsable in the UI.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from sweep.errors import ReportError, TrackingError
from sweep.tracking.client import open_client
from sweep.tracking.names import SWEEP_TAG
from sweep.tracking.redact import redact, without_credentials
from sweep.tracking.sweep_runs import sweep_parent_run

__all__ = ["UiServer", "experiment_url", "serve_ui", "start_ui"]

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0  # a first start migrates the SQLite schema: slow on a busy machine
STOP_TIMEOUT_S = 15.0


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on the port now: no one else listens there.

    The probe sets SO_REUSEADDR as uvicorn (and every server) does: without it, the TIME_WAIT
    sockets a just-stopped server leaves for a minute would make a free port look taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _is_remote(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://", "databricks"))


def _local_store(tracking_uri: str) -> str:
    """A backend store URI the server can open from any working directory."""
    if tracking_uri.startswith("sqlite:///") and not tracking_uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(tracking_uri.removeprefix("sqlite:///")).resolve())
    if "://" not in tracking_uri:  # a plain folder: MLflow's file store
        return str(Path(tracking_uri).resolve())
    return tracking_uri


def experiment_url(base: str, experiment_id: str | None, sweep: str | None = None) -> str:
    """The runs table of the experiment (MLflow 3's UI would otherwise open an experiment on
    its GenAI overview), filtered to one sweep's runs when `sweep` is given: every run of a
    sweep carries its name as a tag, and the UI reads its search box from `searchFilter`.
    Sorted by run name (00000 · 9.63x, ..., baseline, the sweep): MLflow 3.17's table folds
    child runs under their parent, behind an expander, unless it is sorted by something other
    than the start time."""
    base = base.rstrip("/")
    if not experiment_id:
        return f"{base}/#/experiments"
    url = f"{base}/#/experiments/{experiment_id}/runs"
    if sweep:
        query = {
            "searchFilter": f"tags.`{SWEEP_TAG}` = '{sweep}'",
            "orderByKey": "tags.`mlflow.runName`",
            "orderByAsc": "true",
        }
        url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    return url


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """A run's page (its description, params, metrics, artifacts)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _experiment_id(tracking_uri: str, experiment: str) -> str | None:
    found = open_client(tracking_uri).get_experiment_by_name(experiment)
    return found.experiment_id if found else None


def sweep_to_show(tracking_uri: str, experiment: str, sweep: str | None) -> tuple[str, str] | None:
    """The sweep the UI opens on, as (name, parent run id): `sweep` if it exists (ReportError
    naming the known ones if not), else the latest sweep of the experiment, or None when it
    has none."""
    client = open_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        if sweep is not None:
            raise ReportError(f"no MLflow experiment {experiment!r} (so no sweep {sweep!r})")
        return None
    try:
        parent = sweep_parent_run(client, found.experiment_id, experiment, sweep)
    except ReportError:
        if sweep is not None:
            raise
        return None
    return parent.data.tags.get(SWEEP_TAG, parent.info.run_name), parent.info.run_id


@dataclass
class UiServer:
    """A running `mlflow server`."""

    process: subprocess.Popen
    port: int
    url: str  # of the experiment's runs (or of the experiment list)
    log_path: Path  # the server's output
    sweep_url: str | None = None  # the page of the sweep's own run (the report's headline)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> int | None:
        """Terminate the server and every process of its session (`mlflow server` runs
        uvicorn, and possibly job runners, as children that outlive it by a graceful-shutdown
        moment); returns only once none is left, so the port is free. Returns its exit status."""
        for stop_signal in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT_S)
            if _wait_group_gone(self.process.pid, STOP_TIMEOUT_S):
                break
        self.process.wait(timeout=STOP_TIMEOUT_S)
        return self.process.returncode


def _group_members(group: int) -> list[psutil.Process]:
    """The processes of process group `group` that have not exited (zombies waiting for their
    reaper have)."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == group:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue  # gone meanwhile
    return members


def _wait_group_gone(group: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _group_members(group):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 1) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    useful = [line for line in text if line.strip()]
    return " | ".join(useful[-lines:])


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when this process dies, however it dies (even
    SIGKILL), so no server is left behind holding the port. Linux's prctl(PR_SET_PDEATHSIG)
    through ctypes: neither the standard library nor psutil offers it."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def open_log(port: int, log_path: Path | None = None) -> tuple[Path, int]:
    """A file for the server's output, open for writing: (its path, its descriptor).

    By default a new file under $TMPDIR that only this user can read (mode 0600) with a name
    no one can guess: mkstemp creates it with O_EXCL, so a link planted in a shared /tmp at a
    predictable name cannot make the server overwrite the link's target. A `log_path` given
    is never opened through a symbolic link either (O_NOFOLLOW).
    """
    if log_path is None:
        descriptor, name = tempfile.mkstemp(prefix=f"tucker-sweep-ui-{port}-", suffix=".log")
        return Path(name), descriptor
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return log_path, os.open(log_path, flags, 0o600)
    except OSError as error:
        reason = "it is a symbolic link" if error.errno == errno.ELOOP else error.strerror
        raise TrackingError(f"cannot write the MLflow UI log {log_path}: {reason}") from None


def start_ui(
    tracking_uri: str,
    experiment: str,
    port: int,
    log_path: Path | None = None,
    sweep: str | None = None,
) -> UiServer:
    """Start `mlflow server` on 127.0.0.1:`port` for a local store and wait until it
    answers; its output goes to `log_path` (default: a new private temporary file, see
    open_log). TrackingError (one line) for a port in use, a store it cannot open, or a
    server that does not come up."""
    if not port_is_free(port):
        raise TrackingError(f"port {port} on {HOST} is in use: choose another with --port")
    experiment_id = _experiment_id(tracking_uri, experiment)
    shown = sweep_to_show(tracking_uri, experiment, sweep)
    store = _local_store(tracking_uri)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        HOST,
        "--port",
        str(port),
        "--backend-store-uri",
        store,
        "--registry-store-uri",
        store,
        "--workers",
        "1",
    ]
    # The UI only browses: MLflow's job runner (a Huey queue of 8 processes, for GenAI scorers)
    # would cost a laptop memory and start-up time for nothing. A user can still turn it on.
    environment = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    log_path, log = open_log(port, log_path)
    process = subprocess.Popen(
        command,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    os.close(log)
    base = f"http://{HOST}:{port}"
    url = experiment_url(base, experiment_id, shown and shown[0])
    sweep_url = run_url(base, experiment_id, shown[1]) if shown and experiment_id else None
    server = UiServer(process, port, url, log_path, sweep_url)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not _healthy(port):
            if process.poll() is not None:
                reason = _tail(log_path) or f"exit status {process.returncode}"
                raise TrackingError(f"the MLflow UI did not start: {reason}")
            if time.monotonic() > deadline:
                raise TrackingError(
                    f"the MLflow UI did not answer on {HOST}:{port} within "
                    f"{START_TIMEOUT_S:.0f} s; its log: {log_path}"
                )
            time.sleep(0.5)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def _interrupt_as_return() -> Iterator[None]:
    """SIGINT and SIGTERM end the wait, so both stop the server cleanly. SIGINT's handler is set
    too: a process started in the background of a script inherits SIGINT ignored, and then
    `kill -INT` (what the UI test sends) left the UI serving."""
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in stop_signals}
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def serve_ui(
    tracking_uri: str,
    experiment: str,
    port: int,
    announce: Callable[[str], None],
    log_path: Path | None = None,
    sweep: str | None = None,
) -> int:
    """Serve the UI until Ctrl-C (or SIGTERM); `announce` receives the URL to open: the runs
    of `sweep` (default: the latest sweep). For a tracking server (http[s]://) there is
    nothing to start: its own URL is announced. Returns 0 after a clean stop."""
    if _is_remote(tracking_uri):
        experiment_id = _experiment_id(tracking_uri, experiment)
        shown = sweep_to_show(tracking_uri, experiment, sweep)
        link = experiment_url(without_credentials(tracking_uri), experiment_id, shown and shown[0])
        announce(f"the tracking store is the MLflow server at {redact(tracking_uri)}; open {link}")
        return 0
    server = start_ui(tracking_uri, experiment, port, log_path, sweep)
    try:
        announce(f"MLflow UI for {redact(tracking_uri)}: {server.url}  (Ctrl-C stops it)")
        if server.sweep_url:
            announce(f"the sweep's run, with the report's headline: {server.sweep_url}")
        with _interrupt_as_return():
            while server.process.poll() is None:
                time.sleep(0.5)
        if server.process.returncode not in (None, 0):
            raise TrackingError(
                f"the MLflow UI stopped unexpectedly (exit status {server.process.returncode}): "
                f"{_tail(server.log_path) or server.log_path}"
            )
    finally:
        server.stop()
    if log_path is None:  # our own temporary file: a clean stop leaves nothing to read in it
        server.log_path.unlink(missing_ok=True)
    return 0
