"""Review settings, from environment variables prefixed ``IMPACTS_REVIEW_``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReviewSettings(BaseSettings):
    """How the review UI and its store run (e.g. ``IMPACTS_REVIEW_DB_URL=sqlite:///review.db``)."""

    model_config = SettingsConfigDict(env_prefix="IMPACTS_REVIEW_", extra="forbid")

    enabled: bool = Field(True, description="Serve the review UI and its JSON API.")
    db_url: str = Field(
        "sqlite:///review.db",
        description="Review store: sqlite:///PATH.db, or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB "
        "when several service processes write.",
    )
    session_ttl_s: float = Field(12 * 3600, gt=0, description="How long a login lasts, in seconds.")
    secure_cookies: Literal["auto", "true", "false"] = Field(
        "auto",
        description="Mark cookies Secure: auto = when the request came over https (behind a TLS proxy, "
        "run uvicorn with --proxy-headers or set true).",
    )
    scenes_dir: Path = Field(
        Path("scenes"),
        description="Data folder holding SCENE.tif; a scene named in a request never resolves outside it.",
    )
    login_failures_max: int = Field(
        10,
        ge=1,
        description="Failed logins per client address, and per account name, within login_window_s "
        "before 429 (counted in each service process).",
    )
    busy_timeout_s: float = Field(
        30.0, gt=0, description="How long a request waits for a locked SQLite database before 503."
    )
    login_window_s: float = Field(60.0, gt=0, description="Window of the failed-login limit, in seconds.")
