"""Alembic environment: runs with the connection that controlserver.core.db.Database passes in."""

from alembic import context
from sqlalchemy import create_engine

from controlserver.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    # Standalone use, e.g. `alembic -x url=sqlite:///x.db revision --autogenerate`.
    url = context.get_x_argument(as_dictionary=True)["url"]
    with create_engine(url).connect() as standalone:
        context.configure(connection=standalone, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
