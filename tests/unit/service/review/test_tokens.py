"""API tokens: scripts queue detections with a named token stored only as a salted hash."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from impacts.cli import main
from impacts.errors import ReviewError, ReviewNotFoundError
from service.review.models import ApiToken
from service.review.store import ReviewStore


def test_a_token_names_its_script_until_it_is_revoked(store: ReviewStore) -> None:
    token = store.add_token("nightly-pipeline")
    assert store.token_name(token) == "nightly-pipeline"
    sid, secret = token.split(".")
    assert store.token_name(f"{sid}.{secret[:-2]}xx") is None  # forged secret
    assert store.token_name(secret) is None and store.token_name("") is None
    with store._tx(write=False) as s:  # only a salted hash is kept
        row = s.scalars(select(ApiToken)).one()
    assert secret not in (row.token_hash, row.salt) and row.id == sid
    assert [name for name, _ in store.tokens()] == ["nightly-pipeline"]
    store.revoke_token("nightly-pipeline")
    assert store.token_name(token) is None and store.tokens() == []
    with pytest.raises(ReviewNotFoundError, match="no API token"):
        store.revoke_token("nightly-pipeline")


def test_token_names_are_unique_and_plain(store: ReviewStore) -> None:
    store.add_token("ci")
    with pytest.raises(ReviewError, match="already exists"):
        store.add_token("ci")
    with pytest.raises(ReviewError, match="not allowed"):
        store.add_token("bad name/with slash")


def test_tokens_cli_adds_lists_and_revokes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'review.db'}"
    runner = CliRunner()
    added = runner.invoke(main, ["review", "tokens", "add", "pipeline", "--db", db])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip().splitlines()[0]
    store = ReviewStore.open(db)
    try:
        assert store.token_name(token) == "pipeline"
    finally:
        store.close()
    listed = runner.invoke(main, ["review", "tokens", "list", "--db", db])
    assert listed.stdout.startswith("pipeline\t") and token not in listed.stdout
    assert runner.invoke(main, ["review", "tokens", "revoke", "pipeline", "--db", db]).exit_code == 0
    again = runner.invoke(main, ["review", "tokens", "revoke", "pipeline", "--db", db])
    assert again.exit_code != 0 and "no API token" in again.output
