"""Engines and transactions, with the two databases' differences handled in one place.

SQLite runs in WAL mode with foreign keys on; write transactions start with `BEGIN IMMEDIATE`
so two writers queue on the database lock up front instead of failing when a read lock cannot
be upgraded. PostgreSQL connections are checked before use, so the process recovers by itself
after an outage. A database that cannot be reached surfaces as `StoreUnavailable` (HTTP 503).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from capstan.errors import StoreUnavailable

_WRITE = "capstan_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so `begin` below decides the mode.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_pre_ping=True,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean 'the database is not there right now', not 'bad query'."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def is_duplicate(exc: BaseException) -> bool:
    """A unique constraint refused the row (a concurrent writer was first); any other integrity
    error is a bug, not a conflict to retry. SQLite says "UNIQUE constraint failed",
    PostgreSQL "duplicate key value violates unique constraint"."""
    return isinstance(exc, DBAPIError) and "unique" in str(exc.orig).lower()


class Store:
    """The SQL store: an engine plus read and write transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reads = sessionmaker(bind=engine, expire_on_commit=False)
        self._writes = sessionmaker(
            bind=engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._unavailable_as_503(), self._reads() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success; every audit entry rides in the same one."""
        with self._unavailable_as_503(), self._writes.begin() as session:
            yield session

    def ping(self) -> None:
        with self._unavailable_as_503(), self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()

    @staticmethod
    @contextmanager
    def _unavailable_as_503() -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"the database is unavailable: {exc.orig}") from exc
            raise


def create_store(url: str, *, pool_size: int = 10) -> Store:
    return Store(make_engine(url, pool_size=pool_size))
