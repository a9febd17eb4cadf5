"""Pydantic models that go in and out of the review store (the ORM tables are in ``models``),
and the conversions from table rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from impacts.detections import Detection
from impacts.scenes import SceneName
from service.review.models import Decision, DetectionRow

Status = Literal["pending", "accept", "reject", "unsure", "conflict"]
DecisionKind = Literal["accept", "reject", "unsure"]
Reason = Literal["crater", "shadow", "nodata_border", "artefact", "other"]
Source = Literal["import", "service"]
ImageKind = Literal["crop", "mask", "context"]


class _Detection(BaseModel):
    """Fields a detection keeps, in and out."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(
        min_length=1, max_length=256, description="Unique key, e.g. predict id + '@' + model version."
    )
    scene: SceneName
    row_min: int = Field(ge=0, description="Inclusive pixel box in the scene: first row.")
    col_min: int = Field(ge=0, description="First column.")
    row_max: int = Field(ge=0, description="Last row (inclusive).")
    col_max: int = Field(ge=0, description="Last column (inclusive).")
    centroid_row: float
    centroid_col: float
    centroid_x: float = Field(description="Centroid in map units of the scene CRS.")
    centroid_y: float
    area_px: int = Field(ge=0)
    score: float = Field(ge=0, le=1, description="Peak probability of the detection.")
    model_version: str = Field(min_length=1, max_length=128)
    crs_wkt: str | None = Field(None, description="Scene CRS as WKT; None when the scene has none.")
    transform: tuple[float, float, float, float, float, float] = Field(
        description="Affine a, b, c, d, e, f (GDAL order) of the grid that rows and columns refer to."
    )
    window: tuple[int, int, int, int] = Field(
        description="Crop window in scene pixels: row0, col0, height, width."
    )
    source: Source = "import"

    @model_validator(mode="after")
    def _box_ordered(self) -> _Detection:
        if self.row_min > self.row_max or self.col_min > self.col_max:
            raise ValueError("box needs row_min <= row_max and col_min <= col_max")
        if self.window[2] < 1 or self.window[3] < 1:
            raise ValueError("window height and width must be positive")
        return self


class DetectionIn(_Detection):
    """A detection entering the review queue, with the images an analyst looks at."""

    crop_png: bytes = Field(description="Grayscale PNG of the crop window.")
    mask_png: bytes = Field(description="0/255 PNG of the predicted mask (box outline) on the crop window.")
    context_png: bytes = Field(description="PNG of a wider view around the detection.")

    @classmethod
    def of(
        cls,
        record: Detection,
        *,
        key: str,
        scene: str,
        crs_wkt: str | None,
        transform: tuple[float, ...],
        views: tuple[bytes, bytes, bytes, tuple[int, int, int, int]],
        source: Source,
    ) -> DetectionIn:
        """A queue item from a detection record and its views (``render_views``' answer).

        Without map coordinates (a tile without georeference) the centroid's are its pixel
        centres, as the identity ``transform`` then says; the score is clamped to [0, 1].
        """
        x, y = record.centroid_x, record.centroid_y
        if x is None or y is None:
            x, y = record.centroid_col + 0.5, record.centroid_row + 0.5
        crop, mask, context, window = views
        return cls(
            key=key,
            scene=scene,
            row_min=record.row_min,
            col_min=record.col_min,
            row_max=record.row_max,
            col_max=record.col_max,
            centroid_row=record.centroid_row,
            centroid_col=record.centroid_col,
            centroid_x=x,
            centroid_y=y,
            area_px=record.area_px,
            score=min(max(record.score, 0.0), 1.0),
            model_version=record.model_version,
            crs_wkt=crs_wkt,
            transform=transform,
            window=window,
            crop_png=crop,
            mask_png=mask,
            context_png=context,
            source=source,
        )


class DecisionOut(BaseModel):
    """One decision (live or ended)."""

    model_config = ConfigDict(extra="forbid")

    id: int
    detection_id: int
    analyst: str
    decision: DecisionKind
    reason: Reason | None
    note: str | None
    at: datetime
    live: bool
    ended_at: datetime | None = None
    ended_by: Literal["replaced", "undone"] | None = None
    detection_status: Status = Field(description="Status of the detection after this decision's last change.")


class LiveDecision(BaseModel):
    """A live decision as shown with its detection."""

    model_config = ConfigDict(extra="forbid")

    id: int
    analyst: str
    decision: DecisionKind
    reason: Reason | None
    note: str | None
    at: datetime


class DetectionOut(_Detection):
    """A detection in the store with its status and live decisions."""

    id: int
    status: Status
    created_at: datetime
    decisions: list[LiveDecision] = Field(default_factory=list)


class QueueFilter(BaseModel):
    """Which detections the queue lists, and in which order."""

    model_config = ConfigDict(extra="forbid")

    scene: SceneName | None = None
    score_min: float | None = Field(None, ge=0, le=1)
    score_max: float | None = Field(None, ge=0, le=1)
    status: Status | None = Field("pending", description="DetectionRow status; None lists every status.")
    model_version: str | None = None
    undecided_by: str | None = Field(
        None, description="Only detections this analyst has no live decision on."
    )
    order: Literal["score", "scene"] = Field(
        "score", description="score: score desc; scene: scene, then score desc."
    )
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0)


class QueuePage(BaseModel):
    """One page of the queue."""

    items: list[DetectionOut]
    total: int = Field(description="Detections matching the filter, all pages.")
    offset: int
    limit: int


class AuditOut(BaseModel):
    """One audit row."""

    id: int
    at: datetime
    analyst: str | None
    action: Literal["add", "decide", "replace", "undo", "analyst_add"]
    detection_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class SceneProgress(BaseModel):
    """Review progress of one scene."""

    scene: str
    total: int
    accepted: int
    rejected: int
    unsure: int
    conflict: int
    pending: int


def status_of(decisions: list[str]) -> str:
    """DetectionRow status from its live decisions: pending, the agreed one, or conflict."""
    kinds = set(decisions)
    if not kinds:
        return "pending"
    return kinds.pop() if len(kinds) == 1 else "conflict"


def decision_dict(d: Decision | None, analyst: str) -> dict[str, Any] | None:
    """A decision as stored in the audit (None stays None)."""
    if d is None:
        return None
    return {
        "id": d.id,
        "analyst": analyst,
        "decision": d.decision,
        "reason": d.reason,
        "note": d.note,
        "at": d.at.isoformat(),
    }


def decision_out(d: Decision, analyst: str, status: str) -> DecisionOut:
    """A decision row as :class:`DecisionOut`, with its detection's status."""
    return DecisionOut.model_validate(
        {
            **{k: getattr(d, k) for k in ("id", "detection_id", "decision", "reason", "note", "at", "live")},
            "ended_at": d.ended_at,
            "ended_by": d.ended_by,
            "analyst": analyst,
            "detection_status": status,
        }
    )


def detection_out(row: DetectionRow, live: list[LiveDecision]) -> DetectionOut:
    """A detection row as :class:`DetectionOut`, with its live decisions."""
    fields = {name: getattr(row, name) for name in DetectionOut.model_fields if hasattr(DetectionRow, name)}
    fields.update(
        transform=tuple(row.transform),
        window=(row.win_row, row.win_col, row.win_height, row.win_width),
        decisions=live,
    )
    return DetectionOut.model_validate(fields)
