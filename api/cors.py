"""CORS for the frontend's browser calls: exact origins (DTMA_CORS_ORIGINS) on
`/functions/v1/*` and `/api/v1/*` only.

Written out rather than Starlette's CORSMiddleware because that one answers a preflight
from an origin not listed with CORS headers of its own (allowed methods and headers) and
applies to every path; here an origin not listed gets no CORS header at all, and the web
console's pages never answer cross-origin. No credentials mode: bearer tokens need none, so
a page elsewhere can never ride on a signed-in browser's cookie.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body

PREFIXES = ("/functions/v1/", "/api/v1/")
# What `@supabase/functions-js` (supabase.functions.invoke) sends, and what the API needs.
ALLOWED_HEADERS = ("authorization", "x-client-info", "apikey", "content-type", "x-request-id")
ALLOWED_METHODS = ("GET", "POST", "PATCH", "DELETE", "OPTIONS")
EXPOSED_HEADERS = ("x-request-id", "retry-after")
MAX_AGE_SECONDS = 600


class CorsMiddleware:
    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:  # not a cross-origin browser call
            await self.app(scope, receive, send)
            return
        listed = origin in self.origins
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if preflight:
            await self._preflight(send, origin if listed else None, headers)
            return
        if not listed:
            await self.app(scope, receive, send)  # answered as usual; the browser blocks it
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["access-control-allow-origin"] = origin
                out["access-control-expose-headers"] = ", ".join(EXPOSED_HEADERS)
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, send: Send, origin: str | None, headers: Headers) -> None:
        """204 with the allowances for a listed origin asking for what is allowed; 403 with
        no CORS header otherwise (the browser then refuses the call)."""
        method = headers["access-control-request-method"].upper()
        requested = {
            name.strip().lower()
            for name in headers.get("access-control-request-headers", "").split(",")
            if name.strip()
        }
        refused = None
        if origin is None:
            refused = "this origin is not in DTMA_CORS_ORIGINS"
        elif method not in ALLOWED_METHODS:
            refused = f"method {method} is not allowed cross-origin"
        elif not requested <= set(ALLOWED_HEADERS):
            extra = ", ".join(sorted(requested - set(ALLOWED_HEADERS)))
            refused = f"request headers not allowed cross-origin: {extra}"
        if refused is not None or origin is None:
            body = json.dumps(error_body("cors_refused", refused or "")).encode()
            response = [(b"content-type", b"application/json"), (b"vary", b"Origin")]
            await _answer(send, 403, response, body)
            return
        allowed = [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-methods", ", ".join(ALLOWED_METHODS).encode()),
            (b"access-control-allow-headers", ", ".join(ALLOWED_HEADERS).encode()),
            (b"access-control-max-age", str(MAX_AGE_SECONDS).encode()),
            (b"vary", b"Origin"),
        ]
        await _answer(send, 204, allowed, b"")


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
