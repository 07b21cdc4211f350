"""Alembic environment. Run through `storage.migrate.upgrade()` (`python -m bot migrate`)."""

from alembic import context

from storage.models import SQLModel  # noqa: F401  (registers the tables on the metadata)

target_metadata = SQLModel.metadata
connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
