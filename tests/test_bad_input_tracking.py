"""Bad tracking input: credentials in a tracking URI are never written or printed, names read
from a store never become folders outside reports/ and exports/, and a SQLite store that is not
a whole, writable MLflow store is one line (exit 2) that leaves it as it was."""

import contextlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import ray.cloudpickle
import yaml
from mlflow.tracking import MlflowClient
from support.cli import run_cli, run_cli_in_process, write_config
from support.mlflow_server import MlflowServer
from support.report_store import EXPERIMENT, handmade_store

from sweep.tracking.redact import recall_uri, redact
from sweep.tracking.tune_callback import TrialRunsCallback

PASSWORD = "pw-4f1c9e"  # a made-up credential, looked for in every file and line


def _one_line(result, status: int = 2) -> str:
    """The one error line of a refused command: nothing else on stderr, nothing on stdout."""
    assert result.returncode == status, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and not result.stdout.strip(), result.stdout[-2000:]
    return lines[0]


def _files_holding(folder: Path, secret: str) -> list[Path]:
    return [path for path in folder.rglob("*")
            if path.is_file() and secret.encode() in path.read_bytes()]  # fmt: skip


# ---- credentials ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://user:secret@host:5000", "http://user:***@host:5000"),
        ("postgresql://me:p@ss@db:5432/mlflow", "postgresql://me:***@db:5432/mlflow"),
        ("https://ghp_token@host/x", "https://***@host/x"),
        ("https://host/api?token=abc&page=2", "https://host/api?token=***&page=2"),
        (
            "at http://u:p@h (refused), s3://AK:SK@b/k",
            "at http://u:***@h (refused), s3://AK:***@b/k",
        ),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_credentials_are_masked_in_any_text(uri, shown):
    assert redact(uri) == shown
    assert redact(shown) == shown


def test_a_pickled_tune_callback_holds_no_credential_and_gets_it_back_on_setup():
    # tuner.pkl holds Tune's callbacks; a resumed sweep restores this one from it.
    uri = f"http://user:{PASSWORD}@127.0.0.1:9"
    callback = TrialRunsCallback(uri, "1", "run", 4, 0.9, describe_trial=dict)
    pickled = ray.cloudpickle.dumps(callback)
    assert PASSWORD.encode() not in pickled
    restored = ray.cloudpickle.loads(pickled)
    assert restored.tracking_uri == redact(uri)
    restored.setup()
    assert restored.tracking_uri == uri == recall_uri(redact(uri))
    assert restored.outbox.tracking_uri == uri


@pytest.mark.parametrize("command", ["launch", "report", "export", "ui"])
def test_an_unreachable_server_is_named_without_its_password(tmp_path, capfd, command):
    uri = f"http://user:{PASSWORD}@127.0.0.1:9"
    extra = ["--storage-path", str(tmp_path / "ray_results")] if command == "launch" else []
    result = run_cli_in_process(command, "--tracking-uri", uri, *extra, cwd=tmp_path, capfd=capfd)
    line = _one_line(result)
    assert "cannot reach the MLflow tracking server at http://user:***@127.0.0.1:9" in line
    assert PASSWORD not in result.stderr + result.stdout
    assert not _files_holding(tmp_path, PASSWORD)


def test_resuming_with_a_masked_tracking_uri_asks_for_the_real_one(tmp_path, capfd):
    # A sweep's stored config holds the masked URI: it cannot log, and says so at once.
    stored = tmp_path / "ray_results" / "old" / "tucker_sweep"
    stored.mkdir(parents=True)
    config = {"name": "old", "tracking": {"uri": "http://user:***@127.0.0.1:9"}}
    (stored / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_cli_in_process(
        "launch", "--resume", "old", "--storage-path", str(tmp_path / "ray_results"),
        cwd=tmp_path, capfd=capfd,
    )  # fmt: skip
    line = _one_line(result)
    assert "has its credentials masked" in line and "--tracking-uri" in line


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_is_written_nowhere_and_printed_nowhere(tmp_path):
    """A real sweep logging to an MLflow server through a URI with a password (the server has
    no auth and ignores it): config.yaml, tuner.pkl, the report, Tune's state and every line
    printed hold the masked URI only."""
    server = MlflowServer(tmp_path / "server")
    server.start()
    try:
        uri = server.uri.replace("http://", f"http://user:{PASSWORD}@")
        config = write_config(tmp_path, {
            "name": "secret", "search.num_samples": 1,
            "decomposition.seed_epochs": 1, "decomposition.init": ["random"],
            "scheduler.max_t": 1, "scheduler.grace_period": 1, "stopping.max_epochs": 1,
        })  # fmt: skip
        result = run_cli("launch", str(config), "--tracking-uri", uri, cwd=tmp_path, timeout=600)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    assert PASSWORD not in result.stdout + result.stderr
    assert "in http://user:***@127.0.0.1:" in result.stdout.strip().splitlines()[-1]
    assert (tmp_path / "ray_results" / "secret" / "tuner.pkl").is_file()
    assert (tmp_path / "reports" / "secret" / "report.json").is_file()
    assert not _files_holding(tmp_path, PASSWORD)


# ---- names that would leave their folder ------------------------------------------------------


@pytest.fixture(scope="module")
def odd_names(tmp_path_factory) -> tuple[Path, list[str]]:
    """One store, three sweeps: named '../../x' and with an absolute path, and one whose only
    trial is named '../../t' (names as another program, or a hand, could write them)."""
    folder = tmp_path_factory.mktemp("odd-names")
    escape = str(folder / "outside")
    trial = {"ranks": (4, 4, 3), "history": [0.5, 0.9], "stop_reason": "completed",
             "metrics": {"params": 900, "compression": 2.0, "best_val_acc": 0.9}}  # fmt: skip
    for name in ("../../x", escape, "plain"):
        uri = handmade_store(folder, [trial], name=name)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (parent,) = client.search_runs([experiment], "tags.`tucker_sweep.sweep` = 'plain'")
    (run,) = client.search_runs(
        [experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' AND "
        "tags.`tucker_sweep.kind` = 'trial'",
    )  # fmt: skip
    client.set_tag(run.info.run_id, "trial_name", "../../t")
    return folder, ["--tracking-uri", uri, "--experiment", EXPERIMENT]


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["report", "../../x"], "'../../x'"),
        (["report", "@escape"], "outside'"),
        (["export", "../../x", "--no-register"], "'../../x'"),
        (["export", "@escape", "--no-register"], "outside'"),
        (["export", "plain", "--trial", "abcde_00000", "--no-register"], "'../../t'"),
    ],
)
def test_a_name_from_the_store_that_is_not_a_plain_folder_name_is_refused(
    odd_names, tmp_path, capfd, args, name
):
    folder, store = odd_names
    args = [str(folder / "outside") if arg == "@escape" else arg for arg in args]
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    result = run_cli_in_process(*args, *store, cwd=work, capfd=capfd)
    line = _one_line(result)
    assert "is not a plain folder name" in line and name in line
    assert not (folder / "outside").exists()
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["a", "b"], "wrote a file"


# ---- SQLite stores that are not whole, writable MLflow stores ---------------------------------


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("good-store")
    trial = {"ranks": (4, 4, 3), "history": [0.5, 0.9], "stop_reason": "completed",
             "metrics": {"params": 900, "compression": 2.0, "best_val_acc": 0.9}}  # fmt: skip
    handmade_store(folder, [trial])
    return folder / "mlflow.db"


@contextlib.contextmanager
def _read_only(path: Path):
    """`path` read-only for this process: chmod, and for root (whom file modes do not stop)
    the immutable attribute."""
    path.chmod(0o444)
    made_immutable = False
    if os.access(path, os.W_OK):
        if shutil.which("chattr") is None:
            pytest.skip("root, and no chattr to make a file read-only")
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if done.returncode != 0 or os.access(path, os.W_OK):
            pytest.skip("root, and this file system has no immutable attribute")
        made_immutable = True
    try:
        yield
    finally:
        if made_immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o644)


def _make(kind: str, good: Path, path: Path) -> None:
    if kind == "random bytes":
        path.write_bytes(os.urandom(20_000))
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:30_000])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "another program's":
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    else:
        shutil.copyfile(good, path)


def _command(command: str, path: Path, tmp_path: Path) -> list[str]:
    store = ["--tracking-uri", f"sqlite:///{path}", "--experiment", EXPERIMENT]
    if command == "launch":
        return ["launch", "--name", "s", "--storage-path", str(tmp_path / "ray_results"), *store]
    return [command, *store]


STORES = [
    ("random bytes", "not a SQLite database"),
    ("truncated", "is truncated (30,000 of "),
    ("empty", "is an empty file (0 bytes)"),
    ("another program's", "a SQLite database of something else (tables notes)"),
]


@pytest.mark.parametrize("command", ["launch", "report", "export", "ui"])
@pytest.mark.parametrize(("kind", "message"), STORES)
def test_a_sqlite_file_that_is_not_an_mlflow_store_is_one_line_and_left_as_it_was(
    good_store, tmp_path, capfd, command, kind, message
):
    path = tmp_path / "mlflow.db"
    _make(kind, good_store, path)
    before = path.read_bytes()
    result = run_cli_in_process(*_command(command, path, tmp_path), cwd=tmp_path, capfd=capfd)
    assert message in _one_line(result)
    assert path.read_bytes() == before, "the store was changed"


@pytest.mark.parametrize(
    ("command", "instead"),
    [("launch", None), ("report", "--no-log"), ("export", "--no-register")],
)
def test_a_read_only_store_is_refused_by_a_command_that_writes_to_it(
    good_store, tmp_path, capfd, command, instead
):
    path = tmp_path / "mlflow.db"
    _make("copy", good_store, path)
    before = path.read_bytes()
    with _read_only(path):
        result = run_cli_in_process(*_command(command, path, tmp_path), cwd=tmp_path, capfd=capfd)
    line = _one_line(result)
    assert f"MLflow store {path} is read-only" in line
    assert instead is None or instead in line
    assert path.read_bytes() == before
    assert not (tmp_path / "reports").exists()


def test_a_report_of_a_read_only_store_without_logging_reads_it(good_store, tmp_path, capfd):
    path = tmp_path / "mlflow.db"
    _make("copy", good_store, path)
    with _read_only(path):
        result = run_cli_in_process(
            *_command("report", path, tmp_path), "--no-log", "--format", "json",
            cwd=tmp_path, capfd=capfd,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "reports" / "handmade" / "report.json").is_file()
