"""The review UI and its JSON API, served by the prediction service's FastAPI app.

``install_review(app, settings)`` adds everything to an app: the login and review pages
(``/login``, ``/review``), their static files (``/review/static``), the JSON API under
``/v1/review/`` and the error handlers of the review errors. The store opens lazily, on the
first request that needs it (so an app whose review is never used creates no database), and
closes when the app stops (the router's lifespan, merged into the app's).

Security:

- Login (``POST /login``, form ``name`` + ``password``) checks the password in constant time
  (an unknown name costs one scrypt too) and answers 401 to any failure, whichever part was
  wrong; more than ``login_failures_max`` failures from one address, or for one account name,
  within ``login_window_s`` answer 429. An attempt counts before its password is checked, so
  parallel guesses are held to the limit too. The address is the TCP peer unless the
  operator names trusted proxies (``IMPACTS_FORWARDED_ALLOW_IPS``). A cross-site login is
  refused by its Origin (or Referer).
- The session lives in the cookie ``impacts_session`` (HttpOnly, SameSite=Strict, Path=/,
  Secure over https or when configured); the store keeps only a salted hash of it.
- Every POST but ``/login`` needs the header ``X-CSRF-Token`` equal to the session's CSRF
  token, which the page reads from the cookie ``impacts_csrf`` (not HttpOnly, SameSite=Strict).
- Without a session, pages redirect (303) to ``/login`` and the API answers 401; a wrong or
  missing CSRF token is 403. ``POST /v1/predict?review=true`` (queueing a tile's detections)
  needs a session with its CSRF header, or an API token (:func:`queue_writer`). The analyst of every action is the session's: a request body
  naming an analyst is refused (422, bodies forbid unknown fields).
- Scene names from requests must match ``^[A-Za-z0-9_.-]{1,128}$`` (422 otherwise) and are
  only ever compared with stored names, never joined to a path here.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, Header, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from impacts.errors import ReviewDatabaseError, ReviewError
from service.guard import error_answer
from service.review.schemas import (
    SCENE_PATTERN,
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
from service.review.store import ReviewStore

log = logging.getLogger(__name__)

SESSION_COOKIE = "impacts_session"
CSRF_COOKIE = "impacts_csrf"
CSRF_HEADER = "X-CSRF-Token"
STATIC_DIR = pathlib.Path(__file__).parent / "static"
LOGIN_ERROR_MARK = "<!--login-error-->"
LOGIN_FAILED = "wrong name or password"
MEDIA_TYPES = {"geojson": "application/geo+json", "csv": "text/csv; charset=utf-8"}
#: Pages load only this origin's scripts, styles and images: no CDN, no inline code.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


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

    scene: str | None = Field(None, pattern=SCENE_PATTERN)
    score_min: float | None = Field(None, ge=0, le=1)
    score_max: float | None = Field(None, ge=0, le=1)
    status: Status | Literal["all"] = Field("pending", description="Detection status; all = any.")
    model_version: str | None = Field(None, min_length=1, max_length=128)
    undecided: bool = Field(False, description="Only detections the session's analyst has not decided.")
    order: Literal["score", "scene"] = "score"
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0)


class ErrorOut(BaseModel):
    """An error answer: what went wrong and how to fix it (for a 5xx only a generic text; the
    request id finds the details in the log)."""

    detail: str
    request_id: str | None = None


ERROR_TEXT = {
    400: "Invalid action (e.g. a rejection without a reason)",
    401: "Not logged in, or the session expired",
    403: "CSRF token missing or wrong, or a cross-site login",
    404: "No such detection",
    429: "Too many failed logins from this address or for this account; see Retry-After",
    503: "The review database is unavailable; retry (the answer holds a request id for the operators)",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorOut, "description": ERROR_TEXT[status]} for status in statuses}


class Me(BaseModel):
    """Who is logged in."""

    analyst: str


# ---------------------------------------------------------------------- dependencies
def _state(request: Request) -> ReviewState:
    state: ReviewState = request.app.state.review
    return state


StateDep = Annotated[ReviewState, Depends(_state)]


def _store(state: StateDep) -> ReviewStore:
    return state.store()


StoreDep = Annotated[ReviewStore, Depends(_store)]


def _session_analyst(request: Request, state: ReviewState) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None  # no store access at all for anonymous requests
    return state.store().session_analyst(token)


def _analyst(request: Request, state: StateDep) -> str:
    analyst = _session_analyst(request, state)
    if analyst is None:
        raise HTTPException(401, "log in first: POST /login (the session is missing or expired)")
    return analyst


AnalystDep = Annotated[str, Depends(_analyst)]


def _check_csrf(request: Request, state: ReviewState, csrf: str | None) -> None:
    token = request.cookies.get(SESSION_COOKIE, "")
    if not csrf or len(csrf) > 200 or not state.store().check_csrf(token, csrf):
        raise HTTPException(
            403,
            f"CSRF check failed: send the {CSRF_HEADER} header with the value of the {CSRF_COOKIE} cookie",
        )


def _csrf_analyst(
    request: Request,
    analyst: AnalystDep,
    state: StateDep,
    csrf: Annotated[str | None, Header(alias=CSRF_HEADER, max_length=200)] = None,
) -> str:
    _check_csrf(request, state, csrf)
    return analyst


def queue_writer(request: Request, state: ReviewState) -> str:
    """Who may add detections to the review queue (``POST /v1/predict?review=true``).

    Either an API token (``Authorization: Bearer TOKEN``, from ``impacts review tokens add``)
    or an analyst's session with its CSRF header, as for every other write.

    Args:
        request: The request.
        state: The app's review state.

    Returns:
        ``token:NAME`` or the analyst's name, as the audit records it.

    Raises:
        HTTPException: 401 without a credential, 403 for a wrong token or CSRF header.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        name = state.store().token_name(token.strip())
        if name is None:
            raise HTTPException(
                403, "API token unknown or revoked; make one with `impacts review tokens add NAME`"
            )
        return f"token:{name}"
    analyst = _session_analyst(request, state)
    if analyst is None:
        raise HTTPException(
            401,
            "queueing for review needs a credential: an API token (Authorization: Bearer TOKEN, from "
            "`impacts review tokens add NAME`) or an analyst session with its CSRF header",
        )
    _check_csrf(request, state, request.headers.get(CSRF_HEADER))
    return analyst


CsrfAnalystDep = Annotated[str, Depends(_csrf_analyst)]
DetectionId = Annotated[int, Path(ge=1, le=2**62, description="Detection id (from the queue).")]


def _secure(request: Request, settings: ReviewSettings) -> bool:
    if settings.secure_cookies == "auto":
        return request.url.scheme == "https"
    return settings.secure_cookies == "true"


def _same_origin(request: Request) -> bool:
    """True unless an Origin (else Referer) header names another host than the request's."""
    host = request.headers.get("host", "")
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value:
            return urlsplit(value).netloc == host
    return True


def _page(name: str, status: int = 200, error: str | None = None) -> HTMLResponse:
    text = (STATIC_DIR / name).read_text(encoding="utf-8")
    if error is not None:  # a fixed message of ours, never user input
        text = text.replace(LOGIN_ERROR_MARK, f'<p class="error" role="alert">{error}</p>')
    return HTMLResponse(text, status, headers=PAGE_HEADERS)


def _login_failed(
    request: Request, status: int, detail: str, headers: dict[str, str] | None = None
) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        page = _page("login.html", status, detail)
        page.headers.update(headers or {})
        return page
    return JSONResponse({"detail": detail}, status, headers=headers)


# ---------------------------------------------------------------------- routes
def build_router(lifespan: Any = None) -> APIRouter:
    """The review routes (pages and JSON API), without the static files.

    Args:
        lifespan: Lifespan context of the router, merged into the app's when included.

    Returns:
        The router.
    """
    router = APIRouter(lifespan=lifespan)
    api = APIRouter(prefix="/v1/review", tags=["review"], responses=_errors(401, 503))

    @router.get(
        "/login",
        response_class=HTMLResponse,
        summary="The login form (HTML)",
        tags=["review"],
        responses={303: {"description": "Already logged in: to /review"}, **_errors(503)},
    )
    def login_page(request: Request, state: StateDep) -> Response:
        if _session_analyst(request, state) is not None:
            return RedirectResponse("/review", 303)
        return _page("login.html")

    # Starlette answers 405 with the methods of the first route of a path only (here GET):
    # this route makes the Allow header name both of /login's methods.
    @router.api_route(
        "/login", methods=["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"], include_in_schema=False
    )
    def login_other_methods() -> JSONResponse:
        return JSONResponse({"detail": "Method Not Allowed"}, 405, headers={"Allow": "GET, POST"})

    @router.post(
        "/login",
        summary="Log in (form fields name, password); sets the session and CSRF cookies",
        tags=["review"],
        responses={
            303: {"description": "Logged in: to /review, with the session and CSRF cookies"},
            **_errors(403, 503),
            401: {
                "description": f"{LOGIN_FAILED} (the login page again for a browser)",
                "content": {
                    "application/json": {"schema": ErrorOut.model_json_schema()},
                    "text/html": {"schema": {"type": "string"}},
                },
            },
            429: {
                "description": ERROR_TEXT[429],
                "content": {
                    "application/json": {"schema": ErrorOut.model_json_schema()},
                    "text/html": {"schema": {"type": "string"}},
                },
            },
        },
    )
    def login(
        request: Request,
        state: StateDep,
        name: Annotated[str, Form(min_length=1, max_length=64)],
        password: Annotated[str, Form(min_length=1, max_length=1024)],
    ) -> Response:
        if not _same_origin(request):
            raise HTTPException(403, "cross-site login refused: log in from this server's /login page")
        address = request.client.host if request.client else "unknown"
        # The attempt counts as a failure from here (for the address and for the account)
        # and is forgiven only once the password proved right, so parallel guesses cannot
        # all pass the limit while the slow password checks run.
        attempt = state.limiter.begin(address, name)
        if attempt.wait_s > 0:
            retry = str(int(attempt.wait_s) + 1)
            log.warning("login of %r from %s throttled for %s s", name, address, retry)
            return _login_failed(
                request, 429, f"too many failed logins; wait {retry} s", {"Retry-After": retry}
            )
        if not state.authenticate(name, password):
            log.info("failed review login of %r from %s", name, address)
            return _login_failed(request, 401, LOGIN_FAILED)
        state.limiter.forgive(attempt)
        store = state.store()
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            store.close_session(old)  # a login never reuses a session (no fixation)
        token, csrf = store.open_session(name)
        log.info("analyst %s logged in from %s", name, address)
        response = RedirectResponse("/review", 303)
        secure, max_age = _secure(request, state.settings), int(state.settings.session_ttl_s)
        response.set_cookie(
            SESSION_COOKIE, token, max_age, path="/", secure=secure, httponly=True, samesite="strict"
        )
        response.set_cookie(
            CSRF_COOKIE, csrf, max_age, path="/", secure=secure, httponly=False, samesite="strict"
        )
        return response

    @router.post(
        "/logout", summary="Log out (CSRF header needed)", tags=["review"], responses=_errors(401, 403, 503)
    )
    def logout(request: Request, state: StateDep, analyst: CsrfAnalystDep) -> JSONResponse:
        state.store().close_session(request.cookies.get(SESSION_COOKIE, ""))
        response = JSONResponse({"logged_out": analyst}, headers=API_HEADERS)
        secure = _secure(request, state.settings)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
        response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, samesite="strict")
        return response

    @router.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def review_page(request: Request, state: StateDep) -> Response:
        if _session_analyst(request, state) is None:
            return RedirectResponse("/login", 303)
        return _page("review.html")

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
        "/detections/{detection_id}", summary="One detection with its live decisions", responses=_errors(404)
    )
    def detection(detection_id: DetectionId, analyst: AnalystDep, store: StoreDep) -> DetectionOut:
        return store.detection(detection_id)

    @api.get(
        "/detections/{detection_id}/{kind}.png",
        summary="The crop, predicted-mask or context image of a detection",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, **_errors(404)},
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
        responses=_errors(400, 403, 404),
    )
    def decide(body: DecisionRequest, analyst: CsrfAnalystDep, store: StoreDep) -> DecisionResult:
        decision = store.decide(body.detection_id, analyst, body.decision, body.reason, body.note)
        log.info("%s: %s on detection %d", analyst, body.decision, body.detection_id)
        return DecisionResult(decision=decision, detection=store.detection(body.detection_id))

    @api.post("/undo", summary="Withdraw the session analyst's latest live decision", responses=_errors(403))
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
        responses=_errors(404),
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

    router.include_router(api)
    return router


async def _review_error(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "http_status", 400)
    public = getattr(exc, "public_message", None)
    return error_answer(request, status, str(exc), API_HEADERS, public=public)


def install_review(app: FastAPI, settings: ReviewSettings) -> ReviewState:
    """Add the review UI, its JSON API and static files to ``app``.

    The store opens on the first request that needs it and closes when the app stops (a
    lifespan merged into the app's). Errors of the store answer JSON with their
    ``http_status`` (400 invalid action, 404 unknown detection, 503 database down).

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

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    app.include_router(build_router(lifespan))
    app.mount("/review/static", StaticFiles(directory=STATIC_DIR), name="review-static")
    app.add_exception_handler(ReviewError, _review_error)
    app.add_exception_handler(ReviewDatabaseError, _review_error)
    return state
