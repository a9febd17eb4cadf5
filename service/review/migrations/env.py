"""Alembic environment of the review store.

Run by :func:`service.review.migrations.upgrade` with an open connection in
``config.attributes["connection"]``; from the alembic command line, pass the database with
``-x url=sqlite:///review.db`` (or set ``sqlalchemy.url``).
"""

from __future__ import annotations

from typing import Any

from alembic import context

from service.review.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: Any) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("pass the database: alembic -x url=sqlite:///review.db ...")
    return url


def run() -> None:
    """Run the migrations offline (SQL script), on the given connection, or on a new one."""
    if context.is_offline_mode():
        _configure(url=_url(), literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    from service.review.migrations import make_engine

    engine = make_engine(_url())
    try:
        with engine.begin() as conn:
            _configure(connection=conn, render_as_batch=conn.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run()
