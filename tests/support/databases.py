"""Databases of a test's own, beside the shared one: for migrations run from nothing or from an old schema."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from storage.db import Database, normalize_url


def scratch_database(backend: str, tmp_path) -> Database:
    """An empty database of its own (on PostgreSQL, a scratch database beside TEST_DATABASE_URL's)."""
    if backend == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'old.db'}")
    if not os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("TEST_DATABASE_URL is not set")
    url = make_url(normalize_url(os.environ["TEST_DATABASE_URL"]))
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    scratch = f"{url.database}_upgrade"  # one per worker database, so parallel workers never share it
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))  # a connection an earlier test left
        conn.execute(text(f'CREATE DATABASE "{scratch}"'))
    admin.dispose()
    return Database(url.set(database=scratch).render_as_string(hide_password=False))
