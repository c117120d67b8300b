"""The frontend's browser calls, in Chromium: a page served from another loopback origin
calls the console with fetch, as `supabase.functions.invoke` does (Supabase-shaped JWT,
`apikey`, `x-client-info`, JSON): it works when the page's origin is in DTMA_CORS_ORIGINS
and the browser blocks it when it is not. Empty fleet: no droplet needed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from playwright.sync_api import Browser
from sqlalchemy import select

from api.app import create_app
from api.db import session_scope
from api.models import ExternalIdentity
from api.settings import Settings
from tests.api.server import live_server

JWT_SECRET = "cors-browser-test-secret-0123456789"
ISSUER = "https://project.example.test/auth/v1"
PAGE = b"<!doctype html><title>frontend</title><p>the frontend</p>"

# supabase.functions.invoke(name, {body}): POST with these headers.
INVOKE = """async ([url, token, body]) => {
  try {
    const answer = await fetch(url, {
      method: "POST",
      headers: {
        "Authorization": `Bearer ${token}`,
        "apikey": "anon-key-of-the-project",
        "x-client-info": "supabase-js-web/2.45.0",
        "Content-Type": "application/json",
      },
      body: JSON.stringify(body),
    });
    return {status: answer.status, body: await answer.json()};
  } catch (error) {
    return {blocked: String(error)};
  }
}"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def frontends() -> Iterator[dict[str, str]]:
    """The same page served from two other loopback origins: `listed` and `unlisted`."""
    servers = {
        "listed": ThreadingHTTPServer(("127.0.0.2", 0), _Page),
        "unlisted": ThreadingHTTPServer(("127.0.0.3", 0), _Page),
    }
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {
        name: f"http://{s.server_address[0]}:{s.server_address[1]}" for name, s in servers.items()
    }
    for server in servers.values():
        server.shutdown()
        server.server_close()


def supabase_jwt(subject: str) -> str:
    claims = {
        "sub": subject,
        "iss": ISSUER,
        "aud": "authenticated",
        "role": "authenticated",
        "exp": int(time.time()) + 300,
    }
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def test_a_listed_origin_calls_the_console_and_another_is_blocked(
    browser: Browser, frontends: dict[str, str], tmp_path: Path
) -> None:
    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'console.db'}",
            jwt_secret=JWT_SECRET,
            jwt_issuer=ISSUER,
            jwt_audience="authenticated",
            cors_origins=[frontends["listed"]],
            monitor_interval=0,
        )
    )
    context = browser.new_context()
    try:
        with live_server(app) as console:
            page = context.new_page()
            page.goto(frontends["listed"])
            compat = f"{console}/functions/v1/toolbox-dtma-console"
            called = page.evaluate(
                INVOKE,
                [compat, supabase_jwt("listed-user"), {"toolboxId": "nope", "action": "status"}],
            )
            # The page read the console's own answer: the frontend's shape, a real refusal.
            assert called.get("status") == 404, called
            assert called["body"]["success"] is False
            assert "toolbox 'nope' not found" in called["body"]["error"]

            page.goto(frontends["unlisted"])
            blocked = page.evaluate(
                INVOKE,
                [compat, supabase_jwt("unlisted-user"), {"toolboxId": "x", "action": "status"}],
            )
            assert "blocked" in blocked and "Failed to fetch" in blocked["blocked"], blocked
        with session_scope(app.state.context.sessions) as session:
            subjects = set(session.scalars(select(ExternalIdentity.subject)))
        # The blocked call never got past the preflight: its JWT reached nothing.
        assert subjects == {"listed-user"}
    finally:
        context.close()
