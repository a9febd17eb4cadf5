"""The review pages through HTTP: logging in and out, cookies, the login limit, sessions and
CSRF checks."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.review.http import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from service.review.routes import install_review
from service.review.settings import ReviewSettings
from tests.unit.service.review.webapp import (
    ADA,
    ADA_PASSWORD,
    BOB,
    BOB_PASSWORD,
    _app,
    _login,
    _set_cookie,
)


# ---------------------------------------------------------------------- login and session
def test_login_sets_an_httponly_strict_session_cookie_and_a_readable_csrf_cookie(client: TestClient) -> None:
    response = client.post("/login", data={"name": ADA, "password": ADA_PASSWORD}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/review")
    session = _set_cookie(response, SESSION_COOKIE).lower()
    csrf = _set_cookie(response, CSRF_COOKIE).lower()
    assert "httponly" in session and "samesite=strict" in session and "path=/" in session
    assert "httponly" not in csrf and "samesite=strict" in csrf
    assert "secure" not in session  # plain http and secure_cookies=false
    assert client.get("/v1/review/me").json() == {"analyst": ADA}
    assert client.get("/review").status_code == 200
    assert client.get("/login", follow_redirects=False).headers["location"] == "/review"


@pytest.mark.parametrize(
    ("setting", "base_url", "secure"),
    [
        ("true", "http://testserver", True),
        ("auto", "https://testserver", True),
        ("auto", "http://testserver", False),
    ],
)
def test_cookies_are_secure_when_configured_or_over_https(
    review_url: str, setting: str, base_url: str, secure: bool
) -> None:
    app = FastAPI()
    install_review(app, ReviewSettings(db_url=review_url, secure_cookies=setting))
    with TestClient(app, base_url=base_url) as client:
        response = client.post("/login", data={"name": ADA, "password": ADA_PASSWORD}, follow_redirects=False)
    assert response.status_code == 303
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        assert ("; secure" in _set_cookie(response, name).lower()) is secure


def test_a_failed_login_is_401_whether_the_name_or_the_password_is_wrong(client: TestClient) -> None:
    wrong_password = client.post("/login", data={"name": ADA, "password": "not-her-password"})
    unknown_name = client.post("/login", data={"name": "mallory", "password": "not-her-password"})
    assert wrong_password.status_code == unknown_name.status_code == 401
    assert wrong_password.json() == unknown_name.json() == {"detail": "wrong name or password"}
    assert SESSION_COOKIE not in client.cookies
    # A browser gets the form again, with the message.
    page = client.post("/login", data={"name": ADA, "password": "nope-nope"}, headers={"Accept": "text/html"})
    assert page.status_code == 401
    assert "wrong name or password" in page.text and '<form method="post" action="/login"' in page.text


def test_repeated_failed_logins_from_one_address_are_throttled(review_url: str) -> None:
    with TestClient(_app(review_url, login_failures_max=3)) as client:
        for _ in range(3):
            assert client.post("/login", data={"name": ADA, "password": "guess-guess"}).status_code == 401
        blocked = client.post("/login", data={"name": ADA, "password": ADA_PASSWORD}, follow_redirects=False)
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1
        assert SESSION_COOKIE not in client.cookies


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Referer": "http://evil.example/form"}],
)
def test_a_cross_site_login_is_refused(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post(
        "/login", data={"name": ADA, "password": ADA_PASSWORD}, headers=headers, follow_redirects=False
    )
    assert response.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_a_same_origin_login_is_accepted(client: TestClient) -> None:
    response = client.post(
        "/login",
        data={"name": ADA, "password": ADA_PASSWORD},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert response.status_code == 303


def test_login_form_fields_are_validated(client: TestClient) -> None:
    assert client.post("/login", data={"name": ADA}).status_code == 422
    assert client.post("/login", data={"name": "x" * 65, "password": "whatever-1"}).status_code == 422


def test_logout_ends_the_session(ada: tuple[TestClient, dict[str, str]]) -> None:
    client, csrf = ada
    token = client.cookies[SESSION_COOKIE]
    assert client.post("/logout").status_code == 403  # no CSRF header
    response = client.post("/logout", headers=csrf)
    assert response.status_code == 200
    assert client.get("/v1/review/me").status_code == 401
    client.cookies.set(SESSION_COOKIE, token)  # the old token is dead in the store, not only in the browser
    assert client.get("/v1/review/me").status_code == 401


def test_pages_redirect_to_login_without_a_session(client: TestClient) -> None:
    response = client.get("/review", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    login = client.get("/login")
    assert login.status_code == 200 and 'name="password"' in login.text
    assert "script-src 'self'" in login.headers["content-security-policy"]
    assert client.get("/review/static/review.css").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/review/me"),
        ("GET", "/v1/review/queue"),
        ("GET", "/v1/review/detections/1"),
        ("GET", "/v1/review/detections/1/crop.png"),
        ("GET", "/v1/review/progress"),
        ("GET", "/v1/review/history/1"),
        ("GET", "/v1/review/export?what=rejected&format=csv"),
        ("POST", "/v1/review/decisions"),
        ("POST", "/v1/review/undo"),
        ("POST", "/logout"),
    ],
)
def test_the_api_answers_401_without_a_session(client: TestClient, method: str, path: str) -> None:
    body = {"detection_id": 1, "decision": "accept"} if method == "POST" else None
    response = client.request(method, path, json=body)
    assert response.status_code == 401
    assert "log in" in response.json()["detail"]


def test_a_forged_session_cookie_is_401(client: TestClient) -> None:
    _login(client)
    real = client.cookies[SESSION_COOKIE]
    sid, _, secret = real.partition(".")
    for forged in (f"{sid}.{secret[:-2]}xx", "garbage", "a" * 500):
        client.cookies.set(SESSION_COOKIE, forged)
        assert client.get("/v1/review/me").status_code == 401


@pytest.mark.parametrize("csrf", [None, "", "wrong-token"])
@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/review/decisions", {"detection_id": 1, "decision": "accept"}), ("/v1/review/undo", {})],
)
def test_posts_without_the_right_csrf_token_are_403(
    ada: tuple[TestClient, dict[str, str]], csrf: str | None, path: str, body: dict[str, Any]
) -> None:
    client, _ = ada
    headers = {} if csrf is None else {CSRF_HEADER: csrf}
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 403
    assert CSRF_HEADER in response.json()["detail"]
    assert client.get("/v1/review/detections/1").json()["status"] == "pending"


def test_another_sessions_csrf_token_is_refused(review_url: str) -> None:
    with TestClient(_app(review_url)) as bob, TestClient(_app(review_url)) as ada:
        bob_csrf = _login(bob, BOB, BOB_PASSWORD)
        _login(ada)
        response = ada.post(
            "/v1/review/decisions",
            json={"detection_id": 1, "decision": "accept"},
            headers={CSRF_HEADER: bob_csrf},
        )
        assert response.status_code == 403
