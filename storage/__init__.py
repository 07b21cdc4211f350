"""Storage: the SQLModel tables, the engine, the Alembic migrations and the metric queries."""
