"""A checked MLflow client: a store that does not answer fails at once, in one line, instead of
in the middle of a sweep or after minutes of retries."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweep.errors import ConfigError, TrackingError, first_line
from sweep.tracking.redact import is_redacted, redact
from sweep.tracking.sqlite_store import check_sqlite_store

# A failed HTTP request is retried 7 times with exponential back-off by default: minutes
# before a stopped server is reported. Readers fail fast instead.
_QUICK_FAILURE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@contextlib.contextmanager
def mlflow_environment(values: dict[str, str]) -> Iterator[None]:
    """MLflow settings (environment variables) for a block; a user's own setting wins."""
    unset = [key for key in values if key not in os.environ]
    for key in unset:
        os.environ[key] = values[key]
    try:
        yield
    finally:
        for key in unset:
            os.environ.pop(key, None)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """An error and what it wraps: its cause or context, and the reason urllib3 and requests
    keep in an attribute or first argument."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        wrapped += list(current.args[:1])
        pending.extend(item for item in wrapped if isinstance(item, BaseException))


def _unreachable_reason(error: BaseException) -> str | None:
    """Why a server could not be reached, in a few words; None if it was reached."""
    causes = list(_causes(error))
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return "unknown host"
    if any(isinstance(cause, TimeoutError) for cause in causes):
        timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
        return f"no answer within {timeout} s"
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return "connection refused"
    if any(isinstance(cause, ConnectionError) for cause in causes):
        return "connection failed"
    return None


def describe_store_failure(uri: str, error: BaseException) -> str:
    """One short line for a store that did not answer, instead of urllib3's paragraph (the
    URI's credentials masked, here and in the error's own text)."""
    reason = _unreachable_reason(error)
    if reason is not None:
        return f"cannot reach the MLflow tracking server at {redact(uri)} ({reason})"
    return f"MLflow tracking store {redact(uri)} is unusable: {redact(first_line(error))}"


def tracking_client(uri: str) -> MlflowClient:
    """A client for `uri`, checked to answer: an unreachable server fails here, in one line,
    rather than in the middle of a sweep. The probe fails fast (a user's own MLflow retry
    settings still win): one refused connection says enough. A SQLite file is checked first
    (sqlite_store.py): it may be created, but must otherwise be a whole, writable MLflow
    store."""
    check_sqlite_store(
        uri, create=True, writes=True, read_only_hint="give a store this command can write to"
    )
    return _answering_client(uri)


def _answering_client(uri: str) -> MlflowClient:
    try:
        client = MlflowClient(tracking_uri=uri)
        with mlflow_environment(_QUICK_FAILURE):
            client.search_experiments(max_results=1)
    except (MlflowException, OSError) as error:
        raise TrackingError(describe_store_failure(uri, error)) from None
    return client


def check_tracking_uri(uri: str, label: str) -> None:
    """A plain path (or file:) is MLflow's file store, which MLflow 3 opens only with
    MLFLOW_ALLOW_FILE_STORE=true; a folder or a database file given without sqlite:/// is a
    slip worth naming (with `label`, the flag or key it came from) before anything runs."""
    if is_redacted(uri):
        raise ConfigError(
            f"{label}: {uri} has its credentials masked (a sweep never stores them): give the "
            "tracking URI with them again with --tracking-uri"
        )
    if "://" in uri and not uri.startswith("file:"):
        return
    path = Path(uri.removeprefix("file://").removeprefix("file:")).expanduser()
    if path.is_file():
        raise ConfigError(
            f"{label}: {uri} is a file, not a tracking URI; for a SQLite store write "
            f"sqlite:///{uri}"
        )
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1"):
        return  # the user opted in to the file store
    what = "a folder" if path.is_dir() else "a plain path"
    raise ConfigError(
        f"{label}: {uri} is {what}, which MLflow opens only as its retired file store; "
        f"give sqlite:///{(path / 'mlflow.db') if path.is_dir() else path} or "
        "http://host:port (or set MLFLOW_ALLOW_FILE_STORE=true)"
    )


def open_client(tracking_uri: str) -> MlflowClient:
    """A client for reading an existing store, checked to answer within seconds. A SQLite file
    must already be a whole MLflow store: one that does not exist, or an empty file, is an
    error, never a new store (and a store of another MLflow version is never migrated)."""
    check_sqlite_store(tracking_uri, create=False, writes=False)
    return _answering_client(tracking_uri)


# MLflow 3's UI opens an experiment on the view this tag names; without it, it opens on the
# GenAI overview ("Traces 0 ... No data"), one tab away from a sweep's runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"


def experiment_id_for(client: MlflowClient, name: str) -> str:
    """The experiment's id, creating it if it does not exist. Tagged as model training so
    that the UI opens on its runs; a kind the user chose is left alone."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
        )
    return experiment.experiment_id
