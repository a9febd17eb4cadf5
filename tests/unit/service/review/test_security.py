"""Password and token hashing."""

from __future__ import annotations

import pytest

from impacts.errors import ReviewError
from service.review import security


def test_password_hash_is_salted_and_verifies() -> None:
    first, second = security.hash_password("correct horse"), security.hash_password("correct horse")
    assert first != second and "correct" not in first
    assert first.startswith(f"scrypt${security.SCRYPT_N}$")
    assert security.verify_password("correct horse", first)
    assert not security.verify_password("correct hors", first)
    assert not security.verify_password("correct horse", security.DUMMY_HASH)
    assert not security.verify_password("correct horse", "md5$nonsense")
    assert not security.verify_password("correct horse", "not a hash")


@pytest.mark.parametrize("password", ["", "seven77", "x" * 1025])
def test_weak_or_absurd_passwords_are_refused(password: str) -> None:
    with pytest.raises(ReviewError, match="password"):
        security.hash_password(password)


def test_tokens_are_random_and_hashed_with_their_salt() -> None:
    salt, secret = security.new_salt(), security.new_secret()
    assert len(secret) >= 43 and secret != security.new_secret()
    stored = security.hash_token(salt, secret)
    assert secret not in stored
    assert security.token_matches(salt, secret, stored)
    assert not security.token_matches(security.new_salt(), secret, stored)
    sid = security.new_session_id()
    assert security.split_session_token(f"{sid}.{secret}") == (sid, secret)
    for bad in ("", sid, f"{sid}.", "short.secret", f"{sid}.{'x' * 300}"):
        assert security.split_session_token(bad) is None


@pytest.mark.parametrize("name", ["", "a b", "../etc", "x" * 65, "ünï"])
def test_analyst_names_are_plain(name: str) -> None:
    with pytest.raises(ReviewError, match="analyst name"):
        security.check_analyst_name(name)
