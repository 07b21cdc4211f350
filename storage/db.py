"""The engine: SQLite (WAL, busy timeout, writes that take the lock up front) or PostgreSQL (psycopg 3)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine


def normalize_url(url: str) -> str:
    """Accept the URLs operators paste (postgres://, postgresql://) and use psycopg 3 for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, wait: float | None = None) -> Engine:
    """`wait`: at most this many seconds to wait for a lock or a connection (the web app: well under
    Slack's 3 s, so a slow database gives the person an answer rather than a late ack). None: 30 s."""
    url = normalize_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        args = {"connect_timeout": 10}  # a server that stops answering must not hang a process for ever
        if wait is not None:
            ms = int(wait * 1000)
            args = {
                "connect_timeout": max(1, int(wait)),
                "options": f"-c lock_timeout={ms} -c statement_timeout={ms * 2}",
            }
        return create_engine(
            url, pool_pre_ping=True, pool_size=10, max_overflow=10, pool_timeout=wait or 30, connect_args=args
        )

    busy_ms = int((wait if wait is not None else 30) * 1000)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event decide how a transaction starts (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if make_url(url).database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # A write transaction takes the write lock when it starts, so it waits (busy timeout) instead of
        # failing with "database is locked" when it would upgrade a read lock mid-way.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


class Database:
    """One per process. `write()` for a transaction that changes data, `read()` for one that does not."""

    def __init__(self, url: str, wait: float | None = None):
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, wait)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite else self.engine

    @contextmanager
    def write(self) -> Iterator[Session]:
        with Session(self._write_engine, expire_on_commit=False) as session:
            with session.begin():
                yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def insert(self, model):
        """An INSERT for this dialect, so callers can add `.on_conflict_do_nothing(...)`."""
        return (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(model)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        self.engine.dispose()
