"""Tables of the review store (SQLAlchemy 2 ORM), the same on SQLite and PostgreSQL.

- ``analysts``: name (unique) and salted scrypt password hash.
- ``review_sessions``: public session id, per-session salt, hashes of the session secret and
  of the CSRF token, expiry. Never a token in clear.
- ``api_tokens``: named credentials for scripts that queue detections (public id, salt and
  hash of the secret; never the token in clear).
- ``detections``: one row per detection (unique ``key``), its scene, inclusive pixel box,
  centroid, score, model version, georeference and the crop window, plus ``status``, kept
  in step with the live decisions inside every write (so queue filters and progress are
  plain indexed queries).
- ``detection_images``: the crop, mask and context PNGs, apart so queue queries never load
  them.
- ``decisions``: every decision ever made. ``live`` marks the ones that count; a replaced or
  undone decision stays with ``ended_at``/``ended_by``. A partial unique index allows one
  live decision per analyst and detection.
- ``audit``: one row per change (who, what, when, state before and after as JSON).

Migrations in ``service/review/migrations`` create exactly these tables; a test checks that
the two never drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

DECISIONS = ("accept", "reject", "unsure")
REASONS = ("crater", "shadow", "nodata_border", "artefact", "other")
STATUSES = ("pending", "accept", "reject", "unsure", "conflict")
SOURCES = ("import", "service")
IMAGE_KINDS = ("crop", "mask", "context")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the review store; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base with constraint names that are stable across backends."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


class Analyst(Base):
    __tablename__ = "analysts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]


class ReviewSession(Base):
    __tablename__ = "review_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    analyst_id: Mapped[int] = mapped_column(ForeignKey("analysts.id", ondelete="CASCADE"), index=True)
    salt: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64))
    csrf_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(48), unique=True)
    salt: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class DetectionRow(Base):
    __tablename__ = "detections"
    __table_args__ = (
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint(_in("source", SOURCES), name="source"),
        CheckConstraint("row_min <= row_max AND col_min <= col_max", name="box"),
        Index(None, "status", "score"),
        Index(None, "scene", "score"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(256), unique=True)
    scene: Mapped[str] = mapped_column(String(128))
    row_min: Mapped[int] = mapped_column(Integer)
    col_min: Mapped[int] = mapped_column(Integer)
    row_max: Mapped[int] = mapped_column(Integer)
    col_max: Mapped[int] = mapped_column(Integer)
    centroid_row: Mapped[float] = mapped_column(Float)
    centroid_col: Mapped[float] = mapped_column(Float)
    centroid_x: Mapped[float] = mapped_column(Float)
    centroid_y: Mapped[float] = mapped_column(Float)
    area_px: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float, index=True)
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    crs_wkt: Mapped[str | None] = mapped_column(Text)
    transform: Mapped[list[float]] = mapped_column(JSON)
    win_row: Mapped[int] = mapped_column(Integer)
    win_col: Mapped[int] = mapped_column(Integer)
    win_height: Mapped[int] = mapped_column(Integer)
    win_width: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), server_default="pending")


class DetectionImage(Base):
    __tablename__ = "detection_images"

    detection_id: Mapped[int] = mapped_column(
        ForeignKey("detections.id", ondelete="CASCADE"), primary_key=True
    )
    crop_png: Mapped[bytes] = mapped_column(LargeBinary)
    mask_png: Mapped[bytes] = mapped_column(LargeBinary)
    context_png: Mapped[bytes] = mapped_column(LargeBinary)


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        CheckConstraint(_in("decision", DECISIONS), name="decision"),
        CheckConstraint(f"reason IS NULL OR {_in('reason', REASONS)}", name="reason"),
        CheckConstraint("ended_by IS NULL OR ended_by IN ('replaced', 'undone')", name="ended_by"),
        # At most one live decision per analyst and detection, whatever the writers do.
        Index(
            "uq_decisions_live",
            "detection_id",
            "analyst_id",
            unique=True,
            sqlite_where=text("live"),
            postgresql_where=text("live"),
        ),
        Index(None, "analyst_id", "live", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    detection_id: Mapped[int] = mapped_column(ForeignKey("detections.id", ondelete="CASCADE"), index=True)
    analyst_id: Mapped[int] = mapped_column(ForeignKey("analysts.id"))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]
    live: Mapped[bool] = mapped_column(Boolean)
    ended_at: Mapped[datetime | None]
    ended_by: Mapped[str | None] = mapped_column(String(16))
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"))


class AuditEntry(Base):
    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    analyst: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    detection_id: Mapped[int | None] = mapped_column(
        ForeignKey("detections.id", ondelete="CASCADE"), index=True
    )
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
