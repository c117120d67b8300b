"""Bearer-token check for every endpoint except /health."""

from __future__ import annotations

import hmac

from fastapi import Request

from .errors import Unauthorized

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dtma-agent"'}


class TokenGuard:
    """FastAPI dependency comparing the request's bearer token in constant time."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    def __call__(self, request: Request) -> None:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise Unauthorized("a bearer token is required", headers=_CHALLENGE)
        if not hmac.compare_digest(presented.strip().encode(), self._expected):
            raise Unauthorized("the bearer token is not valid for this toolbox", headers=_CHALLENGE)
