"""Fixtures: a database per backend (SQLite always, PostgreSQL when TEST_DATABASE_URL is set), the fake
Slack Web API, and Steward served for real against both."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from bot.domain.core.process import load_process
from bot.entry.bootstrap import wire
from storage import models  # noqa: F401 - every table on the metadata, for clean()
from storage.db import Database, normalize_url
from storage.migrate import upgrade
from tests.support.data import PROCESS
from tests.support.harness import Steward
from tests.support.pulse import CONFIG as PULSE_CONFIG, SECRET as PULSE_SECRET, ZONES
from tests.support.slack_fake import FakeSlack


def _database_per_worker() -> None:
    """Under pytest-xdist (`make test` runs several workers), each worker has a PostgreSQL database of its
    own beside TEST_DATABASE_URL's (`test_gw0`, `test_gw1`, …), created when missing: tests that reset the
    schema or count rows never see another worker's."""

    worker, base = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("TEST_DATABASE_URL")
    if not worker or not base:
        return
    url = make_url(normalize_url(base))
    name = f"{url.database}_{worker}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        for attempt in range(20):  # workers creating theirs at once may find template1 busy for a moment
            try:
                with admin.connect() as conn:
                    if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
                        conn.execute(text(f'CREATE DATABASE "{name}"'))
                break
            except Exception:
                if attempt == 19:
                    raise
                time.sleep(0.25)
    finally:
        admin.dispose()
    os.environ["TEST_DATABASE_URL"] = url.set(database=name).render_as_string(hide_password=False)


_database_per_worker()
wire()  # the domain events' subscribers, as every process wires them at start
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


def reset_schema(db: Database) -> None:
    """Drop every table there is (Alembic's, and those of older versions of Steward), and migrate from nothing."""

    with db.engine.begin() as conn:
        found = MetaData()
        found.reflect(conn)
        found.drop_all(conn)
    upgrade(db.engine)


def clean(db: Database) -> None:
    """Empty every table Steward's models declare, children first (from the metadata: a new table is
    cleaned without being listed here)."""
    with db.engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, tmp_path_factory) -> str:
    if request.param == "postgresql":
        return os.environ["TEST_DATABASE_URL"]
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'steward.db'}"


@pytest.fixture(scope="session")
def _migrated(database_url) -> Database:
    db = Database(database_url)
    reset_schema(db)
    yield db
    db.dispose()


@pytest.fixture
def db(_migrated) -> Database:
    clean(_migrated)
    return _migrated


@pytest.fixture(scope="session")
def cfg():
    return load_process(PROCESS)


@pytest.fixture(scope="session")
def _fake() -> FakeSlack:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(_fake) -> FakeSlack:
    _fake.reset()
    yield _fake
    assert not _fake.rejections, f"Slack would have refused: {[(m, e) for m, e, _ in _fake.rejections]}"


@pytest.fixture(scope="session")
def _served(_migrated, _fake) -> Steward:
    server = Steward(
        _migrated.url, _fake.url, PROCESS, extra_env={"HOME_FIGURES_SECONDS": "0"}
    ).start()  # each test's own figures
    yield server
    server.stop()


@pytest.fixture
def steward(_served, db, fake) -> Steward:
    """Steward served on a clean database, with the fake's record cleared."""
    yield _served
    fake.settle(quiet=0.2)


# The pulse served for real with its own organisation (tests/data/pulse.toml) and secret, one server per module
# that asks for `app`; `app` is that server on a clean database, the people's time zones known to the fake Slack.
@pytest.fixture(scope="module")
def _pulse_served(_migrated, _fake):
    server = Steward(
        _migrated.url, _fake.url, PULSE_CONFIG, extra_env={"PULSE_SECRET": PULSE_SECRET, "LOG_LEVEL": "INFO"}
    ).start()
    yield server
    server.stop()


@pytest.fixture
def app(_pulse_served, db, fake):
    fake.users.update({u: {"tz": tz, "deleted": False} for u, tz in ZONES.items()})
    yield _pulse_served
    fake.settle(quiet=0.2)
