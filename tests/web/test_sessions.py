"""Browser sessions over real HTTP, without the sandbox: JWT sign-in, expiry, revocation,
and no open redirect after sign-in."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from api.app import create_app
from api.db import session_scope
from api.models import ApiToken, utcnow
from api.services import users
from api.settings import Settings
from api.web.models import WebSession
from tests.api.server import live_server

JWT_SECRET = "web-session-test-secret-0123456789"
JWT_ISSUER = "https://project.example.test/auth/v1"


def jwt_for(subject: str, expires: int) -> str:
    claims = {"sub": subject, "exp": expires, "iss": JWT_ISSUER, "aud": "authenticated"}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'console.db'}",
            jwt_secret=JWT_SECRET,
            jwt_issuer=JWT_ISSUER,
            jwt_audience="authenticated",
            monitor_interval=0,
        )
    )


@pytest.fixture
def base_url(app: FastAPI) -> Iterator[str]:
    with live_server(app) as url:
        yield url


def sign_in(base_url: str, token: str, next_url: str = "/toolboxes") -> httpx.Response:
    """A fresh client posting the login form as a browser would; returns the answer."""
    client = httpx.Client(base_url=base_url, follow_redirects=False)
    form = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    return client.post(
        "/login", data={"token": token, "csrf_token": csrf.group(1), "next": next_url}
    )


def new_token(app: FastAPI, name: str) -> str:
    with session_scope(app.state.context.sessions) as session:
        _, token = users.create_token(session, name, admin=False)
    return token


def test_a_jwt_signs_in_and_the_session_ends_with_it(app: FastAPI, base_url: str) -> None:
    expires = int(time.time()) + 120
    token = jwt_for("jwt-user", expires)
    answer = sign_in(base_url, token)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/toolboxes"
    max_age = int(re.search(r"Max-Age=(\d+)", answer.headers["set-cookie"]).group(1))  # type: ignore[union-attr]
    assert 100 <= max_age <= 120  # the JWT's expiry, not the 12 h default
    with session_scope(app.state.context.sessions) as session:
        row = session.scalar(select(WebSession))
        assert row is not None and row.api_token_id is None
        assert abs(row.expires_at.timestamp() - expires) < 2


def test_an_expired_jwt_is_refused(base_url: str) -> None:
    token = jwt_for("late", int(time.time()) - 5)
    answer = sign_in(base_url, token)
    assert answer.status_code == 401
    assert "token expired" in answer.text
    assert "dtma_session" not in answer.headers.get("set-cookie", "")


def test_revoking_the_api_token_ends_the_session(app: FastAPI, base_url: str) -> None:
    answer = sign_in(base_url, new_token(app, "revoked"))
    cookie = answer.cookies["dtma_session"]
    with httpx.Client(base_url=base_url, follow_redirects=False) as browser:
        browser.cookies.set("dtma_session", cookie)
        assert browser.get("/toolboxes").status_code == 200
        with session_scope(app.state.context.sessions) as session:
            for row in session.scalars(select(ApiToken)):
                row.revoked_at = utcnow()
        assert browser.get("/toolboxes").status_code == 303


def test_an_expired_session_sends_back_to_the_login(app: FastAPI, base_url: str) -> None:
    answer = sign_in(base_url, new_token(app, "sleepy"))
    with session_scope(app.state.context.sessions) as session:
        for row in session.scalars(select(WebSession)):
            row.expires_at = utcnow() - timedelta(seconds=1)
    with httpx.Client(base_url=base_url, follow_redirects=False) as browser:
        browser.cookies.set("dtma_session", answer.cookies["dtma_session"])
        assert browser.get("/toolboxes").headers["location"] == "/login?next=%2Ftoolboxes"


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "toolboxes"]
)
def test_sign_in_never_redirects_to_another_site(app: FastAPI, base_url: str, target: str) -> None:
    answer = sign_in(base_url, new_token(app, "careful"), next_url=target)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/toolboxes"


def test_only_the_hash_of_the_session_cookie_is_stored(app: FastAPI, base_url: str) -> None:
    answer = sign_in(base_url, new_token(app, "hashed"))
    cookie = answer.cookies["dtma_session"]
    with session_scope(app.state.context.sessions) as session:
        stored = [row.token_hash for row in session.scalars(select(WebSession))]
    assert stored and cookie not in stored
    assert all(len(value) == 64 for value in stored)
