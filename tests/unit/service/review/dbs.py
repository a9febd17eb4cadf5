"""Fresh review databases for tests: a SQLite file, or a PostgreSQL schema of its own.

PostgreSQL comes from ``IMPACTS_TEST_POSTGRES_URL`` (``make postgres`` prints one); without
it the PostgreSQL variants are skipped, unless ``IMPACTS_REQUIRE_POSTGRES=1`` makes them fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BACKENDS = ["sqlite", "postgresql"]


def postgres_url() -> str:
    """The test server's URL, or skip (fail under ``IMPACTS_REQUIRE_POSTGRES=1``)."""
    url = os.environ.get("IMPACTS_TEST_POSTGRES_URL", "")
    if not url:
        message = "IMPACTS_TEST_POSTGRES_URL is unset; run `make postgres` and export the URL it prints"
        if os.environ.get("IMPACTS_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of an empty database; a PostgreSQL schema is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'review.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = postgres_url()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()
