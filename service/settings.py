"""Service settings, from environment variables prefixed ``IMPACTS_``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PREDICT_PATH = "/v1/predict"


class Settings(BaseSettings):
    """How the prediction service runs (e.g. ``IMPACTS_MODEL_PATH=runs/unet/bundle``)."""

    model_config = SettingsConfigDict(env_prefix="IMPACTS_", extra="forbid")

    model_path: Path = Field(Path("runs/unet/bundle"), description="Model bundle folder.")
    max_tile_px: int = Field(4096, ge=16, description="Largest tile side accepted (checked before decoding).")
    max_body_bytes: int = Field(
        64 * 2**20,
        ge=1024,
        description="Largest body of POST /v1/predict, counted as it arrives; larger is 413.",
    )
    max_request_bytes: int = Field(
        2**20,
        ge=1024,
        description="Largest body of every other route (login, review decisions), counted as it arrives.",
    )
    max_parts: int = Field(4, ge=1, description="Most multipart parts per request.")
    window_px: int = Field(256, ge=16, description="Sliding-window side for tiles.")
    overlap_px: int = Field(32, ge=0, description="Window overlap, blended away.")
    batching: bool = Field(True, description="Micro-batch windows of concurrent requests.")
    batch_max: int = Field(16, ge=1, description="Most windows per model call.")
    batch_wait_ms: float = Field(
        5.0,
        ge=0,
        description="How long a batch that an idle model starts waits to fill (windows that queued "
        "while the model was busy go at once).",
    )
    queue_max: int = Field(256, ge=1, description="Most windows waiting; beyond, 503 with Retry-After.")
    cpu_slots: int = Field(
        1,
        ge=1,
        description="Requests that decode, blend and encode at the same time (the rest queue); "
        "the GIL runs that Python work one thread at a time anyway, and more threads at it only "
        "delay the model thread and the event loop.",
    )
    threshold: float | None = Field(None, gt=0, lt=1, description="Detection threshold; None = the bundle's.")
    forwarded_allow_ips: str = Field(
        "",
        description="Addresses of reverse proxies whose X-Forwarded-For/-Proto headers are trusted, "
        "comma-separated (uvicorn's --forwarded-allow-ips); empty = trust none, the client is the peer.",
    )

    def body_limit(self, path: str) -> int:
        """The largest body accepted on ``path``, in bytes."""
        return self.max_body_bytes if path == PREDICT_PATH else self.max_request_bytes
