"""The review's JSON API under ``/v1/review/`` (queue, detections and their images,
decisions, undo, progress, history, export), and :func:`install_review`, which adds the
pages, the API and the static files to an app.

The store opens lazily, on the first request that needs it (so an app whose review is never
used creates no database), and closes when the app stops (the router's lifespan, merged
into the app's). Scene names from requests must be plain names (422 otherwise) and are only
ever compared with stored names, never joined to a path here. Who may call what, and the
cookies and headers: :mod:`service.review.http`; the pages: :mod:`service.review.pages`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Path, Query
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from impacts.errors import ImpactsError
from impacts.scenes import SceneName
from service.guard import impacts_error_answer
from service.review import pages
from service.review.http import (
    API_HEADERS,
    AnalystDep,
    CsrfAnalystDep,
    StoreDep,
    error_docs,
)
from service.review.schemas import (
    AuditOut,
    DecisionKind,
    DecisionOut,
    DetectionOut,
    QueueFilter,
    QueuePage,
    Reason,
    SceneProgress,
    Status,
)
from service.review.settings import ReviewSettings
from service.review.state import ReviewState

log = logging.getLogger(__name__)

MEDIA_TYPES = {"geojson": "application/geo+json", "csv": "text/csv; charset=utf-8"}
DetectionId = Annotated[int, Path(ge=1, le=2**62, description="Detection id (from the queue).")]


class DecisionRequest(BaseModel):
    """Body of ``POST /v1/review/decisions``; the analyst is the session's, never a field."""

    model_config = ConfigDict(extra="forbid")

    detection_id: int = Field(ge=1)
    decision: DecisionKind
    reason: Reason | None = Field(None, description="Required with reject, absent otherwise.")
    note: str | None = Field(None, max_length=2000)


class DecisionResult(BaseModel):
    """A decision (or the undone one) and its detection as it is now."""

    decision: DecisionOut | None
    detection: DetectionOut | None


class QueueQuery(BaseModel):
    """Query of ``GET /v1/review/queue``."""

    model_config = ConfigDict(extra="forbid")

    scene: SceneName | None = None
    score_min: float | None = Field(None, ge=0, le=1)
    score_max: float | None = Field(None, ge=0, le=1)
    status: Status | Literal["all"] = Field("pending", description="Detection status; all = any.")
    model_version: str | None = Field(None, min_length=1, max_length=128)
    undecided: bool = Field(False, description="Only detections the session's analyst has not decided.")
    order: Literal["score", "scene"] = "score"
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0)


class Me(BaseModel):
    """Who is logged in."""

    analyst: str


@asynccontextmanager
async def _close_store(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        app.state.review.close()


api = APIRouter(prefix="/v1/review", tags=["review"], responses=error_docs(401, 503), lifespan=_close_store)


@api.get("/me", summary="The logged-in analyst")
def me(analyst: AnalystDep) -> Me:
    return Me(analyst=analyst)


@api.get("/queue", summary="Detections to review, by score (or scene), filtered")
def queue(analyst: AnalystDep, store: StoreDep, q: Annotated[QueueQuery, Query()]) -> QueuePage:
    return store.queue(
        QueueFilter(
            scene=q.scene,
            score_min=q.score_min,
            score_max=q.score_max,
            status=None if q.status == "all" else q.status,
            model_version=q.model_version,
            undecided_by=analyst if q.undecided else None,
            order=q.order,
            limit=q.limit,
            offset=q.offset,
        )
    )


@api.get(
    "/detections/{detection_id}", summary="One detection with its live decisions", responses=error_docs(404)
)
def detection(detection_id: DetectionId, analyst: AnalystDep, store: StoreDep) -> DetectionOut:
    return store.detection(detection_id)


@api.get(
    "/detections/{detection_id}/{kind}.png",
    summary="The crop, predicted-mask or context image of a detection",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **error_docs(404)},
)
def image(
    detection_id: DetectionId,
    kind: Literal["crop", "mask", "context"],
    analyst: AnalystDep,
    store: StoreDep,
) -> Response:
    png = store.crop_png(detection_id, kind)
    # Images of a detection never change: the browser may keep them (but no shared cache).
    return Response(
        png,
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


@api.post(
    "/decisions",
    summary="Accept, reject (with a reason) or mark unsure, as the session's analyst",
    responses=error_docs(400, 403, 404),
)
def decide(body: DecisionRequest, analyst: CsrfAnalystDep, store: StoreDep) -> DecisionResult:
    decision = store.decide(body.detection_id, analyst, body.decision, body.reason, body.note)
    log.info("%s: %s on detection %d", analyst, body.decision, body.detection_id)
    return DecisionResult(decision=decision, detection=store.detection(body.detection_id))


@api.post("/undo", summary="Withdraw the session analyst's latest live decision", responses=error_docs(403))
def undo(analyst: CsrfAnalystDep, store: StoreDep) -> DecisionResult:
    undone = store.undo(analyst)
    if undone is None:
        return DecisionResult(decision=None, detection=None)
    log.info("%s: undid %s on detection %d", analyst, undone.decision, undone.detection_id)
    return DecisionResult(decision=undone, detection=store.detection(undone.detection_id))


@api.get("/progress", summary="Per scene: detections in each status")
def progress(analyst: AnalystDep, store: StoreDep) -> list[SceneProgress]:
    return store.progress()


@api.get(
    "/history/{detection_id}",
    summary="Audit trail of one detection, oldest first",
    responses=error_docs(404),
)
def history(detection_id: DetectionId, analyst: AnalystDep, store: StoreDep) -> list[AuditOut]:
    return store.history(detection_id)


@api.get(
    "/export",
    summary="Accepted impacts (GeoJSON in the scene CRS, CSV) or rejected ones (hard_negatives.csv)",
    response_class=Response,
    responses={200: {"content": {"application/geo+json": {}, "text/csv": {}}}},
)
def export(
    analyst: AnalystDep,
    store: StoreDep,
    what: Literal["accepted", "rejected"] = "accepted",
    format: Literal["geojson", "csv"] = "geojson",
) -> Response:
    from service.review.export import FILES, render

    filename = FILES[what, format]
    return Response(
        render(store, what, format),
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"', **API_HEADERS},
    )


def install_review(app: FastAPI, settings: ReviewSettings) -> ReviewState:
    """Add the review UI, its JSON API and static files to ``app``.

    The store opens on the first request that needs it and closes when the app stops (a
    lifespan merged into the app's). Errors answer JSON with their ``http_status`` (400
    invalid action, 401 no session, 403 CSRF, 404 unknown detection, 503 database down),
    through the project's one handler (registered here too, for an app of its own).

    Args:
        app: The FastAPI app (before it starts).
        settings: Review settings; nothing is added when ``settings.enabled`` is false.

    Returns:
        The review state (also at ``app.state.review``): ``state.store()`` gives the store,
        e.g. for ``POST /v1/predict?review=true``.
    """
    state = ReviewState(settings)
    app.state.review = state
    if not settings.enabled:
        return state
    app.include_router(pages.router)
    app.include_router(api)
    app.mount("/review/static", StaticFiles(directory=pages.STATIC_DIR), name="review-static")
    app.add_exception_handler(ImpactsError, impacts_error_answer)  # the app's one handler
    return state
