"""Connecting to the review database and migrating its schema (Alembic, shipped here).

:func:`make_engine` builds an engine with the per-backend settings that make concurrent
writers safe; :func:`upgrade` runs this folder's Alembic revisions (``versions/``) up to
head inside one transaction, without any ``alembic.ini``. To write a new revision:
``alembic -x url=sqlite:///tmp.db revision --autogenerate -m "..."`` with
``script_location`` pointing here (see ``env.py``), then review the generated file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool

from impacts.errors import ReviewDatabaseError

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
#: Key of the PostgreSQL advisory lock that serialises migrations of concurrent processes.
MIGRATION_LOCK = 0x1A7C_0006
#: Execution option that marks a connection as a writer (SQLite: ``BEGIN IMMEDIATE``).
WRITE_OPTION = "review_write"
URL_HELP = "use sqlite:///PATH.db or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def make_engine(url: str, busy_timeout_s: float = 30.0) -> Engine:
    """An engine for a SQLite or PostgreSQL review database.

    SQLite: WAL journal (readers never block the writer), ``busy_timeout``, foreign keys on,
    and ``BEGIN IMMEDIATE`` for connections with the :data:`WRITE_OPTION` execution option, so
    a second writer waits for the lock at the start of its transaction instead of failing
    half-way. PostgreSQL: pooled connections checked before use.

    Args:
        url: ``sqlite:///PATH.db`` or ``postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB``.
        busy_timeout_s: How long a SQLite writer waits for the write lock.

    Returns:
        The engine (no connection is made yet).

    Raises:
        ReviewDatabaseError: The URL is invalid or names another backend.
    """
    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            memory = parsed.database in (None, "", ":memory:")
            engine = create_engine(
                parsed,
                connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
                **({"poolclass": StaticPool} if memory else {}),
            )
            _sqlite_hooks(engine, busy_timeout_s, wal=not memory)
            return engine
        if backend == "postgresql":
            return create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ReviewDatabaseError(
            f"review database URL {redact(url)} is invalid ({exc}); {URL_HELP}"
        ) from exc
    raise ReviewDatabaseError(
        f"review database {redact(url)}: backend {backend!r} is not supported; {URL_HELP}"
    )


def _sqlite_hooks(engine: Engine, busy_timeout_s: float, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the "begin" hook below emits BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def alembic_config() -> Any:
    """An Alembic ``Config`` for these migrations, without any ini file."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE).replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the schema to ``revision`` in one transaction (a no-op when already there).

    Concurrent callers are serialised: SQLite by its write lock, PostgreSQL by an advisory
    lock, so several service processes may start at once on a new database.

    Args:
        engine: From :func:`make_engine`.
        revision: Alembic revision id, or ``head``.

    Raises:
        ReviewDatabaseError: The database cannot be reached or migrated.
    """
    # Alembic narrates every step at INFO (plugins, context); the migration itself is logged below.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    config = alembic_config()
    target = ScriptDirectory.from_config(config).get_revision(revision)
    try:
        with engine.connect() as connection:  # the common case, already there: no lock, no log lines
            if (
                target is not None
                and MigrationContext.configure(connection).get_current_revision() == target.revision
            ):
                return
        with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        log.info("review database %s migrated to %s", redact(str(engine.url)), revision)
    except CommandError as exc:
        raise ReviewDatabaseError(
            f"review database {redact(str(engine.url))}: {exc}; it was written by a newer mars-impacts, "
            "upgrade this installation (pip install -U mars-impacts) before opening it"
        ) from exc
    except OperationalError as exc:
        raise ReviewDatabaseError(
            f"review database {redact(str(engine.url))} cannot be opened or migrated ({exc.orig}); check the "
            "URL (IMPACTS_REVIEW_DB_URL or --db), that its folder exists and that the server runs"
        ) from exc
