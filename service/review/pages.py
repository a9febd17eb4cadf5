"""The review's pages: the login form, logging in and out, the review UI (HTML).

- Login (``POST /login``, form ``name`` + ``password``) checks the password in constant time
  (an unknown name costs one scrypt too) and answers 401 to any failure, whichever part was
  wrong; more than ``login_failures_max`` failures from one address, or for one account name,
  within ``login_window_s`` answer 429. An attempt counts before its password is checked, so
  parallel guesses are held to the limit too. The address is the TCP peer unless the
  operator names trusted proxies (``IMPACTS_FORWARDED_ALLOW_IPS``). A cross-site login is
  refused by its Origin (or Referer).
- A login sets the session and CSRF cookies (see :mod:`service.review.http`) and never
  reuses a session (no fixation).
"""

from __future__ import annotations

import logging
import pathlib
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from impacts.errors import ReviewAuthError
from service.review.http import (
    API_HEADERS,
    CSRF_COOKIE,
    ERROR_TEXT,
    SESSION_COOKIE,
    CsrfAnalystDep,
    ErrorOut,
    ReviewDep,
    error_docs,
    session_analyst,
)
from service.review.settings import ReviewSettings

log = logging.getLogger(__name__)

STATIC_DIR = pathlib.Path(__file__).parent / "static"
LOGIN_ERROR_MARK = "<!--login-error-->"
LOGIN_FAILED = "wrong name or password"
#: Pages load only this origin's scripts, styles and images: no CDN, no inline code.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(tags=["review"])


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


@router.get(
    "/login",
    response_class=HTMLResponse,
    summary="The login form (HTML)",
    responses={303: {"description": "Already logged in: to /review"}, **error_docs(503)},
)
def login_page(request: Request, state: ReviewDep) -> Response:
    if session_analyst(request, state) is not None:
        return RedirectResponse("/review", 303)
    return _page("login.html")


# Starlette answers 405 with the methods of the first route of a path only (here GET):
# this route makes the Allow header name both of /login's methods.
@router.api_route("/login", methods=["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"], include_in_schema=False)
def login_other_methods() -> JSONResponse:
    return JSONResponse({"detail": "Method Not Allowed"}, 405, headers={"Allow": "GET, POST"})


@router.post(
    "/login",
    summary="Log in (form fields name, password); sets the session and CSRF cookies",
    responses={
        303: {"description": "Logged in: to /review, with the session and CSRF cookies"},
        **error_docs(403, 503),
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
    state: ReviewDep,
    name: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
) -> Response:
    if not _same_origin(request):
        raise ReviewAuthError("cross-site login refused: log in from this server's /login page")
    address = request.client.host if request.client else "unknown"
    # The attempt counts as a failure from here (for the address and for the account)
    # and is forgiven only once the password proved right, so parallel guesses cannot
    # all pass the limit while the slow password checks run.
    attempt = state.limiter.begin(address, name)
    if attempt.wait_s > 0:
        retry = str(int(attempt.wait_s) + 1)
        log.warning("login of %r from %s throttled for %s s", name, address, retry)
        return _login_failed(request, 429, f"too many failed logins; wait {retry} s", {"Retry-After": retry})
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


@router.post("/logout", summary="Log out (CSRF header needed)", responses=error_docs(401, 403, 503))
def logout(request: Request, state: ReviewDep, analyst: CsrfAnalystDep) -> JSONResponse:
    state.store().close_session(request.cookies.get(SESSION_COOKIE, ""))
    response = JSONResponse({"logged_out": analyst}, headers=API_HEADERS)
    secure = _secure(request, state.settings)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, samesite="strict")
    return response


@router.get("/review", response_class=HTMLResponse, include_in_schema=False)
def review_page(request: Request, state: ReviewDep) -> Response:
    if session_analyst(request, state) is None:
        return RedirectResponse("/login", 303)
    return _page("review.html")
