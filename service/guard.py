"""The outer ASGI layer of the service: request ids, body limits on the bytes as they arrive,
error answers that never show internals, and the request metrics.

Every response carries ``X-Request-ID``. A request body is counted as its chunks arrive
(chunked uploads declare no length), before any route authenticates or parses it: past the
route's limit the request is answered 413 and nothing more is read. A declared
``Content-Length`` over the limit is answered 413 before any of the body is read.

Answers to callers hold a message meant for them and, for server-side failures (5xx), only a
generic text and the request id; the details go to the log under the same id.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from impacts.errors import ServiceUnavailableError
from service.metrics import Metrics

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
#: What a caller reads for a server-side failure; the log holds the rest.
GENERIC_5XX = {
    500: "internal error; the operators can find it in the log by its request id",
    503: "a service this request needs is unavailable; retry later",
}


class BodyTooLargeError(HTTPException):
    """The request body passed its route's limit while it arrived (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the {limit} byte limit of this route; send less")


def request_id(request: Request) -> str:
    """The id of a request (also in its answer's ``X-Request-ID`` header when :class:`Guard`
    wraps the app; made here for an app without it)."""
    state = request.scope.setdefault("state", {})
    rid: str = state.setdefault("request_id", secrets.token_hex(8))
    return rid


def error_answer(
    request: Request,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    public: str | None = None,
) -> JSONResponse:
    """The JSON answer of an error: ``{"detail": ..., "request_id": ...}``.

    Args:
        request: The request.
        status: HTTP status.
        detail: What went wrong. Shown to the caller for a 4xx; for a 5xx it is logged only.
        headers: Extra headers (e.g. ``Retry-After``).
        public: The text a caller gets for a 5xx instead of ``detail`` (default: generic).

    Returns:
        The response.
    """
    rid = request_id(request)
    if status >= 500:
        log.error("request %s answered %d: %s", rid, status, detail)
        detail = public or GENERIC_5XX.get(status, GENERIC_5XX[500])
    return JSONResponse({"detail": detail, "request_id": rid}, status, headers=headers)


async def impacts_error_answer(request: Request, exc: Exception) -> JSONResponse:
    """The one handler of the project's errors (:mod:`impacts.errors`): each type's
    ``http_status``; a 5xx shows callers its ``public_message`` (or a generic text) and logs
    the message; 503s say when to retry.

    Args:
        request: The request.
        exc: An :class:`~impacts.errors.ImpactsError`.

    Returns:
        The JSON answer.
    """
    status = getattr(exc, "http_status", 400)
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if isinstance(exc, ServiceUnavailableError):
        headers["Retry-After"] = str(exc.retry_after_s)
    elif status == 503:
        headers["Retry-After"] = "5"
    return error_answer(request, status, str(exc), headers, public=getattr(exc, "public_message", None))


class Guard:
    """Pure ASGI middleware (no extra task or stream per request, unlike ``@app.middleware``).

    Args:
        app: The app it wraps.
        metrics: Where requests are counted and timed.
        body_limit: ``path -> largest body in bytes`` for a request path.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, body_limit: Callable[[str], int]) -> None:
        self.app, self.metrics, self.body_limit = app, metrics, body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        status, response_started = 500, False
        limit = self.body_limit(scope["path"])
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        request = Request(scope)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), b"").decode("latin-1")
        try:
            if length.isdigit() and int(length) > limit:
                raise BodyTooLargeError(limit)
            await self.app(scope, counted_receive, send_with_id)
        except BodyTooLargeError as exc:  # raised where no route turned it into its answer
            if not response_started:
                await error_answer(request, 413, str(exc.detail))(scope, receive, send_with_id)
        except Exception as exc:
            log.exception("request %s (%s %s) failed", rid, scope["method"], scope["path"])
            if not response_started:
                answer = error_answer(request, 500, f"{type(exc).__name__}: {exc}")
                await answer(scope, receive, send_with_id)
        path = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests[(scope["method"], path, status)] += 1
        self.metrics.latency.observe(time.perf_counter() - started)
