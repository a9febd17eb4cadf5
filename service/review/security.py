"""Password and token hashing for the review store: nothing secret is ever stored in clear.

- Passwords: scrypt (``hashlib.scrypt``, N=2**14, r=8, p=1, 32-byte key) with a random
  16-byte salt per analyst, stored as ``scrypt$N$r$p$<salt b64>$<key b64>`` so the cost can
  be raised later without breaking old hashes. Verification compares in constant time
  (``hmac.compare_digest``), and an unknown analyst costs one scrypt too (:data:`DUMMY_HASH`),
  so timing does not tell which names exist.
- Session, CSRF and API tokens: 256 random bits each. A session token reads ``<sid>.<secret>``:
  ``sid`` is a public lookup key, the secret is stored only as SHA-256 over a random
  per-session salt plus the secret (a slow hash adds nothing to 256 random bits).

:class:`AccountsMixin` gives :class:`~service.review.store.ReviewStore` its analyst, session
and API-token methods on top of these functions. An API token (``impacts review tokens add``)
lets a script queue detections (``POST /v1/predict?review=true``) without an analyst's login;
it reads like a session token and is stored the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from impacts.errors import ReviewError, ReviewNotFoundError
from service.review.models import Analyst, ApiToken, AuditEntry, ReviewSession

SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 2**14, 8, 1, 32
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
ANALYST_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
TOKEN_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,48}$")
SESSION_ID_BYTES = 12
TOKEN_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=256 * n * r * p
    )


def check_analyst_name(name: str) -> str:
    """Validate an analyst name.

    Args:
        name: 1-64 characters of letters, digits, ``_ . @ -``.

    Returns:
        The name unchanged.

    Raises:
        ReviewError: The name is empty, too long or has other characters.
    """
    if not ANALYST_NAME.fullmatch(name):
        raise ReviewError(
            f"analyst name {name!r} is not allowed; use 1-64 letters, digits, '_', '.', '@' or '-'"
        )
    return name


def check_password(password: str) -> None:
    """Refuse passwords shorter than 8 or longer than 1024 characters.

    Raises:
        ReviewError: The password is too short or too long.
    """
    if len(password) < MIN_PASSWORD_CHARS:
        raise ReviewError(f"password too short: use at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ReviewError(f"password too long: use at most {MAX_PASSWORD_CHARS} characters")


def hash_password(password: str) -> str:
    """Hash a password with a fresh random salt.

    Args:
        password: At least :data:`MIN_PASSWORD_CHARS` characters.

    Returns:
        ``scrypt$N$r$p$<salt>$<key>`` (base64 fields).

    Raises:
        ReviewError: The password is shorter than 8 or longer than 1024 characters.
    """
    check_password(password)
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


#: A valid hash of a random password: verifying against it costs what a real check costs.
DUMMY_HASH = "$".join(
    ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(bytes(16)), _b64(bytes(SCRYPT_DKLEN))]
)


def verify_password(password: str, stored: str) -> bool:
    """Check a password against a stored hash in constant time.

    Args:
        password: What the user typed.
        stored: A value from :func:`hash_password` (or :data:`DUMMY_HASH`).

    Returns:
        True when the password matches; False otherwise, also for a malformed hash.
    """
    try:
        scheme, n, r, p, salt_b64, key_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, key = base64.b64decode(salt_b64), base64.b64decode(key_b64)
        candidate = _scrypt(password[:MAX_PASSWORD_CHARS], salt, int(n), int(r), int(p), len(key))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, key)


def new_secret() -> str:
    """A fresh URL-safe random secret of 256 bits."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_session_id() -> str:
    """A fresh public session id (hex, 24 characters)."""
    return secrets.token_hex(SESSION_ID_BYTES)


def new_salt() -> str:
    """A fresh random salt for token hashes (hex, 32 characters)."""
    return secrets.token_hex(16)


def hash_token(salt: str, secret: str) -> str:
    """SHA-256 of ``salt`` and ``secret`` as hex: what the store keeps of a token."""
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def token_matches(salt: str, secret: str, stored: str) -> bool:
    """Compare a presented token with its stored hash in constant time."""
    return hmac.compare_digest(hash_token(salt, secret), stored)


def split_session_token(token: str) -> tuple[str, str] | None:
    """Split ``<sid>.<secret>``; None when the token is not of that shape."""
    sid, dot, secret = token.partition(".")
    if not dot or len(sid) != 2 * SESSION_ID_BYTES or not secret or len(token) > 200:
        return None
    return sid, secret


class AccountsMixin(ABC):
    """Analysts and login sessions; the store provides ``_tx``, ``_clock`` and ``_session_ttl``."""

    _clock: Callable[[], datetime]
    _session_ttl: timedelta

    @abstractmethod
    def _tx(self, write: bool) -> AbstractContextManager[Session]:
        """A session in one transaction, on the writer engine when ``write``."""

    def add_analyst(self, name: str, password: str) -> None:
        """Add an analyst with a salted scrypt hash of the password.

        Raises:
            ReviewError: Name taken or malformed, or password shorter than 8 characters.
        """
        check_analyst_name(name)
        password_hash = hash_password(password)
        try:
            with self._tx(write=True) as s:
                now = self._clock()
                s.add(Analyst(name=name, password_hash=password_hash, created_at=now))
                s.flush()
                s.add(AuditEntry(at=now, analyst=name, action="analyst_add", after={"name": name}))
        except IntegrityError as exc:
            raise ReviewError(f"analyst {name!r} already exists; pick another name") from exc

    def analysts(self) -> list[str]:
        """Names of all analysts, sorted."""
        with self._tx(write=False) as s:
            return list(s.scalars(select(Analyst.name).order_by(Analyst.name)))

    def authenticate(self, name: str, password: str) -> bool:
        """True when ``password`` is the analyst's; the same cost for unknown names."""
        with self._tx(write=False) as s:
            stored = s.scalar(select(Analyst.password_hash).where(Analyst.name == name))
        ok = verify_password(password, stored or DUMMY_HASH)
        return ok and stored is not None

    def open_session(self, name: str) -> tuple[str, str]:
        """Open a login session; only salted hashes of the tokens are stored.

        Returns:
            ``(session token, CSRF token)``.

        Raises:
            ReviewNotFoundError: No such analyst.
        """
        sid, secret, csrf, salt = (
            new_session_id(),
            new_secret(),
            new_secret(),
            new_salt(),
        )
        with self._tx(write=True) as s:
            analyst = s.scalars(select(Analyst).where(Analyst.name == name)).first()
            if analyst is None:
                raise ReviewNotFoundError(
                    f"analyst {name!r} does not exist; add it: impacts review users add {name}"
                )
            now = self._clock()
            s.execute(delete(ReviewSession).where(ReviewSession.expires_at < now))
            s.add(
                ReviewSession(
                    id=sid,
                    analyst_id=analyst.id,
                    salt=salt,
                    token_hash=hash_token(salt, secret),
                    csrf_hash=hash_token(salt, csrf),
                    created_at=now,
                    expires_at=now + self._session_ttl,
                )
            )
        return f"{sid}.{secret}", csrf

    def _session(self, s: Session, token: str) -> tuple[ReviewSession, str] | None:
        parts = split_session_token(token)
        if parts is None:
            return None
        row = s.execute(
            select(ReviewSession, Analyst.name)
            .join(Analyst, Analyst.id == ReviewSession.analyst_id)
            .where(ReviewSession.id == parts[0])
        ).first()
        if row is None or not token_matches(row[0].salt, parts[1], row[0].token_hash):
            return None
        if row[0].expires_at <= self._clock():
            return None
        return row[0], row[1]

    def session_analyst(self, token: str) -> str | None:
        """The analyst of a live session; None for unknown, forged or expired tokens."""
        with self._tx(write=False) as s:
            found = self._session(s, token)
        return found[1] if found else None

    def check_csrf(self, token: str, csrf: str) -> bool:
        """True when ``csrf`` is the CSRF token of the live session ``token``."""
        with self._tx(write=False) as s:
            found = self._session(s, token)
        return found is not None and token_matches(found[0].salt, csrf, found[0].csrf_hash)

    def close_session(self, token: str) -> None:
        """End a session (log out); unknown tokens are ignored."""
        with self._tx(write=True) as s:
            found = self._session(s, token)
            if found is not None:
                s.execute(delete(ReviewSession).where(ReviewSession.id == found[0].id))

    # ----------------------------------------------------------------- API tokens
    def add_token(self, name: str) -> str:
        """Make a named API token; only a salted hash of it is stored.

        Args:
            name: 1-48 letters, digits, ``_ . @ -`` (e.g. the script or pipeline using it).

        Returns:
            The token, to show once: it cannot be read back.

        Raises:
            ReviewError: The name is malformed or taken.
        """
        if not TOKEN_NAME.fullmatch(name):
            raise ReviewError(
                f"token name {name!r} is not allowed; use 1-48 letters, digits, '_', '.', '@' or '-'"
            )
        sid, secret, salt = new_session_id(), new_secret(), new_salt()
        try:
            with self._tx(write=True) as s:
                now = self._clock()
                s.add(
                    ApiToken(
                        id=sid, name=name, salt=salt, token_hash=hash_token(salt, secret), created_at=now
                    )
                )
                s.flush()
                s.add(AuditEntry(at=now, analyst=None, action="token_add", after={"name": name}))
        except IntegrityError as exc:
            raise ReviewError(
                f"API token {name!r} already exists; revoke it first or pick another name"
            ) from exc
        return f"{sid}.{secret}"

    def tokens(self) -> list[tuple[str, datetime]]:
        """Names and creation times of the API tokens, sorted by name."""
        with self._tx(write=False) as s:
            return [
                (n, at)
                for n, at in s.execute(select(ApiToken.name, ApiToken.created_at).order_by(ApiToken.name))
            ]

    def revoke_token(self, name: str) -> None:
        """Delete an API token: requests carrying it are refused from now on.

        Raises:
            ReviewNotFoundError: No token of that name.
        """
        with self._tx(write=True) as s:
            gone = s.execute(delete(ApiToken).where(ApiToken.name == name)).rowcount  # type: ignore[attr-defined]
            if not gone:
                raise ReviewNotFoundError(
                    f"no API token named {name!r}; list them: impacts review tokens list"
                )
            s.add(AuditEntry(at=self._clock(), analyst=None, action="token_revoke", before={"name": name}))

    def token_name(self, token: str) -> str | None:
        """The name of a live API token; None for unknown, forged or revoked ones."""
        parts = split_session_token(token)
        if parts is None:
            return None
        with self._tx(write=False) as s:
            row = s.get(ApiToken, parts[0])
        if row is None or not token_matches(row.salt, parts[1], row.token_hash):
            return None
        return row.name
