"""A SQLite tracking store, checked before MLflow opens it.

MLflow turns any file it is given into a store: it writes its tables into an empty file (or into
another program's database), migrates one an older MLflow wrote, and answers a damaged one with
a SQLAlchemy traceback. So the file is read here first, with the sqlite3 module in read-only
mode: reading a sweep never creates or changes a store, and no command writes into a file that
is not one. Each problem is one line (TrackingError).
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path

from sweep.errors import TrackingError

HEADER = b"SQLite format 3\x00"
_HEADER_SIZE = 100  # the database header: page size at byte 16, page count at byte 28


def sqlite_path(uri: str) -> Path | None:
    """The file of a sqlite:/// URI (relative to the working directory, as SQLAlchemy reads
    sqlite:///name; absolute for sqlite:////path); None for any other store, for an
    in-memory database and for SQLite's own file: URIs."""
    if not uri.startswith("sqlite:///"):
        return None
    name = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if name in ("", ":memory:") or name.startswith("file:"):
        return None
    return Path(name) if uri.startswith("sqlite:////") else Path.cwd() / name


def _declared_size(header: bytes) -> int | None:
    """The file size the header declares (page size x page count), None where SQLite itself
    would not trust the page count (written by a SQLite older than 3.7.0)."""
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    change_counter, valid_for = header[24:28], header[92:96]
    if pages == 0 or change_counter != valid_for:
        return None
    return page_size * pages


def _tables(path: Path) -> set[str]:
    """The tables of the database, read in read-only mode (which never creates a file)."""
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {name for (name,) in rows}
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise TrackingError(f"MLflow store {path} is damaged (SQLite: {error})") from None


def mlflow_tables() -> set[str]:
    """Every table MLflow's tracking store has: the set MLflow itself compares with when it
    opens a store (and creates or migrates on a mismatch). Its table models register when the
    store's module is imported; nothing public lists them."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (registers the tables)
    from mlflow.store.db.base_sql_model import Base

    return set(Base.metadata.tables)


def _check_file(path: Path, uri: str, create: bool) -> None:
    """An existing file: a SQLite database, whole, holding MLflow's tables (or, with
    `create`, no tables at all, which MLflow fills)."""
    if path.is_dir():
        raise TrackingError(f"MLflow store {path} ({uri}) is a folder, not a SQLite file")
    try:
        with path.open("rb") as stream:
            header = stream.read(_HEADER_SIZE)
        size = path.stat().st_size
    except OSError as error:
        raise TrackingError(f"cannot read the MLflow store {path}: {error.strerror}") from None
    if size == 0:
        fix = "remove it and launch creates a new store there" if create else "nothing to read"
        raise TrackingError(f"MLflow store {path} is an empty file (0 bytes), not a store: {fix}")
    if not header.startswith(HEADER):
        raise TrackingError(
            f"MLflow store {path} is not a SQLite database (it does not start with SQLite's "
            "header): give the store's own file, or a new name to create one"
        )
    declared = _declared_size(header) if len(header) == _HEADER_SIZE else None
    wal = path.with_name(path.name + "-wal").exists()  # pages may be in the WAL, not the file
    if len(header) < _HEADER_SIZE or (declared is not None and size < declared and not wal):
        whole = f" of {declared:,}" if declared else ""
        raise TrackingError(
            f"MLflow store {path} is truncated ({size:,}{whole} bytes): restore it from a copy"
        )
    tables = _tables(path)
    if not tables:
        if create:
            return  # an empty SQLite database: MLflow creates its tables
        raise TrackingError(f"MLflow store {path} is an empty SQLite database: no runs to read")
    expected = mlflow_tables()
    if not {"experiments", "runs"} <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise TrackingError(
            f"{path} is a SQLite database of something else (tables {shown}), not an MLflow store"
        )
    missing = expected - tables
    if missing and not create:
        raise TrackingError(
            f"MLflow store {path} was made by another MLflow version ({len(missing)} of its "
            f"tables missing, e.g. {sorted(missing)[0]}); reading it would migrate it: back it "
            f"up, then `mlflow db upgrade {uri}`"
        )


def _check_writable(path: Path, hint: str | None) -> None:
    """SQLite writes the file and, beside it, its journal."""
    folder = path.parent
    if path.exists() and not os.access(path, os.W_OK):
        what = f"MLflow store {path} is read-only"
    elif not os.access(folder, os.W_OK | os.X_OK):
        what = f"the folder of MLflow store {path} is not writable (SQLite writes a journal there)"
    else:
        return
    raise TrackingError(what + (f": {hint}" if hint else ""))


def check_sqlite_store(
    uri: str, *, create: bool, writes: bool, read_only_hint: str | None = None
) -> None:
    """Raise TrackingError (one line) unless the SQLite store of `uri` can be used as asked:
    `create`, a missing file (or an empty SQLite database) may become a new store (launch,
    seed, train), else it must already be an MLflow store; `writes`, the command writes to it
    (`read_only_hint` says what to do instead when it cannot). Other stores pass."""
    path = sqlite_path(uri)
    if path is None:
        return
    if path.exists():
        _check_file(path, uri, create)
    elif not create:
        raise TrackingError(
            f"no MLflow store at {path} ({uri}): run tucker-sweep launch here first, or pass "
            "--tracking-uri"
        )
    elif not path.parent.is_dir():
        raise TrackingError(f"cannot create the MLflow store {path}: no folder {path.parent}")
    if writes:
        _check_writable(path, read_only_hint)
