"""CORS for the frontend's browser calls (DTMA_CORS_ORIGINS), over real HTTP: a listed
origin's preflight gets the headers `@supabase/functions-js` sends allowed, an origin not
listed gets no CORS header at all, pages of the web console never answer cross-origin, and
`*` stops the start. The browser's own verdict is in tests/web/test_cors_browser.py."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from api.app import create_app
from api.settings import Settings
from tests.api.console import CLI

LISTED = "http://127.0.0.2:5173"
FUNCTIONS_JS_HEADERS = "authorization, x-client-info, apikey, content-type"


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings.model_copy(update={"cors_origins": [LISTED]}))


def preflight(client: httpx.Client, path: str, origin: str, headers: str) -> httpx.Response:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers,
        },
    )


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.mark.parametrize("path", ["/functions/v1/toolbox-dtma-console", "/api/v1/tokens"])
def test_a_listed_origin_gets_the_preflight_and_the_answer(
    client: httpx.Client, alice: dict[str, str], path: str
) -> None:
    allowed = preflight(client, path, LISTED, FUNCTIONS_JS_HEADERS)
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == LISTED
    granted = {h.strip() for h in allowed.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "x-client-info", "apikey", "content-type"} <= granted
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in allowed.headers
    assert "Origin" in allowed.headers["vary"]
    answer = client.get(
        "/api/v1/tokens", headers={"Origin": LISTED, "Authorization": alice["auth"]}
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == LISTED


def test_an_origin_not_listed_gets_no_cors_header(
    client: httpx.Client, alice: dict[str, str]
) -> None:
    for origin in ("http://127.0.0.3:5173", "http://127.0.0.2:5174", "null"):
        refused = preflight(client, "/functions/v1/toolbox-tools", origin, FUNCTIONS_JS_HEADERS)
        assert refused.status_code == 403
        assert cors_headers(refused) == {}
        assert refused.json()["error"]["code"] == "cors_refused"
        answer = client.get(
            "/api/v1/tokens", headers={"Origin": origin, "Authorization": alice["auth"]}
        )
        assert answer.status_code == 200 and cors_headers(answer) == {}


def test_unlisted_headers_and_other_paths_get_no_cors(client: httpx.Client) -> None:
    extra = preflight(client, "/api/v1/tokens", LISTED, "authorization, x-evil")
    assert extra.status_code == 403 and cors_headers(extra) == {}
    assert "x-evil" in extra.json()["error"]["message"]
    for path in ("/toolboxes", "/login", "/metrics"):
        page = client.get(path, headers={"Origin": LISTED}, follow_redirects=False)
        assert cors_headers(page) == {}


@pytest.mark.parametrize(
    "value", ["*", "http://127.0.0.2:5173,*", "https://*.example.com", "http://a.test/"]
)
def test_wildcards_and_non_origins_stop_the_start(value: str) -> None:
    with pytest.raises(ValidationError, match="DTMA_CORS_ORIGINS"):
        Settings(cors_origins=value)  # type: ignore[arg-type]


def test_the_service_refuses_to_start_with_a_wildcard_origin() -> None:
    env = {**os.environ, "DTMA_CORS_ORIGINS": "https://app.example.test,*"}
    started = subprocess.run(
        [str(CLI), "serve", "--port", "9"], env=env, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 1
    assert "DTMA_CORS_ORIGINS must list exact origins" in started.stderr
    assert "'*' is refused" in started.stderr and "Traceback" not in started.stderr
