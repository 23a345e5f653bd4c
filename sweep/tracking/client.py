"""A checked MLflow client: a store that does not answer fails at once, in one line, instead of
in the middle of a sweep or after minutes of retries."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweep.errors import TrackingError, first_line

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


def tracking_client(uri: str) -> MlflowClient:
    """A client for `uri`, checked to answer: an unreachable server fails here, in one line,
    rather than in the middle of a sweep."""
    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except (MlflowException, OSError) as error:
        raise TrackingError(
            f"MLflow tracking store {uri} is unreachable: {first_line(error)}"
        ) from None
    return client


def open_client(tracking_uri: str) -> MlflowClient:
    """A client for reading an existing store, checked to answer within seconds. A SQLite file
    that does not exist is an error, not a new empty store."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        path = path if tracking_uri.startswith("sqlite:////") else Path.cwd() / path
        if not path.is_file():
            raise TrackingError(
                f"no MLflow store at {path} ({tracking_uri}): run tucker-sweep launch here "
                "first, or pass --tracking-uri"
            )
    with mlflow_environment(_QUICK_FAILURE):
        return tracking_client(tracking_uri)


def experiment_id_for(client: MlflowClient, name: str) -> str:
    """The experiment's id, creating it if it does not exist."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name)
