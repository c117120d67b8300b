"""Alembic environment: runs on the connection api.migrate hands over, or on
DTMA_DATABASE_URL when called from the `alembic` command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from api.db import make_engine
from api.models import load_all_models
from api.settings import Settings


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=load_all_models(),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    with make_engine(Settings()).connect() as own_connection:
        run_migrations(own_connection)
        own_connection.commit()
