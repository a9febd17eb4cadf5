"""What the review's HTTP layer shares: cookie and header names, error documentation, and
the dependencies that find the review state, the store and the analyst of a request.

Security rules (see also :mod:`service.review.pages`):

- The session lives in the cookie ``impacts_session`` (HttpOnly, SameSite=Strict, Path=/,
  Secure over https or when configured); the store keeps only a salted hash of it.
- Every POST but ``/login`` needs the header ``X-CSRF-Token`` equal to the session's CSRF
  token, which the page reads from the cookie ``impacts_csrf`` (not HttpOnly, SameSite=Strict).
- Without a session, pages redirect (303) to ``/login`` and the API answers 401; a wrong or
  missing CSRF token is 403. ``POST /v1/predict?review=true`` (queueing a tile's detections)
  needs a session with its CSRF header, or an API token (:func:`queue_writer`). The analyst
  of every action is the session's: a request body naming an analyst is refused (422,
  bodies forbid unknown fields).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request
from pydantic import BaseModel

from impacts.errors import LoginRequiredError, ReviewAuthError
from service.review.state import ReviewState
from service.review.store import ReviewStore

SESSION_COOKIE = "impacts_session"
CSRF_COOKIE = "impacts_csrf"
CSRF_HEADER = "X-CSRF-Token"
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


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


def error_docs(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses."""
    return {status: {"model": ErrorOut, "description": ERROR_TEXT[status]} for status in statuses}


def _review_state(request: Request) -> ReviewState:
    state: ReviewState = request.app.state.review
    return state


ReviewDep = Annotated[ReviewState, Depends(_review_state)]


def _store(state: ReviewDep) -> ReviewStore:
    return state.store()


StoreDep = Annotated[ReviewStore, Depends(_store)]


def session_analyst(request: Request, state: ReviewState) -> str | None:
    """The analyst of the request's session cookie; None without a live session."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None  # no store access at all for anonymous requests
    return state.store().session_analyst(token)


def _analyst(request: Request, state: ReviewDep) -> str:
    analyst = session_analyst(request, state)
    if analyst is None:
        raise LoginRequiredError("log in first: POST /login (the session is missing or expired)")
    return analyst


AnalystDep = Annotated[str, Depends(_analyst)]


def check_csrf(request: Request, state: ReviewState, csrf: str | None) -> None:
    """Raises:
    ReviewAuthError: ``csrf`` is not the CSRF token of the request's session (403)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not csrf or len(csrf) > 200 or not state.store().check_csrf(token, csrf):
        raise ReviewAuthError(
            f"CSRF check failed: send the {CSRF_HEADER} header with the value of the {CSRF_COOKIE} cookie"
        )


def _csrf_analyst(
    request: Request,
    analyst: AnalystDep,
    state: ReviewDep,
    csrf: Annotated[str | None, Header(alias=CSRF_HEADER, max_length=200)] = None,
) -> str:
    check_csrf(request, state, csrf)
    return analyst


CsrfAnalystDep = Annotated[str, Depends(_csrf_analyst)]


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
        LoginRequiredError: No credential (401).
        ReviewAuthError: A wrong token or CSRF header (403).
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        name = state.store().token_name(token.strip())
        if name is None:
            raise ReviewAuthError(
                "API token unknown or revoked; make one with `impacts review tokens add NAME`"
            )
        return f"token:{name}"
    analyst = session_analyst(request, state)
    if analyst is None:
        raise LoginRequiredError(
            "queueing for review needs a credential: an API token (Authorization: Bearer TOKEN, from "
            "`impacts review tokens add NAME`) or an analyst session with its CSRF header"
        )
    check_csrf(request, state, request.headers.get(CSRF_HEADER))
    return analyst
